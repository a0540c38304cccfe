//! The proxy's two logs under operations: move-away rotation, a disk that fills, a device
//! that refuses every write, and what a normal race between requests logs.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::*;

/// Time between two looks at a file being waited for.
const POLL: Duration = Duration::from_millis(20);

/// Polls `done` until it holds, failing after [`IO_TIMEOUT`] with `what`.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + IO_TIMEOUT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(POLL);
    }
}

fn ok_backend() -> Backend {
    Backend::fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
}

#[test]
fn a_moved_away_access_log_is_recreated_at_its_path() {
    let backend = ok_backend();
    let dir = TempDir::new("rotate");
    let config = format!(
        "{}cache = off\naccess_log = {}\n",
        backend_lines(&[backend.addr]),
        dir.join("access.log").display()
    );
    let proxy = proxy(&dir, &config);
    assert_eq!(get(proxy.addr, "/before").status, 200);
    // logrotate without copytruncate: rename both logs away, as `mv` would.
    let (access, main) = (dir.join("access.log"), dir.join("proxy.log"));
    std::fs::rename(&access, dir.join("access.log.1")).unwrap();
    std::fs::rename(&main, dir.join("proxy.log.1")).unwrap();
    let mut n = 0;
    wait_until("a new access.log with the new requests", || {
        n += 1;
        assert_eq!(get(proxy.addr, &format!("/after-{n}")).status, 200);
        std::fs::read_to_string(&access).is_ok_and(|text| text.contains("\"GET /after-"))
    });
    let moved = std::fs::read_to_string(dir.join("access.log.1")).unwrap();
    assert!(moved.contains("\"GET /before HTTP/1.1\""), "{moved}");
    let new = std::fs::read_to_string(&access).unwrap();
    assert!(!new.contains("/before"), "{new}");
    // Every request is in one file or the other, each on a line of its own.
    for i in 1..=n {
        let line = format!("\"GET /after-{i} HTTP/1.1\"");
        let found = moved.matches(&line).count() + new.matches(&line).count();
        assert_eq!(found, 1, "{line} in:\n{moved}---\n{new}");
    }
    // The main log comes back too, and says why.
    assert_eq!(get(proxy.addr, "/last").status, 200);
    wait_until("a new proxy.log", || {
        std::fs::read_to_string(&main).is_ok_and(|text| text.contains("\"GET /"))
    });
    let (log, moved_log) = (
        std::fs::read_to_string(&main).unwrap(),
        std::fs::read_to_string(dir.join("proxy.log.1")).unwrap(),
    );
    assert!(
        moved_log.contains("\"GET /before HTTP/1.1\""),
        "{moved_log}"
    );
    assert!(
        log.contains("log file: ") && log.contains("proxy.log was moved away: reopened it"),
        "{log}"
    );
}

/// Whether `line` is one whole access log record: one request line, and our four fields at
/// the end (`upstream cache ms request-id`).
fn is_access_record(line: &str) -> bool {
    let fields: Vec<&str> = line.rsplitn(5, ' ').collect();
    line.starts_with("127.0.0.1 - - [")
        && line.matches("\"GET /").count() == 1
        && fields.len() == 5
        && fields[0].len() == 16
        && fields[1].bytes().all(|b| b.is_ascii_digit())
        && fields[2] == "BYPASS"
}

#[test]
fn a_full_log_disk_never_leaves_a_partial_record() {
    // A file system that fills, without root: RLIMIT_FSIZE caps every file the proxy
    // writes (`ulimit -f`, in blocks of 512 or 1024 bytes), and SIGXFSZ ignored (inherited
    // through exec) turns a write past the cap into a short write, then EFBIG.
    let backend = ok_backend();
    let dir = TempDir::new("full-disk");
    let conf = dir.join("proxy.conf");
    std::fs::write(
        &conf,
        format!(
            "listen = 127.0.0.1:0\n{}cache = off\nlog_file = proxy.log\naccess_log = access.log\n",
            backend_lines(&[backend.addr])
        ),
    )
    .unwrap();
    let mut cmd = command_in(&dir, "sh");
    cmd.args(["-c", "trap '' XFSZ; ulimit -f 4 && exec \"$0\" \"$1\""])
        .arg(PROXY_BIN)
        .arg(&conf);
    let proxy = Process::start(cmd);
    // Paths of many lengths, so that some record only partly fits: far more than the cap.
    for i in 0..120 {
        let path = format!("/{}", "p".repeat(1 + i * 7 % 61));
        assert_eq!(
            get(proxy.addr, &path).status,
            200,
            "served whatever the log"
        );
    }
    let text = std::fs::read_to_string(dir.join("access.log")).unwrap();
    assert!(text.ends_with('\n'), "a partial record at the end:\n{text}");
    for line in text.lines() {
        assert!(is_access_record(line), "not one whole record: {line:?}");
    }
    let log = std::fs::read_to_string(dir.join("proxy.log")).unwrap();
    assert!(log.ends_with('\n'), "a partial record at the end:\n{log}");
    for line in log.lines() {
        let levels = [" INFO  ", " WARN  ", " ERROR "].map(|l| line.matches(l).count());
        assert_eq!(levels.iter().sum::<usize>(), 1, "not one record: {line:?}");
    }
    // Both files did fill, and the terminal said so.
    let output = proxy.output();
    assert!(
        output.contains("access log: cannot write access.log: "),
        "{output}"
    );
    assert!(
        output.contains("log file: cannot write proxy.log: "),
        "{output}"
    );
}

