//! WebSocket through the proxy, end to end: a real client and server (Python's `websockets`),
//! hand-written frames against scripted backends (including frames sent right behind each
//! head), the idle limit, backend health after a 101, other upgrade tokens, the status page
//! and the threads a tunnel uses.
//!
//! The Python test needs `python3` with `websockets` (`.ci/run` installs it): without them it
//! prints a SKIP line, and fails instead under `RELEVO_REQUIRE_EXTERNAL=1`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::*;

/// The handshake example of RFC 6455 §1.3: this key must be answered with this accept value.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;

/// A client's opening handshake (RFC 6455 §4.1).
fn upgrade_request(path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: chat.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// The server's answer to `upgrade_request`.
fn switching_head() -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
    )
    .into_bytes()
}

/// One final frame (RFC 6455 §5.2), masked with `mask` when a client sends it.
fn frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    let masked = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(masked | n as u8),
        n if n <= 0xFFFF => {
            out.push(masked | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(masked | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A client frame, masked as RFC 6455 §5.3 requires.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(opcode, payload, Some([0x37, 0xfa, 0x21, 0x3d]))
}

/// Reads one frame: its opcode, whether it was masked, and its unmasked payload; `None` at
/// the end of the stream.
fn read_frame(from: &mut impl Read) -> Option<(u8, bool, Vec<u8>)> {
    let mut start = [0u8; 2];
    from.read_exact(&mut start).ok()?;
    let masked = start[1] & 0x80 != 0;
    let len = match start[1] & 0x7f {
        126 => {
            let mut n = [0u8; 2];
            from.read_exact(&mut n).ok()?;
            u64::from(u16::from_be_bytes(n))
        }
        127 => {
            let mut n = [0u8; 8];
            from.read_exact(&mut n).ok()?;
            u64::from_be_bytes(n)
        }
        n => u64::from(n),
    };
    let mut key = [0u8; 4];
    if masked {
        from.read_exact(&mut key).ok()?;
    }
    let mut payload = vec![0u8; len as usize];
    from.read_exact(&mut payload).ok()?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    Some((start[0] & 0x0f, masked, payload))
}

/// A WebSocket echo server written by hand: answers the handshake with `switching_head`,
/// then echoes every data frame (unmasked, as a server sends), answers a close with a
/// close, and hangs up on the text message `bye`. Every frame a client sent unmasked makes
/// it answer `unmasked!` instead.
fn echo_backend() -> Backend {
    Backend::raw(|_, stream| {
        if stream.write_all(&switching_head()).is_err() {
            return;
        }
        while let Some((opcode, masked, payload)) = read_frame(stream) {
            let reply = match (masked, opcode) {
                (false, _) => frame(TEXT, b"unmasked!", None),
                (true, CLOSE) => frame(CLOSE, &payload, None),
                (true, _) if payload == b"bye" => return,
                (true, _) => frame(opcode, &payload, None),
            };
            if stream.write_all(&reply).is_err() || opcode == CLOSE {
                return;
            }
        }
    })
}

/// A client side of a tunnel: the reader over the connection, and the 101's head.
struct Tunnel {
    reader: BufReader<TcpStream>,
    head: String,
}

impl Tunnel {
    /// Sends `upgrade_request` (with `behind` written in the same packet) and reads the head
    /// of the answer, which must be a 101.
    fn open(proxy: SocketAddr, behind: &[u8]) -> Tunnel {
        let mut stream = connect(proxy);
        let mut bytes = upgrade_request("/chat");
        bytes.extend_from_slice(behind);
        stream.write_all(&bytes).unwrap();
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        while !head.ends_with("\r\n\r\n") {
            assert!(reader.read_line(&mut head).unwrap() > 0, "closed: {head}");
        }
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        Tunnel { reader, head }
    }

    fn send(&mut self, opcode: u8, payload: &[u8]) {
        self.reader
            .get_mut()
            .write_all(&client_frame(opcode, payload))
            .unwrap();
    }

    fn receive(&mut self) -> (u8, Vec<u8>) {
        let (opcode, masked, payload) = read_frame(&mut self.reader).expect("a frame");
        assert!(!masked, "a server frame arrived masked");
        (opcode, payload)
    }

    /// Sends `payload` and expects it back.
    fn echo(&mut self, opcode: u8, payload: &[u8]) {
        self.send(opcode, payload);
        assert_eq!(self.receive(), (opcode, payload.to_vec()));
    }

    /// The closing handshake (RFC 6455 §5.5.1), then the end of the connection.
    fn close(mut self) {
        let normal = 1000u16.to_be_bytes();
        self.send(CLOSE, &normal);
        assert_eq!(self.receive(), (CLOSE, normal.to_vec()));
        self.expect_end();
    }

    fn expect_end(mut self) {
        let mut rest = Vec::new();
        let _ = self.reader.read_to_end(&mut rest);
        assert!(rest.is_empty(), "bytes after the end: {rest:?}");
    }
}

/// The value of `"key":NUMBER` in a status JSON text.
fn json_number(json: &str, key: &str) -> u64 {
    json.split_once(&format!("\"{key}\":"))
        .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {json}"))
}

fn status_json(proxy: &Process) -> String {
    get(proxy.addr, "/relevo/status?format=json").text()
}

/// Whether the backend at `addr` is up, by the status page.
fn backend_is_up(proxy: &Process, addr: SocketAddr) -> bool {
    let json = status_json(proxy);
    let entry = format!("{{\"address\":\"{addr}\",\"state\":\"");
    let (_, rest) = json.split_once(&entry).expect("the backend is listed");
    rest.starts_with("up\"")
}

#[test]
fn hand_written_frames_cross_the_proxy_including_those_sent_right_behind_each_head() {
    // The backend sends a frame in the same write as its 101, and the client sends one in
    // the same write as its request: both sit in a read buffer when the tunnel starts.
    let backend = Backend::raw(|_, stream| {
        let mut bytes = switching_head();
        bytes.extend_from_slice(&frame(TEXT, b"welcome", None));
        stream.write_all(&bytes).unwrap();
        while let Some((opcode, masked, payload)) = read_frame(stream) {
            assert!(masked, "the client's frame lost its mask");
            stream.write_all(&frame(opcode, &payload, None)).unwrap();
            if opcode == CLOSE {
                return;
            }
        }
    });
    let dir = TempDir::new("ws-frames");
    let proxy = proxy(&dir, &backend_lines(&[backend.addr]));
    let mut tunnel = Tunnel::open(proxy.addr, &client_frame(TEXT, b"pipelined"));
    let head = tunnel.head.to_ascii_lowercase();
    for field in [
        "upgrade: websocket\r\n",
        "connection: upgrade\r\n",
        "via: 1.1 relevo\r\n",
        "x-cache: bypass\r\n",
    ] {
        assert!(head.contains(field), "{field:?} missing from {head}");
    }
    assert!(tunnel
        .head
        .contains(&format!("Sec-WebSocket-Accept: {ACCEPT}\r\n")));
    assert_eq!(tunnel.receive(), (TEXT, b"welcome".to_vec()));
    assert_eq!(tunnel.receive(), (TEXT, b"pipelined".to_vec()));
    // A frame larger than any buffer on the way, with a 64-bit length.
    tunnel.echo(BINARY, &pseudo_random(300_000, 6455));
    tunnel.close();

    let upstream = backend.only_request().to_ascii_lowercase();
    assert!(
        upstream.contains("\r\nupgrade: websocket\r\n"),
        "{upstream}"
    );
    assert!(
        upstream.contains("\r\nconnection: upgrade\r\n"),
        "{upstream}"
    );
    assert!(upstream.contains(&format!(
        "\r\nsec-websocket-key: {}\r\n",
        KEY.to_ascii_lowercase()
    )));
    assert!(
        upstream.ends_with("\r\n\r\n"),
        "frames before the 101: {upstream}"
    );
    assert!(cache_entries(&dir).is_empty(), "a tunnel was stored");
    // The client sees the end before the line is written; the slot goes back after it.
    proxy.settle_connections();
    let log = proxy_log(&dir);
    let line = log
        .lines()
        .find(|l| l.contains("\"GET /chat HTTP/1.1\""))
        .expect("the tunnel is logged");
    // Frames with their heads: 2 bytes, 8 more for a 64-bit length, 4 for a client's mask.
    let up = (2 + 4 + 9) + (2 + 8 + 4 + 300_000) + (2 + 4 + 2);
    let down = (2 + 7) + (2 + 9) + (2 + 8 + 300_000) + (2 + 2);
    assert!(
        line.contains(&format!("-> {} 101 BYPASS {down} B", backend.addr))
            && line.contains(&format!("(tunnel: {up} B up, {down} B down, closed)")),
        "{line}"
    );
    assert_eq!(
        log.matches("GET /chat").count(),
        1,
        "logged more than once: {log}"
    );
}

#[test]
fn a_server_that_only_pushes_keeps_its_tunnel_past_the_idle_limit_until_both_fall_silent() {
    // 1.5 s of pushes 0.1 s apart, against a 1 s limit: a wide margin for a loaded machine.
    const PUSHES: usize = 15;
    let interval = Duration::from_millis(100);
    let limit = Duration::from_secs(1);
    let hung_up = Arc::new(Mutex::new(None));
    let seen = Arc::clone(&hung_up);
    let backend = Backend::raw(move |_, stream| {
        stream.write_all(&switching_head()).unwrap();
        for i in 0..PUSHES {
            thread::sleep(interval);
            let event = format!("event {i}");
            stream
                .write_all(&frame(TEXT, event.as_bytes(), None))
                .unwrap();
        }
        // Silent from now on: the proxy should hang up on us after the idle limit.
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        *seen.lock().unwrap() = Some(rest);
    });
    let dir = TempDir::new("ws-idle");
    let config = format!(
        "cache = off\ntunnel_idle_timeout = 1\n{}",
        backend_lines(&[backend.addr])
    );
    let proxy = proxy(&dir, &config);
    let mut tunnel = Tunnel::open(proxy.addr, b"");
    let opened = Instant::now();
    for i in 0..PUSHES {
        assert_eq!(tunnel.receive(), (TEXT, format!("event {i}").into_bytes()));
    }
    let last_push = Instant::now();
    assert!(
        last_push - opened > limit,
        "the pushes did not outlast the limit"
    );
    tunnel.expect_end();
    assert!(
        last_push.elapsed() >= limit,
        "closed {:?} after the last byte",
        last_push.elapsed()
    );
    let settled = Instant::now() + IO_TIMEOUT;
    while hung_up.lock().unwrap().is_none() && Instant::now() < settled {
        thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        hung_up.lock().unwrap().as_deref(),
        Some(&[][..]),
        "the backend's side was not closed, or got bytes"
    );
    proxy.settle_connections();
    let log = proxy_log(&dir);
    let down: usize = (0..PUSHES).map(|i| 2 + format!("event {i}").len()).sum();
    assert!(
        log.contains(&format!("(tunnel: 0 B up, {down} B down, idle for 1 s)")),
        "{log}"
    );
}

#[test]
fn a_101_leaves_the_backend_up_and_an_unsolicited_101_is_a_502_that_does_not_mark_it_down() {
    let backend = echo_backend();
    let dir = TempDir::new("ws-health");
    // One failure would be enough to take the backend out.
    let config = format!(
        "cache = off\nmax_fails = 1\nfail_timeout = 60\n{}",
        backend_lines(&[backend.addr])
    );
    let proxy = proxy(&dir, &config);
    let mut tunnel = Tunnel::open(proxy.addr, b"");
    tunnel.echo(TEXT, b"hello");
    tunnel.close();
    assert!(
        backend_is_up(&proxy, backend.addr),
        "{}",
        status_json(&proxy)
    );

    // The same backend switches protocols for a request that never asked to.
    let plain = get(proxy.addr, "/page");
    assert_eq!(plain.status, 502, "{plain:?}");
    assert!(
        backend_is_up(&proxy, backend.addr),
        "{}",
        status_json(&proxy)
    );
    assert!(
        proxy_log(&dir).contains("switched protocols without being asked to"),
        "{}",
        proxy_log(&dir)
    );
    // The switched connection was not pooled: the next upgrade works as the first did.
    Tunnel::open(proxy.addr, b"").close();
}

#[test]
fn upgrade_h2c_is_stripped_and_answered_over_http_1_1() {
    let backend = Backend::fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain");
    let dir = TempDir::new("ws-h2c");
    let config = format!("cache = off\n{}", backend_lines(&[backend.addr]));
    let proxy = proxy(&dir, &config);
    // What `curl --http2 http://...` sends (RFC 7540 §3.2).
    let reply = request(
        proxy.addr,
        b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
          HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(reply.status_line, "HTTP/1.1 200 OK");
    assert_eq!(reply.text(), "plain");
    assert_eq!(reply.header("upgrade"), None);
    let upstream = backend.only_request().to_ascii_lowercase();
    for gone in ["upgrade", "http2-settings"] {
        assert!(!upstream.contains(gone), "{gone} forwarded: {upstream}");
    }
    // A WebSocket upgrade over HTTP/1.0 is ignored the same way (RFC 9110 §7.8).
    let old = String::from_utf8(upgrade_request("/"))
        .unwrap()
        .replace("HTTP/1.1", "HTTP/1.0");
    assert_eq!(request(proxy.addr, old.as_bytes()).status, 200);
    assert!(!String::from_utf8_lossy(&backend.requests()[1])
        .to_ascii_lowercase()
        .contains("upgrade"));
}

/// The status page at `path`, asked again while the proxy refuses the connection with a 503
/// because the connection of a previous request has not yet given back its slot.
fn status_page(proxy: &Process, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = get(proxy.addr, path);
        if reply.status != 503 || Instant::now() > deadline {
            assert_eq!(reply.status, 200, "{reply:?}");
            return reply.text();
        }
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn an_open_tunnel_shows_on_the_status_page_and_holds_a_connection_slot() {
    let backend = echo_backend();
    let dir = TempDir::new("ws-status");
    let config = format!(
        "cache = off\nmax_connections = 3\n{}",
        backend_lines(&[backend.addr])
    );
    let proxy = proxy(&dir, &config);
    let mut tunnels: Vec<Tunnel> = (0..3)
        .map(|i| {
            let mut tunnel = Tunnel::open(proxy.addr, b"");
            tunnel.echo(TEXT, format!("tunnel {i}").as_bytes());
            tunnel
        })
        .collect();
    let refused = request(proxy.addr, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        refused.status, 503,
        "three tunnels fill max_connections = 3"
    );

    tunnels.pop().unwrap().close();
    let json = status_page(&proxy, "/relevo/status?format=json");
    assert!(
        json.contains("\"tunnels\":{\"open\":2,\"total\":3}"),
        "{json}"
    );
    assert!(json_number(&json, "active_connections") >= 3, "{json}");
    let html = status_page(&proxy, "/relevo/status");
    assert!(
        html.contains("2 WebSocket tunnels open (3 since start)"),
        "{html}"
    );

    tunnels.pop().unwrap().close();
    let mut last = tunnels.pop().unwrap();
    last.send(TEXT, b"bye");
    last.expect_end();
    let (open, _) = proxy.settle_connections();
    assert_eq!(open, 1);
    let json = status_json(&proxy);
    assert!(
        json.contains("\"tunnels\":{\"open\":0,\"total\":3}"),
        "{json}"
    );
    let log = proxy_log(&dir);
    assert_eq!(log.matches(" 101 BYPASS ").count(), 3, "{log}");
}

#[test]
fn a_tunnel_never_leaves_a_thread_behind() {
    let backend = echo_backend();
    let dir = TempDir::new("ws-threads");
    let config = format!("cache = off\n{}", backend_lines(&[backend.addr]));
    let proxy = proxy(&dir, &config);
    let Some(baseline) = proxy.threads() else {
        skip_or_fail("thread count: no /proc on this system");
        return;
    };
    let mut tunnels: Vec<Tunnel> = (0..4)
        .map(|i| {
            let mut tunnel = Tunnel::open(proxy.addr, b"");
            // An echo has crossed both directions, so both threads are running.
            tunnel.echo(TEXT, format!("tunnel {i}").as_bytes());
            tunnel
        })
        .collect();
    let during = proxy.threads().unwrap();
    assert!(
        during >= baseline + 8,
        "{during} threads with 4 tunnels open, {baseline} before"
    );
    // Four ways to end: the closing handshake, the backend hanging up, the client hanging
    // up without a word, and the client ending its stream (a half-close) after a frame.
    tunnels.remove(0).close();
    let mut hung_up = tunnels.remove(0);
    hung_up.send(TEXT, b"bye");
    hung_up.expect_end();
    drop(tunnels.remove(0));
    let mut half = tunnels.remove(0);
    half.send(TEXT, b"last words");
    half.reader.get_ref().shutdown(Shutdown::Write).unwrap();
    assert_eq!(half.receive(), (TEXT, b"last words".to_vec()));
    half.expect_end();

    // Connection threads stay parked for reuse; the tunnels' second threads must end. Read
    // from /proc alone, so that no new connection brings a thread of its own meanwhile.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut after = proxy.threads().unwrap();
    while after + 4 > during && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
        after = proxy.threads().unwrap();
    }
    assert!(
        after + 4 <= during,
        "{after} threads after the tunnels closed, {during} while open"
    );
    let (open, _) = proxy.settle_connections();
    assert_eq!(open, 1, "a connection is still being served");
}

/// An echo server and a client, with Python's `websockets` (its asyncio API, 13.0 and later).
const PYTHON_WEBSOCKETS: &str = r#"
import asyncio, os, sys
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

async def echo(ws):
    async for message in ws:
        await ws.send(message)

async def server():
    async with serve(echo, "127.0.0.1", 0, max_size=None) as srv:
        port = list(srv.sockets)[0].getsockname()[1]
        print(f"listening on 127.0.0.1:{port}", flush=True)
        await asyncio.Future()

async def client(url):
    async with connect(url, max_size=None) as ws:
        headers = ws.response.headers
        assert headers["Via"] == "1.1 relevo", headers
        assert headers["X-Cache"] == "BYPASS", headers
        big = os.urandom(1 << 20)
        messages = ["hello", b"\x00\x01\xff binary", big] + [f"message {i}" for i in range(50)]
        for message in messages:
            await ws.send(message)
            assert await ws.recv() == message
        await asyncio.wait_for(await ws.ping(), 10)
    assert ws.close_code == 1000, ws.close_code
    print("ok", flush=True)

if sys.argv[1] == "server":
    asyncio.run(server())
else:
    asyncio.run(asyncio.wait_for(client(sys.argv[2]), 60))
"#;

#[test]
fn a_real_websocket_client_and_server_talk_through_the_proxy() {
    let Some(python) = python_modules(&["websockets.asyncio.client"]) else {
        return;
    };
    let dir = TempDir::new("ws-python");
    let script = dir.join("ws.py");
    std::fs::write(&script, PYTHON_WEBSOCKETS).unwrap();
    let mut server = command_in(&dir, &python);
    server.arg(&script).arg("server");
    let server = Process::start(server);
    let proxy = proxy(&dir, &backend_lines(&[server.addr]));
    let client = command_in(&dir, &python)
        .arg(&script)
        .arg("client")
        .arg(format!("ws://{}/chat", proxy.addr))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&client.stdout);
    let stderr = String::from_utf8_lossy(&client.stderr);
    assert!(
        client.status.success() && stdout.trim() == "ok",
        "client failed: {stdout}{stderr}\nproxy log:\n{}",
        proxy_log(&dir)
    );
    proxy.settle_connections();
    let log = proxy_log(&dir);
    let line = log
        .lines()
        .find(|l| l.contains("\"GET /chat HTTP/1.1\""))
        .expect("the tunnel is logged");
    assert!(line.contains(" 101 BYPASS "), "{line}");
    let up: u64 = line
        .split_once("(tunnel: ")
        .and_then(|(_, rest)| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no byte count in {line}"));
    assert!(up > 1 << 20, "the 1 MiB message did not go up: {line}");
    assert!(line.ends_with(", closed)"), "{line}");
    let json = status_json(&proxy);
    assert!(
        json.contains("\"tunnels\":{\"open\":0,\"total\":1}"),
        "{json}"
    );
}
