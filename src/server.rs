//! The accept loop shared by the proxy and the web server: bind a `TcpListener`, accept
//! connections, and give each one its own OS thread, at most `max_connections` at once.
//!
//! What happens on a connection is the handler's business (`proxy`, `webserver`). This
//! module owns the thread-per-connection policy, the slots (`slots`: which connection may be
//! closed to make room for a new one when every slot is taken, the shorter waits under
//! pressure, the cap per address), the refusal of a connection that finds no room with a
//! `503` and `Retry-After` (RFC 9110 §15.6.4, §10.2.3), the client socket with its head
//! deadline (`ClientStream`), and the check of the open-file limit (`open_files`).
//!
//! Threads are reused. A thread serves one connection at a time, for the connection's whole
//! life; when the connection ends, the thread parks as an idle worker, and the accept loop
//! hands the next connection to the most recently parked one (its stack and caches are still
//! warm). Only when none is idle does it start a new thread. Starting and ending a thread
//! costs about fifteen system calls, a large part of the kernel time per request on short
//! `Connection: close` traffic. At most `MAX_IDLE_WORKERS` wait, each for at most
//! `IDLE_WORKER_TIMEOUT`; a handler that panics ends its thread, which is not reused.

mod client_stream;
mod open_files;
mod slots;

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, ThreadId};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::http::{serialize, text_response};
pub use client_stream::{needs_new_timeout, ClientStream};
pub use open_files::{fit_connections, FDS_PER_CONNECTION, FD_RESERVE};
pub use slots::{
    choose_victim, head_deadline, under_pressure, Phase, PRESSURE_HEAD_TIMEOUT, PRESSURE_IDLE_WAIT,
    PRESSURE_PERCENT, RECLAIM_GRACE,
};
use slots::{Refusal, Slot, Slots};

/// Stack size of each connection thread. The per-connection work keeps its buffers on the
/// heap, so a small stack lets thousands of idle connections fit in little memory.
pub const THREAD_STACK_SIZE: usize = 256 * 1024;
/// At most this many threads wait for a connection after theirs has ended; beyond it, a
/// thread whose connection ends exits. Parked, each costs its stack (`THREAD_STACK_SIZE`,
/// mostly untouched) and no CPU.
pub const MAX_IDLE_WORKERS: usize = 256;
/// An idle thread that has been given no connection for this long exits, so a burst of
/// connections does not leave its threads behind for good.
pub const IDLE_WORKER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the accept loop waits for a refused client to take its 503.
pub const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause after a failed `accept` (for example out of file descriptors), so the loop does
/// not spin while the condition lasts.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Seconds a refused client is told to wait before trying again.
pub const RETRY_AFTER_SECS: u32 = 1;

/// Binds `addr` (`host:port`; port 0 lets the OS choose).
///
/// # Errors
/// `Error::Startup` naming the address when it cannot be resolved or bound.
pub fn bind(addr: &str) -> Result<TcpListener> {
    let fail = |why: String| Error::Startup(format!("cannot listen on {addr}: {why}"));
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| fail(e.to_string()))?
        .collect();
    TcpListener::bind(&addrs[..]).map_err(|e| fail(e.to_string()))
}

/// Stops a `serve` loop from another thread (the proxy's `POST {status_path}/stop`): no new
/// connection is accepted, connections waiting for a request are closed, and `serve`
/// returns once the connections in the middle of a request have finished, or after the
/// grace period given to `stop`, whichever comes first.
///
/// The accept loop is blocked in `accept`; `stop` wakes it by connecting once to the
/// listening address (tiny-http's way: no signal, no non-blocking listener).
#[derive(Clone, Debug)]
pub struct Stopper {
    inner: Arc<StopState>,
}

#[derive(Debug)]
struct StopState {
    /// The grace period, once a stop has been asked for.
    grace: Mutex<Option<Duration>>,
    /// Where the listener is, to wake its `accept`.
    addr: SocketAddr,
}

