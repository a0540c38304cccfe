//! Talking to a backend: open a connection with a connect timeout, and put read and write
//! timeouts on it so a silent backend can never hold a client thread forever.
//!
//! What is sent and how the answer is read is `proxy`'s sequence of steps; this module owns
//! the socket, and the `Pool` of idle keep-alive connections the proxy reuses between
//! requests (`upstream_keepalive`, `upstream_idle_timeout`).
//!
//! A connection goes back to the pool only with nothing unread on it, and is looked at
//! again (without waiting) when taken out: a backend that sends bytes after a complete
//! response must never have them read as the next client's response. Idle connections sit
//! in non-blocking mode, so those looks, and the reaper that closes connections a backend
//! has closed, cost one `peek` each.

use std::io::{self, BufRead, BufReader, Read};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::http::body::read_through_buffer;
use crate::proxy::config::Backend;
use crate::server::needs_new_timeout;

/// Read buffer for a backend's responses, in bytes. A large body is relayed in reads of
/// this size: 256 KiB moved 100 MiB 8% faster than 64 KiB (`make bench`, 100m-1). Its pages
/// are only touched as far as a response fills them, so small responses cost little of it.
pub const UPSTREAM_BUFFER: usize = 256 * 1024;

/// How often the proxy's reaper closes idle pooled connections that their backend closed
/// (or that sat idle too long), so they do not stay in CLOSE-WAIT.
pub const POOL_REAP_INTERVAL: Duration = Duration::from_secs(1);

/// An open connection to one backend.
pub struct Connection {
    /// Reads the backend's responses; `writer()` writes on the same socket.
    reader: BufReader<TcpStream>,
    /// The time each read may wait (`upstream_timeout`, or more for an event stream).
    timeout: Duration,
}

impl Connection {
    /// Connects to `backend`, trying each address its name resolves to within
    /// `connect_timeout`, then sets `io_timeout` on every read and write.
    ///
    /// # Errors
    /// The resolver's error, or the last connection error.
    pub fn open(
        backend: &Backend,
        connect_timeout: Duration,
        io_timeout: Duration,
    ) -> io::Result<Self> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "name resolved to no address");
        for addr in (backend.host.as_str(), backend.port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, connect_timeout) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(io_timeout))?;
                    stream.set_write_timeout(Some(io_timeout))?;
                    stream.set_nodelay(true)?;
                    return Ok(Connection {
                        reader: BufReader::with_capacity(UPSTREAM_BUFFER, stream),
                        timeout: io_timeout,
                    });
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The socket, for writing the request.
    pub fn writer(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    /// The buffered reader, for reading the response.
    pub fn reader(&mut self) -> &mut BufReader<TcpStream> {
        &mut self.reader
    }

    /// Replaces the time each read may wait (an event stream waits longer between events).
    ///
    /// # Errors
    /// When the socket option cannot be set.
    pub fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.writer().set_read_timeout(Some(timeout))?;
        self.timeout = timeout;
        Ok(())
    }

    /// The reader for a response head that must arrive whole by `deadline`, however it
    /// trickles in: each read waits at most until the deadline, and one at or past it fails
    /// with `TimedOut` (a backend sending one header byte every 2 s held a client for a
    /// minute with `upstream_timeout = 5`). The read timeout is put back when it is dropped.
    pub fn head_reader(&mut self, deadline: Instant) -> HeadReader<'_> {
        HeadReader {
            applied: self.timeout,
            timeout: self.timeout,
            deadline,
            inner: &mut self.reader,
        }
    }

    /// Replaces the time each write may wait.
    ///
    /// # Errors
    /// When the socket option cannot be set.
    pub fn set_write_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.writer().set_write_timeout(Some(timeout))
    }

    /// What the backend has sent that is not read yet, looked at without waiting: bytes
    /// already buffered count. Used while a request body is still being sent, to notice an
    /// early response (RFC 9112 §9.5).
    pub fn pending(&self) -> Pending {
        if !self.reader.buffer().is_empty() {
            return Pending::Bytes;
        }
        let stream = self.writer();
        if stream.set_nonblocking(true).is_err() {
            return Pending::Closed;
        }
        let found = look(stream);
        if stream.set_nonblocking(false).is_err() {
            return Pending::Closed;
        }
        found
    }

    /// Readies a connection whose response was read to its end for the idle pool: the
    /// socket goes non-blocking (so the pool and its reaper can look at it without waiting)
    /// and must have nothing unread in our buffer. Anything else is the caller's cue to close
    /// it: bytes a backend sends after a complete response would become the next client's
    /// response. The socket itself is not looked at here: `unpark` looks before any reuse
    /// (and the reaper meanwhile), which saves a system call per request (issue 17).
    pub fn park(&mut self) -> Pending {
        if !self.reader.buffer().is_empty() {
            return Pending::Bytes;
        }
        if self.writer().set_nonblocking(true).is_err() {
            return Pending::Closed;
        }
        Pending::Quiet
    }

    /// What has arrived on a parked connection since it was parked, looked at without
    /// waiting.
    pub fn look(&self) -> Pending {
        look(self.writer())
    }

    /// Takes a parked connection back into use: it must still be `Quiet`, and its socket
    /// goes back to blocking reads with timeouts.
    pub fn unpark(&mut self) -> Pending {
        match self.look() {
            Pending::Quiet if self.writer().set_nonblocking(false).is_ok() => Pending::Quiet,
            Pending::Quiet => Pending::Closed,
            other => other,
        }
    }
}

