//! The backend side of the proxy (see `proxy`): read the request body (step 3), then choose
//! a backend, connect or reuse a pooled connection, send the rewritten request and read the
//! response head (steps 5 to 8), retrying on the next backend when that is safe. Sockets are
//! `upstream`'s, the rotation and health `balancer`'s.

use std::io::{self, BufReader, BufWriter, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::balancer::{Affinity, Balancer, Lease};
use super::request_body::RequestBody;
use super::rewrite::{add_validators, drop_underscored_fields, rewrite_request};
use super::stats::Counters;
use super::upstream::Pool;
use super::{Sent, CLIENT_WRITE_BUFFER};
use crate::error::{is_timeout, Error, ParseError, Result, Side};
use crate::http::authority::absolute_form_parts;
use crate::http::body::{copy_body, BodyProgress, BodyReader, Framing};
use crate::http::parse::{self, Limits};
use crate::http::request_id::RequestId;
use crate::http::serialize::{self, ChunkedWriter};
use crate::http::{Request, Response, Version};
use crate::proxy::config::Config;
use crate::proxy::upstream::{Connection, Pending};
use crate::server::ClientStream;

/// One pool of backends and what is kept about them: the choice, health, weights, places
/// in rotation and requests in flight (`balancer`), the idle keep-alive connections
/// (`pool`), each backend's `host:port` as it goes in `Host`, its label in the logs and its
/// figures for the status page, and the limits on their response heads.
pub(super) struct Upstreams {
    /// The pool's name: `default` for the `backend` lines.
    pub(super) name: String,
    pub(super) balancer: Arc<Balancer>,
    /// Idle keep-alive connections to the backends.
    pub(super) pool: Pool<Connection>,
    /// Each backend's `host:port`, by id, formatted once.
    pub(super) authorities: Vec<String>,
    /// Each backend's name in the logs, the access log and the status page: its `host:port`
    /// in the default pool, `pool/host:port` in another.
    pub(super) labels: Vec<Arc<str>>,
    /// Each backend's figures for the status page.
    pub(super) counters: Vec<Counters>,
    /// Limits on a backend's response head.
    pub(super) limits: Limits,
}

impl Upstreams {
    /// Steps 5 to 8, with retries: choose a backend and connect, rewrite (adding the cache's
    /// validators when it is validating a stale entry), forward, read the response head.
    ///
    /// An attempt that fails is counted against its backend (passive health, see
    /// `balancer`) and the request goes to the next backend in the plan, each at most once,
    /// when that cannot do harm: when nothing reached the backend (it could not be
    /// connected to), or when the method is idempotent (RFC 9110 §9.2.2) and there is no body
    /// to replay, and nothing has been sent to the client yet. A POST is never sent twice.
    ///
    /// Each attempt's response head must arrive whole within `upstream_timeout`, and all the
    /// attempts together end within `upstream_total_timeout` (504 after it): retries never
    /// multiply the wait by the number of backends.
    pub(super) fn exchange(
        &self,
        config: &Config,
        job: &mut Job<'_>,
        sent: &mut Sent,
    ) -> Result<Upstream> {
        let replayable = is_idempotent(&job.request.method) && job.body.is_complete();
        let give_up = Instant::now() + config.upstream_total_timeout;
        let mut last_error = Error::NoBackend("every backend is drained or disabled".to_string());
        let origin_form = absolute_form_parts(&job.request.target).map(|(_, target)| target);
        let affinity = Affinity {
            client: job.peer.ip(),
            uri: origin_form.as_deref().unwrap_or(&job.request.target),
        };
        'backends: for lease in self.balancer.plan(Instant::now(), &affinity) {
            if Instant::now() >= give_up {
                return Err(total_timeout());
            }
            let id = lease.id();
            let backend = &self.labels[id];
            job.tried = Some(id);
            // Only a request that may be sent twice goes on an idle pooled connection: if
            // the backend closed it meanwhile, the request is sent again on a fresh one.
            let mut pooled = if replayable {
                self.take_pooled(id)
            } else {
                None
            };
            loop {
                let from_pool = pooled.is_some();
                let conn = match pooled.take() {
                    Some(conn) => conn,
                    None => match self.connect(config, id, give_up) {
                        Ok(conn) => conn,
                        Err(e) => {
                            last_error = e;
                            continue 'backends;
                        }
                    },
                };
                match self.attempt(config, conn, id, job, sent, give_up) {
                    Ok((conn, response, complete)) => {
                        return Ok(Upstream {
                            id,
                            conn,
                            response,
                            complete,
                            lease,
                        })
                    }
                    Err(e) if from_pool && !sent.head && closed_before_answer(&e) => {
                        log::debug!("idle connection to {backend} was closed ({e}); reconnecting");
                    }
                    Err(e @ (Error::Io(Side::Backend, _) | Error::Parse(Side::Backend, _))) => {
                        self.backend_failed(config, id, &e.to_string());
                        if !replayable || sent.head {
                            return Err(e);
                        }
                        log::warn!(
                            "{} \"{}\" failed on {backend} ({e}); trying the next backend",
                            job.peer,
                            job.request.request_line()
                        );
                        last_error = e;
                        continue 'backends;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Err(last_error)
    }

    /// Step 5: a new connection to backend `id`, within `connect_timeout` and what is left
    /// of the request's total time. A failure counts against the backend.
    fn connect(&self, config: &Config, id: usize, give_up: Instant) -> Result<Connection> {
        let backend = &self.balancer.backends()[id];
        let left = give_up.saturating_duration_since(Instant::now());
        let timeout = config.connect_timeout.min(left).max(MIN_CONNECT_TIMEOUT);
        Connection::open(backend, timeout, config.upstream_timeout).map_err(|e| {
            self.backend_failed(config, id, &format!("unreachable: {e}"));
            Error::NoBackend(format!("{}: {e}", self.labels[id]))
        })
    }

    /// Steps 6 to 8 on one connection: rewrite, forward, read the response head (within
    /// `upstream_timeout` and `give_up`). A backend that answers before taking the whole body
    /// is heard (see `forward`); any well-formed answer counts as a success for its health.
    /// Returns the connection, the response head, and whether the whole request was sent.
    fn attempt(
        &self,
        config: &Config,
        mut conn: Connection,
        id: usize,
        job: &mut Job<'_>,
        sent: &mut Sent,
        give_up: Instant,
    ) -> Result<(Connection, Response, bool)> {
        let backend = &self.labels[id];
        let outgoing = self.outgoing(config, id, job);
        log::debug!(
            "{} → {backend}:\n{}",
            job.peer,
            head_text_request(&outgoing)
        );
        let forwarded = forward(
            &mut conn,
            &outgoing,
            job.client.as_deref_mut(),
            job.body,
            config,
        );
        let complete = matches!(forwarded, Ok(Forwarded::Whole));
        if complete {
            job.body_sent = true;
        }
        let deadline = (Instant::now() + config.upstream_timeout).min(give_up);
        let client = job.client.as_ref().map(|c| c.get_ref().tcp());
        let limits = &self.limits;
        let response = match forwarded {
            Ok(_) => read_final_response(&mut conn, client, job.request, sent, limits, deadline),
            // A backend may answer and close before taking the whole body (a 413, a 401, a
            // 404 on an upload); its answer is what the client must get.
            Err(e @ Error::Io(Side::Backend, _)) if conn.pending() == Pending::Bytes => {
                log::debug!("{backend} answered before taking the whole request ({e})");
                read_final_response(&mut conn, client, job.request, sent, limits, deadline)
                    .map_err(|_| e)
            }
            Err(e) => Err(e),
        }?;
        log::debug!(
            "{backend} → {}:\n{}",
            job.peer,
            head_text_response(&response)
        );
        // Any well-formed answer is a working backend (nginx's max_fails counts only errors
        // and timeouts), whatever its status.
        if self.balancer.record_success(id) {
            log::info!("backend {backend} is up again");
        }
        Ok((conn, response, complete))
    }

    /// Step 6: the request as backend `id` gets it, with the cache's validators and without
    /// underscored fields (unless allowed).
    fn outgoing(&self, config: &Config, id: usize, job: &Job<'_>) -> Request {
        let mut outgoing = rewrite_request(
            job.request,
            job.peer,
            &self.authorities[id],
            job.request_id,
            job.body.outgoing_framing(),
            config.upstream_keepalive > 0,
        );
        if let Some(conditionals) = job.validators {
            add_validators(&mut outgoing, conditionals);
        }
        if !config.underscores_in_headers {
            drop_underscored_fields(&mut outgoing.headers);
        }
        outgoing
    }

    /// After a response was relayed: a connection whose response was read to its end, that
    /// the backend did not ask to close, and that holds nothing unread, goes back to the pool
    /// for the next request, unless its backend has been drained or disabled meanwhile.
    pub(super) fn release(&self, id: usize, mut conn: Connection, reusable: bool) {
        if !reusable || !self.balancer.in_rotation(id) {
            return;
        }
        match conn.park() {
            Pending::Quiet => self.pool.put(id, conn, Instant::now()),
            Pending::Bytes => self.stray_bytes(id),
            Pending::Closed => {}
        }
    }

    /// The freshest idle connection to backend `id` that is still quiet: one the backend
    /// closed meanwhile is dropped, and one with bytes on it is dropped and reported.
    fn take_pooled(&self, id: usize) -> Option<Connection> {
        while let Some(mut conn) = self.pool.take(id, Instant::now()) {
            match conn.unpark() {
                Pending::Quiet => return Some(conn),
                Pending::Bytes => self.stray_bytes(id),
                Pending::Closed => {}
            }
        }
        None
    }

    /// Reports a backend that sent bytes after a complete response (a buggy or hostile
    /// application); the connection they came on is closed, never reused, so they can never
    /// become the next client's response.
    fn stray_bytes(&self, id: usize) {
        let backend = &self.labels[id];
        log::warn!(
            "backend {backend} sent bytes after a complete response; \
             that connection is closed, not reused"
        );
    }

    /// Closes idle pooled connections that their backend closed or wrote to, those idle
    /// past `upstream_idle_timeout`, and any left to a backend drained or disabled (one a
    /// request gave back as the drain began): run every `POOL_REAP_INTERVAL` by a
    /// background thread, so such sockets do not stay open until the next request comes.
    pub(super) fn reap_pool(&self) {
        let closed = self.pool.reap(Instant::now(), |id, conn| {
            self.balancer.in_rotation(id) && conn.look() == Pending::Quiet
        });
        if closed > 0 {
            log::debug!("closed {closed} idle backend connections");
        }
    }

    /// Closes the idle pooled connections to backend `id` (it is being drained or disabled);
    /// returns how many.
    pub(super) fn close_idle(&self, id: usize) -> usize {
        self.pool.clear(id)
    }

    /// Counts a failed attempt against backend `id` and logs it, and logs when that marks
    /// the backend down.
    fn backend_failed(&self, config: &Config, id: usize, why: &str) {
        let backend = &self.labels[id];
        log::warn!("backend {backend}: {why}");
        if self.balancer.record_failure(id, Instant::now(), why) {
            log::warn!(
                "backend {backend} marked down for {:?}",
                config.fail_timeout
            );
        }
    }
}

/// What steps 5 to 8 work from: the client's connection (its body may still be streaming
/// in; none for a background refresh, which has no client and no body), the request, its
/// body as far as it was read, and the validators of a stale entry; and what they did that
/// the record needs whether they succeed or fail.
pub(super) struct Job<'a> {
    pub(super) client: Option<&'a mut BufReader<ClientStream>>,
    pub(super) peer: SocketAddr,
    pub(super) request: &'a Request,
    /// The request's id, sent on as `X-Request-Id`.
    pub(super) request_id: RequestId,
    pub(super) body: &'a RequestBody,
    pub(super) validators: Option<&'a [(String, String)]>,
    /// The backend tried last (the one that answered, on success).
    pub(super) tried: Option<usize>,
    /// Whether the request body was sent whole, so none of it is left on the client's
    /// connection.
    pub(super) body_sent: bool,
}

/// The shortest connect timeout tried, when little of `upstream_total_timeout` is left (a
/// zero `Duration` is refused by `connect_timeout`).
const MIN_CONNECT_TIMEOUT: Duration = Duration::from_millis(1);

/// The error when `upstream_total_timeout` has passed: a backend timeout (504).
fn total_timeout() -> Error {
    let why = "upstream_total_timeout passed before a backend answered";
    Error::Io(Side::Backend, io::Error::new(io::ErrorKind::TimedOut, why))
}

/// A backend connection whose response head has been read.
pub(super) struct Upstream {
    /// Which backend (index into the balancer's list).
    pub(super) id: usize,
    pub(super) conn: Connection,
    pub(super) response: Response,
    /// Whether the whole request reached the backend; after an early response it did not,
    /// and the connection cannot carry another request.
    pub(super) complete: bool,
    /// Counts the request in flight on its backend until the answer is relayed (or the
    /// tunnel closed): dropped with the rest, on every path.
    pub(super) lease: Lease,
}

/// How far step 7 got.
#[derive(Debug, PartialEq, Eq)]
enum Forwarded {
    /// The whole request.
    Whole,
    /// The backend began its response before the body was all sent, so we stopped sending.
    Early,
}

/// Whether a failure on a pooled connection means the backend had closed it before our
/// request arrived (reset, broken pipe, end of stream before any byte), the known race of
/// keep-alive connections; a timeout does not qualify.
fn closed_before_answer(e: &Error) -> bool {
    match e {
        Error::Parse(Side::Backend, ParseError::UnexpectedEof) => true,
        Error::Io(Side::Backend, e) => matches!(
            e.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof
        ),
        _ => false,
    }
}

/// Whether the connection can carry another request once this response's body has been
/// read (RFC 9112 §9.3): HTTP/1.1, no `Connection: close`, and a body whose end is known
/// without closing; Content-Length with chunked is read as chunked but not trusted further
/// (RFC 9112 §6.3).
pub(super) fn reusable(response: &Response, framing: Framing) -> bool {
    response.version == Version::Http11
        && !response.headers.has_token("connection", "close")
        && framing != Framing::Close
        && !(response.headers.contains("content-length")
            && response.headers.contains("transfer-encoding"))
}

/// Methods whose effect is the same however many times they are sent (RFC 9110 §9.2.2).
fn is_idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
    )
}

/// Step 7: send the rewritten head and the body to the backend: what was read already, then
/// the rest streamed from the client, re-framed by us, each piece as it arrives.
///
/// A streamed body is watched (see `Watched`): when the backend starts answering before it
/// has taken the whole body, sending stops and its answer is read (RFC 9112 §9.5: "a client
/// sending a message body SHOULD monitor the network connection for an error response while
/// it is transmitting the request").
fn forward(
    upstream: &mut Connection,
    outgoing: &Request,
    client: Option<&mut BufReader<ClientStream>>,
    body: &RequestBody,
    config: &Config,
) -> Result<Forwarded> {
    let backend_err = |e| Error::Io(Side::Backend, e);
    let (Some(progress), Some(client)) = (body.rest, client) else {
        // The whole body is in memory (or there is none, as for a background refresh, the
        // one job without a client): head and body in one write.
        let mut bytes = serialize::request_head_with_room(outgoing, body.start.len());
        bytes.extend_from_slice(&body.start);
        upstream.writer().write_all(&bytes).map_err(backend_err)?;
        return Ok(Forwarded::Whole);
    };
    upstream
        .set_write_timeout(EARLY_RESPONSE_POLL)
        .map_err(backend_err)?;
    let watched = Watched {
        conn: upstream,
        unchecked: 0,
        patience: config.upstream_timeout,
    };
    let mut out = BufWriter::with_capacity(CLIENT_WRITE_BUFFER, watched);
    let result = send_streamed(
        &mut out,
        outgoing,
        client,
        body,
        progress,
        config.max_body_size,
    );
    drop(out);
    upstream
        .set_write_timeout(config.upstream_timeout)
        .map_err(backend_err)?;
    match result {
        Err(Error::Io(Side::Backend, e)) if is_early_answer(&e) => Ok(Forwarded::Early),
        other => other.map(|()| Forwarded::Whole),
    }
}

/// The streamed part of step 7: the head, what was read of the body already, then the rest.
fn send_streamed(
    out: &mut impl Write,
    outgoing: &Request,
    client: &mut BufReader<ClientStream>,
    body: &RequestBody,
    progress: BodyProgress,
    max_body: u64,
) -> Result<()> {
    let backend_err = |e| Error::Io(Side::Backend, e);
    serialize::write_request_head(out, outgoing).map_err(backend_err)?;
    let mut rest = BodyReader::resume(client, progress);
    let limit = max_body.saturating_sub(body.start.len() as u64);
    if body.framing == Framing::Chunked {
        let mut chunked = ChunkedWriter::new(out);
        chunked.write_all(&body.start).map_err(backend_err)?;
        copy_body(&mut rest, &mut chunked, Side::Client, Side::Backend, limit)?;
        chunked
            .finish()
            .and_then(|out| out.flush())
            .map_err(backend_err)
    } else {
        out.write_all(&body.start).map_err(backend_err)?;
        copy_body(&mut rest, out, Side::Client, Side::Backend, limit)?;
        out.flush().map_err(backend_err)
    }
}

/// How long one write of a streamed request body may wait before we look whether the
/// backend has answered instead of reading (it then never will); the writes go on waiting
/// up to `upstream_timeout` in all.
pub const EARLY_RESPONSE_POLL: Duration = Duration::from_secs(1);
/// Body bytes sent between two looks for an early response.
pub const EARLY_RESPONSE_CHECK: usize = 64 * 1024;

/// The backend socket while a streamed body is sent to it. Every `EARLY_RESPONSE_CHECK`
/// bytes, and whenever a write has waited `EARLY_RESPONSE_POLL`, it looks (without waiting)
/// whether the backend has begun to answer; if so, the write fails with `EarlyAnswer` and
/// the caller reads that answer.
struct Watched<'a> {
    conn: &'a Connection,
    /// Bytes written since the last look.
    unchecked: usize,
    /// How long a write may wait in all (`upstream_timeout`).
    patience: Duration,
}

