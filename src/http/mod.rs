//! HTTP/1.1 message types: a request head, a response head and their header fields.
//!
//! These are plain values. Reading them from bytes is `parse`, writing them is `serialize`,
//! moving bodies is `body`, and HTTP-dates are `date`. Rules more than one program applies
//! live here too, once: conditional requests (`conditional`, for the cache and the web
//! server), percent-decoding (`percent`, for the web server and the client), HTML
//! escaping (`html`, for the status page and the web server's pages) and request ids
//! (`request_id`, decided by the proxy, logged by the web server). Nothing here touches a
//! socket.
//!
//! Field values are kept as `String`s holding one `char` per byte (ISO-8859-1, the historic
//! charset of field values, RFC 9110 §5.5). Every byte sequence survives a parse/serialize
//! round trip unchanged, and ASCII values, by far the common case, read as they are.

pub mod authority;
pub mod body;
pub mod conditional;
pub mod date;
pub mod html;
pub mod parse;
pub mod percent;
pub mod range;
pub mod request_id;
pub mod serialize;

/// The HTTP versions Relevo speaks (RFC 9112 §2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0: one request per connection unless `Connection: keep-alive`.
    Http10,
    /// HTTP/1.1: persistent connections by default.
    Http11,
}

impl Version {
    /// The version as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// Header fields in the order received, names with their original case.
///
/// Names compare case-insensitively (RFC 9110 §5.1). A field may appear several times; `get`
/// returns the first, `get_all` every one.
///
/// All names and values live back to back in one `String`, and each field is a pair of
/// ranges into it: a parsed head costs two allocations however many fields it has, and a
/// clone costs two more. Removing a field only drops its ranges; its bytes stay until the
/// `Headers` is dropped, which for a message head is soon.
#[derive(Clone, Default)]
pub struct Headers {
    /// Every name and value, one after the other.
    text: String,
    /// Invariant: each span lies inside `text` on `char` boundaries; in field order.
    fields: Vec<Span>,
}

/// One field inside `Headers::text`: the name is `start..colon`, the value `colon..end`.
#[derive(Clone, Copy)]
struct Span {
    start: usize,
    colon: usize,
    end: usize,
}

/// Bytes of name and value reserved per field by `with_capacity`: most fields are shorter.
const TYPICAL_FIELD_BYTES: usize = 40;

impl Headers {
    /// No fields.
    pub fn new() -> Self {
        Headers::default()
    }

    /// No fields, with room for `n` typical ones without reallocating.
    pub fn with_capacity(n: usize) -> Self {
        Headers {
            text: String::with_capacity(n * TYPICAL_FIELD_BYTES),
            fields: Vec::with_capacity(n),
        }
    }

    fn name_of(&self, span: &Span) -> &str {
        &self.text[span.start..span.colon]
    }

    fn value_of(&self, span: &Span) -> &str {
        &self.text[span.colon..span.end]
    }

    /// The value of the first field called `name`.
    pub fn get<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.get_all(name).next()
    }

    /// The values of every field called `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Whether at least one field is called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Adds a field after the existing ones.
    pub fn append(&mut self, name: impl AsRef<str>, value: impl AsRef<str>) {
        let start = self.text.len();
        self.text.push_str(name.as_ref());
        let colon = self.text.len();
        self.text.push_str(value.as_ref());
        let end = self.text.len();
        self.fields.push(Span { start, colon, end });
    }

    /// Replaces every field called `name` with one field holding `value`.
    pub fn set(&mut self, name: &str, value: impl AsRef<str>) {
        self.remove(name);
        self.append(name, value);
    }

