//! The configuration's network addresses: `listen`, each [`Backend`] (its address and its
//! options, `weight=N` and `backup`) and the [`Cidr`] blocks of `status_allow`, with the one
//! `host:port` grammar that `listen` and `backend` share.
//!
//! Only the form is checked here. Names are not resolved: the proxy looks a backend's name
//! up when it connects (and warns at start-up about a name that does not resolve), and
//! `listen` is bound by the server, whose error names the line that set it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use super::quote;
use super::values::is_digits;

/// Longest DNS name, in characters (RFC 1035 §2.3.4).
const MAX_HOST_LEN: usize = 253;

/// Longest label of a DNS name, in characters (RFC 1035 §2.3.4).
const MAX_LABEL_LEN: usize = 63;

/// Default `weight` of a backend: every backend an equal share.
pub const DEFAULT_WEIGHT: u32 = 1;
/// Largest `weight=N` of a backend (and of `action=weight` on the status page).
pub const MAX_WEIGHT: u32 = 100;

/// One upstream server, as given on a `backend = HOST:PORT [weight=N] [backup]` line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Backend {
    /// A DNS name, an IPv4 address, or an IPv6 address *without* its brackets.
    pub host: String,
    /// TCP port, 1..=65535.
    pub port: u16,
    /// Its share of the requests relative to the others, 1..=[`MAX_WEIGHT`]; default 1.
    pub weight: u32,
    /// Gets requests only while no backend without `backup` is usable.
    pub backup: bool,
}

impl Backend {
    /// The backend as `host:port`, with an IPv6 address in brackets (`[::1]:8081`): the form
    /// that goes in the `Host` header (RFC 9110 §7.2) and that `TcpStream::connect` accepts.
    pub(crate) fn authority(&self) -> String {
        self.to_string()
    }

    /// Whether `other` names the same server: host names compare without case (RFC 4343),
    /// addresses by value (`[::1]` and `[0::1]` are one). Names are not resolved, so
    /// `localhost:80` and `127.0.0.1:80` are different.
    pub(crate) fn same_as(&self, other: &Backend) -> bool {
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

    /// Parses `host:port`, `1.2.3.4:port` or `[ipv6]:port` with a port of 1..=65535: a
    /// backend of the default weight, not a backup (the options are `parse_backend`'s).
    ///
    /// # Errors
    ///
    /// A message saying what is wrong with `text` and what was expected.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (host, port) = split_authority(text, 1)?;
        Ok(Backend {
            host: host.to_string(),
            port,
            weight: DEFAULT_WEIGHT,
            backup: false,
        })
    }
}

/// A `backend` line's value: the address, then its options in any order.
///
/// ```text
/// backend = authority *( 1*WSP option )
/// option  = "weight=" 1*3DIGIT                        ; 1..=MAX_WEIGHT
///         / "backup"
/// ```
///
/// # Errors
/// A message naming an unknown or repeated option, or a bad weight.
pub(super) fn parse_backend(value: &str) -> Result<Backend, String> {
    let mut words = value.split_ascii_whitespace();
    let mut backend: Backend = words.next().unwrap_or_default().parse()?;
    let mut seen = Vec::new();
    for option in words {
        let name = option.split_once('=').map_or(option, |(name, _)| name);
        if seen.contains(&name) {
            return Err(format!("option `{name}` given twice"));
        }
        match option.split_once('=') {
            Some(("weight", n)) => backend.weight = parse_weight(n)?,
            None if option == "backup" => backend.backup = true,
            _ => {
                return Err(format!(
                    "unknown option {} (expected `weight=N` or `backup`)",
                    quote(option)
                ))
            }
        }
        seen.push(name);
    }
    Ok(backend)
}

/// A backend's weight: decimal digits, 1..=[`MAX_WEIGHT`].
///
/// # Errors
/// A message saying what was expected.
pub(crate) fn parse_weight(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(n) if is_digits(text) && (1..=MAX_WEIGHT).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a weight 1..={MAX_WEIGHT}, got {}",
            quote(text)
        )),
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
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
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

/// `listen` with its port replaced: `with_port("0.0.0.0:8080", 9090)` is `"0.0.0.0:9090"`.
pub(super) fn with_port(listen: &str, port: u16) -> String {
    match listen.rsplit_once(':') {
        Some((host, _)) => format!("{host}:{port}"),
        None => format!("{listen}:{port}"),
    }
}

/// Checks a `listen` value like a backend, but port 0 is allowed; returns it as written.
///
/// # Errors
/// A message saying what is wrong with it.
pub(super) fn parse_listen(value: &str) -> Result<String, String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::config::tests::{bad_line, MINIMAL};
    use crate::proxy::config::{parse, Balance, Config};

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
    fn backend_options_weight_and_backup_in_any_order() {
        let c = parse(
            "backend = a:1 weight=3\nbackend = b:2\tbackup   weight=100\nbackend = [::1]:3 backup\n",
            "t",
        )
        .unwrap();
        let options: Vec<(u32, bool)> = c.backends.iter().map(|b| (b.weight, b.backup)).collect();
        assert_eq!(options, [(3, false), (100, true), (DEFAULT_WEIGHT, true)]);
        assert_eq!(
            c.backends[1].authority(),
            "b:2",
            "options are not part of the address"
        );
    }

    #[test]
    fn backend_option_errors_name_the_line_and_the_option() {
        for (option, message) in [
            (
                "wieght=3",
                "unknown option `wieght=3` (expected `weight=N` or `backup`)",
            ),
            (
                "backup=yes",
                "unknown option `backup=yes` (expected `weight=N` or `backup`)",
            ),
            (
                "down",
                "unknown option `down` (expected `weight=N` or `backup`)",
            ),
            ("weight=0", "expected a weight 1..=100, got `0`"),
            ("weight=101", "expected a weight 1..=100, got `101`"),
            ("weight=", "expected a weight 1..=100, got ``"),
            ("weight=+3", "expected a weight 1..=100, got `+3`"),
            (
                "weight=99999999999",
                "expected a weight 1..=100, got `99999999999`",
            ),
            ("weight=2 weight=3", "option `weight` given twice"),
            ("backup backup", "option `backup` given twice"),
        ] {
            let e = parse(&format!("{MINIMAL}backend = b:2 {option}\n"), "proxy.conf").unwrap_err();
            assert_eq!(e.to_string(), format!("proxy.conf:2: backend: {message}"));
        }
    }

    #[test]
    fn backup_on_every_backend_is_refused_at_the_last_backend() {
        let e = parse(
            "backend = a:1 backup\n# spare\nbackend = b:2 backup\ncache = off\n",
            "proxy.conf",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "proxy.conf:3: every backend is marked `backup`: backups stand in for the others, \
             so at least one backend must be without it"
        );
        assert!(parse("backend = a:1 backup\nbackend = b:2\n", "t").is_ok());
    }

    #[test]
    fn balance_names_the_algorithm() {
        assert_eq!(Config::default().balance, Balance::RoundRobin);
        for balance in Balance::ALL {
            let c = parse(&format!("{MINIMAL}balance = {balance}\n"), "t").unwrap();
            assert_eq!(c.balance, balance);
        }
        let e = parse(&format!("{MINIMAL}balance = leastconn\n"), "proxy.conf").unwrap_err();
        assert_eq!(
            e.to_string(),
            "proxy.conf:2: balance: expected round_robin, least_conn, ip_hash, uri_hash or \
             random_two, got `leastconn`"
        );
        assert!(bad_line("balance = Round_Robin").starts_with("balance: expected"));
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
}
