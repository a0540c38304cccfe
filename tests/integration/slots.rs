//! Slot exhaustion (issue 12, item 1): clients that hold connection slots without using them
//! must not lock everyone else out. The two attacks of the issue at a scale CI affords
//! (`max_connections = 64`): idle keep-alive connections on every slot, and slowloris
//! clients that reconnect whenever they are closed; then the cap per address, the shorter
//! waits under pressure and the open-file limit. `bench/slots.py` runs the same attacks at
//! full scale, side by side with nginx.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use relevo::server::PRESSURE_IDLE_WAIT;

use crate::support::*;

/// `max_connections` in these tests.
const SLOTS: usize = 64;
/// Slowloris clients: more than the slots.
const ATTACKERS: usize = 70;
/// Pause between two header lines of a slowloris client.
const DRIP: Duration = Duration::from_millis(100);
/// Probes that must each get a 200 while the slowloris clients keep at it.
const PROBES: usize = 5;
/// How long one probe may keep trying (503s included) before the test fails. Without the
/// fix the attack holds every slot for client_timeout (15 s).
const PROBE_PATIENCE: Duration = Duration::from_secs(5);

const GET_KEEP_ALIVE: &[u8] = b"GET /ka HTTP/1.1\r\nHost: t\r\n\r\n";

/// The config lines of these tests: `SLOTS` slots, cache off.
fn slots_config() -> String {
    format!("cache = off\nmax_connections = {SLOTS}\n")
}

/// Reads exactly one response with a Content-Length body from a keep-alive connection;
/// returns its status.
fn read_one_response(stream: &mut TcpStream) -> u16 {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = find(&bytes, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if bytes.len() >= end + 4 + length {
                return head[9..12].parse().unwrap();
            }
        }
        let n = stream.read(&mut buf).expect("a response");
        assert!(n > 0, "closed before a whole response: {bytes:?}");
        bytes.extend_from_slice(&buf[..n]);
    }
}

/// A keep-alive connection that has made one request and now sits idle.
fn idle_keep_alive(addr: SocketAddr) -> TcpStream {
    let mut stream = connect(addr);
    stream.write_all(GET_KEEP_ALIVE).unwrap();
    assert_eq!(read_one_response(&mut stream), 200);
    stream
}

/// Whether the proxy closed `stream` (EOF or reset) within `within`.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock) => return false,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::TimedOut) => return false,
            Err(_) => return true,
        }
    }
}

#[test]
fn slot_exhaustion_idle_keep_alive_connections_do_not_lock_out_a_new_client() {
    let backend = KeepAliveBackend::new();
    let (_dir, proxy) = proxy_for(&[backend.addr], &slots_config());
    // Every slot holds a keep-alive connection that made one request and now waits.
    let mut held: Vec<TcpStream> = (0..SLOTS).map(|_| idle_keep_alive(proxy.addr)).collect();
    let probe = get(proxy.addr, "/probe");
    assert_eq!(probe.status, 200, "a new client was locked out");
    // The room was made by closing an idle connection: the one idle longest (or, if
    // opening them took over PRESSURE_IDLE_WAIT, one whose wait had been shortened).
    let deadline = Instant::now() + Duration::from_secs(5);
    while !held.iter().any(is_closed) {
        assert!(Instant::now() < deadline, "no idle connection was closed");
        thread::sleep(Duration::from_millis(10));
    }
    // The others still serve requests. Which one was idle longest depends on when each
    // connection's thread began to wait, not on the order the test opened them: ask one
    // that is still open.
    let open = held
        .iter_mut()
        .find(|s| !is_closed(s))
        .expect("every idle connection was closed");
    open.write_all(GET_KEEP_ALIVE).unwrap();
    assert_eq!(read_one_response(open), 200);
}

/// Whether the proxy has closed `stream` (EOF or reset), without waiting.
fn is_closed(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let closed = match stream.peek(&mut [0u8; 1]) {
        Ok(n) => n == 0,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    stream.set_nonblocking(false).unwrap();
    closed
}

/// A slowloris client: sends a request head one header line per `DRIP`, never ending it,
/// and reconnects whenever the proxy closes the connection, until `stop`. Counts the
/// connections the proxy ended (refused with 503, reclaimed or timed out) in `closed`.
fn slowloris(addr: SocketAddr, stop: Arc<AtomicBool>, closed: Arc<AtomicUsize>) {
    while !stop.load(Ordering::SeqCst) {
        let Ok(mut stream) = TcpStream::connect(addr) else {
            thread::sleep(DRIP);
            continue;
        };
        let mut line: &[u8] = b"GET / HTTP/1.1\r\nHost: t\r\n";
        while !stop.load(Ordering::SeqCst) && stream.write_all(line).is_ok() {
            line = b"X-Slow: a\r\n";
            thread::sleep(DRIP);
        }
        closed.fetch_add(1, Ordering::SeqCst);
    }
}

/// The status of one `GET` on a new connection, or `None` if it was closed without one.
fn probe(addr: SocketAddr) -> Option<u16> {
    let mut stream = connect(addr);
    let sent = stream.write_all(b"GET /probe HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let raw = read_to_close(&mut stream);
    if sent.is_err() || raw.len() < 12 {
        return None;
    }
    String::from_utf8_lossy(&raw[9..12]).parse().ok()
}

#[test]
fn slot_exhaustion_reconnecting_slowloris_clients_do_not_lock_out_probes() {
    let backend = KeepAliveBackend::new();
    let (_dir, proxy) = proxy_for(&[backend.addr], &slots_config());
    let stop = Arc::new(AtomicBool::new(false));
    let closed = Arc::new(AtomicUsize::new(0));
    let attackers: Vec<_> = (0..ATTACKERS)
        .map(|_| {
            let (stop, closed, addr) = (Arc::clone(&stop), Arc::clone(&closed), proxy.addr);
            thread::spawn(move || slowloris(addr, stop, closed))
        })
        .collect();
    // The attack holds every slot once some of its connections are turned away: within
    // RECLAIM_GRACE none can have been reclaimed or timed out, only refused.
    let full = Instant::now() + PROBE_PATIENCE;
    while closed.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < full,
            "the slowloris clients never filled the slots"
        );
        thread::sleep(DRIP);
    }
    // Each probe tries until it gets a 200, for at most PROBE_PATIENCE.
    let mut tries = Vec::new();
    for _ in 0..PROBES {
        let started = Instant::now();
        let mut n = 1;
        while probe(proxy.addr) != Some(200) {
            assert!(
                started.elapsed() < PROBE_PATIENCE,
                "a probe got no 200 in {PROBE_PATIENCE:?} (tries of the probes before: {tries:?})"
            );
            n += 1;
            thread::sleep(Duration::from_millis(50));
        }
        tries.push(n);
    }
    stop.store(true, Ordering::SeqCst);
    for attacker in attackers {
        attacker.join().unwrap();
    }
    // Only the first probe may have had to wait, for the attack's heads to be older than
    // RECLAIM_GRACE; from then on each probe is served at its first try.
    assert!(tries[1..].iter().all(|n| *n == 1), "tries: {tries:?}");
}

