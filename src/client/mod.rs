//! The HTTP client behind `client LOG_FILE URL`: one request on its own connection, the
//! redirects it leads to, a private cache on disk, and a log line for every request.
//!
//! This file is the client's steps in order, each a function here that calls the module
//! that knows how:
//!
//! ```text
//! fetch     open the log (log) → follow → exit status (error)
//! follow    parse the URL (url) → exchange → one log line (log)
//!           → with -L and a redirect: exchange again, at most MAX_REDIRECTS times
//! exchange  build the request → cache lookup (caching) ─ fresh ─────────────→ deliver stored
//!           └ stale or miss → connect → send → read the head (connection)
//!             → 304 to a stale entry: refresh it (caching) → deliver stored
//!             → otherwise: invalidate, open an entry (caching) → deliver, teed into the entry
//! ```
//!
//! Delivering (`session`) prints the head with `-i`, then copies the body to stdout or a
//! file (`output`). A redirect may turn the method into GET (`redirected_method`). Messages are read and
//! written with the library's own parser and serializer (`http`), so the client is exactly
//! as strict as the proxy about what a server sends. Every socket has a connect timeout and
//! read/write timeouts, shortened to what `--max-time` leaves (`connection`).
//!
//! The cache is a private cache (RFC 9111) with the proxy's rules and file format
//! (`crate::cache`, through `caching`). The command line is `cli`; failures are
//! `ClientError` values (`error`), whose `exit_code` is the one place that turns them into
//! exit statuses.

pub mod cli;

mod caching;
mod connection;
mod error;
mod log;
mod output;
mod session;
mod url;

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use chrono::Local;

use crate::cache::Store;
use crate::error::{Error, Side};
use crate::http::body::{response_framing, BodyReader, Framing};
use crate::http::{serialize, Request, Response};
use caching::{Lookup, Stored};
use error::{ClientError, Result, EXIT_FILE, EXIT_OK};
use log::Source;
use output::Output;
use session::{Delivery, Session};
use url::{Url, UrlError};

/// Sent in every request's User-Agent field.
pub(crate) const USER_AGENT: &str = concat!("relevo-client/", env!("CARGO_PKG_VERSION"));
/// Content-Type of a `-d` / `--data-binary` body unless `-H` sets one (as curl does).
pub(crate) const FORM_TYPE: &str = "application/x-www-form-urlencoded";
/// Where the cache lives unless `--cache-dir` says otherwise.
pub(crate) const DEFAULT_CACHE_DIR: &str = "cache/client";
/// Freshness lifetime of responses without explicit freshness, unless `--ttl` says otherwise.
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// Most redirects followed with `-L`.
pub(crate) const MAX_REDIRECTS: usize = 10;
/// Read buffer on the connection, in bytes.
pub(crate) const READ_BUFFER: usize = 64 * 1024;
/// Most bytes the client's cache keeps in all its entries; the oldest go first beyond it.
pub(crate) const CACHE_MAX_SIZE: u64 = 512 * 1024 * 1024;
/// Largest body the client's cache stores, in bytes; bigger ones are only delivered.
pub(crate) const CACHE_MAX_OBJECT: u64 = 64 * 1024 * 1024;

/// Most bytes `-d @FILE` reads from its file: the file is read whole, to drop its line
/// breaks; `--data-binary @FILE` streams a file of any size.
pub(crate) const MAX_FORM_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The request body given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Data {
    /// `-d`, repeated or not: its parts joined with `&`, as curl does.
    Form(Vec<FormPart>),
    /// `--data-binary DATA`: these bytes.
    Bytes(Vec<u8>),
    /// `--data-binary @FILE`: the file's bytes, read afresh for every request sent.
    File(PathBuf),
}

/// One `-d` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FormPart {
    /// `-d DATA`: the text as given.
    Text(String),
    /// `-d @FILE`: the file's bytes without their CR and LF, read for every request sent.
    File(PathBuf),
}

