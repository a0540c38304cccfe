//! The disk cache (RFC 9111): which responses may be stored, for how long they stay fresh,
//! when a stored one may answer a request, and how it is validated. The files themselves are
//! `store`; waiting for a response that another thread is already fetching is `flight`.
//!
//! Everything in this file is policy: pure functions of message heads, with the time passed
//! in, so every rule is unit-tested without a clock, a disk or a socket. The proxy calls them
//! as named steps (`proxy`: cache lookup, store, invalidate); the client's private cache
//! calls the same functions (`client`).
//!
//! Where RFC 9111 treats a private cache differently from a shared one, a function takes
//! `shared`: true from the proxy, false from the client. A private cache ignores `s-maxage`
//! (§5.2.2.10) and may store `private` responses (§5.2.2.7); the rules about credentials
//! are for shared caches only: a request with Authorization (§3.5), our rule for requests
//! with Cookie or Authorization ([`personal_rule_allows`]), and for responses with
//! Set-Cookie ([`is_storable`]). Everything else is one rule for both.
//!
//! How a request meets the cache, in short:
//!
//! ```text
//! key       = "http://" host target        the effective request URI (RFC 9110 §7.1)
//! file      = sha1_hex(key)                 one per stored response; Vary adds variants
//! fresh     = current_age < freshness_lifetime     (RFC 9111 §4.2)
//! fresh     → served as is ("HIT", with Age)
//! stale     → validated with If-None-Match / If-Modified-Since (§4.3): 304 → "REVALIDATED"
//! otherwise → fetched ("MISS") and stored while it streams to the client, if storable (§3)
//! ```
//!
//! Where RFC 9111 leaves a choice, the choice is written next to the code, with what Apache
//! Traffic Server (ATS) and Apache httpd's mod_cache do.

use std::time::{Duration, SystemTime};

use crate::http::conditional;
use crate::http::date::{format_http_date, parse_http_date};
use crate::http::{remove_hop_by_hop, Headers, Request, Response};

mod admission;
mod control;
mod flight;
mod index;
mod key;
mod store;

use control::delta_seconds;
pub use control::CacheControl;
pub use flight::{Flight, FlightGuard, Growing, InFlight, PassMarks, Progress, Role, Waited};
pub use key::{cache_key, entry_name, invalidated_keys, variant_key, vary_names};
pub use store::{Entry, EntryWriter, Store, TEMP_PREFIX};

/// Statuses that are heuristically cacheable (RFC 9110 §15.1): without explicit freshness,
/// only these get `cache_ttl`.
pub const HEURISTIC_STATUSES: &[u16] = &[200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];

/// Fields a cache does not store (RFC 9111 §3.1), besides the hop-by-hop ones and those named
/// in Connection. `X-Cache` is ours to set on the way out.
const NOT_STORED: &[&str] = &[
    "proxy-authenticate",
    "proxy-authentication-info",
    "proxy-authorization",
    "x-cache",
];

/// Fields copied from a stored response into a 304 we generate (RFC 9110 §15.4.5: the ones
/// a 200 would have carried that guide caches; other representation metadata is left out).
const NOT_MODIFIED_FIELDS: &[&str] = &[
    "cache-control",
    "content-location",
    "date",
    "etag",
    "expires",
    "last-modified",
    "vary",
];

/// What the cache did for one response; sent as `X-Cache` and written in the log line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CacheStatus {
    /// Served from a fresh stored response; the backend was not contacted.
    Hit,
    /// Fetched from the backend (and stored, when storable).
    Miss,
    /// A stale stored response was confirmed by the backend (304) and served.
    Revalidated,
    /// The cache was not consulted: cache off, a method other than GET/HEAD, a request it
    /// does not answer (Range, a body, some conditionals), or Authorization (RFC 9111 §3.5).
    #[default]
    Bypass,
}

impl CacheStatus {
    /// The value of the `X-Cache` field.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT",
            CacheStatus::Miss => "MISS",
            CacheStatus::Revalidated => "REVALIDATED",
            CacheStatus::Bypass => "BYPASS",
        }
    }
}

