//! The access log: one line per request, in one of two formats (`access_log_format`).
//!
//! `combined` (the default) is the Combined Log Format that Apache and nginx write, so
//! standard tools (awk, goaccess) read it, followed by four fields of our own:
//!
//! ```text
//! 127.0.0.1 - - [25/Nov/2026:10:41:07 +0000] "GET / HTTP/1.1" 200 1633 "-" "curl/8.0" 127.0.0.1:8081 MISS 2 5f0c2a9e3b7d4418
//! host     ident authuser [date]            "request"      status bytes "referer" "user-agent" upstream cache ms request-id
//! ```
//!
//! Absent values are `-`. Text from the client is escaped as nginx does (`"` and `\` and
//! bytes outside printable ASCII as `\xHH`), so one request can never forge a second line.
//!
//! `json` writes one JSON object per line (RFC 8259), every key always present, `null` for
//! what is absent:
//!
//! ```text
//! {"time":"2026-11-25T10:41:07.123+00:00","client":"127.0.0.1","method":"GET","target":"/",
//!  "protocol":"HTTP/1.1","status":200,"bytes":1633,"referer":null,"user_agent":"curl/8.0",
//!  "upstream":"127.0.0.1:8081","pool":"default","cache":"MISS","ms":2,
//!  "request_id":"5f0c2a9e3b7d4418"}
//! ```
//!
//! (shown folded; each object is on one line). Text from the client is read as the UTF-8
//! it should be, with every byte that is not valid UTF-8 written as `\ufffd`, and escaped
//! as JSON requires, control characters included (see `json`): a line is always one valid
//! object, whatever the request held.
//!
//! The detailed log (heads at `log_level = debug`) stays in `log_file`; see `logging`. The
//! file itself (whole lines only, reopened after move-away rotation) is a `LogFile`.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Local};

use super::config::AccessLogFormat;
use super::json;
use crate::cache::CacheStatus;
use crate::http::request_id::RequestId;
use crate::http::Request;
use crate::logging::file::{LogFile, Notice};

/// One request, as the access log records it.
#[derive(Clone, Debug)]
pub struct AccessEntry<'a> {
    /// When the request finished.
    pub time: SystemTime,
    /// The client's address.
    pub client: IpAddr,
    /// The request, or None when its head could not be read.
    pub request: Option<&'a Request>,
    /// Status sent, if any.
    pub status: Option<u16>,
    /// Body bytes sent.
    pub bytes: u64,
    /// The backend that answered.
    pub upstream: Option<&'a str>,
    /// The pool of backends the request went to (JSON only).
    pub pool: Option<&'a str>,
    /// The cache result.
    pub cache: Option<CacheStatus>,
    /// Time taken.
    pub elapsed: Duration,
    /// The request's id.
    pub request_id: RequestId,
}

