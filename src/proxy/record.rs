//! Step 13, the record of one request: one line in the log (terminal and `log_file`), one
//! in the access log, and one in the status page's and the metrics' figures. Written
//! exactly once per request, by the connection loop, on success and on error alike. Each
//! carries the request's id, as the backend got it and the client got it back.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use super::access_log::AccessEntry;
use super::generation::Generation;
use super::stats::RequestRecord;
use super::{Proxy, Record};
use crate::cache::CacheStatus;
use crate::error::Error;
use crate::http::Request;

impl Proxy {
    /// Step 13: one line per request, on success and on error, with what the cache did.
    pub(super) fn log_request(
        &self,
        gen: &Generation,
        peer: SocketAddr,
        request: Option<&Request>,
        record: &Record,
        started: Instant,
        error: Option<&Error>,
    ) {
        let elapsed = started.elapsed();
        let line = request.map(Request::request_line);
        let line_text = line.as_deref().unwrap_or("-");
        let pool = &gen.pools[record.pool];
        let label = record.backend.map(|id| &pool.labels[id]);
        let upstream = label.map(|label| &**label);
        let backend = upstream.unwrap_or("-");
        let status: &dyn std::fmt::Display = match &record.sent.status {
            Some(status) => status,
            None => &"-",
        };
        let ms = elapsed.as_millis();
        let bytes = record.sent.bytes;
        let cache = record.cache.as_str();
        let id = record.request_id;
        let tunnel = record.tunnel.as_ref().map_or(String::new(), |t| {
            format!(" (tunnel: {} B up, {} B down, {})", t.up, t.down, t.ending)
        });
        match (error, record.internal) {
            (None, true) => {
                log::debug!("{peer} \"{line_text}\" -> {status} {bytes} B {ms} ms id={id}");
            }
            (None, false) => {
                log::info!(
                    "{peer} \"{line_text}\" -> {backend} {status} {cache} {bytes} B {ms} ms \
                     id={id}{tunnel}"
                );
            }
            (Some(e), _) => log::warn!(
                "{peer} \"{line_text}\" -> {backend} {status} {cache} {bytes} B {ms} ms id={id} \
                 ({e})"
            ),
        }
        let now = SystemTime::now();
        if let Some(access_log) = &gen.access_log {
            access_log.write(&AccessEntry {
                time: now,
                client: peer.ip(),
                request,
                status: record.sent.status,
                bytes,
                upstream,
                pool: request.map(|_| pool.name.as_str()),
                cache: request.map(|_| record.cache),
                elapsed,
                request_id: id,
            });
        }
        if !record.internal {
            let counters = record.backend.map(|id| &*pool.counters[id]);
            let request = RequestRecord {
                time: now,
                client: peer,
                request_line: line.unwrap_or_else(|| "-".to_string()),
                backend: label.cloned(),
                status: record.sent.status,
                cache: request.map(|_| record.cache),
                elapsed,
                request_id: id,
                upstream_bytes: record.upstream_bytes(),
            };
            self.stats.record(request, counters);
        }
    }
}

impl Record {
    /// Body bytes that came from the backend: what the client took of a relayed response
    /// or of a tunnel's way down. An error reply (`sent.head` stays false: only relayed,
    /// cached and tunnelled answers set it) and an answer from the cache (a revalidation
    /// included: the backend's 304 had no body; and a stale answer standing in for a
    /// failing backend) count none.
    fn upstream_bytes(&self) -> u64 {
        let relayed = self.backend.is_some() && self.sent.head;
        let from_cache = matches!(
            self.cache,
            CacheStatus::Revalidated | CacheStatus::StaleIfError
        );
        if relayed && !from_cache {
            self.sent.bytes
        } else {
            0
        }
    }
}
