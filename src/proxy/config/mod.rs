//! The proxy's configuration file: the [`Config`] values and their defaults, and the parser
//! that turns a file of `key = value` lines into them.
//!
//! [`load`] reads a file (at most [`MAX_CONFIG_BYTES`]) and hands its text to [`parse`], which
//! works on a plain `&str` and is what the unit tests exercise. Every mistake is reported as a
//! [`ConfigError`] that prints as `path:line: message`, in the manner of a compiler, and the
//! parser stops at the first one. This module only reads and checks values; it does not open
//! log files, create the cache directory or resolve backend names — the modules that use a
//! value own what it means at run time.
//!
//! One file per part:
//! - this file: the values and their defaults, the keys and the field each one sets
//!   (`apply`), [`load`] and [`parse`]. Adding a key is done here, plus a value parser when
//!   its form is new;
//! - `syntax.rs`: the line grammar (`key = value`, comments, no quotes) and the rules across
//!   lines (a key given once, a backend listed once);
//! - `values.rs`: seconds, sizes and counts, switches, the log level, methods, paths, the
//!   balancing algorithm ([`Balance`]), the access log's format ([`AccessLogFormat`]);
//! - `addresses.rs`: `listen`, [`Backend`] (with `weight=N` and `backup`), [`Cidr`] and the
//!   `host:port` grammar they share;
//! - `sources.rs`: where each value came from ([`Sources`]: a line of the file, the default,
//!   or a command-line option), the command line's overrides, and [`Config::blame`], which
//!   turns a start-up failure into an error naming the line that set the value.
//!
//! # Syntax
//!
//! One `key = value` per line, in any order; `#` starts a comment anywhere on a line; every
//! key except `backend` may be given at most once, and the same backend may not be listed
//! twice. A backend line may end with options: `weight=N` (1..=100, default 1) and `backup`
//! (used only while no other backend is usable); at least one backend must not be a backup. Values are taken as written, spaces included, so they are written without quotes
//! (the grammar and its rules are in `syntax.rs`). Methods are case-sensitive (RFC 9110 §9.1)
//! and clients send them in upper case, so `methods = get head` would refuse every request:
//! a method with a lower-case letter is refused too (see `parse_methods`).
//!
//! # Example
//!
//! The complete list of keys, each set to its default (the backends have none and at least
//! one is required):
//!
//! ```text
//! # proxy.conf
//! listen = 0.0.0.0:8080          # host:port to accept clients on; port 0 = any free port
//! backend = 127.0.0.1:8081       # one line per backend, used round robin in this order
//! backend = 127.0.0.1:8082 weight=1  # options: weight=N (1..=100, default 1) for a share
//! backend = [::1]:8083           # IPv6 addresses go in brackets; `backup`: only when all
//!                                # the others are unusable
//! balance = round_robin          # or least_conn, ip_hash, uri_hash, random_two
//! log_file = logs/proxy.log
//! log_level = info               # off, error, warn, info, debug or trace
//! methods = *                    # * forwards every method; or a list such as `GET HEAD`
//! connect_timeout = 3            # seconds to open a connection to a backend
//! upstream_timeout = 30          # seconds to wait for a backend to send or accept data
//! client_timeout = 15            # seconds to wait for a client to send or accept data
//! max_connections = 10000        # clients served at the same time
//! max_body_size = 104857600      # bytes in a request body (100 MiB); beyond: 413
//! splice_min_body = off          # bytes from which a relayed body (or chunk) moves by splice
//! max_request_line = 8192        # bytes in the request line
//! max_header_bytes = 65536       # bytes in the whole header section
//! max_headers = 100              # header fields in one message
//! cache = on                     # on or off
//! cache_dir = cache
//! cache_ttl = 60                 # seconds a response without its own lifetime stays fresh
//! cache_heuristic_max = 86400    # seconds at most of the heuristic lifetime from
//!                                # Last-Modified (a tenth of its age); 0: off
//! cache_stale_if_error = 86400   # seconds past its lifetime a response may be served when no
//!                                # backend can answer; 0: only when it says stale-if-error
//! cache_max_size = 1073741824    # bytes the whole cache may use on disk (1 GiB)
//! cache_max_object = 104857600   # bytes of the largest response stored (100 MiB)
//! cache_admission = on           # a full cache stores only what is asked for often enough
//! max_response_header_bytes = 65536  # bytes in a backend's status line and header section
//! max_fails = 1                  # failures in a row that mark a backend down (0: never)
//! fail_timeout = 10              # seconds a backend marked down is skipped
//! health_check = /health         # optional: path probed on every backend (absent: no probes)
//! health_interval = 5            # seconds between two probes of the same backend
//! upstream_keepalive = 32        # idle connections kept per backend for reuse (0: none)
//! upstream_idle_timeout = 10     # seconds an idle backend connection is kept
//! access_log = logs/access.log   # one line per request; `off` for none
//! access_log_format = combined   # Combined Log Format, or `json`: one JSON object per line
//! status_path = /relevo/status   # the proxy's own status page (never forwarded); `off` for none
//! metrics_path = /relevo/metrics # Prometheus metrics (never forwarded); `off` for none
//! status_allow = 127.0.0.0/8 ::1 # addresses (CIDR) that may see both; others get 403
//! status_hosts = proxy.example   # host names a page may use the buttons under, besides IPs and localhost
//! tunnel_idle_timeout = 300      # seconds a WebSocket tunnel or event stream may stay silent
//! rewrite_location = on          # backend addresses in Location become the client's host
//! upstream_total_timeout = 60    # seconds for all attempts at one request, retries included
//! max_connections_per_ip = 0     # client connections from one address (0: no cap)
//! underscores_in_headers = off   # off drops request fields whose names contain `_`
//! allow_trace = off              # off answers TRACE with 405
//! pool api = 10.0.0.5:8080 weight=2 10.0.0.6:8080   # another pool of backends (options
//!                                # as for `backend`); the `backend` lines are `default`
//! route = /api/ api              # paths starting /api/ go to pool api; `HOST/PREFIX` for one
//! route = shop.example/ default  # host; the longest prefix wins, a host beats none
//! shutdown_timeout = 30          # seconds `proxy --stop` lets requests in flight finish
//! ```

