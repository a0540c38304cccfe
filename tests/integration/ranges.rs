//! Byte ranges end to end (RFC 9110 §14): a stored complete response answers a `Range`
//! from the cache (206, 416, If-Range); the web server answers ranges of its files and
//! redirects a directory named without its slash; real `curl -C -` and `wget -c` resume a
//! download through the proxy (they fail under `RELEVO_REQUIRE_EXTERNAL=1` when missing,
//! and print SKIP otherwise).

use crate::cache::{get_with, ok, x_cache};
use crate::support::*;

#[test]
fn a_range_of_a_stored_response_is_answered_from_the_cache() {
    let backend = Backend::fixed(&ok(
        "Cache-Control: max-age=600\r\nETag: \"v1\"\r\n",
        b"0123456789",
    ));
    let (_dir, proxy) = proxy_for(&[backend.addr], "");
    assert_eq!(x_cache(&get(proxy.addr, "/file")), "MISS");
    let range = |fields: &str| get_with(proxy.addr, "/file", fields);
    let part = range("Range: bytes=2-4\r\n");
    assert_eq!((part.status, x_cache(&part)), (206, "HIT"));
    assert_eq!(part.text(), "234");
    assert_eq!(part.header("content-range"), Some("bytes 2-4/10"));
    assert_eq!(part.header("content-length"), Some("3"));
    assert_eq!(part.header("etag"), Some("\"v1\""));
    assert_eq!(range("Range: bytes=-3\r\n").text(), "789");
    assert_eq!(range("Range: bytes=7-\r\n").text(), "789");
    let past = range("Range: bytes=10-\r\n");
    assert_eq!((past.status, x_cache(&past)), (416, "HIT"));
    assert_eq!(past.header("content-range"), Some("bytes */10"));
    assert!(past.body.is_empty());
    // Several ranges: the whole response.
    let several = range("Range: bytes=0-0,5-5\r\n");
    assert_eq!((several.status, several.text()), (200, "0123456789".into()));
    // If-Range: the part only while the stored response is the one named.
    let same = range("Range: bytes=0-1\r\nIf-Range: \"v1\"\r\n");
    assert_eq!((same.status, same.text()), (206, "01".into()));
    let changed = range("Range: bytes=0-1\r\nIf-Range: \"v0\"\r\n");
    assert_eq!((changed.status, changed.text()), (200, "0123456789".into()));
    assert_eq!(
        backend.requests().len(),
        1,
        "every range came from the cache"
    );
}

#[test]
fn a_range_the_cache_cannot_answer_goes_to_the_backend_as_it_is() {
    let backend = Backend::fixed(
        b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-1/10\r\nContent-Length: 2\r\n\
          Cache-Control: max-age=600\r\n\r\n01",
    );
    let (dir, proxy) = proxy_for(&[backend.addr], "");
    let part = get_with(proxy.addr, "/cold", "Range: bytes=0-1\r\n");
    assert_eq!(
        (part.status, x_cache(&part), part.text()),
        (206, "MISS", "01".into())
    );
    assert!(upstream_has(&backend, 0, "range: bytes=0-1"));
    assert!(cache_entries(&dir).is_empty(), "a 206 is not stored");
}

/// Whether the backend's `n`th request holds `line` (lower case).
fn upstream_has(backend: &Backend, n: usize, line: &str) -> bool {
    String::from_utf8_lossy(&backend.requests()[n])
        .to_ascii_lowercase()
        .contains(line)
}

/// A site with `big.bin` (`len` pseudo-random bytes) and a `docs/` directory, the web
/// server serving it, and a proxy in front.
fn site_with_big_file(len: usize) -> (TempDir, Vec<u8>, Process, TempDir, Process) {
    let site = TempDir::new("range-site");
    let content = pseudo_random(len, 16);
    std::fs::write(site.join("big.bin"), &content).unwrap();
    std::fs::create_dir(site.join("docs")).unwrap();
    std::fs::write(
        site.join("docs/index.html"),
        "<a href=\"page.html\">page</a>",
    )
    .unwrap();
    let server = webserver_at(&site.path, "ranges");
    let dir = TempDir::new("range-proxy");
    let proxy = proxy(&dir, &backend_lines(&[server.addr]));
    (site, content, server, dir, proxy)
}

#[test]
fn the_web_server_answers_ranges_and_redirects_a_directory_to_its_slash() {
    let (_site, content, server, _dir, proxy) = site_with_big_file(1000);
    for addr in [server.addr, proxy.addr] {
        let whole = get(addr, "/big.bin");
        assert_eq!(whole.header("accept-ranges"), Some("bytes"));
        let part = get_with(addr, "/big.bin", "Range: bytes=100-199\r\n");
        assert_eq!(part.status, 206);
        assert_eq!(part.header("content-range"), Some("bytes 100-199/1000"));
        assert_eq!(part.body, &content[100..200]);
        let past = get_with(addr, "/big.bin", "Range: bytes=5000-\r\n");
        assert_eq!(
            (past.status, past.header("content-range")),
            (416, Some("bytes */1000"))
        );
        let etag = whole.header("etag").unwrap().to_string();
        let current = get_with(
            addr,
            "/big.bin",
            &format!("Range: bytes=0-9\r\nIf-Range: {etag}\r\n"),
        );
        assert_eq!((current.status, current.body.len()), (206, 10));
        let moved = get(addr, "/docs?x=1");
        assert_eq!(moved.status, 301);
        assert_eq!(moved.header("location"), Some("/docs/?x=1"));
        assert_eq!(get(addr, "/docs/").status, 200);
    }
}

/// `program args` run in `dir`, to its end; fails the test when it does not exit 0.
fn run_in(dir: &TempDir, program: &std::path::Path, args: &[&str]) -> String {
    let out = command_in(dir, program)
        .args(args)
        .output()
        .expect("run it");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{program:?} {args:?}: {text}");
    text
}

#[test]
fn curl_resumes_a_download_through_the_proxy() {
    let Some(curl) = external_program("curl") else {
        return;
    };
    let (_site, content, _server, dir, proxy) = site_with_big_file(300_000);
    let work = TempDir::new("curl-resume");
    // A download cut off after 100,000 bytes.
    std::fs::write(work.join("big.bin"), &content[..100_000]).unwrap();
    let url = format!("http://{}/big.bin", proxy.addr);
    run_in(&work, &curl, &["-sS", "-C", "-", "-o", "big.bin", &url]);
    assert!(std::fs::read(work.join("big.bin")).unwrap() == content);
    // The proxy writes its log line once the response is out, maybe after curl is done.
    eventually("the proxy logs the part it relayed", || {
        proxy_log(&dir).contains("\"GET /big.bin HTTP/1.1\" -> ")
            && proxy_log(&dir).contains(" 206 ")
    });
}

#[test]
fn wget_resumes_a_download_through_the_proxy() {
    let Some(wget) = external_program("wget") else {
        return;
    };
    let (_site, content, _server, dir, proxy) = site_with_big_file(300_000);
    let work = TempDir::new("wget-resume");
    std::fs::write(work.join("big.bin"), &content[..120_000]).unwrap();
    let url = format!("http://{}/big.bin", proxy.addr);
    let said = run_in(&work, &wget, &["-c", "-S", "--no-proxy", "-t", "1", &url]);
    assert!(said.contains("206 Partial Content"), "{said}");
    assert!(std::fs::read(work.join("big.bin")).unwrap() == content);
    eventually("the proxy logs the part it relayed", || {
        proxy_log(&dir).contains(" 206 ")
    });
}
