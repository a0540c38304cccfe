//! A log file on disk, as the proxy's log (`logging`) and its access log (`access_log`) keep
//! one: records of one line each, appended, that survive a full disk and log rotation.
//!
//! - **Whole records only.** A record goes out in one `write` call on a file opened in
//!   append mode. When the disk fills in the middle of it, the call writes part of the
//!   record; the file is then cut back to where the record began, so the next record can
//!   never be glued onto half of this one (a full log disk used to merge two records on one
//!   line). Should cutting back fail too, the next record starts with a newline, so the
//!   fragment at least stays on a line of its own.
//! - **Move-away rotation.** logrotate without `copytruncate` renames the file and expects
//!   the program to start a new one. At most once every [`REOPEN_CHECK_INTERVAL`], before a
//!   record is written, the path is compared with the open file (device and inode); when it
//!   names another file, or nothing, the file is reopened at the path (and created), so a
//!   moved-away log comes back at its path with the first record after the check.
//! - **Quiet failures.** A failing disk fails every record: only the first failure of a run
//!   and the first success after it are reported, as a [`Notice`] the caller logs where it
//!   sees fit.
//!
//! This module does not format records (see `logging` and `access_log`). It also says why a
//! file or directory cannot be created ([`create_dir_all`]), for the start-up errors of every
//! path the proxy creates, `cache_dir` included.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Longest time between two checks that the log's path still names the open file (move-away
/// rotation), while records are written.
pub const REOPEN_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// An append-only file of one-line records, shared by every thread that writes to it.
pub struct LogFile {
    path: PathBuf,
    state: Mutex<State>,
}

/// The open file and what the writes have seen. Behind the mutex, so one record is written
/// at a time: a record's cut-back cannot remove another's bytes.
struct State {
    file: File,
    /// Device and inode of `file`, to tell whether `path` still names it.
    id: (u64, u64),
    /// When `path` was last compared with `file`.
    checked: Instant,
    /// Writes are failing: a further failure is not reported.
    failing: bool,
    /// Reopening after a move failed: a further failure is not reported.
    reopen_failing: bool,
    /// Part of a record is still in the file: the next record starts with a newline.
    torn: bool,
}

/// Something about the file worth a log line: a failure, or a recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// `Error` for a write that failed, `Warn` for a reopen that failed, `Info` otherwise.
    pub level: log::Level,
    /// What happened, naming the file.
    pub text: String,
}

impl LogFile {
    /// Opens `path` for appending, creating it and any missing directory above it.
    ///
    /// # Errors
    /// What could not be created and why, e.g. `cannot create logs/x/a.log: a file is in
    /// the way: logs/x (Not a directory (os error 20))`.
    pub fn open(path: &Path) -> Result<LogFile, String> {
        let (file, id) = open_identified(path)?;
        Ok(LogFile {
            path: path.to_path_buf(),
            state: Mutex::new(State {
                file,
                id,
                checked: Instant::now(),
                failing: false,
                reopen_failing: false,
                torn: false,
            }),
        })
    }

    /// Appends `record` (one line, ending in `\n`) whole or not at all, reopening the file
    /// first when it was moved away. Returns what is worth reporting: the first failure of a
    /// run of failures, the first success after one, or a reopen.
    pub fn append(&self, record: &[u8]) -> Option<Notice> {
        self.append_at(record, Instant::now())
    }

    /// `append` with the time passed in.
    fn append_at(&self, record: &[u8], now: Instant) -> Option<Notice> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let reopened = if now.duration_since(state.checked) >= REOPEN_CHECK_INTERVAL {
            state.checked = now;
            self.reopen_if_moved(&mut state)
        } else {
            None
        };
        let State { file, torn, .. } = &mut *state;
        let written = append_record(file, record, torn);
        let notice = match (written, state.failing) {
            (Ok(()), true) => Some(Notice {
                level: log::Level::Info,
                text: format!("{}: writing again", self.path.display()),
            }),
            (Err(e), false) => Some(Notice {
                level: log::Level::Error,
                text: format!(
                    "cannot write {}: {e}; records are dropped until a write succeeds",
                    self.path.display()
                ),
            }),
            (Ok(()), false) | (Err(_), true) => None,
        };
        if let Some(Notice { level, .. }) = &notice {
            state.failing = *level == log::Level::Error;
        }
        notice.or(reopened)
    }

    /// Reopens the file when `path` no longer names the open one (it was renamed or
    /// removed). A failed reopen keeps the old file, and is reported once.
    fn reopen_if_moved(&self, state: &mut State) -> Option<Notice> {
        let at_path = fs::metadata(&self.path).map(|m| (m.dev(), m.ino()));
        if matches!(at_path, Ok(id) if id == state.id) {
            return None;
        }
        match open_identified(&self.path) {
            Ok((file, id)) => {
                *state = State {
                    file,
                    id,
                    checked: state.checked,
                    failing: state.failing,
                    reopen_failing: false,
                    torn: false,
                };
                Some(Notice {
                    level: log::Level::Info,
                    text: format!("{} was moved away: reopened it", self.path.display()),
                })
            }
            Err(why) if !state.reopen_failing => {
                state.reopen_failing = true;
                Some(Notice {
                    level: log::Level::Warn,
                    text: format!("{why}; still writing to the file that was moved away"),
                })
            }
            Err(_) => None,
        }
    }
}

