//! The accept loop shared by the proxy and the web server: bind a `TcpListener`, accept
//! connections, and give each one its own OS thread, at most `max_connections` at once.
//!
//! What happens on a connection is the handler's business (`proxy`, `webserver`). This
//! module owns only the thread-per-connection policy and the refusal of connections beyond
//! the limit with a `503` and `Retry-After` (RFC 9110 §15.6.4, §10.2.3).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::http::{serialize, text_response};

/// Stack size of each connection thread. The per-connection work keeps its buffers on the
/// heap, so a small stack lets thousands of idle connections fit in little memory.
pub const THREAD_STACK_SIZE: usize = 256 * 1024;
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

/// Accepts connections forever, running `handler` on a new thread for each one. Beyond
/// `max_connections` handlers running at once, a new connection gets a `503` and is closed.
/// `active` counts the connections being served (the status page shows it).
pub fn serve<H>(listener: TcpListener, max_connections: usize, active: Arc<AtomicUsize>, handler: H)
where
    H: Fn(TcpStream, SocketAddr) + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(stream) => stream,
            Err(e) => {
                log::warn!("accept failed: {e}");
                thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
        };
        let Ok(peer) = stream.peer_addr() else {
            continue; // the client is already gone
        };
        if active.load(Ordering::Acquire) >= max_connections {
            log::warn!("{peer} refused: {max_connections} connections already open");
            refuse(stream);
            continue;
        }
        let slot = Slot::take(&active);
        let handler = Arc::clone(&handler);
        let spawned = thread::Builder::new()
            .stack_size(THREAD_STACK_SIZE)
            .spawn(move || {
                let _slot = slot;
                handler(stream, peer);
            });
        // On failure the closure, with its stream and slot, is dropped: the client sees
        // the connection close and the count goes back down.
        if let Err(e) = spawned {
            log::error!("{peer} dropped: cannot start a thread: {e}");
        }
    }
}

/// One unit of the active-connection count, given back when dropped (also on unwinding).
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(active: &Arc<AtomicUsize>) -> Slot {
        active.fetch_add(1, Ordering::AcqRel);
        Slot(Arc::clone(active))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
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

/// A client's socket whose reads can also stop at a deadline.
///
/// Every read already has a per-read timeout; that alone lets a client that sends one byte
/// just inside each timeout hold a thread forever (slowloris). While a deadline is set, each
/// read waits at most until the deadline, and a read at or past it fails with `TimedOut`.
/// The proxy sets one for the whole request head (idle wait included) and clears it for the
/// body, whose pace is only bounded per read.
pub struct ClientStream {
    stream: TcpStream,
    /// The per-read timeout.
    timeout: Duration,
    deadline: Option<std::time::Instant>,
    /// Invariant: the read timeout currently set on `stream`, to skip redundant syscalls.
    applied: Duration,
}

impl ClientStream {
    /// Wraps `stream`, setting `timeout` on its reads and writes and TCP_NODELAY.
    ///
    /// # Errors
    /// When the socket options cannot be set (the client is usually gone).
    pub fn new(stream: TcpStream, timeout: Duration) -> std::io::Result<Self> {
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(ClientStream {
            stream,
            timeout,
            deadline: None,
            applied: timeout,
        })
    }

    /// Sets or clears the deadline for the reads that follow.
    pub fn set_deadline(&mut self, deadline: Option<std::time::Instant>) {
        self.deadline = deadline;
    }

    /// The socket, for writing.
    pub fn tcp(&self) -> &TcpStream {
        &self.stream
    }
}

impl Read for ClientStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let wait = match self.deadline {
            None => self.timeout,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "deadline passed",
                    ));
                }
                // Keep the timeout already set while the deadline is not much closer than
                // it: a read may then overrun the deadline by at most a quarter of the
                // timeout, checked again on the next read, and the common case (a head that
                // arrives at once) costs no system call.
                if left + self.applied / 4 >= self.applied {
                    self.applied
                } else {
                    left
                }
            }
        };
        if wait != self.applied {
            self.stream.set_read_timeout(Some(wait))?;
            self.applied = wait;
        }
        self.stream.read(buf)
    }
}
