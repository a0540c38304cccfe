//! The metrics page: what the status page shows, for Prometheus (or anything that reads its
//! text exposition format, version 0.0.4). Pure rendering from a `StatusView`, the status
//! page's own snapshot; serving it (`GET {metrics_path}`, to the addresses `status_allow`
//! lets in) is `status_page`'s.
//!
//! ```text
//! metric     = "# HELP " name " " help LF  "# TYPE " name " " type LF  *sample
//! sample     = name [ "{" label *( "," label ) "}" ] " " value LF
//! label      = label-name "=" DQUOTE label-value DQUOTE
//! ```
//!
//! In a label value `\`, `"` and line feed are written `\\`, `\"` and `\n`; nothing else is
//! escaped. Every family has its `# HELP` and `# TYPE` lines, even when it has no sample yet.
//!
//! The families, with their labels (`backend` is a backend's `host:port`, or `none` for the
//! requests answered without a backend: cache hits, refusals, bad requests; `pool` is the
//! backend's pool, `default` for the `backend` lines, and `none` with `backend="none"`):
//!
//! | name | type | labels |
//! |---|---|---|
//! | `relevo_requests_total` | counter | backend, pool, status_class (`2xx`..., `none`), cache (`HIT`, `MISS`, `REVALIDATED`, `BYPASS`, `STALE`, `STALE-IF-ERROR`, `none`) |
//! | `relevo_request_duration_seconds` | histogram | backend, pool, le (`DURATION_BOUNDS_MICROS`) |
//! | `relevo_upstream_bytes_total` | counter | backend, pool |
//! | `relevo_backend_up` | gauge | backend, pool |
//! | `relevo_backend_active_requests` | gauge | backend, pool |
//! | `relevo_connections_active`, `relevo_threads` | gauge | |
//! | `relevo_cache_entries`, `relevo_cache_bytes` | gauge | |
//! | `relevo_cache_purged_total`, `relevo_cache_not_admitted_total` | counter | |
//!
//! Requests to the status page and to the metrics themselves are not counted (as on the
//! status page), and WebSocket tunnels are counted but not timed (their time is how long
//! they stayed open).

use std::fmt::Write;

use crate::proxy::histogram::DURATION_BOUNDS_MICROS;
use crate::proxy::stats::BackendCounters;
use crate::proxy::status::StatusView;

/// The `Content-Type` of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The label value of the requests answered without a backend.
const NO_BACKEND: &str = "none";

/// One set of per-backend series: a backend, or the requests answered without one.
struct Slot<'a> {
    /// `backend="...",pool="..."`, escaped.
    labels: String,
    counters: &'a BackendCounters,
    /// Up, and its requests in flight; None for the slot without a backend.
    gauges: Option<(bool, usize)>,
}

/// The metrics in the text exposition format.
pub fn render(view: &StatusView) -> String {
    let s = &view.stats;
    let mut slots: Vec<Slot> = view
        .pools
        .iter()
        .flat_map(|pool| {
            pool.backends.iter().map(|row| Slot {
                labels: labels(&row.view.address, &pool.name),
                counters: &row.counters,
                gauges: Some((!row.view.health.is_down(view.now), row.view.active)),
            })
        })
        .collect();
    slots.push(Slot {
        labels: labels(NO_BACKEND, NO_BACKEND),
        counters: &s.unrouted,
        gauges: None,
    });
    let mut out = String::with_capacity(4096 + 2048 * slots.len());
    requests(&mut out, &slots);
    durations(&mut out, &slots);
    per_backend(&mut out, &slots);
    let (entries, bytes, not_admitted) = view.cache.unwrap_or((0, 0, 0));
    let gauges = [
        (
            "relevo_connections_active",
            "Client connections open now.",
            Some(s.active_connections as u64),
        ),
        (
            "relevo_threads",
            "Threads the proxy runs now (absent where the system does not say).",
            view.threads.map(|n| n as u64),
        ),
        (
            "relevo_cache_entries",
            "Responses stored in the cache (0 with the cache off).",
            Some(entries),
        ),
        (
            "relevo_cache_bytes",
            "Bytes the cache uses on disk (0 with the cache off).",
            Some(bytes),
        ),
    ];
    for (name, help, value) in gauges {
        family(&mut out, name, "gauge", help);
        if let Some(value) = value {
            let _ = writeln!(out, "{name} {value}");
        }
    }
    let purged = "relevo_cache_purged_total";
    family(
        &mut out,
        purged,
        "counter",
        "Stored responses removed by purges.",
    );
    let _ = writeln!(out, "{purged} {}", s.cache_purged);
    let name = "relevo_cache_not_admitted_total";
    let help = "Responses a full cache relayed without storing them: not admitted (0 with the \
                cache off).";
    family(&mut out, name, "counter", help);
    let _ = writeln!(out, "{name} {not_admitted}");
    out
}

