//! The cache's in-memory index: for every entry file, the disk space it takes and when it was
//! last used, kept in least-recently-used order, with the running total. It answers "how
//! full is the cache" and "what goes next" without listing the directory, so no request
//! waits on a count or on a sort.
//!
//! This module is policy and bookkeeping only, pure: sizes and times are passed in. The store
//! (`store`) does the file I/O, holds the lock around each change together with the file
//! operation it records, and runs the census and the evictions.
//!
//! With admission on (the proxy), the index also holds the frequency sketch of `admission`:
//! a use counts a request for the entry, and `admit` counts a request for a name not stored
//! and says whether a full cache should store it, against the entry eviction takes first.
//!
//! # The census
//!
//! After a restart the index is rebuilt once from the directory (the *census*): each file's
//! allocated size, and its atime as its last use. Requests are served meanwhile, so the
//! index is changed by them while the listing runs; the rule is that what happens live wins
//! over what the listing saw:
//!
//! - an entry stored, used or removed during the census is *noted*, and the listing does not
//!   overrule it (a file removed after it was listed is not brought back; one stored is
//!   not counted twice);
//! - until the census is complete the total counts only what is known, so nothing is evicted
//!   (the least recently used entries are exactly the ones not yet listed);
//! - at its end, entries the listing did not see and that were not noted are dropped: their
//!   files went away behind our back (a flush or `rm` by someone else). The same census runs
//!   again later to re-sync, when a lookup or an eviction meets such a file.
//!
//! # Memory
//!
//! Per entry: a 48-byte slot in a hash map (the name as the 20 bytes of the SHA-1, not its 40
//! hex digits; the size; the last use) and a 32-byte key in a B-tree ordered by last use.
//! With the maps' slack, the resident memory grew by 133 bytes per entry for 100,000
//! entries and by 162 for 1,000,000 (measured with a throwaway test reading
//! `/proc/self/statm`): about 13 MB for 100,000 entries.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use super::admission::{admits, Sketch};

/// With an upkeep thread, a batch of eviction starts when the total passes this percentage
/// of the limit, so that the limit itself is seldom reached.
pub const EVICT_FROM_PERCENT: u64 = 95;

/// A batch of eviction removes least recently used entries until the total is at most this
/// percentage of the limit.
pub const EVICT_TO_PERCENT: u64 = 90;

/// At most one info line about eviction per this interval; each batch also has its own
/// debug line. A small cache under steady misses evicts a batch every few milliseconds.
pub const EVICTION_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// An entry file's name: the 20 bytes of the SHA-1 its 40 hex digits spell.
pub type Name = [u8; 20];

/// The name spelled by `hex` (40 lowercase hex digits, `is_entry_name`), or None.
pub fn parse_name(hex: &str) -> Option<Name> {
    fn digit(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            _ => None,
        }
    }
    let bytes = hex.as_bytes();
    if bytes.len() != 40 {
        return None;
    }
    let mut name = [0; 20];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        name[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(name)
}

/// The file name of `name`: its 40 lowercase hex digits.
pub fn name_hex(name: &Name) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    name.iter()
        .flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]])
        .map(char::from)
        .collect()
}

/// Milliseconds since the Unix epoch (0 before it): the index's clock.
pub fn millis(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `percent` percent of `limit`, rounded down, without overflow.
pub fn percent_of(limit: u64, percent: u64) -> u64 {
    u64::try_from(u128::from(limit) * u128::from(percent) / 100).unwrap_or(u64::MAX)
}

/// What eviction a store asks for (`Index::after_store`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfterStore {
    /// Evict now, in the storing thread.
    pub evict_now: Option<Eviction>,
    /// Wake the upkeep thread for a batch.
    pub wake: bool,
}

/// A batch of eviction: least recently used entries go until the total is at most
/// `down_to`, or `at_most` bytes are gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eviction {
    pub down_to: u64,
    pub at_most: u64,
}

impl Eviction {
    /// A whole batch: down to `down_to`, however much that takes.
    pub fn down_to(down_to: u64) -> Eviction {
        Eviction {
            down_to,
            at_most: u64::MAX,
        }
    }
}

