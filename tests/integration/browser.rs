//! In a real browser: headless Chromium (Debian's package) loads the demo site through the
//! proxy and then the status page, after known traffic, and a screenshot of the status page
//! is saved as a test artefact (`target/tmp/status-page.png`). `.ci/run` installs chromium;
//! without it this test prints a SKIP line, and fails instead under
//! `RELEVO_REQUIRE_EXTERNAL=1`.

use std::path::Path;

use crate::support::*;

/// Longest a single Chromium run may take before the test fails instead of hanging.
const BROWSER_SECONDS: &str = "60";

/// Runs Chromium headless on `url` with a fresh profile and `extra` arguments; returns stdout.
fn browse(chromium: &Path, profile: &TempDir, url: &str, extra: &[&str]) -> String {
    let out = command_in(profile, "timeout")
        .arg(BROWSER_SECONDS)
        .arg(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.path.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_browser_sees_the_demo_site_and_the_status_page() {
    let Some(chromium) = external_program_of(&["chromium", "chromium-browser", "google-chrome"])
    else {
        return;
    };
    let servers = [
        webserver("server-1"),
        webserver("server-2"),
        webserver("server-3"),
    ];
    let addrs: Vec<_> = servers.iter().map(|s| s.addr).collect();
    let dir = TempDir::new("browser");
    let proxy = proxy(&dir, &backend_lines(&addrs));
    let profile = TempDir::new("chromium-profile");

    let site = browse(
        &chromium,
        &profile,
        &format!("http://{}/", proxy.addr),
        &["--dump-dom"],
    );
    assert!(site.contains("Relevo demo site"), "{site}");
    assert!(
        site.contains("server-1"),
        "the first page comes from server-1: {site}"
    );
    assert!(!site.contains("{{server}}"));

    // Known traffic: one image three times (a miss, then two hits).
    for expected in ["MISS", "HIT", "HIT"] {
        assert_eq!(
            get(proxy.addr, "/img/relevo.png").header("x-cache"),
            Some(expected)
        );
    }
    let status_url = format!("http://{}/relevo/status", proxy.addr);
    let dom = browse(&chromium, &profile, &status_url, &["--dump-dom"]);
    assert!(dom.contains("<h1>Relevo status</h1>"), "{dom}");
    for addr in &addrs {
        assert!(
            dom.contains(&format!("<td>{addr}</td><td><span class=\"up\">up</span>")),
            "{addr} not shown up: {dom}"
        );
    }
    assert!(dom.contains("GET /img/relevo.png HTTP/1.1"), "{dom}");
    assert!(dom.contains("<td>HIT</td>"), "{dom}");
    assert!(dom.contains("2 hits"), "{dom}");

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    browse(
        &chromium,
        &profile,
        &status_url,
        &[&format!("--screenshot={}", shot.display())],
    );
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "not a real screenshot"
    );
    eprintln!("screenshot of the status page: {}", shot.display());
}
