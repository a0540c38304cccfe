//! The client's cache steps: look a request up, refresh a stale entry the server confirmed,
//! drop what an unsafe method changed, and open an entry for a response. The client's cache
//! is a private cache (RFC 9111): every rule is `crate::cache`'s, called with
//! `shared = false` where a private cache differs (`s-maxage` ignored, `private` stored, no
//! rules about credentials), and the files are `cache::Store`'s, variants included. These
//! functions only decide when to ask them what, as `proxy::caching` does for the proxy.
//!
//! One choice is the client's, as a user agent rather than a cache: a request carrying the
//! user's own `If-None-Match` or `If-Modified-Since` (`-H`) goes to the server as it is,
//! never answered by the cache, so the user sees what the server says (browsers do the same
//! for a script's own conditional fields). Its response may still be stored.

use std::time::{Duration, SystemTime};

use crate::cache::{self, Entry, EntryWriter, Policy, Reuse, Store};
use crate::http::{Request, Response};

/// An entry found for a request, and the key it was found under (a variant's, with Vary).
pub struct Stored {
    /// The key for `Store::refresh`.
    pub key: String,
    /// The stored response, its body ready to be read.
    pub entry: Entry,
}

/// What the cache can do for one request.
pub enum Lookup {
    /// A fresh entry answers it (RFC 9111 §4.2).
    Fresh(Stored),
    /// A stale entry, to be validated with these conditional fields (RFC 9111 §4.3.1).
    Stale(Stored, Vec<(String, String)>),
    /// Nothing usable: the request goes to the server.
    Miss,
}

/// The cache lookup: the entry stored for `request` (its variant, with Vary) and what it
/// can do at `now`, by `cache::reuse` (which honours the request's own `no-cache`,
/// `max-age` and `min-fresh`). Only GET and HEAD are looked up, without Range or
/// preconditions (`cache::may_use_cache`), and without the user's own validators.
pub fn lookup(store: &Store, request: &Request, ttl: Duration, now: SystemTime) -> Lookup {
    if !consults_cache(request) {
        return Lookup::Miss;
    }
    let Some(base) = cache::cache_key(request) else {
        return Lookup::Miss;
    };
    let Some((key, entry)) = store.lookup(&base, request) else {
        return Lookup::Miss;
    };
    let stored = Stored { key, entry };
    let entry = &stored.entry;
    let policy = Policy::private(ttl);
    match cache::reuse(request, &entry.response, entry.stored_at, now, &policy) {
        Reuse::Fresh(_) => Lookup::Fresh(stored),
        // A one-shot client has no background to refresh in: a stale entry is validated
        // now, stale-while-revalidate or not.
        Reuse::Validate(fields) | Reuse::Stale(_, fields) if !fields.is_empty() => {
            Lookup::Stale(stored, fields)
        }
        Reuse::Stale(..) | Reuse::Validate(_) | Reuse::Refetch | Reuse::Bypass => Lookup::Miss,
    }
}

/// Whether the cache is asked at all: GET or HEAD without preconditions
/// (`cache::may_use_cache`, as for the proxy), without Range (the client shows what the
/// server sends for a range), and without validators the user set (see the module's doc).
fn consults_cache(request: &Request) -> bool {
    let user_validators = ["if-none-match", "if-modified-since", "range", "if-range"]
        .iter()
        .any(|name| request.headers.contains(name));
    cache::may_use_cache(request) && !user_validators
}

/// A 304 confirmed the stale entry: its fields update the stored response (RFC 9111
/// §4.3.4), which is written back and then answers the request, as received at `now`.
/// A cache that cannot be written is not an error: the answer is still good.
pub fn revalidated(
    store: &Store,
    mut stored: Stored,
    not_modified: &Response,
    now: SystemTime,
) -> Stored {
    cache::merge_304(&mut stored.entry.response, not_modified);
    let _ = store.refresh(&stored.key, &stored.entry.response);
    stored.entry.stored_at = now;
    stored
}

/// A non-error response to an unsafe method invalidates what is stored for its URI and
/// for its Location and Content-Location on the same host (RFC 9111 §4.4).
pub fn invalidate(store: &Store, request: &Request, response: &Response) {
    for key in cache::invalidated_keys(request, response) {
        store.remove(&key);
    }
}

/// A writer for a new entry (its variant, with Vary), when the response may be stored
/// (`cache::is_cacheable`, private). A GET whose response replaces the entry but cannot be
/// stored removes it, so the old one does not outlive what the server now says.
pub fn writer(
    store: &Store,
    request: &Request,
    response: &Response,
    ttl: Duration,
) -> Option<EntryWriter> {
    let base = cache::cache_key(request)?;
    // A response without Date gets one, as in the proxy (RFC 9110 §6.6.1 asks it of a
    // cache), so that its Expires can be measured against it.
    let stored = cache::stored_response(response, SystemTime::now());
    let writer = if cache::is_cacheable(request, &stored, &Policy::private(ttl)) {
        store.begin_variant(&base, request, &stored).ok()
    } else {
        None
    };
    if writer.is_none() && request.method == "GET" {
        store.remove(&base);
    }
    writer
}

/// The stored response as it answers a request at `now`: with its current age in `Age`
/// (RFC 9111 §5.1) and its length in Content-Length when the head has none.
pub fn answer_head(entry: &Entry, now: SystemTime) -> (Response, Duration) {
    let mut response = entry.response.clone();
    let age = cache::current_age(&response, entry.stored_at, now);
    response.headers.set("Age", age.as_secs().to_string());
    if !response.headers.contains("content-length") {
        response
            .headers
            .set("Content-Length", entry.body_len.to_string());
    }
    (response, age)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, fields: &[(&str, &str)]) -> Request {
        let mut r = Request::new(method, "/");
        for (n, v) in fields {
            r.headers.append(*n, *v);
        }
        r
    }

    #[test]
    fn the_cache_is_asked_for_plain_gets_and_heads_only() {
        assert!(consults_cache(&request("GET", &[])));
        assert!(consults_cache(&request("HEAD", &[])));
        // The request's own directives are the policy's to weigh (`cache::reuse`).
        assert!(consults_cache(&request(
            "GET",
            &[("Cache-Control", "no-cache")]
        )));
        assert!(!consults_cache(&request("POST", &[])));
        for fields in [
            &[("Range", "bytes=0-1")][..],
            &[("If-Match", "\"x\"")],
            &[("If-None-Match", "\"x\"")],
            &[("If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT")],
        ] {
            assert!(!consults_cache(&request("GET", fields)), "{fields:?}");
        }
    }
}
