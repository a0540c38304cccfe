//! The HTTP client behind `client LOG_FILE URL`: one request on its own connection, the
//! redirects it leads to, a private cache on disk, and a log line for every request.
//!
//! One request goes through these steps, each a function below:
//!
//! ```text
//! parse URL → build request → cache lookup ─ fresh ───────────────────────────→ deliver → log
//!                                          └ stale/miss → connect → send → read head
//!                                                       → (304: refresh entry) → store + deliver → log
//! ```
//!
//! With `-L`, a 301, 302, 303, 307 or 308 with a `Location` starts the steps again for the
//! new URL, at most `MAX_REDIRECTS` times; 303 turns the method into GET (RFC 9110 §15.4).
//! Messages are read and written with the library's own parser and serializer (`http`), so
//! the client is exactly as strict as the proxy about what a server sends. Every socket has
//! a connect timeout and read/write timeouts, shortened to what `--max-time` leaves.
//!
//! The cache is a private cache (RFC 9111): the rules come from `cache` (called with
//! `shared = false`), the decisions about this client's requests are here (`may_use_stored`,
//! `may_store`, `vary_allows`, `classify`). Where bodies go is `output`, URLs are `url`,
//! the command line is `cli`. Failures are `ClientError` values (`error`), whose
//! `exit_code` is the one place that turns them into exit statuses.

pub mod cli;
pub mod connection;
pub mod error;
pub mod output;
pub mod url;

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Local};

use crate::cache::{self, Entry, EntryWriter, Store};
use crate::error::{Error, Side};
use crate::http::body::{read_error, response_framing, BodyReader, Framing, COPY_BUFFER};
use crate::http::{remove_hop_by_hop, serialize, Request, Response};
use connection::{Conn, Deadline, Payload};
use error::{ClientError, Result, EXIT_FILE, EXIT_OK};
use output::{pump, read_some, Output, Progress, Target};
use url::{Url, UrlError};

/// Sent in every request's User-Agent field.
pub const USER_AGENT: &str = concat!("relevo-client/", env!("CARGO_PKG_VERSION"));
/// Content-Type of a `-d` / `--data-binary` body unless `-H` sets one (as curl does).
pub const FORM_TYPE: &str = "application/x-www-form-urlencoded";
/// Where the cache lives unless `--cache-dir` says otherwise.
pub const DEFAULT_CACHE_DIR: &str = "cache/client";
/// Freshness lifetime of responses without explicit freshness, unless `--ttl` says otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// Most redirects followed with `-L`.
pub const MAX_REDIRECTS: usize = 10;
/// Read buffer on the connection, in bytes.
pub const READ_BUFFER: usize = 64 * 1024;
/// Most bytes the client's cache keeps in all its entries; the oldest go first beyond it.
pub const CACHE_MAX_SIZE: u64 = 512 * 1024 * 1024;
/// Largest body the client's cache stores, in bytes; bigger ones are only delivered.
pub const CACHE_MAX_OBJECT: u64 = 64 * 1024 * 1024;

/// The request body given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    /// `-d DATA` (joined with `&` when repeated) or `--data-binary DATA`: these bytes.
    Bytes(Vec<u8>),
    /// `--data-binary @FILE`: the file's bytes, read afresh for every request sent.
    File(PathBuf),
}

/// Everything the command line says about one fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
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
            no_cache: false,
            cache_dir: PathBuf::from(DEFAULT_CACHE_DIR),
            ttl: DEFAULT_TTL,
            max_time: None,
        }
    }
}

impl Options {
    /// The method of the first request: `-X`, else HEAD for `-I`, POST with a body, or GET.
    pub fn method(&self) -> String {
        match (&self.method, self.head, &self.data) {
            (Some(method), _, _) => method.clone(),
            (None, true, _) => "HEAD".to_string(),
            (None, false, Some(_)) => "POST".to_string(),
            (None, false, None) => "GET".to_string(),
        }
    }
}

/// Whether stdout and stderr are terminals (`std::io::IsTerminal`), for the progress meter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Terminal {
    /// Standard output is a terminal.
    pub stdout: bool,
    /// Standard error is a terminal.
    pub stderr: bool,
}

