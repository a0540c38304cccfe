//! The status page: the proxy's own view of itself, as HTML for a projector and as JSON for
//! scripts. Pure rendering from a `StatusView`: gathering the numbers is `stats` and
//! `balancer`, serving the page and deciding who may see it is `proxy` (`status_page`), and
//! acting on its buttons is `admin`.
//!
//! The HTML has no external assets and no script; a meta refresh reloads it every
//! `REFRESH_SECS`. Three charts, inline SVG drawn by `charts`, show the requests per
//! second per backend and the cache hit ratio over the last five minutes, and the response
//! times since start (the metrics' histogram). Each backend's row ends with plain HTML forms that post to
//! `{status_path}/backends` (drain, disable, enable, and the weight one lower or higher), so
//! the page works as a control panel without a line of JavaScript. Everything that came from
//! a client (request lines) is escaped, so the page cannot be used to inject markup. The
//! last requests show their request ids, to follow one into the logs. The JSON is written
//! by hand (no serde in this project), with `json`'s escaping.

use std::fmt::Write;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Local};

use crate::http::html::escape_html;
use crate::proxy::balancer::{Admin, BackendView};
use crate::proxy::charts::{bar_chart, line_chart, Scale, Series};
use crate::proxy::config::{Balance, DEFAULT_POOL, MAX_WEIGHT};
use crate::proxy::histogram::{bound_label, BUCKETS};
use crate::proxy::json::{self, string as json_string};
use crate::proxy::stats::{
    BackendCounters, RequestRecord, Snapshot, CHART_BUCKETS, CHART_BUCKET_SECS,
};

/// Seconds between two automatic reloads of the HTML page.
pub const REFRESH_SECS: u32 = 2;

/// Everything one rendering of the page needs, taken at one moment.
#[derive(Clone, Debug)]
pub struct StatusView {
    /// Counters and recent requests.
    pub stats: Snapshot,
    /// The pools, the default one first, each with its backends.
    pub pools: Vec<PoolView>,
    /// The balancing algorithm.
    pub balance: Balance,
    /// The configuration in force: 1 at start, one more per reload.
    pub generation: u64,
    /// Threads the proxy runs now, when known.
    pub threads: Option<usize>,
    /// The status page's path: the forms post to `{status_path}/backends`.
    pub status_path: String,
    /// Cache entries, bytes on disk and responses not admitted, or None when the cache is
    /// off.
    pub cache: Option<(u64, u64, u64)>,
    /// The moment of rendering, monotonic (to interpret `Health`'s instants).
    pub now: Instant,
    /// The same moment on the wall clock.
    pub now_wall: SystemTime,
}

/// One pool as the page shows it.
#[derive(Clone, Debug)]
pub struct PoolView {
    /// Its name (`default` for the `backend` lines).
    pub name: String,
    /// Its backends, in the order proxy.conf lists them.
    pub backends: Vec<BackendRow>,
}

/// One backend's row: its state in the balancer and its figures.
#[derive(Clone, Debug)]
pub struct BackendRow {
    /// Its address, weight, place in rotation, load and health.
    pub view: BackendView,
    /// What it answered since start.
    pub counters: BackendCounters,
    /// Requests it answered in the last `SHARE_WINDOW_SECS` seconds.
    pub last_minute: u64,
}

impl PoolView {
    /// Backend `i`'s share of the requests its pool answered in the last minute; None
    /// when the pool answered none.
    pub fn share(&self, i: usize) -> Option<f64> {
        let total: u64 = self.backends.iter().map(|b| b.last_minute).sum();
        let mine = self.backends.get(i).map_or(0, |b| b.last_minute);
        (total > 0).then(|| mine as f64 / total as f64)
    }

    /// Whether this is the pool of the `backend` lines.
    fn is_default(&self) -> bool {
        self.name == DEFAULT_POOL
    }
}

impl StatusView {
    /// When backend `b` was marked down (wall clock), while it is down.
    fn down_since(&self, b: &BackendView) -> Option<SystemTime> {
        if !b.health.is_down(self.now) {
            return None;
        }
        let since = b.health.down_since?;
        Some(self.now_wall - self.now.saturating_duration_since(since))
    }
}

