//! The proxy's configuration file: the [`Config`] values and their defaults, and the parser
//! that turns a file of `key = value` lines into them.
//!
//! [`load`] reads a file (at most [`MAX_CONFIG_BYTES`]) and hands its text to [`parse`], which
//! works on a plain `&str` and is what the unit tests exercise. Every mistake is reported as a
//! [`ConfigError`] that prints as `path:line: message`, in the manner of a compiler, and the
//! parser stops at the first one. This module only reads and checks values; it does not open
//! log files, create the cache directory or resolve backend names — the modules that use a
//! value own what it means at run time. So that their start-up errors can point at the line
//! that set the value, a [`Config`] remembers where each value came from ([`Sources`]: a line
//! of the file, the default, or a command-line option), as clap's `ValueSource` does for
//! arguments.
//!
//! # Syntax
//!
//! ```text
//! file    = *( line ( LF / CRLF ) ) [ line ]
//! line    = *WSP [ key *WSP "=" *WSP value ] *WSP [ "#" comment ]
//! key     = one of the names below (lower case; case-sensitive)
//! value   = the rest of the line up to the first "#", trimmed
//! ```
//!
//! A `#` starts a comment anywhere on a line, so no value can contain one. Blank lines are
//! ignored, a UTF-8 byte order mark at the start of the file is skipped, and every key except
//! `backend` may be given at most once; the same backend may not be listed twice.
//!
//! Values are taken as written, spaces included, so quotes would become part of them
//! (`cache_dir = "cache"` would name a directory `"cache"`): a value that starts or ends with
//! `"` or `'` is refused, with the unquoted line as a hint. Methods are case-sensitive
//! (RFC 9110 §9.1) and clients send them in upper case, so `methods = get head` would refuse
//! every request: a method with a lower-case letter is refused too (see `parse_methods`).
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
//! backend = 127.0.0.1:8082
//! backend = [::1]:8083           # IPv6 addresses go in brackets
//! log_file = logs/proxy.log
//! log_level = info               # off, error, warn, info, debug or trace
//! methods = *                    # * forwards every method; or a list such as `GET HEAD`
//! connect_timeout = 3            # seconds to open a connection to a backend
//! upstream_timeout = 30          # seconds to wait for a backend to send or accept data
//! client_timeout = 15            # seconds to wait for a client to send or accept data
//! max_connections = 10000        # clients served at the same time
//! max_body_size = 104857600      # bytes in a request body (100 MiB); beyond: 413
//! max_request_line = 8192        # bytes in the request line
//! max_header_bytes = 65536       # bytes in the whole header section
//! max_headers = 100              # header fields in one message
//! cache = on                     # on or off
//! cache_dir = cache
//! cache_ttl = 60                 # seconds a response without its own lifetime stays fresh
//! cache_max_size = 1073741824    # bytes the whole cache may use on disk (1 GiB)
//! cache_max_object = 104857600   # bytes of the largest response stored (100 MiB)
//! max_response_header_bytes = 65536  # bytes in a backend's status line and header section
//! max_fails = 1                  # failures in a row that mark a backend down (0: never)
//! fail_timeout = 10              # seconds a backend marked down is skipped
//! health_check = /health         # optional: path probed on every backend (absent: no probes)
//! health_interval = 5            # seconds between two probes of the same backend
//! upstream_keepalive = 32        # idle connections kept per backend for reuse (0: none)
//! upstream_idle_timeout = 10     # seconds an idle backend connection is kept
//! access_log = logs/access.log   # one Combined Log Format line per request; `off` for none
//! status_path = /relevo/status   # the proxy's own status page (never forwarded); `off` for none
//! status_allow = 127.0.0.0/8 ::1 # addresses (CIDR) that may see it; others get 403
//! tunnel_idle_timeout = 300      # seconds a WebSocket tunnel or event stream may stay silent
//! rewrite_location = on          # backend addresses in Location become the client's host
//! upstream_total_timeout = 60    # seconds for all attempts at one request, retries included
//! max_connections_per_ip = 0     # client connections from one address (0: no cap)
//! underscores_in_headers = off   # off drops request fields whose names contain `_`
//! allow_trace = off              # off answers TRACE with 405
//! ```

use std::error::Error;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use log::LevelFilter;

/// Largest configuration file [`load`] accepts, in bytes (1 MiB).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Longest timeout accepted, in seconds (one day).
const MAX_TIMEOUT_SECS: f64 = 86_400.0;

/// Shortest timeout accepted, in seconds. Anything shorter could round down to a zero
/// `Duration`, which `set_read_timeout` refuses.
const MIN_TIMEOUT_SECS: f64 = 0.001;

/// Longest DNS name, in characters (RFC 1035 §2.3.4).
const MAX_HOST_LEN: usize = 253;

/// Longest label of a DNS name, in characters (RFC 1035 §2.3.4).
const MAX_LABEL_LEN: usize = 63;

/// Most characters of the user's text quoted back in an error message, so that a hostile or
/// mistaken megabyte-long line gives a one-line error.
const MAX_QUOTED_CHARS: usize = 64;

/// Every key a configuration file may contain; `apply` has one match arm for each.
const KEYS: &[&str] = &[
    "listen",
    "backend",
    "log_file",
    "log_level",
    "methods",
    "connect_timeout",
    "upstream_timeout",
    "client_timeout",
    "max_connections",
    "max_body_size",
    "max_request_line",
    "max_header_bytes",
    "max_headers",
    "cache",
    "cache_dir",
    "cache_ttl",
    "cache_max_size",
    "cache_max_object",
    "max_response_header_bytes",
    "max_fails",
    "fail_timeout",
    "health_check",
    "health_interval",
    "upstream_keepalive",
    "upstream_idle_timeout",
    "access_log",
    "status_path",
    "status_allow",
    "tunnel_idle_timeout",
    "rewrite_location",
    "upstream_total_timeout",
    "max_connections_per_ip",
    "underscores_in_headers",
    "allow_trace",
];

