//! The demo webserver's file serving: map a request-target to a file under a
//! document root without ever leaving it, and the small pure helpers around
//! that (media type, entity tag, page template).
//!
//! This module owns the decision *which file, if any*, a target names. It does
//! not open sockets, read request heads or write responses: `webserver` turns
//! a [`Lookup`] into a status line and streams the file itself, and whether a
//! conditional request is answered 304 is `http::conditional`, shared with
//! the cache. Everything here is a plain function of its arguments and the
//! file system, so it is tested without a network.
//!
//! The lookup is deliberately layered: the target is first checked *as text*
//! (no `..`, no encoded separators, no NUL), and the file system's answer is
//! then checked *again* after resolving symlinks (the canonical path must lie
//! under the canonical root). Either layer alone stops the classic
//! `/../etc/passwd`; together they also stop a symlink that leads out.

use std::fs;
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::http::date::to_unix;
use crate::http::html::escape_html;
use crate::http::percent::percent_decode;

/// Longest request-target, in bytes, that [`resolve`] will look at; longer
/// ones are a [`Lookup::BadRequest`]. The request-line parser has its own,
/// usually smaller, limit; this one keeps the function safe on its own.
pub(crate) const MAX_TARGET_BYTES: usize = 8 * 1024;

/// The file served when a target names a directory.
pub(crate) const INDEX_FILE: &str = "index.html";

/// The placeholder [`fill_template`] replaces with the server's name.
pub(crate) const SERVER_PLACEHOLDER: &str = "{{server}}";

/// What a request-target resolves to under a document root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// A regular file inside the root, ready to be opened and sent.
    File {
        /// Canonical (symlink-free, absolute) path of the file.
        path: PathBuf,
        /// Size of the file in bytes, for `Content-Length`.
        len: u64,
        /// Last modification time, for `Last-Modified` and the entity tag.
        modified: SystemTime,
    },
    /// A directory named without its final `/` (`/docs`): answered with a
    /// redirect to `location` (the target with the `/` added, query kept), so
    /// that relative links in its index resolve inside it, as Apache and nginx
    /// do (301).
    MissingSlash {
        /// The target to redirect to.
        location: String,
    },
    /// Nothing servable there: missing, not a regular file, or a directory
    /// without an index (404).
    NotFound,
    /// The target tries to leave the root, by `..` or by a symlink (403).
    Forbidden,
    /// The target is malformed: not origin-form, a bad percent-escape, an
    /// encoded separator or NUL, or not UTF-8 once decoded (400).
    BadRequest,
}

