//! Message bodies: deciding how a body is framed (RFC 9112 §6), reading it back out of the
//! connection without ever reading past its end, and copying it with bounded memory.
//!
//! A body is framed by Content-Length, by the chunked coding, or (responses only) by the
//! sender closing the connection. Getting this decision exactly right is what keeps a proxy
//! safe from request smuggling: when two parsers disagree on where a body ends, the bytes
//! after it become a second, hidden request. So every ambiguous case is an error here, and
//! the proxy always re-frames what it forwards (see `proxy`).

use std::io::{self, BufRead, Read, Write};

use super::{Request, Response, Version};
use crate::error::{Error, ParseError, Result, Side};

/// Longest chunk-size line (size plus extensions), in bytes.
pub const MAX_CHUNK_LINE: usize = 4 * 1024;
/// Largest trailer section, in bytes; trailers are read and discarded.
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// Size of the buffers that move body bytes from one side to the other (the connections'
/// read buffers; the client's output).
pub const COPY_BUFFER: usize = 64 * 1024;

/// How a message body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body at all.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// The chunked transfer coding.
    Chunked,
    /// Everything until the sender closes the connection (responses only).
    Close,
}

/// How a request's body is framed (RFC 9112 §6.1, §6.3).
///
/// # Errors
/// - Content-Length with Transfer-Encoding: `LengthWithTransferEncoding` (400; the
///   connection must be closed).
/// - Transfer-Encoding on HTTP/1.0, `chunked` twice or not last: `BadTransferEncoding` (400).
/// - Any coding other than a single `chunked`: `UnsupportedTransferEncoding` (501).
/// - A bad Content-Length: `BadContentLength` (400).
pub fn request_framing(req: &Request) -> std::result::Result<Framing, ParseError> {
    let headers = &req.headers;
    if headers.contains("transfer-encoding") {
        // §6.1: "A server MAY reject a request that contains both Content-Length and
        // Transfer-Encoding or process such a request in accordance with the
        // Transfer-Encoding alone." Rejecting is the safe choice for a proxy.
        if headers.contains("content-length") {
            return Err(ParseError::LengthWithTransferEncoding);
        }
        // §6.1: a server that receives Transfer-Encoding in an HTTP/1.0 request MUST treat
        // it as faulty framing and close the connection.
        if req.version == Version::Http10 {
            return Err(ParseError::BadTransferEncoding);
        }
        let codings: Vec<&str> = headers.list("transfer-encoding").collect();
        let chunked = codings
            .iter()
            .filter(|c| c.eq_ignore_ascii_case("chunked"))
            .count();
        return match (codings.as_slice(), chunked) {
            ([only], 1) if only.eq_ignore_ascii_case("chunked") => Ok(Framing::Chunked),
            (_, 0) if !codings.is_empty() => Err(ParseError::UnsupportedTransferEncoding),
            ([.., last], 1) if last.eq_ignore_ascii_case("chunked") => {
                Err(ParseError::UnsupportedTransferEncoding)
            }
            _ => Err(ParseError::BadTransferEncoding),
        };
    }
    match content_length(req.headers.get_all("content-length"))? {
        Some(n) => Ok(Framing::Length(n)),
        None => Ok(Framing::Empty),
    }
}

/// How a response to a request with `method` is framed (RFC 9112 §6.3).
///
/// # Errors
/// A bad Content-Length or a repeated `chunked` is a `ParseError` (502 from a backend).
pub fn response_framing(method: &str, resp: &Response) -> std::result::Result<Framing, ParseError> {
    // §6.3 rule 1: HEAD responses, 1xx, 204 and 304 end at the end of the header section.
    if method == "HEAD" || resp.is_interim() || resp.status == 204 || resp.status == 304 {
        return Ok(Framing::Empty);
    }
    let headers = &resp.headers;
    if headers.contains("transfer-encoding") {
        // §6.3 rule 3: chunked as the final coding wins over any Content-Length; any other
        // final coding means the body runs until the connection closes.
        let codings: Vec<&str> = headers.list("transfer-encoding").collect();
        let chunked = codings
            .iter()
            .filter(|c| c.eq_ignore_ascii_case("chunked"))
            .count();
        return match codings.last() {
            Some(last) if last.eq_ignore_ascii_case("chunked") && chunked == 1 => {
                Ok(Framing::Chunked)
            }
            _ if chunked > 0 => Err(ParseError::BadTransferEncoding),
            _ => Ok(Framing::Close),
        };
    }
    match content_length(headers.get_all("content-length"))? {
        Some(n) => Ok(Framing::Length(n)),
        None => Ok(Framing::Close),
    }
}

