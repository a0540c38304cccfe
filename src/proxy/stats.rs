//! What the status page and the metrics page show: counters per backend (with their
//! requests of the last minute, for each backend's share, and of the last five minutes in
//! five-second buckets, for the charts), response times (a window of recent ones for the
//! p99, and a `Histogram`), requests by status class and cache result, the last requests,
//! cache results and connection counts, gathered while the proxy runs.
//!
//! The proxy calls `Stats::record` once per request (from its log step), holds a
//! `TunnelGuard` while a WebSocket tunnel is open, and `Stats::snapshot` takes a consistent
//! copy for rendering (`status`, `metrics`). Requests answered without a backend (cache
//! hits, refusals) are counted in a slot of their own, `unrouted`. Each backend's counters
//! are kept by its label (`host:port`, or `pool/host:port` in a named pool) and handed out as
//! `Counters` when a configuration is built: a reload that keeps a backend keeps its
//! figures. Percentiles are computed over a window of recent samples, so a burst an hour ago
//! does not hide today's latency. Nothing here touches a socket or a file.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use super::histogram::Histogram;
use crate::cache::CacheStatus;
use crate::http::request_id::RequestId;

/// Requests kept for the "last requests" table.
pub const RECENT_REQUESTS: usize = 20;
/// Response times kept per backend for the p99.
pub const LATENCY_WINDOW: usize = 1024;
/// Seconds over which each backend's share of the requests is counted (the last minute).
pub const SHARE_WINDOW_SECS: u64 = 60;
/// Seconds in one bucket of the status page's charts.
pub const CHART_BUCKET_SECS: u64 = 5;
/// Buckets the status page's charts show: with `CHART_BUCKET_SECS`, the last five minutes.
pub const CHART_BUCKETS: usize = 60;

/// Events counted in buckets of `width` seconds over the last `buckets × width` seconds: a
/// fixed ring, each entry reused when its bucket comes round again. Seconds are counted
/// from any fixed start (the proxy's), passed in. `Default` is the share window: the last
/// `SHARE_WINDOW_SECS` seconds, one second a bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// Seconds per bucket (at least 1).
    width: u64,
    /// Invariant: entry `n % len` holds bucket number `n` (seconds `n × width` to
    /// `(n + 1) × width`) and its count, or an older bucket whose count no longer matters.
    buckets: Vec<(u64, u64)>,
}

impl Default for Window {
    fn default() -> Self {
        Window::new(SHARE_WINDOW_SECS as usize, 1)
    }
}

impl Window {
    /// `buckets` buckets (at least 1) of `width_secs` seconds (at least 1), all empty.
    pub fn new(buckets: usize, width_secs: u64) -> Self {
        Window {
            width: width_secs.max(1),
            buckets: vec![(0, 0); buckets.max(1)],
        }
    }

    /// Counts one event in second `second`.
    pub fn add(&mut self, second: u64) {
        let number = second / self.width;
        let len = self.buckets.len() as u64;
        let bucket = &mut self.buckets[(number % len) as usize];
        if bucket.0 != number {
            *bucket = (number, 0);
        }
        bucket.1 += 1;
    }

    /// Events counted in the buckets up to and including the one of second `now`.
    pub fn sum(&self, now: u64) -> u64 {
        self.counts(now).into_iter().flatten().sum()
    }

    /// Each bucket's count up to and including the one of second `now`, oldest first; None
    /// for the buckets before second 0.
    pub fn counts(&self, now: u64) -> Vec<Option<u64>> {
        let now = now / self.width;
        let len = self.buckets.len() as u64;
        (0..len)
            .rev()
            .map(|back| {
                let number = now.checked_sub(back)?;
                let (held, count) = self.buckets[(number % len) as usize];
                Some(if held == number { count } else { 0 })
            })
            .collect()
    }
}

/// Status classes counted apart: `none` (no response was sent), then `1xx` to `9xx` (a
/// backend may send any three-digit status).
const STATUS_CLASSES: [&str; 10] = [
    "none", "1xx", "2xx", "3xx", "4xx", "5xx", "6xx", "7xx", "8xx", "9xx",
];
/// Cache results counted apart, as `X-Cache` writes them, then `none` (the request could
/// not be read, so the cache was not asked).
const CACHE_RESULTS: [&str; 7] = [
    "HIT",
    "MISS",
    "REVALIDATED",
    "BYPASS",
    "STALE",
    "STALE-IF-ERROR",
    "none",
];

/// Requests counted by status class and cache result: the labels `status_class` and
/// `cache` of `relevo_requests_total`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcomes([[u64; CACHE_RESULTS.len()]; STATUS_CLASSES.len()]);

impl Outcomes {
    /// Counts one request.
    pub fn add(&mut self, status: Option<u16>, cache: Option<CacheStatus>) {
        let class = status.map_or(0, |s| usize::from(s / 100).min(STATUS_CLASSES.len() - 1));
        let cache = match cache {
            Some(CacheStatus::Hit) => 0,
            Some(CacheStatus::Miss) => 1,
            Some(CacheStatus::Revalidated) => 2,
            Some(CacheStatus::Bypass) => 3,
            Some(CacheStatus::Stale) => 4,
            Some(CacheStatus::StaleIfError) => 5,
            None => 6,
        };
        self.0[class][cache] += 1;
    }

