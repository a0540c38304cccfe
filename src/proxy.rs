//! The reverse proxy: what happens to one client connection, as a sequence of named steps.
//!
//! ```text
//!  1 read request      2 validate      3 read body (small ones whole)
//!  4 cache lookup ── fresh ──────────────────────────────────────→ serve from cache → 13 log
//!      └ miss / stale → 5 choose backend and connect → 6 rewrite → 7 forward
//!                       → 8 read response head   (5–8 retried on the next backend when safe)
//!  9 invalidate → 10 cache the response (a 304 refreshes the entry, served from cache)
//! 11 filter response → 12 relay body (and store it) → 13 log
//! ```
//!
//! Each step is a function below, in that order. A step that fails returns an `Error`;
//! `Error::status` turns it into the response the client gets (400 and friends for a bad
//! request, 501 for a method not forwarded, 502/504 for backend trouble) and the log step
//! runs exactly once per request either way. Message syntax lives in `http`, sockets in
//! `server` and `upstream`, the rotation in `balancer`, the caching rules and files in
//! `cache`: the steps here only decide when to ask it what.
//!
//! Every response carries `X-Cache: HIT`, `MISS`, `REVALIDATED` or `BYPASS`, and the log line
//! says the same. A body being stored goes to the client and to the cache entry as it
//! streams (`Tee`), so memory stays bounded whatever its size.
//!
//! Everything forwarded is re-framed here: the backend gets our Content-Length or our
//! chunked coding, never the client's bytes copied blindly, so a request can never smuggle a
//! second one past us (RFC 9112 §11.2).

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::access_log::{AccessEntry, AccessLog};
use crate::balancer::{Balancer, HealthPolicy};
use crate::cache::{
    self, CacheStatus, Entry, EntryWriter, FlightGuard, InFlight, Reuse, Role, Store,
};
use crate::config::{Backend, Config};
use crate::error::{Error, ParseError, Result, Side};
use crate::health::{self, ProbeSettings};
use crate::http::body::{
    copy_body, request_framing, response_framing, BodyProgress, BodyReader, Framing, COPY_BUFFER,
};
use crate::http::parse::{self, Limits};
use crate::http::serialize::{self, ChunkedWriter};
use crate::http::{remove_hop_by_hop, text_response, Request, Response, Version};
use crate::server::{self, ClientStream};
use crate::stats::{RequestRecord, Stats};
use crate::status::{self, StatusView};
use crate::upstream::{Connection, Pool};

/// Request bodies up to this size are read whole before a backend is contacted (see
/// `read_body`); larger ones are streamed. Bytes.
pub const REQUEST_BUFFER: usize = 64 * 1024;
/// Read buffer for a client connection: held for the life of every connection, idle ones
/// included, so kept small (a longer head is still read whole, line by line).
pub const CLIENT_BUFFER: usize = 8 * 1024;
/// Write buffer toward the client and toward backends: a head and a small body leave in one
/// write, and larger writes pass through it unbuffered (so it need not be large).
pub const CLIENT_WRITE_BUFFER: usize = 16 * 1024;
/// Most interim (1xx) responses accepted before the final one.
pub const MAX_INTERIM_RESPONSES: usize = 8;
/// What we add to Via (RFC 9110 §7.6.3): protocol version and pseudonym.
pub const VIA: &str = "1.1 relevo";

/// A running proxy's shared state: the configuration, the round-robin position and the
/// cache.
pub struct Proxy {
    config: Config,
    balancer: Arc<Balancer>,
    limits: Limits,
    /// Limits on a backend's response head.
    response_limits: Limits,
    /// Idle keep-alive connections to the backends.
    pool: Pool<Connection>,
    /// What the status page shows.
    stats: Stats,
    /// The Combined Log Format file, when configured.
    access_log: Option<AccessLog>,
    /// `None` with `cache = off`.
    cache: Option<SharedCache>,
}

/// The proxy's cache: its files, the fetches in progress, and the lifetime of responses
/// that give none.
struct SharedCache {
    store: Store,
    in_flight: InFlight,
    default_ttl: Duration,
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
    if config.cache {
        std::fs::create_dir_all(&config.cache_dir).map_err(|e| {
            let dir = config.cache_dir.display();
            Error::Startup(format!("cannot create the cache directory {dir}: {e}"))
        })?;
        log::info!(
            "cache in {}: {} s for responses without their own lifetime, at most {} B in \
             total, {} B per response",
            config.cache_dir.display(),
            config.cache_ttl,
            config.cache_max_size,
            config.cache_max_object
        );
    } else {
        log::info!("cache off");
    }
    let max_connections = config.max_connections;
    let proxy = Arc::new(Proxy::new(config)?);
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