/// Everything the proxy can be configured with. Each field is set by the key of the same
/// name (`backends` by repeated `backend` lines); see the module docs for the file format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Address to accept clients on, `host:port` exactly as written; port 0 lets the OS pick.
    /// Default `0.0.0.0:8080`.
    pub listen: String,
    /// Backends in round-robin order, one `backend` line each. Default: none, and a file
    /// without any is an error.
    pub backends: Vec<Backend>,
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
    /// Freshness lifetime of responses that do not give their own, in seconds (0 allowed).
    /// Default 60.
    pub cache_ttl: u64,
    /// Total size the cache may use on disk, in bytes. Default 1073741824 (1 GiB).
    pub cache_max_size: u64,
    /// Largest single response the cache stores, in bytes. Default 104857600 (100 MiB).
    pub cache_max_object: u64,
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
    /// Where the access log goes (Combined Log Format), reopened at its path when moved
    /// away; `None` (written `off`) for none. Default `logs/access.log`.
    pub access_log: Option<PathBuf>,
    /// Path of the proxy's status page, answered by the proxy itself and never forwarded;
    /// `None` (written `off`) for none. Default `/relevo/status`.
    pub status_path: Option<String>,
    /// Client addresses allowed to see the status page; others get 403. Default loopback
    /// only: `127.0.0.0/8 ::1`.
    pub status_allow: Vec<Cidr>,
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
    /// Where each value above came from, for start-up errors and warnings. Not a setting:
    /// [`Config::default`] has every value from [`Source::Default`].
    pub sources: Sources,
}

/// Where one value of a [`Config`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Set nowhere: the documented default.
    Default,
    /// Set on this 1-based line of the configuration file.
    Line(usize),
    /// Set by this command-line option (`--log`), which overrides the file.
    Flag(&'static str),
}

/// Where each value of a [`Config`] came from: what [`parse`] and
/// [`Config::apply_overrides`] record, so that an error found later (a log file that cannot
/// be created, a backend name that does not resolve) can name the line that set it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources {
    /// The configuration file as named in errors (the `origin` given to [`parse`]).
    file: String,
    /// The keys the file or the command line set, each with where; `backend` is apart.
    keys: Vec<(&'static str, Source)>,
    /// The line of each `backend`, in the order of [`Config::backends`].
    backends: Vec<usize>,
}

impl Sources {
    /// The configuration file as named in errors; empty for a default configuration.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Where the value of `key` came from (for `backend`, the first backend's line).
    pub fn of(&self, key: &str) -> Source {
        if key == "backend" {
            return self.of_backend(0);
        }
        self.keys
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map_or(Source::Default, |&(_, source)| source)
    }

    /// Where the backend at `index` in [`Config::backends`] was listed.
    pub fn of_backend(&self, index: usize) -> Source {
        self.backends
            .get(index)
            .map_or(Source::Default, |&line| Source::Line(line))
    }

    /// `key` and where its value came from, to start a message about it:
    /// `proxy.conf:14: access_log`, `access_log (default)` or `log_file (--log)`.
    pub fn locate(&self, key: &str, source: Source) -> String {
        match source {
            Source::Line(line) => format!("{}:{line}: {key}", self.file),
            Source::Default => format!("{key} (default)"),
            Source::Flag(flag) => format!("{key} ({flag})"),
        }
    }

    fn set(&mut self, key: &'static str, source: Source) {
        self.keys.retain(|(k, _)| *k != key);
        self.keys.push((key, source));
    }
}

/// An address block such as `127.0.0.0/8` or `::1` (a single address is a full-length
/// prefix), as in RFC 4632 §3.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address.
    pub addr: IpAddr,
    /// Leading bits that must match (at most 32 for IPv4, 128 for IPv6).
    pub prefix: u8,
}

impl Cidr {
    /// Whether `ip` is inside the block. An IPv4-mapped IPv6 address (`::ffff:127.0.0.1`)
    /// counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_matches(
                u128::from(u32::from(net)) << 96,
                u128::from(u32::from(ip)) << 96,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_matches(u128::from(net), u128::from(ip), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_matches(net: u128, ip: u128, prefix: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    net & mask == ip & mask
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("expected an address or address/prefix, got {}", quote(text));
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if is_digits(p) => {
                p.parse::<u8>().ok().filter(|&p| p <= max).ok_or_else(bad)?
            }
            Some(_) => return Err(bad()),
        };
        Ok(Cidr { addr, prefix })
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "0.0.0.0:8080".to_string(),
            backends: Vec::new(),
            log_file: PathBuf::from("logs/proxy.log"),
            log_level: LevelFilter::Info,
            methods: None,
            connect_timeout: Duration::from_secs(3),
            upstream_timeout: Duration::from_secs(30),
            client_timeout: Duration::from_secs(15),
            max_connections: 10_000,
            max_body_size: 100 * 1024 * 1024,
            max_request_line: 8192,
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            cache: true,
            cache_dir: PathBuf::from("cache"),
            cache_ttl: 60,
            cache_max_size: 1024 * 1024 * 1024,
            cache_max_object: 100 * 1024 * 1024,
            max_response_header_bytes: 64 * 1024,
            max_fails: 1,
            fail_timeout: Duration::from_secs(10),
            health_check: None,
            health_interval: Duration::from_secs(5),
            upstream_keepalive: 32,
            upstream_idle_timeout: Duration::from_secs(10),
            access_log: Some(PathBuf::from("logs/access.log")),
            status_path: Some("/relevo/status".to_string()),
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
            sources: Sources::default(),
        }
    }
}

/// One upstream server, as given on a `backend = host:port` line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Backend {
    /// A DNS name, an IPv4 address, or an IPv6 address *without* its brackets.
    pub host: String,
    /// TCP port, 1..=65535.
    pub port: u16,
}

impl Backend {
    /// The backend as `host:port`, with an IPv6 address in brackets (`[::1]:8081`): the form
    /// that goes in the `Host` header (RFC 9110 §7.2) and that `TcpStream::connect` accepts.
    pub fn authority(&self) -> String {
        self.to_string()
    }

