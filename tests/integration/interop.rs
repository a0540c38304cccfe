//! Interoperability with real software: our client against a real nginx, and real curl
//! through our proxy to our webserver. When nginx or curl is not installed the test prints a
//! SKIP line and passes, except under `RELEVO_REQUIRE_EXTERNAL=1` (`.ci/run`), where it
//! fails. nginx is started by `support::nginx_serving`.

use crate::support::*;

#[test]
fn the_client_fetches_from_a_real_nginx() {
    let site = TempDir::new("nginx-site");
    std::fs::write(site.join("hello.txt"), "hello from nginx\n").unwrap();
    std::fs::copy(www_root().join("img/dawn.png"), site.join("dawn.png")).unwrap();
    let big = pseudo_random(1024 * 1024 + 17, 11);
    std::fs::write(site.join("big.bin"), &big).unwrap();
    let Some(nginx) = nginx_serving(&site.path) else {
        return;
    };
    let base = format!("http://{}", nginx.addr);
    let dir = TempDir::new("nginx-client");

    let out = client_fetch(&dir, &[], &format!("{base}/hello.txt"));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(out.stdout, b"hello from nginx\n");

    let out = client_fetch(&dir, &[], &format!("{base}/dawn.png"));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let png = std::fs::read(www_root().join("img/dawn.png")).unwrap();
    assert_eq!(
        sha1_hex(&std::fs::read(dir.join("dawn.png")).unwrap()),
        sha1_hex(&png)
    );

    let out = client_fetch(&dir, &[], &format!("{base}/big.bin"));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("saved {} bytes to big.bin\n", big.len())
    );
    assert_eq!(
        sha1_hex(&std::fs::read(dir.join("big.bin")).unwrap()),
        sha1_hex(&big)
    );

    let out = client_fetch(&dir, &["-I", "--no-cache"], &format!("{base}/hello.txt"));
    let head = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("Server: nginx"), "{head}");

    // nginx validates with ETag and Last-Modified: a stale entry comes back as a 304.
    let out = client_fetch(&dir, &["--ttl", "0"], &format!("{base}/hello.txt"));
    assert_eq!(out.stdout, b"hello from nginx\n");
    let log = std::fs::read_to_string(dir.join("client.log")).unwrap();
    assert!(
        log.lines().last().unwrap().ends_with(" revalidated"),
        "{log}"
    );

    // nginx's own error pages are responses like any other: exit status 0.
    let out = client_fetch(&dir, &[], &format!("{base}/missing"));
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("404 Not Found"));
    let log = std::fs::read_to_string(dir.join("client.log")).unwrap();
    assert!(log.contains("HTTP/1.1 404 Not Found"), "{log}");
}

#[test]
fn real_curl_talks_to_our_webserver_through_our_proxy() {
    let Some(curl) = external_program("curl") else {
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
        let out = command_in(&dir, &curl)
            .args(["-sS", "--max-time", "20"])
            .args(args)
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
