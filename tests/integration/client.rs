//! The client end to end: the real `client` binary against the real webserver (directly
//! and through the real proxy) and against scripted backends, in a temporary working
//! directory with its own log and cache.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::*;

/// What one run of the client did.
struct Run {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

impl From<std::process::Output> for Run {
    fn from(out: std::process::Output) -> Run {
        Run {
            code: out.status.code().expect("exit status"),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Runs `client ARGS` in `dir`.
fn run(dir: &TempDir, args: &[&str]) -> Run {
    run_client(dir, args).into()
}

/// `client --cache-dir cache OPTIONS client.log URL` in `dir`.
fn fetch(dir: &TempDir, options: &[&str], url: &str) -> Run {
    client_fetch(dir, options, url).into()
}

/// Runs the real `curl` (found with `external_program`) with `args` in `dir`.
fn run_curl(curl: &Path, dir: &TempDir, args: &[&str]) -> Run {
    command_in(dir, curl)
        .args(args)
        .output()
        .expect("run curl")
        .into()
}

/// What a request put on the wire, as far as curl and our client must agree: the request
/// line, Content-Length, Content-Type and the body bytes.
#[derive(Debug, PartialEq, Eq)]
struct Sent {
    line: String,
    length: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
}

fn sent(raw: &[u8]) -> Sent {
    let end = find(raw, b"\r\n\r\n").expect("a whole head") + 4;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let field = |name: &str| {
        head.split("\r\n").find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    Sent {
        line: head.lines().next().unwrap_or("").to_string(),
        length: field("content-length"),
        content_type: field("content-type"),
        body: raw[end..].to_vec(),
    }
}

fn log_lines(dir: &TempDir) -> Vec<String> {
    std::fs::read_to_string(dir.join("client.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Checks `YYYY-MM-DD HH:MM:SS <rest> <N> B <M> ms <source>` and returns (rest, N, source).
fn parse_log_line(line: &str) -> (String, u64, String) {
    let stamp = line.get(..19).expect("a timestamp");
    let shape: String = stamp
        .chars()
        .map(|c| if c.is_ascii_digit() { 'd' } else { c })
        .collect();
    assert_eq!(shape, "dddd-dd-dd dd:dd:dd", "{line}");
    let words: Vec<&str> = line[20..].split(' ').collect();
    let n = words.len();
    assert!(n >= 6, "{line}");
    assert_eq!((words[n - 4], words[n - 2]), ("B", "ms"), "{line}");
    words[n - 3].parse::<u64>().expect("milliseconds");
    let bytes = words[n - 5].parse().expect("byte count");
    (words[..n - 5].join(" "), bytes, words[n - 1].to_string())
}

fn text_site() -> (TempDir, Process) {
    let root = TempDir::new("client-site");
    std::fs::write(root.join("hello.txt"), "hello, relevo\n").unwrap();
    std::fs::write(root.join("data.bin"), pseudo_random(4096, 7)).unwrap();
    let server = webserver_at(&root.path, "text-site");
    (root, server)
}

fn entries(cache: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(cache)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.len() == 40 && n.bytes().all(|b| b.is_ascii_hexdigit()))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn text_goes_to_stdout_and_each_request_is_logged() {
    let (_root, server) = text_site();
    let dir = TempDir::new("client-text");
    let proxy = proxy(&dir, &backend_lines(&[server.addr]));
    let url = format!("http://{}/hello.txt", proxy.addr);
    let r = fetch(&dir, &[], &url);
    assert_eq!(
        (r.code, r.text().as_str(), r.stderr.as_str()),
        (0, "hello, relevo\n", "")
    );
    let lines = log_lines(&dir);
    assert_eq!(lines.len(), 1);
    let (rest, bytes, source) = parse_log_line(&lines[0]);
    assert_eq!(rest, format!("GET {url} HTTP/1.1 HTTP/1.1 200 OK"));
    assert_eq!((bytes, source.as_str()), (14, "network"));

    // -i puts the head first; the scheme may be left out.
    let r = fetch(
        &dir,
        &["-i", "--no-cache"],
        &format!("{}/hello.txt", proxy.addr),
    );
    let text = r.text();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nhello, relevo\n"), "{text}");
    assert_eq!(log_lines(&dir).len(), 2);
}

#[test]
fn binary_bodies_are_saved_to_files_byte_exact() {
    let server = webserver("bin");
    let dir = TempDir::new("client-binary");
    let proxy = proxy(&dir, &backend_lines(&[server.addr]));
    let png = std::fs::read(www_root().join("img/dawn.png")).unwrap();
    let big = std::fs::read(www_root().join("files/big.bin")).unwrap();
    assert_eq!(big.len(), 1024 * 1024);

    let r = fetch(&dir, &[], &format!("http://{}/img/dawn.png", proxy.addr));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.text(), format!("saved {} bytes to dawn.png\n", png.len()));
    assert_eq!(
        sha1_hex(&std::fs::read(dir.join("dawn.png")).unwrap()),
        sha1_hex(&png)
    );

    let r = fetch(&dir, &[], &format!("http://{}/files/big.bin", proxy.addr));
    assert_eq!(r.text(), "saved 1048576 bytes to big.bin\n");
    assert_eq!(
        sha1_hex(&std::fs::read(dir.join("big.bin")).unwrap()),
        sha1_hex(&big)
    );

    // Never overwrite: the second copy (from the cache) gets a numeric suffix.
    let r = fetch(&dir, &[], &format!("http://{}/img/dawn.png", proxy.addr));
    assert_eq!(
        r.text(),
        format!("saved {} bytes to dawn-1.png\n", png.len())
    );
    assert_eq!(
        sha1_hex(&std::fs::read(dir.join("dawn-1.png")).unwrap()),
        sha1_hex(&png)
    );
    assert!(log_lines(&dir)[2].ends_with(" cache"));

    // -o - forces stdout; -o FILE picks the name; -O saves text too.
    let r = fetch(
        &dir,
        &["-o", "-"],
        &format!("http://{}/img/dawn.png", server.addr),
    );
    assert_eq!(sha1_hex(&r.stdout), sha1_hex(&png));
    let r = fetch(
        &dir,
        &["-o", "copy.bin"],
        &format!("{}/files/big.bin", server.addr),
    );
    assert_eq!(r.text(), "saved 1048576 bytes to copy.bin\n");
    assert_eq!(
        sha1_hex(&std::fs::read(dir.join("copy.bin")).unwrap()),
        sha1_hex(&big)
    );
    let r = fetch(&dir, &["-O"], &format!("{}/styles.css", server.addr));
    assert!(r.text().starts_with("saved 1580 bytes to styles.css"));
    let r = fetch(&dir, &[], &format!("{}/", server.addr));
    assert!(r.text().contains("<html"), "the index page is text");
}

#[test]
fn head_prints_the_head_and_no_body() {
    let (_root, server) = text_site();
    let dir = TempDir::new("client-head");
    let r = fetch(&dir, &["-I"], &format!("http://{}/data.bin", server.addr));
    assert_eq!(r.code, 0);
    let text = r.text();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("Content-Length: 4096\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\n"), "{text}");
    assert!(!dir.join("data.bin").exists(), "HEAD saves no file");
    let (rest, bytes, _) = parse_log_line(&log_lines(&dir)[0]);
    assert!(rest.starts_with("HEAD http://"), "{rest}");
    assert_eq!(bytes, 0);
}

#[test]
fn post_bodies_reach_the_server() {
    let server = webserver("echo");
    let dir = TempDir::new("client-post");
    let proxy = proxy(&dir, &backend_lines(&[server.addr]));
    let url = format!("http://{}/form", proxy.addr);
    let r = fetch(&dir, &["-d", "a=1", "-d", "b=22"], &url);
    assert!(
        r.text()
            .contains("echo received POST /form with a body of 8 bytes"),
        "{}",
        r.text()
    );
    let payload = pseudo_random(100_000, 3);
    std::fs::write(dir.join("payload.bin"), &payload).unwrap();
    let r = fetch(&dir, &["--data-binary", "@payload.bin"], &url);
    assert!(
        r.text().contains("with a body of 100000 bytes"),
        "{}",
        r.text()
    );
    assert!(log_lines(&dir)[1].contains("POST http://"));

    // Exactly what goes on the wire.
    let backend = Backend::fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let r = fetch(
        &dir,
        &["--data-binary", "@payload.bin", "-H", "X-Test: yes"],
        &format!("http://{}/up", backend.addr),
    );
    assert_eq!(r.code, 0);
    let raw = &backend.requests()[0];
    let end = find(raw, b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&raw[..end]);
    assert!(head.starts_with("POST /up HTTP/1.1\r\n"), "{head}");
    for field in [
        format!("Host: {}", backend.addr),
        format!("User-Agent: relevo-client/{}", env!("CARGO_PKG_VERSION")),
        "Content-Length: 100000".to_string(),
        "Content-Type: application/x-www-form-urlencoded".to_string(),
        "X-Test: yes".to_string(),
    ] {
        assert!(head.contains(&format!("{field}\r\n")), "{field} in {head}");
    }
    assert_eq!(sha1_hex(&raw[end..]), sha1_hex(&payload));
}

#[test]
fn chunked_and_close_delimited_responses() {
    let dir = TempDir::new("client-framing");
    let chunked = Backend::fixed(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n",
    );
    let r = fetch(&dir, &[], &format!("http://{}/", chunked.addr));
    assert_eq!((r.code, r.text().as_str()), (0, "hello, world"));
    let close = Backend::fixed(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end");
    let r = fetch(&dir, &[], &format!("http://{}/", close.addr));
    assert_eq!((r.code, r.text().as_str()), (0, "until the end"));
    // A chunked body cut short is an error, and the log counts what arrived.
    let cut = Backend::fixed(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n9\r\nwor",
    );
    let r = fetch(&dir, &[], &format!("http://{}/", cut.addr));
    assert_eq!(r.code, 18, "{}", r.stderr);
    assert!(r.stderr.contains("incomplete response"), "{}", r.stderr);
    let (rest, bytes, source) = parse_log_line(log_lines(&dir).last().unwrap());
    assert!(rest.contains(" error: incomplete response"), "{rest}");
    assert_eq!((bytes, source.as_str()), (8, "none"));
}

/// /a → 302 /b → 301 c (relative) → 200; /post → 303 /after; /keep → 307 /after;
/// /30N → 30N /after.
fn redirecting_backend() -> Backend {
    Backend::new(|request| {
        let text = String::from_utf8_lossy(request).into_owned();
        let line = text.lines().next().unwrap_or("").to_string();
        let path = line.split(' ').nth(1).unwrap_or("").to_string();
        let redirect = |status: &str, to: &str| {
            format!("HTTP/1.1 {status}\r\nLocation: {to}\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nmoved")
                .into_bytes()
        };
        match path.as_str() {
            "/a" => redirect("302 Found", "/b"),
            "/b" => redirect("301 Moved Permanently", "c"),
            "/post" => redirect("303 See Other", "/after"),
            "/keep" => redirect("307 Temporary Redirect", "/after"),
            p if p.len() == 4 && p.starts_with("/30") => {
                redirect(&format!("{} Moved", &p[1..]), "/after")
            }
            "/https" => redirect("302 Found", "https://example.com/"),
            p if p.starts_with("/loop") => redirect("302 Found", "/loop"),
            _ => {
                let body = format!("arrived with {line}");
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            }
        }
    })
}

#[test]
fn redirects_are_followed_with_location() {
    let backend = redirecting_backend();
    let dir = TempDir::new("client-redirect");
    let base = format!("http://{}", backend.addr);
    let r = fetch(&dir, &[], &format!("{base}/a"));
    assert_eq!((r.code, r.text().as_str()), (0, "moved"), "without -L");

    let r = fetch(&dir, &["-L"], &format!("{base}/a"));
    assert_eq!(
        (r.code, r.text().as_str()),
        (0, "arrived with GET /c HTTP/1.1")
    );
    let lines = log_lines(&dir);
    assert_eq!(lines.len(), 4);
    let statuses: Vec<String> = lines[1..].iter().map(|l| parse_log_line(l).0).collect();
    assert_eq!(
        statuses,
        [
            format!("GET {base}/a HTTP/1.1 HTTP/1.1 302 Found"),
            format!("GET {base}/b HTTP/1.1 HTTP/1.1 301 Moved Permanently"),
            format!("GET {base}/c HTTP/1.1 HTTP/1.1 200 OK"),
        ]
    );

    // 303 turns POST into GET without a body; 307 keeps both.
    let r = fetch(&dir, &["-L", "-d", "x=1"], &format!("{base}/post"));
    assert_eq!(r.text(), "arrived with GET /after HTTP/1.1");
    let r = fetch(&dir, &["-L", "-d", "x=1"], &format!("{base}/keep"));
    assert_eq!(r.text(), "arrived with POST /after HTTP/1.1");
    let last = backend.requests().pop().unwrap();
    assert!(last.ends_with(b"\r\n\r\nx=1"));
}

#[test]
fn a_post_redirected_by_301_302_or_303_becomes_a_get_as_in_curl() {
    let backend = redirecting_backend();
    let dir = TempDir::new("client-post-redirect");
    std::fs::write(dir.join("form.txt"), "a=1\n").unwrap();
    let curl = external_program("curl");
    let post: &[&str] = &["-L", "-d", "@form.txt"];
    let head: &[&str] = &["-L", "-I"];
    let cases = [
        (301, post, "GET /after", ""),
        (302, post, "GET /after", ""),
        (303, post, "GET /after", ""),
        (307, post, "POST /after", "a=1"),
        (308, post, "POST /after", "a=1"),
        (303, head, "HEAD /after", ""),
    ];
    for (code, args, second, body) in cases {
        let url = format!("http://{}/{code}", backend.addr);
        let before = backend.requests().len();
        let r = fetch(&dir, &[&["--no-cache"], args].concat(), &url);
        assert_eq!(r.code, 0, "{code} {args:?}: {}", r.stderr);
        let ours: Vec<Sent> = backend.requests()[before..]
            .iter()
            .map(|r| sent(r))
            .collect();
        assert_eq!(ours.len(), 2, "{code} {args:?}");
        assert_eq!(
            ours[1].line,
            format!("{second} HTTP/1.1"),
            "{code} {args:?}"
        );
        assert_eq!(String::from_utf8_lossy(&ours[1].body), body);
        assert_eq!(
            ours[1].length.is_some(),
            !body.is_empty(),
            "{code} {args:?}"
        );

        // curl, given the same options, sends the same two requests.
        let Some(curl) = &curl else { continue };
        let before = backend.requests().len();
        let curl_args = [&["-s", "-o", "curl.out"], args, &[url.as_str()]].concat();
        assert_eq!(run_curl(curl, &dir, &curl_args).code, 0, "{curl_args:?}");
        let theirs: Vec<Sent> = backend.requests()[before..]
            .iter()
            .map(|r| sent(r))
            .collect();
        assert_eq!(ours, theirs, "{code} {args:?}");
    }
}

#[test]
fn redirect_loops_stop_after_ten() {
    let backend = redirecting_backend();
    let dir = TempDir::new("client-loop");
    let r = fetch(&dir, &["-L"], &format!("http://{}/loop0", backend.addr));
    assert_eq!(r.code, 47);
    assert_eq!(
        r.stderr,
        "client: too many redirects: stopped after following 10\n"
    );
    let lines = log_lines(&dir);
    assert_eq!(lines.len(), 12, "11 responses and the request not made");
    assert!(lines[11].contains(" error: too many redirects"));
    assert_eq!(backend.requests().len(), 11);

    // A redirect to https:// is refused like an https:// URL.
    let r = fetch(&dir, &["-L"], &format!("http://{}/https", backend.addr));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("https:// is not supported"));
}

/// A backend that counts on its requests: `Cache-Control: max-age=60`, or revalidation
/// with ETag "v1" when `revalidate` (max-age=0), answering 304 to If-None-Match.
fn caching_backend(cache_control: &'static str) -> Backend {
    Backend::new(move |request| {
        let text = String::from_utf8_lossy(request);
        if text.contains("If-None-Match: \"v1\"\r\n") {
            return format!("HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nCache-Control: {cache_control}\r\nX-Validated: yes\r\n\r\n").into_bytes();
        }
        format!("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nETag: \"v1\"\r\nCache-Control: {cache_control}\r\nContent-Length: 11\r\n\r\ncached body").into_bytes()
    })
}

#[test]
fn a_fresh_entry_answers_without_the_server() {
    let backend = caching_backend("max-age=60");
    let dir = TempDir::new("client-cache");
    let url = format!("http://{}/page", backend.addr);
    for _ in 0..2 {
        let r = fetch(&dir, &[], &url);
        assert_eq!((r.code, r.text().as_str()), (0, "cached body"));
    }
    assert_eq!(
        backend.requests().len(),
        1,
        "the second GET never reached the server"
    );
    let r = fetch(&dir, &["-I"], &url);
    assert!(r.text().starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(r.text().contains("\r\nAge: "), "{}", r.text());
    assert_eq!(
        backend.requests().len(),
        1,
        "HEAD answered from the stored GET"
    );
    let sources: Vec<String> = log_lines(&dir)
        .iter()
        .map(|l| parse_log_line(l).2)
        .collect();
    assert_eq!(sources, ["network", "cache", "cache"]);

    // --no-cache goes to the server but still stores; one file per URL.
    fetch(&dir, &["--no-cache"], &url);
    assert_eq!(backend.requests().len(), 2);
    // One file per URL, named by the SHA-1 hex of the URL.
    assert_eq!(entries(&dir.join("cache")), [sha1_hex(url.as_bytes())]);
    // It holds the status line, the fields (with a Date added, RFC 9110 §6.6.1: the
    // backend sent none) and the body.
    let stored = std::fs::read(dir.join("cache").join(sha1_hex(url.as_bytes()))).unwrap();
    assert!(stored.starts_with(b"HTTP/1.1 200 OK\r\n"));
    let text = String::from_utf8_lossy(&stored);
    for field in [
        "ETag: \"v1\"\r\n",
        "Cache-Control: max-age=60\r\n",
        "Content-Length: 11\r\n",
        "\r\nDate: ",
    ] {
        assert!(text.contains(field), "{field:?} missing from {text:?}");
    }
    assert!(stored.ends_with(b"\r\n\r\ncached body"));
    // The cache persists across runs: a new run, same dir, still no request.
    fetch(&dir, &[], &url);
    assert_eq!(backend.requests().len(), 2);
}

#[test]
fn a_stale_entry_is_revalidated_with_a_304() {
    let backend = caching_backend("max-age=0");
    let dir = TempDir::new("client-revalidate");
    let url = format!("http://{}/page", backend.addr);
    fetch(&dir, &[], &url);
    let r = fetch(&dir, &["-i"], &url);
    assert_eq!(r.code, 0);
    let text = r.text();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.contains("X-Validated: yes\r\n"),
        "the 304's fields are merged: {text}"
    );
    assert!(text.ends_with("cached body"), "{text}");
    let requests = backend.requests();
    assert_eq!(requests.len(), 2);
    assert!(String::from_utf8_lossy(&requests[1]).contains("If-None-Match: \"v1\"\r\n"));
    let last = log_lines(&dir).pop().unwrap();
    let (rest, bytes, source) = parse_log_line(&last);
    assert!(rest.ends_with("HTTP/1.1 200 OK"), "{rest}");
    assert_eq!((bytes, source.as_str()), (11, "revalidated"));

    // The project's webserver validates with ETag and Last-Modified: once the entry is
    // older than --ttl (its file's mtime set back, no sleeping), it is revalidated.
    let (_root, server) = text_site();
    let url = format!("http://{}/hello.txt", server.addr);
    fetch(&dir, &["--ttl", "60"], &url);
    age_cache(&dir, 120);
    let r = fetch(&dir, &["--ttl", "60"], &url);
    assert_eq!(r.text(), "hello, relevo\n");
    assert!(log_lines(&dir).pop().unwrap().ends_with(" revalidated"));
}

#[test]
fn no_store_is_honoured() {
    let backend = Backend::fixed(
        b"HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok",
    );
    let dir = TempDir::new("client-no-store");
    let url = format!("http://{}/", backend.addr);
    fetch(&dir, &[], &url);
    fetch(&dir, &[], &url);
    assert_eq!(backend.requests().len(), 2);
    assert!(entries(&dir.join("cache")).is_empty());
}

#[test]
fn the_private_cache_keeps_what_only_a_shared_cache_may_not() {
    // `private`, Set-Cookie and a request with credentials: a shared cache stores none of
    // them (RFC 9111 §3, §3.5); the client's private cache serves its one user with them.
    let backend = Backend::new(|_| {
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: private, max-age=60\r\nSet-Cookie: id=1\r\nContent-Length: 4\r\n\r\nmine".to_vec()
    });
    let dir = TempDir::new("client-private");
    let url = format!("http://{}/account", backend.addr);
    for _ in 0..2 {
        let r = fetch(&dir, &["-H", "Authorization: Bearer t"], &url);
        assert_eq!((r.code, r.text().as_str()), (0, "mine"), "{}", r.stderr);
    }
    assert_eq!(backend.requests().len(), 1, "the second run used the cache");
    assert!(log_lines(&dir).pop().unwrap().ends_with(" cache"));

    // s-maxage is for shared caches: with max-age=0 the entry is stale at once here.
    let backend = Backend::new(|request| {
        if String::from_utf8_lossy(request).contains("If-None-Match: \"s\"\r\n") {
            return b"HTTP/1.1 304 Not Modified\r\nETag: \"s\"\r\n\r\n".to_vec();
        }
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: s-maxage=600, max-age=0\r\nETag: \"s\"\r\nContent-Length: 2\r\n\r\nok".to_vec()
    });
    let url = format!("http://{}/shared", backend.addr);
    for _ in 0..2 {
        assert_eq!(fetch(&dir, &[], &url).text(), "ok");
    }
    assert_eq!(backend.requests().len(), 2);
    assert!(log_lines(&dir).pop().unwrap().ends_with(" revalidated"));
}

#[test]
fn a_response_that_varies_is_kept_per_value_of_the_field() {
    let backend = Backend::new(|request| {
        let html = String::from_utf8_lossy(request).contains("Accept: text/html\r\n");
        let body = if html { "<p>hi</p>" } else { "hi" };
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nVary: Accept\r\nCache-Control: max-age=60\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    let dir = TempDir::new("client-vary");
    let url = format!("http://{}/greeting", backend.addr);
    for _ in 0..2 {
        assert_eq!(fetch(&dir, &[], &url).text(), "hi");
        let html = fetch(&dir, &["-H", "Accept: text/html"], &url);
        assert_eq!(html.text(), "<p>hi</p>");
    }
    assert_eq!(backend.requests().len(), 2, "one request per variant");
    let sources: Vec<String> = log_lines(&dir)
        .iter()
        .map(|l| parse_log_line(l).2)
        .collect();
    assert_eq!(sources, ["network", "network", "cache", "cache"]);
}

#[test]
fn flush_empties_the_cache_and_nothing_else() {
    let (_root, server) = text_site();
    let dir = TempDir::new("client-flush");
    fetch(&dir, &[], &format!("http://{}/hello.txt", server.addr));
    fetch(&dir, &[], &format!("http://{}/data.bin", server.addr));
    let cache = dir.join("cache");
    let names = entries(&cache);
    assert_eq!(names.len(), 2);
    let bytes: u64 = names
        .iter()
        .map(|n| std::fs::metadata(cache.join(n)).unwrap().len())
        .sum();
    std::fs::write(cache.join("keep.txt"), "not an entry").unwrap();

    let r = run(&dir, &["flush", "--cache-dir", "cache"]);
    assert_eq!(r.code, 0);
    assert_eq!(
        r.text(),
        format!("cache: removed 2 cache entries ({bytes} bytes)\n")
    );
    assert!(entries(&cache).is_empty());
    assert!(cache.join("keep.txt").exists());
    let r = run(&dir, &["flush", "--cache-dir", "cache"]);
    assert_eq!(
        (r.code, r.text()),
        (0, "cache: nothing to remove, the cache is empty\n".into())
    );
    // After a flush the next GET goes to the network again.
    fetch(&dir, &[], &format!("http://{}/hello.txt", server.addr));
    assert!(log_lines(&dir).pop().unwrap().ends_with(" network"));
}

#[test]
fn every_failure_has_a_message_a_log_line_and_an_exit_status() {
    let dir = TempDir::new("client-errors");
    let silent = Backend::raw(|_, stream| {
        // Never answer; return when the client gives up and closes.
        let _ = stream.read(&mut [0u8; 1]);
    });
    let malformed = Backend::fixed(b"HTTP/1.1 2000 OK\r\n\r\n");
    let unknown_host = format!("http://{}.invalid/", "a".repeat(64));
    let cases: Vec<(Vec<&str>, String, i32, &str)> = vec![
        // A 64-byte label is rejected by the resolver itself: no DNS query leaves the host.
        (vec![], unknown_host, 6, "could not resolve host"),
        (
            vec![],
            format!("http://{}/", dead_address()),
            7,
            "could not connect to",
        ),
        (
            vec!["--max-time", "0.5"],
            format!("http://{}/", silent.addr),
            28,
            "timed out: the --max-time limit of 0.5 s was reached",
        ),
        (
            vec![],
            format!("http://{}/", malformed.addr),
            8,
            "malformed response: malformed status line",
        ),
        (
            vec![],
            "http://exa mple/".into(),
            3,
            "malformed URL: invalid host",
        ),
        (
            vec![],
            "http://h:99999/".into(),
            3,
            "malformed URL: the port",
        ),
        (
            vec![],
            "https://example.com/".into(),
            1,
            "https:// is not supported",
        ),
        (
            vec![],
            "ftp://example.com/".into(),
            1,
            "unsupported URL scheme",
        ),
    ];
    for (i, (options, url, code, message)) in cases.iter().enumerate() {
        let r = fetch(&dir, options, url);
        assert_eq!(r.code, *code, "{url}: {}", r.stderr);
        assert!(
            r.stderr.starts_with(&format!("client: {message}")),
            "{url}: {}",
            r.stderr
        );
        assert_eq!(r.stderr.lines().count(), 1, "one line: {}", r.stderr);
        assert!(r.stdout.is_empty());
        let lines = log_lines(&dir);
        assert_eq!(lines.len(), i + 1);
        let (rest, bytes, source) = parse_log_line(&lines[i]);
        assert!(rest.contains(&format!(" error: {message}")), "{rest}");
        assert_eq!((bytes, source.as_str()), (0, "none"));
    }
    // Bad usage is clap's status 2, and a missing data file is a local file error.
    assert_eq!(run(&dir, &["only-a-log-file"]).code, 2);
    let r = fetch(
        &dir,
        &["--data-binary", "@missing.bin"],
        "http://127.0.0.1:9/",
    );
    assert_eq!(r.code, 23);
    assert!(
        r.stderr.starts_with("client: cannot read missing.bin"),
        "{}",
        r.stderr
    );
    // So is a missing -d @FILE: a typo stops the run instead of posting nothing (curl
    // warns and sends an empty body).
    let r = fetch(&dir, &["-d", "@missing.txt"], "http://127.0.0.1:9/");
    assert_eq!(r.code, 23);
    assert!(r.stderr.starts_with("client: cannot read missing.txt"));
}

#[test]
fn the_log_file_and_its_directories_are_created() {
    let (_root, server) = text_site();
    let dir = TempDir::new("client-logdir");
    let r = run(
        &dir,
        &[
            "--cache-dir",
            "cache",
            "logs/deep/client.log",
            &format!("{}/hello.txt", server.addr),
        ],
    );
    assert_eq!(r.code, 0);
    let log = std::fs::read_to_string(dir.join("logs/deep/client.log")).unwrap();
    assert_eq!(log.lines().count(), 1);
}

#[test]
fn help_explains_every_option_and_the_exit_statuses() {
    let dir = TempDir::new("client-help");
    let r = run(&dir, &["--help"]);
    assert_eq!(r.code, 0);
    let help = r.text();
    for option in [
        "--request",
        "--data ",
        "--data-binary",
        "--header",
        "--head",
        "--include",
        "--output",
        "--remote-name",
        "--location",
        "--verbose",
        "--silent",
        "--show-error",
        "--no-cache",
        "--cache-dir",
        "--ttl",
        "--max-time",
        "Exit status",
        "Example",
    ] {
        assert!(help.contains(option), "{option} missing from --help");
    }
    let r = run(&dir, &["flush", "--help"]);
    assert!(r.text().contains("--cache-dir"));
}

#[test]
fn hostile_servers_cannot_hang_flood_or_escape_the_directory() {
    let dir = TempDir::new("client-hostile");
    // A header section far beyond the parser's 64 KiB limit: refused, not buffered.
    let flood = Backend::new(|_| {
        let mut bytes = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..4000 {
            bytes.extend_from_slice(format!("X-Flood-{i}: {}\r\n", "v".repeat(40)).as_bytes());
        }
        bytes.extend_from_slice(b"\r\n");
        bytes
    });
    let r = fetch(&dir, &[], &format!("http://{}/", flood.addr));
    assert_eq!(r.code, 8, "{}", r.stderr);

    // A name that decodes to a path: saved under a flattened name, here.
    let png = Backend::fixed(
        b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 4\r\n\r\n\x89PNG",
    );
    let r = fetch(
        &dir,
        &[],
        &format!("http://{}/x/..%2F..%2Fescape.png", png.addr),
    );
    assert_eq!(r.text(), "saved 4 bytes to _._.._escape.png\n");
    assert!(dir.join("_._.._escape.png").exists());
    assert!(!dir.path.parent().unwrap().join("escape.png").exists());

    // No Content-Type: bytes that are not text go to a file, text to stdout.
    let untyped = Backend::fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n\x00\x01\x02");
    let r = fetch(&dir, &[], &format!("http://{}/blob", untyped.addr));
    assert_eq!(r.text(), "saved 3 bytes to blob\n");
    let plain = Backend::fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain");
    let r = fetch(&dir, &[], &format!("http://{}/note", plain.addr));
    assert_eq!(r.text(), "plain");
}

#[test]
fn data_from_a_file_is_sent_as_curl_sends_it() {
    let dir = TempDir::new("client-data-file");
    std::fs::write(dir.join("form.txt"), "name=relevo\r\nlang=rust\n\nend=1\n").unwrap();
    let raw = b"line 1\r\nline 2\n\x00\xff".to_vec();
    std::fs::write(dir.join("raw.bin"), &raw).unwrap();
    let backend = Backend::fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let url = format!("http://{}/form", backend.addr);
    let runs: [&[&str]; 2] = [
        &["-d", "a=1", "-d", "@form.txt"],
        &["--data-binary", "@raw.bin"],
    ];
    for args in runs {
        let r = fetch(&dir, args, &url);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    }
    let ours: Vec<Sent> = backend.requests().iter().map(|r| sent(r)).collect();
    // -d @FILE: the file without its line breaks, after the other part and a '&'.
    assert_eq!(ours[0].line, "POST /form HTTP/1.1");
    assert_eq!(
        String::from_utf8_lossy(&ours[0].body),
        "a=1&name=relevolang=rustend=1"
    );
    assert_eq!(ours[0].length.as_deref(), Some("29"));
    // --data-binary @FILE: byte for byte.
    assert_eq!(ours[1].body, raw);

    // The same command lines given to curl put the same bytes on the wire.
    let Some(curl) = external_program("curl") else {
        return;
    };
    for args in runs {
        let mut args = args.to_vec();
        args.extend(["-s", "-o", "curl.out", &url]);
        assert_eq!(run_curl(&curl, &dir, &args).code, 0, "curl {args:?}");
    }
    let theirs: Vec<Sent> = backend.requests()[2..].iter().map(|r| sent(r)).collect();
    assert_eq!(ours, theirs);
}

#[test]
fn swapped_arguments_are_refused_with_the_right_order() {
    let backend = Backend::fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let dir = TempDir::new("client-swapped");
    let url = format!("http://{}/page", backend.addr);
    // `client URL LOG_FILE`: the "log file" is a URL.
    let r = run(&dir, &["--cache-dir", "cache", &url, "client.log"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("({url} is a URL)")),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains(&format!("client [OPTIONS] client.log {url}\n")),
        "{}",
        r.stderr
    );
    assert!(r.stdout.is_empty());
    let created: Vec<_> = std::fs::read_dir(&dir.path).unwrap().collect();
    assert!(created.is_empty(), "nothing created: {created:?}");

    // The URL argument names an existing file: the log of an earlier run.
    assert_eq!(fetch(&dir, &[], &url).code, 0);
    let r = run(
        &dir,
        &["--cache-dir", "cache", "example.com/", "client.log"],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("(client.log is a file)"), "{}", r.stderr);
    assert!(r
        .stderr
        .contains("client [OPTIONS] client.log example.com/\n"));
    assert_eq!(
        backend.requests().len(),
        1,
        "only the run in the right order"
    );
    assert_eq!(log_lines(&dir).len(), 1);
}

/// A backend that sends `line 1\n`, then holds `line 2\n` back until `release` says so (or
/// `IO_TIMEOUT` passes).
fn two_lines_apart() -> (Backend, mpsc::Sender<()>) {
    let (release, released) = mpsc::channel::<()>();
    let released = Mutex::new(released);
    let backend = Backend::raw(move |_, stream| {
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\n";
        let _ = stream.write_all(format!("{head}line 1\n").as_bytes());
        let _ = stream.flush();
        let _ = released.lock().unwrap().recv_timeout(IO_TIMEOUT);
        let _ = stream.write_all(b"line 2\n");
    });
    (backend, release)
}

/// Runs `cmd` with stdout on a pipe against `two_lines_apart`: returns what it printed
/// before the second line was released (waiting at most 5 s for the first line), then all
/// it printed, and whether it succeeded.
fn printed_before_the_rest(mut cmd: Command, release: mpsc::Sender<()>) -> (String, String, bool) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, pieces) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    while seen.len() < b"line 1\n".len() {
        match pieces.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(piece) => seen.extend(piece),
            Err(_) => break,
        }
    }
    let early = String::from_utf8_lossy(&seen).into_owned();
    release.send(()).unwrap();
    seen.extend(pieces.iter().flatten());
    let ok = child.wait().unwrap().success();
    (early, String::from_utf8_lossy(&seen).into_owned(), ok)
}

#[test]
fn text_on_a_pipe_is_printed_as_it_arrives() {
    let dir = TempDir::new("client-live");
    let (backend, release) = two_lines_apart();
    let mut cmd = command_in(&dir, CLIENT_BIN);
    cmd.args(["--cache-dir", "cache", "client.log"])
        .arg(format!("http://{}/", backend.addr));
    let (early, all, ok) = printed_before_the_rest(cmd, release);
    assert_eq!(early, "line 1\n", "the first line waited for the second");
    assert_eq!((all.as_str(), ok), ("line 1\nline 2\n", true));

    // curl does the same with -N (--no-buffer; it buffers a pipe without it): the same
    // check passes for a program known to stream.
    let Some(curl) = external_program("curl") else {
        return;
    };
    let (backend, release) = two_lines_apart();
    let mut cmd = command_in(&dir, curl);
    cmd.args(["-s", "-N"])
        .arg(format!("http://{}/", backend.addr));
    let (early, all, ok) = printed_before_the_rest(cmd, release);
    assert_eq!(
        (early.as_str(), all.as_str(), ok),
        ("line 1\n", "line 1\nline 2\n", true)
    );
}

#[test]
fn an_answer_from_the_client_cache_says_so_unless_silent() {
    let backend = caching_backend("max-age=60");
    let dir = TempDir::new("client-cache-note");
    let url = format!("http://{}/page", backend.addr);
    let r = fetch(&dir, &[], &url);
    assert_eq!((r.text().as_str(), r.stderr.as_str()), ("cached body", ""));
    age_cache(&dir, 12);
    let r = fetch(&dir, &[], &url);
    assert_eq!(r.text(), "cached body");
    assert_eq!(
        r.stderr,
        "* from the client cache, age 12 s (--no-cache to ask the server)\n"
    );
    let r = fetch(&dir, &["-s"], &url);
    assert_eq!(
        (r.code, r.text().as_str(), r.stderr.as_str()),
        (0, "cached body", "")
    );
    let r = fetch(&dir, &["-s", "-v"], &url);
    assert!(
        r.stderr.contains("* from the client cache, age "),
        "{}",
        r.stderr
    );
    // What the note suggests works: --no-cache asks the server, and nothing is said.
    let r = fetch(&dir, &["--no-cache"], &url);
    assert_eq!(r.stderr, "");
    assert_eq!(backend.requests().len(), 2);

    // A stale entry the server confirmed says so too.
    let backend = caching_backend("max-age=0");
    let url = format!("http://{}/page", backend.addr);
    fetch(&dir, &[], &url);
    let r = fetch(&dir, &[], &url);
    assert_eq!(
        r.stderr,
        "* from the client cache, confirmed by the server (304 Not Modified)\n"
    );
    assert!(log_lines(&dir).pop().unwrap().ends_with(" revalidated"));
}

#[test]
fn silent_hides_the_error_message_and_show_error_brings_it_back_as_in_curl() {
    let dir = TempDir::new("client-silent");
    let url = format!("http://{}/", dead_address());
    let ours = [fetch(&dir, &["-s"], &url), fetch(&dir, &["-sS"], &url)];
    assert_eq!((ours[0].code, ours[0].stderr.as_str()), (7, ""));
    assert_eq!(ours[1].code, 7);
    assert!(ours[1].stderr.starts_with("client: could not connect to"));
    assert_eq!(ours[1].stderr.lines().count(), 1);
    // The log still records both failures.
    assert_eq!(log_lines(&dir).len(), 2);

    let Some(curl) = external_program("curl") else {
        return;
    };
    let theirs = [
        run_curl(&curl, &dir, &["-s", &url]),
        run_curl(&curl, &dir, &["-sS", &url]),
    ];
    assert_eq!((theirs[0].code, theirs[0].stderr.as_str()), (7, ""));
    assert_eq!(theirs[1].code, 7);
    assert_eq!(theirs[1].stderr.lines().count(), 1, "{}", theirs[1].stderr);
}

#[test]
fn a_body_cut_short_exits_18_as_in_curl() {
    let dir = TempDir::new("client-cut-short");
    let length = Backend::fixed(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nabc",
    );
    let chunked = Backend::fixed(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n9\r\nwor",
    );
    let cases = [
        (length.addr, "abc", "after 3 of 10 body bytes"),
        (chunked.addr, "hellowor", "8 bytes into the chunked body"),
    ];
    for (addr, received, message) in cases {
        let r = fetch(&dir, &[], &format!("http://{addr}/"));
        assert_eq!(r.code, 18, "{}", r.stderr);
        assert_eq!(r.text(), received, "what arrived is delivered");
        assert!(
            r.stderr
                .starts_with("client: incomplete response: the server closed the connection"),
            "{}",
            r.stderr
        );
        assert!(r.stderr.trim_end().ends_with(message), "{}", r.stderr);
        let (rest, bytes, source) = parse_log_line(log_lines(&dir).last().unwrap());
        assert!(rest.ends_with(message), "{rest}");
        assert_eq!((bytes, source.as_str()), (received.len() as u64, "none"));
    }
    // A head cut short is a malformed response, not a partial body.
    let head = Backend::fixed(b"HTTP/1.1 200 OK\r\nContent-Le");
    assert_eq!(fetch(&dir, &[], &format!("http://{}/", head.addr)).code, 8);

    let Some(curl) = external_program("curl") else {
        return;
    };
    for (addr, received, _) in cases {
        let r = run_curl(&curl, &dir, &["-s", &format!("http://{addr}/")]);
        assert_eq!((r.code, r.text().as_str()), (18, received));
    }
}