/// The page as HTML.
pub fn render_html(view: &StatusView) -> String {
    let mut html = String::with_capacity(8 * 1024);
    let s = &view.stats;
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
         <title>Relevo status</title><style>{CSS}</style></head><body>\n\
         <h1>Relevo status</h1>\n<p class=\"summary\">up {} &middot; {} client connection{} open \
         &middot; {} WebSocket tunnel{} open ({} since start) &middot; {} &middot; balance {} \
         &middot; configuration #{} &middot; refreshed {}</p>\n",
        human_duration(s.uptime),
        s.active_connections,
        if s.active_connections == 1 { "" } else { "s" },
        s.tunnels_open,
        if s.tunnels_open == 1 { "" } else { "s" },
        s.tunnels_total,
        view.threads
            .map_or_else(|| "threads unknown".to_string(), |n| format!("{n} threads")),
        view.balance,
        view.generation,
        clock(view.now_wall),
    );
    for pool in &view.pools {
        pool_html(&mut html, view, pool);
    }
    html.push_str(&charts_html(view));
    html.push_str("<h2>Cache</h2>\n");
    match view.cache {
        Some((entries, bytes, not_admitted)) => {
            let _ = writeln!(
                html,
                "<p>{entries} entries, {} &middot; hit ratio {} &middot; {} hits, {} revalidated, \
                 {} misses ({not_admitted} not admitted), {} bypassed &middot; served stale: {} \
                 while refreshing, {} with the backends failing &middot; purges: {} ({} responses \
                 removed)</p>",
                human_bytes(bytes),
                s.hit_ratio()
                    .map_or_else(|| "-".to_string(), |r| format!("{:.0}%", r * 100.0)),
                s.cache_hits,
                s.cache_revalidated,
                s.cache_misses,
                s.cache_bypassed,
                s.cache_stale,
                s.cache_stale_if_error,
                s.cache_purges,
                s.cache_purged
            );
            html.push_str(&purge_forms_html(&view.status_path));
        }
        None => html.push_str("<p>off</p>\n"),
    }
    html.push_str(
        "<h2>Last requests</h2>\n<table><tr><th>time</th><th>client</th><th>request</th>\
         <th>backend</th><th>status</th><th>cache</th><th>ms</th><th>request id</th></tr>\n",
    );
    for r in &s.recent {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td class=\"req\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"req\">{}</td></tr>",
            clock(r.time),
            r.client,
            escape_html(&r.request_line),
            escape_html(r.backend.as_deref().unwrap_or("-")),
            r.status.map_or_else(|| "-".to_string(), |s| s.to_string()),
            r.cache.map_or("-", |c| c.as_str()),
            r.elapsed.as_millis(),
            escape_html(r.request_id.as_str()),
        );
    }
    html.push_str("</table>\n</body></html>\n");
    html
}

/// A pool's table: one row per backend. Alone, the default pool is just "Backends".
fn pool_html(html: &mut String, view: &StatusView, pool: &PoolView) {
    if view.pools.len() == 1 {
        html.push_str("<h2>Backends</h2>\n");
    } else {
        let _ = writeln!(html, "<h2>Pool {}</h2>", escape_html(&pool.name));
    }
    html.push_str(
        "<table><tr><th>backend</th><th>state</th><th>weight</th>\
         <th>in flight</th><th>last minute</th><th>requests</th><th>errors</th><th>average</th>\
         <th>p99</th><th>control</th></tr>\n",
    );
    for (i, row) in pool.backends.iter().enumerate() {
        let b = &row.view;
        let _ = writeln!(
            html,
            "<tr><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>{}<td class=\"ctl\">{}</td></tr>",
            escape_html(&b.address),
            if b.backup {
                " <small>backup</small>"
            } else {
                ""
            },
            state_html(view, b),
            b.weight,
            b.active,
            pool.share(i)
                .map_or_else(|| "-".to_string(), |r| format!("{:.0}%", r * 100.0)),
            counters_html(&row.counters),
            controls_html(&view.status_path, pool, b),
        );
    }
    html.push_str("</table>\n");
}