/// What the index says of a name being looked up (`Index::look_up`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Not stored, and the census is complete: a miss, with no need to look on disk.
    Absent,
    /// Stored: its use is recorded.
    Used,
    /// The census has not ended: only the disk knows (record the use with `touch`).
    Unsure,
}

/// Whether a response may be stored (`Index::admit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// The cache is full and the newcomer was asked for `asked` times lately, not more
    /// than once nor more often than the entry it would displace (`victim` times).
    NotAdmitted {
        asked: u8,
        victim: u8,
    },
}

/// One file as the census listed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    pub name: Name,
    /// Bytes allocated on disk.
    pub size: u64,
    /// Last use (atime), in `millis`.
    pub used: u64,
}

/// What the index knows of one entry.
#[derive(Debug, Clone, Copy)]
struct Meta {
    /// Bytes allocated on disk.
    size: u64,
    /// Last use, in `millis`; the entry's place in `Index::order`.
    used: u64,
    /// Listed or changed since the current (or last) census began; `begin_census` clears it.
    listed: bool,
}

/// How far the index is from knowing the whole directory.
#[derive(Debug)]
enum Census {
    /// Nothing counted yet: changes are not recorded, the census will see them on disk.
    NotStarted,
    /// The directory is being listed. Invariant: `noted` holds every name changed since the
    /// census began.
    Running { noted: HashSet<Name> },
    /// Every entry file is known (as far as we can tell).
    Complete,
}

/// The entries, their total, and their order of last use.
#[derive(Debug)]
pub struct Index {
    entries: HashMap<Name, Meta>,
    /// Invariant: holds `(meta.used, name)` for exactly the entries in `entries`.
    order: BTreeSet<(u64, Name)>,
    /// Invariant: the sum of `size` over `entries`.
    usage: u64,
    census: Census,
    /// Entries taken out of the index for eviction whose files are not yet removed: no new
    /// file may be put under these names until they are (`may_install`).
    evicting: Vec<Name>,
    /// The last `used` handed out: uses are numbered strictly in the order they happen, even
    /// within one millisecond or when the clock steps back.
    last_use: u64,
    /// Recent requests per name, when a full cache admits by frequency; None: it stores
    /// everything.
    admission: Option<Sketch>,
}

impl Default for Index {
    fn default() -> Self {
        Index::new()
    }
}

impl Index {
    /// An empty index whose census has not started.
    pub fn new() -> Index {
        Index {
            entries: HashMap::new(),
            order: BTreeSet::new(),
            usage: 0,
            census: Census::NotStarted,
            evicting: Vec::new(),
            last_use: 0,
            admission: None,
        }
    }

    /// From now on a full cache admits by frequency, counting requests in `sketch`.
    pub fn admit_by_frequency(&mut self, sketch: Sketch) {
        self.admission = Some(sketch);
    }

    /// Bytes allocated by the entries known.
    pub fn usage(&self) -> u64 {
        self.usage
    }

    /// Entries known.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the entry `name` is known.
    pub fn contains(&self, name: &Name) -> bool {
        self.entries.contains_key(name)
    }

    /// Whether the census has not started (nothing is recorded yet).
    pub fn is_uncounted(&self) -> bool {
        matches!(self.census, Census::NotStarted)
    }

    /// Whether every entry file is known, so the total may drive eviction.
    pub fn is_complete(&self) -> bool {
        matches!(self.census, Census::Complete)
    }

    /// Whether the census is complete and the total is past `limit`.
    pub fn is_over(&self, limit: u64) -> bool {
        self.is_complete() && self.usage > limit
    }

    /// Whether the cache is full: the census is complete and the total has reached what
    /// eviction brings it down to (`EVICT_TO_PERCENT` of `limit`). From there on, every entry
    /// stored is paid for by one evicted.
    pub fn is_full(&self, limit: u64) -> bool {
        self.is_complete() && self.usage >= percent_of(limit, EVICT_TO_PERCENT)
    }

