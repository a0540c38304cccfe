//! What the status page shows: counters per backend (with their requests of the last
//! minute, for each backend's share), the last requests, cache results and connection
//! counts, gathered while the proxy runs.
//!
//! The proxy calls `Stats::record` once per request (from its log step), holds a
//! `TunnelGuard` while a WebSocket tunnel is open, and `Stats::snapshot` takes a consistent
//! copy for rendering (`status`). Each backend's counters are kept by its label (`host:port`,
//! or `pool/host:port` in a named pool) and handed out as `Counters` when a configuration is
//! built: a reload that keeps a backend keeps its figures. Percentiles are computed over a window
//! of recent samples, so a burst an hour ago does not hide today's latency. Nothing here
//! touches a socket or a file.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::cache::CacheStatus;

/// Requests kept for the "last requests" table.
pub const RECENT_REQUESTS: usize = 20;
/// Response times kept per backend for the p99.
pub const LATENCY_WINDOW: usize = 1024;
/// Seconds over which each backend's share of the requests is counted (the last minute).
pub const SHARE_WINDOW_SECS: u64 = 60;

/// Requests counted in one-second buckets over the last `SHARE_WINDOW_SECS` seconds: a
/// fixed ring of buckets, each reused when its second comes round again. Seconds are
/// counted from any fixed start (the proxy's), passed in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// Invariant: `SHARE_WINDOW_SECS` entries; entry `s % SHARE_WINDOW_SECS` holds second
    /// `s` and its count, or an older second whose count no longer matters.
    buckets: Vec<(u64, u64)>,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            buckets: vec![(0, 0); SHARE_WINDOW_SECS as usize],
        }
    }
}

impl Window {
    /// Counts one request in second `second`.
    pub fn add(&mut self, second: u64) {
        let bucket = &mut self.buckets[(second % SHARE_WINDOW_SECS) as usize];
        if bucket.0 != second {
            *bucket = (second, 0);
        }
        bucket.1 += 1;
    }

    /// Requests counted in the `SHARE_WINDOW_SECS` seconds up to and including `now`.
    pub fn sum(&self, now: u64) -> u64 {
        self.buckets
            .iter()
            .filter(|&&(second, _)| second <= now && now - second < SHARE_WINDOW_SECS)
            .map(|&(_, count)| count)
            .sum()
    }
}

/// One finished request, as the status page lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// When it finished.
    pub time: SystemTime,
    /// Who sent it.
    pub client: SocketAddr,
    /// `GET /a HTTP/1.1`, or `-` when the request line could not be read.
    pub request_line: String,
    /// Label of the backend that answered, if any (`host:port`, or `pool/host:port`).
    pub backend: Option<Arc<str>>,
    /// Status sent to the client, if any.
    pub status: Option<u16>,
    /// Cache result, when the cache was consulted.
    pub cache: Option<CacheStatus>,
    /// Time from the first byte of the request to the last byte of the response.
    pub elapsed: Duration,
}

/// Counters for one backend.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackendCounters {
    /// Requests it answered (any status).
    pub requests: u64,
    /// Requests whose time counts in the average and p99: all but tunnels (101), whose
    /// time is how long the tunnel stayed open, not how long the backend took to answer.
    pub timed: u64,
    /// Requests that failed on it: 5xx from it, or a failure of ours talking to it.
    pub errors: u64,
    /// Sum of response times, in microseconds, for the average.
    pub total_micros: u64,
    /// Recent response times in microseconds, oldest first.
    pub recent_micros: VecDeque<u64>,
    /// Requests of the last minute, by second since the proxy started.
    pub window: Window,
}

impl BackendCounters {
    /// Mean response time over every request.
    pub fn average(&self) -> Option<Duration> {
        (self.timed > 0).then(|| Duration::from_micros(self.total_micros / self.timed))
    }

    /// 99th percentile of the recent response times (nearest-rank method).
    pub fn p99(&self) -> Option<Duration> {
        percentile(self.recent_micros.iter().copied().collect(), 99).map(Duration::from_micros)
    }
}

/// The `p`th percentile (1..=100) of `samples` by the nearest-rank method.
pub fn percentile(mut samples: Vec<u64>, p: usize) -> Option<u64> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let rank = (p * samples.len()).div_ceil(100).max(1);
    Some(samples[rank - 1])
}

