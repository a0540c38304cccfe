//! The cache's files: one per stored response under the cache directory, named by the SHA-1
//! of its key, holding the status line, the stored header fields and the body, byte-exact, so
//! `cat cache/<name>` shows exactly what will be served. The file's mtime is when the response
//! was received or last validated; its atime, set by us on every use, orders eviction.
//!
//! This module owns file I/O only: what may be stored and for how long is the policy in
//! `cache`, and the proxy decides when to call what. Here: the `Store` and its lookups,
//! storing, refreshing and removal; `file` the entry file's format and its reading;
//! `writer` the writing of one entry; `upkeep` the background census and eviction; `memo`
//! the heads and bodies of small entries served lately, checked by one `stat` per hit.
//!
//! # Atomicity
//!
//! A response is written to a temporary file in the same directory (`.tmp-<name>-<pid>-<n>`)
//! and renamed over the entry only when its whole body has arrived and matched its framing
//! (`EntryWriter::commit`). A proxy killed mid-write, a backend that dies mid-body or a full
//! disk leaves at most a temporary file, never a partial entry; leftovers of other processes
//! are removed the first time a store counts its files, and by `flush`. (We do not fsync:
//! that would protect against power loss, at a cost on every store; a process crash is
//! covered by the rename alone.) On reading, the body must be exactly as long as the stored
//! Content-Length says, so a truncated or edited file is caught, reported as a miss and
//! removed. A response that arrived without Content-Length (chunked or close-delimited) is
//! stored with one: the head is written with twenty spaces in its place and the digits are
//! written over them at commit (trailing whitespace in a field value is allowed, RFC 9112 §5).
//! A close-delimited body is complete when the connection closes (RFC 9112 §8), so it is
//! stored like the others, as httpd does; only Content-Length and chunked framing can show
//! a backend that died mid-body.
//!
//! # Variants
//!
//! A response with Vary is stored under a secondary key (`cache::variant_key`) that adds the
//! request's values of the varying fields. To find it from a new request, the file of the
//! primary key holds a one-line *variant index* instead of a response, the way httpd's
//! mod_cache_disk keeps a "vary" header file:
//!
//! ```text
//! VARY 3f2a9c0d5e6b7a81: accept-encoding, accept-language
//! 5d41402abc4b2a76b9719d911017c592ae3f2b1c
//! ```
//!
//! The nonce is part of every variant's key. Invalidating a URI removes the index, and the
//! next index gets a new nonce, so old variants can never be found again; being unreachable,
//! they are never touched and go first when space is needed. The lines after the first name
//! the variants' files, the first [`MAX_LISTED_VARIANTS`] of them, so that a purge
//! ([`Store::purge`]) removes every variant, not only the index.
//!
//! # Size
//!
//! What an entry costs is the space its file takes on disk (allocated blocks, at least its
//! length), not its length: a 1 KiB response takes a 4 KiB block. The in-memory index
//! (`index`) keeps every entry's size and last use and the running total, so no request
//! lists the directory.
//!
//! - A proxy's store runs [`Store::start_upkeep`]: a background thread rebuilds the index
//!   once (the *census*: every file's allocated size, its atime as its last use) while
//!   requests are served, then evicts. When a commit takes the total past 95% of
//!   `max_size`, it wakes that thread, which removes least recently used entries, one file
//!   at a time with the lock taken only to pick each one, down to 90%
//!   ([`EVICT_TO_PERCENT`](super::index::EVICT_TO_PERCENT)). Should the writers outrun it
//!   (it gets one thread's share of the CPU), a commit that takes the total past `max_size`
//!   evicts about as much as it added, itself. During the census nothing is evicted: the
//!   total is not known yet, and the least recently used entries are the ones not yet
//!   listed. Temporary files being written are not counted.
//! - Without it (the client, `--flush-cache`), the first commit counts the directory and a
//!   commit past the limit evicts the batch itself, as a one-shot program should.
//!
//! "Used" is a lookup that found the entry, or its storing. The index orders uses exactly;
//! the file's atime, which is what survives a restart, we move ourselves on use, to the
//! minute ([`ATIME_RESOLUTION`]), rather than trust the mount's atime policy (`noatime`,
//! `relatime`). htcacheclean, httpd's cleaner, also cleans by size in LRU order.
//!
//! A proxy's store also admits by frequency ([`Store::with_admission`], `admission`): once
//! the cache is full, a response is stored only if its key was asked for before and more often
//! lately than the least recently used entry's; otherwise it is relayed without a file. The
//! requests are counted where the index already records them: a lookup that finds an entry
//! (its use), and `begin` for a key not stored (a miss about to be stored). A miss is counted
//! there rather than at lookup because the proxy looks a missing key up twice (before and
//! after joining the request in flight), and a key asked for once must count once.
//!
//! Once the census is complete, a lookup of a key the index does not hold is a miss without
//! a system call: every file we put in place or remove changes the index in the same
//! critical section, so only a file someone else put there is missed (until a census). A
//! file removed by someone else (an `rm`, another process's flush) is forgotten when a
//! lookup fails to open it or eviction fails to remove it, and either asks the upkeep
//! thread for a new census, which re-syncs the whole index in the background.
//!
//! A write that fails because the disk is full (`ENOSPC`, `EDQUOT`) evicts a batch, the
//! least recently used tenth of what the cache holds, in the writing thread, and is tried
//! once more; if it fails again the entry is dropped. The cache keeps working either way.

