//! Operations end to end: several pools routed by path and Host, `proxy --check` on files
//! with pools, and `proxy --reload` and `proxy --stop` driving the running proxy through its
//! admin endpoint, and who may use them.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::*;

/// Runs `proxy CONFIG ACTION --port PORT` in `dir` against `proxy` (its proxy.conf says
/// port 0, so the port it got is given on the command line): exit status, stdout, stderr.
fn control(dir: &TempDir, proxy: &Process, action: &str) -> (Option<i32>, String, String) {
    let mut cmd = command_in(dir, PROXY_BIN);
    cmd.arg(dir.join("proxy.conf"))
        .arg(action)
        .args(["--port", &proxy.addr.port().to_string()]);
    run_bounded(cmd)
}

/// `GET path` with `Host: host`, through the proxy.
fn get_with_host(proxy: SocketAddr, host: &str, path: &str) -> Reply {
    request(
        proxy,
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// A raw `POST {status}/ACTION` with `extra` header lines, asking for text.
fn post_action(proxy: SocketAddr, action: &str, extra: &str) -> Reply {
    request(
        proxy,
        format!(
            "POST /relevo/status/{action} HTTP/1.1\r\nHost: {proxy}\r\nAccept: text/plain\r\n\
             Content-Length: 0\r\nConnection: close\r\n{extra}\r\n"
        )
        .as_bytes(),
    )
}

#[test]
fn requests_go_to_the_pool_of_the_longest_matching_route_a_host_route_first() {
    let (web, api, v2, shop) = (named("web"), named("api"), named("v2"), named("shop"));
    let dir = TempDir::new("routes");
    let access_log = dir.join("access.log");
    let config = format!(
        "backend = {}\npool api = {}\npool v2 = {}\npool shop = {}\nroute = /api/ api\n\
         route = /api/v2/ v2\nroute = Shop.Example/ shop\naccess_log = {}\n",
        web.addr,
        api.addr,
        v2.addr,
        shop.addr,
        access_log.display()
    );
    let proxy = proxy(&dir, &config);
    for (path, pool) in [
        ("/", "web"),
        ("/api/users", "api"),
        ("/api/v2/users", "v2"),
        ("/api/v2", "api"),
        ("/apix", "web"),
        ("/api", "web"),
        ("/%61pi/encoded", "api"),
    ] {
        assert_eq!(served_by(proxy.addr, path), pool, "GET {path}");
    }
    for (host, path, pool) in [
        ("shop.example:8080", "/api/users", "shop"),
        ("SHOP.EXAMPLE", "/", "shop"),
        ("other.example", "/api/users", "api"),
    ] {
        let reply = get_with_host(proxy.addr, host, path);
        assert_eq!(
            reply.header("x-served-by"),
            Some(pool),
            "Host: {host} {path}"
        );
    }

    // The log, the access log and the status page name the pool.
    let log = proxy_log(&dir);
    assert!(
        log.contains(&format!(
            "\"GET /api/users HTTP/1.1\" -> api/{} 200",
            api.addr
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!("\"GET / HTTP/1.1\" -> {} 200", web.addr)),
        "{log}"
    );
    let access = std::fs::read_to_string(&access_log).unwrap();
    assert!(access.contains(&format!("v2/{}", v2.addr)), "{access}");
    let json = get(proxy.addr, "/relevo/status?format=json").text();
    assert!(
        json.contains("\"pools\":[\"default\",\"api\",\"v2\",\"shop\"]"),
        "{json}"
    );
    let shop_status = backend_status(proxy.addr, shop.addr);
    assert!(shop_status.ends_with("\"pool\":\"shop\"}"), "{shop_status}");
    assert_eq!(field(&shop_status, "requests"), "2");
    let html = get(proxy.addr, "/relevo/status").text();
    assert!(html.contains("<h2>Pool shop</h2>"), "{html}");
    let metrics = get(proxy.addr, "/relevo/metrics").text();
    let shop_requests = format!(
        "relevo_requests_total{{backend=\"{}\",pool=\"shop\",",
        shop.addr
    );
    assert!(metrics.contains(&shop_requests), "{metrics}");
}

#[test]
fn check_counts_pools_and_routes_and_names_the_line_of_each_mistake() {
    let dir = TempDir::new("check-pools");
    let check = |text: &str| {
        std::fs::write(dir.join("proxy.conf"), text).unwrap();
        let mut cmd = command_in(&dir, PROXY_BIN);
        cmd.args(["--check", "proxy.conf"]);
        run_bounded(cmd)
    };
    let good = "log_file = proxy.log\ncache = off\naccess_log = off\nbackend = 127.0.0.1:1\n\
                pool api = 127.0.0.1:2 127.0.0.1:3 weight=2\nroute = /api/ api\n";
    let (code, stdout, stderr) = check(good);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("OK: listen 0.0.0.0:8080, 3 backends in 2 pools, 1 route, cache off"),
        "{stdout}"
    );
    for (text, expected) in [
        (
            "backend = 127.0.0.1:1\n\nroute = /api/ nowhere\n",
            "proxy.conf:3: route: no pool named `nowhere`",
        ),
        (
            "backend = 127.0.0.1:1\npool api = 127.0.0.1:2\npool api = 127.0.0.1:3\n",
            "proxy.conf:3: ",
        ),
        ("backend = 127.0.0.1:1\npool api =\n", "proxy.conf:2: "),
        (
            "backend = 127.0.0.1:1\npool api = 127.0.0.1:2\nroute = api api\n",
            "proxy.conf:3: route: ",
        ),
    ] {
        let (code, stdout, stderr) = check(text);
        assert_eq!(code, Some(1), "{text:?}: {stdout}");
        assert!(stderr.starts_with(expected), "{text:?}: {stderr}");
    }
}

#[test]
fn reload_switches_backends_while_a_request_in_flight_finishes_on_the_old_one() {
    let old = gated(&["old"]);
    let new = named("new");
    let dir = TempDir::new("reload");
    let proxy = proxy(
        &dir,
        &format!("backend = {}\ncache = off\n", old.backends[0].addr),
    );
    assert_eq!(served_by(proxy.addr, "/before"), "old");
    let (_, held) = old.hold(proxy.addr);

    proxy_config(
        &dir,
        &format!("backend = {}\ncache = off\nlog_level = debug\n", new.addr),
    );
    let (code, stdout, stderr) = control(&dir, &proxy, "--reload");
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("configuration #2"), "{stdout}");
    assert!(
        stdout.contains(&format!("backends: {}", new.addr)),
        "{stdout}"
    );

    assert_eq!(served_by(proxy.addr, "/after"), "new");
    old.release.send(()).unwrap();
    let reply = held.join().unwrap();
    assert_eq!((reply.status, reply.text()), (200, "old".to_string()));
    assert_eq!(
        old.backends[0].requests().len(),
        2,
        "/before and /hold only"
    );
    let json = get(proxy.addr, "/relevo/status?format=json").text();
    assert!(json.contains("\"generation\":2"), "{json}");
    let (_, listed) = json.split_once("\"backends\":[").unwrap();
    let (listed, _) = listed.split_once("],\"cache\"").unwrap();
    assert!(listed.contains(&new.addr.to_string()), "{listed}");
    assert!(
        !listed.contains(&old.backends[0].addr.to_string()),
        "{listed}"
    );
    // The new log level is in force: debug lines show the request sent to the backend.
    let log = proxy_log(&dir);
    assert!(log.contains("DEBUG 127.0.0.1:"), "{log}");
}

#[test]
fn a_reload_of_a_file_with_mistakes_is_refused_and_the_running_configuration_serves() {
    let web = named("web");
    let dir = TempDir::new("reload-broken");
    let config = format!("backend = {}\ncache = off\n", web.addr);
    let proxy = proxy(&dir, &config);
    // A mistake in the file: `--reload` reads it first, and says so without asking.
    proxy_config(&dir, &format!("{config}route = /x/ nowhere\n"));
    let (code, stdout, stderr) = control(&dir, &proxy, "--reload");
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stderr.contains("proxy.conf:6: route: no pool named `nowhere`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("the running configuration stays"),
        "{stderr}"
    );
    assert_eq!(served_by(proxy.addr, "/"), "web");

    // A mistake only the running proxy finds (an access log that cannot be written), or a
    // file changed after `--reload` read it: the proxy refuses, says why, and logs it.
    proxy_config(
        &dir,
        &format!("{config}access_log = /proc/self/access.log\n"),
    );
    let (code, stdout, stderr) = control(&dir, &proxy, "--reload");
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stderr.contains("refused: "), "{stderr}");
    assert!(
        stderr.contains("the running configuration stays"),
        "{stderr}"
    );
    assert!(stderr.contains("proxy.conf:6: access_log: "), "{stderr}");
    assert_eq!(served_by(proxy.addr, "/"), "web");
    let log = proxy_log(&dir);
    assert!(
        log.contains("refused, the running configuration stays"),
        "{log}"
    );
    assert!(log.contains("proxy.conf:6: access_log: "), "{log}");
    let json = get(proxy.addr, "/relevo/status?format=json").text();
    assert!(json.contains("\"generation\":1"), "{json}");
}

