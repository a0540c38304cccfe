//! The URLs the client accepts, and resolving a redirect's `Location` against one.
//!
//! Only `http` URLs are fetched; `https` is refused with its own error because this client
//! has no TLS, by design. The scheme may be left out (`host:port/path`, `host/path`), the
//! host is a name, an IPv4 address or a bracketed IPv6 address, and the port defaults to 80:
//!
//! ```text
//! http-URI  = "http" "://" authority path-abempty [ "?" query ]   ; RFC 9110 §4.2.1
//! authority = host [ ":" port ]                                   ; RFC 3986 §3.2
//! host      = IP-literal / IPv4address / reg-name
//! ```
//!
//! Deliberate choices: a fragment (`#...`) is dropped, never sent (RFC 9110 §7.1); spaces,
//! non-ASCII bytes and the characters RFC 3986 never allows in a URI are percent-encoded, so
//! a URL typed with them still makes a valid request-target; control characters are
//! refused (they could end the request line early); credentials (`user@host`) are refused
//! (RFC 9110 §4.2.4 deprecates them); dot segments are removed (RFC 3986 §5.2.4). This
//! module is pure: resolving names and connecting are `connection`'s business.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The port of `http` when the URL names none (RFC 9110 §4.2.1).
pub const DEFAULT_PORT: u16 = 80;
/// Longest URL accepted, in bytes: the request line must fit in a server's limit
/// (RFC 9112 §3: at least 8000 octets are advised).
pub const MAX_URL_BYTES: usize = 8 * 1024;

/// Why a URL cannot be used. Each variant has a fixed message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UrlError {
    /// Nothing (or only whitespace) was given.
    Empty,
    /// Longer than `MAX_URL_BYTES`.
    TooLong,
    /// `https://`: this client has no TLS.
    Https,
    /// Any scheme other than `http` and `https`.
    UnsupportedScheme,
    /// `user:password@host`.
    Credentials,
    /// An empty host, a character not allowed in a host name, or a malformed IP literal.
    BadHost,
    /// A port that is not a number from 1 to 65535.
    BadPort,
    /// A control character (CR, LF, NUL, ...).
    BadCharacter,
}

impl UrlError {
    /// A short fixed description.
    pub fn message(self) -> &'static str {
        match self {
            UrlError::Empty => "malformed URL: it is empty",
            UrlError::TooLong => "malformed URL: longer than 8192 bytes",
            UrlError::Https => {
                "https:// is not supported: this client speaks plain HTTP only (no TLS, by design)"
            }
            UrlError::UnsupportedScheme => "unsupported URL scheme: only http:// is supported",
            UrlError::Credentials => "malformed URL: credentials (user@host) are not supported",
            UrlError::BadHost => "malformed URL: invalid host",
            UrlError::BadPort => "malformed URL: the port must be a number from 1 to 65535",
            UrlError::BadCharacter => "malformed URL: it contains a control character",
        }
    }
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for UrlError {}

/// An `http` URL, normalised: host in lowercase, port always known, request-target in
/// origin-form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// The host: a name, an IPv4 address, or an IPv6 address in brackets.
    pub host: String,
    /// The TCP port.
    pub port: u16,
    /// The origin-form request-target (RFC 9112 §3.2.1): `/path?query`, at least `/`.
    // Invariant: starts with `/` and holds only visible ASCII.
    pub target: String,
}

impl Url {
    /// Parses a URL as typed on the command line (surrounding whitespace ignored).
    ///
    /// # Errors
    /// The `UrlError` saying what is wrong; `UrlError::Https` for `https://`.
    pub fn parse(input: &str) -> Result<Url, UrlError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(UrlError::Empty);
        }
        if input.len() > MAX_URL_BYTES {
            return Err(UrlError::TooLong);
        }
        if input.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err(UrlError::BadCharacter);
        }
        let input = strip_fragment(input);
        let rest = match split_scheme(input) {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
                return Err(UrlError::Https)
            }
            Some(_) => return Err(UrlError::UnsupportedScheme),
            None => input,
        };
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let (host, port) = parse_authority(authority)?;
        Ok(Url {
            host,
            port,
            target: origin_form(tail),
        })
    }

    /// The URL a `Location` field value points to, resolved against this one
    /// (RFC 9110 §10.2.2, RFC 3986 §5.2): absolute (`http://h/p`), network-path (`//h/p`),
    /// absolute-path (`/p`), query only (`?q`) or relative to this URL's directory (`p`).
    ///
    /// # Errors
    /// As `parse`, for the location or the URL it makes.
    pub fn join(&self, location: &str) -> Result<Url, UrlError> {
        let location = location.trim();
        if location.len() > MAX_URL_BYTES {
            return Err(UrlError::TooLong);
        }
        if location.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Err(UrlError::BadCharacter);
        }
        let location = strip_fragment(location);
        if split_scheme(location).is_some() {
            return Url::parse(location);
        }
        if location.starts_with("//") {
            return Url::parse(&format!("http:{location}"));
        }
        let (path, _) = self.target.split_once('?').unwrap_or((&self.target, ""));
        let target = match location.as_bytes().first() {
            None => self.target.clone(),
            Some(b'/') => origin_form(location),
            Some(b'?') => origin_form(&format!("{path}{location}")),
            Some(_) => {
                let directory = &path[..=path.rfind('/').unwrap_or(0)];
                origin_form(&format!("{directory}{location}"))
            }
        };
        Ok(Url {
            host: self.host.clone(),
            port: self.port,
            target,
        })
    }

    /// `host[:port]` as sent in the Host field, the port left out when it is 80
    /// (RFC 9110 §7.2).
    pub fn authority(&self) -> String {
        if self.port == DEFAULT_PORT {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The host as handed to the resolver: an IPv6 address without its brackets.
    pub fn host_for_lookup(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }

    /// The last segment of the path, still percent-encoded; empty for `/` and `/dir/`.
    pub fn last_segment(&self) -> &str {
        let path = self.target.split('?').next().unwrap_or("");
        path.rsplit('/').next().unwrap_or("")
    }
}

/// `http://authority/target`: the normalised URL, also the client's cache key.
impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority(), self.target)
    }
}

