//! How long a stored response stays fresh, and how old it is (RFC 9111 §4.2): the explicit
//! lifetime, the heuristic one (§4.2.2), and the current age (§4.2.3). Pure functions of a
//! response head and the times passed in; what a cache does with a fresh or stale response
//! is `cache::reuse` and `cache::stale`.

use std::time::{Duration, SystemTime};

use super::control::{delta_seconds, CacheControl};
use crate::http::date::parse_http_date;
use crate::http::{Headers, Response};

/// Statuses that are heuristically cacheable (RFC 9110 §15.1): without explicit freshness,
/// only these (and responses marked `public`) get a heuristic lifetime.
pub const HEURISTIC_STATUSES: &[u16] = &[200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];

/// The fraction of the time since `Last-Modified` that a response stays heuristically fresh,
/// in percent (RFC 9111 §4.2.2: "a typical setting of this fraction might be 10%").
pub const HEURISTIC_PERCENT: u32 = 10;

/// What a cache's rules depend on besides the messages: whether it is shared, and the
/// configured lifetimes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// True for the proxy (a shared cache: `s-maxage` counts, `private` is never stored,
    /// the credential rules apply), false for the client's private cache.
    pub shared: bool,
    /// The lifetime of a heuristically cacheable response with neither explicit freshness
    /// nor `Last-Modified` (`cache_ttl`); zero: none, it is stale at once.
    pub default_ttl: Duration,
    /// The cap of the heuristic lifetime from `Last-Modified` (`cache_heuristic_max`);
    /// zero: that heuristic is off, and such responses get `default_ttl` as the others.
    pub heuristic_max: Duration,
    /// How long past its lifetime a response may be served when no backend can answer and
    /// neither it nor the request says how long (`cache_stale_if_error`); zero: only when
    /// they say so.
    pub stale_if_error: Duration,
}

impl Policy {
    /// The default cap of the heuristic lifetime and of serving stale on error, the
    /// proxy's `cache_heuristic_max` and `cache_stale_if_error`: one day.
    pub const ONE_DAY: Duration = Duration::from_secs(24 * 60 * 60);

    /// A private cache's rules (the client's): `default_ttl` for every response without a
    /// lifetime of its own, Last-Modified or not (the client's `--ttl` promises that
    /// `--ttl 0` revalidates every time), never stale on error unless a response or request
    /// asks for it.
    pub fn private(default_ttl: Duration) -> Policy {
        Policy {
            shared: false,
            default_ttl,
            heuristic_max: Duration::ZERO,
            stale_if_error: Duration::ZERO,
        }
    }
}

/// Freshness lifetime of a stored response (RFC 9111 §4.2.1), pure; `None` when it has
/// none at all, neither explicit nor heuristic: such a response is never stored.
///
/// Explicit freshness first: `s-maxage` (shared caches only), then `max-age`, then
/// `Expires - Date`, read from the directives `CacheControl::of_response` chooses (a valid
/// targeted field replaces Cache-Control and Expires). An invalid max-age or Expires gives
/// `Some(ZERO)`: stale. Without explicit freshness, a heuristically cacheable status (or
/// `public`) gets a heuristic lifetime (§4.2.2): [`HEURISTIC_PERCENT`] of the time between
/// `Last-Modified` and `Date`, at most `heuristic_max`; without Last-Modified (or with the
/// cap at zero), `default_ttl`, which may be zero. Other statuses get `None`.
pub fn freshness_lifetime(response: &Response, policy: &Policy) -> Option<Duration> {
    let cc = CacheControl::of_response(response, policy.shared);
    if let Some(seconds) = explicit_seconds(&cc, policy.shared) {
        return Some(Duration::from_secs(seconds));
    }
    if !cc.targeted && response.headers.contains("expires") {
        return Some(expires_lifetime(&response.headers));
    }
    let heuristic = HEURISTIC_STATUSES.contains(&response.status) || cc.public;
    if !heuristic {
        return None;
    }
    let from_last_modified = (!policy.heuristic_max.is_zero())
        .then(|| last_modified_lifetime(&response.headers, policy.heuristic_max))
        .flatten();
    Some(from_last_modified.unwrap_or(policy.default_ttl))
}

