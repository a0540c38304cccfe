//! Where a response body goes, and the progress meter shown while it arrives.
//!
//! Text (text/*, JSON, XML, JavaScript) goes to standard output as received; anything else
//! (images, audio, video, PDF, archives, octet-stream) is saved byte for byte to a file named
//! after the last segment of the URL's path, `index.html` for a directory, with a numeric
//! suffix (`dawn-1.png`) rather than overwriting a file that exists. `-o FILE`, `-o -` and
//! `-O` override the choice. A response without Content-Type is application/octet-stream
//! unless its first bytes look like text (RFC 9110 §8.3 allows either; we look).
//!
//! The choice is a pure function (`choose`); `open` opens the file it names; `pump` copies a
//! body to its destination and to the cache at once, telling read failures from write
//! failures; `Flushing` makes stdout show each piece as it arrives. Deciding what to deliver is `session`'s business.
//! The meter is drawn on stderr only when stderr is a terminal and the body is over
//! `PROGRESS_MIN_BYTES`; its line is `progress_line`, also pure.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::error::ClientError;
use super::url::Url;
use crate::cache::EntryWriter;
use crate::http::percent::percent_decode_lenient;

/// The file name used when the URL's path ends with `/`.
pub const INDEX_NAME: &str = "index.html";
/// Highest numeric suffix tried before giving up on finding a free file name.
pub const MAX_NAME_SUFFIX: u32 = 999;
/// Longest file name written, in bytes (most file systems allow 255).
pub const MAX_NAME_BYTES: usize = 200;
/// Bodies over this many bytes get a progress meter (when stderr is a terminal).
pub const PROGRESS_MIN_BYTES: u64 = 1024 * 1024;
/// Shortest time between two redraws of the meter.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);
/// Bytes looked at to guess whether a body without Content-Type is text.
pub const SNIFF_BYTES: usize = 1024;

/// What the user asked for on the command line about the body's destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// `-o -`: standard output, whatever the type.
    Stdout,
    /// `-o FILE`: this file, created or truncated.
    File(PathBuf),
    /// `-O`: a new file named after the URL, whatever the type.
    RemoteName,
}

/// Where one body goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// Standard output.
    Stdout,
    /// This file, created or truncated.
    File(PathBuf),
    /// A new file in the current directory named like this (a suffix is added if taken).
    NewFile(String),
}

/// Chooses where a body goes: the user's `output` if any, else stdout for text and a new
/// file named after `url` for anything else. `sample` is the start of the body, looked at
/// only when there is no Content-Type.
pub fn choose(
    output: Option<&Output>,
    content_type: Option<&str>,
    sample: &[u8],
    url: &Url,
) -> Target {
    let text = match content_type {
        Some(media_type) => is_text(media_type),
        None => looks_like_text(sample),
    };
    match output {
        Some(Output::Stdout) => Target::Stdout,
        Some(Output::File(path)) => Target::File(path.clone()),
        Some(Output::RemoteName) => Target::NewFile(file_name(url)),
        None if text => Target::Stdout,
        None => Target::NewFile(file_name(url)),
    }
}

/// Whether a Content-Type names a text type: `text/*`, JSON, XML (and `+json` / `+xml`
/// suffixes, RFC 6839) or JavaScript. Parameters are ignored.
pub fn is_text(content_type: &str) -> bool {
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let Some((kind, subtype)) = media_type.split_once('/') else {
        return false;
    };
    kind == "text"
        || subtype.ends_with("+json")
        || subtype.ends_with("+xml")
        || matches!(
            subtype,
            "json" | "xml" | "javascript" | "x-javascript" | "ecmascript"
        )
}

/// Whether the start of a body looks like text: no NUL byte and valid UTF-8, allowing a
/// character cut at the end of the sample. An empty sample counts as text.
pub fn looks_like_text(sample: &[u8]) -> bool {
    let sample = &sample[..sample.len().min(SNIFF_BYTES)];
    if sample.contains(&0) {
        return false;
    }
    match std::str::from_utf8(sample) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && sample.len() - e.valid_up_to() < 4,
    }
}