mod addresses;
mod routing;
mod sources;
mod syntax;
mod values;

use std::error::Error;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use log::LevelFilter;

use crate::cache::Policy;

use addresses::parse_backend;
use addresses::parse_listen;
pub(crate) use addresses::parse_weight;
pub use addresses::{Backend, Cidr, DEFAULT_WEIGHT, MAX_WEIGHT};
#[cfg(test)]
pub(crate) use routing::parse_route;
pub use routing::{host_without_port, Pool, Route, DEFAULT_POOL};
pub(crate) use sources::Source;
pub use sources::{load_with, Overrides, Sources, DEFAULT_CONFIG};
use values::{
    parse_bool, parse_host_names, parse_level, parse_methods, parse_nonzero_usize, parse_path,
    parse_probe_path, parse_seconds, parse_u32, parse_u64, parse_usize,
};
pub use values::{AccessLogFormat, Balance};

/// Largest configuration file [`load`] accepts, in bytes (1 MiB).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Most characters of the user's text quoted back in an error message, so that a hostile or
/// mistaken megabyte-long line gives a one-line error.
const MAX_QUOTED_CHARS: usize = 64;

/// Every key a configuration file may contain; `apply` has one match arm for each.
const KEYS: &[&str] = &[
    "listen",
    "backend",
    "balance",
    "log_file",
    "log_level",
    "methods",
    "connect_timeout",
    "upstream_timeout",
    "client_timeout",
    "max_connections",
    "max_body_size",
    "splice_min_body",
    "max_request_line",
    "max_header_bytes",
    "max_headers",
    "cache",
    "cache_dir",
    "cache_ttl",
    "cache_heuristic_max",
    "cache_stale_if_error",
    "cache_max_size",
    "cache_max_object",
    "cache_admission",
    "max_response_header_bytes",
    "max_fails",
    "fail_timeout",
    "health_check",
    "health_interval",
    "upstream_keepalive",
    "upstream_idle_timeout",
    "access_log",
    "access_log_format",
    "status_path",
    "metrics_path",
    "status_allow",
    "status_hosts",
    "tunnel_idle_timeout",
    "rewrite_location",
    "upstream_total_timeout",
    "max_connections_per_ip",
    "underscores_in_headers",
    "allow_trace",
    "route",
    "shutdown_timeout",
];