    /// The counts that are not zero, as (status class, cache result, count).
    pub fn counts(&self) -> impl Iterator<Item = (&'static str, &'static str, u64)> + '_ {
        self.0.iter().zip(STATUS_CLASSES).flat_map(|(row, class)| {
            row.iter()
                .zip(CACHE_RESULTS)
                .filter(|(&n, _)| n > 0)
                .map(move |(&n, cache)| (class, cache, n))
        })
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
    /// The request's id (`X-Request-Id`).
    pub request_id: RequestId,
    /// Body bytes that came from the backend and went on to the client (the backend's
    /// side of a tunnel included); 0 when the answer came from the proxy or its cache.
    pub upstream_bytes: u64,
}

/// Counters for one backend (or for the requests answered without one).
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// Requests of the last five minutes, in the charts' buckets.
    pub chart: Window,
    /// Requests of the last five minutes, in the charts' buckets, that the cache answered
    /// (hits and revalidations) ...
    pub cache_served: Window,
    /// ... and that it was asked (the same and misses): the hit ratio's two terms.
    pub cache_lookups: Window,
    /// Response times, in fixed buckets (tunnels left out, as for the average).
    pub durations: Histogram,
    /// Requests by status class and cache result.
    pub outcomes: Outcomes,
    /// Body bytes relayed from this backend to clients.
    pub upstream_bytes: u64,
}

impl Default for BackendCounters {
    fn default() -> Self {
        let chart = || Window::new(CHART_BUCKETS, CHART_BUCKET_SECS);
        BackendCounters {
            requests: 0,
            timed: 0,
            errors: 0,
            total_micros: 0,
            recent_micros: VecDeque::new(),
            window: Window::default(),
            chart: chart(),
            cache_served: chart(),
            cache_lookups: chart(),
            durations: Histogram::default(),
            outcomes: Outcomes::default(),
            upstream_bytes: 0,
        }
    }
}

impl BackendCounters {
    /// Counts one finished request, which ended at `second` since the proxy started.
    fn count(&mut self, record: &RequestRecord, second: u64) {
        self.requests += 1;
        self.window.add(second);
        self.chart.add(second);
        self.outcomes.add(record.status, record.cache);
        self.upstream_bytes += record.upstream_bytes;
        match record.cache {
            Some(
                CacheStatus::Hit
                | CacheStatus::Revalidated
                | CacheStatus::Stale
                | CacheStatus::StaleIfError,
            ) => {
                self.cache_served.add(second);
                self.cache_lookups.add(second);
            }
            Some(CacheStatus::Miss) => self.cache_lookups.add(second),
            Some(CacheStatus::Bypass) | None => {}
        }
        if record.status.is_none_or(|s| s >= 500) {
            self.errors += 1;
        }
        if record.status != Some(101) {
            let micros = u64::try_from(record.elapsed.as_micros()).unwrap_or(u64::MAX);
            self.timed += 1;
            self.total_micros = self.total_micros.saturating_add(micros);
            if self.recent_micros.len() == LATENCY_WINDOW {
                self.recent_micros.pop_front();
            }
            self.recent_micros.push_back(micros);
            self.durations.observe(record.elapsed);
        }
    }

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
    /// The requests answered without a backend: cache hits, refusals, bad requests.
    unrouted: Mutex<BackendCounters>,
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
    /// The requests answered without a backend.
    pub unrouted: BackendCounters,
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
            unrouted: Mutex::default(),
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

