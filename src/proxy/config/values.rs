//! The forms a configuration value takes, other than addresses: seconds, sizes and counts,
//! on/off switches, the log level, the method list, file paths, request paths, the
//! balancing algorithm and the access log's format.
//!
//! Each parser takes a value as the line grammar (`syntax.rs`) hands it over, trimmed and
//! not empty, and returns the typed value or a message saying what was expected; the caller
//! puts the key and the line in front. Numbers are decimal digits only, with no sign, `_` or
//! unit, so that `1_000`, `-1` or `1e3` is an error rather than a surprise. Addresses
//! (`listen`, `backend`, `status_allow`) are in `addresses.rs`; which key takes which parser
//! is `apply` in `mod.rs`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use log::LevelFilter;

use super::quote;
use crate::http::authority::is_valid_host;

/// Longest timeout accepted, in seconds (one day).
const MAX_TIMEOUT_SECS: f64 = 86_400.0;

/// Shortest timeout accepted, in seconds. Anything shorter could round down to a zero
/// `Duration`, which `set_read_timeout` refuses.
const MIN_TIMEOUT_SECS: f64 = 0.001;

/// `balance`: how the balancer picks a backend for each request (see `proxy::balancer`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Balance {
    /// In turn; with unequal weights, nginx's smooth weighted round robin.
    #[default]
    RoundRobin,
    /// The fewest requests in flight for its weight.
    LeastConn,
    /// The client's address on a consistent hash ring: one address, one backend.
    IpHash,
    /// The request's path and query on the same ring: one URL, one backend.
    UriHash,
    /// The less loaded of two backends picked at random.
    RandomTwo,
}

impl Balance {
    /// Every algorithm, in the order the documentation lists them.
    pub const ALL: [Balance; 5] = [
        Balance::RoundRobin,
        Balance::LeastConn,
        Balance::IpHash,
        Balance::UriHash,
        Balance::RandomTwo,
    ];

    /// The name written in proxy.conf and shown on the status page.
    pub fn as_str(self) -> &'static str {
        match self {
            Balance::RoundRobin => "round_robin",
            Balance::LeastConn => "least_conn",
            Balance::IpHash => "ip_hash",
            Balance::UriHash => "uri_hash",
            Balance::RandomTwo => "random_two",
        }
    }
}

impl fmt::Display for Balance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Balance {
    type Err = String;

    /// One of the names `as_str` gives, case-sensitively (as every key is).
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Balance::ALL
            .into_iter()
            .find(|b| b.as_str() == value)
            .ok_or_else(|| {
                format!(
                    "expected round_robin, least_conn, ip_hash, uri_hash or random_two, got {}",
                    quote(value)
                )
            })
    }
}

/// `access_log_format`: how the access log writes each request (see `proxy::access_log`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// The Combined Log Format of Apache and nginx, plus our own fields.
    #[default]
    Combined,
    /// One JSON object per line.
    Json,
}

impl FromStr for AccessLogFormat {
    type Err = String;

    /// `combined` or `json`, case-sensitively (as every key is).
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "combined" => Ok(AccessLogFormat::Combined),
            "json" => Ok(AccessLogFormat::Json),
            _ => Err(format!("expected combined or json, got {}", quote(value))),
        }
    }
}

/// `log_file`, `cache_dir`: any path without a NUL byte (which no file system accepts).
pub(super) fn parse_path(value: &str) -> Result<PathBuf, String> {
    if value.contains('\0') {
        return Err(format!(
            "a path cannot contain a NUL byte, got {}",
            quote(value)
        ));
    }
    Ok(PathBuf::from(value))
}

/// `log_level`: one of `off error warn info debug trace`, in any case.
pub(super) fn parse_level(value: &str) -> Result<LevelFilter, String> {
    value.parse().map_err(|_| {
        format!(
            "expected off, error, warn, info, debug or trace, got {}",
            quote(value)
        )
    })
}

/// `status_hosts`: host names without a port, separated by spaces or commas, kept in lower
/// case (host names are case-insensitive). A port, a path or a character a host name
/// cannot hold is refused.
pub(super) fn parse_host_names(value: &str) -> Result<Vec<String>, String> {
    value
        .split([' ', '\t', ','])
        .filter(|name| !name.is_empty())
        .map(|name| {
            if name.contains(':') || !is_valid_host(name) {
                Err(format!(
                    "{} is not a host name (write it without scheme, port or path)",
                    quote(name)
                ))
            } else {
                Ok(name.to_ascii_lowercase())
            }
        })
        .collect()
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
pub(super) fn parse_methods(value: &str) -> Result<Option<Vec<String>>, String> {
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
pub(super) fn parse_seconds(value: &str) -> Result<Duration, String> {
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
pub(super) fn parse_u64(value: &str) -> Result<u64, String> {
    parse_number(value, "a whole number")
}

/// Counts that may be 0 and fit in 32 bits: decimal digits only.
pub(super) fn parse_u32(value: &str) -> Result<u32, String> {
    let n = parse_number(value, "a whole number")?;
    u32::try_from(n).map_err(|_| format!("expected at most {}, got {}", u32::MAX, quote(value)))
}

/// A path for health probes: origin-form, `/` then visible ASCII (RFC 9112 §3.2.1).
pub(super) fn parse_probe_path(value: &str) -> Result<String, String> {
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
pub(super) fn parse_usize(value: &str) -> Result<usize, String> {
    usize::try_from(parse_u64(value)?)
        .map_err(|_| format!("expected at most {}, got {}", usize::MAX, quote(value)))
}

/// Limits that must be at least 1: decimal digits only.
pub(super) fn parse_nonzero_usize(value: &str) -> Result<usize, String> {
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
pub(super) fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(format!("expected on or off, got {}", quote(value))),
    }
}

/// Whether `text` is one or more ASCII digits.
pub(super) fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::config::parse;
    use crate::proxy::config::tests::{bad_line, MINIMAL};

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
    fn status_hosts_are_host_names_kept_in_lower_case() {
        let c = parse(
            &format!("{MINIMAL}status_hosts = Proxy.Example, lab-1\n"),
            "t",
        )
        .unwrap();
        assert_eq!(c.status_hosts, ["proxy.example", "lab-1"]);
        assert!(crate::proxy::config::Config::default()
            .status_hosts
            .is_empty());
        for bad in ["proxy.example:8080", "http://proxy.example", "a/b", "[::1]"] {
            let message = bad_line(&format!("status_hosts = {bad}"));
            assert!(message.contains("is not a host name"), "{bad}: {message}");
        }
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
}
