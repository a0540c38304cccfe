//! Logging set-up: every log line goes to the terminal and to a file, stamped by chrono.
//!
//! simplelog provides the terminal (a `TermLogger` in mixed mode, errors to stderr and the
//! rest to stdout) and `log_file` the file (whole lines only, reopened after rotation); a
//! thin wrapper in front of them, `Stamped`, prefixes each line with the local time and the
//! level. What to log is decided by the modules that log; this one only decides where lines
//! go and what they look like:
//!
//! ```text
//! 2026-11-25 10:41:07.412 INFO  127.0.0.1:50412 "GET / HTTP/1.1" -> 127.0.0.1:8081 200 MISS 1432 B 2 ms
//! ```

pub mod file;

use std::path::Path;

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
    let terminal = TermLogger::new(level, plain, TerminalMode::Mixed, ColorChoice::Never);
    log::set_boxed_logger(Box::new(Stamped {
        level,
        terminal,
        file,
    }))
    .map_err(|_| Error::Startup("a logger is already installed".to_string()))?;
    log::set_max_level(level);
    Ok(())
}

/// Prefixes every record with a chrono timestamp and the level, then hands it to simplelog's
/// terminal logger and to the log file. The file is not simplelog's `WriteLogger`: that one
/// writes a record in several pieces, and a full disk could keep half of it; `LogFile`
/// writes each line whole or not at all.
struct Stamped {
    level: LevelFilter,
    terminal: Box<TermLogger>,
    file: Option<LogFile>,
}

impl Log for Stamped {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= self.level
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
        let Some(file) = &self.file else { return };
        if let Some(Notice { level, text }) = file.append(format!("{line}\n").as_bytes()) {
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