/// Everything the command line says about one fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Options {
    /// `-X`: the method; `None` picks HEAD with `head`, POST with `data`, else GET.
    pub method: Option<String>,
    /// `-d` / `--data-binary`: the request body.
    pub data: Option<Data>,
    /// `-H`: extra fields in order; a `None` value removes a field the client would send.
    pub headers: Vec<(String, Option<String>)>,
    /// `-I`: send HEAD and print the response head.
    pub head: bool,
    /// `-i`: print the response head before the body.
    pub include: bool,
    /// `-o` / `-O`: where the body goes, instead of the choice by type.
    pub output: Option<Output>,
    /// `-L`: follow redirects.
    pub location: bool,
    /// `-v`: request and response heads on stderr.
    pub verbose: bool,
    /// `-s`: no progress meter, no error message, no note about the cache on stderr.
    pub silent: bool,
    /// `-S`: error messages even with `-s`.
    pub show_error: bool,
    /// `--no-cache`: never answer from the cache (responses are still stored).
    pub no_cache: bool,
    /// `--cache-dir`: the cache's directory.
    pub cache_dir: PathBuf,
    /// `--ttl`: freshness lifetime of responses without explicit freshness.
    pub ttl: Duration,
    /// `--max-time`: limit on the whole run, redirects included.
    pub max_time: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            method: None,
            data: None,
            headers: Vec::new(),
            head: false,
            include: false,
            output: None,
            location: false,
            verbose: false,
            silent: false,
            show_error: false,
            no_cache: false,
            cache_dir: PathBuf::from(DEFAULT_CACHE_DIR),
            ttl: DEFAULT_TTL,
            max_time: None,
        }
    }
}

impl Options {
    /// The method of the first request: `-X`, else HEAD for `-I`, POST with a body, or GET.
    pub(crate) fn method(&self) -> String {
        match (&self.method, self.head, &self.data) {
            (Some(method), _, _) => method.clone(),
            (None, true, _) => "HEAD".to_string(),
            (None, false, Some(_)) => "POST".to_string(),
            (None, false, None) => "GET".to_string(),
        }
    }

    /// Whether a failure is said on stderr: always, unless `-s` without `-S` (as in curl).
    pub(crate) fn shows_errors(&self) -> bool {
        !self.silent || self.show_error
    }
}

/// Whether stdout and stderr are terminals (`std::io::IsTerminal`), for the progress meter,
/// and whether stdout is a pipe, for printing text as it arrives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Terminal {
    /// Standard output is a terminal.
    pub stdout: bool,
    /// Standard output is a pipe or a socket: another program may be reading as text comes.
    pub stdout_pipe: bool,
    /// Standard error is a terminal.
    pub stderr: bool,
}

impl Terminal {
    /// Whether a body on stdout is flushed after each read, so that it is seen as it
    /// arrives: on a terminal or a pipe, not in a file.
    pub(crate) fn stdout_is_watched(self) -> bool {
        self.stdout || self.stdout_pipe
    }
}

/// `client flush`: removes every cache entry under `cache_dir` and says what went.
pub(crate) fn flush(cache_dir: &Path, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let store = Store::new(cache_dir, CACHE_MAX_SIZE, CACHE_MAX_OBJECT);
    let dir = cache_dir.display();
    let said = match store.flush() {
        Ok((0, _)) => writeln!(out, "{dir}: nothing to remove, the cache is empty"),
        Ok((1, bytes)) => writeln!(out, "{dir}: removed 1 cache entry ({bytes} bytes)"),
        Ok((n, bytes)) => writeln!(out, "{dir}: removed {n} cache entries ({bytes} bytes)"),
        Err(e) => {
            let _ = writeln!(err, "client: cannot flush the cache in {dir}: {e}");
            return EXIT_FILE;
        }
    };
    match said {
        Ok(()) => EXIT_OK,
        Err(_) => EXIT_FILE,
    }
}