impl Stopper {
    /// A stopper for the server about to listen on `listener`.
    ///
    /// # Errors
    /// When the listener's address cannot be read.
    pub fn new(listener: &TcpListener) -> io::Result<Stopper> {
        let mut addr = listener.local_addr()?;
        // A wildcard address is reached through loopback.
        if addr.ip().is_unspecified() {
            let loopback: IpAddr = match addr {
                SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
            };
            addr.set_ip(loopback);
        }
        Ok(Stopper {
            inner: Arc::new(StopState {
                grace: Mutex::new(None),
                addr,
            }),
        })
    }

    /// Asks the server to stop, giving the requests in flight up to `grace` to finish.
    /// Returns at once; `serve` returns when the server has stopped.
    pub fn stop(&self, grace: Duration) {
        let mut asked = self.grace();
        if asked.is_none() {
            *asked = Some(grace);
            drop(asked);
            // Wakes `accept`; the connection is dropped by the loop, unserved.
            let _ = TcpStream::connect_timeout(&self.inner.addr, STOP_WAKE_TIMEOUT);
        }
    }

    /// The grace period, once a stop has been asked for.
    fn asked(&self) -> Option<Duration> {
        *self.grace()
    }

    fn grace(&self) -> MutexGuard<'_, Option<Duration>> {
        self.inner
            .grace
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// How long `Stopper::stop` tries to reach the listener to wake its `accept`.
pub const STOP_WAKE_TIMEOUT: Duration = Duration::from_secs(1);
/// How often a stopping server looks whether its last connections have ended.
pub const STOP_POLL: Duration = Duration::from_millis(20);

/// Threads this process runs now, from the `Threads:` line of `/proc/self/status` (Linux);
/// `None` where that cannot be read. The status page shows it: one thread per connection,
/// plus the parked ones and a few of the program's own, made visible.
pub fn thread_count() -> Option<usize> {
    parse_thread_count(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// The count in the text of a `/proc/PID/status` file (`Threads:\t12`).
fn parse_thread_count(status: &str) -> Option<usize> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()
}

/// How `serve` shares out its connections.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Connections served at once; beyond, one is reclaimed or the newcomer refused.
    pub max_connections: usize,
    /// Connections one client address may hold at once; 0 for no cap.
    pub max_connections_per_ip: usize,
    /// Each read from and write to a client, and a whole request head without pressure.
    pub client_timeout: Duration,
}

/// Accepts connections forever, running `handler` for each one on a thread of its own (an
/// idle one when there is one, else a new one). When `settings.max_connections` handlers
/// are running, an idle or slow connection is closed to make room (see `slots`), and when
/// none may be, the new connection gets a `503` and is closed. `active` counts the
/// connections being served (the status page shows it).
///
/// Returns only once `stopper` has stopped it (see `Stopper`).
pub fn serve<H>(
    listener: TcpListener,
    settings: Settings,
    active: Arc<AtomicUsize>,
    stopper: &Stopper,
    handler: H,
) where
    H: Fn(ClientStream, SocketAddr) + Send + Sync + 'static,
{
    let slots = Slots::new(
        settings.max_connections,
        settings.max_connections_per_ip,
        settings.client_timeout,
        active,
    );
    let mut early = Vec::new();
    if client_stream::set_on_listener(&listener, settings.client_timeout) {
        slots.note_inherited_options();
        early = accept_queued(&listener, settings.client_timeout);
    }
    let workers = Workers::new(handler, MAX_IDLE_WORKERS, IDLE_WORKER_TIMEOUT);
    // `accept` returns the peer's address with the socket: no `getpeername` per connection.
    let incoming = early.into_iter().map(Ok).chain(
        std::iter::repeat_with(|| listener.accept()).take_while(|_| stopper.asked().is_none()),
    );
    accept_loop(incoming, &slots, &workers);
    drop(listener);
    let grace = stopper.asked().unwrap_or_default();
    wind_down(&slots, grace);
}

/// The connections already waiting to be accepted, with their options set: a connection
/// inherits the listener's options when it is established, and these were established
/// before the listener had them (a client may connect as soon as `listening on` is printed).
/// Those established later inherit them all. Any failure leaves the rest to `accept`.
fn accept_queued(listener: &TcpListener, timeout: Duration) -> Vec<(TcpStream, SocketAddr)> {
    let mut queued = Vec::new();
    if listener.set_nonblocking(true).is_err() {
        return queued;
    }
    while let Ok((stream, peer)) = listener.accept() {
        if client_stream::set_options(&stream, timeout).is_ok() {
            queued.push((stream, peer));
        }
    }
    if let Err(e) = listener.set_nonblocking(false) {
        log::warn!("the listener stays non-blocking: {e}");
    }
    queued
}

/// The end of `serve`: closes the connections waiting for a request, and waits (at most
/// `grace`) for those serving one to finish.
fn wind_down(slots: &Slots, grace: Duration) {
    slots.stop();
    let open = slots.open();
    if open > 0 {
        log::info!("stopping: waiting up to {grace:?} for {open} connections to finish");
    }
    let until = std::time::Instant::now() + grace;
    while slots.open() > 0 && std::time::Instant::now() < until {
        thread::sleep(STOP_POLL);
    }
    match slots.open() {
        0 => log::info!("stopped: every connection finished"),
        left => log::warn!("stopped after {grace:?}: {left} connections cut"),
    }
}

/// The body of `serve`, over any source of connections (tests pass a bounded one).
fn accept_loop<H>(
    incoming: impl Iterator<Item = io::Result<(TcpStream, SocketAddr)>>,
    slots: &Arc<Slots>,
    workers: &Arc<Workers<H>>,
) where
    H: Fn(ClientStream, SocketAddr) + Send + Sync + 'static,
{
    for conn in incoming {
        let (stream, peer) = match conn {
            Ok(accepted) => accepted,
            // The listener's read timeout (see `set_on_listener`): no client came meanwhile.
            Err(e) if crate::error::is_timeout(&e) => continue,
            Err(e) => {
                log::warn!("accept failed: {e}");
                thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
        };
        let slot = match slots.admit(stream, peer) {
            Ok(slot) => slot,
            Err((stream, why)) => {
                match why {
                    Refusal::Full => {
                        log::warn!("{peer} refused: every slot is taken and none can give way");
                    }
                    Refusal::PerAddress => {
                        log::warn!("{peer} refused: max_connections_per_ip reached");
                    }
                }
                refuse(stream);
                continue;
            }
        };
        // On failure the job, with its slot, is dropped: the client sees the connection
        // close and the count goes back down.
        if let Err(e) = workers.dispatch(Job { peer, slot }) {
            log::error!("{peer} dropped: cannot start a thread: {e}");
        }
    }
}

/// One accepted connection on its way to a thread.
struct Job {
    peer: SocketAddr,
    /// Holds the connection's socket; held until the handler has finished with it.
    slot: Slot,
}

/// A parked thread, as the accept loop sees it: where to send it a connection.
struct Idle {
    /// Which thread this is, so that it can find and remove itself when it times out.
    thread: ThreadId,
    /// The only sender of the channel the thread waits on: if it is dropped unused, the
    /// thread's wait ends with `Disconnected` and the thread exits.
    sender: mpsc::Sender<Job>,
}

/// The connection threads: the handler they run and the stack of those parked.
///
/// Hand-over without races: a thread pushes an `Idle` and waits on its channel; the accept
/// loop pops an `Idle` (under the lock) and sends on it. A thread whose wait times out takes
/// the lock and removes its entry; if the entry is gone, the accept loop has already taken
/// it, so the thread waits, without a timeout, for the connection on its way.
struct Workers<H> {
    handler: H,
    /// Last in, first out: the most recently parked thread is woken first.
    /// Invariant: at most `max_idle` entries, and each one's thread is waiting on it (or has
    /// just timed out and is about to remove it).
    idle: Mutex<Vec<Idle>>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl<H> Workers<H>
where
    H: Fn(ClientStream, SocketAddr) + Send + Sync + 'static,
{
    fn new(handler: H, max_idle: usize, idle_timeout: Duration) -> Arc<Self> {
        Arc::new(Workers {
            handler,
            idle: Mutex::new(Vec::new()),
            max_idle,
            idle_timeout,
        })
    }

    /// Gives `job` to the most recently parked thread, or to a new one when none is parked.
    ///
    /// # Errors
    /// When a new thread is needed and cannot be started; `job` is then dropped.
    fn dispatch(self: &Arc<Self>, mut job: Job) -> io::Result<()> {
        loop {
            // A statement of its own, so that the lock is released before the send.
            let popped = self.idle().pop();
            let Some(idle) = popped else { break };
            match idle.sender.send(job) {
                Ok(()) => return Ok(()),
                // That thread is gone (it cannot happen with the protocol above, but a lost
                // connection would be worse than a tried one): take the job back.
                Err(mpsc::SendError(back)) => job = back,
            }
        }
        let workers = Arc::clone(self);
        thread::Builder::new()
            .stack_size(THREAD_STACK_SIZE)
            .spawn(move || workers.work(job))
            .map(drop)
    }

    /// The life of one thread: serve `job`, then park and serve each connection handed
    /// over, until there is no room to park or none comes in time.
    ///
    /// A panic in the handler unwinds out of here: the slot is given back on the way, and
    /// the thread ends without parking, so it is never handed another connection.
    fn work(&self, mut job: Job) {
        let thread = thread::current().id();
        loop {
            let Job { peer, slot } = job;
            match ClientStream::open(&slot) {
                Ok(stream) => (self.handler)(stream, peer),
                Err(e) => log::warn!("{peer}: cannot configure the connection: {e}"),
            }
            match self.park(thread, slot) {
                Some(next) => job = next,
                None => return,
            }
        }
    }

    /// Parks the calling thread until the accept loop hands it a connection. `None` when
    /// the idle stack is full or the wait timed out: the thread should exit.
    fn park(&self, thread: ThreadId, slot: Slot) -> Option<Job> {
        let (sender, receiver) = mpsc::channel();
        {
            let mut idle = self.idle();
            if idle.len() >= self.max_idle {
                return None;
            }
            idle.push(Idle { thread, sender });
        }
        // Given back only once parked: when `active` says a connection has ended, its thread
        // can already take the next one (the tests rely on this).
        drop(slot);
        match receiver.recv_timeout(self.idle_timeout) {
            Ok(job) => Some(job),
            // The entry was taken and dropped without a connection.
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => {
                let mut idle = self.idle();
                if let Some(at) = idle.iter().position(|w| w.thread == thread) {
                    idle.remove(at);
                    return None;
                }
                drop(idle);
                // The accept loop popped this entry just as the wait ended, and is sending.
                receiver.recv().ok()
            }
        }
    }

    /// The idle stack, locked. Every change to it is a single push, pop or remove, so it is
    /// consistent even if a holder of the lock panicked.
    fn idle(&self) -> MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Answers `503 Service Unavailable` with `Retry-After` and closes.
fn refuse(mut stream: TcpStream) {
    let (mut resp, body) = text_response(503, "too many connections, try again shortly");
    resp.headers
        .append("Retry-After", RETRY_AFTER_SECS.to_string());
    resp.headers.append("Connection", "close");
    let mut bytes = serialize::response_head_bytes(&resp);
    bytes.extend_from_slice(&body);
    // Best effort: the client may already be gone, and we are closing either way.
    let _ = stream.set_write_timeout(Some(REFUSAL_WRITE_TIMEOUT));
    let _ = stream.write_all(&bytes);
}

// These tests use sockets, unlike the other unit tests: which thread serves which connection
// is private to this module, so they drive `accept_loop` and `Workers` directly.
#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::Shutdown;
    use std::sync::atomic::Ordering;
    use std::time::Instant;

    /// How long a test waits for something that takes microseconds, before it fails.
    const PATIENCE: Duration = Duration::from_secs(5);

    #[test]
    fn the_thread_count_is_read_from_proc_status() {
        let status = "Name:\tproxy\nState:\tS (sleeping)\nThreads:\t12\nSigQ:\t0/1\n";
        assert_eq!(parse_thread_count(status), Some(12));
        assert_eq!(parse_thread_count("Name:\tx\n"), None);
        assert_eq!(parse_thread_count("Threads:\tmany\n"), None);
        if cfg!(target_os = "linux") {
            // This test's own process: the harness's threads, at least this one.
            assert!(thread_count().is_some_and(|n| n >= 1));
        }
    }

    /// A test server that accepts `connections` connections, then stops accepting.
    fn start<H>(
        connections: usize,
        max_idle: usize,
        idle_timeout: Duration,
        handler: H,
    ) -> (SocketAddr, Arc<AtomicUsize>, Arc<Workers<H>>)
    where
        H: Fn(ClientStream, SocketAddr) + Send + Sync + 'static,
    {
        let active = Arc::new(AtomicUsize::new(0));
        let slots = Slots::new(64, 0, PATIENCE, Arc::clone(&active));
        let workers = Workers::new(handler, max_idle, idle_timeout);
        let addr = start_with(connections, slots, Arc::clone(&workers));
        (addr, active, workers)
    }

    /// A test server with these slots and workers that accepts `connections` connections.
    fn start_with<H>(connections: usize, slots: Arc<Slots>, workers: Arc<Workers<H>>) -> SocketAddr
    where
        H: Fn(ClientStream, SocketAddr) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            let incoming = std::iter::repeat_with(|| listener.accept()).take(connections);
            accept_loop(incoming, &slots, &workers);
        });
        addr
    }

