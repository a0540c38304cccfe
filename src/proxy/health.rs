//! Active health checks: with `health_check = /path`, a background thread sends
//! `GET /path` to every backend every `health_interval` and tells the balancer what it saw.
//!
//! A backend is up when it answers with a 2xx or 3xx status within the usual timeouts, and
//! down otherwise (refused, timed out, malformed, 4xx or 5xx). A failed probe keeps a
//! backend out of the rotation until a probe succeeds (see `balancer::Health`). Only changes
//! of state are logged, so a healthy cluster stays quiet. Passive checks (counting failed
//! requests) work with or without this.
//!
//! Each pool has its thread. It holds its balancer weakly, between rounds: when a reload
//! replaces the pool and the last request on the old one has finished, the thread ends.

use std::io::BufWriter;
use std::io::Write;
use std::sync::mpsc;
use std::sync::{Arc, Weak};
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

/// Creates the probing thread of one pool, whose backends the logs name by `labels`. Once
/// started, it runs as long as the pool's balancer does.
///
/// # Errors
/// When the thread cannot be created.
pub fn spawn(
    balancer: &Arc<Balancer>,
    labels: Vec<Arc<str>>,
    settings: ProbeSettings,
) -> std::io::Result<HealthChecks> {
    let (go, started) = mpsc::channel();
    let balancer = Arc::downgrade(balancer);
    thread::Builder::new()
        .name("health-check".to_string())
        .stack_size(PROBE_STACK_SIZE)
        .spawn(move || {
            if started.recv().is_ok() {
                probe_while_in_use(&balancer, &labels, &settings);
            }
        })?;
    Ok(HealthChecks { go })
}

/// Probes every backend, then sleeps `settings.interval`, as long as the balancer is in
/// use; logs changes of state.
fn probe_while_in_use(balancer: &Weak<Balancer>, labels: &[Arc<str>], settings: &ProbeSettings) {
    while let Some(balancer) = balancer.upgrade() {
        for (id, (target, backend)) in balancer.backends().iter().zip(labels).enumerate() {
            let outcome = probe(target, settings);
            let why = outcome.as_ref().err().map_or("", String::as_str);
            if balancer.record_probe(id, outcome.is_ok(), Instant::now(), why) {
                match &outcome {
                    Ok(()) => log::info!("backend {backend} is up (health check)"),
                    Err(why) => log::warn!("backend {backend} is down (health check: {why})"),
                }
            }
        }
        drop(balancer);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::str::FromStr;
    use std::time::Duration;

    /// A backend that answers one probe with `reply`, on 127.0.0.1.
    fn answering(reply: &'static [u8]) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(reply);
        });
        Backend {
            port,
            ..Backend::from_str("127.0.0.1:1").unwrap()
        }
    }

    fn settings() -> ProbeSettings {
        ProbeSettings {
            path: "/health".to_string(),
            interval: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_secs(2),
        }
    }

    #[test]
    fn a_2xx_or_3xx_is_up_after_any_interim_responses() {
        let ok = answering(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(probe(&ok, &settings()), Ok(()));
        let moved = answering(b"HTTP/1.1 302 Found\r\nLocation: /\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(probe(&moved, &settings()), Ok(()));
    }

    #[test]
    fn errors_garbage_and_endless_interim_responses_are_down() {
        let failing = answering(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(
            probe(&failing, &settings()),
            Err("answered 503".to_string())
        );
        let garbage = answering(b"SSH-2.0-OpenSSH\r\n\r\n");
        assert!(probe(&garbage, &settings()).is_err());
        let endless: &'static [u8] = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n";
        assert!(probe(&answering(endless), &settings()).is_err());
    }

    #[test]
    fn a_closed_port_is_unreachable() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let gone = Backend {
            port,
            ..Backend::from_str("127.0.0.1:1").unwrap()
        };
        assert!(probe(&gone, &settings())
            .unwrap_err()
            .starts_with("unreachable"));
    }
}