#[test]
fn slot_exhaustion_under_pressure_idle_keep_alive_connections_wait_less() {
    let backend = KeepAliveBackend::new();
    let dir = TempDir::new("slots-pressure");
    // 4 slots: the fourth connection takes them above three quarters.
    let config = format!(
        "cache = off\nmax_connections = 4\nclient_timeout = 15\nbackend = {}\n",
        backend.addr
    );
    let proxy = proxy(&dir, &config);
    // The first three begin waiting below the mark and keep client_timeout. A thread that
    // reaches its wait only after the fourth connection came in (a loaded machine) waits the
    // shorter time too, as it should: when that happens to all three, the round says nothing
    // about them, and is run again, a bounded number of times.
    for _ in 0..PRESSURE_ROUNDS {
        let mut calm: Vec<TcpStream> = (0..3).map(|_| idle_keep_alive(proxy.addr)).collect();
        let mut pressed = idle_keep_alive(proxy.addr);
        let started = Instant::now();
        assert!(
            closed_within(&mut pressed, PRESSURE_IDLE_WAIT * 3),
            "the idle wait was not shortened under pressure"
        );
        let waited = started.elapsed();
        assert!(
            waited >= PRESSURE_IDLE_WAIT / 2,
            "closed after {waited:?}, before the shortened wait"
        );
        if let Some(open) = calm.iter_mut().find(|s| !is_closed(s)) {
            open.write_all(GET_KEEP_ALIVE).unwrap();
            assert_eq!(read_one_response(open), 200);
            return;
        }
    }
    panic!("in {PRESSURE_ROUNDS} rounds, the connections opened below the mark were closed too");
}

/// Rounds of `slot_exhaustion_under_pressure_idle_keep_alive_connections_wait_less` before
/// it concludes that connections opened below the mark do not keep client_timeout.
const PRESSURE_ROUNDS: usize = 3;

/// A GET from the source address `argv[1]` to port `argv[2]` of 127.0.0.1: prints the
/// status line. (std cannot bind a client socket before connecting.)
const GET_FROM: &str = r#"
import socket, sys
s = socket.socket()
s.settimeout(20)
s.bind((sys.argv[1], 0))
s.connect(("127.0.0.1", int(sys.argv[2])))
s.sendall(b"GET /other HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
data = b""
while b"\r\n" not in data:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
print(data.split(b"\r\n")[0].decode("latin-1"))
"#;

#[test]
fn slot_exhaustion_one_address_cannot_take_every_slot() {
    let backend = KeepAliveBackend::new();
    let (dir, proxy) = proxy_for(
        &[backend.addr],
        &format!("{}max_connections_per_ip = 4\n", slots_config()),
    );
    let _held: Vec<TcpStream> = (0..4).map(|_| idle_keep_alive(proxy.addr)).collect();
    let refused = get(proxy.addr, "/fifth");
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after"), Some("1"));
    let port = proxy.addr.port().to_string();
    if let Some(line) = python(&dir, GET_FROM, &["127.0.0.2", &port]) {
        assert_eq!(
            line.trim(),
            "HTTP/1.1 200 OK",
            "another address was refused"
        );
    }
}

#[test]
fn slot_exhaustion_a_low_open_file_limit_lowers_max_connections_with_a_warning() {
    let backend = KeepAliveBackend::new();
    let dir = TempDir::new("slots-nofile");
    let conf = proxy_config(&dir, &format!("cache = off\nbackend = {}\n", backend.addr));
    // 200 files: 64 kept in reserve, 32 for idle backend connections, 2 per connection.
    let mut cmd = command_in(&dir, "sh");
    cmd.arg("-c")
        .arg("ulimit -n 200 && exec \"$0\" \"$1\"")
        .arg(PROXY_BIN)
        .arg(&conf);
    let proxy = Process::start(cmd);
    assert_eq!(get(proxy.addr, "/").status, 200);
    let log = proxy_log(&dir);
    assert!(
        log.contains("max_connections = 10000 needs 20096 open files")
            && log.contains("serving at most 52 connections at once"),
        "{log}"
    );
}