/// A backend's reader while a response head is awaited; see `Connection::head_reader`.
pub struct HeadReader<'a> {
    inner: &'a mut BufReader<TcpStream>,
    deadline: Instant,
    /// The connection's own read timeout, put back when done.
    timeout: Duration,
    /// Invariant: the read timeout set on the socket now.
    applied: Duration,
}

impl BufRead for HeadReader<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.inner.buffer().is_empty() {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the response head did not arrive in time",
                ));
            }
            let wait = left.min(self.timeout);
            if needs_new_timeout(wait, self.applied) {
                self.inner.get_ref().set_read_timeout(Some(wait))?;
                self.applied = wait;
            }
        }
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.inner.consume(amt);
    }
}

impl Read for HeadReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_through_buffer(self, buf)
    }
}

impl Drop for HeadReader<'_> {
    fn drop(&mut self) {
        if self.applied != self.timeout {
            // If this fails the socket is failing too; its next read will say so.
            let _ = self.inner.get_ref().set_read_timeout(Some(self.timeout));
        }
    }
}

/// What is waiting, unread, on a backend connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pending {
    /// Nothing: an idle connection can carry the next request.
    Quiet,
    /// Bytes the backend sent that no request of ours asked for (yet).
    Bytes,
    /// The backend closed the connection, or it failed.
    Closed,
}

/// Peeks at a non-blocking socket: one system call, nothing consumed.
fn look(stream: &TcpStream) -> Pending {
    let mut byte = [0u8; 1];
    match stream.peek(&mut byte) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Pending::Quiet,
        Ok(0) | Err(_) => Pending::Closed,
        Ok(_) => Pending::Bytes,
    }
}

