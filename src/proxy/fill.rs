//! Storing a response while relaying it, at the backend's pace, and serving the requests
//! that wait for it from the entry as it grows (steps 10 and 12 of the proxy when the
//! response is being stored).
//!
//! A cache fill used to run at its leader's client's pace: each piece of body went to the
//! client and to the entry in one go, so a 100 KB/s client leading the fill of a 50 MB URL
//! held the fill, and the 20 clients waiting for it, until `upstream_timeout` sent them all to
//! the backend. Now:
//! - the leader writes each piece to the entry first, then offers it to its own client
//!   without waiting (its socket is non-blocking during the fill). What the client cannot
//!   take yet stays in the entry's file and is read back as the client takes more; once the
//!   body is complete the rest is sent, waiting as usual. At most one piece is held in
//!   memory, so a slow client costs no more memory than a fast one.
//! - the requests that wait for the fill (the flight's followers) read the entry's file as
//!   it grows (Apache Traffic Server's "read-while-writer"), each at its own pace: the first
//!   byte reaches them as soon as it reaches the disk, never after the whole body.

use std::fs::File;
use std::io::{self, BufRead, Write};
use std::net::TcpStream;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::relay::{filter_response, start_response, Stamp};
use super::Sent;
use crate::cache::{self, EntryWriter, Flight, FlightGuard, Growing, Progress};
use crate::error::{Error, Result, Side};
use crate::http::body::{copy_body, read_through_buffer, response_framing, Framing};
use crate::http::serialize::ChunkedWriter;
use crate::http::{Request, Response};

/// Bytes read back from the entry's file at a time, for a client that fell behind or a
/// follower.
pub const READ_BACK: usize = 64 * 1024;
/// Most bytes of chunk framing around one piece: a size line of 16 hex digits, CRLF, and
/// the CRLF after the data.
const CHUNK_FRAMING: usize = 20;

/// Step 12 while storing: relays `body` (the backend's, already framed) to the client as
/// `chunked` or not, and writes it to `entry`, publishing its progress to the flight's
/// followers through `guard`. `head` is the client's response head, not yet sent.
///
/// # Errors
/// A backend failure mid-body (the client then gets what was read, and no complete-looking
/// end), or the client's failure when nothing is being stored any more.
pub(super) fn relay_and_store(
    client: &TcpStream,
    head: Vec<u8>,
    chunked: bool,
    body: &mut impl BufRead,
    entry: EntryWriter,
    guard: Option<&FlightGuard<'_>>,
    sent: &mut Sent,
) -> Result<()> {
    client
        .set_nonblocking(true)
        .map_err(|e| Error::Io(Side::Client, e))?;
    sent.head = true;
    let paced = Paced::new(client, head, chunked, &entry);
    let mut filler = Filler::new(entry, guard, paced);
    let copied = copy_body(body, &mut filler, Side::Backend, Side::Client, u64::MAX);
    filler.end(copied, sent)
}

/// A background refresh's step 12 (see `refresh`): the backend's `body` into `entry`, at the
/// backend's pace, its progress published to the flight's followers through `guard`, and
/// committed when whole. There is no client to relay to.
///
/// # Errors
/// The backend failed mid-body, or the entry gave up (a write failed, as on a full disk, or
/// the body outgrew `cache_max_object`): nothing is stored then, and the rest of the body,
/// which may be endless and which no client is waiting for, is not read (the connection is
/// not reused). The followers are told at once.
pub(super) fn store_body(
    body: &mut impl BufRead,
    entry: EntryWriter,
    guard: Option<&FlightGuard<'_>>,
) -> Result<()> {
    let fail = || {
        if let Some(guard) = guard {
            guard.fail();
        }
    };
    let mut storing = Storing { entry, guard };
    let copied = copy_body(body, &mut storing, Side::Backend, Side::Client, u64::MAX);
    let entry = storing.entry;
    if entry.is_abandoned() {
        fail();
        let why = "not stored (larger than cache_max_object, or a write failed): the rest of \
                   the body is not read";
        return Err(Error::Io(Side::Backend, io::Error::other(why)));
    }
    if let Err(e) = copied {
        fail();
        return Err(e);
    }
    let total = entry.body_len();
    match entry.commit() {
        Ok(()) => {
            if let Some(guard) = guard {
                guard.complete(total);
            }
        }
        Err(e) => {
            log::warn!("cache: response not stored: {e}");
            fail();
        }
    }
    Ok(())
}

