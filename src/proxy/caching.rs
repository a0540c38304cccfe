//! The cache's steps of the proxy (see `proxy`): look the request up (step 4), drop what an
//! unsafe method invalidates (step 9), and decide what to store from the backend's answer
//! (step 10). The rules themselves (freshness, keys, what may be stored) are in `cache`;
//! these functions only decide when to ask it what. Serving a stored response is `relay`.
//!
//! What the configuration in force says comes from the request's `Generation`: the pool
//! named in the key (`Generation::scoped_key`), the cache's lifetimes (`cache_ttl`,
//! `cache_heuristic_max`, `cache_stale_if_error`: [`policy`]), how long to wait for another
//! request's fetch (`upstream_timeout`).
//!
//! Stale responses (RFC 5861): a lookup inside a response's `stale-while-revalidate` window
//! answers at once with the stale entry (`Lookup::Stale`; `refresh` fetches the new one in
//! the background); a request that goes upstream to replace a stale entry keeps it
//! (`Forward::stale`), so that when no backend can answer, [`stale_on_error`] may serve it.

use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant, SystemTime};

use super::fill::{growing, selecting_values, Following};
use super::generation::Generation;
use super::purge::KnownHosts;
use super::tunnel::asks_for_websocket;
use crate::cache::{
    self, CacheStatus, Entry, EntryWriter, FlightGuard, InFlight, PassMarks, Policy, Reuse, Role,
    Store, Waited,
};
use crate::http::body::Framing;
use crate::http::{Request, Response};

/// The proxy's cache: its files and the fetches in progress.
pub(super) struct SharedCache {
    pub(super) store: Store,
    pub(super) in_flight: InFlight,
    /// URIs recently found uncacheable: their requests are not coalesced.
    pub(super) pass: PassMarks,
    /// Background refreshes running (see `refresh`), at most
    /// `refresh::MAX_BACKGROUND_REFRESHES`.
    pub(super) refreshing: AtomicUsize,
    /// The hosts responses are stored for, for a purge by path (`purge`).
    pub(super) hosts: KnownHosts,
}

/// The outcome of the cache lookup step.
pub(super) enum Lookup<'a> {
    /// A fresh stored response, and its current age.
    Hit(Entry, Duration),
    /// A stale response inside its `stale-while-revalidate` window, and its current age:
    /// served now, while the primary key named here is refreshed in the background.
    Stale(Entry, Duration, String),
    /// Another request is storing the response: read it as it is written.
    Follow(Following),
    /// The request goes to a backend.
    Forward(Forward<'a>),
}

/// How a request the cache did not answer goes upstream, and what the cache may do with the
/// response.
pub(super) struct Forward<'a> {
    /// `Miss` when the cache was consulted, `Bypass` when not.
    pub(super) status: CacheStatus,
    /// The primary cache key, when the response may be stored (a GET looked up).
    pub(super) base: Option<String>,
    /// A stale entry being validated (RFC 9111 §4.3).
    pub(super) stale: Option<Stale>,
    /// Held while we fetch a response other requests for the same URI wait for.
    pub(super) leader: Option<FlightGuard<'a>>,
}

impl Forward<'_> {
    pub(super) fn bypass() -> Self {
        Forward {
            status: CacheStatus::Bypass,
            base: None,
            stale: None,
            leader: None,
        }
    }
}

/// A stale entry and the conditional fields that validate it (none: it has no validator,
/// and is replaced by a plain fetch). It is kept while the request is upstream, to be
/// served if no backend can answer (`stale_on_error`).
pub(super) struct Stale {
    pub(super) key: String,
    pub(super) entry: Entry,
    pub(super) conditionals: Vec<(String, String)>,
}

/// What the cache does with a backend's response.
pub(super) enum Fill {
    /// The backend confirmed the stale entry (304): serve it, with this age.
    Revalidated(Entry, Duration),
    /// Relay the response, storing its body in this entry on the way.
    Relay(Option<EntryWriter>),
}

