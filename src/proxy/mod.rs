//! The reverse proxy: what happens to one client connection, as a sequence of named steps.
//!
//! ```text
//!  1 read request      2 validate      3 read body (small ones whole)
//!  4 cache lookup ── fresh ──────────────────────────────────────→ serve from cache → 13 log
//!      └ miss / stale → 5 choose backend and connect → 6 rewrite → 7 forward
//!                       → 8 read response head   (5–8 retried on the next backend when safe)
//!  9 invalidate → 10 cache the response (a 304 refreshes the entry, served from cache)
//! 11 filter response → 12 relay body (and store it) → 13 log
//!      └ 101 to a WebSocket upgrade → 12 tunnel bytes both ways until closed → 13 log
//! ```
//!
//! `serve_request` below calls the steps in that order; each is a named function, kept with
//! its kind:
//!
//! | file | steps |
//! |---|---|
//! | `proxy.rs` | 1 read request, 2 validate, 13 log; the connection loop; error replies |
//! | `proxy/backend.rs` | 3 read body, 5–8 choose backend, connect, forward, read response |
//! | `proxy/rewrite.rs` | 6 rewrite the request (pure) |
//! | `proxy/cache_steps.rs` | 4 cache lookup, 9 invalidate, 10 cache the response |
//! | `proxy/relay.rs` | 11 filter the response, 12 relay its body or serve from cache |
//! | `proxy/tunnel.rs` | 12 for a `101`: the WebSocket tunnel |
//! | `proxy/status_page.rs` | the status page, answered instead of step 3 onwards |
//!
//! A step that fails returns an `Error`;
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

pub mod access_log;
pub mod balancer;
mod caching;
pub mod config;
mod fill;
mod forward;
pub mod health;
mod relay;
mod rewrite;
pub mod stats;
pub mod status;
mod status_page;
mod tunnel;
pub mod upstream;

use std::fs::{self, File};
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crate::cache::{CacheStatus, InFlight, PassMarks, Store, TEMP_PREFIX};
use crate::error::{Error, ParseError, Result, Side};
use crate::http::body::{request_framing, response_framing, Framing};
use crate::http::parse::{self, Limits};
use crate::http::serialize;
use crate::http::{text_response, Request, Response};
use crate::logging::file as log_file;
use crate::proxy::access_log::{AccessEntry, AccessLog};
use crate::proxy::balancer::{Balancer, HealthPolicy};
use crate::proxy::config::{Backend, Config};
use crate::proxy::stats::{RequestRecord, Stats};
use crate::proxy::upstream::{Connection, Pool, POOL_REAP_INTERVAL};
use crate::server::{self, ClientStream};
use caching::{Fill, Forward, Lookup, SharedCache};
use fill::serve_growing;
use forward::{read_body, reusable, Job, Upstream};
use health::{HealthChecks, ProbeSettings};
pub use relay::filter_response;
use relay::{relay_response, serve_from_cache};
use rewrite::client_host;
pub use rewrite::{rewrite_locations, rewrite_request};

/// Request bodies up to this size are read whole before a backend is contacted (see
/// `read_body`); larger ones are streamed. Bytes.
pub const REQUEST_BUFFER: usize = 64 * 1024;
/// Read buffer for a client connection: held for the life of every connection, idle ones
/// included, so kept small (a longer head is still read whole, line by line).
pub const CLIENT_BUFFER: usize = 8 * 1024;
/// Write buffer toward the client and toward backends: a head and a small body leave in one
/// write, and larger writes pass through it unbuffered (so it need not be large).
pub const CLIENT_WRITE_BUFFER: usize = 16 * 1024;
/// What we add to Via (RFC 9110 §7.6.3): protocol version and pseudonym.
pub const VIA: &str = "1.1 relevo";
/// Stack size of the thread that checks the backends' names at start-up (bytes): it only
/// calls the resolver.
const RESOLVE_CHECK_STACK_SIZE: usize = 128 * 1024;

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
    /// Each backend's `host:port`, by id, formatted once: it goes in the Host field of
    /// every request forwarded and in every log line.
    authorities: Vec<String>,
}