/// One backend's counters, shared by the configurations that list it.
pub type Counters = Arc<Mutex<BackendCounters>>;

/// Cache results since start.
#[derive(Debug, Default)]
pub struct CacheCounters {
    hits: AtomicU64,
    misses: AtomicU64,
    revalidated: AtomicU64,
    bypassed: AtomicU64,
    stale: AtomicU64,
    stale_if_error: AtomicU64,
    /// Purges carried out (`POST {status_path}/purge`).
    purges: AtomicU64,
    /// Stored responses they removed (variants counted one by one).
    purged: AtomicU64,
}

/// Everything gathered, shared by all connection threads.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    started_at: SystemTime,
    /// Every backend's counters by label, in the order first seen.
    backends: Mutex<Vec<(Arc<str>, Counters)>>,
    recent: Mutex<VecDeque<RequestRecord>>,
    cache: CacheCounters,
    /// Client connections being served now; shared with the accept loop.
    pub active_connections: Arc<AtomicUsize>,
    /// WebSocket tunnels open now.
    tunnels_open: AtomicUsize,
    /// WebSocket tunnels opened since start.
    tunnels_total: AtomicU64,
}

/// A consistent copy of the stats at one moment, for rendering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Time since start.
    pub uptime: Duration,
    /// When the proxy started.
    pub started_at: SystemTime,
    /// The last requests, newest first.
    pub recent: Vec<RequestRecord>,
    /// Client connections open now (tunnels included).
    pub active_connections: usize,
    /// WebSocket tunnels open now.
    pub tunnels_open: usize,
    /// WebSocket tunnels opened since start.
    pub tunnels_total: u64,
    /// Cache hits, misses, revalidations and bypasses since start.
    pub cache_hits: u64,
    /// See `cache_hits`.
    pub cache_misses: u64,
    /// See `cache_hits`.
    pub cache_revalidated: u64,
    /// See `cache_hits`.
    pub cache_bypassed: u64,
    /// Stale responses served while refreshed in the background (stale-while-revalidate).
    pub cache_stale: u64,
    /// Stale responses served because no backend could answer (stale-if-error).
    pub cache_stale_if_error: u64,
    /// Purges carried out since start.
    pub cache_purges: u64,
    /// Stored responses removed by purges since start.
    pub cache_purged: u64,
}

impl Snapshot {
    /// Share of cache lookups answered without the backend sending a body (hits, stale
    /// serves and revalidations over all lookups); None before the first lookup.
    pub fn hit_ratio(&self) -> Option<f64> {
        let served =
            self.cache_hits + self.cache_revalidated + self.cache_stale + self.cache_stale_if_error;
        let total = served + self.cache_misses;
        (total > 0).then(|| served as f64 / total as f64)
    }
}

impl Stats {
    /// Empty stats, starting now.
    pub fn new() -> Self {
        Stats {
            started: Instant::now(),
            started_at: SystemTime::now(),
            backends: Mutex::default(),
            recent: Mutex::new(VecDeque::with_capacity(RECENT_REQUESTS)),
            cache: CacheCounters::default(),
            active_connections: Arc::new(AtomicUsize::new(0)),
            tunnels_open: AtomicUsize::new(0),
            tunnels_total: AtomicU64::new(0),
        }
    }

