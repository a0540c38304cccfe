//! End-to-end tests: the real `proxy`, `webserver` and `client` binaries on 127.0.0.1:0,
//! driven over TCP. One integration binary; each file is one area.

mod support;

mod attacks;
mod balancing;
mod browser;
mod cache;
mod cache_hits;
mod cache_rules;
mod client;
mod config;
mod docs;
mod faults;
mod hardening;
mod interop;
mod logs;
mod observability;
mod operations;
mod proxy;
mod purge;
mod random_input;
mod ranges;
mod real_traffic;
mod reference;
mod slots;
mod stale;
mod status;
mod webserver;
mod websocket;
mod zero_copy;
