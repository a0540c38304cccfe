//! Purging stored responses: `POST {status_path}/purge` (see `admin`) with `url=` removes
//! what is stored for one URL, with `path=` what is stored for that path on every host the
//! cache has stored responses for; every Vary variant goes (`Store::purge`). `proxy --purge`
//! posts the same form from the command line (`control`).
//!
//! A cache file is named by the SHA-1 of its key, so the keys of a path on every host cannot
//! be found from the files: the cache keeps the list of hosts it has stored responses for
//! ([`KnownHosts`]), in memory and in the file [`HOSTS_FILE`] of the cache directory, so a
//! restarted proxy still purges what an earlier run stored. A path is exactly a request's
//! origin-form target, query included: `/a` does not purge `/a?b`.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use super::caching::SharedCache;
use super::generation::Generation;
use crate::http::authority::{absolute_form_parts, normalize_authority};

/// The file, in the cache directory, that lists the hosts the cache has stored responses
/// for, one authority a line. Not an entry: the store leaves it alone, and so does
/// `--flush-cache` (a host listed with nothing stored costs a purge one file lookup).
pub const HOSTS_FILE: &str = "purge-hosts";

/// Most hosts listed; beyond, new hosts are not listed (and a path purge does not reach
/// them: a purge by `url=` still does). Hosts come from clients' Host fields, so the list is
/// bounded like anything a client can grow.
pub const MAX_KNOWN_HOSTS: usize = 1024;

/// Longest host listed, in bytes (a DNS name is at most 253, and a port follows).
const MAX_HOST_BYTES: usize = 300;

/// Most bytes of [`HOSTS_FILE`] read at start-up: a full list, [`MAX_KNOWN_HOSTS`] lines
/// of at most [`MAX_HOST_BYTES`] and a newline. Ours is never longer; the rest of a longer
/// file (not one we wrote) is ignored rather than read into memory.
const MAX_HOSTS_FILE_BYTES: u64 = (MAX_KNOWN_HOSTS * (MAX_HOST_BYTES + 1)) as u64;

/// What a purge removes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Target {
    /// `url=http://host/path`: what is stored for that URL.
    Url(String),
    /// `path=/path`: what is stored for that path on every known host.
    Path(String),
}

impl Target {
    /// The target of a purge form: exactly one of `url` (an `http://` absolute URL) and
    /// `path` (starting with `/`, without spaces or control characters).
    ///
    /// # Errors
    /// What is wrong with the form, for a 400.
    pub(super) fn from_fields(
        url: Option<&str>,
        path: Option<&str>,
    ) -> Result<Target, &'static str> {
        let clean = |s: &str| {
            !s.bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        };
        match (url, path) {
            (Some(url), None) if clean(url) && absolute_form_parts(url).is_some() => {
                Ok(Target::Url(url.to_string()))
            }
            (Some(_), None) => Err("url: expected an absolute http:// URL"),
            (None, Some(path)) if clean(path) && path.starts_with('/') => {
                Ok(Target::Path(path.to_string()))
            }
            (None, Some(_)) => Err("path: expected a path starting with /"),
            _ => Err("expected url=http://HOST/PATH or path=/PATH (one of them)"),
        }
    }
}

/// Removes what is stored for `target` (every variant); returns how many stored responses
/// went. The keys are scoped to the pool the configuration in force routes them to, as
/// when they were stored (`Generation::scoped_key`).
pub(super) fn purge(cache: &SharedCache, gen: &Generation, target: &Target) -> u64 {
    let uris: Vec<String> = match target {
        Target::Url(url) => absolute_form_parts(url)
            .map(|(authority, path)| format!("http://{}{path}", normalize_authority(authority)))
            .into_iter()
            .collect(),
        Target::Path(path) => cache
            .hosts
            .all()
            .into_iter()
            .map(|host| format!("http://{host}{path}"))
            .collect(),
    };
    uris.into_iter()
        .map(|uri| cache.store.purge(&gen.scoped_key(uri)))
        .sum()
}

/// The hosts the cache has stored responses for (see the module docs).
#[derive(Debug)]
pub(super) struct KnownHosts {
    /// `HOSTS_FILE` in the cache directory.
    file: PathBuf,
    hosts: Mutex<BTreeSet<String>>,
    /// Whether the list has been found full: said once in the log, not on every store.
    full: AtomicBool,
}

impl KnownHosts {
    /// The hosts listed in `dir`'s [`HOSTS_FILE`], if any (a missing or unreadable file is
    /// an empty list: a path purge then reaches the hosts stored from now on).
    pub(super) fn load(dir: &Path) -> KnownHosts {
        let file = dir.join(HOSTS_FILE);
        let mut text = String::new();
        if let Ok(listed) = fs::File::open(&file) {
            // Unreadable or not UTF-8: an empty list, as a missing file.
            if listed
                .take(MAX_HOSTS_FILE_BYTES)
                .read_to_string(&mut text)
                .is_err()
            {
                text.clear();
            }
        }
        let hosts = text
            .lines()
            .filter(|line| is_listable(line))
            .take(MAX_KNOWN_HOSTS)
            .map(str::to_string)
            .collect();
        KnownHosts {
            file,
            hosts: Mutex::new(hosts),
            full: AtomicBool::new(false),
        }
    }

