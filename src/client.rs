//! The HTTP client behind `client LOG_FILE URL` (being assembled: see the next commits).

pub mod connection;
pub mod output;
pub mod url;
