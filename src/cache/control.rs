//! The Cache-Control field (RFC 9111 §5.2), as the cache reads it: the directives it acts
//! on, from a request or a response, with the deliberate readings of malformed values; and,
//! for a shared cache, the targeted fields that take its place (RFC 9213, `targeted`).

use super::targeted;
use crate::http::{Headers, Request, Response};

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
///
/// A shared cache reads a response's directives with [`CacheControl::of_response`], which
/// prefers a targeted field (`Relevo-Cache-Control`, then `CDN-Cache-Control`) when one is
/// valid: then `targeted` is set, and `Expires` does not count either (RFC 9213 §2.1).
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
    /// `must-revalidate`: never serve stale, not even when the origin fails (§5.2.2.2).
    pub must_revalidate: bool,
    /// `proxy-revalidate`: `must-revalidate` for shared caches only (§5.2.2.8).
    pub proxy_revalidate: bool,
    /// `must-understand`: store only when the status code is understood, and then
    /// `no-store` may be ignored (§5.2.2.3).
    pub must_understand: bool,
    /// `max-age=N`, seconds (§5.2.1.1, §5.2.2.1).
    pub max_age: Option<u64>,
    /// `s-maxage=N`, seconds, shared caches only (§5.2.2.10).
    pub s_maxage: Option<u64>,
    /// `min-fresh=N` in a request: fresh for at least N more seconds (§5.2.1.3).
    pub min_fresh: Option<u64>,
    /// `stale-while-revalidate=N`: served stale for up to N seconds past its lifetime while
    /// it is refreshed in the background (RFC 5861 §3).
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error=N`: served stale for up to N seconds past its lifetime when the origin
    /// cannot answer (RFC 5861 §4), in a response or a request.
    pub stale_if_error: Option<u64>,
    /// The directives came from a targeted field (RFC 9213), not from Cache-Control: the
    /// response's `Expires` is ignored too.
    pub targeted: bool,
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
                "proxy-revalidate" => cc.proxy_revalidate = true,
                "must-understand" => cc.must_understand = true,
                "max-age" => merge_seconds(&mut cc.max_age, argument),
                "s-maxage" => merge_seconds(&mut cc.s_maxage, argument),
                "min-fresh" => merge_seconds(&mut cc.min_fresh, argument),
                "stale-while-revalidate" => {
                    merge_seconds(&mut cc.stale_while_revalidate, argument);
                }
                "stale-if-error" => merge_seconds(&mut cc.stale_if_error, argument),
                _ => {}
            }
        }
        cc
    }

    /// A response's directives as a cache reads them. A `shared` cache (the proxy) takes
    /// them from the first targeted field that is present and valid, `Relevo-Cache-Control`
    /// then `CDN-Cache-Control` (RFC 9213 §2.1: the most specific target first), and from
    /// Cache-Control only when there is none; a private cache (the client) from Cache-Control.
    pub fn of_response(response: &Response, shared: bool) -> CacheControl {
        let chosen = shared
            .then(|| targeted::TARGETED_FIELDS.iter())
            .into_iter()
            .flatten()
            .find_map(|name| targeted::parse(&response.headers, name));
        chosen.unwrap_or_else(|| CacheControl::parse(&response.headers))
    }

    /// Whether these directives forbid serving the response stale, in any circumstance
    /// (RFC 9111 §4.2.4): `no-cache`, `must-revalidate`, and for a `shared` cache
    /// `proxy-revalidate` and `s-maxage` (which implies it, §5.2.2.10).
    pub fn forbids_stale(&self, shared: bool) -> bool {
        self.no_cache
            || self.must_revalidate
            || (shared && (self.proxy_revalidate || self.s_maxage.is_some()))
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

/// Sets a directive's seconds, or 0 when it was already given with another value.
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

    #[test]
    fn stale_directives_and_what_forbids_them() {
        let cc =
            |v: &str| CacheControl::parse(&resp(200, &format!("Cache-Control: {v}\r\n")).headers);
        let both = cc("max-age=1, stale-while-revalidate=30, STALE-IF-ERROR=60");
        assert_eq!(both.stale_while_revalidate, Some(30));
        assert_eq!(both.stale_if_error, Some(60));
        assert!(!both.forbids_stale(true));
        for forbidding in [
            "no-cache",
            "must-revalidate",
            "proxy-revalidate",
            "s-maxage=5",
        ] {
            assert!(cc(forbidding).forbids_stale(true), "{forbidding}");
        }
        assert!(!cc("proxy-revalidate").forbids_stale(false));
        assert!(!cc("s-maxage=5").forbids_stale(false));
        assert!(cc("no-store, must-understand").must_understand);
    }

    #[test]
    fn a_shared_cache_prefers_a_valid_targeted_field() {
        let r = resp(
            200,
            "Cache-Control: no-store\r\nCDN-Cache-Control: max-age=60\r\n\
             Relevo-Cache-Control: max-age=5\r\n",
        );
        let shared = CacheControl::of_response(&r, true);
        assert_eq!(
            (shared.max_age, shared.no_store, shared.targeted),
            (Some(5), false, true)
        );
        let private = CacheControl::of_response(&r, false);
        assert_eq!((private.max_age, private.no_store), (None, true));
        let cdn = resp(
            200,
            "Relevo-Cache-Control: max-age=\"5\"\r\nCDN-Cache-Control: max-age=60\r\n",
        );
        assert_eq!(CacheControl::of_response(&cdn, true).max_age, Some(60));
        let invalid = resp(
            200,
            "Cache-Control: max-age=9\r\nCDN-Cache-Control: max-age=60, &&\r\n",
        );
        let fallback = CacheControl::of_response(&invalid, true);
        assert_eq!((fallback.max_age, fallback.targeted), (Some(9), false));
    }
}
