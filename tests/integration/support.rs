//! Test support: temporary directories, the real binaries started on `127.0.0.1:0`, scripted
//! backends that record exactly the bytes they received, and a small HTTP reader of our own;
//! the reference programs (nginx, HAProxy, curl, Chromium, Python) are `external`.
//!
//! One way to do each thing: every process is built by `command_in`, which runs it in a
//! temporary directory; our binaries start with `Process::start` (the proxy through
//! `proxy_with_args`, `proxy`, or `proxy_for` in front of backends; the web server through
//! `webserver_at`; the client through `run_client`), reference servers with
//! `Process::start_when`, and a missing reference program goes through `skip_or_fail`.
//!
//! Everything here stops when dropped: processes are killed, backends stop accepting,
//! directories are removed. Nothing sleeps to wait for readiness: a binary is ready once it
//! has printed `listening on ADDR`, and a scripted backend is bound before its thread starts.
//! The response reader is written independently of the library's parser on purpose, so a
//! bug there cannot hide itself in the tests.

#![allow(dead_code)]

mod external;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub use external::*;

/// How long a test waits on any socket before failing instead of hanging.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// The package's `proxy` binary.
pub const PROXY_BIN: &str = env!("CARGO_BIN_EXE_proxy");
/// The package's `webserver` binary.
pub const WEBSERVER_BIN: &str = env!("CARGO_BIN_EXE_webserver");
/// The package's `client` binary.
pub const CLIENT_BIN: &str = env!("CARGO_BIN_EXE_client");

/// A directory under the system temp dir, removed when dropped.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("relevo-test-{}-{label}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A command running `program` in `dir`, stdin closed. Every process the tests start is
/// built here (`a_test_starts_processes_only_in_temporary_directories` checks the sources),
/// so a relative path in its arguments or configuration, and whatever it writes by default
/// (the proxy's `cache/` and `logs/`, the client's downloads), lands in the test's
/// temporary directory, never in the checkout.
pub fn command_in(dir: &TempDir, program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(&dir.path).stdin(Stdio::null());
    cmd
}

/// Fails unless `cmd` runs in a directory under the system's temporary directory.
pub fn must_run_in_temp_dir(cmd: &Command) {
    let dir = cmd.get_current_dir();
    assert!(
        dir.is_some_and(|d| d.starts_with(std::env::temp_dir())),
        "{cmd:?} would run in {dir:?}: build it with support::command_in"
    );
}

/// A running process (one of our binaries, or a reference server such as nginx), killed
/// when dropped. Its output, stdout and stderr, is collected in the background so it never
/// blocks on a full pipe.
pub struct Process {
    child: Child,
    pub addr: SocketAddr,
    output: Arc<Mutex<String>>,
    /// A directory the process uses, removed after the process is stopped.
    _dir: Option<TempDir>,
}

impl Process {
    /// Starts `cmd` (one of our binaries, from `command_in`) and waits for its
    /// `listening on ADDR` line.
    pub fn start(cmd: Command) -> Process {
        Process::start_when(cmd, |line| {
            line.trim().strip_prefix("listening on ")?.parse().ok()
        })
    }

    /// Starts `cmd` (from `command_in`) and waits, at most `IO_TIMEOUT`, for a line of its
    /// output from which `ready` reads the listening address; fails as soon as the process
    /// ends without one.
    pub fn start_when(
        mut cmd: Command,
        ready: impl Fn(&str) -> Option<SocketAddr> + Send + Sync + 'static,
    ) -> Process {
        must_run_in_temp_dir(&cmd);
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let mut child = cmd.spawn().expect("start the program");
        let output = Arc::new(Mutex::new(String::new()));
        let ready = Arc::new(ready);
        let (found_tx, found) = std::sync::mpsc::channel();
        for pipe in [
            Box::new(child.stdout.take().expect("stdout piped")) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().expect("stderr piped")),
        ] {
            let (output, found_tx, ready) =
                (Arc::clone(&output), found_tx.clone(), Arc::clone(&ready));
            // Keeps reading after readiness, so the process never blocks on a full pipe.
            thread::spawn(move || {
                let mut reader = BufReader::new(pipe);
                let mut line = String::new();
                while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
                    if let Some(addr) = ready(&line) {
                        let _ = found_tx.send(addr);
                    }
                    output.lock().unwrap().push_str(&line);
                    line.clear();
                }
            });
        }
        drop(found_tx);
        let Ok(addr) = found.recv_timeout(IO_TIMEOUT) else {
            // Still running, or gone: either way the test fails now, instead of waiting.
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} did not say where it listens; output: {}",
                output.lock().unwrap()
            );
        };
        Process {
            child,
            addr,
            output,
            _dir: None,
        }
    }

    /// The same process, keeping `dir` until it is stopped.
    pub fn keeping(mut self, dir: TempDir) -> Process {
        self._dir = Some(dir);
        self
    }

    /// Everything it printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The demo site shipped with the repository.