/// Whether `s` reads as a URL rather than as a file name (to catch `client URL LOG_FILE`):
/// it starts with a scheme (`http://`, `https://`, ...), or it is a valid URL whose host is
/// an IP address or `localhost`, or that names a port (`example.com:8080/`). `client.log`,
/// `logs/client.log` and `example.com/page` are file names as much as URLs: not these.
pub fn looks_like_url(s: &str) -> bool {
    let s = s.trim();
    if split_scheme(s).is_some() {
        return true;
    }
    let authority = &s[..s.find(['/', '?']).unwrap_or(s.len())];
    let Ok((host, _)) = parse_authority(authority) else {
        return false;
    };
    let names_port = authority
        .rsplit(']')
        .next()
        .is_some_and(|r| r.contains(':'));
    let ip = host.starts_with('[') || host.parse::<Ipv4Addr>().is_ok();
    names_port || ip || host == "localhost"
}

fn strip_fragment(s: &str) -> &str {
    s.split('#').next().unwrap_or("")
}

/// `scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )` followed by `://` (RFC 3986 §3.1).
fn split_scheme(s: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = s.split_once("://")?;
    let mut bytes = scheme.bytes();
    let valid = bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    valid.then_some((scheme, rest))
}

/// `authority = host [ ":" port ]` without userinfo; the host is lowercased.
fn parse_authority(authority: &str) -> Result<(String, u16), UrlError> {
    if authority.contains('@') {
        return Err(UrlError::Credentials);
    }
    let (host, port) = if let Some(literal) = authority.strip_prefix('[') {
        // IP-literal = "[" IPv6address "]" (RFC 3986 §3.2.2); zone identifiers and IPvFuture
        // are not accepted.
        let (address, after) = literal.split_once(']').ok_or(UrlError::BadHost)?;
        address.parse::<Ipv6Addr>().map_err(|_| UrlError::BadHost)?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or(UrlError::BadHost)?),
        };
        (format!("[{}]", address.to_ascii_lowercase()), port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        // reg-name, restricted to what DNS names and IPv4 addresses use: letters, digits,
        // "-", ".", "_" and "~".
        let valid = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        if !valid {
            return Err(UrlError::BadHost);
        }
        (host.to_ascii_lowercase(), port)
    };
    let port = match port {
        None | Some("") => DEFAULT_PORT,
        Some(digits) if digits.len() <= 5 && digits.bytes().all(|b| b.is_ascii_digit()) => {
            match digits.parse::<u16>() {
                Ok(0) | Err(_) => return Err(UrlError::BadPort),
                Ok(port) => port,
            }
        }
        Some(_) => return Err(UrlError::BadPort),
    };
    Ok((host, port))
}

/// The origin-form of what follows the authority: `/` when there is no path, dot segments
/// removed, and every byte a request-target cannot hold percent-encoded.
fn origin_form(tail: &str) -> String {
    let (path, query) = match tail.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (tail, None),
    };
    let path = if path.starts_with('/') {
        remove_dot_segments(path)
    } else {
        remove_dot_segments(&format!("/{path}"))
    };
    let mut target = percent_encode(&path);
    if let Some(query) = query {
        target.push('?');
        target.push_str(&percent_encode(query));
    }
    target
}

/// RFC 3986 §5.2.4, for a path starting with `/`: `.` segments go, `..` removes the segment
/// before it (never above the root), and a trailing `.` or `..` leaves a trailing `/`.
fn remove_dot_segments(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." => {}
            ".." => {
                out.pop();
            }
            other => {
                out.push(other);
                continue;
            }
        }
        if last {
            out.push("");
        }
    }
    format!("/{}", out.join("/"))
}