use std::fs::{self, File, FileTimes, Metadata, OpenOptions};
use std::io::{self, BufWriter, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use super::admission::Sketch;
use super::index::{parse_name, Admission, EvictionTally, Index, Presence};
use super::{entry_name, variant_key, vary_names};
use crate::http::body::{response_framing, Framing};
use crate::http::serialize::response_head_bytes;
use crate::http::{Request, Response};

mod file;
mod memo;
mod upkeep;
mod writer;

pub use file::Entry;
pub use file::MAX_LISTED_VARIANTS;
use file::{parse_file, EntryBody, Stored, VaryIndex, MAX_INDEX_BYTES, NONCE_LEN};
use memo::{Identity, Memo, Remembered, MAX_REMEMBERED_BODY};
pub use writer::EntryWriter;

/// Start of every temporary file's name; `flush` removes these too.
pub const TEMP_PREFIX: &str = ".tmp-";

/// An entry's atime is moved to now on use only when it is older than this: eviction order
/// is kept to the minute, and a popular entry costs no write per hit (the idea of Linux's
/// `relatime`).
pub const ATIME_RESOLUTION: Duration = Duration::from_secs(60);

/// Digits reserved for a Content-Length written at commit: `u64::MAX` has 20.
const LENGTH_WIDTH: usize = 20;

/// Whether `name` is an entry file's name: 40 lowercase hex digits.
pub fn is_entry_name(name: &str) -> bool {
    parse_name(name).is_some()
}

/// On-disk store: one file per entry under `dir`, named `entry_name(key)`, holding the status
/// line, the header fields and the body, byte-exact. mtime = stored / last validated.
///
/// Cheap to share between threads (`&Store` is all they need); every file operation that
/// changes the total size happens under one lock, with the change to the in-memory index.
/// Dropping the store stops its upkeep thread, if it has one.
pub struct Store {
    shared: Arc<Shared>,
}

struct Shared {
    dir: PathBuf,
    max_size: u64,
    max_object: u64,
    /// The entries, their sizes and last uses. Invariant: a rename into place or a removal
    /// of an entry file is recorded in the same critical section, except eviction's, which
    /// marks the name as being evicted instead (`Index::may_install`).
    index: Mutex<Index>,
    /// Wakes the upkeep thread: the total passed `EVICT_FROM_PERCENT` of `max_size`, a
    /// census is wanted, or the store is being dropped.
    wake: Condvar,
    /// Whether an upkeep thread counts and evicts (`Store::start_upkeep`); otherwise the
    /// first commit counts and a commit past the limit evicts.
    upkeep: AtomicBool,
    /// Set while the upkeep thread evicts a batch: stores past the mark need not wake it.
    evicting: AtomicBool,
    /// Set when a lookup or an eviction met a file someone else removed: the upkeep thread
    /// re-syncs.
    census_wanted: AtomicBool,
    /// Set when the store is dropped: the upkeep thread ends.
    stopping: AtomicBool,
    /// Held while a batch is evicted because the disk was full, so writers that fail at
    /// the same time make room once; `room_made` counts those batches.
    room_lock: Mutex<()>,
    room_made: AtomicU64,
    /// Evictions not yet reported in the log.
    tally: Mutex<EvictionTally>,
    /// Responses not stored because the cache was full and they were not admitted.
    not_admitted: AtomicU64,
    /// The heads and bodies of small entries served lately (`memo`).
    memo: Mutex<Memo>,
    /// Held while a variant index is read and replaced, so concurrent variants of one URI
    /// agree on one nonce.
    index_lock: Mutex<()>,
    /// Numbers temporary files and nonces within this process.
    counter: AtomicU64,
    /// Our process id, for temporary file names (asked once: it is a system call).
    pid: u32,
}

impl Store {
    /// A store in `dir`, created when the first entry is written. Entries past `max_size`
    /// bytes in total are evicted; bodies over `max_object` bytes are not stored.
    pub fn new(dir: impl Into<PathBuf>, max_size: u64, max_object: u64) -> Store {
        Store {
            shared: Arc::new(Shared {
                dir: dir.into(),
                max_size,
                max_object,
                index: Mutex::new(Index::new()),
                wake: Condvar::new(),
                upkeep: AtomicBool::new(false),
                evicting: AtomicBool::new(false),
                census_wanted: AtomicBool::new(false),
                stopping: AtomicBool::new(false),
                room_lock: Mutex::new(()),
                room_made: AtomicU64::new(0),
                tally: Mutex::new(EvictionTally::default()),
                not_admitted: AtomicU64::new(0),
                memo: Mutex::new(Memo::default()),
                index_lock: Mutex::new(()),
                counter: AtomicU64::new(0),
                pid: std::process::id(),
            }),
        }
    }

    /// Starts the background thread that counts the entries already on disk (requests are
    /// served meanwhile) and then evicts as the total nears `max_size`, so no request waits
    /// on either. For a long-running program (the proxy); call it once, before use.
    ///
    /// # Errors
    /// The thread cannot be started.
    pub fn start_upkeep(&self) -> io::Result<()> {
        self.shared.lock_index().begin_census();
        self.shared.upkeep.store(true, Ordering::SeqCst);
        let shared = Arc::clone(&self.shared);
        std::thread::Builder::new()
            .name("cache-upkeep".to_string())
            .spawn(move || shared.run_upkeep())
            .map(drop)
    }

    /// With `on`, the store admits by frequency once the cache is full (see the module's
    /// doc): the shared cache of a proxy. A private cache (the client's) stores everything.
    pub fn with_admission(self, on: bool) -> Store {
        if on {
            let sketch = Sketch::for_cache(self.shared.max_size);
            self.shared.lock_index().admit_by_frequency(sketch);
        }
        self
    }

    /// Responses not stored since the start because the cache was full and they were not
    /// admitted.
    pub fn not_admitted(&self) -> u64 {
        self.shared.not_admitted.load(Ordering::Relaxed)
    }

    /// Bytes on disk taken by the entry files. With an upkeep thread this is what is known
    /// so far (only what was stored or used, until the census is complete); without, the
    /// directory is counted first if it has not been.
    pub fn usage(&self) -> u64 {
        self.shared.counted_index().usage()
    }

    /// Entry files known (with an upkeep thread: so far), variant indexes included.
    pub fn entries(&self) -> u64 {
        self.shared.counted_index().len() as u64
    }

    /// The entry for `key`, or None. An unreadable or malformed file is removed and is None.
    /// A variant index is not an entry: None, and it stays.
    pub fn read(&self, key: &str) -> Option<Entry> {
        match self.shared.open(&entry_name(key))? {
            Stored::Entry(entry) => Some(entry),
            Stored::Index(_) => None,
        }
    }

    /// The stored response for `request`, whose primary key is `base`: the entry itself, or
    /// through the variant index the variant matching the request's varying fields (RFC 9111
    /// §4.1). Returns the key the entry was found under, for `refresh` and `remove`.
    pub fn lookup(&self, base: &str, request: &Request) -> Option<(String, Entry)> {
        match self.shared.open(&entry_name(base))? {
            Stored::Entry(entry) => {
                let plain = vary_names(&entry.response).is_some_and(|n| n.is_empty());
                plain.then(|| (base.to_string(), entry))
            }
            Stored::Index(index) => {
                let key = variant_key(base, &index.nonce, &index.names, request);
                let entry = self.read(&key)?;
                let same = vary_names(&entry.response).is_some_and(|n| n == index.names);
                same.then_some((key, entry))
            }
        }
    }

    /// Starts writing an entry: a temporary file in `dir`, head already written. The body is
    /// written through the returned writer; `commit()` renames it into place only if called;
    /// dropping it without commit removes the temporary file. Writing more than max_object
    /// bytes of body makes the writer give up quietly (commit then stores nothing).
    ///
    /// A head whose Content-Length already exceeds max_object, or a response the full cache
    /// does not admit (`with_admission`), gives a writer that has given up from the start
    /// (see `EntryWriter::is_abandoned`), without touching the disk.
    ///
    /// # Errors
    /// The directory cannot be created, or the temporary file cannot be created or written.
    pub fn begin(&self, key: &str, response: &Response) -> io::Result<EntryWriter> {
        let name = entry_name(key);
        let declared = match response_framing("GET", response) {
            Ok(Framing::Length(n)) => Some(n),
            Ok(Framing::Empty) => Some(0),
            _ => None,
        };
        let mut writer = EntryWriter {
            shared: Arc::clone(&self.shared),
            temp: self.shared.temp_path(&name),
            name,
            file: None,
            body_len: 0,
            body_start: 0,
            declared,
            patch_at: None,
            received: SystemTime::now(),
            retried: false,
        };
        let too_big = declared.is_some_and(|n| n > self.shared.max_object);
        if too_big {
            log::debug!("cache: {key:?} is larger than cache_max_object, not stored");
        }
        if too_big || !self.shared.admits(key, &writer.name) {
            return Ok(writer);
        }
        let mut head = response.clone();
        if declared.is_none() {
            head.headers.remove("content-length");
            head.headers.remove("transfer-encoding");
            head.headers
                .append("Content-Length", " ".repeat(LENGTH_WIDTH));
        }
        let bytes = response_head_bytes(&head);
        if declared.is_none() {
            // The placeholder is the value of the last field: before its CRLF and the final CRLF.
            writer.patch_at = Some((bytes.len() - 4 - LENGTH_WIDTH) as u64);
        }
        let open = || {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&writer.temp)
        };
        // The directory is made when the first entry is written (or when someone removed it).
        let create = || match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(&self.shared.dir)?;
                open()
            }
            other => other,
        };
        let file = self.shared.with_room(&mut writer.retried, create)?;
        writer.file = Some(BufWriter::new(file));
        writer.write_on(&mut &bytes[..])?;
        writer.body_start = bytes.len() as u64;
        Ok(writer)
    }

    /// [`Store::begin`] for the response to `request` under the primary key `base`: a
    /// response with Vary goes under its variant key, and the variant index is written or
    /// kept so `lookup` finds it.
    ///
    /// # Errors
    /// `Vary: *` (`InvalidInput`: never stored), or an I/O error.
    pub fn begin_variant(
        &self,
        base: &str,
        request: &Request,
        response: &Response,
    ) -> io::Result<EntryWriter> {
        let names = vary_names(response).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "Vary: * is never stored")
        })?;
        if names.is_empty() {
            return self.begin(base, response);
        }
        let key = self.variant_slot(base, names, request)?;
        self.begin(&key, response)
    }

    /// The key of `request`'s variant under the variant index of `base` for these names:
    /// the existing index if it lists the same names, else a new one (which also replaces a
    /// plain entry). The variant's file is listed in the index when it is new there (up to
    /// [`MAX_LISTED_VARIANTS`]), which rewrites the index.
    fn variant_slot(
        &self,
        base: &str,
        names: Vec<String>,
        request: &Request,
    ) -> io::Result<String> {
        let _serial = self.lock_variant_indexes();
        let name = entry_name(base);
        let (mut index, mut changed) = match self.shared.open(&name) {
            Some(Stored::Index(index)) if index.names == names => (index, false),
            _ => {
                let nonce = self.shared.nonce(base);
                let variants = Vec::new();
                (
                    VaryIndex {
                        nonce,
                        names,
                        variants,
                    },
                    true,
                )
            }
        };
        let key = variant_key(base, &index.nonce, &index.names, request);
        let variant = entry_name(&key);
        let room = index.to_bytes().len() + variant.len() + 2 <= MAX_INDEX_BYTES as usize;
        let listed = index.variants.contains(&variant);
        if !listed && room && index.variants.len() < MAX_LISTED_VARIANTS {
            index.variants.push(variant);
            changed = true;
        }
        if changed {
            self.shared.write_file(&name, &index.to_bytes())?;
        }
        Ok(key)
    }

    /// Held while a variant index is read and replaced (see `Shared::index_lock`).
    fn lock_variant_indexes(&self) -> MutexGuard<'_, ()> {
        self.shared
            .index_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Rewrites the head of an existing entry (after a 304), keeps the body, sets mtime = now.
    ///
    /// The new file is written beside the old one and renamed over it, like any entry; a
    /// reader that has the old one open keeps reading the old bytes. If the entry was
    /// replaced meanwhile by a response with another ETag, nothing is written. (Only ETags
    /// are compared: a 304 may legitimately bring a newer Last-Modified. The body length is
    /// checked at commit whatever the validators.)
    ///
    /// A 304 that changes no field but Date (the common case: a `no-cache` page validated on
    /// every request) only restarts the entry's clock, its mtime, in place: rewriting the
    /// file cost a write and a rename per request, and ext4 flushes a file renamed over
    /// another. The stored Date then stays the first response's, which changes nothing here:
    /// age counts from the mtime (`cache::current_age`). Not when the head has Expires, whose
    /// lifetime (Expires − Date) a newer Date shortens.
    ///
    /// Returns whether it wrote anything: `Ok(false)` when another request got there first
    /// (the entry is gone, or was replaced by a response with another ETag). That is a normal
    /// race between concurrent requests, not a failure.
    ///
    /// # Errors
    /// `InvalidData` when the body length no longer matches; I/O errors.
    pub fn refresh(&self, key: &str, response: &Response) -> io::Result<bool> {
        let name = entry_name(key);
        let Some(Stored::Entry(mut entry)) = self.shared.open(&name) else {
            return Ok(false);
        };
        let (old, new) = (opaque_etag(&entry.response), opaque_etag(response));
        if matches!((old, new), (Some(a), Some(b)) if a != b) {
            return Ok(false);
        }
        if same_but_date(&entry.response, response) && response.headers.get("expires").is_none() {
            let file = OpenOptions::new()
                .write(true)
                .open(self.shared.dir.join(&name));
            return match file.and_then(|f| f.set_modified(SystemTime::now())) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e),
            };
        }
        let mut writer = self.begin(key, response)?;
        io::copy(&mut entry.body, &mut writer)?;
        writer.commit().map(|()| true)
    }

    /// Removes the entry for `key` if present (for a primary key holding a variant index:
    /// the index, which makes every variant unreachable).
    pub fn remove(&self, key: &str) {
        self.shared.remove_file(&entry_name(key));
    }

    /// Removes everything stored under the primary key `key`: its entry, or its variant
    /// index and every variant the index names. Returns how many stored responses went
    /// (variants one by one; the index itself is not a response).
    pub fn purge(&self, key: &str) -> u64 {
        let _serial = self.lock_variant_indexes();
        let name = entry_name(key);
        match self.shared.open(&name) {
            Some(Stored::Entry(_)) => u64::from(self.shared.remove_file(&name)),
            Some(Stored::Index(index)) => {
                let variants = index.variants.iter();
                let removed = variants.filter(|v| self.shared.remove_file(v)).count();
                self.shared.remove_file(&name);
                removed as u64
            }
            None => 0,
        }
    }

    /// Removes every entry file (40-hex names, and leftover temporary files) and nothing else;
    /// returns (files removed, bytes removed).
    ///
    /// # Errors
    /// The directory cannot be listed or a file cannot be removed. A missing directory is
    /// an empty cache, not an error.
    pub fn flush(&self) -> io::Result<(u64, u64)> {
        self.shared.lock_memo().clear();
        let mut index = self.shared.lock_index();
        let listing = match fs::read_dir(&self.shared.dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, 0)),
            other => other?,
        };
        let (mut files, mut bytes) = (0, 0);
        for item in listing {
            let item = item?;
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            let meta = item.metadata()?;
            if !meta.is_file() || !(is_entry_name(name) || name.starts_with(TEMP_PREFIX)) {
                continue;
            }
            fs::remove_file(item.path())?;
            if let Some(name) = parse_name(name) {
                index.remove(&name);
            }
            files += 1;
            bytes += meta.len();
        }
        Ok((files, bytes))
    }
}

