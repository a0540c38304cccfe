//! The parsed heads and bodies of small entries served lately, kept in memory so that a
//! cache hit costs one `stat` of the entry's path instead of opening, reading, parsing and
//! closing the file (issue 17: a hit took six system calls, now three with the client's).
//!
//! What is remembered is checked on every use against the file's identity as `stat` gives it
//! now: device, inode, size, mtime and ctime. Any change to the file shows there: a
//! replacement (rename: a new inode), a refresh (a new mtime, which also drives the TTL), an
//! edit or truncation behind our back (size, mtime, ctime; ctime cannot be set back), a
//! removal by `--flush-cache`, a purge, eviction or `rm` (the `stat` fails). So a hit is
//! never an old head with a new body, nor served from a file that is gone. This module owns
//! the memory only; the store decides when to look here (`Shared::open`).

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use crate::http::serialize::response_head_bytes;
use crate::http::Response;

/// Bodies up to this many bytes are remembered with their head; larger entries are read
/// from their file on every hit (their cost is the body, not the head).
pub(super) const MAX_REMEMBERED_BODY: u64 = 64 * 1024;

/// Bytes of heads and bodies remembered at most, in all; beyond, some are forgotten.
pub(super) const MEMO_BUDGET: usize = 32 * 1024 * 1024;

/// What `stat` says about an entry file that any change to it alters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Identity {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Identity {
    pub(super) fn of(meta: &Metadata) -> Identity {
        Identity {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// One remembered entry: the file it was read from, its parsed head and its body.
#[derive(Debug)]
pub(super) struct Remembered {
    pub(super) identity: Identity,
    pub(super) response: Response,
    pub(super) body: Arc<[u8]>,
    /// Bytes this takes, for the budget: the head as written plus the body.
    weight: usize,
}

impl Remembered {
    pub(super) fn new(identity: Identity, response: Response, body: Arc<[u8]>) -> Remembered {
        let weight = response_head_bytes(&response).len() + body.len();
        Remembered {
            identity,
            response,
            body,
            weight,
        }
    }
}

/// The remembered entries by file name. Invariant: `bytes` is the sum of their weights, at
/// most `MEMO_BUDGET`.
#[derive(Debug, Default)]
pub(super) struct Memo {
    entries: HashMap<String, Arc<Remembered>>,
    bytes: usize,
}

impl Memo {
    /// What is remembered of the file `name`, unchecked (see `Identity`).
    pub(super) fn get(&self, name: &str) -> Option<Arc<Remembered>> {
        self.entries.get(name).cloned()
    }

    /// Remembers `entry` as the file `name`'s, forgetting others (any) while over budget.
    pub(super) fn put(&mut self, name: &str, entry: Remembered) {
        self.forget(name);
        if entry.weight > MEMO_BUDGET {
            return;
        }
        while self.bytes + entry.weight > MEMO_BUDGET {
            let Some(victim) = self.entries.keys().next().cloned() else {
                break;
            };
            self.forget(&victim);
        }
        self.bytes += entry.weight;
        self.entries.insert(name.to_string(), Arc::new(entry));
    }

    /// Forgets the file `name`.
    pub(super) fn forget(&mut self, name: &str) {
        if let Some(gone) = self.entries.remove(name) {
            self.bytes -= gone.weight;
        }
    }

    /// Forgets everything (the directory was flushed).
    pub(super) fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    fn remembered(dir: &TempDir, body: usize) -> Remembered {
        let path = dir.path.join("f");
        std::fs::write(&path, b"x").unwrap();
        let identity = Identity::of(&std::fs::metadata(&path).unwrap());
        Remembered::new(identity, Response::new(200), vec![7u8; body].into())
    }

    #[test]
    fn the_budget_holds_and_a_name_is_remembered_once() {
        let dir = TempDir::new("memo");
        let mut memo = Memo::default();
        let each = MEMO_BUDGET / 4;
        for name in ["a", "b", "c", "d", "e", "a"] {
            memo.put(name, remembered(&dir, each));
            assert!(memo.bytes <= MEMO_BUDGET);
        }
        assert!(memo.len() <= 3, "{}", memo.len());
        assert!(memo.get("a").is_some(), "the latest is kept");
        memo.forget("a");
        assert!(memo.get("a").is_none());
        memo.put("huge", remembered(&dir, MEMO_BUDGET + 1));
        assert!(memo.get("huge").is_none(), "larger than the whole budget");
    }

    #[test]
    fn identity_changes_with_a_rewrite_of_the_same_size_and_with_a_rename() {
        let dir = TempDir::new("identity");
        let path = dir.path.join("entry");
        std::fs::write(&path, b"HTTP/1.1 200 OK\r\n\r\none").unwrap();
        let first = Identity::of(&std::fs::metadata(&path).unwrap());
        assert_eq!(first, Identity::of(&std::fs::metadata(&path).unwrap()));
        std::fs::write(&path, b"HTTP/1.1 200 OK\r\n\r\ntwo").unwrap();
        let rewritten = Identity::of(&std::fs::metadata(&path).unwrap());
        assert_ne!(first, rewritten, "same size, same name: the ctime moved");
        let other = dir.path.join("other");
        std::fs::write(&other, b"HTTP/1.1 200 OK\r\n\r\ntwo").unwrap();
        std::fs::rename(&other, &path).unwrap();
        assert_ne!(rewritten, Identity::of(&std::fs::metadata(&path).unwrap()));
    }
}
