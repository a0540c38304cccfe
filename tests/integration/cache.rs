//! The disk cache end to end: the real proxy in front of scripted backends that count what
//! reaches them. Time passes by setting entry files' mtime back, never by sleeping.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, SystemTime};

use relevo::http::date::format_http_date;

use crate::support::*;

/// A complete 200 response with these extra fields and this body.
pub(crate) fn ok(fields: &str, body: &[u8]) -> Vec<u8> {
    let mut response = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{fields}\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body);
    response
}

/// The same, sent chunked in pieces of at most 64 KiB.
fn ok_chunked(fields: &str, body: &[u8]) -> Vec<u8> {
    let mut response =
        format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n{fields}\r\n").into_bytes();
    for chunk in body.chunks(64 * 1024) {
        response.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        response.extend_from_slice(chunk);
        response.extend_from_slice(b"\r\n");
    }
    response.extend_from_slice(b"0\r\n\r\n");
    response
}

/// `GET path` with extra request fields.
pub(crate) fn get_with(addr: std::net::SocketAddr, path: &str, fields: &str) -> Reply {
    let raw =
        format!("GET {path} HTTP/1.1\r\nHost: test.example\r\n{fields}Connection: close\r\n\r\n");
    request(addr, raw.as_bytes())
}

/// `METHOD path` with an empty body.
fn send(addr: std::net::SocketAddr, method: &str, path: &str) -> Reply {
    let raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: test.example\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    request(addr, raw.as_bytes())
}

pub(crate) fn x_cache(reply: &Reply) -> &str {
    reply.header("x-cache").unwrap_or("(none)")
}

/// The `n`th request the backend received, lower-cased, for matching field lines.
fn upstream(backend: &Backend, n: usize) -> String {
    String::from_utf8_lossy(&backend.requests()[n]).to_ascii_lowercase()
}

/// What a file of `len` bytes takes on the disk of `dir`: its allocated blocks (or its
/// length, if more), as the cache counts it.
fn on_disk(dir: &TempDir, len: usize) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let probe = dir.join("probe");
    std::fs::write(&probe, vec![b'x'; len]).unwrap();
    let meta = std::fs::metadata(&probe).unwrap();
    std::fs::remove_file(&probe).unwrap();
    (meta.blocks() * 512).max(meta.len())
}

