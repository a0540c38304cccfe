//! The client's side of the wire: resolving the host, connecting, sending one request and
//! reading the final response head, every step bounded in time.
//!
//! Each socket gets a connect timeout and read/write timeouts (`CONNECT_TIMEOUT`,
//! `IO_TIMEOUT`), and `--max-time` caps all of them through a `Deadline` that shrinks the
//! next wait to what is left. A timeout always surfaces as `io::ErrorKind::TimedOut` with a
//! message naming the limit that was hit. The head is read with the library's parser
//! (`http::parse`), so the client holds servers to the same grammar and limits as the
//! proxy does. What to send and what to do with the answer is `client`'s business.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::error::{ClientError, Result};
use super::url::Url;
use crate::error::{self, is_timeout, Error, ParseError, Side};
use crate::http::parse::{self, Limits};
use crate::http::{serialize, Request, Response};

/// Longest wait for a host name to resolve.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a TCP connection to one address.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for any one read or write on the socket.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Write buffer on the connection: the head and the first body bytes leave together.
pub const WRITE_BUFFER: usize = 64 * 1024;

/// When `--max-time` runs out, if it was given.
#[derive(Clone, Copy, Debug, Default)]
pub struct Deadline {
    at: Option<Instant>,
    limit: Option<Duration>,
}

impl Deadline {
    /// A deadline `limit` from now; none without a limit (or one too far to represent).
    pub fn after(limit: Option<Duration>) -> Deadline {
        Deadline {
            at: limit.and_then(|limit| Instant::now().checked_add(limit)),
            limit,
        }
    }

    /// `wait`, shortened to the time left.
    ///
    /// # Errors
    /// `TimedOut`, naming `--max-time`, once no time is left.
    pub fn cap(&self, wait: Duration) -> io::Result<Duration> {
        let Some(at) = self.at else {
            return Ok(wait);
        };
        let left = at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(self.expired())
        } else {
            Ok(left.min(wait))
        }
    }

    fn is_past(&self) -> bool {
        self.at.is_some_and(|at| Instant::now() >= at)
    }

    fn expired(&self) -> io::Error {
        let secs = self.limit.unwrap_or_default().as_secs_f64();
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the --max-time limit of {secs} s was reached"),
        )
    }
}

/// The request body, opened for one request.
pub enum Payload<'a> {
    /// No body.
    None,
    /// Bytes from the command line, or read from `-d @FILE`.
    Bytes(Cow<'a, [u8]>),
    /// A file of this many bytes.
    File(File, u64),
}

impl Payload<'_> {
    /// The body's length, `None` without a body.
    pub fn content_length(&self) -> Option<u64> {
        match self {
            Payload::None => None,
            Payload::Bytes(bytes) => Some(bytes.len() as u64),
            Payload::File(_, len) => Some(*len),
        }
    }
}

/// A connection to the server whose every read and write waits at most `IO_TIMEOUT`, and
/// never past the deadline.
pub struct Conn {
    stream: TcpStream,
    deadline: Deadline,
}

/// Resolves the URL's host and connects to the first of its addresses that accepts;
/// `attempt` is told each address before it is tried (for `-v`).
///
/// # Errors
/// `ClientError::Resolve` when the name does not resolve, `ClientError::Connect` with the last failure
/// when no address accepts; both carry `TimedOut` when a limit was hit.
pub fn open(url: &Url, deadline: Deadline, mut attempt: impl FnMut(SocketAddr)) -> Result<Conn> {
    let addrs = resolve(url, deadline)?;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address to connect to");
    for addr in addrs {
        attempt(addr);
        let wait = match deadline.cap(CONNECT_TIMEOUT) {
            Ok(wait) => wait,
            Err(e) => {
                last = e;
                break;
            }
        };
        match TcpStream::connect_timeout(&addr, wait) {
            Ok(stream) => {
                return stream
                    .set_read_timeout(Some(IO_TIMEOUT))
                    .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
                    .and_then(|()| stream.set_nodelay(true))
                    .map(|()| Conn { stream, deadline })
                    .map_err(|e| ClientError::Connect(url.authority(), e));
            }
            Err(e) => last = e,
        }
    }
    Err(ClientError::Connect(url.authority(), last))
}

