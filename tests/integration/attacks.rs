//! Under attack and under load (issue 12): what hostile clients and broken backends do to a
//! proxy that only ever met well-behaved ones. Backends that send bytes after a response or
//! close idle connections, responses cut short, malformed Host fields, fields that mean
//! something else to the backend, and TRACE. Each test fails on a proxy that trusts them.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::*;

/// How long a test waits for something a correct proxy does at once.
const WAIT: Duration = Duration::from_secs(5);

// Backends that misbehave between responses -----------------------------------------------

#[test]
fn a_backend_cannot_poison_the_next_response_on_a_pooled_connection() {
    // First response: `hello`, then (a moment later, in a write of its own) a whole second
    // response nobody asked for. It must never reach a client, nor be stored.
    let (sent_tx, sent_rx) = mpsc::channel::<()>();
    let sent_tx = Mutex::new(sent_tx);
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&requests);
    let backend = Backend::raw(move |_, stream| {
        if counted.fetch_add(1, Ordering::SeqCst) == 0 {
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: 5\r\n\r\nhello",
            );
            thread::sleep(Duration::from_millis(100));
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: 4\r\n\r\nEVIL",
            );
            sent_tx.lock().unwrap().send(()).unwrap();
            // Keep the connection open, as a keep-alive backend would.
            let _ = stream.read(&mut [0u8; 1]);
        } else {
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: 4\r\n\r\ngood",
            );
        }
    });
    let dir = TempDir::new("poison");
    let proxy = proxy(&dir, &backend_lines(&[backend.addr]));
    assert_eq!(get(proxy.addr, "/first").text(), "hello");
    sent_rx.recv_timeout(WAIT).unwrap();
    assert_eq!(get(proxy.addr, "/second").text(), "good");
    assert_eq!(get(proxy.addr, "/second").text(), "good");
    assert!(proxy_log(&dir).contains("sent bytes after a complete response"));
}

#[test]
fn idle_backend_connections_the_backend_closed_are_reaped() {
    // The backend answers, then closes its end. The proxy's pooled socket must not stay
    // open (CLOSE-WAIT) until some later request: the backend sees it closed soon.
    let (closed_tx, closed_rx) = mpsc::channel::<bool>();
    let closed_tx = Mutex::new(closed_tx);
    let backend = Backend::raw(move |_, stream| {
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        let _ = stream.shutdown(Shutdown::Write);
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let closed = matches!(stream.read(&mut [0u8; 1]), Ok(0));
        closed_tx.lock().unwrap().send(closed).unwrap();
    });
    let dir = TempDir::new("reap");
    let proxy = proxy(
        &dir,
        &format!("{}cache = off\n", backend_lines(&[backend.addr])),
    );
    assert_eq!(get(proxy.addr, "/").text(), "ok");
    let closed = closed_rx.recv_timeout(WAIT * 2).unwrap();
    assert!(closed, "the proxy kept the closed connection open");
}

#[test]
fn the_log_counts_the_bytes_sent_before_a_backend_fails() {
    let backend = Backend::raw(|_, stream| {
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n");
        let _ = stream.write_all(&vec![b'b'; 2_000_000]);
    });
    let dir = TempDir::new("bytes-on-error");
    let proxy = proxy(
        &dir,
        &format!("{}cache = off\n", backend_lines(&[backend.addr])),
    );
    let received = exchange(
        proxy.addr,
        b"GET /big HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n",
    );
    assert!(received.len() > 2_000_000);
    let deadline = Instant::now() + WAIT;
    let line = loop {
        if let Some(line) = proxy_log(&dir).lines().find(|l| l.contains("GET /big")) {
            break line.to_string();
        }
        assert!(Instant::now() < deadline, "no log line");
        thread::sleep(Duration::from_millis(20));
    };
    assert!(line.contains(" 2000000 B "), "{line}");
}

// Host normalisation ----------------------------------------------------------------------

