//! Start-up: configuration errors stop the proxy with `path:line: message` and status 1,
//! and command-line overrides apply.

use crate::support::*;

fn run_proxy_with(config: &str) -> (Option<i32>, String) {
    let dir = TempDir::new("conf");
    let path = dir.join("proxy.conf");
    std::fs::write(&path, config).unwrap();
    let mut cmd = command_in(&dir, PROXY_BIN);
    cmd.arg(&path);
    let (code, _, stderr) = run_bounded(cmd);
    let stderr = stderr.replace(&format!("{}", path.display()), "proxy.conf");
    (code, stderr)
}

#[test]
fn config_errors_name_their_line_and_exit_with_status_1() {
    let cases = [
        (
            "listen = 127.0.0.1:0\nbakend = 127.0.0.1:1\n",
            "proxy.conf:2: unknown key `bakend`",
        ),
        (
            "# comment\n\nbackend = 127.0.0.1:1\nconnect_timeout = soon\n",
            "proxy.conf:4: connect_timeout",
        ),
        ("backend = 127.0.0.1:99999\n", "proxy.conf:1: "),
        (
            "listen = 127.0.0.1:0\n",
            "proxy.conf:1: no backend configured",
        ),
        (
            "backend 127.0.0.1:1\n",
            "proxy.conf:1: expected `key = value`",
        ),
        (
            "backend = 127.0.0.1:1 wieght=2\n",
            "proxy.conf:1: backend: unknown option `wieght=2`",
        ),
        (
            "backend = 127.0.0.1:1\nbackend = 127.0.0.1:2 weight=0\n",
            "proxy.conf:2: backend: expected a weight 1..=100, got `0`",
        ),
        (
            "backend = 127.0.0.1:1 backup\n\nbackend = 127.0.0.1:2 backup\n# end\n",
            "proxy.conf:3: every backend is marked `backup`",
        ),
        (
            "backend = 127.0.0.1:1\nbalance = fastest\n",
            "proxy.conf:2: balance: expected round_robin, least_conn, ip_hash, uri_hash or \
             random_two, got `fastest`",
        ),
    ];
    for (text, expected) in cases {
        let (code, stderr) = run_proxy_with(text);
        assert_eq!(code, Some(1), "{text:?}: {stderr}");
        assert!(stderr.starts_with(expected), "{text:?}: got {stderr:?}");
    }
}

#[test]
fn a_missing_config_file_is_reported() {
    let dir = TempDir::new("missing-conf");
    let out = command_in(&dir, PROXY_BIN)
        .arg("/nonexistent/relevo/proxy.conf")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[test]
fn command_line_overrides_listen_and_log() {
    let backend = Backend::fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let dir = TempDir::new("cli");
    let conf = dir.join("proxy.conf");
    std::fs::write(
        &conf,
        format!("listen = 0.0.0.0:8080\nbackend = {}\n", backend.addr),
    )
    .unwrap();
    let log = dir.join("elsewhere/custom.log");
    // Without cache_dir and access_log keys, the proxy's defaults (cache/, logs/) are
    // relative: they land in the temporary directory it runs in.
    let mut cmd = command_in(&dir, PROXY_BIN);
    // --port replaces the port of --listen: port 0 lets the OS choose.
    cmd.arg(&conf)
        .args(["--listen", "127.0.0.1:1", "--port", "0", "--log"])
        .arg(&log);
    let proxy = Process::start(cmd);
    assert!(proxy.addr.ip().is_loopback());
    assert_ne!(proxy.addr.port(), 1);
    assert_eq!(get(proxy.addr, "/").status, 200);
    drop(proxy);
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("\"GET / HTTP/1.1\""));
}