    /// Counts a request for `name`, a response about to be stored, and says whether a cache
    /// of `limit` bytes should store it: always without admission, below the limit, or when
    /// it replaces an entry (whose request was counted when it was found, by `touch`); when
    /// full, only if `admission::admits` it against the least recently used entry.
    pub fn admit(&mut self, name: Name, limit: u64) -> Admission {
        let full = self.is_full(limit);
        let victim = self.order.first().map(|&(_, victim)| victim);
        let Some(sketch) = &mut self.admission else {
            return Admission::Admitted;
        };
        if self.entries.contains_key(&name) {
            return Admission::Admitted;
        }
        sketch.count(&name);
        match victim {
            Some(victim) if full => {
                let (asked, victim) = (sketch.estimate(&name), sketch.estimate(&victim));
                if admits(asked, victim) {
                    Admission::Admitted
                } else {
                    Admission::NotAdmitted { asked, victim }
                }
            }
            _ => Admission::Admitted,
        }
    }

    /// The eviction asked for by a store of `added` bytes that left this total, with a
    /// limit of `limit` bytes.
    ///
    /// With an upkeep thread (`upkeep`), past `EVICT_FROM_PERCENT` of the limit the thread
    /// is woken for a batch. A store that leaves the total past the limit means the thread
    /// is behind (it has one thread's share of the CPU against every writer's): the storing
    /// thread evicts toward the limit, but never more than it added (one or two files), so
    /// the total stops growing and no request does more than its own share. Without an
    /// upkeep thread, a store past the limit evicts the whole batch itself.
    pub fn after_store(&self, limit: u64, upkeep: bool, added: u64) -> AfterStore {
        let past_limit = self.is_over(limit);
        if upkeep {
            let own_share = Eviction {
                down_to: limit,
                at_most: added,
            };
            AfterStore {
                evict_now: past_limit.then_some(own_share),
                wake: self.is_over(percent_of(limit, EVICT_FROM_PERCENT)),
            }
        } else {
            let batch = Eviction::down_to(percent_of(limit, EVICT_TO_PERCENT));
            AfterStore {
                evict_now: past_limit.then_some(batch),
                wake: false,
            }
        }
    }

    /// Records that the file `name` was (re)written, taking `size` bytes, at `now`: it
    /// becomes the most recently used. Ignored before the census starts.
    pub fn record(&mut self, name: Name, size: u64, now: SystemTime) {
        if self.is_uncounted() {
            return;
        }
        let used = self.next_use(now);
        self.note(name);
        self.put(name, size, used);
    }

    /// Records a use of `name` (a file of `size` bytes) at `now`: it becomes the most
    /// recently used, and a request for it is counted for admission. A name the index does
    /// not know is added only while the census runs; once complete, an unknown file is one
    /// being evicted or one someone else put there (the next census finds those).
    pub fn touch(&mut self, name: Name, size: u64, now: SystemTime) {
        if let Some(sketch) = &mut self.admission {
            sketch.count(&name);
        }
        let known = self.entries.contains_key(&name);
        match self.census {
            Census::NotStarted => {}
            Census::Complete if !known => {}
            _ => {
                let used = self.next_use(now);
                self.note(name);
                self.put(name, size, used);
            }
        }
    }

    /// A lookup of `name` at `now`: if the entry is known, its use is recorded as by `touch`
    /// (with the size known); if not, whether the complete index can say it is not stored.
    /// A file put in the directory by someone else is not known until the next census.
    pub fn look_up(&mut self, name: Name, now: SystemTime) -> Presence {
        if let Some(meta) = self.entries.get(&name) {
            let size = meta.size;
            self.touch(name, size, now);
            Presence::Used
        } else if self.is_complete() {
            Presence::Absent
        } else {
            Presence::Unsure
        }
    }

    /// Records that the file `name` is gone; returns the bytes it took, if it was known.
    pub fn remove(&mut self, name: &Name) -> Option<u64> {
        self.note(*name);
        let meta = self.entries.remove(name)?;
        self.order.remove(&(meta.used, *name));
        self.usage -= meta.size;
        Some(meta.size)
    }

    /// Whether a file may be put under `name` now: not while an eviction is removing it.
    pub fn may_install(&self, name: &Name) -> bool {
        !self.evicting.contains(name)
    }

    /// Takes the least recently used entry out of the index, if the census is complete and
    /// the total is past `target`; until `evicted(name)`, no file may be put under its name.
    /// Returns its name and size.
    pub fn evict_one(&mut self, target: u64) -> Option<(Name, u64)> {
        if !self.is_complete() || self.usage <= target {
            return None;
        }
        let (_, name) = self.order.pop_first()?;
        let meta = self
            .entries
            .remove(&name)
            .expect("order and entries hold the same names");
        self.usage -= meta.size;
        self.evicting.push(name);
        Some((name, meta.size))
    }

