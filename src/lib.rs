//! Relevo: a teaching-grade HTTP/1.1 reverse proxy and round-robin load balancer, with the
//! demo web server it balances across. Built on `std::net` and one OS thread per connection.
//!
//! One request's path through the modules:
//!
//! ```text
//! server   accept, hand to a parked thread or spawn one (bounded by max_connections; when
//!          all are taken an idle or slow connection makes room, else 503)
//!   proxy    read request (http::parse) → validate → cache lookup (cache) → choose backend
//!            (balancer) → rewrite → forward (upstream, http::serialize, http::body)
//!            → read response (http::parse) → invalidate, store (cache) → filter
//!            → relay body (http::body), teed into the cache entry → log
//! ```
//!
//! `client` is the HTTP client (`client LOG_FILE URL`): the same parser and serializer on
//! the other side of the wire, with a private cache built on `cache`.
//!
//! `config` reads proxy.conf, `error` maps every failure to one status code, `logging` sends
//! log lines to the terminal and a file (`log_file` keeps such a file whole across full disks
//! and rotation), `cache` keeps responses on disk (RFC 9111),
//! `static_files` serves the demo site for `webserver`.

#![forbid(unsafe_code)]

pub mod cache;
pub mod client;
pub mod error;
pub mod http;
pub mod logging;
pub mod proxy;
pub mod server;
pub mod webserver;
