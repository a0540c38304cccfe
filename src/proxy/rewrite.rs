//! Step 6 of the proxy (see `proxy`): the request as the backend should see it. Pure
//! functions over `Request`, tested without sockets.

use std::fmt::Write;
use std::net::SocketAddr;

use super::tunnel::asks_for_websocket;
use super::VIA;
use crate::http::authority::{absolute_form_parts, normalize_authority};
use crate::http::body::Framing;
use crate::http::request_id::{RequestId, REQUEST_ID_FIELD};
use crate::http::{is_hop_by_hop, Headers, Request, Response, Version};

/// Step 6: the request as the backend should see it (RFC 9110 §7.6).
///
/// - origin-form target (an absolute-form target is split into Host and path, RFC 9112
///   §3.2.2: its authority wins over any Host field);
/// - `Host` is the backend's `host:port`, and the client's host goes in `X-Forwarded-Host`;
/// - hop-by-hop fields and the fields named in Connection are removed (§7.6.1), and so is
///   Expect, which we answered ourselves;
/// - the client's address is appended to `X-Forwarded-For`; `X-Forwarded-Proto: http`;
/// - `Via: 1.1 relevo` is appended (§7.6.3);
/// - `X-Request-Id` is the request's id (`request_id`: the client's own when valid), in
///   place of whatever the client sent;
/// - the body is re-framed by us: our own Content-Length or `Transfer-Encoding: chunked`;
/// - `Connection: close` unless `keep_alive` (the connection will go back to the pool):
///   HTTP/1.1 connections are persistent by default (RFC 9112 §9.3);
/// - a WebSocket upgrade (`tunnel::asks_for_websocket`) gets `Upgrade: websocket` and
///   `Connection: upgrade` instead, set by us since both are hop-by-hop (RFC 9110 §7.8);
///   every other Upgrade is dropped, and so ignored.
pub fn rewrite_request(
    request: &Request,
    peer: SocketAddr,
    backend_authority: &str,
    request_id: RequestId,
    framing: Framing,
    keep_alive: bool,
) -> Request {
    let (host, target) = match absolute_form_parts(&request.target) {
        Some((authority, origin_form)) => (authority, origin_form),
        None => (
            request.headers.get("host").unwrap_or_default(),
            request.target.clone(),
        ),
    };
    let mut out = Request {
        method: request.method.clone(),
        target,
        version: Version::Http11,
        headers: Headers::with_capacity(request.headers.len() + ADDED_FIELDS),
    };
    out.headers.append("Host", backend_authority);
    // One pass over the client's fields: drop what is hop-by-hop or replaced by ours, and
    // gather every X-Forwarded-For value to extend.
    let connection_named: Vec<&str> = request.headers.list("connection").collect();
    let mut forwarded_for = String::new();
    for (name, value) in request.headers.iter() {
        if is_hop_by_hop(name, &connection_named)
            || REPLACED.iter().any(|r| name.eq_ignore_ascii_case(r))
        {
            continue;
        }
        if name.eq_ignore_ascii_case("x-forwarded-for") {
            if value.is_empty() {
                continue;
            }
            forwarded_for.push_str(value);
            forwarded_for.push_str(", ");
            continue;
        }
        out.headers.append(name, value);
    }
    // Writing to a String cannot fail.
    let _ = write!(forwarded_for, "{}", peer.ip());
    out.headers.append("X-Forwarded-For", forwarded_for);
    out.headers.append("X-Forwarded-Host", host);
    out.headers.append("X-Forwarded-Proto", "http");
    out.headers.append("Via", via(request.version));
    out.headers.append(REQUEST_ID_FIELD, request_id.as_str());
    match framing {
        Framing::Length(n) => out.headers.append("Content-Length", n.to_string()),
        Framing::Chunked => out.headers.append("Transfer-Encoding", "chunked"),
        Framing::Empty | Framing::Close => {}
    }
    if asks_for_websocket(request) {
        out.headers.append("Upgrade", "websocket");
        out.headers.append("Connection", "upgrade");
    } else if !keep_alive {
        out.headers.append("Connection", "close");
    }
    out
}