    /// A line server: for each line received, `ok`; a line `hold` instead keeps the
    /// connection busy until the client closes it. It reports its phases as the proxy does.
    fn line_server(stream: ClientStream, _: SocketAddr) {
        let mut reader = std::io::BufReader::new(stream);
        reader.get_mut().await_head();
        loop {
            let mut line = String::new();
            let read = std::io::BufRead::read_line(&mut reader, &mut line);
            reader.get_mut().head_received();
            if !matches!(read, Ok(n) if n > 0) {
                return;
            }
            if line == "hold\n" {
                let _ = reader.read_to_end(&mut Vec::new());
                return;
            }
            // Idle from before the reply (the proxy marks it just after): a client holding
            // its reply knows when the wait began, whatever the scheduler does.
            reader.get_mut().await_head();
            if reader.get_mut().write_all(b"ok\n").is_err() {
                return;
            }
        }
    }

    /// A line server with room for `max` connections, at most `per_ip` from one address.
    fn line_server_with(max: usize, per_ip: usize) -> (SocketAddr, Arc<AtomicUsize>) {
        let active = Arc::new(AtomicUsize::new(0));
        let slots = Slots::new(max, per_ip, PATIENCE, Arc::clone(&active));
        let workers = Workers::new(line_server, 8, PATIENCE);
        (start_with(16, slots, workers), active)
    }

