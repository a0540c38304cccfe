//! Real traffic: what real applications do that the demo site never does. Streaming pages
//! and Server-Sent Events, uploads answered before they are read, redirects naming the
//! backend, pages personalised by a cookie, uncacheable pages many clients ask for at once,
//! and backends that misbehave between responses. Each test is named after the behaviour a
//! user would check, and fails on a proxy that buffers, leaks or poisons.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::*;

/// How long a test waits for a byte that a proxy holding bytes back would never send.
const STREAM_WAIT: Duration = Duration::from_secs(5);

/// A cookie value from a raw request (`Cookie: user=NAME`), or "nobody".
fn user_of(request: &[u8]) -> String {
    let text = String::from_utf8_lossy(request);
    text.lines()
        .find_map(|l| l.strip_prefix("Cookie: user="))
        .unwrap_or("nobody")
        .trim()
        .to_string()
}

fn get_with(addr: std::net::SocketAddr, path: &str, extra: &str) -> Reply {
    request(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: shop.example\r\n{extra}Connection: close\r\n\r\n")
            .as_bytes(),
    )
}

/// The `state` of the only backend in the status page's JSON.
fn backend_state(proxy: &Process) -> String {
    let json = get(proxy.addr, "/relevo/status?format=json").text();
    let (_, rest) = json.split_once("\"state\":\"").expect("a backend state");
    rest.split('"').next().unwrap().to_string()
}

/// Reads from `stream` until `needle` has arrived (or fails after STREAM_WAIT).
fn read_until(stream: &mut TcpStream, seen: &mut Vec<u8>, needle: &[u8]) {
    stream.set_read_timeout(Some(STREAM_WAIT)).unwrap();
    let mut buf = [0u8; 4096];
    while find(seen, needle).is_none() {
        match stream.read(&mut buf) {
            Ok(0) => panic!(
                "closed before {:?} arrived; got {:?}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(seen)
            ),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) => panic!(
                "{:?} did not arrive ({e}); held back? got {:?}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(seen)
            ),
        }
    }
}

// Item 1 -----------------------------------------------------------------------------------