    /// Removes every field called `name`; returns whether there was one.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.fields.len();
        self.retain(|n| !n.eq_ignore_ascii_case(name));
        self.fields.len() != before
    }

    /// Keeps only the fields whose name `keep` accepts.
    fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        let text = &self.text;
        self.fields
            .retain(|span| keep(&text[span.start..span.colon]));
    }

    /// Every field as `(name, value)`, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields
            .iter()
            .map(|span| (self.name_of(span), self.value_of(span)))
    }

    /// The bytes the fields take on the wire: `name: value` and CRLF each, plus the empty
    /// line that ends a head. For sizing a buffer; exact for ASCII values.
    pub fn wire_len(&self) -> usize {
        self.fields
            .iter()
            .map(|span| span.end - span.start + 4)
            .sum::<usize>()
            + 2
    }

    /// The number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The elements of the comma-separated list held by every field called `name`
    /// (RFC 9110 §5.6.1), trimmed, empty elements skipped.
    pub fn list<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.get_all(name)
            .flat_map(|v| v.split(','))
            .map(|item| item.trim_matches([' ', '\t']))
            .filter(|item| !item.is_empty())
    }

    /// Whether the list in `name` holds `token`, compared case-insensitively
    /// (e.g. `Connection: close`).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.list(name).any(|t| t.eq_ignore_ascii_case(token))
    }
}

/// Two `Headers` are equal when they hold the same fields in the same order, names
/// compared exactly; bytes left behind by removed fields do not count.
impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Headers {}

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Collects the fields of a head as the parser finds them, as bytes, and makes them a
/// `Headers` at the end: the text is checked as UTF-8 once per head rather than once per
/// name and value.
pub(crate) struct HeadersBuilder {
    /// Invariant: UTF-8, being ASCII bytes and the UTF-8 encoding of chars U+0080 to U+00FF.
    text: Vec<u8>,
    fields: Vec<Span>,
}

impl HeadersBuilder {
    /// Room for `n` typical fields.
    pub(crate) fn with_capacity(n: usize) -> Self {
        HeadersBuilder {
            text: Vec::with_capacity(n * TYPICAL_FIELD_BYTES),
            fields: Vec::with_capacity(n),
        }
    }

    /// The number of fields so far.
    pub(crate) fn len(&self) -> usize {
        self.fields.len()
    }

    /// Adds a field; each byte of `name` and `value` becomes one `char` (ISO-8859-1).
    pub(crate) fn push(&mut self, name: &[u8], value: &[u8]) {
        let start = self.text.len();
        push_bytes_as_utf8(&mut self.text, name);
        let colon = self.text.len();
        push_bytes_as_utf8(&mut self.text, value);
        let end = self.text.len();
        self.fields.push(Span { start, colon, end });
    }

    /// The fields pushed, in order.
    pub(crate) fn finish(self) -> Headers {
        let text = String::from_utf8(self.text).expect("only UTF-8 is ever pushed");
        Headers {
            text,
            fields: self.fields,
        }
    }
}

/// Appends the UTF-8 encoding of `bytes` read as ISO-8859-1: ASCII as is, any other byte as
/// the two bytes of the `char` with that number.
fn push_bytes_as_utf8(out: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.is_ascii() {
        out.extend_from_slice(bytes);
        return;
    }
    for &b in bytes {
        let mut utf8 = [0; 2];
        out.extend_from_slice(char::from(b).encode_utf8(&mut utf8).as_bytes());
    }
}

/// A request head: request line and header fields (RFC 9112 §3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The method token, case-sensitive (`GET`, `POST`, ...).
    pub method: String,
    /// The request-target as sent: origin-form `/a?b` or absolute-form `http://h/a?b`.
    pub target: String,
    /// The version from the request line.
    pub version: Version,
    /// The header fields.
    pub headers: Headers,
}

impl Request {
    /// A HTTP/1.1 request with no header fields.
    pub fn new(method: &str, target: &str) -> Self {
        Request {
            method: method.to_string(),
            target: target.to_string(),
            version: Version::Http11,
            headers: Headers::new(),
        }
    }

    /// The request line without its CRLF, as logged: `GET /a HTTP/1.1`.
    pub fn request_line(&self) -> String {
        format!("{} {} {}", self.method, self.target, self.version.as_str())
    }