pub fn www_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("www")
}

/// The real `webserver` binary serving `root` as `name` on an ephemeral port.
pub fn webserver_at(root: &Path, name: &str) -> Process {
    webserver_listening(root, name, "127.0.0.1:0")
}

/// The real `webserver` binary serving `root` as `name` on `listen`, in a temporary
/// directory of its own.
fn webserver_listening(root: &Path, name: &str, listen: &str) -> Process {
    let dir = TempDir::new("webserver");
    let mut cmd = command_in(&dir, WEBSERVER_BIN);
    cmd.args(["--listen", listen, "--name", name, "--root"])
        .arg(root);
    Process::start(cmd).keeping(dir)
}

/// The real `webserver` binary serving the demo site.
pub fn webserver(name: &str) -> Process {
    webserver_at(&www_root(), name)
}

/// `backend = ...` lines for these addresses.
pub fn backend_lines(addrs: &[SocketAddr]) -> String {
    addrs.iter().map(|a| format!("backend = {a}\n")).collect()
}

/// The real `proxy` binary, with `config` (backends and other keys) written into `dir`,
/// listening on an ephemeral port and logging into `dir/proxy.log`.
pub fn proxy(dir: &TempDir, config: &str) -> Process {
    proxy_with_args(dir, config, &[])
}

/// An address on which nothing listens: bound, then released.
pub fn dead_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A scripted backend: for each connection, reads one request (head and body framed by
/// Content-Length or chunked), records its exact bytes, and runs the script on the stream.
/// Stops accepting when dropped.
pub struct Backend {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
}

impl Backend {
    /// A backend that answers every request with `script(request bytes)`, then closes.
    pub fn new(script: impl Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static) -> Backend {
        Backend::raw(move |request, stream| {
            let _ = stream.write_all(&script(request));
        })
    }

    /// A backend that answers with fixed bytes.
    pub fn fixed(response: &[u8]) -> Backend {
        let response = response.to_vec();
        Backend::new(move |_| response.clone())
    }

    /// A backend whose script gets the request bytes and the stream itself.
    pub fn raw(script: impl Fn(&[u8], &mut TcpStream) + Send + Sync + 'static) -> Backend {
        Backend::reading(read_raw_request, script)
    }

    /// A backend that reads only each request's head (through the blank line, and whatever
    /// came in the same reads) before its script runs: for backends that answer before
    /// taking the body, or read it at their own pace.
    pub fn on_head(script: impl Fn(&[u8], &mut TcpStream) + Send + Sync + 'static) -> Backend {
        Backend::reading(read_raw_head, script)
    }

    fn reading(
        read: fn(&mut TcpStream) -> Vec<u8>,
        script: impl Fn(&[u8], &mut TcpStream) + Send + Sync + 'static,
    ) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let script = Arc::new(script);
        let (rec, stopping) = (Arc::clone(&received), Arc::clone(&stop));
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut stream) = stream else { continue };
                let (rec, script) = (Arc::clone(&rec), Arc::clone(&script));
                thread::spawn(move || {
                    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                    let request = read(&mut stream);
                    rec.lock().unwrap().push(request.clone());
                    script(&request, &mut stream);
                    let _ = stream.flush();
                });
            }
        });
        Backend {
            addr,
            received,
            stop,
        }
    }

    /// Every request received so far, as raw bytes.
    pub fn requests(&self) -> Vec<Vec<u8>> {
        self.received.lock().unwrap().clone()
    }

    /// The only request received, as text; fails if there was not exactly one.
    pub fn only_request(&self) -> String {
        let all = self.requests();
        assert_eq!(all.len(), 1, "expected exactly one request upstream");
        String::from_utf8_lossy(&all[0]).into_owned()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Reads until the end of a head (and whatever arrived with it).
fn read_raw_head(stream: &mut TcpStream) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    while find(&bytes, b"\r\n\r\n").is_none() {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
        }
    }
    bytes
}