impl Drop for Store {
    /// Stops the upkeep thread (it finishes the file it is removing, if any).
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.wake_upkeep();
    }
}

/// The space a file takes on disk: its allocated blocks, or its length if that is more (a
/// file whose blocks are not allocated yet, or kept inline by the filesystem).
fn allocated(meta: &Metadata) -> u64 {
    meta.blocks().saturating_mul(512).max(meta.len())
}

/// Linux's "no space left on device".
const ENOSPC: i32 = 28;
/// Linux's "disk quota exceeded".
const EDQUOT: i32 = 122;

/// Whether an I/O error says the disk (or the user's quota) is full. (By number:
/// `ErrorKind::StorageFull` is newer than our minimum Rust.)
fn is_disk_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(ENOSPC | EDQUOT))
}

/// Whether the file's atime is within `ATIME_RESOLUTION` of `now`, so need not be moved. An
/// atime in the future (a clock stepped back, a copied file) counts as old.
fn used_recently(meta: &Metadata, now: SystemTime) -> bool {
    meta.accessed().is_ok_and(|atime| {
        now.duration_since(atime)
            .is_ok_and(|age| age < ATIME_RESOLUTION)
    })
}

impl Shared {
    fn lock_index(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The index, counted first when no upkeep thread does it and nobody has yet: the
    /// one-shot way, for the client and for tests.
    fn counted_index(&self) -> MutexGuard<'_, Index> {
        let mut index = self.lock_index();
        if index.is_uncounted() {
            index.begin_census();
            index.merge(self.listing(true));
            index.finish_census();
        }
        index
    }

