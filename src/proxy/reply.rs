//! Error replies (the proxy's one catalogue of them): when a step fails, the client gets a
//! short `text/plain` response whose status comes from `Error::status` (400 and friends for
//! a bad request, 405/501 for methods, 502/504 for backend trouble), with `Connection:
//! close` when the connection cannot carry another request, and nothing at all once part
//! of a response has gone out (closing is then the only honest signal). The texts never
//! echo the client's input and never name internal addresses.

use std::io::Write;

use super::config::Config;
use super::{Sent, VIA};
use crate::cache::CacheStatus;
use crate::error::Error;
use crate::http::serialize;
use crate::http::{text_response, Request};

/// Sends the error response for `e` (to `request`, if one was read), unless a response has
/// already begun or the error allows none, and records in `sent` what went out and whether
/// the connection survives: only when the request's body was read to its end
/// (`body_consumed`) and the error left the framing intact. `cache` is what the cache did,
/// for `X-Cache`; `config` gives the methods a 405 lists.
pub(super) fn send_error(
    out: &mut impl Write,
    config: &Config,
    e: &Error,
    request: Option<&Request>,
    body_consumed: bool,
    cache: CacheStatus,
    sent: &mut Sent,
) {
    let keep_alive = request.is_some_and(Request::keep_alive)
        && body_consumed
        && !sent.head
        && !e.breaks_framing();
    sent.keep_alive = keep_alive;
    let Some(status) = e.status() else {
        sent.keep_alive = false;
        return;
    };
    if sent.head {
        // Part of a response is out: the only honest signal left is closing the
        // connection, so the client sees a truncated message, never a complete-looking one.
        sent.keep_alive = false;
        return;
    }
    let (mut resp, body) = text_response(status, e.reply_text());
    if let Error::MethodNotAllowed(_) = e {
        // RFC 9110 §15.5.6: a 405 lists the methods that are supported.
        resp.headers.append("Allow", allowed_methods(config));
    }
    resp.headers.append("Via", VIA);
    resp.headers.append("X-Cache", cache.as_str());
    if !keep_alive {
        resp.headers.append("Connection", "close");
    }
    let is_head = request.is_some_and(|r| r.method == "HEAD");
    let mut bytes = serialize::response_head_bytes(&resp);
    if !is_head {
        bytes.extend_from_slice(&body);
    }
    if out.write_all(&bytes).and_then(|()| out.flush()).is_ok() {
        sent.status = Some(status);
        sent.bytes = if is_head { 0 } else { body.len() as u64 };
    } else {
        sent.keep_alive = false;
    }
}

/// The methods forwarded, for `Allow`: the `methods` list, or the common ones with `*`;
/// TRACE and CONNECT only when they would be forwarded.
pub(super) fn allowed_methods(config: &Config) -> String {
    const COMMON: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"];
    let listed: Vec<&str> = match &config.methods {
        Some(methods) => methods.iter().map(String::as_str).collect(),
        None => COMMON.to_vec(),
    };
    listed
        .into_iter()
        .filter(|m| *m != "CONNECT" && (*m != "TRACE" || config.allow_trace))
        .collect::<Vec<_>>()
        .join(", ")
}