/// `client LOG_FILE URL`: fetches `url` (and its redirects with `-L`), writes the body where
/// it belongs, appends one line per request to `log_file`, and returns the exit status. A
/// failure is one line on `err` (and a log line when the log could be opened).
pub(crate) fn fetch(
    log_file: &Path,
    url: &str,
    options: &Options,
    out: &mut dyn Write,
    err: &mut dyn Write,
    terminal: Terminal,
) -> u8 {
    let log = match log::open(log_file) {
        Ok(log) => log,
        Err(e) => {
            if options.shows_errors() {
                let _ = writeln!(err, "client: {e}");
            }
            return e.exit_code();
        }
    };
    let mut session = Session::new(options, log, out, err, terminal);
    match follow(&mut session, url) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            session.report(&e);
            e.exit_code()
        }
    }
}

/// One request of the chain: where, with which method, and whether the body goes along.
struct Hop {
    url: Url,
    method: String,
    with_body: bool,
    /// Same host and port as the URL given: credentials set with `-H` go along.
    same_origin: bool,
}

/// What one request turned into, for the log and the redirect loop.
struct Answer {
    status_line: String,
    status: u16,
    source: Source,
    /// With `-L`, a redirect to follow: the Location as sent, and where it leads.
    redirect: Option<Redirect>,
}

/// A redirect's Location as sent, and the URL it leads to (or why it leads nowhere).
type Redirect = (String, std::result::Result<Url, UrlError>);

/// The first request, then each redirect while `-L` allows; one log line per request, on
/// success and on failure alike.
fn follow(session: &mut Session, input: &str) -> Result<()> {
    let method = session.options.method();
    let url = Url::parse(input).map_err(|e| {
        let e = ClientError::Url(e);
        session.log_error(
            Local::now(),
            &log::request_line(&method, input),
            &e,
            Duration::ZERO,
        );
        e
    })?;
    let origin = url.authority();
    let with_body = session.options.data.is_some();
    let mut hop = Hop {
        url,
        method,
        with_body,
        same_origin: true,
    };
    let mut redirects = 0;
    loop {
        let (when, started) = (Local::now(), Instant::now());
        let line = log::request_line(&hop.method, &hop.url.to_string());
        session.start_request();
        let answer = match exchange(session, &hop) {
            Ok(answer) => answer,
            Err(e) => {
                session.log_error(when, &line, &e, started.elapsed());
                return Err(e);
            }
        };
        let source = answer.source.as_str();
        session.log(when, &line, &answer.status_line, started.elapsed(), source);
        let Some((location, next)) = answer.redirect else {
            return Ok(());
        };
        if let Some(method) = redirected_method(answer.status, &hop.method) {
            hop.method = method.to_string();
            hop.with_body = false;
        }
        let next = match next {
            Ok(_) if redirects == MAX_REDIRECTS => {
                Err(ClientError::TooManyRedirects(MAX_REDIRECTS))
            }
            next => next.map_err(ClientError::Url),
        };
        match next {
            Ok(url) => {
                redirects += 1;
                hop.same_origin = url.authority() == origin;
                hop.url = url;
            }
            Err(e) => {
                let next_line = log::request_line(&hop.method, &location);
                session.log_error(Local::now(), &next_line, &e, Duration::ZERO);
                return Err(e);
            }
        }
    }
}