/// Freshness lifetime of a stored response (RFC 9111 §4.2.1), pure.
/// `shared`: true for the proxy (s-maxage counts, `private` is never stored), false for a
/// private cache (the client: s-maxage ignored, `private` allowed).
/// Explicit freshness: s-maxage (shared only) > max-age > Expires - Date. An invalid max-age or
/// Expires gives Some(Duration::ZERO) (stale). No explicit freshness: `default_ttl` for the
/// heuristically cacheable statuses (200 203 204 300 301 308 404 405 410 414 501, and any
/// status marked `public`, RFC 9111 §4.2.2), else None. A `default_ttl` of zero means no
/// heuristic freshness at all (`cache_ttl = 0`: store only what the origin marks fresh), so
/// it gives None too.
pub fn freshness_lifetime(
    response: &Response,
    default_ttl: Duration,
    shared: bool,
) -> Option<Duration> {
    let cc = CacheControl::parse(&response.headers);
    let explicit = match (shared, cc.s_maxage, cc.max_age) {
        (true, Some(s), _) => Some(s),
        (_, _, Some(m)) => Some(m),
        _ => None,
    };
    if let Some(seconds) = explicit {
        return Some(Duration::from_secs(seconds));
    }
    if response.headers.contains("expires") {
        return Some(expires_lifetime(&response.headers));
    }
    let heuristic = HEURISTIC_STATUSES.contains(&response.status) || cc.public;
    (heuristic && !default_ttl.is_zero()).then_some(default_ttl)
}

/// `Expires - Date` (RFC 9111 §4.2.1, §5.3). An invalid Expires (such as `0`), several
/// different ones, or a missing Date give zero: already expired. (Stored responses always
/// have a Date: [`stored_response`] adds one, RFC 9110 §6.6.1.)
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
pub fn current_age(response: &Response, stored_at: SystemTime, now: SystemTime) -> Duration {
    let age_value = response
        .headers
        .get("age")
        .map_or(0, |v| delta_seconds(Some(v.trim())));
    let resident = now.duration_since(stored_at).unwrap_or(Duration::ZERO);
    Duration::from_secs(age_value).saturating_add(resident)
}

/// Whether a response to a request with this method may be stored at all: GET only, not
/// 206, no `no-store`, (shared) no `private`, and a freshness lifetime or a validator.
///
/// Precisely (RFC 9111 §3): GET; a final status other than 206 and 304; no `no-store`; when
/// `shared`, no `private`; no `Vary: *`; and a freshness lifetime from
/// [`freshness_lifetime`] that is either positive, or zero with a validator to revalidate
/// it with. A response that needs validation before every reuse (`no-cache`) is stored only
/// with a validator: without one it could never be reused.
///
/// An event stream (`text/event-stream`) is never stored: it is live.
///
/// One choice beyond the RFC: a shared cache does not store a response carrying Set-Cookie
/// unless it says `public` or `s-maxage`, so one user's cookie is never handed to another
/// (ATS refuses such responses by default for text content; we refuse them for every type).
pub fn is_storable(method: &str, response: &Response, default_ttl: Duration, shared: bool) -> bool {
    let cc = CacheControl::parse(&response.headers);
    let status_ok = !response.is_interim() && response.status != 206 && response.status != 304;
    let cookie_ok =
        !shared || cc.public || cc.s_maxage.is_some() || !response.headers.contains("set-cookie");
    let validator = validators(response).is_some();
    let lifetime_ok = match freshness_lifetime(response, default_ttl, shared) {
        Some(lifetime) => !lifetime.is_zero() || validator,
        None => false,
    };
    method == "GET"
        && status_ok
        && !cc.no_store
        && !(shared && cc.private)
        && (!cc.no_cache || validator)
        && vary_names(response).is_some()
        && cookie_ok
        && lifetime_ok
        && !response.is_event_stream()
}

/// Whether a cache may store `response` to `request`: [`is_storable`] and no `no-store` in
/// the request (RFC 9111 §5.2.1.5). A `shared` cache (the proxy) also stores for a request
/// with Authorization only when the response says `public`, `s-maxage` or
/// `must-revalidate` (§3.5), and for a personalised request only with explicit freshness
/// ([`personal_rule_allows`]); a private cache (the client) holds one user's responses, so
/// neither rule applies to it.
pub fn is_cacheable(
    request: &Request,
    response: &Response,
    default_ttl: Duration,
    shared: bool,
) -> bool {
    is_storable(&request.method, response, default_ttl, shared)
        && !CacheControl::of_request(request).no_store
        && (!shared || shared_rules_allow(request, response))
}

/// The shared cache's rules about credentials: RFC 9111 §3.5 for Authorization, and
/// [`personal_rule_allows`] for Cookie and Authorization.
fn shared_rules_allow(request: &Request, stored: &Response) -> bool {
    authorization_allows(request, stored) && personal_rule_allows(request, stored)
}

/// Whether a request carries credentials that may personalise its answer: `Cookie` or
/// `Authorization`.
pub fn is_personalised(request: &Request) -> bool {
    request.headers.contains("cookie") || request.headers.contains("authorization")
}

