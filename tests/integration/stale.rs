//! Stale content end to end (RFC 5861, RFC 9111 §4.2.4): `stale-while-revalidate` served at
//! once and refreshed by one background request; `stale-if-error` and
//! `cache_stale_if_error` when no backend can answer; and what forbids both. Entries age by
//! moving their files' mtime back, never by sleeping.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};

use crate::cache::{get_with, ok, x_cache};
use crate::support::*;

/// The status page's JSON `cache` figure `name`.
fn cache_figure(proxy: std::net::SocketAddr, name: &str) -> String {
    let json = get(proxy, "/relevo/status?format=json").text();
    let cache = &json[json.find("\"cache\":").expect("a cache object")..];
    field(cache, name).to_string()
}

/// The `Age` of a reply, in seconds.
fn age(reply: &Reply) -> u64 {
    reply
        .header("age")
        .and_then(|a| a.parse().ok())
        .expect("an Age")
}

#[test]
fn stale_while_revalidate_is_served_at_once_and_refreshed_once_in_the_background() {
    // The backend's second request (the refresh) waits until the test lets it answer.
    let (release, gate) = mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let served = AtomicUsize::new(0);
    let backend = Backend::new(move |_| {
        let n = served.fetch_add(1, Ordering::SeqCst);
        if n == 1 {
            let _ = gate.lock().unwrap().recv_timeout(IO_TIMEOUT);
        }
        let fields =
            format!("Cache-Control: max-age=60, stale-while-revalidate=600\r\nETag: \"v{n}\"\r\n");
        ok(&fields, format!("version {n}").as_bytes())
    });
    let (dir, proxy) = proxy_for(&[backend.addr], "");
    assert_eq!(x_cache(&get(proxy.addr, "/news")), "MISS");
    age_cache(&dir, 120);
    // Stale by a minute, inside the window: every request is answered at once from the
    // cache, while one refresh waits on the backend.
    for _ in 0..5 {
        let reply = get(proxy.addr, "/news");
        assert_eq!((reply.status, x_cache(&reply)), (200, "STALE"));
        assert_eq!(reply.text(), "version 0");
        assert!(age(&reply) >= 120, "{reply:?}");
    }
    // Each answer is counted once it is out: eventually, not at once.
    eventually("five stale answers counted", || {
        cache_figure(proxy.addr, "stale") == "5"
    });
    eventually("the refresh reaches the backend", || {
        backend.requests().len() == 2
    });
    let refresh = String::from_utf8_lossy(&backend.requests()[1]).to_ascii_lowercase();
    assert!(refresh.contains("if-none-match: \"v0\""), "{refresh}");
    release.send(()).unwrap();
    eventually("the refreshed response is served", || {
        get(proxy.addr, "/news").text() == "version 1"
    });
    let fresh = get(proxy.addr, "/news");
    assert_eq!(
        (x_cache(&fresh), fresh.text()),
        ("HIT", "version 1".to_string())
    );
    assert_eq!(
        backend.requests().len(),
        2,
        "one refresh for five stale answers"
    );
    eventually("the refresh is logged", || {
        proxy_log(&dir).contains("refreshed in the background")
    });
}

#[test]
fn past_its_stale_while_revalidate_window_a_response_is_validated_first() {
    let backend = Backend::fixed(&ok(
        "Cache-Control: max-age=60, stale-while-revalidate=30\r\nETag: \"v\"\r\n",
        b"body",
    ));
    let (dir, proxy) = proxy_for(&[backend.addr], "");
    assert_eq!(x_cache(&get(proxy.addr, "/w")), "MISS");
    age_cache(&dir, 100);
    // 40 s stale, past the 30 s window: the client waits for the backend.
    assert_eq!(x_cache(&get(proxy.addr, "/w")), "MISS");
    assert_eq!(backend.requests().len(), 2);
}

#[test]
fn a_stale_response_is_served_when_no_backend_can_be_reached() {
    let backend = Backend::fixed(&ok("Cache-Control: max-age=60\r\n", b"kept"));
    let (dir, proxy) = proxy_for(&[backend.addr], "");
    assert_eq!(x_cache(&get(proxy.addr, "/photo")), "MISS");
    drop(backend);
    age_cache(&dir, 3600);
    for _ in 0..2 {
        let reply = get(proxy.addr, "/photo");
        assert_eq!((reply.status, x_cache(&reply)), (200, "STALE-IF-ERROR"));
        assert_eq!(reply.text(), "kept");
        assert!(age(&reply) >= 3600);
    }
    eventually("two stale answers counted", || {
        cache_figure(proxy.addr, "stale_if_error") == "2"
    });
    // cache_stale_if_error is a day by default: a day and a minute stale is too old.
    age_cache(&dir, 60 + 86_400 + 60);
    assert_eq!(get(proxy.addr, "/photo").status, 502);
    // A client that asks for a validated answer gets the error too.
    age_cache(&dir, 3600);
    let no_cache = get_with(proxy.addr, "/photo", "Cache-Control: no-cache\r\n");
    assert_eq!(no_cache.status, 502);
}

