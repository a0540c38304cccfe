//! Active health checks: with `health_check = /path`, a background thread sends
//! `GET /path` to every backend every `health_interval` and tells the balancer what it saw.
//!
//! A backend is up when it answers with a 2xx or 3xx status within the usual timeouts, and
//! down otherwise (refused, timed out, malformed, 4xx or 5xx). A failed probe keeps a
//! backend out of the rotation until a probe succeeds (see `balancer::Health`). Only changes
//! of state are logged, so a healthy cluster stays quiet. Passive checks (counting failed
//! requests) work with or without this.

use std::io::BufWriter;
use std::io::Write;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::http::parse::{self, Limits};
use crate::http::{serialize, Request};
use crate::proxy::balancer::Balancer;
use crate::proxy::config::Backend;
use crate::proxy::upstream::Connection;

/// Stack size of the probing thread.
pub const PROBE_STACK_SIZE: usize = 128 * 1024;

/// When and how to probe.
#[derive(Clone, Debug)]
pub struct ProbeSettings {
    /// Path requested on every backend.
    pub path: String,
    /// Time between two rounds of probes.
    pub interval: Duration,
    /// Time allowed to connect.
    pub connect_timeout: Duration,
    /// Time allowed for each read and write.
    pub io_timeout: Duration,
}

/// The probing thread, created but not probing until [`HealthChecks::start`]: start-up
/// creates it before it prints `listening on`, and its first log line must come after.
pub struct HealthChecks {
    go: mpsc::Sender<()>,
}

impl HealthChecks {
    /// Lets the thread begin its rounds. (Dropping this instead ends the thread.)
    pub fn start(self) {
        // The thread only ends when this sender is gone, so the send cannot fail.
        let _ = self.go.send(());
    }
}

/// Creates the probing thread. Once started, it runs for the life of the process.
///
/// # Errors
/// When the thread cannot be created.
pub fn spawn(balancer: Arc<Balancer>, settings: ProbeSettings) -> std::io::Result<HealthChecks> {
    let (go, started) = mpsc::channel();
    thread::Builder::new()
        .name("health-check".to_string())
        .stack_size(PROBE_STACK_SIZE)
        .spawn(move || {
            if started.recv().is_ok() {
                probe_forever(&balancer, &settings);
            }
        })?;
    Ok(HealthChecks { go })
}

/// Probes every backend, then sleeps `settings.interval`, for ever; logs changes of state.
fn probe_forever(balancer: &Balancer, settings: &ProbeSettings) {
    loop {
        for (id, backend) in balancer.backends().iter().enumerate() {
            let outcome = probe(backend, settings);
            let why = outcome.as_ref().err().map_or("", String::as_str);
            if balancer.record_probe(id, outcome.is_ok(), Instant::now(), why) {
                match &outcome {
                    Ok(()) => log::info!("backend {backend} is up (health check)"),
                    Err(why) => log::warn!("backend {backend} is down (health check: {why})"),
                }
            }
        }
        thread::sleep(settings.interval);
    }
}

/// One probe: `GET path` with `Connection: close`; Ok for a 2xx or 3xx final status.
pub fn probe(backend: &Backend, settings: &ProbeSettings) -> Result<(), String> {
    let mut conn = Connection::open(backend, settings.connect_timeout, settings.io_timeout)
        .map_err(|e| format!("unreachable: {e}"))?;
    let mut request = Request::new("GET", &settings.path);
    request.headers.append("Host", backend.authority());
    request.headers.append("User-Agent", "relevo-health-check");
    request.headers.append("Connection", "close");
    let mut out = BufWriter::new(conn.writer());
    serialize::write_request_head(&mut out, &request)
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot send the probe: {e}"))?;
    drop(out);
    let response = parse::read_final_response(conn.reader(), &Limits::default(), |_| Ok(()))
        .map_err(|e| e.to_string())?;
    match response.status {
        200..=399 => Ok(()),
        status => Err(format!("answered {status}")),
    }
}