/// The shared cache's rule for personalised requests, beyond RFC 9111: a request carrying
/// `Cookie` or `Authorization` is never answered from, nor stored with, a heuristic
/// lifetime (`cache_ttl`): only a response whose origin states its freshness (`max-age`,
/// `s-maxage`, `Expires`) or says `public` may serve it or be stored from it. A page
/// personalised by a cookie and sent without Cache-Control (as most frameworks do) would
/// otherwise be handed to every user for `cache_ttl`. Varnish's built-in rules go further
/// and never cache a request with Cookie or Authorization at all; this keeps what the
/// origin explicitly allows.
pub fn personal_rule_allows(request: &Request, response: &Response) -> bool {
    if !is_personalised(request) {
        return true;
    }
    let cc = CacheControl::parse(&response.headers);
    cc.public
        || cc.max_age.is_some()
        || cc.s_maxage.is_some()
        || response.headers.contains("expires")
}

/// RFC 9111 §3.5: a shared cache answers a request with Authorization only from a response
/// that says `public`, `s-maxage` or `must-revalidate`.
fn authorization_allows(request: &Request, stored: &Response) -> bool {
    if !request.headers.contains("authorization") {
        return true;
    }
    let cc = CacheControl::parse(&stored.headers);
    cc.public || cc.s_maxage.is_some() || cc.must_revalidate
}

/// Whether the cache takes part in this request at all. GET and HEAD only; not with
/// Range, If-Range, If-Match or If-Unmodified-Since: a stored full response is never cut
/// into ranges here, and those preconditions are left to the origin (httpd also passes them
/// through). The proxy also leaves out requests with a body.
pub fn may_use_cache(request: &Request) -> bool {
    matches!(request.method.as_str(), "GET" | "HEAD")
        && !["range", "if-range", "if-match", "if-unmodified-since"]
            .iter()
            .any(|name| request.headers.contains(name))
}

/// How a stored response may be used for a request (RFC 9111 §4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reuse {
    /// Fresh: serve it, with this current age in `Age`.
    Fresh(Duration),
    /// Stale (or `no-cache`): ask the origin with these conditional fields first.
    Validate(Vec<(String, String)>),
    /// Stale without a validator: fetch a new response.
    Refetch,
    /// It may not answer this request (a shared cache and Authorization, RFC 9111 §3.5, or
    /// a personalised request): go upstream and leave the entry alone.
    Bypass,
}

/// Decides how `stored`, received (or last validated) at `stored_at`, can answer `request`
/// at `now` (RFC 9111 §4, §4.2, §5.2.1), pure. `shared` is true for the proxy; for a private
/// cache (the client) `s-maxage` does not count (§5.2.2.10) and the rules about credentials
/// (§3.5, [`personal_rule_allows`]) do not apply, so it never answers `Bypass`.
///
/// A stale response is never served without validation, whatever `max-stale` says and even
/// when the origin is down: that is what `must-revalidate` requires, and we apply it to all
/// (httpd's `CacheStaleOnError` and ATS's stale-on-error serve stale instead; we do not).
/// The request's own `no-cache`, `max-age` and `min-fresh` are honoured, as in httpd (ATS
/// ignores a client's no-cache by default).
pub fn reuse(
    request: &Request,
    stored: &Response,
    stored_at: SystemTime,
    now: SystemTime,
    default_ttl: Duration,
    shared: bool,
) -> Reuse {
    if shared && !shared_rules_allow(request, stored) {
        return Reuse::Bypass;
    }
    let cc = CacheControl::parse(&stored.headers);
    let asked = CacheControl::of_request(request);
    let age = current_age(stored, stored_at, now);
    let fresh = match freshness_lifetime(stored, default_ttl, shared) {
        Some(lifetime) if age < lifetime => {
            let left = lifetime - age;
            asked.max_age.is_none_or(|max| age.as_secs() <= max)
                && asked
                    .min_fresh
                    .is_none_or(|min| left >= Duration::from_secs(min))
        }
        _ => false,
    };
    if fresh && !cc.no_cache && !asked.no_cache {
        return Reuse::Fresh(age);
    }
    match validators(stored) {
        Some(fields) => Reuse::Validate(fields),
        None => Reuse::Refetch,
    }
}