    /// Counts a tunnel as open until the guard is dropped.
    pub fn open_tunnel(&self) -> TunnelGuard<'_> {
        self.tunnels_open.fetch_add(1, Ordering::Relaxed);
        self.tunnels_total.fetch_add(1, Ordering::Relaxed);
        TunnelGuard(self)
    }

    /// The counters of the backend labelled `label`: the same ones for as long as the
    /// proxy runs, whichever configuration asks.
    pub fn counters(&self, label: &str) -> Counters {
        let mut backends = lock(&self.backends);
        if let Some((_, counters)) = backends.iter().find(|(l, _)| &**l == label) {
            return Arc::clone(counters);
        }
        let counters = Counters::default();
        backends.push((Arc::from(label), Arc::clone(&counters)));
        counters
    }

    /// Seconds since the proxy started: the clock of the `Window`s.
    pub fn second(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Records one finished request, in `counters` when a backend answered it.
    pub fn record(&self, record: RequestRecord, counters: Option<&Mutex<BackendCounters>>) {
        if let Some(counters) = counters {
            let second = self.second();
            let mut c = lock(counters);
            c.requests += 1;
            c.window.add(second);
            if record.status.map_or(true, |s| s >= 500) {
                c.errors += 1;
            }
            if record.status != Some(101) {
                let micros = u64::try_from(record.elapsed.as_micros()).unwrap_or(u64::MAX);
                c.timed += 1;
                c.total_micros = c.total_micros.saturating_add(micros);
                if c.recent_micros.len() == LATENCY_WINDOW {
                    c.recent_micros.pop_front();
                }
                c.recent_micros.push_back(micros);
            }
        }
        let counter = match record.cache {
            Some(CacheStatus::Hit) => Some(&self.cache.hits),
            Some(CacheStatus::Miss) => Some(&self.cache.misses),
            Some(CacheStatus::Revalidated) => Some(&self.cache.revalidated),
            Some(CacheStatus::Bypass) => Some(&self.cache.bypassed),
            Some(CacheStatus::Stale) => Some(&self.cache.stale),
            Some(CacheStatus::StaleIfError) => Some(&self.cache.stale_if_error),
            None => None,
        };
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        let mut recent = lock(&self.recent);
        if recent.len() == RECENT_REQUESTS {
            recent.pop_back();
        }
        recent.push_front(record);
    }

    /// A copy of everything, taken now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            uptime: self.started.elapsed(),
            started_at: self.started_at,
            recent: lock(&self.recent).iter().cloned().collect(),
            active_connections: self.active_connections.load(Ordering::Relaxed),
            tunnels_open: self.tunnels_open.load(Ordering::Relaxed),
            tunnels_total: self.tunnels_total.load(Ordering::Relaxed),
            cache_hits: self.cache.hits.load(Ordering::Relaxed),
            cache_misses: self.cache.misses.load(Ordering::Relaxed),
            cache_revalidated: self.cache.revalidated.load(Ordering::Relaxed),
            cache_bypassed: self.cache.bypassed.load(Ordering::Relaxed),
            cache_stale: self.cache.stale.load(Ordering::Relaxed),
            cache_stale_if_error: self.cache.stale_if_error.load(Ordering::Relaxed),
            cache_purges: self.cache.purges.load(Ordering::Relaxed),
            cache_purged: self.cache.purged.load(Ordering::Relaxed),
        }
    }

    /// Counts a purge, which removed `n` stored responses.
    pub fn purged(&self, n: u64) {
        self.cache.purges.fetch_add(1, Ordering::Relaxed);
        self.cache.purged.fetch_add(n, Ordering::Relaxed);
    }
}

/// An open tunnel, as counted in `Stats`; dropping it counts the tunnel as closed.
#[derive(Debug)]
pub struct TunnelGuard<'a>(&'a Stats);

