//! Relevo against the references, case by case: the same hostile requests go through nginx,
//! HAProxy and Relevo, each in front of a backend that records what it receives.
//!
//! The rule checked: whenever nginx or HAProxy refuses a request, Relevo refuses it too, and
//! whatever Relevo refuses never reaches the backend, nor does the request pipelined behind
//! it. The table of outcomes is printed (run with `--nocapture` to see it). nginx and HAProxy
//! come from Debian's packages (`support::nginx_proxying_to`, `haproxy_proxying_to`);
//! `.ci/run` installs them. Without them the test says it skipped them, and fails instead
//! under `RELEVO_REQUIRE_EXTERNAL=1`.

use std::net::SocketAddr;

use crate::support::*;

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// Hostile requests: name, RFC rule, request head and body (`{N}` becomes the case number).
const CASES: &[(&str, &str, &str)] = &[
    ("CL.TE smuggling", "RFC 9112 §6.1", "POST /case-{N} HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG"),
    ("TE.CL smuggling", "RFC 9112 §6.1", "POST /case-{N} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n1\r\nZ\r\n0\r\n\r\n"),
    ("differing Content-Lengths", "RFC 9112 §6.3", "POST /case-{N} HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"),
    ("Content-Length not digits", "RFC 9110 §8.6", "POST /case-{N} HTTP/1.1\r\nHost: t\r\nContent-Length: +2\r\n\r\nab"),
    ("Content-Length overflow", "RFC 9110 §8.6", "POST /case-{N} HTTP/1.1\r\nHost: t\r\nContent-Length: 18446744073709551617\r\n\r\n"),
    ("chunked twice", "RFC 9112 §6.1", "POST /case-{N} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n"),
    ("final coding not chunked", "RFC 9112 §6.1", "POST /case-{N} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
    ("Transfer-Encoding on HTTP/1.0", "RFC 9112 §6.1", "POST /case-{N} HTTP/1.0\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("space before colon", "RFC 9112 §5.1", "POST /case-{N} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding : chunked\r\nContent-Length: 0\r\n\r\n"),
    ("obs-fold", "RFC 9112 §5.2", "GET /case-{N} HTTP/1.1\r\nHost: t\r\nX-A: a\r\n folded\r\n\r\n"),
    ("NUL in a field value", "RFC 9110 §5.5", "GET /case-{N} HTTP/1.1\r\nHost: t\r\nX-A: a\0b\r\n\r\n"),
    ("bare CR in a field value", "RFC 9112 §2.2", "GET /case-{N} HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n"),
    ("invalid field name", "RFC 9110 §5.1", "GET /case-{N} HTTP/1.1\r\nHost: t\r\nBad[Name]: x\r\n\r\n"),
    ("invalid method", "RFC 9110 §9.1", "G(T /case-{N} HTTP/1.1\r\nHost: t\r\n\r\n"),
    ("extra space in request line", "RFC 9112 §3", "GET  /case-{N} HTTP/1.1\r\nHost: t\r\n\r\n"),
    ("unknown version", "RFC 9112 §2.3", "GET /case-{N} HTTP/1.7\r\nHost: t\r\n\r\n"),
    ("missing Host", "RFC 9112 §3.2", "GET /case-{N} HTTP/1.1\r\n\r\n"),
    ("two Hosts", "RFC 9112 §3.2", "GET /case-{N} HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
    ("bad chunk size", "RFC 9112 §7.1", "POST /case-{N} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
    ("missing CRLF after chunk data", "RFC 9112 §7.1", "POST /case-{N} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n"),
    ("bare LF in chunk line", "RFC 9112 §7.1", "POST /case-{N} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"),
];

/// What became of one case at one proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// The proxy answered this status itself; nothing reached the backend.
    Refused(u16),
    /// The proxy closed the connection without an answer; nothing reached the backend.
    Dropped,
    /// The request reached the backend (with the status the client then got).
    Forwarded(Option<u16>),
}

impl Outcome {
    fn refused(self) -> bool {
        !matches!(self, Outcome::Forwarded(_))
    }

    fn cell(self) -> String {
        match self {
            Outcome::Refused(s) => format!("{s}"),
            Outcome::Dropped => "closed".to_string(),
            Outcome::Forwarded(Some(s)) => format!("forwarded ({s})"),
            Outcome::Forwarded(None) => "forwarded".to_string(),
        }
    }
}

/// Runs every case through the proxy at `addr`; `backend` is the one behind it.
fn outcomes(addr: SocketAddr, backend: &Backend) -> Vec<(Outcome, bool)> {
    CASES
        .iter()
        .enumerate()
        .map(|(n, (_, _, template))| {
            let mut raw = template.replace("{N}", &n.to_string()).into_bytes();
            raw.extend_from_slice(
                format!("GET /smuggled-{n} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes(),
            );
            let reply = exchange(addr, &raw);
            let status = std::str::from_utf8(reply.get(9..12).unwrap_or_default())
                .ok()
                .and_then(|s| s.parse().ok());
            let seen = |needle: &str| {
                backend
                    .requests()
                    .iter()
                    .any(|r| find(r, needle.as_bytes()).is_some())
            };
            let forwarded = seen(&format!("/case-{n} "));
            let smuggled = seen(&format!("/smuggled-{n} "));
            let outcome = match (forwarded, status) {
                (true, status) => Outcome::Forwarded(status),
                (false, Some(status)) => Outcome::Refused(status),
                (false, None) => Outcome::Dropped,
            };
            (outcome, smuggled)
        })
        .collect()
}

#[test]
fn relevo_refuses_whatever_nginx_or_haproxy_refuses_and_never_forwards_it() {
    let relevo_backend = Backend::fixed(OK);
    let (_dir, relevo) = proxy_for(&[relevo_backend.addr], "");
    let relevo_results = outcomes(relevo.addr, &relevo_backend);

    let mut references: Vec<(&str, Vec<(Outcome, bool)>)> = Vec::new();
    let nginx_backend = Backend::fixed(OK);
    if let Some(server) = nginx_proxying_to(nginx_backend.addr) {
        references.push(("nginx", outcomes(server.addr, &nginx_backend)));
    }
    let haproxy_backend = Backend::fixed(OK);
    if let Some(server) = haproxy_proxying_to(haproxy_backend.addr) {
        references.push(("HAProxy", outcomes(server.addr, &haproxy_backend)));
    }

    let mut table = String::from("| case | rule | Relevo |");
    for (name, _) in &references {
        table.push_str(&format!(" {name} |"));
    }
    table.push_str(&format!(
        "\n|---|---|---|{}\n",
        "---|".repeat(references.len())
    ));
    for (n, (case, rule, _)) in CASES.iter().enumerate() {
        let (ours, smuggled) = relevo_results[n];
        table.push_str(&format!("| {case} | {rule} | {} |", ours.cell()));
        for (_, results) in &references {
            table.push_str(&format!(" {} |", results[n].0.cell()));
        }
        table.push('\n');
        if ours.refused() {
            assert!(
                !smuggled,
                "{case}: Relevo refused it but the pipelined request got through"
            );
        }
        for (name, results) in &references {
            assert!(
                !results[n].0.refused() || ours.refused(),
                "{case}: {name} refuses it ({:?}) but Relevo forwarded it ({ours:?})",
                results[n].0
            );
        }
    }
    eprintln!("{table}");
}
