//! Admission to a full cache: whether a response is worth the place an older entry must give
//! up for it. Eviction (`index`) decides which entry goes; admission decides whether any
//! should go at all. This module is pure: the sketch counts the names it is given and the
//! rule compares two numbers; the index calls both, under the store's lock.
//!
//! # The idea: TinyLFU
//!
//! Einziger, Friedman and Manes ("TinyLFU: A Highly Efficient Cache Admission Policy", ACM
//! Transactions on Storage, 2017) separate the two questions and answer the second by
//! frequency. Keep an approximate count of how often each key was asked for over a recent
//! stretch of requests, in a sketch far smaller than a table of every key, and let a newcomer
//! into a full cache only when it was asked for more often than the entry that would make room
//! for it. The counts age: after every W requests counted (the *sample*), every counter is
//! halved, so a key that was popular long ago fades and a newly popular one can take its
//! place. Caffeine, the Java caching library, puts this filter in front of its LRU.
//!
//! What it saves us is mostly writes. A miss that is not admitted is relayed without creating
//! a file. When the cache is full and most misses are for URLs that will not be asked for
//! again before they would be evicted (a crawler, or traffic spread over far more URLs than
//! fit), storing each one is a file created, renamed and soon deleted, for no hit.
//!
//! # The sketch
//!
//! A count-min sketch: `ROWS` rows of 4-bit counters. A name has one counter in each row,
//! chosen by four bytes of its SHA-1 (the entry's file name, which the store computes anyway;
//! its bytes are uniform, so no other hash is needed). Its estimate is the least of its
//! counters: never below its true count in the sample, above it only when other names share
//! every one of its counters. A request raises only the counters at that least value (the
//! *conservative update*, which the paper also describes), which keeps the excess small.
//! Counters stop at 15: within a sample of ten requests per entry, a name asked for 15 times
//! is among those worth keeping, whatever its exact count.
//!
//! Sizes: the sketch is made for the most entries the cache can hold, `cache_max_size` / 4 KiB
//! (every entry takes at least one 4 KiB block), kept between `MIN_ENTRIES` and `MAX_ENTRIES`.
//! Each row has `COUNTERS_PER_ENTRY` counters per entry, rounded up to a power of two, and the
//! sample is `SAMPLE_PER_ENTRY` requests per entry. Memory: 4 rows of 16 counters of 4 bits,
//! 32 bytes per entry, up to 64 with the rounding: 8 MiB for the default 1 GiB cache, 8 KiB
//! at least, 32 MiB at most. Halving walks the whole table, once per sample.
//!
//! Why 16 counters a row per entry: a name's counters are shared with the names asked for in
//! the same sample, ten per entry; with 16 or more counters a row for those ten, a name never
//! asked for has all four of its counters taken in a few percent of cases, so the rule below
//! rarely mistakes it for one asked for before. With 8, it did so for about a tenth of a
//! cycle over twenty times more URLs than fit, and those stores pushed each other out
//! before any was used (the unit test `uniform_traffic...` in `index`).
//!
//! # The rule
//!
//! A newcomer's count includes the request being answered. It is admitted when
//!
//! - its count is higher than the victim's (the least recently used entry, which eviction
//!   takes first): on a tie the entry already on disk stays, since replacing it costs a write
//!   and gains nothing we can tell; this is the paper's rule;
//! - and it was asked for before, within the sketch's memory (a count of at least 2). This one
//!   is ours. When a full cache admits little, its least recently used entry was last asked
//!   for long ago, and its count has often been halved down to 0; a newcomer asked for only
//!   now would beat it, and every URL of a cycle longer than the sample would be stored, each
//!   pushing out another one before it is used again, as under plain LRU.
//!
//! Below the limit, everything storable is stored, as without admission.

use super::index::Name;

/// Rows of the sketch: counters per name.
pub const ROWS: usize = 4;

/// Counters in each row per entry the cache can hold, before rounding the row up to a power
/// of two.
pub const COUNTERS_PER_ENTRY: u64 = 16;

