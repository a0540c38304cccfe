//! The reverse proxy: what happens to one client connection, as a sequence of named steps.
//!
//! ```text
//!  1 read request      2 validate      3 read body (small ones whole)
//!  4 cache lookup ── fresh ──────────────────────────────────────→ serve from cache → 13 log
//!      ├ being stored by another request → read it as it grows ─────────────────→ 13 log
//!      └ miss / stale → 5 choose backend and connect → 6 rewrite → 7 forward
//!                       → 8 read response head   (5–8 retried on the next backend when safe)
//!  9 invalidate → 10 cache the response (a 304 refreshes the entry, served from cache)
//! 11 filter response → 12 relay body (and store it) → 13 log
//!      └ 101 to a WebSocket upgrade → 12 tunnel bytes both ways until closed → 13 log
//! ```
//!
//! `handle_connection` is the loop (1, then the steps, then 13, once per request, success
//! or not); `serve_request` and `answer` call the steps in order. Each step is a function of
//! the module that owns it:
//!
//! | module | steps |
//! |---|---|
//! | `request_body` | 3 read the body, or its first 64 KiB |
//! | `caching` | 4 `lookup`, 9 `invalidate`, 10 `store` (the rules are in `crate::cache`) |
//! | `forward` | 5–8 `Upstreams::exchange`: choose, connect, forward, read the head; retries |
//! | `rewrite` | 6 the request as the backend sees it; Location as the client sees it |
//! | `relay` | 11 `filter_response`, 12 `relay_response`, and `serve_from_cache` |
//! | `fill` | 12 while storing: the fill at the backend's pace; followers read it growing |
//! | `tunnel` | 12 for a `101`: the WebSocket tunnel |
//! | `status_page` | the status page and the metrics, answered instead of steps 3 onwards |
//! | `admin` | `POST {status_path}/ACTION` (drain a backend, ...), likewise |
//! | `reply` | the error replies, when a step fails |
//! | `record` | 13 the log line, the access log line, the status page's and metrics' figures |
//! | `start` | start-up: open everything, then listen; `--flush-cache` |
//!
//! The rest of the folder is what the steps use: `config` (proxy.conf), `balancer` (the
//! `balance` algorithms, passive health, drain state; pure), `health` (active probes),
//! `upstream` (backend sockets and the keep-alive pool), `stats` and `histogram` (the
//! figures), `status` and `charts` (the status page), `metrics` (the same for Prometheus),
//! `access_log` and `json`.
//!
//! A step that fails returns an `Error`; `Error::status` turns it into the response the
//! client gets (400 and friends for a bad request, 501 for a method not forwarded, 502/504
//! for backend trouble). Steps return what they produced; the step that answers writes what
//! it sent (`Sent`), and the loop alone assembles the `Record` and has it written. Message
//! syntax lives in `http`, sockets in `server` and `upstream`, the caching rules and files in
//! `cache`: the steps here only decide when to ask them what.
//!
//! Every response carries `X-Cache: HIT`, `MISS`, `REVALIDATED` or `BYPASS`, and the log line
//! says the same. Every request has an id (`X-Request-Id`: the client's own when valid, else
//! a new one, decided once its head is read), which the backend gets, the response carries
//! back, and every log writes (`relay::Stamp` puts both fields on each response). Bodies stream in bounded memory whatever their size, also while stored.
//!
//! Everything forwarded is re-framed here: the backend gets our Content-Length or our
//! chunked coding, never the client's bytes copied blindly, so a request can never smuggle a
//! second one past us (RFC 9112 §11.2).

pub(crate) mod access_log;
mod admin;
pub(crate) mod balancer;
mod caching;
pub(crate) mod charts;
mod check;
pub mod command;
pub mod config;
mod fill;
mod forward;
pub(crate) mod health;
pub(crate) mod histogram;
pub(crate) mod json;
pub(crate) mod metrics;
mod record;
mod relay;
mod reply;
mod request_body;
mod rewrite;
mod start;
pub(crate) mod stats;
pub(crate) mod status;
mod status_page;
mod tunnel;
pub(crate) mod upstream;

