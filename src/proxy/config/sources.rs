//! Where each value of a [`Config`] came from: a line of the file, the default, or a
//! command-line option, as clap's `ValueSource` does for arguments.
//!
//! The parser records a line for every key it reads; [`Config::apply_overrides`], the
//! command line's way in, records the option. [`Config::blame`] is what it is all for: a
//! failure found later, at start-up (an address in use, a log file that cannot be created),
//! becomes an error that names the line, the default or the option that set the value, so
//! the user knows what to change. Reading the file is `mod.rs`; this module does not open,
//! bind or resolve anything either.

use std::fmt;
use std::path::PathBuf;

use super::addresses::{parse_listen, with_port};
use super::Config;
use crate::error::Error;

/// Where one value of a [`Config`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// Set nowhere: the documented default.
    Default,
    /// Set on this 1-based line of the configuration file.
    Line(usize),
    /// Set by this command-line option (`--log`), which overrides the file.
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

impl Config {
    /// Applies the command line's overrides: `--listen`, then `--port` (which replaces only
    /// the port of `listen`), `--log` and `--ttl`.
    ///
    /// # Errors
    /// A message when `listen` is not a valid `host:port`.
    pub fn apply_overrides(
        &mut self,
        listen: Option<String>,
        port: Option<u16>,
        log_file: Option<PathBuf>,
        cache_ttl: Option<u64>,
    ) -> Result<(), String> {
        if let Some(listen) = listen {
            self.listen = parse_listen(&listen).map_err(|why| format!("--listen {why}"))?;
            self.sources.set("listen", Source::Flag("--listen"));
        }
        if let Some(port) = port {
            self.listen = with_port(&self.listen, port);
            self.sources.set("listen", Source::Flag("--port"));
        }
        if let Some(log_file) = log_file {
            self.log_file = log_file;
            self.sources.set("log_file", Source::Flag("--log"));
        }
        if let Some(ttl) = cache_ttl {
            self.cache_ttl = ttl;
            self.sources.set("cache_ttl", Source::Flag("--ttl"));
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
        c.apply_overrides(None, Some(81), Some(PathBuf::from("x.log")), None)
            .unwrap();
        assert_eq!(c.listen, "1.2.3.4:81");
        assert_eq!(c.sources.of("listen"), Source::Flag("--port"));
        assert_eq!(c.sources.of("log_file"), Source::Flag("--log"));
        assert_eq!(c.sources.of("cache_ttl"), Source::Line(3));
        assert_eq!(
            c.sources.locate("log_file", c.sources.of("log_file")),
            "log_file (--log)"
        );
        c.apply_overrides(Some("[::1]:0".to_string()), None, None, Some(0))
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
            .apply_overrides(None, None, Some("y".into()), None)
            .unwrap();
        let e = config.blame("log_file", "why");
        assert!(matches!(e, Error::Startup(_)));
        assert_eq!(e.to_string(), "log_file (--log): why");
        assert_eq!(e.status(), None);
    }
}