#[test]
fn personalised_pages_never_leak_between_users() {
    // A page personalised by a cookie, sent without Cache-Control, as most frameworks do.
    let backend = Backend::new(|req| {
        let body = format!("hello {}", user_of(req));
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    let dir = TempDir::new("personal");
    let proxy = proxy(&dir, &backend_lines(&[backend.addr]));
    for user in ["alice", "bob", "carol", "alice"] {
        let reply = get_with(proxy.addr, "/account", &format!("Cookie: user={user}\r\n"));
        assert_eq!(reply.text(), format!("hello {user}"));
        assert_ne!(reply.header("x-cache"), Some("HIT"));
    }
    assert_eq!(
        backend.requests().len(),
        4,
        "every personalised request went upstream"
    );
    // Anonymous visitors still share the heuristically fresh copy...
    assert_eq!(get_with(proxy.addr, "/account", "").text(), "hello nobody");
    let again = get_with(proxy.addr, "/account", "");
    assert_eq!(again.header("x-cache"), Some("HIT"));
    // ...which a visitor with a cookie is never given.
    let dave = get_with(proxy.addr, "/account", "Cookie: user=dave\r\n");
    assert_eq!(dave.text(), "hello dave");
    assert_eq!(backend.requests().len(), 6);
}

#[test]
fn personalised_requests_share_what_the_origin_marks_fresh_explicitly() {
    let backend = Backend::fixed(
        b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 6\r\n\r\npublic",
    );
    let dir = TempDir::new("personal-explicit");
    let proxy = proxy(&dir, &backend_lines(&[backend.addr]));
    assert_eq!(
        get_with(proxy.addr, "/logo", "Cookie: user=alice\r\n").text(),
        "public"
    );
    let bob = get_with(proxy.addr, "/logo", "Cookie: user=bob\r\n");
    assert_eq!(
        (bob.text().as_str(), bob.header("x-cache")),
        ("public", Some("HIT"))
    );
    assert_eq!(backend.requests().len(), 1);
}

// Item 2 -----------------------------------------------------------------------------------

#[test]
fn server_sent_events_reach_the_client_as_they_are_sent() {
    // The backend sends each event only once the client has seen the one before: a proxy
    // that holds bytes back until its buffer fills never lets the second one be sent.
    let (ack_tx, ack_rx) = mpsc::channel::<()>();
    let ack_rx = Mutex::new(ack_rx);
    let backend = Backend::raw(move |_, stream| {
        let _ = stream.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        for n in 0..4 {
            let event = format!("data: event {n}\n\n");
            let _ = write!(stream, "{:x}\r\n{event}\r\n", event.len());
            if ack_rx.lock().unwrap().recv_timeout(STREAM_WAIT).is_err() {
                return;
            }
        }
        let _ = stream.write_all(b"0\r\n\r\n");
    });
    let dir = TempDir::new("sse");
    let proxy = proxy(&dir, &backend_lines(&[backend.addr]));
    let mut client = connect(proxy.addr);
    client
        .write_all(
            b"GET /events HTTP/1.1\r\nHost: shop.example\r\nAccept: text/event-stream\r\n\r\n",
        )
        .unwrap();
    let mut seen = Vec::new();
    for n in 0..4 {
        read_until(
            &mut client,
            &mut seen,
            format!("data: event {n}\n\n").as_bytes(),
        );
        ack_tx.send(()).unwrap();
    }
    read_until(&mut client, &mut seen, b"0\r\n\r\n");
    // Never stored: a copy of a live stream is not the stream.
    assert!(cache_entries(&dir).is_empty());
}

#[test]
fn a_slow_pages_head_arrives_before_its_body() {
    let (ack_tx, ack_rx) = mpsc::channel::<()>();
    let ack_rx = Mutex::new(ack_rx);
    let backend = Backend::raw(move |_, stream| {
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n");
        if ack_rx.lock().unwrap().recv_timeout(STREAM_WAIT).is_ok() {
            let _ = stream.write_all(b"body");
        }
    });
    let dir = TempDir::new("slow-head");
    let proxy = proxy(
        &dir,
        &format!("{}cache = off\n", backend_lines(&[backend.addr])),
    );
    let mut client = connect(proxy.addr);
    client
        .write_all(b"GET /report HTTP/1.1\r\nHost: shop.example\r\n\r\n")
        .unwrap();
    let mut seen = Vec::new();
    read_until(&mut client, &mut seen, b"\r\n\r\n");
    assert!(seen.starts_with(b"HTTP/1.1 200 OK\r\n"));
    ack_tx.send(()).unwrap();
    read_until(&mut client, &mut seen, b"body");
}

#[test]
fn an_event_stream_may_stay_silent_longer_than_upstream_timeout() {
    let backend = Backend::raw(|_, stream| {
        let _ = stream.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: first\n\n",
        );
        // Quiet for longer than upstream_timeout (0.3 s), well within tunnel_idle_timeout.
        thread::sleep(Duration::from_millis(1200));
        let _ = stream.write_all(b"data: second\n\n");
    });
    let dir = TempDir::new("sse-quiet");
    let config = format!(
        "{}upstream_timeout = 0.3\ntunnel_idle_timeout = 10\n",
        backend_lines(&[backend.addr])
    );
    let proxy = proxy(&dir, &config);
    let reply = get_with(proxy.addr, "/events", "");
    assert_eq!(reply.status, 200);
    assert!(reply.complete, "the stream was cut: {reply:?}");
    assert_eq!(reply.text(), "data: first\n\ndata: second\n\n");
}

// Items 3 and 4 ----------------------------------------------------------------------------

/// A backend that refuses every upload before reading its body, as an application answering
/// 404 (or 401, 413) does, then closes.
fn refusing_backend() -> Backend {
    Backend::on_head(|_, stream| {
        let _ = stream.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found",
        );
    })
}

/// Sends a PUT of `size` bytes to `path` through `addr` while reading the answer, as curl
/// does, and returns the answer's bytes.
fn upload(addr: std::net::SocketAddr, path: &str, size: usize) -> Vec<u8> {
    let mut stream = connect(addr);
    write!(
        stream,
        "PUT {path} HTTP/1.1\r\nHost: shop.example\r\nContent-Length: {size}\r\n\r\n"
    )
    .unwrap();
    let mut sender = stream.try_clone().unwrap();
    let sending = thread::spawn(move || {
        let piece = vec![b'u'; 64 * 1024];
        let mut left = size;
        while left > 0 {
            let n = left.min(piece.len());
            if sender.write_all(&piece[..n]).is_err() {
                return;
            }
            left -= n;
        }
    });
    let answer = read_to_close(&mut stream);
    let _ = stream.shutdown(Shutdown::Both);
    sending.join().unwrap();
    answer
}