    /// Whether `other` names the same server: host names compare without case (RFC 4343),
    /// addresses by value (`[::1]` and `[0::1]` are one). Names are not resolved, so
    /// `localhost:80` and `127.0.0.1:80` are different.
    pub fn same_as(&self, other: &Backend) -> bool {
        let host = |b: &Backend| match b.host.parse::<IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => b.host.to_ascii_lowercase(),
        };
        self.port == other.port && host(self) == host(other)
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for Backend {
    type Err = String;

    /// Parses `host:port`, `1.2.3.4:port` or `[ipv6]:port` with a port of 1..=65535.
    ///
    /// # Errors
    ///
    /// A message saying what is wrong with `text` and what was expected.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (host, port) = split_authority(text, 1)?;
        Ok(Backend {
            host: host.to_string(),
            port,
        })
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
/// repeated key, a missing or bad value, or no `backend` at all (reported at the last line).
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
        let line = index + 1;
        let Some((key, value)) = split_line(raw).map_err(|m| error(line, m))? else {
            continue;
        };
        let Some(key) = KEYS.iter().copied().find(|k| *k == key) else {
            return Err(error(line, format!("unknown key {}", quote(key))));
        };
        if let (false, Source::Line(first)) = (key == "backend", config.sources.of(key)) {
            let message = format!("`{key}` given twice (first on line {first})");
            return Err(error(line, message));
        }
        if value.is_empty() {
            return Err(error(line, format!("missing value after `{key} =`")));
        }
        check_unquoted(key, value)
            .and_then(|()| apply(&mut config, key, value))
            .map_err(|m| error(line, format!("{key}: {m}")))?;
        if key == "backend" {
            check_new_backend(&config).map_err(|m| error(line, m))?;
            config.sources.backends.push(line);
        } else {
            config.sources.set(key, Source::Line(line));
        }
    }
    if config.backends.is_empty() {
        let message = "no backend configured (add a line like `backend = 127.0.0.1:8081`)";
        return Err(error(text.lines().count().max(1), message.to_string()));
    }
    Ok(config)
}

/// Refuses a value wrapped in quotes (or starting or ending with one): values are taken as
/// written, so the quotes would become part of a path or a name.
fn check_unquoted(key: &str, value: &str) -> Result<(), String> {
    let is_quote = |c: char| c == '"' || c == '\'';
    if !value.starts_with(is_quote) && !value.ends_with(is_quote) {
        return Ok(());
    }
    let bare = value.trim_matches(is_quote).trim();
    Err(format!(
        "values are written without quotes, or the quotes become part of the value: \
         write {}",
        quote(&format!("{key} = {bare}"))
    ))
}

/// Refuses the backend just added when an earlier line lists the same server: every line is
/// one backend with an equal share of the requests, so a repeated line would silently give
/// one server a double share (there are no weights).
fn check_new_backend(config: &Config) -> Result<(), String> {
    let Some((new, earlier)) = config.backends.split_last() else {
        return Ok(());
    };
    match earlier.iter().position(|b| b.same_as(new)) {
        Some(first) => Err(format!(
            "backend {} is listed twice (first on line {}): remove one; each line is one \
             backend with an equal share of the requests",
            quote(&new.authority()),
            config.sources.backends[first]
        )),
        None => Ok(()),
    }
}

/// Splits one line into its trimmed key and value, or `None` for a blank or comment line.
fn split_line(raw: &str) -> Result<Option<(&str, &str)>, String> {
    let content = raw.split_once('#').map_or(raw, |(before, _)| before).trim();
    if content.is_empty() {
        return Ok(None);
    }
    let (key, value) = content
        .split_once('=')
        .ok_or_else(|| "expected `key = value`".to_string())?;
    let key = key.trim();
    if key.is_empty() {
        return Err("missing key before `=` (expected `key = value`)".to_string());
    }
    Ok(Some((key, value.trim())))
}

/// Stores the non-empty `value` of a known `key` in `config`; the error message is prefixed
/// with the key by the caller.
fn apply(config: &mut Config, key: &str, value: &str) -> Result<(), String> {
    match key {
        "listen" => config.listen = parse_listen(value)?,
        "backend" => config.backends.push(value.parse()?),
        "log_file" => config.log_file = parse_path(value)?,
        "log_level" => config.log_level = parse_level(value)?,
        "methods" => config.methods = parse_methods(value)?,
        "connect_timeout" => config.connect_timeout = parse_seconds(value)?,
        "upstream_timeout" => config.upstream_timeout = parse_seconds(value)?,
        "client_timeout" => config.client_timeout = parse_seconds(value)?,
        "max_connections" => config.max_connections = parse_nonzero_usize(value)?,
        "max_body_size" => config.max_body_size = parse_u64(value)?,
        "max_request_line" => config.max_request_line = parse_nonzero_usize(value)?,
        "max_header_bytes" => config.max_header_bytes = parse_nonzero_usize(value)?,
        "max_headers" => config.max_headers = parse_nonzero_usize(value)?,
        "cache" => config.cache = parse_bool(value)?,
        "cache_dir" => config.cache_dir = parse_path(value)?,
        "cache_ttl" => config.cache_ttl = parse_u64(value)?,
        "cache_max_size" => config.cache_max_size = parse_u64(value)?,
        "cache_max_object" => config.cache_max_object = parse_u64(value)?,
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
        "status_path" => {
            config.status_path = (value != "off")
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
        "tunnel_idle_timeout" => config.tunnel_idle_timeout = parse_seconds(value)?,
        "rewrite_location" => config.rewrite_location = parse_bool(value)?,
        "upstream_total_timeout" => config.upstream_total_timeout = parse_seconds(value)?,
        "max_connections_per_ip" => config.max_connections_per_ip = parse_usize(value)?,
        "underscores_in_headers" => config.underscores_in_headers = parse_bool(value)?,
        "allow_trace" => config.allow_trace = parse_bool(value)?,
        _ => return Err("not a known key".to_string()),
    }
    Ok(())
}

impl Config {
    /// Applies the command line's overrides: `--listen`, then `--port` (which replaces only
    /// the port of `listen`), `--log` and `--ttl`.
    ///
    /// # Errors
    /// A message when `listen` is not a valid `host:port`.
    pub fn apply_overrides(
        &mut self,
        listen: Option<String>,
        port: Option<u16>,
        log_file: Option<PathBuf>,
        cache_ttl: Option<u64>,
    ) -> Result<(), String> {
        if let Some(listen) = listen {
            self.listen = parse_listen(&listen).map_err(|why| format!("--listen {why}"))?;
            self.sources.set("listen", Source::Flag("--listen"));
        }
        if let Some(port) = port {
            self.listen = with_port(&self.listen, port);
            self.sources.set("listen", Source::Flag("--port"));
        }
        if let Some(log_file) = log_file {
            self.log_file = log_file;
            self.sources.set("log_file", Source::Flag("--log"));
        }
        if let Some(ttl) = cache_ttl {
            self.cache_ttl = ttl;
            self.sources.set("cache_ttl", Source::Flag("--ttl"));
        }
        Ok(())
    }
}

/// `listen` with its port replaced: `with_port("0.0.0.0:8080", 9090)` is `"0.0.0.0:9090"`.
pub fn with_port(listen: &str, port: u16) -> String {
    match listen.rsplit_once(':') {
        Some((host, _)) => format!("{host}:{port}"),
        None => format!("{listen}:{port}"),
    }
}

/// Checks a `listen` value like a backend, but port 0 is allowed; returns it as written.
///
/// # Errors
/// A message saying what is wrong with it.
pub fn parse_listen(value: &str) -> Result<String, String> {
    split_authority(value, 0)?;
    Ok(value.to_string())
}

/// Splits `host:port` into the host (IPv6 without brackets) and a port of at least
/// `min_port`.
///
/// ```text
/// authority = host ":" port                           ; RFC 3986 §3.2, no userinfo
/// host      = "[" IPv6address "]" / IPv4address / reg-name
/// reg-name  = label *( "." label )                    ; label = 1*63( ALPHA / DIGIT / "-" )
/// ```
///
/// Deliberately narrower than RFC 3986: no percent-encoding, no zone ids, no empty port,
/// and a name made only of digits and dots must be a valid IPv4 address.
fn split_authority(text: &str, min_port: u16) -> Result<(&str, u16), String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (ip, port) = rest
            .split_once("]:")
            .ok_or_else(|| format!("expected `[IPv6]:port`, got {}", quote(text)))?;
        if ip.parse::<Ipv6Addr>().is_err() {
            return Err(format!("{} is not an IPv6 address", quote(ip)));
        }
        (ip, port)
    } else {
        let (host, port) = text.rsplit_once(':').ok_or_else(|| {
            format!(
                "expected `host:port` (like `127.0.0.1:8081` or `[::1]:8081`), got {}",
                quote(text)
            )
        })?;
        if host.contains(':') {
            return Err(format!(
                "an IPv6 address needs brackets, like `[::1]:8081`, got {}",
                quote(text)
            ));
        }
        check_host(host)?;
        (host, port)
    };
    Ok((host, parse_port(port, min_port)?))
}

