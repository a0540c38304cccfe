//! Steps 11 and 12 of the proxy (see `proxy`): the response as the client should see it,
//! then its body streamed from the backend to the client (and into the cache entry, through
//! `Tee`), or a stored response served from the cache, whole, as a 304, or the range a
//! `Range` request asks for (`http::range`).

use std::io::{self, BufRead, BufWriter, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime};

use super::fill::relay_and_store;
use super::rewrite::via;
use super::splice;
use super::{Sent, CLIENT_WRITE_BUFFER};
use crate::cache::{self, CacheStatus, Entry, EntryWriter, FlightGuard, TARGETED_FIELDS};
use crate::error::{Error, Result, Side};
use crate::http::body::{copy_body, read_error, BodyReader, Framing};
use crate::http::date::{format_http_date, parse_http_date};
use crate::http::range::{content_range, requested_part, unsatisfied_range, Part};
use crate::http::request_id::{RequestId, REQUEST_ID_FIELD};
use crate::http::serialize::{self, ChunkedWriter};
use crate::http::{remove_hop_by_hop, Headers, Request, Response, Version};
use crate::proxy::upstream::Connection;

/// What the proxy adds to every response to a request, whichever step writes it (relay,
/// cache, tunnel, error reply): `X-Cache`, what the cache did, and `X-Request-Id`, the id
/// the backend was given. Both replace whatever the backend or the stored entry had.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stamp {
    pub(crate) cache: CacheStatus,
    pub(crate) request_id: RequestId,
}

impl Stamp {
    /// Sets the stamp's fields in `headers`.
    pub(crate) fn apply(&self, headers: &mut Headers) {
        headers.set("X-Cache", self.cache.as_str());
        headers.set(REQUEST_ID_FIELD, self.request_id.as_str());
    }
}

/// Step 11: the response as the client should see it, the framing we send it with, and
/// whether the connection stays open afterwards.
///
/// Hop-by-hop fields go (RFC 9110 §7.6.1), and so do the targeted cache-control fields
/// (`CDN-Cache-Control`, `Relevo-Cache-Control`: RFC 9213 lets the cache they target keep
/// them, and they are for us, not for caches further down); `Via` is added (§7.6.3), and so
/// is `Date` when the backend sent none (§6.6.1: a recipient with a clock adds one, the time
/// `now` it received the response). A body of known length keeps its Content-Length. A chunked or
/// close-delimited body goes to an HTTP/1.1 client chunked (so the connection can stay
/// open), and to an HTTP/1.0 client close-delimited.
pub fn filter_response(
    mut response: Response,
    client_version: Version,
    upstream: Framing,
    keep_alive: bool,
    now: SystemTime,
) -> (Response, Framing, bool) {
    let received = response.version;
    // A 426 must say which protocol to upgrade to (RFC 9110 §15.5.22), hop-by-hop or not.
    let upgrade = (response.status == 426)
        .then(|| response.headers.get("upgrade").map(str::to_string))
        .flatten();
    remove_hop_by_hop(&mut response.headers);
    for name in TARGETED_FIELDS {
        response.headers.remove(name);
    }
    if let Some(upgrade) = upgrade {
        response.headers.append("Upgrade", upgrade);
    }
    if !response.headers.contains("date") {
        response.headers.append("Date", format_http_date(now));
    }
    let (framing, keep_alive) = match upstream {
        Framing::Empty => (Framing::Empty, keep_alive),
        Framing::Length(n) => {
            response.headers.set("Content-Length", n.to_string());
            (Framing::Length(n), keep_alive)
        }
        Framing::Chunked | Framing::Close if client_version == Version::Http11 => {
            response.headers.remove("content-length");
            response.headers.append("Transfer-Encoding", "chunked");
            (Framing::Chunked, keep_alive)
        }
        Framing::Chunked | Framing::Close => {
            response.headers.remove("content-length");
            (Framing::Close, false)
        }
    };
    response.version = Version::Http11;
    response.headers.append("Via", via(received));
    match (keep_alive, client_version) {
        (false, _) => response.headers.append("Connection", "close"),
        (true, Version::Http10) => response.headers.append("Connection", "keep-alive"),
        (true, Version::Http11) => {}
    }
    (response, framing, keep_alive)
}

