//! Moving a large body from one socket to another inside the kernel: `splice(2)` from the
//! source socket into a pipe, then from the pipe into the destination socket, so no body
//! byte is copied through user space. This file owns the pipe kept by each connection
//! thread and the loop that moves a known number of bytes; deciding which bodies take this
//! path (`SPLICE_THRESHOLD`) and writing what a reader had already buffered are the
//! caller's (`relay`: Content-Length bodies and large chunks relayed without storing).
//!
//! Not spliced: a response being stored (the tee must see the bytes to write the file, and
//! std will not splice out of a regular file: `io::copy` refuses File → pipe or socket,
//! since a file changed later could alter bytes already queued), cache hits (the same), and
//! request bodies (their copy stops every 64 KiB to look for an early response, RFC 9112
//! §9.5, and resumes a timed-out write; a splice round cannot be resumed that way).
//!
//! The standard library does the system calls: on Linux `io::copy` splices when one end is
//! a pipe and the other a socket (`Take<&TcpStream>` into `&PipeWriter`, `Take<&PipeReader>`
//! into `&TcpStream`), bounded by the `Take`. Each round moves at most `ROUND` bytes: into
//! the empty pipe, then all of them out to the destination, so the pipe is empty again
//! between rounds and between bodies.
//!
//! The pipe's write end is opened a second time, non-blocking, through `/proc/self/fd`
//! (std has no `fcntl`): a socket's bytes may fill the pipe's sixteen slots with fewer
//! than `ROUND` bytes (one slot per received fragment), and `io::copy` would then wait on a
//! full pipe that only this thread empties. Non-blocking, a full pipe ends the round early
//! instead (`WouldBlock` with bytes moved). The sockets stay blocking: each splice waits
//! at most the socket's own read or write timeout, as a `read` or `write` would, and a
//! timeout is `WouldBlock` with nothing moved. A pipe whose round failed may hold bytes: it
//! is dropped, and the next body opens a new one.
//!
//! Where splicing is not possible (no `/proc`, a pipe smaller than `ROUND`), `relay` copies
//! through a buffer instead, with the same results.

use std::cell::RefCell;
use std::fs::OpenOptions;
use std::io::{self, PipeReader, PipeWriter, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{Error, ParseError, Result, Side};

/// Default of `splice_min_body`: `off`, no body is spliced. Chosen by measurement (issue 17:
/// `make bench`, and 4 and 16 MiB transfers, two builds turn about, Linux 6.18 on loopback):
/// through a 64 KiB pipe (std cannot enlarge it) a body costs three splices per 64 KiB
/// against one read and one write per 256 KiB, and took as much CPU or more (100 MiB: 70 ms
/// against 60 ms; 4 MiB: 2.3 ms against 1.8 ms) for the same throughput or less (1 MiB over
/// 16 connections: 0.89×; 100 MiB: 1.01×). Where copies cost more than system calls (a
/// real network card, a slower memory bus), set it, e.g. to 262144, and measure.
pub const SPLICE_THRESHOLD: u64 = u64::MAX;

/// Bytes moved per round: what a pipe holds by default (sixteen 4 KiB pages).
const ROUND: u64 = 64 * 1024;

/// `O_NONBLOCK` of Linux's `open(2)` (the same on every architecture Rust supports there).
const O_NONBLOCK: i32 = 0o4000;

/// Buffer for the copy used where no pipe can be had, in bytes.
const FALLBACK_BUFFER: usize = 64 * 1024;

/// Pipes open at once, over all connection threads (two file descriptors each, taken from
/// the open files kept aside for other things, `server::FD_RESERVE`); a thread that finds
/// them all taken copies through a buffer.
pub const MAX_PIPES: usize = 16;

/// Pipes open now. Invariant: at most `MAX_PIPES`, one per live `PipeSlot`.
static PIPES_OPEN: AtomicUsize = AtomicUsize::new(0);

/// The right to hold one of the `MAX_PIPES` pipes, given back when dropped.
struct PipeSlot;

impl PipeSlot {
    fn take() -> Option<PipeSlot> {
        let taken = PIPES_OPEN.fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
            (open < MAX_PIPES).then_some(open + 1)
        });
        taken.is_ok().then_some(PipeSlot)
    }
}

impl Drop for PipeSlot {
    fn drop(&mut self) {
        PIPES_OPEN.fetch_sub(1, Ordering::AcqRel);
    }
}

thread_local! {
    /// This thread's pipe, kept while the thread is parked between connections: `None`
    /// before the first large body, and after a round that may have left bytes in it.
    static PIPE: RefCell<Option<Pipe>> = const { RefCell::new(None) };
}

/// Both ends of one pipe, the write end non-blocking (see the module's notes).
struct Pipe {
    reader: PipeReader,
    writer: PipeWriter,
    _slot: PipeSlot,
}

