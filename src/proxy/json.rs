//! JSON text written by hand (this project has no serde): string literals (RFC 8259 §7)
//! and times (RFC 3339), for the status page's JSON and the access log's JSON lines. Only
//! the escaping lives here; each writer lays out its own object.

use std::fmt::Write;
use std::time::SystemTime;

use chrono::{DateTime, Local, SecondsFormat};

/// A JSON string literal (RFC 8259 §7): quotes and backslashes escaped, and so is every
/// control character (C0, DEL and C1) and the two Unicode line separators (U+2028, U+2029),
/// which JSON allows raw but which some line-oriented tools take for line breaks: the
/// result never holds anything that could end or fake a line.
pub fn string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON string literal for text that came off the wire: field values and targets hold
/// one `char` per byte received (see `http`), and here those bytes are read as UTF-8, as a
/// reader of the log expects: valid UTF-8 shows as the characters it encodes, and every
/// byte that is not part of valid UTF-8 becomes U+FFFD (written `\ufffd`), so the line is
/// always valid JSON in valid UTF-8. Then escaped as [`string`].
pub fn wire_string(text: &str) -> String {
    if text.is_ascii() {
        return string(text);
    }
    let bytes: Vec<u8> = text
        .chars()
        .flat_map(|c| match u8::try_from(u32::from(c)) {
            Ok(byte) => vec![byte],
            // Not from the wire (our own text): its UTF-8 as it is.
            Err(_) => c.to_string().into_bytes(),
        })
        .collect();
    let decoded = String::from_utf8_lossy(&bytes);
    let mut out = string(&decoded);
    if decoded.contains('\u{fffd}') {
        out = out.replace('\u{fffd}', "\\ufffd");
    }
    out
}

/// `t` in RFC 3339 with milliseconds and the local offset: `2026-11-25T10:41:07.123+01:00`.
pub fn time(t: SystemTime) -> String {
    DateTime::<Local>::from(t).to_rfc3339_opts(SecondsFormat::Millis, false)
}

/// `time(t)` as a JSON string literal.
pub fn time_string(t: SystemTime) -> String {
    string(&time(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_backslashes_and_controls_are_escaped() {
        assert_eq!(string("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
        assert_eq!(string("\u{7f}\u{85}\u{2028}"), "\"\\u007f\\u0085\\u2028\"");
        assert_eq!(string("caf\u{e9} \u{1F600}"), "\"caf\u{e9} \u{1F600}\"");
    }

    #[test]
    fn wire_bytes_are_read_as_utf8_and_invalid_ones_become_the_replacement_character() {
        // "é" sent as UTF-8 arrives as the two chars of its bytes.
        assert_eq!(wire_string("caf\u{c3}\u{a9}"), "\"caf\u{e9}\"");
        // A lone 0xFF, a lone 0xC3 at the end: not UTF-8.
        assert_eq!(wire_string("a\u{ff}b\u{c3}"), "\"a\\ufffdb\\ufffd\"");
        // A C1 control sent as valid UTF-8 (U+0085, NEL) is escaped, never raw.
        assert_eq!(wire_string("x\u{c2}\u{85}y"), "\"x\\u0085y\"");
        assert_eq!(wire_string("plain \"ascii\""), "\"plain \\\"ascii\\\"\"");
    }

    #[test]
    fn times_are_rfc_3339_with_milliseconds() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_500);
        let text = time(t);
        assert!(DateTime::parse_from_rfc3339(&text).is_ok(), "{text}");
        assert!(text.contains(".500"), "{text}");
        assert_eq!(time_string(t), format!("\"{text}\""));
    }
}
