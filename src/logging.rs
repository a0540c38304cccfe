//! Logging set-up: every log line goes to the terminal and to a file, stamped by chrono.
//!
//! simplelog provides the two sinks (a `TermLogger` in mixed mode, errors to stderr and the
//! rest to stdout, and a `WriteLogger` appending to the log file); a thin wrapper in front of
//! them, `Stamped`, prefixes each line with the local time and the level. What to log is
//! decided by the modules that log; this one only decides where lines go and what they look
//! like:
//!
//! ```text
//! 2026-11-25 10:41:07.412 INFO  127.0.0.1:50412 "GET / HTTP/1.1" -> 127.0.0.1:8081 200 MISS 1432 B 2 ms
//! ```

use std::fs::{self, File, OpenOptions};
use std::path::Path;

use log::{LevelFilter, Log, Metadata, Record};
use simplelog::{
    ColorChoice, CombinedLogger, ConfigBuilder, SharedLogger, TermLogger, TerminalMode, WriteLogger,
};

use crate::error::{Error, Result};

/// Installs the global logger: the terminal, plus `file` when given (its parent
/// directories are created), both at `level`.
///
/// # Errors
/// `Error::Startup` when the file cannot be opened or a logger is already installed.
pub fn init(level: LevelFilter, file: Option<&Path>) -> Result<()> {
    // Our wrapper writes the time and level itself, so simplelog prints only the message.
    let plain = ConfigBuilder::new()
        .set_max_level(LevelFilter::Off)
        .set_time_level(LevelFilter::Off)
        .set_thread_level(LevelFilter::Off)
        .set_target_level(LevelFilter::Off)
        .set_location_level(LevelFilter::Off)
        .build();
    let mut sinks: Vec<Box<dyn SharedLogger>> = vec![TermLogger::new(
        level,
        plain.clone(),
        TerminalMode::Mixed,
        ColorChoice::Never,
    )];
    if let Some(file) = file {
        sinks.push(WriteLogger::new(level, plain, open_log_file(file)?));
    }
    let inner = CombinedLogger::new(sinks);
    log::set_boxed_logger(Box::new(Stamped { inner }))
        .map_err(|_| Error::Startup("a logger is already installed".to_string()))?;
    log::set_max_level(level);
    Ok(())
}

/// Opens `file` for appending, creating it and its directories.
fn open_log_file(file: &Path) -> Result<File> {
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir)
            .map_err(|e| Error::Startup(format!("cannot create {}: {e}", dir.display())))?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .map_err(|e| Error::Startup(format!("cannot open log file {}: {e}", file.display())))
}

/// Prefixes every record with a chrono timestamp and the level, then hands it to simplelog.
struct Stamped {
    inner: Box<CombinedLogger>,
}

impl Log for Stamped {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let now = chrono::Local::now().format("%Y-%m-%d %H:%M:%S%.3f");
        self.inner.log(
            &Record::builder()
                .args(format_args!(
                    "{now} {:<5} {}",
                    record.level(),
                    record.args()
                ))
                .metadata(record.metadata().clone())
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .build(),
        );
    }

    fn flush(&self) {
        self.inner.flush();
    }
}