/// Step 4: can the cache answer? A fresh entry is a hit (RFC 9111 §4.2), and so is a stale
/// one inside its `stale-while-revalidate` window (RFC 5861 §3, refreshed in the background);
/// otherwise the request goes upstream, to validate a stale entry when it has validators
/// (§4.3).
///
/// A `Range` request is answered from a fresh complete entry like any other (`relay` cuts
/// the range out); otherwise it goes upstream as it is, alone: its 206 is not stored, so it
/// neither leads nor follows a flight.
///
/// Only one GET per URI goes upstream at a time: the first becomes the leader of a
/// flight, the others wait for it (at most `upstream_timeout`). As soon as the leader
/// begins storing its response, they read it as it is written (`Follow`); if it stores
/// nothing they look again, and go upstream themselves if there is still nothing fresh. A leader also looks again
/// once it leads, since the previous flight may have ended between its first look and
/// its joining, leaving a fresh entry behind.
pub(super) fn lookup<'c>(
    cache: Option<&'c SharedCache>,
    gen: &Generation,
    request: &Request,
    framing: Framing,
) -> Lookup<'c> {
    let Some(cache) = cache else {
        return Lookup::Forward(Forward::bypass());
    };
    let (policy, wait) = (policy(gen), gen.config.upstream_timeout);
    // A WebSocket upgrade becomes a tunnel, never a stored response, and must not make
    // other requests for its URI wait for it.
    let base = match cache::cache_key(request) {
        Some(uri)
            if framing == Framing::Empty
                && cache::may_use_cache(request)
                && !asks_for_websocket(request) =>
        {
            gen.scoped_key(uri)
        }
        _ => return Lookup::Forward(Forward::bypass()),
    };
    let is_get = request.method == "GET";
    let ranged = is_get && request.headers.contains("range");
    let mut leader = None;
    let mut followed = false;
    loop {
        let now = SystemTime::now();
        let mut stale = None;
        if let Some((key, entry)) = cache.store.lookup(&base, request) {
            let conditionals =
                match cache::reuse(request, &entry.response, entry.stored_at, now, &policy) {
                    Reuse::Fresh(age) => return Lookup::Hit(entry, age),
                    Reuse::Stale(age, _) => return Lookup::Stale(entry, age, base),
                    Reuse::Bypass => return Lookup::Forward(Forward::bypass()),
                    Reuse::Validate(conditionals) => conditionals,
                    Reuse::Refetch => Vec::new(),
                };
            if is_get && !ranged {
                stale = Some(Stale {
                    key,
                    entry,
                    conditionals,
                });
            }
        }
        // A HEAD is forwarded as it is and its response not stored (RFC 9111 §4.3.5
        // allows updating a stored GET from it; we keep it simple). A URI marked
        // uncacheable goes at once, side by side with others (hit-for-pass).
        let pass = || cache.pass.is_marked(&base, Instant::now());
        if !is_get || ranged || leader.is_some() || followed || pass() {
            return Lookup::Forward(Forward {
                status: CacheStatus::Miss,
                base: (is_get && !ranged).then_some(base),
                stale,
                leader,
            });
        }
        match cache.in_flight.join(&base) {
            Role::Leader(guard) => leader = Some(guard),
            Role::Follower(flight) => {
                match flight.wait_for_entry(wait) {
                    Waited::Growing(growing)
                        if growing.key == selecting_values(&growing.head, request)
                            && followable(&growing.head, request, &policy) =>
                    {
                        return Lookup::Follow(Following { flight, growing });
                    }
                    // Another variant, or one this request may not be served (stale on
                    // arrival): wait for it, then look again.
                    Waited::Growing(_) => {
                        flight.wait(wait);
                    }
                    Waited::Ended => {}
                    Waited::TimedOut => {
                        log::debug!("gave up waiting for the request in flight for {base:?}");
                    }
                }
                followed = true;
            }
        }
    }
}

/// Whether a request that waited for another's fetch may read the response being stored
/// (`head`, received just now): when it would be fresh for it (RFC 9111 §4.2), or when it is
/// `no-cache`, which the fetch in progress has just validated for every request it
/// collapses. A response already stale on arrival (its `Age` past its lifetime), or one this
/// request asks fresher than or may not be served (its own `no-cache`, credentials), is
/// fetched again instead.
fn followable(head: &Response, request: &Request, policy: &Policy) -> bool {
    let now = SystemTime::now();
    match cache::reuse(request, head, now, now, policy) {
        Reuse::Fresh(_) => true,
        Reuse::Validate(_) | Reuse::Refetch => {
            let cc = cache::CacheControl::of_response(head, policy.shared);
            let asked = cache::CacheControl::of_request(request);
            let age = cache::current_age(head, now, now);
            let lifetime = cache::freshness_lifetime(head, policy).unwrap_or_default();
            cc.no_cache && !asked.no_cache && age < lifetime.max(Duration::from_secs(1))
        }
        Reuse::Stale(..) | Reuse::Bypass => false,
    }
}

/// Step 9: a non-error response to an unsafe method invalidates what is stored for its
/// URI and for its Location and Content-Location on the same host (RFC 9111 §4.4).
pub(super) fn invalidate(
    cache: Option<&SharedCache>,
    gen: &Generation,
    request: &Request,
    response: &Response,
) {
    let Some(cache) = cache else { return };
    for uri in cache::invalidated_keys(request, response) {
        let key = gen.scoped_key(uri);
        log::debug!("cache: {} invalidates {key}", request.method);
        cache.store.remove(&key);
    }
}

