//! The status page step of the proxy (see `proxy`): `status_path` and `metrics_path`
//! answered by the proxy itself, never forwarded, to the addresses `status_allow` lets in.
//! What they show is gathered by `stats` and rendered by `status` (HTML, JSON) and
//! `metrics` (Prometheus); what the page's buttons post is `admin`'s, which shares `send`
//! and the address check.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use super::config::Config;
use super::generation::Generation;
use super::stats::lock;
use super::{Proxy, Record};
use crate::error::{Error, Result, Side};
use crate::http::request_id::REQUEST_ID_FIELD;
use crate::http::serialize;
use crate::http::{text_response, Request, Response};
use crate::proxy::metrics;
use crate::proxy::status::{self, BackendRow, PoolView, StatusView};
use crate::server;

impl Proxy {
    /// Step 2, for the status page: answered by the proxy itself, never forwarded, and only
    /// to the clients `status_allow` lets in (403 for the others). `?format=json` gives the
    /// same data as JSON.
    pub(super) fn serve_status(
        &self,
        gen: &Generation,
        out: impl Write,
        peer: SocketAddr,
        request: &Request,
        query: Option<&str>,
        record: &mut Record,
    ) -> Result<()> {
        let json = query.is_some_and(|q| q.split('&').any(|p| p == "format=json"));
        let allowed = open_to(&gen.config, peer);
        own_page(out, request, allowed, "the status page", record, || {
            let view = self.status_view(gen);
            if json {
                ("application/json", status::render_json(&view))
            } else {
                ("text/html; charset=utf-8", status::render_html(&view))
            }
        })
    }

    /// The metrics page, as the status page: `GET {metrics_path}`, the same figures in the
    /// Prometheus text format (see `metrics`), to the same addresses.
    pub(super) fn serve_metrics(
        &self,
        gen: &Generation,
        out: impl Write,
        peer: SocketAddr,
        request: &Request,
        record: &mut Record,
    ) -> Result<()> {
        let allowed = open_to(&gen.config, peer);
        own_page(out, request, allowed, "the metrics page", record, || {
            (
                metrics::CONTENT_TYPE,
                metrics::render(&self.status_view(gen)),
            )
        })
    }

    /// Everything the status page shows, taken now, for the configuration `gen`.
    pub(super) fn status_view(&self, gen: &Generation) -> StatusView {
        let cache = self
            .cache
            .as_ref()
            .map(|c| (c.store.entries(), c.store.usage(), c.store.not_admitted()));
        let second = self.stats.second();
        let pools = gen
            .pools
            .iter()
            .map(|pool| PoolView {
                name: pool.name.clone(),
                backends: pool
                    .balancer
                    .view()
                    .into_iter()
                    .zip(&pool.counters)
                    .map(|(view, counters)| {
                        let counters = lock(counters).clone();
                        BackendRow {
                            view,
                            last_minute: counters.window.sum(second),
                            counters,
                        }
                    })
                    .collect(),
            })
            .collect();
        StatusView {
            stats: self.stats.snapshot(),
            pools,
            balance: gen.config.balance,
            generation: gen.number,
            threads: server::thread_count(),
            status_path: gen.config.status_path.clone().unwrap_or_default(),
            cache,
            now: Instant::now(),
            now_wall: SystemTime::now(),
        }
    }
}

/// A page the proxy answers itself, about itself: 403 to addresses outside `status_allow`
/// (`allowed` is false), 405 to methods other than GET and HEAD, else what `render` makes
/// (its content type and text). `what` names the page in the refusals.
fn own_page(
    out: impl Write,
    request: &Request,
    allowed: bool,
    what: &str,
    record: &mut Record,
    render: impl FnOnce() -> (&'static str, String),
) -> Result<()> {
    record.sent.keep_alive = request.keep_alive();
    let (status, content_type, body) = if !allowed {
        let text = format!("{what} is not open to your address");
        (
            403,
            "text/plain; charset=utf-8",
            text_response(403, &text).1,
        )
    } else if request.method != "GET" && request.method != "HEAD" {
        let text = format!("{what} answers GET and HEAD");
        (
            405,
            "text/plain; charset=utf-8",
            text_response(405, &text).1,
        )
    } else {
        let (content_type, text) = render();
        (200, content_type, text.into_bytes())
    };
    let mut response = Response::new(status);
    response.headers.append("Content-Type", content_type);
    if status == 405 {
        response.headers.append("Allow", "GET, HEAD");
    }
    send(out, request, response, &body, record)
}

/// Whether `request` is for the metrics page.
pub(super) fn is_metrics_request(config: &Config, request: &Request) -> bool {
    config
        .metrics_path
        .as_deref()
        .is_some_and(|metrics_path| path_and_query(request).0 == metrics_path)
}

/// Whether `status_allow` lets `peer` see the status page (and use its buttons).
pub(super) fn open_to(config: &Config, peer: SocketAddr) -> bool {
    config
        .status_allow
        .iter()
        .any(|net| net.contains(peer.ip()))
}

/// The path and query of a request for the status page, if it is one.
pub(super) fn status_query<'r>(config: &Config, request: &'r Request) -> Option<Option<&'r str>> {
    let status_path = config.status_path.as_deref()?;
    let (path, query) = path_and_query(request);
    (path == status_path).then_some(query)
}