/// A backend's state cell: a coloured label, and since when and why it is down.
fn state_html(view: &StatusView, b: &BackendView) -> String {
    let state = b.state(view.now);
    let mut cell = format!("<span class=\"{state}\">{state}</span>");
    if let Some(since) = view.down_since(b) {
        if state != "down" {
            cell.push_str(" &middot; down");
        }
        let _ = write!(
            cell,
            " since {} ({})",
            clock(since),
            escape_html(b.health.reason.as_deref().unwrap_or("unknown"))
        );
    }
    cell
}

/// The cells of a backend's requests, errors, average and p99.
fn counters_html(c: &BackendCounters) -> String {
    format!(
        "<td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
        c.requests,
        c.errors,
        millis(c.average()),
        millis(c.p99())
    )
}

/// The purge forms: one path on every host, or one URL; they post to
/// `{status_path}/purge`.
fn purge_forms_html(status_path: &str) -> String {
    let action = format!("{}/purge", escape_html(status_path));
    format!(
        "<p><form method=\"post\" action=\"{action}\">Purge a path on every host: \
         <input name=\"path\" placeholder=\"/images/cat.jpg\" required> \
         <button>purge</button></form> \
         <form method=\"post\" action=\"{action}\">or one URL: \
         <input name=\"url\" placeholder=\"http://localhost:8080/images/cat.jpg\" required> \
         <button>purge</button></form></p>\n"
    )
}

/// A backend's buttons: two plain forms posting to `{status_path}/backends`, one for
/// drain / disable / enable, one for its weight one lower or one higher; a backend of a
/// named pool names its pool too. A button that would change nothing is greyed out.
fn controls_html(status_path: &str, pool: &PoolView, b: &BackendView) -> String {
    let pool_field = if pool.is_default() {
        String::new()
    } else {
        format!(
            "<input type=\"hidden\" name=\"pool\" value=\"{}\">",
            escape_html(&pool.name)
        )
    };
    let open = format!(
        "<form method=\"post\" action=\"{}/backends\">{pool_field}<input type=\"hidden\" \
         name=\"backend\" value=\"{}\">",
        escape_html(status_path),
        escape_html(&b.address)
    );
    let button = |name: &str, value: String, label: &str, useful: bool| {
        format!(
            "<button name=\"{name}\" value=\"{value}\"{}>{label}</button>",
            if useful { "" } else { " disabled" }
        )
    };
    let admin =
        |action: &str, now: Admin| button("action", action.to_string(), action, b.admin != now);
    format!(
        "{open}{}{}{}</form> {open}<input type=\"hidden\" name=\"action\" value=\"weight\">\
         {}{}</form>",
        admin("drain", Admin::Draining),
        admin("disable", Admin::Disabled),
        admin("enable", Admin::Active),
        button(
            "weight",
            b.weight.saturating_sub(1).to_string(),
            "weight &minus;1",
            b.weight > 1
        ),
        button(
            "weight",
            (b.weight + 1).to_string(),
            "+1",
            b.weight < MAX_WEIGHT
        ),
    )
}

const CSS: &str =
    "body{font-family:sans-serif;font-size:22px;margin:1.5em;background:#fafafa;color:#222}\
h1{font-size:2em;margin:0}h2{margin-top:1.2em}table{border-collapse:collapse;font-size:.85em}\
td,th{border-bottom:1px solid #ccc;padding:.25em .6em;text-align:left}.ctl{white-space:nowrap}\
.up{color:#fff;background:#2a7d2a;padding:0 .4em;border-radius:.2em}\
.down{color:#fff;background:#b22;padding:0 .4em;border-radius:.2em}\
.draining{color:#222;background:#e8b923;padding:0 .4em;border-radius:.2em}\
.disabled{color:#fff;background:#777;padding:0 .4em;border-radius:.2em}\
form{display:inline;margin:0}button{font-size:.7em;margin-right:.2em}\
.summary{color:#555}.req{font-family:monospace}\
.charts{display:flex;flex-wrap:wrap;gap:1em}.chart{background:#fff;border:1px solid #ddd}";

