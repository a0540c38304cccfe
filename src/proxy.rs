//! The reverse proxy: what happens to one client connection, as a sequence of named steps.
//!
//! ```text
//! read request → validate → choose backend and connect → rewrite → forward
//!              → read response → filter response → relay body → log
//! ```
//!
//! Each step is a function below, in that order. A step that fails returns an `Error`;
//! `Error::status` turns it into the response the client gets (400 and friends for a bad
//! request, 501 for a method not forwarded, 502/504 for backend trouble) and the log step
//! runs exactly once per request either way. Message syntax lives in `http`, sockets in
//! `server` and `upstream`, the rotation in `balancer`.
//!
//! Everything forwarded is re-framed here: the backend gets our Content-Length or our
//! chunked coding, never the client's bytes copied blindly, so a request can never smuggle a
//! second one past us (RFC 9112 §11.2).

use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use crate::balancer::{Balancer, HealthPolicy};
use crate::config::{Backend, Config};
use crate::error::{Error, ParseError, Result, Side};
use crate::health::{self, ProbeSettings};
use crate::http::body::{
    copy_body, request_framing, response_framing, BodyProgress, BodyReader, Framing,
};
use crate::http::parse::{self, Limits};
use crate::http::serialize::{self, ChunkedWriter};
use crate::http::{remove_hop_by_hop, text_response, Request, Response, Version};
use crate::server::{self, ClientStream};
use crate::upstream::Connection;

/// Request bodies up to this size are read whole before a backend is contacted (see
/// `read_body`); larger ones are streamed. Bytes.
pub const REQUEST_BUFFER: usize = 64 * 1024;
/// Read buffer for a client connection.
pub const CLIENT_BUFFER: usize = 16 * 1024;
/// Write buffer toward the client: the response head and the first body bytes leave in one
/// write.
pub const CLIENT_WRITE_BUFFER: usize = 64 * 1024;
/// Most interim (1xx) responses accepted before the final one.
pub const MAX_INTERIM_RESPONSES: usize = 8;
/// What we add to Via (RFC 9110 §7.6.3): protocol version and pseudonym.
pub const VIA: &str = "1.1 relevo";

/// A running proxy's shared state: the configuration and the round-robin position.
pub struct Proxy {
    config: Config,
    balancer: Arc<Balancer>,
    limits: Limits,
    /// Limits on a backend's response head.
    response_limits: Limits,
}

/// Binds the configured address, prints `listening on IP:PORT` on stdout, and serves
/// forever.
///
/// # Errors
/// `Error::Startup` when the address cannot be bound.
pub fn run(config: Config) -> Result<()> {
    let listener = server::bind(&config.listen)?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Startup(format!("cannot read the listening address: {e}")))?;
    println!("listening on {addr}");
    let backends: Vec<String> = config.backends.iter().map(Backend::authority).collect();
    log::info!(
        "proxy listening on {addr}, backends in round-robin order: {}",
        backends.join(", ")
    );
    let max_connections = config.max_connections;
    let proxy = Arc::new(Proxy::new(config));
    if let Some(path) = &proxy.config.health_check {
        let settings = ProbeSettings {
            path: path.clone(),
            interval: proxy.config.health_interval,
            connect_timeout: proxy.config.connect_timeout,
            io_timeout: proxy.config.upstream_timeout,
        };
        health::spawn(Arc::clone(&proxy.balancer), settings)
            .map_err(|e| Error::Startup(format!("cannot start the health checks: {e}")))?;
        log::info!(
            "health checks: GET {path} every {:?}",
            proxy.config.health_interval
        );
    }
    server::serve(listener, max_connections, move |stream, peer| {
        proxy.handle_connection(stream, peer);
    });
    Ok(())
}

/// What one request turned into, for the log line.
#[derive(Debug, Default)]
struct Exchange {
    /// The backend that answered (or the last one tried).
    backend: Option<String>,
    /// The status sent to the client, once known.
    status: Option<u16>,
    /// Body bytes sent to the client.
    bytes: u64,
    /// Whether any byte of the response has been sent (then no error page can follow).
    head_sent: bool,
    /// Whether the request body has been read to its end.
    body_consumed: bool,
    /// Whether the connection can carry another request.
    keep_alive: bool,
}