/// `Content-Length = 1*DIGIT` (RFC 9110 §8.6). Several fields, or a list, are accepted only
/// when every value is the same number (RFC 9112 §6.3 rule 5).
fn content_length<'a>(
    values: impl Iterator<Item = &'a str>,
) -> std::result::Result<Option<u64>, ParseError> {
    let mut length = None;
    for value in values.flat_map(|v| v.split(',')) {
        let digits = value.trim_matches([' ', '\t']);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::BadContentLength);
        }
        let n: u64 = digits.parse().map_err(|_| ParseError::BadContentLength)?;
        match length {
            Some(previous) if previous != n => return Err(ParseError::BadContentLength),
            _ => length = Some(n),
        }
    }
    Ok(length)
}

/// Reads exactly one body out of a connection and stops at its end, leaving whatever
/// follows (the next request on a keep-alive connection) unread.
///
/// A read error whose cause is a framing problem carries a `ParseError` (see
/// `framing_error`); a body cut short is `ParseError::UnexpectedEof`, never a silent EOF.
pub struct BodyReader<R> {
    inner: R,
    state: State,
}

/// How far a `BodyReader` got; see `BodyReader::progress`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyProgress(State);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Content-Length framing with this many bytes left.
    Length(u64),
    /// Expecting a chunk-size line.
    ChunkSize,
    /// Inside chunk data with this many bytes left.
    ChunkData(u64),
    /// Expecting the CRLF after chunk data.
    ChunkEnd,
    /// Expecting trailer fields or the final CRLF.
    Trailers,
    /// Reading until the peer closes.
    UntilClose,
    /// The body is complete.
    Done,
}

impl<R: BufRead> BodyReader<R> {
    /// A reader for a body framed as `framing`, reading from `inner`.
    pub fn new(inner: R, framing: Framing) -> Self {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::ChunkSize,
            Framing::Close => State::UntilClose,
        };
        BodyReader { inner, state }
    }

    /// Whether the whole body has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Gives the inner reader back.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The inner reader, to reach the stream beneath it.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Bytes left in the chunk whose data the reader stands in, if it does.
    pub fn chunk_left(&self) -> Option<u64> {
        match self.state {
            State::ChunkData(left) => Some(left),
            _ => None,
        }
    }

    /// Notes that `n` bytes of the current chunk's data (at most `chunk_left`) were taken
    /// from the stream beneath this reader directly, its buffer being empty (the proxy
    /// splices large chunks): reading goes on after them.
    pub fn skip_chunk_data(&mut self, n: u64) {
        if let State::ChunkData(left) = self.state {
            let left = left.saturating_sub(n);
            self.state = if left == 0 {
                State::ChunkEnd
            } else {
                State::ChunkData(left)
            };
        }
    }

    /// Where reading stands, to go on later with `resume` (the proxy reads the start of a
    /// body, then streams the rest).
    pub fn progress(&self) -> BodyProgress {
        BodyProgress(self.state)
    }

    /// A reader that goes on from `progress` with `inner` (the same stream as before).
    pub fn resume(inner: R, progress: BodyProgress) -> Self {
        BodyReader {
            inner,
            state: progress.0,
        }
    }

    fn read_chunk_size(&mut self) -> io::Result<()> {
        let line = read_crlf_line(&mut self.inner, MAX_CHUNK_LINE)?;
        let size = parse_chunk_size(&line).map_err(framing_error)?;
        self.state = if size == 0 {
            State::Trailers
        } else {
            State::ChunkData(size)
        };
        Ok(())
    }

    fn read_trailers(&mut self) -> io::Result<()> {
        let mut budget = MAX_TRAILER_BYTES;
        loop {
            let line = read_crlf_line(&mut self.inner, budget)?;
            if line.is_empty() {
                self.state = State::Done;
                return Ok(());
            }
            budget -= line.len();
        }
    }
}

