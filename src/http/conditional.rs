//! Conditional requests (RFC 9110 §13): whether a GET or HEAD carrying If-None-Match or
//! If-Modified-Since is answered 304 Not Modified. The one evaluation for both places that
//! answer such requests: the web server, for its files, and the cache, when a client's own
//! conditional request meets a fresh stored response (RFC 9111 §4.3.2).
//!
//! It covers steps 3 and 4 of the order of precedence (RFC 9110 §13.2.2): If-None-Match when
//! present, else If-Modified-Since; and If-Range (§13.1.5), the precondition of a range
//! request, for both as well (`if_range_holds`, used by `http::range`). If-Match and
//! If-Unmodified-Since are not evaluated here: the cache sends requests carrying them to the
//! backend (`cache::may_use_cache`), and the web server does not look at them.
//!
//! A malformed If-None-Match, anything that is neither `*` nor a list of entity-tags
//! (`"a" junk`, `W/x`, `"x", *`), matches nothing, so the full response is sent. RFC 9110
//! §13.1.2 evaluates the field in three cases: `*`; a list of entity-tags, one of which
//! matches; and "otherwise, the condition is true", and a true condition means the request
//! is performed. The field is still present, so If-Modified-Since is still ignored
//! (§13.1.3). This is also the failure that costs least: a 304 tells the client that its copy
//! is current, which a value we cannot read does not show; a 200 is never wrong. (Before
//! this module, the cache picked whatever quoted strings it could find in such a list and
//! could answer 304, while the web server sent the file.)
//!
//! Pure functions of the request head and the representation's validators; no clock, no
//! file, no socket.

use std::time::SystemTime;

use crate::http::date::{parse_http_date, to_unix};
use crate::http::Request;

/// Whether `request` is answered 304 Not Modified by a current representation whose entity
/// tag is `etag` and whose last modification is `last_modified` (RFC 9110 §13.2.2, steps 3
/// and 4). Only GET and HEAD are ever answered 304; other methods get `false`.
///
/// - If-None-Match, when present, decides alone (§13.1.2): `*` matches (the caller has a
///   current representation, or it would not ask), and so does a listed entity-tag weakly
///   equal to `etag` (§8.8.3.2). Several field lines form one list (§5.3). A malformed
///   value matches nothing (see the module doc).
/// - Otherwise If-Modified-Since (§13.1.3): ignored unless it is exactly one valid
///   HTTP-date; the representation is unmodified when `last_modified`, in whole seconds,
///   is not after it.
pub fn not_modified(
    request: &Request,
    etag: Option<&str>,
    last_modified: Option<SystemTime>,
) -> bool {
    if !matches!(request.method.as_str(), "GET" | "HEAD") {
        return false;
    }
    let headers = &request.headers;
    if headers.contains("if-none-match") {
        let list: Vec<&str> = headers.get_all("if-none-match").collect();
        return none_match_hits(&list.join(", "), etag);
    }
    let mut since = headers.get_all("if-modified-since");
    match (since.next(), since.next(), last_modified) {
        (Some(date), None, Some(modified)) => unmodified_since(date, modified),
        _ => false,
    }
}

/// Whether a range request may be answered with a part of the current representation, whose
/// entity tag is `etag` and whose last modification is `last_modified`: true without
/// If-Range; with one, only when it names this very representation (RFC 9110 §13.1.5):
///
/// ```text
/// If-Range = entity-tag / HTTP-date
/// ```
/// An entity-tag must be strong and strongly equal to a strong `etag` (§8.8.3.2); a date
/// must be exactly `last_modified`, in whole seconds (the RFC also wants that date to be a
/// strong validator, at least a second older than the response's Date; we take the origin's
/// Last-Modified as it is). Anything else, a malformed value included, is false: the whole
/// representation is sent, which is never wrong.
pub fn if_range_holds(
    request: &Request,
    etag: Option<&str>,
    last_modified: Option<SystemTime>,
) -> bool {
    let mut values = request.headers.get_all("if-range");
    let value = match (values.next(), values.next()) {
        (None, _) => return true,
        (Some(value), None) => value.trim_matches([' ', '\t']),
        (Some(_), Some(_)) => return false,
    };
    if value.starts_with('"') {
        let ours = etag.map(|e| e.trim_matches([' ', '\t']));
        return single_entity_tag(value) == Some(value)
            && ours.is_some_and(|ours| !ours.starts_with("W/") && ours == value);
    }
    match (parse_http_date(value), last_modified) {
        (Some(date), Some(modified)) => to_unix(date).0 == to_unix(modified).0,
        _ => false,
    }
}