/// Where an answer came from, as written at the end of its log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// From the server.
    Network,
    /// From a fresh cache entry, without contacting the server.
    Cache,
    /// From a stale cache entry the server confirmed with a 304.
    Revalidated,
}

impl Source {
    /// The word in the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Network => "network",
            Source::Cache => "cache",
            Source::Revalidated => "revalidated",
        }
    }
}

/// `client flush`: removes every cache entry under `cache_dir` and says what went.
pub fn flush(cache_dir: &Path, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
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
pub fn fetch(
    log_file: &Path,
    url: &str,
    options: &Options,
    out: &mut dyn Write,
    err: &mut dyn Write,
    terminal: Terminal,
) -> u8 {
    let log = match open_log(log_file) {
        Ok(log) => log,
        Err(e) => {
            let _ = writeln!(err, "client: {e}");
            return e.exit_code();
        }
    };
    let mut session = Session {
        options,
        store: Store::new(&options.cache_dir, CACHE_MAX_SIZE, CACHE_MAX_OBJECT),
        log,
        out,
        err,
        terminal,
        deadline: Deadline::after(options.max_time),
        delivered: 0,
    };
    match session.follow(url) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            let _ = session.out.flush();
            let _ = writeln!(session.err, "client: {e}");
            e.exit_code()
        }
    }
}

/// Opens the log for appending, creating it and its directories.
fn open_log(path: &Path) -> Result<File> {
    let fail = |e| ClientError::File(format!("cannot open log file {}", path.display()), e);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(fail)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(fail)
}

/// One log line, in the client's own format:
///
/// ```text
/// 2026-11-25 10:41:07 GET http://127.0.0.1:8080/ HTTP/1.1 HTTP/1.1 200 OK 1432 B 12 ms network
/// ```
///
/// The request line carries the absolute URL so the host is on record. Control characters
/// (from a hostile URL or reason phrase) are written as `\xNN`, so a line stays one line.
pub fn log_line(
    when: DateTime<Local>,
    request_line: &str,
    outcome: &str,
    bytes: u64,
    elapsed: Duration,
    source: &str,
) -> String {
    format!(
        "{} {} {} {bytes} B {} ms {source}\n",
        when.format("%Y-%m-%d %H:%M:%S"),
        escape_controls(request_line),
        escape_controls(outcome),
        elapsed.as_millis()
    )
}

fn escape_controls(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                format!("\\x{:02X}", u32::from(c))
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// What the request's own fields allow (RFC 9111 §5.2.1, §5.4): a stored response may answer
/// a GET or HEAD unless it says `no-store`, `no-cache`, `max-age=0` or `Pragma: no-cache`;
/// range and conditional requests from `-H` go to the server as they are.
pub fn may_use_stored(request: &Request) -> bool {
    let h = &request.headers;
    let forbidden = h.list("cache-control").any(|d| {
        let d = d.to_ascii_lowercase();
        d == "no-store" || d == "no-cache" || d == "max-age=0"
    }) || h.has_token("pragma", "no-cache");
    let passthrough = ["range", "if-none-match", "if-modified-since", "if-match"]
        .iter()
        .any(|name| h.contains(name));
    matches!(request.method.as_str(), "GET" | "HEAD") && !forbidden && !passthrough
}

/// Whether the request lets its response be stored: a GET without `no-store`
/// (RFC 9111 §5.2.1.5).
pub fn may_store(request: &Request) -> bool {
    request.method == "GET"
        && !request
            .headers
            .list("cache-control")
            .any(|d| d.eq_ignore_ascii_case("no-store"))
}

/// Whether a response with this `Vary` can be stored and reused (RFC 9111 §4.1). Entries
/// keep no request fields, so a response varying on `*` or on a field the user set with
/// `-H` is neither stored nor used; every other field the client sends is the same on every
/// run, so other Vary values match by construction.
pub fn vary_allows(response: &Response, user_headers: &[(String, Option<String>)]) -> bool {
    response.headers.list("vary").all(|name| {
        name != "*"
            && !user_headers
                .iter()
                .any(|(user, _)| user.eq_ignore_ascii_case(name))
    })
}

/// What a stored response can do for a new request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Usable {
    /// Fresh: answer from it (RFC 9111 §4.2).
    Fresh,
    /// Stale, with these conditional fields to validate it (RFC 9111 §4.3.1).
    Stale(Vec<(String, String)>),
    /// Stale without validators: fetch anew.
    Unusable,
}