impl Proxy {
    /// A proxy for `config`.
    pub fn new(config: Config) -> Self {
        let limits = Limits {
            max_line: config.max_request_line,
            max_header_bytes: config.max_header_bytes,
            max_headers: config.max_headers,
        };
        let response_limits = Limits {
            max_line: config.max_response_header_bytes,
            max_header_bytes: config.max_response_header_bytes,
            max_headers: config.max_headers,
        };
        Proxy {
            response_limits,
            balancer: Arc::new(Balancer::new(
                config.backends.clone(),
                HealthPolicy {
                    max_fails: config.max_fails,
                    fail_timeout: config.fail_timeout,
                },
            )),
            config,
            limits,
        }
    }

    /// Serves one client connection: requests are read and answered in order until the
    /// client closes, asks to close, times out, or sends something that breaks framing.
    pub fn handle_connection(&self, stream: TcpStream, peer: SocketAddr) {
        let timeout = self.config.client_timeout;
        let stream = match ClientStream::new(stream, timeout) {
            Ok(stream) => stream,
            Err(e) => {
                log::warn!("{peer}: cannot configure the connection: {e}");
                return;
            }
        };
        let mut client = BufReader::with_capacity(CLIENT_BUFFER, stream);
        loop {
            let started = Instant::now();
            // Step 1: read the request head, all of it within client_timeout (idle wait
            // included). A clean close or an idle timeout between requests ends the
            // connection without a log line: there was no request.
            client.get_mut().set_deadline(Some(started + timeout));
            let head = parse::read_request(&mut client, &self.limits);
            client.get_mut().set_deadline(None);
            let request = match head {
                Ok(Some(request)) => request,
                Ok(None) => return,
                Err(e) => {
                    let mut exchange = Exchange::default();
                    self.send_error(client.get_ref().tcp(), &e, &mut exchange, None);
                    self.log_request(peer, None, &exchange, started, Some(&e));
                    return;
                }
            };
            let mut exchange = Exchange::default();
            let result = self.serve_request(&mut client, peer, &request, &mut exchange);
            if let Err(e) = &result {
                self.send_error(client.get_ref().tcp(), e, &mut exchange, Some(&request));
            }
            self.log_request(
                peer,
                Some(&request),
                &exchange,
                started,
                result.as_ref().err(),
            );
            if !exchange.keep_alive {
                return;
            }
        }
    }

    /// Steps 2 to 8 for one request whose head has been read.
    fn serve_request(
        &self,
        client: &mut BufReader<ClientStream>,
        peer: SocketAddr,
        request: &Request,
        exchange: &mut Exchange,
    ) -> Result<()> {
        let framing = self.validate(request)?;
        let body = read_body(client, request, framing, self.config.max_body_size)?;
        exchange.body_consumed = body.is_complete();
        let (mut upstream, response) =
            self.exchange_with_backends(client, peer, request, &body, exchange)?;
        let upstream_framing = response_framing(&request.method, &response)
            .map_err(|e| Error::Parse(Side::Backend, e))?;
        let keep_alive = request.keep_alive();
        let (response, client_framing, keep_alive) =
            filter_response(response, request.version, upstream_framing, keep_alive);
        exchange.status = Some(response.status);
        exchange.keep_alive = keep_alive;
        relay_response(
            &mut upstream,
            client.get_ref().tcp(),
            &response,
            upstream_framing,
            client_framing,
            exchange,
        )
    }

    /// Step 2: is this a request we forward, and how is its body framed?
    fn validate(&self, request: &Request) -> Result<Framing> {
        // Tunnels (CONNECT) are out of scope for a reverse proxy: 501 whatever `methods` says.
        let forwarded = request.method != "CONNECT"
            && self
                .config
                .methods
                .as_ref()
                .map_or(true, |allowed| allowed.contains(&request.method));
        if !forwarded {
            return Err(Error::MethodNotForwarded(request.method.clone()));
        }
        let framing = request_framing(request).map_err(|e| Error::Parse(Side::Client, e))?;
        if let Framing::Length(n) = framing {
            if n > self.config.max_body_size {
                return Err(Error::Parse(Side::Client, ParseError::BodyTooLarge));
            }
        }
        Ok(framing)
    }

