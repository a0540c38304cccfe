//! `proxy [CONFIG] [--listen ADDR] [--port N] [--log FILE] [--ttl SECS] [--flush-cache]`: the
//! Relevo reverse proxy.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use relevo::error::Error;
use relevo::logging::file::LogFile;

/// Relevo: an HTTP/1.1 reverse proxy that spreads requests over backends in round-robin
/// order. Prints `listening on IP:PORT` once ready, then logs every request.
///
/// Exit status: 0 never (it serves until stopped) except after --flush-cache, 1 for a bad
/// configuration or a start-up failure (address in use, log file, access log or cache
/// directory that cannot be created, cache not flushable), 2 for bad arguments. Every file
/// and directory is opened or created before `listening on` is printed, and a start-up
/// error names the key (and its proxy.conf line, or the option) that set the value.
#[derive(Parser, Debug)]
#[command(name = "proxy", version)]
struct Args {
    /// Configuration file (`key = value` lines; see README.md for every key).
    #[arg(default_value = "proxy.conf")]
    config: PathBuf,
    /// Address to listen on, overriding `listen`: `0.0.0.0:8080`, `[::]:8080`,
    /// `127.0.0.1:0` (port 0: the OS picks one).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Port to listen on, keeping the host of `listen` (or of `--listen`).
    #[arg(long, value_name = "N")]
    port: Option<u16>,
    /// Log file, overriding `log_file`.
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Seconds a response without its own lifetime stays fresh in the cache, overriding
    /// `cache_ttl` (0: cache only what the origin marks fresh).
    #[arg(long, value_name = "SECS")]
    ttl: Option<u64>,
    /// Empty the cache directory (entry files only), say what was removed, and exit.
    #[arg(long)]
    flush_cache: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut config = match relevo::proxy::config::load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    if let Err(why) = config.apply_overrides(args.listen, args.port, args.log, args.ttl) {
        eprintln!("proxy: {why}");
        return ExitCode::from(1);
    }
    if args.flush_cache {
        return match relevo::proxy::flush_cache(&config) {
            Ok(said) => {
                println!("{said}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("proxy: {e}");
                ExitCode::from(1)
            }
        };
    }
    let started = LogFile::open(&config.log_file)
        .map_err(|why| config.blame("log_file", why))
        .and_then(|file| relevo::logging::init_with(config.log_level, Some(file)))
        .and_then(|()| relevo::proxy::run(config));
    match started {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            match e {
                // Located at a proxy.conf line: printed like the file's own errors.
                Error::Config(e) => eprintln!("{e}"),
                e => eprintln!("proxy: {e}"),
            }
            ExitCode::from(1)
        }
    }
}