/// The writer a background refresh copies the body into: the entry, and the news of each
/// piece to the flight's followers.
struct Storing<'a, 'g> {
    entry: EntryWriter,
    guard: Option<&'a FlightGuard<'g>>,
}

impl Write for Storing<'_, '_> {
    /// Takes each piece into the entry; once the entry has given up, fails, which ends the
    /// copy (see `store_body`).
    fn write(&mut self, piece: &[u8]) -> io::Result<usize> {
        let written = self
            .entry
            .write_all(piece)
            .and_then(|()| self.entry.flush());
        if let Err(e) = written {
            log::warn!("cache: cannot write the entry, not storing it: {e}");
        }
        if self.entry.is_abandoned() {
            return Err(io::Error::other("the cache entry gave up"));
        }
        if let Some(guard) = self.guard {
            guard.advance(self.entry.body_len());
        }
        Ok(piece.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The writer step 12 copies the backend's body into while storing: each piece goes to the
/// entry, then to the client at its own pace.
struct Filler<'a, 'g> {
    /// `None` once the entry is committed, given up, or was never there.
    entry: Option<EntryWriter>,
    guard: Option<&'a FlightGuard<'g>>,
    paced: Paced<'a>,
    /// Body bytes read from the backend.
    read: u64,
    /// Body bytes in the entry's file, readable by anyone who opened it.
    filled: u64,
}

impl<'a, 'g> Filler<'a, 'g> {
    fn new(entry: EntryWriter, guard: Option<&'a FlightGuard<'g>>, paced: Paced<'a>) -> Self {
        Filler {
            entry: Some(entry),
            guard,
            paced,
            read: 0,
            filled: 0,
        }
    }

    /// Writes `piece` to the entry and makes it readable; on failure the entry is dropped
    /// and its followers told.
    fn store(&mut self, piece: &[u8]) {
        let Some(entry) = self.entry.as_mut() else {
            return;
        };
        match entry.write_all(piece).and_then(|()| entry.flush()) {
            Ok(()) if !entry.is_abandoned() => {
                self.filled = entry.body_len();
                if let Some(guard) = self.guard {
                    guard.advance(self.filled);
                }
            }
            outcome => {
                if let Err(e) = outcome {
                    log::warn!("cache: cannot write the entry, not storing it: {e}");
                }
                self.entry = None;
                if let Some(guard) = self.guard {
                    guard.fail();
                }
            }
        }
    }

    /// After the copy: commits the entry when the body is whole, sends the client the rest,
    /// and says how it went.
    fn end(mut self, copied: Result<u64>, sent: &mut Sent) -> Result<()> {
        let complete = copied.is_ok();
        if let Some(entry) = self.entry.take() {
            let total = entry.body_len();
            let committed = if complete { entry.commit() } else { Ok(()) };
            match (complete, committed, self.guard) {
                (true, Ok(()), Some(guard)) => guard.complete(total),
                (true, Err(e), guard) => {
                    log::warn!("cache: response not stored: {e}");
                    if let Some(guard) = guard {
                        guard.fail();
                    }
                }
                (_, _, Some(guard)) => guard.fail(),
                _ => {}
            }
        }
        let finished = self.paced.finish(self.filled.max(self.read), complete);
        sent.bytes = self.paced.taken;
        copied?;
        finished.map_err(|e| Error::Io(Side::Client, e))
    }
}

impl Write for Filler<'_, '_> {
    fn write(&mut self, piece: &[u8]) -> io::Result<usize> {
        let at = self.read;
        self.read += piece.len() as u64;
        self.store(piece);
        if self.entry.is_some() {
            self.paced.offer(piece, at, self.filled);
        } else {
            // Nothing to read back from any more: the client takes it now, waiting as usual.
            self.paced.wait_from_now();
            self.paced.catch_up(self.filled.min(at));
            self.paced.offer(piece, at, at);
            if let Some(e) = self.paced.error.take() {
                return Err(e);
            }
        }
        Ok(piece.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The leader's client during a fill: offered each piece without waiting; what it cannot
/// take yet is read back from the entry's file later. Once `wait_from_now` is called (the
/// fill is over or was dropped), it is written to as any client is, waiting. A client that
/// keeps up costs no more system calls than a plain relay: the file is opened for reading
/// only when the client first falls behind.
struct Paced<'a> {
    socket: &'a TcpStream,
    chunked: bool,
    /// Bytes ready for the socket (the head, a framed piece), of which `pending_sent` went.
    pending: Vec<u8>,
    pending_sent: usize,
    /// Body bytes in `pending`.
    pending_body: u64,
    /// Body bytes put in `pending` so far (whether or not they have left).
    offered: u64,
    /// Body bytes the client has taken: those of every `pending` that left whole.
    taken: u64,
    /// The entry's file, to read back what the client could not take in time: opened when
    /// the client first falls behind (the entry is still being written then, under `path`).
    file: Option<File>,
    path: PathBuf,
    body_start: u64,
    /// Whether writes wait (the socket is blocking again).
    waiting: bool,
    /// The client's failure; the fill goes on without it.
    error: Option<io::Error>,
}

impl<'a> Paced<'a> {
    fn new(socket: &'a TcpStream, head: Vec<u8>, chunked: bool, entry: &EntryWriter) -> Self {
        Paced {
            socket,
            chunked,
            pending: head,
            pending_sent: 0,
            pending_body: 0,
            offered: 0,
            taken: 0,
            file: None,
            path: entry.temp_path().to_path_buf(),
            body_start: entry.body_start(),
            waiting: false,
            error: None,
        }
    }

    /// Offers the piece of body at offset `at`; the entry's file holds the body up to
    /// `filled`. Taken from memory when the client is keeping up (the first piece leaves
    /// with the head, in one write), else left in the file for later.
    fn offer(&mut self, piece: &[u8], at: u64, filled: u64) {
        if self.offered > 0 {
            self.push();
        }
        let keeping_up = self.offered == at && (self.pending.is_empty() || self.offered == 0);
        if keeping_up && self.error.is_none() {
            self.stage(piece);
            self.push();
        }
        self.catch_up(filled);
    }

    /// Reads back from the file what the client has not been offered, up to `filled`, as
    /// long as it takes it.
    fn catch_up(&mut self, filled: u64) {
        while self.error.is_none() && self.pending.is_empty() && self.offered < filled {
            let Some(file) = &self.file else { return };
            let want =
                usize::try_from(filled - self.offered).map_or(READ_BACK, |n| n.min(READ_BACK));
            let mut piece = vec![0u8; want];
            match file.read_exact_at(&mut piece, self.body_start + self.offered) {
                Ok(()) => self.stage(&piece),
                Err(e) => {
                    self.error = Some(e);
                    return;
                }
            }
            self.push();
        }
    }

    /// Puts `piece` in `pending`, framed as a chunk when the client gets chunks.
    fn stage(&mut self, piece: &[u8]) {
        if piece.is_empty() {
            return;
        }
        self.pending.reserve(piece.len() + CHUNK_FRAMING);
        if self.chunked {
            // Writing to a Vec cannot fail.
            let _ = write!(self.pending, "{:x}\r\n", piece.len());
        }
        self.pending.extend_from_slice(piece);
        if self.chunked {
            self.pending.extend_from_slice(b"\r\n");
        }
        self.offered += piece.len() as u64;
        self.pending_body += piece.len() as u64;
    }

    /// Writes what is pending, without waiting unless `waiting`.
    fn push(&mut self) {
        while self.error.is_none() && self.pending_sent < self.pending.len() {
            match self.socket_write() {
                Ok(0) => self.error = Some(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.pending_sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && !self.waiting => {
                    self.fall_behind();
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => self.error = Some(e),
            }
        }
        if self.pending_sent == self.pending.len() {
            self.pending.clear();
            self.pending_sent = 0;
            self.taken += self.pending_body;
            self.pending_body = 0;
        }
    }

    /// The client cannot take more now: what follows will be read back from the file, so
    /// it is opened while the entry is still being written.
    fn fall_behind(&mut self) {
        if self.file.is_none() {
            match File::open(&self.path) {
                Ok(file) => self.file = Some(file),
                // Without the file, the client waits on the fill: as a plain relay would.
                Err(_) => self.wait_from_now(),
            }
        }
    }

    fn socket_write(&self) -> io::Result<usize> {
        let mut socket = self.socket;
        socket.write(&self.pending[self.pending_sent..])
    }

    /// From now on, writes wait (as with any client): the socket goes back to blocking.
    fn wait_from_now(&mut self) {
        if self.waiting {
            return;
        }
        self.waiting = true;
        if let Err(e) = self.socket.set_nonblocking(false) {
            self.error.get_or_insert(e);
        }
    }

    /// Sends the client everything up to `filled` (reading back what it had not taken),
    /// then the last chunk when the body is `complete`; restores blocking writes.
    fn finish(&mut self, filled: u64, complete: bool) -> io::Result<()> {
        self.wait_from_now();
        self.push();
        self.catch_up(filled);
        if self.error.is_none() && complete && self.chunked {
            self.pending.extend_from_slice(b"0\r\n\r\n");
            self.push();
        }
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Step 12 for a follower of a flight whose leader is storing the response: the stored head,
/// then the body read from the entry's file as the leader writes it, at the backend's pace,
/// with `X-Cache: HIT` (the backend was not asked for it). `Ok(false)` when the file could
/// not be opened (the entry was committed or dropped meanwhile): look in the cache again.
///
/// # Errors
/// The fill failed or stalled past `wait` once the head was sent (the client then sees a
/// cut-short body), or the client went away.
pub(super) fn serve_growing(
    client: impl Write,
    request: &Request,
    following: &Following,
    wait: Duration,
    stamp: Stamp,
    sent: &mut Sent,
) -> Result<bool> {
    let Following { flight, growing } = following;
    let Ok(file) = File::open(&growing.path) else {
        return Ok(false);
    };
    let client_err = |e| Error::Io(Side::Client, e);
    let declared = match response_framing("GET", &growing.head) {
        Ok(Framing::Length(n)) => Framing::Length(n),
        Ok(Framing::Empty) => Framing::Empty,
        _ => Framing::Chunked,
    };
    let (head, framing) = if cache::not_modified(request, &growing.head) {
        (cache::not_modified_response(&growing.head), Framing::Empty)
    } else {
        (growing.head.clone(), declared)
    };
    let keep_alive = request.keep_alive();
    let (mut head, client_framing, keep_alive) = filter_response(
        head,
        request.version,
        framing,
        keep_alive,
        SystemTime::now(),
    );
    head.headers.set("Age", "0");
    stamp.apply(&mut head.headers);
    sent.status = Some(head.status);
    sent.keep_alive = keep_alive;
    let body_len = match client_framing {
        Framing::Length(n) => Some(n),
        Framing::Empty => Some(0),
        _ => None,
    };
    let mut out = start_response(client, &head, body_len, sent)?;
    out.flush().map_err(client_err)?;
    if body_len == Some(0) || request.method == "HEAD" {
        return Ok(true);
    }
    let reader = GrowingReader {
        file,
        body_start: growing.body_start,
        read: 0,
        flight,
        wait,
        buffer: Vec::new(),
        at: 0,
    };
    let mut reader = reader;
    let copied = if client_framing == Framing::Chunked {
        let mut chunked = ChunkedWriter::new(&mut out);
        let copied = copy_body(
            &mut reader,
            &mut chunked,
            Side::Backend,
            Side::Client,
            u64::MAX,
        );
        copied.and_then(|n| chunked.finish().map(|_| n).map_err(client_err))
    } else {
        copy_body(&mut reader, &mut out, Side::Backend, Side::Client, u64::MAX)
    };
    sent.bytes = reader.read;
    copied?;
    out.flush().map_err(client_err)?;
    Ok(true)
}

/// The body of a growing entry as a reader: reads the file up to what the leader has
/// written, waits (at most `wait` at a time) for more, and ends when the entry is complete.
struct GrowingReader<'a> {
    file: File,
    body_start: u64,
    /// Body bytes handed out so far (the position in the body).
    read: u64,
    flight: &'a Arc<Flight>,
    wait: Duration,
    /// Bytes read from the file and not handed out yet, from `at`.
    buffer: Vec<u8>,
    at: usize,
}

impl BufRead for GrowingReader<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.at == self.buffer.len() {
            let until = match self.flight.wait_for_bytes(self.read, self.wait) {
                Progress::Writing(n) | Progress::Complete(n) if n > self.read => n,
                Progress::Complete(_) => return Ok(&[]),
                Progress::Failed => return Err(cut_short("the response being stored failed")),
                Progress::Writing(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the response being stored stalled",
                    ))
                }
            };
            let want = usize::try_from(until - self.read).map_or(READ_BACK, |n| n.min(READ_BACK));
            self.buffer.resize(want, 0);
            self.file
                .read_exact_at(&mut self.buffer, self.body_start + self.read)?;
            self.at = 0;
        }
        Ok(&self.buffer[self.at..])
    }

    fn consume(&mut self, amt: usize) {
        self.at += amt;
        self.read += amt as u64;
    }
}

impl io::Read for GrowingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_through_buffer(self, buf)
    }
}

fn cut_short(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, why.to_string())
}

/// A request following a flight whose leader is storing the response: the flight (to wait
/// for more of the body) and the entry being written.
pub(super) struct Following {
    pub(super) flight: Arc<Flight>,
    pub(super) growing: Arc<Growing>,
}

/// The entry a flight's leader publishes: what followers need to read it while it grows.
/// `selected` is how the leader's request selects among the response's variants (RFC 9111
/// §4.1): a follower whose request selects another does not read it.
pub(super) fn growing(entry: &EntryWriter, stored: &Response, request: &Request) -> Growing {
    Growing {
        key: selecting_values(stored, request),
        path: entry.temp_path().to_path_buf(),
        head: stored.clone(),
        body_start: entry.body_start(),
    }
}

/// The values of the fields `response`'s Vary names, as `request` has them: equal for two
/// requests exactly when they select the same variant.
pub(super) fn selecting_values(response: &Response, request: &Request) -> String {
    let names = cache::vary_names(response).unwrap_or_default();
    cache::variant_key("", "", &names, request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Store;
    use crate::testing::TempDir;
    use std::io::Read;
    use std::net::TcpListener;
    use std::time::Instant;

    /// A connected pair on loopback: (the proxy's end, the client's end).
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        (server, client)
    }

    fn body(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn a_client_that_reads_nothing_does_not_hold_back_the_fill() {
        const LEN: usize = 48 << 20;
        let dir = TempDir::new("slow");
        let store = Store::new(&dir.path, 1 << 30, 1 << 30);
        let mut head = Response::new(200);
        head.headers.append("Content-Length", LEN.to_string());
        let entry = store.begin("k", &head).unwrap();
        let (proxy_end, mut client_end) = pair();
        let data = body(LEN);
        // The client reads only once the entry is complete on disk: more than any socket
        // buffer, so a fill that waited on the client would never get there.
        let reader = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            let path = dir.join(cache::entry_name("k"));
            while !path.exists() {
                assert!(Instant::now() < deadline, "the fill waited on the client");
                std::thread::sleep(Duration::from_millis(5));
            }
            let mut got = Vec::new();
            client_end.read_to_end(&mut got).unwrap();
            (got, dir)
        });
        let mut sent = Sent::default();
        let mut source = io::BufReader::with_capacity(256 * 1024, &data[..]);
        relay_and_store(
            &proxy_end,
            b"HEAD\r\n".to_vec(),
            false,
            &mut source,
            entry,
            None,
            &mut sent,
        )
        .unwrap();
        drop(proxy_end);
        let (got, _dir) = reader.join().unwrap();
        assert_eq!(sent.bytes, LEN as u64);
        assert!(got.starts_with(b"HEAD\r\n"));
        assert!(got[6..] == data[..], "the client got other bytes");
    }