/// Requests counted between two halvings (the sample, W), per entry the cache can hold.
pub const SAMPLE_PER_ENTRY: u64 = 10;

/// Bytes of the smallest entry, one 4 KiB block: `cache_max_size` / this is the most entries
/// a cache can hold.
pub const MIN_ENTRY_BYTES: u64 = 4096;

/// Fewest entries a sketch is made for: a smaller cache gets the sketch of this many (8 KiB).
pub const MIN_ENTRIES: u64 = 256;

/// Most entries a sketch is made for (32 MiB): a larger cache gets the sketch of this many,
/// and noisier counts.
pub const MAX_ENTRIES: u64 = 1 << 20;

/// Highest count a counter holds.
pub const MAX_COUNT: u8 = 15;

/// 4-bit counters in a `u64`.
const PER_WORD: usize = 16;

/// Halves the sixteen counters of a word shifted right by one: drops the bit each counter
/// would take from its neighbour.
const HALVING_MASK: u64 = 0x7777_7777_7777_7777;

/// How often names were asked for lately, approximately (a count-min sketch with aging).
#[derive(Debug, Clone)]
pub struct Sketch {
    /// Invariant: `ROWS * width / PER_WORD` words; row `r` is counters `r * width` up to
    /// `(r + 1) * width`, counter `i` being bits `4 * (i % 16)..` of word `i / 16`.
    words: Vec<u64>,
    /// Counters per row. Invariant: a power of two, at least `PER_WORD`.
    width: usize,
    /// Requests counted between two halvings.
    sample: u64,
    /// Requests counted since the last halving.
    counted: u64,
}

impl Sketch {
    /// The sketch for a cache of `max_size` bytes: made for `max_size / MIN_ENTRY_BYTES`
    /// entries.
    pub fn for_cache(max_size: u64) -> Sketch {
        Sketch::new(max_size / MIN_ENTRY_BYTES)
    }

    /// A sketch made for a cache of `entries` entries (kept between `MIN_ENTRIES` and
    /// `MAX_ENTRIES`), all counts zero.
    pub fn new(entries: u64) -> Sketch {
        let entries = entries.clamp(MIN_ENTRIES, MAX_ENTRIES);
        let width = usize::try_from((entries * COUNTERS_PER_ENTRY).next_power_of_two())
            .expect("at most 2^24 counters per row");
        Sketch {
            words: vec![0; ROWS * width / PER_WORD],
            width,
            sample: entries * SAMPLE_PER_ENTRY,
            counted: 0,
        }
    }

    /// Counts a request for `name`; every `sample` requests, halves every count.
    pub fn count(&mut self, name: &Name) {
        let slots = self.slots(name);
        let least = self.least(&slots);
        if least < MAX_COUNT {
            for slot in slots {
                if self.counter(slot) == least {
                    self.set(slot, least + 1);
                }
            }
        }
        self.counted += 1;
        if self.counted >= self.sample {
            self.halve();
        }
    }

    /// How often `name` was asked for lately: at least the requests counted since the last
    /// halving, more when other names share all its counters.
    pub fn estimate(&self, name: &Name) -> u8 {
        self.least(&self.slots(name))
    }

    /// Halves every count (rounding down) and starts a new sample.
    fn halve(&mut self) {
        for word in &mut self.words {
            *word = (*word >> 1) & HALVING_MASK;
        }
        self.counted = 0;
    }

    /// The counters of `name`, one per row: four bytes of its SHA-1 each.
    fn slots(&self, name: &Name) -> [usize; ROWS] {
        std::array::from_fn(|row| {
            let at = 4 * row;
            let bytes = [name[at], name[at + 1], name[at + 2], name[at + 3]];
            let column = u32::from_le_bytes(bytes) as usize & (self.width - 1);
            row * self.width + column
        })
    }

    fn least(&self, slots: &[usize; ROWS]) -> u8 {
        slots
            .iter()
            .map(|&slot| self.counter(slot))
            .min()
            .unwrap_or(0)
    }