/// Starts the proxy and serves forever: binds the configured address, opens or creates
/// everything it will need (access log, cache directory, health-check thread), and only
/// then prints `listening on IP:PORT` on stdout, so that a printed address means a proxy
/// that started. (The log file is opened before, by the caller.)
///
/// # Errors
/// A start-up failure, naming the key whose value caused it and the proxy.conf line that
/// set it (see `Config::blame`): the address cannot be bound, the access log or the cache
/// directory cannot be created, the health-check thread cannot be started.
pub fn run(config: Config) -> Result<()> {
    let listener = server::bind(&config.listen).map_err(|e| config.blame("listen", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| config.blame("listen", format!("cannot read the listening address: {e}")))?;
    if config.cache {
        prepare_cache_dir(&config)?;
    }
    let (max_connections, too_few_files) = fit_to_open_files(&config);
    let settings = server::Settings {
        max_connections,
        max_connections_per_ip: config.max_connections_per_ip,
        client_timeout: config.client_timeout,
    };
    let proxy = Arc::new(Proxy::new(config)?);
    let health = proxy.health_checks()?;
    println!("listening on {addr}");
    proxy.log_start(addr);
    // Started after the line above, which must be the first on stdout: the count of the
    // entries already on disk logs what it found.
    if let Some(cache) = &proxy.cache {
        cache
            .store
            .start_upkeep()
            .map_err(|e| Error::Startup(format!("cannot start the cache's upkeep thread: {e}")))?;
    }
    if let Some(warning) = too_few_files {
        log::warn!("{warning}");
    }
    if let Some(health) = health {
        health.start();
    }
    check_backend_names(&proxy.config);
    let reaper = Arc::clone(&proxy);
    thread::Builder::new()
        .name("pool-reaper".to_string())
        .spawn(move || loop {
            thread::sleep(POOL_REAP_INTERVAL);
            reaper.reap_pool();
        })
        .map_err(|e| Error::Startup(format!("cannot start the pool reaper: {e}")))?;
    let active = Arc::clone(&proxy.stats.active_connections);
    server::serve(listener, settings, active, move |stream, peer| {
        proxy.handle_connection(stream, peer);
    });
    Ok(())
}

/// `max_connections`, lowered to what the open-file limit holds: two files per connection,
/// and one for each idle backend connection the pool may keep; and the warning to log
/// when it was lowered.
fn fit_to_open_files(config: &Config) -> (usize, Option<String>) {
    let pooled = config
        .upstream_keepalive
        .saturating_mul(config.backends.len());
    server::fit_connections(config.max_connections, pooled)
}

/// Creates `cache_dir` and checks that a file can be created in it, so that a cache that
/// could store nothing stops start-up instead of warning on every response.
fn prepare_cache_dir(config: &Config) -> Result<()> {
    let dir = &config.cache_dir;
    let blame = |why| config.blame("cache_dir", why);
    log_file::create_dir_all(dir).map_err(blame)?;
    // A temporary file's name: `flush` and the store's start-up clean-up remove leftovers.
    let probe = dir.join(format!("{TEMP_PREFIX}startup-{}", std::process::id()));
    File::create(&probe)
        .and_then(|_| fs::remove_file(&probe))
        .map_err(|e| blame(format!("cannot create files in {}: {e}", dir.display())))
}

/// Warns about every backend whose name does not resolve now, with the line that lists it.
///
/// A warning, not an error as in nginx ("host not found in upstream"): Relevo looks a name
/// up again for every new connection, so a backend whose name appears later (a container
/// started after the proxy, a DNS record not yet published) starts taking requests without
/// a restart, and meanwhile its requests fail over to the other backends. Refusing to start
/// would trade that for catching a typo, which this warning, on the terminal at start-up,
/// catches too. It runs on a thread of its own, after `listening on`, so a slow resolver
/// delays nothing.
fn check_backend_names(config: &Config) {
    let backends: Vec<(Backend, String)> = (0..config.backends.len())
        .map(|i| {
            let at = config
                .sources
                .locate("backend", config.sources.of_backend(i));
            (config.backends[i].clone(), at)
        })
        .collect();
    let checked = thread::Builder::new()
        .name("resolve-check".to_string())
        .stack_size(RESOLVE_CHECK_STACK_SIZE)
        .spawn(move || {
            for (backend, at) in backends {
                if let Err(e) = (backend.host.as_str(), backend.port).to_socket_addrs() {
                    log::warn!(
                        "{at}: cannot resolve `{}` ({e}): check the name; until it resolves, \
                         its requests fail over to the other backends (it is looked up again \
                         for every new connection)",
                        backend.host
                    );
                }
            }
        });
    if let Err(e) = checked {
        log::warn!("cannot start the check of backend names: {e}");
    }
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

/// How long a lingering close waits for each read of what the client still sends (nginx's
/// `lingering_timeout`).
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a lingering close goes on in all (nginx's `lingering_time`).
pub const LINGER_TIME: Duration = Duration::from_secs(30);
/// Bytes read and dropped per read during a lingering close.
const LINGER_BUFFER: usize = 16 * 1024;

/// Closes a connection whose request body was not read to its end (an early answer, a 413),
/// as nginx's lingering close does. Closing a socket with unread bytes makes the kernel
/// reset the connection, and a client still sending its body may then lose our response
/// before reading it. So writing is shut down first (the client sees the response end), then
/// whatever the client still sends is read and dropped until it closes, it stays silent for
/// `LINGER_TIMEOUT`, or `LINGER_TIME` has passed.
fn linger(stream: &TcpStream) {
    use std::io::Read;
    if stream.shutdown(std::net::Shutdown::Write).is_err()
        || stream.set_read_timeout(Some(LINGER_TIMEOUT)).is_err()
    {
        return;
    }
    let until = Instant::now() + LINGER_TIME;
    let mut sink = [0u8; LINGER_BUFFER];
    let mut reader = stream;
    while Instant::now() < until {
        match reader.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// What one request turned into, for the log line.
#[derive(Debug, Default)]
struct Exchange {
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
    /// Id of the backend that answered (or the last one tried).
    backend_id: Option<usize>,
    /// The request was for the status page: logged at debug level only and left out of the
    /// status page's own figures (a page refreshing every 2 s would drown them).
    internal: bool,
    /// What a WebSocket tunnel carried, when the request became one.
    tunnel: Option<tunnel::Report>,
}

impl Proxy {
    /// A proxy for `config`.
    ///
    /// # Errors
    /// When the access log cannot be opened (see `Config::blame`).
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
            pass: PassMarks::new(),
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
            .transpose()
            .map_err(|why| config.blame("access_log", why))?;
        Ok(Proxy {
            authorities: config.backends.iter().map(Backend::authority).collect(),
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

    /// Creates the health-check thread when `health_check` is set, not yet probing.
    fn health_checks(&self) -> Result<Option<HealthChecks>> {
        let Some(path) = &self.config.health_check else {
            return Ok(None);
        };
        let settings = ProbeSettings {
            path: path.clone(),
            interval: self.config.health_interval,
            connect_timeout: self.config.connect_timeout,
            io_timeout: self.config.upstream_timeout,
        };
        health::spawn(Arc::clone(&self.balancer), settings)
            .map(Some)
            .map_err(|e| {
                let why = format!("cannot start the health-check thread: {e}");
                self.config.blame("health_check", why)
            })
    }

    /// Logs what the proxy started with, once `listening on` is out.
    fn log_start(&self, addr: SocketAddr) {
        let config = &self.config;
        log::info!(
            "proxy listening on {addr}, backends in round-robin order: {}",
            self.authorities.join(", ")
        );
        if config.cache {
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
        if let Some(path) = &config.health_check {
            log::info!(
                "health checks: GET {path} every {:?}",
                config.health_interval
            );
        }
    }

    /// Serves one client connection: requests are read and answered in order until the
    /// client closes, asks to close, times out, or sends something that breaks framing.
    pub fn handle_connection(&self, stream: ClientStream, peer: SocketAddr) {
        let mut client = BufReader::with_capacity(CLIENT_BUFFER, stream);
        loop {
            let started = Instant::now();
            // Step 1: read the request head, all of it within client_timeout (idle wait
            // included; less when the slots are under pressure, and the connection may be
            // closed to make room while it waits: see server::slots). A clean close, an
            // idle timeout or a reclaim between requests ends the connection without a log
            // line: there was no request.
            client.get_mut().await_head();
            let head = parse::read_request(&mut client, &self.limits);
            client.get_mut().head_received();
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
                if !exchange.body_consumed && request_framing(&request) != Ok(Framing::Empty) {
                    linger(client.get_ref().tcp());
                }
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
            Lookup::Follow(flight, growing) => {
                exchange.cache = CacheStatus::Hit;
                let tcp = client.get_ref().tcp();
                let wait = self.config.upstream_timeout;
                if serve_growing(tcp, request, &flight, &growing, wait, exchange)? {
                    return Ok(());
                }
                // The entry was committed or dropped just now: look again, once.
                match self.cache_lookup(request, framing) {
                    Lookup::Hit(entry, age) => {
                        return serve_from_cache(tcp, request, entry, age, exchange);
                    }
                    Lookup::Forward(plan) => plan,
                    Lookup::Follow(..) => Forward::bypass(),
                }
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
            mut response,
            complete,
        } = self.exchange_with_backends(
            &mut Job {
                client,
                peer,
                request,
                body: &body,
                validators,
            },
            exchange,
        )?;
        if response.status == 101 {
            return self.tunnel(client, request, conn, response, exchange);
        }
        if self.config.rewrite_location {
            rewrite_locations(&mut response, &self.authorities[id], client_host(request));
        }
        let upstream_framing = response_framing(&request.method, &response)
            .map_err(|e| Error::Parse(Side::Backend, e))?;
        let reusable = complete && reusable(&response, upstream_framing);
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
        // A client whose body was not read to its end (the backend answered early) cannot
        // send another request on this connection.
        let keep_alive = request.keep_alive() && exchange.body_consumed;
        let (mut response, client_framing, keep_alive) = filter_response(
            response,
            request.version,
            upstream_framing,
            keep_alive,
            SystemTime::now(),
        );
        response.headers.set("X-Cache", exchange.cache.as_str());
        exchange.status = Some(response.status);
        exchange.keep_alive = keep_alive;
        // An event stream may be silent for minutes between events: its reads wait up to
        // tunnel_idle_timeout (as a WebSocket tunnel's), not upstream_timeout.
        let event_stream = response.is_event_stream();
        if event_stream {
            conn.set_read_timeout(self.config.tunnel_idle_timeout)
                .map_err(|e| Error::Io(Side::Backend, e))?;
        }
        relay_response(
            &mut conn,
            client.get_ref().tcp(),
            &response,
            (upstream_framing, client_framing),
            entry.map(|entry| (entry, plan.leader.as_ref())),
            exchange,
        )?;
        if event_stream && conn.set_read_timeout(self.config.upstream_timeout).is_err() {
            return Ok(());
        }
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
        if let Error::MethodNotAllowed(_) = e {
            // RFC 9110 §15.5.6: a 405 lists the methods that are supported.
            resp.headers.append("Allow", self.allowed_methods());
        }
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

    /// The methods forwarded, for `Allow`: the `methods` list, or the common ones with `*`;
    /// TRACE and CONNECT only when they would be forwarded.
    fn allowed_methods(&self) -> String {
        const COMMON: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"];
        let listed: Vec<&str> = match &self.config.methods {
            Some(methods) => methods.iter().map(String::as_str).collect(),
            None => COMMON.to_vec(),
        };
        listed
            .into_iter()
            .filter(|m| *m != "CONNECT" && (*m != "TRACE" || self.config.allow_trace))
            .collect::<Vec<_>>()
            .join(", ")
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
        let upstream = exchange.backend_id.map(|id| self.authorities[id].as_str());
        let backend = upstream.unwrap_or("-");
        let status: &dyn std::fmt::Display = match &exchange.status {
            Some(status) => status,
            None => &"-",
        };
        let ms = elapsed.as_millis();
        let bytes = exchange.bytes;
        let cache = exchange.cache.as_str();
        let tunnel = exchange.tunnel.as_ref().map_or(String::new(), |t| {
            format!(" (tunnel: {} B up, {} B down, {})", t.up, t.down, t.ending)
        });
        match (error, exchange.internal) {
            (None, true) => log::debug!("{peer} \"{line_text}\" -> {status} {bytes} B {ms} ms"),
            (None, false) => {
                log::info!(
                    "{peer} \"{line_text}\" -> {backend} {status} {cache} {bytes} B {ms} ms{tunnel}"
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
                upstream,
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
}