use std::io::BufReader;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::SystemTime;

use crate::cache::CacheStatus;
use crate::error::{Error, ParseError, Result, Side};
use crate::http::body::{request_framing, response_framing, Framing};
use crate::http::parse::{self, Limits};
use crate::http::request_id::RequestId;
use crate::http::Request;
use crate::server::{ClientStream, Stopper};
use access_log::AccessLog;
use caching::{Fill, Forward, Lookup, SharedCache};
pub use check::check;
use config::Config;
use fill::serve_growing;
use forward::{reusable, Job, Upstream, Upstreams};
use relay::{filter_response, relay_response, serve_from_cache, Stamp};
use rewrite::{client_host, rewrite_locations};
pub use start::{flush_cache, run};
use stats::Stats;

/// Read buffer for a client connection: held for the life of every connection, idle ones
/// included, so kept small (a longer head is still read whole, line by line).
pub const CLIENT_BUFFER: usize = 8 * 1024;
/// Write buffer toward the client and toward backends: a head and a small body leave in one
/// write, and larger writes pass through it unbuffered (so it need not be large).
pub const CLIENT_WRITE_BUFFER: usize = 16 * 1024;
/// What we add to Via (RFC 9110 §7.6.3): protocol version and pseudonym.
pub const VIA: &str = "1.1 relevo";

/// A running proxy's shared state: the configuration, the backends, the cache and what the
/// status page and the logs are told.
pub struct Proxy {
    config: Config,
    /// Limits on a client's request head.
    limits: Limits,
    upstreams: Upstreams,
    /// What the status page shows.
    stats: Stats,
    /// The Combined Log Format file, when configured.
    access_log: Option<AccessLog>,
    /// `None` with `cache = off`.
    cache: Option<SharedCache>,
    /// Stops the server this proxy runs in (set by `run`; unset in unit tests).
    stopper: OnceLock<Stopper>,
}

/// What went to the client in answer to one request, as written by the one step that
/// answered (relay, cache, tunnel, status page, or error reply).
#[derive(Debug, Default)]
pub(crate) struct Sent {
    /// The response's status, once its head is out.
    status: Option<u16>,
    /// Body bytes the client took (also when the answer failed part-way).
    bytes: u64,
    /// Whether any byte of the response has gone out (then no error page can follow).
    head: bool,
    /// Whether the connection can carry another request after this answer.
    keep_alive: bool,
}

/// What one request turned into, for the log step: assembled by the connection loop from
/// what each step returned, and written once.
#[derive(Debug, Default)]
struct Record {
    sent: Sent,
    /// What the cache did, for `X-Cache` and the log line.
    cache: CacheStatus,
    /// The request's id, decided once its head is read: sent to the backend and back to
    /// the client, and written in every log.
    request_id: RequestId,
    /// The backend that answered (or the last one tried).
    backend: Option<usize>,
    /// Whether the request body has been read to its end (else the connection cannot go on).
    body_consumed: bool,
    /// The request was for the status page: logged at debug level only and left out of the
    /// status page's own figures (a page refreshing every 2 s would drown them).
    internal: bool,
    /// What a WebSocket tunnel carried, when the request became one.
    tunnel: Option<tunnel::Report>,
}

impl Record {
    /// What every response to this request carries (`X-Cache`, `X-Request-Id`).
    fn stamp(&self) -> Stamp {
        Stamp {
            cache: self.cache,
            request_id: self.request_id,
        }
    }
}