/// The file name for a body fetched from `url`: its last path segment, percent-decoded,
/// with every character that could leave the current directory or confuse a shell replaced
/// by `_`; `index.html` when the segment is empty.
pub fn file_name(url: &Url) -> String {
    let decoded = percent_decode_lenient(url.last_segment().as_bytes());
    let mut name: String = String::from_utf8_lossy(&decoded)
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '/' | '\\' | ':' | '\u{fffd}') {
                '_'
            } else {
                c
            }
        })
        .collect();
    // No hidden files, no "." or "..".
    if name.starts_with('.') {
        name.replace_range(..1, "_");
    }
    while name.len() > MAX_NAME_BYTES {
        name.pop();
    }
    if name.trim().is_empty() {
        INDEX_NAME.to_string()
    } else {
        name
    }
}

/// Opens the file a body goes to: `None` for stdout; `-o FILE` created or truncated; a new
/// file in the current directory for `NewFile` (`create_new`). Returns the path to report
/// (`saved N bytes to PATH`) with a buffered writer.
///
/// # Errors
/// `ClientError::File` naming the file that could not be created.
pub fn open(target: &Target) -> Result<Option<(PathBuf, BufWriter<File>)>, ClientError> {
    match target {
        Target::Stdout => Ok(None),
        Target::File(path) => {
            let file =
                File::create(path).map_err(|e| ClientError::file("cannot create", path, e))?;
            Ok(Some((path.clone(), BufWriter::new(file))))
        }
        Target::NewFile(name) => {
            let (path, file) = create_new(Path::new("."), name)
                .map_err(|e| ClientError::file("cannot create", Path::new(name), e))?;
            let path = path
                .strip_prefix(".")
                .map(Path::to_path_buf)
                .unwrap_or(path);
            Ok(Some((path, BufWriter::new(file))))
        }
    }
}

/// `name`, then `stem-1.ext`, `stem-2.ext`, ...: the candidates for a new file.
pub fn candidate(name: &str, n: u32) -> String {
    if n == 0 {
        return name.to_string();
    }
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!("{stem}-{n}.{ext}"),
        _ => format!("{name}-{n}"),
    }
}

/// Creates a new file in `dir` named `name`, or the first free `candidate` of it; never
/// overwrites (`create_new` makes the check and the creation one step).
///
/// # Errors
/// Any error but "already exists", or no free name up to `MAX_NAME_SUFFIX`.
pub fn create_new(dir: &Path, name: &str) -> io::Result<(PathBuf, File)> {
    for n in 0..=MAX_NAME_SUFFIX {
        let path = dir.join(candidate(name, n));
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{name} and its numbered variants up to -{MAX_NAME_SUFFIX} all exist"),
    ))
}

/// The one-line meter: `  3.2 MiB of 10.0 MiB  32%  1.1 MiB/s`, or without the total
/// and percentage when the length is unknown.
pub fn progress_line(done: u64, total: Option<u64>, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    match total {
        Some(total) if total > 0 => format!(
            "{} of {}  {:>3}%  {}/s",
            human(done as f64),
            human(total as f64),
            done.saturating_mul(100) / total,
            human(rate)
        ),
        _ => format!("{}  {}/s", human(done as f64), human(rate)),
    }
}

/// Bytes in binary units with one decimal: `512 B`, `1.5 KiB`, `3.0 MiB`.
fn human(bytes: f64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024.0 {
        return format!("{bytes:.0} B");
    }
    let mut value = bytes / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The meter's state for one body. Drawing is skipped entirely when `enabled` is false.
pub struct Progress {
    enabled: bool,
    total: Option<u64>,
    started: Instant,
    last_drawn: Option<Instant>,
    width: usize,
}

impl Progress {
    /// A meter for a body of `total` bytes (when known); `enabled` when stderr is a terminal
    /// that the body itself is not being printed on.
    pub fn new(enabled: bool, total: Option<u64>) -> Progress {
        Progress {
            enabled,
            total,
            started: Instant::now(),
            last_drawn: None,
            width: 0,
        }
    }

    /// Redraws the line in place if the body is big enough and the last draw is old enough.
    pub fn update(&mut self, done: u64, err: &mut dyn Write) {
        let big = done > PROGRESS_MIN_BYTES || self.total.is_some_and(|t| t > PROGRESS_MIN_BYTES);
        let due = match self.last_drawn {
            Some(at) => at.elapsed() >= PROGRESS_INTERVAL,
            None => true,
        };
        if self.enabled && big && due {
            self.draw(done, err);
        }
    }

    /// Draws the final state and ends the line, if the meter was ever shown.
    pub fn finish(&mut self, done: u64, err: &mut dyn Write) {
        if self.enabled && self.last_drawn.is_some() {
            self.draw(done, err);
            let _ = writeln!(err);
        }
    }

    fn draw(&mut self, done: u64, err: &mut dyn Write) {
        let line = progress_line(done, self.total, self.started.elapsed());
        // Pad over what a longer previous line left on screen.
        let pad = self.width.saturating_sub(line.len());
        let _ = write!(err, "\r{line}{:pad$}", "");
        let _ = err.flush();
        self.width = line.len();
        self.last_drawn = Some(Instant::now());
    }
}

/// A writer that flushes after every write: a body on a terminal or a pipe is seen as it
/// arrives, not when a buffer fills (lines sent 0.2 s apart appear 0.2 s apart).
pub struct Flushing<'a>(pub &'a mut dyn Write);

