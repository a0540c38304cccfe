//! Bodies above the splice threshold (`splice_min_body`, set to 256 KiB here, 64 MiB by
//! default, so the bodies stay small): response bodies framed by Content-Length and
//! large chunks of chunked ones, which the proxy moves socket to socket in the kernel when it
//! does not store them (issue 17), and uploads (still copied). They must arrive byte-exact,
//! end exactly where their framing says (the backend connection is reused after them), show
//! a truncation as one, store nothing when cut, and time out when either side stalls.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::*;

/// A body size well above the threshold, and not a multiple of the 64 KiB rounds.
const LARGE: usize = 3 * 1024 * 1024 + 4321;

/// A 200 with `body` framed by Content-Length.
fn sized(body: &[u8]) -> Vec<u8> {
    let mut response =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    response.extend_from_slice(body);
    response
}

/// Reads one request head from `stream` (the backend's side of a reused connection).
fn read_head(stream: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while find(&head, b"\r\n\r\n").is_none() {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    head
}

#[test]
fn a_large_body_arrives_byte_exact_and_its_backend_connection_is_reused() {
    let body = pseudo_random(LARGE, 17);
    let first = sized(&body);
    // One connection answers two requests: the second only if the first body ended exactly
    // where its Content-Length said (a byte more or less and the second head is garbage).
    let backend = Backend::raw(move |_, stream| {
        stream.write_all(&first).unwrap();
        let next = read_head(stream);
        assert!(next.starts_with(b"GET /second "), "{next:?}");
        stream.write_all(&sized(b"second")).unwrap();
    });
    let (_dir, proxy) = proxy_for(&[backend.addr], "splice_min_body = 262144\ncache = off\n");
    let raw = exchange(
        proxy.addr,
        b"GET /first HTTP/1.1\r\nHost: t\r\n\r\nGET /second HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let replies = parse_replies(&raw, &[false, false]);
    assert_eq!(replies.len(), 2);
    assert!(replies[0].complete);
    assert_eq!(replies[0].body.len(), LARGE);
    assert_eq!(sha1_hex(&replies[0].body), sha1_hex(&body));
    assert_eq!(replies[1].body, b"second");
    assert_eq!(
        backend.requests().len(),
        1,
        "one backend connection for both"
    );
}

#[test]
fn a_large_chunked_body_and_a_large_upload_arrive_byte_exact() {
    let body = pseudo_random(LARGE, 18);
    let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for part in body.chunks(1024 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        chunked.extend_from_slice(part);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let backend = Backend::fixed(&chunked);
    let (_dir, proxy) = proxy_for(&[backend.addr], "splice_min_body = 262144\ncache = off\n");
    let reply = get(proxy.addr, "/chunked");
    assert!(reply.complete);
    assert_eq!(sha1_hex(&reply.body), sha1_hex(&body));

    let mut upload = format!(
        "POST /up HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {LARGE}\r\n\r\n"
    )
    .into_bytes();
    upload.extend_from_slice(&body);
    assert_eq!(request(proxy.addr, &upload).status, 200);
    let received = &backend.requests()[1];
    let head_end = find(received, b"\r\n\r\n").unwrap() + 4;
    assert_eq!(sha1_hex(&received[head_end..]), sha1_hex(&body));
}

#[test]
fn a_backend_closing_mid_body_above_the_threshold_truncates_and_stores_nothing() {
    // Relayed without storing, so spliced: sized, cacheable but above cache_max_object; and
    // chunked (its size unknown, it would be stored while relayed) with `no-store`, cut
    // inside a chunk above the threshold.
    let part = pseudo_random(1024 * 1024, 19);
    let backend = Backend::raw(move |request, stream| {
        let framing = if request.starts_with(b"GET /chunked ") {
            format!("Cache-Control: no-store\r\nTransfer-Encoding: chunked\r\n\r\n{LARGE:x}\r\n")
        } else {
            format!("Cache-Control: max-age=600\r\nContent-Length: {LARGE}\r\n\r\n")
        };
        let head = format!("HTTP/1.1 200 OK\r\n{framing}");
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(&part);
    });
    let (dir, proxy) = proxy_for(
        &[backend.addr],
        "splice_min_body = 262144\ncache_max_object = 2097152\n",
    );
    for path in ["/sized", "/chunked"] {
        let pipelined =
            format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\nGET /next HTTP/1.1\r\nHost: t\r\n\r\n");
        let raw = exchange(proxy.addr, pipelined.as_bytes());
        let replies = parse_replies(&raw, &[false]);
        assert_eq!(
            replies.len(),
            1,
            "{path}: the connection ends after the cut"
        );
        assert!(!replies[0].complete, "{path}: a cut body must look cut");
        assert_eq!(
            replies[0].body.len(),
            1024 * 1024,
            "{path}: what came is passed on"
        );
        assert!(cache_listing(&dir).is_empty(), "{:?}", cache_listing(&dir));
    }
}

#[test]
fn a_backend_stalling_mid_body_above_the_threshold_times_out() {
    let backend = Backend::raw(|_, stream| {
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {LARGE}\r\n\r\n");
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(&[b'x'; 512 * 1024]);
        // Silent, connection open, until the proxy gives up and closes it.
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    });
    let (_dir, proxy) = proxy_for(
        &[backend.addr],
        "splice_min_body = 262144\ncache = off\nupstream_timeout = 1\n",
    );
    let started = Instant::now();
    let reply = get(proxy.addr, "/stall");
    assert!(!reply.complete, "a stalled body must look cut");
    assert_eq!(reply.body.len(), 512 * 1024);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "waited {:?}",
        started.elapsed()
    );
}

#[test]
fn a_client_that_stops_reading_a_large_body_times_out() {
    let body = pseudo_random(64 * 1024 * 1024, 20);
    let backend = Backend::fixed(&sized(&body));
    let (dir, proxy) = proxy_for(
        &[backend.addr],
        "splice_min_body = 262144\ncache = off\nclient_timeout = 1\n",
    );
    let mut client = connect(proxy.addr);
    client
        .write_all(b"GET /never-read HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // The client reads nothing: the proxy's writes stall once the socket buffers are full.
    eventually("the log line of /never-read", || {
        proxy_log(&dir).contains("GET /never-read")
    });
    let log = proxy_log(&dir);
    let line = log.lines().find(|l| l.contains("/never-read")).unwrap();
    assert!(line.contains("client timed out"), "{line}");
    drop(client);
}