/// Fresh when its current age is below its freshness lifetime (`cache`, private rules);
/// otherwise worth validating when it has a validator. Pure: `now` is passed in.
pub fn classify(
    response: &Response,
    stored_at: SystemTime,
    now: SystemTime,
    ttl: Duration,
) -> Usable {
    let lifetime = cache::freshness_lifetime(response, ttl, false);
    let age = cache::current_age(response, stored_at, now);
    match (lifetime, cache::validators(response)) {
        (Some(lifetime), _) if age < lifetime => Usable::Fresh,
        (_, Some(conditions)) => Usable::Stale(conditions),
        _ => Usable::Unusable,
    }
}

/// The request for `url`: Host, User-Agent, Accept, the body's Content-Length and
/// Content-Type, `Connection: close` (one request per connection), then the user's fields,
/// each replacing a default of the same name. Credentials set with `-H` are not sent to
/// another host than the first one (`same_origin` false), as curl does.
pub fn build_request(
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

/// What one request turned into, for the log and the redirect loop.
struct Answer {
    status_line: String,
    status: u16,
    bytes: u64,
    source: Source,
    /// With `-L`, a redirect to follow: the Location as sent, and where it leads.
    redirect: Option<(String, std::result::Result<Url, UrlError>)>,
}

/// A stored entry's place in the current request.
enum Lookup {
    Fresh(Entry),
    Stale(Entry, Vec<(String, String)>),
    Miss,
}

/// One run of the client: its options, its cache, its log and its outputs.
struct Session<'a> {
    options: &'a Options,
    store: Store,
    log: File,
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
    terminal: Terminal,
    /// When `--max-time` runs out.
    deadline: Deadline,
    /// Body bytes delivered for the current request, kept up to date so that a request that
    /// fails in the middle of its body still logs them.
    delivered: u64,
}

impl<'a> Session<'a> {
    /// The first request, then each redirect while `-L` allows; one log line per request.
    fn follow(&mut self, input: &str) -> Result<()> {
        let mut method = self.options.method();
        let mut with_body = self.options.data.is_some();
        let mut url = match Url::parse(input) {
            Ok(url) => url,
            Err(e) => {
                let e = ClientError::Url(e);
                self.log_error(
                    Local::now(),
                    &request_line(&method, input),
                    &e,
                    Duration::ZERO,
                );
                return Err(e);
            }
        };
        let origin = url.authority();
        let mut redirects = 0;
        loop {
            let (when, started) = (Local::now(), Instant::now());
            let line = request_line(&method, &url.to_string());
            self.delivered = 0;
            let same_origin = url.authority() == origin;
            let answer = match self.exchange(&url, &method, with_body, same_origin) {
                Ok(answer) => answer,
                Err(e) => {
                    self.log_error(when, &line, &e, started.elapsed());
                    return Err(e);
                }
            };
            self.log(
                when,
                &line,
                &answer.status_line,
                answer.bytes,
                started.elapsed(),
                answer.source.as_str(),
            );
            let Some((location, next)) = answer.redirect else {
                return Ok(());
            };
            // RFC 9110 §15.4.4: after a 303 the user agent retrieves the new URL with GET
            // (HEAD stays HEAD); 301, 302, 307 and 308 keep the method and body here.
            if answer.status == 303 && method != "HEAD" {
                method = "GET".to_string();
                with_body = false;
            }
            let next_line = request_line(&method, &location);
            match next {
                Err(e) => {
                    let e = ClientError::Url(e);
                    self.log_error(Local::now(), &next_line, &e, Duration::ZERO);
                    return Err(e);
                }
                Ok(_) if redirects == MAX_REDIRECTS => {
                    let e = ClientError::TooManyRedirects(MAX_REDIRECTS);
                    self.log_error(Local::now(), &next_line, &e, Duration::ZERO);
                    return Err(e);
                }
                Ok(next) => {
                    redirects += 1;
                    url = next;
                }
            }
        }
    }