/// Reads one request's bytes: the head, then a body by Content-Length or up to the end of a
/// chunked body. Deliberately simple; it only has to understand what the proxy sends.
fn read_raw_request(stream: &mut TcpStream) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 65536];
    let head_end = loop {
        if let Some(i) = find(&bytes, b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return bytes,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let body = &bytes[head_end..];
        let done = match (length, chunked) {
            (Some(n), _) => body.len() >= n,
            (None, true) => body.ends_with(b"0\r\n\r\n"),
            (None, false) => true,
        };
        if done {
            return bytes;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return bytes,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
        }
    }
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A client connection with timeouts, for raw exchanges.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// Sends `request` and reads until the server closes the connection.
pub fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = connect(addr);
    stream.write_all(request).unwrap();
    let _ = stream.shutdown(Shutdown::Write);
    read_to_close(&mut stream)
}

/// Reads until EOF (or an error such as a reset, which also ends the stream).
pub fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                panic!("timed out waiting for the server to close")
            }
            Err(_) => return out,
        }
    }
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub status_line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Whether the body was complete by its framing (false: cut short).
    pub complete: bool,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Parses every response in `bytes`, in order. `head_only` lists, per response, whether it
/// answers a HEAD (no body whatever the headers say). Interim 1xx responses are returned too.
pub fn parse_replies(mut bytes: &[u8], head_only: &[bool]) -> Vec<Reply> {
    let mut replies = Vec::new();
    let mut final_index = 0;
    while !bytes.is_empty() {
        let Some(end) = find(bytes, b"\r\n\r\n") else {
            panic!("incomplete head: {:?}", String::from_utf8_lossy(bytes))
        };
        let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
        bytes = &bytes[end + 4..];
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap().to_string();
        let status: u16 = status_line[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) = l.split_once(':').expect("field line");
                (n.to_string(), v.trim().to_string())
            })
            .collect();
        let mut reply = Reply {
            status,
            status_line,
            headers,
            body: Vec::new(),
            complete: true,
        };
        if (100..200).contains(&status) {
            replies.push(reply);
            continue;
        }
        let is_head = head_only.get(final_index).copied().unwrap_or(false);
        final_index += 1;
        if is_head || status == 204 || status == 304 {
        } else if reply
            .header("transfer-encoding")
            .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
        {
            let (body, rest, complete) = dechunk(bytes);
            reply.body = body;
            reply.complete = complete;
            bytes = rest;
        } else if let Some(n) = reply.header("content-length") {
            let n: usize = n.parse().unwrap();
            let take = n.min(bytes.len());
            reply.body = bytes[..take].to_vec();
            reply.complete = take == n;
            bytes = &bytes[take..];
        } else {
            reply.body = bytes.to_vec();
            bytes = &[];
        }
        replies.push(reply);
    }
    replies
}

