//! One run of the client (`Session`): its options, its cache, its log, its outputs and its
//! deadline, and what it does with them: open the request body, connect, show heads with
//! `-v`, write a log line, and deliver a body to where it belongs (`deliver`).
//!
//! The order of the steps is `client`'s (`follow`, `exchange`); the rules are elsewhere:
//! destinations and the meter in `output`, the cache in `caching`, the wire in
//! `connection`, log lines in `log`.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, Read, Write};
use std::time::Duration;

use chrono::{DateTime, Local};

use super::connection::{self, Conn, Deadline, Payload};
use super::error::{ClientError, Result};
use super::log::{self, NO_SOURCE};
use super::output::{self, pump, read_some, Flushing, Progress, Target};
use super::url::Url;
use super::{
    Data, FormPart, Options, Terminal, CACHE_MAX_OBJECT, CACHE_MAX_SIZE, MAX_FORM_FILE_BYTES,
};
use crate::cache::{EntryWriter, Store};
use crate::error::Side;
use crate::http::body::{read_error, COPY_BUFFER};
use crate::http::{serialize, Response};

/// One run of the client: everything its requests share.
pub struct Session<'a> {
    /// The command line's options.
    pub options: &'a Options,
    /// The private cache, under `--cache-dir`.
    pub store: Store,
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

/// How one body is to be delivered.
#[derive(Clone, Copy, Debug)]
pub struct Delivery {
    /// Whether the response has a body at all (not HEAD, 204, 304).
    pub has_body: bool,
    /// Its length, when known in advance (for the meter).
    pub length: Option<u64>,
    /// A redirect being followed: the body is read and dropped.
    pub discard: bool,
    /// The body comes from a cache file, not the server.
    pub from_cache: bool,
}

