//! A client's socket as a connection handler sees it: every read bounded by a timeout and,
//! while a request head is awaited, the whole head by a deadline; and what the connection is
//! doing reported to the slots (`slots`), so that the accept loop knows which connections it
//! may close to make room.
//!
//! A per-read timeout alone lets a client that sends one byte just inside each timeout hold
//! a thread forever (slowloris). Between `await_head` and `head_received` each read waits at
//! most until the head's deadline (`slots::head_deadline`: `client_timeout` for the idle wait
//! and the head together, less when the slots are under pressure), and a read at or past it
//! fails with `TimedOut`. The body that follows is bounded per read only.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::slots::{head_deadline, Conn, Phase, Slot, Slots};

/// How long a lingering close waits for each read of what the client still sends (nginx's
/// `lingering_timeout`).
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a lingering close goes on in all (nginx's `lingering_time`).
pub const LINGER_TIME: Duration = Duration::from_secs(30);
/// Bytes read and dropped per read during a lingering close.
const LINGER_BUFFER: usize = 16 * 1024;

/// A client's socket whose reads can also stop at a deadline.
pub struct ClientStream {
    conn: Arc<Conn>,
    /// The slots this connection holds one of; `None` for a stream made with `new`.
    slots: Option<Arc<Slots>>,
    /// The per-read (and per-write) timeout.
    timeout: Duration,
    /// While a request head is awaited: when the wait began and when its first byte came.
    head: Option<HeadWait>,
    /// Whether a whole request head has been received on this connection.
    served: bool,
    /// Invariant: the read timeout currently set on the socket, to skip redundant syscalls.
    applied: Duration,
}

#[derive(Clone, Copy, Debug)]
struct HeadWait {
    since: Instant,
    first_byte: Option<Instant>,
}

impl ClientStream {
    /// Wraps `stream`, outside any slots, setting `timeout` on its reads and writes and
    /// TCP_NODELAY.
    ///
    /// # Errors
    /// When the socket options cannot be set (the client is usually gone).
    pub fn new(stream: TcpStream, timeout: Duration) -> io::Result<Self> {
        set_options(&stream, timeout)?;
        ClientStream::configure(Arc::new(Conn::new(stream)), None, timeout)
    }

    /// The stream of the connection holding `slot`, with the slots' `client_timeout`.
    /// The socket options are set here unless the listener's are inherited (see
    /// `set_on_listener`): three system calls fewer per connection.
    pub(super) fn open(slot: &Slot) -> io::Result<Self> {
        let slots = Arc::clone(slot.slots());
        let timeout = slots.client_timeout();
        let conn = Arc::clone(slot.conn());
        if !slots.options_inherited() {
            set_options(&conn.stream, timeout)?;
        }
        ClientStream::configure(conn, Some(slots), timeout)
    }

    fn configure(
        conn: Arc<Conn>,
        slots: Option<Arc<Slots>>,
        timeout: Duration,
    ) -> io::Result<Self> {
        Ok(ClientStream {
            conn,
            slots,
            timeout,
            head: None,
            served: false,
            applied: timeout,
        })
    }

    /// Starts waiting for a request head: from now the connection may be reclaimed (it is
    /// idle, or new if no head has come yet), and its reads stop at the head's deadline.
    pub fn await_head(&mut self) {
        let now = Instant::now();
        self.head = Some(HeadWait {
            since: now,
            first_byte: None,
        });
        if let Some(slots) = &self.slots {
            let at = slots.since_start(now);
            let phase = if self.served {
                Phase::Idle(at)
            } else {
                Phase::New(at)
            };
            self.conn.set_phase(phase);
            // Set after the phase, so that a stop between the two is seen by one or the
            // other: the server is stopping, no other request is read here.
            if slots.is_stopping() {
                let _ = self.conn.stream.shutdown(Shutdown::Read);
            }
        }
    }

    /// The head has been read (or has failed): the connection is busy, never reclaimed, and
    /// its reads are bounded per read only. Returns when the request began: the arrival of
    /// its head's first byte, or the start of the wait when the head was already buffered
    /// (pipelined), so a request's time never counts the idle wait before it.
    pub fn head_received(&mut self) -> Instant {
        let began = self
            .head
            .map_or_else(Instant::now, |w| w.first_byte.unwrap_or(w.since));
        self.head = None;
        self.served = true;
        self.conn.set_phase(Phase::Busy);
        began
    }

    /// The socket, for writing.
    pub fn tcp(&self) -> &TcpStream {
        &self.conn.stream
    }

    /// How long the next read may wait; `TimedOut` if the head's deadline has passed.
    fn next_wait(&self) -> io::Result<Duration> {
        let Some(wait) = self.head else {
            return Ok(self.timeout);
        };
        let pressured = self.slots.as_ref().is_some_and(|s| s.under_pressure());
        let deadline = head_deadline(wait.since, wait.first_byte, self.timeout, pressured);
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
        }
        Ok(left.min(self.timeout))
    }

    /// Sets the read timeout to `wait`, unless the one already set is close enough: not
    /// shorter (the read would fail early), and longer by at most a quarter (a read may then
    /// overrun the deadline by that much, checked again on the next read). The common case,
    /// a head that arrives at once, costs no system call.
    fn apply(&mut self, wait: Duration) -> io::Result<()> {
        if needs_new_timeout(wait, self.applied) {
            self.conn.stream.set_read_timeout(Some(wait))?;
            self.applied = wait;
        }
        Ok(())
    }

    /// Notes the first byte of an awaited head: the connection is now reading a head.
    fn first_byte(&mut self) {
        let Some(wait) = &mut self.head else { return };
        if wait.first_byte.is_some() {
            return;
        }
        let now = Instant::now();
        wait.first_byte = Some(now);
        if let Some(slots) = &self.slots {
            self.conn.set_phase(Phase::Head(slots.since_start(now)));
        }
    }
}