    /// Steps 3 to 6, with retries: choose a backend and connect, rewrite, forward, read
    /// the response head.
    ///
    /// An attempt that fails is counted against its backend (passive health, see
    /// `balancer`) and the request goes to the next backend in the plan, each at most once,
    /// when that cannot do harm: when nothing reached the backend (it could not be
    /// connected to), or when the method is idempotent (RFC 9110 §9.2.2) and there is no body
    /// to replay, and nothing has been sent to the client yet. A POST is never sent twice.
    fn exchange_with_backends(
        &self,
        client: &mut BufReader<ClientStream>,
        peer: SocketAddr,
        request: &Request,
        body: &RequestBody,
        exchange: &mut Exchange,
    ) -> Result<(Connection, Response)> {
        let replayable = is_idempotent(&request.method) && body.is_complete();
        let mut last_error = Error::NoBackend("no backend configured".to_string());
        for id in self.balancer.plan(Instant::now()) {
            let backend = &self.balancer.backends()[id];
            exchange.backend = Some(backend.authority());
            let mut upstream = match Connection::open(
                backend,
                self.config.connect_timeout,
                self.config.upstream_timeout,
            ) {
                Ok(conn) => conn,
                Err(e) => {
                    self.backend_failed(id, &format!("unreachable: {e}"));
                    last_error = Error::NoBackend(format!("{backend}: {e}"));
                    continue;
                }
            };
            let outgoing = rewrite_request(request, peer, backend, body.outgoing_framing());
            log::debug!("{peer} → {backend}:\n{}", head_text_request(&outgoing));
            let attempt = forward(
                &mut upstream,
                &outgoing,
                client,
                body,
                self.config.max_body_size,
            )
            .and_then(|()| {
                exchange.body_consumed = true;
                read_final_response(
                    &mut upstream,
                    client.get_ref().tcp(),
                    request,
                    exchange,
                    &self.response_limits,
                )
            });
            match attempt {
                Ok(response) => {
                    log::debug!("{backend} → {peer}:\n{}", head_text_response(&response));
                    if self.balancer.record_success(id) {
                        log::info!("backend {backend} is up again");
                    }
                    return Ok((upstream, response));
                }
                Err(e @ (Error::Io(Side::Backend, _) | Error::Parse(Side::Backend, _))) => {
                    self.backend_failed(id, &e.to_string());
                    if !replayable || exchange.head_sent {
                        return Err(e);
                    }
                    log::warn!(
                        "{peer} \"{}\" failed on {backend} ({e}); trying the next backend",
                        request.request_line()
                    );
                    last_error = e;
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_error)
    }

    /// Counts a failed attempt against backend `id` and logs it, and logs when that marks
    /// the backend down.
    fn backend_failed(&self, id: usize, why: &str) {
        let backend = &self.balancer.backends()[id];
        log::warn!("backend {backend}: {why}");
        if self.balancer.record_failure(id, Instant::now(), why) {
            log::warn!(
                "backend {backend} marked down for {:?}",
                self.config.fail_timeout
            );
        }
    }

    /// Sends the error response for `e`, unless a response has already begun or the error
    /// allows none. Decides whether the connection survives.
    fn send_error(
        &self,
        stream: &TcpStream,
        e: &Error,
        exchange: &mut Exchange,
        request: Option<&Request>,
    ) {
        let keep_alive = request.is_some_and(Request::keep_alive)
            && exchange.body_consumed
            && !exchange.head_sent
            && !e.breaks_framing();
        exchange.keep_alive = keep_alive;
        let Some(status) = e.status() else {
            exchange.keep_alive = false;
            return;
        };
        if exchange.head_sent {
            // Part of a response is out: the only honest signal left is closing the
            // connection, so the client sees a truncated message, never a complete-looking one.
            exchange.keep_alive = false;
            return;
        }
        let (mut resp, body) = text_response(status, e.reply_text());
        resp.headers.append("Via", VIA);
        if !keep_alive {
            resp.headers.append("Connection", "close");
        }
        let is_head = request.is_some_and(|r| r.method == "HEAD");
        let mut bytes = serialize::response_head_bytes(&resp);
        if !is_head {
            bytes.extend_from_slice(&body);
        }
        let mut out = stream;
        if out.write_all(&bytes).is_ok() {
            exchange.status = Some(status);
            exchange.bytes = if is_head { 0 } else { body.len() as u64 };
        } else {
            exchange.keep_alive = false;
        }
    }

    /// Step 9: one line per request, on success and on error.
    fn log_request(
        &self,
        peer: SocketAddr,
        request: Option<&Request>,
        exchange: &Exchange,
        started: Instant,
        error: Option<&Error>,
    ) {
        let line = request.map_or_else(|| "-".to_string(), Request::request_line);
        let backend = exchange.backend.as_deref().unwrap_or("-");
        let status = exchange
            .status
            .map_or_else(|| "-".to_string(), |s| s.to_string());
        let ms = started.elapsed().as_millis();
        let bytes = exchange.bytes;
        match error {
            None => log::info!("{peer} \"{line}\" -> {backend} {status} {bytes} B {ms} ms"),
            Some(e) => {
                log::warn!("{peer} \"{line}\" -> {backend} {status} {bytes} B {ms} ms ({e})")
            }
        }
    }
}

/// Methods whose effect is the same however many times they are sent (RFC 9110 §9.2.2).
fn is_idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
    )
}