impl<'a> AccessEntry<'a> {
    /// A field of the request, if there was one and it has the field.
    fn field(&self, name: &'static str) -> Option<&'a str> {
        self.request.and_then(|r| r.headers.get(name))
    }
}

/// Formats one line in the Combined Log Format and our fields (without the newline).
pub fn combined_line(e: &AccessEntry) -> String {
    let date = DateTime::<Local>::from(e.time).format("%d/%b/%Y:%H:%M:%S %z");
    let request_line = e.request.map(Request::request_line);
    format!(
        "{} - - [{date}] \"{}\" {} {} \"{}\" \"{}\" {} {} {} {}",
        e.client,
        escape(request_line.as_deref().unwrap_or("-")),
        e.status.map_or_else(|| "-".to_string(), |s| s.to_string()),
        e.bytes,
        escape(e.field("referer").unwrap_or("-")),
        escape(e.field("user-agent").unwrap_or("-")),
        e.upstream.unwrap_or("-"),
        e.cache.map_or("-", CacheStatus::as_str),
        e.elapsed.as_millis(),
        e.request_id,
    )
}

/// Formats one line as a JSON object (without the newline).
pub fn json_line(e: &AccessEntry) -> String {
    let wire = |text: Option<&str>| text.map_or_else(|| "null".to_string(), json::wire_string);
    let ours = |text: Option<&str>| text.map_or_else(|| "null".to_string(), json::string);
    let number = |n: Option<u16>| n.map_or_else(|| "null".to_string(), |n| n.to_string());
    format!(
        "{{\"time\":{},\"client\":{},\"method\":{},\"target\":{},\"protocol\":{},\
         \"status\":{},\"bytes\":{},\"referer\":{},\"user_agent\":{},\"upstream\":{},\
         \"pool\":{},\"cache\":{},\"ms\":{},\"request_id\":{}}}",
        json::time_string(e.time),
        json::string(&e.client.to_string()),
        wire(e.request.map(|r| r.method.as_str())),
        wire(e.request.map(|r| r.target.as_str())),
        ours(e.request.map(|r| r.version.as_str())),
        number(e.status),
        e.bytes,
        wire(e.field("referer")),
        wire(e.field("user-agent")),
        ours(e.upstream),
        ours(e.pool),
        ours(e.cache.map(CacheStatus::as_str)),
        e.elapsed.as_millis(),
        json::string(e.request_id.as_str()),
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

/// An open access log file, shared by all connection threads, and its format.
pub struct AccessLog {
    file: LogFile,
    format: AccessLogFormat,
}

impl AccessLog {
    /// Opens `path` for appending, creating it and its directories.
    ///
    /// # Errors
    /// What could not be created and why (see `LogFile::open`).
    pub fn open(path: &Path, format: AccessLogFormat) -> Result<Self, String> {
        Ok(AccessLog {
            file: LogFile::open(path)?,
            format,
        })
    }

    /// Appends one line, whole or not at all. A failure is reported in the main log (the
    /// first of a run only), never to the client.
    pub fn write(&self, entry: &AccessEntry) {
        let mut line = match self.format {
            AccessLogFormat::Combined => combined_line(entry),
            AccessLogFormat::Json => json_line(entry),
        };
        line.push('\n');
        if let Some(Notice { level, text }) = self.file.append(line.as_bytes()) {
            log::log!(level, "access log: {text}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse::{read_request, Limits};

    /// `raw` as read from a client.
    fn request(raw: &[u8]) -> Request {
        read_request(&mut &raw[..], &Limits::default())
            .unwrap()
            .unwrap()
    }

    fn entry(request: Option<&Request>) -> AccessEntry<'_> {
        AccessEntry {
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_067_267_123),
            client: "192.0.2.7".parse().unwrap(),
            request,
            status: Some(200),
            bytes: 1633,
            upstream: Some("127.0.0.1:8081"),
            pool: Some("default"),
            cache: Some(CacheStatus::Miss),
            elapsed: Duration::from_millis(2),
            request_id: RequestId::parse("5f0c2a9e3b7d4418").unwrap(),
        }
    }

    const CURL: &[u8] = b"GET / HTTP/1.1\r\nHost: h\r\nUser-Agent: curl/8.0\r\n\r\n";
    /// What a request may hold that could break a line: quotes, a backslash and braces in
    /// the target; a tab, a C1 control sent as UTF-8, valid UTF-8 (é) and a byte that is not
    /// UTF-8 (0xFF) in a field (the parser refuses every other control character).
    const HOSTILE: &[u8] = b"GET /\"a\\{} HTTP/1.1\r\nHost: h\r\n\
        User-Agent: evil\"}\t\xc2\x85\xc3\xa9\xff\r\nReferer: \\\"\r\n\r\n";

    #[test]
    fn combined_log_format_with_our_four_fields() {
        let curl = request(CURL);
        let line = combined_line(&entry(Some(&curl)));
        let (host, rest) = line.split_once(" - - [").unwrap();
        assert_eq!(host, "192.0.2.7");
        let (date, rest) = rest.split_once("] ").unwrap();
        assert!(
            DateTime::parse_from_str(date, "%d/%b/%Y:%H:%M:%S %z").is_ok(),
            "{date}"
        );
        assert_eq!(
            rest,
            "\"GET / HTTP/1.1\" 200 1633 \"-\" \"curl/8.0\" 127.0.0.1:8081 MISS 2 5f0c2a9e3b7d4418"
        );
    }

    #[test]
    fn client_text_cannot_break_the_line_or_its_quotes() {
        let hostile = request(HOSTILE);
        let line = combined_line(&entry(Some(&hostile)));
        assert!(line.contains("\"GET /\\x22a\\x5C{} HTTP/1.1\""), "{line}");
        assert!(
            line.contains("\"evil\\x22}\\x09\\xC2\\x85\\xC3\\xA9\\xFF\""),
            "{line}"
        );
        assert!(!line.contains('\n') && line.is_ascii());
    }

    #[test]
    fn absent_values_are_dashes() {
        let mut e = entry(None);
        e.status = None;
        e.upstream = None;
        e.cache = None;
        let line = combined_line(&e);
        assert!(
            line.ends_with("\"-\" - 1633 \"-\" \"-\" - - 2 5f0c2a9e3b7d4418"),
            "{line}"
        );
    }

    #[test]
    fn json_has_every_field_in_one_object() {
        let curl = request(CURL);
        let line = json_line(&entry(Some(&curl)));
        let time = json::time_string(entry(None).time);
        assert_eq!(
            line,
            format!(
                "{{\"time\":{time},\"client\":\"192.0.2.7\",\"method\":\"GET\",\"target\":\"/\",\
                 \"protocol\":\"HTTP/1.1\",\"status\":200,\"bytes\":1633,\"referer\":null,\
                 \"user_agent\":\"curl/8.0\",\"upstream\":\"127.0.0.1:8081\",\"pool\":\"default\",\
                 \"cache\":\"MISS\",\"ms\":2,\"request_id\":\"5f0c2a9e3b7d4418\"}}"
            )
        );
    }

    #[test]
    fn json_escapes_client_text_and_marks_bytes_that_are_not_utf8() {
        let hostile = request(HOSTILE);
        let line = json_line(&entry(Some(&hostile)));
        assert!(line.contains("\"target\":\"/\\\"a\\\\{}\""), "{line}");
        assert!(
            line.contains("\"user_agent\":\"evil\\\"}\\t\\u0085\u{e9}\\ufffd\""),
            "{line}"
        );
        assert!(line.contains("\"referer\":\"\\\\\\\"\""), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn json_absent_values_are_null() {
        let mut e = entry(None);
        e.status = None;
        e.upstream = None;
        e.pool = None;
        e.cache = None;
        let line = json_line(&e);
        assert!(
            line.contains(
                "\"method\":null,\"target\":null,\"protocol\":null,\"status\":null,\"bytes\":1633,\
                 \"referer\":null,\"user_agent\":null,\"upstream\":null,\"pool\":null,\"cache\":null,"
            ),
            "{line}"
        );
    }
}