/// Everything the proxy can be configured with. Each field is set by the key of the same
/// name (`backends` by repeated `backend` lines); see the module docs for the file format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Address to accept clients on, `host:port` exactly as written; port 0 lets the OS pick.
    /// Default `0.0.0.0:8080`.
    pub listen: String,
    /// Backends in round-robin order, one `backend` line each. Default: none, and a file
    /// without any, or with only `backup` ones, is an error.
    pub backends: Vec<Backend>,
    /// How a backend is picked for each request. Default `round_robin`.
    pub balance: Balance,
    /// File the proxy logs to, reopened at its path when moved away. Default
    /// `logs/proxy.log`.
    pub log_file: PathBuf,
    /// Most detailed log level written. Default `info`.
    pub log_level: LevelFilter,
    /// Request methods forwarded, compared case-sensitively (so written in upper case, as
    /// clients send them); `None` forwards every method. Default `None` (written `*`).
    pub methods: Option<Vec<String>>,
    /// Time allowed to open a connection to a backend. Default 3 s.
    pub connect_timeout: Duration,
    /// Time allowed for each read from or write to a backend. Default 30 s.
    pub upstream_timeout: Duration,
    /// Time allowed for each read from or write to a client. Default 15 s.
    pub client_timeout: Duration,
    /// Client connections served at the same time (> 0); lowered at start-up to what the
    /// open-file limit holds. Default 10000.
    pub max_connections: usize,
    /// Largest request or response body, in bytes. Default 104857600 (100 MiB).
    pub max_body_size: u64,
    /// Response bodies of Content-Length, and chunks, at least this long (bytes) are moved
    /// socket to socket with splice when they are not stored (see `proxy::splice`). Default
    /// `off` (`u64::MAX`): on the machine measured, the buffered copy was as fast and cheaper.
    pub splice_min_body: u64,
    /// Longest request line, in bytes (> 0). Default 8192.
    pub max_request_line: usize,
    /// Largest header section, in bytes (> 0). Default 65536.
    pub max_header_bytes: usize,
    /// Most header fields in one message (> 0). Default 100.
    pub max_headers: usize,
    /// Whether responses are cached. Default `true` (written `on`).
    pub cache: bool,
    /// Directory the cache stores responses in. Default `cache`.
    pub cache_dir: PathBuf,
    /// Freshness lifetime of heuristically cacheable responses that give neither a lifetime
    /// of their own nor a `Last-Modified`, in seconds (0: none, stored only to be
    /// revalidated). Default 60.
    pub cache_ttl: u64,
    /// Cap of the heuristic lifetime of a response with `Last-Modified` and no lifetime of
    /// its own (a tenth of the time since Last-Modified, RFC 9111 §4.2.2), in seconds; 0
    /// turns that heuristic off (such responses get `cache_ttl`). Default 86400 (1 day).
    pub cache_heuristic_max: u64,
    /// How long past its lifetime a stored response may be served when no backend can
    /// answer (refused, timed out, 5xx) and neither the response nor the request says
    /// `stale-if-error`, in seconds; 0: only when they say so (RFC 5861). Default 86400.
    pub cache_stale_if_error: u64,
    /// Total size the cache may use on disk, in bytes. Default 1073741824 (1 GiB).
    pub cache_max_size: u64,
    /// Largest single response the cache stores, in bytes. Default 104857600 (100 MiB).
    pub cache_max_object: u64,
    /// Whether a full cache stores a response only when its URL was asked for before and
    /// more often lately than the entry it would displace (`cache::admission`). Default
    /// `true` (written `on`).
    pub cache_admission: bool,
    /// Largest status line plus header section accepted from a backend, in bytes (> 0);
    /// beyond it the response is a 502. Default 65536.
    pub max_response_header_bytes: usize,
    /// Failures in a row (refused, timed out, garbage) that mark a backend down; 0 never
    /// marks one down. Default 1.
    pub max_fails: u32,
    /// How long a backend marked down is skipped. Default 10 s.
    pub fail_timeout: Duration,
    /// Path probed on every backend by a background thread (`GET path`, any 2xx or 3xx is
    /// up); `None` disables active checks. Default `None`.
    pub health_check: Option<String>,
    /// Time between two probes of the same backend. Default 5 s.
    pub health_interval: Duration,
    /// Idle keep-alive connections kept per backend for the next requests; 0 sends every
    /// request on a new connection with `Connection: close`. Default 32.
    pub upstream_keepalive: usize,
    /// How long an idle backend connection is kept before it is closed. Keep it below the
    /// backends' own keep-alive timeout. Default 10 s.
    pub upstream_idle_timeout: Duration,
    /// Where the access log goes, reopened at its path when moved away; `None` (written
    /// `off`) for none. Default `logs/access.log`.
    pub access_log: Option<PathBuf>,
    /// How the access log writes each request. Default `combined`.
    pub access_log_format: AccessLogFormat,
    /// Path of the proxy's status page, answered by the proxy itself and never forwarded;
    /// `None` (written `off`) for none. Default `/relevo/status`.
    pub status_path: Option<String>,
    /// Path of the proxy's metrics (Prometheus text format), answered by the proxy itself
    /// and never forwarded; `None` (written `off`) for none. Must differ from
    /// `status_path`. Default `/relevo/metrics`.
    pub metrics_path: Option<String>,
    /// Client addresses allowed to see the status page and the metrics; others get 403.
    /// Default loopback only: `127.0.0.0/8 ::1`.
    pub status_allow: Vec<Cidr>,
    /// Host names, besides IP addresses and `localhost`, under which a browser's page may
    /// take the status page's actions (DNS rebinding: see `admin`). Default none.
    pub status_hosts: Vec<String>,
    /// How long a WebSocket tunnel, or a `text/event-stream` response body, may go without
    /// a byte in either direction before it is closed. Default 300 s.
    pub tunnel_idle_timeout: Duration,
    /// Whether a `Location` or `Content-Location` pointing at the backend (as named in the
    /// `Host` we sent it) is rewritten to the host the client used. Default `true` (`on`).
    pub rewrite_location: bool,
    /// Time allowed for every attempt at one request together, retries on other backends
    /// included, until the response head has arrived. Default 60 s.
    pub upstream_total_timeout: Duration,
    /// Client connections one address may hold at once; 0 for no cap. Default 0.
    pub max_connections_per_ip: usize,
    /// Whether request fields whose names contain `_` are forwarded; off drops them (as
    /// nginx's `underscores_in_headers off`). Default `false` (`off`).
    pub underscores_in_headers: bool,
    /// Whether TRACE is forwarded; off answers it with 405 (TRACE echoes credentials back).
    /// Default `false` (`off`).
    pub allow_trace: bool,
    /// The pools declared besides the default one (the `backend` lines), by `pool NAME =`
    /// lines, in the order given. Default: none.
    pub pools: Vec<Pool>,
    /// Which requests go to which pool, one `route` line each, in the order given. Default:
    /// none (every request goes to the default pool).
    pub routes: Vec<Route>,
    /// How long a graceful stop (`proxy --stop`) waits for the requests in flight. Default
    /// 30 s.
    pub shutdown_timeout: Duration,
    /// Where each value above came from, for start-up errors and warnings. Not a setting:
    /// [`Config::default`] has every value from `Source::Default`.
    pub sources: Sources,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "0.0.0.0:8080".to_string(),
            backends: Vec::new(),
            balance: Balance::RoundRobin,
            log_file: PathBuf::from("logs/proxy.log"),
            log_level: LevelFilter::Info,
            methods: None,
            connect_timeout: Duration::from_secs(3),
            upstream_timeout: Duration::from_secs(30),
            client_timeout: Duration::from_secs(15),
            max_connections: 10_000,
            max_body_size: 100 * 1024 * 1024,
            splice_min_body: super::splice::SPLICE_THRESHOLD,
            max_request_line: 8192,
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            cache: true,
            cache_dir: PathBuf::from("cache"),
            cache_ttl: 60,
            cache_heuristic_max: Policy::ONE_DAY.as_secs(),
            cache_stale_if_error: Policy::ONE_DAY.as_secs(),
            cache_max_size: 1024 * 1024 * 1024,
            cache_max_object: 100 * 1024 * 1024,
            cache_admission: true,
            max_response_header_bytes: 64 * 1024,
            max_fails: 1,
            fail_timeout: Duration::from_secs(10),
            health_check: None,
            health_interval: Duration::from_secs(5),
            upstream_keepalive: 32,
            upstream_idle_timeout: Duration::from_secs(10),
            access_log: Some(PathBuf::from("logs/access.log")),
            access_log_format: AccessLogFormat::Combined,
            status_path: Some("/relevo/status".to_string()),
            metrics_path: Some("/relevo/metrics".to_string()),
            status_hosts: Vec::new(),
            status_allow: vec![
                Cidr {
                    addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)),
                    prefix: 8,
                },
                Cidr {
                    addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
                    prefix: 128,
                },
            ],
            tunnel_idle_timeout: Duration::from_secs(300),
            rewrite_location: true,
            upstream_total_timeout: Duration::from_secs(60),
            max_connections_per_ip: 0,
            underscores_in_headers: false,
            allow_trace: false,
            pools: Vec::new(),
            routes: Vec::new(),
            shutdown_timeout: Duration::from_secs(30),
            sources: Sources::default(),
        }
    }
}

