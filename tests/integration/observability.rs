//! Seeing what the proxy does, end to end: the metrics page read by Prometheus' own parser
//! (the `prometheus_client` Python package), the JSON access log read by Python's `json`,
//! and one request followed by its `X-Request-Id` from the client to the backend's log and
//! back, through the response, the proxy's log, both access log formats and the status page.

use std::collections::HashMap;

use crate::support::*;

/// A cacheable answer, so repeated GETs become hits.
const CACHEABLE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nCache-Control: max-age=60\r\n\r\nok";

/// One sample as the Python parser read it.
#[derive(Debug)]
struct Sample {
    family: String,
    kind: String,
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

/// Reads `text` with `prometheus_client`'s `text_string_to_metric_families`: every sample,
/// or None (after `skip_or_fail`) without the package. A text the parser refuses fails.
fn parse_metrics(text: &str) -> Option<Vec<Sample>> {
    let python = python_modules(&["prometheus_client.parser"])?;
    let dir = TempDir::new("metrics-parse");
    std::fs::write(dir.join("metrics.txt"), text).unwrap();
    // One line per sample: family, type, sample name, labels (k=v, by ","), value.
    let script = "import sys\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        for f in text_string_to_metric_families(open(sys.argv[1]).read()):\n\
        \x20   for s in f.samples:\n\
        \x20       labels = ','.join(k + '=' + v for k, v in sorted(s.labels.items()))\n\
        \x20       print('\\t'.join([f.name, f.type, s.name, labels, repr(s.value)]))\n";
    let out = command_in(&dir, python)
        .arg("-c")
        .arg(script)
        .arg(dir.join("metrics.txt"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "prometheus_client refused the metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let labels = f[3]
                .split(',')
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let (k, v) = l.split_once('=').unwrap();
                    (k.to_string(), v.to_string())
                })
                .collect();
            Sample {
                family: f[0].to_string(),
                kind: f[1].to_string(),
                name: f[2].to_string(),
                labels,
                value: f[4].parse().unwrap(),
            }
        })
        .collect();
    Some(samples)
}

/// The sum of the samples called `name` whose labels include every pair of `with`.
fn total(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            with.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

#[test]
fn the_metrics_are_read_by_prometheus_parser_and_count_what_happened() {
    let (a, b) = (Backend::fixed(CACHEABLE), Backend::fixed(CACHEABLE));
    let down = dead_address();
    let (_dir, proxy) = proxy_for(&[a.addr, b.addr, down], "");
    // Known traffic: six different pages (misses, one of them tried on the dead backend
    // first), three repeats of the first (hits), a POST (never cached), a 501.
    for n in 0..6 {
        assert_eq!(get(proxy.addr, &format!("/page/{n}")).status, 200);
    }
    for _ in 0..3 {
        assert_eq!(get(proxy.addr, "/page/0").header("x-cache"), Some("HIT"));
    }
    let post = b"POST /form HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx";
    assert_eq!(request(proxy.addr, post).status, 200);
    let connect = b"CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\nConnection: close\r\n\r\n";
    assert_eq!(request(proxy.addr, connect).status, 501);

    proxy.settle_connections();
    let page = get(proxy.addr, "/relevo/metrics");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let Some(samples) = parse_metrics(&page.text()) else {
        return;
    };
    let kinds: HashMap<&str, &str> = samples
        .iter()
        .map(|s| (s.family.as_str(), s.kind.as_str()))
        .collect();
    for (family, kind) in [
        ("relevo_requests", "counter"),
        ("relevo_request_duration_seconds", "histogram"),
        ("relevo_upstream_bytes", "counter"),
        ("relevo_backend_up", "gauge"),
        ("relevo_backend_active_requests", "gauge"),
        ("relevo_connections_active", "gauge"),
        ("relevo_threads", "gauge"),
        ("relevo_cache_entries", "gauge"),
        ("relevo_cache_bytes", "gauge"),
    ] {
        assert_eq!(kinds.get(family), Some(&kind), "{family}");
    }
    let requests = "relevo_requests_total";
    // Each backend is counted with what it really received: misses and the POST.
    for backend in [&a, &b] {
        let name = backend.addr.to_string();
        let got = backend.requests().len() as f64;
        let counted = total(
            &samples,
            requests,
            &[("backend", &name), ("pool", "default")],
        );
        assert_eq!(counted, got, "{name}");
        let misses = total(&samples, requests, &[("backend", &name), ("cache", "MISS")]);
        let posts = total(
            &samples,
            requests,
            &[("backend", &name), ("cache", "BYPASS")],
        );
        assert_eq!(misses + posts, got, "{name}");
        // The histogram counted the same requests, and +Inf holds them all.
        let series = [("backend", name.as_str())];
        let count = total(&samples, "relevo_request_duration_seconds_count", &series);
        assert_eq!(count, got, "{name}");
        let every = [("backend", name.as_str()), ("le", "+Inf")];
        assert_eq!(
            total(&samples, "relevo_request_duration_seconds_bucket", &every),
            got
        );
        assert_eq!(
            total(&samples, "relevo_upstream_bytes_total", &series),
            2.0 * got,
            "two body bytes a response"
        );
        assert_eq!(total(&samples, "relevo_backend_up", &series), 1.0);
    }
    assert_eq!(
        total(
            &samples,
            requests,
            &[("cache", "MISS"), ("status_class", "2xx")]
        ),
        6.0
    );
    let hits = [
        ("backend", "none"),
        ("cache", "HIT"),
        ("status_class", "2xx"),
    ];
    assert_eq!(total(&samples, requests, &hits), 3.0);
    let refused = [
        ("backend", "none"),
        ("status_class", "5xx"),
        ("cache", "BYPASS"),
    ];
    assert_eq!(total(&samples, requests, &refused), 1.0, "the 501");
    let dead = [("backend", down.to_string())];
    let dead: Vec<(&str, &str)> = dead.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        total(&samples, "relevo_backend_up", &dead),
        0.0,
        "marked down"
    );
    assert_eq!(total(&samples, "relevo_cache_entries", &[]), 6.0);
    assert!(total(&samples, "relevo_threads", &[]) >= 2.0);
    assert_eq!(
        total(&samples, "relevo_connections_active", &[]),
        1.0,
        "the scrape itself"
    );
    assert_eq!(
        (a.requests().len() + b.requests().len()),
        7,
        "the metrics page is never forwarded"
    );
}