    /// Lists the host of the cache key `key` (`http://host/path`, or `pool http://host/path`
    /// in a named pool) if it is new, and writes the list out. A list that cannot be
    /// written is logged; the purge by path of this run still knows the host.
    pub(super) fn note(&self, key: &str) {
        let uri = key.rsplit(' ').next().unwrap_or(key);
        let Some(host) = uri
            .strip_prefix("http://")
            .and_then(|rest| rest.split('/').next())
        else {
            return;
        };
        let mut hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        if hosts.contains(host) || !is_listable(host) {
            return;
        }
        if hosts.len() >= MAX_KNOWN_HOSTS {
            if !self.full.swap(true, Ordering::Relaxed) {
                log::warn!(
                    "cache: {} lists {MAX_KNOWN_HOSTS} hosts, its most; a purge by path will \
                     not reach {host} nor later hosts (purge them by URL, or flush the cache)",
                    self.file.display()
                );
            }
            return;
        }
        hosts.insert(host.to_string());
        let text: String = hosts.iter().map(|h| format!("{h}\n")).collect();
        if let Err(e) = write_atomically(&self.file, text.as_bytes()) {
            log::warn!("cache: cannot write {}: {e}", self.file.display());
        }
    }

    /// Every host listed.
    pub(super) fn all(&self) -> Vec<String> {
        let hosts = self.hosts.lock().unwrap_or_else(PoisonError::into_inner);
        hosts.iter().cloned().collect()
    }
}

/// Whether `host` may be listed: non-empty, not too long, printable ASCII without spaces
/// or `/` (a normalised authority always is).
fn is_listable(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= MAX_HOST_BYTES
        && host.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
}

/// Writes `bytes` to `path` through a temporary file renamed over it, so a reader never
/// sees half a list.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temp = path.with_extension(format!("new-{}", std::process::id()));
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let written = fs::write(&temp, bytes).and_then(|()| fs::rename(&temp, path));
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    #[test]
    fn a_purge_names_one_url_or_one_path() {
        let target = |url, path| Target::from_fields(url, path);
        assert_eq!(
            target(Some("http://Shop.Example/a?b"), None),
            Ok(Target::Url("http://Shop.Example/a?b".into()))
        );
        assert_eq!(target(None, Some("/a")), Ok(Target::Path("/a".into())));
        for (url, path) in [
            (None, None),
            (Some("http://h/a"), Some("/a")),
            (Some("/a"), None),
            (Some("ftp://h/a"), None),
            (Some("http://h/a b"), None),
            (None, Some("a")),
            (None, Some("/a\r\nX: y")),
        ] {
            assert!(target(url, path).is_err(), "{url:?} {path:?}");
        }
    }

    #[test]
    fn known_hosts_are_listed_once_and_survive_a_restart() {
        let dir = TempDir::new("hosts");
        let hosts = KnownHosts::load(&dir.path);
        assert!(hosts.all().is_empty());
        hosts.note("http://b.example/x");
        hosts.note("http://a.example:8080/y?z");
        hosts.note("api http://b.example/other");
        hosts.note("not a key");
        assert_eq!(hosts.all(), ["a.example:8080", "b.example"]);
        let again = KnownHosts::load(&dir.path);
        assert_eq!(again.all(), ["a.example:8080", "b.example"]);
        fs::write(dir.join(HOSTS_FILE), "ok.example\n\nbad host\n").unwrap();
        assert_eq!(KnownHosts::load(&dir.path).all(), ["ok.example"]);
    }

    #[test]
    fn a_full_list_takes_no_more_hosts_and_says_so_once() {
        let dir = TempDir::new("hosts-full");
        let hosts = KnownHosts::load(&dir.path);
        for n in 0..MAX_KNOWN_HOSTS {
            hosts.note(&format!("http://h{n}.example/"));
        }
        assert!(!hosts.full.load(Ordering::Relaxed));
        hosts.note("http://late.example/");
        assert_eq!(hosts.all().len(), MAX_KNOWN_HOSTS);
        assert!(!hosts.all().contains(&"late.example".to_string()));
        assert!(hosts.full.load(Ordering::Relaxed), "the log has been told");
    }

    #[test]
    fn a_huge_hosts_file_is_read_only_as_far_as_a_full_list_reaches() {
        // Not one we wrote (ours stay under MAX_HOSTS_FILE_BYTES): it is not read whole.
        let dir = TempDir::new("hosts-huge");
        let mut text = "x".repeat(MAX_KNOWN_HOSTS * (MAX_HOST_BYTES + 1) + 1);
        text.push_str("\nlate.example\n");
        fs::write(dir.join(HOSTS_FILE), text).unwrap();
        assert!(KnownHosts::load(&dir.path).all().is_empty());
    }
}