#[test]
fn a_stale_response_stands_in_for_a_5xx_and_for_a_timeout() {
    let failing = AtomicUsize::new(0);
    let backend = Backend::raw(move |_, stream| {
        use std::io::Write;
        let answer = match failing.fetch_add(1, Ordering::SeqCst) {
            0 => ok("Cache-Control: max-age=60\r\n", b"good"),
            1 => b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\ndown".to_vec(),
            // Never answers: the proxy gives up after upstream_timeout.
            _ => {
                std::thread::sleep(std::time::Duration::from_secs(3));
                return;
            }
        };
        let _ = stream.write_all(&answer);
    });
    let config = "upstream_timeout = 1\nupstream_total_timeout = 1\n";
    let (dir, proxy) = proxy_for(&[backend.addr], config);
    assert_eq!(x_cache(&get(proxy.addr, "/p")), "MISS");
    age_cache(&dir, 120);
    let after_503 = get(proxy.addr, "/p");
    assert_eq!(
        (after_503.status, x_cache(&after_503)),
        (200, "STALE-IF-ERROR")
    );
    assert_eq!(after_503.text(), "good");
    let after_timeout = get(proxy.addr, "/p");
    assert_eq!(
        (after_timeout.status, x_cache(&after_timeout)),
        (200, "STALE-IF-ERROR")
    );
    assert_eq!(after_timeout.text(), "good");
}

#[test]
fn stale_if_error_windows_from_the_response_and_cache_stale_if_error_off() {
    let backend = Backend::new(|request| {
        let path = String::from_utf8_lossy(request);
        let fields = if path.starts_with("GET /own") {
            "Cache-Control: max-age=60, stale-if-error=300\r\n"
        } else {
            "Cache-Control: max-age=60\r\n"
        };
        ok(fields, b"x")
    });
    let (dir, proxy) = proxy_for(&[backend.addr], "cache_stale_if_error = 0\n");
    for path in ["/own", "/plain"] {
        assert_eq!(x_cache(&get(proxy.addr, path)), "MISS");
    }
    drop(backend);
    age_cache(&dir, 200);
    // Off: only a response that says stale-if-error may stand in, within its window.
    assert_eq!(x_cache(&get(proxy.addr, "/own")), "STALE-IF-ERROR");
    assert_eq!(get(proxy.addr, "/plain").status, 502);
    age_cache(&dir, 400);
    assert_eq!(get(proxy.addr, "/own").status, 502);
}

#[test]
fn must_revalidate_proxy_revalidate_no_cache_and_s_maxage_forbid_serving_stale() {
    for directives in [
        "max-age=60, must-revalidate",
        "max-age=60, proxy-revalidate",
        "no-cache",
        "s-maxage=60",
    ] {
        let fields =
            format!("Cache-Control: {directives}, stale-if-error=86400\r\nETag: \"e\"\r\n");
        let backend = Backend::fixed(&ok(&fields, b"x"));
        let (dir, proxy) = proxy_for(&[backend.addr], "");
        assert_eq!(x_cache(&get(proxy.addr, "/r")), "MISS", "{directives}");
        drop(backend);
        age_cache(&dir, 120);
        let reply = get(proxy.addr, "/r");
        assert_eq!(reply.status, 502, "{directives}: {reply:?}");
    }
}

#[test]
fn a_background_refresh_stops_reading_a_body_it_cannot_store() {
    // The refresh's answer is chunked and endless (a URI turned into a live feed, or an
    // archive generated on the fly): past cache_max_object nothing will be stored and no
    // client wants the rest, so the proxy must hang up rather than read it for ever, holding
    // the URI's flight and one of the background refreshes.
    const LIMIT: usize = 32 << 20;
    let (written, report) = mpsc::channel::<usize>();
    let written = Mutex::new(written);
    let served = AtomicUsize::new(0);
    let backend = Backend::raw(move |_, stream| {
        use std::io::Write;
        let fields = "Cache-Control: max-age=60, stale-while-revalidate=600\r\n";
        if served.fetch_add(1, Ordering::SeqCst) == 0 {
            let _ = stream.write_all(&ok(fields, b"small"));
            return;
        }
        let head = format!("HTTP/1.1 200 OK\r\n{fields}Transfer-Encoding: chunked\r\n\r\n");
        let chunk = format!("10000\r\n{}\r\n", "x".repeat(0x10000));
        let mut sent = 0;
        let mut out = stream.write_all(head.as_bytes());
        while out.is_ok() && sent < LIMIT {
            out = stream.write_all(chunk.as_bytes());
            sent += 0x10000;
        }
        let _ = written.lock().unwrap().send(sent);
    });
    let config = "cache_max_object = 4096\n";
    let (dir, proxy) = proxy_for(&[backend.addr], config);
    assert_eq!(x_cache(&get(proxy.addr, "/feed")), "MISS");
    age_cache(&dir, 120);
    let stale = get(proxy.addr, "/feed");
    assert_eq!(
        (x_cache(&stale), stale.text()),
        ("STALE", "small".to_string())
    );
    let sent = report
        .recv_timeout(IO_TIMEOUT)
        .expect("the refresh's answer ends");
    assert!(
        sent < LIMIT,
        "the proxy read {sent} bytes it could not store"
    );
    let still = get(proxy.addr, "/feed");
    assert_eq!(
        (x_cache(&still), still.text()),
        ("STALE", "small".to_string())
    );
}
