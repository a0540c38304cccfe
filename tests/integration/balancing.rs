//! Balancing end to end: weights, least_conn, ip_hash, uri_hash (and two tiers of proxies on
//! it), random_two, backup backends, and the status page's drain / disable / enable, each
//! against the real proxy in front of scripted backends that say who answered.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::support::*;

/// How many times each name occurs.
fn tally(names: &[String]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for name in names {
        *counts.entry(name.clone()).or_insert(0) += 1;
    }
    counts
}

/// `POST /relevo/status/backends` with `form`, asking for a text answer, plus `extra`
/// header lines.
fn post_backends(proxy: SocketAddr, form: &str, extra: &str) -> Reply {
    request(
        proxy,
        format!(
            "POST /relevo/status/backends HTTP/1.1\r\nHost: {proxy}\r\nContent-Type: \
             application/x-www-form-urlencoded\r\nContent-Length: {}\r\nAccept: text/plain\r\n\
             Connection: close\r\n{extra}\r\n{form}",
            form.len()
        )
        .as_bytes(),
    )
}

/// `action` on the backend at `backend`, from 127.0.0.1; must succeed.
fn act(proxy: SocketAddr, backend: SocketAddr, action: &str) -> String {
    let reply = post_backends(proxy, &format!("backend={backend}&action={action}"), "");
    assert_eq!(reply.status, 200, "{action}: {}", reply.text());
    reply.text()
}

#[test]
fn balancing_weights_3_1_1_give_60_20_20_and_never_three_in_a_row_to_the_heavy_one() {
    let backends = [named("heavy"), named("light-1"), named("light-2")];
    let config = format!(
        "cache = off\nbackend = {} weight=3\nbackend = {}\nbackend = {}\n",
        backends[0].addr, backends[1].addr, backends[2].addr
    );
    let dir = TempDir::new("weights");
    let proxy = proxy(&dir, &config);
    let order: Vec<String> = (0..250).map(|_| served_by(proxy.addr, "/")).collect();
    let counts = tally(&order);
    eprintln!("weights 3:1:1 over 250 requests: {counts:?}");
    for (name, expected) in [("heavy", 150), ("light-1", 50), ("light-2", 50)] {
        let got = counts.get(name).copied().unwrap_or(0);
        assert!(
            got.abs_diff(expected) <= 12,
            "{name}: {got} of 250, expected {expected} ± 5 %: {counts:?}"
        );
    }
    let three_heavy = order
        .windows(3)
        .position(|w| w.iter().all(|n| n == "heavy"));
    assert_eq!(three_heavy, None, "three in a row to the heavy backend");
    assert!(proxy_log(&dir).contains(&format!("{} weight=3", backends[0].addr)));
}

#[test]
fn balancing_least_conn_keeps_a_busy_backend_out_while_it_is_busy() {
    let gate = gated(&["a", "b", "c"]);
    let (_dir, proxy) = proxy_for(&gate.addrs(), "cache = off\nbalance = least_conn\n");
    let (busy, held) = gate.hold(proxy.addr);
    let meanwhile: Vec<String> = (0..30).map(|_| served_by(proxy.addr, "/")).collect();
    let counts = tally(&meanwhile);
    eprintln!("least_conn, {busy} busy, 30 requests: {counts:?}");
    assert_eq!(counts.get(busy), None, "the busy backend got requests");
    assert_eq!(counts.values().copied().collect::<Vec<_>>(), [15, 15]);
    gate.release.send(()).unwrap();
    let reply = held.join().unwrap();
    assert_eq!((reply.status, reply.text()), (200, busy.to_string()));
    let after: Vec<String> = (0..6).map(|_| served_by(proxy.addr, "/")).collect();
    assert_eq!(tally(&after).get(busy), Some(&2), "back in turn once idle");
}