fn dechunk(mut bytes: &[u8]) -> (Vec<u8>, &[u8], bool) {
    let mut body = Vec::new();
    loop {
        let Some(eol) = find(bytes, b"\r\n") else {
            return (body, &[], false);
        };
        let size_text = String::from_utf8_lossy(&bytes[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .expect("chunk size");
        bytes = &bytes[eol + 2..];
        if size == 0 {
            let Some(end) = find(bytes, b"\r\n") else {
                return (body, &[], false);
            };
            return (body, &bytes[end + 2..], true);
        }
        if bytes.len() < size + 2 {
            body.extend_from_slice(&bytes[..size.min(bytes.len())]);
            return (body, &[], false);
        }
        body.extend_from_slice(&bytes[..size]);
        bytes = &bytes[size + 2..];
    }
}

/// Sends `request` on a fresh connection and parses the single response.
pub fn request(addr: SocketAddr, request: &[u8]) -> Reply {
    let raw = exchange(addr, request);
    let head = request.starts_with(b"HEAD ");
    let mut replies: Vec<Reply> = parse_replies(&raw, &[head])
        .into_iter()
        .filter(|r| r.status >= 200)
        .collect();
    assert_eq!(replies.len(), 1, "expected one response, got {replies:?}");
    replies.remove(0)
}

/// `GET path` with `Connection: close`.
pub fn get(addr: SocketAddr, path: &str) -> Reply {
    request(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: test.example\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
}

/// Deterministic bytes that do not compress or repeat: a 64-bit LCG.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

pub fn sha1_hex(bytes: &[u8]) -> String {
    sha1_smol::Sha1::from(bytes).digest().to_string()
}

impl Process {
    /// The process id, for reading /proc.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits, at most `IO_TIMEOUT`, for the process to end by itself; its exit status, or
    /// None when it was still running (it is then killed).
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("look at the process") {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Threads the process is running now (Linux /proc), or None elsewhere.
    pub fn threads(&self) -> Option<usize> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|n| n.trim().parse().ok())
    }

    /// Polls the proxy's status page (bounded) until it reports one connection open: the
    /// one asking. Returns the last count it reported and how many connections the polling
    /// made. Connections end just after their client sees the close, so this waits briefly
    /// for teardown; it never waits for readiness.
    pub fn settle_connections(&self) -> (usize, usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut polls = 0;
        loop {
            let status = get(self.addr, "/relevo/status?format=json").text();
            polls += 1;
            let open = status
                .split_once("\"active_connections\":")
                .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no active_connections in {status}"));
            if open <= 1 || std::time::Instant::now() > deadline {
                return (open, polls);
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The real `webserver` binary serving the demo site on a given address (to restart a
/// backend where it was).
pub fn webserver_on(addr: SocketAddr, name: &str) -> Process {
    webserver_listening(&www_root(), name, &addr.to_string())
}

/// Writes `dir/proxy.conf`: listening on 127.0.0.1:0, logging to `dir/proxy.log`, caching
/// in `dir/cache`, then `config` (backends and other keys); returns its path.
pub fn proxy_config(dir: &TempDir, config: &str) -> PathBuf {
    let path = dir.join("proxy.conf");
    let text = format!(
        "listen = 127.0.0.1:0\nlog_file = {}\ncache_dir = {}\n{config}",
        dir.join("proxy.log").display(),
        dir.join("cache").display()
    );
    std::fs::write(&path, text).expect("write proxy.conf");
    path
}

/// The real `proxy` binary as `proxy` starts it, with extra command-line arguments.
pub fn proxy_with_args(dir: &TempDir, config: &str, args: &[&str]) -> Process {
    let path = proxy_config(dir, config);
    let mut cmd = command_in(dir, PROXY_BIN);
    cmd.arg(&path).args(args);
    Process::start(cmd)
}

/// The real `proxy` in front of `backends`, with `extra` config lines, in a new temporary
/// directory (its config, log and cache), returned with it: keep it while the proxy runs.
pub fn proxy_for(backends: &[SocketAddr], extra: &str) -> (TempDir, Process) {
    let dir = TempDir::new("proxy");
    let proxy = proxy(&dir, &format!("{}{extra}", backend_lines(backends)));
    (dir, proxy)
}

/// Runs the real `client` with `args` in `dir` to its end.
pub fn run_client(dir: &TempDir, args: &[&str]) -> Output {
    command_in(dir, CLIENT_BIN)
        .args(args)
        .output()
        .expect("run the client")
}

/// Runs `cmd` to its end and returns its exit status, stdout and stderr; a process still
/// running after `IO_TIMEOUT` (a server that started instead of refusing) is killed, and
/// its status is `None`.
pub fn run_bounded(mut cmd: Command) -> (Option<i32>, String, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let collect = |mut from: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut text = String::new();
            let _ = from.read_to_string(&mut text);
            text
        })
    };
    let stdout = collect(Box::new(child.stdout.take().unwrap()));
    let stderr = collect(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + IO_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(10));
    };
    (status, stdout.join().unwrap(), stderr.join().unwrap())
}

/// Runs `program` in `dir` with each case's arguments and asserts that it refused them as a
/// usage error: exit status 2, never listening, and stderr holding the case's message and
/// the `usage` line.
pub fn assert_usage_errors(dir: &TempDir, program: &str, cases: &[(&[&str], &str)], usage: &str) {
    for (args, expected) in cases {
        let mut cmd = command_in(dir, program);
        cmd.args(*args);
        let (code, stdout, stderr) = run_bounded(cmd);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(!stdout.contains("listening on"), "{args:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(stderr.contains(usage), "{args:?}: {stderr}");
    }
}

/// `client --cache-dir cache OPTIONS client.log URL` in `dir`: its log and cache there too.
pub fn client_fetch(dir: &TempDir, options: &[&str], url: &str) -> Output {
    let mut args = vec!["--cache-dir", "cache"];
    args.extend_from_slice(options);
    args.extend_from_slice(&["client.log", url]);
    run_client(dir, &args)
}

/// Every file name in `dir/cache` (entries, temporary files, anything), sorted, but the
/// list of hosts a purge by path reaches (`purge-hosts`), which is not about what is stored.
pub fn cache_listing(dir: &TempDir) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("cache"))
        .map(|listing| {
            listing
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name != "purge-hosts")
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The entry files in `dir/cache`: names of 40 lowercase hex digits.
pub fn cache_entries(dir: &TempDir) -> Vec<PathBuf> {
    cache_listing(dir)
        .into_iter()
        .filter(|n| {
            n.len() == 40
                && n.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        })
        .map(|n| dir.join("cache").join(n))
        .collect()
}

/// Makes every cache entry in `dir` look `secs` seconds old (mtime = now - secs): how the
/// tests let time pass without sleeping.
pub fn age_cache(dir: &TempDir, secs: u64) {
    let then = std::time::SystemTime::now() - Duration::from_secs(secs);
    for path in cache_entries(dir) {
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(then).unwrap();
    }
}

/// What the proxy started with `proxy(dir, ...)` has logged so far.
pub fn proxy_log(dir: &TempDir) -> String {
    std::fs::read_to_string(dir.join("proxy.log")).unwrap_or_default()
}

/// A keep-alive backend: answers every GET on a connection with a small 200 until the
/// client closes, and counts connections and requests, and connections the client closed
/// (`closed`). Stops accepting when dropped.
pub struct KeepAliveBackend {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    pub requests: Arc<AtomicUsize>,
    pub closed: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl KeepAliveBackend {
    pub fn new() -> KeepAliveBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let backend = KeepAliveBackend {
            addr,
            connections: Arc::new(AtomicUsize::new(0)),
            requests: Arc::new(AtomicUsize::new(0)),
            closed: Arc::new(AtomicUsize::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (conns, reqs, closed, stopping) = (
            Arc::clone(&backend.connections),
            Arc::clone(&backend.requests),
            Arc::clone(&backend.closed),
            Arc::clone(&backend.stop),
        );
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                conns.fetch_add(1, Ordering::SeqCst);
                let (reqs, closed) = (Arc::clone(&reqs), Arc::clone(&closed));
                thread::spawn(move || {
                    if answer_keep_alive(stream, &reqs) {
                        closed.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        backend
    }
}

/// Answers every request head on `stream` with a small 200, counting them, until the
/// client closes (true) or the connection fails or times out (false).
fn answer_keep_alive(mut stream: TcpStream, requests: &AtomicUsize) -> bool {
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        while let Some(end) = find(&pending, b"\r\n\r\n") {
            pending.drain(..end + 4);
            requests.fetch_add(1, Ordering::SeqCst);
            let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nka";
            if stream.write_all(reply).is_err() {
                return false;
            }
        }
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Err(_) => return false,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
    }
}

impl Drop for KeepAliveBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// The rule `command_in` keeps, checked on the sources: no test file starts a process or
/// picks a working directory itself, so every process runs in a temporary directory
/// (`Process::start_when` checks that at run time) and none writes
/// into the checkout's `cache/` or `logs/`.
#[test]
fn a_test_starts_processes_only_in_temporary_directories() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") || path.ends_with("support.rs") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        for forbidden in ["Command::new(", ".current_dir(", "CARGO_BIN_EXE_"] {
            assert!(
                !source.contains(forbidden),
                "{} uses {forbidden}: start processes with support::command_in",
                path.display()
            );
        }
        checked += 1;
    }
    assert!(
        checked >= 10,
        "only {checked} test files found in {}",
        dir.display()
    );
}

// Scripted backends that say who answered, and the status page's view of them.

/// A backend that answers every request with its name, in `X-Served-By` and as the body,
/// and closes.
pub fn named(name: &'static str) -> Backend {
    Backend::new(move |_| answer(name))
}

pub fn answer(name: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nX-Served-By: {name}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
        name.len()
    )
    .into_bytes()
}

/// Who answered `GET path` through the proxy (which must answer 200).
pub fn served_by(proxy: SocketAddr, path: &str) -> String {
    let reply = get(proxy, path);
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply
        .header("x-served-by")
        .expect("X-Served-By")
        .to_string()
}

/// Backends that answer with their names, except that a `GET /hold` waits, after saying
/// which backend it arrived on, until the test lets one held request go.
pub struct Gated {
    pub backends: Vec<Backend>,
    pub arrived: Receiver<&'static str>,
    pub release: Sender<()>,
}

pub fn gated(names: &[&'static str]) -> Gated {
    let (arrived_tx, arrived) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let release_rx = Arc::new(Mutex::new(release_rx));
    let backends = names
        .iter()
        .map(|&name| {
            let (arrived_tx, release_rx) = (arrived_tx.clone(), Arc::clone(&release_rx));
            Backend::new(move |request| {
                if request.starts_with(b"GET /hold") {
                    arrived_tx.send(name).unwrap();
                    let _ = release_rx.lock().unwrap().recv_timeout(IO_TIMEOUT);
                }
                answer(name)
            })
        })
        .collect();
    Gated {
        backends,
        arrived,
        release,
    }
}

impl Gated {
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.backends.iter().map(|b| b.addr).collect()
    }

    /// Sends `GET /hold` in the background and returns the backend it is held on, and the
    /// request's thread, which returns the reply once released.
    pub fn hold(&self, proxy: SocketAddr) -> (&'static str, std::thread::JoinHandle<Reply>) {
        let held = std::thread::spawn(move || get(proxy, "/hold"));
        let busy = self
            .arrived
            .recv_timeout(IO_TIMEOUT)
            .expect("the held request reached no backend");
        (busy, held)
    }
}

/// The JSON object the status page gives for the backend at `address` (of the first pool
/// that lists it).
pub fn backend_status(proxy: SocketAddr, address: SocketAddr) -> String {
    let json = get(proxy, "/relevo/status?format=json").text();
    let at = json
        .find(&format!("\"address\":\"{address}\""))
        .unwrap_or_else(|| panic!("no {address} in {json}"));
    let start = json[..at].rfind('{').unwrap();
    let end = at + json[at..].find('}').unwrap();
    json[start..=end].to_string()
}

/// The raw value of `field` in a flat JSON object.
pub fn field<'a>(object: &'a str, field: &str) -> &'a str {
    let key = format!("\"{field}\":");
    let start = object
        .find(&key)
        .unwrap_or_else(|| panic!("no {field} in {object}"))
        + key.len();
    let rest = &object[start..];
    let end = rest.find([',', '}']).unwrap();
    rest[..end].trim_matches('"')
}

/// Polls `done` until it holds, for at most `IO_TIMEOUT`: for what the proxy does in the
/// background or after answering (eviction, the census, a log line written once the
/// response is out).
pub fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + IO_TIMEOUT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        thread::sleep(Duration::from_millis(10));
    }
}