impl Proxy {
    /// Serves one client connection: requests are read and answered in order until the
    /// client closes, asks to close, times out, or sends something that breaks framing.
    /// The loop alone writes each request's record (step 13), once, success or not.
    pub fn handle_connection(&self, stream: ClientStream, peer: SocketAddr) {
        let mut client = BufReader::with_capacity(CLIENT_BUFFER, stream);
        loop {
            // Step 1: read the request head, all of it within client_timeout (idle wait
            // included; less when the slots are under pressure, and the connection may be
            // closed to make room while it waits: see server::slots). A clean close, an
            // idle timeout or a reclaim between requests ends the connection without a log
            // line: there was no request.
            client.get_mut().await_head();
            let head = parse::read_request(&mut client, &self.limits);
            // The request's time starts at its first byte, not at the idle wait before it.
            let started = client.get_mut().head_received();
            let mut record = Record::default();
            let request = match head {
                Ok(Some(request)) => request,
                Ok(None) => return,
                Err(e) => {
                    record.request_id = RequestId::fresh();
                    self.reply_error(&client, &e, None, &mut record);
                    self.log_request(peer, None, &record, started, Some(&e));
                    return;
                }
            };
            // Step 2 (first part): the request's id, the client's own when valid.
            record.request_id = RequestId::decide(&request);
            let result = self.serve_request(&mut client, peer, &request, &mut record);
            if let Err(e) = &result {
                self.reply_error(&client, e, Some(&request), &mut record);
            }
            let error = result.as_ref().err();
            self.log_request(peer, Some(&request), &record, started, error);
            if !record.sent.keep_alive {
                if !record.body_consumed && request_framing(&request) != Ok(Framing::Empty) {
                    client.get_ref().close_lingering();
                }
                return;
            }
        }
    }

    /// The error reply for `e` (see `reply`), unless an answer has begun.
    fn reply_error(
        &self,
        client: &BufReader<ClientStream>,
        e: &Error,
        request: Option<&Request>,
        record: &mut Record,
    ) {
        let mut out = client.get_ref().tcp();
        let consumed = record.body_consumed;
        let stamp = record.stamp();
        reply::send_error(
            &mut out,
            &self.config,
            e,
            request,
            consumed,
            stamp,
            &mut record.sent,
        );
    }

    /// Steps 2 to 4 for one request whose head has been read: validate, read the body, look
    /// in the cache; then an answer from the cache, or steps 5 to 12 on a backend.
    fn serve_request(
        &self,
        client: &mut BufReader<ClientStream>,
        peer: SocketAddr,
        request: &Request,
        record: &mut Record,
    ) -> Result<()> {
        if self.is_metrics_request(request) && request_framing(request) == Ok(Framing::Empty) {
            record.internal = true;
            let out = client.get_ref().tcp();
            return self.serve_metrics(out, peer, request, &mut record.sent);
        }
        if let Some(action) = self.admin_action(request) {
            record.internal = true;
            return self.serve_admin(client, peer, request, action, record);
        }
        if let Some(query) = self.status_query(request) {
            if request_framing(request) == Ok(Framing::Empty) {
                record.internal = true;
                let out = client.get_ref().tcp();
                return self.serve_status(out, peer, request, query, &mut record.sent);
            }
        }
        let framing = self.validate(request)?;
        let body = request_body::read(client, request, framing, self.config.max_body_size)?;
        record.body_consumed = body.is_complete();
        let cache = self.cache.as_ref();
        let wait = self.config.upstream_timeout;
        let out = client.get_ref().tcp();
        let mut plan = match caching::lookup(cache, request, framing, wait) {
            Lookup::Hit(entry, age) => {
                record.cache = CacheStatus::Hit;
                let stamp = record.stamp();
                return serve_from_cache(out, request, entry, age, stamp, &mut record.sent);
            }
            Lookup::Follow(following) => {
                record.cache = CacheStatus::Hit;
                let (stamp, sent) = (record.stamp(), &mut record.sent);
                if serve_growing(out, request, &following, wait, stamp, sent)? {
                    return Ok(());
                }
                // The entry was committed or dropped just now: look again, once.
                match caching::lookup(cache, request, framing, wait) {
                    Lookup::Hit(entry, age) => {
                        return serve_from_cache(out, request, entry, age, stamp, sent);
                    }
                    Lookup::Forward(plan) => plan,
                    Lookup::Follow(_) => Forward::bypass(),
                }
            }
            Lookup::Forward(plan) => plan,
        };
        record.cache = plan.status;
        let mut job = Job {
            client,
            peer,
            request,
            request_id: record.request_id,
            body: &body,
            validators: plan.stale.as_ref().map(|s| s.conditionals.as_slice()),
            tried: None,
            body_sent: false,
        };
        let answered = self
            .upstreams
            .exchange(&self.config, &mut job, &mut record.sent);
        record.backend = job.tried;
        record.body_consumed |= job.body_sent;
        self.answer(client, request, answered?, &mut plan, record)
    }