#[test]
fn an_upload_answered_early_gets_the_answer_not_a_502() {
    let backend = refusing_backend();
    let dir = TempDir::new("early");
    let proxy = proxy(&dir, &backend_lines(&[backend.addr]));
    for _ in 0..3 {
        let answer = upload(proxy.addr, "/no-such-route", 50_000_000);
        let reply = &parse_replies(&answer, &[false])[0];
        assert_eq!((reply.status, reply.text().as_str()), (404, "not found"));
        assert_eq!(reply.header("connection"), Some("close"));
    }
}

#[test]
fn an_early_answer_never_marks_a_backend_down() {
    let backend = refusing_backend();
    let dir = TempDir::new("early-health");
    let proxy = proxy(&dir, &backend_lines(&[backend.addr]));
    for _ in 0..3 {
        upload(proxy.addr, "/no-such-route", 5_000_000);
    }
    assert_eq!(backend_state(&proxy), "up");
    // And the next request is answered by it, not refused with a 502.
    assert_eq!(get(proxy.addr, "/").status, 404);
}

#[test]
fn a_backend_that_answers_early_and_stops_reading_is_heard() {
    // An application that answers 413 and then neither reads nor closes: the proxy's
    // writes stall once the socket buffers are full, and it must notice the answer.
    let backend = Backend::on_head(|_, stream| {
        let _ = stream.write_all(
            b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big!",
        );
        thread::sleep(Duration::from_secs(8));
    });
    let dir = TempDir::new("early-stalled");
    let proxy = proxy(&dir, &backend_lines(&[backend.addr]));
    let answer = upload(proxy.addr, "/no-such-route", 90_000_000);
    let reply = &parse_replies(&answer, &[false])[0];
    assert_eq!((reply.status, reply.text().as_str()), (413, "too big!"));
}

#[test]
fn curl_uploading_to_a_route_that_refuses_sees_the_refusal() {
    let Some(curl) = external_program("curl") else {
        return;
    };
    let backend = refusing_backend();
    let dir = TempDir::new("early-curl");
    let proxy = proxy(&dir, &backend_lines(&[backend.addr]));
    let file = dir.join("upload.bin");
    std::fs::write(&file, vec![b'x'; 20_000_000]).unwrap();
    let out = command_in(&dir, curl)
        .args(["-s", "-o", "-", "-w", " %{http_code}", "-T"])
        .arg(&file)
        .arg(format!("http://{}/no-such-route", proxy.addr))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "not found 404");
    assert_eq!(backend_state(&proxy), "up");
}

