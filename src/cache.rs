//! The disk cache shared by the proxy (a shared cache) and the client (a private cache):
//! the freshness rules of RFC 9111 as pure functions with time passed in, and a store of
//! one file per entry, written through a temporary file and renamed into place.
//!
//! TEMPORARY: this is the client branch's minimal implementation of the cache contract
//! (`/tmp/cache-contract.md`, issue 3). The cache helper's version replaces it at merge; it
//! holds no client policy (that lives in `client`).
//!
//! An entry file holds the stored response byte for byte as it would be sent: the status
//! line, the header fields, the empty line, then the body (already decoded from any
//! chunked coding). Its name is the SHA-1 hex of the key; its mtime is when it was stored or
//! last validated. A file that cannot be read back as a response is removed and is a miss.
//! What to store, and what to do with an entry, is decided by the caller with the policy
//! functions below; this module does not touch sockets.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::http::date::parse_http_date;
use crate::http::parse::{read_response, Limits};
use crate::http::serialize::response_head_bytes;
use crate::http::{Headers, Response, HOP_BY_HOP};

/// Length of an entry file name: the hex digits of a SHA-1.
pub const ENTRY_NAME_LEN: usize = 40;
/// What follows an entry name in the name of a file being written.
pub const TEMP_MARKER: &str = ".tmp";
/// Statuses cacheable by heuristic freshness (RFC 9110 §15.1).
pub const HEURISTIC_STATUSES: &[u16] = &[200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];

/// The file name of an entry: lowercase SHA-1 hex (sha1_smol) of the key. 40 chars.
pub fn entry_name(key: &str) -> String {
    sha1_smol::Sha1::from(key).digest().to_string()
}

/// One Cache-Control directive: its name (lowercase) and its argument, unquoted.
fn directives(headers: &Headers) -> Vec<(String, Option<String>)> {
    headers
        .list("cache-control")
        .map(|item| match item.split_once('=') {
            Some((name, value)) => (
                name.trim().to_ascii_lowercase(),
                Some(value.trim().trim_matches('"').to_string()),
            ),
            None => (item.to_ascii_lowercase(), None),
        })
        .collect()
}

