//! Logging set-up: every log line goes to the terminal and to a file, stamped by chrono.
//!
//! simplelog provides the terminal (a `TermLogger` in mixed mode, errors to stderr and the
//! rest to stdout) and `log_file` the file (whole lines only, reopened after rotation); a
//! thin wrapper in front of them, `Stamped`, prefixes each line with the local time and the
//! level. What to log is decided by the modules that log; this one only decides where lines
//! go and what they look like. The level and the file can be changed while the program runs
//! (`reconfigure`, for the proxy's reload).
//!
//!
//! ```text
//! 2026-11-25 10:41:07.412 INFO  127.0.0.1:50412 "GET / HTTP/1.1" -> 127.0.0.1:8081 200 MISS 1432 B 2 ms
//! ```

pub mod file;

use std::path::Path;
use std::sync::{OnceLock, PoisonError, RwLock};

use log::{LevelFilter, Log, Metadata, Record};
use simplelog::{ColorChoice, ConfigBuilder, TermLogger, TerminalMode};

use crate::error::{Error, Result};
use file::{LogFile, Notice};

/// Installs the global logger: the terminal, plus `file` when given (opened for appending,
/// its directories created), both at `level`.
///
/// # Errors
/// `Error::Startup` when the file cannot be opened or a logger is already installed.
pub fn init(level: LevelFilter, file: Option<&Path>) -> Result<()> {
    let file = file
        .map(LogFile::open)
        .transpose()
        .map_err(Error::Startup)?;
    init_with(level, file)
}

/// The installed logger, kept where `reconfigure` can reach it.
static LOGGER: OnceLock<Stamped> = OnceLock::new();

/// [`init`] with the log file already open, so that the caller can say which setting named
/// it when it cannot be opened.
///
/// # Errors
/// `Error::Startup` when a logger is already installed.
pub fn init_with(level: LevelFilter, file: Option<LogFile>) -> Result<()> {
    // Our wrapper writes the time and level itself, so simplelog prints only the message.
    let plain = ConfigBuilder::new()
        .set_max_level(LevelFilter::Off)
        .set_time_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        .build();
    // Every level reaches the terminal logger: which ones are logged is `log::max_level`,
    // which `reconfigure` can change.
    let terminal = TermLogger::new(
        LevelFilter::Trace,
        plain,
        TerminalMode::Mixed,
        ColorChoice::Never,
    );
    let installed = Stamped {
        terminal,
        file: RwLock::new(file),
    };
    let already = || Error::Startup("a logger is already installed".to_string());
    LOGGER.set(installed).map_err(|_| already())?;
    let logger = LOGGER.get().ok_or_else(already)?;
    log::set_logger(logger).map_err(|_| already())?;
    log::set_max_level(level);
    Ok(())
}

/// Changes what the installed logger logs (`level`) and where (`file`, or the terminal
/// only), for every line from now on; does nothing when no logger was installed by `init`.
pub fn reconfigure(level: LevelFilter, file: Option<LogFile>) {
    if let Some(logger) = LOGGER.get() {
        *logger.file.write().unwrap_or_else(PoisonError::into_inner) = file;
        log::set_max_level(level);
    }
}

/// Prefixes every record with a chrono timestamp and the level, then hands it to simplelog's
/// terminal logger and to the log file. The file is not simplelog's `WriteLogger`: that one
/// writes a record in several pieces, and a full disk could keep half of it; `LogFile`
/// writes each line whole or not at all.
struct Stamped {
    terminal: Box<TermLogger>,
    file: RwLock<Option<LogFile>>,
}

impl Log for Stamped {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let now = chrono::Local::now().format("%Y-%m-%d %H:%M:%S%.3f");
        let line = format!("{now} {:<5} {}", record.level(), record.args());
        self.terminal.log(
            &Record::builder()
                .args(format_args!("{line}"))
                .metadata(record.metadata().clone())
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .build(),
        );
        let notice = {
            let file = self.file.read().unwrap_or_else(PoisonError::into_inner);
            let Some(file) = &*file else { return };
            file.append(format!("{line}\n").as_bytes())
        };
        if let Some(Notice { level, text }) = notice {
            // Logged like any line, once the file is free again. This cannot recurse further:
            // a notice is only given when the file's state changes, and logging it does not
            // change it again (a failing file stays failing, a reopened one stays open).
            self.log(
                &Record::builder()
                    .args(format_args!("log file: {text}"))
                    .level(level)
                    .target(module_path!())
                    .build(),
            );
        }
    }

    fn flush(&self) {
        self.terminal.flush();
    }
}