/// The same data as JSON (documented in README.md).
pub fn render_json(view: &StatusView) -> String {
    let s = &view.stats;
    let mut json = String::with_capacity(4 * 1024);
    let _ = write!(
        json,
        "{{\"uptime_seconds\":{},\"started\":{},\"active_connections\":{},\"threads\":{},\
         \"balance\":\"{}\",\"generation\":{},\"tunnels\":{{\"open\":{},\"total\":{}}},\
         \"pools\":[{}],\"backends\":[",
        s.uptime.as_secs(),
        json::time_string(s.started_at),
        s.active_connections,
        view.threads
            .map_or_else(|| "null".to_string(), |n| n.to_string()),
        view.balance,
        view.generation,
        s.tunnels_open,
        s.tunnels_total,
        view.pools
            .iter()
            .map(|pool| json_string(&pool.name))
            .collect::<Vec<_>>()
            .join(",")
    );
    let backends = view
        .pools
        .iter()
        .flat_map(|pool| (0..pool.backends.len()).map(move |i| backend_json(view, pool, i)));
    json.push_str(&backends.collect::<Vec<_>>().join(","));
    json.push_str("],\"cache\":");
    match view.cache {
        Some((entries, bytes, not_admitted)) => {
            let _ = write!(
                json,
                "{{\"entries\":{entries},\"bytes\":{bytes},\"hits\":{},\"misses\":{},\
                 \"not_admitted\":{not_admitted},\"revalidated\":{},\"bypassed\":{},\
                 \"stale\":{},\"stale_if_error\":{},\"purges\":{},\"purged\":{},\
                 \"hit_ratio\":{}}}",
                s.cache_hits,
                s.cache_misses,
                s.cache_revalidated,
                s.cache_bypassed,
                s.cache_stale,
                s.cache_stale_if_error,
                s.cache_purges,
                s.cache_purged,
                s.hit_ratio()
                    .map_or_else(|| "null".to_string(), |r| format!("{r:.4}"))
            );
        }
        None => json.push_str("null"),
    }
    json.push_str(",\"recent\":[");
    for (i, r) in s.recent.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push_str(&recent_json(r));
    }
    json.push_str("]}\n");
    json
}

/// Backend `i` of `pool`, as one object of the `backends` list.
fn backend_json(view: &StatusView, pool: &PoolView, i: usize) -> String {
    let BackendRow {
        view: b,
        counters,
        last_minute,
    } = &pool.backends[i];
    let since = view.down_since(b);
    format!(
        "{{\"address\":{},\"state\":\"{}\",\"weight\":{},\"backup\":{},\"active\":{},\
         \"down_since\":{},\"reason\":{},\"requests\":{},\"last_minute\":{},\"share\":{},\
         \"errors\":{},\"average_ms\":{},\"p99_ms\":{},\"pool\":{}}}",
        json_string(&b.address),
        b.state(view.now),
        b.weight,
        b.backup,
        b.active,
        since.map_or_else(|| "null".to_string(), json::time_string),
        match (&b.health.reason, since) {
            (Some(why), Some(_)) => json_string(why),
            _ => "null".to_string(),
        },
        counters.requests,
        last_minute,
        pool.share(i)
            .map_or_else(|| "null".to_string(), |r| format!("{r:.4}")),
        counters.errors,
        json_millis(counters.average()),
        json_millis(counters.p99()),
        json_string(&pool.name),
    )
}

fn recent_json(r: &RequestRecord) -> String {
    format!(
        "{{\"time\":{},\"client\":{},\"request\":{},\"backend\":{},\"status\":{},\"cache\":{},\
         \"ms\":{},\"request_id\":{}}}",
        json::time_string(r.time),
        json_string(&r.client.to_string()),
        json_string(&r.request_line),
        r.backend
            .as_deref()
            .map_or_else(|| "null".to_string(), json_string),
        r.status
            .map_or_else(|| "null".to_string(), |s| s.to_string()),
        r.cache
            .map_or_else(|| "null".to_string(), |c| json_string(c.as_str())),
        r.elapsed.as_millis(),
        json_string(r.request_id.as_str()),
    )
}