#[test]
fn a_slow_streamed_upload_reaches_the_backend_as_it_is_sent() {
    // The backend tells the test when it has the marker; only then is the rest sent. A proxy
    // that keeps request bytes in a buffer until it fills never delivers the marker.
    let (got_tx, got_rx) = mpsc::channel::<()>();
    let got_tx = Mutex::new(got_tx);
    let backend = Backend::on_head(move |head, stream| {
        let mut seen = head.to_vec();
        let mut buf = [0u8; 65536];
        while find(&seen, b"MARKER").is_none() {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        got_tx.lock().unwrap().send(()).unwrap();
        while !seen.ends_with(b"END") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    });
    let dir = TempDir::new("slow-upload");
    let proxy = proxy(&dir, &backend_lines(&[backend.addr]));
    let mut client = connect(proxy.addr);
    let first = vec![b'a'; 100_000];
    let total = first.len() + b"MARKER".len() + b"END".len();
    write!(
        client,
        "POST /upload HTTP/1.1\r\nHost: shop.example\r\nContent-Length: {total}\r\n\r\n"
    )
    .unwrap();
    client.write_all(&first).unwrap();
    client.write_all(b"MARKER").unwrap();
    got_rx
        .recv_timeout(STREAM_WAIT)
        .expect("the marker did not reach the backend while the client waited");
    client.write_all(b"END").unwrap();
    let mut seen = Vec::new();
    read_until(&mut client, &mut seen, b"\r\n\r\nok");
}

// Item 5 -----------------------------------------------------------------------------------

#[test]
fn absolute_redirects_point_at_the_clients_host_not_the_backend() {
    let backend = Backend::new(|req| {
        let host = String::from_utf8_lossy(req)
            .lines()
            .find_map(|l| l.strip_prefix("Host: ").map(str::to_string))
            .unwrap();
        if req.starts_with(b"GET /img/") {
            return b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nimages".to_vec();
        }
        format!("HTTP/1.1 301 Moved Permanently\r\nLocation: http://{host}/img/\r\nContent-Location: http://{host}/img\r\nContent-Length: 0\r\n\r\n")
            .into_bytes()
    });
    let dir = TempDir::new("location");
    let proxy = proxy(
        &dir,
        &format!("{}cache = off\n", backend_lines(&[backend.addr])),
    );
    let moved = request(
        proxy.addr,
        b"GET /img HTTP/1.1\r\nHost: Shop.Example:8080\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        moved.header("location"),
        Some("http://Shop.Example:8080/img/")
    );
    assert_eq!(
        moved.header("content-location"),
        Some("http://Shop.Example:8080/img")
    );
    let backend_named = backend.addr.to_string();
    assert!(!format!("{moved:?}").contains(&backend_named), "{moved:?}");

    let dir = TempDir::new("location-off");
    let config = format!(
        "{}cache = off\nrewrite_location = off\n",
        backend_lines(&[backend.addr])
    );
    let proxy = crate::support::proxy(&dir, &config);
    let moved = get(proxy.addr, "/img");
    assert_eq!(
        moved.header("location"),
        Some(format!("http://{backend_named}/img/").as_str())
    );
}

#[test]
fn curl_following_a_redirect_stays_on_the_proxy() {
    let Some(curl) = external_program("curl") else {
        return;
    };
    let backend = Backend::new(|req| {
        let host = String::from_utf8_lossy(req)
            .lines()
            .find_map(|l| l.strip_prefix("Host: ").map(str::to_string))
            .unwrap();
        if req.starts_with(b"GET /img/") {
            return b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nimages".to_vec();
        }
        format!("HTTP/1.1 302 Found\r\nLocation: http://{host}/img/\r\nContent-Length: 0\r\n\r\n")
            .into_bytes()
    });
    let dir = TempDir::new("location-curl");
    let proxy = proxy(&dir, &backend_lines(&[backend.addr]));
    let out = command_in(&dir, curl)
        .args(["-s", "-L", "-w", " %{url_effective}"])
        .arg(format!("http://{}/img", proxy.addr))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("images http://{}/img/", proxy.addr)
    );
}

// Item 7 -----------------------------------------------------------------------------------

/// Counts requests in flight at the backend and lets a test wait until `n` are there at once.
#[derive(Default)]
struct Gathering {
    arrived: Mutex<usize>,
    changed: Condvar,
}

impl Gathering {
    /// Counts one arrival, then waits until `n` have arrived (true) or `STREAM_WAIT` passes.
    fn arrive_and_wait(&self, n: usize) -> bool {
        let mut arrived = self.arrived.lock().unwrap();
        *arrived += 1;
        self.changed.notify_all();
        let (arrived, _) = self
            .changed
            .wait_timeout_while(arrived, STREAM_WAIT, |a| *a < n)
            .unwrap();
        *arrived >= n
    }
}

