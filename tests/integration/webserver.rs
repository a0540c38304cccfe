//! The demo webserver: files, templates, validators, POST echo, and path safety.

use crate::support::*;

#[test]
fn serves_the_index_with_its_name_and_identifies_itself() {
    let server = webserver("server-7");
    let reply = get(server.addr, "/");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-served-by"), Some("server-7"));
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let page = reply.text();
    assert!(
        page.contains("server-7") && !page.contains("{{server}}"),
        "{page}"
    );
    assert_eq!(
        reply.header("content-length"),
        Some(reply.body.len().to_string().as_str())
    );
    assert!(reply.header("date").is_some());
}

#[test]
fn binary_files_are_served_byte_exact_with_their_type() {
    let server = webserver("s");
    let reply = get(server.addr, "/files/big.bin");
    let on_disk = std::fs::read(www_root().join("files/big.bin")).unwrap();
    assert_eq!(
        reply.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(sha1_hex(&reply.body), sha1_hex(&on_disk));
    let png = get(server.addr, "/img/relevo.png");
    assert_eq!(png.header("content-type"), Some("image/png"));
    assert!(png.body.starts_with(b"\x89PNG\r\n\x1a\n"));
}

#[test]
fn validators_give_304_rfc_9110_section_13() {
    let server = webserver("s");
    let first = get(server.addr, "/img/relevo.png");
    let etag = first.header("etag").unwrap().to_string();
    let modified = first.header("last-modified").unwrap().to_string();
    let by_etag = request(
        server.addr,
        format!("GET /img/relevo.png HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(by_etag.status, 304);
    assert!(by_etag.body.is_empty());
    let by_date = request(
        server.addr,
        format!("GET /img/relevo.png HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: {modified}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(by_date.status, 304);
    // If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2).
    let mismatch = request(
        server.addr,
        format!("GET /img/relevo.png HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"other\"\r\nIf-Modified-Since: {modified}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(mismatch.status, 200);
}

#[test]
fn templated_pages_have_a_validator_per_server() {
    let (a, b) = (webserver("a"), webserver("b"));
    let etag_a = get(a.addr, "/index.html")
        .header("etag")
        .unwrap()
        .to_string();
    let etag_b = get(b.addr, "/index.html")
        .header("etag")
        .unwrap()
        .to_string();
    assert_ne!(etag_a, etag_b);
}

#[test]
fn post_is_answered_with_what_arrived_and_other_methods_with_501() {
    let server = webserver("echo");
    let reply = request(
        server.addr,
        b"POST /form HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello=world",
    );
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .text()
            .contains("echo received POST /form with a body of 11 bytes"),
        "{}",
        reply.text()
    );
    let put = request(
        server.addr,
        b"PUT /x HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(put.status, 501);
    assert_eq!(put.header("x-served-by"), Some("echo"));
}

#[test]
fn missing_files_are_404() {
    let server = webserver("s");
    assert_eq!(get(server.addr, "/no-such-page.html").status, 404);
}

#[test]
fn traversal_attempts_never_leave_the_root() {
    let dir = TempDir::new("root");
    std::fs::create_dir_all(dir.join("site")).unwrap();
    std::fs::write(dir.join("site/index.html"), "inside").unwrap();
    std::fs::write(dir.join("secret.txt"), "TOP SECRET").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(dir.join("secret.txt"), dir.join("site/link.txt")).unwrap();
    let server = webserver_at(&dir.join("site"), "s");
    for target in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E%2Fsecret.txt",
        "/..%2fsecret.txt",
        "/..\\secret.txt",
        "//../secret.txt",
        "/./../secret.txt",
        "/link.txt",
        "/%00",
        &format!("/{}", dir.join("secret.txt").display()),
    ] {
        let reply = get(server.addr, target);
        assert!(
            [400, 403, 404].contains(&reply.status),
            "{target} gave {}",
            reply.status
        );
        assert!(
            !reply.text().contains("TOP SECRET"),
            "{target} leaked the file"
        );
    }
    assert_eq!(get(server.addr, "/").text(), "inside");
}

#[test]
fn malformed_requests_are_400_and_closed() {
    let server = webserver("s");
    let reply = request(server.addr, b"GET / HTTP/1.1\r\nHost : t\r\n\r\n");
    assert_eq!(reply.status, 400);
    assert_eq!(reply.header("connection"), Some("close"));
}

/// `GET path` with one `If-None-Match: value` line.
fn get_if_none_match(addr: std::net::SocketAddr, path: &str, value: &str) -> Reply {
    request(
        addr,
        format!(
            "GET {path} HTTP/1.1\r\nHost: test.example\r\nIf-None-Match: {value}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
}

#[test]
fn the_web_server_and_the_proxys_cache_answer_if_none_match_alike() {
    let site = TempDir::new("conditional-site");
    std::fs::write(site.join("note.txt"), "a note\n").unwrap();
    // Written a day ago: fresh for a tenth of that (RFC 9111 §4.2.2), so every request below
    // is answered from the cache.
    let day_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(86_400);
    let note = std::fs::File::options()
        .write(true)
        .open(site.join("note.txt"))
        .unwrap();
    note.set_modified(day_ago).unwrap();
    let server = webserver_at(&site.path, "s");
    let dir = TempDir::new("conditional-proxy");
    let config = format!("{}cache_ttl = 600\n", backend_lines(&[server.addr]));
    let proxy = proxy(&dir, &config);
    let first = get(proxy.addr, "/note.txt");
    assert_eq!(first.header("x-cache"), Some("MISS"));
    let etag = first.header("etag").unwrap().to_string();
    // Well-formed lists that match, and malformed ones that hold the right tag but match
    // nothing (RFC 9110 §13.1.2: neither `*` nor a list of entity-tags, so the condition is
    // true and the file is sent).
    let cases = [
        (format!("\"x\", {etag}"), 304),
        (format!("W/{etag}"), 304),
        ("*".to_string(), 304),
        (format!("\"a b\", {etag}"), 200),
        (format!("{etag} \"x\""), 200),
        (format!("{etag}, *"), 200),
        (format!("{etag} junk"), 200),
    ];
    for (value, status) in cases {
        let direct = get_if_none_match(server.addr, "/note.txt", &value);
        let cached = get_if_none_match(proxy.addr, "/note.txt", &value);
        assert_eq!(cached.header("x-cache"), Some("HIT"), "{value}");
        assert_eq!(
            (direct.status, cached.status),
            (status, status),
            "If-None-Match: {value}"
        );
        if status == 200 {
            assert_eq!(
                (direct.text(), cached.text()),
                ("a note\n".into(), "a note\n".into())
            );
        }
    }
}

#[test]
fn the_statements_form_webserver_port_log_file_document_root() {
    let dir = TempDir::new("webserver-positional");
    std::fs::create_dir(dir.join("site")).unwrap();
    std::fs::write(dir.join("site/hello.txt"), "hello from the statement\n").unwrap();
    // A free port: bound, read and released (port 0 would hide whether PORT is used).
    let port = dead_address().port();
    let mut cmd = command_in(&dir, WEBSERVER_BIN);
    cmd.args([&port.to_string(), "logs/web.log", "site"]);
    let server = Process::start(cmd);
    assert_eq!(server.addr.port(), port);
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let reply = get(local, "/hello.txt");
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (200, "hello from the statement\n")
    );
    // The line is logged before the connection closes: it is in the file by now.
    let log = std::fs::read_to_string(dir.join("logs/web.log")).unwrap();
    assert!(log.contains("\"GET /hello.txt HTTP/1.1\" 200"), "{log}");
}

#[test]
fn positional_arguments_out_of_order_are_usage_errors() {
    let dir = TempDir::new("webserver-positional-refused");
    std::fs::create_dir(dir.join("www")).unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["0", "www", "logs/web.log"], "LOG_FILE www is a directory"),
        (
            &["www", "0", "logs/web.log"],
            "PORT www is not a port number",
        ),
        (&["0", "--port", "0"], "PORT and --port both"),
        (
            &["0", "w.log", "www", "--root", "www"],
            "DOCUMENT_ROOT and --root both",
        ),
    ];
    let usage = "webserver [OPTIONS] PORT [LOG_FILE [DOCUMENT_ROOT]]";
    assert_usage_errors(&dir, WEBSERVER_BIN, &cases, usage);
    assert!(!dir.join("logs").exists(), "nothing created");
}