/// Step 12: write the head and stream the body from the backend to the client, and into
/// the cache entry when there is one (see `fill`: the entry is then written at the backend's
/// pace, and its followers told how far it is, through the flight's guard). A body cut short
/// by the backend ends the client connection without a last chunk, so the client sees the
/// truncation, and stores nothing.
///
/// Nothing waits for more (issue: Server-Sent Events arrived together at the end): the head
/// leaves at once unless the whole body arrived with it (then both go in one write), and
/// every piece read from the backend is flushed to the client before the next read. A body
/// (or chunk) of `splice_min` bytes or more, when not stored, moves socket to socket in the
/// kernel instead (`splice`), in pieces of up to 64 KiB.
/// `sent.bytes` counts the body bytes the client took, also when the relay fails.
pub(super) fn relay_response(
    upstream: &mut Connection,
    client: &TcpStream,
    response: &Response,
    (upstream_framing, client_framing): (Framing, Framing),
    entry: Option<(EntryWriter, Option<&FlightGuard<'_>>)>,
    splice_min: u64,
    sent: &mut Sent,
) -> Result<()> {
    let client_err = |e| Error::Io(Side::Client, e);
    if let Some((entry, guard)) = entry {
        let head = serialize::response_head_bytes(response);
        let chunked = client_framing == Framing::Chunked;
        let mut body = BodyReader::new(upstream.reader(), upstream_framing);
        return relay_and_store(client, head, chunked, &mut body, entry, guard, sent);
    }
    if let Framing::Length(n) = upstream_framing {
        if n >= splice_min && client_framing == upstream_framing {
            return relay_spliced(upstream, client, response, n, sent);
        }
    }
    let body_len = match client_framing {
        Framing::Length(n) => Some(n),
        Framing::Empty => Some(0),
        Framing::Chunked | Framing::Close => None,
    };
    let mut out = start_response(client, response, body_len, sent)?;
    let arrived = upstream.reader().buffer().len() as u64;
    if !matches!(upstream_framing, Framing::Length(n) if n <= arrived) {
        out.flush().map_err(client_err)?;
    }
    let mut body = BodyReader::new(upstream.reader(), upstream_framing);
    let (from, to) = (Side::Backend, Side::Client);
    let result = match client_framing {
        Framing::Chunked => {
            let mut counted = Counted::new(ChunkedWriter::new(&mut out));
            let copied = if upstream_framing == Framing::Chunked {
                copy_chunks(&mut body, &mut counted, client, splice_min)
            } else {
                copy_body(&mut body, &mut counted, from, to, u64::MAX).map(drop)
            };
            sent.bytes = counted.sent;
            copied.and_then(|_| counted.inner.finish().map(drop).map_err(client_err))
        }
        _ => {
            let mut counted = Counted::new(&mut out);
            let copied = copy_body(&mut body, &mut counted, from, to, u64::MAX);
            sent.bytes = counted.sent;
            copied.map(drop)
        }
    };
    result?;
    out.flush().map_err(client_err)
}

/// Copies a chunked body to a chunked client, re-framed piece by piece as `copy_body` does,
/// except that a chunk of `splice_min` bytes or more is passed on as one chunk: its
/// size line and the bytes already read, then the rest spliced socket to socket.
fn copy_chunks<W: Write>(
    body: &mut BodyReader<&mut io::BufReader<TcpStream>>,
    out: &mut Counted<ChunkedWriter<W>>,
    client: &TcpStream,
    splice_min: u64,
) -> Result<()> {
    let (from, to) = (Side::Backend, Side::Client);
    let client_err = |e| Error::Io(to, e);
    loop {
        let n = match body.fill_buf() {
            Ok(piece) => piece.len(),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(from, e)),
        };
        if n == 0 {
            return Ok(());
        }
        let left = body.chunk_left().unwrap_or(0);
        // `fill_buf` again hands out the same bytes, without reading.
        let piece = body.fill_buf().map_err(|e| read_error(from, e))?;
        if left < splice_min || left <= n as u64 {
            out.write_all(piece)
                .and_then(|()| out.flush())
                .map_err(client_err)?;
            body.consume(n);
            continue;
        }
        out.inner.start_chunk(left, piece).map_err(client_err)?;
        out.sent += n as u64;
        body.consume(n);
        out.flush().map_err(client_err)?;
        let rest = left - n as u64;
        splice::relay(
            body.get_ref().get_ref(),
            client,
            rest,
            (from, to),
            &mut out.sent,
        )?;
        body.skip_chunk_data(rest);
        out.inner.end_chunk().map_err(client_err)?;
    }
}