/// The argument of directive `name`, if the directive is present: `Some(None)` without one.
fn directive(directives: &[(String, Option<String>)], name: &str) -> Option<Option<String>> {
    directives
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

/// `delta-seconds = 1*DIGIT` (RFC 9111 §1.2.2); too large a value is the largest one.
fn delta_seconds(value: Option<&str>) -> Option<Duration> {
    let digits = value?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(Duration::from_secs(digits.parse().unwrap_or(u64::MAX)))
}

/// Freshness lifetime of a stored response (RFC 9111 §4.2.1), pure.
///
/// `shared`: true for the proxy (s-maxage counts), false for a private cache. Explicit
/// freshness: s-maxage (shared only) > max-age > Expires - Date. An invalid max-age or
/// Expires gives `Some(Duration::ZERO)` (stale), as does `no-cache` (RFC 9111 §5.2.2.4:
/// use only after validation). No explicit freshness: `default_ttl` for the heuristically
/// cacheable statuses, else `None`.
pub fn freshness_lifetime(
    response: &Response,
    default_ttl: Duration,
    shared: bool,
) -> Option<Duration> {
    let cc = directives(&response.headers);
    if directive(&cc, "no-cache").is_some() {
        return Some(Duration::ZERO);
    }
    let explicit = if shared {
        directive(&cc, "s-maxage").or_else(|| directive(&cc, "max-age"))
    } else {
        directive(&cc, "max-age")
    };
    if let Some(value) = explicit {
        return Some(delta_seconds(value.as_deref()).unwrap_or(Duration::ZERO));
    }
    if let Some(expires) = response.headers.get("expires") {
        // RFC 9111 §5.3: an invalid Expires (e.g. "0") means already expired. Without a Date
        // there is nothing pure to subtract from, so the entry is treated as stale too.
        let date = response.headers.get("date").and_then(parse_http_date);
        return Some(match (parse_http_date(expires), date) {
            (Some(expires), Some(date)) => expires.duration_since(date).unwrap_or(Duration::ZERO),
            _ => Duration::ZERO,
        });
    }
    HEURISTIC_STATUSES
        .contains(&response.status)
        .then_some(default_ttl)
}

/// Current age (RFC 9111 §4.2.3) of an entry stored (or last validated) at `stored_at`: the
/// response's Age header value plus the time since `stored_at`.
pub fn current_age(response: &Response, stored_at: SystemTime, now: SystemTime) -> Duration {
    let age = delta_seconds(response.headers.get("age").map(str::trim)).unwrap_or(Duration::ZERO);
    let resident = now.duration_since(stored_at).unwrap_or(Duration::ZERO);
    age.saturating_add(resident)
}

/// Whether a response to a request with this method may be stored at all (RFC 9111 §3):
/// GET only, not 206, no `no-store`, (shared) no `private`, and a freshness lifetime or a
/// validator.
pub fn is_storable(method: &str, response: &Response, default_ttl: Duration, shared: bool) -> bool {
    let cc = directives(&response.headers);
    method == "GET"
        && response.status >= 200
        && response.status != 206
        && directive(&cc, "no-store").is_none()
        && !(shared && directive(&cc, "private").is_some())
        && (freshness_lifetime(response, default_ttl, shared).is_some()
            || validators(response).is_some())
}

/// The conditional headers that validate `stored` (RFC 9111 §4.3.1): If-None-Match from its
/// ETag, If-Modified-Since from its Last-Modified; `None` when it has neither.
pub fn validators(stored: &Response) -> Option<Vec<(String, String)>> {
    let mut conditions = Vec::new();
    if let Some(etag) = stored.headers.get("etag") {
        conditions.push(("If-None-Match".to_string(), etag.to_string()));
    }
    if let Some(modified) = stored.headers.get("last-modified") {
        conditions.push(("If-Modified-Since".to_string(), modified.to_string()));
    }
    (!conditions.is_empty()).then_some(conditions)
}

/// Updates a stored head from a 304 (RFC 9111 §4.3.4): every field of `not_modified`
/// replaces the stored one, except Content-Length and the hop-by-hop fields.
pub fn merge_304(stored: &mut Response, not_modified: &Response) {
    let mut names: Vec<&str> = Vec::new();
    for (name, _) in not_modified.headers.iter() {
        let skip = name.eq_ignore_ascii_case("content-length")
            || HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h));
        if !skip && !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            names.push(name);
        }
    }
    for name in names {
        stored.headers.remove(name);
        for value in not_modified.headers.get_all(name) {
            stored.headers.append(name, value);
        }
    }
}

/// On-disk store: one file per entry under `dir`, named `entry_name(key)`, holding the
/// status line, the header fields and the body, byte-exact. mtime = stored / last validated.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
    /// Most bytes kept in all entries together; the oldest go first beyond it.
    max_size: u64,
    /// Largest body stored, in bytes.
    max_object: u64,
}

/// A stored response read back from its file.
#[derive(Debug)]
pub struct Entry {
    /// The stored head.
    pub response: Response,
    /// Bytes of body in the file.
    pub body_len: u64,
    /// The file's mtime: when it was stored or last validated.
    pub stored_at: SystemTime,
    /// The file, positioned at the body, limited to `body_len` bytes.
    body: io::Take<BufReader<File>>,
}

impl Entry {
    /// The body: reads exactly the stored body bytes, from the first.
    pub fn body(&mut self) -> &mut impl Read {
        &mut self.body
    }
}

impl Store {
    /// A store under `dir` (created when the first entry is written).
    pub fn new(dir: impl Into<PathBuf>, max_size: u64, max_object: u64) -> Store {
        Store {
            dir: dir.into(),
            max_size,
            max_object,
        }
    }