/// The addresses of the URL's host. IP literals need no lookup; names are resolved by the
/// standard library on a helper thread, so that a slow resolver is bounded by
/// `RESOLVE_TIMEOUT` (and the deadline); that thread is left to finish on its own.
fn resolve(url: &Url, deadline: Deadline) -> Result<Vec<SocketAddr>> {
    let host = url.host_for_lookup().to_string();
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, url.port)]);
    }
    let fail = |e| ClientError::Resolve(host.clone(), e);
    let wait = deadline.cap(RESOLVE_TIMEOUT).map_err(fail)?;
    let (tx, rx) = mpsc::channel();
    let name = (host.clone(), url.port);
    thread::Builder::new()
        .name("resolve".to_string())
        .spawn(move || {
            let _ = tx.send(name.to_socket_addrs().map(Vec::from_iter));
        })
        .map_err(fail)?;
    match rx.recv_timeout(wait) {
        Ok(Ok(addrs)) if !addrs.is_empty() => Ok(addrs),
        Ok(Ok(_)) => Err(fail(io::Error::new(
            io::ErrorKind::NotFound,
            "the name has no address",
        ))),
        Ok(Err(e)) => Err(fail(e)),
        Err(_) if deadline.is_past() => Err(fail(deadline.expired())),
        Err(_) => Err(fail(io::Error::new(
            io::ErrorKind::TimedOut,
            "the resolver did not answer",
        ))),
    }
}

impl Conn {
    /// Shortens a socket timeout to what the deadline leaves (a no-op without one).
    fn arm(&self, set: fn(&TcpStream, Option<Duration>) -> io::Result<()>) -> io::Result<()> {
        if self.deadline.at.is_some() {
            set(&self.stream, Some(self.deadline.cap(IO_TIMEOUT)?))?;
        }
        Ok(())
    }

    /// A socket timeout reworded to name the limit that was hit.
    fn timed_out(&self, e: io::Error) -> io::Error {
        if !is_timeout(&e) {
            e
        } else if self.deadline.is_past() {
            self.deadline.expired()
        } else {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the connection was idle for {} s", IO_TIMEOUT.as_secs()),
            )
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.arm(TcpStream::set_read_timeout)?;
        self.stream.read(buf).map_err(|e| self.timed_out(e))
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.arm(TcpStream::set_write_timeout)?;
        self.stream.write(buf).map_err(|e| self.timed_out(e))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// Writes the head and the body as one buffered stream.
///
/// # Errors
/// Socket errors, and `UnexpectedEof` when a data file shrank under us (a short body must
/// never pass for the announced Content-Length).
pub fn send(conn: &mut impl Write, request: &Request, payload: Payload) -> io::Result<()> {
    let mut w = BufWriter::with_capacity(WRITE_BUFFER, conn);
    serialize::write_request_head(&mut w, request)?;
    match payload {
        Payload::None => {}
        Payload::Bytes(bytes) => w.write_all(&bytes)?,
        Payload::File(file, len) => {
            if io::copy(&mut file.take(len), &mut w)? < len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the data file shrank while it was sent",
                ));
            }
        }
    }
    w.flush()
}

/// Sends `request` with its body and reads the final response head. The server may answer
/// early and close (a 413, say): a response wins over the failure to send, which is
/// reported only when there is none.
///
/// # Errors
/// As `read_final_response`; the failure to send when no response came.
pub fn round_trip<S: Read + Write>(
    conn: &mut BufReader<S>,
    request: &Request,
    payload: Payload,
) -> error::Result<Response> {
    let sent = send(conn.get_mut(), request, payload);
    read_final_response(conn).map_err(|e| sent.err().map_or(e, |s| Error::Io(Side::Backend, s)))
}

