//! Writing one entry: its head at once, its body as it arrives, in a temporary file that
//! `commit` renames over the entry once the body is whole (see the store's docs on
//! atomicity); a writer dropped or abandoned before leaves no entry.

use std::fs::{self, File, FileTimes};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use super::{allocated, Shared};

/// Writes one entry's body to its temporary file (see [`Store::begin`]); `commit` puts it in
/// place.
pub struct EntryWriter {
    pub(super) shared: Arc<Shared>,
    /// The entry's final file name.
    pub(super) name: String,
    pub(super) temp: PathBuf,
    /// Invariant: `None` once the writer has given up (or committed); the temporary file
    /// exists exactly while this is `Some`.
    pub(super) file: Option<BufWriter<File>>,
    /// Body bytes written so far.
    pub(super) body_len: u64,
    /// Where the body starts in the file: the length of the head written first.
    pub(super) body_start: u64,
    /// The body length the head promises (Content-Length, or 0 for a 204), checked at commit.
    pub(super) declared: Option<u64>,
    /// Where the Content-Length digits go, when the head did not have one.
    pub(super) patch_at: Option<u64>,
    /// When the response was received: the entry's mtime.
    pub(super) received: SystemTime,
    /// Whether a write of this entry already found the disk full and made room: the next
    /// such failure drops the entry.
    pub(super) retried: bool,
}

impl EntryWriter {
    /// Whether the writer has given up (body over max_object, or a write failed): commit
    /// will store nothing.
    pub fn is_abandoned(&self) -> bool {
        self.file.is_none()
    }

    /// The temporary file being written, for readers that follow it as it grows (after
    /// `flush`, everything written is in it). Renamed into place at commit, removed if the
    /// writer gives up; a reader that opened it goes on reading the same bytes either way.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Where the body starts in the file.
    pub fn body_start(&self) -> u64 {
        self.body_start
    }

    /// Body bytes written so far.
    pub fn body_len(&self) -> u64 {
        self.body_len
    }

    fn abandon(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.temp);
        }
    }

    /// Puts the entry in place: checks the body length against the head, writes the
    /// Content-Length if it was not known, sets mtime to when the response was received and
    /// renames the file over any previous entry. Does nothing if the writer has given up (or
    /// if the entry's name is being evicted at that very moment).
    ///
    /// # Errors
    /// The body is shorter or longer than the head says (`InvalidData`), or an I/O error; the
    /// temporary file is removed either way.
    pub fn commit(mut self) -> io::Result<()> {
        let Some(buffered) = self.file.take() else {
            return Ok(());
        };
        let result = self.finish(buffered);
        if result.is_err() {
            let _ = fs::remove_file(&self.temp);
        }
        result
    }

    fn finish(&mut self, mut buffered: BufWriter<File>) -> io::Result<()> {
        if self.declared.is_some_and(|n| n != self.body_len) {
            let why = "the body length does not match the stored Content-Length";
            return Err(io::Error::new(io::ErrorKind::InvalidData, why));
        }
        let shared = &self.shared;
        shared.with_room(&mut self.retried, || buffered.flush())?;
        let mut file = buffered.into_inner().map_err(|e| e.into_error())?;
        if let Some(at) = self.patch_at {
            file.seek(SeekFrom::Start(at))?;
            file.write_all(self.body_len.to_string().as_bytes())?;
        }
        let times = FileTimes::new()
            .set_modified(self.received)
            .set_accessed(SystemTime::now());
        file.set_times(times)?;
        let size = allocated(&file.metadata()?);
        drop(file);
        let (temp, name) = (&self.temp, &self.name);
        shared.with_room(&mut self.retried, || shared.install(temp, name, size))
    }

    /// Writes `rest` to the temporary file, advancing it past what was written. When the
    /// disk is full, room is made once and the write goes on from where it stopped.
    pub(super) fn write_on(&mut self, rest: &mut &[u8]) -> io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        self.shared
            .with_room(&mut self.retried, || write_all_from(file, rest))
    }
}

/// `write_all` that leaves in `rest` what is not written yet when it fails, so that calling
/// it again goes on from there. Through a `BufWriter`, each `write` takes some bytes or
/// none, so nothing is written twice or skipped.
pub(super) fn write_all_from(out: &mut impl Write, rest: &mut &[u8]) -> io::Result<()> {
    while !rest.is_empty() {
        match out.write(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => *rest = &rest[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Write for EntryWriter {
    /// Appends body bytes; past max_object the writer gives up quietly and keeps accepting
    /// (and dropping) bytes, so the response it copies keeps flowing to the client.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.file.is_none() {
            return Ok(buf.len());
        }
        self.body_len += buf.len() as u64;
        if self.body_len > self.shared.max_object {
            self.abandon();
            return Ok(buf.len());
        }
        if let Err(e) = self.write_on(&mut &buf[..]) {
            self.abandon();
            return Err(e);
        }
        Ok(buf.len())
    }

    /// Puts what was written in the file, for readers following it; when the disk is full,
    /// room is made once, as for `write`. A failure gives the entry up.
    fn flush(&mut self) -> io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let flushed = self.shared.with_room(&mut self.retried, || file.flush());
        if flushed.is_err() {
            self.abandon();
        }
        flushed
    }
}

impl Drop for EntryWriter {
    fn drop(&mut self) {
        self.abandon();
    }
}
