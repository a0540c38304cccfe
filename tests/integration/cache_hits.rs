//! Cache hits served from memory (issue 17): the store keeps the parsed head and small body
//! of an entry it served and checks the file's identity on every hit. Whatever happens to
//! the file behind the proxy's back (replaced, edited, removed, flushed by `--flush-cache`,
//! aged past its lifetime), the next hit serves exactly what the file says now, or goes to
//! the backend: never a remembered head with another body, never a flushed entry.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::support::*;

/// A backend whose nth response (from 1) has ETag "vN" and the body `body-N`, fresh for
/// ten minutes.
fn versioned() -> (Backend, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&count);
    let backend = Backend::new(move |_| {
        let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
        format!(
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nETag: \"v{n}\"\r\nContent-Length: 6\r\n\r\nbody-{n}"
        )
        .into_bytes()
    });
    (backend, count)
}

/// The one entry file of the cache.
fn the_entry(dir: &TempDir) -> std::path::PathBuf {
    let entries = cache_entries(dir);
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries[0].clone()
}

/// `bytes` with every `from` replaced by `to` (of the same length).
fn swapped(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut out = bytes.to_vec();
    let mut i = 0;
    while let Some(at) = find(&out[i..], from) {
        out[i + at..i + at + to.len()].copy_from_slice(to);
        i += at + to.len();
    }
    out
}

/// A hit's ETag and body, which must belong together.
fn etag_and_body(reply: &Reply) -> (String, String) {
    assert_eq!(reply.header("x-cache"), Some("HIT"), "{:?}", reply.headers);
    (reply.header("etag").unwrap_or("").to_string(), reply.text())
}

#[test]
fn a_hit_serves_what_the_file_says_now_whatever_was_done_to_it() {
    let (backend, count) = versioned();
    let (dir, proxy) = proxy_for(&[backend.addr], "");
    assert_eq!(get(proxy.addr, "/x").header("x-cache"), Some("MISS"));
    for _ in 0..20 {
        let hit = get(proxy.addr, "/x");
        assert_eq!(etag_and_body(&hit), ("\"v1\"".into(), "body-1".into()));
    }

    // Replaced by another process: a new file renamed over it, head and body both new.
    let path = the_entry(&dir);
    let file = std::fs::read(&path).unwrap();
    let replacement = path.with_file_name("replacement");
    std::fs::write(
        &replacement,
        swapped(&swapped(&file, b"v1", b"v7"), b"body-1", b"body-7"),
    )
    .unwrap();
    std::fs::rename(&replacement, &path).unwrap();
    let hit = get(proxy.addr, "/x");
    assert_eq!(etag_and_body(&hit), ("\"v7\"".into(), "body-7".into()));

    // Edited in place, same size: the body changes under the same head.
    let file = std::fs::read(&path).unwrap();
    std::fs::write(&path, swapped(&file, b"body-7", b"body-8")).unwrap();
    let hit = get(proxy.addr, "/x");
    assert_eq!(etag_and_body(&hit), ("\"v7\"".into(), "body-8".into()));
    assert_eq!(count.load(Ordering::SeqCst), 1, "all hits so far");

    // Removed: a miss, answered by the backend.
    std::fs::remove_file(&path).unwrap();
    let miss = get(proxy.addr, "/x");
    assert_eq!(miss.header("x-cache"), Some("MISS"));
    assert_eq!(miss.text(), "body-2");
    assert_eq!(etag_and_body(&get(proxy.addr, "/x")).1, "body-2");

    // Flushed by `proxy --flush-cache` while the proxy runs: the next request is a miss.
    let flushed = command_in(&dir, PROXY_BIN)
        .arg(dir.join("proxy.conf"))
        .arg("--flush-cache")
        .output()
        .unwrap();
    assert!(flushed.status.success(), "{flushed:?}");
    let miss = get(proxy.addr, "/x");
    assert_eq!(miss.header("x-cache"), Some("MISS"));
    assert_eq!(miss.text(), "body-3");

    // Aged past its max-age (the mtime is the TTL's clock): not a fresh hit any more.
    assert_eq!(etag_and_body(&get(proxy.addr, "/x")).1, "body-3");
    age_cache(&dir, 700);
    let after = get(proxy.addr, "/x");
    assert_ne!(after.header("x-cache"), Some("HIT"), "{:?}", after.headers);
    assert_eq!(
        count.load(Ordering::SeqCst),
        4,
        "the aged entry went to the backend"
    );
}
