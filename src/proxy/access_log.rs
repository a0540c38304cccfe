//! The access log: one line per request in the Combined Log Format that Apache and nginx
//! write, so standard tools (awk, goaccess) read it, followed by three fields of our own:
//!
//! ```text
//! 127.0.0.1 - - [25/Nov/2026:10:41:07 +0000] "GET / HTTP/1.1" 200 1633 "-" "curl/8.0" 127.0.0.1:8081 MISS 2
//! host     ident authuser [date]            "request"      status bytes "referer" "user-agent" upstream cache ms
//! ```
//!
//! Absent values are `-`. Text from the client is escaped as nginx does (`"` and `\` and
//! bytes outside printable ASCII as `\xHH`), so one request can never forge a second line.
//! The detailed log (heads at `log_level = debug`) stays in `log_file`; see `logging`. The
//! file itself (whole lines only, reopened after move-away rotation) is a `LogFile`.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Local};

use crate::cache::CacheStatus;
use crate::logging::file::{LogFile, Notice};

/// One request, as the access log records it.
#[derive(Clone, Debug)]
pub struct AccessEntry<'a> {
    /// When the request finished.
    pub time: SystemTime,
    /// The client's address.
    pub client: IpAddr,
    /// The request line, or None when it could not be read.
    pub request_line: Option<&'a str>,
    /// Status sent, if any.
    pub status: Option<u16>,
    /// Body bytes sent.
    pub bytes: u64,
    /// The Referer field.
    pub referer: Option<&'a str>,
    /// The User-Agent field.
    pub user_agent: Option<&'a str>,
    /// The backend that answered.
    pub upstream: Option<&'a str>,
    /// The cache result.
    pub cache: Option<CacheStatus>,
    /// Time taken.
    pub elapsed: Duration,
}

/// Formats one line (without the newline).
pub fn combined_line(e: &AccessEntry) -> String {
    let date = DateTime::<Local>::from(e.time).format("%d/%b/%Y:%H:%M:%S %z");
    format!(
        "{} - - [{date}] \"{}\" {} {} \"{}\" \"{}\" {} {} {}",
        e.client,
        escape(e.request_line.unwrap_or("-")),
        e.status.map_or_else(|| "-".to_string(), |s| s.to_string()),
        e.bytes,
        escape(e.referer.unwrap_or("-")),
        escape(e.user_agent.unwrap_or("-")),
        e.upstream.unwrap_or("-"),
        e.cache.map_or("-", CacheStatus::as_str),
        e.elapsed.as_millis()
    )
}

/// nginx's escaping for log fields: `"`, `\` and anything outside printable ASCII as `\xHH`
/// (field values hold one char per byte, so every char here is below U+0100).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' | '\\' => out.push_str(&format!("\\x{:02X}", u32::from(c))),
            ' '..='~' => out.push(c),
            c => out.push_str(&format!("\\x{:02X}", u32::from(c) & 0xff)),
        }
    }
    out
}

/// An open access log file, shared by all connection threads.
pub struct AccessLog {
    file: LogFile,
}

impl AccessLog {
    /// Opens `path` for appending, creating it and its directories.
    ///
    /// # Errors
    /// What could not be created and why (see `LogFile::open`).
    pub fn open(path: &Path) -> Result<Self, String> {
        Ok(AccessLog {
            file: LogFile::open(path)?,
        })
    }

    /// Appends one line, whole or not at all. A failure is reported in the main log (the
    /// first of a run only), never to the client.
    pub fn write(&self, entry: &AccessEntry) {
        let mut line = combined_line(entry);
        line.push('\n');
        if let Some(Notice { level, text }) = self.file.append(line.as_bytes()) {
            log::log!(level, "access log: {text}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(request_line: Option<&'a str>, user_agent: Option<&'a str>) -> AccessEntry<'a> {
        AccessEntry {
            time: SystemTime::now(),
            client: "192.0.2.7".parse().unwrap(),
            request_line,
            status: Some(200),
            bytes: 1633,
            referer: None,
            user_agent,
            upstream: Some("127.0.0.1:8081"),
            cache: Some(CacheStatus::Miss),
            elapsed: Duration::from_millis(2),
        }
    }

    #[test]
    fn combined_log_format_with_our_three_fields() {
        let line = combined_line(&entry(Some("GET / HTTP/1.1"), Some("curl/8.0")));
        let (host, rest) = line.split_once(" - - [").unwrap();
        assert_eq!(host, "192.0.2.7");
        let (date, rest) = rest.split_once("] ").unwrap();
        assert!(
            DateTime::parse_from_str(date, "%d/%b/%Y:%H:%M:%S %z").is_ok(),
            "{date}"
        );
        assert_eq!(
            rest,
            "\"GET / HTTP/1.1\" 200 1633 \"-\" \"curl/8.0\" 127.0.0.1:8081 MISS 2"
        );
    }

    #[test]
    fn client_text_cannot_break_the_line_or_its_quotes() {
        let line = combined_line(&entry(Some("GET /\"a\\ HTTP/1.1"), Some("evil\"\n\u{ff}")));
        assert!(line.contains("\"GET /\\x22a\\x5C HTTP/1.1\""), "{line}");
        assert!(line.contains("\"evil\\x22\\x0A\\xFF\""), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn absent_values_are_dashes() {
        let mut e = entry(None, None);
        e.status = None;
        e.upstream = None;
        e.cache = None;
        let line = combined_line(&e);
        assert!(line.ends_with("\"-\" - 1633 \"-\" \"-\" - - 2"), "{line}");
    }
}