#[test]
fn miss_then_hit_the_backend_sees_one_request() {
    let fields = "Content-Type: text/plain\r\nConnection: X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\n";
    let backend = Backend::fixed(&ok(fields, b"hello"));
    let (dir, proxy) = proxy_for(&[backend.addr], "");
    let first = get(proxy.addr, "/page?x=1");
    assert_eq!((first.status, x_cache(&first)), (200, "MISS"));
    assert_eq!(first.body, b"hello");
    let second = get(proxy.addr, "/page?x=1");
    assert_eq!((second.status, x_cache(&second)), (200, "HIT"));
    assert_eq!(second.body, b"hello");
    assert_eq!(second.header("content-type"), Some("text/plain"));
    assert_eq!(second.header("age"), Some("0"));
    assert_eq!(second.header("via"), Some("1.1 relevo"));
    assert_eq!(backend.requests().len(), 1);
    // One plain file, named by the SHA-1 of the effective request URI.
    let entries = cache_entries(&dir);
    let name = sha1_hex(b"http://test.example/page?x=1");
    assert_eq!(entries, [dir.join("cache").join(&name)]);
    let file = std::fs::read(&entries[0]).unwrap();
    assert!(file.starts_with(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"));
    assert!(file.ends_with(b"\r\n\r\nhello"));
    let text = String::from_utf8_lossy(&file).to_ascii_lowercase();
    for hop_by_hop in ["connection:", "x-hop:", "keep-alive:"] {
        assert!(!text.contains(hop_by_hop), "{hop_by_hop} was stored");
    }
    let log = proxy_log(&dir);
    assert!(log.contains("\"GET /page?x=1 HTTP/1.1\" -> "), "{log}");
    assert!(log.contains(" 200 MISS 5 B "), "{log}");
    assert!(log.contains(" -> - 200 HIT 5 B "), "{log}");
    // A different query is a different resource.
    assert_eq!(x_cache(&get(proxy.addr, "/page?x=2")), "MISS");
}

#[test]
fn an_entry_expires_after_cache_ttl() {
    let backend = Backend::fixed(&ok("", b"v"));
    let (dir, proxy) = proxy_for(&[backend.addr], "cache_ttl = 60\n");
    assert_eq!(x_cache(&get(proxy.addr, "/")), "MISS");
    age_cache(&dir, 59);
    let hit = get(proxy.addr, "/");
    assert_eq!(x_cache(&hit), "HIT");
    assert_eq!(hit.header("age"), Some("59"));
    age_cache(&dir, 61);
    assert_eq!(x_cache(&get(proxy.addr, "/")), "MISS");
    assert_eq!(x_cache(&get(proxy.addr, "/")), "HIT");
    assert_eq!(backend.requests().len(), 2);
}

#[test]
fn ttl_flag_overrides_cache_ttl() {
    let backend = Backend::fixed(&ok("", b"v"));
    let (dir, from_config) = proxy_for(&[backend.addr], "cache_ttl = 1000\n");
    assert_eq!(x_cache(&get(from_config.addr, "/")), "MISS");
    age_cache(&dir, 6);
    assert_eq!(x_cache(&get(from_config.addr, "/")), "HIT");
    drop(from_config);
    let config = format!("cache_ttl = 1000\n{}", backend_lines(&[backend.addr]));
    let flagged = proxy_with_args(&dir, &config, &["--ttl", "5"]);
    age_cache(&dir, 4);
    assert_eq!(x_cache(&get(flagged.addr, "/")), "HIT");
    age_cache(&dir, 6);
    assert_eq!(x_cache(&get(flagged.addr, "/")), "MISS");
    assert_eq!(backend.requests().len(), 2);
}

#[test]
fn ttl_zero_stores_only_what_the_origin_marks_fresh() {
    let backend = Backend::new(|request| {
        if request.starts_with(b"GET /marked") {
            ok("Cache-Control: max-age=60\r\n", b"m")
        } else {
            ok("ETag: \"x\"\r\n", b"u")
        }
    });
    let (_dir, proxy) = proxy_for(&[backend.addr], "cache_ttl = 0\n");
    for expected in ["MISS", "MISS"] {
        assert_eq!(x_cache(&get(proxy.addr, "/unmarked")), expected);
    }
    for expected in ["MISS", "HIT"] {
        assert_eq!(x_cache(&get(proxy.addr, "/marked")), expected);
    }
}

#[test]
fn max_age_wins_over_cache_ttl_and_s_maxage_over_max_age() {
    let backend = Backend::new(|request| match &request[..12] {
        b"GET /max-age" => ok("Cache-Control: max-age=100\r\n", b"a"),
        b"GET /shared " => ok("Cache-Control: max-age=5, s-maxage=100\r\n", b"s"),
        _ => ok("Cache-Control: s-maxage=5, max-age=100\r\n", b"t"),
    });
    let (dir, proxy) = proxy_for(&[backend.addr], "cache_ttl = 5\n");
    for path in ["/max-age", "/shared", "/short"] {
        assert_eq!(x_cache(&get(proxy.addr, path)), "MISS", "{path}");
    }
    age_cache(&dir, 50);
    assert_eq!(x_cache(&get(proxy.addr, "/max-age")), "HIT");
    assert_eq!(x_cache(&get(proxy.addr, "/shared")), "HIT");
    assert_eq!(x_cache(&get(proxy.addr, "/short")), "MISS");
    age_cache(&dir, 101);
    assert_eq!(x_cache(&get(proxy.addr, "/max-age")), "MISS");
    assert_eq!(x_cache(&get(proxy.addr, "/shared")), "MISS");
}

#[test]
fn expires_counts_from_date_and_an_invalid_one_is_stale() {
    let now = SystemTime::now();
    let date = format_http_date(now);
    let expires = format_http_date(now + Duration::from_secs(100));
    let fields = format!("Date: {date}\r\nExpires: {expires}\r\n");
    let backend = Backend::new(move |request| {
        if request.starts_with(b"GET /invalid") {
            ok(&format!("Date: {date}\r\nExpires: 0\r\n"), b"i")
        } else {
            ok(&fields, b"e")
        }
    });
    let (dir, proxy) = proxy_for(&[backend.addr], "cache_ttl = 5\n");
    assert_eq!(x_cache(&get(proxy.addr, "/expires")), "MISS");
    age_cache(&dir, 50);
    assert_eq!(x_cache(&get(proxy.addr, "/expires")), "HIT");
    age_cache(&dir, 101);
    assert_eq!(x_cache(&get(proxy.addr, "/expires")), "MISS");
    let before = cache_entries(&dir).len();
    assert_eq!(x_cache(&get(proxy.addr, "/invalid")), "MISS");
    assert_eq!(x_cache(&get(proxy.addr, "/invalid")), "MISS");
    assert_eq!(
        cache_entries(&dir).len(),
        before,
        "an expired response was stored"
    );
}

#[test]
fn no_store_private_and_vary_star_are_never_reused() {
    for fields in [
        "Cache-Control: no-store\r\n",
        "Cache-Control: No-Store, max-age=60\r\n",
        "Cache-Control: private\r\n",
        "Cache-Control: private, max-age=60\r\n",
        "Cache-Control: max-age=60\r\nVary: *\r\n",
    ] {
        let backend = Backend::fixed(&ok(fields, b"secret"));
        let (dir, proxy) = proxy_for(&[backend.addr], "");
        for _ in 0..2 {
            let reply = get(proxy.addr, "/");
            assert_eq!((reply.status, x_cache(&reply)), (200, "MISS"), "{fields}");
            assert_eq!(reply.body, b"secret");
        }
        assert_eq!(backend.requests().len(), 2, "{fields}");
        assert!(cache_listing(&dir).is_empty(), "{fields}");
    }
}

#[test]
fn no_cache_is_revalidated_before_every_reuse() {
    let backend = Backend::new(|request| {
        let text = String::from_utf8_lossy(request).to_ascii_lowercase();
        if text.contains("if-none-match: \"v1\"\r\n") {
            b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n".to_vec()
        } else {
            ok("Cache-Control: no-cache\r\nETag: \"v1\"\r\n", b"body")
        }
    });
    let (dir, proxy) = proxy_for(&[backend.addr], "");
    assert_eq!(x_cache(&get(proxy.addr, "/")), "MISS");
    for _ in 0..2 {
        let reply = get(proxy.addr, "/");
        assert_eq!((reply.status, x_cache(&reply)), (200, "REVALIDATED"));
        assert_eq!(reply.body, b"body");
    }
    assert_eq!(backend.requests().len(), 3);
    assert!(upstream(&backend, 2).contains("\r\nif-none-match: \"v1\"\r\n"));
    assert!(proxy_log(&dir).contains(" 200 REVALIDATED 4 B "));
}

#[test]
fn variants_named_by_vary_are_stored_side_by_side() {
    let backend = Backend::new(|request| {
        let text = String::from_utf8_lossy(request).to_ascii_lowercase();
        let encoding = text
            .lines()
            .find_map(|l| l.strip_prefix("accept-encoding: "))
            .unwrap_or("none")
            .to_string();
        ok(
            "Vary: Accept-Encoding\r\nCache-Control: max-age=60\r\n",
            encoding.as_bytes(),
        )
    });
    let (_dir, proxy) = proxy_for(&[backend.addr], "");
    let fetch = |encoding: &str| {
        let fields = match encoding {
            "none" => String::new(),
            e => format!("Accept-Encoding: {e}\r\n"),
        };
        let reply = get_with(proxy.addr, "/v", &fields);
        assert_eq!(reply.body, encoding.as_bytes());
        x_cache(&reply).to_string()
    };
    assert_eq!(fetch("gzip"), "MISS");
    assert_eq!(fetch("br"), "MISS");
    assert_eq!(fetch("gzip"), "HIT");
    assert_eq!(fetch("br"), "HIT");
    assert_eq!(fetch("none"), "MISS");
    assert_eq!(fetch("none"), "HIT");
    assert_eq!(backend.requests().len(), 3);
}

#[test]
fn head_is_answered_from_a_stored_get() {
    let backend = Backend::fixed(&ok("Cache-Control: max-age=60\r\n", b"0123456789"));
    let (dir, proxy) = proxy_for(&[backend.addr], "");
    let head = |path: &str| {
        let raw =
            format!("HEAD {path} HTTP/1.1\r\nHost: test.example\r\nConnection: close\r\n\r\n");
        exchange(proxy.addr, raw.as_bytes())
    };
    // A HEAD alone is forwarded and stores nothing.
    let raw = head("/h");
    assert!(raw.ends_with(b"\r\n\r\n"), "a HEAD response has no body");
    assert_eq!(x_cache(&parse_replies(&raw, &[true])[0]), "MISS");
    assert!(cache_entries(&dir).is_empty());
    assert_eq!(x_cache(&get(proxy.addr, "/h")), "MISS");
    let raw = head("/h");
    assert!(raw.ends_with(b"\r\n\r\n"), "a HEAD response has no body");
    let reply = &parse_replies(&raw, &[true])[0];
    assert_eq!((reply.status, x_cache(reply)), (200, "HIT"));
    assert_eq!(reply.header("content-length"), Some("10"));
    assert_eq!(backend.requests().len(), 2);
    assert!(upstream(&backend, 0).starts_with("head /h "));
}

/// A backend whose first answer carries `validator`; later requests get a 304 when they
/// carry `conditional`, or a new 200 when `changed`.
fn validating_backend(
    validator: &'static str,
    conditional: &'static str,
    changed: bool,
) -> Backend {
    let count = AtomicUsize::new(0);
    Backend::new(move |request| {
        let text = String::from_utf8_lossy(request).to_ascii_lowercase();
        let n = count.fetch_add(1, Ordering::SeqCst);
        if n == 0 {
            ok(
                &format!("Cache-Control: max-age=10\r\n{validator}\r\n"),
                b"one",
            )
        } else if changed {
            ok("Cache-Control: max-age=10\r\nETag: \"two\"\r\n", b"two")
        } else if text.contains(conditional) {
            b"HTTP/1.1 304 Not Modified\r\nCache-Control: max-age=10\r\nX-Extra: new\r\n\r\n"
                .to_vec()
        } else {
            ok("X-Unexpected: 1\r\n", b"unconditional")
        }
    })
}

fn revalidate(validator: &'static str, conditional: &'static str, changed: bool) {
    let backend = validating_backend(validator, conditional, changed);
    let (dir, proxy) = proxy_for(&[backend.addr], "");
    assert_eq!(x_cache(&get(proxy.addr, "/r")), "MISS");
    age_cache(&dir, 11);
    let reply = get(proxy.addr, "/r");
    assert!(
        upstream(&backend, 1).contains(conditional),
        "{}",
        upstream(&backend, 1)
    );
    if changed {
        assert_eq!(
            (x_cache(&reply), reply.body.as_slice()),
            ("MISS", &b"two"[..])
        );
    } else {
        assert_eq!(
            (x_cache(&reply), reply.body.as_slice()),
            ("REVALIDATED", &b"one"[..])
        );
        assert_eq!(reply.header("x-extra"), Some("new"));
        assert_eq!(reply.header("age"), Some("0"));
        assert_eq!(reply.header("content-length"), Some("3"));
        let file = std::fs::read(&cache_entries(&dir)[0]).unwrap();
        let text = String::from_utf8_lossy(&file);
        assert!(
            text.contains("\r\nX-Extra: new\r\n") && text.ends_with("\r\n\r\none"),
            "{text}"
        );
    }
    // Validated or replaced, the entry is fresh again.
    let again = get(proxy.addr, "/r");
    assert_eq!(x_cache(&again), "HIT");
    assert_eq!(again.body, if changed { &b"two"[..] } else { &b"one"[..] });
    assert_eq!(backend.requests().len(), 2);
}

#[test]
fn revalidation_with_etag_304_keeps_the_body() {
    revalidate("ETag: \"e1\"", "\r\nif-none-match: \"e1\"\r\n", false);
}

#[test]
fn revalidation_with_etag_200_replaces_the_entry() {
    revalidate("ETag: \"e1\"", "\r\nif-none-match: \"e1\"\r\n", true);
}

#[test]
fn revalidation_with_last_modified_304_keeps_the_body() {
    revalidate(
        "Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT",
        "\r\nif-modified-since: sun, 06 nov 1994 08:49:37 gmt\r\n",
        false,
    );
}

#[test]
fn revalidation_with_last_modified_200_replaces_the_entry() {
    revalidate(
        "Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT",
        "\r\nif-modified-since: sun, 06 nov 1994 08:49:37 gmt\r\n",
        true,
    );
}

#[test]
fn a_clients_conditional_request_is_answered_304_from_the_cache() {
    let modified = "Sun, 06 Nov 1994 08:49:37 GMT";
    let fields =
        format!("Cache-Control: max-age=60\r\nETag: \"c1\"\r\nLast-Modified: {modified}\r\n");
    let backend = Backend::fixed(&ok(&fields, b"content"));
    let (_dir, proxy) = proxy_for(&[backend.addr], "");
    assert_eq!(x_cache(&get(proxy.addr, "/c")), "MISS");
    let cases = [
        ("If-None-Match: \"c1\"\r\n".to_string(), 304),
        ("If-None-Match: W/\"c1\"\r\n".to_string(), 304),
        ("If-None-Match: \"other\"\r\n".to_string(), 200),
        (format!("If-Modified-Since: {modified}\r\n"), 304),
        (
            "If-Modified-Since: Sat, 05 Nov 1994 08:49:37 GMT\r\n".to_string(),
            200,
        ),
        // If-None-Match takes precedence over If-Modified-Since.
        (
            format!("If-None-Match: \"other\"\r\nIf-Modified-Since: {modified}\r\n"),
            200,
        ),
    ];
    for (fields, status) in cases {
        let reply = get_with(proxy.addr, "/c", &fields);
        assert_eq!((reply.status, x_cache(&reply)), (status, "HIT"), "{fields}");
        if status == 304 {
            assert!(reply.body.is_empty());
            assert_eq!(reply.header("etag"), Some("\"c1\""));
            assert_eq!(reply.header("content-length"), None);
        } else {
            assert_eq!(reply.body, b"content");
        }
    }
    assert_eq!(backend.requests().len(), 1);
}

#[test]
fn unsafe_methods_invalidate_the_uri_and_same_host_locations() {
    let backend = Backend::new(|request| {
        let line =
            String::from_utf8_lossy(&request[..request.iter().position(|&b| b == b'\r').unwrap()])
                .into_owned();
        match line.split(' ').collect::<Vec<_>>()[..] {
            ["GET", ..] => ok("Cache-Control: max-age=600\r\n", b"page"),
            [_, "/fails", _] => b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n".to_vec(),
            [_, "/moves", _] => {
                b"HTTP/1.1 201 Created\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n"
                    .to_vec()
            }
            _ => b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
        }
    });
    let (_dir, proxy) = proxy_for(&[backend.addr], "");
    for method in ["POST", "PUT", "DELETE", "PATCH", "PURGE-ISH"] {
        assert_eq!(x_cache(&get(proxy.addr, "/item")), "MISS", "{method}");
        assert_eq!(x_cache(&get(proxy.addr, "/item")), "HIT", "{method}");
        let reply = send(proxy.addr, method, "/item");
        assert_eq!((reply.status, x_cache(&reply)), (204, "BYPASS"), "{method}");
        assert_eq!(
            x_cache(&get(proxy.addr, "/item")),
            "MISS",
            "{method} did not invalidate"
        );
        let reply = send(proxy.addr, method, "/item");
        assert_eq!(reply.status, 204);
    }
    // Location on the same host goes too; an error response invalidates nothing.
    for path in ["/elsewhere", "/fails"] {
        assert_eq!(x_cache(&get(proxy.addr, path)), "MISS");
    }
    assert_eq!(send(proxy.addr, "POST", "/moves").status, 201);
    assert_eq!(send(proxy.addr, "POST", "/fails").status, 500);
    assert_eq!(x_cache(&get(proxy.addr, "/elsewhere")), "MISS");
    assert_eq!(x_cache(&get(proxy.addr, "/fails")), "HIT");
}

#[test]
fn hits_carry_age_and_an_upstream_age_counts() {
    let backend = Backend::fixed(&ok("Cache-Control: max-age=100\r\nAge: 30\r\n", b"aged"));
    let (dir, proxy) = proxy_for(&[backend.addr], "");
    let miss = get(proxy.addr, "/");
    assert_eq!((x_cache(&miss), miss.header("age")), ("MISS", Some("30")));
    age_cache(&dir, 20);
    let hit = get(proxy.addr, "/");
    assert_eq!(x_cache(&hit), "HIT");
    let age: u64 = hit.header("age").unwrap().parse().unwrap();
    assert!((50..55).contains(&age), "Age: {age}");
    age_cache(&dir, 71);
    assert_eq!(x_cache(&get(proxy.addr, "/")), "MISS");
}

#[test]
fn requests_with_authorization_are_not_answered_from_the_cache() {
    let backend = Backend::new(|request| {
        if request.starts_with(b"GET /public ") {
            ok("Cache-Control: public, max-age=60\r\n", b"for everyone")
        } else {
            ok("Cache-Control: max-age=60\r\n", b"for whoever asked")
        }
    });
    let (_dir, proxy) = proxy_for(&[backend.addr], "");
    let auth = "Authorization: Basic dXNlcjpwYXNz\r\n";
    assert_eq!(x_cache(&get(proxy.addr, "/plain")), "MISS");
    assert_eq!(x_cache(&get_with(proxy.addr, "/plain", auth)), "BYPASS");
    assert_eq!(backend.requests().len(), 2);
    assert!(upstream(&backend, 1).contains("\r\nauthorization: basic dxnlcjpwyxnz\r\n"));
    // A response to a request with Authorization is not stored either...
    assert_eq!(x_cache(&get_with(proxy.addr, "/private", auth)), "MISS");
    assert_eq!(x_cache(&get(proxy.addr, "/private")), "MISS");
    // ...unless it says public.
    assert_eq!(x_cache(&get_with(proxy.addr, "/public", auth)), "MISS");
    assert_eq!(x_cache(&get_with(proxy.addr, "/public", auth)), "HIT");
    assert_eq!(x_cache(&get(proxy.addr, "/public")), "HIT");
}

#[test]
fn a_binary_mebibyte_is_stored_and_served_byte_exact() {
    let body = pseudo_random(1 << 20, 7);
    let expected = sha1_hex(&body);
    let sized = ok("Content-Type: application/octet-stream\r\n", &body);
    let chunked = ok_chunked("Cache-Control: max-age=60\r\n", &body);
    let backend = Backend::new(move |request| {
        if request.starts_with(b"GET /chunked ") {
            chunked.clone()
        } else {
            sized.clone()
        }
    });
    let (dir, proxy) = proxy_for(&[backend.addr], "");
    for path in ["/blob.bin", "/chunked"] {
        for status in ["MISS", "HIT"] {
            let reply = get(proxy.addr, path);
            assert_eq!(x_cache(&reply), status, "{path}");
            assert!(reply.complete);
            assert_eq!(sha1_hex(&reply.body), expected, "{path} {status}");
        }
    }
    for entry in cache_entries(&dir) {
        let file = std::fs::read(entry).unwrap();
        assert!(file.ends_with(&body));
    }
    assert_eq!(backend.requests().len(), 2);
}

#[test]
fn a_backend_dying_mid_body_leaves_no_entry() {
    let backend = Backend::raw(|request, stream| {
        let head: &[u8] = if request.starts_with(b"GET /chunked ") {
            // A chunk of 100000 bytes (hex 186a0), cut at 50000.
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n186a0\r\n"
        } else {
            b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"
        };
        let _ = stream.write_all(head);
        let _ = stream.write_all(&[b'x'; 50_000]);
    });
    let (dir, proxy) = proxy_for(&[backend.addr], "");
    for path in ["/sized", "/chunked", "/sized"] {
        let reply = get(proxy.addr, path);
        assert!(!reply.complete, "{path}: a cut body must look cut");
        assert_eq!(x_cache(&reply), "MISS");
        assert!(
            cache_listing(&dir).is_empty(),
            "{path}: {:?}",
            cache_listing(&dir)
        );
    }
    assert_eq!(backend.requests().len(), 3);
}

#[test]
fn a_restarted_proxy_serves_what_was_stored_before() {
    let backend = Backend::fixed(&ok("Cache-Control: max-age=600\r\n", b"persistent"));
    let (dir, first) = proxy_for(&[backend.addr], "");
    assert_eq!(x_cache(&get(first.addr, "/kept")), "MISS");
    drop(first);
    drop(backend);
    let second = proxy(&dir, &backend_lines(&[dead_address()]));
    let reply = get(second.addr, "/kept");
    assert_eq!((reply.status, x_cache(&reply)), (200, "HIT"));
    assert_eq!(reply.body, b"persistent");
    // Anything else reaches the dead backend: 502, and the cache says what it did.
    let missing = get(second.addr, "/other");
    assert_eq!((missing.status, x_cache(&missing)), (502, "MISS"));
}

#[test]
fn a_corrupt_entry_is_a_miss_and_is_replaced() {
    let backend = Backend::fixed(&ok("Cache-Control: max-age=600\r\n", b"good body"));
    let (dir, proxy) = proxy_for(&[backend.addr], "");
    let garbage: [&[u8]; 3] = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\nshort",
        b"\x00\x01binary junk",
        b"",
    ];
    for (n, bytes) in garbage.iter().enumerate() {
        assert_eq!(x_cache(&get(proxy.addr, "/c")), "MISS");
        let entry = cache_entries(&dir).remove(0);
        std::fs::write(&entry, bytes).unwrap();
        let reply = get(proxy.addr, "/c");
        assert_eq!(
            (x_cache(&reply), reply.body.as_slice()),
            ("MISS", &b"good body"[..])
        );
        assert_eq!(x_cache(&get(proxy.addr, "/c")), "HIT");
        assert_eq!(backend.requests().len(), 2 * (n + 1));
        std::fs::remove_file(entry).unwrap();
    }
}

#[test]
fn fifty_concurrent_misses_make_one_backend_request() {
    // The backend holds its answer until all fifty requests have been sent to the proxy,
    // so without coalescing every one of them would reach it.
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let held = Arc::clone(&gate);
    let backend = Backend::raw(move |_, stream| {
        let (open, opened) = &*held;
        let open = open.lock().unwrap();
        let _open = opened
            .wait_timeout_while(open, IO_TIMEOUT, |open| !*open)
            .unwrap();
        let _ = stream.write_all(&ok("Cache-Control: max-age=60\r\n", b"popular"));
    });
    let (_dir, proxy) = proxy_for(&[backend.addr], "");
    let (sent, all_sent) = mpsc::channel();
    let clients: Vec<_> = (0..50)
        .map(|_| {
            let (sent, addr) = (sent.clone(), proxy.addr);
            thread::spawn(move || {
                let mut stream = connect(addr);
                stream
                    .write_all(
                        b"GET /hot HTTP/1.1\r\nHost: test.example\r\nConnection: close\r\n\r\n",
                    )
                    .unwrap();
                sent.send(()).unwrap();
                parse_replies(&read_to_close(&mut stream), &[false]).remove(0)
            })
        })
        .collect();
    for _ in 0..50 {
        all_sent.recv_timeout(IO_TIMEOUT).unwrap();
    }
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    let replies: Vec<Reply> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    assert!(replies
        .iter()
        .all(|r| r.status == 200 && r.body == b"popular"));
    let misses = replies.iter().filter(|r| x_cache(r) == "MISS").count();
    let hits = replies.iter().filter(|r| x_cache(r) == "HIT").count();
    assert_eq!((misses, hits), (1, 49));
    assert_eq!(backend.requests().len(), 1);
}

#[test]
fn cache_max_object_skips_and_cache_max_size_evicts_the_least_recently_used() {
    let response = |body: u8| {
        ok(
            "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\nCache-Control: max-age=600\r\n",
            &[body; 1000],
        )
    };
    let size = response(b'a').len();
    let backend = Backend::new(move |request| match request[5] {
        b'b' if request.starts_with(b"GET /big") => ok_chunked("", &[b'B'; 2000]),
        letter => response(letter),
    });
    let dir = TempDir::new("cache-limits");
    let config = format!(
        "cache_max_object = 1500\ncache_max_size = {}\n",
        on_disk(&dir, size) * 5 / 2
    );
    let proxy = proxy(&dir, &format!("{}{config}", backend_lines(&[backend.addr])));
    // Too big to store: relayed whole, every time.
    for _ in 0..2 {
        let reply = get(proxy.addr, "/big");
        assert_eq!((x_cache(&reply), reply.body.len()), ("MISS", 2000));
    }
    assert!(cache_listing(&dir).is_empty());
    // Two entries fit, three do not: reading `a` makes `b` the least recently used.
    assert_eq!(x_cache(&get(proxy.addr, "/a")), "MISS");
    assert_eq!(x_cache(&get(proxy.addr, "/b")), "MISS");
    assert_eq!(x_cache(&get(proxy.addr, "/a")), "HIT");
    assert_eq!(x_cache(&get(proxy.addr, "/c")), "MISS");
    eventually("the eviction", || cache_entries(&dir).len() == 2);
    let entries = cache_entries(&dir);
    for entry in &entries {
        // The stored file is the backend's response byte for byte.
        assert_eq!(std::fs::metadata(entry).unwrap().len(), size as u64);
    }
    assert_eq!(x_cache(&get(proxy.addr, "/a")), "HIT");
    assert_eq!(x_cache(&get(proxy.addr, "/c")), "HIT");
    assert_eq!(x_cache(&get(proxy.addr, "/b")), "MISS");
    assert!(proxy_log(&dir).contains("least recently used"));
}

#[test]
fn flush_cache_removes_entries_and_nothing_else() {
    let backend = Backend::fixed(&ok("Cache-Control: max-age=600\r\n", b"x"));
    let (dir, proxy) = proxy_for(&[backend.addr], "");
    for path in ["/1", "/2"] {
        assert_eq!(x_cache(&get(proxy.addr, path)), "MISS");
    }
    drop(proxy);
    let bytes: u64 = cache_entries(&dir)
        .iter()
        .map(|e| std::fs::metadata(e).unwrap().len())
        .sum();
    std::fs::write(dir.join("cache").join(".gitkeep"), b"").unwrap();
    std::fs::write(dir.join("cache").join(".tmp-leftover-1-2"), b"123").unwrap();
    let output = command_in(&dir, PROXY_BIN)
        .arg(dir.join("proxy.conf"))
        .arg("--flush-cache")
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let expected = format!(
        "removed 3 files ({} B) from {}",
        bytes + 3,
        dir.join("cache").display()
    );
    assert_eq!(stdout.trim(), expected);
    assert_eq!(cache_listing(&dir), [".gitkeep"]);
}

#[test]
fn cache_off_bypasses_and_stores_nothing() {
    let backend = Backend::fixed(&ok("Cache-Control: max-age=600\r\n", b"x"));
    let (dir, proxy) = proxy_for(&[backend.addr], "cache = off\n");
    for _ in 0..2 {
        assert_eq!(x_cache(&get(proxy.addr, "/")), "BYPASS");
    }
    assert_eq!(backend.requests().len(), 2);
    assert!(!dir.join("cache").exists());
    assert!(proxy_log(&dir).contains(" 200 BYPASS 1 B "));
}

#[test]
fn request_directives_the_cache_does_not_know_change_nothing() {
    let backend = Backend::fixed(&ok("Cache-Control: max-age=600, x-unknown=1\r\n", b"x"));
    let (_dir, proxy) = proxy_for(&[backend.addr], "");
    assert_eq!(x_cache(&get(proxy.addr, "/")), "MISS");
    let reply = get_with(proxy.addr, "/", "Cache-Control: nothing-to-see-here\r\n");
    assert_eq!(x_cache(&reply), "HIT");
    // A request's own no-cache is honoured: without a validator, that means a new fetch.
    let reply = get_with(proxy.addr, "/", "Cache-Control: no-cache\r\n");
    assert_eq!(x_cache(&reply), "MISS");
    assert_eq!(backend.requests().len(), 2);
}

#[test]
fn hostile_requests_cannot_escape_or_poison_the_cache() {
    let backend = Backend::new(|request| {
        let line_end = request.iter().position(|&b| b == b'\r').unwrap();
        let mut body = request[..line_end].to_vec();
        body.extend_from_slice(b"\n");
        ok("Cache-Control: max-age=600\r\n", &body)
    });
    let (dir, proxy) = proxy_for(&[backend.addr], "");
    // Absolute-form and origin-form name the same resource; the host is case-insensitive.
    let absolute = b"GET http://TEST.example/same HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_eq!(x_cache(&request(proxy.addr, absolute)), "MISS");
    assert_eq!(x_cache(&get(proxy.addr, "/same")), "HIT");
    // Another host is another resource, whatever the path.
    let other = b"GET /same HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n";
    assert_eq!(x_cache(&request(proxy.addr, other)), "MISS");
    // A path that looks like a file path is only ever a key: the entry stays a hex name
    // inside the cache directory.
    assert_eq!(x_cache(&get(proxy.addr, "/../../../etc/passwd")), "MISS");
    assert!(cache_listing(&dir).iter().all(|n| n.len() == 40));
    // A request with a body is not answered from the cache; a Range is, from the stored
    // complete response.
    let with_body = b"GET /same HTTP/1.1\r\nHost: test.example\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc";
    assert_eq!(x_cache(&request(proxy.addr, with_body)), "BYPASS");
    let ranged = get_with(proxy.addr, "/same", "Range: bytes=0-2\r\n");
    assert_eq!((ranged.status, x_cache(&ranged)), (206, "HIT"));
    assert_eq!(ranged.text(), "GET");
    assert_eq!(backend.requests().len(), 4);
}

// Issue 12, items 6 and 9: the cache counts what its files take on disk, keeps the count and
// the eviction order in memory, evicts off the request path, and survives a full disk.

/// The cache's entries and bytes, as the status page reports them.
fn status_cache(addr: std::net::SocketAddr) -> (u64, u64) {
    (status_number(addr, "entries"), status_number(addr, "bytes"))
}

/// The first number called `name` in the status page's JSON.
fn status_number(addr: std::net::SocketAddr, name: &str) -> u64 {
    let text = get(addr, "/relevo/status?format=json").text();
    text.split_once(&format!("\"{name}\":"))
        .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// What the entry files in `dir/cache` take on disk, in all.
fn entries_on_disk(dir: &TempDir) -> u64 {
    use std::os::unix::fs::MetadataExt;
    cache_entries(dir)
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| (m.blocks() * 512).max(m.len()))
        .sum()
}

/// A backend answering every path with a 1000-byte body fresh for ten minutes.
fn thousand_bytes() -> Backend {
    Backend::new(|_| ok("Cache-Control: max-age=600\r\n", &[b'x'; 1000]))
}

/// A proxy whose cache holds about sixteen 1000-byte responses by what they take on disk,
/// after 200 of them were stored. Admission is off, so every one is stored and most evicted.
fn small_cache_after_200_urls(dir: &TempDir, backend: &Backend) -> (Process, u64) {
    let limit = 16 * on_disk(dir, 1200);
    let config = format!(
        "{}cache_max_size = {limit}\ncache_admission = off\n",
        backend_lines(&[backend.addr])
    );
    let proxy = proxy(dir, &config);
    for n in 0..200 {
        let reply = get(proxy.addr, &format!("/page?n={n}"));
        assert_eq!((reply.status, x_cache(&reply)), (200, "MISS"));
    }
    (proxy, limit)
}

#[test]
fn eviction_keeps_a_small_cache_under_its_limit_counted_in_allocated_blocks() {
    let backend = thousand_bytes();
    let dir = TempDir::new("cache-blocks");
    let (proxy, limit) = small_cache_after_200_urls(&dir, &backend);
    eventually("eviction down to the limit", || {
        entries_on_disk(&dir) <= limit
    });
    let kept = cache_entries(&dir).len();
    assert!((10..=16).contains(&kept), "{kept} entries kept");
    // What the proxy counts is what the files take, not their length (about a quarter).
    eventually("a count that matches the disk", || {
        status_cache(proxy.addr) == (cache_entries(&dir).len() as u64, entries_on_disk(&dir))
    });
    // The most recently stored stay, the oldest went.
    assert_eq!(x_cache(&get(proxy.addr, "/page?n=199")), "HIT");
    assert_eq!(x_cache(&get(proxy.addr, "/page?n=0")), "MISS");
}

#[test]
fn eviction_is_logged_in_summary_not_one_line_per_file() {
    let backend = thousand_bytes();
    let dir = TempDir::new("cache-evict-log");
    let (_proxy, limit) = small_cache_after_200_urls(&dir, &backend);
    eventually("eviction down to the limit", || {
        entries_on_disk(&dir) <= limit
    });
    let log = proxy_log(&dir);
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("evicted")).collect();
    // About 185 files went; the first batch is reported at once, the others at most once
    // every ten seconds, in one line.
    assert!((1..=2).contains(&lines.len()), "{lines:#?}");
    assert!(
        lines[0].contains(" INFO  cache: evicted ")
            && lines[0].contains(" B, least recently used) in 1 batch, "),
        "{}",
        lines[0]
    );
}