impl<R: BufRead> BodyReader<R> {
    /// Reads framing (chunk-size lines, chunk ends, trailers) until the reader stands at body
    /// bytes, or at the end.
    fn advance(&mut self) -> io::Result<()> {
        loop {
            match self.state {
                State::ChunkSize => self.read_chunk_size()?,
                State::ChunkEnd => {
                    // RFC 9112 §7.1: chunk-data is followed by exactly CRLF.
                    if !read_crlf_line(&mut self.inner, 0)?.is_empty() {
                        return Err(framing_error(ParseError::BadChunk));
                    }
                    self.state = State::ChunkSize;
                }
                State::Trailers => self.read_trailers()?,
                State::Length(_) | State::ChunkData(_) | State::UntilClose | State::Done => {
                    return Ok(())
                }
            }
        }
    }
}

/// Body bytes are handed out straight from the connection's own buffer, so copying a body
/// needs no buffer of its own.
impl<R: BufRead> BufRead for BodyReader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.advance()?;
        let left = match self.state {
            State::Length(left) | State::ChunkData(left) => left,
            State::UntilClose => return self.inner.fill_buf(),
            _ => return Ok(&[]),
        };
        let available = self.inner.fill_buf()?;
        if available.is_empty() {
            return Err(framing_error(ParseError::UnexpectedEof));
        }
        let n = usize::try_from(left)
            .unwrap_or(usize::MAX)
            .min(available.len());
        Ok(&available[..n])
    }

    fn consume(&mut self, amt: usize) {
        self.inner.consume(amt);
        let used = amt as u64;
        self.state = match self.state {
            State::Length(left) if left <= used => State::Done,
            State::Length(left) => State::Length(left - used),
            State::ChunkData(left) if left <= used => State::ChunkEnd,
            State::ChunkData(left) => State::ChunkData(left - used),
            other => other,
        };
    }
}

impl<R: BufRead> Read for BodyReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        read_through_buffer(self, buf)
    }
}

/// `Read::read` for a reader whose `BufRead` side does the work (every `BufRead` must also
/// be `Read`): copies what `fill_buf` offers and consumes it.
///
/// # Errors
/// What `fill_buf` returns.
pub fn read_through_buffer(reader: &mut impl BufRead, buf: &mut [u8]) -> io::Result<usize> {
    let available = reader.fill_buf()?;
    let n = available.len().min(buf.len());
    buf[..n].copy_from_slice(&available[..n]);
    reader.consume(n);
    Ok(n)
}

/// Wraps a `ParseError` in an `io::Error`, so `Read` implementations can report one.
pub fn framing_error(e: ParseError) -> io::Error {
    let kind = match e {
        ParseError::UnexpectedEof => io::ErrorKind::UnexpectedEof,
        _ => io::ErrorKind::InvalidData,
    };
    io::Error::new(kind, e)
}

/// Turns an error from reading a body sent by `side` into an `Error`, recovering the
/// `ParseError` put there by `framing_error`.
pub fn read_error(side: Side, e: io::Error) -> Error {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<ParseError>())
    {
        Some(parse) => Error::Parse(side, *parse),
        None => Error::Io(side, e),
    }
}

/// Reads a line that must end in CRLF (chunk lines allow no bare LF: being strict here is
/// what keeps two parsers from disagreeing on where a chunk ends). Content over `max` bytes
/// is `BadChunk`.
fn read_crlf_line(r: &mut impl BufRead, max: usize) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    loop {
        let available = r.fill_buf()?;
        if available.is_empty() {
            return Err(framing_error(ParseError::UnexpectedEof));
        }
        let (chunk, found) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        if line.len() + chunk.len() > max + 2 {
            return Err(framing_error(ParseError::BadChunk));
        }
        line.extend_from_slice(chunk);
        let used = chunk.len();
        r.consume(used);
        if found {
            line.pop();
            if line.pop() != Some(b'\r') || line.contains(&b'\r') {
                return Err(framing_error(ParseError::BadChunk));
            }
            return Ok(line);
        }
    }
}