    /// One request: cache lookup, then (unless fresh) the network, then delivery.
    fn exchange(
        &mut self,
        url: &Url,
        method: &str,
        with_body: bool,
        same_origin: bool,
    ) -> Result<Answer> {
        let key = url.to_string();
        let payload = if with_body {
            self.payload()?
        } else {
            Payload::None
        };
        let mut request = build_request(
            url,
            method,
            payload.content_length(),
            &self.options.headers,
            same_origin,
        );
        let lookup = if self.options.no_cache || !may_use_stored(&request) {
            Lookup::Miss
        } else {
            self.lookup(&key)
        };
        let stale = match lookup {
            Lookup::Fresh(entry) => {
                return self.deliver_stored(url, &request, entry, Source::Cache);
            }
            Lookup::Stale(entry, conditions) => {
                for (name, value) in conditions {
                    request.headers.append(name, value);
                }
                Some(entry)
            }
            Lookup::Miss => None,
        };

        let mut conn = BufReader::with_capacity(READ_BUFFER, self.connect(url)?);
        self.verbose_head("> ", &request_head_bytes(&request));
        let sent = connection::send(conn.get_mut(), &request, payload);
        let response = match connection::read_final_response(&mut conn) {
            Ok(response) => response,
            // The server may answer early and close (a 413, say): a response wins over the
            // failure to send, which is reported only when there is none.
            Err(e) => return Err(sent.err().map_or(e, |s| Error::Io(Side::Backend, s)).into()),
        };
        self.verbose_head("< ", &serialize::response_head_bytes(&response));

        if let Some(mut entry) = stale {
            if response.status == 304 {
                // RFC 9111 §4.3.4: the 304's fields update the stored response, which then
                // answers the request.
                cache::merge_304(&mut entry.response, &response);
                let _ = self.store.refresh(&key, &entry.response);
                entry.stored_at = SystemTime::now();
                return self.deliver_stored(url, &request, entry, Source::Revalidated);
            }
        }
        // RFC 9111 §4.4: a non-error response to an unsafe method invalidates the entry.
        let safe = matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE");
        if !safe && response.status < 400 {
            self.store.remove(&key);
        }
        let framing =
            response_framing(method, &response).map_err(|e| Error::Parse(Side::Backend, e))?;
        let writer = self.cache_writer(&key, &request, &response);
        if writer.is_none() && method == "GET" {
            // A response that replaces an entry but cannot be stored removes it.
            self.store.remove(&key);
        }
        let redirect = self.redirect(url, &response);
        let length = match framing {
            Framing::Length(n) => Some(n),
            _ => None,
        };
        let has_body = framing != Framing::Empty;
        let mut body = BodyReader::new(&mut conn, framing);
        let bytes = self.deliver(
            url,
            &response,
            &mut body,
            Delivery {
                has_body,
                length,
                discard: redirect.is_some(),
                from_cache: false,
            },
            writer,
        )?;
        Ok(Answer {
            status_line: response.status_line(),
            status: response.status,
            bytes,
            source: Source::Network,
            redirect,
        })
    }