    /// Whether the client asked for the connection to stay open after this request
    /// (RFC 9112 §9.3): HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with
    /// `Connection: keep-alive`.
    pub fn keep_alive(&self) -> bool {
        match self.version {
            Version::Http11 => !self.headers.has_token("connection", "close"),
            Version::Http10 => {
                self.headers.has_token("connection", "keep-alive")
                    && !self.headers.has_token("connection", "close")
            }
        }
    }
}

/// A response head: status line and header fields (RFC 9112 §4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The version from the status line.
    pub version: Version,
    /// The three-digit status code.
    pub status: u16,
    /// The reason phrase (may be empty).
    pub reason: String,
    /// The header fields.
    pub headers: Headers,
}

impl Response {
    /// A HTTP/1.1 response with the standard reason phrase and no header fields.
    pub fn new(status: u16) -> Self {
        Response {
            version: Version::Http11,
            status,
            reason: reason_phrase(status).to_string(),
            headers: Headers::new(),
        }
    }

    /// The status line without its CRLF, as logged: `HTTP/1.1 200 OK`.
    pub fn status_line(&self) -> String {
        format!("{} {} {}", self.version.as_str(), self.status, self.reason)
    }

    /// Whether this is an interim (1xx) response, to be followed by the final one.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status)
    }

    /// Whether the body is an event stream (`text/event-stream`, the HTML standard's
    /// Server-Sent Events): it stays open, may be silent for minutes between events, and is
    /// live, so no stored copy of it is the same stream.
    pub fn is_event_stream(&self) -> bool {
        self.headers.get("content-type").is_some_and(|t| {
            t.split(';')
                .next()
                .is_some_and(|media| media.trim().eq_ignore_ascii_case("text/event-stream"))
        })
    }
}

/// A short `text/plain` response (errors, refusals, the web server's echo) with its
/// Content-Length set; the caller adds `Connection` as needed.
pub fn text_response(status: u16, text: &str) -> (Response, Vec<u8>) {
    let body = format!("{status} {}: {text}\n", reason_phrase(status)).into_bytes();
    let mut resp = Response::new(status);
    resp.headers
        .append("Content-Type", "text/plain; charset=utf-8");
    resp.headers
        .append("Content-Length", body.len().to_string());
    (resp, body)
}

/// Hop-by-hop fields a proxy never forwards (RFC 9110 §7.6.1), besides those named in
/// `Connection`. `Proxy-Connection` is not standard but is sent by old clients.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes the hop-by-hop fields: the ones named in `Connection`, and `HOP_BY_HOP`
/// (RFC 9110 §7.6.1), in one pass over the fields.
pub fn remove_hop_by_hop(headers: &mut Headers) {
    let named: Vec<String> = headers.list("connection").map(str::to_string).collect();
    let named: Vec<&str> = named.iter().map(String::as_str).collect();
    headers.retain(|name| !is_hop_by_hop(name, &named));
}

/// Whether the field `name` is hop-by-hop (RFC 9110 §7.6.1): one of `HOP_BY_HOP`, or named
/// in the message's `Connection` field, whose elements are `connection_named`.
pub fn is_hop_by_hop(name: &str, connection_named: &[&str]) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
        || connection_named
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n))
}

/// The standard reason phrase for a status code (RFC 9110 §15), or "" when unknown.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// Whether `s` is a token (RFC 9110 §5.6.2): one or more tchar.
///
/// ```text
/// tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
///         "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
/// ```
pub fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