/// Percent-encodes (RFC 3986 §2.1) spaces, non-ASCII bytes and the characters no URI may
/// contain; everything else, `%` included, is kept as typed.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_graphic() && !b"\"<>\\^`{|}".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn what_reads_as_a_url_rather_than_a_file_name() {
        for s in [
            "http://127.0.0.1:8080/",
            "https://example.com",
            "ftp://h/",
            "127.0.0.1:8080/index.html",
            "localhost/page",
            "LocalHost:80",
            "10.0.0.1",
            "[::1]/x",
            "[::1]:8080",
            "example.com:8080",
        ] {
            assert!(looks_like_url(s), "{s}");
        }
        for s in [
            "client.log",
            "logs/client.log",
            "/var/log/client.log",
            "example.com/page",
            "c",
            "",
            "notes: today.txt",
            "host:port",
        ] {
            assert!(!looks_like_url(s), "{s}");
        }
    }

    #[test]
    fn the_accepted_forms() {
        let u = url("http://Example.COM:8080/a/b?x=1#frag");
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str()),
            ("example.com", 8080, "/a/b?x=1")
        );
        assert_eq!(u.to_string(), "http://example.com:8080/a/b?x=1");
        assert_eq!(url("HTTP://h").target, "/");
        assert_eq!(url("localhost:8080/x").port, 8080);
        assert_eq!(url("localhost/x").port, 80);
        assert_eq!(url("localhost").to_string(), "http://localhost/");
        assert_eq!(url("h?q=1").target, "/?q=1");
        assert_eq!(url("127.0.0.1:9").authority(), "127.0.0.1:9");
        assert_eq!(url(" h:80/ ").to_string(), "http://h/");
        let v6 = url("http://[::1]:8081/p");
        assert_eq!((v6.host.as_str(), v6.port), ("[::1]", 8081));
        assert_eq!(v6.host_for_lookup(), "::1");
        assert_eq!(url("[2001:DB8::1]").authority(), "[2001:db8::1]");
        assert_eq!(url("h:/").port, 80);
    }

    #[test]
    fn targets_are_normalised_and_encoded() {
        assert_eq!(url("h/a/./b/../c").target, "/a/c");
        assert_eq!(url("h/a/..").target, "/");
        assert_eq!(url("h/../../x").target, "/x");
        assert_eq!(url("h/my file.txt?q=a b").target, "/my%20file.txt?q=a%20b");
        assert_eq!(url("h/caf\u{e9}").target, "/caf%C3%A9");
        assert_eq!(url("h/a%20b").target, "/a%20b");
        assert_eq!(url("h/{x}").target, "/%7Bx%7D");
    }

    #[test]
    fn unusable_urls_say_why() {
        let cases = [
            ("", UrlError::Empty),
            ("   ", UrlError::Empty),
            ("https://example.com/", UrlError::Https),
            ("HTTPS://example.com/", UrlError::Https),
            ("ftp://example.com/", UrlError::UnsupportedScheme),
            ("http://user:pw@h/", UrlError::Credentials),
            ("http:///path", UrlError::BadHost),
            ("http://exa mple/", UrlError::BadHost),
            ("http://[::1/", UrlError::BadHost),
            ("http://[nonsense]/", UrlError::BadHost),
            ("http://::1/", UrlError::BadHost),
            ("http://h:0/", UrlError::BadPort),
            ("http://h:65536/", UrlError::BadPort),
            ("http://h:80a/", UrlError::BadPort),
            ("http://h:-1/", UrlError::BadPort),
            ("http://h/a\r\nX: y", UrlError::BadCharacter),
            ("http://h/\0", UrlError::BadCharacter),
        ];
        for (input, expected) in cases {
            assert_eq!(Url::parse(input), Err(expected), "{input:?}");
        }
        let long = format!("http://h/{}", "a".repeat(MAX_URL_BYTES));
        assert_eq!(Url::parse(&long), Err(UrlError::TooLong));
    }

    #[test]
    fn locations_resolve_against_the_current_url() {
        let base = url("http://h:8080/dir/page?x=1");
        let cases = [
            ("http://other/x", "http://other/x"),
            ("//other:81/y", "http://other:81/y"),
            ("/abs?q", "http://h:8080/abs?q"),
            ("?q=2", "http://h:8080/dir/page?q=2"),
            ("next", "http://h:8080/dir/next"),
            ("../up#top", "http://h:8080/up"),
            ("", "http://h:8080/dir/page?x=1"),
        ];
        for (location, expected) in cases {
            assert_eq!(
                base.join(location).unwrap().to_string(),
                expected,
                "{location}"
            );
        }
        assert_eq!(base.join("https://h/"), Err(UrlError::Https));
        assert_eq!(base.join("/a\nb"), Err(UrlError::BadCharacter));
    }

    #[test]
    fn last_segments() {
        assert_eq!(url("h/img/dawn.png?size=2").last_segment(), "dawn.png");
        assert_eq!(url("h/").last_segment(), "");
        assert_eq!(url("h/dir/").last_segment(), "");
    }
}