/// A mistake in a configuration file, and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the text came from: the path as given to [`load`], or the name given to [`parse`].
    pub origin: String,
    /// 1-based line of the mistake; 0 when the file as a whole could not be read.
    pub line: usize,
    /// What is wrong and, where useful, what was expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.origin, self.line, self.message)
    }
}

impl Error for ConfigError {}

/// Reads the configuration file at `path` and parses it; errors name the path as given.
///
/// # Errors
///
/// Line 0 when the file cannot be read or is larger than [`MAX_CONFIG_BYTES`]; the line of
/// the first bad byte when it is not UTF-8; otherwise whatever [`parse`] reports.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let origin = path.display().to_string();
    let error = |line, message| ConfigError {
        origin: origin.clone(),
        line,
        message,
    };
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|file| file.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| error(0, format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(error(
            0,
            format!("file is larger than {MAX_CONFIG_BYTES} bytes"),
        ));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        error(line, "not valid UTF-8 text".to_string())
    })?;
    parse(&text, &origin)
}

/// Parses the text of a configuration file; `origin` is only used in error messages.
///
/// # Errors
///
/// The first mistake found, with its line: a line that is not `key = value`, an unknown or
/// repeated key, a missing or bad value, no `backend` at all (reported at the last line), or
/// only `backup` ones (reported at the last backend's line).
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let error = |line, message| ConfigError {
        origin: origin.to_string(),
        line,
        message,
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut config = Config::default();
    config.sources.file = origin.to_string();
    for (index, raw) in text.lines().enumerate() {
        syntax::read_line(&mut config, raw, index + 1).map_err(|m| error(index + 1, m))?;
    }
    if config.backends.is_empty() {
        let message = "no backend configured (add a line like `backend = 127.0.0.1:8081`)";
        return Err(error(text.lines().count().max(1), message.to_string()));
    }
    if config.metrics_path.is_some() && config.metrics_path == config.status_path {
        // Their defaults differ, so the file set one of them: the later line is blamed.
        let line = ["metrics_path", "status_path"]
            .map(|key| match config.sources.of(key) {
                Source::Line(line) => line,
                _ => 0,
            })
            .into_iter()
            .max()
            .unwrap_or(1);
        let message = "metrics_path and status_path are the same path: give each its own";
        return Err(error(line, message.to_string()));
    }
    routing_errors(&config).map_err(|(line, message)| error(line, message))?;
    if config.backends.iter().all(|b| b.backup) {
        let line = config.sources.backends.last().copied().unwrap_or(1);
        let message = "every backend is marked `backup`: backups stand in for the others, so \
                       at least one backend must be without it";
        return Err(error(line, message.to_string()));
    }
    Ok(config)
}

