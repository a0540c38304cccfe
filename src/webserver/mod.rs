//! The demo backend: a static file server whose pages say which server answered.
//!
//! Connections are accepted and given threads by `server`, as for the proxy. Each request
//! on a connection is answered in three steps: read its head (`http::parse`), choose the
//! reply (`respond`, which reads the request's body and calls `answer`), and write it
//! (`write_response`, to any `impl Write`). Which file a target names, its content type,
//! validator and template are `static_files`; whether a conditional request gets a 304 is
//! `http::conditional`, shared with the cache. This module only turns them into HTTP
//! responses:
//!
//! - GET and HEAD of files under the root (a directory serves its index.html, and a
//!   directory named without its final `/` is a 301 to it, as Apache and nginx do), with
//!   Content-Type, Last-Modified and ETag, and 304 for a matching If-None-Match /
//!   If-Modified-Since (RFC 9110 §13.1);
//! - ranges of files (`http::range`, shared with the cache): `Accept-Ranges: bytes`, one
//!   range a 206 with Content-Range, several the whole file, past the end a 416, and
//!   `If-Range` honoured, so `curl -C -` and `wget -c` resume a download; the pages filled
//!   in per server (`.html`) are always sent whole;
//! - `{{server}}` in .html files replaced by the server's name, Content-Length counted after;
//! - POST answered with a line describing what arrived (method, path, body length);
//! - `X-Served-By: <name>` on every response; 501 for any other method.
//!
//! Each request is logged with the `X-Request-Id` it came with (`id=-` without a valid
//! one), so a request the proxy forwarded can be found here by the id in the proxy's logs.
//!
//! It never imports the proxy: what both programs need lives in `http` and `server`.

pub mod command_line;
mod static_files;

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result, Side};
use crate::http::body::{copy_body, request_framing, BodyReader};
use crate::http::conditional;
use crate::http::date::format_http_date;
use crate::http::parse::{self, Limits};
use crate::http::range::{content_range, requested_part, unsatisfied_range, Part};
use crate::http::request_id::RequestId;
use crate::http::{serialize, text_response, Request, Response};
use crate::server::{self, ClientStream};
use static_files::Lookup;

/// Read and write timeout on each connection; also the limit for a whole request head, the
/// idle keep-alive wait included.
pub(crate) const CONNECTION_TIMEOUT: Duration = Duration::from_secs(15);
/// Most connections served at once.
pub(crate) const MAX_CONNECTIONS: usize = 1024;
/// Largest request body accepted (POST), in bytes.
pub(crate) const MAX_BODY_BYTES: u64 = 100 * 1024 * 1024;
/// HTML files up to this size are templated in memory; larger ones are sent as they are.
pub(crate) const MAX_TEMPLATE_BYTES: u64 = 1024 * 1024;
/// Write buffer: the head and the first body bytes leave in one write.
pub(crate) const WRITE_BUFFER: usize = 64 * 1024;

/// What the server serves and how it names itself.
#[derive(Clone, Debug)]
pub struct Site {
    /// The directory whose files are served.
    pub root: PathBuf,
    /// Shown in pages (`{{server}}`) and in `X-Served-By`.
    pub name: String,
}

/// Binds `listen`, prints `listening on IP:PORT`, and serves `site` forever.
///
/// # Errors
/// `Error::Startup` when the address cannot be bound or the root is not a directory.
pub fn run(listen: &str, site: Site) -> Result<()> {
    if !site.root.is_dir() {
        return Err(Error::Startup(format!(
            "root {} is not a directory",
            site.root.display()
        )));
    }
    let listener = server::bind(listen)?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Startup(format!("cannot read the listening address: {e}")))?;
    println!("listening on {addr}");
    log::info!("{} serving {} on {addr}", site.name, site.root.display());
    let site = Arc::new(site);
    let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let settings = server::Settings {
        max_connections: MAX_CONNECTIONS,
        max_connections_per_ip: 0,
        client_timeout: CONNECTION_TIMEOUT,
    };
    // The web server is stopped by its signal (Ctrl-C, `make run`'s trap), never gracefully.
    let stopper = server::Stopper::new(&listener)
        .map_err(|e| Error::Startup(format!("cannot read the listening address: {e}")))?;
    server::serve(listener, settings, active, &stopper, move |stream, peer| {
        handle_connection(&site, stream, peer);
    });
    Ok(())
}

/// What goes after a response head.
enum Body {
    /// Nothing (HEAD, 304, or the length only).
    Empty,
    /// Bytes built in memory: a templated page, an echo, an error.
    Bytes(Vec<u8>),
    /// A file streamed from disk, and its length when it was looked up.
    File(File, u64),
}