    /// Connects and sends `line`; returns the stream and the first reply bytes.
    fn say(addr: SocketAddr, line: &[u8]) -> (TcpStream, Vec<u8>) {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.write_all(line).unwrap();
        let mut reply = vec![0u8; 64];
        let n = stream.read(&mut reply).unwrap();
        reply.truncate(n);
        (stream, reply)
    }

    /// A line server whose `slow` line takes `SLOW` before its `ok`.
    fn slow_line_server(stream: ClientStream, _: SocketAddr) {
        let mut reader = std::io::BufReader::new(stream);
        loop {
            reader.get_mut().await_head();
            let mut line = String::new();
            let read = std::io::BufRead::read_line(&mut reader, &mut line);
            reader.get_mut().head_received();
            if !matches!(read, Ok(n) if n > 0) {
                return;
            }
            if line == "slow\n" {
                // Says it has begun (the client then knows the line arrived), then takes time.
                let _ = reader.get_mut().write_all(b"started\n");
                thread::sleep(SLOW);
            }
            if line == "hold\n" {
                // Says so, then stays busy until the client closes.
                let _ = reader.get_mut().write_all(b"held\n");
                let _ = reader.read_to_end(&mut Vec::new());
                return;
            }
            if reader.get_mut().write_all(b"ok\n").is_err() {
                return;
            }
        }
    }

