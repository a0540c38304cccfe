//! The client's failures (`ClientError`), and the one place that turns them into exit
//! statuses (`ClientError::exit_code`, documented in `--help`) and into the line its user
//! reads (`Display`).
//!
//! A malformed or cut-short response and a failed socket are the library's own
//! `crate::error::Error`, wrapped as `ClientError::Http`: the client reads responses with
//! the same parser as the proxy and fails the same way. The rest happens only here: a URL
//! it cannot use, a name that does not resolve, a refused connection, too many redirects, a
//! local file it cannot use. The shared `Display` speaks of "the backend", as the proxy
//! does; this one words the same failures for a client's user.
//!
//! This module neither prints nor logs: `client` writes the description on stderr and in
//! the log line.

use std::fmt;
use std::io;
use std::path::Path;

use super::url::UrlError;
use crate::error::{is_timeout, Error, ParseError};

/// Exit status: a response was received, whatever its status code.
pub const EXIT_OK: u8 = 0;
/// Exit status: `https://` or another unsupported scheme, or an unexpected failure.
pub const EXIT_UNSUPPORTED: u8 = 1;
/// Exit status: bad command-line usage (clap's own).
pub const EXIT_USAGE: u8 = 2;
/// Exit status: a malformed URL (given, or in a redirect's Location).
pub const EXIT_BAD_URL: u8 = 3;
/// Exit status: the host name did not resolve.
pub const EXIT_RESOLVE: u8 = 6;
/// Exit status: the connection was refused or could not be opened.
pub const EXIT_CONNECT: u8 = 7;
/// Exit status: the server's response was malformed or cut short.
pub const EXIT_BAD_RESPONSE: u8 = 8;
/// Exit status: the server closed the connection before the end of the body (curl's
/// `CURLE_PARTIAL_FILE`).
pub const EXIT_PARTIAL: u8 = 18;
/// Exit status: a local file (log, output, `-d @FILE`, `--data-binary @FILE`) could not be
/// used.
pub const EXIT_FILE: u8 = 23;
/// Exit status: a timeout (resolving, connecting, reading) or `--max-time` reached.
pub const EXIT_TIMEOUT: u8 = 28;
/// Exit status: more than `MAX_REDIRECTS` redirects with `-L`.
pub const EXIT_REDIRECTS: u8 = 47;
/// Exit status: the connection failed while sending or receiving (reset, broken pipe).
pub const EXIT_NETWORK: u8 = 56;

/// Shorthand for the client's results.
pub type Result<T> = std::result::Result<T, ClientError>;

/// Everything that can end a run of the client.
#[derive(Debug)]
pub enum ClientError {
    /// A malformed response or a failed socket (timeouts included), as the shared HTTP
    /// layer reports it.
    Http(Error),
    /// A URL the client cannot use, given or in a redirect's Location.
    Url(UrlError),
    /// A host name that did not resolve: the name and the resolver's error.
    Resolve(String, io::Error),
    /// No TCP connection could be opened: the `host:port` tried and the last error.
    Connect(String, io::Error),
    /// The server closed the connection before the end of the body: the bytes received,
    /// and the length announced (`None` for a chunked body).
    CutShort {
        /// Body bytes received.
        received: u64,
        /// Content-Length, when the body had one.
        expected: Option<u64>,
    },
    /// A redirect beyond the limit, which is held here.
    TooManyRedirects(usize),
    /// A local file (log, output, request body, cache entry, stdout) that could not be
    /// used: what was being done with which file, and why.
    File(String, io::Error),
}

impl ClientError {
    /// A local file that could not be used: `what` (`cannot read`, ...) with which `path`.
    pub fn file(what: &str, path: &Path, e: io::Error) -> ClientError {
        ClientError::File(format!("{what} {}", path.display()), e)
    }

    /// Standard output that could not be written.
    pub fn stdout(e: io::Error) -> ClientError {
        ClientError::File("cannot write to standard output".to_string(), e)
    }

    /// A failure while reading a body of which `received` bytes had arrived, `expected`
    /// announced: a body cut short becomes `CutShort`; anything else stays as it is.
    pub fn in_body(self, received: u64, expected: Option<u64>) -> ClientError {
        match self {
            ClientError::Http(Error::Parse(_, ParseError::UnexpectedEof)) => {
                ClientError::CutShort { received, expected }
            }
            other => other,
        }
    }

    /// The one mapping from failures to the client's exit statuses (curl's numbers).
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Url(UrlError::Https | UrlError::UnsupportedScheme) => EXIT_UNSUPPORTED,
            ClientError::Url(_) => EXIT_BAD_URL,
            ClientError::Resolve(_, e)
            | ClientError::Connect(_, e)
            | ClientError::Http(Error::Io(_, e))
                if is_timeout(e) =>
            {
                EXIT_TIMEOUT
            }
            ClientError::Resolve(..) => EXIT_RESOLVE,
            ClientError::Connect(..) => EXIT_CONNECT,
            ClientError::Http(Error::Parse(..)) => EXIT_BAD_RESPONSE,
            ClientError::CutShort { .. } => EXIT_PARTIAL,
            ClientError::Http(Error::Io(..)) => EXIT_NETWORK,
            ClientError::Http(_) => EXIT_UNSUPPORTED,
            ClientError::File(..) => EXIT_FILE,
            ClientError::TooManyRedirects(_) => EXIT_REDIRECTS,
        }
    }
}

