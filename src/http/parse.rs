//! Reading a request or response head from any `BufRead`: request line or status line, then
//! header fields, strictly per RFC 9112, with every read bounded by `Limits`.
//!
//! This module reads heads only. What follows the head (the body) is framed by `body`, and
//! what a request means (methods allowed, where it goes) is decided by `proxy`. Errors carry
//! the side that sent the bytes, so the caller never has to guess 400 versus 502.
//!
//! ```text
//! HTTP-message   = start-line CRLF *( field-line CRLF ) CRLF [ message-body ]   ; RFC 9112 §2.1
//! request-line   = method SP request-target SP HTTP-version                    ; §3
//! status-line    = HTTP-version SP status-code SP [ reason-phrase ]            ; §4
//! field-line     = field-name ":" OWS field-value OWS                          ; §5
//! HTTP-version   = "HTTP" "/" DIGIT "." DIGIT                                  ; §2.3
//! ```
//!
//! Where we are lenient, on purpose: a bare LF ends a line (RFC 9112 §2.2 allows it; we
//! re-serialize with CRLF, so nothing downstream sees the difference), a few empty lines
//! before a request line are skipped (§2.2), and a status line may omit the space before an
//! empty reason phrase. Everything else that the grammar forbids is rejected: a bare CR,
//! whitespace before a colon, obs-fold, control characters in values.

use std::io::{self, BufRead};

use super::authority::{absolute_form_parts, is_valid_host};
use super::{is_token, Headers, HeadersBuilder, Request, Response, Version};
use crate::error::{is_timeout, Error, ParseError, Result, Side};

/// Longest request line accepted by default, in bytes (RFC 9112 §3: at least 8000 advised).
pub const MAX_REQUEST_LINE: usize = 8 * 1024;
/// Largest header section accepted by default, in bytes (the sum of its lines).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Most header fields accepted by default in one head.
pub const MAX_HEADERS: usize = 100;
/// Room reserved for header fields up front; most messages have fewer.
const TYPICAL_HEADERS: usize = 16;
/// Empty lines skipped before a request line (RFC 9112 §2.2) before giving up.
pub const MAX_LEADING_EMPTY_LINES: usize = 8;

/// Limits on one message head. Exceeding one is an error value, never a hang.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest start line (request line or status line), in bytes.
    pub max_line: usize,
    /// Largest header section, in bytes, line endings excluded.
    pub max_header_bytes: usize,
    /// Most header fields.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: MAX_REQUEST_LINE,
            max_header_bytes: MAX_HEADER_BYTES,
            max_headers: MAX_HEADERS,
        }
    }
}

/// Reads one request head. `Ok(None)` means the client sent nothing: it closed the
/// connection, or stayed idle past the read timeout. Both are the normal end of a keep-alive
/// connection (RFC 9112 §9.8), not an error.
///
/// # Errors
/// `Error::Parse(Side::Client, _)` for malformed input or a limit exceeded (the variant
/// carries the status: 400, 414, 431 or 505); `Error::Io(Side::Client, _)` for socket
/// errors, and for a timeout once part of the head has arrived (a 408).
pub fn read_request(r: &mut impl BufRead, limits: &Limits) -> Result<Option<Request>> {
    let side = Side::Client;
    loop {
        match r.fill_buf() {
            Ok([]) => return Ok(None),
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => return Ok(None),
            Err(e) => return Err(Error::Io(side, e)),
        }
    }
    let mut scratch = Vec::new();
    let mut empty_lines = 0;
    let (method, target, version) = loop {
        let start = with_line(r, &mut scratch, limits.max_line, |kind, line| match kind {
            Line::Eof => Ok(Start::Closed),
            Line::Partial => Err(ParseError::UnexpectedEof),
            Line::TooLong => Err(ParseError::RequestLineTooLong),
            Line::Complete if line.is_empty() && empty_lines < MAX_LEADING_EMPTY_LINES => {
                Ok(Start::Blank)
            }
            Line::Complete => parse_request_line(line).map(Start::RequestLine),
        });
        match start.map_err(|e| Error::Io(side, e))? {
            Ok(Start::Closed) => return Ok(None),
            Ok(Start::Blank) => empty_lines += 1,
            Ok(Start::RequestLine(parts)) => break parts,
            Err(e) => return Err(Error::Parse(side, e)),
        }
    };
    let headers = read_headers(r, limits, side, &mut scratch)?;
    let request = Request {
        method,
        target,
        version,
        headers,
    };
    check_host(&request).map_err(|e| Error::Parse(side, e))?;
    Ok(Some(request))
}

