//! Writing request and response heads to any `impl Write`, always with CRLF line endings
//! (RFC 9112 §2.1), and the chunked transfer coding for bodies (RFC 9112 §7.1).
//!
//! Heads are assembled in memory and handed to the writer in one `write_all`, so a head
//! never leaves in several small TCP segments. Field values are written back byte for byte
//! (see `http` on ISO-8859-1 strings). This module decides nothing about which fields to
//! send: `proxy` and the servers do that.

use std::io::{self, IoSlice, Write};

use super::{Headers, Request, Response};

/// Writes `method SP target SP version CRLF`, the fields and the empty line.
///
/// # Errors
/// Whatever the writer returns.
pub fn write_request_head(w: &mut impl Write, req: &Request) -> io::Result<()> {
    w.write_all(&request_head_with_room(req, 0))
}

/// The bytes of a request head, with room for `extra` more (a small body sent in the same
/// write).
pub fn request_head_with_room(req: &Request, extra: usize) -> Vec<u8> {
    let line = req.method.len() + req.target.len() + 12;
    let mut head = Vec::with_capacity(line + req.headers.wire_len() + extra);
    push_chars_as_bytes(&mut head, &req.method);
    head.push(b' ');
    push_chars_as_bytes(&mut head, &req.target);
    head.push(b' ');
    head.extend_from_slice(req.version.as_str().as_bytes());
    head.extend_from_slice(b"\r\n");
    push_fields(&mut head, &req.headers);
    head
}

/// Writes `version SP status SP reason CRLF`, the fields and the empty line.
///
/// # Errors
/// Whatever the writer returns.
pub fn write_response_head(w: &mut impl Write, resp: &Response) -> io::Result<()> {
    w.write_all(&response_head_bytes(resp))
}

/// The bytes of a response head, for callers that want to add body bytes to the same write.
pub fn response_head_bytes(resp: &Response) -> Vec<u8> {
    response_head_with_room(resp, 0)
}

/// The bytes of a response head, with room for `extra` more (body bytes sent in the same
/// write).
pub fn response_head_with_room(resp: &Response, extra: usize) -> Vec<u8> {
    let line = resp.reason.len() + 15;
    let mut head = Vec::with_capacity(line + resp.headers.wire_len() + extra);
    head.extend_from_slice(resp.version.as_str().as_bytes());
    head.push(b' ');
    // Parsed statuses are three digits (RFC 9110 §15); ours are constants.
    debug_assert!((100..=999).contains(&resp.status), "status {}", resp.status);
    let status = resp.status.min(999);
    head.extend_from_slice(&[
        b'0' + (status / 100) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ]);
    head.push(b' ');
    push_chars_as_bytes(&mut head, &resp.reason);
    head.extend_from_slice(b"\r\n");
    push_fields(&mut head, &resp.headers);
    head
}

fn push_fields(head: &mut Vec<u8>, headers: &Headers) {
    for (name, value) in headers.iter() {
        push_chars_as_bytes(head, name);
        head.extend_from_slice(b": ");
        push_chars_as_bytes(head, value);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
}

/// Appends a string of one char per byte as those bytes. A char above U+00FF cannot come
/// from the parser; one put there by code is written as `?` rather than as several bytes.
fn push_chars_as_bytes(out: &mut Vec<u8>, s: &str) {
    if s.is_ascii() {
        out.extend_from_slice(s.as_bytes());
    } else {
        out.extend(
            s.chars()
                .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?')),
        );
    }
}

/// Encodes everything written to it with the chunked transfer coding (RFC 9112 §7.1):
///
/// ```text
/// chunked-body = *chunk last-chunk trailer-section CRLF
/// chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
/// last-chunk   = 1*("0") [ chunk-ext ] CRLF
/// ```
///
/// Each `write` becomes one chunk; `finish` writes the last chunk and an empty trailer
/// section. Dropping it without `finish` leaves the body visibly incomplete, which is what a
/// relay must do when its source fails mid-body.
pub struct ChunkedWriter<W: Write> {
    inner: W,
}

impl<W: Write> ChunkedWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        ChunkedWriter { inner }
    }

    /// Writes the last chunk and returns the inner writer.
    ///
    /// # Errors
    /// Whatever the inner writer returns.
    pub fn finish(mut self) -> io::Result<W> {
        self.inner.write_all(b"0\r\n\r\n")?;
        Ok(self.inner)
    }

    /// Starts a chunk of `len` bytes, of which only `first` are written here: the caller
    /// sends the other `len - first.len()` bytes past this writer (spliced), then calls
    /// `end_chunk`. `len` must not be zero (that is the last chunk).
    ///
    /// # Errors
    /// Whatever the inner writer returns.
    pub fn start_chunk(&mut self, len: u64, first: &[u8]) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        let mut size = [0u8; CHUNK_SIZE_LINE];
        let size = chunk_size_line(len, &mut size);
        write_all_parts(&mut self.inner, &[size, first])
    }

    /// Ends a chunk begun with `start_chunk`, once all its bytes were sent.
    ///
    /// # Errors
    /// Whatever the inner writer returns.
    pub fn end_chunk(&mut self) -> io::Result<()> {
        self.inner.write_all(b"\r\n")
    }
}

