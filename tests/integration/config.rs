//! Start-up: configuration errors stop the proxy with `path:line: message` and status 1,
//! and command-line overrides apply.

use std::process::Command;

use crate::support::*;

fn run_proxy_with(config: &str) -> (Option<i32>, String) {
    let dir = TempDir::new("conf");
    let path = dir.join("proxy.conf");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_proxy"))
        .arg(&path)
        .current_dir(&dir.path)
        .output()
        .unwrap();
    let stderr =
        String::from_utf8_lossy(&out.stderr).replace(&format!("{}", path.display()), "proxy.conf");
    (out.status.code(), stderr)
}

#[test]
fn config_errors_name_their_line_and_exit_with_status_1() {
    let cases = [
        (
            "listen = 127.0.0.1:0\nbakend = 127.0.0.1:1\n",
            "proxy.conf:2: unknown key `bakend`",
        ),
        (
            "# comment\n\nbackend = 127.0.0.1:1\nconnect_timeout = soon\n",
            "proxy.conf:4: connect_timeout",
        ),
        ("backend = 127.0.0.1:99999\n", "proxy.conf:1: "),
        (
            "listen = 127.0.0.1:0\n",
            "proxy.conf:1: no backend configured",
        ),
        (
            "backend 127.0.0.1:1\n",
            "proxy.conf:1: expected `key = value`",
        ),
    ];
    for (text, expected) in cases {
        let (code, stderr) = run_proxy_with(text);
        assert_eq!(code, Some(1), "{text:?}: {stderr}");
        assert!(stderr.starts_with(expected), "{text:?}: got {stderr:?}");
    }
}

#[test]
fn a_missing_config_file_is_reported() {
    let out = Command::new(env!("CARGO_BIN_EXE_proxy"))
        .arg("/nonexistent/relevo/proxy.conf")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[test]
fn command_line_overrides_listen_and_log() {
    let backend = Backend::fixed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let dir = TempDir::new("cli");
    let conf = dir.join("proxy.conf");
    std::fs::write(
        &conf,
        format!("listen = 0.0.0.0:8080\nbackend = {}\n", backend.addr),
    )
    .unwrap();
    let log = dir.join("elsewhere/custom.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_proxy"));
    // --port replaces the port of --listen: port 0 lets the OS choose.
    cmd.arg(&conf)
        .args(["--listen", "127.0.0.1:1", "--port", "0", "--log"])
        .arg(&log);
    let proxy = Process::start(cmd);
    assert!(proxy.addr.ip().is_loopback());
    assert_ne!(proxy.addr.port(), 1);
    assert_eq!(get(proxy.addr, "/").status, 200);
    drop(proxy);
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("\"GET / HTTP/1.1\""));
}

#[test]
fn help_documents_every_option() {
    let out = Command::new(env!("CARGO_BIN_EXE_proxy"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for option in ["--listen", "--port", "--log", "[CONFIG]"] {
        assert!(help.contains(option), "{option} missing from:\n{help}");
    }
}