/// Most interim (1xx) responses accepted before the final one; more is a malformed
/// response (a backend could otherwise keep a reader busy forever).
pub const MAX_INTERIM_RESPONSES: usize = 8;

/// Reads response heads until the final one (RFC 9110 §15.2: any number of interim 1xx
/// responses may come first), at most `MAX_INTERIM_RESPONSES` of them, handing each interim
/// one to `interim` (which may relay it, or do nothing). A `101 Switching Protocols` is the
/// last response on its connection (§15.2.2), so it is returned as the final one: whether it
/// was asked for is the caller's business. The one loop past 1xx responses, for the proxy,
/// its health checks and the client.
///
/// # Errors
/// What `read_response` reports, what `interim` returns, and more than
/// `MAX_INTERIM_RESPONSES` interim responses (`TooManyHeaders`, as for any head that never
/// ends).
pub fn read_final_response(
    r: &mut impl BufRead,
    limits: &Limits,
    mut interim: impl FnMut(Response) -> Result<()>,
) -> Result<Response> {
    for _ in 0..=MAX_INTERIM_RESPONSES {
        let response = read_response(r, limits)?;
        if !response.is_interim() || response.status == 101 {
            return Ok(response);
        }
        interim(response)?;
    }
    Err(Error::Parse(Side::Backend, ParseError::TooManyHeaders))
}

/// Reads one response head (interim 1xx responses included: see `read_final_response`).
///
/// # Errors
/// `Error::Parse(Side::Backend, _)` for malformed input, a limit exceeded or a connection
/// closed before the head was complete; `Error::Io(Side::Backend, _)` for socket errors and
/// timeouts.
pub fn read_response(r: &mut impl BufRead, limits: &Limits) -> Result<Response> {
    let side = Side::Backend;
    let mut scratch = Vec::new();
    let status_line = with_line(r, &mut scratch, limits.max_line, |kind, line| match kind {
        Line::Complete => parse_status_line(line),
        Line::Eof | Line::Partial => Err(ParseError::UnexpectedEof),
        Line::TooLong => Err(ParseError::BadStatusLine),
    });
    let (version, status, reason) = status_line
        .map_err(|e| Error::Io(side, e))?
        .map_err(|e| Error::Parse(side, e))?;
    let headers = read_headers(r, limits, side, &mut scratch)?;
    Ok(Response {
        version,
        status,
        reason,
        headers,
    })
}

/// What the first lines of a request can be.
enum Start {
    /// The client closed the connection before sending anything.
    Closed,
    /// An empty line, skipped (RFC 9112 §2.2).
    Blank,
    /// Method, target and version.
    RequestLine((String, String, Version)),
}

/// The outcome of reading one line.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A whole line; the buffer holds it without its line ending.
    Complete,
    /// End of stream before any byte.
    Eof,
    /// End of stream in the middle of a line.
    Partial,
    /// A line longer than the limit. The connection cannot go on: the rest of the line
    /// may or may not have been read.
    TooLong,
}

