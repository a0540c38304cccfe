//! The reverse proxy: what happens to one client connection, as a sequence of named steps.
//!
//! ```text
//!  1 read request      2 validate, route to a pool      3 read body (small ones whole)
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
//! or not); `serve_request` and `answer` call the steps in order. Each request runs on the
//! configuration in force when its head arrived (a `Generation`), to its end, whatever a
//! reload does meanwhile. Each step is a function of the module that owns it:
//!
//! | module | steps |
//! |---|---|
//! | `routing` | 2 which pool (`route` lines: Host and longest path prefix) |
//! | `request_body` | 3 read the body, or its first 64 KiB |
//! | `caching` | 4 `lookup`, 9 `invalidate`, 10 `store` (the rules are in `crate::cache`) |
//! | `refresh` | 5–12 again, in the background, for a response served stale |
//! | `forward` | 5–8 `Upstreams::exchange`: choose, connect, forward, read the head; retries |
//! | `rewrite` | 6 the request as the backend sees it; Location as the client sees it |
//! | `relay` | 11 `filter_response`, 12 `relay_response`, and `serve_from_cache` |
//! | `fill` | 12 while storing: the fill at the backend's pace; followers read it growing |
//! | `tunnel` | 12 for a `101`: the WebSocket tunnel |
//! | `status_page` | the status page and the metrics, answered instead of steps 3 onwards |
//! | `admin` | `POST {status_path}/ACTION` (drain a backend, purge, reload, stop), likewise |
//! | `purge` | what a purge removes: one URL, or one path on every host stored |
//! | `reply` | the error replies, when a step fails |
//! | `record` | 13 the log line, the access log line, the status page's and metrics' figures |
//! | `start` | start-up: open everything, then listen; `--flush-cache` |
//! | `reload` | a new configuration swapped in while serving; the graceful stop |
//!
//! The rest of the folder is what the steps use: `config` (proxy.conf), `generation` (a
//! configuration in force and what is built from it: pools, routes, access log), `balancer` (the
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
//! Every response carries `X-Cache: HIT`, `MISS`, `REVALIDATED`, `STALE` (served stale while
//! refreshed in the background, `refresh`), `STALE-IF-ERROR` (served stale because no backend
//! could answer) or `BYPASS`, and the log line says the same. Every request has an id
//! (`X-Request-Id`: the client's own when valid, else a new one, decided once its head is
//! read), which the backend gets, the response carries back, and every log writes
//! (`relay::Stamp` puts both fields on each response). Bodies stream in bounded memory whatever their size, also while stored.
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
mod control;
mod fill;
mod forward;
mod generation;
pub(crate) mod health;
pub(crate) mod histogram;
pub(crate) mod json;
pub(crate) mod metrics;
mod purge;
mod record;
mod refresh;
mod relay;
mod reload;
mod reply;
mod request_body;
mod rewrite;
mod routing;
mod splice;
mod start;
pub(crate) mod stats;
pub(crate) mod status;
mod status_page;
mod tunnel;
pub(crate) mod upstream;

use std::io::BufReader;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::SystemTime;

use crate::cache::CacheStatus;
use crate::error::{Error, ParseError, Result, Side};
use crate::http::body::{request_framing, response_framing, Framing};
use crate::http::parse;
use crate::http::request_id::RequestId;
use crate::http::Request;
use crate::server::{ClientStream, Stopper};
use caching::{Fill, Forward, Lookup, SharedCache};
pub use check::check;
use config::Config;
pub use control::{ask, Ask};
use fill::serve_growing;
use forward::{reusable, Job, Upstream};
use generation::Generation;
use relay::{filter_response, relay_response, serve_from_cache, Stamp};
pub use reload::Origin;
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

