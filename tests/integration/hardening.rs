//! Hostile clients and failing backends: one test per rule, named for the behaviour, with
//! the RFC section it enforces. Scripted backends record exactly the bytes they received.
//! The cache is off: these tests are about forwarding and backend failures.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// A backend that accepts, reads the request and closes without answering.
fn hanging_up() -> Backend {
    Backend::raw(|_, stream| {
        let _ = stream.shutdown(std::net::Shutdown::Both);
    })
}

#[test]
fn rfc_9110_9_2_2_an_idempotent_request_is_retried_on_the_next_backend() {
    let broken = hanging_up();
    let good = Backend::fixed(OK);
    let (_dir, proxy) = proxy_for(&[broken.addr, good.addr], "cache = off\n");
    let reply = get(proxy.addr, "/retry-me");
    assert_eq!(reply.status, 200);
    assert_eq!(broken.requests().len(), 1);
    assert_eq!(good.requests().len(), 1);
}

#[test]
fn rfc_9110_9_2_2_a_put_with_a_small_body_is_replayed_on_the_next_backend() {
    let broken = hanging_up();
    let good = Backend::fixed(OK);
    let (_dir, proxy) = proxy_for(&[broken.addr, good.addr], "cache = off\n");
    let reply = request(
        proxy.addr,
        b"PUT /doc HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    assert_eq!(reply.status, 200);
    assert!(good.only_request().ends_with("\r\n\r\nhello"));
}

#[test]
fn a_small_chunked_upload_reaches_the_backend_with_our_content_length() {
    let backend = Backend::fixed(OK);
    let (_dir, proxy) = proxy_for(&[backend.addr], "cache = off\n");
    let reply = request(
        proxy.addr,
        b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
          3\r\nabc\r\n4;x=1\r\ndefg\r\n0\r\nTrailer: dropped\r\n\r\n",
    );
    assert_eq!(reply.status, 200);
    let seen = backend.only_request();
    assert!(seen.contains("\r\nContent-Length: 7\r\n"), "{seen}");
    assert!(
        !seen.to_ascii_lowercase().contains("transfer-encoding"),
        "{seen}"
    );
    assert!(seen.ends_with("\r\n\r\nabcdefg"), "{seen}");
}

#[test]
fn rfc_9110_9_2_2_a_post_is_never_sent_twice() {
    let broken = hanging_up();
    let good = Backend::fixed(OK);
    let (_dir, proxy) = proxy_for(&[broken.addr, good.addr], "cache = off\n");
    let reply = request(
        proxy.addr,
        b"POST /pay HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nConnection: close\r\n\r\n100",
    );
    assert_eq!(reply.status, 502);
    assert_eq!(broken.requests().len(), 1);
    assert!(
        good.requests().is_empty(),
        "the POST was sent a second time"
    );
}

#[test]
fn a_failing_backend_is_marked_down_and_skipped_until_fail_timeout() {
    let broken = hanging_up();
    let good = Backend::fixed(OK);
    let (_dir, proxy) = proxy_for(
        &[broken.addr, good.addr],
        "cache = off\nmax_fails = 1\nfail_timeout = 30\n",
    );
    for _ in 0..6 {
        assert_eq!(get(proxy.addr, "/").status, 200);
    }
    assert_eq!(
        broken.requests().len(),
        1,
        "a down backend still got traffic"
    );
    assert_eq!(good.requests().len(), 6);
}

#[test]
fn a_backend_comes_back_after_fail_timeout() {
    let flaky_calls = Arc::new(AtomicUsize::new(0));
    let calls = Arc::clone(&flaky_calls);
    // Fails its first request, then answers.
    let flaky = Backend::raw(move |_, stream| {
        if calls.fetch_add(1, Ordering::SeqCst) > 0 {
            let _ = stream.write_all(OK);
        }
    });
    let good = Backend::fixed(OK);
    let (_dir, proxy) = proxy_for(
        &[flaky.addr, good.addr],
        "cache = off\nfail_timeout = 0.2\n",
    );
    assert_eq!(get(proxy.addr, "/").status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while flaky.requests().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the backend never got traffic again"
        );
        assert_eq!(get(proxy.addr, "/").status, 200);
    }
}

#[test]
fn when_every_backend_is_down_they_are_still_tried() {
    let broken = hanging_up();
    let (_dir, proxy) = proxy_for(&[broken.addr], "cache = off\nfail_timeout = 60\n");
    assert_eq!(get(proxy.addr, "/").status, 502);
    assert_eq!(get(proxy.addr, "/").status, 502);
    assert_eq!(broken.requests().len(), 2, "the down backend was not tried");
}