/// One request, its steps in order: build it; ask the cache; unless a fresh entry answers,
/// connect, send and read the head; a 304 to a stale entry refreshes it and it answers;
/// otherwise drop what an unsafe method changed, open an entry when the response may be
/// stored, and deliver the body to its destination and the entry at once.
fn exchange(session: &mut Session, hop: &Hop) -> Result<Answer> {
    let options = session.options;
    let payload = session.payload(hop.with_body)?;
    let length = payload.content_length();
    let mut request = build_request(
        &hop.url,
        &hop.method,
        length,
        &options.headers,
        hop.same_origin,
    );
    let lookup = if options.no_cache {
        Lookup::Miss
    } else {
        caching::lookup(&session.store, &request, options.ttl, SystemTime::now())
    };
    let stale = match lookup {
        Lookup::Fresh(stored) => {
            return answer_stored(session, hop, &request, stored, Source::Cache)
        }
        Lookup::Stale(stored, conditions) => {
            for (name, value) in conditions {
                request.headers.append(name, value);
            }
            Some(stored)
        }
        Lookup::Miss => None,
    };

    let mut conn = BufReader::with_capacity(READ_BUFFER, session.connect(&hop.url)?);
    session.verbose_head("> ", &serialize::request_head_with_room(&request, 0));
    let response = connection::round_trip(&mut conn, &request, payload)?;
    session.verbose_head("< ", &serialize::response_head_bytes(&response));

    if let Some(stored) = stale.filter(|_| response.status == 304) {
        let stored = caching::revalidated(&session.store, stored, &response, SystemTime::now());
        return answer_stored(session, hop, &request, stored, Source::Revalidated);
    }
    caching::invalidate(&session.store, &request, &response);
    let framing =
        response_framing(&hop.method, &response).map_err(|e| Error::Parse(Side::Backend, e))?;
    let writer = caching::writer(&session.store, &request, &response, options.ttl);
    let redirect = redirect(options, &hop.url, &response);
    let how = Delivery {
        has_body: framing != Framing::Empty,
        length: match framing {
            Framing::Length(n) => Some(n),
            _ => None,
        },
        discard: redirect.is_some(),
        from_cache: false,
    };
    let mut body = BodyReader::new(&mut conn, framing);
    session.deliver(&hop.url, &response, &mut body, how, writer)?;
    Ok(Answer {
        status_line: response.status_line(),
        status: response.status,
        source: Source::Network,
        redirect,
    })
}

/// Answers from a stored entry, with its age and length (`caching::answer_head`).
fn answer_stored(
    session: &mut Session,
    hop: &Hop,
    request: &Request,
    mut stored: Stored,
    source: Source,
) -> Result<Answer> {
    let (response, age) = caching::answer_head(&stored.entry, SystemTime::now());
    session.cache_note(&cache_note(source, age));
    session.verbose_head("< ", &serialize::response_head_bytes(&response));
    let redirect = redirect(session.options, &hop.url, &response);
    let how = Delivery {
        has_body: request.method != "HEAD" && !matches!(response.status, 204 | 304),
        length: Some(stored.entry.body_len),
        discard: redirect.is_some(),
        from_cache: true,
    };
    session.deliver(&hop.url, &response, stored.entry.body(), how, None)?;
    Ok(Answer {
        status_line: response.status_line(),
        status: response.status,
        source,
        redirect,
    })
}

/// What stderr says of an answer from the client's cache (curl users do not expect a
/// cache): its age and how to skip it, or that the server confirmed it.
fn cache_note(source: Source, age: Duration) -> String {
    match source {
        Source::Revalidated => {
            "from the client cache, confirmed by the server (304 Not Modified)".to_string()
        }
        Source::Cache | Source::Network => format!(
            "from the client cache, age {} s (--no-cache to ask the server)",
            age.as_secs()
        ),
    }
}

/// The method a redirect with `status` turns `method` into, `None` when it stays (and the
/// body goes along), as curl and browsers do (RFC 9110 §15.4):
/// - 303: the new URL is retrieved with GET, HEAD staying HEAD (§15.4.4);
/// - 301 and 302: POST becomes GET, which §15.4.2 and §15.4.3 allow "for historical
///   reasons"; other methods stay;
/// - 307 and 308: the method and the body stay (§15.4.8, §15.4.9).
fn redirected_method(status: u16, method: &str) -> Option<&'static str> {
    match status {
        303 if method != "HEAD" => Some("GET"),
        301 | 302 if method == "POST" => Some("GET"),
        _ => None,
    }
}