#[test]
fn a_reload_that_moves_a_route_never_serves_the_old_pools_cached_responses() {
    let (web, api) = (named("web"), named("api"));
    let dir = TempDir::new("reload-cache");
    let routed = format!(
        "backend = {}\npool api = {}\nroute = /api/ api\ncache_ttl = 60\n",
        web.addr, api.addr
    );
    let proxy = proxy(&dir, &routed);
    assert_eq!(served_by(proxy.addr, "/api/page"), "api");
    let again = get(proxy.addr, "/api/page");
    assert_eq!(again.header("x-cache"), Some("HIT"));
    // The same file, the route gone, and another cache directory (not taken while running).
    let moved = format!(
        "listen = 127.0.0.1:0\nlog_file = {}\ncache_dir = {}\nbackend = {}\ncache_ttl = 60\n",
        dir.join("proxy.log").display(),
        dir.join("elsewhere").display(),
        web.addr
    );
    std::fs::write(dir.join("proxy.conf"), moved).unwrap();
    let (code, stdout, stderr) = control(&dir, &proxy, "--reload");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("not applied, needs a restart: cache_dir"),
        "{stdout}"
    );
    let moved = get(proxy.addr, "/api/page");
    assert_eq!(moved.header("x-served-by"), Some("web"));
    assert_eq!(moved.header("x-cache"), Some("MISS"));
    assert_eq!(api.requests().len(), 1);
}