/// Resolves an origin-form request-target (e.g. `/a/b%20c.html?x=1`) to a
/// file under `root`.
///
/// Steps, in order:
/// 1. drop the query (from `?`) and any fragment (from `#`);
/// 2. require a leading `/` (origin-form, RFC 9112 §3.2.1);
/// 3. split on `/` and percent-decode each segment (RFC 3986 §2.1);
/// 4. skip empty and `.` segments, refuse `..` (RFC 3986 §3.3 dot-segments
///    are never resolved upwards here);
/// 5. join onto `root`; a directory named without its final `/` is
///    [`Lookup::MissingSlash`] (once it is known to lie under the root), and
///    a directory means its [`INDEX_FILE`];
/// 6. canonicalize both and require the file to lie under the root;
/// 7. require a regular file.
///
/// A target ending in `/` must name a directory: `/page.html/` is
/// [`Lookup::NotFound`], as it would be for the operating system.
///
/// # Security
/// The result never names a path outside `root`:
/// - `..` segments, raw or encoded (`%2e%2e`), give [`Lookup::Forbidden`];
/// - a decoded `/` or `\` inside a segment (`..%2f..%2fetc`), a raw `\`, a
///   decoded NUL or other control character give [`Lookup::BadRequest`], so
///   escapes cannot smuggle separators past the segment check;
/// - a segment the platform would read as more than one plain name (on
///   Windows a drive prefix such as `C:`) gives [`Lookup::Forbidden`], so
///   [`PathBuf::push`] can never replace the root;
/// - empty segments are skipped, so `//etc/passwd` is `root/etc/passwd`;
/// - after symlinks are resolved the file must still be under the canonical
///   root, so a link pointing outside gives [`Lookup::Forbidden`];
/// - only regular files are served: no directories listings, FIFOs or
///   devices.
///
/// Not covered: dotfiles inside the root are served like any other file, and
/// someone who can write into the root can swap a file for a symlink between
/// this check and the `open` (the returned path is canonical, which narrows
/// but does not close that window). The threat model is remote clients, not
/// local users of the document root.
pub(crate) fn resolve(root: &Path, target: &str) -> Lookup {
    let (segments, trailing_slash) = match decode_target(target) {
        Ok(parts) => parts,
        Err(refusal) => return refusal,
    };

    let mut candidate = root.to_path_buf();
    for segment in &segments {
        candidate.push(segment);
    }
    let Ok(meta) = fs::metadata(&candidate) else {
        return Lookup::NotFound;
    };
    let Ok(canonical_root) = root.canonicalize() else {
        return Lookup::NotFound;
    };
    if meta.is_dir() {
        if !trailing_slash && !segments.is_empty() {
            return match candidate.canonicalize() {
                Ok(dir) if dir.starts_with(&canonical_root) => Lookup::MissingSlash {
                    location: with_slash(target),
                },
                Ok(_) => Lookup::Forbidden,
                Err(_) => Lookup::NotFound,
            };
        }
        candidate.push(INDEX_FILE);
    } else if trailing_slash {
        return Lookup::NotFound;
    }

    let Ok(canonical) = candidate.canonicalize() else {
        return Lookup::NotFound;
    };
    if !canonical.starts_with(&canonical_root) {
        return Lookup::Forbidden;
    }
    match fs::metadata(&canonical) {
        Ok(meta) if meta.is_file() => Lookup::File {
            len: meta.len(),
            // A platform without modification times gets a fixed one; the
            // entity tag still changes with the length.
            modified: meta.modified().unwrap_or(UNIX_EPOCH),
            path: canonical,
        },
        _ => Lookup::NotFound,
    }
}

/// `target` with a `/` after its path, before the query (`/docs?x` becomes `/docs/?x`).
///
/// # Security
/// The leading slashes become one (`//docs` becomes `/docs/`, as nginx's `merge_slashes`
/// does): a Location starting with `//` is a network-path reference (RFC 3986 §4.2), which
/// a browser follows to another host.
fn with_slash(target: &str) -> String {
    let end = target.find(['?', '#']).unwrap_or(target.len());
    let (path, rest) = target.split_at(end);
    let path = path.trim_start_matches('/');
    let query = rest.split('#').next().unwrap_or_default();
    format!("/{path}/{query}")
}

/// Splits and decodes the path part of an origin-form target into plain file
/// names, dropping empty and `.` segments; also says whether the path ended
/// in `/`. The error is the [`Lookup`] to answer with.
///
/// ```text
/// origin-form   = absolute-path [ "?" query ]       ; RFC 9112 §3.2.1
/// absolute-path = 1*( "/" segment )                 ; RFC 9110 §4.1
/// segment       = *pchar                            ; RFC 3986 §3.3
/// pct-encoded   = "%" HEXDIG HEXDIG                 ; RFC 3986 §2.1
/// ```
/// We are lenient about which raw characters appear (the request-line parser
/// is the place to be strict) and strict about what they decode to.
fn decode_target(target: &str) -> Result<(Vec<String>, bool), Lookup> {
    if target.len() > MAX_TARGET_BYTES {
        return Err(Lookup::BadRequest);
    }
    let path = match target.find(['?', '#']) {
        Some(end) => &target[..end],
        None => target,
    };
    let Some(rest) = path.strip_prefix('/') else {
        return Err(Lookup::BadRequest);
    };
    let trailing_slash = path.len() > 1 && path.ends_with('/');

    let mut segments = Vec::new();
    for raw in rest.split('/') {
        let bytes = percent_decode(raw.as_bytes()).ok_or(Lookup::BadRequest)?;
        if bytes
            .iter()
            .any(|&b| b == b'/' || b == b'\\' || b.is_ascii_control())
        {
            return Err(Lookup::BadRequest);
        }
        let segment = String::from_utf8(bytes).map_err(|_| Lookup::BadRequest)?;
        match segment.as_str() {
            "" | "." => continue,
            ".." => return Err(Lookup::Forbidden),
            _ => {}
        }
        // On Unix every remaining segment is one plain name; on Windows `C:`
        // would be a prefix that replaces the root when pushed.
        let mut components = Path::new(&segment).components();
        match (components.next(), components.next()) {
            (Some(Component::Normal(_)), None) => segments.push(segment),
            _ => return Err(Lookup::Forbidden),
        }
    }
    Ok((segments, trailing_slash))
}