/// The charts: requests per second per backend and the cache hit ratio over the last
/// `CHART_BUCKETS` buckets of `CHART_BUCKET_SECS`, and the response times since start.
/// Requests answered without a backend are a series of their own once there are any.
fn charts_html(view: &StatusView) -> String {
    let s = &view.stats;
    let now = s.uptime.as_secs();
    let mut slots: Vec<(String, &BackendCounters)> = view
        .pools
        .iter()
        .flat_map(|pool| {
            pool.backends.iter().map(move |row| {
                let name = if pool.is_default() {
                    row.view.address.clone()
                } else {
                    format!("{}/{}", pool.name, row.view.address)
                };
                (name, &row.counters)
            })
        })
        .collect();
    if s.unrouted.requests > 0 {
        slots.push(("no backend".to_string(), &s.unrouted));
    }
    let rates: Vec<Series> = slots
        .iter()
        .map(|(name, c)| Series {
            name: name.clone(),
            values: per_second(&c.chart.counts(now), s.uptime),
        })
        .collect();
    let minutes = CHART_BUCKETS as u64 * CHART_BUCKET_SECS / 60;
    let span = format!("-{minutes} min");
    let mut html = format!(
        "<h2>Last {minutes} minutes</h2>\n<div class=\"charts\">{}",
        line_chart(
            "Requests per second",
            &rates,
            Scale {
                max: None,
                unit: "/s"
            },
            (&span, "now")
        )
    );
    if view.cache.is_some() {
        let ratio = Series {
            name: "hits and revalidations / lookups".to_string(),
            values: hit_ratio(slots.iter().map(|(_, c)| *c), now),
        };
        let scale = Scale {
            max: Some(100.0),
            unit: "%",
        };
        html.push_str(&line_chart(
            "Cache hit ratio",
            &[ratio],
            scale,
            (&span, "now"),
        ));
    }
    let latency: Vec<Series> = slots
        .iter()
        .map(|(name, c)| Series {
            name: name.clone(),
            values: c
                .durations
                .counts()
                .iter()
                .map(|&n| Some(n as f64))
                .collect(),
        })
        .collect();
    let bounds: Vec<String> = (0..BUCKETS).map(bound_label).collect();
    let scale = Scale {
        max: None,
        unit: "",
    };
    let title = "Response times since start (requests up to each bound)";
    html.push_str(&bar_chart(title, &bounds, &latency, scale));
    html.push_str("</div>\n");
    html
}

/// Requests per second in each chart bucket (counts oldest first, the last one being the
/// bucket `uptime` is in): a whole bucket's count over its width, the current bucket's over
/// the time it has run (at least a second, so a first request is not a spike).
pub fn per_second(counts: &[Option<u64>], uptime: Duration) -> Vec<Option<f64>> {
    let width = CHART_BUCKET_SECS as f64;
    let current = uptime.as_secs_f64() % width;
    let last = counts.len().saturating_sub(1);
    counts
        .iter()
        .enumerate()
        .map(|(i, count)| {
            let seconds = if i == last { current.max(1.0) } else { width };
            count.map(|n| n as f64 / seconds)
        })
        .collect()
}

/// The cache hit ratio in each chart bucket, in percent, over every slot's lookups; None
/// where there was no lookup.
fn hit_ratio<'a>(slots: impl Iterator<Item = &'a BackendCounters>, now: u64) -> Vec<Option<f64>> {
    let mut served = vec![0u64; CHART_BUCKETS];
    let mut lookups = vec![0u64; CHART_BUCKETS];
    for c in slots {
        let add = |sums: &mut Vec<u64>, counts: Vec<Option<u64>>| {
            for (sum, n) in sums.iter_mut().zip(counts) {
                *sum += n.unwrap_or(0);
            }
        };
        add(&mut served, c.cache_served.counts(now));
        add(&mut lookups, c.cache_lookups.counts(now));
    }
    served
        .iter()
        .zip(&lookups)
        .map(|(&hit, &all)| (all > 0).then(|| 100.0 * hit as f64 / all as f64))
        .collect()
}

fn millis(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".to_string(),
        |d| format!("{:.1} ms", d.as_secs_f64() * 1000.0),
    )
}

fn json_millis(d: Option<Duration>) -> String {
    d.map_or_else(
        || "null".to_string(),
        |d| format!("{:.3}", d.as_secs_f64() * 1000.0),
    )
}

fn clock(t: SystemTime) -> String {
    DateTime::<Local>::from(t).format("%H:%M:%S").to_string()
}

fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