/// `relevo_requests_total`: one sample per backend, status class and cache result seen.
fn requests(out: &mut String, slots: &[Slot]) {
    let name = "relevo_requests_total";
    family(
        out,
        name,
        "counter",
        "Requests answered, by the backend that answered (none: the proxy or its cache did), \
         status class (none: no response was sent) and cache result (as X-Cache says it).",
    );
    for slot in slots {
        for (class, cache, n) in slot.counters.outcomes.counts() {
            let _ = writeln!(
                out,
                "{name}{{{},status_class=\"{class}\",cache=\"{cache}\"}} {n}",
                slot.labels
            );
        }
    }
}

/// `relevo_request_duration_seconds`: the histogram of every slot, cumulative buckets.
fn durations(out: &mut String, slots: &[Slot]) {
    let name = "relevo_request_duration_seconds";
    family(
        out,
        name,
        "histogram",
        "Time from a request's first byte to its response's last byte, by backend \
         (WebSocket tunnels are not timed).",
    );
    for slot in slots {
        let histogram = &slot.counters.durations;
        let bounds = DURATION_BOUNDS_MICROS
            .iter()
            .map(|&micros| format!("{}", micros as f64 / 1e6))
            .chain(["+Inf".to_string()]);
        for (le, n) in bounds.zip(histogram.cumulative()) {
            let _ = writeln!(out, "{name}_bucket{{{},le=\"{le}\"}} {n}", slot.labels);
        }
        let sum = histogram.sum().as_secs_f64();
        let _ = writeln!(out, "{name}_sum{{{}}} {sum}", slot.labels);
        let _ = writeln!(out, "{name}_count{{{}}} {}", slot.labels, histogram.count());
    }
}

/// The per-backend families other than requests and durations.
fn per_backend(out: &mut String, slots: &[Slot]) {
    let backends = || slots.iter().filter_map(|s| s.gauges.map(|g| (s, g)));
    let name = "relevo_upstream_bytes_total";
    family(
        out,
        name,
        "counter",
        "Response body bytes relayed from each backend to clients (a WebSocket tunnel's \
         bytes from the backend included; answers from the cache count none).",
    );
    for (slot, _) in backends() {
        let _ = writeln!(
            out,
            "{name}{{{}}} {}",
            slot.labels, slot.counters.upstream_bytes
        );
    }
    let name = "relevo_backend_up";
    family(
        out,
        name,
        "gauge",
        "1 while a backend's health lets it take requests, 0 while it is marked down (by \
         failures or by the health check); draining or disabling it does not change this.",
    );
    for (slot, (up, _)) in backends() {
        let _ = writeln!(out, "{name}{{{}}} {}", slot.labels, u8::from(up));
    }
    let name = "relevo_backend_active_requests";
    family(
        out,
        name,
        "gauge",
        "Requests in flight on each backend now.",
    );
    for (slot, (_, active)) in backends() {
        let _ = writeln!(out, "{name}{{{}}} {active}", slot.labels);
    }
}

/// The `# HELP` and `# TYPE` lines of a family (help texts are ours: no `\` or line feed).
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// `backend="...",pool="..."`.
fn labels(backend: &str, pool: &str) -> String {
    format!(
        "backend=\"{}\",pool=\"{}\"",
        escape_label(backend),
        escape_label(pool)
    )
}