    /// The file of an entry taken by `evict_one` is removed (or was already gone).
    pub fn evicted(&mut self, name: &Name) {
        self.evicting.retain(|n| n != name);
    }

    /// Starts a census: from now on changes are noted, and `merge` and `finish_census`
    /// fold the listing in.
    pub fn begin_census(&mut self) {
        for meta in self.entries.values_mut() {
            meta.listed = false;
        }
        self.census = Census::Running {
            noted: HashSet::new(),
        };
    }

    /// Folds listed files into the index. A name changed since the census began keeps what
    /// was recorded live; a new name is added; a known one takes the listed size (the file
    /// may have been replaced behind our back) and the later of the two uses.
    pub fn merge(&mut self, listed: impl IntoIterator<Item = Listed>) {
        for file in listed {
            let Census::Running { noted } = &self.census else {
                return;
            };
            if noted.contains(&file.name) {
                continue;
            }
            let used = self.entries.get(&file.name).map_or(file.used, |m| m.used);
            self.put(file.name, file.size, used.max(file.used));
        }
    }

    /// Ends the census: entries neither listed nor changed since it began are dropped (their
    /// files went away). Returns how many were dropped.
    pub fn finish_census(&mut self) -> usize {
        let noted = match std::mem::replace(&mut self.census, Census::Complete) {
            Census::Running { noted } => noted,
            _ => HashSet::new(),
        };
        let gone: Vec<Name> = self
            .entries
            .iter()
            .filter(|(name, meta)| !meta.listed && !noted.contains(*name))
            .map(|(name, _)| *name)
            .collect();
        for name in &gone {
            self.remove(name);
        }
        gone.len()
    }

    /// Notes a change to `name` while a census runs.
    fn note(&mut self, name: Name) {
        if let Census::Running { noted } = &mut self.census {
            noted.insert(name);
        }
    }

    /// The `used` value of a use at `now`: later than every one before.
    fn next_use(&mut self, now: SystemTime) -> u64 {
        self.last_use = millis(now).max(self.last_use.saturating_add(1));
        self.last_use
    }

    /// Inserts or replaces an entry, keeping `order` and `usage` in step.
    fn put(&mut self, name: Name, size: u64, used: u64) {
        let meta = Meta {
            size,
            used,
            listed: true,
        };
        if let Some(old) = self.entries.insert(name, meta) {
            self.order.remove(&(old.used, name));
            self.usage -= old.size;
        }
        self.order.insert((used, name));
        self.usage += size;
    }
}

/// Eviction batches summed up for the log: the first batch is logged at once, later ones
/// at most once per `EVICTION_LOG_INTERVAL`, as one line for all the batches since.
#[derive(Debug, Default)]
pub struct EvictionTally {
    batches: u64,
    files: u64,
    bytes: u64,
    last_line: Option<Instant>,
}

/// Evictions to report in one log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvictionSummary {
    pub batches: u64,
    pub files: u64,
    pub bytes: u64,
}

impl EvictionTally {
    /// Adds a batch of `files` files and `bytes` bytes evicted at `now`; returns the summary
    /// to log if a line is due.
    pub fn add(&mut self, files: u64, bytes: u64, now: Instant) -> Option<EvictionSummary> {
        self.batches += 1;
        self.files += files;
        self.bytes += bytes;
        self.due(now)
    }

    /// The summary of the batches not yet logged, if a line is due at `now`.
    pub fn due(&mut self, now: Instant) -> Option<EvictionSummary> {
        if self.batches == 0 || self.wait(now).is_some_and(|d| !d.is_zero()) {
            return None;
        }
        let summary = EvictionSummary {
            batches: self.batches,
            files: self.files,
            bytes: self.bytes,
        };
        *self = EvictionTally {
            last_line: Some(now),
            ..EvictionTally::default()
        };
        Some(summary)
    }

