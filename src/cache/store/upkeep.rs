//! The store's upkeep: the census that rebuilds the in-memory index from the directory, and
//! eviction in batches, run by the upkeep thread (the proxy) or by the thread that needs it
//! (a one-shot program, or a writer that found the disk full). What is counted, what goes
//! first and how far are `index`'s rules; this is the file I/O and the locking around them.
//!
//! The lock on the index is taken per file evicted and per chunk of files listed, never
//! across a removal or a directory read, so a request that needs it waits at most for a
//! few microseconds of bookkeeping.

use std::fs;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::{MutexGuard, PoisonError};
use std::time::{Instant, SystemTime};

use super::{allocated, Shared, TEMP_PREFIX};
use crate::cache::index::{
    millis, name_hex, parse_name, percent_of, AfterStore, Eviction, EvictionSummary, EvictionTally,
    Index, Listed, EVICT_FROM_PERCENT, EVICT_TO_PERCENT,
};

/// Listed files folded into the index per lock taken during a census.
const CENSUS_CHUNK: usize = 1024;

/// A census to re-sync starts no sooner than this many times the last census's duration
/// after it ended: at most about a tenth of the upkeep thread's time goes to listing.
const CENSUS_SPACING: u32 = 10;

/// What one eviction batch did.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Batch {
    pub(super) files: u64,
    pub(super) bytes: u64,
}

impl Shared {
    /// The upkeep thread: the census, then until the store is dropped: a batch of eviction
    /// whenever the total passes `EVICT_FROM_PERCENT` of `max_size`, a new census when one
    /// is wanted (no sooner than `CENSUS_SPACING` times the last one's duration after it),
    /// the log line when due.
    pub(super) fn run_upkeep(&self) {
        let mut next_census = self.census(true);
        let mark = percent_of(self.max_size, EVICT_FROM_PERCENT);
        loop {
            let over = self.wait_for_work(mark, next_census);
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            if over {
                self.evicting.store(true, Ordering::SeqCst);
                let target = percent_of(self.max_size, EVICT_TO_PERCENT);
                let batch = self.evict_batch(Eviction::down_to(target));
                // Cleared before `wait_for_work` looks at the total again, under the lock.
                self.evicting.store(false, Ordering::SeqCst);
                self.report(batch);
            }
            if Instant::now() >= next_census && self.census_wanted.swap(false, Ordering::SeqCst) {
                self.lock_index().begin_census();
                next_census = self.census(false);
            }
            self.log_due();
        }
    }

    /// Sleeps until there is something to do: the total past `mark` (returns true), a census
    /// wanted and allowed after `next_census`, a log line due, or the store dropped.
    fn wait_for_work(&self, mark: u64, next_census: Instant) -> bool {
        let now = Instant::now();
        let wanted = self.census_wanted.load(Ordering::SeqCst);
        let census_in = wanted.then(|| next_census.saturating_duration_since(now));
        let timeout = census_in
            .into_iter()
            .chain(self.lock_tally().wait(now))
            .min();
        // Woken early when the store is dropped, eviction is needed, or a census becomes
        // wanted (to compute when it may start).
        let idle = |index: &mut Index| {
            !self.stopping.load(Ordering::SeqCst)
                && !index.is_over(mark)
                && self.census_wanted.load(Ordering::SeqCst) == wanted
        };
        let index = self.lock_index();
        let index = match timeout {
            Some(timeout) => {
                self.wake
                    .wait_timeout_while(index, timeout, idle)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            }
            None => self
                .wake
                .wait_while(index, idle)
                .unwrap_or_else(PoisonError::into_inner),
        };
        index.is_over(mark)
    }

    /// Asks the upkeep thread, if any, for a census: files went away behind our back.
    pub(super) fn want_census(&self) {
        if self.upkeep.load(Ordering::SeqCst) && !self.census_wanted.swap(true, Ordering::SeqCst) {
            self.wake_upkeep();
        }
    }

    /// Wakes the upkeep thread to check its flags.
    pub(super) fn wake_upkeep(&self) {
        let _index = self.lock_index();
        self.wake.notify_all();
    }

    /// Evicts what a store asked for (`Index::after_store`).
    pub(super) fn evict_after_store(&self, asked: AfterStore) {
        if asked.wake && !self.evicting.load(Ordering::SeqCst) {
            // The total changed under the lock before this, so the thread cannot miss it;
            // and one that is evicting looks at the total again before it sleeps.
            self.wake.notify_all();
        }
        if let Some(eviction) = asked.evict_now {
            let batch = self.evict_batch(eviction);
            self.tally(batch);
        }
    }