impl<'a> Session<'a> {
    /// A run with these options, writing its log lines to `log`, bodies and heads to `out`,
    /// messages and `-v` to `err`; the `--max-time` clock starts now.
    pub fn new(
        options: &'a Options,
        log: File,
        out: &'a mut dyn Write,
        err: &'a mut dyn Write,
        terminal: Terminal,
    ) -> Session<'a> {
        Session {
            options,
            store: Store::new(&options.cache_dir, CACHE_MAX_SIZE, CACHE_MAX_OBJECT),
            log,
            out,
            err,
            terminal,
            deadline: Deadline::after(options.max_time),
            delivered: 0,
        }
    }

    /// Starts counting the body bytes of a new request.
    pub fn start_request(&mut self) {
        self.delivered = 0;
    }

    /// Opens the body for one request (`--data-binary @FILE` and `-d @FILE` are read again
    /// for each, so a redirect that keeps the method sends them again whole);
    /// `Payload::None` without one.
    pub fn payload(&self, with_body: bool) -> Result<Payload<'a>> {
        let options: &'a Options = self.options;
        match &options.data {
            Some(_) if !with_body => Ok(Payload::None),
            None => Ok(Payload::None),
            Some(Data::Form(parts)) => Ok(Payload::Bytes(Cow::Owned(form_body(parts)?))),
            Some(Data::Bytes(bytes)) => Ok(Payload::Bytes(Cow::Borrowed(bytes))),
            Some(Data::File(path)) => {
                let fail = |e| ClientError::file("cannot read", path, e);
                let file = File::open(path).map_err(fail)?;
                let meta = file.metadata().map_err(fail)?;
                if !meta.is_file() {
                    let why = io::Error::new(io::ErrorKind::InvalidInput, "not a regular file");
                    return Err(fail(why));
                }
                Ok(Payload::File(file, meta.len()))
            }
        }
    }

    /// Resolves the URL's host and connects, noting each address tried with `-v`.
    pub fn connect(&mut self, url: &Url) -> Result<Conn> {
        let (verbose, err) = (self.options.verbose, &mut *self.err);
        connection::open(url, self.deadline, |addr| {
            if verbose {
                let _ = writeln!(err, "* connecting to {addr}");
            }
        })
    }

    /// With `-v`, a head on stderr, one line each, after `prefix` (`> ` sent, `< ` received).
    pub fn verbose_head(&mut self, prefix: &str, head: &[u8]) {
        if !self.options.verbose {
            return;
        }
        let text: String = head.iter().map(|&b| char::from(b)).collect();
        for line in text.split("\r\n").filter(|l| !l.is_empty()) {
            let _ = writeln!(self.err, "{prefix}{}", log::escape_controls(line));
        }
    }

    /// The note that an answer comes from the cache, on stderr (`* ` and the text): unless
    /// `-s`, and always with `-v`.
    pub fn cache_note(&mut self, text: &str) {
        if !self.options.silent || self.options.verbose {
            let _ = writeln!(self.err, "* {text}");
        }
    }

    /// Appends one line to the log; a log that cannot be written is said on stderr.
    pub fn log(
        &mut self,
        when: DateTime<Local>,
        line: &str,
        outcome: &str,
        elapsed: Duration,
        source: &str,
    ) {
        let text = log::line(when, line, outcome, self.delivered, elapsed, source);
        if let Err(e) = self.log.write_all(text.as_bytes()) {
            if self.options.shows_errors() {
                let _ = writeln!(self.err, "client: cannot write to the log: {e}");
            }
        }
    }

    /// Appends the log line of a request that failed.
    pub fn log_error(
        &mut self,
        when: DateTime<Local>,
        line: &str,
        e: &ClientError,
        elapsed: Duration,
    ) {
        self.log(when, line, &format!("error: {e}"), elapsed, NO_SOURCE);
    }

    /// Tells the user why the run failed: what stdout has goes first, then one line on
    /// stderr (none with `-s` alone).
    pub fn report(&mut self, e: &ClientError) {
        let _ = self.out.flush();
        if self.options.shows_errors() {
            let _ = writeln!(self.err, "client: {e}");
        }
    }

    /// Prints the head with `-i`/`-I`, then copies the body to where it belongs (or nowhere,
    /// for a redirect being followed), and to the cache writer, which is committed only when
    /// the whole body arrived. Returns the body bytes delivered.
    pub fn deliver(
        &mut self,
        url: &Url,
        response: &Response,
        body: &mut dyn Read,
        how: Delivery,
        mut cache: Option<EntryWriter>,
    ) -> Result<u64> {
        if self.options.include || self.options.head {
            let head = serialize::response_head_bytes(response);
            self.out.write_all(&head).map_err(ClientError::stdout)?;
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
            read_some(body, &mut buf).map_err(|e| read_failed(e).in_body(0, how.length))?
        } else {
            0
        };
        if how.discard || !how.has_body {
            let (sink, delivered) = (&mut io::sink(), &mut self.delivered);
            pump(body, &mut buf, first, sink, &mut cache, delivered, |_| {})
                .map_err(|f| f.into_error(read_failed, ClientError::stdout))
                .map_err(|e| e.in_body(*delivered, how.length))?;
            commit(cache);
            return Ok(self.delivered);
        }
        let content_type = response.headers.get("content-type");
        let target = output::choose(
            self.options.output.as_ref(),
            content_type,
            &buf[..first],
            url,
        );
        let (path, mut file) = output::open(&target)?.unzip();
        let meter = self.terminal.stderr
            && !self.options.silent
            && !(target == Target::Stdout && self.terminal.stdout);
        let mut progress = Progress::new(meter, how.length);
        let mut flushing;
        let dest: &mut dyn Write = match file.as_mut() {
            Some(file) => file,
            None if self.terminal.stdout_is_watched() => {
                flushing = Flushing(&mut *self.out);
                &mut flushing
            }
            None => &mut *self.out,
        };
        let write_failed = |e: io::Error| match &path {
            Some(path) => ClientError::file("cannot write", path, e),
            None => ClientError::stdout(e),
        };
        let err = &mut *self.err;
        let tick = |n| progress.update(n, err);
        let pumped = pump(
            body,
            &mut buf,
            first,
            dest,
            &mut cache,
            &mut self.delivered,
            tick,
        );
        progress.finish(self.delivered, &mut *self.err);
        pumped
            .map_err(|f| f.into_error(read_failed, write_failed))
            .map_err(|e| e.in_body(self.delivered, how.length))?;
        if let Some(mut file) = file {
            file.flush().map_err(write_failed)?;
        }
        commit(cache);
        if let Some(path) = path {
            let saved = format!("saved {} bytes to {}", self.delivered, path.display());
            writeln!(self.out, "{saved}").map_err(ClientError::stdout)?;
        }
        Ok(self.delivered)
    }
}

/// The body of `-d` as curl sends it: each part as given, or its file's bytes without CR
/// and LF, joined with `&`.
///
/// # Errors
/// `ClientError::File` for a file that cannot be read or holds over `MAX_FORM_FILE_BYTES`.
fn form_body(parts: &[FormPart]) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            body.push(b'&');
        }
        match part {
            FormPart::Text(text) => body.extend_from_slice(text.as_bytes()),
            FormPart::File(path) => {
                let fail = |e| ClientError::file("cannot read", path, e);
                let mut bytes = Vec::new();
                File::open(path)
                    .and_then(|file| file.take(MAX_FORM_FILE_BYTES + 1).read_to_end(&mut bytes))
                    .map_err(fail)?;
                if bytes.len() as u64 > MAX_FORM_FILE_BYTES {
                    let mib = MAX_FORM_FILE_BYTES / (1024 * 1024);
                    let why = format!("over {mib} MiB: send it with --data-binary @FILE");
                    return Err(fail(io::Error::new(io::ErrorKind::InvalidInput, why)));
                }
                body.extend(bytes.iter().filter(|&&b| b != b'\r' && b != b'\n'));
            }
        }
    }
    Ok(body)
}

/// Puts a complete entry in place; a cache that cannot be written is not an error.
fn commit(cache: Option<EntryWriter>) {
    if let Some(writer) = cache {
        let _ = writer.commit();
    }
}