/// One request's answer, ready to be written and logged.
struct Reply {
    /// The request line as logged, `-` when the head could not be read.
    line: String,
    /// The request's valid `X-Request-Id`, if it had one.
    request_id: Option<RequestId>,
    /// The response head, `Connection: close` included when the connection ends after it.
    response: Response,
    /// What follows the head.
    body: Body,
    /// Whether the request was a HEAD: the head is written, the body is not.
    head_only: bool,
    /// Whether the connection stays open for another request.
    keep_alive: bool,
}

fn handle_connection(site: &Site, stream: ClientStream, peer: SocketAddr) {
    let mut reader = BufReader::new(stream);
    let limits = Limits::default();
    loop {
        reader.get_mut().await_head();
        let head = parse::read_request(&mut reader, &limits);
        reader.get_mut().head_received();
        let Some(reply) = respond(site, head, &mut reader) else {
            return;
        };
        let (line, status) = (&reply.line, reply.response.status);
        let id: &dyn std::fmt::Display = match &reply.request_id {
            Some(id) => id,
            None => &"-",
        };
        let written = write_response(
            reader.get_ref().tcp(),
            &reply.response,
            reply.body,
            reply.head_only,
        );
        match written {
            Ok(bytes) => log::info!("{} {peer} \"{line}\" {status} {bytes} B id={id}", site.name),
            Err(e) => {
                log::warn!("{} {peer} \"{line}\" {status} id={id}: {e}", site.name);
                return;
            }
        }
        if !reply.keep_alive {
            return;
        }
    }
}

/// The reply to a request head as read (`head`), the request's body read from `reader`;
/// None when there is nobody to answer (the client closed, or its connection failed).
fn respond(
    site: &Site,
    head: Result<Option<Request>>,
    reader: &mut impl io::BufRead,
) -> Option<Reply> {
    let (request, (mut response, body)) = match head {
        Ok(Some(request)) => {
            let answer = answer(site, &request, reader);
            (Some(request), answer)
        }
        Ok(None) | Err(Error::Io(Side::Client, _)) => return None,
        Err(e) => (None, error_answer(&e)),
    };
    let closing = response.headers.has_token("connection", "close");
    let keep_alive = request.as_ref().is_some_and(Request::keep_alive) && !closing;
    if !keep_alive && !closing {
        response.headers.append("Connection", "close");
    }
    Some(Reply {
        line: request
            .as_ref()
            .map_or_else(|| "-".to_string(), Request::request_line),
        request_id: request.as_ref().and_then(RequestId::of),
        head_only: request.is_some_and(|r| r.method == "HEAD"),
        response,
        body,
        keep_alive,
    })
}

/// Chooses the response to `request`, reading its body when it has one.
fn answer(site: &Site, request: &Request, reader: &mut impl io::BufRead) -> (Response, Body) {
    let framing = match request_framing(request) {
        Ok(framing) => framing,
        Err(e) => return error_answer(&Error::Parse(Side::Client, e)),
    };
    // Read (or discard) the body first, so the connection is ready for the next request.
    let received = match copy_body(
        &mut BodyReader::new(reader, framing),
        &mut io::sink(),
        Side::Client,
        Side::Client,
        MAX_BODY_BYTES,
    ) {
        Ok(n) => n,
        Err(e) => return error_answer(&e),
    };
    let (mut response, body) = match request.method.as_str() {
        "GET" | "HEAD" => serve_file(site, request),
        "POST" => {
            let text = format!(
                "{} received {} {} with a body of {received} bytes",
                site.name, request.method, request.target
            );
            let (resp, body) = text_response(200, &text);
            (resp, Body::Bytes(body))
        }
        _ => {
            let (mut resp, body) = text_response(501, "this server implements GET, HEAD and POST");
            // Framing of any body was handled above, so the connection stays usable.
            resp.headers.append("Allow", "GET, HEAD, POST");
            (resp, Body::Bytes(body))
        }
    };
    response.headers.append("X-Served-By", site.name.clone());
    response
        .headers
        .append("Date", format_http_date(SystemTime::now()));
    (response, body)
}

