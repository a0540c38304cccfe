//! The client's log: one line per request (redirect hops included) appended to `LOG_FILE`,
//! in the client's own format, documented in `--help`:
//!
//! ```text
//! YYYY-MM-DD HH:MM:SS <request line> <status line | error: message> <N> B <M> ms <source>
//! 2026-11-25 10:41:07 GET http://127.0.0.1:8080/ HTTP/1.1 HTTP/1.1 200 OK 1432 B 12 ms network
//! ```
//!
//! The request line carries the absolute URL, so the host is on record. Control characters
//! (from a hostile URL, reason phrase or server) are written as `\xNN`, so a line stays one
//! line. This module formats lines and opens the file; when a line is written is the
//! redirect loop's business (`client`), which writes exactly one per request.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Local};

use super::error::{ClientError, Result};

/// Where an answer came from, as written at the end of its log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// From the server.
    Network,
    /// From a fresh cache entry, without contacting the server.
    Cache,
    /// From a stale cache entry the server confirmed with a 304.
    Revalidated,
}

impl Source {
    /// The word in the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Network => "network",
            Source::Cache => "cache",
            Source::Revalidated => "revalidated",
        }
    }
}

/// The source written for a request that failed.
pub const NO_SOURCE: &str = "none";

/// Opens the log for appending, creating it and its directories.
///
/// # Errors
/// `ClientError::File` naming the log file.
pub fn open(path: &Path) -> Result<File> {
    let fail = |e| ClientError::File(format!("cannot open log file {}", path.display()), e);
    crate::logging::file::open_append(path).map_err(fail)
}

/// One log line, ending in `\n`: when the request started, its request line, what it
/// turned into (a status line, or `error: ...`), the body bytes delivered, how long it took
/// and where the answer came from.
pub fn line(
    when: DateTime<Local>,
    request_line: &str,
    outcome: &str,
    bytes: u64,
    elapsed: Duration,
    source: &str,
) -> String {
    format!(
        "{} {} {} {bytes} B {} ms {source}\n",
        when.format("%Y-%m-%d %H:%M:%S"),
        escape_controls(request_line),
        escape_controls(outcome),
        elapsed.as_millis()
    )
}

/// `METHOD URL HTTP/1.1`, the request line as logged (absolute-form, RFC 9112 §3.2.2).
/// A URL that could not be parsed is logged as typed, its spaces encoded so that the
/// line keeps its shape.
pub fn request_line(method: &str, url: &str) -> String {
    format!("{method} {} HTTP/1.1", url.trim().replace(' ', "%20"))
}

/// `s` with every control character written as `\xNN` (also for `-v`'s heads on stderr).
pub fn escape_controls(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                format!("\\x{:02X}", u32::from(c))
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn log_lines_have_the_documented_shape() {
        let when = Local.with_ymd_and_hms(2026, 11, 25, 10, 41, 7).unwrap();
        let text = line(
            when,
            "GET http://h/ HTTP/1.1",
            "HTTP/1.1 200 OK",
            1432,
            Duration::from_millis(12),
            Source::Network.as_str(),
        );
        assert_eq!(
            text,
            "2026-11-25 10:41:07 GET http://h/ HTTP/1.1 HTTP/1.1 200 OK 1432 B 12 ms network\n"
        );
        let hostile = line(
            when,
            "GET /\r\nfake HTTP/1.1",
            "x\ny",
            0,
            Duration::ZERO,
            NO_SOURCE,
        );
        assert_eq!(hostile.matches('\n').count(), 1);
        assert!(hostile.contains("/\\x0D\\x0Afake"));
    }

    #[test]
    fn request_lines_keep_their_shape() {
        assert_eq!(
            request_line("GET", " http://h/a b "),
            "GET http://h/a%20b HTTP/1.1"
        );
    }
}