/// The routes' pools exist: each route's line, and what is wrong with it, otherwise.
fn routing_errors(config: &Config) -> Result<(), (usize, String)> {
    for (i, route) in config.routes.iter().enumerate() {
        let known = route.pool == DEFAULT_POOL || config.pools.iter().any(|p| p.name == route.pool);
        if !known {
            let declared: Vec<&str> = std::iter::once(DEFAULT_POOL)
                .chain(config.pools.iter().map(|p| p.name.as_str()))
                .collect();
            let line = config.sources.routes.get(i).copied().unwrap_or(1);
            let message = format!(
                "route: no pool named {} (the pools are: {})",
                quote(&route.pool),
                declared.join(", ")
            );
            return Err((line, message));
        }
    }
    Ok(())
}

/// Stores the non-empty `value` of a known `key` in `config`; the error message is prefixed
/// with the key by the caller.
fn apply(config: &mut Config, key: &str, value: &str) -> Result<(), String> {
    match key {
        "listen" => config.listen = parse_listen(value)?,
        "backend" => config.backends.push(parse_backend(value)?),
        "balance" => config.balance = value.parse()?,
        "log_file" => config.log_file = parse_path(value)?,
        "log_level" => config.log_level = parse_level(value)?,
        "methods" => config.methods = parse_methods(value)?,
        "connect_timeout" => config.connect_timeout = parse_seconds(value)?,
        "upstream_timeout" => config.upstream_timeout = parse_seconds(value)?,
        "client_timeout" => config.client_timeout = parse_seconds(value)?,
        "max_connections" => config.max_connections = parse_nonzero_usize(value)?,
        "max_body_size" => config.max_body_size = parse_u64(value)?,
        "splice_min_body" if value == "off" => config.splice_min_body = u64::MAX,
        "splice_min_body" => config.splice_min_body = parse_u64(value)?,
        "max_request_line" => config.max_request_line = parse_nonzero_usize(value)?,
        "max_header_bytes" => config.max_header_bytes = parse_nonzero_usize(value)?,
        "max_headers" => config.max_headers = parse_nonzero_usize(value)?,
        "cache" => config.cache = parse_bool(value)?,
        "cache_dir" => config.cache_dir = parse_path(value)?,
        "cache_ttl" => config.cache_ttl = parse_u64(value)?,
        "cache_heuristic_max" => config.cache_heuristic_max = parse_u64(value)?,
        "cache_stale_if_error" => config.cache_stale_if_error = parse_u64(value)?,
        "cache_max_size" => config.cache_max_size = parse_u64(value)?,
        "cache_max_object" => config.cache_max_object = parse_u64(value)?,
        "cache_admission" => config.cache_admission = parse_bool(value)?,
        "max_response_header_bytes" => {
            config.max_response_header_bytes = parse_nonzero_usize(value)?;
        }
        "max_fails" => config.max_fails = parse_u32(value)?,
        "fail_timeout" => config.fail_timeout = parse_seconds(value)?,
        "health_check" => config.health_check = Some(parse_probe_path(value)?),
        "health_interval" => config.health_interval = parse_seconds(value)?,
        "upstream_keepalive" => config.upstream_keepalive = parse_usize(value)?,
        "upstream_idle_timeout" => config.upstream_idle_timeout = parse_seconds(value)?,
        "access_log" => {
            config.access_log = (value != "off").then(|| parse_path(value)).transpose()?;
        }
        "access_log_format" => config.access_log_format = value.parse()?,
        "status_path" => {
            config.status_path = (value != "off")
                .then(|| parse_probe_path(value))
                .transpose()?;
        }
        "metrics_path" => {
            config.metrics_path = (value != "off")
                .then(|| parse_probe_path(value))
                .transpose()?;
        }
        "status_allow" => {
            config.status_allow = value
                .split([' ', '\t', ','])
                .filter(|part| !part.is_empty())
                .map(str::parse)
                .collect::<Result<_, _>>()?;
        }
        "status_hosts" => config.status_hosts = parse_host_names(value)?,
        "tunnel_idle_timeout" => config.tunnel_idle_timeout = parse_seconds(value)?,
        "rewrite_location" => config.rewrite_location = parse_bool(value)?,
        "upstream_total_timeout" => config.upstream_total_timeout = parse_seconds(value)?,
        "max_connections_per_ip" => config.max_connections_per_ip = parse_usize(value)?,
        "underscores_in_headers" => config.underscores_in_headers = parse_bool(value)?,
        "allow_trace" => config.allow_trace = parse_bool(value)?,
        "route" => config.routes.push(routing::parse_route(value)?),
        "shutdown_timeout" => config.shutdown_timeout = parse_seconds(value)?,
        _ => return Err("not a known key".to_string()),
    }
    Ok(())
}