#[test]
fn rfc_9112_2_2_a_slowloris_client_is_cut_off_with_408() {
    let good = Backend::fixed(OK);
    let (_dir, proxy) = proxy_for(&[good.addr], "cache = off\nclient_timeout = 0.5\n");
    let mut stream = connect(proxy.addr);
    let mut dripper = stream.try_clone().unwrap();
    // One byte every 50 ms: each read is well inside client_timeout, the whole head is not.
    let drip = std::thread::spawn(move || {
        for &b in b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if dripper.write_all(&[b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let started = Instant::now();
    let raw = read_to_close(&mut stream);
    let replies = parse_replies(&raw, &[false]);
    assert_eq!(replies[0].status, 408);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    drop(stream);
    drip.join().unwrap();
    assert!(good.requests().is_empty());
}

#[test]
fn rfc_9110_15_2_interim_responses_are_relayed_and_the_final_one_delivered() {
    let backend = Backend::fixed(
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
          HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal",
    );
    let (_dir, proxy) = proxy_for(&[backend.addr], "cache = off\n");
    let raw = exchange(
        proxy.addr,
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let replies = parse_replies(&raw, &[false]);
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [103, 200]);
    assert_eq!(replies[1].text(), "final");
    // An HTTP/1.0 client cannot take interim responses (RFC 9110 §15.2): only the final one.
    let raw = exchange(proxy.addr, b"GET / HTTP/1.0\r\n\r\n");
    let statuses: Vec<u16> = parse_replies(&raw, &[false])
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [200]);
}

#[test]
fn rfc_9112_6_3_content_length_with_chunked_from_a_backend_is_read_as_chunked() {
    let backend = Backend::fixed(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nchunks\r\n0\r\n\r\n",
    );
    let (_dir, proxy) = proxy_for(&[backend.addr], "cache = off\n");
    let reply = get(proxy.addr, "/");
    assert_eq!(reply.text(), "chunks");
    assert!(reply.header("content-length").is_none());
}

#[test]
fn a_backend_header_section_over_the_limit_is_502() {
    let mut huge = b"HTTP/1.1 200 OK\r\n".to_vec();
    huge.extend_from_slice(format!("X-Big: {}\r\n", "b".repeat(5000)).as_bytes());
    huge.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    let backend = Backend::fixed(&huge);
    let (_dir, proxy) = proxy_for(
        &[backend.addr],
        "cache = off\nmax_response_header_bytes = 4096\n",
    );
    assert_eq!(get(proxy.addr, "/").status, 502);
}

#[test]
fn rfc_9112_7_1_malformed_chunked_request_bodies_are_400_and_closed() {
    for body in [
        &b"zz\r\nhello\r\n0\r\n\r\n"[..],
        b"5\r\nhelloXX0\r\n\r\n",
        b"5;\x01\r\nhello\r\n0\r\n\r\n",
        b"5\nhello\r\n0\r\n\r\n",
    ] {
        let backend = Backend::fixed(OK);
        let (_dir, proxy) = proxy_for(&[backend.addr], "cache = off\n");
        let mut raw = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        raw.extend_from_slice(body);
        raw.extend_from_slice(b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n");
        let replies = parse_replies(&exchange(proxy.addr, &raw), &[false]);
        assert_eq!(replies.len(), 1, "{body:?}");
        assert_eq!(replies[0].status, 400, "{body:?}");
        // Small bodies are read whole before a backend is contacted: it sees nothing at all.
        assert!(
            backend.requests().is_empty(),
            "{body:?}: part of it reached the backend"
        );
    }
}

#[test]
fn rfc_9112_6_1_transfer_encoding_on_http_1_0_is_400() {
    let backend = Backend::fixed(OK);
    let (_dir, proxy) = proxy_for(&[backend.addr], "cache = off\n");
    let reply = request(
        proxy.addr,
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    assert_eq!(reply.status, 400);
    assert!(backend.requests().is_empty());
}

#[test]
fn a_client_leaving_mid_response_affects_nothing_else() {
    let mut big = b"HTTP/1.1 200 OK\r\nContent-Length: 16777216\r\n\r\n".to_vec();
    big.resize(big.len() + (16 << 20), b'z');
    let backend = Backend::fixed(&big);
    let (dir, proxy) = proxy_for(&[backend.addr], "cache = off\n");
    let mut leaver = connect(proxy.addr);
    leaver
        .write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut some = [0u8; 4096];
    leaver.read_exact(&mut some).unwrap();
    drop(leaver);
    let reply = get(proxy.addr, "/big");
    assert_eq!(reply.body.len(), 16 << 20);
    drop(proxy);
    let log = std::fs::read_to_string(dir.join("proxy.log")).unwrap();
    assert!(
        log.contains("client connection"),
        "the departure was not logged:\n{log}"
    );
}

/// A backend that answers probes of `/health` with 200 or 503 as `healthy` says, reports
/// each probe on a channel, and answers every other request with 200.
fn probed(healthy: Arc<std::sync::atomic::AtomicBool>) -> (Backend, std::sync::mpsc::Receiver<()>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let backend = Backend::raw(move |request, stream| {
        if request.starts_with(b"GET /health ") {
            let up = healthy.load(Ordering::SeqCst);
            let status = if up {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            let _ = write!(stream, "HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
            let _ = tx.lock().unwrap().send(());
        } else {
            let _ = stream.write_all(OK);
        }
    });
    (backend, rx)
}

#[test]
fn active_health_checks_take_a_backend_out_and_bring_it_back() {
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (sick, probes) = probed(Arc::clone(&healthy));
    let good = Backend::fixed(OK);
    let (dir, proxy) = proxy_for(
        &[sick.addr, good.addr],
        "cache = off\nhealth_check = /health\nhealth_interval = 0.05\n",
    );
    let wait_probes = |n: usize| {
        for _ in 0..n {
            probes
                .recv_timeout(IO_TIMEOUT)
                .expect("the backend was not probed");
        }
    };
    // Probes run one after another: once the second has arrived, the first was recorded.
    wait_probes(2);
    let before = sick.requests().len();
    for _ in 0..4 {
        assert_eq!(get(proxy.addr, "/page").status, 200);
    }
    let real: Vec<_> = sick.requests()[before..]
        .iter()
        .filter(|r| r.starts_with(b"GET /page"))
        .cloned()
        .collect();
    assert!(
        real.is_empty(),
        "a backend failing its health check got traffic"
    );
    healthy.store(true, Ordering::SeqCst);
    wait_probes(2);
    for _ in 0..4 {
        assert_eq!(get(proxy.addr, "/page").status, 200);
    }
    let pages = sick
        .requests()
        .iter()
        .filter(|r| r.starts_with(b"GET /page"))
        .count();
    assert_eq!(
        pages, 2,
        "the recovered backend should take half the traffic"
    );
    drop(proxy);
    let log = std::fs::read_to_string(dir.join("proxy.log")).unwrap();
    assert!(
        log.contains(&format!(
            "backend {} is down (health check: answered 503)",
            sick.addr
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!("backend {} is up (health check)", sick.addr)),
        "{log}"
    );
}

#[test]
fn backend_connections_are_kept_alive_and_reused() {
    let backend = KeepAliveBackend::new();
    let dir = TempDir::new("keepalive");
    let proxy = proxy(&dir, &format!("cache = off\nbackend = {}\n", backend.addr));
    for i in 0..10 {
        assert_eq!(get(proxy.addr, &format!("/{i}")).text(), "ka");
    }
    assert_eq!(backend.requests.load(Ordering::SeqCst), 10);
    assert_eq!(
        backend.connections.load(Ordering::SeqCst),
        1,
        "each request opened a connection"
    );
}

#[test]
fn a_pooled_connection_the_backend_closed_is_replaced_without_an_error() {
    // Answers one request per connection, without saying it will close.
    let backend = Backend::fixed(OK);
    let (dir, proxy) = proxy_for(
        &[backend.addr],
        "cache = off\nmax_fails = 1\nfail_timeout = 60\n",
    );
    for _ in 0..5 {
        assert_eq!(get(proxy.addr, "/").status, 200);
    }
    assert_eq!(
        backend.requests().len(),
        5,
        "each request reached the backend once"
    );
    drop(proxy);
    let log = proxy_log(&dir);
    assert!(
        !log.contains("marked down"),
        "a stale idle connection counted as a failure:\n{log}"
    );
}

#[test]
fn upstream_keepalive_zero_asks_the_backend_to_close() {
    let backend = Backend::fixed(OK);
    let (_dir, proxy) = proxy_for(&[backend.addr], "cache = off\nupstream_keepalive = 0\n");
    assert_eq!(get(proxy.addr, "/").status, 200);
    assert!(backend.only_request().contains("\r\nConnection: close\r\n"));
}
