//! In a real browser: headless Chromium (Debian's package) loads the demo site through the
//! proxy and then the status page, after known traffic, and a screenshot of the status page
//! (its charts included) is saved as a test artefact (`target/tmp/status-page.png`): look
//! at it after a change to the page. `.ci/run` installs chromium; without it this test
//! prints a SKIP line, and fails instead under `RELEVO_REQUIRE_EXTERNAL=1`.

use std::path::Path;

use crate::support::*;

/// Longest a single Chromium run may take before the test fails instead of hanging.
const BROWSER_SECONDS: &str = "60";

/// Window size for the page dumps.
const WINDOW: &str = "--window-size=1280,1000";
/// Window size for the screenshot: tall enough for the table, the charts and the cache.
const SCREENSHOT_WINDOW: &str = "--window-size=1280,1750";

/// Runs Chromium headless on `url` with a fresh profile and `extra` arguments (a window
/// size among them); returns stdout.
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
        &[WINDOW, "--dump-dom"],
    );
    assert!(site.contains("Relevo demo site"), "{site}");
    assert!(
        site.contains("server-1"),
        "the first page comes from server-1: {site}"
    );
    assert!(!site.contains("{{server}}"));

    // Known traffic: one image three times (a miss, then two hits); then, for the charts, a
    // few pages (revalidated each time), the twelve tiles twice (misses, then hits) and
    // some pages that do not exist.
    for expected in ["MISS", "HIT", "HIT"] {
        assert_eq!(
            get(proxy.addr, "/img/relevo.png").header("x-cache"),
            Some(expected)
        );
    }
    for round in 0..2 {
        for page in ["/one-image.html", "/many-images.html", "/big-file.html"] {
            assert_eq!(get(proxy.addr, page).status, 200);
        }
        for tile in 1..=12 {
            let tile = get(proxy.addr, &format!("/img/tile-{tile:02}.png"));
            let expected = if round == 0 { "MISS" } else { "HIT" };
            assert_eq!(tile.header("x-cache"), Some(expected));
        }
        assert_eq!(get(proxy.addr, &format!("/missing-{round}")).status, 404);
    }
    let status_url = format!("http://{}/relevo/status", proxy.addr);
    let dom = browse(&chromium, &profile, &status_url, &[WINDOW, "--dump-dom"]);
    assert!(dom.contains("<h1>Relevo status</h1>"), "{dom}");
    for addr in &addrs {
        assert!(
            dom.contains(&format!("<td>{addr}</td><td><span class=\"up\">up</span>")),
            "{addr} not shown up: {dom}"
        );
    }
    assert!(dom.contains("GET /missing-1 HTTP/1.1"), "{dom}");
    assert!(dom.contains("<td>HIT</td>"), "{dom}");
    assert!(dom.contains("14 hits"), "{dom}");
    // The three charts, drawn inline: the browser parsed them as SVG elements.
    assert_eq!(dom.matches("<svg ").count(), 3, "{dom}");
    for title in [
        "Requests per second",
        "Cache hit ratio",
        "Response times since start",
    ] {
        assert!(dom.contains(&format!("<title>{title}")), "{title}: {dom}");
    }
    // The proxy has run for a 5-second bucket or two: each series is a point or a line.
    assert!(
        dom.contains("<circle") || dom.contains("<polyline"),
        "no rate was drawn: {dom}"
    );
    assert!(dom.contains("<rect"), "no bar was drawn: {dom}");
    assert!(!dom.contains("<script"), "{dom}");

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    browse(
        &chromium,
        &profile,
        &status_url,
        &[
            SCREENSHOT_WINDOW,
            &format!("--screenshot={}", shot.display()),
        ],
    );
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "not a real screenshot"
    );
    eprintln!("screenshot of the status page: {}", shot.display());
}