/// GET or HEAD of a file under the root.
fn serve_file(site: &Site, request: &Request) -> (Response, Body) {
    let (path, len, modified) = match static_files::resolve(&site.root, &request.target) {
        Lookup::File {
            path,
            len,
            modified,
        } => (path, len, modified),
        Lookup::MissingSlash { location } => {
            let (mut moved, body) = plain(301, "this is a directory: its address ends in /");
            moved.headers.append("Location", location);
            return (moved, body);
        }
        Lookup::NotFound => return plain(404, "no such file"),
        Lookup::Forbidden => return plain(403, "that path is outside the site"),
        Lookup::BadRequest => return plain(400, "malformed path"),
    };
    let content_type = static_files::content_type(&path);
    let templated = content_type.starts_with("text/html") && len <= MAX_TEMPLATE_BYTES;
    let etag = if templated {
        // The page differs per server, so its validator must too.
        let base = static_files::etag(len, modified);
        format!("{}-{}\"", base.trim_end_matches('"'), tag_safe(&site.name))
    } else {
        static_files::etag(len, modified)
    };
    let mut response = Response::new(200);
    response.headers.append("Content-Type", content_type);
    if templated {
        // Each server fills in its own name, so a stored copy must be checked with the
        // backend before each reuse (RFC 9111 §5.2.2.4): through a caching proxy a refresh
        // still shows the round robin, while images and files are served from the cache.
        response.headers.append("Cache-Control", "no-cache");
    }
    response
        .headers
        .append("Last-Modified", format_http_date(modified));
    response.headers.append("ETag", etag.clone());
    if conditional::not_modified(request, Some(&etag), Some(modified)) {
        let mut not_modified = Response::new(304);
        not_modified.headers = response.headers;
        not_modified.headers.remove("content-type");
        return (not_modified, Body::Empty);
    }
    let body = if templated {
        match read_small(&path) {
            Ok(html) => Body::Bytes(static_files::fill_template(&html, &site.name)),
            Err(_) => return plain(404, "no such file"),
        }
    } else {
        let Ok(file) = File::open(&path) else {
            return plain(404, "no such file");
        };
        response.headers.append("Accept-Ranges", "bytes");
        match requested_part(request, len, Some(&etag), Some(modified)) {
            Part::Whole => {
                response.headers.append("Content-Length", len.to_string());
                Body::File(file, len)
            }
            Part::Bytes { start, len: part } => return file_part(response, file, start, part, len),
            Part::Unsatisfiable => {
                let (mut refused, body) = plain(416, "that range is not in the file");
                refused
                    .headers
                    .append("Content-Range", unsatisfied_range(len));
                return (refused, body);
            }
        }
    };
    (response, body)
}

/// The 206 for `len` bytes from `start` of a file of `total` bytes: `response`'s fields,
/// with Content-Range (RFC 9110 §14.4).
fn file_part(
    mut response: Response,
    mut file: File,
    start: u64,
    len: u64,
    total: u64,
) -> (Response, Body) {
    if file.seek(SeekFrom::Start(start)).is_err() {
        return plain(404, "no such file");
    }
    response.status = 206;
    response.reason = crate::http::reason_phrase(206).to_string();
    response
        .headers
        .append("Content-Range", content_range(start, len, total));
    response.headers.append("Content-Length", len.to_string());
    (response, Body::File(file, len))
}

fn read_small(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)?
        .take(MAX_TEMPLATE_BYTES)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The characters of `name` that may stand inside an entity-tag (RFC 9110 §8.8.3).
fn tag_safe(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect()
}

fn plain(status: u16, text: &str) -> (Response, Body) {
    let (resp, body) = text_response(status, text);
    (resp, Body::Bytes(body))
}

/// The response to a request that could not be read; the connection is closed after it.
fn error_answer(e: &Error) -> (Response, Body) {
    let (mut resp, body) = text_response(e.status().unwrap_or(400), e.reply_text());
    resp.headers.append("Connection", "close");
    (resp, Body::Bytes(body))
}

