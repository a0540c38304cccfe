//! Step 12 for a switched connection (see `proxy`): when a backend answers
//! `101 Switching Protocols` to a WebSocket upgrade we forwarded, the client connection and
//! the backend connection become one byte tunnel until both sides have closed, either one
//! fails, or no byte has moved either way for `tunnel_idle_timeout`.
//!
//! Which upgrades go through (RFC 9110 §7.8, RFC 6455 §4.1), decided by `asks_for_websocket`:
//! only `websocket`, on an HTTP/1.1 GET without a body whose Connection lists `upgrade`.
//! Upgrade is hop-by-hop, so `rewrite_request` sets `Upgrade: websocket` and
//! `Connection: upgrade` itself for such a request (what nginx's
//! `proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade"` does).
//! Any other token (`h2c`, ...) is ignored, as §7.8 lets a server do: Upgrade is stripped
//! with the other hop-by-hop fields and the request is answered over HTTP/1.1, so
//! `curl --http2` falls back instead of failing. A 101 to a request we did not forward an
//! upgrade on, or to a protocol other than the one asked for, breaks §15.2.2: the client
//! gets 502, but the backend's health does not suffer (it answered, in well-formed HTTP).
//!
//! The tunnel parses nothing: WebSocket frames, masks and close handshakes pass as bytes.
//! Bytes already read ahead when the tunnel starts go first: the client's frames pipelined
//! right behind its request (in the client reader's buffer) and the backend's frames sent
//! right behind its 101 (in the backend reader's buffer). One direction runs on the
//! connection's thread and the other on a scoped thread of its own, joined before the
//! connection ends; the client connection keeps its `max_connections` slot meanwhile.
//!
//! Idle means no byte in either direction: both directions share one last-activity clock, so
//! a server that only pushes keeps the tunnel open. A read that times out looks at that clock
//! and either waits for the rest of the limit or, past it, shuts both sockets down, which
//! ends the other direction too. A write that cannot proceed for the limit (a peer that stops
//! reading) ends the tunnel as well. When one side ends its stream, the other side's socket is
//! shut down for writing (a half-close, passed on) and the other direction carries on,
//! bounded by the same limit. A failure on either socket shuts both down.

use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::forward::Upstream;
use super::relay::Stamp;
use super::rewrite::via;
use super::stats::Stats;
use super::Sent;
use crate::error::{is_timeout, Error, ParseError, Result, Side};
use crate::http::body::{request_framing, Framing};
use crate::http::serialize;
use crate::http::{remove_hop_by_hop, Request, Response, Version};
use crate::server::{ClientStream, THREAD_STACK_SIZE};

/// Bytes each direction of a tunnel moves per read and write; two per tunnel, on the heap.
pub const TUNNEL_BUFFER: usize = 16 * 1024;

/// The upgrade token we tunnel (RFC 6455 §4.1), compared case-insensitively.
const WEBSOCKET: &str = "websocket";

/// Whether `request` asks to switch to WebSocket in a way we forward: a GET, HTTP/1.1 (a
/// server ignores Upgrade in HTTP/1.0, RFC 9110 §7.8), no body (it would have to be read
/// whole before the switch, §7.8), `upgrade` in Connection and `websocket` in Upgrade
/// (RFC 6455 §4.1). Other upgrades are ignored and the request is served as plain HTTP.
pub fn asks_for_websocket(request: &Request) -> bool {
    request.method == "GET"
        && request.version == Version::Http11
        && request.headers.has_token("connection", "upgrade")
        && request.headers.has_token("upgrade", WEBSOCKET)
        && matches!(
            request_framing(request),
            Ok(Framing::Empty | Framing::Length(0))
        )
}

/// The backend's 101 as the client should see it, or `None` when it does not switch to what
/// the client asked for (RFC 9110 §15.2.2: a server switches only to a protocol named in
/// the request's Upgrade, and says which in its own).
///
/// As for any response, hop-by-hop fields go and `Via` is added (§7.6); but a 101 needs its
/// `Upgrade` and `Connection: upgrade` on this hop too, so we set them again. It has no body
/// (§8.6: no Content-Length in a 1xx).
pub fn switching_response(request: &Request, mut response: Response) -> Option<Response> {
    let switches = response.status == 101
        && response.version == Version::Http11
        && response.headers.has_token("upgrade", WEBSOCKET)
        && asks_for_websocket(request);
    if !switches {
        return None;
    }
    remove_hop_by_hop(&mut response.headers);
    response.headers.remove("content-length");
    response.headers.append("Upgrade", WEBSOCKET);
    response.headers.append("Connection", "upgrade");
    response.headers.append("Via", via(Version::Http11));
    Some(response)
}