/// Step 10: the cache's part in the backend's response. A 304 to our validation refreshes
/// the stale entry, which is then served (RFC 9111 §4.3.4); a storable response gets an
/// entry to be written while it is relayed (§3); a stale entry that the origin replaced
/// with something we may not store is removed (§4.3.3), unless the answer was a 5xx.
/// When nothing will be stored, the flight ends at once, so waiting requests go on.
pub(super) fn store(
    cache: Option<&SharedCache>,
    gen: &Generation,
    request: &Request,
    response: &Response,
    plan: &mut Forward,
) -> Fill {
    let (Some(cache), Some(base)) = (cache, &plan.base) else {
        return Fill::Relay(None);
    };
    let now = SystemTime::now();
    let policy = policy(gen);
    // Judged as it would be stored: with a Date when it had none or an invalid one, so that
    // its Expires is measured from when we received it (RFC 9111 §4.2.1).
    let stored = cache::stored_response(response, now);
    let cacheable = cache::is_cacheable(request, &stored, &policy);
    if let Some(stale) = plan.stale.take() {
        if response.status == 304 && !stale.conditionals.is_empty() {
            let Stale { key, mut entry, .. } = stale;
            let update = cache::stored_response(response, now);
            cache::merge_304(&mut entry.response, &update);
            // The 304's fields may make the head one we may not store (its Set-Cookie, for
            // the user whose request validated it, or no-store): it then answers this
            // request only, and the entry goes (§4.3.3, as for a 200 we may not store).
            if !cache::is_storable("GET", &entry.response, &policy) {
                log::debug!("cache: {base} may not be stored as the 304 updated it, removed");
                cache.store.remove(&key);
            } else {
                match cache.store.refresh(&key, &entry.response) {
                    Ok(true) => {}
                    // Another request replaced or removed the entry first: a normal race.
                    Ok(false) => log::debug!("cache: {base} changed meanwhile, not refreshed"),
                    Err(e) => log::warn!("cache: cannot refresh {base}: {e}"),
                }
            }
            let age = cache::current_age(&entry.response, now, now);
            return Fill::Revalidated(entry, age);
        }
        if !cacheable && response.status < 500 {
            cache.store.remove(&stale.key);
        }
    }
    if !cacheable {
        if !cache::is_storable(&request.method, &stored, &policy) {
            // The response itself forbids storing: no use making others wait for it.
            cache.pass.mark(base, Instant::now());
        }
        plan.leader = None;
        return Fill::Relay(None);
    }
    cache.pass.clear(base);
    match cache.store.begin_variant(base, request, &stored) {
        Ok(entry) if !entry.is_abandoned() => {
            cache.hosts.note(base);
            if let Some(leader) = &plan.leader {
                leader.publish(growing(&entry, &stored, request));
            }
            Fill::Relay(Some(entry))
        }
        Ok(_) => {
            // Larger than cache_max_object, or not admitted: the store logged which.
            plan.leader = None;
            Fill::Relay(None)
        }
        Err(e) => {
            log::warn!("cache: cannot store {base}: {e}");
            plan.leader = None;
            Fill::Relay(None)
        }
    }
}

/// The statuses that count as the origin failing, for `stale-if-error` (RFC 5861 §4: "any
/// situation that would result in a 500, 502, 503, or 504 HTTP response status code").
pub(super) const ERROR_STATUSES: &[u16] = &[500, 502, 503, 504];

/// When no backend could answer (a failure, or a status of [`ERROR_STATUSES`]): the stale
/// entry the request was replacing, and its age, if it may be served instead
/// (`cache::stale_on_error`). Takes the stale entry out of the plan either way.
pub(super) fn stale_on_error(
    gen: &Generation,
    request: &Request,
    plan: &mut Forward,
) -> Option<(Entry, Duration)> {
    let stale = plan.stale.take()?;
    let (stored, at) = (&stale.entry.response, stale.entry.stored_at);
    let age = cache::stale_on_error(request, stored, at, SystemTime::now(), &policy(gen))?;
    Some((stale.entry, age))
}

/// The cache's rules as the configuration in force sets them: shared, `cache_ttl`,
/// `cache_heuristic_max`, `cache_stale_if_error`.
pub(super) fn policy(gen: &Generation) -> Policy {
    let config = &gen.config;
    Policy {
        shared: true,
        default_ttl: Duration::from_secs(config.cache_ttl),
        heuristic_max: Duration::from_secs(config.cache_heuristic_max),
        stale_if_error: Duration::from_secs(config.cache_stale_if_error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testing::{get, resp, SHARED};

    #[test]
    fn a_follower_reads_a_growing_response_only_when_it_may_be_served() {
        let follows =
            |fields: &str, asked: &str| followable(&resp(200, fields), &get(asked), &SHARED);
        assert!(follows("Cache-Control: max-age=60\r\n", ""));
        // Stale on arrival: its Age is past its lifetime.
        assert!(!follows("Cache-Control: max-age=10\r\nAge: 60\r\n", ""));
        // no-cache: the fetch in progress is the validation.
        assert!(follows("Cache-Control: no-cache\r\nETag: \"e\"\r\n", ""));
        assert!(!follows(
            "Cache-Control: no-cache\r\nETag: \"e\"\r\n",
            "Cache-Control: no-cache\r\n"
        ));
        // A personalised request is not served a heuristic lifetime.
        assert!(!follows("", "Cookie: id=1\r\n"));
    }
}