#[test]
fn a_restart_serves_its_first_requests_while_the_entries_are_counted() {
    // Enough files that counting them takes far longer than a request on loopback (here
    // about 300 ms against 10 ms for the two requests).
    const FILES: usize = 30_000;
    let backend = thousand_bytes();
    let (dir, first) = proxy_for(&[backend.addr], "");
    assert_eq!(x_cache(&get(first.addr, "/kept")), "MISS");
    drop(first);
    // Empty files named like entries are counted like any (and removed as malformed if
    // ever looked up).
    let cache = dir.join("cache");
    for n in 0..FILES {
        std::fs::write(cache.join(sha1_hex(n.to_string().as_bytes())), b"").unwrap();
    }
    std::fs::remove_file(dir.join("proxy.log")).unwrap();
    // The same directory: the restarted proxy finds the entries of the first.
    let second = proxy(&dir, &backend_lines(&[backend.addr]));
    assert_eq!(x_cache(&get(second.addr, "/kept")), "HIT");
    assert_eq!(x_cache(&get(second.addr, "/new")), "MISS");
    let census = format!("cache: {} entries (", FILES + 2);
    eventually("the census", || proxy_log(&dir).contains(&census));
    let log = proxy_log(&dir);
    let served = log
        .find("\"GET /new HTTP/1.1\"")
        .expect("the request's log line");
    assert!(
        served < log.find(&census).unwrap(),
        "answered before the census ended:\n{log}"
    );
    assert_eq!(x_cache(&get(second.addr, "/new")), "HIT");
    assert_eq!(status_cache(second.addr).0, FILES as u64 + 2);
}