/// The user's `text` in backticks for an error message, control characters escaped and cut
/// after [`MAX_QUOTED_CHARS`] characters.
fn quote(text: &str) -> String {
    let mut out = String::from("`");
    for (i, c) in text.chars().enumerate() {
        if i == MAX_QUOTED_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.push('`');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    /// The smallest valid file.
    pub(super) const MINIMAL: &str = "backend = 127.0.0.1:8081\n";

    /// Parses `text` expecting an error, and returns its line and message.
    pub(super) fn error(text: &str) -> (usize, String) {
        let e = parse(text, "test.conf").unwrap_err();
        (e.line, e.message)
    }

    /// The error message for a file that is `MINIMAL` plus `line`, asserting it is on line 2.
    pub(super) fn bad_line(line: &str) -> String {
        let (at, message) = error(&format!("{MINIMAL}{line}\n"));
        assert_eq!(at, 2, "{message}");
        message
    }

    /// The example configuration from this module's own doc comment.
    fn doc_example() -> String {
        let source = include_str!("mod.rs");
        let start = source.find("//! ```text\n//! # proxy.conf").unwrap();
        source[start..]
            .lines()
            .skip(1)
            .take_while(|line| *line != "//! ```")
            .map(|line| format!("{}\n", line.trim_start_matches("//!").trim_start()))
            .collect()
    }

    /// A file holding `bytes` in a temporary directory of its own, removed when dropped.
    struct TempFile {
        _dir: TempDir,
        path: PathBuf,
    }

    impl TempFile {
        fn new(name: &str, bytes: &[u8]) -> TempFile {
            let dir = TempDir::new("config");
            let path = dir.join(name);
            std::fs::write(&path, bytes).unwrap();
            TempFile { _dir: dir, path }
        }
    }

    #[test]
    fn defaults() {
        let c = Config::default();
        assert_eq!(c.listen, "0.0.0.0:8080");
        assert!(c.backends.is_empty());
        assert_eq!(c.log_file, PathBuf::from("logs/proxy.log"));
        assert_eq!(c.log_level, LevelFilter::Info);
        assert_eq!(c.methods, None);
        assert_eq!(c.connect_timeout, Duration::from_secs(3));
        assert_eq!(c.upstream_timeout, Duration::from_secs(30));
        assert_eq!(c.client_timeout, Duration::from_secs(15));
        assert_eq!(c.max_connections, 10_000);
        assert_eq!(c.max_body_size, 104_857_600);
        assert_eq!(c.splice_min_body, u64::MAX, "off");
        assert_eq!(c.max_request_line, 8192);
        assert_eq!(c.max_header_bytes, 65536);
        assert_eq!(c.max_headers, 100);
        assert!(c.cache);
        assert_eq!(c.cache_dir, PathBuf::from("cache"));
        assert_eq!(c.cache_ttl, 60);
        assert_eq!(c.cache_max_size, 1_073_741_824);
        assert_eq!(c.cache_max_object, 104_857_600);
        assert!(c.cache_admission);
    }

    #[test]
    fn minimal_file_gives_defaults_plus_backend() {
        let c = parse(MINIMAL, "test.conf").unwrap();
        let expected = Config {
            backends: vec!["127.0.0.1:8081".parse().unwrap()],
            sources: c.sources.clone(),
            ..Config::default()
        };
        assert_eq!(c, expected);
        assert_eq!(c.sources.of("backend"), Source::Line(1));
        assert_eq!(c.sources.of("log_file"), Source::Default);
    }

    #[test]
    fn doc_example_sets_every_key_to_its_default() {
        let text = doc_example();
        for key in KEYS {
            assert!(
                text.lines().any(|l| l.starts_with(&format!("{key} ="))),
                "example lacks `{key}`"
            );
        }
        let c = parse(&text, "proxy.conf").unwrap();
        assert_eq!(c.pools.len(), 1);
        assert_eq!(
            (c.pools[0].name.as_str(), c.pools[0].backends.len()),
            ("api", 2)
        );
        assert_eq!(c.routes.len(), 2);
        let authorities: Vec<String> = c.backends.iter().map(Backend::authority).collect();
        assert_eq!(
            authorities,
            ["127.0.0.1:8081", "127.0.0.1:8082", "[::1]:8083"]
        );
        // The keys whose default is "absent" or "none" are shown with example values.
        let expected = Config {
            backends: c.backends.clone(),
            health_check: Some("/health".to_string()),
            status_hosts: vec!["proxy.example".to_string()],
            pools: c.pools.clone(),
            routes: c.routes.clone(),
            sources: c.sources.clone(),
            ..Config::default()
        };
        assert_eq!(c, expected);
    }

    #[test]
    fn full_example_with_other_values() {
        let text = "\
# a test configuration
listen = [::]:0
backend = app.example.com:80
backend = 10.0.0.2:8080
log_file = /var/log/relevo.log
log_level = DEBUG
methods = GET HEAD   POST
connect_timeout = 1
upstream_timeout = 0.5
client_timeout = 2.25
max_connections = 8
max_body_size = 0
max_request_line = 100
max_header_bytes = 2000
max_headers = 10
cache = off
cache_dir = /tmp/relevo cache
cache_ttl = 0
cache_max_size = 18446744073709551615
cache_max_object = 5
splice_min_body = 262144
cache_admission = off
";
        let c = parse(text, "test.conf").unwrap();
        assert_eq!(c.listen, "[::]:0");
        assert_eq!(c.backends.len(), 2);
        assert_eq!(c.backends[0].host, "app.example.com");
        assert_eq!(c.backends[1].authority(), "10.0.0.2:8080");
        assert_eq!(c.log_file, PathBuf::from("/var/log/relevo.log"));
        assert_eq!(c.log_level, LevelFilter::Debug);
        assert_eq!(
            c.methods,
            Some(vec![
                "GET".to_string(),
                "HEAD".to_string(),
                "POST".to_string()
            ])
        );
        assert_eq!(c.connect_timeout, Duration::from_secs(1));
        assert_eq!(c.upstream_timeout, Duration::from_millis(500));
        assert_eq!(c.client_timeout, Duration::from_millis(2250));
        assert_eq!(c.max_connections, 8);
        assert_eq!(c.max_body_size, 0);
        assert_eq!(c.max_request_line, 100);
        assert_eq!(c.max_header_bytes, 2000);
        assert_eq!(c.max_headers, 10);
        assert!(!c.cache);
        assert_eq!(c.cache_dir, PathBuf::from("/tmp/relevo cache"));
        assert_eq!(c.cache_ttl, 0);
        assert_eq!(c.cache_max_size, u64::MAX);
        assert_eq!(c.cache_max_object, 5);
        assert_eq!(c.splice_min_body, 262_144);
        assert!(!c.cache_admission);
    }

    #[test]
    fn missing_backend_is_reported_at_the_last_line() {
        let message = "no backend configured (add a line like `backend = 127.0.0.1:8081`)";
        assert_eq!(
            error("listen = 1.2.3.4:80\n# no backend\n\n"),
            (3, message.to_string())
        );
        assert_eq!(error(""), (1, message.to_string()));
        assert_eq!(error("# only\n# comments"), (2, message.to_string()));
    }

    #[test]
    fn first_error_wins() {
        assert_eq!(error("cache = x\nfoo = 1\n").0, 1);
    }

    #[test]
    fn load_reads_a_file_and_names_it() {
        let file = TempFile::new(
            "ok.conf",
            b"backend = 127.0.0.1:8081\nlisten = 127.0.0.1:0\n",
        );
        let c = load(&file.path).unwrap();
        assert_eq!(c.listen, "127.0.0.1:0");
        let file = TempFile::new("bad.conf", b"backend = 127.0.0.1:8081\ncache = ?\n");
        let e = load(&file.path).unwrap_err();
        assert_eq!(e.origin, file.path.display().to_string());
        assert_eq!(e.line, 2);
    }

    #[test]
    fn load_missing_file() {
        let path = Path::new("/nonexistent/relevo/proxy.conf");
        let e = load(path).unwrap_err();
        assert_eq!(e.origin, "/nonexistent/relevo/proxy.conf");
        assert_eq!(e.line, 0);
        assert!(e.message.starts_with("cannot read: "), "{}", e.message);
    }

    #[test]
    fn load_directory_is_an_error() {
        let e = load(&std::env::temp_dir()).unwrap_err();
        assert_eq!(e.line, 0);
        assert!(e.message.starts_with("cannot read: "), "{}", e.message);
    }

    #[test]
    fn load_rejects_non_utf8() {
        let file = TempFile::new("latin1.conf", b"backend = a:1\n# caf\xe9\n");
        let e = load(&file.path).unwrap_err();
        assert_eq!((e.line, e.message.as_str()), (2, "not valid UTF-8 text"));
    }

    #[test]
    fn load_rejects_oversized_file() {
        let mut bytes = b"backend = a:1\n".to_vec();
        bytes.resize(MAX_CONFIG_BYTES as usize + 1, b'\n');
        let file = TempFile::new("huge.conf", &bytes);
        let e = load(&file.path).unwrap_err();
        assert_eq!(e.line, 0);
        assert_eq!(e.message, "file is larger than 1048576 bytes");
        bytes.truncate(MAX_CONFIG_BYTES as usize);
        let file = TempFile::new("max.conf", &bytes);
        assert!(load(&file.path).is_ok());
    }

    #[test]
    fn the_access_log_format_and_the_metrics_path() {
        let c = parse(
            &format!("{MINIMAL}access_log_format = json\nmetrics_path = /m\n"),
            "t",
        )
        .unwrap();
        assert_eq!(c.access_log_format, AccessLogFormat::Json);
        assert_eq!(c.metrics_path.as_deref(), Some("/m"));
        let c = parse(&format!("{MINIMAL}metrics_path = off\n"), "t").unwrap();
        assert_eq!(c.metrics_path, None);
        assert_eq!(
            bad_line("access_log_format = JSON"),
            "access_log_format: expected combined or json, got `JSON`"
        );
        assert!(bad_line("metrics_path = metrics").starts_with("metrics_path: expected a path"));
        let same = format!("{MINIMAL}status_path = /s\nmetrics_path = /s\n");
        assert_eq!(
            error(&same),
            (
                3,
                "metrics_path and status_path are the same path: give each its own".to_string()
            )
        );
        let same = format!("{MINIMAL}status_path = /relevo/metrics\n");
        assert_eq!(error(&same).0, 2);
        assert!(parse(
            &format!("{MINIMAL}status_path = off\nmetrics_path = off\n"),
            "t"
        )
        .is_ok());
    }

    #[test]
    fn config_error_is_an_error() {
        let e: Box<dyn Error> = Box::new(ConfigError {
            origin: "a.conf".to_string(),
            line: 0,
            message: "cannot read: gone".to_string(),
        });
        assert_eq!(e.to_string(), "a.conf:0: cannot read: gone");
    }
}
