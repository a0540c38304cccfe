//! The status page and the access log, end to end.

use crate::support::*;

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

#[test]
fn the_status_page_shows_backends_requests_and_the_cache() {
    let up = Backend::fixed(OK);
    let dir = TempDir::new("status");
    let down = dead_address();
    let proxy = proxy(&dir, &backend_lines(&[up.addr, down]));
    // Known traffic: a miss then a hit on one URL, then three more requests.
    assert_eq!(get(proxy.addr, "/cached").header("x-cache"), Some("MISS"));
    assert_eq!(get(proxy.addr, "/cached").header("x-cache"), Some("HIT"));
    for path in ["/a", "/b", "/c"] {
        assert_eq!(get(proxy.addr, path).status, 200);
    }
    let page = get(proxy.addr, "/relevo/status");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = page.text();
    assert!(html.contains("<meta http-equiv=\"refresh\" content=\"2\">"));
    assert!(
        html.contains(&format!(
            "<td>{}</td><td><span class=\"up\">up</span>",
            up.addr
        )),
        "{html}"
    );
    assert!(
        html.contains(&format!(
            "<td>{down}</td><td><span class=\"down\">down</span> since"
        )),
        "{html}"
    );
    assert!(html.contains("GET /cached HTTP/1.1"));
    assert!(
        html.contains("hit ratio 20%"),
        "1 hit of 5 lookups:\n{html}"
    );
    assert!(
        !html.contains("/relevo/status HTTP/1.1"),
        "the page lists itself"
    );

    let json = get(proxy.addr, "/relevo/status?format=json");
    assert_eq!(json.header("content-type"), Some("application/json"));
    let text = json.text();
    assert!(
        text.contains(&format!("{{\"address\":\"{}\",\"state\":\"up\"", up.addr)),
        "{text}"
    );
    assert!(
        text.contains(&format!("{{\"address\":\"{down}\",\"state\":\"down\"")),
        "{text}"
    );
    assert!(text.contains("\"hits\":1,\"misses\":4"), "{text}");
    assert!(text.contains("\"request\":\"GET /c HTTP/1.1\""), "{text}");
    assert_eq!(up.requests().len(), 4, "the status page is never forwarded");
}

#[test]
fn the_status_page_is_refused_to_addresses_outside_status_allow() {
    let backend = Backend::fixed(OK);
    let dir = TempDir::new("status-deny");
    let config = format!(
        "{}status_allow = 10.0.0.0/8\n",
        backend_lines(&[backend.addr])
    );
    let proxy = proxy(&dir, &config);
    let reply = get(proxy.addr, "/relevo/status");
    assert_eq!(reply.status, 403);
    assert!(!reply.text().contains("backend"));
    assert!(
        backend.requests().is_empty(),
        "the status path was forwarded"
    );
}

#[test]
fn the_access_log_has_one_combined_format_line_per_request() {
    let backend = Backend::fixed(OK);
    let dir = TempDir::new("access");
    let proxy = proxy(
        &dir,
        &format!("cache = off\n{}", backend_lines(&[backend.addr])),
    );
    request(
        proxy.addr,
        b"GET /page?x=1 HTTP/1.1\r\nHost: t\r\nUser-Agent: test-agent/1.0\r\nReferer: http://ref.example/\r\nConnection: close\r\n\r\n",
    );
    request(proxy.addr, b"BROKEN\r\n\r\n");
    drop(proxy);
    let log = std::fs::read_to_string(dir.join("logs/access.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "{log}");
    let (host, rest) = lines[0].split_once(" - - [").unwrap();
    assert_eq!(host, "127.0.0.1");
    let (_date, rest) = rest.split_once("] ").unwrap();
    let expected = format!(
        "\"GET /page?x=1 HTTP/1.1\" 200 2 \"http://ref.example/\" \"test-agent/1.0\" {} BYPASS ",
        backend.addr
    );
    assert!(rest.starts_with(&expected), "{rest}");
    assert!(lines[1].contains("\"-\" 400 "), "{}", lines[1]);
}