    /// The directory holding the entries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(entry_name(key))
    }

    /// The entry for `key`, or None. An unreadable or malformed file is removed and is None.
    pub fn read(&self, key: &str) -> Option<Entry> {
        let path = self.path(key);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(_) => {
                let _ = fs::remove_file(&path);
                return None;
            }
        };
        match open_entry(file) {
            Ok(entry) => Some(entry),
            Err(_) => {
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    /// Starts writing an entry: a temporary file in `dir`, head already written. The body is
    /// written through the returned writer; `commit()` renames it into place. Dropping it
    /// without commit removes the temporary file. More than `max_object` bytes of body make
    /// the writer give up quietly (commit then stores nothing).
    ///
    /// # Errors
    /// Creating the directory or the temporary file, or writing the head.
    pub fn begin(&self, key: &str, response: &Response) -> io::Result<EntryWriter> {
        fs::create_dir_all(&self.dir)?;
        let name = entry_name(key);
        let temp = self.dir.join(temp_name(&name));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        let mut writer = EntryWriter {
            file: Some(BufWriter::new(file)),
            temp,
            target: self.dir.join(name),
            written: 0,
            store: self.clone(),
        };
        if let Some(file) = writer.file.as_mut() {
            file.write_all(&response_head_bytes(response))?;
        }
        Ok(writer)
    }

    /// Rewrites the head of an existing entry (after a 304), keeps the body, sets mtime = now.
    ///
    /// # Errors
    /// The entry is missing or malformed, or the new file cannot be written.
    pub fn refresh(&self, key: &str, response: &Response) -> io::Result<()> {
        let mut entry = self
            .read(key)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no entry to refresh"))?;
        let mut writer = self.begin(key, response)?;
        let copied = io::copy(entry.body(), &mut writer)?;
        if copied != entry.body_len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "entry shrank while refreshed",
            ));
        }
        writer.commit()
    }

    /// Removes the entry for `key` if present.
    pub fn remove(&self, key: &str) {
        let _ = fs::remove_file(self.path(key));
    }

    /// Removes every entry file (40-hex names, and leftover temporary files) and nothing
    /// else; returns (files removed, bytes removed). A missing directory holds nothing.
    ///
    /// # Errors
    /// Listing the directory or removing a file.
    pub fn flush(&self) -> io::Result<(u64, u64)> {
        let mut removed = (0, 0);
        for (path, len, _) in self.files(true)? {
            fs::remove_file(&path)?;
            removed.0 += 1;
            removed.1 += len;
        }
        Ok(removed)
    }

    /// Every entry file (and, with `temporary`, every leftover temporary file) with its size
    /// and mtime.
    fn files(&self, temporary: bool) -> io::Result<Vec<(PathBuf, u64, SystemTime)>> {
        let listing = match fs::read_dir(&self.dir) {
            Ok(listing) => listing,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut files = Vec::new();
        for item in listing {
            let item = item?;
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            let wanted = is_entry_name(name) || (temporary && is_temp_name(name));
            let Ok(meta) = item.metadata() else { continue };
            if wanted && meta.is_file() {
                let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                files.push((item.path(), meta.len(), modified));
            }
        }
        Ok(files)
    }

    /// Removes the oldest entries until all of them fit in `max_size`.
    fn evict(&self) {
        let Ok(mut files) = self.files(false) else {
            return;
        };
        let mut total: u64 = files.iter().map(|(_, len, _)| len).sum();
        files.sort_by_key(|(_, _, modified)| *modified);
        for (path, len, _) in files {
            if total <= self.max_size {
                break;
            }
            if fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
    }
}

/// Reads the head of an entry file and positions it at the body.
fn open_entry(file: File) -> io::Result<Entry> {
    let meta = file.metadata()?;
    let stored_at = meta.modified()?;
    let mut reader = BufReader::new(file);
    let response = read_response(&mut reader, &Limits::default())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    let head_len = reader.stream_position()?;
    let body_len = meta.len().saturating_sub(head_len);
    Ok(Entry {
        response,
        body_len,
        stored_at,
        body: reader.take(body_len),
    })
}

fn is_entry_name(name: &str) -> bool {
    name.len() == ENTRY_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_temp_name(name: &str) -> bool {
    name.len() > ENTRY_NAME_LEN
        && name.is_char_boundary(ENTRY_NAME_LEN)
        && is_entry_name(&name[..ENTRY_NAME_LEN])
        && name[ENTRY_NAME_LEN..].starts_with(TEMP_MARKER)
}

/// `<entry name>.tmp.<pid>.<n>`: unique per process and per write.
fn temp_name(entry: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{entry}{TEMP_MARKER}.{}.{n}", std::process::id())
}

/// Writes the body of a new entry into its temporary file.
pub struct EntryWriter {
    /// Invariant: `None` once the writer gave up (body too large) or committed.
    file: Option<BufWriter<File>>,
    temp: PathBuf,
    target: PathBuf,
    written: u64,
    store: Store,
}

impl EntryWriter {
    /// Renames the entry into place (atomically replacing any previous one), then evicts
    /// the oldest entries beyond the store's size. A writer that gave up stores nothing.
    ///
    /// # Errors
    /// Flushing or renaming the temporary file.
    pub fn commit(mut self) -> io::Result<()> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        let file = file.into_inner().map_err(io::IntoInnerError::into_error)?;
        drop(file);
        fs::rename(&self.temp, &self.target)?;
        self.store.evict();
        Ok(())
    }

    fn give_up(&mut self) {
        self.file = None;
        let _ = fs::remove_file(&self.temp);
    }
}

impl Write for EntryWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(file) = self.file.as_mut() else {
            return Ok(buf.len());
        };
        if self.written + buf.len() as u64 > self.store.max_object {
            self.give_up();
            return Ok(buf.len());
        }
        let n = file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for EntryWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::date::format_http_date;

    const TTL: Duration = Duration::from_secs(60);

    fn response(status: u16, fields: &[(&str, &str)]) -> Response {
        let mut r = Response::new(status);
        for (n, v) in fields {
            r.headers.append(*n, *v);
        }
        r
    }

    fn temp_dir(label: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("relevo-cache-unit-{}-{label}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn entry_names_are_sha1_hex() {
        let name = entry_name("http://a/");
        assert_eq!(name.len(), 40);
        assert!(is_entry_name(&name));
        assert!(is_temp_name(&temp_name(&name)));
        assert!(!is_entry_name("notes.txt"));
    }

    #[test]
    fn freshness_follows_rfc_9111_section_4_2_1() {
        let r = response(200, &[("Cache-Control", "s-maxage=5, max-age=10")]);
        assert_eq!(
            freshness_lifetime(&r, TTL, true),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            freshness_lifetime(&r, TTL, false),
            Some(Duration::from_secs(10))
        );
        let bad = response(200, &[("Cache-Control", "max-age=soon")]);
        assert_eq!(freshness_lifetime(&bad, TTL, false), Some(Duration::ZERO));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let expires = response(
            200,
            &[
                ("Date", &format_http_date(now)),
                ("Expires", &format_http_date(now + Duration::from_secs(30))),
            ],
        );
        assert_eq!(
            freshness_lifetime(&expires, TTL, false),
            Some(Duration::from_secs(30))
        );
        let invalid = response(200, &[("Expires", "0")]);
        assert_eq!(
            freshness_lifetime(&invalid, TTL, false),
            Some(Duration::ZERO)
        );
        assert_eq!(
            freshness_lifetime(&response(200, &[]), TTL, false),
            Some(TTL)
        );
        assert_eq!(freshness_lifetime(&response(302, &[]), TTL, false), None);
        let no_cache = response(200, &[("Cache-Control", "no-cache")]);
        assert_eq!(
            freshness_lifetime(&no_cache, TTL, false),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn age_adds_the_age_field_to_the_time_resident() {
        let stored = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let r = response(200, &[("Age", "7")]);
        let now = stored + Duration::from_secs(3);
        assert_eq!(current_age(&r, stored, now), Duration::from_secs(10));
        assert_eq!(
            current_age(&response(200, &[]), now, stored),
            Duration::ZERO
        );
    }

    #[test]
    fn storability() {
        assert!(is_storable("GET", &response(200, &[]), TTL, true));
        assert!(!is_storable("HEAD", &response(200, &[]), TTL, true));
        assert!(!is_storable("GET", &response(206, &[]), TTL, true));
        let private = response(200, &[("Cache-Control", "private")]);
        assert!(!is_storable("GET", &private, TTL, true));
        assert!(is_storable("GET", &private, TTL, false));
        let no_store = response(200, &[("Cache-Control", "no-store")]);
        assert!(!is_storable("GET", &no_store, TTL, false));
        assert!(!is_storable("GET", &response(302, &[]), TTL, false));
        assert!(is_storable(
            "GET",
            &response(302, &[("ETag", "\"x\"")]),
            TTL,
            false
        ));
    }

    #[test]
    fn validators_and_304_merging() {
        assert_eq!(validators(&response(200, &[])), None);
        let mut stored = response(
            200,
            &[
                ("ETag", "\"a\""),
                ("Content-Length", "5"),
                ("Cache-Control", "max-age=1"),
            ],
        );
        assert_eq!(
            validators(&stored),
            Some(vec![("If-None-Match".to_string(), "\"a\"".to_string())])
        );
        let fresh = response(
            304,
            &[
                ("Cache-Control", "max-age=9"),
                ("Content-Length", "0"),
                ("Connection", "close"),
            ],
        );
        merge_304(&mut stored, &fresh);
        assert_eq!(stored.headers.get("cache-control"), Some("max-age=9"));
        assert_eq!(stored.headers.get("content-length"), Some("5"));
        assert!(!stored.headers.contains("connection"));
    }

    #[test]
    fn store_round_trip_refresh_and_flush() {
        let dir = temp_dir("round-trip");
        let store = Store::new(&dir, 1 << 20, 1 << 20);
        let head = response(200, &[("Content-Type", "text/plain"), ("ETag", "\"v1\"")]);
        let mut w = store.begin("k", &head).unwrap();
        w.write_all(b"hello").unwrap();
        w.commit().unwrap();
        let mut entry = store.read("k").unwrap();
        assert_eq!((entry.response.clone(), entry.body_len), (head.clone(), 5));
        let mut body = String::new();
        entry.body().read_to_string(&mut body).unwrap();
        assert_eq!(body, "hello");

        let mut newer = head.clone();
        newer.headers.set("ETag", "\"v2\"");
        store.refresh("k", &newer).unwrap();
        let mut entry = store.read("k").unwrap();
        assert_eq!(entry.response.headers.get("etag"), Some("\"v2\""));
        body.clear();
        entry.body().read_to_string(&mut body).unwrap();
        assert_eq!(body, "hello");

        // An abandoned writer leaves nothing; a non-entry file survives a flush.
        drop(store.begin("other", &head).unwrap());
        fs::write(dir.join("notes.txt"), b"keep").unwrap();
        let size = fs::metadata(dir.join(entry_name("k"))).unwrap().len();
        assert_eq!(store.flush().unwrap(), (1, size));
        assert_eq!(store.flush().unwrap(), (0, 0));
        assert!(dir.join("notes.txt").exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn oversized_bodies_and_malformed_files_are_not_kept() {
        let dir = temp_dir("limits");
        let store = Store::new(&dir, 1 << 20, 4);
        let mut w = store.begin("big", &response(200, &[])).unwrap();
        w.write_all(b"too long").unwrap();
        w.commit().unwrap();
        assert!(store.read("big").is_none());
        fs::write(dir.join(entry_name("junk")), b"not a response").unwrap();
        assert!(store.read("junk").is_none());
        assert!(!dir.join(entry_name("junk")).exists());
        assert_eq!(store.flush().unwrap(), (0, 0));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_oldest_entries_go_beyond_max_size() {
        let dir = temp_dir("evict");
        let store = Store::new(&dir, 60, 1 << 20);
        for key in ["a", "b"] {
            let mut w = store.begin(key, &response(200, &[])).unwrap();
            w.write_all(&[b'x'; 20]).unwrap();
            w.commit().unwrap();
        }
        // Each entry is 19 bytes of head plus 20 of body: only the newest fits.
        assert_eq!(store.files(false).unwrap().len(), 1);
        let _ = fs::remove_dir_all(&dir);
    }
}