#[test]
fn a_malformed_host_is_refused_and_never_shares_a_cache_key() {
    let backend = Backend::fixed(
        b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 4\r\n\r\nreal",
    );
    let dir = TempDir::new("host");
    let proxy = proxy(&dir, &backend_lines(&[backend.addr]));
    for host in [
        "127.0.0.1:21094:80",
        "a b",
        "[::1",
        "shop.example:99999",
        "x@y",
    ] {
        let reply = request(
            proxy.addr,
            format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_eq!(reply.status, 400, "Host: {host}");
    }
    assert!(backend.requests().is_empty());
    // Case and a default port do not make a second entry.
    for host in ["Shop.Example", "shop.example:80", "SHOP.EXAMPLE:80"] {
        let reply = request(
            proxy.addr,
            format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_eq!(reply.text(), "real");
    }
    assert_eq!(backend.requests().len(), 1);
    assert_eq!(cache_entries(&dir).len(), 1);
}

// Header hygiene --------------------------------------------------------------------------

#[test]
fn fields_with_underscores_are_not_forwarded_unless_allowed() {
    let backend = Backend::fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let smuggle = b"POST /form HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 5\r\nTransfer_Encoding: chunked\r\nX_Forwarded_User: admin\r\nConnection: close\r\n\r\nhello";
    let dir = TempDir::new("underscores");
    let proxy = proxy(&dir, &backend_lines(&[backend.addr]));
    assert_eq!(request(proxy.addr, smuggle).status, 200);
    let seen = backend.only_request().to_ascii_lowercase();
    assert!(!seen.contains("transfer_encoding"), "{seen}");
    assert!(!seen.contains("x_forwarded_user"), "{seen}");
    assert!(seen.contains("content-length: 5"), "{seen}");

    let backend = Backend::fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let dir = TempDir::new("underscores-on");
    let config = format!(
        "{}underscores_in_headers = on\n",
        backend_lines(&[backend.addr])
    );
    let proxy = crate::support::proxy(&dir, &config);
    assert_eq!(request(proxy.addr, smuggle).status, 200);
    assert!(backend.only_request().contains("X_Forwarded_User: admin"));
}

#[test]
fn trace_is_refused_with_405_unless_allowed() {
    let backend = Backend::fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let trace = b"TRACE / HTTP/1.1\r\nHost: shop.example\r\nCookie: session=secret\r\nConnection: close\r\n\r\n";
    let dir = TempDir::new("trace");
    let proxy = proxy(&dir, &backend_lines(&[backend.addr]));
    let refused = request(proxy.addr, trace);
    assert_eq!(refused.status, 405);
    let allow = refused.header("allow").expect("an Allow field");
    assert!(allow.contains("GET") && !allow.contains("TRACE"), "{allow}");
    assert!(backend.requests().is_empty());

    let dir = TempDir::new("trace-on");
    let config = format!("{}allow_trace = on\n", backend_lines(&[backend.addr]));
    let proxy = crate::support::proxy(&dir, &config);
    assert_eq!(request(proxy.addr, trace).status, 200);
    assert_eq!(backend.requests().len(), 1);
}

// Deadlines ---------------------------------------------------------------------------------

/// A backend that sends its response head one byte every 200 ms: each read is in time, the
/// head never is.
fn trickling_backend() -> Backend {
    Backend::raw(|_, stream| {
        let head = b"HTTP/1.1 200 OK\r\nX-Slow: ".iter().chain(&[b'x'; 200]);
        for byte in head {
            if stream.write_all(&[*byte]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(200));
        }
        let _ = stream.write_all(b"\r\nContent-Length: 4\r\n\r\nlate");
    })
}

#[test]
fn a_backend_trickling_its_head_gets_504_within_upstream_timeout() {
    let backend = trickling_backend();
    let dir = TempDir::new("trickle");
    let config = format!("{}upstream_timeout = 1\n", backend_lines(&[backend.addr]));
    let proxy = proxy(&dir, &config);
    // Without a deadline on the whole head this would be a 200 after 40 s.
    assert_eq!(get(proxy.addr, "/").status, 504);
}

#[test]
fn retries_share_one_upstream_total_timeout() {
    let (a, b) = (trickling_backend(), trickling_backend());
    let dir = TempDir::new("total");
    let config = format!(
        "{}upstream_timeout = 2\nupstream_total_timeout = 2.5\n",
        backend_lines(&[a.addr, b.addr])
    );
    let proxy = proxy(&dir, &config);
    let started = Instant::now();
    assert_eq!(get(proxy.addr, "/").status, 504);
    let took = started.elapsed();
    // Two backends at 2 s each would be 4 s; the total bounds it at 2.5 s.
    assert!(took < Duration::from_millis(3500), "took {took:?}");
    assert_eq!(
        a.requests().len() + b.requests().len(),
        2,
        "the GET was retried once"
    );
}

// A slow client leading a cache fill ---------------------------------------------------------

/// The head of a response from the proxy on `stream`, read without reading into the body
/// more than the head's own read does.
fn read_head(stream: &mut std::net::TcpStream) -> String {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "closed in the head");
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[test]
fn a_slow_leader_holds_back_neither_the_fill_nor_its_followers() {
    // More than the kernel's socket buffers can hold between the proxy and a client that
    // does not read (up to 32 MiB to receive and 4 MiB to send on some Linux systems).
    const SIZE: usize = 64 << 20;
    let body = Arc::new(pseudo_random(SIZE, 12));
    let served = Arc::clone(&body);
    let backend = Backend::raw(move |_, stream| {
        let head = format!(
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: {SIZE}\r\n\r\n"
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(&served);
    });
    let dir = TempDir::new("slow-leader");
    let config = format!("{}upstream_timeout = 5\n", backend_lines(&[backend.addr]));
    let proxy = proxy(&dir, &config);
    // The leader asks, reads the head, then reads nothing for now: far more than the
    // sockets' buffers is left to come.
    let mut leader = connect(proxy.addr);
    leader
        .write_all(b"GET /video HTTP/1.1\r\nHost: test.example\r\n\r\n")
        .unwrap();
    assert!(read_head(&mut leader).starts_with("HTTP/1.1 200"));
    let addr = proxy.addr;
    let followers: Vec<_> = (0..3)
        .map(|_| thread::spawn(move || get(addr, "/video")))
        .collect();
    for follower in followers {
        let reply = follower.join().unwrap();
        assert_eq!(reply.status, 200);
        assert!(reply.body == *body, "a follower got other bytes");
        assert_eq!(
            reply.header("x-cache"),
            Some("HIT"),
            "not served from the fill: {}",
            proxy_log(&dir)
        );
    }
    assert_eq!(backend.requests().len(), 1, "followers went to the backend");
    // The leader still gets every byte, at its own pace.
    let mut rest = vec![0u8; SIZE];
    leader.read_exact(&mut rest).unwrap();
    assert!(rest == *body, "the leader got other bytes");
    assert_eq!(get(proxy.addr, "/video").header("x-cache"), Some("HIT"));
}

#[test]
fn followers_get_the_first_bytes_while_the_body_is_still_coming() {
    let (go_tx, go) = mpsc::channel::<()>();
    let go = Mutex::new(go);
    let backend = Backend::raw(move |_, stream| {
        let _ = stream.write_all(
            b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: 12\r\n\r\nfirst-",
        );
        if go.lock().unwrap().recv_timeout(WAIT * 2).is_ok() {
            let _ = stream.write_all(b"second");
        }
    });
    let dir = TempDir::new("read-while-writer");
    let proxy = proxy(&dir, &backend_lines(&[backend.addr]));
    let mut leader = connect(proxy.addr);
    leader
        .write_all(b"GET /feed HTTP/1.1\r\nHost: shop.example\r\n\r\n")
        .unwrap();
    assert!(read_head(&mut leader).starts_with("HTTP/1.1 200"));
    let mut follower = connect(proxy.addr);
    follower
        .write_all(b"GET /feed HTTP/1.1\r\nHost: shop.example\r\n\r\n")
        .unwrap();
    let head = read_head(&mut follower);
    assert!(head.contains("X-Cache: HIT"), "{head}");
    let mut first = [0u8; 6];
    follower.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"first-");
    go_tx.send(()).unwrap();
    let mut second = [0u8; 6];
    follower.read_exact(&mut second).unwrap();
    assert_eq!(&second, b"second");
    assert_eq!(backend.requests().len(), 1);
}

#[test]
fn a_fill_that_fails_midway_cuts_its_followers_short_and_stores_nothing() {
    let (go_tx, go) = mpsc::channel::<()>();
    let go = Mutex::new(go);
    let backend = Backend::raw(move |_, stream| {
        let _ = stream.write_all(
            b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: 100\r\n\r\nhalf",
        );
        // Then the backend dies.
        let _ = go.lock().unwrap().recv_timeout(WAIT * 2);
    });
    let dir = TempDir::new("fill-fails");
    let proxy = proxy(&dir, &backend_lines(&[backend.addr]));
    let mut leader = connect(proxy.addr);
    leader
        .write_all(b"GET /broken HTTP/1.1\r\nHost: shop.example\r\n\r\n")
        .unwrap();
    assert!(read_head(&mut leader).starts_with("HTTP/1.1 200"));
    let mut follower = connect(proxy.addr);
    follower
        .write_all(b"GET /broken HTTP/1.1\r\nHost: shop.example\r\n\r\n")
        .unwrap();
    read_head(&mut follower);
    let mut half = [0u8; 4];
    follower.read_exact(&mut half).unwrap();
    go_tx.send(()).unwrap();
    let rest = read_to_close(&mut follower);
    assert!(
        rest.is_empty(),
        "the follower got more than was sent: {rest:?}"
    );
    assert_eq!(read_to_close(&mut leader), b"half");
    assert!(cache_entries(&dir).is_empty());
}