/// The marker error of `Watched`: the backend answered before taking the whole body.
#[derive(Debug)]
struct EarlyAnswer;

impl std::fmt::Display for EarlyAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the backend answered before taking the whole request body")
    }
}

impl std::error::Error for EarlyAnswer {}

fn is_early_answer(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<EarlyAnswer>())
}

impl Watched<'_> {
    fn answered(&self) -> bool {
        self.conn.pending() != Pending::Quiet
    }
}

impl Write for Watched<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.unchecked >= EARLY_RESPONSE_CHECK {
            self.unchecked = 0;
            if self.answered() {
                return Err(io::Error::other(EarlyAnswer));
            }
        }
        let started = Instant::now();
        loop {
            match self.conn.writer().write(buf) {
                Ok(n) => {
                    self.unchecked += n;
                    return Ok(n);
                }
                Err(e) if is_timeout(&e) => {
                    if self.answered() {
                        return Err(io::Error::other(EarlyAnswer));
                    }
                    if started.elapsed() >= self.patience {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Step 8: read the backend's response head, all of it by `deadline` (interim responses
/// included). Interim 1xx responses are relayed to HTTP/1.1
/// clients and dropped for HTTP/1.0 ones (RFC 9110 §15.2), and when there is no client. A `101` is the last response on
/// its connection (§15.2.2), so it is returned as the final one: `tunnel` decides whether it
/// is the switch the client asked for. Either way the backend answered, so its health does
/// not suffer.
fn read_final_response(
    upstream: &mut Connection,
    client: Option<&TcpStream>,
    request: &Request,
    sent: &mut Sent,
    limits: &Limits,
    deadline: Instant,
) -> Result<Response> {
    let mut head = upstream.head_reader(deadline);
    parse::read_final_response(&mut head, limits, |interim| {
        if let (Version::Http11, Some(client)) = (request.version, client) {
            let mut interim = interim;
            interim.version = Version::Http11;
            let mut out = client;
            serialize::write_response_head(&mut out, &interim)
                .map_err(|e| Error::Io(Side::Client, e))?;
            sent.head = true;
        }
        Ok(())
    })
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
    use crate::http::parse::read_response;
    use crate::proxy::config::Backend;
    use std::io::Read;
    use std::net::TcpListener;

    fn response(raw: &str) -> Response {
        read_response(&mut raw.as_bytes(), &Limits::default()).unwrap()
    }

    #[test]
    fn only_a_complete_persistent_answer_leaves_its_connection_reusable() {
        let ok = response("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n");
        assert!(reusable(&ok, Framing::Length(2)));
        let closing = response("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n");
        assert!(!reusable(&closing, Framing::Length(2)));
        let old = response("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n");
        assert!(!reusable(&old, Framing::Length(2)));
        let until_close = response("HTTP/1.1 200 OK\r\n\r\n");
        assert!(!reusable(&until_close, Framing::Close));
        let both =
            response("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(!reusable(&both, Framing::Chunked));
    }

    #[test]
    fn retries_are_for_idempotent_methods_and_pooled_connections_closed_early() {
        for method in ["GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"] {
            assert!(is_idempotent(method), "{method}");
        }
        for method in ["POST", "PATCH", "CONNECT", "get"] {
            assert!(!is_idempotent(method), "{method}");
        }
        let eof = Error::Parse(Side::Backend, ParseError::UnexpectedEof);
        assert!(closed_before_answer(&eof));
        let reset = Error::Io(Side::Backend, io::ErrorKind::ConnectionReset.into());
        assert!(closed_before_answer(&reset));
        let timeout = Error::Io(Side::Backend, io::ErrorKind::TimedOut.into());
        assert!(!closed_before_answer(&timeout));
        let garbage = Error::Parse(Side::Backend, ParseError::BadStatusLine);
        assert!(!closed_before_answer(&garbage));
    }

    #[test]
    fn a_body_being_sent_stops_when_the_backend_answers_and_stops_reading() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let backend: Backend = listener.local_addr().unwrap().to_string().parse().unwrap();
        let (done_tx, done) = std::sync::mpsc::channel::<()>();
        let refusing = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut head = [0u8; 16];
            stream.read_exact(&mut head).unwrap();
            stream
                .write_all(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
            // Neither reads nor closes (until the test is over): the sender's writes would
            // stall once the buffers fill.
            let _ = done.recv_timeout(Duration::from_secs(20));
        });
        let timeout = Duration::from_secs(10);
        let conn = Connection::open(&backend, timeout, timeout).unwrap();
        conn.set_write_timeout(EARLY_RESPONSE_POLL).unwrap();
        let mut watched = Watched {
            conn: &conn,
            unchecked: 0,
            patience: timeout,
        };
        let piece = vec![b'x'; 1 << 20];
        let error = (0..200)
            .find_map(|_| watched.write_all(&piece).err())
            .expect("200 MiB went to a backend that reads nothing");
        assert!(is_early_answer(&error), "{error}");
        assert_eq!(conn.pending(), Pending::Bytes);
        done_tx.send(()).unwrap();
        refusing.join().unwrap();
    }
}