/// GETs from each of the source addresses 127.0.0.1 to 127.0.0.`argv[2]`, `argv[3]` times
/// each, to port `argv[1]` of 127.0.0.1; prints `ADDRESS SERVED-BY` per request.
const GET_FROM_MANY: &str = r#"
import socket, sys
port, last, times = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for i in range(1, last + 1):
    source = "127.0.0.%d" % i
    for _ in range(times):
        s = socket.socket()
        s.settimeout(20)
        s.bind((source, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        s.close()
        head = data.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
        served = [l.split(":", 1)[1].strip() for l in head if l.lower().startswith("x-served-by:")]
        print(source, served[0] if served else "-")
"#;

#[test]
fn balancing_ip_hash_is_sticky_per_address_and_spreads_across_addresses() {
    let backends = [named("a"), named("b"), named("c")];
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let (dir, proxy) = proxy_for(&addrs, "cache = off\nbalance = ip_hash\n");
    let port = proxy.addr.port().to_string();
    let Some(out) = python(&dir, GET_FROM_MANY, &[&port, "40", "3"]) else {
        return;
    };
    let mut by_address: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for line in out.lines() {
        let (source, served) = line.split_once(' ').unwrap();
        by_address.entry(source).or_default().push(served);
    }
    assert_eq!(by_address.len(), 40);
    let mut owners = Vec::new();
    for (source, served) in &by_address {
        assert_eq!(served.len(), 3);
        assert!(
            served.iter().all(|s| *s == served[0]),
            "{source}: {served:?}"
        );
        assert_ne!(served[0], "-");
        owners.push(served[0].to_string());
    }
    let counts = tally(&owners);
    eprintln!("ip_hash, 40 addresses: {counts:?}");
    assert_eq!(
        counts.len(),
        3,
        "40 addresses on fewer than 3 backends: {counts:?}"
    );
}

#[test]
fn balancing_uri_hash_sends_one_url_to_one_backend_and_a_backend_going_down_moves_only_its_urls() {
    let mut backends = vec![named("a"), named("b"), named("c")];
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let (_dir, proxy) = proxy_for(&addrs, "cache = off\nbalance = uri_hash\n");
    let urls: Vec<String> = (0..60).map(|k| format!("/page/{k}?v=1")).collect();
    let owners: Vec<String> = urls.iter().map(|u| served_by(proxy.addr, u)).collect();
    for (url, owner) in urls.iter().zip(&owners) {
        assert_eq!(&served_by(proxy.addr, url), owner, "{url} moved");
    }
    let counts = tally(&owners);
    eprintln!("uri_hash, 60 URLs: {counts:?}");
    assert_eq!(counts.len(), 3, "{counts:?}");
    drop(backends.remove(1)); // "b" goes down: its port now refuses.
    let after: Vec<String> = urls.iter().map(|u| served_by(proxy.addr, u)).collect();
    for ((url, was), is) in urls.iter().zip(&owners).zip(&after) {
        if was == "b" {
            assert_ne!(is, "b");
        } else {
            assert_eq!(was, is, "{url} moved although its backend stayed");
        }
    }
    let moved = tally(&after);
    eprintln!("uri_hash, b down: {moved:?}");
}

#[test]
fn balancing_random_two_gives_every_backend_a_fair_share() {
    let backends = [named("a"), named("b"), named("c")];
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let (_dir, proxy) = proxy_for(&addrs, "cache = off\nbalance = random_two\n");
    let served: Vec<String> = (0..250).map(|_| served_by(proxy.addr, "/")).collect();
    let counts = tally(&served);
    eprintln!("random_two over 250 requests: {counts:?}");
    assert_eq!(counts.len(), 3);
    for (name, count) in &counts {
        // A third is 83; the bounds are 4.5 standard deviations of a fair draw away.
        assert!((50..=117).contains(count), "{name}: {count} of 250");
    }
}

#[test]
fn balancing_a_backup_idles_while_the_primaries_are_up_and_serves_when_they_are_down() {
    let mut primaries = vec![named("primary-1"), named("primary-2")];
    let spare = named("backup");
    let config = format!(
        "cache = off\nbackend = {}\nbackend = {}\nbackend = {} backup\n",
        primaries[0].addr, primaries[1].addr, spare.addr
    );
    let dir = TempDir::new("backup");
    let proxy = proxy(&dir, &config);
    let served: Vec<String> = (0..20).map(|_| served_by(proxy.addr, "/")).collect();
    assert_eq!(tally(&served).get("backup"), None);
    assert!(spare.requests().is_empty());
    primaries.clear();
    let served: Vec<String> = (0..10).map(|_| served_by(proxy.addr, "/")).collect();
    assert_eq!(tally(&served).get("backup"), Some(&10));
}

#[test]
fn balancing_drain_disable_and_enable_from_127_0_0_1_take_a_backend_out_and_back() {
    let backends = [named("a"), named("b"), named("c")];
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let (dir, proxy) = proxy_for(&addrs, "cache = off\n");
    let text = act(proxy.addr, addrs[1], "drain");
    assert!(
        text.starts_with(&format!("backend {} draining", addrs[1])),
        "{text}"
    );
    assert_eq!(
        field(&backend_status(proxy.addr, addrs[1]), "state"),
        "disabled"
    );
    let served: Vec<String> = (0..12).map(|_| served_by(proxy.addr, "/")).collect();
    assert_eq!(
        tally(&served).get("b"),
        None,
        "a drained backend got requests"
    );
    act(proxy.addr, addrs[2], "disable");
    assert_eq!(
        field(&backend_status(proxy.addr, addrs[2]), "state"),
        "disabled"
    );
    let served: Vec<String> = (0..6).map(|_| served_by(proxy.addr, "/")).collect();
    assert_eq!(tally(&served).get("a"), Some(&6));
    act(proxy.addr, addrs[1], "enable");
    act(proxy.addr, addrs[2], "enable");
    let served: Vec<String> = (0..6).map(|_| served_by(proxy.addr, "/")).collect();
    assert_eq!(tally(&served).len(), 3, "enabled again: {served:?}");
    let text = act(proxy.addr, addrs[0], "weight&weight=4");
    assert_eq!(text, format!("backend {} weight 1 -> 4\n", addrs[0]));
    assert_eq!(field(&backend_status(proxy.addr, addrs[0]), "weight"), "4");
    let log = proxy_log(&dir);
    assert!(
        log.contains(&format!(
            "\"POST /relevo/status/backends HTTP/1.1\": backend {} draining",
            addrs[1]
        )),
        "{log}"
    );
}

#[test]
fn balancing_an_address_outside_status_allow_gets_403_and_changes_nothing() {
    let backends = [named("a"), named("b")];
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let (_dir, proxy) = proxy_for(&addrs, "cache = off\nstatus_allow = 10.0.0.0/8\n");
    for action in ["drain", "disable", "weight&weight=9"] {
        let reply = post_backends(
            proxy.addr,
            &format!("backend={}&action={action}", addrs[1]),
            "",
        );
        assert_eq!(reply.status, 403, "{action}");
        assert!(!reply.text().contains(&addrs[1].to_string()));
    }
    let served: Vec<String> = (0..4).map(|_| served_by(proxy.addr, "/")).collect();
    assert_eq!(tally(&served).get("b"), Some(&2), "still in rotation");
    assert!(backends
        .iter()
        .all(|b| b.requests().iter().all(|r| !r.starts_with(b"POST"))));
}

#[test]
fn balancing_a_post_from_another_site_is_refused_and_the_page_itself_may_post() {
    let backends = [named("a"), named("b")];
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let (_dir, proxy) = proxy_for(&addrs, "cache = off\n");
    let form = format!("backend={}&action=disable", addrs[1]);
    for foreign in [
        "Origin: http://evil.example\r\n",
        "Referer: http://evil.example/x\r\n",
    ] {
        let reply = post_backends(proxy.addr, &form, foreign);
        assert_eq!(reply.status, 403, "{foreign}");
        assert!(reply.text().contains("cross-site"), "{}", reply.text());
    }
    assert_eq!(field(&backend_status(proxy.addr, addrs[1]), "state"), "up");
    // What a browser sends from the status page's button: Origin is this proxy, and it
    // wants HTML, so it is sent back to the page.
    let reply = request(
        proxy.addr,
        format!(
            "POST /relevo/status/backends HTTP/1.1\r\nHost: {0}\r\nOrigin: http://{0}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {1}\r\n\
             Accept: text/html,*/*;q=0.8\r\nConnection: close\r\n\r\n{2}",
            proxy.addr,
            form.len(),
            form
        )
        .as_bytes(),
    );
    assert_eq!(reply.status, 303);
    assert_eq!(reply.header("location"), Some("/relevo/status"));
    assert_eq!(
        field(&backend_status(proxy.addr, addrs[1]), "state"),
        "disabled"
    );
    let html = get(proxy.addr, "/relevo/status").text();
    assert!(html.contains(&format!(
        "<form method=\"post\" action=\"/relevo/status/backends\"><input type=\"hidden\" \
         name=\"backend\" value=\"{}\">",
        addrs[1]
    )));
    assert!(!html.contains("<script"));
}

/// What a browser posts from a page at `http://{host}:{port}`: DNS rebinding makes that
/// name resolve to the proxy, so Origin and Host agree, and the post comes from loopback.
fn post_from_page_at(proxy: SocketAddr, host: &str, form: &str) -> Reply {
    let authority = format!("{host}:{}", proxy.port());
    request(
        proxy,
        format!(
            "POST /relevo/status/backends HTTP/1.1\r\nHost: {authority}\r\n\
             Origin: http://{authority}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        )
        .as_bytes(),
    )
}

#[test]
fn balancing_a_page_under_a_rebound_host_name_may_not_act_unless_status_hosts_lists_it() {
    let backends = [named("a"), named("b")];
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let form = format!("backend={}&action=disable", addrs[1]);
    let (_dir, proxy) = proxy_for(&addrs, "cache = off\n");
    let reply = post_from_page_at(proxy.addr, "rebound.example", &form);
    assert_eq!(reply.status, 403);
    assert!(reply.text().contains("status_hosts"), "{}", reply.text());
    assert_eq!(field(&backend_status(proxy.addr, addrs[1]), "state"), "up");
    // localhost cannot be taken over by another site.
    let reply = post_from_page_at(proxy.addr, "localhost", &form);
    assert_eq!(reply.status, 303);
    assert_eq!(
        field(&backend_status(proxy.addr, addrs[1]), "state"),
        "disabled"
    );
    // A name the operator lists is theirs.
    let config = "cache = off\nstatus_hosts = rebound.example\n";
    let (_dir, listed) = proxy_for(&addrs, config);
    let reply = post_from_page_at(listed.addr, "rebound.example", &form);
    assert_eq!(reply.status, 303);
    assert_eq!(
        field(&backend_status(listed.addr, addrs[1]), "state"),
        "disabled"
    );
}

#[test]
fn balancing_an_admin_post_keeps_its_connection_and_refusals_say_why() {
    let backend = named("a");
    let (_dir, proxy) = proxy_for(&[backend.addr], "cache = off\n");
    let mut conn = connect(proxy.addr);
    let form = format!("backend={}&action=weight&weight=2", backend.addr);
    write!(
        conn,
        "POST /relevo/status/backends HTTP/1.1\r\nHost: t\r\nAccept: text/plain\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}\
         GET /after HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        form.len()
    )
    .unwrap();
    let replies = parse_replies(&read_to_close(&mut conn), &[false, false]);
    assert_eq!(replies.len(), 2, "{replies:?}");
    assert_eq!(replies[0].status, 200);
    assert_eq!(
        replies[1].text(),
        "a",
        "the same connection carried the next request"
    );
    for (target, body, status) in [
        (
            "/relevo/status/backends",
            "backend=127.0.0.1:1&action=drain",
            404,
        ),
        ("/relevo/status/backends", "backend=x&action=drain", 400),
        ("/relevo/status/backends", "action=drain", 400),
        ("/relevo/status/backends", "backend=a:1&action=%zz", 400),
        ("/relevo/status/explode", "", 404),
    ] {
        let reply = request(
            proxy.addr,
            format!(
                "POST {target} HTTP/1.1\r\nHost: t\r\nAccept: text/plain\r\nContent-Type: \
                 application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        assert_eq!(reply.status, status, "{target} {body}: {}", reply.text());
    }
    let huge = "x".repeat(5000);
    let reply = post_backends(proxy.addr, &huge, "");
    assert_eq!(reply.status, 413);
    let reply = get(proxy.addr, "/relevo/status/backends");
    assert_eq!((reply.status, reply.header("allow")), (405, Some("POST")));
    assert!(backend.requests().iter().all(|r| !r.starts_with(b"POST")));
}

#[test]
fn balancing_a_drained_backends_request_in_flight_completes() {
    let gate = gated(&["a", "b"]);
    let addrs = gate.addrs();
    let (dir, proxy) = proxy_for(&addrs, "cache = off\n");
    let (busy, held) = gate.hold(proxy.addr);
    let busy_addr = addrs[usize::from(busy == "b")];
    act(proxy.addr, busy_addr, "drain");
    let status = backend_status(proxy.addr, busy_addr);
    assert_eq!(
        (field(&status, "state"), field(&status, "active")),
        ("draining", "1")
    );
    let served: Vec<String> = (0..4).map(|_| served_by(proxy.addr, "/")).collect();
    assert_eq!(tally(&served).get(busy), None);
    gate.release.send(()).unwrap();
    let reply = held.join().unwrap();
    assert_eq!((reply.status, reply.text()), (200, busy.to_string()));
    assert!(reply.complete);
    // The lease is given back as the request's thread finishes, just after the reply.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut status = backend_status(proxy.addr, busy_addr);
    while field(&status, "active") != "0" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        status = backend_status(proxy.addr, busy_addr);
    }
    assert_eq!(field(&status, "state"), "disabled", "{status}");
    assert!(proxy_log(&dir).contains(&format!("backend {busy_addr} drained")));
}

#[test]
fn balancing_draining_closes_the_idle_pooled_connections_to_the_backend() {
    let backend = KeepAliveBackend::new();
    let (_dir, proxy) = proxy_for(&[backend.addr], "cache = off\nupstream_idle_timeout = 60\n");
    assert_eq!(get(proxy.addr, "/").status, 200);
    assert_eq!(backend.connections.load(Ordering::SeqCst), 1);
    let text = act(proxy.addr, backend.addr, "drain");
    assert!(text.contains("1 idle connections closed"), "{text}");
    // The proxy has closed it; the backend's thread sees the end of the stream just after.
    let deadline = Instant::now() + Duration::from_secs(5);
    while backend.closed.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        backend.closed.load(Ordering::SeqCst),
        1,
        "the idle connection to the drained backend stayed open"
    );
    assert_eq!(
        get(proxy.addr, "/").status,
        502,
        "its only backend is drained"
    );
    act(proxy.addr, backend.addr, "enable");
    assert_eq!(get(proxy.addr, "/").status, 200);
}

#[test]
fn balancing_requests_in_flight_return_to_zero_after_errors_retries_and_a_tunnel() {
    // One backend that answers by path (garbage, a WebSocket switch, or 200), and one that
    // refuses every connection, so half the requests are retried.
    let multi = Backend::on_head(|head, stream| {
        if head.starts_with(b"GET /garbage") {
            let _ = stream.write_all(b"SSH-2.0-OpenSSH\r\n\r\n");
        } else if head.starts_with(b"GET /ws") {
            let _ = stream.write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            );
            let _ = read_to_close(stream);
        } else {
            let _ = stream.write_all(&answer("multi"));
        }
    });
    let dead = dead_address();
    let (_dir, proxy) = proxy_for(&[dead, multi.addr], "cache = off\nmax_fails = 0\n");
    for _ in 0..6 {
        assert_eq!(served_by(proxy.addr, "/ok"), "multi");
    }
    for _ in 0..3 {
        assert_eq!(get(proxy.addr, "/garbage").status, 502);
    }
    let mut tunnel = connect(proxy.addr);
    tunnel
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .unwrap();
    let mut head = [0u8; 12];
    std::io::Read::read_exact(&mut tunnel, &mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
    assert_eq!(
        field(&backend_status(proxy.addr, multi.addr), "active"),
        "1"
    );
    drop(tunnel);
    let deadline = Instant::now() + Duration::from_secs(5);
    let settled = || {
        [dead, multi.addr]
            .iter()
            .all(|&b| field(&backend_status(proxy.addr, b), "active") == "0")
    };
    while !settled() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        settled(),
        "{}",
        get(proxy.addr, "/relevo/status?format=json").text()
    );
}

#[test]
fn balancing_two_tiers_on_uri_hash_fetch_each_url_from_the_origin_once() {
    let origin = Backend::new(|request| {
        let path = String::from_utf8_lossy(request)
            .split(' ')
            .nth(1)
            .unwrap_or("-")
            .to_string();
        format!(
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=300\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{path}",
            path.len()
        )
        .into_bytes()
    });
    let nodes: Vec<(TempDir, Process)> = (0..3).map(|_| proxy_for(&[origin.addr], "")).collect();
    let node_addrs: Vec<SocketAddr> = nodes.iter().map(|(_, p)| p.addr).collect();
    let front = "cache = off\nbalance = uri_hash\n";
    let fronts: Vec<(TempDir, Process)> = (0..2).map(|_| proxy_for(&node_addrs, front)).collect();
    let urls: Vec<String> = (0..30).map(|k| format!("/object/{k}")).collect();
    for round in 0..4 {
        for url in &urls {
            let reply = get(fronts[round % 2].1.addr, url);
            assert_eq!((reply.status, reply.text()), (200, url.clone()));
        }
    }
    let fetched: Vec<String> = origin
        .requests()
        .iter()
        .map(|r| {
            String::from_utf8_lossy(r)
                .split(' ')
                .nth(1)
                .unwrap()
                .to_string()
        })
        .collect();
    let per_url = tally(&fetched);
    assert_eq!(per_url.len(), 30);
    assert!(per_url.values().all(|&n| n == 1), "{per_url:?}");
    let stored: Vec<usize> = nodes
        .iter()
        .map(|(dir, _)| cache_entries(dir).len())
        .collect();
    eprintln!("two tiers, 30 URLs x 4 through 2 fronts: entries per cache node {stored:?}");
    assert_eq!(
        stored.iter().sum::<usize>(),
        30,
        "each object stored once: {stored:?}"
    );
    assert!(stored.iter().all(|&n| n > 0), "{stored:?}");
}