    #[test]
    fn chunks_read_back_from_the_file_frame_the_same_body() {
        let dir = TempDir::new("chunked");
        let store = Store::new(&dir.path, 1 << 30, 1 << 30);
        let entry = store.begin("k", &Response::new(200)).unwrap();
        let (proxy_end, mut client_end) = pair();
        let data = body(40 << 20);
        // As above: the client reads once the entry is complete, so most of the body is read
        // back from the file, in chunks framed afresh.
        let path = dir.join(cache::entry_name("k"));
        let reader = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !path.exists() {
                assert!(Instant::now() < deadline, "the fill waited on the client");
                std::thread::sleep(Duration::from_millis(5));
            }
            let mut got = Vec::new();
            client_end.read_to_end(&mut got).unwrap();
            got
        });
        let mut sent = Sent::default();
        let mut source = io::BufReader::with_capacity(100_000, &data[..]);
        relay_and_store(
            &proxy_end,
            Vec::new(),
            true,
            &mut source,
            entry,
            None,
            &mut sent,
        )
        .unwrap();
        drop(proxy_end);
        let got = reader.join().unwrap();
        // Undo the chunking: size lines, data, CRLFs, and the last chunk.
        let mut rest = &got[..];
        let mut body_back = Vec::new();
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap(), 16).unwrap();
            rest = &rest[line_end + 2..];
            if size == 0 {
                assert_eq!(rest, b"\r\n");
                break;
            }
            body_back.extend_from_slice(&rest[..size]);
            assert_eq!(&rest[size..size + 2], b"\r\n");
            rest = &rest[size + 2..];
        }
        assert!(body_back == data, "the chunks hold other bytes");
        let stored = store.read("k").unwrap();
        assert_eq!(stored.body_len, data.len() as u64);
    }

    #[test]
    fn a_client_that_leaves_does_not_stop_the_fill() {
        let dir = TempDir::new("gone");
        let store = Store::new(&dir.path, 1 << 30, 1 << 30);
        let mut head = Response::new(200);
        head.headers.append("Content-Length", "1000000");
        let entry = store.begin("k", &head).unwrap();
        let (proxy_end, client_end) = pair();
        drop(client_end);
        let data = body(1_000_000);
        let mut source = io::BufReader::with_capacity(10_000, &data[..]);
        let mut sent = Sent::default();
        let result = relay_and_store(
            &proxy_end,
            b"HEAD\r\n".to_vec(),
            false,
            &mut source,
            entry,
            None,
            &mut sent,
        );
        assert!(
            matches!(result, Err(Error::Io(Side::Client, _))),
            "{result:?}"
        );
        let mut stored = store.read("k").unwrap();
        let mut body_back = Vec::new();
        stored.body().read_to_end(&mut body_back).unwrap();
        assert!(body_back == data, "the entry holds other bytes");
    }
}