fn human_bytes(n: u64) -> String {
    match n {
        0..=1023 => format!("{n} B"),
        1024..=1_048_575 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / 1_048_576.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CacheStatus;
    use crate::http::request_id::RequestId;
    use crate::proxy::balancer::Health;
    use crate::proxy::stats::{lock, RequestRecord, Stats};
    use std::sync::Arc;

    fn backend(address: &str, health: Health) -> BackendView {
        BackendView {
            address: address.to_string(),
            weight: 1,
            backup: false,
            admin: Admin::Active,
            active: 0,
            health,
        }
    }

    fn row(address: &str, health: Health, stats: &Stats) -> BackendRow {
        let counters = lock(&stats.counters(address)).clone();
        BackendRow {
            view: backend(address, health),
            last_minute: counters.window.sum(stats.second()),
            counters,
        }
    }

    fn view() -> StatusView {
        let stats = Stats::new();
        let counters = stats.counters("127.0.0.1:8081");
        let request = RequestRecord {
            time: SystemTime::now(),
            client: "127.0.0.1:5000".parse().unwrap(),
            request_line: "GET /<script>alert(1)</script> HTTP/1.1".to_string(),
            backend: Some(Arc::from("127.0.0.1:8081")),
            status: Some(200),
            cache: Some(CacheStatus::Miss),
            elapsed: Duration::from_millis(3),
            request_id: RequestId::parse("a1b2c3").unwrap(),
            upstream_bytes: 2,
        };
        stats.record(request.clone(), Some(&counters));
        for cache in [
            CacheStatus::Stale,
            CacheStatus::StaleIfError,
            CacheStatus::StaleIfError,
        ] {
            let stale = RequestRecord {
                cache: Some(cache),
                backend: None,
                ..request.clone()
            };
            stats.record(stale, None);
        }
        stats.purged(4);
        let ended = stats.open_tunnel();
        let open = stats.open_tunnel();
        drop(ended);
        let snapshot = stats.snapshot();
        drop(open);
        let now = Instant::now();
        let down = Health {
            fails: 1,
            down_until: Some(now + Duration::from_secs(5)),
            reason: Some("connection refused \"x\"".to_string()),
            probe_down: false,
            down_since: Some(now),
        };
        StatusView {
            stats: snapshot,
            pools: vec![PoolView {
                name: DEFAULT_POOL.to_string(),
                backends: vec![
                    row("127.0.0.1:8081", Health::default(), &stats),
                    row("127.0.0.1:8082", down, &stats),
                ],
            }],
            balance: Balance::LeastConn,
            generation: 1,
            threads: Some(9),
            status_path: "/relevo/status".to_string(),
            cache: Some((3, 2048, 1)),
            now,
            now_wall: SystemTime::now(),
        }
    }

    #[test]
    fn html_shows_backends_cache_and_requests_and_escapes_client_text() {
        let html = render_html(&view());
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"2\">"));
        assert!(html.contains("127.0.0.1:8081</td><td><span class=\"up\">up</span>"));
        assert!(html.contains("<span class=\"down\">down</span> since"));
        assert!(html.contains("connection refused &quot;x&quot;"));
        assert!(html.contains("3 entries, 2.0 KiB"));
        assert!(html.contains("1 misses (1 not admitted), 0 bypassed"));
        assert!(html.contains(
            "served stale: 1 while refreshing, 2 with the backends failing &middot; purges: 1 \
             (4 responses removed)"
        ));
        assert!(html.contains("action=\"/relevo/status/purge\">Purge a path on every host"));
        assert!(html.contains("<input name=\"url\""));
        assert!(html.contains("1 WebSocket tunnel open (2 since start)"));
        assert!(html.contains("GET /&lt;script&gt;alert(1)&lt;/script&gt; HTTP/1.1"));
        assert!(!html.contains("<script>"));
    }

    #[test]
    fn json_has_the_same_data_and_valid_strings() {
        let json = render_json(&view());
        assert!(json.starts_with("{\"uptime_seconds\":"));
        assert!(json.contains(
            "\"threads\":9,\"balance\":\"least_conn\",\"generation\":1,\"tunnels\":{\"open\":1,\
             \"total\":2},\"pools\":[\"default\"],\"backends\":["
        ));
        assert!(json.contains(
            "\"address\":\"127.0.0.1:8081\",\"state\":\"up\",\"weight\":1,\"backup\":false,\
             \"active\":0,\"down_since\":null"
        ));
        assert!(json.contains("\"requests\":1,\"last_minute\":1,\"share\":1.0000,"));
        assert!(json.contains("\"state\":\"down\""));
        assert!(json.contains("\"reason\":\"connection refused \\\"x\\\"\""));
        assert!(json.contains(
            "\"cache\":{\"entries\":3,\"bytes\":2048,\"hits\":0,\"misses\":1,\"not_admitted\":1,"
        ));
        assert!(json.contains("\"stale\":1,\"stale_if_error\":2,\"purges\":1,\"purged\":4,"));
        assert!(json.contains("\"request\":\"GET /<script>alert(1)</script> HTTP/1.1\""));
        assert!(json
            .contains("\"backend\":\"127.0.0.1:8081\",\"status\":200,\"cache\":\"MISS\",\"ms\":3"));
        assert!(json.trim_end().ends_with("]}"));
    }

    #[test]
    fn a_disabled_cache_shows_as_off_and_null() {
        let mut v = view();
        v.cache = None;
        assert!(render_html(&v).contains("<h2>Cache</h2>\n<p>off</p>"));
        assert!(render_json(&v).contains("\"cache\":null"));
    }

    #[test]
    fn each_backend_has_its_weight_load_share_and_buttons() {
        let mut v = view();
        v.pools[0].backends[0].view.weight = 3;
        v.pools[0].backends[0].view.active = 2;
        v.pools[0].backends[1].view.admin = Admin::Disabled;
        v.pools[0].backends[1].view.backup = true;
        let html = render_html(&v);
        assert!(
            html.contains("9 threads &middot; balance least_conn"),
            "{html}"
        );
        assert!(
            html.contains("127.0.0.1:8081</td><td><span class=\"up\">up</span></td><td>3</td><td>2</td><td>100%</td>"),
            "{html}"
        );
        assert!(html.contains(
            "127.0.0.1:8082 <small>backup</small></td><td><span class=\"disabled\">disabled</span> \
             &middot; down since"
        ));
        assert!(html.contains(
            "<form method=\"post\" action=\"/relevo/status/backends\"><input type=\"hidden\" \
             name=\"backend\" value=\"127.0.0.1:8081\"><button name=\"action\" value=\"drain\">\
             drain</button><button name=\"action\" value=\"disable\">disable</button><button \
             name=\"action\" value=\"enable\" disabled>enable</button></form>"
        ));
        assert!(html.contains(
            "<button name=\"weight\" value=\"2\">weight &minus;1</button><button name=\"weight\" \
             value=\"4\">+1</button>"
        ));
        assert!(html.contains("<button name=\"weight\" value=\"0\" disabled>weight &minus;1"));
        assert!(!html.contains("<script"), "no script on the page");
        let json = render_json(&v);
        assert!(json.contains(
            "\"state\":\"disabled\",\"weight\":1,\"backup\":true,\"active\":0,\"down_since\":\""
        ));
        assert!(json.contains("\"state\":\"up\",\"weight\":3,\"backup\":false,\"active\":2,"));
    }

    #[test]
    fn a_drained_backend_shows_draining_while_requests_are_in_flight() {
        let mut v = view();
        v.pools[0].backends[0].view.admin = Admin::Draining;
        v.pools[0].backends[0].view.active = 1;
        assert!(render_html(&v).contains("<span class=\"draining\">draining</span>"));
        assert!(render_json(&v).contains("\"state\":\"draining\""));
        v.pools[0].backends[0].view.active = 0;
        assert!(render_json(&v).contains("\"address\":\"127.0.0.1:8081\",\"state\":\"disabled\""));
        v.threads = None;
        assert!(render_json(&v).contains("\"threads\":null"));
    }

    #[test]
    fn each_pool_has_its_table_shares_and_forms_naming_it() {
        let mut v = view();
        let stats = Stats::new();
        v.pools.push(PoolView {
            name: "api".to_string(),
            backends: vec![row("127.0.0.1:9001", Health::default(), &stats)],
        });
        let html = render_html(&v);
        assert!(html.contains("<h2>Pool default</h2>"), "{html}");
        assert!(html.contains("<h2>Pool api</h2>"), "{html}");
        assert!(!html.contains("<h2>Backends</h2>"));
        assert!(html.contains(
            "action=\"/relevo/status/backends\"><input type=\"hidden\" name=\"pool\" \
             value=\"api\"><input type=\"hidden\" name=\"backend\" value=\"127.0.0.1:9001\">"
        ));
        let json = render_json(&v);
        assert!(json.contains("\"pools\":[\"default\",\"api\"]"), "{json}");
        assert!(json.contains("{\"address\":\"127.0.0.1:9001\",\"state\":\"up\""));
        assert!(json.contains("\"p99_ms\":null,\"pool\":\"api\"}"), "{json}");
        assert_eq!(
            v.pools[0].share(0),
            Some(1.0),
            "the default pool answered one request"
        );
        assert_eq!(v.pools[1].share(0), None, "the api pool answered none");
    }

    #[test]
    fn the_page_draws_three_charts_inline_and_shows_request_ids() {
        let v = view();
        let html = render_html(&v);
        assert_eq!(
            html.matches("<svg xmlns=\"http://www.w3.org/2000/svg\"")
                .count(),
            3
        );
        assert!(html.contains("<h2>Last 5 minutes</h2>"), "{html}");
        for title in [
            "Requests per second",
            "Cache hit ratio",
            "Response times since start",
        ] {
            assert!(html.contains(&format!("<title>{title}")), "{title}");
        }
        // The one request (3 ms, a miss on the first backend): its bar and its id.
        assert!(
            html.contains("<title>127.0.0.1:8081: 1 (5ms)</title>"),
            "{html}"
        );
        assert!(
            html.contains("<td class=\"req\">a1b2c3</td></tr>"),
            "{html}"
        );
        assert!(!html.contains("<script") && !html.contains("src=\"http"));
        assert!(render_json(&v).contains("\"ms\":3,\"request_id\":\"a1b2c3\"}"));
        let mut off = v;
        off.cache = None;
        let html = render_html(&off);
        assert_eq!(
            html.matches("<svg").count(),
            2,
            "no hit ratio without a cache"
        );
    }

    #[test]
    fn rates_are_per_second_and_the_current_bucket_counts_its_own_time() {
        let counts = [None, Some(10), Some(0), Some(3)];
        // 12.5 s after start: the current bucket (10 s to 15 s) has run 2.5 s.
        let rates = per_second(&counts, Duration::from_millis(12_500));
        assert_eq!(rates, [None, Some(2.0), Some(0.0), Some(1.2)]);
        // At its very start, a bucket counts as one second, not as a spike.
        let rates = per_second(&[Some(4)], Duration::from_secs(15));
        assert_eq!(rates, [Some(4.0)]);
    }

    #[test]
    fn the_hit_ratio_adds_up_every_slot_and_is_missing_without_lookups() {
        let stats = Stats::new();
        let b0 = stats.counters("b0:1");
        let at = |backend: bool, cache| {
            let record = RequestRecord {
                time: SystemTime::now(),
                client: "127.0.0.1:5000".parse().unwrap(),
                request_line: "GET / HTTP/1.1".to_string(),
                backend: backend.then(|| Arc::from("b0:1")),
                status: Some(200),
                cache: Some(cache),
                elapsed: Duration::from_millis(1),
                request_id: RequestId::fresh(),
                upstream_bytes: 0,
            };
            stats.record(record, backend.then_some(&*b0));
        };
        at(true, CacheStatus::Miss);
        at(false, CacheStatus::Hit);
        at(false, CacheStatus::Hit);
        at(true, CacheStatus::Bypass);
        let snap = stats.snapshot();
        let now = snap.uptime.as_secs();
        let b0 = lock(&b0).clone();
        let ratio = hit_ratio([&b0, &snap.unrouted].into_iter(), now);
        assert_eq!(ratio.len(), CHART_BUCKETS);
        let last = ratio.last().copied().flatten().unwrap();
        assert!((last - 200.0 / 3.0).abs() < 1e-9, "{last}");
        assert_eq!(ratio[0], None, "no lookup five minutes ago");
    }
}