    fn counter(&self, slot: usize) -> u8 {
        ((self.words[slot / PER_WORD] >> (4 * (slot % PER_WORD))) & 0xf) as u8
    }

    fn set(&mut self, slot: usize, value: u8) {
        let shift = 4 * (slot % PER_WORD);
        let word = &mut self.words[slot / PER_WORD];
        *word = (*word & !(0xf << shift)) | (u64::from(value) << shift);
    }
}

#[cfg(test)]
impl Sketch {
    /// Bytes the counters take.
    pub fn memory(&self) -> usize {
        self.words.len() * std::mem::size_of::<u64>()
    }

    /// Requests counted between two halvings.
    pub fn sample(&self) -> u64 {
        self.sample
    }
}

/// Whether a newcomer asked for `candidate` times lately (this request included) may take
/// the place of an entry asked for `victim` times: it must have been asked for before, and
/// more often than the victim (see the module's doc).
pub fn admits(candidate: u8, victim: u8) -> bool {
    candidate >= 2 && candidate > victim
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SHA-1 of `key`, as the store names entries.
    fn name(key: &str) -> Name {
        sha1_smol::Sha1::from(key).digest().bytes()
    }

    #[test]
    fn a_name_is_estimated_at_its_count_and_others_at_zero() {
        let mut sketch = Sketch::new(1000);
        for _ in 0..3 {
            sketch.count(&name("a"));
        }
        sketch.count(&name("b"));
        assert_eq!(sketch.estimate(&name("a")), 3);
        assert_eq!(sketch.estimate(&name("b")), 1);
        assert_eq!(sketch.estimate(&name("c")), 0);
        for _ in 0..100 {
            sketch.count(&name("a"));
        }
        assert_eq!(
            sketch.estimate(&name("a")),
            MAX_COUNT,
            "counters stop at 15"
        );
    }

    #[test]
    fn a_full_sample_of_other_names_leaves_few_false_counts() {
        // 1,000 entries: 16,000 counters a row, rounded up the least (to 16,384).
        let mut sketch = Sketch::new(1000);
        // Just short of a halving: every counter as loaded as it gets.
        for n in 0..sketch.sample() - 1 {
            sketch.count(&name(&format!("seen {n}")));
        }
        let falsely_seen = (0..1000)
            .filter(|n| sketch.estimate(&name(&format!("never {n}"))) > 0)
            .count();
        assert!(
            falsely_seen < 70,
            "{falsely_seen} of 1000 names never asked for"
        );
    }

    #[test]
    fn every_sample_halves_the_counts() {
        let mut sketch = Sketch::new(MIN_ENTRIES);
        for _ in 0..13 {
            sketch.count(&name("popular"));
        }
        let filler = sketch.sample() - 13;
        for n in 0..filler {
            sketch.count(&name(&format!("filler {n}")));
        }
        assert_eq!(sketch.estimate(&name("popular")), 6);
        for n in 0..sketch.sample() {
            sketch.count(&name(&format!("filler {n}")));
        }
        assert_eq!(sketch.estimate(&name("popular")), 3);
    }

    #[test]
    fn memory_is_thirty_two_to_sixty_four_bytes_per_entry_and_bounded() {
        assert_eq!(Sketch::for_cache(1 << 30).memory(), 8 << 20);
        assert_eq!(Sketch::for_cache(1 << 30).sample(), 10 * 262_144);
        // 1,220 entries of 4 KiB: 19,520 counters a row, rounded up to 32,768.
        assert_eq!(Sketch::for_cache(5_000_000).memory(), 64 * 1024);
        assert_eq!(Sketch::for_cache(0).memory(), 8 * 1024);
        assert_eq!(Sketch::for_cache(u64::MAX).memory(), 32 << 20);
    }

    #[test]
    fn a_newcomer_needs_an_earlier_request_and_a_higher_count() {
        assert!(!admits(1, 0), "asked for only now");
        assert!(!admits(2, 2), "a tie keeps the entry on disk");
        assert!(admits(2, 1));
        assert!(admits(15, 14));
    }
}
