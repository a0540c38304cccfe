//! Where each value of a [`Config`] came from: a line of the file, the default, or the
//! command line, as clap's `ValueSource` does for arguments; and what the command line sets.
//!
//! The parser records a line for every key it reads; [`Config::apply_overrides`], the
//! command line's way in, records the option or argument. [`Config::blame`] is what it is
//! all for: a failure found later, at start-up (an address in use, a log file that cannot
//! be created), becomes an error that names the line, the default or the option that set
//! the value, so the user knows what to change.
//!
//! The command line has two forms, told apart by [`Overrides::with_positional`]: ours,
//! `proxy [CONFIG] [--port N] [--log FILE] [--ttl SECS]`, and the course statement's
//! `proxy PORT [LOG_FILE [TTL]]` (`httproxy 8080 /path/log.log`), whose first argument is a
//! number; both read `proxy.conf` unless told otherwise. Reading the file is `mod.rs`; this
//! module does not open, bind or resolve anything either.

use std::fmt;
use std::path::{Path, PathBuf};

use super::addresses::{parse_listen, with_port};
use super::{Backend, Config};
use crate::error::Error;

/// Where one value of a [`Config`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// Set nowhere: the documented default.
    Default,
    /// Set on this 1-based line of the configuration file.
    Line(usize),
    /// Set by this command-line option or positional argument (`--log`, `LOG_FILE`), which
    /// overrides the file.
    Flag(&'static str),
}

/// Where each value of a [`Config`] came from: what [`parse`](super::parse) and
/// [`Config::apply_overrides`] record, so that an error found later (a log file that cannot
/// be created, a backend name that does not resolve) can name the line that set it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources {
    /// The configuration file as named in errors (the `origin` given to `parse`); empty
    /// for a default configuration.
    pub(super) file: String,
    /// The keys the file or the command line set, each with where; `backend` is apart.
    keys: Vec<(&'static str, Source)>,
    /// The line of each `backend`, in the order of [`Config::backends`].
    pub(super) backends: Vec<usize>,
    /// The line of each `pool NAME =`, in the order of [`Config::pools`].
    pub(super) pools: Vec<usize>,
    /// The line of each `route`, in the order of [`Config::routes`].
    pub(super) routes: Vec<usize>,
}

impl Sources {
    /// The configuration file as named in errors.
    pub(crate) fn file(&self) -> &str {
        &self.file
    }

    /// Where the value of `key` came from (for `backend`, the first backend's line).
    pub(crate) fn of(&self, key: &str) -> Source {
        if key == "backend" {
            return self.of_backend(0);
        }
        self.keys
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map_or(Source::Default, |&(_, source)| source)
    }

    /// Where the backend at `index` in [`Config::backends`] was listed.
    pub(crate) fn of_backend(&self, index: usize) -> Source {
        self.backends
            .get(index)
            .map_or(Source::Default, |&line| Source::Line(line))
    }

    /// `key` and where its value came from, to start a message about it:
    /// `proxy.conf:14: access_log`, `access_log (default)` or `log_file (--log)`.
    pub(crate) fn locate(&self, key: &str, source: Source) -> String {
        match source {
            Source::Line(line) => format!("{}:{line}: {key}", self.file),
            Source::Default => format!("{key} (default)"),
            Source::Flag(flag) => format!("{key} ({flag})"),
        }
    }

    /// Records that `source` set `key`, in place of what set it before.
    pub(super) fn set(&mut self, key: &'static str, source: Source) {
        self.keys.retain(|(k, _)| *k != key);
        self.keys.push((key, source));
    }
}

/// The configuration file read when the command line names none.
pub const DEFAULT_CONFIG: &str = "proxy.conf";