/// With `-L`, the redirect this response asks for (RFC 9110 §15.4, §10.2.2).
fn redirect(options: &Options, url: &Url, response: &Response) -> Option<Redirect> {
    if !options.location || !matches!(response.status, 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let location = response.headers.get("location")?;
    Some((location.to_string(), url.join(location)))
}

/// The request for `url`: Host, User-Agent, Accept, the body's Content-Length and
/// Content-Type, `Connection: close` (one request per connection), then the user's fields,
/// each replacing a default of the same name. Credentials set with `-H` are not sent to
/// another host than the first one (`same_origin` false), as curl does.
fn build_request(
    url: &Url,
    method: &str,
    body_len: Option<u64>,
    user_headers: &[(String, Option<String>)],
    same_origin: bool,
) -> Request {
    let mut request = Request::new(method, &url.target);
    let h = &mut request.headers;
    h.append("Host", url.authority());
    h.append("User-Agent", USER_AGENT);
    h.append("Accept", "*/*");
    if let Some(len) = body_len {
        h.append("Content-Length", len.to_string());
        h.append("Content-Type", FORM_TYPE);
    }
    h.append("Connection", "close");
    let mut replaced: Vec<&str> = Vec::new();
    for (name, value) in user_headers {
        let secret = ["authorization", "cookie", "proxy-authorization"]
            .iter()
            .any(|s| name.eq_ignore_ascii_case(s));
        if secret && !same_origin {
            continue;
        }
        if !replaced.iter().any(|r| r.eq_ignore_ascii_case(name)) {
            h.remove(name);
            replaced.push(name);
        }
        if let Some(value) = value {
            h.append(name.clone(), value.clone());
        }
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(fields: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
        fields
            .iter()
            .map(|(n, v)| (n.to_string(), v.map(str::to_string)))
            .collect()
    }

    #[test]
    fn requests_carry_the_defaults_and_the_users_fields() {
        let url = Url::parse("h:8080/a?b").unwrap();
        let r = build_request(&url, "GET", None, &[], true);
        let fields: Vec<_> = r.headers.iter().collect();
        assert_eq!(
            fields,
            [
                ("Host", "h:8080"),
                ("User-Agent", USER_AGENT),
                ("Accept", "*/*"),
                ("Connection", "close")
            ]
        );
        assert_eq!(r.request_line(), "GET /a?b HTTP/1.1");
        let users = user(&[
            ("accept", Some("text/html")),
            ("Accept", Some("image/png")),
            ("User-Agent", None),
            ("Content-Type", Some("application/json")),
            ("Authorization", Some("Bearer t")),
        ]);
        let r = build_request(&url, "POST", Some(2), &users, true);
        let h = &r.headers;
        assert_eq!(
            h.get_all("accept").collect::<Vec<_>>(),
            ["text/html", "image/png"]
        );
        assert!(!h.contains("user-agent"));
        assert_eq!(h.get("content-length"), Some("2"));
        assert_eq!(
            h.get_all("content-type").collect::<Vec<_>>(),
            ["application/json"]
        );
        assert_eq!(h.get("authorization"), Some("Bearer t"));
        let elsewhere = build_request(&url, "GET", None, &users, false);
        assert!(!elsewhere.headers.contains("authorization"));
    }

    #[test]
    fn answers_from_the_cache_say_so() {
        assert_eq!(
            cache_note(Source::Cache, Duration::from_millis(12_900)),
            "from the client cache, age 12 s (--no-cache to ask the server)"
        );
        assert!(cache_note(Source::Revalidated, Duration::ZERO).contains("304 Not Modified"));
    }

    #[test]
    fn redirects_change_the_method_as_curl_does() {
        for (status, method, after) in [
            (301, "POST", Some("GET")),
            (302, "POST", Some("GET")),
            (303, "POST", Some("GET")),
            (303, "PUT", Some("GET")),
            (303, "GET", Some("GET")),
            (303, "HEAD", None),
            (301, "PUT", None),
            (302, "DELETE", None),
            (301, "HEAD", None),
            (307, "POST", None),
            (308, "POST", None),
            (308, "PUT", None),
        ] {
            assert_eq!(
                redirected_method(status, method),
                after,
                "{status} {method}"
            );
        }
    }

    #[test]
    fn the_method_follows_the_options() {
        let mut o = Options::default();
        assert_eq!(o.method(), "GET");
        o.data = Some(Data::Bytes(b"x".to_vec()));
        assert_eq!(o.method(), "POST");
        o.method = Some("PUT".into());
        assert_eq!(o.method(), "PUT");
        let head = Options {
            head: true,
            ..Options::default()
        };
        assert_eq!(head.method(), "HEAD");
    }
}