    /// Opens the body for one request (`--data-binary @FILE` is reopened for each, so a
    /// redirect that keeps the method sends it again whole).
    fn payload(&self) -> Result<Payload<'a>> {
        let options: &'a Options = self.options;
        match &options.data {
            None => Ok(Payload::None),
            Some(Data::Bytes(bytes)) => Ok(Payload::Bytes(bytes)),
            Some(Data::File(path)) => {
                let file = File::open(path).map_err(|e| file_error("cannot read", path, e))?;
                let meta = file
                    .metadata()
                    .map_err(|e| file_error("cannot read", path, e))?;
                if !meta.is_file() {
                    let why = io::Error::new(io::ErrorKind::InvalidInput, "not a regular file");
                    return Err(file_error("cannot read", path, why));
                }
                Ok(Payload::File(file, meta.len()))
            }
        }
    }

    /// The stored entry for `key`, and what it can do for this request.
    fn lookup(&self, key: &str) -> Lookup {
        let Some(entry) = self.store.read(key) else {
            return Lookup::Miss;
        };
        if !vary_allows(&entry.response, &self.options.headers) {
            return Lookup::Miss;
        }
        match classify(
            &entry.response,
            entry.stored_at,
            SystemTime::now(),
            self.options.ttl,
        ) {
            Usable::Fresh => Lookup::Fresh(entry),
            Usable::Stale(conditions) => Lookup::Stale(entry, conditions),
            Usable::Unusable => Lookup::Miss,
        }
    }

    /// A writer for a new entry, when this response may be stored. Its head is stored
    /// without hop-by-hop fields: the body is stored decoded, so Transfer-Encoding would lie.
    fn cache_writer(
        &self,
        key: &str,
        request: &Request,
        response: &Response,
    ) -> Option<EntryWriter> {
        let storable = may_store(request)
            && response.status != 304
            && cache::is_storable(&request.method, response, self.options.ttl, false)
            && vary_allows(response, &self.options.headers);
        if !storable {
            return None;
        }
        let mut head = response.clone();
        if head.headers.contains("transfer-encoding") {
            // RFC 9112 §6.3: Transfer-Encoding overrode any Content-Length, which is wrong.
            head.headers.remove("content-length");
        }
        remove_hop_by_hop(&mut head.headers);
        self.store.begin(key, &head).ok()
    }

    /// With `-L`, the redirect this response asks for (RFC 9110 §15.4, §10.2.2).
    fn redirect(
        &self,
        url: &Url,
        response: &Response,
    ) -> Option<(String, std::result::Result<Url, UrlError>)> {
        if !self.options.location || !matches!(response.status, 301 | 302 | 303 | 307 | 308) {
            return None;
        }
        let location = response.headers.get("location")?;
        Some((location.to_string(), url.join(location)))
    }

    /// Answers from a stored entry, with an Age field (RFC 9111 §5.1) and its length.
    fn deliver_stored(
        &mut self,
        url: &Url,
        request: &Request,
        mut entry: Entry,
        source: Source,
    ) -> Result<Answer> {
        let mut response = entry.response.clone();
        let age = cache::current_age(&response, entry.stored_at, SystemTime::now());
        response.headers.set("Age", age.as_secs().to_string());
        if !response.headers.contains("content-length") {
            response
                .headers
                .set("Content-Length", entry.body_len.to_string());
        }
        if self.options.verbose {
            let _ = writeln!(
                self.err,
                "* answered from the cache ({}, age {} s)",
                source.as_str(),
                age.as_secs()
            );
            self.verbose_head("< ", &serialize::response_head_bytes(&response));
        }
        let has_body = request.method != "HEAD" && !matches!(response.status, 204 | 304);
        let redirect = self.redirect(url, &response);
        let body_len = entry.body_len;
        let bytes = self.deliver(
            url,
            &response,
            entry.body(),
            Delivery {
                has_body,
                length: Some(body_len),
                discard: redirect.is_some(),
                from_cache: true,
            },
            None,
        )?;
        Ok(Answer {
            status_line: response.status_line(),
            status: response.status,
            bytes,
            source,
            redirect,
        })
    }

    /// Prints the head with `-i`/`-I`, then copies the body to where it belongs (or nowhere,
    /// for a redirect being followed), and to the cache writer, which is committed only when
    /// the whole body arrived.
    fn deliver(
        &mut self,
        url: &Url,
        response: &Response,
        body: &mut dyn Read,
        how: Delivery,
        mut cache: Option<EntryWriter>,
    ) -> Result<u64> {
        if self.options.include || self.options.head {
            let head = serialize::response_head_bytes(response);
            self.out.write_all(&head).map_err(stdout_error)?;
        }
        let read_failed = |e: io::Error| {
            if how.from_cache {
                ClientError::File("cannot read the cache entry".to_string(), e)
            } else {
                read_error(Side::Backend, e).into()
            }
        };
        let mut buf = vec![0; COPY_BUFFER];
        let first = if how.has_body {
            read_some(body, &mut buf).map_err(read_failed)?
        } else {
            0
        };
        if how.discard || !how.has_body {
            pump(
                body,
                &mut buf,
                first,
                &mut io::sink(),
                &mut cache,
                &mut self.delivered,
                |_| {},
            )
            .map_err(|f| f.into_error(read_failed, stdout_error))?;
            commit(cache);
            return Ok(self.delivered);
        }
        let target = output::choose(
            self.options.output.as_ref(),
            response.headers.get("content-type"),
            &buf[..first],
            url,
        );
        let (mut file, path) = match &target {
            Target::Stdout => (None, None),
            Target::File(path) => {
                let file = File::create(path).map_err(|e| file_error("cannot create", path, e))?;
                (Some(BufWriter::new(file)), Some(path.clone()))
            }
            Target::NewFile(name) => {
                let (path, file) = output::create_new(Path::new("."), name)
                    .map_err(|e| file_error("cannot create", Path::new(name), e))?;
                let path = path
                    .strip_prefix(".")
                    .map(Path::to_path_buf)
                    .unwrap_or(path);
                (Some(BufWriter::new(file)), Some(path))
            }
        };
        let meter = self.terminal.stderr && !(target == Target::Stdout && self.terminal.stdout);
        let mut progress = Progress::new(meter, how.length);
        let dest: &mut dyn Write = match file.as_mut() {
            Some(file) => file,
            None => &mut *self.out,
        };
        let write_failed = |e: io::Error| match &path {
            Some(path) => file_error("cannot write", path, e),
            None => stdout_error(e),
        };
        let err = &mut *self.err;
        let pumped = pump(
            body,
            &mut buf,
            first,
            dest,
            &mut cache,
            &mut self.delivered,
            |n| progress.update(n, err),
        );
        progress.finish(self.delivered, &mut *self.err);
        pumped.map_err(|f| f.into_error(read_failed, write_failed))?;
        if let Some(mut file) = file {
            file.flush().map_err(write_failed)?;
        }
        commit(cache);
        if let Some(path) = path {
            writeln!(
                self.out,
                "saved {} bytes to {}",
                self.delivered,
                path.display()
            )
            .map_err(stdout_error)?;
        }
        Ok(self.delivered)
    }

    /// Resolves the URL's host and connects, noting each address tried with `-v`.
    fn connect(&mut self, url: &Url) -> Result<Conn> {
        let (verbose, err) = (self.options.verbose, &mut *self.err);
        connection::open(url, self.deadline, |addr| {
            if verbose {
                let _ = writeln!(err, "* connecting to {addr}");
            }
        })
    }

    fn verbose_head(&mut self, prefix: &str, head: &[u8]) {
        if !self.options.verbose {
            return;
        }
        let text: String = head.iter().map(|&b| char::from(b)).collect();
        for line in text.split("\r\n").filter(|l| !l.is_empty()) {
            let _ = writeln!(self.err, "{prefix}{}", escape_controls(line));
        }
    }

    fn log(
        &mut self,
        when: DateTime<Local>,
        line: &str,
        outcome: &str,
        bytes: u64,
        elapsed: Duration,
        source: &str,
    ) {
        let text = log_line(when, line, outcome, bytes, elapsed, source);
        if let Err(e) = self.log.write_all(text.as_bytes()) {
            let _ = writeln!(self.err, "client: cannot write to the log: {e}");
        }
    }

    fn log_error(&mut self, when: DateTime<Local>, line: &str, e: &ClientError, elapsed: Duration) {
        let outcome = format!("error: {e}");
        let bytes = self.delivered;
        self.log(when, line, &outcome, bytes, elapsed, "none");
    }
}