/// Step 12 for a `101` answer: the 101 goes to the client and the two connections become a
/// tunnel until it ends (see the module's notes); the connection to the client ends with it.
/// Returns once the tunnel is over, with what it carried, for the log step. The tunnel is
/// counted as open in `stats` while it lasts, and closes after `idle` without a byte.
///
/// # Errors
/// A 101 that is not the switch the client asked for is a backend error (502); not being
/// able to start the second thread is reported before the 101 is sent.
pub(super) fn run(
    client: &BufReader<ClientStream>,
    request: &Request,
    upstream: Upstream,
    stats: &Stats,
    idle: Duration,
    stamp: Stamp,
    sent: &mut Sent,
) -> Result<Report> {
    {
        let Upstream {
            mut conn,
            response,
            lease: _in_flight,
            ..
        } = upstream;
        sent.keep_alive = false;
        let Some(mut response) = switching_response(request, response) else {
            return Err(Error::Parse(Side::Backend, ParseError::UnexpectedUpgrade));
        };
        stamp.apply(&mut response.headers);
        let head = serialize::response_head_bytes(&response);
        let backend = conn.reader();
        let ends = Ends {
            client: client.get_ref().tcp(),
            backend: backend.get_ref(),
        };
        let early = Early {
            head: &head,
            up: client.buffer(),
            down: backend.buffer(),
        };
        let _open = stats.open_tunnel();
        let report = relay(ends, early, idle)
            .map_err(|e| Error::NoBackend(format!("cannot start a thread for the tunnel: {e}")))?;
        sent.status = Some(101);
        sent.head = true;
        sent.bytes = report.down;
        Ok(report)
    }
}

/// A socket as the tunnel uses it, through shared references so both directions can use
/// both sockets: `TcpStream` in the proxy, `UnixStream` pairs in the unit tests.
pub trait Endpoint: Sync {
    /// Reads what is there, waiting at most the read timeout.
    fn read(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes all of `buf`, each write waiting at most the write timeout.
    fn write_all(&self, buf: &[u8]) -> io::Result<()>;
    /// Sets the read timeout (`Some`, never zero).
    fn set_read_timeout(&self, timeout: Duration) -> io::Result<()>;
    /// Sets the write timeout (`Some`, never zero).
    fn set_write_timeout(&self, timeout: Duration) -> io::Result<()>;
    /// Shuts down reading, writing or both.
    fn shutdown(&self, how: Shutdown) -> io::Result<()>;
}

impl Endpoint for TcpStream {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        Read::read(&mut &*self, buf)
    }

    fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        Write::write_all(&mut &*self, buf)
    }

    fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        TcpStream::set_read_timeout(self, Some(timeout))
    }

    fn set_write_timeout(&self, timeout: Duration) -> io::Result<()> {
        TcpStream::set_write_timeout(self, Some(timeout))
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        TcpStream::shutdown(self, how)
    }
}

/// The two sockets of a tunnel.
pub struct Ends<'a, S> {
    /// Toward the client.
    pub client: &'a S,
    /// Toward the backend.
    pub backend: &'a S,
}

/// What goes out first when a tunnel starts.
pub struct Early<'a> {
    /// The 101 head for the client, sent before anything from the backend.
    pub head: &'a [u8],
    /// Bytes the client sent that were read ahead (behind its request).
    pub up: &'a [u8],
    /// Bytes the backend sent that were read ahead (behind its 101).
    pub down: &'a [u8],
}

/// What a finished tunnel carried, for the log line.
#[derive(Debug)]
pub struct Report {
    /// Bytes from the client to the backend, read-ahead bytes included.
    pub up: u64,
    /// Bytes from the backend to the client, read-ahead bytes included, the 101 head not.
    pub down: u64,
    /// How the tunnel ended.
    pub ending: Ending,
}

/// How a tunnel (or one of its directions) ended.
#[derive(Debug)]
pub enum Ending {
    /// Its sender closed its stream.
    Closed,
    /// No byte moved either way for the limit.
    Idle(Duration),
    /// A socket failed (a timeout here is a write the peer did not take within the limit),
    /// and whose socket it was.
    Failed(Side, io::Error),
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let side = |side: &Side| match side {
            Side::Client => "client",
            Side::Backend => "backend",
        };
        match self {
            Ending::Closed => f.write_str("closed"),
            Ending::Idle(limit) => write!(f, "idle for {} s", limit.as_secs_f64()),
            Ending::Failed(s, e) if is_timeout(e) => write!(f, "the {} stopped reading", side(s)),
            Ending::Failed(s, e) => write!(f, "{} connection: {e}", side(s)),
        }
    }
}