/// Fields of the client's that we replace with our own, or drop: Host and the
/// X-Forwarded-* we set, Content-Length (we re-frame the body), Expect (we answered it) and
/// X-Request-Id (ours carries the client's when it was valid).
const REPLACED: &[&str] = &[
    "host",
    "expect",
    "content-length",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-request-id",
];

/// The most fields `rewrite_request` adds: Host, X-Forwarded-For, -Host, -Proto, Via,
/// X-Request-Id, the framing field, Upgrade and Connection.
const ADDED_FIELDS: usize = 9;

/// Removes the fields whose names contain `_` (as nginx does unless
/// `underscores_in_headers` is on). Such names are valid tokens, but many servers and
/// frameworks read `_` as `-` (CGI turns both into `HTTP_X_Y`), so `Transfer_Encoding:
/// chunked` beside a Content-Length would mean a second framing to them.
pub(super) fn drop_underscored_fields(headers: &mut Headers) {
    let names: Vec<String> = headers
        .iter()
        .filter(|(name, _)| name.contains('_'))
        .map(|(name, _)| name.to_string())
        .collect();
    for name in names {
        headers.remove(&name);
    }
}

/// The host the client addressed: the authority of an absolute-form target (RFC 9112
/// §3.2.2: it wins over Host), else the Host field; empty when there is neither (HTTP/1.0).
pub(super) fn client_host(request: &Request) -> &str {
    match absolute_form_parts(&request.target) {
        Some((authority, _)) => authority,
        None => request.headers.get("host").unwrap_or_default(),
    }
}

/// Step 11 (part), as nginx's `proxy_redirect default` does: a `Location` or
/// `Content-Location` that points at the backend itself (`http://` and the authority we
/// sent it in `Host`) is rewritten to the host the client used, so a redirect never sends a
/// browser to an internal address. Anything else (relative references, other hosts) is left
/// as it is. Done before the response is stored, so a stored redirect is the client's too.
pub fn rewrite_locations(response: &mut Response, backend_authority: &str, client_host: &str) {
    if client_host.is_empty() {
        return;
    }
    for name in ["Location", "Content-Location"] {
        let Some(value) = response.headers.get(name) else {
            continue;
        };
        if let Some(rest) = backend_reference(value, backend_authority) {
            let rewritten = format!("http://{client_host}{rest}");
            response.headers.set(name, rewritten);
        }
    }
}

/// When `reference` is an `http` URI whose authority is the backend's (compared in
/// normal form: case-insensitively, a missing port being 80), the part after the authority
/// (path, query and fragment).
fn backend_reference<'a>(reference: &'a str, backend_authority: &str) -> Option<&'a str> {
    let scheme = reference.get(..7)?;
    if !scheme.eq_ignore_ascii_case("http://") {
        return None;
    }
    let after = &reference[7..];
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    let same = normalize_authority(authority) == normalize_authority(backend_authority);
    same.then_some(rest)
}

/// Step 6, validating a stale entry: our conditional fields replace the client's (RFC 9111
/// §4.3.1). The client's own conditions are then answered from the refreshed entry.
pub(super) fn add_validators(outgoing: &mut Request, conditionals: &[(String, String)]) {
    outgoing.headers.remove("if-none-match");
    outgoing.headers.remove("if-modified-since");
    for (name, value) in conditionals {
        outgoing.headers.append(name, value);
    }
}