#[test]
fn the_metrics_page_is_refused_outside_status_allow_and_can_be_turned_off() {
    let backend = Backend::fixed(CACHEABLE);
    let (_dir, closed) = proxy_for(&[backend.addr], "status_allow = 10.0.0.0/8\n");
    let refused = get(closed.addr, "/relevo/metrics");
    assert_eq!(refused.status, 403);
    assert!(!refused.text().contains("relevo_"), "{}", refused.text());
    assert!(backend.requests().is_empty(), "forwarded");
    let (_dir, off) = proxy_for(&[backend.addr], "metrics_path = off\ncache = off\n");
    assert_eq!(get(off.addr, "/relevo/metrics").text(), "ok");
    assert_eq!(
        backend.requests().len(),
        1,
        "an ordinary path once it is off"
    );
    let (_dir, moved) = proxy_for(&[backend.addr], "metrics_path = /m\n");
    assert!(get(moved.addr, "/m")
        .text()
        .contains("# TYPE relevo_requests_total counter"));
}

/// Requests that could break a log line, as raw bytes, each with Connection: close.
fn hostile_requests() -> Vec<Vec<u8>> {
    let mut requests: Vec<Vec<u8>> = vec![
        b"GET /plain HTTP/1.1\r\nHost: t\r\nUser-Agent: curl/8.0\r\n".to_vec(),
        b"GET /q\"uo\\te/{x}?a=%0A%22 HTTP/1.1\r\nHost: t\r\n".to_vec(),
        b"GET /ua HTTP/1.1\r\nHost: t\r\nUser-Agent: evil\"}\t\xc2\x85\xc3\xa9\xff\\\r\n".to_vec(),
        b"GET /ref HTTP/1.1\r\nHost: t\r\nReferer: \"},{\"forged\":1,\"x\":\"\r\n".to_vec(),
    ];
    for r in &mut requests {
        r.extend_from_slice(b"Connection: close\r\n\r\n");
    }
    requests
}