/// Whether an If-None-Match value is `*` or lists a tag weakly equal to `etag`.
///
/// ```text
/// If-None-Match = "*" / #entity-tag                  ; RFC 9110 §13.1.2
/// ```
fn none_match_hits(value: &str, etag: Option<&str>) -> bool {
    if value.trim_matches([' ', '\t']) == "*" {
        return true;
    }
    let Some(ours) = etag.and_then(single_entity_tag) else {
        return false;
    };
    entity_tags(value).is_some_and(|tags| tags.contains(&ours))
}

/// The opaque-tag of an ETag field value holding exactly one entity-tag, or None.
fn single_entity_tag(value: &str) -> Option<&str> {
    match entity_tags(value)?.as_slice() {
        [tag] => Some(tag),
        _ => None,
    }
}

/// The opaque-tags (quotes kept, weakness dropped, which is all the weak comparison of
/// §8.8.3.2 looks at) of a `#entity-tag` list; None if any element is malformed, so a broken
/// list matches nothing rather than something.
///
/// ```text
/// entity-tag = [ weak ] opaque-tag                   ; RFC 9110 §8.8.3
/// weak       = %s"W/"
/// opaque-tag = DQUOTE *etagc DQUOTE
/// etagc      = %x21 / %x23-7E / obs-text
/// ```
/// A tag may contain a comma, so the list is scanned, not split on `,`. Empty elements and
/// whitespace around commas are allowed (§5.6.1).
fn entity_tags(list: &str) -> Option<Vec<&str>> {
    let mut tags = Vec::new();
    let mut rest = list;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return Some(tags);
        }
        rest = rest.strip_prefix("W/").unwrap_or(rest);
        let inner = rest.strip_prefix('"')?;
        let close = inner.find('"')?;
        if !inner[..close].bytes().all(is_etagc) {
            return None;
        }
        tags.push(&rest[..close + 2]);
        rest = inner[close + 1..].trim_start_matches([' ', '\t']);
        if !(rest.is_empty() || rest.starts_with(',')) {
            return None;
        }
    }
}

/// Whether `b` may stand inside an opaque-tag. Field values hold one char per byte, so a
/// byte of 0x80 or more belongs to obs-text.
fn is_etagc(b: u8) -> bool {
    b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80
}

