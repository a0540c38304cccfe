//! Errors: one enum for everything that can go wrong while serving a request, and the one
//! place (`Error::status`) that decides which HTTP status a failure becomes.
//!
//! A failure remembers which side caused it. The same malformed header is a `400 Bad Request`
//! when a client sent it and a `502 Bad Gateway` when a backend sent it; a timeout is `408`
//! from a client and `504` from a backend. Parse failures are a small `Copy` enum with fixed
//! messages (`ParseError`), so the parser never allocates to report one.
//!
//! The client reads responses with the same parser, so its HTTP and socket failures are
//! values of this enum too; its own failures (a bad URL, a refused connection, ...) and its
//! exit statuses are `client::error`'s.
//!
//! This module depends on nothing above it, builds no response (the proxy's error replies
//! are `proxy::reply`'s) and does not log.

use std::fmt;
use std::io;

/// Shorthand used across the crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Who sent the bytes that failed: the downstream client or an upstream backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The peer that sent us a request.
    Client,
    /// The server we forwarded a request to.
    Backend,
}

/// A malformed or unacceptable HTTP message. Each variant has a fixed message and, when a
/// client sent it, a fixed status code (`ParseError::status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The request line is longer than the configured limit.
    RequestLineTooLong,
    /// The header section is larger than the configured limit.
    HeadersTooLarge,
    /// More header fields than the configured limit.
    TooManyHeaders,
    /// The request line is not `method SP request-target SP HTTP-version`.
    BadRequestLine,
    /// The method is not a token (RFC 9110 §9.1).
    BadMethod,
    /// The request-target has a forbidden character or an unsupported form.
    BadTarget,
    /// The version is not `HTTP/DIGIT.DIGIT`.
    BadVersion,
    /// A well-formed version other than HTTP/1.0 and HTTP/1.1.
    UnsupportedVersion,
    /// The status line is not `HTTP-version SP 3DIGIT SP reason-phrase`.
    BadStatusLine,
    /// A field name is empty or not a token.
    BadHeaderName,
    /// Whitespace between a field name and the colon (RFC 9112 §5.1).
    SpaceBeforeColon,
    /// A line starting with whitespace: obsolete line folding (RFC 9112 §5.2).
    ObsFold,
    /// CR, LF, NUL or another control character inside a field value (RFC 9110 §5.5).
    BadHeaderValue,
    /// A CR that is not followed by LF (RFC 9112 §2.2).
    BareCr,
    /// An HTTP/1.1 request without a Host field, or with a malformed one (RFC 9112 §3.2).
    MissingHost,
    /// More than one Host field (RFC 9112 §3.2).
    DuplicateHost,
    /// A Content-Length that is not digits, overflows, or disagrees with another one.
    BadContentLength,
    /// Content-Length and Transfer-Encoding together in a request (RFC 9112 §6.1).
    LengthWithTransferEncoding,
    /// `chunked` twice, not last, or any Transfer-Encoding on HTTP/1.0 (RFC 9112 §6.1).
    BadTransferEncoding,
    /// A transfer coding other than `chunked` (RFC 9112 §6.1: 501).
    UnsupportedTransferEncoding,
    /// A chunk-size line, chunk extension, chunk terminator or trailer is malformed.
    BadChunk,
    /// The request body is larger than `max_body_size`.
    BodyTooLarge,
    /// The peer closed the connection in the middle of a message.
    UnexpectedEof,
    /// A `101 Switching Protocols` to a request that did not ask for that protocol
    /// (RFC 9110 §15.2.2).
    UnexpectedUpgrade,
}

impl ParseError {
    /// The status a client gets for sending this (RFC 9110 §15.5, §15.6).
    pub fn status(self) -> u16 {
        match self {
            ParseError::RequestLineTooLong => 414,
            ParseError::HeadersTooLarge | ParseError::TooManyHeaders => 431,
            ParseError::UnsupportedVersion => 505,
            ParseError::UnsupportedTransferEncoding => 501,
            ParseError::BodyTooLarge => 413,
            _ => 400,
        }
    }