impl<W: Write> Write for ChunkedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    /// One chunk: its size line, the data and the CRLF go to `inner` in one vectored write
    /// (a buffered `inner` then sends a large chunk in one system call, not three).
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if buf.is_empty() {
            // An empty chunk would be the last-chunk: never write one by accident.
            return Ok(());
        }
        let mut size = [0u8; CHUNK_SIZE_LINE];
        let size = chunk_size_line(buf.len(), &mut size);
        write_all_parts(&mut self.inner, &[size, buf, b"\r\n"])
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Room for a chunk-size line: 16 hex digits (a `u64`) and CRLF.
const CHUNK_SIZE_LINE: usize = 18;

/// `len` in hex followed by CRLF, written into `buf`; returns the part used.
fn chunk_size_line(len: usize, buf: &mut [u8; CHUNK_SIZE_LINE]) -> &[u8] {
    let mut at = CHUNK_SIZE_LINE - 2;
    buf[at..].copy_from_slice(b"\r\n");
    let mut n = len;
    loop {
        at -= 1;
        buf[at] = b"0123456789abcdef"[n % 16];
        n /= 16;
        if n == 0 {
            break;
        }
    }
    &buf[at..]
}

/// Writes every part, in order, with as few `write_vectored` calls as the writer allows.
fn write_all_parts(w: &mut impl Write, parts: &[&[u8]]) -> io::Result<()> {
    let mut written =
        w.write_vectored(&parts.iter().map(|p| IoSlice::new(p)).collect::<Vec<_>>())?;
    for part in parts {
        if written >= part.len() {
            written -= part.len();
            continue;
        }
        w.write_all(&part[written..])?;
        written = 0;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse::{read_request, read_response, Limits};

    #[test]
    fn writes_a_request_head_with_crlf() {
        let mut req = Request::new("GET", "/a?b");
        req.headers.append("Host", "example.com");
        req.headers.append("X-Empty", "");
        let mut out = Vec::new();
        write_request_head(&mut out, &req).unwrap();
        assert_eq!(
            out,
            b"GET /a?b HTTP/1.1\r\nHost: example.com\r\nX-Empty: \r\n\r\n".to_vec()
        );
    }

    #[test]
    fn writes_a_response_head() {
        let mut resp = Response::new(404);
        resp.headers.append("Content-Length", "0");
        let mut out = Vec::new();
        write_response_head(&mut out, &resp).unwrap();
        assert_eq!(
            out,
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec()
        );
    }

    #[test]
    fn non_ascii_bytes_survive_a_round_trip() {
        let raw = b"HTTP/1.1 200 Gr\xfc\xdfe\r\nX-Name: caf\xe9\r\n\r\n";
        let resp = read_response(&mut &raw[..], &Limits::default()).unwrap();
        let mut out = Vec::new();
        write_response_head(&mut out, &resp).unwrap();
        assert_eq!(out, raw.to_vec());
    }

    #[test]
    fn a_parsed_request_serializes_to_canonical_form() {
        let raw = b"GET / HTTP/1.1\nhost:   a  \n\n";
        let req = read_request(&mut &raw[..], &Limits::default())
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        write_request_head(&mut out, &req).unwrap();
        assert_eq!(out, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n".to_vec());
    }

    #[test]
    fn a_chunk_started_with_its_first_bytes_is_framed_for_its_whole_length() {
        let mut w = ChunkedWriter::new(Vec::new());
        w.start_chunk(300, b"abc").unwrap();
        w.end_chunk().unwrap();
        assert_eq!(w.finish().unwrap(), b"12c\r\nabc\r\n0\r\n\r\n".to_vec());
    }

    #[test]
    fn chunked_writer_frames_each_write_and_ends_with_the_last_chunk() {
        let mut w = ChunkedWriter::new(Vec::new());
        w.write_all(b"hello").unwrap();
        w.write_all(b"").unwrap();
        w.write_all(&[b'x'; 26]).unwrap();
        let out = w.finish().unwrap();
        let mut expected = b"5\r\nhello\r\n1a\r\n".to_vec();
        expected.extend_from_slice(&[b'x'; 26]);
        expected.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(out, expected);
    }

    /// A writer that takes at most `max` bytes per call, vectored or not.
    struct Dribble {
        out: Vec<u8>,
        max: usize,
        calls: usize,
    }

    impl Write for Dribble {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.calls += 1;
            let n = buf.len().min(self.max);
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            let mut n = 0;
            for buf in bufs {
                let take = buf.len().min(self.max - n);
                self.out.extend_from_slice(&buf[..take]);
                n += take;
            }
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_chunk_goes_out_in_one_vectored_write_and_survives_short_writes() {
        let mut whole = ChunkedWriter::new(Dribble {
            out: Vec::new(),
            max: usize::MAX,
            calls: 0,
        });
        whole.write_all(&[b'y'; 300]).unwrap();
        assert_eq!(whole.inner.calls, 1);
        let mut expected = b"12c\r\n".to_vec();
        expected.extend_from_slice(&[b'y'; 300]);
        expected.extend_from_slice(b"\r\n");
        assert_eq!(whole.inner.out, expected);
        for max in [1, 2, 5, 299, 303, 305] {
            let mut short = ChunkedWriter::new(Dribble {
                out: Vec::new(),
                max,
                calls: 0,
            });
            short.write_all(&[b'y'; 300]).unwrap();
            assert_eq!(short.inner.out, expected, "max {max}");
        }
        let mut size = [0u8; CHUNK_SIZE_LINE];
        assert_eq!(chunk_size_line(0, &mut size), b"0\r\n");
        assert_eq!(
            chunk_size_line(usize::MAX, &mut size),
            b"ffffffffffffffff\r\n"
        );
    }
}