/// Whether a representation last modified at `modified` is unmodified since the
/// If-Modified-Since `value` (§13.1.3): false for a value that is not an HTTP-date.
fn unmodified_since(value: &str, modified: SystemTime) -> bool {
    parse_http_date(value).is_some_and(|date| to_unix(modified).0 <= to_unix(date).0)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    /// 1994-11-06T08:49:37Z plus half a second.
    fn mtime() -> SystemTime {
        UNIX_EPOCH + Duration::new(784_111_777, 500_000_000)
    }

    const TAG: &str = "\"2-abc-0\"";

    #[test]
    fn if_range_needs_the_same_strong_tag_or_the_exact_date() {
        let holds = |field: &str, etag: Option<&str>| {
            let field = if field.is_empty() {
                String::new()
            } else {
                format!("{field}\r\n")
            };
            let raw = format!("GET / HTTP/1.1\r\nHost: h\r\n{field}\r\n");
            let request =
                crate::http::parse::read_request(&mut raw.as_bytes(), &Default::default())
                    .unwrap()
                    .unwrap();
            if_range_holds(&request, etag, Some(mtime()))
        };
        assert!(holds("", None));
        assert!(holds(&format!("If-Range: {TAG}"), Some(TAG)));
        assert!(!holds(&format!("If-Range: {TAG}"), Some("\"other\"")));
        assert!(!holds(
            &format!("If-Range: W/{TAG}"),
            Some(&format!("W/{TAG}"))
        ));
        assert!(!holds(
            &format!("If-Range: {TAG}"),
            Some(&format!("W/{TAG}"))
        ));
        assert!(!holds(&format!("If-Range: {TAG}"), None));
        assert!(holds("If-Range: Sun, 06 Nov 1994 08:49:37 GMT", None));
        assert!(!holds("If-Range: Sun, 06 Nov 1994 08:49:38 GMT", None));
        assert!(!holds("If-Range: yesterday", Some(TAG)));
        assert!(!holds(&format!("If-Range: {TAG}, {TAG}"), Some(TAG)));
    }
    const DATE: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    const DATE_BEFORE: &str = "Sun, 06 Nov 1994 08:49:36 GMT";

    /// A request with `method` and these field lines.
    fn request(method: &str, fields: &[(&str, &str)]) -> Request {
        let mut request = Request::new(method, "/");
        for (name, value) in fields {
            request.headers.append(name, *value);
        }
        request
    }

    /// Whether a GET with one If-None-Match `value` is answered 304 for `etag`.
    fn inm(value: &str, etag: &str) -> bool {
        let get = request("GET", &[("If-None-Match", value)]);
        not_modified(&get, Some(etag), Some(mtime()))
    }

    /// Whether a GET with one If-Modified-Since `value` is answered 304 at `mtime()`.
    fn ims(value: &str) -> bool {
        let get = request("GET", &[("If-Modified-Since", value)]);
        not_modified(&get, Some(TAG), Some(mtime()))
    }

    #[test]
    fn if_none_match_star_and_lists() {
        assert!(inm("*", TAG));
        assert!(inm(" * ", TAG));
        assert!(inm("\"2-abc-0\"", TAG));
        assert!(inm("\"x\", \"2-abc-0\"", TAG));
        assert!(inm("\"x\",\"2-abc-0\" , \"y\"", TAG));
        assert!(inm(", ,\"2-abc-0\",", TAG));
        assert!(!inm("\"x\", \"y\"", TAG));
        assert!(!inm("\"2-abc-1\"", TAG));
        assert!(!inm("", TAG));
    }

    #[test]
    fn if_none_match_uses_weak_comparison() {
        assert!(inm("W/\"2-abc-0\"", TAG));
        assert!(inm("\"2-abc-0\"", "W/\"2-abc-0\""));
        assert!(inm("W/\"a\", W/\"2-abc-0\"", TAG));
        assert!(inm(" W/\"2-abc-0\"", " W/\"2-abc-0\" "));
        // The weakness indicator is case-sensitive (%s"W/").
        assert!(!inm("w/\"2-abc-0\"", TAG));
    }

    #[test]
    fn if_none_match_tags_may_contain_commas_and_obs_text() {
        assert!(inm("\"a,b\"", "\"a,b\""));
        assert!(!inm("\"a,b\"", "\"a\""));
        assert!(!inm("\"a\", \"b\"", "\"a,b\""));
        assert!(inm("\"caf\u{e9}\"", "\"caf\u{e9}\""));
    }

    #[test]
    fn several_if_none_match_lines_form_one_list() {
        let get = request("GET", &[("If-None-Match", "\"x\""), ("If-None-Match", TAG)]);
        assert!(not_modified(&get, Some(TAG), None));
        let get = request(
            "GET",
            &[("If-None-Match", "\"x\""), ("If-None-Match", "\"y\"")],
        );
        assert!(!not_modified(&get, Some(TAG), None));
        // `*` stands alone: joined to a tag it is a malformed list.
        let get = request("GET", &[("If-None-Match", "\"x\""), ("If-None-Match", "*")]);
        assert!(!not_modified(&get, Some(TAG), None));
    }

    #[test]
    fn a_malformed_if_none_match_matches_nothing() {
        for bad in [
            "2-abc-0",
            "\"2-abc-0",
            "\"2-abc-0\" \"2-abc-0\"",
            "\"x\" junk, \"2-abc-0\"",
            "\"2-abc-0\" junk",
            "*, \"2-abc-0\"",
            "\"2-abc-0\", *",
            "\"a b\", \"2-abc-0\"",
            "\"a\u{7f}\", \"2-abc-0\"",
            "W/2-abc-0",
            "W/ \"2-abc-0\"",
            "**",
            "\"",
            "\"2-abc-0\", \"a",
        ] {
            assert!(!inm(bad, TAG), "{bad}");
        }
    }

    #[test]
    fn without_a_valid_etag_only_star_matches() {
        let get = request("GET", &[("If-None-Match", "\"abc\"")]);
        assert!(!not_modified(&get, None, Some(mtime())));
        assert!(!inm("\"abc\"", "x\"abc\""));
        assert!(!inm("\"abc\"", "abc"));
        assert!(!inm("\"a\"", "\"a\", \"b\""));
        let star = request("GET", &[("If-None-Match", "*")]);
        assert!(not_modified(&star, None, None));
    }

    #[test]
    fn if_none_match_overrides_if_modified_since() {
        // The date alone would say "not modified"; the tag says otherwise.
        let get = request(
            "GET",
            &[("If-None-Match", "\"other\""), ("If-Modified-Since", DATE)],
        );
        assert!(!not_modified(&get, Some(TAG), Some(mtime())));
        // The date alone would say "modified"; the tag wins again.
        let get = request(
            "GET",
            &[("If-None-Match", TAG), ("If-Modified-Since", DATE_BEFORE)],
        );
        assert!(not_modified(&get, Some(TAG), Some(mtime())));
        // A malformed If-None-Match is still present: the date is not looked at.
        let get = request(
            "GET",
            &[("If-None-Match", "\"x\" junk"), ("If-Modified-Since", DATE)],
        );
        assert!(!not_modified(&get, Some(TAG), Some(mtime())));
    }

    #[test]
    fn if_modified_since_compares_whole_seconds() {
        assert!(ims(DATE));
        assert!(ims("Sun, 06 Nov 1994 08:49:38 GMT"));
        assert!(ims("Sunday, 06-Nov-94 08:49:37 GMT"));
        assert!(ims("Sun Nov  6 08:49:37 1994"));
        assert!(!ims(DATE_BEFORE));
    }

    #[test]
    fn an_invalid_or_repeated_if_modified_since_is_ignored() {
        assert!(!ims("yesterday"));
        assert!(!ims(""));
        assert!(!ims(&format!("{DATE}, {DATE}")));
        let twice = request(
            "GET",
            &[("If-Modified-Since", DATE), ("If-Modified-Since", DATE)],
        );
        assert!(!not_modified(&twice, Some(TAG), Some(mtime())));
        let undated = request("GET", &[("If-Modified-Since", DATE)]);
        assert!(!not_modified(&undated, Some(TAG), None));
        assert!(!not_modified(
            &request("GET", &[]),
            Some(TAG),
            Some(mtime())
        ));
    }

    #[test]
    fn only_get_and_head_are_answered_304() {
        for method in ["GET", "HEAD"] {
            let r = request(
                method,
                &[("If-None-Match", "*"), ("If-Modified-Since", DATE)],
            );
            assert!(not_modified(&r, Some(TAG), Some(mtime())), "{method}");
        }
        for method in ["POST", "PUT", "DELETE", "get"] {
            let r = request(method, &[("If-None-Match", "*")]);
            assert!(!not_modified(&r, Some(TAG), Some(mtime())), "{method}");
            let r = request(method, &[("If-Modified-Since", DATE)]);
            assert!(!not_modified(&r, Some(TAG), Some(mtime())), "{method}");
        }
    }
}