/// Our Via entry (RFC 9110 §7.6.3): `received-protocol` (the version the message arrived
/// with, without "HTTP/") and our pseudonym.
pub(super) fn via(received: Version) -> &'static str {
    match received {
        Version::Http10 => "1.0 relevo",
        Version::Http11 => VIA,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse::{read_request, Limits};

    fn backend() -> &'static str {
        "10.0.0.7:8081"
    }

    fn peer() -> SocketAddr {
        "192.0.2.9:50000".parse().unwrap()
    }

    fn req(raw: &str) -> Request {
        read_request(&mut raw.as_bytes(), &Limits::default())
            .unwrap()
            .unwrap()
    }

    fn id() -> RequestId {
        RequestId::parse("id-7").unwrap()
    }

    #[test]
    fn the_backend_gets_the_requests_id_and_only_that_one() {
        let r = req(
            "GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: from-client\r\nx-request-id: again\r\n\r\n",
        );
        let out = rewrite_request(&r, peer(), backend(), id(), Framing::Empty, true);
        assert_eq!(
            out.headers.get_all("x-request-id").collect::<Vec<_>>(),
            ["id-7"]
        );
    }

    #[test]
    fn rewrite_sets_host_and_forwarding_fields() {
        let r = req("GET /a?b HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-For: 203.0.113.1\r\nAccept: */*\r\n\r\n");
        let out = rewrite_request(&r, peer(), backend(), id(), Framing::Empty, false);
        assert_eq!(out.target, "/a?b");
        assert_eq!(out.headers.iter().next(), Some(("Host", "10.0.0.7:8081")));
        assert_eq!(out.headers.get("x-forwarded-host"), Some("shop.example"));
        assert_eq!(
            out.headers.get("x-forwarded-for"),
            Some("203.0.113.1, 192.0.2.9")
        );
        assert_eq!(out.headers.get("x-forwarded-proto"), Some("http"));
        assert_eq!(out.headers.get("via"), Some("1.1 relevo"));
        assert_eq!(out.headers.get("accept"), Some("*/*"));
        assert_eq!(out.headers.get("connection"), Some("close"));
        assert!(!out.headers.contains("content-length"));
        // With pooling on, HTTP/1.1's default (persistent) is left to speak for itself.
        let pooled = rewrite_request(&r, peer(), backend(), id(), Framing::Empty, true);
        assert!(!pooled.headers.contains("connection"));
    }

    #[test]
    fn every_prior_x_forwarded_for_is_kept_in_order_and_empty_ones_dropped() {
        let r = req("GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 203.0.113.1, 10.0.0.1\r\nX-Forwarded-For:\r\nx-forwarded-for: 198.51.100.2\r\n\r\n");
        let out = rewrite_request(&r, peer(), backend(), id(), Framing::Empty, false);
        assert_eq!(
            out.headers.get_all("x-forwarded-for").collect::<Vec<_>>(),
            ["203.0.113.1, 10.0.0.1, 198.51.100.2, 192.0.2.9"]
        );
    }

    #[test]
    fn rewrite_turns_absolute_form_into_origin_form() {
        let r = req("GET http://Other.example:81/x?y HTTP/1.1\r\nHost: ignored\r\n\r\n");
        let out = rewrite_request(&r, peer(), backend(), id(), Framing::Empty, false);
        assert_eq!(out.target, "/x?y");
        assert_eq!(
            out.headers.get("x-forwarded-host"),
            Some("Other.example:81")
        );
    }

    #[test]
    fn rewrite_drops_hop_by_hop_fields_and_reframes_the_body() {
        let r = req("POST / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: 5\r\nTE: trailers\r\nUpgrade: h2c\r\nProxy-Connection: x\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n");
        let out = rewrite_request(&r, peer(), backend(), id(), Framing::Chunked, false);
        for gone in [
            "x-secret",
            "keep-alive",
            "te",
            "upgrade",
            "proxy-connection",
            "expect",
        ] {
            assert!(!out.headers.contains(gone), "{gone} was forwarded");
        }
        assert_eq!(
            out.headers.get_all("transfer-encoding").collect::<Vec<_>>(),
            ["chunked"]
        );
        assert_eq!(
            out.headers.get_all("connection").collect::<Vec<_>>(),
            ["close"]
        );
        let sized = rewrite_request(&r, peer(), backend(), id(), Framing::Length(7), false);
        assert_eq!(sized.headers.get("content-length"), Some("7"));
        assert!(!sized.headers.contains("transfer-encoding"));
    }

    fn redirect(location: &str) -> Response {
        let mut r = Response::new(301);
        r.headers.append("Location", location);
        r.headers.append("Content-Location", location);
        r
    }

    #[test]
    fn locations_naming_the_backend_point_at_the_clients_host() {
        for (location, expected) in [
            ("http://10.0.0.7:8081/img/", "http://shop.example/img/"),
            ("HTTP://10.0.0.7:8081", "http://shop.example"),
            ("http://10.0.0.7:8081?x=1#f", "http://shop.example?x=1#f"),
            // Not the backend: other hosts, other ports, other schemes, relative ones.
            ("http://10.0.0.7:8082/img/", "http://10.0.0.7:8082/img/"),
            ("http://10.0.0.70:8081/", "http://10.0.0.70:8081/"),
            ("https://10.0.0.7:8081/", "https://10.0.0.7:8081/"),
            ("/img/", "/img/"),
            ("http://cdn.example/img/", "http://cdn.example/img/"),
        ] {
            let mut r = redirect(location);
            rewrite_locations(&mut r, backend(), "shop.example");
            assert_eq!(r.headers.get("location"), Some(expected), "{location}");
            assert_eq!(
                r.headers.get("content-location"),
                Some(expected),
                "{location}"
            );
        }
        // Port 80 may be left out on either side.
        let mut r = redirect("http://app.internal/x");
        rewrite_locations(&mut r, "app.internal:80", "shop.example:8080");
        assert_eq!(
            r.headers.get("location"),
            Some("http://shop.example:8080/x")
        );
        // No Host to point at (HTTP/1.0 without one): left alone.
        let mut r = redirect("http://10.0.0.7:8081/");
        rewrite_locations(&mut r, backend(), "");
        assert_eq!(r.headers.get("location"), Some("http://10.0.0.7:8081/"));
    }

    #[test]
    fn the_client_host_comes_from_an_absolute_target_or_host() {
        assert_eq!(
            client_host(&req("GET /a HTTP/1.1\r\nHost: h:81\r\n\r\n")),
            "h:81"
        );
        let absolute = req("GET http://other:82/a HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(client_host(&absolute), "other:82");
        assert_eq!(client_host(&req("GET /a HTTP/1.0\r\n\r\n")), "");
    }

    #[test]
    fn fields_with_underscores_are_dropped() {
        let r = req("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer_Encoding: chunked\r\nX_Real_IP: 1.2.3.4\r\nX-Fine: 1\r\n\r\n");
        let mut out = rewrite_request(&r, peer(), backend(), id(), Framing::Length(5), false);
        drop_underscored_fields(&mut out.headers);
        assert!(!out.headers.contains("transfer_encoding"));
        assert!(!out.headers.contains("x_real_ip"));
        assert_eq!(out.headers.get("x-fine"), Some("1"));
        assert_eq!(out.headers.get("content-length"), Some("5"));
    }

    #[test]
    fn a_websocket_upgrade_is_forwarded_and_any_other_upgrade_dropped() {
        let ws = req("GET /chat HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
        let out = rewrite_request(&ws, peer(), backend(), id(), Framing::Empty, false);
        assert_eq!(
            out.headers.get_all("upgrade").collect::<Vec<_>>(),
            ["websocket"]
        );
        assert_eq!(
            out.headers.get_all("connection").collect::<Vec<_>>(),
            ["upgrade"]
        );
        assert_eq!(
            out.headers.get("sec-websocket-key"),
            Some("dGhlIHNhbXBsZSBub25jZQ==")
        );
        let h2c = req("GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n");
        let out = rewrite_request(&h2c, peer(), backend(), id(), Framing::Empty, true);
        for gone in ["upgrade", "connection", "http2-settings"] {
            assert!(!out.headers.contains(gone), "{gone} was forwarded");
        }
    }

    #[test]
    fn validation_replaces_the_clients_conditionals() {
        let r = req(
            "GET / HTTP/1.1\r\nHost: h\r\nIf-None-Match: \"mine\"\r\nIf-Modified-Since: x\r\n\r\n",
        );
        let mut out = rewrite_request(&r, peer(), backend(), id(), Framing::Empty, false);
        add_validators(&mut out, &[("If-None-Match".into(), "\"ours\"".into())]);
        assert_eq!(
            out.headers.get_all("if-none-match").collect::<Vec<_>>(),
            ["\"ours\""]
        );
        assert!(!out.headers.contains("if-modified-since"));
    }
}