/// The lifetime the origin states itself: `s-maxage` (shared caches only) or `max-age`.
fn explicit_seconds(cc: &CacheControl, shared: bool) -> Option<u64> {
    match (shared, cc.s_maxage, cc.max_age) {
        (true, Some(s), _) => Some(s),
        (_, _, Some(m)) => Some(m),
        _ => None,
    }
}

/// Whether the origin gave this response a lifetime of its own (`s-maxage`, `max-age`, or
/// `Expires` unless a targeted field replaced it), as opposed to a heuristic one.
pub fn has_explicit_lifetime(response: &Response, policy: &Policy) -> bool {
    let cc = CacheControl::of_response(response, policy.shared);
    explicit_seconds(&cc, policy.shared).is_some()
        || (!cc.targeted && response.headers.contains("expires"))
}

/// The heuristic lifetime from `Last-Modified` (RFC 9111 §4.2.2): [`HEURISTIC_PERCENT`] of
/// `Date - Last-Modified`, at most `cap`. `None` without a valid Last-Modified and Date; a
/// Last-Modified after Date gives zero.
fn last_modified_lifetime(headers: &Headers, cap: Duration) -> Option<Duration> {
    let modified = headers.get("last-modified").and_then(parse_http_date)?;
    let date = headers.get("date").and_then(parse_http_date)?;
    let since = date.duration_since(modified).unwrap_or(Duration::ZERO);
    Some((since * HEURISTIC_PERCENT / 100).min(cap))
}

/// `Expires - Date` (RFC 9111 §4.2.1, §5.3). An invalid Expires (such as `0`), several
/// different ones, or a missing Date give zero: already expired. (Stored responses always
/// have a Date: `stored_response` adds one, RFC 9110 §6.6.1.)
fn expires_lifetime(headers: &Headers) -> Duration {
    let mut all = headers.get_all("expires");
    let first = all.next().unwrap_or_default();
    if all.any(|other| other != first) {
        return Duration::ZERO;
    }
    let expires = parse_http_date(first);
    let date = headers.get("date").and_then(parse_http_date);
    match (expires, date) {
        (Some(expires), Some(date)) => expires.duration_since(date).unwrap_or(Duration::ZERO),
        _ => Duration::ZERO,
    }
}

/// Current age (RFC 9111 §4.2.3) of an entry stored (or last validated) at `stored_at`:
/// the response's Age header value plus the time since `stored_at`.
///
/// This is §4.2.3's `corrected_age_value + resident_time` with no response delay. The
/// `apparent_age` term (`response_time - Date`) is left out on purpose: it only measures
/// the clock difference between the origin and us, and a backend whose clock runs slow would
/// make every entry stale on arrival. An invalid Age is ignored (httpd reads it as 0 too).
/// Age is a single number; of a list (`Age: 7200, 0`, one line or several) the first member
/// counts, as RFC 9110 §5.5's recovery from a list in a singleton field allows.
pub fn current_age(response: &Response, stored_at: SystemTime, now: SystemTime) -> Duration {
    let age_value = response
        .headers
        .list("age")
        .next()
        .map_or(0, |v| delta_seconds(Some(v)));
    let resident = now.duration_since(stored_at).unwrap_or(Duration::ZERO);
    Duration::from_secs(age_value).saturating_add(resident)
}

#[cfg(test)]
mod tests {
    use super::super::control::MAX_DELTA_SECONDS;
    use super::super::testing::{at, resp, SHARED, TTL};
    use super::*;
    use crate::http::date::format_http_date;

    fn date(secs: u64) -> String {
        format_http_date(at(secs))
    }

    fn lifetime(fields: &str) -> Option<u64> {
        freshness_lifetime(&resp(200, fields), &SHARED).map(|d| d.as_secs())
    }