impl Drop for TunnelGuard<'_> {
    fn drop(&mut self) {
        self.0.tunnels_open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

/// `m` locked.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Counters stay meaningful even if a thread panicked while holding the lock.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records a request answered by the backend labelled `backend` (None: by no backend).
    fn send(
        stats: &Stats,
        backend: Option<&str>,
        status: u16,
        ms: u64,
        cache: Option<CacheStatus>,
    ) {
        let counters = backend.map(|label| stats.counters(label));
        let record = RequestRecord {
            time: SystemTime::UNIX_EPOCH,
            client: "127.0.0.1:5000".parse().unwrap(),
            request_line: format!("GET /{ms} HTTP/1.1"),
            backend: backend.map(Arc::from),
            status: Some(status),
            cache,
            elapsed: Duration::from_millis(ms),
        };
        stats.record(record, counters.as_deref());
    }

    fn counters(stats: &Stats, label: &str) -> BackendCounters {
        lock(&stats.counters(label)).clone()
    }

    #[test]
    fn percentile_by_nearest_rank() {
        let samples: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(samples.clone(), 99), Some(99));
        assert_eq!(percentile(samples, 50), Some(50));
        assert_eq!(percentile(vec![7], 99), Some(7));
        assert_eq!(percentile(vec![], 99), None);
        assert_eq!(percentile(vec![5, 1, 1000], 99), Some(1000));
    }

    #[test]
    fn per_backend_counts_errors_average_and_p99() {
        let stats = Stats::new();
        for ms in 1..=100 {
            send(&stats, Some("a:1"), 200, ms, None);
        }
        send(&stats, Some("b:1"), 502, 4, None);
        let a = counters(&stats, "a:1");
        assert_eq!((a.requests, a.errors), (100, 0));
        assert_eq!(a.average(), Some(Duration::from_micros(50_500)));
        assert_eq!(a.p99(), Some(Duration::from_millis(99)));
        let b = counters(&stats, "b:1");
        assert_eq!((b.requests, b.errors), (1, 1));
        assert_eq!(b.window.sum(stats.second()), 1);
    }

    #[test]
    fn a_label_keeps_its_counters_and_labels_do_not_mix() {
        let stats = Stats::new();
        let first = stats.counters("a:1");
        send(&stats, Some("a:1"), 200, 1, None);
        send(&stats, Some("api/a:1"), 200, 1, None);
        assert!(
            Arc::ptr_eq(&first, &stats.counters("a:1")),
            "asked again, same counters"
        );
        assert_eq!(lock(&first).requests, 1);
        assert_eq!(counters(&stats, "api/a:1").requests, 1);
    }

    #[test]
    fn only_the_last_twenty_requests_are_kept_newest_first() {
        let stats = Stats::new();
        for ms in 0..25 {
            send(&stats, Some("a:1"), 200, ms, None);
        }
        let recent = stats.snapshot().recent;
        assert_eq!(recent.len(), RECENT_REQUESTS);
        assert_eq!(recent[0].request_line, "GET /24 HTTP/1.1");
        assert_eq!(recent[0].backend.as_deref(), Some("a:1"));
        assert_eq!(recent[19].request_line, "GET /5 HTTP/1.1");
    }

    #[test]
    fn cache_results_and_hit_ratio() {
        let stats = Stats::new();
        assert_eq!(stats.snapshot().hit_ratio(), None);
        send(&stats, Some("a:1"), 200, 1, Some(CacheStatus::Miss));
        send(&stats, None, 200, 1, Some(CacheStatus::Hit));
        send(&stats, None, 200, 1, Some(CacheStatus::Hit));
        send(&stats, Some("a:1"), 200, 1, Some(CacheStatus::Revalidated));
        send(&stats, Some("a:1"), 200, 1, Some(CacheStatus::Bypass));
        let snap = stats.snapshot();
        assert_eq!(
            (
                snap.cache_hits,
                snap.cache_misses,
                snap.cache_revalidated,
                snap.cache_bypassed
            ),
            (2, 1, 1, 1)
        );
        assert_eq!(snap.hit_ratio(), Some(0.75));
    }

    #[test]
    fn tunnels_are_counted_open_and_in_total_and_stay_out_of_response_times() {
        let stats = Stats::new();
        let first = stats.open_tunnel();
        let second = stats.open_tunnel();
        drop(first);
        let snap = stats.snapshot();
        assert_eq!((snap.tunnels_open, snap.tunnels_total), (1, 2));
        drop(second);
        assert_eq!(stats.snapshot().tunnels_open, 0);

        send(&stats, Some("a:1"), 200, 4, None);
        send(&stats, Some("a:1"), 101, 60_000, Some(CacheStatus::Bypass));
        let a = counters(&stats, "a:1");
        assert_eq!((a.requests, a.errors), (2, 0));
        assert_eq!(a.average(), Some(Duration::from_millis(4)));
        assert_eq!(a.p99(), Some(Duration::from_millis(4)));
    }

    #[test]
    fn the_window_counts_the_last_minute_only() {
        let mut w = Window::default();
        assert_eq!(w.sum(0), 0);
        w.add(0);
        w.add(0);
        w.add(59);
        assert_eq!(w.sum(59), 3);
        assert_eq!(w.sum(60), 1, "second 0 has left the minute");
        w.add(60);
        assert_eq!(w.sum(60), 2, "second 60 reuses second 0's bucket");
        assert_eq!(w.sum(200), 0);
        w.add(5);
        assert_eq!(w.sum(4), 0, "a later second is not counted before it comes");
    }

    #[test]
    fn the_latency_window_is_bounded() {
        let stats = Stats::new();
        for _ in 0..(LATENCY_WINDOW + 10) {
            send(&stats, Some("a:1"), 200, 1, None);
        }
        assert_eq!(counters(&stats, "a:1").recent_micros.len(), LATENCY_WINDOW);
    }
}
