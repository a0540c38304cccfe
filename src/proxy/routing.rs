//! Which pool a request goes to: the `route` lines of proxy.conf (parsed in
//! `config::routing`), matched against the request's host and path. Pure: no socket, no
//! clock.
//!
//! A route matches when its PREFIX starts the request's path and, when it names a host,
//! that host is the request's (compared without the port and whatever the case, as hosts
//! are, RFC 9110 §4.2.3). Among the routes that match, one with a host beats one without,
//! then the longest prefix wins, then the first listed; no match sends the request to the
//! default pool (the `backend` lines). A prefix is compared byte for byte, as nginx's
//! `location` is: `/api/` matches `/api/v1` and not `/apix`; `/api` matches both.
//!
//! The path is compared in its normal form (RFC 3986 §6.2.2): percent-encoded unreserved
//! characters decoded (`/%61pi/` is `/api/`) and dot segments removed (`/x/../api/` is
//! `/api/`), since the backend will read it that way; the request is forwarded as sent.

use std::borrow::Cow;

use super::config::{host_without_port, Route};

/// The index in `routes` of the route a request for `host` (a Host value, with or without
/// its port) and `path` (without the query) takes, or `None` for the default pool.
pub fn choose(routes: &[Route], host: &str, path: &str) -> Option<usize> {
    if routes.is_empty() {
        return None;
    }
    let host = host_without_port(host);
    let path = normal_path(path);
    let mut best: Option<(usize, (bool, usize))> = None;
    for (i, route) in routes.iter().enumerate() {
        let host_matches = route
            .host
            .as_deref()
            .is_none_or(|h| h.eq_ignore_ascii_case(host));
        if !host_matches || !path.starts_with(route.prefix.as_str()) {
            continue;
        }
        let rank = (route.host.is_some(), route.prefix.len());
        if best.is_none_or(|(_, b)| rank > b) {
            best = Some((i, rank));
        }
    }
    best.map(|(i, _)| i)
}

/// `path` in the normal form routes are matched against (see the module docs); borrowed
/// when it is already normal, as almost every path is.
pub fn normal_path(path: &str) -> Cow<'_, str> {
    let has_dots = path
        .split('/')
        .any(|segment| segment == "." || segment == "..");
    if !path.contains('%') && !has_dots {
        return Cow::Borrowed(path);
    }
    let decoded = decode_unreserved(path);
    Cow::Owned(remove_dot_segments(&decoded))
}

/// Decodes the percent-encodings of unreserved characters (RFC 3986 §2.3: letters, digits,
/// `-`, `.`, `_`, `~`), which mean the same encoded or not; others stay encoded.
fn decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%')
            .then(|| path.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .filter(|b| b.is_ascii_alphanumeric() || b"-._~".contains(b));
        match decoded {
            Some(b) => {
                out.push(char::from(b));
                i += 3;
            }
            None => {
                let c = path[i..].chars().next().unwrap_or('\u{fffd}');
                out.push(c);
                i += c.len_utf8().max(1);
            }
        }
    }
    out
}

/// RFC 3986 §5.2.4 for an absolute path: `.` segments dropped, `..` removes the one before
/// (never above the root).
fn remove_dot_segments(path: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." | ".." => {
                if *segment == ".." {
                    kept.pop();
                }
                if last {
                    kept.push(""); // `/a/..` is `/`, a directory: keep the final slash.
                }
            }
            other => kept.push(other),
        }
    }
    format!("/{}", kept.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::config::parse_route;

    fn routes(lines: &[&str]) -> Vec<Route> {
        lines.iter().map(|l| parse_route(l).unwrap()).collect()
    }

    #[test]
    fn a_prefix_matches_the_start_of_the_path_and_the_longest_wins() {
        let r = routes(&["/api/ api", "/api/v2/ v2", "/static static"]);
        assert_eq!(choose(&r, "h", "/api/v1/users"), Some(0));
        assert_eq!(choose(&r, "h", "/api/v2/users"), Some(1));
        assert_eq!(choose(&r, "h", "/api/"), Some(0));
        assert_eq!(choose(&r, "h", "/apix"), None, "/api/ is not /apix");
        assert_eq!(choose(&r, "h", "/api"), None, "/api/ needs its slash");
        assert_eq!(choose(&r, "h", "/staticfiles/a.css"), Some(2));
        assert_eq!(choose(&r, "h", "/"), None);
        assert_eq!(choose(&[], "h", "/api/"), None);
    }

    #[test]
    fn a_route_with_a_host_beats_one_without_even_a_longer_one() {
        let r = routes(&[
            "/api/ api",
            "Shop.Example/ shop",
            "shop.example/api/ shop-api",
        ]);
        assert_eq!(choose(&r, "shop.example", "/api/x"), Some(2));
        assert_eq!(choose(&r, "SHOP.example:8080", "/cart"), Some(1));
        assert_eq!(choose(&r, "other.example", "/api/x"), Some(0));
        assert_eq!(choose(&r, "other.example", "/cart"), None);
        let r = routes(&["/very/long/prefix/ a", "shop.example/ b"]);
        assert_eq!(choose(&r, "shop.example", "/very/long/prefix/x"), Some(1));
    }

    #[test]
    fn the_first_of_equal_routes_wins() {
        let r = routes(&["/a/ one", "/a/ two"]);
        assert_eq!(choose(&r, "h", "/a/b"), Some(0));
    }

    #[test]
    fn paths_are_matched_in_normal_form() {
        let r = routes(&["/api/ api", "/admin/ admin"]);
        assert_eq!(choose(&r, "h", "/%61pi/x"), Some(0));
        assert_eq!(choose(&r, "h", "/%61%70%69/x"), Some(0));
        assert_eq!(choose(&r, "h", "/x/../admin/"), Some(1));
        assert_eq!(choose(&r, "h", "/./api/./x"), Some(0));
        assert_eq!(
            choose(&r, "h", "/api%2Fx"),
            None,
            "an encoded slash stays encoded"
        );
        assert_eq!(normal_path("/a/b?"), "/a/b?");
        assert_eq!(normal_path("/a/.."), "/");
        assert_eq!(normal_path("/../../etc"), "/etc");
        assert_eq!(normal_path("/a/%7e%zz%"), "/a/~%zz%");
        assert_eq!(normal_path("/é/%41"), "/é/A");
    }
}