fn is_tchar(b: u8) -> bool {
    matches!(b, b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z'
        | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_'
        | b'`' | b'|' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_we_send_has_its_reason_phrase() {
        // 416 (a range past the end, from the web server and the cache), 409 (a purge with
        // the cache off, a reload of a proxy not started from a file), 415 and 422 (admin
        // forms, a reload with mistakes) went out as `HTTP/1.1 416 ` and `416 : ...`.
        for (status, reason) in [
            (409, "Conflict"),
            (415, "Unsupported Media Type"),
            (416, "Range Not Satisfiable"),
            (422, "Unprocessable Content"),
        ] {
            assert_eq!(reason_phrase(status), reason);
            let (_, body) = text_response(status, "why");
            assert_eq!(body, format!("{status} {reason}: why\n").into_bytes());
        }
    }

    #[test]
    fn header_names_are_case_insensitive_and_keep_their_case() {
        let mut h = Headers::new();
        h.append("X-Served-By", "a");
        h.append("x-served-by", "b");
        assert_eq!(h.get("X-SERVED-BY"), Some("a"));
        assert_eq!(h.get_all("x-Served-by").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(h.iter().next(), Some(("X-Served-By", "a")));
        h.set("X-Served-By", "c");
        assert_eq!(h.get_all("x-served-by").collect::<Vec<_>>(), ["c"]);
    }

    #[test]
    fn removed_fields_leave_no_trace_in_iteration_or_equality() {
        let mut a = Headers::with_capacity(2);
        a.append("Keep", "1");
        a.append("Drop", "x");
        a.append("Keep-Too", "2");
        assert!(a.remove("drop"));
        assert!(!a.remove("drop"));
        let mut b = Headers::new();
        b.append("Keep", "1");
        b.append("Keep-Too", "2");
        assert_eq!(a, b);
        assert_eq!(a.clone(), b);
        assert_eq!(a.len(), 2);
        assert_eq!(format!("{a:?}"), r#"[("Keep", "1"), ("Keep-Too", "2")]"#);
        b.append("Keep", "3");
        assert_ne!(a, b);
    }

    #[test]
    fn field_bytes_become_one_char_each() {
        let mut b = HeadersBuilder::with_capacity(1);
        b.push(b"X-Name", b"caf\xe9 \xff\x80");
        b.push(b"X-Ascii", b"plain");
        b.push(b"X-\xe9", b"");
        assert_eq!(b.len(), 3);
        let h = b.finish();
        assert_eq!(h.get("x-name"), Some("caf\u{e9} \u{ff}\u{80}"));
        assert_eq!(h.get("x-ascii"), Some("plain"));
        assert_eq!(h.get("x-\u{e9}"), Some(""));
    }

    #[test]
    fn list_fields_split_on_commas_across_lines() {
        let mut h = Headers::new();
        h.append("Connection", "keep-alive, X-Foo");
        h.append("connection", " ,Upgrade");
        assert_eq!(
            h.list("connection").collect::<Vec<_>>(),
            ["keep-alive", "X-Foo", "Upgrade"]
        );
        assert!(h.has_token("Connection", "upgrade"));
        assert!(!h.has_token("Connection", "close"));
    }

    #[test]
    fn hop_by_hop_fields_and_those_named_in_connection_are_removed() {
        let mut h = Headers::new();
        h.append("Connection", "X-Secret, close");
        h.append("X-Secret", "1");
        h.append("Keep-Alive", "timeout=5");
        h.append("Transfer-Encoding", "chunked");
        h.append("Upgrade", "h2c");
        h.append("Accept", "*/*");
        remove_hop_by_hop(&mut h);
        assert_eq!(h.iter().collect::<Vec<_>>(), [("Accept", "*/*")]);
    }

    #[test]
    fn keep_alive_follows_rfc_9112_section_9_3() {
        let mut r = Request::new("GET", "/");
        assert!(r.keep_alive());
        r.headers.append("Connection", "close");
        assert!(!r.keep_alive());
        let mut old = Request::new("GET", "/");
        old.version = Version::Http10;
        assert!(!old.keep_alive());
        old.headers.append("Connection", "Keep-Alive");
        assert!(old.keep_alive());
    }

    #[test]
    fn tchar_is_exactly_the_rfc_9110_set() {
        for b in 0..=u8::MAX {
            let listed = b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            assert_eq!(is_tchar(b), listed, "byte {b:#04x}");
        }
    }

    #[test]
    fn tokens() {
        assert!(is_token(b"GET"));
        assert!(is_token(b"X-Custom_1"));
        assert!(!is_token(b""));
        assert!(!is_token(b"GE T"));
        assert!(!is_token(b"a:b"));
        assert!(!is_token("é".as_bytes()));
    }
}