/// Reads the next line and hands it to `f` without its line ending: in place when the
/// reader's buffer already holds all of it (the common case: no copy), otherwise gathered
/// into `scratch` by `read_line`. `f` gets the outcome, and the line when it is
/// `Line::Complete` (an empty slice otherwise).
fn with_line<T>(
    r: &mut impl BufRead,
    scratch: &mut Vec<u8>,
    max: usize,
    f: impl FnOnce(Line, &[u8]) -> T,
) -> io::Result<T> {
    let in_place = match r.fill_buf() {
        // We are at the start of a line, so the end of the stream here is a clean one.
        Ok([]) => return Ok(f(Line::Eof, &[])),
        Ok(buffered) => buffered.iter().position(|&b| b == b'\n'),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => None,
        Err(e) => return Err(e),
    };
    if let Some(lf) = in_place {
        // The buffer is still filled: this returns it without reading.
        let buffered = r.fill_buf()?;
        let content = match &buffered[..lf] {
            [content @ .., b'\r'] => content,
            content => content,
        };
        let out = if content.len() > max {
            f(Line::TooLong, &[])
        } else {
            f(Line::Complete, content)
        };
        r.consume(lf + 1);
        return Ok(out);
    }
    let kind = read_line(r, scratch, max)?;
    let line = if kind == Line::Complete {
        &scratch[..]
    } else {
        &[]
    };
    Ok(f(kind, line))
}

/// Reads up to and including the next LF, keeping at most `max` bytes of line content.
/// The line ending (LF, or CRLF) is not kept. A CR anywhere else is left in the line for the
/// caller to reject as a bare CR.
fn read_line(r: &mut impl BufRead, line: &mut Vec<u8>, max: usize) -> io::Result<Line> {
    line.clear();
    loop {
        let available = match r.fill_buf() {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(if line.is_empty() {
                Line::Eof
            } else {
                Line::Partial
            });
        }
        let (chunk, found_lf) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], true),
            None => (available, false),
        };
        // One byte of slack for the CR of a CRLF split across reads.
        if line.len() + chunk.len() > max + 1 {
            return Ok(Line::TooLong);
        }
        line.extend_from_slice(chunk);
        let used = chunk.len() + usize::from(found_lf);
        r.consume(used);
        if found_lf {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(if line.len() > max {
                Line::TooLong
            } else {
                Line::Complete
            });
        }
    }
}

/// Reads field lines up to the empty line that ends the head (RFC 9112 §5).
fn read_headers(
    r: &mut impl BufRead,
    limits: &Limits,
    side: Side,
    scratch: &mut Vec<u8>,
) -> Result<Headers> {
    let mut headers = HeadersBuilder::with_capacity(TYPICAL_HEADERS);
    let mut budget = limits.max_header_bytes;
    loop {
        let field = with_line(r, scratch, budget, |kind, line| match kind {
            Line::Complete => add_field(&mut headers, line, &mut budget, limits, side),
            Line::Eof | Line::Partial => Err(Error::Parse(side, ParseError::UnexpectedEof)),
            Line::TooLong => Err(Error::Parse(side, ParseError::HeadersTooLarge)),
        });
        let end_of_head = field.map_err(|e| Error::Io(side, e))??;
        if end_of_head {
            return Ok(headers.finish());
        }
    }
}

/// Adds one field line (without its line ending) to `headers`, within the limits; `true`
/// when it is the empty line that ends the head.
fn add_field(
    headers: &mut HeadersBuilder,
    line: &[u8],
    budget: &mut usize,
    limits: &Limits,
    side: Side,
) -> Result<bool> {
    if line.is_empty() {
        return Ok(true);
    }
    *budget = budget
        .checked_sub(line.len())
        .ok_or(Error::Parse(side, ParseError::HeadersTooLarge))?;
    if headers.len() == limits.max_headers {
        return Err(Error::Parse(side, ParseError::TooManyHeaders));
    }
    let (name, value) = parse_field_line(line).map_err(|e| Error::Parse(side, e))?;
    headers.push(name, value);
    Ok(false)
}