/// What [`append_record`] needs of a file besides `Write`: its length, and cutting it back.
trait Truncate {
    /// The current length, in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Cuts the file back to `len` bytes.
    fn cut(&mut self, len: u64) -> io::Result<()>;
}

impl Truncate for File {
    fn len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn cut(&mut self, len: u64) -> io::Result<()> {
        self.set_len(len)
    }
}

/// Writes `record` with one `write` call, preceded by a newline when an earlier record was
/// `torn`. When only part of it is written, the file is cut back to its length before, so no
/// partial record stays; if that fails, `torn` is set.
fn append_record<F: Write + Truncate>(
    out: &mut F,
    record: &[u8],
    torn: &mut bool,
) -> io::Result<()> {
    let mended;
    let bytes = if *torn {
        mended = [b"\n", record].concat();
        &mended[..]
    } else {
        record
    };
    let written = loop {
        match out.write(bytes) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => break other?,
        }
    };
    *torn = false;
    if written == bytes.len() {
        return Ok(());
    }
    let short = format!("only {written} of {} bytes written", bytes.len());
    if written == 0 {
        return Err(io::Error::new(io::ErrorKind::WriteZero, short));
    }
    // Appended, so the partial record is the last `written` bytes of the file.
    match out
        .len()
        .and_then(|end| out.cut(end.saturating_sub(written as u64)))
    {
        Ok(()) => Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("{short}, the partial record removed"),
        )),
        Err(e) => {
            *torn = true;
            Err(io::Error::new(
                e.kind(),
                format!("{short}, and the partial record could not be removed: {e}"),
            ))
        }
    }
}

/// Opens `path` for appending, creating it, and its directories when they are missing: the
/// one way every log file of the project (the proxy's, the access log, the client's) is
/// opened.
///
/// # Errors
/// The OS's error, from creating a directory or opening the file.
pub fn open_append(path: &Path) -> io::Result<File> {
    let open = || OpenOptions::new().create(true).append(true).open(path);
    match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::create_dir_all(dir)?;
            }
            open()
        }
        other => other,
    }
}

/// [`open_append`], with the file's device and inode, and an error that names what is in
/// the way.
fn open_identified(path: &Path) -> Result<(File, (u64, u64)), String> {
    let file = open_append(path).map_err(|e| cannot_create(path, path.parent(), &e))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok((file, (meta.dev(), meta.ino())))
}

/// Creates `dir` and its missing parents.
///
/// # Errors
/// What could not be created and why, naming the file in the way when a regular file
/// stands where a directory must be (the OS only says `File exists` or `Not a directory`).
pub fn create_dir_all(dir: &Path) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| cannot_create(dir, Some(dir), &e))
}