/// Whether a stale entry must be validated rather than used, and whether it has a validator:
/// returns the conditional headers to send (If-None-Match from ETag, If-Modified-Since from
/// Last-Modified) or None when the entry has neither.
///
/// Both are sent when both exist (RFC 9111 §4.3.1; httpd does the same); the origin then
/// decides by If-None-Match (RFC 9110 §13.2.2).
pub fn validators(stored: &Response) -> Option<Vec<(String, String)>> {
    let mut fields = Vec::new();
    if let Some(etag) = stored.headers.get("etag") {
        fields.push(("If-None-Match".to_string(), etag.to_string()));
    }
    if let Some(modified) = stored.headers.get("last-modified") {
        if parse_http_date(modified).is_some() {
            fields.push(("If-Modified-Since".to_string(), modified.to_string()));
        }
    }
    (!fields.is_empty()).then_some(fields)
}

/// Headers updated from a 304 (RFC 9111 §4.3.4): every field of `not_modified` replaces the
/// stored one, except Content-Length (and framing / hop-by-hop fields).
///
/// The stored Age goes too: it described the response before validation, and the age now
/// starts again from the 304's own Age, if any. The 304 is trusted to be for this entry:
/// we sent its validators, and like ATS we do not re-check the ones that came back.
pub fn merge_304(stored: &mut Response, not_modified: &Response) {
    let mut update = not_modified.headers.clone();
    remove_hop_by_hop(&mut update);
    for name in NOT_STORED.iter().chain(&["content-length"]) {
        update.remove(name);
    }
    stored.headers.remove("age");
    let names: Vec<String> = update.iter().map(|(name, _)| name.to_string()).collect();
    for name in &names {
        stored.headers.remove(name);
    }
    for (name, value) in update.iter() {
        stored.headers.append(name, value);
    }
}

/// The head of `response` as it is stored (RFC 9111 §3.1): [`stored_fields`], with a Date
/// of `now` when it had none or an invalid one (RFC 9110 §6.6.1). A valid Date is never
/// rewritten.
pub fn stored_response(response: &Response, now: SystemTime) -> Response {
    let mut stored = stored_fields(response);
    if stored
        .headers
        .get("date")
        .and_then(parse_http_date)
        .is_none()
    {
        stored.headers.set("Date", format_http_date(now));
    }
    stored
}

/// `response` without the fields a cache does not store (RFC 9111 §3.1): hop-by-hop fields,
/// the fields named in Connection, the proxy-authentication fields and `X-Cache`; and
/// without a Content-Length that Transfer-Encoding overrode (RFC 9112 §6.3).
fn stored_fields(response: &Response) -> Response {
    let mut stored = response.clone();
    if stored.headers.contains("transfer-encoding") {
        stored.headers.remove("content-length");
    }
    remove_hop_by_hop(&mut stored.headers);
    for name in NOT_STORED {
        stored.headers.remove(name);
    }
    stored
}

/// Whether a client's own conditional request is answered 304 by `stored`, which is fresh
/// (RFC 9111 §4.3.2): the request's conditions (`http::conditional`) against the stored
/// ETag, and against its Last-Modified or, without one, its Date, as §4.3.2 says.
pub fn not_modified(request: &Request, stored: &Response) -> bool {
    let last_modified = stored
        .headers
        .get("last-modified")
        .or_else(|| stored.headers.get("date"))
        .and_then(parse_http_date);
    conditional::not_modified(request, stored.headers.get("etag"), last_modified)
}

/// The 304 the cache sends for a matching conditional request: the stored status line's
/// version and the fields of [`NOT_MODIFIED_FIELDS`].
pub fn not_modified_response(stored: &Response) -> Response {
    let mut response = Response::new(304);
    response.version = stored.version;
    for (name, value) in stored.headers.iter() {
        if NOT_MODIFIED_FIELDS
            .iter()
            .any(|keep| name.eq_ignore_ascii_case(keep))
        {
            response.headers.append(name, value);
        }
    }
    response
}

#[cfg(test)]
pub(crate) mod testing {
    //! Messages for the cache's unit tests, parsed by the real parser.

    use std::time::{Duration, SystemTime};

    use crate::http::parse::{read_request, read_response, Limits};
    use crate::http::{Request, Response};

    /// A request from its raw head.
    pub fn req(raw: &str) -> Request {
        read_request(&mut raw.as_bytes(), &Limits::default())
            .unwrap()
            .unwrap()
    }

    /// `GET /a?b=1` for `shop.example`, with `extra` fields (each ending in CRLF).
    pub fn get(extra: &str) -> Request {
        req(&format!(
            "GET /a?b=1 HTTP/1.1\r\nHost: shop.example\r\n{extra}\r\n"
        ))
    }

    /// A response head with `status` and `fields` (each ending in CRLF).
    pub fn resp(status: u16, fields: &str) -> Response {
        let raw = format!("HTTP/1.1 {status} X\r\n{fields}\r\n");
        read_response(&mut raw.as_bytes(), &Limits::default()).unwrap()
    }