/// Writes the head and the body (unless `head_only`) to `out`, in writes of up to
/// `WRITE_BUFFER` bytes; returns the body bytes written.
///
/// # Errors
/// A failed write, or a file that ended before the length announced in its head.
fn write_response(
    out: impl Write,
    response: &Response,
    body: Body,
    head_only: bool,
) -> io::Result<u64> {
    let mut response = response.clone();
    if let Body::Bytes(bytes) = &body {
        response
            .headers
            .set("Content-Length", bytes.len().to_string());
    }
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, out);
    serialize::write_response_head(&mut out, &response)?;
    let written = match body {
        _ if head_only => 0,
        Body::Empty => 0,
        Body::Bytes(bytes) => {
            out.write_all(&bytes)?;
            bytes.len() as u64
        }
        Body::File(file, len) => {
            let sent = io::copy(&mut file.take(len), &mut out)?;
            if sent < len {
                // The file shrank under us: never let a short body pass for a whole one.
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while sent",
                ));
            }
            sent
        }
    };
    out.flush()?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::static_files::tests::TestRoot;
    use super::*;

    /// What one request on a connection came to: the response head, whether the connection
    /// stays open, the bytes on the wire, and the bytes left unread behind the request.
    struct Served {
        response: Response,
        keep_alive: bool,
        wire: Vec<u8>,
        rest: Vec<u8>,
    }

    /// Serves the first request in `raw` from `root` as `test-1`, as a connection would.
    fn serve(root: &TestRoot, raw: &[u8]) -> Served {
        let site = Site {
            root: root.root.clone(),
            name: "test-1".to_string(),
        };
        let mut reader = Cursor::new(raw);
        let head = parse::read_request(&mut reader, &Limits::default());
        let reply = respond(&site, head, &mut reader).expect("a reply");
        let mut wire = Vec::new();
        write_response(&mut wire, &reply.response, reply.body, reply.head_only).unwrap();
        let rest = raw[reader.position() as usize..].to_vec();
        Served {
            response: reply.response,
            keep_alive: reply.keep_alive,
            wire,
            rest,
        }
    }

    fn text(wire: &[u8]) -> String {
        String::from_utf8_lossy(wire).into_owned()
    }

    #[test]
    fn a_file_is_sent_with_its_validators_and_the_servers_name() {
        let root = TestRoot::new();
        let served = serve(&root, b"GET /a/b%20c.html?x=1 HTTP/1.1\r\nHost: t\r\n\r\n");
        let wire = text(&served.wire);
        assert!(wire.starts_with("HTTP/1.1 200 OK\r\n"), "{wire}");
        for field in [
            "Content-Type: text/html; charset=utf-8\r\n",
            "Cache-Control: no-cache\r\n",
            "Content-Length: 2\r\n",
            "X-Served-By: test-1\r\n",
        ] {
            assert!(wire.contains(field), "{field} missing: {wire}");
        }
        // A templated page's tag names the server, so each backend's copy validates apart.
        let etag = served.response.headers.get("etag").unwrap();
        assert!(
            etag.starts_with('"') && etag.ends_with("-test-1\""),
            "{etag}"
        );
        assert!(served.response.headers.contains("last-modified"));
        assert!(served.response.headers.contains("date"));
        assert!(wire.ends_with("\r\n\r\nbc"), "{wire}");
        assert!(served.keep_alive);
    }

    #[test]
    fn templates_are_filled_and_other_files_sent_as_they_are() {
        let root = TestRoot::new();
        std::fs::write(root.root.join("page.html"), "<b>{{server}}</b>").unwrap();
        std::fs::write(root.root.join("raw.txt"), "{{server}}").unwrap();
        let page = serve(&root, b"GET /page.html HTTP/1.1\r\nHost: t\r\n\r\n");
        assert!(text(&page.wire).ends_with("Content-Length: 13\r\n\r\n<b>test-1</b>"));
        let raw = serve(&root, b"GET /raw.txt HTTP/1.1\r\nHost: t\r\n\r\n");
        assert!(text(&raw.wire).ends_with("\r\n\r\n{{server}}"));
        assert!(!text(&raw.wire).contains("Cache-Control"));
    }

    #[test]
    fn a_range_of_a_file_is_a_206_and_a_range_past_its_end_a_416() {
        let root = TestRoot::new();
        std::fs::write(root.root.join("data.bin"), "0123456789").unwrap();
        let ask = |fields: &str| {
            let raw = format!("GET /data.bin HTTP/1.1\r\nHost: t\r\n{fields}\r\n");
            serve(&root, raw.as_bytes())
        };
        let whole = ask("");
        assert_eq!(whole.response.headers.get("accept-ranges"), Some("bytes"));
        let part = ask("Range: bytes=3-5\r\n");
        let wire = text(&part.wire);
        assert!(
            wire.starts_with("HTTP/1.1 206 Partial Content\r\n"),
            "{wire}"
        );
        assert!(wire.contains("Content-Range: bytes 3-5/10\r\n"), "{wire}");
        assert!(wire.ends_with("\r\n\r\n345"), "{wire}");
        let tail = text(&ask("Range: bytes=-2\r\n").wire);
        assert!(tail.ends_with("\r\n\r\n89"), "{tail}");
        let past = ask("Range: bytes=10-\r\n");
        assert_eq!(past.response.status, 416);
        assert_eq!(
            past.response.headers.get("content-range"),
            Some("bytes */10")
        );
        // If-Range with another tag: the whole file.
        let stale = ask("Range: bytes=3-5\r\nIf-Range: \"other\"\r\n");
        assert!(text(&stale.wire).ends_with("\r\n\r\n0123456789"));
        let etag = whole.response.headers.get("etag").unwrap();
        let fresh = ask(&format!("Range: bytes=3-5\r\nIf-Range: {etag}\r\n"));
        assert_eq!(fresh.response.status, 206);
        // Pages filled in per server are always whole.
        let page = serve(
            &root,
            b"GET /index.html HTTP/1.1\r\nHost: t\r\nRange: bytes=0-0\r\n\r\n",
        );
        assert_eq!(page.response.status, 200);
    }

    #[test]
    fn a_directory_without_its_slash_is_a_301_to_it() {
        let root = TestRoot::new();
        let served = serve(&root, b"GET /docs?x=1 HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(served.response.status, 301);
        assert_eq!(served.response.headers.get("location"), Some("/docs/?x=1"));
    }

    #[test]
    fn a_matching_conditional_request_gets_a_304_without_body_or_type() {
        let root = TestRoot::new();
        let first = serve(&root, b"GET /Photo.PNG HTTP/1.1\r\nHost: t\r\n\r\n");
        let etag = first.response.headers.get("etag").unwrap();
        let raw = format!("GET /Photo.PNG HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n");
        let served = serve(&root, raw.as_bytes());
        let wire = text(&served.wire);
        assert!(wire.starts_with("HTTP/1.1 304 Not Modified\r\n"), "{wire}");
        assert!(
            wire.ends_with("\r\n\r\n") && !wire.contains("Content-Type"),
            "{wire}"
        );
        assert!(wire.contains(&format!("ETag: {etag}\r\n")), "{wire}");
    }

    #[test]
    fn head_writes_the_head_only() {
        let root = TestRoot::new();
        let served = serve(&root, b"HEAD /Photo.PNG HTTP/1.1\r\nHost: t\r\n\r\n");
        let wire = text(&served.wire);
        assert!(wire.contains("Content-Length: 3\r\n"), "{wire}");
        assert!(wire.ends_with("\r\n\r\n"), "{wire}");
    }

    #[test]
    fn post_is_echoed_and_its_body_read_to_the_next_request() {
        let root = TestRoot::new();
        let served = serve(
            &root,
            b"POST /form HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n",
        );
        assert!(text(&served.wire)
            .ends_with("200 OK: test-1 received POST /form with a body of 5 bytes\n"));
        assert_eq!(served.rest, b"GET / HTTP/1.1\r\n");
    }

    #[test]
    fn other_methods_get_501_with_allow_and_the_connection_stays_usable() {
        let root = TestRoot::new();
        let served = serve(
            &root,
            b"DELETE / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nxyGET",
        );
        let wire = text(&served.wire);
        assert!(
            wire.starts_with("HTTP/1.1 501 Not Implemented\r\n"),
            "{wire}"
        );
        assert!(wire.contains("Allow: GET, HEAD, POST\r\n"), "{wire}");
        assert!(served.keep_alive);
        assert_eq!(served.rest, b"GET");
    }

    #[test]
    fn lookups_that_fail_map_to_404_403_and_400() {
        let root = TestRoot::new();
        for (target, status) in [
            ("/nope.html", "404 Not Found"),
            ("/../secret.txt", "403 Forbidden"),
            ("/%zz", "400 Bad Request"),
        ] {
            let raw = format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n");
            let wire = text(&serve(&root, raw.as_bytes()).wire);
            assert!(
                wire.starts_with(&format!("HTTP/1.1 {status}\r\n")),
                "{wire}"
            );
            assert!(!wire.contains("secret"), "{wire}");
        }
    }

    #[test]
    fn a_request_that_cannot_be_read_is_answered_400_and_closes() {
        let root = TestRoot::new();
        for raw in [
            &b"GET / HTTP/1.1\r\nHost : t\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        ] {
            let served = serve(&root, raw);
            let wire = text(&served.wire);
            assert!(wire.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{wire}");
            assert!(wire.contains("Connection: close\r\n"), "{wire}");
            assert!(!served.keep_alive);
        }
    }

    #[test]
    fn connection_close_and_http_1_0_end_the_connection() {
        let root = TestRoot::new();
        for raw in [
            &b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"[..],
            b"GET / HTTP/1.0\r\n\r\n",
        ] {
            let served = serve(&root, raw);
            assert!(!served.keep_alive);
            assert!(text(&served.wire).contains("Connection: close\r\n"));
        }
    }

    #[test]
    fn a_file_that_shrank_is_an_error_not_a_short_body() {
        let root = TestRoot::new();
        let file = File::open(root.root.join("Photo.PNG")).unwrap();
        let mut wire = Vec::new();
        let err = write_response(&mut wire, &Response::new(200), Body::File(file, 10), false)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
