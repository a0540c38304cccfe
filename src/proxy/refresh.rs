//! The background refresh of `stale-while-revalidate` (RFC 5861 §3): a client that finds a
//! response stale but inside its window is answered at once from the cache (`X-Cache:
//! STALE`), and one thread of its own fetches the new response meanwhile, through the same
//! steps as a client's request (`Upstreams::exchange`, then `caching::store`): a 304
//! refreshes the entry, a storable 200 replaces it, anything else leaves it.
//!
//! Only one refresh runs per URI: the thread leads the URI's flight (`cache::InFlight`), and
//! no refresh starts while a flight for it is under way (requests arriving meanwhile that
//! cannot be answered stale follow it as usual, reading the new entry as it is written). At
//! most [`MAX_BACKGROUND_REFRESHES`] run at once; beyond, the stale response is served
//! without one, and a later request starts it. A refresh has no client: no body, no interim
//! responses, no access log line; it has a request id of its own, and its outcome is logged.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread;
use std::time::SystemTime;

use super::caching::{self, Fill, Forward, SharedCache, Stale};
use super::fill::store_body;
use super::forward::{reusable, Job, Upstream};
use super::generation::Generation;
use super::request_body::RequestBody;
use super::rewrite::{client_host, rewrite_locations};
use super::{Proxy, Sent};
use crate::cache::{self, CacheStatus, Reuse, Role};
use crate::http::body::{response_framing, BodyReader, Framing};
use crate::http::request_id::RequestId;
use crate::http::Request;

/// Background refreshes that may run at once, over all URIs.
pub const MAX_BACKGROUND_REFRESHES: usize = 64;

/// Fields of the client's request that the refresh leaves out: its own range and
/// conditionals (the refresh fetches, or validates, the whole stored response).
const CLIENT_ONLY_FIELDS: &[&str] = &[
    "range",
    "if-range",
    "if-none-match",
    "if-modified-since",
    "content-length",
    "transfer-encoding",
];