impl Write for Flushing<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.0.write(buf)?;
        self.0.flush()?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Which side of a copy failed.
pub enum Failure {
    /// Reading the body failed.
    Read(io::Error),
    /// Writing it out failed.
    Write(io::Error),
}

impl Failure {
    /// The error for whichever side failed.
    pub fn into_error(
        self,
        read: impl FnOnce(io::Error) -> ClientError,
        write: impl FnOnce(io::Error) -> ClientError,
    ) -> ClientError {
        match self {
            Failure::Read(e) => read(e),
            Failure::Write(e) => write(e),
        }
    }
}

/// Copies a body to `dest` through `buf`, whose first `first` bytes are already read, and
/// to the cache writer while it keeps working (a cache that fails is dropped, never the
/// download). `delivered` counts the bytes as they go; `tick` is told the count after each
/// write (the meter).
///
/// # Errors
/// Which side failed, so the caller can blame the server or the local file.
pub fn pump(
    body: &mut dyn Read,
    buf: &mut [u8],
    first: usize,
    dest: &mut dyn Write,
    cache: &mut Option<EntryWriter>,
    delivered: &mut u64,
    mut tick: impl FnMut(u64),
) -> std::result::Result<(), Failure> {
    let mut n = first;
    while n > 0 {
        let chunk = &buf[..n];
        if let Some(writer) = cache.as_mut() {
            if writer.write_all(chunk).is_err() {
                *cache = None;
            }
        }
        dest.write_all(chunk).map_err(Failure::Write)?;
        *delivered += n as u64;
        tick(*delivered);
        n = read_some(body, buf).map_err(Failure::Read)?;
    }
    dest.flush().map_err(Failure::Write)
}