    /// A short fixed description, used in logs and in error response bodies.
    pub fn message(self) -> &'static str {
        match self {
            ParseError::RequestLineTooLong => "request line too long",
            ParseError::HeadersTooLarge => "header section too large",
            ParseError::TooManyHeaders => "too many header fields",
            ParseError::BadRequestLine => "malformed request line",
            ParseError::BadMethod => "invalid method",
            ParseError::BadTarget => "invalid request-target",
            ParseError::BadVersion => "malformed HTTP version",
            ParseError::UnsupportedVersion => "HTTP version not supported",
            ParseError::BadStatusLine => "malformed status line",
            ParseError::BadHeaderName => "invalid header field name",
            ParseError::SpaceBeforeColon => "whitespace between field name and colon",
            ParseError::ObsFold => "obsolete line folding in header section",
            ParseError::BadHeaderValue => "invalid character in header field value",
            ParseError::BareCr => "bare CR in message head",
            ParseError::MissingHost => "missing or invalid Host header",
            ParseError::DuplicateHost => "more than one Host header",
            ParseError::BadContentLength => "invalid Content-Length",
            ParseError::LengthWithTransferEncoding => {
                "both Content-Length and Transfer-Encoding present"
            }
            ParseError::BadTransferEncoding => "invalid Transfer-Encoding",
            ParseError::UnsupportedTransferEncoding => "unsupported Transfer-Encoding",
            ParseError::BadChunk => "malformed chunked body",
            ParseError::BodyTooLarge => "request body too large",
            ParseError::UnexpectedEof => "connection closed in the middle of a message",
            ParseError::UnexpectedUpgrade => "switched protocols without being asked to",
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for ParseError {}

/// Everything that can go wrong in Relevo.
#[derive(Debug)]
pub enum Error {
    /// A malformed message, and who sent it.
    Parse(Side, ParseError),
    /// A socket error (including timeouts), and whose socket it was.
    Io(Side, io::Error),
    /// The method is not in the configured `methods` list (RFC 9110 §15.6.2: 501).
    MethodNotForwarded(String),
    /// The method is known but refused for every resource here: TRACE while `allow_trace`
    /// is off (RFC 9110 §15.5.6: 405).
    MethodNotAllowed(String),
    /// No backend could be connected to; holds the last failure for the log.
    NoBackend(String),
    /// A start-up failure caused by a value of the configuration file, already located at
    /// the line that set it (`proxy.conf:14: access_log: why`), so that it is printed like the
    /// file's own errors, without the program's name in front.
    Config(String),
    /// A start-up failure: binding the listener, opening the log file.
    Startup(String),
}

impl Error {
    /// The one mapping from errors to HTTP status codes. `None` means no response can or
    /// should be sent (the client went away, or start-up failed).
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Parse(Side::Client, ParseError::UnexpectedEof) => None,
            Error::Parse(Side::Client, e) => Some(e.status()),
            Error::Parse(Side::Backend, _) => Some(502),
            Error::Io(Side::Client, e) if is_timeout(e) => Some(408),
            Error::Io(Side::Client, _) => None,
            Error::Io(Side::Backend, e) if is_timeout(e) => Some(504),
            Error::Io(Side::Backend, _) => Some(502),
            Error::MethodNotForwarded(_) => Some(501),
            Error::MethodNotAllowed(_) => Some(405),
            Error::NoBackend(_) => Some(502),
            Error::Config(_) | Error::Startup(_) => None,
        }
    }

    /// Whether no backend could answer: none could be connected to, or the one tried failed
    /// (an error, a timeout, a malformed response). The cache may then serve a stale response
    /// instead of the 502 or 504 (`cache::stale_on_error`).
    pub fn is_backend_failure(&self) -> bool {
        matches!(
            self,
            Error::Parse(Side::Backend, _) | Error::Io(Side::Backend, _) | Error::NoBackend(_)
        )
    }

    /// What the client is told in the body of the error response. Client mistakes are
    /// named precisely; backend failures are described without internal addresses.
    pub fn reply_text(&self) -> &'static str {
        match self {
            Error::Parse(Side::Client, e) => e.message(),
            Error::Io(Side::Client, _) => "the request was not received in time",
            Error::Parse(Side::Backend, _) => "the backend sent a malformed response",
            Error::Io(Side::Backend, e) if is_timeout(e) => "the backend did not answer in time",
            Error::Io(Side::Backend, _) => "the backend connection failed",
            Error::MethodNotForwarded(_) => "this method is not forwarded by the proxy",
            Error::MethodNotAllowed(_) => "this method is refused by the proxy",
            Error::NoBackend(_) => "no backend could be reached",
            Error::Config(_) | Error::Startup(_) => "internal error",
        }
    }

    /// True when this error left a message half-read or half-written, so the connection it
    /// happened on cannot carry another message.
    pub fn breaks_framing(&self) -> bool {
        !matches!(
            self,
            Error::MethodNotForwarded(_) | Error::MethodNotAllowed(_) | Error::NoBackend(_)
        )
    }
}

/// Read and write timeouts surface as `WouldBlock` on Unix and `TimedOut` on Windows.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Parse(Side::Client, e) => write!(f, "bad request: {e}"),
            Error::Parse(Side::Backend, e) => write!(f, "bad response from backend: {e}"),
            Error::Io(Side::Client, e) if is_timeout(e) => f.write_str("client timed out"),
            Error::Io(Side::Client, e) => write!(f, "client connection: {e}"),
            Error::Io(Side::Backend, e) if is_timeout(e) => f.write_str("backend timed out"),
            Error::Io(Side::Backend, e) => write!(f, "backend connection: {e}"),
            Error::MethodNotForwarded(m) => write!(f, "method {m} is not forwarded"),
            Error::MethodNotAllowed(m) => write!(f, "method {m} is refused"),
            Error::NoBackend(why) => write!(f, "no backend available: {why}"),
            Error::Config(why) | Error::Startup(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_parse_error_is_4xx_from_client_and_502_from_backend() {
        let e = ParseError::BadHeaderName;
        assert_eq!(Error::Parse(Side::Client, e).status(), Some(400));
        assert_eq!(Error::Parse(Side::Backend, e).status(), Some(502));
    }

    #[test]
    fn timeouts_are_408_from_client_and_504_from_backend() {
        let t = || io::Error::new(io::ErrorKind::WouldBlock, "timed out");
        assert_eq!(Error::Io(Side::Client, t()).status(), Some(408));
        assert_eq!(Error::Io(Side::Backend, t()).status(), Some(504));
        let reset = io::Error::new(io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(Error::Io(Side::Backend, reset).status(), Some(502));
    }

    #[test]
    fn limit_errors_have_their_own_statuses() {
        assert_eq!(ParseError::RequestLineTooLong.status(), 414);
        assert_eq!(ParseError::HeadersTooLarge.status(), 431);
        assert_eq!(ParseError::TooManyHeaders.status(), 431);
        assert_eq!(ParseError::UnsupportedVersion.status(), 505);
        assert_eq!(ParseError::UnsupportedTransferEncoding.status(), 501);
        assert_eq!(ParseError::BodyTooLarge.status(), 413);
        assert_eq!(Error::MethodNotForwarded("PUT".into()).status(), Some(501));
        assert_eq!(Error::MethodNotAllowed("TRACE".into()).status(), Some(405));
    }
}