impl Proxy {
    /// Starts refreshing the stored response for `request` (primary key `base`) in the
    /// background, unless a fetch for it is already under way or too many refreshes run.
    pub(super) fn refresh_in_background(
        &self,
        gen: &Arc<Generation>,
        request: &Request,
        peer: SocketAddr,
        base: String,
    ) {
        let Some(cache) = &self.cache else { return };
        if cache.in_flight.is_flying(&base) {
            return;
        }
        if cache.refreshing.fetch_add(1, Ordering::SeqCst) >= MAX_BACKGROUND_REFRESHES {
            cache.refreshing.fetch_sub(1, Ordering::SeqCst);
            log::debug!("cache: {base} served stale, not refreshed: too many refreshes running");
            return;
        }
        let (shared, gen) = (Arc::clone(cache), Arc::clone(gen));
        let request = refresh_request(request);
        let spawned = thread::Builder::new()
            .name("cache-refresh".to_string())
            .spawn(move || {
                refresh(&shared, &gen, &request, peer, &base);
                shared.refreshing.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            cache.refreshing.fetch_sub(1, Ordering::SeqCst);
            log::warn!("cache: cannot start a background refresh: {e}");
        }
    }
}

/// The request a refresh sends: the client's GET (its fields select the same variant),
/// without its own range, conditionals and body framing.
fn refresh_request(request: &Request) -> Request {
    let mut refresh = request.clone();
    refresh.method = "GET".to_string();
    for name in CLIENT_ONLY_FIELDS {
        refresh.headers.remove(name);
    }
    refresh
}

/// The refresh itself, on its own thread: lead the flight, look again (another request may
/// have refreshed it), then validate or fetch, and store what came back.
fn refresh(cache: &SharedCache, gen: &Generation, request: &Request, peer: SocketAddr, base: &str) {
    let Role::Leader(guard) = cache.in_flight.join(base) else {
        return;
    };
    let Some((key, entry)) = cache.store.lookup(base, request) else {
        return;
    };
    let now = SystemTime::now();
    let policy = caching::policy(gen);
    let conditionals = match cache::reuse(request, &entry.response, entry.stored_at, now, &policy) {
        Reuse::Fresh(_) | Reuse::Bypass => return,
        Reuse::Stale(_, conditionals) | Reuse::Validate(conditionals) => conditionals,
        Reuse::Refetch => Vec::new(),
    };
    let mut plan = Forward {
        status: CacheStatus::Miss,
        base: Some(base.to_string()),
        stale: Some(Stale {
            key,
            entry,
            conditionals,
        }),
        leader: Some(guard),
    };
    let body = RequestBody {
        framing: Framing::Empty,
        start: Vec::new(),
        rest: None,
    };
    // A request of its own: a new id, which the backend's log and ours show.
    let request_id = RequestId::fresh();
    log::debug!("cache: refreshing {base} in the background, request id {request_id}");
    let mut job = Job {
        client: None,
        peer,
        request,
        request_id,
        body: &body,
        validators: plan.stale.as_ref().map(|s| s.conditionals.as_slice()),
        tried: None,
        body_sent: false,
    };
    let upstreams = &gen.pools[gen.pool_of(request)];
    let upstream = match upstreams.exchange(&gen.config, &mut job, &mut Sent::default()) {
        Ok(upstream) => upstream,
        Err(e) => {
            log::warn!("cache: the background refresh of {base} failed: {e}");
            return;
        }
    };
    store_refresh(cache, gen, request, upstream, &mut plan);
}

/// A refresh's answer: into the cache when it may be stored (a 304 refreshes the entry),
/// its connection back to the pool when it was read to its end.
fn store_refresh(
    cache: &SharedCache,
    gen: &Generation,
    request: &Request,
    upstream: Upstream,
    plan: &mut Forward,
) {
    let upstreams = &gen.pools[gen.pool_of(request)];
    let Upstream {
        id,
        mut conn,
        mut response,
        complete,
        lease: _in_flight,
    } = upstream;
    let base = plan.base.clone().unwrap_or_default();
    if gen.config.rewrite_location {
        let backend = &upstreams.authorities[id];
        rewrite_locations(&mut response, backend, client_host(request));
    }
    let Ok(framing) = response_framing("GET", &response) else {
        log::warn!("cache: the background refresh of {base} got a malformed response");
        return;
    };
    let reusable = complete && reusable(&response, framing);
    match caching::store(Some(cache), gen, request, &response, plan) {
        Fill::Revalidated(..) => {
            log::info!("cache: {base} revalidated in the background");
            upstreams.release(id, conn, reusable);
        }
        Fill::Relay(Some(entry)) => {
            let mut body = BodyReader::new(conn.reader(), framing);
            match store_body(&mut body, entry, plan.leader.as_ref()) {
                Ok(()) => {
                    log::info!("cache: {base} refreshed in the background");
                    upstreams.release(id, conn, reusable);
                }
                Err(e) => log::warn!("cache: the background refresh of {base} failed: {e}"),
            }
        }
        Fill::Relay(None) => {
            let status = response.status;
            log::info!("cache: the background refresh of {base} got {status}, not stored");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refresh_asks_for_the_whole_response_as_a_plain_get() {
        let raw = "HEAD /a HTTP/1.1\r\nHost: h\r\nAccept-Language: de\r\nRange: bytes=0-1\r\n\
                   If-None-Match: \"x\"\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n";
        let request = crate::http::parse::read_request(&mut raw.as_bytes(), &Default::default())
            .unwrap()
            .unwrap();
        let refresh = refresh_request(&request);
        assert_eq!(refresh.method, "GET");
        assert_eq!(refresh.headers.get("accept-language"), Some("de"));
        for gone in ["range", "if-none-match", "if-modified-since"] {
            assert!(!refresh.headers.contains(gone), "{gone}");
        }
    }
}
