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
//! fresh     = current_age < freshness_lifetime     (`freshness`, RFC 9111 §4.2)
//! fresh     → served as is ("HIT", with Age), or the part a Range asks for
//! stale     → inside stale-while-revalidate: served ("STALE"), refreshed in the background
//!           → else validated with If-None-Match / If-Modified-Since (§4.3): 304 → "REVALIDATED"
//! otherwise → fetched ("MISS") and stored while it streams to the client, if storable (§3)
//! no backend answers → a stale entry stands in if allowed ("STALE-IF-ERROR", `stale`)
//! ```
//!
//! Where RFC 9111 leaves a choice, the choice is written next to the code, with what Apache
//! Traffic Server (ATS) and Apache httpd's mod_cache do.

use std::time::{Duration, SystemTime};

use crate::http::conditional;
use crate::http::date::{format_http_date, parse_http_date};
use crate::http::{remove_hop_by_hop, Request, Response};

mod admission;
mod control;
mod flight;
mod freshness;
mod index;
mod key;
mod stale;
mod store;
mod targeted;

pub use control::CacheControl;
pub use flight::{Flight, FlightGuard, Growing, InFlight, PassMarks, Progress, Role, Waited};
pub use freshness::{current_age, freshness_lifetime, has_explicit_lifetime, Policy};
pub use key::{cache_key, entry_name, invalidated_keys, variant_key, vary_names};
pub use stale::stale_on_error;
pub use store::{Entry, EntryWriter, Store, TEMP_PREFIX};
pub use targeted::TARGETED_FIELDS;

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
    /// A stale stored response was served inside its `stale-while-revalidate` window, while
    /// a background request refreshes it (RFC 5861 §3).
    Stale,
    /// A stale stored response was served because no backend could answer (refused, timed
    /// out, 500/502/503/504): `stale-if-error` or `cache_stale_if_error` (RFC 5861 §4).
    StaleIfError,
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
            CacheStatus::Stale => "STALE",
            CacheStatus::StaleIfError => "STALE-IF-ERROR",
            CacheStatus::Bypass => "BYPASS",
        }
    }
}

/// Statuses whose caching rules we implement, so a `must-understand` response with one of
/// them may be stored although it also says `no-store` (RFC 9111 §5.2.2.3): the
/// heuristically cacheable ones and the redirects.
pub const UNDERSTOOD_STATUSES: &[u16] = &[
    200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501,
];

/// Whether a response to a request with this method may be stored at all: GET only, not
/// 206, no `no-store`, (shared) no `private`, and a freshness lifetime or a validator.
///
/// Precisely (RFC 9111 §3): GET; a final status other than 206 and 304; no `no-store`
/// (unless `must-understand` with a status of [`UNDERSTOOD_STATUSES`]; `must-understand`
/// with another status is never stored, §5.2.2.3); when shared, no `private`; no `Vary: *`;
/// and a freshness lifetime from [`freshness_lifetime`] that is either positive, or zero
/// with a validator to revalidate it with. A response that needs validation before every
/// reuse (`no-cache`) is stored only with a validator: without one it could never be reused.
/// The directives are those `CacheControl::of_response` chooses: for the proxy, a valid
/// targeted field (`Relevo-Cache-Control`, `CDN-Cache-Control`) instead of Cache-Control.
///
/// An event stream (`text/event-stream`) is never stored: it is live.
///
/// One choice beyond the RFC: a shared cache stores a response carrying Set-Cookie only when
/// the origin says it is cacheable explicitly (`public`, or a positive lifetime of its own:
/// `s-maxage`, `max-age`, `Expires`), so a session cookie set on a page cached by heuristic
/// is never handed to another user (ATS refuses such responses by default for text content).
/// `max-age=0` or an Expires in the past says "stale at once", not "cacheable": stored with
/// a validator, such a page would be handed to the next user after a 304, cookie and all.
pub fn is_storable(method: &str, response: &Response, policy: &Policy) -> bool {
    let cc = CacheControl::of_response(response, policy.shared);
    let status_ok = !response.is_interim() && response.status != 206 && response.status != 304;
    let understood = UNDERSTOOD_STATUSES.contains(&response.status);
    let no_store = if cc.must_understand {
        !understood
    } else {
        cc.no_store
    };
    let lifetime = freshness_lifetime(response, policy);
    let cookie_ok = !policy.shared
        || cc.public
        || (has_explicit_lifetime(response, policy) && lifetime.is_some_and(|l| !l.is_zero()))
        || !response.headers.contains("set-cookie");
    let validator = validators(response).is_some();
    let lifetime_ok = match lifetime {
        Some(lifetime) => !lifetime.is_zero() || validator,
        None => false,
    };
    method == "GET"
        && status_ok
        && !no_store
        && !(policy.shared && cc.private)
        && (!cc.no_cache || validator)
        && vary_names(response).is_some()
        && cookie_ok
        && lifetime_ok
        && !response.is_event_stream()
}