/// `field-line = field-name ":" OWS field-value OWS` (RFC 9112 §5, RFC 9110 §5.5).
fn parse_field_line(line: &[u8]) -> std::result::Result<(&[u8], &[u8]), ParseError> {
    // RFC 9112 §5.2: a line starting with whitespace continues the previous one (obs-fold);
    // a server MUST reject it with 400, and a proxy MAY reject it in a response.
    if line[0] == b' ' || line[0] == b'\t' {
        return Err(ParseError::ObsFold);
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(ParseError::BadHeaderName)?;
    let name = &line[..colon];
    // RFC 9112 §5.1: no whitespace is allowed between the field name and the colon; a
    // server MUST reject such a request with 400, a proxy MUST remove it from a response.
    if name.last().is_some_and(|&b| b == b' ' || b == b'\t') {
        return Err(ParseError::SpaceBeforeColon);
    }
    if !is_token(name) {
        return Err(ParseError::BadHeaderName);
    }
    let value = trim_ows(&line[colon + 1..]);
    // field-value = *field-content; field-vchar = VCHAR / obs-text, with SP and HTAB inside.
    // CR, LF and NUL are explicitly dangerous (RFC 9110 §5.5); we reject every CTL.
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(if value.contains(&b'\r') {
            ParseError::BareCr
        } else {
            ParseError::BadHeaderValue
        });
    }
    Ok((name, value))
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// `request-line = method SP request-target SP HTTP-version` (RFC 9112 §3), exactly one SP
/// between the parts: extra spaces are a 400, not something to guess around.
fn parse_request_line(line: &[u8]) -> std::result::Result<(String, String, Version), ParseError> {
    if line.contains(&b'\r') {
        return Err(ParseError::BareCr);
    }
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::BadRequestLine);
    };
    if !is_token(method) {
        return Err(ParseError::BadMethod);
    }
    // request-target is a URI reference: visible ASCII only (RFC 3986 §2, RFC 9112 §3.2).
    if target.is_empty() || !target.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(ParseError::BadTarget);
    }
    let version = parse_version(version)?;
    check_target_form(method, target)?;
    Ok((latin1(method), latin1(target), version))
}

/// The four request-target forms (RFC 9112 §3.2): origin-form `/path?q`, absolute-form
/// `http://host/path`, authority-form `host:port` (CONNECT only) and asterisk-form `*`
/// (OPTIONS only).
fn check_target_form(method: &[u8], target: &[u8]) -> std::result::Result<(), ParseError> {
    let ok = match target {
        [b'/', ..] => true,
        b"*" => method == b"OPTIONS",
        _ if method == b"CONNECT" => !target.contains(&b'/'),
        _ => absolute_form_parts(&latin1(target)).is_some(),
    };
    if ok {
        Ok(())
    } else {
        Err(ParseError::BadTarget)
    }
}

/// `HTTP-version = "HTTP" "/" DIGIT "." DIGIT`, case-sensitive (RFC 9112 §2.3).
fn parse_version(v: &[u8]) -> std::result::Result<Version, ParseError> {
    match v {
        b"HTTP/1.1" => Ok(Version::Http11),
        b"HTTP/1.0" => Ok(Version::Http10),
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Err(ParseError::UnsupportedVersion)
        }
        _ => Err(ParseError::BadVersion),
    }
}

/// `status-line = HTTP-version SP status-code SP [ reason-phrase ]` (RFC 9112 §4).
/// A response of HTTP/1.x with a minor version above 1 is read as HTTP/1.1 (§2.3).
fn parse_status_line(line: &[u8]) -> std::result::Result<(Version, u16, String), ParseError> {
    if line.len() < 12 || line.contains(&b'\r') {
        return Err(ParseError::BadStatusLine);
    }
    let version = match &line[..8] {
        b"HTTP/1.0" => Version::Http10,
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor] if minor.is_ascii_digit() => {
            Version::Http11
        }
        _ => return Err(ParseError::BadStatusLine),
    };
    let code = &line[9..12];
    if line[8] != b' ' || !code.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::BadStatusLine);
    }
    let status = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    if status < 100 {
        return Err(ParseError::BadStatusLine);
    }
    let reason = match &line[12..] {
        [] => &[][..],
        [b' ', reason @ ..] => reason,
        _ => return Err(ParseError::BadStatusLine),
    };
    if reason
        .iter()
        .any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        return Err(ParseError::BadStatusLine);
    }
    Ok((version, status, latin1(reason)))
}