/// Step 12 for a body of `len` bytes, at least `splice_min_body`: the head and whatever
/// of the body already arrived with it in one write, then the rest moved socket to socket
/// in the kernel (see `splice`). The backend connection ends at the body's end, as with the
/// buffered copy, so it can go back to the pool.
fn relay_spliced(
    upstream: &mut Connection,
    client: &TcpStream,
    response: &Response,
    len: u64,
    sent: &mut Sent,
) -> Result<()> {
    let client_err = |e| Error::Io(Side::Client, e);
    let buffered = upstream.reader().buffer();
    let early = buffered
        .len()
        .min(usize::try_from(len).unwrap_or(usize::MAX));
    let mut out = start_response(client, response, Some(early as u64), sent)?;
    out.write_all(&buffered[..early]).map_err(client_err)?;
    out.flush().map_err(client_err)?;
    upstream.reader().consume(early);
    sent.bytes = early as u64;
    let sides = (Side::Backend, Side::Client);
    splice::relay(
        upstream.writer(),
        client,
        len - early as u64,
        sides,
        &mut sent.bytes,
    )
}

/// Writes `response`'s head into a buffered writer toward the client, with room for the
/// body when it is known (`body_len`) and small: up to CLIENT_WRITE_BUFFER in all, so a small
/// response leaves in one write and costs only a small buffer.
pub(super) fn start_response<W: Write>(
    client: W,
    response: &Response,
    body_len: Option<u64>,
    sent: &mut Sent,
) -> Result<BufWriter<W>> {
    let head = serialize::response_head_bytes(response);
    let room = body_len.map_or(CLIENT_WRITE_BUFFER, |n| {
        usize::try_from(n).unwrap_or(usize::MAX)
    });
    let capacity = head.len().saturating_add(room).min(CLIENT_WRITE_BUFFER);
    let mut out = BufWriter::with_capacity(capacity, client);
    out.write_all(&head)
        .map_err(|e| Error::Io(Side::Client, e))?;
    sent.head = true;
    Ok(out)
}

/// A writer that counts the body bytes that went through it (for the log line, also when
/// the relay fails part-way).
struct Counted<W: Write> {
    inner: W,
    /// Body bytes the inner writer accepted.
    sent: u64,
}