    const SLOW: Duration = Duration::from_millis(300);

    #[test]
    fn a_stop_closes_idle_connections_lets_busy_ones_finish_and_accepts_no_more() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stopper = Stopper::new(&listener).unwrap();
        let settings = Settings {
            max_connections: 8,
            max_connections_per_ip: 0,
            client_timeout: PATIENCE,
        };
        let active = Arc::new(AtomicUsize::new(0));
        let (count, stop) = (Arc::clone(&active), stopper.clone());
        let server =
            thread::spawn(move || serve(listener, settings, count, &stop, slow_line_server));
        let (mut idle, reply) = say(addr, b"quick\n");
        assert_eq!(reply, b"ok\n");
        // The busy one's line has arrived: the server says it has started on it.
        let (mut busy, reply) = say(addr, b"slow\n");
        assert_eq!(reply, b"started\n");
        stopper.stop(PATIENCE);
        // The busy one gets its answer, then its end; the idle one just its end.
        let mut answer = Vec::new();
        busy.read_to_end(&mut answer).unwrap();
        assert_eq!(answer, b"ok\n");
        assert_eq!(idle.read(&mut [0u8; 8]).unwrap(), 0);
        server.join().unwrap();
        assert_eq!(active.load(Ordering::Acquire), 0);
        // Nothing listens any more.
        assert!(TcpStream::connect(addr).is_err());
    }

    #[test]
    fn a_stop_cuts_what_outlasts_the_grace_period() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stopper = Stopper::new(&listener).unwrap();
        let settings = Settings {
            max_connections: 8,
            max_connections_per_ip: 0,
            client_timeout: PATIENCE,
        };
        let active = Arc::new(AtomicUsize::new(0));
        let (count, stop) = (Arc::clone(&active), stopper.clone());
        let server =
            thread::spawn(move || serve(listener, settings, count, &stop, slow_line_server));
        // Busy for good: the server has the line and is holding the connection.
        let (holder, reply) = say(addr, b"hold\n");
        assert_eq!(reply, b"held\n");
        let started = Instant::now();
        stopper.stop(Duration::from_millis(100));
        server.join().unwrap();
        assert!(
            started.elapsed() < PATIENCE,
            "serve waited past the grace period"
        );
        assert_eq!(
            active.load(Ordering::Acquire),
            1,
            "the held connection was still open"
        );
        drop(holder);
    }

    /// A handler that reports its thread, answers `ok`, and closes.
    fn reporting(
        threads: mpsc::Sender<ThreadId>,
    ) -> impl Fn(ClientStream, SocketAddr) + Send + Sync + 'static {
        move |mut stream, _| {
            threads.send(thread::current().id()).unwrap();
            stream.write_all(b"ok").unwrap();
        }
    }

    /// Connects, sends `send`, and reads until the server closes.
    fn exchange(addr: SocketAddr, send: &[u8]) -> Vec<u8> {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.write_all(send).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).unwrap();
        reply
    }

    /// Waits until no connection is being served. Threads park before they give back their
    /// slot, so afterwards every thread that has finished a connection is on the idle stack
    /// (or has exited). This polls for teardown, bounded; it never waits for readiness.
    fn settle(active: &AtomicUsize) {
        let deadline = Instant::now() + PATIENCE;
        while active.load(Ordering::Acquire) != 0 {
            assert!(Instant::now() < deadline, "connections still being served");
            thread::yield_now();
        }
    }

    fn idle_count<H>(workers: &Workers<H>) -> usize
    where
        H: Fn(ClientStream, SocketAddr) + Send + Sync + 'static,
    {
        workers.idle().len()
    }

    #[test]
    fn connections_one_after_another_are_served_by_the_same_thread() {
        let (tx, threads) = mpsc::channel();
        let (addr, active, workers) = start(4, 8, PATIENCE, reporting(tx));
        let mut seen = Vec::new();
        for _ in 0..4 {
            assert_eq!(exchange(addr, b""), b"ok");
            seen.push(threads.recv_timeout(PATIENCE).unwrap());
            settle(&active);
            assert_eq!(idle_count(&workers), 1);
        }
        assert!(seen.iter().all(|t| *t == seen[0]), "{seen:?}");
    }

    #[test]
    fn connections_open_at_once_get_threads_of_their_own_which_are_then_reused() {
        let (tx, threads) = mpsc::channel();
        // The handler holds its connection until the client closes it.
        let handler = move |mut stream: ClientStream, _| {
            tx.send(thread::current().id()).unwrap();
            let _ = stream.read_to_end(&mut Vec::new());
        };
        let (addr, active, workers) = start(4, 8, PATIENCE, handler);
        let held: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let first: Vec<ThreadId> = (0..3)
            .map(|_| threads.recv_timeout(PATIENCE).unwrap())
            .collect();
        assert_eq!(active.load(Ordering::Acquire), 3);
        assert!(first[0] != first[1] && first[1] != first[2] && first[0] != first[2]);
        drop(held);
        settle(&active);
        assert_eq!(idle_count(&workers), 3);
        assert_eq!(exchange(addr, b""), b"");
        let again = threads.recv_timeout(PATIENCE).unwrap();
        assert!(first.contains(&again), "a parked thread is reused");
        settle(&active);
    }

    #[test]
    fn at_most_max_idle_threads_stay_parked() {
        let (tx, threads) = mpsc::channel();
        let handler = move |mut stream: ClientStream, _| {
            tx.send(()).unwrap();
            let _ = stream.read_to_end(&mut Vec::new());
        };
        let (addr, active, workers) = start(3, 1, PATIENCE, handler);
        let held: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(addr).unwrap()).collect();
        for _ in 0..3 {
            threads.recv_timeout(PATIENCE).unwrap();
        }
        drop(held);
        settle(&active);
        assert_eq!(idle_count(&workers), 1);
    }

    #[test]
    fn a_handler_that_panics_ends_only_its_own_thread() {
        let (tx, threads) = mpsc::channel();
        let handler = move |mut stream: ClientStream, _| {
            let mut first = [0u8; 1];
            stream.read_exact(&mut first).unwrap();
            assert_ne!(&first, b"p", "a deliberate panic in a test handler");
            tx.send(thread::current().id()).unwrap();
            stream.write_all(b"ok").unwrap();
        };
        let (addr, active, workers) = start(3, 8, PATIENCE, handler);
        assert_eq!(exchange(addr, b"x"), b"ok");
        let survivor = threads.recv_timeout(PATIENCE).unwrap();
        settle(&active);
        // The parked thread takes the panic, and is not parked again.
        assert_eq!(exchange(addr, b"p"), b"");
        settle(&active);
        assert_eq!(
            idle_count(&workers),
            0,
            "the thread that panicked was parked"
        );
        // The next connection is served, by a new thread.
        assert_eq!(exchange(addr, b"x"), b"ok");
        assert_ne!(threads.recv_timeout(PATIENCE).unwrap(), survivor);
        settle(&active);
        assert_eq!(idle_count(&workers), 1);
    }

    #[test]
    fn idle_threads_exit_after_the_timeout_and_no_connection_is_lost_on_the_way() {
        // With no wait at all, every parked thread times out at once and races the accept
        // loop for its own entry: each connection must still be served exactly once. The
        // race is won by the accept loop only sometimes (a run or two in each test run when
        // counted), so this test can miss a bug in that branch; it never fails without one.
        const CLIENTS: usize = 4;
        const EACH: usize = 50;
        let (tx, threads) = mpsc::channel();
        let (addr, active, workers) = start(CLIENTS * EACH, 8, Duration::ZERO, reporting(tx));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| thread::spawn(move || (0..EACH).all(|_| exchange(addr, b"") == b"ok")))
            .collect();
        for client in clients {
            assert!(client.join().unwrap(), "a connection got no answer");
        }
        assert_eq!(threads.try_iter().count(), CLIENTS * EACH);
        settle(&active);
        let deadline = Instant::now() + PATIENCE;
        while idle_count(&workers) != 0 {
            assert!(Instant::now() < deadline, "idle threads did not time out");
            thread::yield_now();
        }
    }

    #[test]
    fn a_parked_entry_whose_thread_is_gone_is_skipped() {
        let (tx, threads) = mpsc::channel();
        let (addr, active, workers) = start(1, 8, PATIENCE, reporting(tx));
        let (sender, receiver) = mpsc::channel();
        drop(receiver);
        let thread = thread::current().id();
        workers.idle().push(Idle { thread, sender });
        assert_eq!(exchange(addr, b""), b"ok");
        threads.recv_timeout(PATIENCE).unwrap();
        settle(&active);
        assert_eq!(
            idle_count(&workers),
            1,
            "the dead entry is gone, the new thread parked"
        );
    }

    #[test]
    fn when_every_slot_is_taken_the_connection_idle_longest_makes_room() {
        let (addr, active) = line_server_with(2, 0);
        let (mut oldest, reply) = say(addr, b"a\n");
        assert_eq!(reply, b"ok\n");
        let (mut younger, reply) = say(addr, b"b\n");
        assert_eq!(reply, b"ok\n");
        // Both slots are held by keep-alive connections between requests.
        let (_newcomer, reply) = say(addr, b"c\n");
        assert_eq!(reply, b"ok\n", "the newcomer was not served");
        assert_eq!(read_to_close(&mut oldest), b"", "the oldest was not closed");
        younger.write_all(b"d\n").unwrap();
        let mut again = [0u8; 3];
        younger.read_exact(&mut again).unwrap();
        assert_eq!(&again, b"ok\n", "the younger one was closed too");
        assert!(active.load(Ordering::Acquire) <= 2);
    }

    #[test]
    fn busy_and_newly_opened_connections_are_not_reclaimed_the_newcomer_gets_503() {
        let (addr, _active) = line_server_with(2, 0);
        let mut busy = TcpStream::connect(addr).unwrap();
        busy.write_all(b"hold\n").unwrap();
        // Silent, but younger than RECLAIM_GRACE.
        let _fresh = TcpStream::connect(addr).unwrap();
        let (_, reply) = say(addr, b"c\n");
        assert!(reply.starts_with(b"HTTP/1.1 503 "), "{reply:?}");
        let mut more = vec![0u8; 1];
        busy.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        assert!(
            busy.read(&mut more).is_err(),
            "the busy connection was closed"
        );
    }

    #[test]
    fn the_cap_per_address_refuses_its_next_connection_and_frees_up_when_one_ends() {
        let (addr, active) = line_server_with(8, 2);
        let (first, reply) = say(addr, b"a\n");
        assert_eq!(reply, b"ok\n");
        let (_second, reply) = say(addr, b"b\n");
        assert_eq!(reply, b"ok\n");
        let (_, reply) = say(addr, b"c\n");
        assert!(reply.starts_with(b"HTTP/1.1 503 "), "{reply:?}");
        drop(first);
        let deadline = Instant::now() + PATIENCE;
        while active.load(Ordering::Acquire) > 1 {
            assert!(
                Instant::now() < deadline,
                "the first connection's slot stayed taken"
            );
            thread::yield_now();
        }
        assert_eq!(say(addr, b"d\n").1, b"ok\n");
    }

    /// Reads until the peer closes; what came before the close.
    fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
        let mut out = Vec::new();
        stream.read_to_end(&mut out).unwrap();
        out
    }
}