/// Checks a host that is not bracketed: an IPv4 address or a DNS name (RFC 1123 §2.1).
fn check_host(host: &str) -> Result<(), String> {
    let expected = || {
        format!(
            "expected a host name, an IPv4 address or a bracketed IPv6 address, got {}",
            quote(host)
        )
    };
    if host.is_empty() {
        return Err("missing host before `:port`".to_string());
    }
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return match host.parse::<Ipv4Addr>() {
            Ok(_) => Ok(()),
            Err(_) => Err(format!("{} is not an IPv4 address", quote(host))),
        };
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= MAX_LABEL_LEN
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if host.len() > MAX_HOST_LEN || !host.split('.').all(label_ok) {
        return Err(expected());
    }
    Ok(())
}

/// A port number of `min_port..=65535`, digits only.
fn parse_port(text: &str, min_port: u16) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(port) if is_digits(text) && port >= min_port => Ok(port),
        _ => Err(format!(
            "expected a port number {min_port}..=65535, got {}",
            quote(text)
        )),
    }
}

/// `log_file`, `cache_dir`: any path without a NUL byte (which no file system accepts).
fn parse_path(value: &str) -> Result<PathBuf, String> {
    if value.contains('\0') {
        return Err(format!(
            "a path cannot contain a NUL byte, got {}",
            quote(value)
        ));
    }
    Ok(PathBuf::from(value))
}

/// `log_level`: one of `off error warn info debug trace`, in any case.
fn parse_level(value: &str) -> Result<LevelFilter, String> {
    value.parse().map_err(|_| {
        format!(
            "expected off, error, warn, info, debug or trace, got {}",
            quote(value)
        )
    })
}

/// `methods`: `*` for every method, or method tokens separated by whitespace.
///
/// ```text
/// method = token                                      ; RFC 9110 §9.1
/// token  = 1*tchar                                    ; RFC 9110 §5.6.2
/// tchar  = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
///          "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
/// ```
///
/// Methods are kept as written, since they are case-sensitive. `*` is a tchar, but here it
/// only means "every method" and must stand alone; `#` cannot be written as it starts a
/// comment.
///
/// A method with a lower-case letter is refused, whatever it is: every method in the IANA
/// registry is upper case and clients send them so, so `get` would match no request and
/// `methods = get head` would answer every GET with 501. Refusing only the lower-case forms
/// of standard methods would need a table of them and would still let `purge` or
/// `propfind` through; the one thing lost is a private lower-case method, which nothing
/// we know of uses.
fn parse_methods(value: &str) -> Result<Option<Vec<String>>, String> {
    if value == "*" {
        return Ok(None);
    }
    let mut methods = Vec::new();
    for method in value.split_ascii_whitespace() {
        if method == "*" {
            return Err("`*` (every method) must stand alone".to_string());
        }
        if !method.bytes().all(is_tchar) {
            return Err(format!(
                "{} is not a method name (letters, digits and !#$%&'*+-.^_`|~)",
                quote(method)
            ));
        }
        if method.bytes().any(|b| b.is_ascii_lowercase()) {
            let upper: Vec<String> = value
                .split_ascii_whitespace()
                .map(str::to_ascii_uppercase)
                .collect();
            return Err(format!(
                "methods are case-sensitive and clients send them in upper case, so {} \
                 would match no request: write {}",
                quote(method),
                quote(&format!("methods = {}", upper.join(" ")))
            ));
        }
        methods.push(method.to_string());
    }
    Ok(Some(methods))
}