/// The path and the query of a request's target, whichever its form.
pub(super) fn path_and_query(request: &Request) -> (&str, Option<&str>) {
    let target = match request.target.split_once("://") {
        // Absolute-form: skip the authority.
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => request.target.as_str(),
    };
    match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    }
}

/// Sends a response the proxy makes itself (the status page, an admin action's answer):
/// `response` with Content-Length, `Cache-Control: no-store`, the request's
/// `X-Request-Id` and, when `record.sent.keep_alive` is off, `Connection: close` added, then
/// `body` unless the request was a HEAD. Records what went out in `record.sent`.
///
/// # Errors
/// A failed write to the client.
pub(super) fn send(
    mut out: impl Write,
    request: &Request,
    mut response: Response,
    body: &[u8],
    record: &mut Record,
) -> Result<()> {
    response
        .headers
        .append("Content-Length", body.len().to_string());
    response.headers.append("Cache-Control", "no-store");
    response
        .headers
        .append(REQUEST_ID_FIELD, record.request_id.as_str());
    let sent = &mut record.sent;
    if !sent.keep_alive {
        response.headers.append("Connection", "close");
    }
    let mut bytes = serialize::response_head_bytes(&response);
    if request.method != "HEAD" {
        bytes.extend_from_slice(body);
        sent.bytes = body.len() as u64;
    }
    sent.status = Some(response.status);
    sent.head = true;
    out.write_all(&bytes)
        .and_then(|()| out.flush())
        .map_err(|e| Error::Io(Side::Client, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse::{read_request, read_response, Limits};
    use crate::http::request_id::RequestId;
    use crate::proxy::Sent;

    fn proxy() -> Proxy {
        let config = Config {
            access_log: None,
            cache: false,
            ..Config::default()
        };
        Proxy::new(config).unwrap()
    }

    /// The status page's answer to `raw` from `peer`, parsed, and what it recorded.
    fn page(raw: &str, peer: &str) -> (Response, String, Sent) {
        let proxy = proxy();
        let request = read_request(&mut raw.as_bytes(), &Limits::default())
            .unwrap()
            .unwrap();
        let gen = proxy.generation();
        let query = status_query(&gen.config, &request).expect("a status page request");
        let mut out = Vec::new();
        let mut record = Record {
            request_id: RequestId::decide(&request),
            ..Record::default()
        };
        let peer = peer.parse().unwrap();
        proxy
            .serve_status(&gen, &mut out, peer, &request, query, &mut record)
            .unwrap();
        let mut rest = &out[..];
        let head = read_response(&mut rest, &Limits::default()).unwrap();
        (
            head,
            String::from_utf8_lossy(rest).into_owned(),
            record.sent,
        )
    }

    #[test]
    fn the_page_is_html_or_json_and_never_stored() {
        let (head, body, sent) = page(
            "GET /relevo/status HTTP/1.1\r\nHost: h\r\n\r\n",
            "127.0.0.1:5",
        );
        assert_eq!(head.status, 200);
        assert_eq!(head.headers.get("cache-control"), Some("no-store"));
        assert!(body.starts_with("<!DOCTYPE html>"), "{body}");
        assert_eq!(sent.bytes, body.len() as u64);
        assert!(head
            .headers
            .get("x-request-id")
            .is_some_and(|id| id.len() >= 16));
        let (head, body, _) = page(
            "GET /relevo/status?format=json HTTP/1.1\r\nHost: h\r\n\r\n",
            "[::1]:5",
        );
        assert_eq!(head.headers.get("content-type"), Some("application/json"));
        assert!(
            body.starts_with('{') && body.contains("\"backends\""),
            "{body}"
        );
    }

    #[test]
    fn other_addresses_get_403_and_other_methods_405() {
        let (head, _, _) = page(
            "GET /relevo/status HTTP/1.1\r\nHost: h\r\n\r\n",
            "10.0.0.9:5",
        );
        assert_eq!(head.status, 403);
        let (head, _, _) = page(
            "GET /relevo/status HTTP/1.1\r\nHost: h\r\nX-Request-Id: mine-1\r\n\r\n",
            "10.0.0.9:5",
        );
        assert_eq!(
            head.headers.get("x-request-id"),
            Some("mine-1"),
            "a refusal has it too"
        );
        let (head, _, sent) = page(
            "DELETE /relevo/status HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            "127.0.0.1:5",
        );
        assert_eq!(head.status, 405);
        assert_eq!(head.headers.get("allow"), Some("GET, HEAD"));
        assert_eq!(head.headers.get("connection"), Some("close"));
        assert!(!sent.keep_alive);
    }

    #[test]
    fn only_the_configured_path_is_the_status_page() {
        let proxy = proxy();
        let target = |t: &str| {
            let raw = format!("GET {t} HTTP/1.1\r\nHost: h\r\n\r\n");
            let request = read_request(&mut raw.as_bytes(), &Limits::default())
                .unwrap()
                .unwrap();
            status_query(&proxy.generation().config, &request).map(|q| q.map(str::to_string))
        };
        assert_eq!(target("/relevo/status"), Some(None));
        assert_eq!(
            target("/relevo/status?format=json"),
            Some(Some("format=json".into()))
        );
        assert_eq!(target("http://h/relevo/status"), Some(None));
        assert_eq!(target("/relevo/statuses"), None);
        assert_eq!(target("/"), None);
    }
}