    /// Records one finished request, in `counters` when a backend answered it (else in the
    /// slot of the requests answered without one).
    pub fn record(&self, record: RequestRecord, counters: Option<&Mutex<BackendCounters>>) {
        lock(counters.unwrap_or(&self.unrouted)).count(&record, self.second());
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
            unrouted: lock(&self.unrouted).clone(),
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
            request_id: RequestId::parse("test-id").unwrap(),
            upstream_bytes: if backend.is_some() { 10 } else { 0 },
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
            send(&stats, Some("b0:1"), 200, ms, None);
        }
        send(&stats, Some("b1:1"), 502, 4, None);
        let b0 = counters(&stats, "b0:1");
        assert_eq!((b0.requests, b0.errors), (100, 0));
        assert_eq!(b0.average(), Some(Duration::from_micros(50_500)));
        assert_eq!(b0.p99(), Some(Duration::from_millis(99)));
        let b1 = counters(&stats, "b1:1");
        assert_eq!((b1.requests, b1.errors), (1, 1));
        assert_eq!(b1.window.sum(stats.second()), 1);
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
            send(&stats, Some("b0:1"), 200, ms, None);
        }
        let recent = stats.snapshot().recent;
        assert_eq!(recent.len(), RECENT_REQUESTS);
        assert_eq!(recent[0].request_line, "GET /24 HTTP/1.1");
        assert_eq!(recent[0].backend.as_deref(), Some("b0:1"));
        assert_eq!(recent[19].request_line, "GET /5 HTTP/1.1");
    }

    #[test]
    fn cache_results_and_hit_ratio() {
        let stats = Stats::new();
        assert_eq!(stats.snapshot().hit_ratio(), None);
        send(&stats, Some("b0:1"), 200, 1, Some(CacheStatus::Miss));
        send(&stats, None, 200, 1, Some(CacheStatus::Hit));
        send(&stats, None, 200, 1, Some(CacheStatus::Hit));
        send(&stats, Some("b0:1"), 200, 1, Some(CacheStatus::Revalidated));
        send(&stats, Some("b0:1"), 200, 1, Some(CacheStatus::Bypass));
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

        send(&stats, Some("b0:1"), 200, 4, None);
        send(&stats, Some("b0:1"), 101, 60_000, Some(CacheStatus::Bypass));
        let b0 = counters(&stats, "b0:1");
        assert_eq!((b0.requests, b0.errors), (2, 0));
        assert_eq!(b0.average(), Some(Duration::from_millis(4)));
        assert_eq!(b0.p99(), Some(Duration::from_millis(4)));
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
            send(&stats, Some("b0:1"), 200, 1, None);
        }
        assert_eq!(counters(&stats, "b0:1").recent_micros.len(), LATENCY_WINDOW);
    }

    #[test]
    fn a_window_of_wider_buckets_lists_each_bucket_oldest_first() {
        let mut w = Window::new(4, 5);
        for second in [0, 4, 5, 19] {
            w.add(second);
        }
        // Second 19 is in bucket 3 (15..20): buckets 0 to 3.
        assert_eq!(w.counts(19), [Some(2), Some(1), Some(0), Some(1)]);
        w.add(21);
        // Second 21 is in bucket 4: bucket 0 has left the window, and its entry holds 4.
        assert_eq!(w.counts(21), [Some(1), Some(0), Some(1), Some(1)]);
        assert_eq!(w.sum(21), 3);
        // Before the proxy had run for four buckets, the earlier ones do not exist.
        assert_eq!(Window::new(4, 5).counts(7), [None, None, Some(0), Some(0)]);
        assert_eq!(w.counts(100), [Some(0); 4], "all of it long gone");
    }

    #[test]
    fn requests_are_counted_by_status_class_and_cache_result() {
        let mut outcomes = Outcomes::default();
        outcomes.add(Some(200), Some(CacheStatus::Miss));
        outcomes.add(Some(204), Some(CacheStatus::Miss));
        outcomes.add(Some(502), Some(CacheStatus::Bypass));
        outcomes.add(None, None);
        outcomes.add(Some(799), Some(CacheStatus::Hit));
        let counts: Vec<_> = outcomes.counts().collect();
        assert_eq!(
            counts,
            [
                ("none", "none", 1),
                ("2xx", "MISS", 2),
                ("5xx", "BYPASS", 1),
                ("7xx", "HIT", 1)
            ]
        );
        // The labels are the ones X-Cache carries.
        for (i, status) in [
            CacheStatus::Hit,
            CacheStatus::Miss,
            CacheStatus::Revalidated,
        ]
        .into_iter()
        .chain([
            CacheStatus::Bypass,
            CacheStatus::Stale,
            CacheStatus::StaleIfError,
        ])
        .enumerate()
        {
            assert_eq!(CACHE_RESULTS[i], status.as_str());
        }
    }

    #[test]
    fn requests_without_a_backend_have_a_slot_of_their_own() {
        let stats = Stats::new();
        send(&stats, Some("b0:1"), 200, 3, Some(CacheStatus::Miss));
        send(&stats, None, 200, 1, Some(CacheStatus::Hit));
        send(&stats, None, 200, 1, Some(CacheStatus::Hit));
        send(&stats, Some("b0:1"), 101, 90_000, Some(CacheStatus::Bypass));
        let snap = stats.snapshot();
        let (b0, none) = (&counters(&stats, "b0:1"), &snap.unrouted);
        assert_eq!((b0.requests, none.requests), (2, 2));
        assert_eq!(b0.durations.count(), 1, "the tunnel is not timed");
        assert_eq!(none.durations.count(), 2);
        assert_eq!((b0.upstream_bytes, none.upstream_bytes), (20, 0));
        assert_eq!(
            none.outcomes.counts().collect::<Vec<_>>(),
            [("2xx", "HIT", 2)]
        );
        let now = snap.uptime.as_secs();
        assert_eq!(none.cache_served.counts(now).last(), Some(&Some(2)));
        assert_eq!(b0.cache_lookups.counts(now).last(), Some(&Some(1)));
        assert_eq!(b0.cache_served.counts(now).last(), Some(&Some(0)));
        assert_eq!(b0.chart.counts(now).len(), CHART_BUCKETS);
        assert_eq!(b0.window.sum(now), 2, "shares count backends only");
    }
}