    fn temp_path(&self, name: &str) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.dir
            .join(format!("{TEMP_PREFIX}{name}-{}-{n}", self.pid))
    }

    /// A new variant index nonce, unique across processes and restarts in practice.
    fn nonce(&self, base: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let seed = format!("{base}\n{now}\n{}\n{n}", self.pid);
        entry_name(&seed)[..NONCE_LEN].to_string()
    }

    /// Opens and checks the file `name`. A name the complete index does not hold is None at
    /// once, without a system call (`Index::look_up`). A missing file is None (and
    /// forgotten); a file that cannot be read or is malformed is removed and is None. A file
    /// found is used now, for eviction's order; its atime, which keeps that order across
    /// restarts, is moved to now when it is older than `ATIME_RESOLUTION`.
    fn open(&self, name: &str) -> Option<Stored> {
        let now = SystemTime::now();
        let parsed = parse_name(name);
        let presence = match parsed {
            Some(parsed) => self.lock_index().look_up(parsed, now),
            None => Presence::Unsure,
        };
        if presence == Presence::Absent {
            return None;
        }
        let path = self.dir.join(name);
        if let Some(found) = self.open_remembered(name, &path, presence, now) {
            return found;
        }
        let opened = File::open(&path).and_then(|file| {
            let meta = file.metadata()?;
            Ok((file, meta))
        });
        let (file, meta) = match opened {
            Ok(opened) => opened,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.forget(name);
                return None;
            }
            Err(e) => {
                log::warn!("cache: removing unreadable entry {name}: {e}");
                self.remove_file(name);
                return None;
            }
        };
        if !used_recently(&meta, now) {
            if let Err(e) = file.set_times(FileTimes::new().set_accessed(now)) {
                log::debug!("cache: cannot set the atime of {name}: {e}");
            }
        }
        match parse_file(file, &meta) {
            Ok(stored) => {
                if let (Presence::Unsure, Some(parsed)) = (presence, parsed) {
                    self.lock_index().touch(parsed, allocated(&meta), now);
                }
                match stored {
                    Stored::Entry(entry) if entry.body_len <= MAX_REMEMBERED_BODY => {
                        self.remember(name, entry, &meta).map(Stored::Entry)
                    }
                    other => Some(other),
                }
            }
            Err(why) => {
                log::warn!("cache: removing malformed entry {name}: {why}");
                self.remove_file(name);
                None
            }
        }
    }

    /// A hit on what `memo` remembers of the file `name`, checked with one `stat` of `path`:
    /// `Some(entry)` when the file is the one remembered, `Some(None)` when it is gone, and
    /// `None` when it must be opened (not remembered, changed, or its atime is due: moving
    /// the atime needs the file open).
    fn open_remembered(
        &self,
        name: &str,
        path: &Path,
        presence: Presence,
        now: SystemTime,
    ) -> Option<Option<Stored>> {
        let remembered = self.lock_memo().get(name)?;
        let meta = match fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.lock_memo().forget(name);
                self.forget(name);
                return Some(None);
            }
            Err(_) => {
                self.lock_memo().forget(name);
                return None;
            }
        };
        if Identity::of(&meta) != remembered.identity || !used_recently(&meta, now) {
            self.lock_memo().forget(name);
            return None;
        }
        if let (Presence::Unsure, Some(parsed)) = (presence, parse_name(name)) {
            self.lock_index().touch(parsed, allocated(&meta), now);
        }
        Some(Some(Stored::Entry(Entry {
            response: remembered.response.clone(),
            body_len: remembered.body.len() as u64,
            stored_at: meta.modified().ok()?,
            body: EntryBody::Memory(io::Cursor::new(Arc::clone(&remembered.body))),
        })))
    }

    /// Reads the small body of `entry`, just parsed from the file `name` (`meta`), into
    /// memory and remembers both; returns the entry reading from memory. A body that cannot
    /// be read whole is None (a miss), as from the file.
    fn remember(&self, name: &str, mut entry: Entry, meta: &Metadata) -> Option<Entry> {
        let mut body = Vec::with_capacity(usize::try_from(entry.body_len).ok()?);
        if let Err(e) = entry.body().read_to_end(&mut body) {
            log::warn!("cache: cannot read entry {name}: {e}");
            return None;
        }
        if body.len() as u64 != entry.body_len {
            return None; // Truncated behind our back since it was opened.
        }
        let body: Arc<[u8]> = body.into();
        let remembered = Remembered::new(Identity::of(meta), entry.response.clone(), body.clone());
        self.lock_memo().put(name, remembered);
        entry.body = EntryBody::Memory(io::Cursor::new(body));
        Some(entry)
    }

    fn lock_memo(&self) -> MutexGuard<'_, Memo> {
        self.memo.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Renames `temp` (`size` bytes on disk) to `name`, recording it in the index, then
    /// evicts or has the upkeep thread evict, as `Index::after_store` says. A name being
    /// evicted at this very moment takes nothing: the temporary file is removed and the
    /// entry not stored.
    fn install(&self, temp: &Path, name: &str, size: u64) -> io::Result<()> {
        let dest = self.dir.join(name);
        let parsed = parse_name(name).expect("entry names are 40 hex digits");
        let mut index = self.counted_index();
        if !index.may_install(&parsed) {
            drop(index);
            log::debug!("cache: {name} is being evicted, not replaced");
            let _ = fs::remove_file(temp);
            return Ok(());
        }
        fs::rename(temp, &dest)?;
        index.record(parsed, size, SystemTime::now());
        let upkeep = self.upkeep.load(Ordering::SeqCst);
        let asked = index.after_store(self.max_size, upkeep, size);
        drop(index);
        self.evict_after_store(asked);
        Ok(())
    }

    /// Whether the entry for `key` (file `name`), about to be stored, is admitted
    /// (`Index::admit`); one that is not is counted and logged at debug level.
    fn admits(&self, key: &str, name: &str) -> bool {
        let Some(name) = parse_name(name) else {
            return true;
        };
        let admission = self.lock_index().admit(name, self.max_size);
        let Admission::NotAdmitted { asked, victim } = admission else {
            return true;
        };
        self.not_admitted.fetch_add(1, Ordering::Relaxed);
        log::debug!(
            "cache: {key:?} not admitted: the cache is full, and it was asked for {asked} times \
             lately, the least recently used entry {victim}"
        );
        false
    }

    /// Writes a small file atomically (a variant index).
    fn write_file(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let temp = self.temp_path(name);
        let mut retried = false;
        let written = self
            .with_room(&mut retried, || fs::write(&temp, bytes))
            .and_then(|()| {
                let size = allocated(&fs::metadata(&temp)?);
                self.with_room(&mut retried, || self.install(&temp, name, size))
            });
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written
    }

    /// Removes the file `name`, and its record; returns whether there was a file to remove.
    fn remove_file(&self, name: &str) -> bool {
        self.lock_memo().forget(name);
        let path = self.dir.join(name);
        let mut index = self.lock_index();
        let (gone, existed) = match fs::remove_file(&path) {
            Ok(()) => (true, true),
            Err(e) => (e.kind() == io::ErrorKind::NotFound, false),
        };
        if let (true, Some(name)) = (gone, parse_name(name)) {
            index.remove(&name);
        }
        existed
    }

    /// Drops the record of `name`, whose file was not found. If the index knows it and the
    /// file is still missing (not put back meanwhile), someone else removed it (we change
    /// the index before or with the file), so the whole index is re-synced.
    fn forget(&self, name: &str) {
        let Some(parsed) = parse_name(name) else {
            return;
        };
        let mut index = self.lock_index();
        if index.contains(&parsed) && self.dir.join(name).exists() {
            return;
        }
        let known = index.remove(&parsed).is_some();
        drop(index);
        if known {
            log::debug!("cache: {name} was removed by someone else");
            self.want_census();
        }
    }

    /// Runs `op`; if it fails because the disk is full and this writer has not done so yet
    /// (`retried`), makes room and runs it once more.
    fn with_room<T>(
        &self,
        retried: &mut bool,
        mut op: impl FnMut() -> io::Result<T>,
    ) -> io::Result<T> {
        let seen = self.room_made.load(Ordering::SeqCst);
        match op() {
            Err(e) if is_disk_full(&e) && !*retried => {
                *retried = true;
                if self.make_room(seen) {
                    op()
                } else {
                    Err(e)
                }
            }
            other => other,
        }
    }
}