/// Idle keep-alive connections to the backends, ready for the next request (issue: a
/// connection per request costs a TCP handshake and a slow-start each time).
///
/// One small stack per backend: the most recently used connection is taken first (it is the
/// least likely to have been closed by the backend), at most `max_idle` are kept per backend,
/// and one idle longer than `idle_timeout` is closed instead of reused. A connection goes
/// back only after its response was read completely (the proxy's job to check). Generic over
/// the connection type so the policy is tested without sockets.
pub struct Pool<C> {
    /// Invariant: one stack per backend id; each holds at most `max_idle` entries, the most
    /// recently returned last.
    idle: Vec<std::sync::Mutex<Vec<(C, std::time::Instant)>>>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl<C> Pool<C> {
    /// An empty pool for `backends` backends.
    pub fn new(backends: usize, max_idle: usize, idle_timeout: Duration) -> Self {
        Pool {
            idle: (0..backends)
                .map(|_| std::sync::Mutex::new(Vec::new()))
                .collect(),
            max_idle,
            idle_timeout,
        }
    }

    /// The freshest idle connection to backend `id` that has not been idle too long at `now`;
    /// older ones found on the way are dropped (closed).
    pub fn take(&self, id: usize, now: std::time::Instant) -> Option<C> {
        let mut stack = self.idle.get(id)?.lock().unwrap_or_else(|p| p.into_inner());
        // Entries are in return order, so everything before the first fresh one is stale.
        let fresh_from = stack
            .iter()
            .position(|(_, since)| now.saturating_duration_since(*since) < self.idle_timeout)
            .unwrap_or(stack.len());
        stack.drain(..fresh_from);
        stack.pop().map(|(conn, _)| conn)
    }

    /// Gives back a connection to backend `id` whose last response was read completely.
    /// Beyond `max_idle` the oldest idle one is closed.
    pub fn put(&self, id: usize, conn: C, now: std::time::Instant) {
        if self.max_idle == 0 {
            return;
        }
        if let Some(stack) = self.idle.get(id) {
            let mut stack = stack.lock().unwrap_or_else(|p| p.into_inner());
            if stack.len() == self.max_idle {
                stack.remove(0);
            }
            stack.push((conn, now));
        }
    }

    /// Closes every idle connection that has been idle too long at `now`, or for which
    /// `keep` (given the backend id) says no (the proxy's reaper passes "its backend is in
    /// rotation, has not closed it and sent nothing"), so connections a backend closed do
    /// not linger in CLOSE-WAIT. Returns how many were closed.
    pub fn reap(&self, now: std::time::Instant, mut keep: impl FnMut(usize, &C) -> bool) -> usize {
        let mut closed = 0;
        for (id, stack) in self.idle.iter().enumerate() {
            let mut stack = stack.lock().unwrap_or_else(|p| p.into_inner());
            let before = stack.len();
            stack.retain(|(conn, since)| {
                now.saturating_duration_since(*since) < self.idle_timeout && keep(id, conn)
            });
            closed += before - stack.len();
        }
        closed
    }

    /// Closes every idle connection to backend `id` (drained or disabled); returns how many.
    pub fn clear(&self, id: usize) -> usize {
        self.idle.get(id).map_or(0, |stack| {
            let mut stack = stack.lock().unwrap_or_else(|p| p.into_inner());
            let closed = stack.len();
            stack.clear();
            closed
        })
    }

    /// Idle connections kept for backend `id`.
    #[cfg(test)]
    pub fn idle_count(&self, id: usize) -> usize {
        self.idle
            .get(id)
            .map_or(0, |s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn the_most_recently_returned_connection_is_reused_first() {
        let pool = Pool::new(2, 4, Duration::from_secs(10));
        let now = Instant::now();
        pool.put(0, "a", now);
        pool.put(0, "b", now);
        pool.put(1, "other", now);
        assert_eq!(pool.take(0, now), Some("b"));
        assert_eq!(pool.take(0, now), Some("a"));
        assert_eq!(pool.take(0, now), None);
        assert_eq!(pool.take(1, now), Some("other"));
    }

    #[test]
    fn connections_idle_too_long_are_dropped_not_reused() {
        let pool = Pool::new(1, 4, Duration::from_secs(10));
        let start = Instant::now();
        pool.put(0, "old", start);
        pool.put(0, "new", start + Duration::from_secs(8));
        let later = start + Duration::from_secs(12);
        assert_eq!(pool.take(0, later), Some("new"));
        assert_eq!(pool.idle_count(0), 0, "the stale one was closed on the way");
    }

    #[test]
    fn at_most_max_idle_are_kept_per_backend() {
        let pool = Pool::new(1, 2, Duration::from_secs(10));
        let now = Instant::now();
        for c in ["a", "b", "c"] {
            pool.put(0, c, now);
        }
        assert_eq!(pool.idle_count(0), 2);
        assert_eq!(pool.take(0, now), Some("c"));
        assert_eq!(pool.take(0, now), Some("b"));
        let none = Pool::new(1, 0, Duration::from_secs(10));
        none.put(0, "x", now);
        assert_eq!(none.take(0, now), None);
    }

    #[test]
    fn reaping_closes_expired_connections_and_those_the_check_refuses() {
        let pool = Pool::new(2, 4, Duration::from_secs(10));
        let start = Instant::now();
        pool.put(0, "old", start);
        pool.put(0, "closed-by-backend", start + Duration::from_secs(5));
        pool.put(0, "fine", start + Duration::from_secs(5));
        pool.put(1, "also-fine", start + Duration::from_secs(5));
        let later = start + Duration::from_secs(11);
        assert_eq!(pool.reap(later, |_, c| *c != "closed-by-backend"), 2);
        assert_eq!(pool.take(0, later), Some("fine"));
        assert_eq!(pool.take(0, later), None);
        assert_eq!(pool.take(1, later), Some("also-fine"));
    }

    #[test]
    fn a_socket_is_quiet_then_shows_stray_bytes_then_its_close() {
        use std::io::Write;
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let mut conn = Connection {
            reader: BufReader::new(client),
            timeout: Duration::from_secs(5),
        };
        assert_eq!(conn.pending(), Pending::Quiet);
        assert_eq!(conn.park(), Pending::Quiet);
        server.write_all(b"EVIL").unwrap();
        // The bytes are on their way over loopback; a blocking read shows when they are in.
        conn.writer().set_nonblocking(false).unwrap();
        conn.writer().peek(&mut [0u8; 4]).unwrap();
        conn.writer().set_nonblocking(true).unwrap();
        assert_eq!(conn.look(), Pending::Bytes);
        assert_eq!(conn.unpark(), Pending::Bytes);
        assert_eq!(conn.pending(), Pending::Bytes);
        let mut fresh = Connection {
            reader: BufReader::new(TcpStream::connect(listener.local_addr().unwrap()).unwrap()),
            timeout: Duration::from_secs(5),
        };
        let (server, _) = listener.accept().unwrap();
        assert_eq!(fresh.park(), Pending::Quiet);
        drop(server);
        fresh.writer().set_nonblocking(false).unwrap();
        assert_eq!(fresh.writer().peek(&mut [0u8; 1]).unwrap(), 0);
        fresh.writer().set_nonblocking(true).unwrap();
        assert_eq!(fresh.unpark(), Pending::Closed);
    }

    #[test]
    fn clearing_a_backend_closes_its_idle_connections_only() {
        let pool = Pool::new(2, 4, Duration::from_secs(10));
        let now = Instant::now();
        pool.put(0, "a", now);
        pool.put(0, "b", now);
        pool.put(1, "c", now);
        assert_eq!(pool.clear(0), 2);
        assert_eq!(pool.take(0, now), None);
        assert_eq!(pool.take(1, now), Some("c"));
        assert_eq!(pool.clear(7), 0);
    }

    #[test]
    fn unknown_backends_are_ignored() {
        let pool: Pool<&str> = Pool::new(1, 2, Duration::from_secs(1));
        pool.put(5, "x", Instant::now());
        assert_eq!(pool.take(5, Instant::now()), None);
    }
}