/// The one-line description of a failure, for stderr and the log.
impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Http(Error::Io(_, e)) if is_timeout(e) => write!(f, "timed out: {e}"),
            ClientError::Http(Error::Io(_, e)) => write!(f, "connection failed: {e}"),
            ClientError::Http(Error::Parse(_, ParseError::UnexpectedEof)) => f.write_str(
                "incomplete response: the server closed the connection in the middle of it",
            ),
            ClientError::Http(Error::Parse(_, p)) => write!(f, "malformed response: {p}"),
            ClientError::Http(other) => write!(f, "{other}"),
            ClientError::Url(e) => write!(f, "{e}"),
            ClientError::Resolve(host, e) if is_timeout(e) => {
                write!(f, "could not resolve host {host}: timed out")
            }
            ClientError::Resolve(host, e) => write!(f, "could not resolve host {host}: {e}"),
            ClientError::Connect(addr, e) if is_timeout(e) => {
                write!(f, "could not connect to {addr}: timed out")
            }
            ClientError::Connect(addr, e) => write!(f, "could not connect to {addr}: {e}"),
            ClientError::TooManyRedirects(max) => {
                write!(f, "too many redirects: stopped after following {max}")
            }
            ClientError::CutShort {
                received,
                expected: Some(length),
            } => write!(
                f,
                "incomplete response: the server closed the connection after {received} of \
                 {length} body bytes"
            ),
            ClientError::CutShort { received, .. } => write!(
                f,
                "incomplete response: the server closed the connection {received} bytes into \
                 the chunked body"
            ),
            ClientError::File(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Http(e) => Some(e),
            ClientError::Url(e) => Some(e),
            ClientError::Resolve(_, e) | ClientError::Connect(_, e) | ClientError::File(_, e) => {
                Some(e)
            }
            ClientError::TooManyRedirects(_) | ClientError::CutShort { .. } => None,
        }
    }
}

impl From<Error> for ClientError {
    fn from(e: Error) -> Self {
        ClientError::Http(e)
    }
}

impl From<UrlError> for ClientError {
    fn from(e: UrlError) -> Self {
        ClientError::Url(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Side;

    #[test]
    fn every_failure_has_its_exit_status() {
        let io = |kind| io::Error::new(kind, "x");
        let http = |e| ClientError::Http(e);
        let cases = [
            (ClientError::Url(UrlError::Https), EXIT_UNSUPPORTED),
            (ClientError::Url(UrlError::BadHost), EXIT_BAD_URL),
            (
                ClientError::Resolve("h".into(), io(io::ErrorKind::Other)),
                EXIT_RESOLVE,
            ),
            (
                ClientError::Resolve("h".into(), io(io::ErrorKind::TimedOut)),
                EXIT_TIMEOUT,
            ),
            (
                ClientError::Connect("h:1".into(), io(io::ErrorKind::ConnectionRefused)),
                EXIT_CONNECT,
            ),
            (
                http(Error::Io(Side::Backend, io(io::ErrorKind::WouldBlock))),
                EXIT_TIMEOUT,
            ),
            (
                http(Error::Io(Side::Backend, io(io::ErrorKind::ConnectionReset))),
                EXIT_NETWORK,
            ),
            (
                http(Error::Parse(Side::Backend, ParseError::BadStatusLine)),
                EXIT_BAD_RESPONSE,
            ),
            (
                ClientError::File("log".into(), io(io::ErrorKind::Other)),
                EXIT_FILE,
            ),
            (ClientError::TooManyRedirects(10), EXIT_REDIRECTS),
            (
                ClientError::CutShort {
                    received: 3,
                    expected: Some(10),
                },
                EXIT_PARTIAL,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.exit_code(), code, "{error:?}");
        }
    }

    #[test]
    fn only_a_body_that_ends_early_is_cut_short() {
        let eof = ClientError::from(Error::Parse(Side::Backend, ParseError::UnexpectedEof));
        let e = eof.in_body(3, Some(10));
        assert_eq!(e.exit_code(), EXIT_PARTIAL);
        assert_eq!(
            e.to_string(),
            "incomplete response: the server closed the connection after 3 of 10 body bytes"
        );
        let chunked = ClientError::from(Error::Parse(Side::Backend, ParseError::UnexpectedEof))
            .in_body(8, None);
        assert!(chunked
            .to_string()
            .ends_with("8 bytes into the chunked body"));
        // A malformed chunk or a reset is not a body cut short.
        let bad = ClientError::from(Error::Parse(Side::Backend, ParseError::BadChunk));
        assert_eq!(bad.in_body(0, None).exit_code(), EXIT_BAD_RESPONSE);
        let reset = io::Error::new(io::ErrorKind::ConnectionReset, "x");
        let reset = ClientError::from(Error::Io(Side::Backend, reset));
        assert_eq!(reset.in_body(0, None).exit_code(), EXIT_NETWORK);
    }

    #[test]
    fn failures_are_described_for_a_client_user() {
        let e = ClientError::from(Error::Parse(Side::Backend, ParseError::BadStatusLine));
        assert_eq!(e.to_string(), "malformed response: malformed status line");
        let e = ClientError::from(Error::Parse(Side::Backend, ParseError::UnexpectedEof));
        assert!(e.to_string().starts_with("incomplete response"));
        let e = ClientError::from(Error::Io(
            Side::Backend,
            io::Error::new(
                io::ErrorKind::TimedOut,
                "the --max-time limit of 1 s was reached",
            ),
        ));
        assert_eq!(
            e.to_string(),
            "timed out: the --max-time limit of 1 s was reached"
        );
        assert!(!e.to_string().contains("backend"));
        let e = ClientError::Connect("h:1".into(), io::Error::new(io::ErrorKind::TimedOut, "x"));
        assert_eq!(e.to_string(), "could not connect to h:1: timed out");
        assert_eq!(
            ClientError::TooManyRedirects(10).to_string(),
            "too many redirects: stopped after following 10"
        );
    }
}
