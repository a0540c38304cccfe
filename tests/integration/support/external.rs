//! The reference programs some tests run against (nginx, HAProxy, curl, Chromium, Python
//! modules, `unshare`): one finder, one rule for when they are missing, one launcher.
//!
//! A test whose reference program is missing prints `SKIP ...` and returns, except under
//! `RELEVO_REQUIRE_EXTERNAL=1` (set by `.ci/run`), where it fails: a test against real
//! software must not pass by not running. Every such program runs as this test's own
//! process (`Process::start_when`), in a temporary directory, and is killed when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::{command_in, dead_address, Process, TempDir};

/// Says that a test cannot run here, because `why`: under `RELEVO_REQUIRE_EXTERNAL=1` this
/// fails the test; otherwise it prints `SKIP why` on stderr, and the caller returns.
pub fn skip_or_fail(why: &str) {
    let required = std::env::var("RELEVO_REQUIRE_EXTERNAL").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{why}, and RELEVO_REQUIRE_EXTERNAL=1 requires it"
    );
    eprintln!("SKIP {why}");
}

/// An executable called `name` on the PATH or in the sbin directories (nginx and haproxy
/// live in /usr/sbin), or None after `skip_or_fail`.
pub fn external_program(name: &str) -> Option<PathBuf> {
    external_program_of(&[name])
}

/// The first of `names` found as `external_program` looks (for a program packaged under
/// several names, such as Chromium), or None after `skip_or_fail`.
pub fn external_program_of(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .collect();
    let found = names
        .iter()
        .flat_map(|name| dirs.iter().map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        skip_or_fail(&format!("{} not installed", names.join(" or ")));
    }
    found
}

/// The `python3` that can import every module in `modules`, or None after `skip_or_fail`.
pub fn python_modules(modules: &[&str]) -> Option<PathBuf> {
    let python = external_program("python3")?;
    let dir = TempDir::new("python-probe");
    let imports = format!("import {}", modules.join(", "));
    let ok = command_in(&dir, &python)
        .args(["-c", &imports])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        skip_or_fail(&format!("python3 modules {modules:?} not installed"));
        return None;
    }
    Some(python)
}

/// Runs python3 with `script` and `args` in `dir` to its end and returns what it printed;
/// None (after `skip_or_fail`) without python3. Tests use it where std cannot do what the
/// test needs, such as binding a client socket to a chosen source address (127.0.0.x).
pub fn python(dir: &TempDir, script: &str, args: &[&str]) -> Option<String> {
    let python = external_program("python3")?;
    let out = command_in(dir, python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The notice nginx prints in `main()` after `ngx_init_cycle` has bound the listening
/// sockets (from `ngx_os_status`); connections made after it wait in the backlog until the
/// event loop starts.
const NGINX_READY: &str = "getrlimit(RLIMIT_NOFILE)";

/// A real nginx serving the files under `root` on 127.0.0.1, or None after `skip_or_fail`.
pub fn nginx_serving(root: &Path) -> Option<Process> {
    nginx(&format!("root {};", root.display()))
}

/// A real nginx on 127.0.0.1 passing every request to `backend` over HTTP/1.1, or None
/// after `skip_or_fail`.
pub fn nginx_proxying_to(backend: SocketAddr) -> Option<Process> {
    nginx(&format!(
        "location / {{ proxy_pass http://{backend}; proxy_http_version 1.1; }}"
    ))
}

/// nginx with `directives` in its one `server` block. One process (`master_process off`):
/// killing it leaves no worker behind. Every path it uses is in its temporary directory; its
/// port was free a moment ago (nginx cannot report the one it got from port 0).
fn nginx(directives: &str) -> Option<Process> {
    let binary = external_program("nginx")?;
    let dir = TempDir::new("nginx");
    let addr = dead_address();
    let d = dir.path.display();
    let conf = format!(
        "daemon off; master_process off; error_log stderr notice; pid {d}/nginx.pid;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n\
           access_log off; client_header_timeout 2s; client_body_timeout 2s;\n\
           client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
           types {{ text/plain txt; text/html html; image/png png; }}\n\
           default_type application/octet-stream;\n\
           server {{ listen {addr}; {directives} }}\n\
         }}\n"
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut cmd = command_in(&dir, &binary);
    cmd.arg("-p").arg(&dir.path).arg("-c").arg(&conf_path);
    // -e (since nginx 1.19.5) keeps nginx from opening its compiled-in error log before
    // it reads our configuration.
    if supports_error_log_flag(&binary) {
        cmd.args(["-e", "stderr"]);
    }
    let server = Process::start_when(cmd, move |line| line.contains(NGINX_READY).then_some(addr));
    Some(server.keeping(dir))
}

fn supports_error_log_flag(binary: &Path) -> bool {
    let dir = TempDir::new("nginx-help");
    command_in(&dir, binary)
        .arg("-h")
        .output()
        .map(|out| {
            let help = [out.stdout, out.stderr].concat();
            String::from_utf8_lossy(&help).contains("-e filename")
        })
        .unwrap_or(false)
}

/// A real HAProxy on 127.0.0.1 passing every request to `backend` (one thread, connections
/// to the backend reused), or None after `skip_or_fail`.
pub fn haproxy_proxying_to(backend: SocketAddr) -> Option<Process> {
    let binary = external_program("haproxy")?;
    let dir = TempDir::new("haproxy");
    let addr = dead_address();
    let conf = format!(
        "global\n  nbthread 1\n\
         defaults\n  mode http\n  timeout connect 2s\n  timeout client 2s\n  timeout server 5s\n\
         frontend f\n  bind {addr}\n  default_backend b\n\
         backend b\n  http-reuse always\n  server s1 {backend}\n"
    );
    std::fs::write(dir.join("haproxy.cfg"), conf).unwrap();
    let mut cmd = command_in(&dir, &binary);
    cmd.args(["-W", "-db", "-f"]).arg(dir.join("haproxy.cfg"));
    // HAProxy says so once its configuration is loaded and its sockets bound.
    let server = Process::start_when(cmd, move |line| {
        line.contains("Loading success").then_some(addr)
    });
    Some(server.keeping(dir))
}

/// A missing program is a SKIP line, or a failure under `RELEVO_REQUIRE_EXTERNAL=1`: run
/// both ways (`.ci/run` sets it), this checks whichever the environment asks for.
#[test]
fn a_missing_program_skips_or_fails_as_the_environment_says() {
    let required = std::env::var("RELEVO_REQUIRE_EXTERNAL").is_ok_and(|v| v == "1");
    let found = std::panic::catch_unwind(|| external_program("relevo-no-such-program"));
    match found {
        Err(_) => assert!(required, "failed although RELEVO_REQUIRE_EXTERNAL is not 1"),
        Ok(None) => assert!(!required, "skipped although RELEVO_REQUIRE_EXTERNAL=1"),
        Ok(Some(path)) => panic!("found {}", path.display()),
    }
}