#[test]
fn help_documents_every_option() {
    let dir = TempDir::new("help");
    let out = command_in(&dir, PROXY_BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for option in ["--listen", "--port", "--log", "[CONFIG]"] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
}

/// What a proxy that does not start printed: its exit status, stdout and stderr, with the
/// temporary directory's path replaced by `DIR`.
struct Refused {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs the proxy in a new directory prepared by `setup`, with `config` as proxy.conf.
fn refused(config: &str, args: &[&str], setup: impl FnOnce(&TempDir)) -> Refused {
    let dir = TempDir::new("refused");
    setup(&dir);
    refused_in(&dir, config, args)
}

/// Runs the proxy in `dir`, with `config` as proxy.conf.
fn refused_in(dir: &TempDir, config: &str, args: &[&str]) -> Refused {
    std::fs::write(dir.join("proxy.conf"), config).unwrap();
    let mut cmd = command_in(dir, PROXY_BIN);
    cmd.arg("proxy.conf").args(args);
    let (code, stdout, stderr) = run_bounded(cmd);
    let text = |out: String| out.replace(&dir.path.display().to_string(), "DIR");
    Refused {
        code,
        stdout: text(stdout),
        stderr: text(stderr),
    }
}

/// A regular file named `logs`, where the default log paths need a directory.
fn file_named_logs(dir: &TempDir) {
    std::fs::write(dir.join("logs"), "not a directory").unwrap();
}

/// Asserts the proxy stopped with status 1 before saying it listens, and printed `expected`
/// as a line of its own on stderr.
fn assert_refused(r: &Refused, expected: &str) {
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(!r.stdout.contains("listening on"), "{}", r.stdout);
    assert!(
        r.stderr.lines().any(|l| l.starts_with(expected)),
        "expected a line starting {expected:?} in:\n{}",
        r.stderr
    );
}

#[test]
fn a_bad_access_log_stops_start_up_before_listening_with_its_line() {
    let config = "listen = 127.0.0.1:0\nbackend = 127.0.0.1:1\nlog_file = proxy.log\n\
                  cache = off\naccess_log = logs/x/access.log\n";
    let r = refused(config, &[], file_named_logs);
    assert_refused(
        &r,
        "proxy.conf:5: access_log: cannot create logs/x/access.log: a file is in the way: logs (",
    );
}

#[test]
fn a_bad_cache_dir_stops_start_up_before_listening_with_its_line() {
    let config = "listen = 127.0.0.1:0\nbackend = 127.0.0.1:1\nlog_file = proxy.log\n\
                  access_log = access.log\ncache_dir = cache\n";
    let r = refused(config, &[], |dir| {
        std::fs::write(dir.join("cache"), "a file").unwrap();
    });
    assert_refused(
        &r,
        "proxy.conf:5: cache_dir: cannot create cache: a file of that name is in the way (",
    );
    // A directory in which no file can be created (even by root) is refused too.
    let config = config.replace("cache_dir = cache", "cache_dir = /proc/self");
    let r = refused(&config, &[], |_| {});
    assert_refused(
        &r,
        "proxy.conf:5: cache_dir: cannot create files in /proc/self: ",
    );
}

#[test]
fn a_bad_log_file_is_named_with_its_default_or_option() {
    let config = "listen = 127.0.0.1:0\nbackend = 127.0.0.1:1\naccess_log = off\ncache = off\n";
    let r = refused(config, &[], file_named_logs);
    assert_refused(
        &r,
        "proxy: log_file (default): cannot create logs/proxy.log: a file is in the way: logs (",
    );
    let r = refused(config, &["--log", "logs/mine.log"], file_named_logs);
    assert_refused(
        &r,
        "proxy: log_file (--log): cannot create logs/mine.log: a file is in the way: logs (",
    );
    let r = refused(
        &format!("{config}log_file = logs/p.log\n"),
        &[],
        file_named_logs,
    );
    assert_refused(&r, "proxy.conf:5: log_file: cannot create logs/p.log: ");
}

#[test]
fn an_address_in_use_is_named_with_its_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let config = format!(
        "# proxy\nlisten = {addr}\nbackend = 127.0.0.1:1\nlog_file = proxy.log\naccess_log = off\n"
    );
    let r = refused(&config, &[], |_| {});
    assert_refused(
        &r,
        &format!("proxy.conf:2: listen: cannot listen on {addr}: "),
    );
    let r = refused(&config, &["--port", &addr.port().to_string()], |_| {});
    assert_refused(
        &r,
        &format!("proxy: listen (--port): cannot listen on {addr}: "),
    );
}

#[test]
fn lowercase_methods_are_refused_with_a_hint() {
    let (code, stderr) = run_proxy_with("backend = 127.0.0.1:1\nmethods = get head\n");
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr.trim_end(),
        "proxy.conf:2: methods: methods are case-sensitive and clients send them in upper \
         case, so `get` would match no request: write `methods = GET HEAD`"
    );
}

#[test]
fn a_duplicate_backend_is_refused_with_its_first_line() {
    let text = "backend = 127.0.0.1:8081\nbackend = 127.0.0.1:8082\n\nbackend = 127.0.0.1:8081\n";
    let (code, stderr) = run_proxy_with(text);
    assert_eq!(code, Some(1));
    assert!(
        stderr.starts_with(
            "proxy.conf:4: backend `127.0.0.1:8081` is listed twice (first on line 1): remove one"
        ),
        "{stderr}"
    );
}

#[test]
fn a_quoted_value_is_refused_with_a_hint() {
    let config = "listen = 127.0.0.1:0\nbackend = 127.0.0.1:1\ncache_dir = \"cache\"\n";
    let dir = TempDir::new("quoted");
    let r = refused_in(&dir, config, &[]);
    assert_refused(
        &r,
        "proxy.conf:3: cache_dir: values are written without quotes, or the quotes become part \
         of the value: write `cache_dir = cache`",
    );
    assert!(!dir.join("\"cache\"").exists());
    assert!(!dir.join("cache").exists());
}