/// A running proxy's shared state: the configuration in force (a `Generation`: backends,
/// pools, routes, access log), and what outlives a reload: the cache, what the status page
/// is told, the stopper.
pub struct Proxy {
    /// The configuration in force; a reload swaps it whole (see `reload`).
    current: RwLock<Arc<Generation>>,
    /// What the status page shows.
    stats: Stats,
    /// `None` with `cache = off`. Shared with background refreshes (`refresh`).
    cache: Option<Arc<SharedCache>>,
    /// Stops the server this proxy runs in (set by `run`; unset in unit tests).
    stopper: OnceLock<Stopper>,
    /// Where `reload` reads the configuration again (set by `run`; unset in unit tests).
    origin: OnceLock<reload::Origin>,
    /// Held while a reload builds the next generation: one at a time.
    reloading: Mutex<()>,
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
    /// The pool the request was routed to (an index into the generation's pools).
    pool: usize,
    /// The backend of that pool that answered (or the last one tried).
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
            let limits = self.generation().limits;
            let head = parse::read_request(&mut client, &limits);
            // The request's time starts at its first byte, not at the idle wait before it.
            let started = client.get_mut().head_received();
            // The configuration this request runs on, to its end.
            let gen = self.generation();
            let mut record = Record::default();
            let request = match head {
                Ok(Some(request)) => request,
                Ok(None) => return,
                Err(e) => {
                    record.request_id = RequestId::fresh();
                    reply_error(&gen, &client, &e, None, &mut record);
                    self.log_request(&gen, peer, None, &record, started, Some(&e));
                    return;
                }
            };
            // Step 2 (first part): the request's id, the client's own when valid.
            record.request_id = RequestId::decide(&request);
            let result = self.serve_request(&gen, &mut client, peer, &request, &mut record);
            if let Err(e) = &result {
                reply_error(&gen, &client, e, Some(&request), &mut record);
            }
            let error = result.as_ref().err();
            self.log_request(&gen, peer, Some(&request), &record, started, error);
            if !record.sent.keep_alive {
                if !record.body_consumed && request_framing(&request) != Ok(Framing::Empty) {
                    client.get_ref().close_lingering();
                }
                return;
            }
        }
    }

    /// The configuration in force now.
    fn generation(&self) -> Arc<Generation> {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        Arc::clone(&current)
    }

    /// Steps 2 to 4 for one request whose head has been read: validate, read the body, look
    /// in the cache; then an answer from the cache, or steps 5 to 12 on a backend.
    fn serve_request(
        &self,
        gen: &Arc<Generation>,
        client: &mut BufReader<ClientStream>,
        peer: SocketAddr,
        request: &Request,
        record: &mut Record,
    ) -> Result<()> {
        let config = &gen.config;
        if status_page::is_metrics_request(config, request)
            && request_framing(request) == Ok(Framing::Empty)
        {
            record.internal = true;
            let out = client.get_ref().tcp();
            return self.serve_metrics(gen, out, peer, request, record);
        }
        if let Some(action) = admin::action(config, request) {
            record.internal = true;
            return self.serve_admin(gen, client, peer, request, action, record);
        }
        if let Some(query) = status_page::status_query(config, request) {
            if request_framing(request) == Ok(Framing::Empty) {
                record.internal = true;
                let out = client.get_ref().tcp();
                return self.serve_status(gen, out, peer, request, query, record);
            }
        }
        let framing = validate(config, request)?;
        record.pool = gen.pool_of(request);
        let body = request_body::read(client, request, framing, config.max_body_size)?;
        record.body_consumed = body.is_complete();
        let cache = self.cache.as_deref();
        let wait = config.upstream_timeout;
        let out = client.get_ref().tcp();
        // A request that followed another's fetch to its end, to find the entry committed
        // or dropped just now, looks again, once.
        let mut looked_again = false;
        let mut plan = loop {
            match caching::lookup(cache, gen, request, framing) {
                Lookup::Hit(entry, age) => {
                    record.cache = CacheStatus::Hit;
                    let stamp = record.stamp();
                    return serve_from_cache(out, request, entry, age, stamp, &mut record.sent);
                }
                Lookup::Stale(entry, age, base) => {
                    record.cache = CacheStatus::Stale;
                    self.refresh_in_background(gen, request, peer, base);
                    let stamp = record.stamp();
                    return serve_from_cache(out, request, entry, age, stamp, &mut record.sent);
                }
                Lookup::Follow(_) if looked_again => break Forward::bypass(),
                Lookup::Follow(following) => {
                    record.cache = CacheStatus::Hit;
                    let (stamp, sent) = (record.stamp(), &mut record.sent);
                    if serve_growing(out, request, &following, wait, stamp, sent)? {
                        return Ok(());
                    }
                    looked_again = true;
                }
                Lookup::Forward(plan) => break plan,
            }
        };
        record.cache = plan.status;
        let mut job = Job {
            client: Some(client),
            peer,
            request,
            request_id: record.request_id,
            body: &body,
            validators: plan.stale.as_ref().map(|s| s.conditionals.as_slice()),
            tried: None,
            body_sent: false,
        };
        let upstreams = &gen.pools[record.pool];
        let answered = upstreams.exchange(config, &mut job, &mut record.sent);
        record.backend = job.tried;
        record.body_consumed |= job.body_sent;
        let upstream = match answered {
            Ok(upstream) => upstream,
            Err(e) if e.is_backend_failure() && !record.sent.head => {
                return match caching::stale_on_error(gen, request, &mut plan) {
                    Some((entry, age)) => {
                        log::warn!("{peer} \"{}\": {e}; served stale", request.request_line());
                        record.cache = CacheStatus::StaleIfError;
                        let (out, stamp) = (client.get_ref().tcp(), record.stamp());
                        serve_from_cache(out, request, entry, age, stamp, &mut record.sent)
                    }
                    None => Err(e),
                };
            }
            Err(e) => return Err(e),
        };
        self.answer(gen, client, request, upstream, &mut plan, record)
    }

    /// Steps 9 to 12 once a backend has answered: invalidate, store (or refresh a stale
    /// entry), filter the response, relay its body (or tunnel a 101).
    fn answer(
        &self,
        gen: &Generation,
        client: &BufReader<ClientStream>,
        request: &Request,
        mut upstream: Upstream,
        plan: &mut Forward<'_>,
        record: &mut Record,
    ) -> Result<()> {
        let (config, upstreams) = (&gen.config, &gen.pools[record.pool]);
        if upstream.response.status == 101 {
            let idle = config.tunnel_idle_timeout;
            let (stamp, stats, sent) = (record.stamp(), &self.stats, &mut record.sent);
            let report = tunnel::run(client, request, upstream, stats, idle, stamp, sent)?;
            record.tunnel = Some(report);
            return Ok(());
        }
        if config.rewrite_location {
            let backend = &upstreams.authorities[upstream.id];
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
        let cache = self.cache.as_deref();
        let out = client.get_ref().tcp();
        if caching::ERROR_STATUSES.contains(&response.status) {
            if let Some((entry, age)) = caching::stale_on_error(gen, request, plan) {
                // The error's body is left unread: its connection is closed, not pooled.
                record.cache = CacheStatus::StaleIfError;
                let stamp = record.stamp();
                return serve_from_cache(out, request, entry, age, stamp, &mut record.sent);
            }
        }
        caching::invalidate(cache, gen, request, &response);
        let entry = match caching::store(cache, gen, request, &response, plan) {
            Fill::Revalidated(entry, age) => {
                record.cache = CacheStatus::Revalidated;
                // A 304 has no body: the connection is ready for the next request.
                upstreams.release(id, conn, reusable);
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
            let idle = config.tunnel_idle_timeout;
            conn.set_read_timeout(idle).map_err(backend_err)?;
        }
        let framings = (upstream_framing, client_framing);
        let store = entry.map(|entry| (entry, plan.leader.as_ref()));
        let splice_min = config.splice_min_body;
        relay_response(
            &mut conn,
            out,
            &response,
            framings,
            store,
            splice_min,
            &mut record.sent,
        )?;
        if event_stream && conn.set_read_timeout(config.upstream_timeout).is_err() {
            return Ok(()); // Not pooled: its timeout could not be put back.
        }
        upstreams.release(id, conn, reusable);
        Ok(())
        // The flight, if we led one, ends when `plan` drops: after the commit.
    }
}

/// The error reply for `e` (see `reply`), unless an answer has begun.
fn reply_error(
    gen: &Generation,
    client: &BufReader<ClientStream>,
    e: &Error,
    request: Option<&Request>,
    record: &mut Record,
) {
    let mut out = client.get_ref().tcp();
    let (consumed, stamp) = (record.body_consumed, record.stamp());
    let sent = &mut record.sent;
    reply::send_error(&mut out, &gen.config, e, request, consumed, stamp, sent);
}

/// Step 2: is this a request we forward, and how is its body framed?
fn validate(config: &Config, request: &Request) -> Result<Framing> {
    // Tunnels (CONNECT) are out of scope for a reverse proxy: 501 whatever `methods` says.
    let forwarded = request.method != "CONNECT"
        && config
            .methods
            .as_ref()
            .is_none_or(|allowed| allowed.contains(&request.method));
    if !forwarded {
        return Err(Error::MethodNotForwarded(request.method.clone()));
    }
    // TRACE echoes the request back, cookies and credentials included: refused unless
    // allowed (nginx and most servers refuse it too).
    if request.method == "TRACE" && !config.allow_trace {
        return Err(Error::MethodNotAllowed(request.method.clone()));
    }
    let framing = request_framing(request).map_err(|e| Error::Parse(Side::Client, e))?;
    if let Framing::Length(n) = framing {
        if n > config.max_body_size {
            return Err(Error::Parse(Side::Client, ParseError::BodyTooLarge));
        }
    }
    Ok(framing)
}