impl Pipe {
    /// A new pipe, or `None` when `MAX_PIPES` are open or where splicing cannot be done
    /// safely (see the module's notes).
    fn open() -> Option<Pipe> {
        let slot = PipeSlot::take()?;
        let (reader, blocking) = io::pipe().ok()?;
        let path = format!("/proc/self/fd/{}", blocking.as_raw_fd());
        let file = OpenOptions::new()
            .write(true)
            .custom_flags(O_NONBLOCK)
            .open(path)
            .ok()?;
        let pipe = Pipe {
            reader,
            writer: PipeWriter::from(OwnedFd::from(file)),
            _slot: slot,
        };
        pipe.holds_a_round().then_some(pipe)
    }

    /// Whether a whole round fits: a pipe made smaller than the default (the user went over
    /// `pipe-user-pages-soft`) is refused. Checked once per pipe, written then read back.
    fn holds_a_round(&self) -> bool {
        let probe = [0u8; ROUND as usize];
        let Ok(n) = (&self.writer).write(&probe) else {
            return false;
        };
        let mut back = vec![0u8; n];
        (&self.reader).read_exact(&mut back).is_ok() && n as u64 == ROUND
    }
}

/// Moves exactly `len` bytes from `src` (sent by `from`) to `dst` (going to `to`), in the
/// kernel when this thread has a pipe, else through a buffer. `sent` counts the bytes `dst`
/// took, also when the move fails part-way.
///
/// # Errors
/// `src` ending early is `ParseError::UnexpectedEof` from `from`; a read failure or timeout
/// is blamed on `from`, a write failure or timeout on `to`.
pub fn relay(
    src: &TcpStream,
    dst: &TcpStream,
    len: u64,
    (from, to): (Side, Side),
    sent: &mut u64,
) -> Result<()> {
    let pipe = PIPE
        .with(|cell| cell.borrow_mut().take())
        .or_else(Pipe::open);
    let Some(pipe) = pipe else {
        return copy_plain(src, dst, len, (from, to), sent);
    };
    let mut left = len;
    while left > 0 {
        let moved = fill(&pipe, src, left.min(ROUND)).map_err(|e| e.blame(from));
        let moved = match moved {
            Ok(n) => n,
            Err(e) => {
                // What reached the pipe before the failure still goes out, in order.
                drain(&pipe, dst, e.moved, to, sent)?;
                return Err(e.error);
            }
        };
        drain(&pipe, dst, moved, to, sent)?;
        left -= moved;
    }
    PIPE.with(|cell| *cell.borrow_mut() = Some(pipe));
    Ok(())
}

/// A failed `fill`: the error, and the bytes that reached the pipe before it.
struct Failed {
    error: Error,
    moved: u64,
}

/// What `fill` saw, before the side is known.
struct FillError {
    error: io::Error,
    eof: bool,
    moved: u64,
}

impl FillError {
    fn blame(self, side: Side) -> Failed {
        let error = if self.eof {
            Error::Parse(side, ParseError::UnexpectedEof)
        } else {
            Error::Io(side, self.error)
        };
        Failed {
            error,
            moved: self.moved,
        }
    }
}

/// Splices up to `want` bytes from `src` into the empty pipe; returns how many arrived (at
/// least one). A full pipe ends the round early; the end of `src` or its timeout with
/// nothing moved is an error.
fn fill(pipe: &Pipe, src: &TcpStream, want: u64) -> std::result::Result<u64, FillError> {
    let mut take = src.take(want);
    let result = io::copy(&mut take, &mut &pipe.writer);
    let moved = want - take.limit();
    match result {
        Ok(_) if moved == want => Ok(moved),
        // `io::copy` stops short of its limit only at the end of the source.
        Ok(_) => Err(FillError {
            error: io::ErrorKind::UnexpectedEof.into(),
            eof: true,
            moved,
        }),
        // The pipe is full (the source's timeout moves nothing).
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && moved > 0 => Ok(moved),
        Err(error) => Err(FillError {
            error,
            eof: false,
            moved,
        }),
    }
}

/// Splices `n` bytes, all in the pipe, out to `dst`, and counts them in `sent`.
fn drain(pipe: &Pipe, dst: &TcpStream, n: u64, to: Side, sent: &mut u64) -> Result<()> {
    let mut take = (&pipe.reader).take(n);
    let result = io::copy(&mut take, &mut &*dst);
    *sent += n - take.limit();
    match result {
        Ok(_) if take.limit() == 0 => Ok(()),
        Ok(_) => Err(Error::Io(to, io::ErrorKind::UnexpectedEof.into())),
        Err(e) => Err(Error::Io(to, e)),
    }
}