#[test]
fn entries_removed_behind_the_proxys_back_are_forgotten_and_recounted() {
    let backend = thousand_bytes();
    let (dir, proxy) = proxy_for(&[backend.addr], "");
    for n in 0..5 {
        assert_eq!(x_cache(&get(proxy.addr, &format!("/r?n={n}"))), "MISS");
    }
    assert_eq!(status_cache(proxy.addr), (5, entries_on_disk(&dir)));
    let flush = command_in(&dir, PROXY_BIN)
        .arg(dir.join("proxy.conf"))
        .arg("--flush-cache")
        .output()
        .unwrap();
    assert!(flush.status.success());
    // One lookup that misses an entry the proxy knew is enough to re-count them all.
    assert_eq!(x_cache(&get(proxy.addr, "/r?n=0")), "MISS");
    eventually("the re-count", || {
        status_cache(proxy.addr) == (1, entries_on_disk(&dir))
    });
}

#[test]
fn a_full_cache_stores_urls_asked_for_again_not_one_off_urls() {
    let backend = thousand_bytes();
    let dir = TempDir::new("cache-admission");
    let limit = 16 * on_disk(&dir, 1200);
    let config = format!(
        "{}cache_max_size = {limit}\nlog_level = debug\n",
        backend_lines(&[backend.addr])
    );
    let proxy = proxy(&dir, &config);
    // 200 URLs asked for once each: the first fill the cache, the others are relayed but
    // not stored.
    for n in 0..200 {
        let reply = get(proxy.addr, &format!("/once?n={n}"));
        assert_eq!((reply.status, x_cache(&reply)), (200, "MISS"));
        assert_eq!(reply.body.len(), 1000);
    }
    eventually("a cache within its limit", || {
        entries_on_disk(&dir) <= limit
    });
    let stored = cache_entries(&dir).len();
    assert!((10..=16).contains(&stored), "{stored} entries");
    let not_admitted = status_number(proxy.addr, "not_admitted");
    assert!(not_admitted >= 170, "{not_admitted} of 200 not admitted");
    let log = proxy_log(&dir);
    assert!(
        log.contains("cache: \"http://test.example/once?n=199\" not admitted: the cache is full"),
        "{log}"
    );
    // Four URLs asked for again and again: stored at their second request, hits from then
    // on, in place of the least recently used of the one-off URLs.
    for round in 0..4 {
        for n in 0..4 {
            let reply = get(proxy.addr, &format!("/again?n={n}"));
            let expected = if round < 2 { "MISS" } else { "HIT" };
            assert_eq!(x_cache(&reply), expected, "round {round}, /again?n={n}");
        }
    }
    let asked = |path: &str| {
        let line = format!("GET {path} ");
        (backend.requests().iter())
            .filter(|r| r.starts_with(line.as_bytes()))
            .count()
    };
    assert_eq!(asked("/again?n=0"), 2);
    for n in 0..4 {
        let name = sha1_hex(format!("http://test.example/again?n={n}").as_bytes());
        assert!(dir.join("cache").join(name).exists(), "/again?n={n}");
    }
    eventually("a cache within its limit", || {
        entries_on_disk(&dir) <= limit
    });
    assert_eq!(status_number(proxy.addr, "not_admitted"), not_admitted + 4);
}