#[test]
fn every_json_access_log_line_is_one_object_a_json_parser_reads() {
    let backend = Backend::fixed(CACHEABLE);
    let (dir, proxy) = proxy_for(&[backend.addr], "access_log_format = json\n");
    let mut ids = Vec::new();
    for raw in hostile_requests() {
        ids.push(
            request(proxy.addr, &raw)
                .header("x-request-id")
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(request(proxy.addr, b"BROKEN\r\n\r\n").status, 400);
    let hit = request(
        proxy.addr,
        b"GET /plain HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(hit.header("x-cache"), Some("HIT"));
    ids.push(hit.header("x-request-id").unwrap().to_string());
    drop(proxy);
    let log = dir.join("logs/access.log");
    let script = "import json, sys, datetime\n\
        keys = ['time', 'client', 'method', 'target', 'protocol', 'status', 'bytes', 'referer',\n\
        \x20       'user_agent', 'upstream', 'pool', 'cache', 'ms', 'request_id']\n\
        for line in open(sys.argv[1], encoding='utf-8'):\n\
        \x20   o = json.loads(line)\n\
        \x20   assert list(o) == keys, list(o)\n\
        \x20   datetime.datetime.fromisoformat(o['time'])\n\
        \x20   print(ascii([o[k] for k in keys[2:]]))\n";
    let Some(out) = python(&dir, script, &[log.to_str().unwrap()]) else {
        return;
    };
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "one line per request: {out}");
    let b = backend.addr;
    // method, target, protocol, status, bytes, referer, user_agent, upstream, pool, cache,
    // ms (left out: it varies), request_id; as Python's ascii() prints them.
    let expected = [
        format!("['GET', '/plain', 'HTTP/1.1', 200, 2, None, 'curl/8.0', '{b}', 'default', 'MISS',"),
        format!("['GET', '/q\"uo\\\\te/{{x}}?a=%0A%22', 'HTTP/1.1', 200, 2, None, None, '{b}', 'default', 'MISS',"),
        // The UTF-8 é is read as é, the C1 control kept (escaped in the file), the lone
        // 0xFF replaced.
        format!("['GET', '/ua', 'HTTP/1.1', 200, 2, None, 'evil\"}}\\t\\x85\\xe9\\ufffd\\\\', '{b}', 'default', 'MISS',"),
        format!("['GET', '/ref', 'HTTP/1.1', 200, 2, '\"}},{{\"forged\":1,\"x\":\"', None, '{b}', 'default', 'MISS',"),
        "[None, None, None, 400, ".to_string(),
        "['GET', '/plain', 'HTTP/1.1', 200, 2, None, None, None, 'default', 'HIT',".to_string(),
    ];
    for (line, start) in lines.iter().zip(&expected) {
        assert!(line.starts_with(start.as_str()), "{line}\nexpected {start}");
    }
    for (line, id) in lines.iter().zip(ids.iter().take(4)) {
        assert!(line.ends_with(&format!(", '{id}']")), "{line} lacks {id}");
    }
    assert!(lines[5].ends_with(&format!(", '{}']", ids[4])));
    let raw = std::fs::read_to_string(&log).unwrap();
    assert!(
        !raw.contains("\"forged\":1,") && raw.contains("\\ufffd"),
        "{raw}"
    );
}

/// The value of `id=` in a log line.
fn logged_id(line: &str) -> &str {
    let (_, rest) = line
        .split_once(" id=")
        .unwrap_or_else(|| panic!("no id in {line}"));
    rest.split(' ').next().unwrap()
}

/// The lines of `text` that mention `needle`.
fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

/// The last field of the combined access log's line for `path`: the request id.
fn access_log_id(dir: &TempDir, path: &str) -> String {
    let log = std::fs::read_to_string(dir.join("logs/access.log")).unwrap();
    let lines = lines_with(&log, &format!("\"GET {path} HTTP/1.1\""));
    assert_eq!(lines.len(), 1, "{log}");
    lines[0].rsplit(' ').next().unwrap().to_string()
}

#[test]
fn one_request_id_from_the_client_to_the_backends_log_and_back() {
    let server = webserver("server-1");
    let dir = TempDir::new("request-id");
    let proxy = proxy(
        &dir,
        &format!("cache = off\n{}", backend_lines(&[server.addr])),
    );
    let reply = get(proxy.addr, "/index.html");
    assert_eq!(reply.status, 200);
    let id = reply
        .header("x-request-id")
        .expect("the response carries the id")
        .to_string();
    assert!(
        id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );

    let status = get(proxy.addr, "/relevo/status?format=json").text();
    assert!(
        status.contains(&format!("\"request_id\":\"{id}\"")),
        "{status}"
    );
    assert!(get(proxy.addr, "/relevo/status")
        .text()
        .contains(&format!(">{id}</td>")));
    drop(proxy);
    // The web server's log, the proxy's log and the access log name the same id.
    let served = server.output();
    let seen = lines_with(&served, "\"GET /index.html HTTP/1.1\"");
    assert_eq!(seen.len(), 1, "{served}");
    assert_eq!(logged_id(seen[0]), id, "the backend got another id");
    let log = proxy_log(&dir);
    let logged = lines_with(&log, "\"GET /index.html HTTP/1.1\"");
    assert_eq!(logged_id(logged[0]), id, "{log}");
    assert_eq!(access_log_id(&dir, "/index.html"), id);
}

#[test]
fn a_clients_valid_id_is_kept_and_an_invalid_one_replaced() {
    let backend = Backend::fixed(CACHEABLE);
    let dir = TempDir::new("client-ids");
    let proxy = proxy(&dir, &backend_lines(&[backend.addr]));
    let with_id = |path: &str, ids: &[&str]| {
        let fields: String = ids
            .iter()
            .map(|id| format!("X-Request-Id: {id}\r\n"))
            .collect();
        let raw = format!("GET {path} HTTP/1.1\r\nHost: t\r\n{fields}Connection: close\r\n\r\n");
        let reply = request(proxy.addr, raw.as_bytes());
        reply.header("x-request-id").unwrap().to_string()
    };
    let longest = "k".repeat(64);
    for (path, id) in [("/kept-1", "trace.42_A-b~c"), ("/kept-2", longest.as_str())] {
        assert_eq!(with_id(path, &[id]), id);
        let upstream = String::from_utf8_lossy(backend.requests().last().unwrap()).into_owned();
        assert_eq!(upstream.matches("X-Request-Id: ").count(), 1, "{upstream}");
        assert!(
            upstream.contains(&format!("\r\nX-Request-Id: {id}\r\n")),
            "{upstream}"
        );
    }
    let too_long = "k".repeat(65);
    let invalid = [
        ("/bad-1", vec![too_long.as_str()]),
        ("/bad-2", vec!["has space"]),
        ("/bad-3", vec!["a/b"]),
        ("/bad-4", vec!["quo\"te"]),
        ("/bad-5", vec!["one", "two"]),
    ];
    for (path, ids) in &invalid {
        let given = with_id(path, ids);
        assert!(
            given.len() == 16 && !ids.contains(&given.as_str()),
            "{path}: {given}"
        );
        let upstream = String::from_utf8_lossy(backend.requests().last().unwrap()).into_owned();
        assert_eq!(upstream.matches("X-Request-Id: ").count(), 1, "{upstream}");
        assert!(
            upstream.contains(&format!("\r\nX-Request-Id: {given}\r\n")),
            "{upstream}"
        );
        assert_eq!(access_log_id(&dir, path), given);
    }
}

#[test]
fn error_replies_and_cache_hits_carry_an_id_of_their_own() {
    let backend = Backend::fixed(CACHEABLE);
    let dir = TempDir::new("reply-ids");
    let proxy = proxy(
        &dir,
        &format!("methods = GET HEAD\n{}", backend_lines(&[backend.addr])),
    );
    let miss = get(proxy.addr, "/cached");
    let hit = get(proxy.addr, "/cached");
    assert_eq!(hit.header("x-cache"), Some("HIT"));
    let (miss_id, hit_id) = (miss.header("x-request-id"), hit.header("x-request-id"));
    assert!(
        hit_id.is_some() && hit_id != miss_id,
        "{miss_id:?} {hit_id:?}"
    );
    let refused = request(
        proxy.addr,
        b"DELETE /x HTTP/1.1\r\nHost: t\r\nX-Request-Id: my-delete\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(refused.status, 501);
    assert_eq!(refused.header("x-request-id"), Some("my-delete"));
    let bad = request(proxy.addr, b"GET / HTTP/9.9\r\n\r\n");
    assert!(bad.status >= 400);
    let bad_id = bad
        .header("x-request-id")
        .expect("even a bad request has an id");
    drop(proxy);
    let log = proxy_log(&dir);
    let refused_line = lines_with(&log, "\"DELETE /x HTTP/1.1\"");
    assert_eq!(logged_id(refused_line[0]), "my-delete", "{log}");
    assert_eq!(lines_with(&log, &format!("id={bad_id}")).len(), 1, "{log}");
}