/// Whether a cache may store `response` to `request`: [`is_storable`] and no `no-store` in
/// the request (RFC 9111 §5.2.1.5). A shared cache (the proxy) also stores for a request
/// with Authorization only when the response says `public`, `s-maxage` or
/// `must-revalidate` (§3.5), and for a personalised request only with explicit freshness
/// ([`personal_rule_allows`]); a private cache (the client) holds one user's responses, so
/// neither rule applies to it.
pub fn is_cacheable(request: &Request, response: &Response, policy: &Policy) -> bool {
    is_storable(&request.method, response, policy)
        && !CacheControl::of_request(request).no_store
        && (!policy.shared || shared_rules_allow(request, response, policy))
}

/// The shared cache's rules about credentials: RFC 9111 §3.5 for Authorization, and
/// [`personal_rule_allows`] for Cookie and Authorization.
fn shared_rules_allow(request: &Request, stored: &Response, policy: &Policy) -> bool {
    authorization_allows(request, stored) && personal_rule_allows(request, stored, policy)
}

/// Whether a request carries credentials that may personalise its answer: `Cookie` or
/// `Authorization`.
pub fn is_personalised(request: &Request) -> bool {
    request.headers.contains("cookie") || request.headers.contains("authorization")
}

/// The shared cache's rule for personalised requests, beyond RFC 9111: a request carrying
/// `Cookie` or `Authorization` is never answered from, nor stored with, a heuristic
/// lifetime (`cache_ttl`, or a tenth of the age of `Last-Modified`): only a response whose
/// origin states its freshness (`max-age`, `s-maxage`, `Expires`) or says `public` may serve
/// it or be stored from it. A page personalised by a cookie and sent without Cache-Control
/// (as most frameworks do) would otherwise be handed to every user for a while. Varnish's
/// built-in rules go further and never cache a request with Cookie or Authorization at all;
/// this keeps what the origin explicitly allows.
pub fn personal_rule_allows(request: &Request, response: &Response, policy: &Policy) -> bool {
    if !is_personalised(request) {
        return true;
    }
    CacheControl::of_response(response, policy.shared).public
        || has_explicit_lifetime(response, policy)
}

/// RFC 9111 §3.5: a shared cache answers a request with Authorization only from a response
/// that says `public`, `s-maxage` or `must-revalidate`.
fn authorization_allows(request: &Request, stored: &Response) -> bool {
    if !request.headers.contains("authorization") {
        return true;
    }
    let cc = CacheControl::of_response(stored, true);
    cc.public || cc.s_maxage.is_some() || cc.must_revalidate
}

/// Whether the cache takes part in this request at all: GET and HEAD, without If-Match
/// or If-Unmodified-Since (those preconditions are left to the origin, as httpd does). A
/// `Range` request takes part: a stored complete response answers it (see `range`); the
/// proxy also leaves out requests with a body.
pub fn may_use_cache(request: &Request) -> bool {
    matches!(request.method.as_str(), "GET" | "HEAD")
        && !["if-match", "if-unmodified-since"]
            .iter()
            .any(|name| request.headers.contains(name))
}

/// How a stored response may be used for a request (RFC 9111 §4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reuse {
    /// Fresh: serve it, with this current age in `Age`.
    Fresh(Duration),
    /// Stale, but inside its `stale-while-revalidate` window (RFC 5861 §3): serve it now,
    /// with this age, and refresh it in the background with these conditional fields
    /// (none: a plain fetch).
    Stale(Duration, Vec<(String, String)>),
    /// Stale (or `no-cache`): ask the origin with these conditional fields first.
    Validate(Vec<(String, String)>),
    /// Stale without a validator: fetch a new response.
    Refetch,
    /// It may not answer this request (a shared cache and Authorization, RFC 9111 §3.5, or
    /// a personalised request): go upstream and leave the entry alone.
    Bypass,
}

