//! Purging the cache end to end: `POST {status_path}/purge` by URL and by path (every host),
//! every Vary variant removed from the disk, the 303 back to the status page, the refusal
//! of an address `status_allow` does not list, the status page's count, and `proxy --purge`
//! from the command line.

use std::net::SocketAddr;

use crate::cache::x_cache;
use crate::support::*;

/// A backend whose responses are stored for ten minutes and vary on Accept-Language.
fn varying_backend() -> Backend {
    Backend::fixed(
        b"HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nVary: Accept-Language\r\n\
          Content-Length: 4\r\n\r\npage",
    )
}

/// `GET path` for `host` in `language`.
fn get_as(proxy: SocketAddr, host: &str, path: &str, language: &str) -> Reply {
    let raw = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept-Language: {language}\r\nConnection: close\r\n\r\n"
    );
    request(proxy, raw.as_bytes())
}

/// `POST /relevo/status/purge` with this form, as a browser's form posts it (no Accept:
/// text/plain, so a success is a 303).
fn post_purge(proxy: SocketAddr, form: &str) -> Reply {
    let raw = format!(
        "POST /relevo/status/purge HTTP/1.1\r\nHost: {proxy}\r\nOrigin: http://{proxy}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{form}",
        form.len()
    );
    request(proxy, raw.as_bytes())
}

/// The X-Cache of a GET of `path` for `host` in `language`.
fn cached(proxy: SocketAddr, host: &str, path: &str, language: &str) -> String {
    x_cache(&get_as(proxy, host, path, language)).to_string()
}

#[test]
fn a_purge_by_url_then_by_path_removes_every_variant_and_answers_303() {
    let backend = varying_backend();
    let (dir, proxy) = proxy_for(&[backend.addr], "");
    let addr = proxy.addr;
    for (host, language) in [
        ("a.example", "en"),
        ("a.example", "de"),
        ("b.example", "en"),
    ] {
        assert_eq!(cached(addr, host, "/p", language), "MISS");
        assert_eq!(cached(addr, host, "/p", language), "HIT");
    }
    assert_eq!(cached(addr, "a.example", "/other", "en"), "MISS");
    // Three variant indexes, each with its variants (two, one, one).
    assert_eq!(cache_entries(&dir).len(), 7);
    let done = post_purge(addr, "url=http%3A%2F%2Fa.example%2Fp");
    assert_eq!(done.status, 303);
    assert_eq!(done.header("location"), Some("/relevo/status"));
    assert_eq!(
        cache_entries(&dir).len(),
        4,
        "a.example/p and both its variants are gone"
    );
    assert_eq!(cached(addr, "a.example", "/p", "en"), "MISS");
    assert_eq!(cached(addr, "a.example", "/p", "de"), "MISS");
    assert_eq!(cached(addr, "b.example", "/p", "en"), "HIT");
    // By path: every host.
    assert_eq!(post_purge(addr, "path=%2Fp").status, 303);
    assert_eq!(cached(addr, "b.example", "/p", "en"), "MISS");
    assert_eq!(cached(addr, "a.example", "/p", "en"), "MISS");
    assert_eq!(cached(addr, "a.example", "/other", "en"), "HIT");
    let json = get(addr, "/relevo/status?format=json").text();
    let cache = &json[json.find("\"cache\":").unwrap()..];
    assert_eq!(field(cache, "purges"), "2");
    assert_eq!(field(cache, "purged"), "5", "{cache}");
    let log = proxy_log(&dir);
    assert!(
        log.contains("purged http://a.example/p: 2 stored responses removed"),
        "{log}"
    );
}

#[test]
fn a_purge_is_refused_from_an_address_status_allow_does_not_list_and_when_malformed() {
    let backend = varying_backend();
    let (_dir, proxy) = proxy_for(&[backend.addr], "status_allow = 10.0.0.0/8\n");
    assert_eq!(cached(proxy.addr, "h", "/p", "en"), "MISS");
    let refused = post_purge(proxy.addr, "path=%2Fp");
    assert_eq!(refused.status, 403);
    assert_eq!(cached(proxy.addr, "h", "/p", "en"), "HIT");
    let (_dir, open) = proxy_for(&[backend.addr], "");
    for form in ["", "path=p", "url=%2Fp", "url=http%3A%2F%2Fh%2Fp&path=%2Fp"] {
        assert_eq!(post_purge(open.addr, form).status, 400, "{form}");
    }
}

#[test]
fn proxy_purge_removes_a_url_or_a_path_from_the_running_proxy() {
    let backend = varying_backend();
    let dir = TempDir::new("purge-command");
    let proxy = proxy(&dir, &backend_lines(&[backend.addr]));
    let addr = proxy.addr;
    for path in ["/a", "/b"] {
        assert_eq!(cached(addr, "test.example", path, "en"), "MISS");
        assert_eq!(cached(addr, "test.example", path, "en"), "HIT");
    }
    let purge = |what: &str| {
        let mut cmd = command_in(&dir, PROXY_BIN);
        cmd.arg(dir.join("proxy.conf"))
            .args(["--purge", what, "--port", &addr.port().to_string()]);
        run_bounded(cmd)
    };
    let (code, stdout, stderr) = purge("http://test.example/a");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout.trim(),
        "purged http://test.example/a: 1 stored response removed"
    );
    assert_eq!(cached(addr, "test.example", "/a", "en"), "MISS");
    assert_eq!(cached(addr, "test.example", "/b", "en"), "HIT");
    let (code, stdout, _) = purge("/b");
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains("purged /b on every host: 1 stored response removed"),
        "{stdout}"
    );
    assert_eq!(cached(addr, "test.example", "/b", "en"), "MISS");
    let (code, _, stderr) = purge("not a url");
    assert_eq!(code, Some(1));
    assert!(stderr.contains("refused"), "{stderr}");
}

#[test]
fn a_restarted_proxy_still_purges_a_path_on_the_hosts_stored_before() {
    let backend = varying_backend();
    let dir = TempDir::new("purge-restart");
    let config = backend_lines(&[backend.addr]);
    let first = proxy(&dir, &config);
    assert_eq!(cached(first.addr, "old.example", "/p", "en"), "MISS");
    drop(first);
    let second = proxy(&dir, &config);
    assert_eq!(cached(second.addr, "old.example", "/p", "en"), "HIT");
    assert_eq!(post_purge(second.addr, "path=%2Fp").status, 303);
    assert_eq!(cached(second.addr, "old.example", "/p", "en"), "MISS");
}