#[test]
fn stop_lets_the_request_in_flight_finish_refuses_new_connections_and_exits_0() {
    let slow = gated(&["slow"]);
    let dir = TempDir::new("stop");
    // Longer than run_bounded waits: a stop that waited for the idle connection below
    // instead of closing it would make `--stop` time out.
    let config = format!(
        "backend = {}\ncache = off\nshutdown_timeout = 60\n",
        slow.backends[0].addr
    );
    let mut proxy = proxy(&dir, &config);
    let (_, held) = slow.hold(proxy.addr);
    let mut idle = connect(proxy.addr);
    idle.write_all(b"GET /idle HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 12];
    std::io::Read::read_exact(&mut idle, &mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");

    let addr = proxy.addr;
    let stopping = {
        let mut cmd = command_in(&dir, PROXY_BIN);
        cmd.arg(dir.join("proxy.conf"))
            .args(["--stop", "--port", &addr.port().to_string()]);
        thread::spawn(move || run_bounded(cmd))
    };
    let deadline = Instant::now() + IO_TIMEOUT;
    while TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after --stop");
        thread::sleep(Duration::from_millis(10));
    }
    // The idle keep-alive connection is closed: the rest of its response, then the end.
    let rest = read_to_close(&mut idle);
    assert!(
        find(&rest, b"slow").is_some(),
        "{}",
        String::from_utf8_lossy(&rest)
    );

    slow.release.send(()).unwrap();
    let reply = held.join().unwrap();
    assert_eq!((reply.status, reply.text()), (200, "slow".to_string()));
    let (code, stdout, stderr) = stopping.join().unwrap();
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("requests in flight get up to 60 s"),
        "{stdout}"
    );
    assert!(stdout.contains("the proxy has stopped"), "{stdout}");
    assert_eq!(proxy.wait_exit(), Some(0));
    assert!(proxy_log(&dir).contains("proxy stopped"));
}

#[test]
fn admin_posts_from_a_foreign_address_or_another_site_get_403_and_change_nothing() {
    let web = named("web");
    let dir = TempDir::new("admin-403");
    let proxy = proxy(
        &dir,
        &format!("backend = {}\nstatus_allow = 10.0.0.0/8\n", web.addr),
    );
    let (code, _, stderr) = control(&dir, &proxy, "--reload");
    assert_eq!(code, Some(1));
    assert!(stderr.contains("refused: 403"), "{stderr}");
    let (code, _, stderr) = control(&dir, &proxy, "--stop");
    assert_eq!(code, Some(1));
    assert!(stderr.contains("refused: 403"), "{stderr}");
    assert_eq!(served_by(proxy.addr, "/"), "web", "still serving");

    let allowed = TempDir::new("admin-csrf");
    let proxy = crate::support::proxy(&allowed, &format!("backend = {}\n", web.addr));
    for action in ["stop", "reload"] {
        let reply = post_action(proxy.addr, action, "Origin: http://evil.example\r\n");
        assert_eq!(reply.status, 403, "{action}: {}", reply.text());
    }
    assert_eq!(served_by(proxy.addr, "/"), "web", "still serving");
    let log = proxy_log(&allowed);
    assert!(
        log.contains("\"POST /relevo/status/stop HTTP/1.1\" refused (403)"),
        "{log}"
    );
}