    let active = Arc::clone(&proxy.stats.active_connections);
    server::serve(listener, max_connections, active, move |stream, peer| {
        proxy.handle_connection(stream, peer);
    });
    Ok(())
}

/// `proxy --flush-cache`: removes the cache's entry files (and leftover temporary files)
/// from `cache_dir`, and says what it removed. Other files there stay.
///
/// # Errors
/// `Error::Startup` when the directory cannot be read or a file cannot be removed.
pub fn flush_cache(config: &Config) -> Result<String> {
    let dir = &config.cache_dir;
    let store = Store::new(dir, config.cache_max_size, config.cache_max_object);
    let (files, bytes) = store
        .flush()
        .map_err(|e| Error::Startup(format!("cannot flush {}: {e}", dir.display())))?;
    Ok(format!(
        "removed {files} files ({bytes} B) from {}",
        dir.display()
    ))
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
    /// What the cache did, for `X-Cache` and the log line.
    cache: CacheStatus,
    /// Id of the backend in `backend`, for the status page.
    backend_id: Option<usize>,
    /// The request was for the status page: logged at debug level only and left out of the
    /// status page's own figures (a page refreshing every 2 s would drown them).
    internal: bool,
}

/// The outcome of the cache lookup step.
enum Lookup<'a> {
    /// A fresh stored response, and its current age.
    Hit(Entry, Duration),
    /// The request goes to a backend.
    Forward(Forward<'a>),
}

/// How a request the cache did not answer goes upstream, and what the cache may do with the
/// response.
struct Forward<'a> {
    /// `Miss` when the cache was consulted, `Bypass` when not.
    status: CacheStatus,
    /// The primary cache key, when the response may be stored (a GET looked up).
    base: Option<String>,
    /// A stale entry being validated (RFC 9111 §4.3).
    stale: Option<Stale>,
    /// Held while we fetch a response other requests for the same URI wait for.
    leader: Option<FlightGuard<'a>>,
}

impl Forward<'_> {
    fn bypass() -> Self {
        Forward {
            status: CacheStatus::Bypass,
            base: None,
            stale: None,
            leader: None,
        }
    }
}

/// A stale entry and the conditional fields that validate it.
struct Stale {
    key: String,
    entry: Entry,
    conditionals: Vec<(String, String)>,
}

/// What the cache does with a backend's response.
enum Fill {
    /// The backend confirmed the stale entry (304): serve it, with this age.
    Revalidated(Entry, Duration),
    /// Relay the response, storing its body in this entry on the way.
    Relay(Option<EntryWriter>),
}

