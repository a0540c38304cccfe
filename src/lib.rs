//! Relevo: a teaching-grade HTTP/1.1 reverse proxy and load balancer with a disk cache, the
//! demo web server it balances across, and a command-line HTTP client. Built on `std::net`,
//! blocking sockets and one OS thread per connection, with an HTTP/1.1 parser of its own.
//!
//! The folders say which program owns what:
//!
//! ```text
//! proxy/      the reverse proxy: the steps of one request (mod.rs), its configuration,
//!             balancer, health checks, backend connections, status page, metrics and
//!             access log
//! webserver/  the demo backend: a static file server whose pages show who answered
//! client/     the HTTP client, `client LOG_FILE URL`, with a private cache
//! ```
//!
//! over the layers they share:
//!
//! ```text
//! http/       messages; parse (from any BufRead), serialize (to any Write), bodies, dates,
//!             conditional requests                                     [all three programs]
//! cache/      RFC 9111 policy (pure, time passed in), the entry files, coalescing
//!                                                                      [proxy and client]
//! server      listener, accept loop, one thread per connection, connection slots
//!                                                                 [proxy and web server]
//! logging     terminal and file logging, whole lines, reopened after rotation
//!                                                                 [proxy and web server]
//! error       one error enum; `Error::status` is the only error-to-status mapping
//! ```
//!
//! A shared layer never imports a program's folder; `error` depends on nothing above it.

#![forbid(unsafe_code)]

pub(crate) mod cache;
pub mod client;
pub mod error;
pub mod http;
pub mod logging;
pub mod proxy;
pub mod server;
pub mod webserver;

#[cfg(test)]
mod testing;
