//! The Cache-Control field (RFC 9111 §5.2), as the cache reads it: the directives it acts
//! on, from a request or a response, with the deliberate readings of malformed values.

use crate::http::{Headers, Request};

/// Largest delta-seconds value we represent (RFC 9111 §1.2.2: a bigger one, or an
/// overflowing calculation, counts as 2^31 seconds).
pub const MAX_DELTA_SECONDS: u64 = 1 << 31;

/// The Cache-Control directives the cache acts on (RFC 9111 §5.2), from a request or a
/// response. Directive names are case-insensitive; unknown directives are ignored (§5.2.3).
///
/// Deliberate readings:
/// - an argument that is missing, not digits, or a directive given twice with different
///   values counts as 0, i.e. stale (§4.2.1 allows "first occurrence" or "stale"; stale is
///   the careful one); a quoted number (`max-age="5"`) is accepted although senders must not
///   generate it;
/// - the qualified forms `no-cache="field"` and `private="field"` are treated as unqualified,
///   as §5.2.2.4 and §5.2.2.7 allow (ATS and httpd do the same);
/// - a directive list split across several Cache-Control lines is one list (RFC 9110 §5.3).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheControl {
    /// `no-store`: never store (§5.2.1.5, §5.2.2.5).
    pub no_store: bool,
    /// `no-cache`: validate before every reuse (§5.2.1.4, §5.2.2.4).
    pub no_cache: bool,
    /// `private`: a shared cache must not store (§5.2.2.7).
    pub private: bool,
    /// `public`: storable even when it otherwise would not be (§5.2.2.9).
    pub public: bool,
    /// `must-revalidate`: never serve stale (§5.2.2.2); we never do anyway.
    pub must_revalidate: bool,
    /// `max-age=N`, seconds (§5.2.1.1, §5.2.2.1).
    pub max_age: Option<u64>,
    /// `s-maxage=N`, seconds, shared caches only (§5.2.2.10).
    pub s_maxage: Option<u64>,
    /// `min-fresh=N` in a request: fresh for at least N more seconds (§5.2.1.3).
    pub min_fresh: Option<u64>,
}

impl CacheControl {
    /// The directives of every Cache-Control field in `headers`.
    ///
    /// ```text
    /// Cache-Control   = #cache-directive
    /// cache-directive = token [ "=" ( token / quoted-string ) ]
    /// ```
    pub fn parse(headers: &Headers) -> CacheControl {
        let mut cc = CacheControl::default();
        for directive in headers.list("cache-control") {
            let (name, argument) = match directive.split_once('=') {
                Some((name, arg)) => (name.trim_end(), Some(arg.trim_start())),
                None => (directive, None),
            };
            match name.to_ascii_lowercase().as_str() {
                "no-store" => cc.no_store = true,
                "no-cache" => cc.no_cache = true,
                "private" => cc.private = true,
                "public" => cc.public = true,
                "must-revalidate" => cc.must_revalidate = true,
                "max-age" => merge_seconds(&mut cc.max_age, argument),
                "s-maxage" => merge_seconds(&mut cc.s_maxage, argument),
                "min-fresh" => merge_seconds(&mut cc.min_fresh, argument),
                _ => {}
            }
        }
        cc
    }

    /// A request's directives. `Pragma: no-cache` counts as `no-cache` when the request has
    /// no Cache-Control (RFC 7234 §5.4 required it; RFC 9111 deprecates Pragma, and httpd
    /// still honours it, so we do).
    pub fn of_request(request: &Request) -> CacheControl {
        let mut cc = CacheControl::parse(&request.headers);
        if !request.headers.contains("cache-control")
            && request.headers.has_token("pragma", "no-cache")
        {
            cc.no_cache = true;
        }
        cc
    }
}

/// `delta-seconds = 1*DIGIT` (RFC 9111 §1.2.2), clamped to [`MAX_DELTA_SECONDS`]; anything
/// else counts as 0.
pub(super) fn delta_seconds(argument: Option<&str>) -> u64 {
    let Some(text) = argument else { return 0 };
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return 0;
    }
    text.parse::<u64>()
        .map_or(MAX_DELTA_SECONDS, |n| n.min(MAX_DELTA_SECONDS))
}

fn merge_seconds(slot: &mut Option<u64>, argument: Option<&str>) {
    let value = delta_seconds(argument);
    *slot = Some(match *slot {
        Some(previous) if previous != value => 0,
        _ => value,
    });
}

#[cfg(test)]
mod tests {
    use super::super::testing::resp;
    use super::*;

    #[test]
    fn hostile_cache_control_values() {
        let cc =
            |v: &str| CacheControl::parse(&resp(200, &format!("Cache-Control: {v}\r\n")).headers);
        assert_eq!(cc(",,, ,"), CacheControl::default());
        assert_eq!(cc("=5, ==, max-age==5").max_age, Some(0));
        assert_eq!(cc(&"x".repeat(10_000)), CacheControl::default());
        assert_eq!(cc("max-age=\"\"").max_age, Some(0));
        assert_eq!(cc("max-age=5\"").max_age, Some(0));
        assert!(cc("Public, MUST-REVALIDATE").must_revalidate);
        assert_eq!(cc("s-maxage = 5").s_maxage, Some(5));
    }
}