/// How the tunnel as a whole ended, from how each direction did: an idle limit explains
/// everything after it (the other direction saw its socket shut down), then a failure, and
/// only when both directions closed is the tunnel `Closed`.
pub fn combine(a: Ending, b: Ending) -> Ending {
    match (a, b) {
        (idle @ Ending::Idle(_), _) | (_, idle @ Ending::Idle(_)) => idle,
        (failed @ Ending::Failed(..), _) | (_, failed @ Ending::Failed(..)) => failed,
        (Ending::Closed, Ending::Closed) => Ending::Closed,
    }
}

/// How much longer a tunnel may stay silent, given the time of its last activity and the
/// time now (both measured from the same origin), or `None` once `limit` has passed.
pub fn idle_left(last_activity: Duration, now: Duration, limit: Duration) -> Option<Duration> {
    limit
        .checked_sub(now.saturating_sub(last_activity))
        .filter(|left| !left.is_zero())
}

/// The last time a byte moved either way, shared by both directions.
struct Activity {
    origin: Instant,
    /// Microseconds from `origin` to the latest activity; only ever grows.
    last_micros: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            origin: Instant::now(),
            last_micros: AtomicU64::new(0),
        }
    }

    fn since_origin(&self) -> Duration {
        self.origin.elapsed()
    }

    fn touch(&self) {
        let now = u64::try_from(self.since_origin().as_micros()).unwrap_or(u64::MAX);
        self.last_micros.fetch_max(now, Ordering::Relaxed);
    }

    fn idle_left(&self, limit: Duration) -> Option<Duration> {
        let last = Duration::from_micros(self.last_micros.load(Ordering::Relaxed));
        idle_left(last, self.since_origin(), limit)
    }
}

/// Runs a tunnel between `ends` until it is over: `early.head` and `early.down` to the
/// client and `early.up` to the backend first, then whatever either side sends, with
/// `limit` as the idle limit (see the module's notes). The client→backend direction runs on
/// a scoped thread, started before anything is written.
///
/// # Errors
/// Only when that thread cannot be started; nothing has been sent then. Socket failures
/// end the tunnel and are reported in `Report::ending`.
pub fn relay<S: Endpoint>(
    ends: Ends<'_, S>,
    early: Early<'_>,
    limit: Duration,
) -> io::Result<Report> {
    let Ends { client, backend } = ends;
    for end in [client, backend] {
        end.set_read_timeout(limit)?;
        end.set_write_timeout(limit)?;
    }
    let activity = Activity::new();
    thread::scope(|scope| {
        let up = thread::Builder::new()
            .stack_size(THREAD_STACK_SIZE)
            .spawn_scoped(scope, || {
                let sides = (Side::Client, Side::Backend);
                pump((client, backend), sides, early.up, &activity, limit)
            })?;
        let sides = (Side::Backend, Side::Client);
        let down = match client.write_all(early.head) {
            Ok(()) => pump((backend, client), sides, early.down, &activity, limit),
            Err(e) => {
                abort(client, backend);
                Flow {
                    bytes: 0,
                    ending: Ending::Failed(Side::Client, e),
                }
            }
        };
        let up = up
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        Ok(Report {
            up: up.bytes,
            down: down.bytes,
            ending: combine(down.ending, up.ending),
        })
    })
}

/// What one direction of a tunnel carried, and how it ended.
struct Flow {
    bytes: u64,
    ending: Ending,
}

/// One direction: `early`, then every byte `from` sends, to `to`, until `from` ends its
/// stream (passed on as a half-close), a socket fails, or the tunnel has been idle for
/// `limit`. `sides` says whose sockets `from` and `to` are.
fn pump<S: Endpoint>(
    (from, to): (&S, &S),
    (from_side, to_side): (Side, Side),
    early: &[u8],
    activity: &Activity,
    limit: Duration,
) -> Flow {
    let mut bytes = 0;
    let failed = |side, e, bytes| {
        abort(from, to);
        Flow {
            bytes,
            ending: Ending::Failed(side, e),
        }
    };
    if !early.is_empty() {
        if let Err(e) = to.write_all(early) {
            return failed(to_side, e, bytes);
        }
        bytes += early.len() as u64;
        activity.touch();
    }
    let mut buf = vec![0; TUNNEL_BUFFER];
    loop {
        match from.read(&mut buf) {
            Ok(0) => {
                // Half-close: the other side learns that this one has finished sending.
                let _ = to.shutdown(Shutdown::Write);
                let ending = Ending::Closed;
                return Flow { bytes, ending };
            }
            Ok(n) => {
                activity.touch();
                if let Err(e) = to.write_all(&buf[..n]) {
                    return failed(to_side, e, bytes);
                }
                bytes += n as u64;
                activity.touch();
            }
            Err(e) if is_timeout(&e) => match activity.idle_left(limit) {
                Some(left) => {
                    if let Err(e) = from.set_read_timeout(left) {
                        return failed(from_side, e, bytes);
                    }
                }
                None => {
                    abort(from, to);
                    let ending = Ending::Idle(limit);
                    return Flow { bytes, ending };
                }
            },
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return failed(from_side, e, bytes),
        }
    }
}