impl<W: Write> Counted<W> {
    fn new(inner: W) -> Self {
        Counted { inner, sent: 0 }
    }
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sent += n as u64;
        Ok(n)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all(buf)?;
        self.sent += buf.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Step 12, from the cache: the stored response, a 304 when the client's own conditional
/// matches (RFC 9111 §4.3.2), or the part a `Range` request asks for ([`cached_answer`]),
/// with `Age` (§5.1: the current age, whole seconds) and the `stamp`. Date and the other
/// stored fields are sent as stored. The request had no body (the lookup only answers
/// those), so the connection may carry on.
pub(super) fn serve_from_cache(
    client: impl Write,
    request: &Request,
    entry: Entry,
    age: Duration,
    stamp: Stamp,
    sent: &mut Sent,
) -> Result<()> {
    let client_err = |e| Error::Io(Side::Client, e);
    let body_len = entry.body_len;
    let (stored_head, mut stored) = entry.into_parts();
    let (head, framing, skip) = cached_answer(request, stored_head, body_len);
    let (mut head, _, keep_alive) = filter_response(
        head,
        request.version,
        framing,
        request.keep_alive(),
        SystemTime::now(),
    );
    head.headers.set("Age", age.as_secs().to_string());
    stamp.apply(&mut head.headers);
    sent.status = Some(head.status);
    sent.keep_alive = keep_alive;
    let len = match framing {
        Framing::Length(n) if request.method != "HEAD" => n,
        _ => 0,
    };
    let mut out = start_response(client, &head, Some(len), sent)?;
    if len > 0 {
        let skipped = stored.skip(skip).map_err(|e| Error::Io(Side::Backend, e))?;
        let mut counted = Counted::new(&mut out);
        let mut part = Read::take(&mut stored, len);
        let copied = copy_body(&mut part, &mut counted, Side::Backend, Side::Client, len);
        sent.bytes = counted.sent;
        copied?;
        if skipped != skip || sent.bytes != len {
            let why = "the cache entry was truncated while being served";
            return Err(Error::Io(
                Side::Backend,
                io::Error::new(io::ErrorKind::UnexpectedEof, why),
            ));
        }
    }
    out.flush().map_err(client_err)
}

/// What the cache answers `request` with from a stored head whose body has `body_len`
/// bytes: the head, its framing, and how many body bytes to skip before sending.
///
/// - a 304 when the client's conditional matches (`cache::not_modified`);
/// - for a stored 200 and a GET with `Range` (`http::range`, If-Range included): a 206
///   with the stored fields, `Content-Range` and the range's length; a 416 with
///   `Content-Range: bytes */LENGTH` when no range is satisfiable; several ranges get the
///   whole 200;
/// - otherwise the stored response whole (a 204 without a body).
pub(super) fn cached_answer(
    request: &Request,
    stored: Response,
    body_len: u64,
) -> (Response, Framing, u64) {
    if cache::not_modified(request, &stored) {
        return (cache::not_modified_response(&stored), Framing::Empty, 0);
    }
    if stored.status == 204 {
        return (stored, Framing::Empty, 0);
    }
    if stored.status != 200 {
        return (stored, Framing::Length(body_len), 0);
    }
    let etag = stored.headers.get("etag");
    let modified = stored
        .headers
        .get("last-modified")
        .and_then(parse_http_date);
    match requested_part(request, body_len, etag, modified) {
        Part::Whole => (stored, Framing::Length(body_len), 0),
        Part::Bytes { start, len } => {
            let mut partial = stored;
            partial.status = 206;
            partial.reason = crate::http::reason_phrase(206).to_string();
            let range = content_range(start, len, body_len);
            partial.headers.set("Content-Range", range);
            (partial, Framing::Length(len), start)
        }
        Part::Unsatisfiable => {
            let mut refused = Response::new(416);
            refused.version = stored.version;
            let range = unsatisfied_range(body_len);
            refused.headers.append("Content-Range", range);
            (refused, Framing::Length(0), 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    #[test]
    fn filter_keeps_known_lengths_and_rechunks_the_rest() {
        let mut resp = Response::new(200);
        resp.headers.append("Content-Length", "5");
        resp.headers.append("Connection", "X-Internal");
        resp.headers.append("X-Internal", "1");
        let (out, framing, keep) =
            filter_response(resp, Version::Http11, Framing::Length(5), true, at());
        assert_eq!((framing, keep), (Framing::Length(5), true));
        assert!(!out.headers.contains("x-internal"));
        assert!(!out.headers.contains("connection"));
        assert_eq!(out.headers.get("via"), Some("1.1 relevo"));

        let mut closing = Response::new(200);
        closing.version = Version::Http10;
        let (out, framing, keep) =
            filter_response(closing.clone(), Version::Http11, Framing::Close, true, at());
        assert_eq!((framing, keep), (Framing::Chunked, true));
        assert_eq!(out.headers.get("transfer-encoding"), Some("chunked"));
        assert_eq!(out.headers.get("via"), Some("1.0 relevo"));
        assert_eq!(out.version, Version::Http11);

        let (out, framing, keep) =
            filter_response(closing, Version::Http10, Framing::Chunked, true, at());
        assert_eq!((framing, keep), (Framing::Close, false));
        assert_eq!(out.headers.get("connection"), Some("close"));
    }

    /// A fixed time for the `Date` we add: 2026-11-25 10:41:07 UTC.
    fn at() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_603_267)
    }

    #[test]
    fn a_response_without_date_gets_one_and_a_backends_date_is_kept() {
        let mut resp = Response::new(200);
        resp.headers.append("Content-Length", "0");
        let (out, _, _) = filter_response(
            resp.clone(),
            Version::Http11,
            Framing::Length(0),
            true,
            at(),
        );
        assert_eq!(
            out.headers.get("date"),
            Some("Wed, 25 Nov 2026 10:41:07 GMT")
        );
        resp.headers.append("Date", "Tue, 24 Nov 2026 08:00:00 GMT");
        let (out, _, _) = filter_response(resp, Version::Http11, Framing::Length(0), true, at());
        assert_eq!(
            out.headers.get_all("date").collect::<Vec<_>>(),
            ["Tue, 24 Nov 2026 08:00:00 GMT"]
        );
    }

    #[test]
    fn a_426_keeps_its_upgrade_field() {
        let mut resp = Response::new(426);
        resp.headers.append("Upgrade", "websocket");
        resp.headers.append("Connection", "Upgrade");
        resp.headers.append("Content-Length", "0");
        let (out, _, _) = filter_response(resp, Version::Http11, Framing::Length(0), true, at());
        assert_eq!(out.headers.get("upgrade"), Some("websocket"));
        assert!(!out.headers.contains("connection"));
    }

    #[test]
    fn http_1_0_keep_alive_is_answered_in_kind() {
        let mut resp = Response::new(200);
        resp.headers.append("Content-Length", "0");
        let (out, _, keep) = filter_response(resp, Version::Http10, Framing::Length(0), true, at());
        assert!(keep);
        assert_eq!(out.headers.get("connection"), Some("keep-alive"));
    }

    /// A stored 200 with body `stored body`, ETag "v1", read back from a store in a
    /// temporary directory (removed when the returned guard drops).
    fn stored_entry() -> (Entry, TempDir) {
        let dir = TempDir::new("relay");
        let store = crate::cache::Store::new(&dir.path, 1 << 20, 1 << 20);
        let mut head = Response::new(200);
        head.headers.append("Content-Length", "11");
        head.headers.append("ETag", "\"v1\"");
        head.headers.append("Date", "Wed, 25 Nov 2026 10:41:07 GMT");
        head.headers.append("X-Request-Id", "the-first-requests-id");
        let mut entry = store.begin("k", &head).unwrap();
        entry.write_all(b"stored body").unwrap();
        entry.commit().unwrap();
        (store.read("k").unwrap(), dir)
    }

    fn request(raw: &str) -> Request {
        crate::http::parse::read_request(&mut raw.as_bytes(), &Default::default())
            .unwrap()
            .unwrap()
    }

    /// What `serve_from_cache` writes for `raw`, parsed, and what it recorded.
    fn served(raw: &str) -> (Response, Vec<u8>, Sent) {
        let (entry, _dir) = stored_entry();
        let mut out = Vec::new();
        let mut sent = Sent::default();
        let age = Duration::from_secs(7);
        serve_from_cache(
            &mut out,
            &request(raw),
            entry,
            age,
            Stamp {
                cache: CacheStatus::Hit,
                request_id: RequestId::parse("this-one").unwrap(),
            },
            &mut sent,
        )
        .unwrap();
        let mut rest = &out[..];
        let head = crate::http::parse::read_response(&mut rest, &Default::default()).unwrap();
        (head, rest.to_vec(), sent)
    }

    #[test]
    fn a_stored_response_is_served_with_its_age_and_the_cache_result() {
        let (head, body, sent) = served("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(head.status, 200);
        assert_eq!(head.headers.get("age"), Some("7"));
        assert_eq!(head.headers.get("x-cache"), Some("HIT"));
        assert_eq!(
            head.headers.get_all("x-request-id").collect::<Vec<_>>(),
            ["this-one"],
            "the id of this request, not the stored one's"
        );
        assert_eq!(
            head.headers.get("date"),
            Some("Wed, 25 Nov 2026 10:41:07 GMT")
        );
        assert_eq!(body, b"stored body");
        assert_eq!(
            (sent.status, sent.bytes, sent.head, sent.keep_alive),
            (Some(200), 11, true, true)
        );
    }

    #[test]
    fn a_matching_conditional_or_a_head_gets_no_body() {
        let (head, body, sent) =
            served("GET / HTTP/1.1\r\nHost: h\r\nIf-None-Match: \"v1\"\r\n\r\n");
        assert_eq!(head.status, 304);
        assert_eq!(head.headers.get("etag"), Some("\"v1\""));
        assert!(body.is_empty());
        assert_eq!(sent.bytes, 0);
        let (head, body, _) = served("HEAD / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(
            (head.status, head.headers.get("content-length")),
            (200, Some("11"))
        );
        assert!(body.is_empty());
        let (head, _, sent) = served("GET / HTTP/1.0\r\n\r\n");
        assert_eq!(head.headers.get("connection"), Some("close"));
        assert!(!sent.keep_alive);
    }

    #[test]
    fn counted_counts_what_the_writer_took_also_when_it_fails() {
        /// A client that takes `left` bytes, then fails as a closed socket does.
        struct Leaving {
            left: usize,
        }

        impl Write for Leaving {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                if self.left == 0 {
                    return Err(io::Error::new(io::ErrorKind::BrokenPipe, "gone"));
                }
                let n = buf.len().min(self.left);
                self.left -= n;
                Ok(n)
            }

            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }

        let mut counted = Counted::new(Leaving { left: 6 });
        counted.write_all(b"abcd").unwrap();
        let e = counted.write_all(b"efgh").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
        assert_eq!(counted.sent, 4, "whole writes only");
    }
}