fn expects_continue(request: &Request) -> bool {
    request.version == Version::Http11 && request.headers.has_token("expect", "100-continue")
}

/// Step 4: the request as the backend should see it (RFC 9110 §7.6).
///
/// - origin-form target (an absolute-form target is split into Host and path, RFC 9112
///   §3.2.2: its authority wins over any Host field);
/// - `Host` is the backend's `host:port`, and the client's host goes in `X-Forwarded-Host`;
/// - hop-by-hop fields and the fields named in Connection are removed (§7.6.1), and so is
///   Expect, which we answered ourselves;
/// - the client's address is appended to `X-Forwarded-For`; `X-Forwarded-Proto: http`;
/// - `Via: 1.1 relevo` is appended (§7.6.3);
/// - the body is re-framed by us: our own Content-Length or `Transfer-Encoding: chunked`;
/// - `Connection: close`, since each backend connection carries one request.
pub fn rewrite_request(
    request: &Request,
    peer: SocketAddr,
    backend: &Backend,
    framing: Framing,
) -> Request {
    let (host, target) = match parse::absolute_form_parts(&request.target) {
        Some((authority, origin_form)) => (authority.to_string(), origin_form),
        None => (
            request.headers.get("host").unwrap_or_default().to_string(),
            request.target.clone(),
        ),
    };
    let mut out = Request::new(&request.method, &target);
    out.headers.append("Host", backend.authority());
    let mut rest = request.headers.clone();
    remove_hop_by_hop(&mut rest);
    for name in [
        "host",
        "expect",
        "content-length",
        "x-forwarded-host",
        "x-forwarded-proto",
    ] {
        rest.remove(name);
    }
    let forwarded_for = match rest
        .get_all("x-forwarded-for")
        .collect::<Vec<_>>()
        .join(", ")
    {
        prior if prior.is_empty() => peer.ip().to_string(),
        prior => format!("{prior}, {}", peer.ip()),
    };
    rest.remove("x-forwarded-for");
    for (name, value) in rest.iter() {
        out.headers.append(name, value);
    }
    out.headers.append("X-Forwarded-For", forwarded_for);
    out.headers.append("X-Forwarded-Host", host);
    out.headers.append("X-Forwarded-Proto", "http");
    out.headers
        .append("Via", format!("{} relevo", version_number(request.version)));
    match framing {
        Framing::Length(n) => out.headers.append("Content-Length", n.to_string()),
        Framing::Chunked => out.headers.append("Transfer-Encoding", "chunked"),
        Framing::Empty | Framing::Close => {}
    }
    out.headers.append("Connection", "close");
    out
}