/// The `Content-Type` to send for `path`, chosen by its extension
/// (case-insensitive); `application/octet-stream` when unknown (RFC 9110
/// §8.3). Text types say UTF-8, which is what the demo site is written in.
pub(crate) fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        "webp" => "image/webp",
        "pdf" => "application/pdf",
        "mp4" => "video/mp4",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// A strong entity tag for a file (RFC 9110 §8.8.3), quoted, built from its
/// length and modification time: `"<len>-<secs>-<nanos>"`, each in lowercase
/// hex (seconds since the Unix epoch; before 1970 they are negative and shown
/// in two's complement). Any change of size or mtime changes the tag.
pub(crate) fn etag(len: u64, modified: SystemTime) -> String {
    let (secs, nanos) = to_unix(modified);
    format!("\"{len:x}-{secs:x}-{nanos:x}\"")
}

/// Replaces every [`SERVER_PLACEHOLDER`] in `html` with `server_name`,
/// HTML-escaped (`& < > " '`), so a page shows which backend answered.
/// The inserted text is not searched again.
pub(crate) fn fill_template(html: &[u8], server_name: &str) -> Vec<u8> {
    let needle = SERVER_PLACEHOLDER.as_bytes();
    let name = escape_html(server_name);
    let mut out = Vec::with_capacity(html.len() + name.len());
    let mut rest = html;
    while let Some(at) = rest.windows(needle.len()).position(|w| w == needle) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(name.as_bytes());
        rest = &rest[at + needle.len()..];
    }
    out.extend_from_slice(rest);
    out
}

#[cfg(test)]
pub(super) mod tests {
    use crate::testing::TempDir;
    use std::time::Duration;

    use super::*;

    /// A document root in the temp directory, removed when dropped. Layout:
    /// `root/index.html`, `root/a/b c.html`, `root/sub/` (no index),
    /// `root/docs/index.html`, and `secret.txt` *beside* the root.
    pub(in crate::webserver) struct TestRoot {
        base: TempDir,
        pub(in crate::webserver) root: PathBuf,
    }

    impl TestRoot {
        pub(in crate::webserver) fn new() -> TestRoot {
            let base = TempDir::new("static");
            let root = base.join("www");
            fs::create_dir_all(root.join("a")).unwrap();
            fs::create_dir_all(root.join("sub")).unwrap();
            fs::create_dir_all(root.join("docs")).unwrap();
            fs::write(root.join("index.html"), "home").unwrap();
            fs::write(root.join("a/b c.html"), "bc").unwrap();
            fs::write(root.join("docs/index.html"), "docs").unwrap();
            fs::write(root.join("Photo.PNG"), "png").unwrap();
            fs::write(base.join("secret.txt"), "secret").unwrap();
            TestRoot { base, root }
        }

        fn file(&self, rel: &str) -> Lookup {
            let path = self.root.join(rel).canonicalize().unwrap();
            let meta = fs::metadata(&path).unwrap();
            Lookup::File {
                path,
                len: meta.len(),
                modified: meta.modified().unwrap(),
            }
        }
    }

    #[test]
    fn serves_files_and_indexes() {
        let site = TestRoot::new();
        assert_eq!(resolve(&site.root, "/"), site.file("index.html"));
        assert_eq!(resolve(&site.root, "/index.html"), site.file("index.html"));
        assert_eq!(
            resolve(&site.root, "/a/b%20c.html?x=1"),
            site.file("a/b c.html")
        );
        assert_eq!(
            resolve(&site.root, "/a/b%20c.html#top"),
            site.file("a/b c.html")
        );
        assert_eq!(resolve(&site.root, "/docs/"), site.file("docs/index.html"));
        assert_eq!(
            resolve(&site.root, "/docs"),
            Lookup::MissingSlash {
                location: "/docs/".to_string()
            }
        );
        assert_eq!(
            resolve(&site.root, "/./docs/./"),
            site.file("docs/index.html")
        );
        assert_eq!(
            resolve(&site.root, "/%61/b%20c.html"),
            site.file("a/b c.html")
        );
        assert_eq!(resolve(&site.root, "/?q=/../x"), site.file("index.html"));
    }

