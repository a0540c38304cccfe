//! The demo backend: a static file server whose pages say which server answered.
//!
//! Each connection gets the same thread-per-connection treatment as the proxy (`server`).
//! A request is answered in four steps: read it, pick what to send (`answer`), write the
//! head, stream the body. Path safety, content types and validators live in
//! `static_files`; this module only turns them into HTTP responses:
//!
//! - GET and HEAD of files under the root (a directory serves its index.html), with
//!   Content-Type, Last-Modified and ETag, and 304 for a matching If-None-Match /
//!   If-Modified-Since (RFC 9110 §13.1);
//! - `{{server}}` in .html files replaced by the server's name, Content-Length counted after;
//! - POST answered with a line describing what arrived (method, path, body length);
//! - `X-Served-By: <name>` on every response; 501 for any other method.

pub mod static_files;

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result, Side};
use crate::http::body::{copy_body, request_framing, BodyReader};
use crate::http::conditional;
use crate::http::date::format_http_date;
use crate::http::parse::{self, Limits};
use crate::http::{serialize, text_response, Request, Response};
use crate::server::{self, ClientStream};
use static_files::Lookup;

/// Read and write timeout on each connection; also the limit for a whole request head, the
/// idle keep-alive wait included.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(15);
/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 1024;
/// Largest request body accepted (POST), in bytes.
pub const MAX_BODY_BYTES: u64 = 100 * 1024 * 1024;
/// HTML files up to this size are templated in memory; larger ones are sent as they are.
pub const MAX_TEMPLATE_BYTES: u64 = 1024 * 1024;
/// Write buffer: the head and the first body bytes leave in one write.
pub const WRITE_BUFFER: usize = 64 * 1024;

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
    server::serve(listener, settings, active, move |stream, peer| {
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

fn handle_connection(site: &Site, stream: ClientStream, peer: SocketAddr) {
    let mut reader = BufReader::new(stream);
    let limits = Limits::default();
    loop {
        reader.get_mut().await_head();
        let head = parse::read_request(&mut reader, &limits);
        reader.get_mut().head_received();
        let (request, (mut response, body)) = match head {
            Ok(Some(request)) => {
                let answer = answer(site, &request, &mut reader);
                (Some(request), answer)
            }
            Ok(None) | Err(Error::Io(Side::Client, _)) => return,
            Err(e) => (None, error_answer(&e)),
        };
        let keep_alive = request.as_ref().is_some_and(Request::keep_alive)
            && !response.headers.has_token("connection", "close");
        if !keep_alive && !response.headers.has_token("connection", "close") {
            response.headers.append("Connection", "close");
        }
        let line = request
            .as_ref()
            .map_or_else(|| "-".to_string(), Request::request_line);
        let head_only = request.as_ref().is_some_and(|r| r.method == "HEAD");
        match write_response(reader.get_ref().tcp(), &response, body, head_only) {
            Ok(bytes) => log::info!(
                "{} {peer} \"{line}\" {} {bytes} B",
                site.name,
                response.status
            ),
            Err(e) => {
                log::warn!("{} {peer} \"{line}\" {}: {e}", site.name, response.status);
                return;
            }
        }
        if !keep_alive {
            return;
        }
    }
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
        match File::open(&path) {
            Ok(file) => {
                response.headers.append("Content-Length", len.to_string());
                Body::File(file, len)
            }
            Err(_) => return plain(404, "no such file"),
        }
    };
    (response, body)
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

/// Writes the head and the body (unless `head_only`); returns the body bytes written.
fn write_response(
    stream: &TcpStream,
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
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, stream);
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
