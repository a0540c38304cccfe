//! The cache's reading of responses end to end (issue 16): heuristic freshness from
//! Last-Modified and its cap, the targeted fields (CDN-Cache-Control, Relevo-Cache-Control),
//! and the parsing details the HTTP caching test suite checks (Age lists, Expires forms,
//! Vary values, Set-Cookie). Entries age by moving their files' mtime back.

use std::time::{Duration, SystemTime};

use relevo::http::date::format_http_date;

use crate::cache::{get_with, ok, x_cache};
use crate::support::*;

/// An HTTP-date `secs` seconds before now.
fn ago(secs: u64) -> String {
    format_http_date(SystemTime::now() - Duration::from_secs(secs))
}

/// An HTTP-date `secs` seconds after now.
fn ahead(secs: u64) -> String {
    format_http_date(SystemTime::now() + Duration::from_secs(secs))
}

/// A proxy in front of a backend that always answers 200 with `fields` and `body`, with
/// `extra` configuration lines.
fn answering(fields: &str, extra: &str) -> (Backend, TempDir, Process) {
    let backend = Backend::fixed(&ok(fields, b"body"));
    let (dir, proxy) = proxy_for(&[backend.addr], extra);
    (backend, dir, proxy)
}

/// The X-Cache of two GETs of `/r` in a row.
fn twice(proxy: &Process) -> (String, String) {
    let first = get(proxy.addr, "/r");
    let second = get(proxy.addr, "/r");
    (x_cache(&first).to_string(), x_cache(&second).to_string())
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

#[test]
fn last_modified_gives_a_tenth_of_its_age_capped_by_cache_heuristic_max() {
    // Modified ten days ago: a tenth is a day, the default cap.
    let fields = format!(
        "Last-Modified: {}\r\nDate: {}\r\n",
        ago(10 * 86_400),
        ago(0)
    );
    let (backend, dir, proxy) = answering(&fields, "cache_ttl = 0\n");
    assert_eq!(twice(&proxy), pair("MISS", "HIT"));
    age_cache(&dir, 86_400 - 60);
    assert_eq!(x_cache(&get(proxy.addr, "/r")), "HIT");
    age_cache(&dir, 86_400 + 60);
    let validated = get(proxy.addr, "/r");
    assert_ne!(x_cache(&validated), "HIT");
    let last = String::from_utf8_lossy(backend.requests().last().unwrap()).to_ascii_lowercase();
    assert!(last.contains("if-modified-since: "), "{last}");
    // A cap of a minute.
    let (_b, dir, proxy) = answering(&fields, "cache_ttl = 0\ncache_heuristic_max = 60\n");
    assert_eq!(twice(&proxy), pair("MISS", "HIT"));
    age_cache(&dir, 61);
    assert_ne!(x_cache(&get(proxy.addr, "/r")), "HIT");
}

#[test]
fn without_last_modified_cache_ttl_still_decides_and_zero_stores_nothing() {
    let (_b, dir, proxy) = answering("Content-Type: text/plain\r\n", "cache_ttl = 30\n");
    assert_eq!(twice(&proxy), pair("MISS", "HIT"));
    age_cache(&dir, 31);
    assert_eq!(x_cache(&get(proxy.addr, "/r")), "MISS");
    let (_b, dir, proxy) = answering("Content-Type: text/plain\r\n", "cache_ttl = 0\n");
    assert_eq!(twice(&proxy), pair("MISS", "MISS"));
    assert!(cache_entries(&dir).is_empty());
}

#[test]
fn a_personalised_request_is_never_served_a_heuristic_lifetime() {
    let fields = format!("Last-Modified: {}\r\n", ago(10 * 86_400));
    let (backend, _dir, proxy) = answering(&fields, "");
    let with_cookie = |p: &Process| get_with(p.addr, "/r", "Cookie: session=alice\r\n");
    assert_eq!(x_cache(&with_cookie(&proxy)), "MISS");
    assert_eq!(x_cache(&with_cookie(&proxy)), "MISS");
    assert_eq!(twice(&proxy), pair("MISS", "HIT"));
    assert_eq!(x_cache(&with_cookie(&proxy)), "BYPASS");
    assert_eq!(backend.requests().len(), 4);
}

#[test]
fn targeted_fields_are_preferred_and_never_forwarded() {
    // CDN-Cache-Control speaks to us, Cache-Control to browsers.
    let (_b, _d, proxy) = answering(
        "Cache-Control: no-store\r\nCDN-Cache-Control: max-age=600\r\n",
        "",
    );
    assert_eq!(twice(&proxy), pair("MISS", "HIT"));
    let reply = get(proxy.addr, "/r");
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(reply.header("cdn-cache-control"), None);
    // Relevo-Cache-Control is more specific than CDN-Cache-Control.
    let (_b, _d, proxy) = answering(
        "CDN-Cache-Control: max-age=600\r\nRelevo-Cache-Control: no-store\r\n",
        "",
    );
    let first = get(proxy.addr, "/r");
    assert_eq!(first.header("relevo-cache-control"), None);
    assert_eq!(first.header("cdn-cache-control"), None);
    assert_eq!(twice(&proxy), pair("MISS", "MISS"));
    // A targeted field overrides Expires too.
    let past = format!("CDN-Cache-Control: max-age=600\r\nExpires: {}\r\n", ago(60));
    let (_b, _d, proxy) = answering(&past, "");
    assert_eq!(twice(&proxy), pair("MISS", "HIT"));
}

#[test]
fn an_invalid_targeted_field_is_ignored() {
    for invalid in ["max-age=\"600\"", "max-age=600, &&&", "MAX-AGE=600"] {
        let fields = format!("Cache-Control: no-store\r\nCDN-Cache-Control: {invalid}\r\n");
        let (_b, _d, proxy) = answering(&fields, "");
        assert_eq!(twice(&proxy), pair("MISS", "MISS"), "{invalid}");
        let fields = format!("Cache-Control: max-age=600\r\nCDN-Cache-Control: {invalid}\r\n");
        let (_b, _d, proxy) = answering(&fields, "");
        assert_eq!(twice(&proxy), pair("MISS", "HIT"), "{invalid}");
    }
}

#[test]
fn age_lists_and_expires_forms_are_read_as_the_suite_expects() {
    // Of `Age: 7200, 0` the first counts: older than its max-age, never served.
    let (_b, _d, proxy) = answering("Cache-Control: max-age=3600\r\nAge: 7200, 0\r\n", "");
    assert_eq!(twice(&proxy), pair("MISS", "MISS"));
    let (_b, _d, proxy) = answering("Cache-Control: max-age=3600\r\nAge: 0, 7200\r\n", "");
    assert_eq!(twice(&proxy), pair("MISS", "HIT"));
    // asctime and a lower-case zone are dates; a one-digit hour or doubled spaces are not,
    // and an invalid Expires means already expired.
    let date = format!("Date: {}\r\n", ago(0));
    for (expires, stored) in [
        ("Thu Aug  8 02:01:18 2050", true),
        ("Thu, 18 Aug 2050 02:01:18 gMT", true),
        ("Thu, 18 Aug 2050 2:01:18 GMT", false),
        ("Thu, 18  Aug  2050 02:01:18 GMT", false),
    ] {
        let (_b, _d, proxy) =
            answering(&format!("{date}Expires: {expires}\r\n"), "cache_ttl = 0\n");
        let second = if stored { "HIT" } else { "MISS" };
        assert_eq!(twice(&proxy), pair("MISS", second), "{expires}");
    }
    // An invalid Date does not spoil a valid Expires: it counts from when we received it.
    let bad_date = format!("Date: yesterday\r\nExpires: {}\r\n", ahead(600));
    let (_b, _d, proxy) = answering(&bad_date, "cache_ttl = 0\n");
    assert_eq!(twice(&proxy), pair("MISS", "HIT"));
}

#[test]
fn vary_values_are_compared_after_normalising() {
    let backend = Backend::fixed(&ok(
        "Cache-Control: max-age=600\r\nVary: Foo, Accept-Language\r\n",
        b"v",
    ));
    let (_dir, proxy) = proxy_for(&[backend.addr], "");
    let ask = |foo: &str, lang: &str| {
        let fields = format!("Foo: {foo}\r\nAccept-Language: {lang}\r\n");
        x_cache(&get_with(proxy.addr, "/v", &fields)).to_string()
    };
    assert_eq!(ask("1,2", "en, de"), "MISS");
    assert_eq!(ask(" 1, 2 ", "en, de"), "HIT");
    assert_eq!(ask("1,2", "DE,en"), "HIT");
    assert_eq!(ask("1,2", " en ,   de"), "HIT");
    assert_eq!(ask("2,1", "en, de"), "MISS");
    assert_eq!(ask("1,2", "en, fr"), "MISS");
}

#[test]
fn set_cookie_is_stored_and_served_only_when_explicitly_cacheable() {
    let (_b, _d, proxy) = answering("Cache-Control: max-age=600\r\nSet-Cookie: a=c\r\n", "");
    assert_eq!(twice(&proxy), pair("MISS", "HIT"));
    assert_eq!(get(proxy.addr, "/r").header("set-cookie"), Some("a=c"));
    let heuristic = format!("Last-Modified: {}\r\nSet-Cookie: a=c\r\n", ago(86_400));
    let (_b, _d, proxy) = answering(&heuristic, "");
    assert_eq!(twice(&proxy), pair("MISS", "MISS"));
}

#[test]
fn a_session_cookie_on_a_page_stale_at_once_never_reaches_another_user() {
    // The page is the same for everyone (one ETag, and a 304 to its validation), but its
    // Set-Cookie is not: max-age=0 or an Expires in the past says "stale at once", not
    // "cacheable", so the response must not be stored and replayed after a 304.
    for lifetime in [
        "Cache-Control: max-age=0".to_string(),
        format!("Date: {}\r\nExpires: {}", ago(0), ago(3600)),
    ] {
        let served = std::sync::atomic::AtomicUsize::new(0);
        let fields = lifetime.clone();
        let backend = Backend::new(move |request| {
            let n = served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let text = String::from_utf8_lossy(request).to_ascii_lowercase();
            if text.contains("if-none-match: \"page\"") {
                return b"HTTP/1.1 304 Not Modified\r\nETag: \"page\"\r\n\r\n".to_vec();
            }
            let cookie = format!("{fields}\r\nETag: \"page\"\r\nSet-Cookie: session=user{n}\r\n");
            ok(&cookie, b"welcome")
        });
        let (_dir, proxy) = proxy_for(&[backend.addr], "");
        let alice = get(proxy.addr, "/login");
        assert_eq!(
            alice.header("set-cookie"),
            Some("session=user0"),
            "{lifetime}"
        );
        let bob = get(proxy.addr, "/login");
        assert_ne!(
            bob.header("set-cookie"),
            Some("session=user0"),
            "{lifetime}: Alice's session handed to Bob ({})",
            x_cache(&bob)
        );
    }
}

#[test]
fn a_set_cookie_that_comes_with_a_304_is_not_stored_for_the_next_user() {
    // A page cached by heuristic, validated when stale: the origin's 304 sets the session
    // of the user whose request validated it (as session middleware does for a new
    // visitor). Merged into the stored head, that Set-Cookie went to everyone after.
    let backend = Backend::new(move |request| {
        let text = String::from_utf8_lossy(request).to_ascii_lowercase();
        if text.contains("if-none-match: \"page\"") {
            return b"HTTP/1.1 304 Not Modified\r\nETag: \"page\"\r\nSet-Cookie: session=bob\r\n\r\n"
                .to_vec();
        }
        ok("ETag: \"page\"\r\n", b"welcome")
    });
    let (dir, proxy) = proxy_for(&[backend.addr], "");
    assert_eq!(get(proxy.addr, "/home").header("set-cookie"), None);
    age_cache(&dir, 120);
    let bob = get(proxy.addr, "/home");
    assert_eq!(
        (bob.header("set-cookie"), bob.text()),
        (Some("session=bob"), "welcome".into())
    );
    let carol = get(proxy.addr, "/home");
    assert_eq!(carol.text(), "welcome");
    assert_ne!(
        carol.header("set-cookie"),
        Some("session=bob"),
        "Bob's session handed to Carol ({})",
        x_cache(&carol)
    );
}