/// Reads the final response head, past interim 1xx responses (RFC 9110 §15.2), with the
/// library's one loop for that (`http::parse::read_final_response`, which bounds them). A
/// 101 is refused: this client never asks to switch protocols (RFC 9110 §15.2.2).
///
/// # Errors
/// `Error::Parse(Side::Backend, _)` for a malformed head, too many interim responses or an
/// unasked-for 101; `Error::Io` for the socket.
pub fn read_final_response(reader: &mut impl BufRead) -> error::Result<Response> {
    let response = parse::read_final_response(reader, &Limits::default(), |_interim| Ok(()))?;
    if response.status == 101 {
        return Err(Error::Parse(Side::Backend, ParseError::UnexpectedUpgrade));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_cap_waits_and_expire() {
        let none = Deadline::after(None);
        assert_eq!(none.cap(IO_TIMEOUT).unwrap(), IO_TIMEOUT);
        let far = Deadline::after(Some(Duration::from_secs(3600)));
        assert_eq!(far.cap(IO_TIMEOUT).unwrap(), IO_TIMEOUT);
        let soon = Deadline::after(Some(Duration::from_millis(50)));
        assert!(soon.cap(IO_TIMEOUT).unwrap() <= Duration::from_millis(50));
        let past = Deadline {
            at: Some(Instant::now()),
            limit: Some(Duration::from_millis(500)),
        };
        let e = past.cap(IO_TIMEOUT).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(e.to_string(), "the --max-time limit of 0.5 s was reached");
        // A limit too large for an Instant is no limit at all, not a panic.
        assert!(Deadline::after(Some(Duration::MAX)).at.is_none());
    }

    #[test]
    fn interim_responses_are_skipped_and_101_refused() {
        let mut r: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(read_final_response(&mut r).unwrap().status, 200);
        let mut upgrade: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n";
        assert!(matches!(
            read_final_response(&mut upgrade),
            Err(Error::Parse(Side::Backend, ParseError::UnexpectedUpgrade))
        ));
        let endless = "HTTP/1.1 100 Continue\r\n\r\n".repeat(parse::MAX_INTERIM_RESPONSES + 1);
        assert!(read_final_response(&mut endless.as_bytes()).is_err());
    }

    #[test]
    fn sends_the_head_then_the_body() {
        let mut request = Request::new("POST", "/form");
        request.headers.append("Host", "h");
        request.headers.append("Content-Length", "3");
        let mut out = Vec::new();
        send(&mut out, &request, Payload::Bytes(Cow::Borrowed(b"a=1"))).unwrap();
        assert_eq!(
            out,
            b"POST /form HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\na=1".to_vec()
        );
    }

    /// A peer that answers `reply` and refuses every byte sent to it.
    struct Refusing(&'static [u8]);

    impl Read for Refusing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.0.read(buf)
        }
    }

    impl Write for Refusing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::BrokenPipe, "closed"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_early_response_wins_over_the_failure_to_send() {
        let request = Request::new("POST", "/upload");
        let payload = || Payload::Bytes(Cow::Borrowed(b"too big"));
        let early = b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n";
        let mut conn = BufReader::new(Refusing(early));
        let response = round_trip(&mut conn, &request, payload()).unwrap();
        assert_eq!(response.status, 413);
        let mut silent = BufReader::new(Refusing(b""));
        match round_trip(&mut silent, &request, payload()) {
            Err(Error::Io(Side::Backend, e)) => assert_eq!(e.kind(), io::ErrorKind::BrokenPipe),
            other => panic!("expected the send failure, got {other:?}"),
        }
    }

    #[test]
    fn ip_literals_need_no_resolver() {
        let url = Url::parse("http://[::1]:8081/").unwrap();
        let addrs = resolve(&url, Deadline::default()).unwrap();
        assert_eq!(addrs, ["[::1]:8081".parse().unwrap()]);
    }
}
