//! Interoperability with real software: our client against a real nginx, and real curl
//! through our proxy to our webserver. When nginx or curl is not installed the test says
//! `SKIP interop: ...` on stderr and passes (`.ci/run` installs nginx when it can).
//!
//! nginx runs as this test's own process (`daemon off; master_process off;`), with every
//! path inside a temporary directory, on a port chosen by binding 127.0.0.1:0 and releasing
//! it. It is ready once it has printed the notices that follow the binding of its sockets
//! (no sleeping), and it is killed when dropped.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;

use crate::support::*;

/// The notice nginx prints in `main()` after `ngx_init_cycle` has bound the listening
/// sockets (from `ngx_os_status`); connections made after it wait in the backlog until the
/// event loop starts.
const NGINX_READY: &str = "getrlimit(RLIMIT_NOFILE)";

/// An executable called `name` on the PATH or in the sbin directories (nginx lives in
/// /usr/sbin, which is not on every user's PATH).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A real nginx serving `root` on 127.0.0.1; killed when dropped.
struct Nginx {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Nginx {
    fn start(binary: &Path, root: &Path) -> Nginx {
        let dir = TempDir::new("nginx");
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let d = dir.path.display();
        let conf = format!(
            "error_log stderr notice;\n\
             pid {d}/nginx.pid;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n\
               access_log off;\n\
               client_body_temp_path {d}/body;\n\
               proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n\
               uwsgi_temp_path {d}/uwsgi;\n\
               scgi_temp_path {d}/scgi;\n\
               types {{ text/plain txt; text/html html; image/png png; }}\n\
               default_type application/octet-stream;\n\
               server {{ listen 127.0.0.1:{port}; root {}; }}\n\
             }}\n",
            root.display()
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut cmd = Command::new(binary);
        cmd.arg("-p").arg(&dir.path).arg("-c").arg(&conf_path);
        // -e (since nginx 1.19.5) keeps nginx from opening its compiled-in error log before
        // it reads our configuration.
        if supports_error_log_flag(binary) {
            cmd.args(["-e", "stderr"]);
        }
        cmd.args(["-g", "daemon off; master_process off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start nginx");
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            // Keep reading after readiness so nginx never blocks on a full pipe.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut seen = String::new();
        loop {
            match rx.recv_timeout(IO_TIMEOUT) {
                Ok(line) if line.contains(NGINX_READY) => break,
                Ok(line) => {
                    seen.push_str(&line);
                    seen.push('\n');
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("nginx did not start; it said:\n{seen}");
                }
            }
        }
        Nginx {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn supports_error_log_flag(binary: &Path) -> bool {
    Command::new(binary)
        .arg("-h")
        .output()
        .map(|out| {
            let help = [out.stdout, out.stderr].concat();
            String::from_utf8_lossy(&help).contains("-e filename")
        })
        .unwrap_or(false)
}

/// Runs our client in `dir` with its cache there too.
fn client(dir: &TempDir, options: &[&str], url: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_client"))
        .args(["--cache-dir", "cache"])
        .args(options)
        .args(["client.log", url])
        .current_dir(&dir.path)
        .stdin(Stdio::null())
        .output()
        .expect("run the client")
}

#[test]
fn the_client_fetches_from_a_real_nginx() {
    let Some(binary) = find_program("nginx") else {
        eprintln!("SKIP interop: nginx not installed");
        return;
    };
    let site = TempDir::new("nginx-site");
    std::fs::write(site.join("hello.txt"), "hello from nginx\n").unwrap();
    std::fs::copy(www_root().join("img/dawn.png"), site.join("dawn.png")).unwrap();
    let big = pseudo_random(1024 * 1024 + 17, 11);
    std::fs::write(site.join("big.bin"), &big).unwrap();
    let nginx = Nginx::start(&binary, &site.path);
    let base = format!("http://127.0.0.1:{}", nginx.port);
    let dir = TempDir::new("nginx-client");

    let out = client(&dir, &[], &format!("{base}/hello.txt"));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, b"hello from nginx\n");

    let out = client(&dir, &[], &format!("{base}/dawn.png"));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let png = std::fs::read(www_root().join("img/dawn.png")).unwrap();
    assert_eq!(
        sha1_hex(&std::fs::read(dir.join("dawn.png")).unwrap()),
        sha1_hex(&png)
    );

    let out = client(&dir, &[], &format!("{base}/big.bin"));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("saved {} bytes to big.bin\n", big.len())
    );
    assert_eq!(
        sha1_hex(&std::fs::read(dir.join("big.bin")).unwrap()),
        sha1_hex(&big)
    );

    let out = client(&dir, &["-I", "--no-cache"], &format!("{base}/hello.txt"));
    let head = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Server: nginx"), "{head}");

    // nginx validates with ETag and Last-Modified: a stale entry comes back as a 304.
    let out = client(&dir, &["--ttl", "0"], &format!("{base}/hello.txt"));
    assert_eq!(out.stdout, b"hello from nginx\n");
    let log = std::fs::read_to_string(dir.join("client.log")).unwrap();
    assert!(
        log.lines().last().unwrap().ends_with(" revalidated"),
        "{log}"
    );

    // nginx's own error pages are responses like any other: exit status 0.
    let out = client(&dir, &[], &format!("{base}/missing"));
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("404 Not Found"));
    let log = std::fs::read_to_string(dir.join("client.log")).unwrap();
    assert!(log.contains("HTTP/1.1 404 Not Found"), "{log}");
}

#[test]
fn real_curl_talks_to_our_webserver_through_our_proxy() {
    let Some(curl) = find_program("curl") else {
        eprintln!("SKIP interop: curl not installed");
        return;
    };
    let site = TempDir::new("curl-site");
    std::fs::write(site.join("hello.txt"), "hello, curl\n").unwrap();
    let data = pseudo_random(300_000, 5);
    std::fs::write(site.join("data.bin"), &data).unwrap();
    let server = webserver_at(&site.path, "curl-backend");
    let dir = TempDir::new("curl-proxy");
    let proxy = proxy(&dir, &backend_lines(&[server.addr]));
    let base = format!("http://{}", proxy.addr);
    let curl = |args: &[&str]| {
        let out = Command::new(&curl)
            .args(["-sS", "--max-time", "20"])
            .args(args)
            .current_dir(&dir.path)
            .stdin(Stdio::null())
            .output()
            .expect("run curl");
        assert_eq!(out.status.code(), Some(0), "curl {args:?}: {out:?}");
        out
    };

    let out = curl(&[&format!("{base}/hello.txt")]);
    assert_eq!(out.stdout, b"hello, curl\n");

    let out = curl(&["-o", "data.out", &format!("{base}/data.bin")]);
    assert!(out.stdout.is_empty());
    assert_eq!(
        sha1_hex(&std::fs::read(dir.join("data.out")).unwrap()),
        sha1_hex(&data)
    );

    let out = curl(&["-I", &format!("{base}/hello.txt")]);
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(head.contains("content-length: 12\r\n"), "{head}");
    assert!(head.contains("x-served-by: curl-backend\r\n"), "{head}");

    std::fs::write(dir.join("upload.bin"), &data).unwrap();
    let out = curl(&["--data-binary", "@upload.bin", &format!("{base}/form")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("curl-backend received POST /form with a body of 300000 bytes"),
        "{text}"
    );

    // Two URLs in one call: curl keeps the connection open and reuses it for the second.
    let out = curl(&[
        "-w",
        "[connects=%{num_connects}]\n",
        &format!("{base}/hello.txt"),
        &format!("{base}/hello.txt"),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello, curl\n[connects=1]\nhello, curl\n[connects=0]\n"
    );
}