/// One `read`, retried when interrupted.
pub fn read_some(body: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match body.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn text_types() {
        for t in [
            "text/html; charset=utf-8",
            "TEXT/plain",
            "application/json",
            "application/problem+json",
            "application/xml",
            "image/svg+xml",
            "application/javascript",
        ] {
            assert!(is_text(t), "{t}");
        }
        for t in [
            "image/png",
            "application/octet-stream",
            "application/pdf",
            "video/mp4",
            "application/zip",
            "garbage",
        ] {
            assert!(!is_text(t), "{t}");
        }
    }

    #[test]
    fn sniffing_without_a_content_type() {
        assert!(looks_like_text(b"hello\n"));
        assert!(looks_like_text(b""));
        assert!(looks_like_text("caf\u{e9}".as_bytes()));
        assert!(looks_like_text(&"\u{e9}".as_bytes()[..1]));
        assert!(!looks_like_text(b"\x89PNG\r\n\x1a\n\0\0"));
        assert!(!looks_like_text(b"\xff\xfe\xfd abc"));
    }

    #[test]
    fn destinations() {
        let u = url("h/img/dawn.png");
        assert_eq!(
            choose(None, Some("image/png"), b"", &u),
            Target::NewFile("dawn.png".into())
        );
        assert_eq!(choose(None, Some("text/plain"), b"", &u), Target::Stdout);
        assert_eq!(
            choose(Some(&Output::Stdout), Some("image/png"), b"", &u),
            Target::Stdout
        );
        assert_eq!(
            choose(Some(&Output::RemoteName), Some("text/plain"), b"", &u),
            Target::NewFile("dawn.png".into())
        );
        assert_eq!(
            choose(Some(&Output::File("x".into())), None, b"", &u),
            Target::File("x".into())
        );
        assert_eq!(choose(None, None, b"plain", &u), Target::Stdout);
        assert_eq!(
            choose(None, None, b"\0\x01", &url("h/")),
            Target::NewFile("index.html".into())
        );
    }

    #[test]
    fn file_names_stay_in_the_current_directory() {
        assert_eq!(file_name(&url("h/")), "index.html");
        assert_eq!(file_name(&url("h/a/b.tar.gz?x=1")), "b.tar.gz");
        assert_eq!(file_name(&url("h/my%20photo.jpg")), "my photo.jpg");
        assert_eq!(
            file_name(&url("h/a%2F..%2Fetc%2Fpasswd")),
            "a_.._etc_passwd"
        );
        assert_eq!(file_name(&url("h/%2E%2E")), "_.");
        assert_eq!(file_name(&url("h/.bashrc")), "_bashrc");
        assert_eq!(file_name(&url("h/x%0Ay")), "x_y");
        assert_eq!(file_name(&url("h/%FF")), "_");
        assert!(file_name(&url(&format!("h/{}", "n".repeat(300)))).len() <= MAX_NAME_BYTES);
    }

    #[test]
    fn numbered_candidates_keep_the_extension() {
        assert_eq!(candidate("dawn.png", 0), "dawn.png");
        assert_eq!(candidate("dawn.png", 2), "dawn-2.png");
        assert_eq!(candidate("archive.tar.gz", 1), "archive.tar-1.gz");
        assert_eq!(candidate("README", 1), "README-1");
        assert_eq!(candidate("_bashrc", 1), "_bashrc-1");
    }

    #[test]
    fn progress_lines() {
        let mib = 1024 * 1024;
        assert_eq!(
            progress_line(mib, Some(4 * mib), Duration::from_secs(2)),
            "1.0 MiB of 4.0 MiB   25%  512.0 KiB/s"
        );
        assert_eq!(
            progress_line(3 * mib / 2, None, Duration::ZERO),
            "1.5 MiB  0 B/s"
        );
        assert_eq!(human(100.0), "100 B");
    }

    #[test]
    fn the_meter_draws_only_when_enabled_and_big() {
        let mut out = Vec::new();
        let mut off = Progress::new(false, Some(10 * PROGRESS_MIN_BYTES));
        off.update(5 * PROGRESS_MIN_BYTES, &mut out);
        off.finish(5 * PROGRESS_MIN_BYTES, &mut out);
        let mut small = Progress::new(true, Some(10));
        small.update(10, &mut out);
        small.finish(10, &mut out);
        assert!(out.is_empty());
        let mut on = Progress::new(true, None);
        on.update(2 * PROGRESS_MIN_BYTES, &mut out);
        on.finish(3 * PROGRESS_MIN_BYTES, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("\r2.0 MiB"), "{text:?}");
        assert!(text.ends_with('\n'));
    }
    #[test]
    fn flushing_passes_each_write_through_at_once() {
        let mut out = io::BufWriter::new(Vec::new());
        let mut flushing = Flushing(&mut out);
        flushing.write_all(b"line 1\n").unwrap();
        assert_eq!(out.get_ref().as_slice(), b"line 1\n");
    }

    #[test]
    fn pump_copies_and_says_which_side_failed() {
        let mut buf = vec![0u8; 4];
        buf[..2].copy_from_slice(b"he");
        let (mut out, mut delivered, mut ticks) = (Vec::new(), 0, Vec::new());
        let mut body: &[u8] = b"llo, world";
        pump(
            &mut body,
            &mut buf,
            2,
            &mut out,
            &mut None,
            &mut delivered,
            |n| ticks.push(n),
        )
        .ok()
        .unwrap();
        assert_eq!((out.as_slice(), delivered), (&b"hello, world"[..], 12));
        assert_eq!(ticks, [2, 6, 10, 12]);

        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset"))
            }
        }
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::BrokenPipe, "closed"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut delivered = 0;
        let read = pump(
            &mut Broken,
            &mut buf,
            1,
            &mut Vec::new(),
            &mut None,
            &mut delivered,
            |_| {},
        );
        assert!(matches!(read, Err(Failure::Read(_))));
        let write = pump(
            &mut &b"x"[..],
            &mut buf,
            1,
            &mut Broken,
            &mut None,
            &mut delivered,
            |_| {},
        );
        assert!(matches!(write, Err(Failure::Write(_))));
    }
}