impl Proxy {
    /// A proxy for `config`.
    ///
    /// # Errors
    /// `Error::Startup` when the access log cannot be opened.
    pub fn new(config: Config) -> Result<Self> {
        let limits = Limits {
            max_line: config.max_request_line,
            max_header_bytes: config.max_header_bytes,
            max_headers: config.max_headers,
        };
        let cache = config.cache.then(|| SharedCache {
            store: Store::new(
                &config.cache_dir,
                config.cache_max_size,
                config.cache_max_object,
            ),
            in_flight: InFlight::new(),
            default_ttl: Duration::from_secs(config.cache_ttl),
        });
        let response_limits = Limits {
            max_line: config.max_response_header_bytes,
            max_header_bytes: config.max_response_header_bytes,
            max_headers: config.max_headers,
        };
        let pool = Pool::new(
            config.backends.len(),
            config.upstream_keepalive,
            config.upstream_idle_timeout,
        );
        let access_log = config
            .access_log
            .as_deref()
            .map(AccessLog::open)
            .transpose()?;
        Ok(Proxy {
            pool,
            stats: Stats::new(config.backends.len()),
            access_log,
            balancer: Arc::new(Balancer::new(
                config.backends.clone(),
                HealthPolicy {
                    max_fails: config.max_fails,
                    fail_timeout: config.fail_timeout,
                },
            )),
            config,
            limits,
            response_limits,
            cache,
        })
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

    /// Steps 2 to 12 for one request whose head has been read.
    fn serve_request(
        &self,
        client: &mut BufReader<ClientStream>,
        peer: SocketAddr,
        request: &Request,
        exchange: &mut Exchange,
    ) -> Result<()> {
        if let Some(query) = self.status_query(request) {
            if request_framing(request) == Ok(Framing::Empty) {
                return self.serve_status(client.get_ref().tcp(), peer, request, query, exchange);
            }
        }
        let framing = self.validate(request)?;
        let body = read_body(client, request, framing, self.config.max_body_size)?;
        exchange.body_consumed = body.is_complete();
        let mut plan = match self.cache_lookup(request, framing) {
            Lookup::Hit(entry, age) => {
                exchange.cache = CacheStatus::Hit;
                return serve_from_cache(client.get_ref().tcp(), request, entry, age, exchange);
            }
            Lookup::Forward(plan) => plan,
        };
        exchange.cache = plan.status;
        let validators = plan
            .stale
            .as_ref()
            .map(|stale| stale.conditionals.as_slice());
        let Upstream {
            id,
            mut conn,
            response,
        } = self.exchange_with_backends(client, peer, request, &body, validators, exchange)?;
        let upstream_framing = response_framing(&request.method, &response)
            .map_err(|e| Error::Parse(Side::Backend, e))?;
        let reusable = reusable(&response, upstream_framing);
        self.invalidate(request, &response);
        let entry = match self.cache_response(request, &response, &mut plan) {
            Fill::Revalidated(entry, age) => {
                exchange.cache = CacheStatus::Revalidated;
                // A 304 has no body: the connection is ready for the next request.
                self.release(id, conn, reusable);
                return serve_from_cache(client.get_ref().tcp(), request, entry, age, exchange);
            }
            Fill::Relay(entry) => entry,
        };
        let keep_alive = request.keep_alive();
        let (mut response, client_framing, keep_alive) =
            filter_response(response, request.version, upstream_framing, keep_alive);
        response.headers.set("X-Cache", exchange.cache.as_str());
        exchange.status = Some(response.status);
        exchange.keep_alive = keep_alive;
        relay_response(
            &mut conn,
            client.get_ref().tcp(),
            &response,
            (upstream_framing, client_framing),
            entry,
            exchange,
        )?;
        self.release(id, conn, reusable);
        Ok(())
        // The flight, if we led one, ends here (`plan.leader` drops): after the commit.
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

    /// Step 4: can the cache answer? A fresh entry is a hit (RFC 9111 §4.2); otherwise the
    /// request goes upstream, to validate a stale entry when it has validators (§4.3).
    ///
    /// Only one GET per URI goes upstream at a time: the first becomes the leader of a
    /// flight, the others wait for it (at most `upstream_timeout`) and look again, and go
    /// upstream themselves only if there is still nothing fresh. A leader also looks again
    /// once it leads, since the previous flight may have ended between its first look and
    /// its joining, leaving a fresh entry behind.
    fn cache_lookup(&self, request: &Request, framing: Framing) -> Lookup<'_> {
        let Some(cache) = &self.cache else {
            return Lookup::Forward(Forward::bypass());
        };
        let base = match cache::cache_key(request) {
            Some(base) if framing == Framing::Empty && cache::may_use_cache(request) => base,
            _ => return Lookup::Forward(Forward::bypass()),
        };
        let is_get = request.method == "GET";
        let mut leader = None;
        let mut followed = false;
        loop {
            let now = SystemTime::now();
            let mut stale = None;
            if let Some((key, entry)) = cache.store.lookup(&base, request) {
                let ttl = cache.default_ttl;
                match cache::reuse(request, &entry.response, entry.stored_at, now, ttl) {
                    Reuse::Fresh(age) => return Lookup::Hit(entry, age),
                    Reuse::Bypass => return Lookup::Forward(Forward::bypass()),
                    Reuse::Validate(conditionals) if is_get => {
                        stale = Some(Stale {
                            key,
                            entry,
                            conditionals,
                        });
                    }
                    Reuse::Validate(_) | Reuse::Refetch => {}
                }
            }
            // A HEAD is forwarded as it is and its response not stored (RFC 9111 §4.3.5
            // allows updating a stored GET from it; we keep it simple).
            if !is_get || leader.is_some() || followed {
                return Lookup::Forward(Forward {
                    status: CacheStatus::Miss,
                    base: is_get.then_some(base),
                    stale,
                    leader,
                });
            }
            match cache.in_flight.join(&base) {
                Role::Leader(guard) => leader = Some(guard),
                Role::Follower(flight) => {
                    if !flight.wait(self.config.upstream_timeout) {
                        log::debug!("gave up waiting for the request in flight for {base:?}");
                    }
                    followed = true;
                }
            }
        }
    }

    /// Steps 5 to 8, with retries: choose a backend and connect, rewrite (adding the cache's
    /// validators when it is validating a stale entry), forward, read the response head.
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
        validators: Option<&[(String, String)]>,
        exchange: &mut Exchange,
    ) -> Result<Upstream> {
        let replayable = is_idempotent(&request.method) && body.is_complete();
        let mut last_error = Error::NoBackend("no backend configured".to_string());
        'backends: for id in self.balancer.plan(Instant::now()) {
            let backend = &self.balancer.backends()[id];
            exchange.backend = Some(backend.authority());
            exchange.backend_id = Some(id);
            // Only a request that may be sent twice goes on an idle pooled connection: if
            // the backend closed it meanwhile, the request is sent again on a fresh one.
            let mut pooled = if replayable {
                self.pool.take(id, Instant::now())
            } else {
                None
            };
            loop {
                let from_pool = pooled.is_some();
                let mut conn = match pooled.take() {
                    Some(conn) => conn,
                    None => match Connection::open(
                        backend,
                        self.config.connect_timeout,
                        self.config.upstream_timeout,
                    ) {
                        Ok(conn) => conn,
                        Err(e) => {
                            self.backend_failed(id, &format!("unreachable: {e}"));
                            last_error = Error::NoBackend(format!("{backend}: {e}"));
                            continue 'backends;
                        }
                    },
                };
                let mut outgoing = rewrite_request(
                    request,
                    peer,
                    backend,
                    body.outgoing_framing(),
                    self.config.upstream_keepalive > 0,
                );
                if let Some(conditionals) = validators {
                    add_validators(&mut outgoing, conditionals);
                }
                log::debug!("{peer} → {backend}:\n{}", head_text_request(&outgoing));
                let attempt = forward(
                    &mut conn,
                    &outgoing,
                    client,
                    body,
                    self.config.max_body_size,
                )
                .and_then(|()| {
                    exchange.body_consumed = true;
                    read_final_response(
                        &mut conn,
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
                        return Ok(Upstream { id, conn, response });
                    }
                    Err(e) if from_pool && !exchange.head_sent && closed_before_answer(&e) => {
                        log::debug!("idle connection to {backend} was closed ({e}); reconnecting");
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
                        continue 'backends;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Err(last_error)
    }

    /// After a response was relayed: a connection whose response was read to its end, and
    /// that the backend did not ask to close, goes back to the pool for the next request.
    fn release(&self, id: usize, mut conn: Connection, reusable: bool) {
        if reusable && conn.reader().buffer().is_empty() {
            self.pool.put(id, conn, Instant::now());
        }
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

    /// Step 9: a non-error response to an unsafe method invalidates what is stored for its
    /// URI and for its Location and Content-Location on the same host (RFC 9111 §4.4).
    fn invalidate(&self, request: &Request, response: &Response) {
        let Some(cache) = &self.cache else { return };
        for key in cache::invalidated_keys(request, response) {
            log::debug!("cache: {} invalidates {key}", request.method);
            cache.store.remove(&key);
        }
    }

    /// Step 10: the cache's part in the backend's response. A 304 to our validation refreshes
    /// the stale entry, which is then served (RFC 9111 §4.3.4); a storable response gets an
    /// entry to be written while it is relayed (§3); a stale entry that the origin replaced
    /// with something we may not store is removed (§4.3.3), unless the answer was a 5xx.
    /// When nothing will be stored, the flight ends at once, so waiting requests go on.
    fn cache_response(&self, request: &Request, response: &Response, plan: &mut Forward) -> Fill {
        let (Some(cache), Some(base)) = (&self.cache, &plan.base) else {
            return Fill::Relay(None);
        };
        let now = SystemTime::now();
        let cacheable = cache::is_cacheable(request, response, cache.default_ttl);
        if let Some(stale) = plan.stale.take() {
            if response.status == 304 {
                let Stale { key, mut entry, .. } = stale;
                let update = cache::stored_response(response, now);
                cache::merge_304(&mut entry.response, &update);
                if let Err(e) = cache.store.refresh(&key, &entry.response) {
                    log::warn!("cache: cannot refresh {base}: {e}");
                }
                let age = cache::current_age(&entry.response, now, now);
                return Fill::Revalidated(entry, age);
            }
            if !cacheable && response.status < 500 {
                cache.store.remove(&stale.key);
            }
        }
        if !cacheable {
            plan.leader = None;
            return Fill::Relay(None);
        }
        let stored = cache::stored_response(response, now);
        match cache.store.begin_variant(base, request, &stored) {
            Ok(entry) if !entry.is_abandoned() => Fill::Relay(Some(entry)),
            Ok(_) => {
                log::debug!("cache: {base} is larger than cache_max_object, not stored");
                plan.leader = None;
                Fill::Relay(None)
            }
            Err(e) => {
                log::warn!("cache: cannot store {base}: {e}");
                plan.leader = None;
                Fill::Relay(None)
            }
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
        resp.headers.append("X-Cache", exchange.cache.as_str());
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

    /// Step 13: one line per request, on success and on error, with what the cache did.
    fn log_request(
        &self,
        peer: SocketAddr,
        request: Option<&Request>,
        exchange: &Exchange,
        started: Instant,
        error: Option<&Error>,
    ) {
        let elapsed = started.elapsed();
        let line = request.map(Request::request_line);
        let line_text = line.as_deref().unwrap_or("-");
        let backend = exchange.backend.as_deref().unwrap_or("-");
        let status = exchange
            .status
            .map_or_else(|| "-".to_string(), |s| s.to_string());
        let ms = elapsed.as_millis();
        let bytes = exchange.bytes;
        let cache = exchange.cache.as_str();
        match (error, exchange.internal) {
            (None, true) => log::debug!("{peer} \"{line_text}\" -> {status} {bytes} B {ms} ms"),
            (None, false) => {
                log::info!(
                    "{peer} \"{line_text}\" -> {backend} {status} {cache} {bytes} B {ms} ms"
                );
            }
            (Some(e), _) => log::warn!(
                "{peer} \"{line_text}\" -> {backend} {status} {cache} {bytes} B {ms} ms ({e})"
            ),
        }
        let now = SystemTime::now();
        if let Some(access_log) = &self.access_log {
            access_log.write(&AccessEntry {
                time: now,
                client: peer.ip(),
                request_line: line.as_deref(),
                status: exchange.status,
                bytes,
                referer: request.and_then(|r| r.headers.get("referer")),
                user_agent: request.and_then(|r| r.headers.get("user-agent")),
                upstream: exchange.backend.as_deref(),
                cache: request.map(|_| exchange.cache),
                elapsed,
            });
        }
        if !exchange.internal {
            self.stats.record(RequestRecord {
                time: now,
                client: peer,
                request_line: line.unwrap_or_else(|| "-".to_string()),
                backend: exchange.backend_id,
                status: exchange.status,
                cache: request.map(|_| exchange.cache),
                elapsed,
            });
        }
    }

    /// Step 2, for the status page: answered by the proxy itself, never forwarded, and only
    /// to the clients `status_allow` lets in (403 for the others). `?format=json` gives the
    /// same data as JSON.
    fn serve_status(
        &self,
        client: &TcpStream,
        peer: SocketAddr,
        request: &Request,
        query: Option<&str>,
        exchange: &mut Exchange,
    ) -> Result<()> {
        exchange.internal = true;
        exchange.keep_alive = request.keep_alive();
        let allowed = self
            .config
            .status_allow
            .iter()
            .any(|net| net.contains(peer.ip()));
        let (status, content_type, body) = if !allowed {
            let (_, body) = text_response(403, "the status page is not open to your address");
            (403, "text/plain; charset=utf-8", body)
        } else if request.method != "GET" && request.method != "HEAD" {
            let (_, body) = text_response(405, "the status page answers GET and HEAD");
            (405, "text/plain; charset=utf-8", body)
        } else {
            let view = self.status_view();
            let json = query.is_some_and(|q| q.split('&').any(|p| p == "format=json"));
            if json {
                (
                    200,
                    "application/json",
                    status::render_json(&view).into_bytes(),
                )
            } else {
                (
                    200,
                    "text/html; charset=utf-8",
                    status::render_html(&view).into_bytes(),
                )
            }
        };
        let mut response = Response::new(status);
        response.headers.append("Content-Type", content_type);
        response
            .headers
            .append("Content-Length", body.len().to_string());
        response.headers.append("Cache-Control", "no-store");
        if status == 405 {
            response.headers.append("Allow", "GET, HEAD");
        }
        if !exchange.keep_alive {
            response.headers.append("Connection", "close");
        }
        let mut bytes = serialize::response_head_bytes(&response);
        if request.method != "HEAD" {
            bytes.extend_from_slice(&body);
            exchange.bytes = body.len() as u64;
        }
        exchange.status = Some(status);
        exchange.head_sent = true;
        let mut out = client;
        out.write_all(&bytes)
            .map_err(|e| Error::Io(Side::Client, e))
    }

    /// Everything the status page shows, taken now.
    fn status_view(&self) -> StatusView {
        let health = self.balancer.health();
        let backends = self
            .balancer
            .backends()
            .iter()
            .zip(health)
            .map(|(b, h)| (b.authority(), h))
            .collect();
        let cache = self.cache.as_ref().map(|c| {
            let entries = std::fs::read_dir(c.store.dir())
                .map(|dir| {
                    dir.flatten()
                        .filter(|e| cache::is_entry_name(&e.file_name().to_string_lossy()))
                        .count() as u64
                })
                .unwrap_or(0);
            (entries, c.store.usage())
        });
        StatusView {
            stats: self.stats.snapshot(),
            backends,
            cache,
            now: Instant::now(),
            now_wall: SystemTime::now(),
        }
    }

    /// The path and query of a request for the status page, if it is one.
    fn status_query<'r>(&self, request: &'r Request) -> Option<Option<&'r str>> {
        let status_path = self.config.status_path.as_deref()?;
        let target = match request.target.split_once("://") {
            // Absolute-form: skip the authority.
            Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
            None => request.target.as_str(),
        };
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        (path == status_path).then_some(query)
    }
}

/// A backend connection whose response head has been read.
struct Upstream {
    /// Which backend (index into the balancer's list).
    id: usize,
    conn: Connection,
    response: Response,
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
fn reusable(response: &Response, framing: Framing) -> bool {
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

fn expects_continue(request: &Request) -> bool {
    request.version == Version::Http11 && request.headers.has_token("expect", "100-continue")
}

/// Step 6: the request as the backend should see it (RFC 9110 §7.6).
///
/// - origin-form target (an absolute-form target is split into Host and path, RFC 9112
///   §3.2.2: its authority wins over any Host field);
/// - `Host` is the backend's `host:port`, and the client's host goes in `X-Forwarded-Host`;
/// - hop-by-hop fields and the fields named in Connection are removed (§7.6.1), and so is
///   Expect, which we answered ourselves;
/// - the client's address is appended to `X-Forwarded-For`; `X-Forwarded-Proto: http`;
/// - `Via: 1.1 relevo` is appended (§7.6.3);
/// - the body is re-framed by us: our own Content-Length or `Transfer-Encoding: chunked`;
/// - `Connection: close` unless `keep_alive` (the connection will go back to the pool):
///   HTTP/1.1 connections are persistent by default (RFC 9112 §9.3).
pub fn rewrite_request(
    request: &Request,
    peer: SocketAddr,
    backend: &Backend,
    framing: Framing,
    keep_alive: bool,
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
    out.headers.append("Via", via(request.version));
    match framing {
        Framing::Length(n) => out.headers.append("Content-Length", n.to_string()),
        Framing::Chunked => out.headers.append("Transfer-Encoding", "chunked"),
        Framing::Empty | Framing::Close => {}
    }
    if !keep_alive {
        out.headers.append("Connection", "close");
    }
    out
}

/// Step 6, validating a stale entry: our conditional fields replace the client's (RFC 9111
/// §4.3.1). The client's own conditions are then answered from the refreshed entry.
fn add_validators(outgoing: &mut Request, conditionals: &[(String, String)]) {
    outgoing.headers.remove("if-none-match");
    outgoing.headers.remove("if-modified-since");
    for (name, value) in conditionals {
        outgoing.headers.append(name, value);
    }
}

/// Our Via entry (RFC 9110 §7.6.3): `received-protocol` (the version the message arrived
/// with, without "HTTP/") and our pseudonym.
fn via(received: Version) -> &'static str {
    match received {
        Version::Http10 => "1.0 relevo",
        Version::Http11 => VIA,
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

/// Step 3: read the request body, or its first `REQUEST_BUFFER` bytes, before any backend
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

/// Step 7: send the rewritten head and the body to the backend: what was read already, then
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

/// Step 8: read the backend's response head. Interim 1xx responses are relayed to HTTP/1.1
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

/// Step 11: the response as the client should see it, the framing we send it with, and
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
    response.headers.append("Via", via(received));
    match (keep_alive, client_version) {
        (false, _) => response.headers.append("Connection", "close"),
        (true, Version::Http10) => response.headers.append("Connection", "keep-alive"),
        (true, Version::Http11) => {}
    }
    (response, framing, keep_alive)
}

/// Step 12: write the head and stream the body from the backend to the client, and into
/// the cache entry when there is one. A body cut short by the backend ends the client
/// connection without a last chunk, so the client sees the truncation, and stores nothing.
fn relay_response(
    upstream: &mut Connection,
    client: &TcpStream,
    response: &Response,
    (upstream_framing, client_framing): (Framing, Framing),
    entry: Option<EntryWriter>,
    exchange: &mut Exchange,
) -> Result<()> {
    let client_err = |e| Error::Io(Side::Client, e);
    let mut out = BufWriter::with_capacity(CLIENT_WRITE_BUFFER, client);
    serialize::write_response_head(&mut out, response).map_err(client_err)?;
    exchange.head_sent = true;
    let mut body = BodyReader::new(upstream.reader(), upstream_framing);
    let (from, to) = (Side::Backend, Side::Client);
    match client_framing {
        Framing::Chunked => {
            let mut tee = Tee::new(ChunkedWriter::new(&mut out), entry);
            exchange.bytes = copy_body(&mut body, &mut tee, from, to, u64::MAX)?;
            tee.finish()?.finish().map_err(client_err)?;
        }
        _ => {
            let mut tee = Tee::new(&mut out, entry);
            exchange.bytes = copy_body(&mut body, &mut tee, from, to, u64::MAX)?;
            tee.finish()?;
        }
    }
    out.flush().map_err(client_err)
}

/// Step 12's writer: body bytes go to the client and, for a response being stored, to its
/// cache entry. A client that goes away does not stop the entry: the body is still read to
/// its end into the cache (bounded by `cache_max_object` and `upstream_timeout`; ATS calls
/// this a background fill), and the client's error is reported after. An entry that fails
/// or gives up is dropped, and the client never notices.
struct Tee<W: Write> {
    client: W,
    client_error: Option<io::Error>,
    entry: Option<EntryWriter>,
}

impl<W: Write> Tee<W> {
    fn new(client: W, entry: Option<EntryWriter>) -> Self {
        Tee {
            client,
            client_error: None,
            entry,
        }
    }

    /// Commits the entry (the whole body has been read), then gives the client writer back,
    /// or the error the client had.
    fn finish(self) -> Result<W> {
        if let Some(entry) = self.entry {
            if let Err(e) = entry.commit() {
                log::warn!("cache: response not stored: {e}");
            }
        }
        match self.client_error {
            Some(e) => Err(Error::Io(Side::Client, e)),
            None => Ok(self.client),
        }
    }
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.client_error.is_none() {
            if let Err(e) = self.client.write_all(buf) {
                self.client_error = Some(e);
            }
        }
        if let Some(entry) = self.entry.as_mut() {
            if let Err(e) = entry.write_all(buf) {
                log::warn!("cache: cannot write the entry, not storing it: {e}");
                self.entry = None;
            } else if entry.is_abandoned() {
                self.entry = None;
            }
        }
        match self.client_error.take() {
            Some(e) if self.entry.is_none() => Err(e),
            error => {
                self.client_error = error;
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.client_error.is_none() {
            if let Err(e) = self.client.flush() {
                self.client_error = Some(e);
            }
        }
        Ok(())
    }
}

/// Step 12, from the cache: the stored response, or a 304 when the client's own conditional
/// matches (RFC 9111 §4.3.2), with `Age` (§5.1: the current age, whole seconds) and
/// `X-Cache`. Date and the other stored fields are sent as stored. The request had no body
/// (the lookup only answers those), so the connection may carry on.
fn serve_from_cache(
    client: &TcpStream,
    request: &Request,
    mut entry: Entry,
    age: Duration,
    exchange: &mut Exchange,
) -> Result<()> {
    let client_err = |e| Error::Io(Side::Client, e);
    let (head, framing) = if cache::not_modified(request, &entry.response) {
        (
            cache::not_modified_response(&entry.response),
            Framing::Empty,
        )
    } else if entry.response.status == 204 {
        (entry.response.clone(), Framing::Empty)
    } else {
        (entry.response.clone(), Framing::Length(entry.body_len))
    };
    let (mut head, _, keep_alive) =
        filter_response(head, request.version, framing, request.keep_alive());
    head.headers.set("Age", age.as_secs().to_string());
    head.headers.set("X-Cache", exchange.cache.as_str());
    exchange.status = Some(head.status);
    exchange.keep_alive = keep_alive;
    let mut out = BufWriter::with_capacity(CLIENT_WRITE_BUFFER, client);
    serialize::write_response_head(&mut out, &head).map_err(client_err)?;
    exchange.head_sent = true;
    if let (Framing::Length(len), false) = (framing, request.method == "HEAD") {
        // A buffer no bigger than the body: a small entry is one read, and goes out in the
        // same write as the head.
        let capacity = usize::try_from(len)
            .unwrap_or(COPY_BUFFER)
            .clamp(1, COPY_BUFFER);
        let mut stored = BufReader::with_capacity(capacity, entry.body());
        exchange.bytes = copy_body(&mut stored, &mut out, Side::Backend, Side::Client, len)?;
        if exchange.bytes != len {
            let why = "the cache entry was truncated while being served";
            return Err(Error::Io(
                Side::Backend,
                io::Error::new(io::ErrorKind::UnexpectedEof, why),
            ));
        }
    }
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
        let out = rewrite_request(&r, peer(), &backend(), Framing::Empty, false);
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
        // With pooling on, HTTP/1.1's default (persistent) is left to speak for itself.
        let pooled = rewrite_request(&r, peer(), &backend(), Framing::Empty, true);
        assert!(!pooled.headers.contains("connection"));
    }

    #[test]
    fn rewrite_turns_absolute_form_into_origin_form() {
        let r = req("GET http://Other.example:81/x?y HTTP/1.1\r\nHost: ignored\r\n\r\n");
        let out = rewrite_request(&r, peer(), &backend(), Framing::Empty, false);
        assert_eq!(out.target, "/x?y");
        assert_eq!(
            out.headers.get("x-forwarded-host"),
            Some("Other.example:81")
        );
    }

    #[test]
    fn rewrite_drops_hop_by_hop_fields_and_reframes_the_body() {
        let r = req("POST / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: 5\r\nTE: trailers\r\nUpgrade: h2c\r\nProxy-Connection: x\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n");
        let out = rewrite_request(&r, peer(), &backend(), Framing::Chunked, false);
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
        let sized = rewrite_request(&r, peer(), &backend(), Framing::Length(7), false);
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

    /// A client that accepts `left` bytes, then fails as a closed socket does.
    struct Leaving {
        taken: Vec<u8>,
        left: usize,
    }

    impl Write for Leaving {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.left == 0 {
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, "gone"));
            }
            let n = buf.len().min(self.left);
            self.taken.extend_from_slice(&buf[..n]);
            self.left -= n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn tee_keeps_filling_the_entry_after_the_client_leaves() {
        let dir = std::env::temp_dir().join(format!("relevo-tee-{}", std::process::id()));
        let store = Store::new(&dir, 1 << 20, 1 << 20);
        let mut head = Response::new(200);
        head.headers.append("Content-Length", "12");
        let entry = store.begin("k", &head).unwrap();
        let client = Leaving {
            taken: Vec::new(),
            left: 5,
        };
        let mut tee = Tee::new(client, Some(entry));
        for part in [b"abcd", b"efgh", b"ijkl"] {
            tee.write_all(part).unwrap();
        }
        assert_eq!(tee.client.taken, b"abcde");
        assert!(matches!(tee.finish(), Err(Error::Io(Side::Client, _))));
        let mut body = Vec::new();
        let mut stored = store.read("k").unwrap();
        std::io::Read::read_to_end(stored.body(), &mut body).unwrap();
        assert_eq!(body, b"abcdefghijkl");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn tee_without_an_entry_fails_with_the_client() {
        let client = Leaving {
            taken: Vec::new(),
            left: 2,
        };
        let mut tee = Tee::new(client, None);
        let e = tee.write_all(b"abcd").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn validation_replaces_the_clients_conditionals() {
        let r = req(
            "GET / HTTP/1.1\r\nHost: h\r\nIf-None-Match: \"mine\"\r\nIf-Modified-Since: x\r\n\r\n",
        );
        let mut out = rewrite_request(&r, peer(), &backend(), Framing::Empty, false);
        add_validators(&mut out, &[("If-None-Match".into(), "\"ours\"".into())]);
        assert_eq!(
            out.headers.get_all("if-none-match").collect::<Vec<_>>(),
            ["\"ours\""]
        );
        assert!(!out.headers.contains("if-modified-since"));
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