/// ```text
/// chunk-size = 1*HEXDIG
/// chunk-ext  = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
/// ```
/// (RFC 9112 §7.1.1). Extensions are checked for stray bytes and then ignored: the proxy
/// re-frames bodies and never forwards them.
fn parse_chunk_size(line: &[u8]) -> std::result::Result<u64, ParseError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(ParseError::BadChunk);
    }
    let hex = std::str::from_utf8(&line[..digits]).map_err(|_| ParseError::BadChunk)?;
    let size = u64::from_str_radix(hex, 16).map_err(|_| ParseError::BadChunk)?;
    let ext = &line[digits..];
    let ext_start = ext.iter().position(|&b| b != b' ' && b != b'\t');
    match ext_start {
        None if ext.is_empty() => Ok(size),
        Some(i) if ext[i] == b';' && ext_is_clean(&ext[i + 1..]) => Ok(size),
        _ => Err(ParseError::BadChunk),
    }
}

/// Chunk extensions hold tokens, `=`, quoted strings and whitespace: no control bytes, and
/// something after every `;`.
fn ext_is_clean(ext: &[u8]) -> bool {
    let printable = ext
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80);
    let names_present = ext
        .split(|&b| b == b';')
        .all(|part| part.iter().any(|&b| b != b' ' && b != b'\t'));
    printable && names_present
}