    /// Removes least recently used entries as `eviction` says (nothing until the census is
    /// complete). A file already gone is only forgotten, and asks for a new census: someone
    /// else is removing files.
    pub(super) fn evict_batch(&self, eviction: Eviction) -> Batch {
        let mut batch = Batch::default();
        let (mut vanished, mut taken) = (0, 0);
        let mut last = None;
        loop {
            let next = {
                let mut index = self.lock_index();
                if let Some(name) = last.take() {
                    index.evicted(&name);
                }
                let budget_left = taken < eviction.at_most;
                budget_left
                    .then(|| index.evict_one(eviction.down_to))
                    .flatten()
            };
            let Some((name, size)) = next else { break };
            last = Some(name);
            taken += size;
            let hex = name_hex(&name);
            match fs::remove_file(self.dir.join(&hex)) {
                Ok(()) => {
                    batch.files += 1;
                    batch.bytes += size;
                    log::debug!("cache: evicted {hex} ({size} B, least recently used)");
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => vanished += 1,
                Err(e) => log::warn!("cache: cannot evict {hex}: {e}"),
            }
        }
        if vanished > 0 {
            log::info!("cache: {vanished} entries were removed by someone else");
            self.want_census();
        }
        batch
    }

    /// A write failed because the disk is full: evicts a batch, the least recently used
    /// tenth of what the cache holds (`EVICT_TO_PERCENT`), unless another writer did since
    /// `seen` (`room_made`). Returns whether trying again makes sense. Nothing is evicted
    /// while the census runs: the entry is dropped instead.
    pub(super) fn make_room(&self, seen: u64) -> bool {
        let _one_at_a_time = self
            .room_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.room_made.load(Ordering::SeqCst) != seen {
            return true;
        }
        let usage = {
            let index = self.counted_index();
            index.is_complete().then(|| index.usage())
        };
        let Some(usage) = usage else {
            log::warn!("cache: the disk is full while the cache is being counted");
            return false;
        };
        let batch = self.evict_batch(Eviction::down_to(percent_of(usage, EVICT_TO_PERCENT)));
        self.room_made.fetch_add(1, Ordering::SeqCst);
        log::warn!(
            "cache: the disk is full: evicted {} ({} B, least recently used)",
            counted(batch.files, "file", "files"),
            batch.bytes
        );
        batch.files > 0
    }

    /// Reports a batch of the upkeep thread: a debug line, and the info summary when due.
    fn report(&self, batch: Batch) {
        let usage = self.lock_index().usage();
        log::debug!(
            "cache: eviction batch: {} files ({} B); {usage} B in use of {} B",
            batch.files,
            batch.bytes,
            self.max_size
        );
        self.tally(batch);
    }

    /// Counts a batch for the info summary, and writes the summary if it is due.
    fn tally(&self, batch: Batch) {
        if batch.files == 0 {
            return;
        }
        let due = self
            .lock_tally()
            .add(batch.files, batch.bytes, Instant::now());
        if let Some(summary) = due {
            self.log_summary(summary);
        }
    }

    /// Writes the pending eviction summary, if it is due.
    fn log_due(&self) {
        let due = self.lock_tally().due(Instant::now());
        if let Some(summary) = due {
            self.log_summary(summary);
        }
    }

    fn log_summary(&self, s: EvictionSummary) {
        log::info!(
            "cache: evicted {} ({} B, least recently used) in {}, to stay under cache_max_size ({} B)",
            counted(s.files, "file", "files"),
            s.bytes,
            counted(s.batches, "batch", "batches"),
            self.max_size
        );
    }

    fn lock_tally(&self) -> MutexGuard<'_, EvictionTally> {
        self.tally.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lists the directory into the index, whose census has begun, a chunk at a time, and
    /// completes it. The first census also removes what killed processes left. Returns when
    /// the next census may start.
    pub(super) fn census(&self, first: bool) -> Instant {
        let started = Instant::now();
        let mut chunk = Vec::with_capacity(CENSUS_CHUNK);
        for file in self.listing(first) {
            chunk.push(file);
            if chunk.len() == CENSUS_CHUNK {
                self.lock_index().merge(chunk.drain(..));
            }
        }
        let mut index = self.lock_index();
        index.merge(chunk);
        let gone = index.finish_census();
        let (entries, usage) = (index.len(), index.usage());
        drop(index);
        log::info!(
            "cache: {entries} entries ({usage} B) in {}, counted in {} ms{}",
            self.dir.display(),
            started.elapsed().as_millis(),
            match gone {
                0 => String::new(),
                n => format!("; {n} removed by someone else"),
            }
        );
        Instant::now() + started.elapsed() * CENSUS_SPACING
    }

    /// The entry files in the directory, each with its allocated size and its atime (one in
    /// the future counts as old, as in `open`). With `clean_up`, temporary files other
    /// processes left (a proxy that was killed) are removed on the way.
    pub(super) fn listing(&self, clean_up: bool) -> impl Iterator<Item = Listed> + '_ {
        let listing = fs::read_dir(&self.dir)
            .map_err(|e| {
                if e.kind() != io::ErrorKind::NotFound {
                    log::warn!("cache: cannot list {}: {e}", self.dir.display());
                }
            })
            .ok();
        let ours = self.pid.to_string();
        let now = millis(SystemTime::now());
        listing
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(move |item| {
                let file_name = item.file_name();
                let name = file_name.to_str()?;
                let meta = item.metadata().ok()?;
                if !meta.is_file() {
                    return None;
                }
                if let Some(parsed) = parse_name(name) {
                    let atime = meta.accessed().map_or(0, millis);
                    return Some(Listed {
                        name: parsed,
                        size: allocated(&meta),
                        used: if atime > now { 0 } else { atime },
                    });
                }
                if clean_up
                    && name.starts_with(TEMP_PREFIX)
                    && name.rsplit('-').nth(1) != Some(ours.as_str())
                {
                    log::info!("cache: removing leftover temporary file {name}");
                    let _ = fs::remove_file(item.path());
                }
                None
            })
    }
}

/// `n` and the noun, singular or plural: "1 file", "2 files".
fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