/// The options of every client socket: `timeout` on each read and each write, and
/// TCP_NODELAY (a response's last segment leaves at once).
pub(super) fn set_options(socket: &TcpStream, timeout: Duration) -> io::Result<()> {
    socket.set_read_timeout(Some(timeout))?;
    socket.set_write_timeout(Some(timeout))?;
    socket.set_nodelay(true)
}

/// Sets the client sockets' options (`set_options`) once, on the listener: on Linux the
/// sockets it accepts start with a copy of its options, so a connection costs three system
/// calls fewer (a `Connection: close` request took fourteen). Returns whether they were set;
/// elsewhere, or on failure, each connection sets its own.
///
/// The read timeout also bounds `accept`, which then fails with a timeout when no client
/// came in that time: the accept loop simply calls it again.
pub fn set_on_listener(listener: &TcpListener, timeout: Duration) -> bool {
    if !cfg!(target_os = "linux") {
        return false;
    }
    // std offers these options on a stream only: a second handle on the same socket.
    let Ok(clone) = listener.try_clone() else {
        return false;
    };
    set_options(&TcpStream::from(OwnedFd::from(clone)), timeout).is_ok()
}

/// Whether a read that should wait at most `wait` needs the socket's read timeout changed
/// from `applied`: when `applied` is shorter (the read would fail early), or longer by more
/// than a quarter (the read may then overrun a deadline by at most that much, and the next
/// read looks again). The common case, a head that arrives at once, costs no system call.
/// Shared with the backend side (`upstream`), whose response head has a deadline too.
pub fn needs_new_timeout(wait: Duration, applied: Duration) -> bool {
    wait > applied || wait + applied / 4 < applied
}

impl ClientStream {
    /// Closes a connection whose request body was not read to its end (an early answer, a
    /// 413), as nginx's lingering close does. Closing a socket with unread bytes makes the
    /// kernel reset the connection, and a client still sending its body may then lose our
    /// response before reading it. So writing is shut down first (the client sees the
    /// response end), then whatever the client still sends is read and dropped until it
    /// closes, it stays silent for `LINGER_TIMEOUT`, or `LINGER_TIME` has passed.
    pub fn close_lingering(&self) {
        let stream = &self.conn.stream;
        if stream.shutdown(Shutdown::Write).is_err()
            || stream.set_read_timeout(Some(LINGER_TIMEOUT)).is_err()
        {
            return;
        }
        let until = Instant::now() + LINGER_TIME;
        let mut sink = [0u8; LINGER_BUFFER];
        let mut reader = stream;
        while Instant::now() < until {
            match reader.read(&mut sink) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

impl Read for ClientStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let wait = self.next_wait()?;
        self.apply(wait)?;
        let n = (&self.conn.stream).read(buf)?;
        if n == 0 && self.conn.is_reclaimed() {
            // Shut down by the accept loop: between requests this ends the connection
            // quietly (as an idle timeout does); in the middle of a head it is a 408.
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "closed to make room for a new connection",
            ));
        }
        if n > 0 {
            self.first_byte();
        }
        Ok(n)
    }
}