/// Copies a whole body from `src` (sent by `from`) to `dst` (going to `to`), straight out
/// of the reader's own buffer. More than `limit` bytes is `BodyTooLarge`.
///
/// `dst` is flushed after every piece read: whatever arrived reaches the other side before
/// the next read, which may wait (a server sending events, a client uploading slowly). A
/// buffered `dst` still gathers what one piece writes (a chunk's size line, data and CRLF)
/// into one system call.
///
/// # Errors
/// Read failures are blamed on `from`, write failures on `to`.
pub fn copy_body(
    src: &mut impl BufRead,
    dst: &mut impl Write,
    from: Side,
    to: Side,
    limit: u64,
) -> Result<u64> {
    let mut total: u64 = 0;
    loop {
        let available = match src.fill_buf() {
            Ok([]) => return Ok(total),
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(from, e)),
        };
        let n = available.len();
        total += n as u64;
        if total > limit {
            return Err(Error::Parse(from, ParseError::BodyTooLarge));
        }
        dst.write_all(available)
            .and_then(|()| dst.flush())
            .map_err(|e| Error::Io(to, e))?;
        src.consume(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse::{read_request, read_response, Limits};

    fn req(head: &str) -> Request {
        read_request(&mut head.as_bytes(), &Limits::default())
            .unwrap()
            .unwrap()
    }

    fn resp(head: &str) -> Response {
        read_response(&mut head.as_bytes(), &Limits::default()).unwrap()
    }

    #[test]
    fn chunk_data_taken_beneath_the_reader_is_skipped() {
        // A 10-byte chunk of which the reader sees 4; the other 6 were taken elsewhere.
        let wire: &[u8] = b"a\r\nabcd\r\n3\r\nxyz\r\n0\r\n\r\n";
        let (first, rest) = wire.split_at(7);
        let mut r = BodyReader::new(first, Framing::Chunked);
        assert_eq!(r.fill_buf().unwrap(), b"abcd");
        assert_eq!(r.chunk_left(), Some(10));
        r.consume(4);
        let mut r = BodyReader::resume(rest, r.progress());
        r.skip_chunk_data(6);
        assert_eq!(r.chunk_left(), None);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"xyz");
        assert!(r.is_done());
    }

    fn read_all(bytes: &[u8], framing: Framing) -> std::result::Result<Vec<u8>, ParseError> {
        let mut out = Vec::new();
        let mut r = BodyReader::new(bytes, framing);
        match r.read_to_end(&mut out) {
            Ok(_) => Ok(out),
            Err(e) => match read_error(Side::Client, e) {
                Error::Parse(_, p) => Err(p),
                other => panic!("unexpected {other:?}"),
            },
        }
    }

    #[test]
    fn request_framing_follows_rfc_9112_section_6() {
        let h = "GET / HTTP/1.1\r\nHost: a\r\n";
        assert_eq!(
            request_framing(&req(&format!("{h}\r\n"))),
            Ok(Framing::Empty)
        );
        assert_eq!(
            request_framing(&req(&format!("{h}Content-Length: 5\r\n\r\n"))),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            request_framing(&req(&format!(
                "{h}Content-Length: 5, 5\r\nContent-Length: 5\r\n\r\n"
            ))),
            Ok(Framing::Length(5))
        );
        assert_eq!(
            request_framing(&req(&format!("{h}Transfer-Encoding: Chunked\r\n\r\n"))),
            Ok(Framing::Chunked)
        );
    }

    #[test]
    fn ambiguous_request_framing_is_rejected() {
        let h = "POST / HTTP/1.1\r\nHost: a\r\n";
        let cases = [
            (
                "Content-Length: 5\r\nTransfer-Encoding: chunked",
                ParseError::LengthWithTransferEncoding,
            ),
            (
                "Content-Length: 5\r\nContent-Length: 6",
                ParseError::BadContentLength,
            ),
            ("Content-Length: 5, 6", ParseError::BadContentLength),
            ("Content-Length: -1", ParseError::BadContentLength),
            ("Content-Length: +5", ParseError::BadContentLength),
            ("Content-Length: 0x10", ParseError::BadContentLength),
            (
                "Content-Length: 99999999999999999999",
                ParseError::BadContentLength,
            ),
            ("Content-Length: ", ParseError::BadContentLength),
            (
                "Transfer-Encoding: chunked, chunked",
                ParseError::BadTransferEncoding,
            ),
            (
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
                ParseError::BadTransferEncoding,
            ),
            (
                "Transfer-Encoding: chunked, gzip",
                ParseError::BadTransferEncoding,
            ),
            (
                "Transfer-Encoding: gzip",
                ParseError::UnsupportedTransferEncoding,
            ),
            (
                "Transfer-Encoding: gzip, chunked",
                ParseError::UnsupportedTransferEncoding,
            ),
            (
                "Transfer-Encoding: chunkedx",
                ParseError::UnsupportedTransferEncoding,
            ),
            ("Transfer-Encoding: ,", ParseError::BadTransferEncoding),
        ];
        for (fields, expected) in cases {
            let r = req(&format!("{h}{fields}\r\n\r\n"));
            assert_eq!(request_framing(&r), Err(expected), "{fields}");
        }
        let old = req("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(request_framing(&old), Err(ParseError::BadTransferEncoding));
    }

    #[test]
    fn response_framing_follows_rfc_9112_section_6_3() {
        let ok = resp("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n");
        assert_eq!(response_framing("GET", &ok), Ok(Framing::Length(10)));
        assert_eq!(response_framing("HEAD", &ok), Ok(Framing::Empty));
        for status in ["204 No Content", "304 Not Modified", "103 Early Hints"] {
            let r = resp(&format!("HTTP/1.1 {status}\r\nContent-Length: 10\r\n\r\n"));
            assert_eq!(response_framing("GET", &r), Ok(Framing::Empty), "{status}");
        }
        let both =
            resp("HTTP/1.1 200 OK\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(response_framing("GET", &both), Ok(Framing::Chunked));
        let gzip = resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n");
        assert_eq!(response_framing("GET", &gzip), Ok(Framing::Close));
        let none = resp("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(response_framing("GET", &none), Ok(Framing::Close));
        let bad = resp("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
        assert_eq!(
            response_framing("GET", &bad),
            Err(ParseError::BadContentLength)
        );
    }

    #[test]
    fn length_framing_stops_at_the_end_and_detects_truncation() {
        let mut src: &[u8] = b"helloNEXT";
        let mut body = String::new();
        BodyReader::new(&mut src, Framing::Length(5))
            .read_to_string(&mut body)
            .unwrap();
        assert_eq!((body.as_str(), src), ("hello", &b"NEXT"[..]));
        assert_eq!(
            read_all(b"hel", Framing::Length(5)),
            Err(ParseError::UnexpectedEof)
        );
    }

    #[test]
    fn chunked_bodies_are_decoded_and_stop_at_their_end() {
        let mut src: &[u8] =
            b"5\r\nhello\r\n6;name=\"v\"\r\n world\r\n0\r\nX-Trailer: t\r\n\r\nNEXT";
        let mut body = String::new();
        BodyReader::new(&mut src, Framing::Chunked)
            .read_to_string(&mut body)
            .unwrap();
        assert_eq!((body.as_str(), src), ("hello world", &b"NEXT"[..]));
        assert_eq!(
            read_all(b"A\r\n0123456789\r\n000\r\n\r\n", Framing::Chunked).unwrap(),
            b"0123456789"
        );
    }

    #[test]
    fn malformed_chunked_bodies_are_rejected() {
        let cases: [&[u8]; 11] = [
            b"5\r\nhelloXX0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"zz\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"\r\n",
            b"5 ;\r\nhello\r\n0\r\n\r\n",
            b"5;a\x00\r\nhello\r\n0\r\n\r\n",
            b"5 x\r\nhello\r\n0\r\n\r\n",
            b"10000000000000000\r\n",
            b"0\r\n\r",
        ];
        for case in cases {
            assert!(read_all(case, Framing::Chunked).is_err(), "{case:?}");
        }
        assert_eq!(
            read_all(b"5\r\nhel", Framing::Chunked),
            Err(ParseError::UnexpectedEof)
        );
    }

    #[test]
    fn a_body_can_be_read_in_two_goes() {
        let mut src: &[u8] = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT";
        let mut first = [0u8; 7];
        let mut reader = BodyReader::new(&mut src, Framing::Chunked);
        reader.read_exact(&mut first).unwrap();
        let progress = reader.progress();
        let mut rest = String::new();
        BodyReader::resume(&mut src, progress)
            .read_to_string(&mut rest)
            .unwrap();
        assert_eq!(
            (&first[..], rest.as_str(), src),
            (&b"hello w"[..], "orld", &b"NEXT"[..])
        );
    }

    #[test]
    fn close_framing_reads_to_eof() {
        assert_eq!(
            read_all(b"all of it", Framing::Close).unwrap(),
            b"all of it"
        );
        assert_eq!(read_all(b"ignored", Framing::Empty).unwrap(), b"");
    }

    /// A writer that records what it holds at each flush.
    #[derive(Default)]
    struct Flushes {
        pending: Vec<u8>,
        flushed: Vec<Vec<u8>>,
    }

    impl Write for Flushes {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.pending.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            self.flushed.push(std::mem::take(&mut self.pending));
            Ok(())
        }
    }

    #[test]
    fn copy_body_flushes_every_piece_before_reading_the_next() {
        // A reader that hands out two pieces, as two reads from a socket would.
        let pieces = io::Cursor::new(b"data: 1\n\n".to_vec()).chain(&b"data: 2\n\n"[..]);
        let mut src = io::BufReader::with_capacity(64, pieces);
        let mut out = Flushes::default();
        copy_body(&mut src, &mut out, Side::Backend, Side::Client, 100).unwrap();
        assert_eq!(
            out.flushed,
            [b"data: 1\n\n".to_vec(), b"data: 2\n\n".to_vec()]
        );
    }

    #[test]
    fn copy_body_enforces_its_limit() {
        let mut out = Vec::new();
        let n = copy_body(&mut &b"12345"[..], &mut out, Side::Client, Side::Backend, 5).unwrap();
        assert_eq!((n, out.as_slice()), (5, &b"12345"[..]));
        let err = copy_body(
            &mut &b"123456"[..],
            &mut Vec::new(),
            Side::Client,
            Side::Backend,
            5,
        )
        .unwrap_err();
        assert_eq!(err.status(), Some(413));
    }
}
