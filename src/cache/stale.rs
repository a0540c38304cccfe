//! When a stale response may be served (RFC 9111 §4.2.4, RFC 5861): while it is being
//! refreshed in the background (`stale-while-revalidate`), and when no backend can answer
//! (`stale-if-error`, or the proxy's `cache_stale_if_error`). Pure functions; the proxy
//! decides when to ask (`proxy::caching`).
//!
//! What forbids both, as RFC 9111 §4.2.4 says: a response's `no-cache` or
//! `must-revalidate`, and for a shared cache its `proxy-revalidate` or `s-maxage`
//! (§5.2.2.10: s-maxage implies proxy-revalidate); and a request's own `no-cache`, `max-age`
//! or `min-fresh`, which ask for something fresher than what we would serve.

use std::time::{Duration, SystemTime};

use super::control::CacheControl;
use super::freshness::{current_age, freshness_lifetime, Policy};
use crate::http::{Request, Response};

/// Whether a stale response (its directives `cc`, its `lifetime` and current `age`) may be
/// served at once and refreshed in the background: inside its `stale-while-revalidate`
/// window (RFC 5861 §3: at most that many seconds past its lifetime), and nothing forbids
/// serving it stale (see the module docs).
pub(super) fn while_revalidating(
    cc: &CacheControl,
    asked: &CacheControl,
    lifetime: Option<Duration>,
    age: Duration,
    shared: bool,
) -> bool {
    let (Some(window), Some(lifetime)) = (cc.stale_while_revalidate, lifetime) else {
        return false;
    };
    let staleness = age.saturating_sub(lifetime);
    may_serve_stale(cc, asked, shared) && staleness < Duration::from_secs(window)
}

/// Whether the directives allow serving a stale response at all (see the module docs).
fn may_serve_stale(cc: &CacheControl, asked: &CacheControl, shared: bool) -> bool {
    let asks_fresher = asked.no_cache || asked.max_age.is_some() || asked.min_fresh.is_some();
    !cc.forbids_stale(shared) && !asks_fresher
}