/// Decides how `stored`, received (or last validated) at `stored_at`, can answer `request`
/// at `now` (RFC 9111 §4, §4.2, §5.2.1), pure. For a private cache (the client) `s-maxage`
/// does not count (§5.2.2.10) and the rules about credentials (§3.5,
/// [`personal_rule_allows`]) do not apply, so it never answers `Bypass`.
///
/// A stale response is served without validation only inside its `stale-while-revalidate`
/// window, when nothing forbids it (`stale::may_serve_stale`), and then refreshed in the
/// background; serving stale when the origin fails is decided later, by [`stale_on_error`].
/// `max-stale` in a request is not honoured (the origin's word is). The request's own
/// `no-cache`, `max-age` and `min-fresh` are honoured, as in httpd (ATS ignores a client's
/// no-cache by default).
pub fn reuse(
    request: &Request,
    stored: &Response,
    stored_at: SystemTime,
    now: SystemTime,
    policy: &Policy,
) -> Reuse {
    if policy.shared && !shared_rules_allow(request, stored, policy) {
        return Reuse::Bypass;
    }
    let cc = CacheControl::of_response(stored, policy.shared);
    let asked = CacheControl::of_request(request);
    let age = current_age(stored, stored_at, now);
    let lifetime = freshness_lifetime(stored, policy);
    let fresh = match lifetime {
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
    let fields = validators(stored);
    if stale::while_revalidating(&cc, &asked, lifetime, age, policy.shared) {
        return Reuse::Stale(age, fields.unwrap_or_default());
    }
    match fields {
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

    use super::Policy;
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

    /// The lifetime the unit tests give responses without one of their own.
    pub const TTL: Duration = Duration::from_secs(60);

    /// The proxy's rules, with [`TTL`] and the default heuristic cap and stale-if-error.
    pub const SHARED: Policy = Policy {
        shared: true,
        default_ttl: TTL,
        heuristic_max: Policy::ONE_DAY,
        stale_if_error: Policy::ONE_DAY,
    };

    /// The client's rules, with [`TTL`].
    pub const PRIVATE: Policy = Policy {
        shared: false,
        default_ttl: TTL,
        heuristic_max: Policy::ONE_DAY,
        stale_if_error: Duration::ZERO,
    };

    /// A fixed instant, `secs` after an arbitrary origin.
    pub fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{at, get, req, resp, PRIVATE, SHARED};
    use super::*;

    fn date(secs: u64) -> String {
        format_http_date(at(secs))
    }

    #[test]
    fn storable_responses() {
        let ok = |fields: &str| is_storable("GET", &resp(200, fields), &SHARED);
        assert!(ok(""));
        assert!(!is_storable("HEAD", &resp(200, ""), &SHARED));
        assert!(!is_storable("POST", &resp(200, ""), &SHARED));
        assert!(!is_storable(
            "GET",
            &resp(206, "Cache-Control: max-age=9\r\n"),
            &SHARED
        ));
        assert!(!is_storable(
            "GET",
            &resp(304, "Cache-Control: max-age=9\r\n"),
            &SHARED
        ));
        assert!(!ok("Cache-Control: no-store\r\n"));
        assert!(!ok("Cache-Control: NO-STORE, max-age=60\r\n"));
        assert!(!ok("Cache-Control: private\r\n"));
        assert!(!ok("Cache-Control: private=\"Set-Cookie\"\r\n"));
        assert!(is_storable(
            "GET",
            &resp(200, "Cache-Control: private\r\n"),
            &PRIVATE
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
            &SHARED
        ));
        assert!(!is_storable("GET", &resp(500, ""), &SHARED));
        // cache_ttl = 0: nothing to serve without validation, so stored only with a
        // validator, to be revalidated on every use (RFC 9111 §3: a 200 is storable).
        let no_ttl = Policy {
            default_ttl: Duration::ZERO,
            ..SHARED
        };
        assert!(!is_storable("GET", &resp(200, ""), &no_ttl));
        assert!(is_storable("GET", &resp(200, "ETag: \"1\"\r\n"), &no_ttl));
    }

    #[test]
    fn must_understand_overrides_no_store_for_statuses_we_understand() {
        let cc = "Cache-Control: max-age=3600, no-store, must-understand\r\n";
        assert!(is_storable("GET", &resp(200, cc), &SHARED));
        assert!(is_storable("GET", &resp(301, cc), &SHARED));
        assert!(!is_storable("GET", &resp(599, cc), &SHARED));
        let understood_only = "Cache-Control: max-age=3600, must-understand\r\n";
        assert!(!is_storable("GET", &resp(599, understood_only), &SHARED));
    }

    #[test]
    fn set_cookie_is_stored_only_when_explicitly_cacheable() {
        let ok = |fields: &str| is_storable("GET", &resp(200, fields), &SHARED);
        assert!(!ok("Set-Cookie: id=1\r\n"));
        let heuristic = format!("Set-Cookie: id=1\r\nLast-Modified: {}\r\n", date(0));
        assert!(!ok(&heuristic));
        for stale_at_once in [
            "Cache-Control: max-age=0\r\nETag: \"e\"",
            "Date: Thu, 01 Jan 2026 00:00:00 GMT\r\nExpires: 0\r\nETag: \"e\"",
            "CDN-Cache-Control: max-age=0\r\nETag: \"e\"",
        ] {
            let fields = format!("Set-Cookie: id=1\r\n{stale_at_once}\r\n");
            assert!(!ok(&fields), "{stale_at_once}");
        }
        for explicit in [
            "Cache-Control: public",
            "Cache-Control: max-age=60",
            "Cache-Control: s-maxage=60",
            "Date: Thu, 01 Jan 2026 00:00:00 GMT\r\nExpires: Thu, 01 Jan 2099 00:00:00 GMT",
            "CDN-Cache-Control: max-age=60",
        ] {
            assert!(
                ok(&format!("Set-Cookie: id=1\r\n{explicit}\r\n")),
                "{explicit}"
            );
        }
    }

    #[test]
    fn authorization_needs_public_s_maxage_or_must_revalidate() {
        let authed = get("Authorization: Basic eDp5\r\n");
        let plain = resp(200, "Cache-Control: max-age=60\r\n");
        assert!(!is_cacheable(&authed, &plain, &SHARED));
        assert!(is_cacheable(&get(""), &plain, &SHARED));
        assert_eq!(reuse(&authed, &plain, at(0), at(1), &SHARED), Reuse::Bypass);
        for cc in [
            "public, max-age=60",
            "s-maxage=60",
            "must-revalidate, max-age=60",
        ] {
            let r = resp(200, &format!("Cache-Control: {cc}\r\n"));
            assert!(is_cacheable(&authed, &r, &SHARED), "{cc}");
            assert!(matches!(
                reuse(&authed, &r, at(0), at(1), &SHARED),
                Reuse::Fresh(_)
            ));
        }
        // must-revalidate satisfies §3.5, but a lifetime from cache_ttl alone is not enough
        // for a personalised request.
        let heuristic = resp(200, "Cache-Control: must-revalidate\r\n");
        assert!(!is_cacheable(&authed, &heuristic, &SHARED));
    }

    #[test]
    fn a_cookie_request_is_never_stored_or_served_with_a_heuristic_lifetime() {
        let alice = get("Cookie: user=alice\r\n");
        let anonymous = get("");
        let bare = resp(200, "Content-Type: text/html\r\n");
        assert!(is_cacheable(&anonymous, &bare, &SHARED));
        assert!(!is_cacheable(&alice, &bare, &SHARED));
        assert_eq!(reuse(&alice, &bare, at(0), at(1), &SHARED), Reuse::Bypass);
        assert!(matches!(
            reuse(&anonymous, &bare, at(0), at(1), &SHARED),
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
            assert!(is_cacheable(&alice, &r, &SHARED), "{explicit}");
            assert!(
                matches!(reuse(&alice, &r, at(0), at(1), &SHARED), Reuse::Fresh(_)),
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
        assert!(!is_cacheable(&get(""), &stream, &SHARED));
        assert!(!is_storable("GET", &stream, &PRIVATE));
    }

    #[test]
    fn request_no_store_prevents_storing() {
        let r = resp(200, "");
        assert!(!is_cacheable(
            &get("Cache-Control: no-store\r\n"),
            &r,
            &SHARED
        ));
    }

    #[test]
    fn reuse_fresh_stale_and_validators() {
        let r = resp(200, "Cache-Control: max-age=10\r\nETag: \"v1\"\r\n");
        assert_eq!(
            reuse(&get(""), &r, at(0), at(9), &SHARED),
            Reuse::Fresh(Duration::from_secs(9))
        );
        let validate = Reuse::Validate(vec![("If-None-Match".into(), "\"v1\"".into())]);
        assert_eq!(reuse(&get(""), &r, at(0), at(10), &SHARED), validate);
        let bare = resp(200, "Cache-Control: max-age=10\r\n");
        assert_eq!(
            reuse(&get(""), &bare, at(0), at(11), &SHARED),
            Reuse::Refetch
        );
        let lm = date(0);
        let dated = resp(200, &format!("Last-Modified: {lm}\r\nETag: W/\"2\"\r\n"));
        assert_eq!(
            reuse(&get(""), &dated, at(0), at(60), &SHARED),
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
        let shared = reuse(&get(""), &both, at(0), at(2), &SHARED);
        assert!(matches!(shared, Reuse::Fresh(_)));
        assert_eq!(
            reuse(&get(""), &both, at(0), at(2), &PRIVATE),
            Reuse::Refetch
        );
        // `private` is stored by a private cache only (§5.2.2.7).
        let private = resp(200, "Cache-Control: private, max-age=60\r\n");
        assert!(!is_cacheable(&get(""), &private, &SHARED));
        assert!(is_cacheable(&get(""), &private, &PRIVATE));
        // Credentials: a shared cache stays out (§3.5 and the personal rule); a private one
        // serves its one user.
        let bare = resp(200, "");
        for asked in ["Authorization: Basic eDp5\r\n", "Cookie: user=alice\r\n"] {
            let request = get(asked);
            assert_eq!(reuse(&request, &bare, at(0), at(1), &SHARED), Reuse::Bypass);
            assert!(!is_cacheable(&request, &bare, &SHARED));
            let private = reuse(&request, &bare, at(0), at(1), &PRIVATE);
            assert_eq!(private, Reuse::Fresh(Duration::from_secs(1)), "{asked}");
            assert!(is_cacheable(&request, &bare, &PRIVATE), "{asked}");
        }
        let cookie = resp(200, "Set-Cookie: id=1\r\n");
        assert!(!is_cacheable(&get(""), &cookie, &SHARED));
        assert!(is_cacheable(&get(""), &cookie, &PRIVATE));
        // Everything else is one rule for both.
        let no_store = get("Cache-Control: no-store\r\n");
        assert!(!is_cacheable(&no_store, &bare, &PRIVATE));
        assert!(!is_cacheable(&get(""), &resp(200, "Vary: *\r\n"), &PRIVATE));
        let tagged = resp(200, "Cache-Control: no-cache\r\nETag: \"v\"\r\n");
        let validate = reuse(&get(""), &tagged, at(0), at(0), &PRIVATE);
        assert!(matches!(validate, Reuse::Validate(_)));
    }

    #[test]
    fn a_private_cache_reuses_by_age_and_lifetime() {
        let plain = resp(200, "");
        let private = |r: &Response, secs| reuse(&get(""), r, at(0), at(secs), &PRIVATE);
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
            reuse(&get(""), &r, at(0), at(0), &SHARED),
            Reuse::Validate(_)
        ));
        let fresh = resp(200, "Cache-Control: max-age=100\r\nETag: \"v\"\r\n");
        for asked in ["Cache-Control: no-cache\r\n", "Pragma: no-cache\r\n"] {
            assert!(matches!(
                reuse(&get(asked), &fresh, at(0), at(0), &SHARED),
                Reuse::Validate(_)
            ));
        }
        let both = "Cache-Control: max-age=100\r\nPragma: no-cache\r\n";
        assert!(matches!(
            reuse(&get(both), &fresh, at(0), at(0), &SHARED),
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
                &SHARED,
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
        assert!(may_use_cache(&get("Range: bytes=0-1\r\n")));
        assert!(!may_use_cache(&get(
            "If-Unmodified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
        )));
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