    /// A fixed instant, `secs` after an arbitrary origin.
    pub fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }
}

#[cfg(test)]
mod tests {
    use super::control::MAX_DELTA_SECONDS;
    use super::testing::{at, get, req, resp};
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    fn date(secs: u64) -> String {
        format_http_date(at(secs))
    }

    fn lifetime(fields: &str) -> Option<u64> {
        freshness_lifetime(&resp(200, fields), TTL, true).map(|d| d.as_secs())
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
            TTL,
            false,
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
            assert_eq!(freshness_lifetime(&r, TTL, true), Some(TTL), "{status}");
        }
        for status in [201, 202, 206, 302, 303, 307, 400, 403, 500, 502, 503] {
            assert_eq!(freshness_lifetime(&resp(status, ""), TTL, true), None);
        }
        let public = resp(302, "Cache-Control: public\r\n");
        assert_eq!(freshness_lifetime(&public, TTL, true), Some(TTL));
        assert_eq!(
            freshness_lifetime(&resp(200, ""), Duration::ZERO, true),
            None
        );
    }

    #[test]
    fn age_counts_upstream_age_and_time_since_stored() {
        let r = resp(200, "Age: 30\r\n");
        assert_eq!(current_age(&r, at(0), at(5)), Duration::from_secs(35));
        assert_eq!(current_age(&r, at(10), at(5)), Duration::from_secs(30));
        let bad = resp(200, "Age: ten\r\n");
        assert_eq!(current_age(&bad, at(0), at(5)), Duration::from_secs(5));
    }

    #[test]
    fn storable_responses() {
        let ok = |fields: &str| is_storable("GET", &resp(200, fields), TTL, true);
        assert!(ok(""));
        assert!(!is_storable("HEAD", &resp(200, ""), TTL, true));
        assert!(!is_storable("POST", &resp(200, ""), TTL, true));
        assert!(!is_storable(
            "GET",
            &resp(206, "Cache-Control: max-age=9\r\n"),
            TTL,
            true
        ));
        assert!(!is_storable(
            "GET",
            &resp(304, "Cache-Control: max-age=9\r\n"),
            TTL,
            true
        ));
        assert!(!ok("Cache-Control: no-store\r\n"));
        assert!(!ok("Cache-Control: NO-STORE, max-age=60\r\n"));
        assert!(!ok("Cache-Control: private\r\n"));
        assert!(!ok("Cache-Control: private=\"Set-Cookie\"\r\n"));
        assert!(is_storable(
            "GET",
            &resp(200, "Cache-Control: private\r\n"),
            TTL,
            false
        ));
        assert!(!ok("Vary: *\r\n"));
        assert!(!ok("Vary: Accept, *\r\n"));
        assert!(ok("Vary: Accept\r\n"));
        assert!(!ok("Cache-Control: no-cache\r\n"));
        assert!(ok("Cache-Control: no-cache\r\nETag: \"1\"\r\n"));
        assert!(!ok("Cache-Control: max-age=0\r\n"));
        assert!(ok("Cache-Control: max-age=0\r\nETag: \"1\"\r\n"));
        assert!(!ok("Set-Cookie: id=1\r\n"));
        assert!(ok("Set-Cookie: id=1\r\nCache-Control: public\r\n"));
        assert!(ok("Cache-Control: nothing-to-see-here\r\n"));
        assert!(is_storable(
            "GET",
            &resp(500, "Cache-Control: max-age=5\r\n"),
            TTL,
            true
        ));
        assert!(!is_storable("GET", &resp(500, ""), TTL, true));
        assert!(!is_storable("GET", &resp(200, ""), Duration::ZERO, true));
        assert!(!is_storable(
            "GET",
            &resp(200, "ETag: \"1\"\r\n"),
            Duration::ZERO,
            true
        ));
    }

    #[test]
    fn authorization_needs_public_s_maxage_or_must_revalidate() {
        let authed = get("Authorization: Basic eDp5\r\n");
        let plain = resp(200, "Cache-Control: max-age=60\r\n");
        assert!(!is_cacheable(&authed, &plain, TTL, true));
        assert!(is_cacheable(&get(""), &plain, TTL, true));
        assert_eq!(
            reuse(&authed, &plain, at(0), at(1), TTL, true),
            Reuse::Bypass
        );
        for cc in [
            "public, max-age=60",
            "s-maxage=60",
            "must-revalidate, max-age=60",
        ] {
            let r = resp(200, &format!("Cache-Control: {cc}\r\n"));
            assert!(is_cacheable(&authed, &r, TTL, true), "{cc}");
            assert!(matches!(
                reuse(&authed, &r, at(0), at(1), TTL, true),
                Reuse::Fresh(_)
            ));
        }
        // must-revalidate satisfies §3.5, but a lifetime from cache_ttl alone is not enough
        // for a personalised request.
        let heuristic = resp(200, "Cache-Control: must-revalidate\r\n");
        assert!(!is_cacheable(&authed, &heuristic, TTL, true));
    }

    #[test]
    fn a_cookie_request_is_never_stored_or_served_with_a_heuristic_lifetime() {
        let alice = get("Cookie: user=alice\r\n");
        let anonymous = get("");
        let bare = resp(200, "Content-Type: text/html\r\n");
        assert!(is_cacheable(&anonymous, &bare, TTL, true));
        assert!(!is_cacheable(&alice, &bare, TTL, true));
        assert_eq!(reuse(&alice, &bare, at(0), at(1), TTL, true), Reuse::Bypass);
        assert!(matches!(
            reuse(&anonymous, &bare, at(0), at(1), TTL, true),
            Reuse::Fresh(_)
        ));
        let expires = format!("Date: {}\r\nExpires: {}\r\n", date(0), date(60));
        for explicit in [
            "Cache-Control: max-age=60\r\n",
            "Cache-Control: s-maxage=60\r\n",
            "Cache-Control: public\r\n",
            expires.as_str(),
        ] {
            let r = resp(200, explicit);
            assert!(is_cacheable(&alice, &r, TTL, true), "{explicit}");
            assert!(
                matches!(reuse(&alice, &r, at(0), at(1), TTL, true), Reuse::Fresh(_)),
                "{explicit}"
            );
        }
    }

    #[test]
    fn event_streams_are_never_stored() {
        let stream = resp(
            200,
            "Content-Type: text/event-stream\r\nCache-Control: max-age=60\r\n",
        );
        assert!(!is_cacheable(&get(""), &stream, TTL, true));
        assert!(!is_storable("GET", &stream, TTL, false));
    }

    #[test]
    fn request_no_store_prevents_storing() {
        let r = resp(200, "");
        assert!(!is_cacheable(
            &get("Cache-Control: no-store\r\n"),
            &r,
            TTL,
            true
        ));
    }

    #[test]
    fn reuse_fresh_stale_and_validators() {
        let r = resp(200, "Cache-Control: max-age=10\r\nETag: \"v1\"\r\n");
        assert_eq!(
            reuse(&get(""), &r, at(0), at(9), TTL, true),
            Reuse::Fresh(Duration::from_secs(9))
        );
        let validate = Reuse::Validate(vec![("If-None-Match".into(), "\"v1\"".into())]);
        assert_eq!(reuse(&get(""), &r, at(0), at(10), TTL, true), validate);
        let bare = resp(200, "Cache-Control: max-age=10\r\n");
        assert_eq!(
            reuse(&get(""), &bare, at(0), at(11), TTL, true),
            Reuse::Refetch
        );
        let lm = date(0);
        let dated = resp(200, &format!("Last-Modified: {lm}\r\nETag: W/\"2\"\r\n"));
        assert_eq!(
            reuse(&get(""), &dated, at(0), at(60), TTL, true),
            Reuse::Validate(vec![
                ("If-None-Match".into(), "W/\"2\"".into()),
                ("If-Modified-Since".into(), lm),
            ])
        );
    }

    #[test]
    fn a_private_cache_ignores_s_maxage_and_the_credential_rules() {
        // s-maxage is for shared caches only (§5.2.2.10).
        let both = resp(200, "Cache-Control: s-maxage=600, max-age=1\r\n");
        let shared = reuse(&get(""), &both, at(0), at(2), TTL, true);
        assert!(matches!(shared, Reuse::Fresh(_)));
        assert_eq!(
            reuse(&get(""), &both, at(0), at(2), TTL, false),
            Reuse::Refetch
        );
        // `private` is stored by a private cache only (§5.2.2.7).
        let private = resp(200, "Cache-Control: private, max-age=60\r\n");
        assert!(!is_cacheable(&get(""), &private, TTL, true));
        assert!(is_cacheable(&get(""), &private, TTL, false));
        // Credentials: a shared cache stays out (§3.5 and the personal rule); a private one
        // serves its one user.
        let bare = resp(200, "");
        for asked in ["Authorization: Basic eDp5\r\n", "Cookie: user=alice\r\n"] {
            let request = get(asked);
            assert_eq!(
                reuse(&request, &bare, at(0), at(1), TTL, true),
                Reuse::Bypass
            );
            assert!(!is_cacheable(&request, &bare, TTL, true));
            let private = reuse(&request, &bare, at(0), at(1), TTL, false);
            assert_eq!(private, Reuse::Fresh(Duration::from_secs(1)), "{asked}");
            assert!(is_cacheable(&request, &bare, TTL, false), "{asked}");
        }
        let cookie = resp(200, "Set-Cookie: id=1\r\n");
        assert!(!is_cacheable(&get(""), &cookie, TTL, true));
        assert!(is_cacheable(&get(""), &cookie, TTL, false));
        // Everything else is one rule for both.
        let no_store = get("Cache-Control: no-store\r\n");
        assert!(!is_cacheable(&no_store, &bare, TTL, false));
        assert!(!is_cacheable(
            &get(""),
            &resp(200, "Vary: *\r\n"),
            TTL,
            false
        ));
        let tagged = resp(200, "Cache-Control: no-cache\r\nETag: \"v\"\r\n");
        let validate = reuse(&get(""), &tagged, at(0), at(0), TTL, false);
        assert!(matches!(validate, Reuse::Validate(_)));
    }

    #[test]
    fn a_private_cache_reuses_by_age_and_lifetime() {
        let plain = resp(200, "");
        let private = |r: &Response, secs| reuse(&get(""), r, at(0), at(secs), TTL, false);
        assert!(matches!(private(&plain, 59), Reuse::Fresh(_)));
        assert_eq!(private(&plain, 60), Reuse::Refetch);
        let tagged = resp(200, "ETag: \"v1\"\r\nCache-Control: max-age=5\r\n");
        assert!(matches!(private(&tagged, 4), Reuse::Fresh(_)));
        let validate = Reuse::Validate(vec![("If-None-Match".into(), "\"v1\"".into())]);
        assert_eq!(private(&tagged, 5), validate);
        // Age counts toward the age.
        assert_eq!(private(&resp(200, "Age: 58\r\n"), 3), Reuse::Refetch);
    }

    #[test]
    fn no_cache_always_validates() {
        let r = resp(
            200,
            "Cache-Control: no-cache, max-age=100\r\nETag: \"v\"\r\n",
        );
        assert!(matches!(
            reuse(&get(""), &r, at(0), at(0), TTL, true),
            Reuse::Validate(_)
        ));
        let fresh = resp(200, "Cache-Control: max-age=100\r\nETag: \"v\"\r\n");
        for asked in ["Cache-Control: no-cache\r\n", "Pragma: no-cache\r\n"] {
            assert!(matches!(
                reuse(&get(asked), &fresh, at(0), at(0), TTL, true),
                Reuse::Validate(_)
            ));
        }
        let both = "Cache-Control: max-age=100\r\nPragma: no-cache\r\n";
        assert!(matches!(
            reuse(&get(both), &fresh, at(0), at(0), TTL, true),
            Reuse::Fresh(_)
        ));
    }

    #[test]
    fn request_max_age_and_min_fresh() {
        let r = resp(200, "Cache-Control: max-age=100\r\n");
        let asked = |cc: &str| {
            reuse(
                &get(&format!("Cache-Control: {cc}\r\n")),
                &r,
                at(0),
                at(50),
                TTL,
                true,
            )
        };
        assert!(matches!(asked("max-age=60"), Reuse::Fresh(_)));
        assert_eq!(asked("max-age=10"), Reuse::Refetch);
        assert!(matches!(asked("min-fresh=50"), Reuse::Fresh(_)));
        assert_eq!(asked("min-fresh=51"), Reuse::Refetch);
        assert!(matches!(asked("nothing-to-see-here"), Reuse::Fresh(_)));
        assert!(matches!(
            asked("max-stale=5, only-if-cached"),
            Reuse::Fresh(_)
        ));
    }

    #[test]
    fn merge_304_replaces_fields_but_not_content_length() {
        let mut stored = resp(
            200,
            "Content-Length: 5\r\nETag: \"1\"\r\nAge: 40\r\nX-Old: a\r\nCache-Control: max-age=1\r\n",
        );
        let update = resp(
            304,
            "Content-Length: 0\r\nCache-Control: max-age=99\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nX-New: b\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n",
        );
        merge_304(&mut stored, &update);
        let h = &stored.headers;
        assert_eq!(h.get("content-length"), Some("5"));
        assert_eq!(
            h.get_all("cache-control").collect::<Vec<_>>(),
            ["max-age=99"]
        );
        assert_eq!(h.get("x-old"), Some("a"));
        assert_eq!(h.get("x-new"), Some("b"));
        assert_eq!(h.get("etag"), Some("\"1\""));
        assert!(!h.contains("age"));
        assert!(!h.contains("x-hop"));
        assert!(!h.contains("connection"));
        assert_eq!(h.get("date"), Some("Sun, 06 Nov 1994 08:49:37 GMT"));
    }

    #[test]
    fn stored_response_drops_hop_by_hop_and_adds_a_missing_date() {
        let r = resp(
            200,
            "Connection: X-Secret\r\nX-Secret: s\r\nKeep-Alive: 5\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\nProxy-Authenticate: Basic\r\nX-Cache: HIT\r\nETag: \"e\"\r\n",
        );
        let s = stored_response(&r, at(0));
        let names: Vec<&str> = s.headers.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["ETag", "Date"]);
        assert_eq!(s.headers.get("date"), Some(date(0).as_str()));
        let fields = stored_fields(&r);
        let names: Vec<&str> = fields.headers.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["ETag"]);
        let dated = resp(200, "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n");
        assert_eq!(
            stored_response(&dated, at(0)).headers.get("date"),
            Some("Sun, 06 Nov 1994 08:49:37 GMT")
        );
        let bad = resp(200, "Date: yesterday\r\n");
        let fixed = stored_response(&bad, at(0));
        assert_eq!(fixed.headers.get_all("date").collect::<Vec<_>>(), [date(0)]);
    }

    #[test]
    fn client_conditionals() {
        let lm = date(100);
        let stored = resp(200, &format!("ETag: \"a,b\"\r\nLast-Modified: {lm}\r\n"));
        let cond = |f: &str| not_modified(&get(f), &stored);
        assert!(cond("If-None-Match: \"a,b\"\r\n"));
        assert!(cond("If-None-Match: \"x\", W/\"a,b\"\r\n"));
        assert!(cond("If-None-Match: *\r\n"));
        assert!(!cond("If-None-Match: \"a\"\r\n"));
        assert!(!cond("If-None-Match: a,b\r\n"));
        assert!(cond(&format!("If-Modified-Since: {lm}\r\n")));
        assert!(cond(&format!("If-Modified-Since: {}\r\n", date(101))));
        assert!(!cond(&format!("If-Modified-Since: {}\r\n", date(99))));
        assert!(!cond("If-Modified-Since: last week\r\n"));
        // If-None-Match wins over If-Modified-Since, both ways.
        assert!(!cond(&format!(
            "If-None-Match: \"x\"\r\nIf-Modified-Since: {lm}\r\n"
        )));
        assert!(cond(&format!(
            "If-None-Match: \"a,b\"\r\nIf-Modified-Since: {}\r\n",
            date(0)
        )));
        let post =
            req("POST / HTTP/1.1\r\nHost: h\r\nIf-None-Match: *\r\nContent-Length: 0\r\n\r\n");
        assert!(!not_modified(&post, &stored));
        // No Last-Modified: the stored Date is used (RFC 9111 §4.3.2).
        let dated = resp(200, &format!("Date: {lm}\r\n"));
        assert!(not_modified(
            &get(&format!("If-Modified-Since: {lm}\r\n")),
            &dated
        ));
    }

    #[test]
    fn not_modified_response_keeps_cache_fields_only() {
        let stored = resp(
            200,
            "Content-Type: text/plain\r\nContent-Length: 3\r\nETag: \"e\"\r\nCache-Control: max-age=5\r\nX-Other: 1\r\nVary: Accept\r\n",
        );
        let r = not_modified_response(&stored);
        assert_eq!(r.status, 304);
        let names: Vec<&str> = r.headers.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["ETag", "Cache-Control", "Vary"]);
    }

    #[test]
    fn requests_the_cache_stays_out_of() {
        assert!(may_use_cache(&get("")));
        assert!(may_use_cache(&req("HEAD / HTTP/1.1\r\nHost: h\r\n\r\n")));
        assert!(!may_use_cache(&get("Range: bytes=0-1\r\n")));
        assert!(!may_use_cache(&get("If-Match: \"x\"\r\n")));
        assert!(!may_use_cache(&req("POST / HTTP/1.1\r\nHost: h\r\n\r\n")));
    }

    #[test]
    fn hostile_if_none_match_lists_match_nothing() {
        // Hostile If-None-Match lists are malformed: they match nothing (http::conditional).
        let stored = resp(200, "ETag: \"unterminated, \"\r\n");
        assert!(!not_modified(
            &get("If-None-Match: \"unterminated, \"a\"\r\n"),
            &stored
        ));
        assert!(!not_modified(&get("If-None-Match: \"\r\n"), &stored));
    }
}