/// When no backend can answer `request` (refused, timed out, or a 5xx), whether `stored`
/// (received or last validated at `stored_at`) may be served instead at `now`, and with
/// which current age (RFC 5861 §4, RFC 9111 §4.2.4). It may when nothing forbids serving it
/// stale and it is stale by no more than the window: the response's `stale-if-error`, else
/// the request's, else the policy's (`cache_stale_if_error`). A response that is still fresh
/// (its `no-cache` sent us to the origin) is never served this way: `no-cache` forbids it.
pub fn stale_on_error(
    request: &Request,
    stored: &Response,
    stored_at: SystemTime,
    now: SystemTime,
    policy: &Policy,
) -> Option<Duration> {
    let cc = CacheControl::of_response(stored, policy.shared);
    let asked = CacheControl::of_request(request);
    if !may_serve_stale(&cc, &asked, policy.shared) {
        return None;
    }
    let window = cc
        .stale_if_error
        .or(asked.stale_if_error)
        .map_or(policy.stale_if_error, Duration::from_secs);
    let lifetime = freshness_lifetime(stored, policy)?;
    let age = current_age(stored, stored_at, now);
    let staleness = age.saturating_sub(lifetime);
    (staleness <= window).then_some(age)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{at, get, resp, SHARED};
    use super::super::{reuse, Reuse};
    use super::*;

    fn on_error(request: &str, fields: &str, secs: u64, policy: &Policy) -> Option<u64> {
        let stored = resp(200, fields);
        stale_on_error(&get(request), &stored, at(0), at(secs), policy).map(|a| a.as_secs())
    }

    #[test]
    fn stale_while_revalidate_serves_inside_the_window_only() {
        let r = resp(
            200,
            "Cache-Control: max-age=10, stale-while-revalidate=20\r\nETag: \"e\"\r\n",
        );
        let at_secs = |secs| reuse(&get(""), &r, at(0), at(secs), &SHARED);
        assert_eq!(at_secs(9), Reuse::Fresh(Duration::from_secs(9)));
        let fields = vec![("If-None-Match".to_string(), "\"e\"".to_string())];
        assert_eq!(
            at_secs(10),
            Reuse::Stale(Duration::from_secs(10), fields.clone())
        );
        assert_eq!(
            at_secs(29),
            Reuse::Stale(Duration::from_secs(29), fields.clone())
        );
        assert_eq!(at_secs(30), Reuse::Validate(fields));
        let bare = resp(
            200,
            "Cache-Control: max-age=1, stale-while-revalidate=5\r\n",
        );
        let refetch = reuse(&get(""), &bare, at(0), at(2), &SHARED);
        assert_eq!(refetch, Reuse::Stale(Duration::from_secs(2), Vec::new()));
    }

    #[test]
    fn stale_while_revalidate_yields_to_what_forbids_stale() {
        for forbidding in [
            "must-revalidate",
            "proxy-revalidate",
            "s-maxage=10",
            "no-cache",
        ] {
            let r = resp(
                200,
                &format!("Cache-Control: max-age=10, stale-while-revalidate=60, {forbidding}\r\nETag: \"e\"\r\n"),
            );
            let decided = reuse(&get(""), &r, at(0), at(15), &SHARED);
            assert!(
                matches!(decided, Reuse::Validate(_)),
                "{forbidding}: {decided:?}"
            );
        }
        let r = resp(
            200,
            "Cache-Control: max-age=10, stale-while-revalidate=60\r\n",
        );
        for asked in [
            "Cache-Control: no-cache\r\n",
            "Cache-Control: max-age=5\r\n",
        ] {
            assert_eq!(
                reuse(&get(asked), &r, at(0), at(15), &SHARED),
                Reuse::Refetch
            );
        }
    }

    #[test]
    fn stale_if_error_window_from_the_response_the_request_or_the_policy() {
        let day = SHARED.stale_if_error.as_secs();
        assert_eq!(
            on_error("", "Cache-Control: max-age=10\r\n", 10 + day, &SHARED),
            Some(10 + day)
        );
        assert_eq!(
            on_error("", "Cache-Control: max-age=10\r\n", 11 + day, &SHARED),
            None
        );
        let sie = "Cache-Control: max-age=10, stale-if-error=5\r\n";
        assert_eq!(on_error("", sie, 15, &SHARED), Some(15));
        assert_eq!(on_error("", sie, 16, &SHARED), None);
        let off = Policy {
            stale_if_error: Duration::ZERO,
            ..SHARED
        };
        assert_eq!(
            on_error("", "Cache-Control: max-age=10\r\n", 11, &off),
            None
        );
        let asked = "Cache-Control: stale-if-error=100\r\n";
        assert_eq!(
            on_error(asked, "Cache-Control: max-age=10\r\n", 60, &off),
            Some(60)
        );
        // A heuristic lifetime counts as any other.
        assert_eq!(on_error("", "", 100, &SHARED), Some(100));
    }

    #[test]
    fn stale_if_error_is_refused_as_the_rfc_says() {
        for forbidding in [
            "must-revalidate",
            "proxy-revalidate",
            "s-maxage=10",
            "no-cache",
        ] {
            let fields = format!("Cache-Control: max-age=10, stale-if-error=60, {forbidding}\r\n");
            assert_eq!(on_error("", &fields, 20, &SHARED), None, "{forbidding}");
        }
        let private = Policy::private(SHARED.default_ttl);
        let fields = "Cache-Control: max-age=10, stale-if-error=60, proxy-revalidate\r\n";
        assert_eq!(on_error("", fields, 20, &private), Some(20));
        assert_eq!(
            on_error(
                "Cache-Control: no-cache\r\n",
                "Cache-Control: max-age=10\r\n",
                20,
                &SHARED
            ),
            None
        );
    }
}