/// How one body is to be delivered.
#[derive(Clone, Copy, Debug)]
struct Delivery {
    /// Whether the response has a body at all (not HEAD, 204, 304).
    has_body: bool,
    /// Its length, when known in advance (for the meter).
    length: Option<u64>,
    /// A redirect being followed: the body is read and dropped.
    discard: bool,
    /// The body comes from a cache file, not the server.
    from_cache: bool,
}

/// Puts a complete entry in place; a cache that cannot be written is not an error.
fn commit(cache: Option<EntryWriter>) {
    if let Some(writer) = cache {
        let _ = writer.commit();
    }
}

fn stdout_error(e: io::Error) -> ClientError {
    ClientError::File("cannot write to standard output".to_string(), e)
}

fn file_error(what: &str, path: &Path, e: io::Error) -> ClientError {
    ClientError::File(format!("{what} {}", path.display()), e)
}

/// `METHOD URL HTTP/1.1`, the request line as logged (absolute-form, RFC 9112 §3.2.2).
/// A URL that could not be parsed is logged as typed, its spaces encoded so that the
/// line keeps its shape.
fn request_line(method: &str, url: &str) -> String {
    format!("{method} {} HTTP/1.1", url.trim().replace(' ', "%20"))
}

fn request_head_bytes(request: &Request) -> Vec<u8> {
    let mut head = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = serialize::write_request_head(&mut head, request);
    head
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn response(status: u16, fields: &[(&str, &str)]) -> Response {
        let mut r = Response::new(status);
        for (n, v) in fields {
            r.headers.append(*n, *v);
        }
        r
    }

    fn get(fields: &[(&str, &str)]) -> Request {
        let mut r = Request::new("GET", "/");
        for (n, v) in fields {
            r.headers.append(*n, *v);
        }
        r
    }

    fn user(fields: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
        fields
            .iter()
            .map(|(n, v)| (n.to_string(), v.map(str::to_string)))
            .collect()
    }

    #[test]
    fn log_lines_have_the_documented_shape() {
        let when = Local.with_ymd_and_hms(2026, 11, 25, 10, 41, 7).unwrap();
        let line = log_line(
            when,
            "GET http://h/ HTTP/1.1",
            "HTTP/1.1 200 OK",
            1432,
            Duration::from_millis(12),
            "network",
        );
        assert_eq!(
            line,
            "2026-11-25 10:41:07 GET http://h/ HTTP/1.1 HTTP/1.1 200 OK 1432 B 12 ms network\n"
        );
        let hostile = log_line(
            when,
            "GET /\r\nfake HTTP/1.1",
            "x\ny",
            0,
            Duration::ZERO,
            "none",
        );
        assert_eq!(hostile.matches('\n').count(), 1);
        assert!(hostile.contains("/\\x0D\\x0Afake"));
    }

    #[test]
    fn the_request_decides_whether_the_cache_may_answer() {
        assert!(may_use_stored(&get(&[])));
        let mut head = get(&[]);
        head.method = "HEAD".into();
        assert!(may_use_stored(&head));
        let mut post = get(&[]);
        post.method = "POST".into();
        assert!(!may_use_stored(&post) && !may_store(&post));
        for fields in [
            &[("Cache-Control", "no-cache")][..],
            &[("Cache-Control", "max-age=0")],
            &[("Pragma", "no-cache")],
            &[("Range", "bytes=0-1")],
            &[("If-None-Match", "\"x\"")],
        ] {
            assert!(!may_use_stored(&get(fields)), "{fields:?}");
            assert!(may_store(&get(fields)), "{fields:?}");
        }
        let no_store = get(&[("Cache-Control", "No-Store")]);
        assert!(!may_use_stored(&no_store) && !may_store(&no_store));
    }

    #[test]
    fn vary_on_a_field_the_user_sets_is_not_cached() {
        let plain = response(200, &[("Vary", "Accept-Encoding")]);
        assert!(vary_allows(&plain, &[]));
        assert!(vary_allows(&plain, &user(&[("Accept", Some("text/html"))])));
        let accept = response(200, &[("Vary", "accept")]);
        assert!(!vary_allows(
            &accept,
            &user(&[("Accept", Some("text/html"))])
        ));
        assert!(!vary_allows(&response(200, &[("Vary", "*")]), &[]));
    }

    #[test]
    fn stored_responses_are_fresh_stale_or_unusable() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let later = |s| t0 + Duration::from_secs(s);
        let ttl = Duration::from_secs(60);
        let plain = response(200, &[]);
        assert_eq!(classify(&plain, t0, later(59), ttl), Usable::Fresh);
        assert_eq!(classify(&plain, t0, later(60), ttl), Usable::Unusable);
        let tagged = response(200, &[("ETag", "\"v1\""), ("Cache-Control", "max-age=5")]);
        assert_eq!(classify(&tagged, t0, later(4), ttl), Usable::Fresh);
        assert_eq!(
            classify(&tagged, t0, later(5), ttl),
            Usable::Stale(vec![("If-None-Match".into(), "\"v1\"".into())])
        );
        // A private cache ignores s-maxage; Age counts toward the age.
        let shared_only = response(200, &[("Cache-Control", "s-maxage=600, max-age=1")]);
        assert_eq!(classify(&shared_only, t0, later(2), ttl), Usable::Unusable);
        let aged = response(200, &[("Age", "58")]);
        assert_eq!(classify(&aged, t0, later(3), ttl), Usable::Unusable);
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