    #[test]
    fn explicit_freshness_s_maxage_then_max_age_then_expires() {
        let d = date(0);
        let e = date(500);
        assert_eq!(lifetime("Cache-Control: max-age=100\r\n"), Some(100));
        assert_eq!(
            lifetime("Cache-Control: max-age=100, s-maxage=7\r\n"),
            Some(7)
        );
        let private = freshness_lifetime(
            &resp(200, "Cache-Control: max-age=100, s-maxage=7\r\n"),
            &Policy::private(TTL),
        );
        assert_eq!(private, Some(Duration::from_secs(100)));
        assert_eq!(
            lifetime(&format!(
                "Date: {d}\r\nExpires: {e}\r\nCache-Control: max-age=3\r\n"
            )),
            Some(3)
        );
        assert_eq!(
            lifetime(&format!("Date: {d}\r\nExpires: {e}\r\n")),
            Some(500)
        );
        assert_eq!(lifetime(&format!("Date: {e}\r\nExpires: {d}\r\n")), Some(0));
    }

    #[test]
    fn invalid_max_age_or_expires_means_stale() {
        let d = date(0);
        assert_eq!(lifetime(&format!("Date: {d}\r\nExpires: 0\r\n")), Some(0));
        assert_eq!(lifetime("Cache-Control: max-age=soon\r\n"), Some(0));
        assert_eq!(lifetime("Cache-Control: max-age\r\n"), Some(0));
        assert_eq!(lifetime("Cache-Control: max-age=-1\r\n"), Some(0));
        assert_eq!(
            lifetime("Cache-Control: max-age=5\r\nCache-Control: max-age=9\r\n"),
            Some(0)
        );
        assert_eq!(lifetime("Cache-Control: max-age=5, MAX-AGE=5\r\n"), Some(5));
        assert_eq!(lifetime("Cache-Control: max-age=\"5\"\r\n"), Some(5));
        let e = date(9);
        assert_eq!(
            lifetime(&format!("Date: {d}\r\nExpires: {e}\r\nExpires: {d}\r\n")),
            Some(0)
        );
        assert_eq!(lifetime(&format!("Expires: {e}\r\n")), Some(0));
        // Shapes the date grammar refuses (see `http::date`): already expired.
        for bad in [
            "Thu, 18 Aug 2050 2:01:18 GMT",
            "Thu, 18  Aug  2050 02:01:18 GMT",
        ] {
            assert_eq!(
                lifetime(&format!("Date: {d}\r\nExpires: {bad}\r\n")),
                Some(0)
            );
        }
    }

    #[test]
    fn a_targeted_field_replaces_cache_control_and_expires() {
        let (d, past, future) = (date(100), date(0), date(1100));
        let cdn = |cdn: &str, rest: &str| {
            lifetime(&format!("Date: {d}\r\nCDN-Cache-Control: {cdn}\r\n{rest}"))
        };
        assert_eq!(
            cdn("max-age=3600", &format!("Expires: {past}\r\n")),
            Some(3600)
        );
        assert_eq!(cdn("max-age=0", &format!("Expires: {future}\r\n")), Some(0));
        assert_eq!(cdn("max-age=1", "Cache-Control: max-age=3600\r\n"), Some(1));
        // A targeted field without a lifetime leaves a heuristic one: Expires does not count.
        assert_eq!(
            cdn("public", &format!("Expires: {future}\r\n")),
            Some(TTL.as_secs())
        );
        // Invalid: Cache-Control and Expires count again.
        assert_eq!(
            cdn("max-age=\"1\"", "Cache-Control: max-age=99\r\n"),
            Some(99)
        );
        let private = Policy::private(TTL);
        let r = resp(
            200,
            "CDN-Cache-Control: max-age=5\r\nCache-Control: max-age=9\r\n",
        );
        assert_eq!(
            freshness_lifetime(&r, &private),
            Some(Duration::from_secs(9))
        );
    }

