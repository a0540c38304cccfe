//! Range requests (RFC 9110 §14): which part of a representation of known length a GET asks
//! for, and the fields of the answer. The one reading of `Range` for the two places that
//! answer it from a whole representation: the web server, for its files, and the proxy's
//! cache, for a stored complete response.
//!
//! Choices where the RFC leaves them (§14.2: a server may ignore Range):
//! - one range is answered 206 with `Content-Range`; several ranges get the whole
//!   representation (200): a `multipart/byteranges` body is rarely asked for (download
//!   managers and media players ask for one range at a time) and it would be the only
//!   response we build in pieces;
//! - a `Range` that is not valid `bytes` syntax, or in another unit, is ignored (200);
//! - a valid range that starts past the end is `416` with `Content-Range: bytes */LENGTH`
//!   (§15.5.17); so is any range of an empty representation but a suffix range, which
//!   §14.1.1 calls satisfiable there: no `Content-Range` can name zero bytes, so it gets
//!   the whole (empty) representation, 200, as nginx answers;
//! - `If-Range` that does not name the current representation (`conditional::if_range_holds`)
//!   gets the whole of it (§13.1.5);
//! - only GET: a HEAD or another method ignores Range (§14.2).
//!
//! Pure functions of the request head and the representation's length and validators.

use std::time::SystemTime;

use crate::http::conditional::if_range_holds;
use crate::http::Request;

/// Most ranges read from one `Range` field: more is not a download but an attack on the
/// server's work (RFC 9110 §14.2 warns of many small ranges); such a request gets the
/// whole representation.
pub const MAX_RANGES: usize = 16;

/// What a request asks for, of a representation of a given length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The whole representation: no usable Range (or several ranges, or If-Range failed).
    Whole,
    /// `len` bytes from offset `start` (206).
    Bytes { start: u64, len: u64 },
    /// Nothing the representation has (416).
    Unsatisfiable,
}

/// The part of a representation of `total` bytes, with validators `etag` and
/// `last_modified`, that `request` asks for (see the module docs).
pub fn requested_part(
    request: &Request,
    total: u64,
    etag: Option<&str>,
    last_modified: Option<SystemTime>,
) -> Part {
    if request.method != "GET" {
        return Part::Whole;
    }
    let mut fields = request.headers.get_all("range");
    let value = match (fields.next(), fields.next()) {
        (Some(value), None) => value,
        _ => return Part::Whole,
    };
    let Some(specs) = parse_byte_ranges(value) else {
        return Part::Whole;
    };
    if !if_range_holds(request, etag, last_modified) {
        return Part::Whole;
    }
    // §14.1.1: of an empty representation, only a non-zero suffix range is satisfiable.
    if total == 0 && specs.iter().any(|s| matches!(s, Spec::Suffix(n) if *n > 0)) {
        return Part::Whole;
    }
    let satisfiable: Vec<(u64, u64)> = specs.iter().filter_map(|s| s.resolve(total)).collect();
    match satisfiable.as_slice() {
        [] => Part::Unsatisfiable,
        [(start, len)] if specs.len() == 1 => Part::Bytes {
            start: *start,
            len: *len,
        },
        _ => Part::Whole,
    }
}

/// The `Content-Range` of a 206 carrying `len` bytes from `start` of `total` (RFC 9110
/// §14.4): `bytes 0-1/11`.
pub fn content_range(start: u64, len: u64, total: u64) -> String {
    let last = (start + len).saturating_sub(1);
    format!("bytes {start}-{last}/{total}")
}

/// The `Content-Range` of a 416 for a representation of `total` bytes: `bytes */11`.
pub fn unsatisfied_range(total: u64) -> String {
    format!("bytes */{total}")
}

/// One range of a `bytes` Range field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spec {
    /// `first-last`, or `first-` (to the end).
    From { first: u64, last: Option<u64> },
    /// `-n`: the last n bytes.
    Suffix(u64),
}

impl Spec {
    /// The (start, length) this range selects of `total` bytes, or None when it selects
    /// nothing (§14.1.1: unsatisfiable).
    fn resolve(self, total: u64) -> Option<(u64, u64)> {
        match self {
            Spec::From { first, last } if first < total => {
                let end = last.map_or(total, |last| last.saturating_add(1).min(total));
                Some((first, end - first))
            }
            Spec::Suffix(n) if n > 0 && total > 0 => {
                let len = n.min(total);
                Some((total - len, len))
            }
            _ => None,
        }
    }
}