/// `cannot create PATH: why`, where `why` names the first of `dir` and its parents that
/// exists but is not a directory, if there is one.
fn cannot_create(path: &Path, dir: Option<&Path>, e: &io::Error) -> String {
    let in_the_way = dir
        .into_iter()
        .flat_map(Path::ancestors)
        .find(|p| !p.as_os_str().is_empty() && fs::metadata(p).is_ok_and(|m| !m.is_dir()));
    match in_the_way {
        Some(file) if file == path => format!(
            "cannot create {}: a file of that name is in the way ({e})",
            path.display()
        ),
        Some(file) => format!(
            "cannot create {}: a file is in the way: {} ({e})",
            path.display(),
            file.display()
        ),
        None if fs::metadata(path).is_ok_and(|m| m.is_dir()) && dir != Some(path) => {
            format!("cannot create {}: it is a directory ({e})", path.display())
        }
        None => format!("cannot create {}: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    /// A file that holds at most `room` bytes, like a disk about to fill: a write takes what
    /// fits. `cut_fails` makes cutting back fail too.
    struct FillingDisk {
        data: Vec<u8>,
        room: usize,
        cut_fails: bool,
    }

    impl Write for FillingDisk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.room - self.data.len());
            if n == 0 && !buf.is_empty() {
                return Err(io::Error::other("no space left"));
            }
            self.data.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Truncate for FillingDisk {
        fn len(&self) -> io::Result<u64> {
            Ok(self.data.len() as u64)
        }

        fn cut(&mut self, len: u64) -> io::Result<()> {
            if self.cut_fails {
                return Err(io::Error::other("cannot truncate"));
            }
            self.data.truncate(len as usize);
            Ok(())
        }
    }

    #[test]
    fn a_record_that_fits_in_part_is_removed_whole() {
        let mut disk = FillingDisk {
            data: Vec::new(),
            room: 12,
            cut_fails: false,
        };
        let mut torn = false;
        append_record(&mut disk, b"first\n", &mut torn).unwrap();
        let e = append_record(&mut disk, b"second one\n", &mut torn).unwrap_err();
        assert_eq!(
            e.to_string(),
            "only 6 of 11 bytes written, the partial record removed"
        );
        assert_eq!(disk.data, b"first\n");
        assert!(!torn);
        // Once there is room again, the next record starts on a line of its own.
        disk.room = 100;
        append_record(&mut disk, b"third\n", &mut torn).unwrap();
        assert_eq!(disk.data, b"first\nthird\n");
    }

    #[test]
    fn a_partial_record_that_cannot_be_removed_ends_its_line() {
        let mut disk = FillingDisk {
            data: Vec::new(),
            room: 8,
            cut_fails: true,
        };
        let mut torn = false;
        append_record(&mut disk, b"first\n", &mut torn).unwrap();
        let e = append_record(&mut disk, b"second\n", &mut torn).unwrap_err();
        assert!(e.to_string().contains("could not be removed"), "{e}");
        assert!(torn);
        let full = append_record(&mut disk, b"third\n", &mut torn).unwrap_err();
        assert_eq!(full.to_string(), "no space left");
        assert!(
            torn,
            "nothing was written: the fragment still needs its newline"
        );
        disk.room = 100;
        append_record(&mut disk, b"fourth\n", &mut torn).unwrap();
        assert_eq!(disk.data, b"first\nse\nfourth\n");
        assert!(!torn);
    }

    #[test]
    fn a_moved_log_is_reopened_at_its_path() {
        let dir = TempDir::new("moved");
        let path = dir.join("access.log");
        let log = LogFile::open(&path).unwrap();
        let start = Instant::now();
        assert_eq!(log.append_at(b"one\n", start), None);
        let moved = dir.join("access.log.1");
        fs::rename(&path, &moved).unwrap();
        // Within the check interval, records still go to the open (moved) file.
        assert_eq!(log.append_at(b"two\n", start), None);
        assert!(!path.exists());
        let later = start + REOPEN_CHECK_INTERVAL;
        let notice = log.append_at(b"three\n", later).unwrap();
        assert_eq!(notice.level, log::Level::Info);
        assert!(notice.text.contains("moved away"), "{}", notice.text);
        assert_eq!(fs::read(&moved).unwrap(), b"one\ntwo\n");
        assert_eq!(fs::read(&path).unwrap(), b"three\n");
        // The new file is the open one now: no more reopening.
        assert_eq!(
            log.append_at(b"four\n", later + REOPEN_CHECK_INTERVAL),
            None
        );
        assert_eq!(fs::read(&path).unwrap(), b"three\nfour\n");
    }

    #[test]
    fn a_removed_log_is_recreated_with_its_directory() {
        let dir = TempDir::new("removed");
        let path = dir.join("logs/proxy.log");
        let log = LogFile::open(&path).unwrap();
        log.append(b"one\n");
        fs::remove_dir_all(dir.join("logs")).unwrap();
        let later = Instant::now() + REOPEN_CHECK_INTERVAL;
        assert!(log.append_at(b"two\n", later).is_some());
        assert_eq!(fs::read(&path).unwrap(), b"two\n");
    }

    #[test]
    fn a_full_device_is_reported_once() {
        let Ok(log) = LogFile::open(Path::new("/dev/full")) else {
            return; // not Linux: no /dev/full
        };
        let notice = log.append(b"one\n").unwrap();
        assert_eq!(notice.level, log::Level::Error);
        assert!(
            notice.text.starts_with("cannot write /dev/full: "),
            "{}",
            notice.text
        );
        assert_eq!(log.append(b"two\n"), None);
        assert_eq!(
            log.append_at(b"three\n", Instant::now() + REOPEN_CHECK_INTERVAL),
            None
        );
    }

    #[test]
    fn a_failing_file_reports_when_it_works_again() {
        let dir = TempDir::new("recovers");
        let path = dir.join("a.log");
        let log = LogFile::open(&path).unwrap();
        log.state.lock().unwrap().failing = true;
        let notice = log.append(b"one\n").unwrap();
        assert_eq!(notice.level, log::Level::Info);
        assert!(
            notice.text.ends_with("a.log: writing again"),
            "{}",
            notice.text
        );
        assert_eq!(log.append(b"two\n"), None);
    }

    #[test]
    fn a_file_in_the_way_is_named() {
        let dir = TempDir::new("in-the-way");
        fs::write(dir.join("logs"), b"not a directory").unwrap();
        let path = dir.join("logs/x/access.log");
        let why = LogFile::open(&path).err().unwrap();
        let logs = dir.join("logs");
        assert!(
            why.starts_with(&format!(
                "cannot create {}: a file is in the way: {} (",
                path.display(),
                logs.display()
            )),
            "{why}"
        );
        let why = create_dir_all(&logs).unwrap_err();
        assert!(
            why.starts_with(&format!(
                "cannot create {}: a file of that name is in the way (",
                logs.display()
            )),
            "{why}"
        );
        let why = LogFile::open(&dir.path).err().unwrap();
        assert!(why.contains("it is a directory"), "{why}");
    }
}