/// Whether two heads have the same status and the same fields, in any order, but for Date.
fn same_but_date(a: &Response, b: &Response) -> bool {
    a.status == b.status && fields_but_date(a) == fields_but_date(b)
}

/// The fields of `r` but Date, names in lower case, sorted.
fn fields_but_date(r: &Response) -> Vec<(String, &str)> {
    let mut fields: Vec<(String, &str)> = r
        .headers
        .iter()
        .filter(|(name, _)| !name.eq_ignore_ascii_case("date"))
        .map(|(name, value)| (name.to_ascii_lowercase(), value))
        .collect();
    fields.sort_unstable();
    fields
}

fn opaque_etag(response: &Response) -> Option<&str> {
    response
        .headers
        .get("etag")
        .map(|tag| tag.trim().trim_start_matches("W/"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use std::io::{Read, Write};

    use super::writer::write_all_from;
    use super::*;
    use crate::http::parse::{read_request, read_response, Limits};
    use crate::testing::TempDir;

    /// The names in `dir`, sorted.
    fn files(dir: &TempDir) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&dir.path)
            .map(|l| {
                l.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    fn resp(fields: &str) -> Response {
        let raw = format!("HTTP/1.1 200 OK\r\n{fields}\r\n");
        read_response(&mut raw.as_bytes(), &Limits::default()).unwrap()
    }

    fn req(fields: &str) -> Request {
        let raw = format!("GET / HTTP/1.1\r\nHost: h\r\n{fields}\r\n");
        read_request(&mut raw.as_bytes(), &Limits::default())
            .unwrap()
            .unwrap()
    }

    fn store(dir: &TempDir) -> Store {
        Store::new(&dir.path, 1 << 20, 1 << 16)
    }

    fn put(store: &Store, key: &str, fields: &str, body: &[u8]) -> io::Result<()> {
        let mut w = store.begin(key, &resp(fields))?;
        w.write_all(body)?;
        w.commit()
    }

    /// What a file takes on disk, as the store counts it.
    fn on_disk(path: &Path) -> u64 {
        allocated(&fs::metadata(path).unwrap())
    }

    /// Moves the mtime of the file at `path` an hour back: the entry is that much older.
    fn age_an_hour(path: &Path) -> SystemTime {
        let old = SystemTime::now() - Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        old
    }

    fn body_of(mut entry: Entry) -> Vec<u8> {
        let mut out = Vec::new();
        entry.body().read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn round_trip_is_byte_exact_and_readable_as_text() {
        let dir = TempDir::new("round-trip");
        let s = store(&dir);
        let body: Vec<u8> = (0..=255).collect();
        let fields = "Content-Length: 256\r\nX-A: caf\u{e9}\r\n";
        put(&s, "k", fields, &body).unwrap();
        let e = s.read("k").unwrap();
        assert_eq!(e.body_len, 256);
        assert_eq!(e.response, resp(fields));
        assert_eq!(body_of(e), body);
        let file = fs::read(dir.path.join(entry_name("k"))).unwrap();
        assert!(file.starts_with(b"HTTP/1.1 200 OK\r\nContent-Length: 256\r\n"));
        assert!(file.ends_with(&body));
        assert_eq!(s.usage(), on_disk(&dir.path.join(entry_name("k"))));
        assert!(s.usage() >= file.len() as u64);
    }

    #[test]
    fn unknown_length_is_written_at_commit() {
        let dir = TempDir::new("patch");
        let s = store(&dir);
        put(
            &s,
            "k",
            "Transfer-Encoding: chunked\r\nContent-Length: 9\r\n",
            b"hello",
        )
        .unwrap();
        let file = fs::read(dir.path.join(entry_name("k"))).unwrap();
        let text = String::from_utf8_lossy(&file);
        let patched = format!("Content-Length: 5{}\r\n\r\nhello", " ".repeat(19));
        assert!(text.ends_with(&patched), "{text}");
        assert!(!text.to_ascii_lowercase().contains("transfer-encoding"));
        assert_eq!(body_of(s.read("k").unwrap()), b"hello");
    }

    #[test]
    fn nothing_is_stored_without_commit_or_with_a_wrong_length() {
        let dir = TempDir::new("abort");
        let s = store(&dir);
        let mut w = s.begin("k", &resp("Content-Length: 10\r\n")).unwrap();
        w.write_all(b"12345").unwrap();
        assert_eq!(
            files(&dir).len(),
            1,
            "the temporary file exists while writing"
        );
        assert!(files(&dir)[0].starts_with(TEMP_PREFIX));
        drop(w);
        assert!(files(&dir).is_empty());
        let short = put(&s, "k", "Content-Length: 10\r\n", b"12345");
        assert_eq!(short.unwrap_err().kind(), io::ErrorKind::InvalidData);
        let long = put(&s, "k", "Content-Length: 1\r\n", b"12345");
        assert_eq!(long.unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert!(files(&dir).is_empty());
        assert!(s.read("k").is_none());
    }

    #[test]
    fn bodies_over_max_object_are_dropped_quietly() {
        let dir = TempDir::new("max-object");
        let s = Store::new(&dir.path, 1 << 20, 10);
        let mut w = s.begin("k", &resp("")).unwrap();
        w.write_all(b"0123456789").unwrap();
        assert!(!w.is_abandoned());
        w.write_all(b"!").unwrap();
        assert!(w.is_abandoned());
        w.commit().unwrap();
        let w = s.begin("k", &resp("Content-Length: 11\r\n")).unwrap();
        assert!(w.is_abandoned());
        assert!(files(&dir).is_empty());
        put(&s, "k", "Content-Length: 10\r\n", b"0123456789").unwrap();
        assert!(s.read("k").is_some());
    }

    #[test]
    fn malformed_and_truncated_files_are_misses_and_removed() {
        let dir = TempDir::new("malformed");
        let s = store(&dir);
        put(&s, "k", "Content-Length: 5\r\n", b"hello").unwrap();
        let path = dir.path.join(entry_name("k"));
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(s.read("k").is_none());
        assert!(!path.exists());
        // Each time over a stored entry, so the store looks at the file.
        let corrupt = |garbage: &[u8]| {
            put(&s, "k", "Content-Length: 5\r\n", b"hello").unwrap();
            fs::write(&path, garbage).unwrap();
        };
        for garbage in [
            &b""[..],
            b"\0\0\0\xff",
            b"HTTP/1.1 200 OK\r\n",
            b"VARY nonsense\r\n",
            b"HTTP/1.1 200 OK\r\nX: y\r\n\r\nno length",
        ] {
            corrupt(garbage);
            assert!(s.read("k").is_none());
            assert!(!path.exists(), "{garbage:?} was kept");
        }
        corrupt(b"HTTP/1.1 304 Not Modified\r\n\r\n");
        assert!(s.read("k").is_none());
        // A file put there behind the store's back, once it has counted its files, is not
        // looked at (the next census finds it).
        fs::write(&path, &bytes).unwrap();
        assert!(s.read("k").is_none());
    }

    #[test]
    fn refresh_replaces_the_head_keeps_the_body_and_sets_mtime() {
        let dir = TempDir::new("refresh");
        let s = store(&dir);
        put(
            &s,
            "k",
            "Content-Length: 3\r\nETag: \"1\"\r\nX-V: old\r\n",
            b"abc",
        )
        .unwrap();
        let path = dir.path.join(entry_name("k"));
        let old = age_an_hour(&path);
        let mut head = s.read("k").unwrap().response;
        head.headers.set("X-V", "new");
        assert!(s.refresh("k", &head).unwrap());
        let e = s.read("k").unwrap();
        assert_eq!(e.response.headers.get("x-v"), Some("new"));
        assert!(e.stored_at > old + Duration::from_secs(3000));
        assert_eq!(body_of(e), b"abc");
        head.headers
            .set("Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT");
        head.headers.set("ETag", "W/\"1\"");
        assert!(s.refresh("k", &head).unwrap());
        // Another request replaced or removed the entry meanwhile: nothing written, no error.
        head.headers.set("ETag", "\"2\"");
        assert!(!s.refresh("k", &head).unwrap());
        assert_eq!(
            s.read("k").unwrap().response.headers.get("etag"),
            Some("W/\"1\"")
        );
        assert!(!s.refresh("nope", &head).unwrap());
        assert!(s.read("nope").is_none());
    }

    #[test]
    fn a_304_that_changes_only_date_restarts_the_clock_without_rewriting() {
        let dir = TempDir::new("refresh-clock");
        let s = store(&dir);
        let fields = "Content-Length: 3\r\nETag: \"1\"\r\nCache-Control: no-cache\r\n\
                      Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n";
        put(&s, "k", fields, b"abc").unwrap();
        let path = dir.path.join(entry_name("k"));
        let inode = |p: &Path| fs::metadata(p).unwrap().ino();
        let before = inode(&path);
        let old = age_an_hour(&path);
        let mut head = s.read("k").unwrap().response;
        // merge_304 moves the fields it replaces to the end: order does not count.
        head.headers.remove("etag");
        head.headers.set("Date", "Mon, 07 Nov 1994 08:49:37 GMT");
        head.headers.append("ETag", "\"1\"");
        assert!(s.refresh("k", &head).unwrap());
        assert_eq!(inode(&path), before, "the same file, not a rewrite");
        let e = s.read("k").unwrap();
        assert!(
            e.stored_at > old + Duration::from_secs(3000),
            "the clock restarted"
        );
        assert_eq!(body_of(e), b"abc");
        // Another field changed, or an Expires whose lifetime a Date decides: rewritten.
        head.headers.set("Expires", "Mon, 07 Nov 1994 09:49:37 GMT");
        assert!(s.refresh("k", &head).unwrap());
        assert_ne!(inode(&path), before);
        let e = s.read("k").unwrap();
        assert_eq!(
            e.response.headers.get("date"),
            Some("Mon, 07 Nov 1994 08:49:37 GMT")
        );
        let rewritten = inode(&path);
        head.headers.remove("expires");
        head.headers.set("Date", "Tue, 08 Nov 1994 08:49:37 GMT");
        assert!(s.refresh("k", &head).unwrap());
        assert_ne!(inode(&path), rewritten, "Expires went: a field changed");
    }

    #[test]
    fn variants_live_side_by_side_behind_an_index() {
        let dir = TempDir::new("vary");
        let s = store(&dir);
        let varying = resp("Vary: Accept-Encoding\r\nContent-Length: 1\r\n");
        for (encoding, body) in [("gzip", b"g"), ("br", b"b")] {
            let r = req(&format!("Accept-Encoding: {encoding}\r\n"));
            let mut w = s.begin_variant("http://h/", &r, &varying).unwrap();
            w.write_all(body).unwrap();
            w.commit().unwrap();
        }
        assert_eq!(files(&dir).len(), 3);
        let index = fs::read_to_string(dir.path.join(entry_name("http://h/"))).unwrap();
        assert!(index.starts_with("VARY ") && index.contains(": accept-encoding\r\n"));
        assert_eq!(index.lines().count(), 3, "the index names its two variants");
        let found = |encoding: &str| {
            s.lookup(
                "http://h/",
                &req(&format!("Accept-Encoding: {encoding}\r\n")),
            )
            .map(|(_, e)| body_of(e))
        };
        assert_eq!(found("gzip").unwrap(), b"g");
        assert_eq!(found("br").unwrap(), b"b");
        assert_eq!(found("identity"), None);
        assert!(s.read("http://h/").is_none(), "an index is not an entry");
        // Invalidation removes the index; a new index has a new nonce, so the old variants
        // are never found again.
        s.remove("http://h/");
        let r = req("Accept-Encoding: br\r\n");
        let mut w = s.begin_variant("http://h/", &r, &varying).unwrap();
        w.write_all(b"B").unwrap();
        w.commit().unwrap();
        assert_eq!(found("gzip"), None);
        assert_eq!(found("br").unwrap(), b"B");
        // A response without Vary replaces the index.
        put(&s, "http://h/", "Content-Length: 1\r\n", b"p").unwrap();
        assert_eq!(found("br").unwrap(), b"p");
        let star = resp("Vary: *\r\n");
        assert!(s.begin_variant("http://h/", &r, &star).is_err());
    }

    #[test]
    fn eviction_removes_least_recently_used_first() {
        let dir = TempDir::new("evict");
        let body = [b'x'; 1000];
        let probe = Store::new(&dir.path, 1 << 20, 1 << 20);
        put(&probe, "probe", "Content-Length: 1000\r\n", &body).unwrap();
        let one = probe.usage();
        probe.flush().unwrap();
        // Room for two entries, not three.
        let s = Store::new(&dir.path, one * 2 + one / 2, 1 << 20);
        put(&s, "a", "Content-Length: 1000\r\n", &body).unwrap();
        put(&s, "b", "Content-Length: 1000\r\n", &body).unwrap();
        // Both used longer ago than ATIME_RESOLUTION, so a read moves the atime.
        let long_ago = SystemTime::now() - ATIME_RESOLUTION * 10;
        for (key, age) in [("a", 20), ("b", 40)] {
            let file = File::open(dir.path.join(entry_name(key))).unwrap();
            let times = FileTimes::new().set_accessed(long_ago + Duration::from_secs(age));
            file.set_times(times).unwrap();
        }
        assert!(
            s.read("a").is_some(),
            "reading makes `a` the most recently used"
        );
        put(&s, "c", "Content-Length: 1000\r\n", &body).unwrap();
        assert!(s.read("b").is_none());
        assert!(s.read("a").is_some());
        assert!(s.read("c").is_some());
        assert_eq!(s.usage(), 2 * one);
    }

    #[test]
    fn a_full_store_admits_a_new_key_at_its_second_request() {
        let dir = TempDir::new("admission");
        let probe = store(&dir);
        put(&probe, "probe", "Content-Length: 2\r\n", b"hi").unwrap();
        let one = probe.usage();
        probe.flush().unwrap();
        let s = Store::new(&dir.path, 3 * one, 1 << 16).with_admission(true);
        for key in ["a", "b", "c"] {
            put(&s, key, "Content-Length: 2\r\n", b"hi").unwrap();
        }
        assert!(s.read("b").is_some(), "a is now the least recently used");
        let w = s.begin("d", &resp("Content-Length: 2\r\n")).unwrap();
        assert!(w.is_abandoned(), "asked for once, no more than a");
        assert_eq!(files(&dir).len(), 3, "not even a temporary file");
        drop(w);
        assert_eq!(s.not_admitted(), 1);
        put(&s, "d", "Content-Length: 2\r\n", b"hi").unwrap();
        // Past the limit, down to 90%: the two least recently used went.
        assert!(s.read("a").is_none() && s.read("c").is_none());
        assert!(s.read("d").is_some());
        // Below the mark again, so stored at once; then a refresh of the full cache's entry
        // is admitted: replacing an entry takes no place.
        put(&s, "e", "Content-Length: 2\r\n", b"hi").unwrap();
        assert_eq!(s.entries(), 3);
        let head = s.read("b").unwrap().response;
        assert!(s.refresh("b", &head).unwrap());
        assert_eq!(s.not_admitted(), 1);
        // Without admission, the same store stores everything.
        let plain = Store::new(&dir.path, 3 * one, 1 << 16);
        assert!(!plain.begin("e", &resp("")).unwrap().is_abandoned());
    }

    #[test]
    fn usage_is_counted_from_existing_files_and_leftovers_are_cleaned() {
        let dir = TempDir::new("count");
        let first = store(&dir);
        put(&first, "a", "Content-Length: 2\r\n", b"hi").unwrap();
        let size = first.usage();
        fs::write(dir.path.join(".tmp-abc-1-0"), b"partial").unwrap();
        fs::write(dir.path.join("notes.txt"), b"mine").unwrap();
        let second = store(&dir);
        assert_eq!(second.usage(), size);
        assert_eq!(files(&dir), [entry_name("a"), "notes.txt".to_string()]);
    }

    #[test]
    fn flush_removes_entries_and_temporaries_only() {
        let dir = TempDir::new("flush");
        let s = store(&dir);
        assert_eq!(
            s.flush().unwrap(),
            (0, 0),
            "a missing directory is an empty cache"
        );
        put(&s, "a", "Content-Length: 2\r\n", b"hi").unwrap();
        let size = fs::metadata(dir.path.join(entry_name("a"))).unwrap().len();
        fs::write(dir.path.join(".tmp-x-1-1"), b"12345").unwrap();
        fs::write(dir.path.join(".gitkeep"), b"").unwrap();
        fs::write(
            dir.path.join("ABCDEF0123456789ABCDEF0123456789ABCDEF01"),
            b"upper",
        )
        .unwrap();
        fs::create_dir(dir.path.join(entry_name("dir"))).unwrap();
        assert_eq!(s.flush().unwrap(), (2, size + 5));
        assert_eq!(files(&dir).len(), 3);
        assert_eq!(s.usage(), 0);
    }

    #[test]
    fn a_purge_removes_the_entry_or_every_variant() {
        let dir = TempDir::new("purge");
        let s = store(&dir);
        let varying = resp("Vary: Accept-Encoding\r\nContent-Length: 1\r\n");
        for encoding in ["gzip", "br", "identity"] {
            let r = req(&format!("Accept-Encoding: {encoding}\r\n"));
            let mut w = s.begin_variant("http://h/v", &r, &varying).unwrap();
            w.write_all(b"v").unwrap();
            w.commit().unwrap();
        }
        put(&s, "http://h/plain", "Content-Length: 1\r\n", b"p").unwrap();
        assert_eq!(files(&dir).len(), 5);
        assert_eq!(s.purge("http://h/v"), 3);
        assert_eq!(
            files(&dir).len(),
            1,
            "the index and its three variants are gone"
        );
        assert_eq!(s.purge("http://h/plain"), 1);
        assert!(files(&dir).is_empty());
        assert_eq!(s.purge("http://h/plain"), 0);
        assert_eq!(s.usage(), 0);
    }

    #[test]
    fn vary_index_format() {
        let index = VaryIndex {
            nonce: "0123456789abcdef".to_string(),
            names: vec!["accept".to_string(), "cookie".to_string()],
            variants: Vec::new(),
        };
        let text = String::from_utf8(index.to_bytes()).unwrap();
        assert_eq!(text, "VARY 0123456789abcdef: accept, cookie\r\n");
        assert_eq!(VaryIndex::parse(&text), Some(index));
        let mut index = VaryIndex::parse(&text).unwrap();
        index.variants.push(entry_name("a variant"));
        let text = String::from_utf8(index.to_bytes()).unwrap();
        assert_eq!(text.lines().nth(1), Some(entry_name("a variant").as_str()));
        assert_eq!(VaryIndex::parse(&text), Some(index));
        for bad in [
            "VARY 0123456789abcdef: accept\r\nnot-a-name\r\n",
            "VARY 0123456789abcdef: accept\r\n5d41402abc4b2a76b9719d911017c592ae3f2b1c",
            "VARY 0123456789abcdef: accept",
            "VARY 0123: accept\r\n",
            "VARY 0123456789abcdef: Accept\r\n",
            "VARY 0123456789abcdef: a b\r\n",
            "VARY 0123456789abcdef: \r\n",
        ] {
            assert_eq!(VaryIndex::parse(bad), None, "{bad}");
        }
    }

    /// Polls `done` until it holds, for at most ten seconds.
    fn eventually(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_file_removed_behind_the_stores_back_is_forgotten() {
        let dir = TempDir::new("forget");
        let s = store(&dir);
        put(&s, "a", "Content-Length: 2\r\n", b"hi").unwrap();
        put(&s, "b", "Content-Length: 2\r\n", b"hi").unwrap();
        let one = on_disk(&dir.path.join(entry_name("a")));
        fs::remove_file(dir.path.join(entry_name("a"))).unwrap();
        assert!(s.read("a").is_none());
        assert_eq!((s.entries(), s.usage()), (1, one));
    }

    #[test]
    fn a_body_skips_without_reading_from_its_file_or_from_memory() {
        let dir = TempDir::new("skip");
        let s = Store::new(&dir.path, 1 << 20, 1 << 20);
        let large: Vec<u8> = (0..MAX_REMEMBERED_BODY * 2).map(|i| i as u8).collect();
        let fields = format!("Content-Length: {}\r\n", large.len());
        put(&s, "large", &fields, &large).unwrap();
        put(&s, "small", "Content-Length: 10\r\n", b"0123456789").unwrap();
        for _ in 0..2 {
            let (_, mut body) = s.read("large").unwrap().into_parts();
            assert_eq!(body.skip(70_000).unwrap(), 70_000);
            let mut rest = Vec::new();
            body.read_to_end(&mut rest).unwrap();
            assert_eq!(rest, &large[70_000..]);
            let (_, mut body) = s.read("small").unwrap().into_parts();
            assert_eq!(body.skip(4).unwrap(), 4);
            let mut rest = String::new();
            body.read_to_string(&mut rest).unwrap();
            assert_eq!(rest, "456789");
        }
        // Past the end: only what is left.
        let (_, mut body) = s.read("large").unwrap().into_parts();
        assert_eq!(body.skip(u64::MAX).unwrap(), large.len() as u64);
        assert_eq!(body.read(&mut [0; 8]).unwrap(), 0);
        let (_, mut body) = s.read("small").unwrap().into_parts();
        assert_eq!(body.skip(11).unwrap(), 10);
    }

    #[test]
    fn a_remembered_entry_follows_its_file_replaced_edited_aged_or_removed() {
        let dir = TempDir::new("memo");
        let s = store(&dir);
        let path = dir.path.join(entry_name("k"));
        put(&s, "k", "Content-Length: 3\r\nETag: \"1\"\r\n", b"one").unwrap();
        assert_eq!(body_of(s.read("k").unwrap()), b"one");
        assert_eq!(s.shared.lock_memo().len(), 1, "remembered on first use");
        let hit = s.read("k").unwrap();
        assert!(
            matches!(hit.body, EntryBody::Memory(_)),
            "served from memory"
        );
        assert_eq!(hit.response.headers.get("etag"), Some("\"1\""));

        // Replaced by the store itself, then behind its back with the same size.
        put(&s, "k", "Content-Length: 3\r\nETag: \"2\"\r\n", b"two").unwrap();
        let e = s.read("k").unwrap();
        assert_eq!(e.response.headers.get("etag"), Some("\"2\""));
        assert_eq!(body_of(e), b"two");
        let edited = fs::read(&path).unwrap().replace_last(b"two", b"six");
        fs::write(&path, edited).unwrap();
        let e = s.read("k").unwrap();
        assert_eq!(body_of(e), b"six", "an edit in place is seen at once");

        // Aged (the mtime drives the TTL): the entry says so on the next hit.
        let old = age_an_hour(&path);
        assert_eq!(s.read("k").unwrap().stored_at, old);

        // Removed behind its back, then flushed: misses, never the remembered entry.
        fs::remove_file(&path).unwrap();
        assert!(s.read("k").is_none());
        put(&s, "k", "Content-Length: 3\r\n", b"new").unwrap();
        assert_eq!(body_of(s.read("k").unwrap()), b"new");
        s.flush().unwrap();
        assert!(s.read("k").is_none());
        assert_eq!(s.shared.lock_memo().len(), 0);
    }

    /// `replace_last` for the test above: the file's last occurrence of a body.
    trait ReplaceLast {
        fn replace_last(self, from: &[u8], to: &[u8]) -> Vec<u8>;
    }

    impl ReplaceLast for Vec<u8> {
        fn replace_last(mut self, from: &[u8], to: &[u8]) -> Vec<u8> {
            let at = self.len() - from.len();
            assert_eq!(&self[at..], from);
            self[at..].copy_from_slice(to);
            self
        }
    }

    /// A writer that takes `room` bytes, then fails as a full disk does until `room` grows.
    struct Disk {
        written: Vec<u8>,
        room: usize,
    }

    impl Write for Disk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.room - self.written.len());
            if n == 0 {
                return Err(io::Error::from_raw_os_error(ENOSPC));
            }
            self.written.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_write_stopped_by_a_full_disk_goes_on_where_it_stopped() {
        let data: Vec<u8> = (0..100).collect();
        let mut out = BufWriter::with_capacity(
            8,
            Disk {
                written: Vec::new(),
                room: 37,
            },
        );
        let mut failures = 0;
        // Pieces smaller and larger than the buffer: both of BufWriter's ways of writing.
        let mut pieces = Vec::new();
        let mut left = &data[..];
        for len in [5, 30, 3, 3, 40, 19] {
            let (piece, rest) = left.split_at(len);
            pieces.push(piece);
            left = rest;
        }
        for mut piece in pieces {
            while let Err(e) = write_all_from(&mut out, &mut piece) {
                assert!(is_disk_full(&e));
                failures += 1;
                out.get_mut().room += 40;
            }
            assert!(piece.is_empty());
        }
        out.flush().unwrap();
        assert_eq!(
            out.get_ref().written,
            data,
            "nothing repeated, nothing skipped"
        );
        assert_eq!(failures, 2);
    }

    #[test]
    fn a_full_disk_evicts_a_tenth_least_recently_used_and_is_tried_once_more() {
        let dir = TempDir::new("full");
        let s = store(&dir);
        for key in 0..20 {
            put(&s, &key.to_string(), "Content-Length: 2\r\n", b"hi").unwrap();
        }
        let one = on_disk(&dir.path.join(entry_name("0")));
        assert!(s.read("0").is_some(), "0 becomes the most recently used");
        let full = || io::Error::from_raw_os_error(ENOSPC);
        let mut attempts = 0;
        let mut retried = false;
        let ok = s.shared.with_room(&mut retried, || {
            attempts += 1;
            if attempts == 1 {
                Err(full())
            } else {
                Ok(())
            }
        });
        assert!(ok.is_ok() && retried);
        assert_eq!(attempts, 2);
        // 20 entries, down to 90%: the two least recently used went.
        assert_eq!((s.entries(), s.usage()), (18, 18 * one));
        for gone in ["1", "2"] {
            assert!(s.read(gone).is_none(), "{gone}");
        }
        assert!(s.read("0").is_some() && s.read("3").is_some());
        // A second failure of the same writer is not retried: the entry is dropped.
        let again = s.shared.with_room(&mut retried, || Err::<(), _>(full()));
        assert!(is_disk_full(&again.unwrap_err()));
        assert_eq!(s.entries(), 18);
        // Other errors are not retried.
        let mut fresh = false;
        let other = s.shared.with_room(&mut fresh, || {
            Err::<(), _>(io::Error::from(io::ErrorKind::PermissionDenied))
        });
        assert!(other.is_err() && !fresh);
    }

    #[test]
    fn upkeep_counts_in_the_background_and_evicts_past_the_limit() {
        let dir = TempDir::new("upkeep");
        let before = store(&dir);
        let long_ago = SystemTime::now() - Duration::from_secs(3600);
        for key in 0..10 {
            put(&before, &key.to_string(), "Content-Length: 2\r\n", b"hi").unwrap();
            let file = File::open(dir.path.join(entry_name(&key.to_string()))).unwrap();
            let used = long_ago + Duration::from_secs(key);
            file.set_times(FileTimes::new().set_accessed(used)).unwrap();
        }
        let one = on_disk(&dir.path.join(entry_name("0")));
        drop(before);
        // Room for 12.5 entries: the census finds ten, three more pass the limit.
        let s = Store::new(&dir.path, 12 * one + one / 2, 1 << 16);
        s.start_upkeep().unwrap();
        assert!(
            s.read("5").is_some(),
            "served whether or not the census is done"
        );
        eventually("the census", || s.entries() == 10);
        for key in 10..13 {
            put(&s, &key.to_string(), "Content-Length: 2\r\n", b"hi").unwrap();
        }
        // Down to 90% of the limit: 11 entries of the 13, the oldest atimes first.
        eventually("the eviction", || s.entries() == 11);
        assert_eq!(s.usage(), 11 * one);
        assert_eq!(files(&dir).len(), 11);
        for gone in ["0", "1"] {
            assert!(s.read(gone).is_none(), "{gone}");
        }
        assert!(s.read("5").is_some(), "used after the others, so kept");
    }
}
