//! End-to-end tests: the real `proxy` and `webserver` binaries on 127.0.0.1:0, driven over
//! TCP. One integration binary; each file is one area.

mod support;

mod cache;
mod config;
mod proxy;
mod webserver;
