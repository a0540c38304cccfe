//! Authorities (RFC 3986 §3.2): what a `Host` field or an absolute-form request-target may
//! name, and the one normal form in which two of them are compared (cache keys,
//! invalidation, the Location rewrite).

/// Splits an absolute-form target `http://authority/path?query` into its authority and its
/// origin-form (`/path?query`, `/` when the path is empty). Only `http` and `https` schemes
/// are recognised, case-insensitively (RFC 9110 §4.2). `None` when it is not absolute-form.
pub fn absolute_form_parts(target: &str) -> Option<(&str, String)> {
    let (scheme, rest) = target.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    // userinfo ("user@host") is deprecated and a phishing tool (RFC 9110 §4.2.4): refuse it.
    if authority.is_empty() || authority.contains('@') || !is_valid_host(authority) {
        return None;
    }
    let origin_form = match tail.as_bytes().first() {
        Some(b'/') => tail.to_string(),
        _ => format!("/{tail}"),
    };
    Some((authority, origin_form))
}

/// Whether `host` is a valid Host value or absolute-form authority (RFC 9110 §7.2,
/// RFC 3986 §3.2.2). An empty value is allowed (RFC 9112 §3.2).
///
/// ```text
/// Host        = uri-host [ ":" port ]
/// uri-host    = IP-literal / IPv4address / reg-name
/// IP-literal  = "[" IPv6address "]"            ; IPvFuture is refused
/// reg-name    = *( unreserved / pct-encoded / sub-delims )
/// port        = *DIGIT                           ; we also require at most 65535
/// ```
///
/// A reg-name has no `:`, so `a:1:80` is refused: read leniently it would share the cache
/// key (and the backend's view) of `a:1`.
pub fn is_valid_host(host: &str) -> bool {
    let (name, port) = match host.strip_prefix('[') {
        Some(literal) => {
            let Some((address, after)) = literal.split_once(']') else {
                return false;
            };
            if address.parse::<std::net::Ipv6Addr>().is_err() {
                return false;
            }
            match after {
                "" => return true,
                _ => match after.strip_prefix(':') {
                    Some(port) => ("", port),
                    None => return false,
                },
            }
        }
        None => match host.split_once(':') {
            Some((name, port)) => (name, port),
            None => (host, ""),
        },
    };
    is_reg_name(name) && is_port(port)
}

/// `reg-name = *( unreserved / pct-encoded / sub-delims )` (RFC 3986 §3.2.2).
fn is_reg_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3);
                if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                    return false;
                }
                i += 3;
            }
            b if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b) => i += 1,
            _ => return false,
        }
    }
    true
}

/// `port = *DIGIT`, and at most 65535 when present.
fn is_port(port: &str) -> bool {
    port.is_empty()
        || (port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u32>().is_ok_and(|p| p <= 65535))
}

/// An authority in the one form used to compare and key it: lower-cased (host names are
/// case-insensitive, RFC 3986 §6.2.2.1) and without the default `:80` (RFC 9110 §4.2.3).
pub fn normalize_authority(authority: &str) -> String {
    authority
        .strip_suffix(":80")
        .unwrap_or(authority)
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_values_follow_rfc_3986_authority_syntax() {
        for good in [
            "",
            "example.com",
            "Example.COM:8080",
            "127.0.0.1:21094",
            "[::1]:8080",
            "[2001:db8::7]",
            "a-b_c~d.e",
            "xn--caf-dma.example",
            "caf%C3%A9.example",
            "h:",
            "h:65535",
        ] {
            assert!(is_valid_host(good), "{good:?} refused");
        }
        for bad in [
            "127.0.0.1:21094:80",
            "a:1:2",
            "h:65536",
            "h:123456",
            "h:8o",
            "[::1",
            "[::1]x",
            "[::1]:80:1",
            "[not-an-address]",
            "::1",
            "a b",
            "a/b",
            "a@b",
            "a%2",
            "a%zz",
            "a\u{e9}",
        ] {
            assert!(!is_valid_host(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn authorities_are_compared_lower_case_without_port_80() {
        assert_eq!(normalize_authority("Shop.Example:80"), "shop.example");
        assert_eq!(
            normalize_authority("Shop.Example:8080"),
            "shop.example:8080"
        );
        assert_eq!(normalize_authority("[::1]:80"), "[::1]");
    }
}