impl Write for ClientStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&self.conn.stream).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        (&self.conn.stream).flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A connected pair on loopback: (the server's `ClientStream`, the client's socket).
    fn pair(timeout: Duration) -> (ClientStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (ClientStream::new(server, timeout).unwrap(), client)
    }

    #[test]
    fn accepted_sockets_inherit_the_options_set_on_the_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let timeout = Duration::from_secs(7); // whole seconds: the kernel keeps jiffies
        assert!(set_on_listener(&listener, timeout));
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        assert_eq!(accepted.read_timeout().unwrap(), Some(timeout));
        assert_eq!(accepted.write_timeout().unwrap(), Some(timeout));
        assert!(accepted.nodelay().unwrap());
    }

    #[test]
    fn a_head_dripping_in_stops_at_the_deadline_though_each_read_is_in_time() {
        let (mut stream, mut client) = pair(Duration::from_millis(300));
        stream.await_head();
        let started = Instant::now();
        let mut buf = [0u8; 16];
        let error = loop {
            client.write_all(b"G").unwrap();
            match stream.read(&mut buf) {
                Ok(n) => assert_eq!(n, 1),
                Err(e) => break e,
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }

    #[test]
    fn after_the_head_reads_are_bounded_per_read_only() {
        let (mut stream, mut client) = pair(Duration::from_millis(300));
        stream.await_head();
        stream.head_received();
        let started = Instant::now();
        let mut buf = [0u8; 16];
        // Past where the head's deadline would have been, a read still succeeds.
        while started.elapsed() < Duration::from_millis(400) {
            client.write_all(b"b").unwrap();
            assert_eq!(stream.read(&mut buf).unwrap(), 1);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_timeout_shortened_for_one_head_does_not_cut_the_next_one_short() {
        let (mut stream, mut client) = pair(Duration::from_millis(600));
        let mut buf = [0u8; 16];
        stream.await_head();
        // Read until the deadline is near enough that the timeout is set to what is left.
        let first = Instant::now();
        while first.elapsed() < Duration::from_millis(480) {
            client.write_all(b"a").unwrap();
            assert_eq!(stream.read(&mut buf).unwrap(), 1);
            std::thread::sleep(Duration::from_millis(20));
        }
        stream.head_received();
        stream.await_head();
        // The next head's first byte comes 300 ms later: well within its own 600 ms.
        let writer = client.try_clone().unwrap();
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            (&writer).write_all(b"x").unwrap();
        });
        assert_eq!(stream.read(&mut buf).unwrap(), 1);
        late.join().unwrap();
    }

    #[test]
    fn a_request_begins_at_its_first_byte_not_at_the_idle_wait_before_it() {
        let (mut stream, mut client) = pair(Duration::from_secs(5));
        stream.await_head();
        let waiting = Instant::now();
        std::thread::sleep(Duration::from_millis(200));
        client.write_all(b"G").unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(stream.read(&mut buf).unwrap(), 1);
        let began = stream.head_received();
        assert!(
            began >= waiting + Duration::from_millis(200),
            "counted the idle wait"
        );
        // A head already buffered (pipelined) begins when its wait began.
        stream.await_head();
        let waiting = Instant::now();
        let began = stream.head_received();
        assert!(began <= waiting + Duration::from_millis(50));
    }

    #[test]
    fn writes_go_to_the_socket() {
        let (mut stream, mut client) = pair(Duration::from_secs(5));
        stream.write_all(b"hello").unwrap();
        stream.flush().unwrap();
        let mut buf = [0u8; 5];
        client.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");
    }
}