#[test]
fn a_log_on_a_full_device_is_reported_once_and_requests_go_on() {
    let backend = ok_backend();
    let dir = TempDir::new("dev-full");
    let config = format!(
        "{}cache = off\naccess_log = /dev/full\n",
        backend_lines(&[backend.addr])
    );
    let proxy = proxy(&dir, &config);
    for _ in 0..5 {
        assert_eq!(get(proxy.addr, "/").status, 200);
    }
    let log = proxy_log(&dir);
    assert_eq!(
        log.matches("access log: cannot write /dev/full: ").count(),
        1,
        "{log}"
    );
    assert_eq!(log.matches("\"GET / HTTP/1.1\"").count(), 5, "{log}");
    // The main log on a full device: the proxy still starts and serves, and says so on the
    // terminal.
    let dir = TempDir::new("dev-full-main");
    let conf = dir.join("proxy.conf");
    std::fs::write(
        &conf,
        format!(
            "listen = 127.0.0.1:0\n{}cache = off\naccess_log = off\n",
            backend_lines(&[backend.addr])
        ),
    )
    .unwrap();
    let mut cmd = command_in(&dir, PROXY_BIN);
    cmd.arg(&conf).args(["--log", "/dev/full"]);
    let proxy = Process::start(cmd);
    assert_eq!(get(proxy.addr, "/").status, 200);
    wait_until("the request's log line", || {
        proxy.output().contains("\"GET / HTTP/1.1\"")
    });
    let output = proxy.output();
    assert_eq!(
        output.matches("log file: cannot write /dev/full: ").count(),
        1,
        "{output}"
    );
}

#[test]
fn a_revalidation_that_lost_a_race_logs_no_warning() {
    // The backend holds its 304 to a revalidation until the test says so; meanwhile a PUT
    // removes the entry being revalidated (RFC 9111 §4.4), so the refresh finds nothing.
    let (release, held) = mpsc::channel::<()>();
    let held = Arc::new(Mutex::new(held));
    let backend = Backend::new(move |request| {
        let text = String::from_utf8_lossy(request).to_ascii_lowercase();
        if text.starts_with("put ") {
            b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()
        } else if text.contains("\r\nif-none-match: \"1\"\r\n") {
            let _ = held.lock().unwrap().recv_timeout(IO_TIMEOUT);
            b"HTTP/1.1 304 Not Modified\r\nCache-Control: max-age=10\r\n\r\n".to_vec()
        } else {
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nETag: \"1\"\r\nCache-Control: max-age=10\r\n\r\none"
                .to_vec()
        }
    });
    let dir = TempDir::new("lost-race");
    let proxy = proxy(&dir, &backend_lines(&[backend.addr]));
    assert_eq!(get(proxy.addr, "/r").status, 200);
    age_cache(&dir, 11);
    let addr = proxy.addr;
    let revalidating = thread::spawn(move || get(addr, "/r"));
    wait_until("the revalidation to reach the backend", || {
        backend.requests().len() == 2
    });
    let put = request(
        proxy.addr,
        b"PUT /r HTTP/1.1\r\nHost: test.example\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(put.status, 204);
    assert!(cache_entries(&dir).is_empty(), "the PUT removed the entry");
    release.send(()).unwrap();
    let reply = revalidating.join().unwrap();
    assert_eq!((reply.status, reply.text().as_str()), (200, "one"));
    assert_eq!(reply.header("x-cache"), Some("REVALIDATED"));
    let log = proxy_log(&dir);
    assert!(log.contains("\"GET /r HTTP/1.1\" -> "), "{log}");
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("cache"))
        .collect();
    assert!(warnings.is_empty(), "{log}");
}