    #[test]
    fn huge_delta_seconds_are_clamped() {
        assert_eq!(
            lifetime("Cache-Control: max-age=99999999999999999999999999\r\n"),
            Some(MAX_DELTA_SECONDS)
        );
        let r = resp(200, "Age: 99999999999999999999999\r\n");
        let age = current_age(&r, at(0), at(10));
        assert_eq!(age.as_secs(), MAX_DELTA_SECONDS + 10);
    }

    #[test]
    fn heuristic_freshness_only_for_listed_statuses() {
        for status in HEURISTIC_STATUSES {
            let r = resp(*status, "");
            assert_eq!(freshness_lifetime(&r, &SHARED), Some(TTL), "{status}");
        }
        for status in [201, 202, 206, 302, 303, 307, 400, 403, 500, 502, 503] {
            assert_eq!(freshness_lifetime(&resp(status, ""), &SHARED), None);
        }
        let public = resp(302, "Cache-Control: public\r\n");
        assert_eq!(freshness_lifetime(&public, &SHARED), Some(TTL));
        let no_ttl = Policy {
            default_ttl: Duration::ZERO,
            ..SHARED
        };
        assert_eq!(
            freshness_lifetime(&resp(200, ""), &no_ttl),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn heuristic_freshness_from_last_modified_is_a_tenth_capped() {
        let no_ttl = Policy {
            default_ttl: Duration::ZERO,
            ..SHARED
        };
        let modified = |status: u16, lm: u64, d: u64, policy: &Policy| {
            let fields = format!("Last-Modified: {}\r\nDate: {}\r\n", date(lm), date(d));
            freshness_lifetime(&resp(status, &fields), policy).map(|l| l.as_secs())
        };
        assert_eq!(modified(200, 0, 86_400, &no_ttl), Some(8_640));
        assert_eq!(modified(404, 0, 3_000, &no_ttl), Some(300));
        // Capped by heuristic_max: a year-old file is fresh for a day, not 36 days.
        assert_eq!(modified(200, 0, 365 * 86_400, &no_ttl), Some(86_400));
        let capped = Policy {
            heuristic_max: Duration::from_secs(60),
            ..no_ttl
        };
        assert_eq!(modified(200, 0, 86_400, &capped), Some(60));
        // Last-Modified after Date: no time to take a tenth of.
        assert_eq!(modified(200, 100, 50, &no_ttl), Some(0));
        // The cap at zero turns it off: cache_ttl as for the others.
        let off = Policy {
            heuristic_max: Duration::ZERO,
            ..SHARED
        };
        assert_eq!(modified(200, 0, 86_400, &off), Some(TTL.as_secs()));
        // The client's private cache: its --ttl for these too, so --ttl 0 revalidates.
        let client = Policy::private(Duration::ZERO);
        assert_eq!(modified(200, 0, 86_400, &client), Some(0));
        // Not for a status that is not heuristically cacheable, unless public.
        assert_eq!(modified(599, 0, 86_400, &no_ttl), None);
        let public = format!(
            "Cache-Control: public\r\nLast-Modified: {}\r\nDate: {}\r\n",
            date(0),
            date(86_400)
        );
        let lifetime = freshness_lifetime(&resp(599, &public), &no_ttl);
        assert_eq!(lifetime, Some(Duration::from_secs(8_640)));
    }

    #[test]
    fn age_counts_upstream_age_and_time_since_stored() {
        let r = resp(200, "Age: 30\r\n");
        assert_eq!(current_age(&r, at(0), at(5)), Duration::from_secs(35));
        assert_eq!(current_age(&r, at(10), at(5)), Duration::from_secs(30));
        let bad = resp(200, "Age: ten\r\n");
        assert_eq!(current_age(&bad, at(0), at(5)), Duration::from_secs(5));
        let listed = |fields: &str| current_age(&resp(200, fields), at(0), at(0)).as_secs();
        assert_eq!(listed("Age: 7200, 0\r\n"), 7200);
        assert_eq!(listed("Age: 0, 7200\r\n"), 0);
        assert_eq!(listed("Age: 7200\r\nAge: 0\r\n"), 7200);
    }
}