    /// How long until a line for the pending batches is due; None when none are pending.
    pub fn wait(&self, now: Instant) -> Option<Duration> {
        if self.batches == 0 {
            return None;
        }
        let next = self.last_line.map_or(now, |t| t + EVICTION_LOG_INTERVAL);
        Some(next.saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::admission::MIN_ENTRIES as MIN_ENTRIES_FOR_TESTS;

    fn n(byte: u8) -> Name {
        [byte; 20]
    }

    fn at(millis: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(millis)
    }

    /// An index whose census found nothing: every change counts.
    fn complete() -> Index {
        let mut index = Index::new();
        index.begin_census();
        index.finish_census();
        index
    }

    fn evict_all(index: &mut Index, target: u64) -> Vec<Name> {
        let mut out = Vec::new();
        while let Some((name, _)) = index.evict_one(target) {
            index.evicted(&name);
            out.push(name);
        }
        out
    }

    #[test]
    fn names_are_the_sha1_bytes_of_forty_hex_digits() {
        let hex = "0123456789abcdef0123456789abcdef01234567";
        let name = parse_name(hex).unwrap();
        assert_eq!(name[0], 0x01);
        assert_eq!(name_hex(&name), hex);
        for bad in ["", &hex[..39], &hex.to_uppercase(), &hex.replace('0', "g")] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn eviction_takes_the_least_recently_used_down_to_the_target() {
        let mut index = complete();
        for i in 1..=4 {
            index.record(n(i), 4096, at(u64::from(i) * 100));
        }
        assert_eq!(index.usage(), 4 * 4096);
        assert!(index.is_over(3 * 4096));
        assert_eq!(evict_all(&mut index, 2 * 4096), [n(1), n(2)]);
        assert_eq!(index.usage(), 2 * 4096);
        assert!(!index.is_over(3 * 4096));
        assert_eq!(index.evict_one(2 * 4096), None);
    }

    #[test]
    fn a_use_makes_an_entry_the_most_recently_used() {
        let mut index = complete();
        index.record(n(1), 100, at(1000));
        index.record(n(2), 100, at(2000));
        index.record(n(3), 100, at(3000));
        index.touch(n(1), 100, at(4000));
        assert_eq!(evict_all(&mut index, 100), [n(2), n(3)]);
        // A use of a file the complete index does not know adds nothing.
        index.touch(n(9), 100, at(5000));
        assert_eq!((index.len(), index.usage()), (1, 100));
    }

    #[test]
    fn a_lookup_uses_a_known_entry_and_answers_absent_only_once_counted() {
        let mut index = Index::new();
        assert_eq!(index.look_up(n(1), at(1)), Presence::Unsure);
        index.begin_census();
        index.record(n(1), 100, at(1));
        index.record(n(2), 100, at(2));
        assert_eq!(
            index.look_up(n(3), at(3)),
            Presence::Unsure,
            "maybe not listed yet"
        );
        index.finish_census();
        assert_eq!(index.look_up(n(1), at(4)), Presence::Used);
        assert_eq!(index.look_up(n(3), at(5)), Presence::Absent);
        assert_eq!(evict_all(&mut index, 0), [n(2), n(1)], "1 was used last");
    }

    #[test]
    fn uses_keep_their_order_within_a_millisecond_and_when_the_clock_steps_back() {
        let mut index = complete();
        index.record(n(9), 1, at(5000));
        index.record(n(1), 1, at(5000));
        index.record(n(5), 1, at(1000));
        assert_eq!(evict_all(&mut index, 0), [n(9), n(1), n(5)]);
    }

    #[test]
    fn replacing_an_entry_counts_only_its_new_size() {
        let mut index = complete();
        index.record(n(1), 8192, at(1));
        index.record(n(1), 4096, at(2));
        assert_eq!((index.len(), index.usage()), (1, 4096));
        assert_eq!(index.remove(&n(1)), Some(4096));
        assert_eq!(index.remove(&n(1)), None);
        assert_eq!(index.usage(), 0);
    }

    #[test]
    fn nothing_is_recorded_before_the_census_nor_evicted_during_it() {
        let mut index = Index::new();
        index.record(n(1), 4096, at(1));
        assert_eq!(index.usage(), 0, "the census will find this file");
        index.begin_census();
        index.record(n(2), 4096, at(2));
        assert_eq!(index.usage(), 4096);
        assert!(!index.is_over(0));
        assert_eq!(index.evict_one(0), None);
        index.finish_census();
        assert!(index.is_over(0));
    }

    #[test]
    fn the_census_does_not_overrule_what_happened_while_it_ran() {
        let mut index = Index::new();
        index.begin_census();
        // Stored during the census, then listed with its old copy: counted once, as stored.
        index.record(n(1), 8192, at(5000));
        // Removed during the census after the listing saw it: stays removed.
        index.remove(&n(2));
        // Used during the census before being listed: added, as used now.
        index.touch(n(3), 4096, at(6000));
        index.merge([
            Listed {
                name: n(1),
                size: 4096,
                used: 1,
            },
            Listed {
                name: n(2),
                size: 4096,
                used: 1,
            },
            Listed {
                name: n(3),
                size: 4096,
                used: 1,
            },
            Listed {
                name: n(4),
                size: 4096,
                used: 100,
            },
        ]);
        assert_eq!(index.finish_census(), 0);
        assert_eq!(index.usage(), 8192 + 4096 + 4096);
        // The listed entry kept its atime, older than anything used live.
        assert_eq!(evict_all(&mut index, 0), [n(4), n(1), n(3)]);
    }

    #[test]
    fn a_new_census_drops_entries_whose_files_vanished() {
        let mut index = complete();
        index.record(n(1), 4096, at(1));
        index.record(n(2), 4096, at(2));
        index.begin_census();
        index.record(n(3), 4096, at(3));
        // The listing sees 1 only (2 was removed by someone else; 3 came after it passed).
        index.merge([Listed {
            name: n(1),
            size: 8192,
            used: 0,
        }]);
        assert_eq!(index.finish_census(), 1);
        assert_eq!(index.len(), 2);
        assert_eq!(index.usage(), 8192 + 4096, "the listed size wins");
        assert_eq!(
            evict_all(&mut index, 0),
            [n(1), n(3)],
            "its last use is kept"
        );
    }

    #[test]
    fn a_name_being_evicted_takes_no_new_file_until_its_old_one_is_gone() {
        let mut index = complete();
        index.record(n(1), 4096, at(1));
        index.record(n(2), 4096, at(2));
        let (name, size) = index.evict_one(4096).unwrap();
        assert_eq!((name, size), (n(1), 4096));
        assert!(!index.may_install(&n(1)));
        assert!(index.may_install(&n(2)));
        index.evicted(&n(1));
        assert!(index.may_install(&n(1)));
    }

    #[test]
    fn percentages_of_the_limit_do_not_overflow() {
        assert_eq!(percent_of(1000, EVICT_TO_PERCENT), 900);
        assert_eq!(percent_of(0, EVICT_TO_PERCENT), 0);
        assert_eq!(
            percent_of(u64::MAX, EVICT_TO_PERCENT),
            16_602_069_666_338_596_453
        );
    }

    #[test]
    fn the_upkeep_thread_is_woken_early_and_writers_evict_only_past_the_limit() {
        let after = |usage: u64, upkeep| {
            let mut index = complete();
            index.record(n(1), usage - 40, at(1));
            index.record(n(2), 40, at(2));
            index.after_store(1000, upkeep, 40)
        };
        let quiet = AfterStore {
            evict_now: None,
            wake: false,
        };
        assert_eq!(after(950, true), quiet);
        assert_eq!(
            after(951, true),
            AfterStore {
                evict_now: None,
                wake: true
            }
        );
        // Far past the limit, the store evicts no more than the 40 bytes it added.
        assert_eq!(
            after(5000, true),
            AfterStore {
                evict_now: Some(Eviction {
                    down_to: 1000,
                    at_most: 40
                }),
                wake: true
            }
        );
        // Without an upkeep thread the store evicts the whole batch, past the limit only.
        assert_eq!(after(1000, false), quiet);
        assert_eq!(
            after(1001, false),
            AfterStore {
                evict_now: Some(Eviction::down_to(900)),
                wake: false
            }
        );
        // Never before the census is complete.
        let mut counting = Index::new();
        counting.begin_census();
        counting.record(n(1), 5000, at(1));
        assert_eq!(counting.after_store(1000, true, 5000), quiet);
    }

    /// An index that admits by frequency, with a sketch made for `entries` entries.
    fn admitting(entries: u64) -> Index {
        let mut index = complete();
        index.admit_by_frequency(Sketch::new(entries));
        index
    }

    /// A request for `name` not stored, stored if admitted (as the store does).
    fn miss(index: &mut Index, name: Name, limit: u64, now: u64) -> Admission {
        let admission = index.admit(name, limit);
        if admission == Admission::Admitted {
            index.record(name, BLOCK, at(now));
        }
        admission
    }

    /// A 4 KiB block: what a small entry takes.
    const BLOCK: u64 = 4096;

    #[test]
    fn below_the_limit_and_without_a_sketch_everything_is_admitted() {
        let limit = 10 * BLOCK;
        let mut plain = complete();
        let mut index = admitting(10);
        for i in 0..9 {
            assert_eq!(
                miss(&mut index, n(i), limit, u64::from(i)),
                Admission::Admitted
            );
        }
        assert!(
            index.is_full(limit),
            "9 of 10 blocks is the eviction's target"
        );
        assert_ne!(index.admit(n(99), limit), Admission::Admitted);
        for i in 0..20 {
            assert_eq!(
                miss(&mut plain, n(i), limit, u64::from(i)),
                Admission::Admitted
            );
        }
        // Replacing a stored entry evicts nothing: admitted, and not counted again.
        assert_eq!(index.admit(n(0), limit), Admission::Admitted);
        assert_eq!(index.admission.as_ref().unwrap().estimate(&n(0)), 1);
    }

    #[test]
    fn a_name_asked_for_twice_displaces_one_asked_for_once() {
        let limit = 2 * BLOCK;
        let mut index = admitting(2);
        miss(&mut index, n(1), limit, 1);
        miss(&mut index, n(2), limit, 2);
        let once = Admission::NotAdmitted {
            asked: 1,
            victim: 1,
        };
        assert_eq!(miss(&mut index, n(3), limit, 3), once);
        assert_eq!(miss(&mut index, n(3), limit, 4), Admission::Admitted);
        assert!(index.contains(&n(3)));
        assert_eq!(evict_all(&mut index, limit), [n(1)]);
        // A use counts too: both entries left were asked for twice, and a tie keeps them.
        index.touch(n(2), BLOCK, at(5));
        let asked = |asked| Admission::NotAdmitted { asked, victim: 2 };
        assert_eq!(miss(&mut index, n(4), limit, 6), asked(1));
        assert_eq!(miss(&mut index, n(4), limit, 7), asked(2));
        assert_eq!(miss(&mut index, n(4), limit, 8), Admission::Admitted);
    }

    #[test]
    fn ageing_lets_a_newly_popular_name_displace_a_formerly_popular_one() {
        let limit = BLOCK;
        let mut index = admitting(MIN_ENTRIES_FOR_TESTS);
        miss(&mut index, n(1), limit, 1);
        for t in 2..20 {
            index.touch(n(1), BLOCK, at(t));
        }
        for _ in 0..3 {
            miss(&mut index, n(2), limit, 20);
        }
        assert_eq!(
            index.admit(n(2), limit),
            Admission::NotAdmitted {
                asked: 4,
                victim: 15
            }
        );
        // Three samples of other requests: 15 becomes 7, 3, then 1; 4 becomes 2, 1, 0.
        let sample = index.admission.as_ref().unwrap().sample();
        for i in 0..3 * sample - 4 {
            let mut other = [0; 20];
            other[..8].copy_from_slice(&i.to_le_bytes());
            other[8] = 0xff;
            index.admit(other, limit);
        }
        miss(&mut index, n(2), limit, 30);
        assert_eq!(miss(&mut index, n(2), limit, 31), Admission::Admitted);
    }

    /// A cache of `entries` 4 KiB entries driven as the store drives its index: a request
    /// for a stored name is a use, one for another name is admitted or not, and past
    /// `EVICT_FROM_PERCENT` a batch of eviction runs. Counts hits and stores.
    struct Model {
        index: Index,
        limit: u64,
        clock: u64,
        hits: u64,
        stored: u64,
    }

    impl Model {
        fn new(entries: u64, admission: bool) -> Model {
            let mut index = complete();
            if admission {
                index.admit_by_frequency(Sketch::new(entries));
            }
            Model {
                index,
                limit: entries * BLOCK,
                clock: 0,
                hits: 0,
                stored: 0,
            }
        }

        fn request(&mut self, name: Name) {
            self.clock += 1;
            if self.index.contains(&name) {
                self.index.touch(name, BLOCK, at(self.clock));
                self.hits += 1;
                return;
            }
            if miss(&mut self.index, name, self.limit, self.clock) == Admission::Admitted {
                self.stored += 1;
            }
            if self
                .index
                .is_over(percent_of(self.limit, EVICT_FROM_PERCENT))
            {
                evict_all(&mut self.index, percent_of(self.limit, EVICT_TO_PERCENT));
            }
        }
    }

    /// The SHA-1 of the key `i`, as entries are named.
    fn key(i: u64) -> Name {
        sha1_smol::Sha1::from(i.to_string()).digest().bytes()
    }

    /// A xorshift generator: the same numbers on every run.
    struct Random(u64);

    impl Random {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    #[test]
    fn uniform_traffic_over_far_more_names_than_fit_is_mostly_not_stored() {
        let names: Vec<Name> = (0..100_000).map(key).collect();
        // Random over 100 times more names than fit, and a cycle over 20 times more (a name
        // comes back after twice the sketch's sample).
        for (cycle, at_most_percent) in [(false, 10), (true, 2)] {
            let mut model = Model::new(1000, true);
            let mut random = Random(7);
            for i in 0..200_000 {
                let at = if cycle {
                    i % 20_000
                } else {
                    random.below(100_000)
                };
                model.request(names[at as usize]);
            }
            let misses = 200_000 - model.hits;
            // About 900 stored while the cache filled, then a few of the misses.
            assert!(
                model.stored < 900 + misses * at_most_percent / 100,
                "cycle {cycle}: {} of {misses} misses stored",
                model.stored
            );
        }
    }

    #[test]
    fn skewed_traffic_keeps_its_popular_names() {
        // Zipf-like: name `r` (from 1) is asked for in proportion to 1 / r.
        const NAMES: usize = 10_000;
        let weights: Vec<f64> = (1..=NAMES).map(|r| 1.0 / r as f64).collect();
        let total: f64 = weights.iter().sum();
        let cumulative: Vec<f64> = weights
            .iter()
            .scan(0.0, |sum, w| {
                *sum += w / total;
                Some(*sum)
            })
            .collect();
        let names: Vec<Name> = (0..NAMES as u64).map(key).collect();
        let run = |admission| {
            let mut model = Model::new(300, admission);
            let mut random = Random(11);
            for _ in 0..200_000 {
                let u = random.below(1 << 30) as f64 / f64::from(1 << 30);
                let rank = cumulative.partition_point(|&c| c < u).min(NAMES - 1);
                model.request(names[rank]);
            }
            model
        };
        let (admitting, plain) = (run(true), run(false));
        let kept = names[..50]
            .iter()
            .filter(|n| admitting.index.contains(n))
            .count();
        assert!(kept >= 48, "{kept} of the 50 most popular kept");
        // More hits (61% against 51% here) for a tenth of the writes.
        assert!(
            admitting.hits > plain.hits * 11 / 10,
            "hits: {} admitting, {} storing all",
            admitting.hits,
            plain.hits
        );
        assert!(admitting.stored * 10 < plain.stored);
    }

    #[test]
    fn eviction_is_logged_as_one_line_per_interval() {
        let start = Instant::now();
        let mut tally = EvictionTally::default();
        assert_eq!(tally.wait(start), None);
        let first = tally.add(3, 12288, start);
        assert_eq!(
            first,
            Some(EvictionSummary {
                batches: 1,
                files: 3,
                bytes: 12288
            })
        );
        let soon = start + Duration::from_secs(1);
        assert_eq!(tally.add(2, 8192, soon), None);
        assert_eq!(tally.add(1, 4096, soon), None);
        assert_eq!(
            tally.wait(soon),
            Some(EVICTION_LOG_INTERVAL - Duration::from_secs(1))
        );
        assert_eq!(tally.due(soon), None);
        let later = start + EVICTION_LOG_INTERVAL;
        assert_eq!(
            tally.due(later),
            Some(EvictionSummary {
                batches: 2,
                files: 3,
                bytes: 12288
            })
        );
        assert_eq!(tally.wait(later), None);
    }
}