#[test]
fn an_uncacheable_url_is_not_collapsed_once_known() {
    const CLIENTS: usize = 5;
    let gathering = Arc::new(Gathering::default());
    let first = Arc::new(AtomicUsize::new(0));
    let (g, f) = (Arc::clone(&gathering), Arc::clone(&first));
    let backend = Backend::new(move |_| {
        // The first request is answered at once; later ones only when all five are here.
        let body = if f.fetch_add(1, Ordering::SeqCst) == 0 || g.arrive_and_wait(CLIENTS) {
            "together"
        } else {
            "alone"
        };
        format!(
            "HTTP/1.1 200 OK\r\nCache-Control: private\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    let dir = TempDir::new("hit-for-pass");
    let proxy = proxy(&dir, &backend_lines(&[backend.addr]));
    assert_eq!(get(proxy.addr, "/dashboard").status, 200);
    let addr = proxy.addr;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| thread::spawn(move || get(addr, "/dashboard").text()))
        .collect();
    for client in clients {
        assert_eq!(client.join().unwrap(), "together");
    }
}

#[test]
fn waiting_requests_go_on_as_soon_as_the_response_is_known_uncacheable() {
    // Five clients ask at once for a page nobody has asked for yet. The first response's head
    // says `private`; its body is sent only once the four others have reached the backend,
    // which they do only if they stop waiting when that head arrives.
    const CLIENTS: usize = 5;
    let gathering = Arc::new(Gathering::default());
    let order = Arc::new(AtomicUsize::new(0));
    let (g, o) = (Arc::clone(&gathering), Arc::clone(&order));
    let backend = Backend::raw(move |_, stream| {
        let head = b"HTTP/1.1 200 OK\r\nCache-Control: private\r\nContent-Length: 5\r\n\r\n";
        let _ = stream.write_all(head);
        let body: &[u8] = if o.fetch_add(1, Ordering::SeqCst) > 0 {
            g.arrive_and_wait(CLIENTS);
            b"other"
        } else if g.arrive_and_wait(CLIENTS) {
            b"first"
        } else {
            b"alone"
        };
        let _ = stream.write_all(body);
    });
    let dir = TempDir::new("hit-for-pass-first");
    let proxy = proxy(&dir, &backend_lines(&[backend.addr]));
    let addr = proxy.addr;
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| thread::spawn(move || get(addr, "/inbox").text()))
        .collect();
    let bodies: Vec<String> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    assert!(
        bodies.iter().all(|b| b != "alone"),
        "{bodies:?} after {:?}",
        started.elapsed()
    );
    assert_eq!(backend.requests().len(), CLIENTS);
}

// Item 8 -----------------------------------------------------------------------------------

#[test]
fn a_response_without_date_gets_one() {
    let backend = Backend::fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno");
    let dir = TempDir::new("date");
    let proxy = proxy(
        &dir,
        &format!("{}cache = off\n", backend_lines(&[backend.addr])),
    );
    let reply = get(proxy.addr, "/");
    let date = reply.header("date").expect("a Date field");
    // IMF-fixdate (RFC 9110 §5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`.
    assert_eq!(date.len(), 29, "{date}");
    assert!(date.ends_with(" GMT"), "{date}");
}

// The same with a real application server ------------------------------------------------

/// A Flask application, as a class or a small site would write it: a page personalised by
/// a cookie (no Cache-Control), an event stream, and an upload limit that Flask enforces
/// before reading the body. Each event waits for the test to acknowledge the previous one
/// (a file in ACKS), so a proxy holding events back stalls the stream.
const FLASK_APP: &str = r#"
import os, time
from flask import Flask, Response, request
app = Flask(__name__)
app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
ACKS = os.environ["ACKS"]

@app.route("/account")
def account():
    return "hello " + request.cookies.get("user", "nobody")

@app.route("/events")
def events():
    def stream():
        for n in range(3):
            yield f"data: event {n}\n\n"
            deadline = time.time() + 5
            while not os.path.exists(os.path.join(ACKS, str(n))) and time.time() < deadline:
                time.sleep(0.01)
    return Response(stream(), mimetype="text/event-stream")

@app.route("/upload", methods=["PUT"])
def upload():
    return str(len(request.get_data()))
"#;

#[test]
fn a_flask_app_under_gunicorn_streams_personalises_and_refuses_uploads() {
    let (Some(gunicorn), Some(_)) = (external_program("gunicorn"), python_modules(&["flask"]))
    else {
        return;
    };
    let dir = TempDir::new("flask");
    std::fs::write(dir.join("app.py"), FLASK_APP).unwrap();
    let acks = dir.join("acks");
    std::fs::create_dir(&acks).unwrap();
    let mut cmd = command_in(&dir, gunicorn);
    cmd.args(["-b", "127.0.0.1:0", "-w", "2", "--threads", "4", "app:app"])
        .env("ACKS", &acks);
    let app = Process::start_when(cmd, |line| {
        let (_, rest) = line.split_once("Listening at: http://")?;
        rest.split_whitespace().next()?.parse().ok()
    });
    let proxy = proxy(&dir, &backend_lines(&[app.addr]));

    for user in ["alice", "bob", "carol"] {
        let reply = get_with(proxy.addr, "/account", &format!("Cookie: user={user}\r\n"));
        assert_eq!(reply.text(), format!("hello {user}"), "{}", app.output());
    }

    let mut client = connect(proxy.addr);
    client
        .write_all(b"GET /events HTTP/1.1\r\nHost: shop.example\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut seen = Vec::new();
    for n in 0..3 {
        read_until(
            &mut client,
            &mut seen,
            format!("data: event {n}\n\n").as_bytes(),
        );
        std::fs::write(acks.join(n.to_string()), b"").unwrap();
    }

    let answer = upload(proxy.addr, "/upload", 20_000_000);
    assert_eq!(parse_replies(&answer, &[false])[0].status, 413);
    assert_eq!(backend_state(&proxy), "up");
}