/// `received-protocol` for Via: the version the message arrived with, without "HTTP/".
fn version_number(v: Version) -> &'static str {
    match v {
        Version::Http10 => "1.0",
        Version::Http11 => "1.1",
    }
}

/// A request body as far as it was read before any backend was contacted.
struct RequestBody {
    /// The framing the client used.
    framing: Framing,
    /// The body, or its first `REQUEST_BUFFER` bytes.
    start: Vec<u8>,
    /// Where reading stopped when the body is bigger than `start`; None when `start` is all
    /// of it.
    rest: Option<BodyProgress>,
}

impl RequestBody {
    /// Whether the whole body is in memory (and so can be sent again).
    fn is_complete(&self) -> bool {
        self.rest.is_none()
    }

    /// How the backend gets it: a body read whole goes with our own Content-Length, a
    /// streamed one with the framing it came with (re-encoded by us).
    fn outgoing_framing(&self) -> Framing {
        match (self.framing, &self.rest) {
            (Framing::Empty, _) => Framing::Empty,
            (_, None) => Framing::Length(self.start.len() as u64),
            (framing, Some(_)) => framing,
        }
    }
}

/// Step 2b: read the request body, or its first `REQUEST_BUFFER` bytes, before any backend
/// is contacted. A small body that is malformed, too large or cut short is refused before a
/// backend sees any of it (as nginx does by buffering), and a small body can be replayed on
/// another backend. `Expect: 100-continue` is answered here, since we are about to read.
fn read_body(
    client: &mut BufReader<ClientStream>,
    request: &Request,
    framing: Framing,
    max_body: u64,
) -> Result<RequestBody> {
    let mut body = RequestBody {
        framing,
        start: Vec::new(),
        rest: None,
    };
    if framing == Framing::Empty {
        return Ok(body);
    }
    if expects_continue(request) {
        // RFC 9110 §10.1.1: we answer the expectation ourselves and do not forward Expect.
        client
            .get_ref()
            .tcp()
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .map_err(|e| Error::Io(Side::Client, e))?;
    }
    let mut reader = BodyReader::new(&mut *client, framing);
    let mut limited = (&mut reader).take(REQUEST_BUFFER as u64 + 1);
    copy_body(
        &mut limited,
        &mut body.start,
        Side::Client,
        Side::Client,
        max_body,
    )?;
    if !reader.is_done() {
        body.rest = Some(reader.progress());
    }
    Ok(body)
}

/// Step 5: send the rewritten head and the body to the backend: what was read already, then
/// the rest streamed from the client, re-framed by us.
fn forward(
    upstream: &mut Connection,
    outgoing: &Request,
    client: &mut BufReader<ClientStream>,
    body: &RequestBody,
    max_body: u64,
) -> Result<()> {
    let backend_err = |e| Error::Io(Side::Backend, e);
    let mut out = BufWriter::with_capacity(CLIENT_WRITE_BUFFER, upstream.writer());
    serialize::write_request_head(&mut out, outgoing).map_err(backend_err)?;
    let Some(progress) = body.rest else {
        out.write_all(&body.start).map_err(backend_err)?;
        return out.flush().map_err(backend_err);
    };
    let mut rest = BodyReader::resume(client, progress);
    let limit = max_body.saturating_sub(body.start.len() as u64);
    if body.framing == Framing::Chunked {
        let mut chunked = ChunkedWriter::new(&mut out);
        chunked.write_all(&body.start).map_err(backend_err)?;
        copy_body(&mut rest, &mut chunked, Side::Client, Side::Backend, limit)?;
        chunked.finish().map_err(backend_err)?;
    } else {
        out.write_all(&body.start).map_err(backend_err)?;
        copy_body(&mut rest, &mut out, Side::Client, Side::Backend, limit)?;
    }
    out.flush().map_err(backend_err)
}