#[test]
fn an_unresolvable_backend_is_warned_about_with_its_line() {
    let backend = Backend::fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let dir = TempDir::new("unresolvable");
    // RFC 6761: names under .invalid never resolve.
    let proxy = proxy(
        &dir,
        &format!(
            "backend = {}\nbackend = no-such-host.invalid:80\n",
            backend.addr
        ),
    );
    // The proxy runs, and the backend that resolves serves every request.
    for _ in 0..3 {
        assert_eq!(get(proxy.addr, "/").status, 200);
    }
    // proxy() writes three lines before the config: the second backend is on line 5.
    let expected = "proxy.conf:5: backend: cannot resolve `no-such-host.invalid` (";
    eventually("the warning about the unresolvable backend", || {
        proxy_log(&dir).contains(expected)
    });
    let line = proxy_log(&dir)
        .lines()
        .find(|l| l.contains(expected))
        .unwrap()
        .to_string();
    assert!(line.contains(" WARN "), "{line}");
    assert!(line.contains("check the name"), "{line}");
}

/// A proxy.conf in `dir` for `backend`, listening on a port the command line replaces.
fn positional_setup(dir: &TempDir, backend: std::net::SocketAddr) {
    let config = format!("listen = 127.0.0.1:1\nbackend = {backend}\n");
    std::fs::write(dir.join("proxy.conf"), config).unwrap();
}

#[test]
fn the_course_statements_form_proxy_port_log_file_ttl() {
    let backend = Backend::fixed(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok",
    );
    let dir = TempDir::new("positional");
    positional_setup(&dir, backend.addr);
    // A free port: bound, read and released (port 0 would hide whether PORT is used).
    let port = dead_address().port();
    let mut cmd = command_in(&dir, PROXY_BIN);
    cmd.args([&port.to_string(), "logs/proxy.log", "30"]);
    let proxy = Process::start(cmd);
    assert_eq!(
        proxy.addr,
        std::net::SocketAddr::from(([127, 0, 0, 1], port))
    );
    for _ in 0..2 {
        assert_eq!(get(proxy.addr, "/page").text(), "ok");
    }
    assert_eq!(
        backend.requests().len(),
        1,
        "the second came from the cache"
    );
    // TTL is 30 s: an entry 31 s old is stale (the default, 60 s, would keep it).
    age_cache(&dir, 31);
    assert_eq!(get(proxy.addr, "/page").text(), "ok");
    assert_eq!(backend.requests().len(), 2);
    drop(proxy);
    let log = std::fs::read_to_string(dir.join("logs/proxy.log")).unwrap();
    assert!(log.contains("\"GET /page HTTP/1.1\""), "{log}");
}

#[test]
fn positional_arguments_that_read_two_ways_are_usage_errors() {
    let dir = TempDir::new("positional-refused");
    positional_setup(&dir, dead_address());
    std::fs::write(dir.join("9999"), "listen = 127.0.0.1:0\n").unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&["8080", "--port", "9090"], "PORT and --port both set"),
        (
            &["8080", "a.log", "--log", "b.log"],
            "LOG_FILE and --log both set",
        ),
        (
            &["logs/proxy.log", "8080"],
            "the port comes first, `proxy 8080 logs/proxy.log`",
        ),
        (&["8080", "8081"], "LOG_FILE 8081 is a number"),
        (&["9999"], "write ./9999 for the configuration file"),
    ];
    assert_usage_errors(
        &dir,
        PROXY_BIN,
        &cases,
        "proxy [OPTIONS] PORT [LOG_FILE [TTL]]",
    );
}

#[test]
fn check_sums_up_a_good_file_and_starts_nothing() {
    let dir = TempDir::new("check-good");
    let path = proxy_config(&dir, "backend = 127.0.0.1:8081\nbackend = 127.0.0.1:8082\n");
    let mut cmd = command_in(&dir, PROXY_BIN);
    cmd.arg("--check").arg(&path);
    let (code, stdout, stderr) = run_bounded(cmd);
    assert_eq!(code, Some(0), "{stderr}");
    let summary = stdout.trim();
    assert!(
        summary.ends_with(&format!("log {}", dir.join("proxy.log").display())),
        "{summary}"
    );
    assert!(
        summary.contains(": OK: listen 127.0.0.1:0, 2 backends, cache in "),
        "{summary}"
    );
    assert_eq!(stdout.lines().count(), 1);
    assert!(!dir.join("proxy.log").exists(), "check opened the log");
    assert!(
        !dir.join("cache").exists(),
        "check created the cache directory"
    );
}

#[test]
fn check_lists_every_problem_with_its_line_and_exits_1() {
    let dir = TempDir::new("check-bad");
    std::fs::write(dir.join("in-the-way"), b"a file").unwrap();
    let config = format!(
        "backend = 127.0.0.1:8081\nbackend = no-such-backend.invalid:8082\naccess_log = {}\n",
        dir.join("in-the-way/access.log").display()
    );
    let path = proxy_config(&dir, &config);
    let mut cmd = command_in(&dir, PROXY_BIN);
    cmd.arg("--check").arg(&path);
    let (code, stdout, stderr) = run_bounded(cmd);
    assert_eq!(code, Some(1));
    assert!(!stdout.contains("listening on"), "{stdout}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    let file = path.display().to_string();
    assert!(
        lines[0].starts_with(&format!("{file}:6: access_log: cannot create ")),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{file}:5: backend: cannot resolve `no-such-backend.invalid`"
        )),
        "{stderr}"
    );
}