/// Parses a `bytes` Range value; None when it is not valid (or holds more than
/// [`MAX_RANGES`]).
///
/// ```text
/// Range             = ranges-specifier                ; RFC 9110 §14.2
/// ranges-specifier  = range-unit "=" range-set        ; §14.1.1
/// range-set         = 1#range-spec
/// range-spec        = int-range / suffix-range / other-range
/// int-range         = first-pos "-" [ last-pos ]
/// suffix-range      = "-" suffix-length
/// ```
/// The unit is compared case-insensitively (§14.1); a range whose last-pos is before its
/// first-pos makes the whole field invalid (§14.1.1).
fn parse_byte_ranges(value: &str) -> Option<Vec<Spec>> {
    let (unit, set) = value.trim_matches([' ', '\t']).split_once('=')?;
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    let mut specs = Vec::new();
    for element in set.split(',') {
        let element = element.trim_matches([' ', '\t']);
        if element.is_empty() {
            continue;
        }
        if specs.len() == MAX_RANGES {
            return None;
        }
        let (first, last) = element.split_once('-')?;
        let spec = match (number(first), number(last)) {
            (None, Some(n)) if first.is_empty() => Spec::Suffix(n),
            (Some(first), None) if last.is_empty() => Spec::From { first, last: None },
            (Some(first), Some(last)) if first <= last => Spec::From {
                first,
                last: Some(last),
            },
            _ => return None,
        };
        specs.push(spec);
    }
    (!specs.is_empty()).then_some(specs)
}

/// `1*DIGIT` as a number; None when empty, not digits, or too large for u64.
fn number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse::read_request;

    fn get(fields: &str) -> Request {
        let raw = format!("GET / HTTP/1.1\r\nHost: h\r\n{fields}\r\n");
        read_request(&mut raw.as_bytes(), &Default::default())
            .unwrap()
            .unwrap()
    }

    fn part(range: &str, total: u64) -> Part {
        requested_part(&get(&format!("Range: {range}\r\n")), total, None, None)
    }

    fn bytes(start: u64, len: u64) -> Part {
        Part::Bytes { start, len }
    }

    #[test]
    fn one_range_of_each_form() {
        assert_eq!(part("bytes=0-1", 11), bytes(0, 2));
        assert_eq!(part("bytes=1-", 11), bytes(1, 10));
        assert_eq!(part("bytes=-1", 11), bytes(10, 1));
        assert_eq!(part("bytes=-50", 11), bytes(0, 11));
        assert_eq!(part("bytes=5-500", 11), bytes(5, 6));
        assert_eq!(part("BYTES=2-3", 11), bytes(2, 2));
        assert_eq!(part("bytes= 4-4 ,", 11), bytes(4, 1));
    }

    #[test]
    fn what_is_unsatisfiable_and_what_is_ignored() {
        assert_eq!(part("bytes=11-", 11), Part::Unsatisfiable);
        assert_eq!(part("bytes=20-30", 11), Part::Unsatisfiable);
        assert_eq!(part("bytes=-0", 11), Part::Unsatisfiable);
        assert_eq!(part("bytes=0-1", 0), Part::Unsatisfiable);
        assert_eq!(part("bytes=-0", 0), Part::Unsatisfiable);
        assert_eq!(
            part("bytes=-5", 0),
            Part::Whole,
            "satisfiable, and nothing to cut"
        );
        for ignored in [
            "bytes=3-1",
            "bytes=a-b",
            "bytes=",
            "bytes=-",
            "items=0-1",
            "bytes 0-1",
            "bytes=0-1-2",
            "bytes=99999999999999999999999-",
        ] {
            assert_eq!(part(ignored, 11), Part::Whole, "{ignored}");
        }
        let many = vec!["0-0"; MAX_RANGES + 1].join(",");
        assert_eq!(part(&format!("bytes={many}"), 11), Part::Whole);
        // Several ranges: the whole representation (unless none is satisfiable).
        assert_eq!(part("bytes=0-1,5-6", 11), Part::Whole);
        assert_eq!(part("bytes=0-1,50-60", 11), Part::Whole);
        assert_eq!(part("bytes=40-41,50-60", 11), Part::Unsatisfiable);
    }

    #[test]
    fn head_two_fields_and_a_failed_if_range_get_the_whole() {
        let head = read_request(
            &mut &b"HEAD / HTTP/1.1\r\nHost: h\r\nRange: bytes=0-1\r\n\r\n"[..],
            &Default::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(requested_part(&head, 11, None, None), Part::Whole);
        let twice = get("Range: bytes=0-1\r\nRange: bytes=2-3\r\n");
        assert_eq!(requested_part(&twice, 11, None, None), Part::Whole);
        let tagged = get("Range: bytes=0-1\r\nIf-Range: \"v1\"\r\n");
        assert_eq!(
            requested_part(&tagged, 11, Some("\"v1\""), None),
            bytes(0, 2)
        );
        assert_eq!(
            requested_part(&tagged, 11, Some("\"v2\""), None),
            Part::Whole
        );
    }

    #[test]
    fn content_range_values() {
        assert_eq!(content_range(0, 2, 11), "bytes 0-1/11");
        assert_eq!(content_range(10, 1, 11), "bytes 10-10/11");
        assert_eq!(unsatisfied_range(11), "bytes */11");
    }
}
