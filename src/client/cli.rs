//! The client's command line, declared with clap's derive API, and `main`, which runs what
//! it asks for. It lives in the library rather than in `src/bin/client.rs` because fifteen
//! options with their help and examples would make the binary far longer than a thin
//! `main`, and because its parsing rules (header syntax, methods, durations) are unit-tested
//! here.
//!
//! Option names follow curl wherever curl has the option. Values that would make a broken
//! request (a header with a CR or LF, a method that is not a token, a Content-Length that
//! disagrees with the body) are refused here, as usage errors (exit status 2).

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand};

use super::error::{EXIT_FILE, EXIT_USAGE};
use super::output::Output;
use super::url::looks_like_url;
use super::{Data, FormPart, Options, Terminal, DEFAULT_CACHE_DIR};
use crate::http::is_token;

const ABOUT: &str =
    "Relevo's HTTP/1.1 client: fetches URL, logs the request in LOG_FILE, keeps a cache.";

const LONG_ABOUT: &str = "\
Relevo's HTTP/1.1 client: fetches URL over plain HTTP (no TLS, by design), appends one line
per request (redirects included) to LOG_FILE, and keeps a private cache (RFC 9111) on disk.

Text bodies (text/*, JSON, XML, JavaScript) are printed on stdout as received (flushed
after each read on a terminal or a pipe, so they appear as the server sends them). Anything
else (images, audio, video, PDF, archives, octet-stream) is saved byte for byte to a file
in the current directory named after the last segment of the URL's path (index.html for
a path ending in /), with a numeric suffix (dawn-1.png) rather than overwriting, and stdout
gets one line saying where and how many bytes. When stderr is a terminal, bodies over
1 MiB get a progress meter.

Examples:
  client client.log http://127.0.0.1:8080/
  client client.log 127.0.0.1:8080/img/dawn.png          # saved as dawn.png
  client client.log -I localhost:8080/
  client client.log -d 'name=relevo&lang=rust' localhost:8080/form
  client client.log -L -v http://localhost:8080/old-page
  client flush --cache-dir cache/client";

const AFTER_HELP: &str = "\
Log line (one per request, appended to LOG_FILE):
  YYYY-MM-DD HH:MM:SS <request line> <status line or error: ...> <N> B <M> ms <source>
  where <source> is network, cache (fresh entry, server not contacted), revalidated
  (stale entry confirmed by a 304) or none (an error). Example:
  2026-11-25 10:41:07 GET http://127.0.0.1:8080/ HTTP/1.1 HTTP/1.1 200 OK 1432 B 12 ms network

Cache: responses to GET are stored under --cache-dir, one file per URL named by the
SHA-1 of the URL (one per variant with Vary); a fresh entry answers GET and HEAD without
contacting the server, a stale one with ETag or Last-Modified is revalidated, `no-store`
is honoured. It is a private cache (RFC 9111): s-maxage is ignored, `private` is stored.
An answer from it is noted on stderr unless -s:
  * from the client cache, age 12 s (--no-cache to ask the server)

Exit status:
   0  a response was received, whatever its status code
   1  https:// or another unsupported scheme
   2  bad command-line usage, such as LOG_FILE and URL swapped
   3  malformed URL (given, or in a redirect's Location)
   6  the host name did not resolve
   7  the connection was refused or could not be opened
   8  the response was malformed, or its head cut short
  18  the body was cut short: the server closed the connection before its end
  23  a local file could not be used (log, output, -d or --data-binary @FILE, flush)
  28  timed out (resolving, connecting, waiting for data) or --max-time reached
  47  more than 10 redirects with -L
  56  the connection failed while sending or receiving";

/// `client [OPTIONS] LOG_FILE URL` or `client flush [--cache-dir DIR]`.
#[derive(Parser, Debug)]
#[command(
    name = "client",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_long_help = AFTER_HELP,
    after_help = "Exit status: 0 when a response arrived, whatever its status; --help lists the others.",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    /// A command instead of a fetch.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// File to append one line per request to; created with its directories.
    ///
    /// Example: client logs/client.log http://127.0.0.1:8080/
    #[arg(value_name = "LOG_FILE", required = true)]
    pub log_file: Option<PathBuf>,

    /// URL to fetch: http://host:port/path?query, host:port/path or host/path.
    // The long help is an attribute because rustdoc would read `[::1]` as a link.
    #[arg(
        value_name = "URL",
        required = true,
        long_help = "URL to fetch: http://host[:port]/path?query, host:port/path or host/path.\n\n\
                     The host may be a name, an IPv4 address or an [IPv6] address; the port \
                     defaults to 80. https:// is refused (no TLS).\n\n\
                     Example: client c.log '[::1]:8080/index.html'"
    )]
    pub url: Option<String>,

    /// Method to send (default GET; HEAD with -I, POST with -d); any token is sent as given.
    ///
    /// Example: client c.log -X DELETE localhost:8080/item/3
    #[arg(short = 'X', long = "request", value_name = "METHOD", value_parser = parse_method)]
    pub request: Option<String>,

    /// Request body: DATA as given, or the contents of FILE with @FILE, without its line
    /// breaks (repeat to join with '&'); implies POST.
    ///
    /// As in curl, @FILE drops every CR and LF of the file, so a form written over several
    /// lines is sent as one; --data-binary @FILE sends a file byte for byte. Content-Type is
    /// application/x-www-form-urlencoded unless -H sets one.
    /// Example: client c.log -d 'a=1' -d @more.txt localhost:8080/form
    #[arg(
        short = 'd',
        long = "data",
        value_name = "DATA|@FILE",
        value_parser = parse_form_part,
        conflicts_with_all = ["data_binary", "head"]
    )]
    pub data: Vec<FormPart>,

    /// Request body: DATA as given, or the bytes of FILE with @FILE; implies POST.
    ///
    /// The file is sent byte for byte with its Content-Length (and again if a 307/308
    /// redirect keeps the method).
    ///
    /// Example: client c.log --data-binary @photo.png localhost:8080/upload
    #[arg(
        long = "data-binary",
        value_name = "DATA|@FILE",
        value_parser = parse_binary_data,
        conflicts_with = "head"
    )]
    pub data_binary: Option<BinaryData>,

    /// Extra header field 'Name: value' (repeatable); replaces the client's own field of
    /// that name. 'Name:' removes it, 'Name;' sends it empty.
    ///
    /// Content-Length and Transfer-Encoding cannot be set: they follow from the body.
    /// Example: client c.log -H 'Accept: text/html' -H 'User-Agent:' localhost:8080/
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    pub header: Vec<(String, Option<String>)>,

    /// Send HEAD and print the response head (no body).
    ///
    /// Answered from the cache when a fresh GET response is stored.
    /// Example: client c.log -I localhost:8080/img/dawn.png
    #[arg(short = 'I', long = "head")]
    pub head: bool,

    /// Print the response head on stdout before the body.
    ///
    /// With -L, the head of every response in the chain.
    ///
    /// Example: client c.log -i localhost:8080/
    #[arg(short = 'i', long = "include")]
    pub include: bool,

    /// Write the body to FILE (created or replaced), whatever its type; '-' means stdout.
    ///
    /// Example: client c.log -o page.html localhost:8080/ ; client c.log -o - localhost:8080/img/dawn.png | file -
    #[arg(
        short = 'o',
        long = "output",
        value_name = "FILE",
        conflicts_with = "remote_name"
    )]
    pub output: Option<PathBuf>,

    /// Save the body to a file named after the URL, even when it is text.
    ///
    /// Example: client c.log -O localhost:8080/styles.css   # saved as styles.css
    #[arg(short = 'O', long = "remote-name")]
    pub remote_name: bool,

    /// Follow redirects (301, 302, 303, 307, 308), at most 10; POST becomes GET after 301,
    /// 302 and 303, as in curl and browsers.
    ///
    /// 303 turns any method but HEAD into GET; 307 and 308 keep the method and the body;
    /// other methods keep theirs after 301 and 302. Each request of the chain gets its own
    /// log line.
    ///
    /// Example: client c.log -L localhost:8080/old
    #[arg(short = 'L', long = "location")]
    pub location: bool,

    /// Show the request and response heads on stderr ('>' sent, '<' received, '*' notes).
    ///
    /// Example: client c.log -v localhost:8080/
    #[arg(short = 'v', long = "verbose")]
    pub verbose: bool,

    /// Silent, as in curl: no progress meter, no error message, no note that an answer
    /// came from the cache.
    ///
    /// The body is delivered as usual; the exit status and the log still say what
    /// happened. -v shows its heads and notes all the same.
    /// Example: client c.log -s localhost:8080/ > page.html
    #[arg(short = 's', long = "silent")]
    pub silent: bool,

    /// With -s, still print the error message when the run fails (curl's -S).
    ///
    /// Example: client c.log -sS localhost:8080/
    #[arg(short = 'S', long = "show-error")]
    pub show_error: bool,

    /// Never answer from the cache; the response is still stored.
    ///
    /// Example: client c.log --no-cache localhost:8080/
    #[arg(long = "no-cache")]
    pub no_cache: bool,

    /// Directory of the client's cache.
    ///
    /// Example: client c.log --cache-dir /tmp/relevo-cache localhost:8080/
    #[arg(long = "cache-dir", value_name = "DIR", default_value = DEFAULT_CACHE_DIR)]
    pub cache_dir: PathBuf,

    /// Seconds a stored response stays fresh when it gives no freshness of its own
    /// (Cache-Control max-age, Expires).
    ///
    /// Example: client c.log --ttl 0 localhost:8080/   # revalidate every time
    #[arg(long = "ttl", value_name = "SECS", default_value_t = 60)]
    pub ttl: u64,

    /// Give up after SECS seconds (decimals allowed), redirects included; exit status 28.
    ///
    /// Example: client c.log --max-time 2.5 localhost:8080/img/sea.png
    #[arg(long = "max-time", value_name = "SECS", value_parser = parse_seconds)]
    pub max_time: Option<Duration>,
}

/// The client's commands.
#[derive(Subcommand, Debug, PartialEq, Eq)]
pub enum Command {
    /// Delete every entry of the client's cache and say how many files and bytes went.
    ///
    /// Only cache entries are removed (files named by 40 hex digits, and temporary files
    /// left by an interrupted download); anything else in the directory stays. A second
    /// flush finds nothing and says so.
    ///
    /// Example: client flush --cache-dir cache/client
    Flush {
        /// Directory of the client's cache.
        #[arg(long = "cache-dir", value_name = "DIR", default_value = DEFAULT_CACHE_DIR)]
        cache_dir: PathBuf,
    },
}

impl Cli {
    /// The log file, the URL and the options of a fetch; `None` for a command.
    pub(crate) fn into_fetch(self) -> Option<(PathBuf, String, Options)> {
        let data = if !self.data.is_empty() {
            Some(Data::Form(self.data))
        } else {
            self.data_binary.map(|d| match d {
                BinaryData::File(path) => Data::File(path),
                BinaryData::Text(text) => Data::Bytes(text.into_bytes()),
            })
        };
        let output = match self.output {
            Some(path) if path.as_os_str() == "-" => Some(Output::Stdout),
            Some(path) => Some(Output::File(path)),
            None if self.remote_name => Some(Output::RemoteName),
            None => None,
        };
        let options = Options {
            method: self.request,
            data,
            headers: self.header,
            head: self.head,
            include: self.include,
            output,
            location: self.location,
            verbose: self.verbose,
            silent: self.silent,
            show_error: self.show_error,
            no_cache: self.no_cache,
            cache_dir: self.cache_dir,
            ttl: Duration::from_secs(self.ttl),
            max_time: self.max_time,
        };
        Some((self.log_file?, self.url?, options))
    }
}

/// Runs what the command line asks for on the real stdout and stderr; returns the exit
/// status.
pub fn main(cli: Cli) -> u8 {
    let terminal = Terminal {
        stdout: io::stdout().is_terminal(),
        stdout_pipe: is_pipe(&io::stdout()),
        stderr: io::stderr().is_terminal(),
    };
    let mut out = BufWriter::new(io::stdout().lock());
    let mut err = io::stderr().lock();
    let shows_errors = !cli.silent || cli.show_error;
    let code = match cli.command {
        Some(Command::Flush { ref cache_dir }) => super::flush(cache_dir, &mut out, &mut err),
        None => match cli.into_fetch() {
            Some((log, url, options)) => match swapped(&log, &url, Path::is_file) {
                Some(why) => {
                    let e = Cli::command().error(ErrorKind::ArgumentConflict, why);
                    let _ = write!(err, "{}", e.render());
                    EXIT_USAGE
                }
                None => super::fetch(&log, &url, &options, &mut out, &mut err, terminal),
            },
            // clap enforces LOG_FILE and URL when there is no command.
            None => EXIT_USAGE,
        },
    };
    match out.flush() {
        Err(e) if code == 0 => {
            if shows_errors {
                let _ = writeln!(err, "client: cannot write to standard output: {e}");
            }
            EXIT_FILE
        }
        _ => code,
    }
}

/// Whether `stdout` is a pipe or a socket (read through a duplicate of its descriptor).
fn is_pipe(stdout: &io::Stdout) -> bool {
    stdout
        .as_fd()
        .try_clone_to_owned()
        .and_then(|fd| File::from(fd).metadata())
        .is_ok_and(|meta| meta.file_type().is_fifo() || meta.file_type().is_socket())
}

/// Why `client URL LOG_FILE` (the two swapped) is refused, before the log is created or
/// anything sent: a LOG_FILE that reads as a URL (`url::looks_like_url`), or a URL that
/// names an existing file (`is_file`). The message shows the right order.
fn swapped(log_file: &Path, url: &str, is_file: impl Fn(&Path) -> bool) -> Option<String> {
    let log = log_file.to_string_lossy();
    let why = if looks_like_url(&log) {
        format!("{log} is a URL")
    } else if !url.contains("://") && is_file(Path::new(url)) {
        format!("{url} is a file")
    } else {
        return None;
    };
    Some(format!(
        "the arguments look swapped ({why}): the log file comes first, then the URL:\n\n  \
         client [OPTIONS] {url} {log}"
    ))
}

/// `method = token` (RFC 9110 §9.1).
fn parse_method(s: &str) -> Result<String, String> {
    if is_token(s.as_bytes()) {
        Ok(s.to_string())
    } else {
        Err("a method is a token such as GET, HEAD or POST".to_string())
    }
}

/// `-H` as curl reads it: `Name: value`; `Name:` removes the field; `Name;` sends it empty.
/// `field-name = token` and the value may hold no control character but HTAB
/// (RFC 9110 §5.1, §5.5): a CR or LF would start a field of its own.
fn parse_header(s: &str) -> Result<(String, Option<String>), String> {
    let (name, value) = match (s.split_once(':'), s.strip_suffix(';')) {
        (Some((name, value)), _) => {
            let value = value.trim_matches([' ', '\t']);
            (name, (!value.is_empty()).then(|| value.to_string()))
        }
        (None, Some(name)) => (name, Some(String::new())),
        (None, None) => return Err("expected 'Name: value'".to_string()),
    };
    if !is_token(name.as_bytes()) {
        return Err(format!("{name:?} is not a valid field name"));
    }
    if let Some(value) = &value {
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err("a field value cannot hold control characters (CR, LF, ...)".to_string());
        }
    }
    if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("transfer-encoding")
    {
        return Err(format!("{name} is set by the client from the body"));
    }
    Ok((name.to_string(), value))
}

/// `--data-binary DATA` or `--data-binary @FILE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BinaryData {
    /// The text as given.
    Text(String),
    /// The file's bytes.
    File(PathBuf),
}

/// `-d DATA` or `-d @FILE`, as curl reads it.
fn parse_form_part(s: &str) -> Result<FormPart, String> {
    Ok(match at_file(s)? {
        Some(path) => FormPart::File(path),
        None => FormPart::Text(s.to_string()),
    })
}

/// `--data-binary DATA` or `--data-binary @FILE`.
fn parse_binary_data(s: &str) -> Result<BinaryData, String> {
    Ok(match at_file(s)? {
        Some(path) => BinaryData::File(path),
        None => BinaryData::Text(s.to_string()),
    })
}

/// The file named by `@FILE`, `None` for data without `@`. curl's `@-` (standard input)
/// is refused rather than read as a file named `-`.
fn at_file(s: &str) -> Result<Option<PathBuf>, String> {
    match s.strip_prefix('@') {
        Some("-") => Err(
            "@- (standard input) is not supported: save the data to a file \
                          and give @FILE"
                .to_string(),
        ),
        Some("") => Err("@ must be followed by a file name".to_string()),
        Some(path) => Ok(Some(PathBuf::from(path))),
        None => Ok(None),
    }
}

/// Seconds as a positive decimal number.
fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    // NaN fails this test too.
    if secs.is_nan() || secs <= 0.0 {
        return Err("the time must be more than 0 seconds".to_string());
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s} seconds is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("client").chain(args.iter().copied()))
    }

    fn options(args: &[&str]) -> Options {
        parse(args).unwrap().into_fetch().unwrap().2
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn log_file_and_url_are_positional() {
        let (log, url, options) = parse(&["c.log", "h:8080/"]).unwrap().into_fetch().unwrap();
        assert_eq!((log, url.as_str()), (PathBuf::from("c.log"), "h:8080/"));
        assert_eq!(options, Options::default());
        assert!(parse(&["c.log"]).is_err());
        assert!(parse(&[]).is_err());
    }

    #[test]
    fn swapped_arguments_are_caught_and_the_right_order_shown() {
        let none = |_: &Path| false;
        let why = swapped(Path::new("http://h:8080/x"), "c.log", none).unwrap();
        assert!(why.contains("(http://h:8080/x is a URL)"), "{why}");
        assert!(
            why.ends_with("client [OPTIONS] c.log http://h:8080/x"),
            "{why}"
        );
        let log_exists = |p: &Path| p == Path::new("c.log");
        let why = swapped(Path::new("example.com/"), "c.log", log_exists).unwrap();
        assert!(why.contains("(c.log is a file)"), "{why}");
        assert!(
            why.ends_with("client [OPTIONS] c.log example.com/"),
            "{why}"
        );
        // The right order passes, even when the log file exists already.
        assert_eq!(swapped(Path::new("c.log"), "h:8080/", log_exists), None);
        assert_eq!(swapped(Path::new("logs/c.log"), "example.com/", none), None);
        assert_eq!(
            swapped(Path::new("c.log"), "http://c.log/", log_exists),
            None
        );
    }

    #[test]
    fn flush_is_a_subcommand() {
        let cli = parse(&["flush"]).unwrap();
        assert_eq!(
            cli.command,
            Some(Command::Flush {
                cache_dir: PathBuf::from(DEFAULT_CACHE_DIR)
            })
        );
        let cli = parse(&["flush", "--cache-dir", "/tmp/x"]).unwrap();
        assert_eq!(
            cli.command,
            Some(Command::Flush {
                cache_dir: PathBuf::from("/tmp/x")
            })
        );
        assert!(parse(&["flush", "extra"]).is_err());
    }

    #[test]
    fn curl_like_options() {
        let o = options(&[
            "-X",
            "PUT",
            "-H",
            "A: 1",
            "-H",
            "B:",
            "-H",
            "C;",
            "-i",
            "-L",
            "-v",
            "-sS",
            "--no-cache",
            "--cache-dir",
            "d",
            "--ttl",
            "5",
            "--max-time",
            "0.5",
            "c.log",
            "h/",
        ]);
        assert_eq!(o.method(), "PUT");
        assert_eq!(
            o.headers,
            [
                ("A".to_string(), Some("1".to_string())),
                ("B".to_string(), None),
                ("C".to_string(), Some(String::new()))
            ]
        );
        assert!(o.include && o.location && o.verbose && o.no_cache);
        assert!(o.silent && o.show_error && o.shows_errors());
        assert!(!options(&["-s", "c", "h"]).shows_errors());
        assert!(options(&["c", "h"]).shows_errors());
        assert_eq!(o.cache_dir, PathBuf::from("d"));
        assert_eq!(o.ttl, Duration::from_secs(5));
        assert_eq!(o.max_time, Some(Duration::from_millis(500)));
        assert_eq!(options(&["-I", "c", "h"]).method(), "HEAD");
    }

    #[test]
    fn bodies_imply_post() {
        let o = options(&["-d", "a=1", "-d", "@form.txt", "c", "h"]);
        assert_eq!(o.method(), "POST");
        assert_eq!(
            o.data,
            Some(Data::Form(vec![
                FormPart::Text("a=1".into()),
                FormPart::File("form.txt".into())
            ]))
        );
        let o = options(&["--data-binary", "@f.bin", "c", "h"]);
        assert_eq!(o.data, Some(Data::File(PathBuf::from("f.bin"))));
        let o = options(&["--data-binary", "raw", "c", "h"]);
        assert_eq!(o.data, Some(Data::Bytes(b"raw".to_vec())));
        assert!(parse(&["-d", "a", "--data-binary", "b", "c", "h"]).is_err());
        assert!(parse(&["-I", "-d", "a", "c", "h"]).is_err());
    }

    #[test]
    fn outputs() {
        assert_eq!(options(&["-o", "-", "c", "h"]).output, Some(Output::Stdout));
        assert_eq!(
            options(&["-o", "x.png", "c", "h"]).output,
            Some(Output::File(PathBuf::from("x.png")))
        );
        assert_eq!(options(&["-O", "c", "h"]).output, Some(Output::RemoteName));
        assert!(parse(&["-O", "-o", "x", "c", "h"]).is_err());
    }

    #[test]
    fn values_that_would_break_a_request_are_usage_errors() {
        for bad in [
            &["-H", "X: a\r\nInjected: 1", "c", "h"][..],
            &["-H", "Bad Name: 1", "c", "h"],
            &["-H", "no colon", "c", "h"],
            &["-H", "Content-Length: 5", "c", "h"],
            &["-X", "GE T", "c", "h"],
            &["--max-time", "0", "c", "h"],
            &["--max-time", "-1", "c", "h"],
            &["--max-time", "NaN", "c", "h"],
            &["--max-time", "1e30", "c", "h"],
            &["--ttl", "-1", "c", "h"],
            &["-d", "@-", "c", "h"],
            &["-d", "@", "c", "h"],
            &["--data-binary", "@-", "c", "h"],
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}");
        }
    }
}