/// `unshare` arguments for a user and mount namespace of its own: a mount made inside is
/// seen by nothing outside and goes away with the process, and no privilege is needed where
/// unprivileged user namespaces are allowed.
const OWN_NAMESPACE: [&str; 3] = ["--user", "--map-root-user", "--mount"];

/// Mounts a tmpfs of `size` bytes on `$1`, then runs the rest of the arguments.
const MOUNT_THEN_RUN: &str = "mount -t tmpfs -o size=\"$1\" tmpfs \"$2\" && shift 2 && exec \"$@\"";

/// The real proxy with its cache directory on a tmpfs of `size` bytes, or None (after
/// `skip_or_fail`) when this system does not let us mount one (no `unshare`, or no user
/// namespaces).
fn proxy_on_a_small_disk(dir: &TempDir, config: &str, size: u64) -> Option<Process> {
    let unshare = external_program("unshare")?;
    let cache = dir.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let probe = command_in(dir, &unshare)
        .args(OWN_NAMESPACE)
        .args(["sh", "-c", MOUNT_THEN_RUN, "sh", "4k"])
        .arg(&cache)
        .arg("true")
        .output();
    if !probe.is_ok_and(|out| out.status.success()) {
        skip_or_fail("full disk: cannot mount a tmpfs in a user namespace (unshare -rm)");
        return None;
    }
    let conf = proxy_config(dir, config);
    let mut cmd = command_in(dir, &unshare);
    cmd.args(OWN_NAMESPACE)
        .args(["sh", "-c", MOUNT_THEN_RUN, "sh", &size.to_string()])
        .arg(&cache)
        .arg(PROXY_BIN)
        .arg(&conf);
    Some(Process::start(cmd))
}

#[test]
fn a_full_cache_disk_evicts_and_goes_on_storing() {
    let backend = thousand_bytes();
    let dir = TempDir::new("cache-full-disk");
    // 64 pages of disk: about 60 entries, where the limit alone would allow thousands.
    let config = format!(
        "{}cache_max_size = 100000000\n",
        backend_lines(&[backend.addr])
    );
    let Some(proxy) = proxy_on_a_small_disk(&dir, &config, 256 * 1024) else {
        return;
    };
    for n in 0..150 {
        let path = format!("/full?n={n}");
        assert_eq!(x_cache(&get(proxy.addr, &path)), "MISS", "{path}");
        assert_eq!(x_cache(&get(proxy.addr, &path)), "HIT", "{path}");
    }
    let log = proxy_log(&dir);
    assert!(log.contains("cache: the disk is full: evicted "), "{log}");
}