/// A label value as the format requires: `\`, `"` and line feed escaped.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant, SystemTime};

    use super::*;
    use crate::cache::CacheStatus;
    use crate::http::request_id::RequestId;
    use crate::proxy::balancer::{Admin, BackendView, Health};
    use crate::proxy::config::Balance;
    use crate::proxy::stats::{lock, RequestRecord, Stats};
    use crate::proxy::status::{BackendRow, PoolView};
    use std::sync::Arc;

    /// Records a request answered by the backend labelled `backend` (None: by no backend).
    fn send(stats: &Stats, backend: Option<&str>, status: u16, ms: u64, cache: CacheStatus) {
        let client: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let counters = backend.map(|label| stats.counters(label));
        let record = RequestRecord {
            time: SystemTime::now(),
            client,
            request_line: "GET / HTTP/1.1".to_string(),
            backend: backend.map(Arc::from),
            status: Some(status),
            cache: Some(cache),
            elapsed: Duration::from_millis(ms),
            request_id: RequestId::fresh(),
            upstream_bytes: if backend.is_some() { 100 } else { 0 },
        };
        stats.record(record, counters.as_deref());
    }

    /// The row of the backend at `view`, with the figures `stats` has for it.
    fn row(view: BackendView, stats: &Stats) -> BackendRow {
        let counters = lock(&stats.counters(&view.address)).clone();
        BackendRow {
            view,
            last_minute: 0,
            counters,
        }
    }

    fn backend(address: &str, down: bool, active: usize) -> BackendView {
        let now = Instant::now();
        BackendView {
            address: address.to_string(),
            weight: 1,
            backup: false,
            admin: Admin::Active,
            active,
            health: Health {
                down_until: down.then(|| now + Duration::from_secs(60)),
                ..Health::default()
            },
        }
    }

    /// Two backends (the second down, with a quote in its name), and known traffic: two
    /// misses on the first (3 ms, 30 ms), a 502 on the second, a hit without a backend.
    fn metrics() -> String {
        let stats = Stats::new();
        let (good, bad) = ("127.0.0.1:8081", "b\"ad\\name\n:1");
        send(&stats, Some(good), 200, 3, CacheStatus::Miss);
        send(&stats, Some(good), 200, 30, CacheStatus::Miss);
        send(&stats, Some(bad), 502, 1, CacheStatus::Bypass);
        send(&stats, None, 200, 0, CacheStatus::Hit);
        let view = StatusView {
            stats: stats.snapshot(),
            pools: vec![PoolView {
                name: "default".to_string(),
                backends: vec![
                    row(backend(good, false, 2), &stats),
                    row(backend(bad, true, 0), &stats),
                ],
            }],
            balance: Balance::RoundRobin,
            generation: 1,
            threads: Some(9),
            status_path: "/relevo/status".to_string(),
            cache: Some((3, 2048, 1)),
            now: Instant::now(),
            now_wall: SystemTime::now(),
        };
        render(&view)
    }

    #[test]
    fn requests_are_counted_by_backend_pool_status_class_and_cache() {
        let text = metrics();
        for line in [
            "relevo_requests_total{backend=\"127.0.0.1:8081\",pool=\"default\",status_class=\"2xx\",cache=\"MISS\"} 2",
            "relevo_requests_total{backend=\"b\\\"ad\\\\name\\n:1\",pool=\"default\",status_class=\"5xx\",cache=\"BYPASS\"} 1",
            "relevo_requests_total{backend=\"none\",pool=\"none\",status_class=\"2xx\",cache=\"HIT\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in:\n{text}");
        }
        assert_eq!(text.matches("relevo_requests_total{").count(), 3);
    }

    #[test]
    fn the_histogram_is_cumulative_and_its_count_matches() {
        let text = metrics();
        let b0 = "backend=\"127.0.0.1:8081\",pool=\"default\"";
        for line in [
            format!("relevo_request_duration_seconds_bucket{{{b0},le=\"0.001\"}} 0"),
            format!("relevo_request_duration_seconds_bucket{{{b0},le=\"0.005\"}} 1"),
            format!("relevo_request_duration_seconds_bucket{{{b0},le=\"0.025\"}} 1"),
            format!("relevo_request_duration_seconds_bucket{{{b0},le=\"0.05\"}} 2"),
            format!("relevo_request_duration_seconds_bucket{{{b0},le=\"10\"}} 2"),
            format!("relevo_request_duration_seconds_bucket{{{b0},le=\"+Inf\"}} 2"),
            format!("relevo_request_duration_seconds_sum{{{b0}}} 0.033"),
            format!("relevo_request_duration_seconds_count{{{b0}}} 2"),
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in:\n{text}");
        }
        // One series per backend and one without: 14 buckets, a sum and a count each.
        assert_eq!(
            text.matches("relevo_request_duration_seconds_bucket{")
                .count(),
            3 * 14
        );
    }

    #[test]
    fn gauges_say_who_is_up_and_busy_and_what_the_cache_holds() {
        let text = metrics();
        for line in [
            "relevo_backend_up{backend=\"127.0.0.1:8081\",pool=\"default\"} 1",
            "relevo_backend_up{backend=\"b\\\"ad\\\\name\\n:1\",pool=\"default\"} 0",
            "relevo_backend_active_requests{backend=\"127.0.0.1:8081\",pool=\"default\"} 2",
            "relevo_upstream_bytes_total{backend=\"127.0.0.1:8081\",pool=\"default\"} 200",
            "relevo_threads 9",
            "relevo_connections_active 0",
            "relevo_cache_entries 3",
            "relevo_cache_bytes 2048",
            "relevo_cache_not_admitted_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in:\n{text}");
        }
        assert!(!text.contains("relevo_backend_up{backend=\"none\""));
    }

    #[test]
    fn every_family_has_help_and_type_before_its_samples_and_every_line_is_well_formed() {
        let text = metrics();
        let mut typed: Vec<&str> = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                typed.push(name);
            } else if line.starts_with("# HELP ") {
                assert!(!line.contains('\\'), "{line}");
            } else {
                let name = line.split(['{', ' ']).next().unwrap();
                let family = typed.last().expect("a sample before any TYPE");
                assert!(name.starts_with(family), "{name} under {family}");
                let value = line.rsplit(' ').next().unwrap();
                assert!(value.parse::<f64>().is_ok(), "{line}");
            }
        }
        for name in [
            "relevo_requests_total",
            "relevo_request_duration_seconds",
            "relevo_backend_up",
            "relevo_backend_active_requests",
            "relevo_connections_active",
            "relevo_threads",
            "relevo_cache_entries",
            "relevo_cache_bytes",
            "relevo_cache_not_admitted_total",
            "relevo_upstream_bytes_total",
        ] {
            assert!(typed.contains(&name), "{name} missing");
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "{name} without HELP"
            );
        }
        assert!(text.ends_with('\n'));
    }
}