/// RFC 9112 §3.2: a server MUST respond 400 to an HTTP/1.1 request without a Host field, or
/// with more than one, or with an invalid one.
fn check_host(req: &Request) -> std::result::Result<(), ParseError> {
    let mut hosts = req.headers.get_all("host");
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Err(ParseError::DuplicateHost),
        (None, _) if req.version == Version::Http11 => Err(ParseError::MissingHost),
        (Some(host), None) if !is_valid_host(host) => Err(ParseError::MissingHost),
        _ => Ok(()),
    }
}

/// Bytes as a `String` of one char per byte (ISO-8859-1), so any byte survives the trip.
pub(crate) fn latin1(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if s.is_ascii() => s.to_string(),
        _ => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(bytes: &[u8]) -> Result<Option<Request>> {
        read_request(&mut &bytes[..], &Limits::default())
    }

    fn request_error(bytes: &[u8]) -> ParseError {
        match request(bytes) {
            Err(Error::Parse(Side::Client, e)) => e,
            other => panic!("expected a client parse error, got {other:?}"),
        }
    }

    fn response(bytes: &[u8]) -> Result<Response> {
        read_response(&mut &bytes[..], &Limits::default())
    }

    /// The outcome of parsing `bytes` as a request, compared through `Debug` (errors are not
    /// `PartialEq`), with the input arriving `step` bytes per read.
    fn parsed_in_steps(bytes: &[u8], step: usize, limits: &Limits) -> String {
        let mut reader = io::BufReader::with_capacity(step, bytes);
        format!("{:?}", read_request(&mut reader, limits))
    }

    #[test]
    fn interim_responses_are_handed_over_then_the_final_one_returned() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        let mut seen = Vec::new();
        let last = read_final_response(&mut &raw[..], &Limits::default(), |r| {
            seen.push(r.status);
            Ok(())
        })
        .unwrap();
        assert_eq!((seen, last.status), (vec![100, 103], 200));
        let switching = b"HTTP/1.1 101 Switching Protocols\r\n\r\nframes";
        let last =
            read_final_response(&mut &switching[..], &Limits::default(), |_| Ok(())).unwrap();
        assert_eq!(last.status, 101);
        let endless = "HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_INTERIM_RESPONSES + 1);
        let e = read_final_response(&mut endless.as_bytes(), &Limits::default(), |_| Ok(()));
        assert!(matches!(
            e,
            Err(Error::Parse(Side::Backend, ParseError::TooManyHeaders))
        ));
    }

    #[test]
    fn a_host_that_is_not_an_authority_is_refused() {
        assert_eq!(
            request_error(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:21094:80\r\n\r\n"),
            ParseError::MissingHost
        );
    }

    #[test]
    fn a_head_split_across_reads_parses_as_it_does_in_one_piece() {
        let limits = Limits {
            max_line: 64,
            max_header_bytes: 40,
            max_headers: 3,
        };
        let heads: [&[u8]; 8] = [
            b"GET /a HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n",
            b"\r\n\nGET /a HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET /0123456789012345678901234567890123456789012345678901234567890 HTTP/1.1\r\n\r\n",
            b"GET /a HTTP/1.1\nHost: h\nX-Caf\xc3: \xe9\n\n",
            b"GET /a HTTP/1.1\r\nHost: h\r\nX-Long: 0123456789012345678901234567890\r\n\r\n",
            b"GET /a HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
            b"GET /a HTTP/1.1\r\nHost: h\r\nBad\rName: 1\r\n\r\n",
            b"GET /a HTTP/1.1\r\nHost: h\r\nCut: short",
        ];
        for head in heads {
            let whole = format!("{:?}", read_request(&mut &head[..], &limits));
            for step in 1..=head.len() {
                assert_eq!(
                    parsed_in_steps(head, step, &limits),
                    whole,
                    "{} read {step} bytes at a time",
                    String::from_utf8_lossy(head)
                );
            }
        }
    }

    /// Every string of `a`, CR and LF up to `len` bytes.
    fn strings_of_a_cr_lf(len: usize) -> Vec<Vec<u8>> {
        let mut all = vec![Vec::new()];
        for n in 1..=len {
            let longer: Vec<Vec<u8>> = all
                .iter()
                .filter(|s| s.len() == n - 1)
                .flat_map(|s| {
                    b"a\r\n".iter().map(move |&b| {
                        let mut t = s.clone();
                        t.push(b);
                        t
                    })
                })
                .collect();
            all.extend(longer);
        }
        all
    }

    #[test]
    fn with_line_agrees_with_read_line_at_every_limit_and_read_size() {
        for input in strings_of_a_cr_lf(6) {
            for max in 0..=5 {
                let mut scratch = Vec::new();
                let expected = match read_line(&mut &input[..], &mut scratch, max).unwrap() {
                    Line::Complete => (Line::Complete, scratch.clone()),
                    other => (other, Vec::new()),
                };
                for step in 1..=input.len().max(1) {
                    let mut reader = io::BufReader::with_capacity(step, &input[..]);
                    let got = with_line(&mut reader, &mut Vec::new(), max, |kind, line| {
                        (kind, line.to_vec())
                    })
                    .unwrap();
                    assert_eq!(got, expected, "{input:?}, max {max}, {step} bytes a read");
                }
            }
        }
    }

    #[test]
    fn a_response_head_split_across_reads_parses_as_it_does_in_one_piece() {
        let limits = Limits {
            max_line: 24,
            ..Limits::default()
        };
        let heads: [&[u8]; 4] = [
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 204\nServer: s\n\n",
            b"HTTP/1.1 200 A reason far too long\r\n\r\n",
            b"HTTP/1.1 200 O",
        ];
        for head in heads {
            let whole = format!("{:?}", read_response(&mut &head[..], &limits));
            for step in 1..=head.len() {
                let mut reader = io::BufReader::with_capacity(step, head);
                let split = format!("{:?}", read_response(&mut reader, &limits));
                assert_eq!(split, whole, "read {step} bytes at a time");
            }
        }
    }

    #[test]
    fn reads_a_simple_request() {
        let req = request(b"GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(req.method, "GET");
        assert_eq!(req.target, "/a?b=1");
        assert_eq!(req.version, Version::Http11);
        assert_eq!(req.headers.get("host"), Some("example.com"));
        assert_eq!(req.headers.get("ACCEPT"), Some("*/*"));
    }

    #[test]
    fn clean_eof_before_a_request_is_none() {
        assert!(request(b"").unwrap().is_none());
        assert!(request(b"\r\n").unwrap().is_none());
    }

    /// A reader that yields `data`, then times out like a socket with a read timeout.
    struct Stalls<'a>(&'a [u8]);

    impl io::Read for Stalls<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::Error::new(io::ErrorKind::WouldBlock, "timed out"));
            }
            let n = self.0.len().min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn an_idle_timeout_ends_quietly_but_a_stalled_head_is_408() {
        let limits = Limits::default();
        let idle = read_request(&mut io::BufReader::new(Stalls(b"")), &limits);
        assert!(matches!(idle, Ok(None)));
        let stalled = read_request(
            &mut io::BufReader::new(Stalls(b"GET / HTTP/1.1\r\nHo")),
            &limits,
        );
        assert_eq!(stalled.unwrap_err().status(), Some(408));
    }

    #[test]
    fn eof_inside_a_head_is_an_error() {
        assert_eq!(request_error(b"GET / HT"), ParseError::UnexpectedEof);
        assert_eq!(
            request_error(b"GET / HTTP/1.1\r\nHost: a\r\n"),
            ParseError::UnexpectedEof
        );
    }

    #[test]
    fn bare_lf_line_endings_are_accepted_in_the_head() {
        let req = request(b"GET / HTTP/1.1\nHost: a\n\n").unwrap().unwrap();
        assert_eq!(req.headers.get("host"), Some("a"));
    }

    #[test]
    fn bare_cr_is_rejected() {
        assert_eq!(
            request_error(b"GET / HTTP/1.1\rHost: a\r\n\r\n"),
            ParseError::BareCr
        );
        assert_eq!(
            request_error(b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"),
            ParseError::BareCr
        );
    }

    #[test]
    fn leading_empty_lines_are_skipped() {
        let req = request(b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert!(req.is_some());
    }

    #[test]
    fn malformed_request_lines_are_400() {
        for line in [
            &b"GET  / HTTP/1.1"[..],
            b"GET / HTTP/1.1 ",
            b" GET / HTTP/1.1",
            b"GET /",
            b"GET\t/ HTTP/1.1",
        ] {
            let mut msg = line.to_vec();
            msg.extend_from_slice(b"\r\nHost: a\r\n\r\n");
            assert_eq!(request_error(&msg).status(), 400, "{line:?}");
        }
        assert_eq!(
            request_error(b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n"),
            ParseError::BadMethod
        );
        assert_eq!(
            request_error(b"GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n"),
            ParseError::BadTarget
        );
        assert_eq!(
            request_error(b"GET a HTTP/1.1\r\nHost: a\r\n\r\n"),
            ParseError::BadTarget
        );
        assert_eq!(
            request_error(b"GET / http/1.1\r\nHost: a\r\n\r\n"),
            ParseError::BadVersion
        );
    }

    #[test]
    fn other_versions_are_505() {
        for v in ["HTTP/2.0", "HTTP/1.2", "HTTP/0.9"] {
            let msg = format!("GET / {v}\r\nHost: a\r\n\r\n");
            assert_eq!(request_error(msg.as_bytes()).status(), 505, "{v}");
        }
    }

    #[test]
    fn a_long_request_line_is_414_and_a_large_header_section_431() {
        let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9000));
        assert_eq!(request_error(long.as_bytes()).status(), 414);
        let big = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "b".repeat(70_000)
        );
        assert_eq!(request_error(big.as_bytes()).status(), 431);
        let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for i in 0..100 {
            many.push_str(&format!("X-{i}: v\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(request_error(many.as_bytes()), ParseError::TooManyHeaders);
    }

    #[test]
    fn the_line_limit_counts_content_not_the_line_ending() {
        let limits = Limits {
            max_line: 16,
            ..Limits::default()
        };
        let exact = b"GET /23456 HTTP/1.1\r\nHost: a\r\n\r\n";
        assert!(read_request(&mut &exact[..], &limits).is_err());
        let fits = b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
        assert!(read_request(&mut &fits[..], &limits).unwrap().is_some());
    }

    #[test]
    fn malformed_fields_are_rejected() {
        let cases: [(&[u8], ParseError); 6] = [
            (b"Host : a", ParseError::SpaceBeforeColon),
            (b"Host: a\r\n folded", ParseError::ObsFold),
            (b"Bad Name: a", ParseError::BadHeaderName),
            (b"NoColon", ParseError::BadHeaderName),
            (b"X: a\x00b", ParseError::BadHeaderValue),
            (b": empty-name", ParseError::BadHeaderName),
        ];
        for (field, expected) in cases {
            let mut msg = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
            msg.extend_from_slice(field);
            msg.extend_from_slice(b"\r\n\r\n");
            assert_eq!(request_error(&msg), expected, "{field:?}");
        }
    }

    #[test]
    fn field_values_lose_surrounding_whitespace_and_keep_obs_text() {
        let req = request(b"GET / HTTP/1.1\r\nHost: a\r\nX-Name: \t caf\xe9 ok \t\r\n\r\n")
            .unwrap()
            .unwrap();
        let value = req.headers.get("x-name").unwrap();
        assert_eq!(value, "caf\u{e9} ok");
        assert_eq!(value.chars().map(|c| c as u32).nth(3), Some(0xe9));
    }

    #[test]
    fn host_rules_of_rfc_9112_section_3_2() {
        assert_eq!(
            request_error(b"GET / HTTP/1.1\r\n\r\n"),
            ParseError::MissingHost
        );
        assert_eq!(
            request_error(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            ParseError::DuplicateHost
        );
        assert_eq!(
            request_error(b"GET / HTTP/1.1\r\nHost: a b/c\r\n\r\n"),
            ParseError::MissingHost
        );
        assert!(request(b"GET / HTTP/1.0\r\n\r\n").unwrap().is_some());
        assert!(request(b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n")
            .unwrap()
            .is_some());
    }

    #[test]
    fn absolute_form_targets() {
        assert_eq!(
            absolute_form_parts("http://example.com:8080/a?b"),
            Some(("example.com:8080", "/a?b".to_string()))
        );
        assert_eq!(
            absolute_form_parts("HTTP://h?q"),
            Some(("h", "/?q".to_string()))
        );
        assert_eq!(
            absolute_form_parts("http://h"),
            Some(("h", "/".to_string()))
        );
        assert_eq!(absolute_form_parts("ftp://h/"), None);
        assert_eq!(absolute_form_parts("http:///a"), None);
        assert_eq!(absolute_form_parts("http://user@h/"), None);
        assert!(request(b"GET http://h/x HTTP/1.1\r\nHost: h\r\n\r\n")
            .unwrap()
            .is_some());
        assert!(request(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n")
            .unwrap()
            .is_some());
        assert_eq!(
            request_error(b"GET * HTTP/1.1\r\nHost: h\r\n\r\n"),
            ParseError::BadTarget
        );
    }

    #[test]
    fn reads_responses() {
        let r = response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi").unwrap();
        assert_eq!((r.status, r.reason.as_str()), (200, "OK"));
        assert_eq!(r.headers.get("content-length"), Some("2"));
        let r = response(b"HTTP/1.0 404 \r\n\r\n").unwrap();
        assert_eq!(
            (r.version, r.status, r.reason.as_str()),
            (Version::Http10, 404, "")
        );
        let r = response(b"HTTP/1.1 204\r\n\r\n").unwrap();
        assert_eq!(r.status, 204);
    }

    #[test]
    fn malformed_responses_are_backend_errors() {
        for bytes in [
            &b"HTTP/1.1 2000 OK\r\n\r\n"[..],
            b"HTTP/2 200 OK\r\n\r\n",
            b"ICY 200 OK\r\n\r\n",
            b"HTTP/1.1 099 Low\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n",
            b"",
        ] {
            match response(bytes) {
                Err(e @ Error::Parse(Side::Backend, _)) => assert_eq!(e.status(), Some(502)),
                other => panic!("{bytes:?}: expected a backend parse error, got {other:?}"),
            }
        }
    }

    #[test]
    fn reads_one_head_at_a_time_from_a_pipelined_stream() {
        let bytes = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut r = &bytes[..];
        let limits = Limits::default();
        assert_eq!(read_request(&mut r, &limits).unwrap().unwrap().target, "/1");
        assert_eq!(read_request(&mut r, &limits).unwrap().unwrap().target, "/2");
        assert!(read_request(&mut r, &limits).unwrap().is_none());
    }

    #[test]
    fn a_head_split_across_tiny_reads_is_read_whole() {
        let bytes = b"GET /split HTTP/1.1\r\nHost: a\r\nX-Long: 0123456789\r\n\r\n";
        let mut r = io::BufReader::with_capacity(3, &bytes[..]);
        let req = read_request(&mut r, &Limits::default()).unwrap().unwrap();
        assert_eq!(req.target, "/split");
        assert_eq!(req.headers.get("x-long"), Some("0123456789"));
    }
}