    #[test]
    fn reports_file_size() {
        let site = TestRoot::new();
        match resolve(&site.root, "/a/b%20c.html") {
            Lookup::File { len, .. } => assert_eq!(len, 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_directory_without_its_slash_is_redirected_to_it() {
        let site = TestRoot::new();
        let redirect = |location: &str| Lookup::MissingSlash {
            location: location.to_string(),
        };
        assert_eq!(resolve(&site.root, "/sub"), redirect("/sub/"));
        assert_eq!(resolve(&site.root, "/a?x=1#f"), redirect("/a/?x=1"));
        assert_eq!(resolve(&site.root, "/./a"), redirect("/./a/"));
        assert!(matches!(resolve(&site.root, "/"), Lookup::File { .. }));
    }

    #[test]
    fn a_directory_redirect_never_names_another_host() {
        // `//sub/` would be a network-path reference (RFC 3986 §4.2): the host `sub`. A
        // directory named like a domain made `//evil.example` an open redirect.
        let site = TestRoot::new();
        let redirect = |location: &str| Lookup::MissingSlash {
            location: location.to_string(),
        };
        assert_eq!(resolve(&site.root, "//sub"), redirect("/sub/"));
        assert_eq!(resolve(&site.root, "///sub?x=1"), redirect("/sub/?x=1"));
        assert_eq!(resolve(&site.root, "//./a"), redirect("/./a/"));
    }

    #[test]
    fn missing_things_are_not_found() {
        let site = TestRoot::new();
        assert_eq!(resolve(&site.root, "/nope.html"), Lookup::NotFound);
        assert_eq!(resolve(&site.root, "/sub/"), Lookup::NotFound);
        assert_eq!(resolve(&site.root, "/index.html/"), Lookup::NotFound);
        assert_eq!(resolve(&site.root, "/index.html/x"), Lookup::NotFound);
        let gone = site.base.join("no-such-root");
        assert_eq!(resolve(&gone, "/"), Lookup::NotFound);
    }

    #[test]
    fn empty_segments_stay_inside() {
        let site = TestRoot::new();
        assert_eq!(resolve(&site.root, "//etc/passwd"), Lookup::NotFound);
        assert_eq!(resolve(&site.root, "//secret.txt"), Lookup::NotFound);
        assert_eq!(
            resolve(&site.root, "///index.html"),
            site.file("index.html")
        );
    }

    #[test]
    fn dot_dot_is_forbidden() {
        let site = TestRoot::new();
        for target in [
            "/../etc/passwd",
            "/../secret.txt",
            "/%2e%2e/%2e%2e/etc/passwd",
            "/%2E%2E/secret.txt",
            "/.%2e/secret.txt",
            "/a/../../secret.txt",
            "/a/..",
            "/..",
        ] {
            assert_eq!(resolve(&site.root, target), Lookup::Forbidden, "{target}");
        }
    }

    #[test]
    fn encoded_separators_are_bad_requests() {
        let site = TestRoot::new();
        for target in [
            "/..%2f..%2fetc/passwd",
            "/..%2F..%2Fsecret.txt",
            "/a%2fb%20c.html",
            "/..%5c..%5csecret.txt",
            "/C:\\x",
            "/a\\..\\..\\secret.txt",
            "/index.html%00.png",
            "/index%0a.html",
        ] {
            assert_eq!(resolve(&site.root, target), Lookup::BadRequest, "{target}");
        }
    }

    #[test]
    fn malformed_targets_are_bad_requests() {
        let site = TestRoot::new();
        let long = format!("/{}", "a".repeat(MAX_TARGET_BYTES));
        for target in [
            "",
            "index.html",
            "*",
            "http://example.com/",
            "/%zz",
            "/%4",
            "/%",
            "/a%2",
            "/%ff.html",
            "/%c3%28",
            long.as_str(),
        ] {
            assert_eq!(
                resolve(&site.root, target),
                Lookup::BadRequest,
                "{target:?}"
            );
        }
    }

    #[test]
    fn windows_drive_letters_stay_inside() {
        let site = TestRoot::new();
        // On Unix `C:` is an ordinary (missing) name; on Windows a prefix.
        let got = resolve(&site.root, "/C:/secret.txt");
        assert!(
            matches!(got, Lookup::NotFound | Lookup::Forbidden),
            "{got:?}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_out_of_root_are_forbidden() {
        use std::os::unix::fs::symlink;
        let site = TestRoot::new();
        symlink(site.base.join("secret.txt"), site.root.join("leak.txt")).unwrap();
        symlink(&site.base.path, site.root.join("up")).unwrap();
        symlink("/etc", site.root.join("etc")).unwrap();
        symlink(site.root.join("a/b c.html"), site.root.join("inside.html")).unwrap();
        assert_eq!(resolve(&site.root, "/leak.txt"), Lookup::Forbidden);
        assert_eq!(resolve(&site.root, "/up/secret.txt"), Lookup::Forbidden);
        assert_eq!(resolve(&site.root, "/etc/passwd"), Lookup::Forbidden);
        // A directory outside is not even redirected to.
        assert_eq!(resolve(&site.root, "/up"), Lookup::Forbidden);
        // A link that stays inside is fine and resolves to its target.
        assert_eq!(resolve(&site.root, "/inside.html"), site.file("a/b c.html"));
    }

    #[cfg(unix)]
    #[test]
    fn root_behind_a_symlink_still_works() {
        use std::os::unix::fs::symlink;
        let site = TestRoot::new();
        let link = site.base.join("www-link");
        symlink(&site.root, &link).unwrap();
        assert_eq!(resolve(&link, "/index.html"), site.file("index.html"));
        assert_eq!(resolve(&link, "/../secret.txt"), Lookup::Forbidden);
    }

    #[test]
    fn content_types_by_extension() {
        let cases = [
            ("index.html", "text/html; charset=utf-8"),
            ("OLD.HTM", "text/html; charset=utf-8"),
            ("styles.css", "text/css; charset=utf-8"),
            ("app.js", "text/javascript; charset=utf-8"),
            ("data.json", "application/json"),
            ("notes.txt", "text/plain; charset=utf-8"),
            ("img/relevo.png", "image/png"),
            ("Photo.PNG", "image/png"),
            ("a.jpg", "image/jpeg"),
            ("a.jpeg", "image/jpeg"),
            ("logo.svg", "image/svg+xml"),
            ("favicon.ico", "image/x-icon"),
            ("files/big.bin", "application/octet-stream"),
            ("Makefile", "application/octet-stream"),
            (".htaccess", "application/octet-stream"),
            ("archive.tar.gz", "application/octet-stream"),
        ];
        for (name, expected) in cases {
            assert_eq!(content_type(Path::new(name)), expected, "{name}");
        }
    }

    #[test]
    fn etag_is_quoted_hex_and_changes() {
        let t = UNIX_EPOCH + Duration::new(0x5f5e_1000, 42);
        assert_eq!(etag(1024, t), "\"400-5f5e1000-2a\"");
        assert_ne!(etag(1024, t), etag(1025, t));
        assert_ne!(etag(1024, t), etag(1024, t + Duration::from_nanos(1)));
        assert_ne!(
            etag(1, UNIX_EPOCH - Duration::from_secs(1)),
            etag(1, UNIX_EPOCH)
        );
    }

    #[test]
    fn fills_every_placeholder() {
        let page = b"<h1>Served by {{server}}</h1><p>{{server}}</p>{{serve}}";
        assert_eq!(
            fill_template(page, "server-2"),
            b"<h1>Served by server-2</h1><p>server-2</p>{{serve}}".to_vec()
        );
        assert_eq!(fill_template(b"", "x"), b"".to_vec());
        assert_eq!(
            fill_template(b"no placeholder", "x"),
            b"no placeholder".to_vec()
        );
        assert_eq!(fill_template(b"{{server}}", ""), b"".to_vec());
    }

    #[test]
    fn template_escapes_the_name() {
        assert_eq!(
            fill_template(b"<b>{{server}}</b>", "<script>&\"'"),
            b"<b>&lt;script&gt;&amp;&quot;&#39;</b>".to_vec()
        );
        // The inserted name is not expanded again.
        assert_eq!(
            fill_template(b"{{server}}", "{{server}}"),
            b"{{server}}".to_vec()
        );
    }

    #[test]
    fn template_keeps_non_utf8_bytes() {
        assert_eq!(
            fill_template(b"\xff{{server}}\xfe", "s1"),
            b"\xffs1\xfe".to_vec()
        );
    }
}
