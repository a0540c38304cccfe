//! The web server's command line once its two forms are told apart: ours,
//! `webserver [--port N | --listen ADDR] [--root DIR] [--log FILE]`, and the web-server
//! statement's `webserver PORT LOG_FILE DOCUMENT_ROOT` (positional, in that order; the first
//! one or two alone work too). Both become a [`Launch`]: where to listen, what to serve,
//! where the log also goes. What could be read two ways is refused with the reason.
//!
//! Pure: whether a path is a directory is asked through a function; nothing is opened or
//! bound here (that is `webserver::run` and `logging`).

use std::path::{Path, PathBuf};

/// The port listened on, on all interfaces, unless the command line says otherwise.
pub const DEFAULT_PORT: u16 = 8081;
/// The directory served unless the command line says otherwise.
pub const DEFAULT_ROOT: &str = "www";

/// The positional form, as named in messages.
const FORM: &str = "the form is `webserver PORT LOG_FILE DOCUMENT_ROOT`";

/// The command line as given: the positional arguments and the options (`None`: absent).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandLine {
    /// `PORT [LOG_FILE [DOCUMENT_ROOT]]`.
    pub positional: Vec<String>,
    /// `--port N`.
    pub port: Option<u16>,
    /// `--listen ADDR`.
    pub listen: Option<String>,
    /// `--root DIR`.
    pub root: Option<PathBuf>,
    /// `--log FILE`.
    pub log: Option<PathBuf>,
}

/// What the server is started with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    /// The address to bind: `--listen`, else all interfaces on the port.
    pub listen: String,
    /// The directory whose files are served.
    pub root: PathBuf,
    /// A file the log is appended to, besides the terminal.
    pub log: Option<PathBuf>,
}

impl CommandLine {
    /// Reads PORT, LOG_FILE and DOCUMENT_ROOT as `--port`, `--log` and `--root`, and fills
    /// in the defaults (port `DEFAULT_PORT` on all interfaces, root `DEFAULT_ROOT`, the log
    /// on the terminal only).
    ///
    /// # Errors
    /// A message naming the argument: a PORT that is not a port number, a value given both
    /// as an argument and as an option (PORT and `--listen` included), a LOG_FILE that is a
    /// number or a directory (`is_dir`: the arguments are likely out of order), or a fourth
    /// argument.
    pub fn into_launch(self, is_dir: impl Fn(&Path) -> bool) -> Result<Launch, String> {
        let mut args = self.positional.iter();
        let mut port = self.port;
        let (mut log, mut root) = (self.log, self.root);
        if let Some(arg) = args.next() {
            let given = arg
                .parse()
                .map_err(|_| format!("PORT {arg} is not a port number (0 to 65535): {FORM}"))?;
            let option = [
                (port.is_some(), "--port"),
                (self.listen.is_some(), "--listen"),
            ];
            if let Some((_, option)) = option.iter().find(|(set, _)| *set) {
                return Err(format!(
                    "PORT and {option} both say where to listen: give one"
                ));
            }
            port = Some(given);
        }
        if let Some(arg) = args.next() {
            if log.is_some() {
                return Err("LOG_FILE and --log both name the log file: give one".to_string());
            }
            let number = arg.bytes().all(|b| b.is_ascii_digit());
            if number || is_dir(Path::new(arg)) {
                let what = if number { "a number" } else { "a directory" };
                return Err(format!("LOG_FILE {arg} is {what}: {FORM}"));
            }
            log = Some(PathBuf::from(arg));
        }
        if let Some(arg) = args.next() {
            if root.is_some() {
                return Err("DOCUMENT_ROOT and --root both name the root: give one".to_string());
            }
            root = Some(PathBuf::from(arg));
        }
        if let Some(extra) = args.next() {
            return Err(format!("unexpected {extra:?} after DOCUMENT_ROOT: {FORM}"));
        }
        let port = port.unwrap_or(DEFAULT_PORT);
        Ok(Launch {
            listen: self.listen.unwrap_or_else(|| format!("0.0.0.0:{port}")),
            root: root.unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT)),
            log,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(positional: &[&str], options: CommandLine) -> Result<Launch, String> {
        let positional = positional.iter().map(|a| a.to_string()).collect();
        let is_dir = |p: &Path| p == Path::new("www");
        CommandLine {
            positional,
            ..options
        }
        .into_launch(is_dir)
    }

    #[test]
    fn the_statements_form_and_ours_give_the_same_launch() {
        let statement = launch(&["8082", "logs/web.log", "site"], CommandLine::default());
        let ours = CommandLine {
            port: Some(8082),
            log: Some("logs/web.log".into()),
            root: Some("site".into()),
            ..CommandLine::default()
        };
        assert_eq!(statement, launch(&[], ours));
        let statement = statement.unwrap();
        assert_eq!(statement.listen, "0.0.0.0:8082");
        assert_eq!(statement.root, PathBuf::from("site"));
        assert_eq!(statement.log, Some(PathBuf::from("logs/web.log")));
        // The defaults, and a prefix of the form with the rest as options.
        let defaults = launch(&[], CommandLine::default()).unwrap();
        assert_eq!(defaults.listen, "0.0.0.0:8081");
        assert_eq!((defaults.root, defaults.log), (PathBuf::from("www"), None));
        let with_root = CommandLine {
            root: Some("site".into()),
            ..CommandLine::default()
        };
        let prefix = launch(&["0", "w.log"], with_root).unwrap();
        assert_eq!(
            (prefix.listen.as_str(), prefix.root),
            ("0.0.0.0:0", "site".into())
        );
        let listen = CommandLine {
            listen: Some("127.0.0.1:0".into()),
            ..CommandLine::default()
        };
        assert_eq!(launch(&[], listen).unwrap().listen, "127.0.0.1:0");
    }

    #[test]
    fn what_reads_two_ways_is_refused_with_the_reason() {
        let port = CommandLine {
            port: Some(1),
            ..CommandLine::default()
        };
        let listen = CommandLine {
            listen: Some("127.0.0.1:0".into()),
            ..CommandLine::default()
        };
        let log = CommandLine {
            log: Some("x.log".into()),
            ..CommandLine::default()
        };
        let root = CommandLine {
            root: Some("site".into()),
            ..CommandLine::default()
        };
        let none = CommandLine::default;
        let cases = [
            (&["www"][..], none(), "PORT www is not a port number"),
            (&["70000"], none(), "PORT 70000 is not a port number"),
            (&["8081"], port, "PORT and --port both"),
            (&["8081"], listen, "PORT and --listen both"),
            (&["8081", "a.log"], log, "LOG_FILE and --log both"),
            (
                &["8081", "a.log", "www"],
                root,
                "DOCUMENT_ROOT and --root both",
            ),
            (
                &["8081", "www", "a.log"],
                none(),
                "LOG_FILE www is a directory",
            ),
            (&["8081", "8082"], none(), "LOG_FILE 8082 is a number"),
            (&["8081", "a.log", "www", "x"], none(), "unexpected \"x\""),
        ];
        for (args, options, expected) in cases {
            let why = launch(args, options).unwrap_err();
            assert!(why.contains(expected), "{args:?}: {why}");
        }
    }
}