/// What the command line sets over the configuration file, each value with the option or
/// positional argument that gave it, which start-up errors name (`listen (PORT)`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--listen ADDR`.
    pub listen: Option<String>,
    /// `--port N` or PORT: replaces only the port of `listen`.
    pub port: Option<(u16, &'static str)>,
    /// `--log FILE` or LOG_FILE: replaces `log_file`.
    pub log_file: Option<(PathBuf, &'static str)>,
    /// `--ttl SECS` or TTL: replaces `cache_ttl`.
    pub cache_ttl: Option<(u64, &'static str)>,
}

impl Overrides {
    /// The options `--listen`, `--port`, `--log` and `--ttl`.
    pub fn from_options(
        listen: Option<String>,
        port: Option<u16>,
        log_file: Option<PathBuf>,
        cache_ttl: Option<u64>,
    ) -> Overrides {
        Overrides {
            listen,
            port: port.map(|p| (p, "--port")),
            log_file: log_file.map(|f| (f, "--log")),
            cache_ttl: cache_ttl.map(|t| (t, "--ttl")),
        }
    }

    /// Reads the positional arguments and returns the configuration file to load: either
    /// `[CONFIG]`, or the course statement's `PORT [LOG_FILE [TTL]]` when the first is a
    /// number (then `proxy.conf` is read, PORT replaces the port of `listen`, LOG_FILE
    /// `log_file` and TTL `cache_ttl`, in seconds).
    ///
    /// # Errors
    /// A message naming the argument, for what could be read two ways: a first argument
    /// that is a number and also a file (`is_file`), a value given both as an argument and
    /// as its option, arguments after CONFIG, a LOG_FILE that is a number, or a PORT or TTL
    /// out of range.
    pub fn with_positional(
        self,
        args: &[String],
        is_file: impl Fn(&Path) -> bool,
    ) -> Result<(PathBuf, Overrides), String> {
        let Some((first, rest)) = args.split_first() else {
            return Ok((PathBuf::from(DEFAULT_CONFIG), self));
        };
        if !is_number(first) {
            return match rest.first() {
                None => Ok((PathBuf::from(first), self)),
                Some(port) if is_number(port) => Err(format!(
                    "{first} is not a port number, {port} is: the port comes first, \
                     `proxy {port} {first}`"
                )),
                Some(extra) => Err(format!(
                    "unexpected {extra:?} after the configuration file {first}: the forms are \
                     `proxy [CONFIG] [OPTIONS]` and `proxy PORT [LOG_FILE [TTL]]`"
                )),
            };
        }
        if is_file(Path::new(first)) {
            return Err(format!(
                "{first} is a port number and a file here: write ./{first} for the \
                 configuration file"
            ));
        }
        self.statement_form(first, rest)
            .map(|overrides| (PathBuf::from(DEFAULT_CONFIG), overrides))
    }

    /// `PORT [LOG_FILE [TTL]]`, each refused when its option set it too.
    fn statement_form(mut self, port: &str, rest: &[String]) -> Result<Overrides, String> {
        let port = port
            .parse()
            .map_err(|_| format!("PORT {port} is not a port number (0 to 65535)"))?;
        set_once(&mut self.port, port, "PORT")?;
        if let Some(log) = rest.first() {
            if is_number(log) {
                return Err(format!(
                    "LOG_FILE {log} is a number: the form is `proxy PORT [LOG_FILE [TTL]]`"
                ));
            }
            set_once(&mut self.log_file, PathBuf::from(log), "LOG_FILE")?;
        }
        if let Some(ttl) = rest.get(1) {
            let ttl = ttl
                .parse()
                .map_err(|_| format!("TTL {ttl} is not a number of seconds"))?;
            set_once(&mut self.cache_ttl, ttl, "TTL")?;
        }
        match rest.get(2) {
            Some(extra) => Err(format!("unexpected {extra:?} after PORT LOG_FILE TTL")),
            None => Ok(self),
        }
    }
}

/// Loads the configuration file at `path` and applies the command line's `overrides`.
///
/// # Errors
/// The line to print: the file's own error (`proxy.conf:3: ...`), or `proxy: --listen ...`.
pub fn load_with(path: &Path, overrides: Overrides) -> Result<Config, String> {
    let mut config = super::load(path).map_err(|e| e.to_string())?;
    config
        .apply_overrides(overrides)
        .map_err(|why| format!("proxy: {why}"))?;
    Ok(config)
}

/// Sets a value from the positional argument `by`, unless its option set it already.
fn set_once<T>(
    slot: &mut Option<(T, &'static str)>,
    value: T,
    by: &'static str,
) -> Result<(), String> {
    if let Some((_, option)) = slot {
        return Err(format!(
            "{by} and {option} both set the same value: give one of them"
        ));
    }
    *slot = Some((value, by));
    Ok(())
}

/// Whether a positional argument is a number, which makes it the statement's PORT.
fn is_number(arg: &str) -> bool {
    !arg.is_empty() && arg.bytes().all(|b| b.is_ascii_digit())
}

impl Config {
    /// Applies the command line's overrides: `--listen`, then the port (which replaces only
    /// the port of `listen`), the log file and the cache TTL, each recorded with the option
    /// or argument that set it.
    ///
    /// # Errors
    /// A message when `listen` is not a valid `host:port`.
    pub fn apply_overrides(&mut self, overrides: Overrides) -> Result<(), String> {
        if let Some(listen) = overrides.listen {
            self.listen = parse_listen(&listen).map_err(|why| format!("--listen {why}"))?;
            self.sources.set("listen", Source::Flag("--listen"));
        }
        if let Some((port, by)) = overrides.port {
            self.listen = with_port(&self.listen, port);
            self.sources.set("listen", Source::Flag(by));
        }
        if let Some((log_file, by)) = overrides.log_file {
            self.log_file = log_file;
            self.sources.set("log_file", Source::Flag(by));
        }
        if let Some((ttl, by)) = overrides.cache_ttl {
            self.cache_ttl = ttl;
            self.sources.set("cache_ttl", Source::Flag(by));
        }
        Ok(())
    }

    /// A start-up failure caused by the value of `key`, pointing at where that value came
    /// from: when the file set it, an error at its line, printed like the file's own
    /// (`proxy.conf:14: access_log: why`); otherwise a start-up error that names the key and
    /// its source (`access_log (default): why`, `log_file (--log): why`).
    pub fn blame(&self, key: &str, why: impl fmt::Display) -> Error {
        let source = self.sources.of(key);
        let message = format!("{}: {why}", self.sources.locate(key, source));
        match source {
            Source::Line(_) => Error::Config(message),
            Source::Default | Source::Flag(_) => Error::Startup(message),
        }
    }

    /// Every backend of every pool (the `backend` lines', then each `pool`'s), each with
    /// where it is listed, to start a message about it: `proxy.conf:5: backend`,
    /// `proxy.conf:9: pool api`, or `backend (default)`.
    pub fn every_backend(&self) -> Vec<(String, &Backend)> {
        let mut all: Vec<(String, &Backend)> = (0..self.backends.len())
            .map(|i| {
                let at = self.sources.locate("backend", self.sources.of_backend(i));
                (at, &self.backends[i])
            })
            .collect();
        for (i, pool) in self.pools.iter().enumerate() {
            let line = self
                .sources
                .pools
                .get(i)
                .map_or(Source::Default, |&l| Source::Line(l));
            let at = self.sources.locate(&format!("pool {}", pool.name), line);
            all.extend(pool.backends.iter().map(|backend| (at.clone(), backend)));
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::config::parse;

    #[test]
    fn sources_remember_the_line_of_each_key() {
        let text = "# proxy\nbackend = a:1\n\naccess_log = logs/a.log\nbackend = b:2\n";
        let c = parse(text, "proxy.conf").unwrap();
        assert_eq!(c.sources.file, "proxy.conf");
        assert_eq!(c.sources.of("access_log"), Source::Line(4));
        assert_eq!(c.sources.of("cache_dir"), Source::Default);
        assert_eq!(c.sources.of("backend"), Source::Line(2));
        assert_eq!(c.sources.of_backend(1), Source::Line(5));
        assert_eq!(c.sources.of_backend(2), Source::Default);
        let at = |key| c.sources.locate(key, c.sources.of(key));
        assert_eq!(at("access_log"), "proxy.conf:4: access_log");
        assert_eq!(at("cache_dir"), "cache_dir (default)");
        // Where a value came from is part of the configuration as parsed.
        assert_ne!(c, parse(&format!("\n{text}"), "proxy.conf").unwrap());
    }

    #[test]
    fn overrides_are_remembered_as_flags() {
        let mut c = parse("listen = 1.2.3.4:80\nbackend = a:1\ncache_ttl = 5\n", "p").unwrap();
        let options = |listen, port, log, ttl| Overrides::from_options(listen, port, log, ttl);
        c.apply_overrides(options(None, Some(81), Some(PathBuf::from("x.log")), None))
            .unwrap();
        assert_eq!(c.listen, "1.2.3.4:81");
        assert_eq!(c.sources.of("listen"), Source::Flag("--port"));
        assert_eq!(c.sources.of("log_file"), Source::Flag("--log"));
        assert_eq!(c.sources.of("cache_ttl"), Source::Line(3));
        assert_eq!(
            c.sources.locate("log_file", c.sources.of("log_file")),
            "log_file (--log)"
        );
        c.apply_overrides(options(Some("[::1]:0".to_string()), None, None, Some(0)))
            .unwrap();
        assert_eq!(c.sources.of("listen"), Source::Flag("--listen"));
        assert_eq!(c.sources.of("cache_ttl"), Source::Flag("--ttl"));
    }

    #[test]
    fn a_setting_error_points_at_the_line_or_names_the_source() {
        let mut config = parse("backend = a:1\naccess_log = x\n", "p.conf").unwrap();
        let e = config.blame("access_log", "cannot create x: why");
        assert!(matches!(e, Error::Config(_)));
        assert_eq!(e.to_string(), "p.conf:2: access_log: cannot create x: why");
        let e = config.blame("cache_dir", "why");
        assert_eq!(e.to_string(), "cache_dir (default): why");
        config
            .apply_overrides(Overrides::from_options(None, None, Some("y".into()), None))
            .unwrap();
        let e = config.blame("log_file", "why");
        assert!(matches!(e, Error::Startup(_)));
        assert_eq!(e.to_string(), "log_file (--log): why");
        assert_eq!(e.status(), None);
    }

    fn positional(args: &[&str], options: Overrides) -> Result<(PathBuf, Overrides), String> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        options.with_positional(&args, |p| p == Path::new("9999"))
    }

    #[test]
    fn the_course_statements_positional_form() {
        let none = Overrides::default();
        let (path, o) = positional(&["8080", "logs/proxy.log", "30"], none.clone()).unwrap();
        assert_eq!(path, PathBuf::from("proxy.conf"));
        assert_eq!(o.port, Some((8080, "PORT")));
        assert_eq!(
            o.log_file,
            Some((PathBuf::from("logs/proxy.log"), "LOG_FILE"))
        );
        assert_eq!(o.cache_ttl, Some((30, "TTL")));
        let (_, o) = positional(&["8080"], none.clone()).unwrap();
        assert_eq!((o.port, o.log_file), (Some((8080, "PORT")), None));
        // Our own form: a CONFIG, or nothing for proxy.conf.
        let (path, o) = positional(&["demo.conf"], none.clone()).unwrap();
        assert_eq!((path, o), (PathBuf::from("demo.conf"), none.clone()));
        let (path, _) = positional(&[], none.clone()).unwrap();
        assert_eq!(path, PathBuf::from(DEFAULT_CONFIG));
        // An option goes along with the arguments that do not repeat it.
        let with_ttl = Overrides::from_options(Some("127.0.0.1:0".into()), None, None, Some(5));
        let (_, o) = positional(&["8080", "p.log"], with_ttl).unwrap();
        assert_eq!(o.cache_ttl, Some((5, "--ttl")));
        assert_eq!(o.listen.as_deref(), Some("127.0.0.1:0"));

        let mut c = parse("listen = 0.0.0.0:80\nbackend = a:1\n", "p").unwrap();
        let (_, o) = positional(&["8080", "logs/proxy.log"], none).unwrap();
        c.apply_overrides(o).unwrap();
        assert_eq!(c.listen, "0.0.0.0:8080");
        let e = c.blame("log_file", "why");
        assert_eq!(e.to_string(), "log_file (LOG_FILE): why");
    }

    #[test]
    fn ambiguous_positional_arguments_are_refused_with_the_reason() {
        let port = Overrides::from_options(None, Some(9090), None, None);
        let log = Overrides::from_options(None, None, Some("x.log".into()), None);
        let cases = [
            (&["8080"][..], port, "PORT and --port both set"),
            (&["8080", "a.log"], log, "LOG_FILE and --log both set"),
            (
                &["9999"],
                Overrides::default(),
                "write ./9999 for the configuration",
            ),
            (
                &["99999"],
                Overrides::default(),
                "PORT 99999 is not a port number",
            ),
            (
                &["8080", "8081"],
                Overrides::default(),
                "LOG_FILE 8081 is a number",
            ),
            (
                &["8080", "a.log", "soon"],
                Overrides::default(),
                "TTL soon is not",
            ),
            (
                &["8080", "a.log", "1", "x"],
                Overrides::default(),
                "unexpected \"x\"",
            ),
            (
                &["logs/p.log", "8080"],
                Overrides::default(),
                "`proxy 8080 logs/p.log`",
            ),
            (
                &["demo.conf", "x.log"],
                Overrides::default(),
                "the forms are",
            ),
        ];
        for (args, options, expected) in cases {
            let why = positional(args, options).unwrap_err();
            assert!(why.contains(expected), "{args:?}: {why}");
        }
    }
}