/// Ends the tunnel from one direction: both sockets are shut down both ways, which wakes the
/// other direction from its read (end of stream) or write (broken pipe).
fn abort<S: Endpoint>(a: &S, b: &S) {
    let _ = a.shutdown(Shutdown::Both);
    let _ = b.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse::{read_request, read_response, Limits};
    use std::os::unix::net::UnixStream;

    impl Endpoint for UnixStream {
        fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
            Read::read(&mut &*self, buf)
        }

        fn write_all(&self, buf: &[u8]) -> io::Result<()> {
            Write::write_all(&mut &*self, buf)
        }

        fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
            UnixStream::set_read_timeout(self, Some(timeout))
        }

        fn set_write_timeout(&self, timeout: Duration) -> io::Result<()> {
            UnixStream::set_write_timeout(self, Some(timeout))
        }

        fn shutdown(&self, how: Shutdown) -> io::Result<()> {
            UnixStream::shutdown(self, how)
        }
    }

    fn req(raw: &str) -> Request {
        read_request(&mut raw.as_bytes(), &Limits::default())
            .unwrap()
            .unwrap()
    }

    fn resp(raw: &str) -> Response {
        read_response(&mut raw.as_bytes(), &Limits::default()).unwrap()
    }

    const UPGRADE: &str = "GET /chat HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: WebSocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn only_a_bodiless_http_1_1_get_asking_for_websocket_is_forwarded_as_an_upgrade() {
        assert!(asks_for_websocket(&req(UPGRADE)));
        let cases = [
            UPGRADE.replace("GET", "POST"),
            UPGRADE.replace("HTTP/1.1", "HTTP/1.0"),
            UPGRADE.replace("WebSocket", "h2c"),
            UPGRADE.replace("keep-alive, Upgrade", "keep-alive"),
            UPGRADE.replace("Host: h\r\n", "Host: h\r\nContent-Length: 3\r\n"),
        ];
        for case in cases {
            assert!(!asks_for_websocket(&req(&case)), "{case}");
        }
        let empty_body = UPGRADE.replace("Host: h\r\n", "Host: h\r\nContent-Length: 0\r\n");
        assert!(asks_for_websocket(&req(&empty_body)));
        let listed = UPGRADE.replace("Upgrade: WebSocket", "Upgrade: h2c, websocket");
        assert!(asks_for_websocket(&req(&listed)));
    }

    #[test]
    fn the_101_keeps_its_upgrade_fields_and_loses_the_other_hop_by_hop_ones() {
        let backend = resp("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nContent-Length: 0\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n");
        let out = switching_response(&req(UPGRADE), backend).unwrap();
        assert_eq!(out.status, 101);
        let fields: Vec<(&str, &str)> = out.headers.iter().collect();
        assert_eq!(
            fields,
            [
                ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
                ("Upgrade", "websocket"),
                ("Connection", "upgrade"),
                ("Via", "1.1 relevo"),
            ]
        );
    }

    #[test]
    fn a_101_nobody_asked_for_or_to_another_protocol_is_refused() {
        let switch =
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
        let plain = req("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(switching_response(&plain, resp(switch)).is_none());
        let h2c = resp(&switch.replace("websocket", "h2c"));
        assert!(switching_response(&req(UPGRADE), h2c).is_none());
        let bare = resp("HTTP/1.1 101 Switching Protocols\r\n\r\n");
        assert!(switching_response(&req(UPGRADE), bare).is_none());
    }

    #[test]
    fn idle_time_left_counts_from_the_last_activity_of_either_direction() {
        let s = Duration::from_secs;
        assert_eq!(idle_left(s(0), s(0), s(300)), Some(s(300)));
        assert_eq!(idle_left(s(100), s(250), s(300)), Some(s(150)));
        assert_eq!(idle_left(s(100), s(400), s(300)), None);
        assert_eq!(idle_left(s(100), s(401), s(300)), None);
        // Activity recorded by the other direction after this one read the clock.
        assert_eq!(idle_left(s(260), s(250), s(300)), Some(s(300)));
    }

    #[test]
    fn an_idle_limit_explains_the_end_before_a_failure_and_a_failure_before_a_close() {
        let reset = || io::Error::new(io::ErrorKind::ConnectionReset, "reset");
        let idle = Ending::Idle(Duration::from_secs(1));
        let failed = Ending::Failed(Side::Backend, reset());
        assert!(matches!(combine(Ending::Closed, idle), Ending::Idle(_)));
        assert!(matches!(
            combine(failed, Ending::Closed),
            Ending::Failed(Side::Backend, _)
        ));
        assert!(matches!(
            combine(Ending::Closed, Ending::Closed),
            Ending::Closed
        ));
        let timeout = io::Error::new(io::ErrorKind::WouldBlock, "t");
        assert_eq!(
            Ending::Failed(Side::Client, timeout).to_string(),
            "the client stopped reading"
        );
        assert_eq!(
            Ending::Idle(Duration::from_millis(500)).to_string(),
            "idle for 0.5 s"
        );
    }

    /// A tunnel between two socket pairs: the test holds the far ends (`client`, `backend`).
    struct Rig {
        client: UnixStream,
        backend: UnixStream,
        done: thread::JoinHandle<io::Result<Report>>,
    }

    fn rig(head: &'static [u8], up: &'static [u8], down: &'static [u8], limit: Duration) -> Rig {
        let (client, near_client) = UnixStream::pair().unwrap();
        let (backend, near_backend) = UnixStream::pair().unwrap();
        for s in [&client, &backend] {
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        }
        let done = thread::spawn(move || {
            let ends = Ends {
                client: &near_client,
                backend: &near_backend,
            };
            relay(ends, Early { head, up, down }, limit)
        });
        Rig {
            client,
            backend,
            done,
        }
    }

    fn read_n(mut from: &UnixStream, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        from.read_exact(&mut buf).unwrap();
        buf
    }

    fn read_to_end(mut from: &UnixStream) -> Vec<u8> {
        let mut buf = Vec::new();
        from.read_to_end(&mut buf).unwrap();
        buf
    }

    #[test]
    fn read_ahead_bytes_go_first_and_a_half_close_lets_the_other_way_finish() {
        let limit = Duration::from_secs(20);
        let rig = rig(b"HEAD|", b"early-up|", b"early-down|", limit);
        assert_eq!(read_n(&rig.client, 16), b"HEAD|early-down|");
        assert_eq!(read_n(&rig.backend, 9), b"early-up|");
        rig.client.write_all(b"ping").unwrap();
        assert_eq!(read_n(&rig.backend, 4), b"ping");
        // The client finishes sending; the backend sees the end, and can still answer.
        rig.client.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_to_end(&rig.backend), b"");
        rig.backend.write_all(b"pong, and goodbye").unwrap();
        rig.backend.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_to_end(&rig.client), b"pong, and goodbye");
        let report = rig.done.join().unwrap().unwrap();
        assert_eq!((report.up, report.down), (13, 28));
        assert!(matches!(report.ending, Ending::Closed), "{report:?}");
    }

    #[test]
    fn a_silent_tunnel_is_closed_on_both_sides_after_the_idle_limit() {
        let started = Instant::now();
        let rig = rig(b"", b"", b"", Duration::from_millis(50));
        assert_eq!(read_to_end(&rig.client), b"");
        assert_eq!(read_to_end(&rig.backend), b"");
        assert!(started.elapsed() >= Duration::from_millis(50));
        let report = rig.done.join().unwrap().unwrap();
        assert!(matches!(report.ending, Ending::Idle(_)), "{report:?}");
    }

    #[test]
    fn a_write_to_a_peer_that_has_gone_ends_the_tunnel() {
        let rig = rig(b"", b"", b"", Duration::from_secs(20));
        drop(rig.backend);
        // The backend's end of stream reaches the client as a half-close...
        assert_eq!(read_to_end(&rig.client), b"");
        // ...and what the client still sends has nowhere to go.
        rig.client.write_all(b"anyone?").unwrap();
        let report = rig.done.join().unwrap().unwrap();
        assert!(
            matches!(report.ending, Ending::Failed(Side::Backend, _)),
            "{report:?}"
        );
    }
}