    /// Steps 9 to 12 once a backend has answered: invalidate, store (or refresh a stale
    /// entry), filter the response, relay its body (or tunnel a 101).
    fn answer(
        &self,
        client: &BufReader<ClientStream>,
        request: &Request,
        mut upstream: Upstream,
        plan: &mut Forward<'_>,
        record: &mut Record,
    ) -> Result<()> {
        if upstream.response.status == 101 {
            let idle = self.config.tunnel_idle_timeout;
            let (stamp, stats, sent) = (record.stamp(), &self.stats, &mut record.sent);
            let report = tunnel::run(client, request, upstream, stats, idle, stamp, sent)?;
            record.tunnel = Some(report);
            return Ok(());
        }
        if self.config.rewrite_location {
            let backend = &self.upstreams.authorities[upstream.id];
            rewrite_locations(&mut upstream.response, backend, client_host(request));
        }
        let Upstream {
            id,
            mut conn,
            response,
            complete,
            lease: _in_flight,
        } = upstream;
        let upstream_framing = response_framing(&request.method, &response)
            .map_err(|e| Error::Parse(Side::Backend, e))?;
        let reusable = complete && reusable(&response, upstream_framing);
        let cache = self.cache.as_ref();
        caching::invalidate(cache, request, &response);
        let out = client.get_ref().tcp();
        let entry = match caching::store(cache, request, &response, plan) {
            Fill::Revalidated(entry, age) => {
                record.cache = CacheStatus::Revalidated;
                // A 304 has no body: the connection is ready for the next request.
                self.upstreams.release(id, conn, reusable);
                let stamp = record.stamp();
                return serve_from_cache(out, request, entry, age, stamp, &mut record.sent);
            }
            Fill::Relay(entry) => entry,
        };
        // A client whose body was not read to its end (the backend answered early) cannot
        // send another request on this connection.
        let keep_alive = request.keep_alive() && record.body_consumed;
        let now = SystemTime::now();
        let (mut response, client_framing, keep_alive) =
            filter_response(response, request.version, upstream_framing, keep_alive, now);
        record.stamp().apply(&mut response.headers);
        record.sent.status = Some(response.status);
        record.sent.keep_alive = keep_alive;
        // An event stream may be silent for minutes between events: its reads wait up to
        // tunnel_idle_timeout (as a WebSocket tunnel's), not upstream_timeout.
        let event_stream = response.is_event_stream();
        let backend_err = |e| Error::Io(Side::Backend, e);
        if event_stream {
            let idle = self.config.tunnel_idle_timeout;
            conn.set_read_timeout(idle).map_err(backend_err)?;
        }
        let framings = (upstream_framing, client_framing);
        let store = entry.map(|entry| (entry, plan.leader.as_ref()));
        relay_response(&mut conn, out, &response, framings, store, &mut record.sent)?;
        if event_stream && conn.set_read_timeout(self.config.upstream_timeout).is_err() {
            return Ok(()); // Not pooled: its timeout could not be put back.
        }
        self.upstreams.release(id, conn, reusable);
        Ok(())
        // The flight, if we led one, ends when `plan` drops: after the commit.
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
        // TRACE echoes the request back, cookies and credentials included: refused unless
        // allowed (nginx and most servers refuse it too).
        if request.method == "TRACE" && !self.config.allow_trace {
            return Err(Error::MethodNotAllowed(request.method.clone()));
        }
        let framing = request_framing(request).map_err(|e| Error::Parse(Side::Client, e))?;
        if let Framing::Length(n) = framing {
            if n > self.config.max_body_size {
                return Err(Error::Parse(Side::Client, ParseError::BodyTooLarge));
            }
        }
        Ok(framing)
    }
}