/// Step 6: read the backend's response head. Interim 1xx responses are relayed to HTTP/1.1
/// clients and dropped for HTTP/1.0 ones (RFC 9110 §15.2); a `101` is refused, since we never
/// forward Upgrade.
fn read_final_response(
    upstream: &mut Connection,
    client: &TcpStream,
    request: &Request,
    exchange: &mut Exchange,
    limits: &Limits,
) -> Result<Response> {
    for _ in 0..=MAX_INTERIM_RESPONSES {
        let response = parse::read_response(upstream.reader(), limits)?;
        if !response.is_interim() {
            return Ok(response);
        }
        if response.status == 101 {
            return Err(Error::Parse(Side::Backend, ParseError::BadStatusLine));
        }
        if request.version == Version::Http11 {
            let mut interim = response;
            interim.version = Version::Http11;
            let mut out = client;
            serialize::write_response_head(&mut out, &interim)
                .map_err(|e| Error::Io(Side::Client, e))?;
            exchange.head_sent = true;
        }
    }
    Err(Error::Parse(Side::Backend, ParseError::TooManyHeaders))
}

/// Step 7: the response as the client should see it, the framing we send it with, and
/// whether the connection stays open afterwards.
///
/// Hop-by-hop fields go (RFC 9110 §7.6.1), `Via` is added (§7.6.3). A body of known length
/// keeps its Content-Length. A chunked or close-delimited body goes to an HTTP/1.1 client
/// chunked (so the connection can stay open), and to an HTTP/1.0 client close-delimited.
pub fn filter_response(
    mut response: Response,
    client_version: Version,
    upstream: Framing,
    keep_alive: bool,
) -> (Response, Framing, bool) {
    let received = response.version;
    remove_hop_by_hop(&mut response.headers);
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
    response
        .headers
        .append("Via", format!("{} relevo", version_number(received)));
    match (keep_alive, client_version) {
        (false, _) => response.headers.append("Connection", "close"),
        (true, Version::Http10) => response.headers.append("Connection", "keep-alive"),
        (true, Version::Http11) => {}
    }
    (response, framing, keep_alive)
}

/// Step 8: write the head and stream the body from the backend to the client. A body cut
/// short by the backend ends the client connection without a last chunk, so the client
/// sees the truncation.
fn relay_response(
    upstream: &mut Connection,
    client: &TcpStream,
    response: &Response,
    upstream_framing: Framing,
    client_framing: Framing,
    exchange: &mut Exchange,
) -> Result<()> {
    let client_err = |e| Error::Io(Side::Client, e);
    let mut out = BufWriter::with_capacity(CLIENT_WRITE_BUFFER, client);
    serialize::write_response_head(&mut out, response).map_err(client_err)?;
    exchange.head_sent = true;
    let mut body = BodyReader::new(upstream.reader(), upstream_framing);
    exchange.bytes = match client_framing {
        Framing::Chunked => {
            let mut chunked = ChunkedWriter::new(&mut out);
            let n = copy_body(
                &mut body,
                &mut chunked,
                Side::Backend,
                Side::Client,
                u64::MAX,
            )?;
            chunked.finish().map_err(client_err)?;
            n
        }
        _ => copy_body(&mut body, &mut out, Side::Backend, Side::Client, u64::MAX)?,
    };
    out.flush().map_err(client_err)
}

fn head_text_request(request: &Request) -> String {
    let mut bytes = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = serialize::write_request_head(&mut bytes, request);
    String::from_utf8_lossy(&bytes).trim_end().to_string()
}