/// The copy through a buffer where no pipe can be had: the same contract as `relay`.
fn copy_plain(
    mut src: &TcpStream,
    mut dst: &TcpStream,
    len: u64,
    (from, to): (Side, Side),
    sent: &mut u64,
) -> Result<()> {
    let mut buf = vec![0u8; FALLBACK_BUFFER];
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let n = match src.read(&mut buf[..want]) {
            Ok(0) => return Err(Error::Parse(from, ParseError::UnexpectedEof)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::Io(from, e)),
        };
        dst.write_all(&buf[..n]).map_err(|e| Error::Io(to, e))?;
        *sent += n as u64;
        left -= n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;
    use std::time::{Duration, Instant};

    /// Two connected sockets: (the end we hold, the peer's end).
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (theirs, _) = listener.accept().unwrap();
        (ours, theirs)
    }

    /// `len` bytes of a pattern that shows any byte out of place.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    /// Relays `body` from a sender thread (which writes it in `piece`-byte writes, pausing
    /// `pause` between them) to a reader thread; returns what the reader got and the result.
    fn relay_through(body: Vec<u8>, piece: usize, pause: Duration) -> (Vec<u8>, Result<()>, u64) {
        let (src, mut sender) = pair();
        let (dst, mut receiver) = pair();
        src.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let len = body.len() as u64;
        let writer = thread::spawn(move || {
            for part in body.chunks(piece) {
                sender.write_all(part).unwrap();
                thread::sleep(pause);
            }
        });
        let reader = thread::spawn(move || {
            let mut got = Vec::new();
            receiver.read_to_end(&mut got).unwrap();
            got
        });
        let mut sent = 0;
        let result = relay(&src, &dst, len, (Side::Backend, Side::Client), &mut sent);
        drop(dst);
        writer.join().unwrap();
        (reader.join().unwrap(), result, sent)
    }

    #[test]
    fn a_large_body_arrives_byte_exact_and_the_pipe_is_kept() {
        let body = pattern(3 * 1024 * 1024 + 17);
        let (got, result, sent) = relay_through(body.clone(), 1 << 20, Duration::ZERO);
        result.unwrap();
        assert_eq!(sent, body.len() as u64);
        assert!(got == body, "the bytes differ");
        assert!(
            PIPE.with(|p| p.borrow().is_some()),
            "kept for the next body"
        );
    }

    #[test]
    fn small_writes_with_pauses_fill_many_slots_and_still_arrive() {
        // 100-byte segments take one pipe slot each: the pipe fills long before ROUND.
        let body = pattern(300 * 1024);
        let (got, result, _) = relay_through(body.clone(), 100, Duration::from_micros(20));
        result.unwrap();
        assert!(got == body, "the bytes differ");
    }

    #[test]
    fn a_source_that_ends_early_is_an_unexpected_eof_after_what_it_sent() {
        let (src, mut sender) = pair();
        let (dst, mut receiver) = pair();
        sender.write_all(&pattern(100_000)).unwrap();
        drop(sender);
        let mut sent = 0;
        let result = relay(
            &src,
            &dst,
            1 << 20,
            (Side::Backend, Side::Client),
            &mut sent,
        );
        assert!(matches!(
            result,
            Err(Error::Parse(Side::Backend, ParseError::UnexpectedEof))
        ));
        assert_eq!(sent, 100_000, "what arrived was passed on");
        drop(dst);
        let mut got = Vec::new();
        receiver.read_to_end(&mut got).unwrap();
        assert!(got == pattern(100_000));
    }

    #[test]
    fn a_stalled_source_times_out_on_its_read_timeout() {
        let (src, mut sender) = pair();
        let (dst, _receiver) = pair();
        src.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        sender.write_all(&pattern(70_000)).unwrap();
        let started = Instant::now();
        let mut sent = 0;
        let result = relay(
            &src,
            &dst,
            1 << 20,
            (Side::Backend, Side::Client),
            &mut sent,
        );
        match result {
            Err(Error::Io(Side::Backend, e)) => assert!(crate::error::is_timeout(&e), "{e}"),
            other => panic!("expected a backend timeout, got {other:?}"),
        }
        assert_eq!(sent, 70_000);
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn a_stalled_destination_times_out_on_its_write_timeout() {
        let (src, mut sender) = pair();
        let (dst, _receiver) = pair(); // never reads
        dst.set_write_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let writer = thread::spawn(move || {
            let _ = sender.write_all(&pattern(64 << 20));
        });
        let mut sent = 0;
        let result = relay(
            &src,
            &dst,
            64 << 20,
            (Side::Backend, Side::Client),
            &mut sent,
        );
        match result {
            Err(Error::Io(Side::Client, e)) => assert!(crate::error::is_timeout(&e), "{e}"),
            other => panic!("expected a client timeout, got {other:?}"),
        }
        assert!(sent < 64 << 20);
        assert!(
            PIPE.with(|p| p.borrow().is_none()),
            "a failed round drops the pipe"
        );
        drop(src);
        writer.join().unwrap();
    }
}
