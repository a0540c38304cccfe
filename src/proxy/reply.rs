//! Error replies (the proxy's one catalogue of them): when a step fails, the client gets a
//! short `text/plain` response whose status comes from `Error::status` (400 and friends for
//! a bad request, 405/501 for methods, 502/504 for backend trouble), with `Connection:
//! close` when the connection cannot carry another request, and nothing at all once part
//! of a response has gone out (closing is then the only honest signal). The texts never
//! echo the client's input and never name internal addresses.

use std::io::Write;

use super::config::Config;
use super::relay::Stamp;
use super::{Sent, VIA};
use crate::error::Error;
use crate::http::serialize;
use crate::http::{text_response, Request};

/// Sends the error response for `e` (to `request`, if one was read), unless a response has
/// already begun or the error allows none, and records in `sent` what went out and whether
/// the connection survives: only when the request's body was read to its end
/// (`body_consumed`) and the error left the framing intact. `stamp` gives `X-Cache` and
/// `X-Request-Id`; `config` gives the methods a 405 lists.
pub(super) fn send_error(
    out: &mut impl Write,
    config: &Config,
    e: &Error,
    request: Option<&Request>,
    body_consumed: bool,
    stamp: Stamp,
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
    stamp.apply(&mut resp.headers);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CacheStatus;
    use crate::error::{ParseError, Side};
    use crate::http::parse::{read_request, read_response, Limits};
    use crate::http::request_id::RequestId;
    use crate::http::Response;

    fn stamp() -> Stamp {
        Stamp {
            cache: CacheStatus::Miss,
            request_id: RequestId::parse("r-1").unwrap(),
        }
    }

    fn req(raw: &str) -> Request {
        read_request(&mut raw.as_bytes(), &Limits::default())
            .unwrap()
            .unwrap()
    }

    /// The reply `send_error` writes, parsed, and what it recorded.
    fn reply(
        e: &Error,
        request: Option<&Request>,
        config: &Config,
    ) -> (Option<Response>, Vec<u8>, Sent) {
        let mut out = Vec::new();
        let mut sent = Sent::default();
        send_error(&mut out, config, e, request, true, stamp(), &mut sent);
        if out.is_empty() {
            return (None, out, sent);
        }
        let mut rest = &out[..];
        let head = read_response(&mut rest, &Limits::default()).unwrap();
        let body = rest.to_vec();
        (Some(head), body, sent)
    }

    #[test]
    fn a_bad_request_is_a_400_that_closes_and_says_what_was_wrong() {
        let e = Error::Parse(Side::Client, ParseError::ObsFold);
        let (head, body, sent) = reply(&e, None, &Config::default());
        let head = head.unwrap();
        assert_eq!(head.status, 400);
        assert_eq!(head.headers.get("connection"), Some("close"));
        assert_eq!(head.headers.get("x-cache"), Some("MISS"));
        assert_eq!(head.headers.get("x-request-id"), Some("r-1"));
        assert_eq!(head.headers.get("via"), Some(VIA));
        assert_eq!(
            body,
            b"400 Bad Request: obsolete line folding in header section\n"
        );
        assert_eq!(
            (sent.status, sent.bytes, sent.keep_alive),
            (Some(400), body.len() as u64, false)
        );
    }

    #[test]
    fn a_method_not_forwarded_keeps_the_connection_and_trace_lists_what_is_allowed() {
        let get = req("DELETE / HTTP/1.1\r\nHost: h\r\n\r\n");
        let (head, _, sent) = reply(
            &Error::MethodNotForwarded("DELETE".into()),
            Some(&get),
            &Config::default(),
        );
        assert_eq!(head.unwrap().status, 501);
        assert!(sent.keep_alive, "a 501 leaves the framing intact");
        let config = Config {
            methods: Some(vec!["GET".into(), "HEAD".into(), "TRACE".into()]),
            ..Config::default()
        };
        let trace = req("TRACE / HTTP/1.1\r\nHost: h\r\n\r\n");
        let (head, _, _) = reply(
            &Error::MethodNotAllowed("TRACE".into()),
            Some(&trace),
            &config,
        );
        let head = head.unwrap();
        assert_eq!(head.status, 405);
        assert_eq!(head.headers.get("allow"), Some("GET, HEAD"));
    }

    #[test]
    fn nothing_follows_a_response_already_begun_and_head_gets_no_body() {
        let mut out = Vec::new();
        let mut sent = Sent {
            head: true,
            keep_alive: true,
            ..Sent::default()
        };
        let e = Error::Io(Side::Backend, std::io::ErrorKind::ConnectionReset.into());
        send_error(
            &mut out,
            &Config::default(),
            &e,
            None,
            true,
            stamp(),
            &mut sent,
        );
        assert!(out.is_empty());
        assert!(!sent.keep_alive, "closing is the only signal left");
        let head_request = req("HEAD / HTTP/1.1\r\nHost: h\r\n\r\n");
        let (head, body, sent) = reply(
            &Error::NoBackend("x".into()),
            Some(&head_request),
            &Config::default(),
        );
        assert_eq!(head.unwrap().status, 502);
        assert!(body.is_empty());
        assert_eq!(sent.bytes, 0);
    }

    #[test]
    fn a_client_that_went_away_gets_nothing() {
        let e = Error::Io(Side::Client, std::io::ErrorKind::BrokenPipe.into());
        let (head, _, sent) = reply(&e, None, &Config::default());
        assert!(head.is_none());
        assert!(!sent.keep_alive);
    }
}