fn head_text_response(response: &Response) -> String {
    String::from_utf8_lossy(&serialize::response_head_bytes(response))
        .trim_end()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse::read_request;

    fn backend() -> Backend {
        Backend {
            host: "10.0.0.7".to_string(),
            port: 8081,
        }
    }

    fn peer() -> SocketAddr {
        "192.0.2.9:50000".parse().unwrap()
    }

    fn req(raw: &str) -> Request {
        read_request(&mut raw.as_bytes(), &Limits::default())
            .unwrap()
            .unwrap()
    }

    #[test]
    fn rewrite_sets_host_and_forwarding_fields() {
        let r = req("GET /a?b HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-For: 203.0.113.1\r\nAccept: */*\r\n\r\n");
        let out = rewrite_request(&r, peer(), &backend(), Framing::Empty);
        assert_eq!(out.target, "/a?b");
        assert_eq!(out.headers.iter().next(), Some(("Host", "10.0.0.7:8081")));
        assert_eq!(out.headers.get("x-forwarded-host"), Some("shop.example"));
        assert_eq!(
            out.headers.get("x-forwarded-for"),
            Some("203.0.113.1, 192.0.2.9")
        );
        assert_eq!(out.headers.get("x-forwarded-proto"), Some("http"));
        assert_eq!(out.headers.get("via"), Some("1.1 relevo"));
        assert_eq!(out.headers.get("accept"), Some("*/*"));
        assert_eq!(out.headers.get("connection"), Some("close"));
        assert!(!out.headers.contains("content-length"));
    }

    #[test]
    fn rewrite_turns_absolute_form_into_origin_form() {
        let r = req("GET http://Other.example:81/x?y HTTP/1.1\r\nHost: ignored\r\n\r\n");
        let out = rewrite_request(&r, peer(), &backend(), Framing::Empty);
        assert_eq!(out.target, "/x?y");
        assert_eq!(
            out.headers.get("x-forwarded-host"),
            Some("Other.example:81")
        );
    }

    #[test]
    fn rewrite_drops_hop_by_hop_fields_and_reframes_the_body() {
        let r = req("POST / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: 5\r\nTE: trailers\r\nUpgrade: h2c\r\nProxy-Connection: x\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n");
        let out = rewrite_request(&r, peer(), &backend(), Framing::Chunked);
        for gone in [
            "x-secret",
            "keep-alive",
            "te",
            "upgrade",
            "proxy-connection",
            "expect",
        ] {
            assert!(!out.headers.contains(gone), "{gone} was forwarded");
        }
        assert_eq!(
            out.headers.get_all("transfer-encoding").collect::<Vec<_>>(),
            ["chunked"]
        );
        assert_eq!(
            out.headers.get_all("connection").collect::<Vec<_>>(),
            ["close"]
        );
        let sized = rewrite_request(&r, peer(), &backend(), Framing::Length(7));
        assert_eq!(sized.headers.get("content-length"), Some("7"));
        assert!(!sized.headers.contains("transfer-encoding"));
    }

    #[test]
    fn filter_keeps_known_lengths_and_rechunks_the_rest() {
        let mut resp = Response::new(200);
        resp.headers.append("Content-Length", "5");
        resp.headers.append("Connection", "X-Internal");
        resp.headers.append("X-Internal", "1");
        let (out, framing, keep) = filter_response(resp, Version::Http11, Framing::Length(5), true);
        assert_eq!((framing, keep), (Framing::Length(5), true));
        assert!(!out.headers.contains("x-internal"));
        assert!(!out.headers.contains("connection"));
        assert_eq!(out.headers.get("via"), Some("1.1 relevo"));

        let mut closing = Response::new(200);
        closing.version = Version::Http10;
        let (out, framing, keep) =
            filter_response(closing.clone(), Version::Http11, Framing::Close, true);
        assert_eq!((framing, keep), (Framing::Chunked, true));
        assert_eq!(out.headers.get("transfer-encoding"), Some("chunked"));
        assert_eq!(out.headers.get("via"), Some("1.0 relevo"));
        assert_eq!(out.version, Version::Http11);

        let (out, framing, keep) =
            filter_response(closing, Version::Http10, Framing::Chunked, true);
        assert_eq!((framing, keep), (Framing::Close, false));
        assert_eq!(out.headers.get("connection"), Some("close"));
    }

    #[test]
    fn http_1_0_keep_alive_is_answered_in_kind() {
        let mut resp = Response::new(200);
        resp.headers.append("Content-Length", "0");
        let (out, _, keep) = filter_response(resp, Version::Http10, Framing::Length(0), true);
        assert!(keep);
        assert_eq!(out.headers.get("connection"), Some("keep-alive"));
    }
}