/// Whether `b` may appear in an RFC 9110 token (§5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Timeouts: whole seconds, or a decimal such as `0.5`, in `0.001..=86400`.
fn parse_seconds(value: &str) -> Result<Duration, String> {
    let expected = || format!("expected seconds > 0, got {}", quote(value));
    let (whole, fraction) = value.split_once('.').unwrap_or((value, "0"));
    if !is_digits(whole) || !is_digits(fraction) {
        return Err(expected());
    }
    let seconds: f64 = value.parse().map_err(|_| expected())?;
    if seconds == 0.0 {
        return Err(expected());
    }
    if !seconds.is_finite() || seconds > MAX_TIMEOUT_SECS {
        return Err(format!(
            "expected at most {MAX_TIMEOUT_SECS} seconds, got {}",
            quote(value)
        ));
    }
    if seconds < MIN_TIMEOUT_SECS {
        return Err(format!(
            "expected at least {MIN_TIMEOUT_SECS} seconds, got {}",
            quote(value)
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Sizes and counts that may be 0: decimal digits only.
fn parse_u64(value: &str) -> Result<u64, String> {
    parse_number(value, "a whole number")
}

/// Counts that may be 0 and fit in 32 bits: decimal digits only.
fn parse_u32(value: &str) -> Result<u32, String> {
    let n = parse_number(value, "a whole number")?;
    u32::try_from(n).map_err(|_| format!("expected at most {}, got {}", u32::MAX, quote(value)))
}

/// A path for health probes: origin-form, `/` then visible ASCII (RFC 9112 §3.2.1).
fn parse_probe_path(value: &str) -> Result<String, String> {
    let visible = value.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if value.starts_with('/') && visible {
        Ok(value.to_string())
    } else {
        Err(format!(
            "expected a path starting with `/` and without spaces, got {}",
            quote(value)
        ))
    }
}

/// Counts that may be 0: decimal digits only.
fn parse_usize(value: &str) -> Result<usize, String> {
    usize::try_from(parse_u64(value)?)
        .map_err(|_| format!("expected at most {}, got {}", usize::MAX, quote(value)))
}

/// Limits that must be at least 1: decimal digits only.
fn parse_nonzero_usize(value: &str) -> Result<usize, String> {
    const EXPECTED: &str = "a whole number > 0";
    match usize::try_from(parse_number(value, EXPECTED)?) {
        Ok(0) => Err(format!("expected {EXPECTED}, got {}", quote(value))),
        Ok(n) => Ok(n),
        Err(_) => Err(format!(
            "number too large (at most {}), got {}",
            usize::MAX,
            quote(value)
        )),
    }
}

/// Decimal digits only (no sign, no `_`, no spaces) as a `u64`; `expected` describes the
/// value in the error message.
fn parse_number(value: &str, expected: &str) -> Result<u64, String> {
    if !is_digits(value) {
        return Err(format!("expected {expected}, got {}", quote(value)));
    }
    // Only digits are left, so the one possible failure is overflow.
    value.parse().map_err(|_| {
        format!(
            "number too large (at most {}), got {}",
            u64::MAX,
            quote(value)
        )
    })
}

/// `cache`: `on`/`off`, also `true`/`false` and `yes`/`no`, in any case.
fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(format!("expected on or off, got {}", quote(value))),
    }
}

/// Whether `text` is one or more ASCII digits.
fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
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

    /// The smallest valid file.
    const MINIMAL: &str = "backend = 127.0.0.1:8081\n";

    /// Parses `text` expecting an error, and returns its line and message.
    fn error(text: &str) -> (usize, String) {
        let e = parse(text, "test.conf").unwrap_err();
        (e.line, e.message)
    }

    /// The error message for a file that is `MINIMAL` plus `line`, asserting it is on line 2.
    fn bad_line(line: &str) -> String {
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

    /// A file in the system temp directory holding `bytes`, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(name: &str, bytes: &[u8]) -> TempFile {
            let path =
                std::env::temp_dir().join(format!("relevo-config-{}-{name}", std::process::id()));
            std::fs::write(&path, bytes).unwrap();
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
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
        assert_eq!(c.max_request_line, 8192);
        assert_eq!(c.max_header_bytes, 65536);
        assert_eq!(c.max_headers, 100);
        assert!(c.cache);
        assert_eq!(c.cache_dir, PathBuf::from("cache"));
        assert_eq!(c.cache_ttl, 60);
        assert_eq!(c.cache_max_size, 1_073_741_824);
        assert_eq!(c.cache_max_object, 104_857_600);
    }

    #[test]
    fn minimal_file_gives_defaults_plus_backend() {
        let c = parse(MINIMAL, "test.conf").unwrap();
        let expected = Config {
            backends: vec![Backend {
                host: "127.0.0.1".to_string(),
                port: 8081,
            }],
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
        let authorities: Vec<String> = c.backends.iter().map(Backend::authority).collect();
        assert_eq!(
            authorities,
            ["127.0.0.1:8081", "127.0.0.1:8082", "[::1]:8083"]
        );
        // The one key whose default is "absent" is shown with an example value.
        let expected = Config {
            backends: c.backends.clone(),
            health_check: Some("/health".to_string()),
            sources: c.sources.clone(),
            ..Config::default()
        };
        assert_eq!(c, expected);
    }

    #[test]
    fn status_and_access_log_keys() {
        let c = parse(
            "backend = a:1\nstatus_path = /admin/status\nstatus_allow = 10.0.0.0/8, 192.0.2.5 ::1\naccess_log = off\n",
            "p",
        )
        .unwrap();
        assert_eq!(c.status_path.as_deref(), Some("/admin/status"));
        assert_eq!(c.access_log, None);
        let allowed = |ip: &str| {
            c.status_allow
                .iter()
                .any(|n| n.contains(ip.parse().unwrap()))
        };
        assert!(allowed("10.200.3.4") && allowed("192.0.2.5") && allowed("::1"));
        assert!(!allowed("192.0.2.6") && !allowed("11.0.0.1") && !allowed("127.0.0.1"));
        let defaults = Config::default();
        let local = |ip: &str| {
            defaults
                .status_allow
                .iter()
                .any(|n| n.contains(ip.parse().unwrap()))
        };
        assert!(
            local("127.0.0.1") && local("127.9.9.9") && local("::1") && local("::ffff:127.0.0.1")
        );
        assert!(!local("192.0.2.1") && !local("::2"));
        assert_eq!(
            parse("backend = a:1\nstatus_path = off\n", "p")
                .unwrap()
                .status_path,
            None
        );
        for bad in [
            "status_allow = 10.0.0.0/33",
            "status_allow = ::1/129",
            "status_allow = localhost",
            "status_allow = 1.2.3.4/x",
        ] {
            let err = parse(&format!("backend = a:1\n{bad}\n"), "p").unwrap_err();
            assert!(
                err.message.starts_with("status_allow: expected an address"),
                "{bad}: {}",
                err.message
            );
        }
        let everyone: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(everyone.contains("203.0.113.9".parse().unwrap()));
    }

    #[test]
    fn health_keys() {
        let c = parse(
            "backend = a:1\nmax_fails = 3\nfail_timeout = 2.5\nhealth_check = /up?x=1\nhealth_interval = 1\nmax_response_header_bytes = 4096\n",
            "proxy.conf",
        )
        .unwrap();
        assert_eq!(c.max_fails, 3);
        assert_eq!(c.fail_timeout, Duration::from_millis(2500));
        assert_eq!(c.health_check.as_deref(), Some("/up?x=1"));
        assert_eq!(c.health_interval, Duration::from_secs(1));
        assert_eq!(c.max_response_header_bytes, 4096);
        assert_eq!(
            parse("backend = a:1\nmax_fails = 0\n", "p")
                .unwrap()
                .max_fails,
            0
        );
        for (text, message) in [
            (
                "health_check = health",
                "health_check: expected a path starting with `/`",
            ),
            ("health_check = /a b", "health_check: expected a path"),
            (
                "max_fails = 4294967296",
                "max_fails: expected at most 4294967295",
            ),
            ("fail_timeout = 0", "fail_timeout: expected seconds > 0"),
        ] {
            let err = parse(&format!("backend = a:1\n{text}\n"), "p").unwrap_err();
            assert_eq!(err.line, 2, "{text}");
            assert!(err.message.starts_with(message), "{text}: {}", err.message);
        }
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
    }

    #[test]
    fn comments_blank_lines_whitespace_and_crlf() {
        let text = "\u{feff}# header\r\n\r\n   \t \r\n  listen\t=\t127.0.0.1:9000   # trailing\r\n\
                    backend=localhost:81#no space\r\n# the end";
        let c = parse(text, "test.conf").unwrap();
        assert_eq!(c.listen, "127.0.0.1:9000");
        assert_eq!(c.backends[0].authority(), "localhost:81");
    }

    #[test]
    fn backends_keep_their_order() {
        let text = "backend = c:3\nbackend = a:1\nbackend = b:2\n";
        let c = parse(text, "test.conf").unwrap();
        let names: Vec<&str> = c.backends.iter().map(|b| b.host.as_str()).collect();
        assert_eq!(names, ["c", "a", "b"]);
    }

    #[test]
    fn backend_from_str_and_display() {
        let b: Backend = "[::1]:8081".parse().unwrap();
        assert_eq!(b.host, "::1");
        assert_eq!(b.port, 8081);
        assert_eq!(b.authority(), "[::1]:8081");
        assert_eq!(b.to_string(), "[::1]:8081");
        let b: Backend = "1.2.3.4:80".parse().unwrap();
        assert_eq!((b.host.as_str(), b.port), ("1.2.3.4", 80));
        let b: Backend = "my-host.local:65535".parse().unwrap();
        assert_eq!(b.to_string(), "my-host.local:65535");
    }

    #[test]
    fn backend_rejects_bad_authorities() {
        for text in [
            "",
            "host",
            ":80",
            "host:",
            "host:0",
            "host:65536",
            "host:+80",
            "host:8_0",
            "host: 80",
            "ho st:80",
            "host..com:80",
            ".host:80",
            "host.:80",
            "under_score:80",
            "256.1.1.1:80",
            "1.2.3:80",
            "::1:80",
            "[::1]",
            "[::1]80",
            "[nope]:80",
            "[fe80::1%eth0]:80",
            "user@host:80",
        ] {
            assert!(text.parse::<Backend>().is_err(), "{text:?} was accepted");
        }
        let long_label = format!("{}.com:80", "a".repeat(MAX_LABEL_LEN + 1));
        assert!(long_label.parse::<Backend>().is_err());
        let longest_name = format!("{}a:80", "a.".repeat(MAX_HOST_LEN / 2));
        assert!(longest_name.parse::<Backend>().is_ok());
        let long_name = format!("{}a:80", "a.".repeat(MAX_HOST_LEN / 2 + 1));
        assert!(long_name.parse::<Backend>().is_err());
    }

    #[test]
    fn backend_error_messages() {
        assert_eq!(
            bad_line("backend = localhost"),
            "backend: expected `host:port` (like `127.0.0.1:8081` or `[::1]:8081`), got `localhost`"
        );
        assert_eq!(
            bad_line("backend = localhost:0"),
            "backend: expected a port number 1..=65535, got `0`"
        );
        assert_eq!(
            bad_line("backend = ::1:80"),
            "backend: an IPv6 address needs brackets, like `[::1]:8081`, got `::1:80`"
        );
        assert_eq!(
            bad_line("backend = [::g]:80"),
            "backend: `::g` is not an IPv6 address"
        );
        assert_eq!(
            bad_line("backend = 300.1.1.1:80"),
            "backend: `300.1.1.1` is not an IPv4 address"
        );
        assert_eq!(
            bad_line("backend = a_b:80"),
            "backend: expected a host name, an IPv4 address or a bracketed IPv6 address, got `a_b`"
        );
    }

    #[test]
    fn ipv6_backend_in_a_file() {
        let c = parse("backend = [2001:db8::7]:443\n", "test.conf").unwrap();
        assert_eq!(c.backends[0].host, "2001:db8::7");
        assert_eq!(c.backends[0].authority(), "[2001:db8::7]:443");
    }

    #[test]
    fn listen_allows_port_zero_and_ipv6() {
        for listen in ["127.0.0.1:0", "[::]:8080", "localhost:65535"] {
            let c = parse(&format!("listen = {listen}\n{MINIMAL}"), "t").unwrap();
            assert_eq!(c.listen, listen);
        }
        assert_eq!(
            bad_line("listen = 8080"),
            "listen: expected `host:port` (like `127.0.0.1:8081` or `[::1]:8081`), got `8080`"
        );
        assert_eq!(
            bad_line("listen = 0.0.0.0:70000"),
            "listen: expected a port number 0..=65535, got `70000`"
        );
    }

    #[test]
    fn methods_star_list_and_bad_tokens() {
        let c = parse(&format!("{MINIMAL}methods = *\n"), "t").unwrap();
        assert_eq!(c.methods, None);
        let c = parse(&format!("{MINIMAL}methods = GET PURGE M-SEARCH\n"), "t").unwrap();
        assert_eq!(
            c.methods,
            Some(vec![
                "GET".to_string(),
                "PURGE".to_string(),
                "M-SEARCH".to_string()
            ])
        );
        assert_eq!(
            bad_line("methods = GET *"),
            "methods: `*` (every method) must stand alone"
        );
        assert_eq!(
            bad_line("methods = GET PO(ST"),
            "methods: `PO(ST` is not a method name (letters, digits and !#$%&'*+-.^_`|~)"
        );
        assert_eq!(
            bad_line("methods = GÉT"),
            "methods: `GÉT` is not a method name (letters, digits and !#$%&'*+-.^_`|~)"
        );
    }

    #[test]
    fn lowercase_methods_are_refused_with_a_hint() {
        assert_eq!(
            bad_line("methods = get head"),
            "methods: methods are case-sensitive and clients send them in upper case, so \
             `get` would match no request: write `methods = GET HEAD`"
        );
        // Not only the standard methods: any lower-case letter, in any position.
        for value in ["GET purge", "Post", "M-search"] {
            let message = bad_line(&format!("methods = {value}"));
            assert!(message.contains("case-sensitive"), "{value}: {message}");
        }
        let hint = bad_line(&format!("methods = {}", "get ".repeat(10_000)));
        assert!(hint.len() < 300, "{}", hint.len());
    }

    #[test]
    fn a_quoted_value_is_refused_with_a_hint() {
        assert_eq!(
            bad_line("cache_dir = \"cache\""),
            "cache_dir: values are written without quotes, or the quotes become part of the \
             value: write `cache_dir = cache`"
        );
        assert_eq!(
            bad_line("log_file = 'logs/my proxy.log'   # spaces need no quotes"),
            "log_file: values are written without quotes, or the quotes become part of the \
             value: write `log_file = logs/my proxy.log`"
        );
        // Half-quoted too (`"a#b"` loses its end to the comment), and on every key.
        assert!(bad_line("access_log = \"a#b\"").ends_with("write `access_log = a`"));
        assert!(bad_line("listen = \"0.0.0.0:80\"").starts_with("listen: values are"));
        assert!(bad_line("status_path = /x'").starts_with("status_path: values are"));
        // Quotes inside a value are kept.
        let c = parse(&format!("{MINIMAL}cache_dir = it's here\n"), "t").unwrap();
        assert_eq!(c.cache_dir, PathBuf::from("it's here"));
    }

    #[test]
    fn a_duplicate_backend_is_refused_with_its_first_line() {
        let text = "backend = 127.0.0.1:8081\nbackend = 127.0.0.1:8082\nbackend = 127.0.0.1:8081\n";
        assert_eq!(
            error(text),
            (
                3,
                "backend `127.0.0.1:8081` is listed twice (first on line 1): remove one; each \
                 line is one backend with an equal share of the requests"
                    .to_string()
            )
        );
        for (first, second) in [
            ("App.Example:80", "app.example:80"),
            ("[::1]:80", "[0::1]:80"),
        ] {
            let (line, message) = error(&format!("backend = {first}\nbackend = {second}\n"));
            assert_eq!(line, 2);
            assert!(
                message.contains("listed twice (first on line 1)"),
                "{message}"
            );
        }
        // Same host, other port; or a name and an address: two backends.
        let c = parse(
            "backend = a:1\nbackend = a:2\nbackend = localhost:1\nbackend = 127.0.0.1:1\n",
            "t",
        );
        assert_eq!(c.unwrap().backends.len(), 4);
    }

    #[test]
    fn sources_remember_the_line_of_each_key() {
        let text = "# proxy\nbackend = a:1\n\naccess_log = logs/a.log\nbackend = b:2\n";
        let c = parse(text, "proxy.conf").unwrap();
        assert_eq!(c.sources.file(), "proxy.conf");
        assert_eq!(c.sources.of("access_log"), Source::Line(4));
        assert_eq!(c.sources.of("cache_dir"), Source::Default);
        assert_eq!(c.sources.of("backend"), Source::Line(2));
        assert_eq!(c.sources.of_backend(1), Source::Line(5));
        assert_eq!(c.sources.of_backend(2), Source::Default);
        let at = |key| c.sources.locate(key, c.sources.of(key));
        assert_eq!(at("access_log"), "proxy.conf:4: access_log");
        assert_eq!(at("cache_dir"), "cache_dir (default)");
        // Where a value came from is part of the configuration as parsed.
        assert_ne!(c, parse(&format!("\n{text}"), "proxy.conf").unwrap());
    }

    #[test]
    fn overrides_are_remembered_as_flags() {
        let mut c = parse("listen = 1.2.3.4:80\nbackend = a:1\ncache_ttl = 5\n", "p").unwrap();
        c.apply_overrides(None, Some(81), Some(PathBuf::from("x.log")), None)
            .unwrap();
        assert_eq!(c.listen, "1.2.3.4:81");
        assert_eq!(c.sources.of("listen"), Source::Flag("--port"));
        assert_eq!(c.sources.of("log_file"), Source::Flag("--log"));
        assert_eq!(c.sources.of("cache_ttl"), Source::Line(3));
        assert_eq!(
            c.sources.locate("log_file", c.sources.of("log_file")),
            "log_file (--log)"
        );
        c.apply_overrides(Some("[::1]:0".to_string()), None, None, Some(0))
            .unwrap();
        assert_eq!(c.sources.of("listen"), Source::Flag("--listen"));
        assert_eq!(c.sources.of("cache_ttl"), Source::Flag("--ttl"));
    }

    #[test]
    fn timeouts() {
        let c = parse(&format!("{MINIMAL}connect_timeout = 0.5\n"), "t").unwrap();
        assert_eq!(c.connect_timeout, Duration::from_millis(500));
        let c = parse(&format!("{MINIMAL}client_timeout = 86400\n"), "t").unwrap();
        assert_eq!(c.client_timeout, Duration::from_secs(86400));
        assert_eq!(
            bad_line("connect_timeout = abc"),
            "connect_timeout: expected seconds > 0, got `abc`"
        );
        for value in [
            "0", "0.0", "-1", "+1", "1e3", "inf", "NaN", ".5", "5.", "1.2.3", "1 s",
        ] {
            let message = bad_line(&format!("upstream_timeout = {value}"));
            assert_eq!(
                message,
                format!("upstream_timeout: expected seconds > 0, got `{value}`")
            );
        }
        assert_eq!(
            bad_line("client_timeout = 86401"),
            "client_timeout: expected at most 86400 seconds, got `86401`"
        );
        let huge = "9".repeat(400);
        assert!(bad_line(&format!("client_timeout = {huge}")).contains("at most 86400"));
        assert_eq!(
            bad_line("client_timeout = 0.0001"),
            "client_timeout: expected at least 0.001 seconds, got `0.0001`"
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(
            bad_line("max_connections = 0"),
            "max_connections: expected a whole number > 0, got `0`"
        );
        assert_eq!(
            bad_line("max_headers = -5"),
            "max_headers: expected a whole number > 0, got `-5`"
        );
        assert_eq!(
            bad_line("max_body_size = 1_000"),
            "max_body_size: expected a whole number, got `1_000`"
        );
        assert_eq!(
            bad_line("cache_ttl = 1 000"),
            "cache_ttl: expected a whole number, got `1 000`"
        );
        assert_eq!(
            bad_line("cache_max_size = 18446744073709551616"),
            "cache_max_size: number too large (at most 18446744073709551615), got `18446744073709551616`"
        );
        assert!(bad_line("max_request_line = 99999999999999999999").contains("too large"));
        let c = parse(&format!("{MINIMAL}max_header_bytes = 007\n"), "t").unwrap();
        assert_eq!(c.max_header_bytes, 7);
    }

    #[test]
    fn cache_switch_and_log_level() {
        for (value, on) in [("on", true), ("OFF", false), ("true", true), ("No", false)] {
            let c = parse(&format!("{MINIMAL}cache = {value}\n"), "t").unwrap();
            assert_eq!(c.cache, on, "{value}");
        }
        assert_eq!(
            bad_line("cache = maybe"),
            "cache: expected on or off, got `maybe`"
        );
        let c = parse(&format!("{MINIMAL}log_level = Trace\n"), "t").unwrap();
        assert_eq!(c.log_level, LevelFilter::Trace);
        let c = parse(&format!("{MINIMAL}log_level = off\n"), "t").unwrap();
        assert_eq!(c.log_level, LevelFilter::Off);
        assert_eq!(
            bad_line("log_level = verbose"),
            "log_level: expected off, error, warn, info, debug or trace, got `verbose`"
        );
    }

    #[test]
    fn line_without_equals_sign() {
        assert_eq!(
            error("backend = a:1\n\nlisten 8080\n"),
            (3, "expected `key = value`".to_string())
        );
    }

    #[test]
    fn empty_key_and_empty_value() {
        assert_eq!(
            bad_line("  = 5"),
            "missing key before `=` (expected `key = value`)"
        );
        assert_eq!(
            bad_line("cache_dir =   # none"),
            "missing value after `cache_dir =`"
        );
        assert_eq!(bad_line("methods ="), "missing value after `methods =`");
    }

    #[test]
    fn unknown_key_with_display() {
        let text = "# proxy\nlisten = 0.0.0.0:8080\n\nbackend = a:1\n\n\nbakend = b:2\n";
        let e = parse(text, "proxy.conf").unwrap_err();
        assert_eq!(e.to_string(), "proxy.conf:7: unknown key `bakend`");
        assert_eq!(bad_line("Listen = 1.2.3.4:5"), "unknown key `Listen`");
    }

    #[test]
    fn duplicate_key() {
        let text = "backend = a:1\nlisten = 1.2.3.4:80\ncache = on\nlisten = 1.2.3.4:81\n";
        assert_eq!(
            error(text),
            (4, "`listen` given twice (first on line 2)".to_string())
        );
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
    fn hostile_long_lines_are_quoted_short() {
        let key = "k".repeat(100_000);
        let message = bad_line(&format!("{key} = 1"));
        assert!(message.starts_with("unknown key `kkk"));
        assert!(message.len() < 200, "{}", message.len());
        let message = bad_line(&format!("backend = {}:80", "a".repeat(100_000)));
        assert!(message.ends_with("…`"), "{message}");
        assert!(message.len() < 200, "{}", message.len());
        assert_eq!(
            error(&"x".repeat(1_000_000)),
            (1, "expected `key = value`".to_string())
        );
    }

    #[test]
    fn hostile_nul_and_control_bytes() {
        assert_eq!(bad_line("\0"), "expected `key = value`");
        assert_eq!(bad_line("cache\0 = on"), "unknown key `cache\\u{0}`");
        assert_eq!(
            bad_line("backend = a:8\u{0}0"),
            "backend: expected a port number 1..=65535, got `8\\u{0}0`"
        );
        assert_eq!(
            bad_line("log_file = logs/\0x"),
            "log_file: a path cannot contain a NUL byte, got `logs/\\u{0}x`"
        );
        assert_eq!(
            bad_line("cache = \u{1b}[31mon"),
            "cache: expected on or off, got `\\u{1b}[31mon`"
        );
    }

    #[test]
    fn load_reads_a_file_and_names_it() {
        let file = TempFile::new(
            "ok.conf",
            b"backend = 127.0.0.1:8081\nlisten = 127.0.0.1:0\n",
        );
        let c = load(&file.0).unwrap();
        assert_eq!(c.listen, "127.0.0.1:0");
        let file = TempFile::new("bad.conf", b"backend = 127.0.0.1:8081\ncache = ?\n");
        let e = load(&file.0).unwrap_err();
        assert_eq!(e.origin, file.0.display().to_string());
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
        let e = load(&file.0).unwrap_err();
        assert_eq!((e.line, e.message.as_str()), (2, "not valid UTF-8 text"));
    }

    #[test]
    fn load_rejects_oversized_file() {
        let mut bytes = b"backend = a:1\n".to_vec();
        bytes.resize(MAX_CONFIG_BYTES as usize + 1, b'\n');
        let file = TempFile::new("huge.conf", &bytes);
        let e = load(&file.0).unwrap_err();
        assert_eq!(e.line, 0);
        assert_eq!(e.message, "file is larger than 1048576 bytes");
        bytes.truncate(MAX_CONFIG_BYTES as usize);
        let file = TempFile::new("max.conf", &bytes);
        assert!(load(&file.0).is_ok());
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
