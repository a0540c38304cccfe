//! The proxy's command line: which of its jobs a run does (serve, check the configuration,
//! flush the cache) and the exit status it ends with. `src/bin/proxy.rs` only parses the
//! arguments into `Args` and hands them here.
//!
//! ```text
//! proxy [OPTIONS] [CONFIG]                     serve (the default)
//! proxy [OPTIONS] PORT [LOG_FILE [TTL]]        the course statement's form: serve
//! proxy --check [CONFIG]                       check everything start-up would, start nothing
//! proxy --reload [CONFIG]                      the running proxy reads CONFIG again
//! proxy --stop [CONFIG]                        the running proxy stops gracefully
//! proxy --purge URL [CONFIG]                   the running proxy's cache forgets URL
//! proxy --flush-cache [CONFIG]                 empty the cache directory
//! ```
//!
//! Exit status: 0 after a job that succeeded, and after serving ended with a stop; 1 for a
//! bad configuration, a failed start-up, or a reload, stop or purge refused or not reached;
//! 2 for bad arguments (clap's).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{error::ErrorKind::ArgumentConflict, CommandFactory, Parser};

use super::config::{load_with, Config, Overrides};
use super::{Ask, Origin};
use crate::error::Error;
use crate::logging::file::LogFile;

/// Relevo: an HTTP/1.1 reverse proxy that spreads requests over backends in round-robin
/// order. Prints `listening on IP:PORT` once ready, then logs every request.
///
/// Exit status: 0 after a job that succeeded (serving: after `proxy --stop`), 1 for a bad
/// configuration or a failed start-up (address in use; a log, access log or cache directory
/// that cannot be created: all are made before `listening on` is printed, and the error
/// names the key and its proxy.conf line or option) or a refused --reload, --stop or
/// --purge, 2 for bad arguments.
#[derive(Parser, Debug)]
#[command(
    name = "proxy",
    version,
    override_usage = "proxy [OPTIONS] [CONFIG]\n       proxy [OPTIONS] PORT [LOG_FILE [TTL]]"
)]
pub struct Args {
    /// CONFIG (`key = value` lines; see README.md), proxy.conf by default; or, when the
    /// first is a number, the course statement's PORT [LOG_FILE [TTL]] (`proxy 8080
    /// logs/proxy.log`): proxy.conf is read, and they act as --port, --log and --ttl.
    #[arg(value_name = "CONFIG | PORT LOG_FILE TTL", num_args = 0..=3)]
    positional: Vec<String>,
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
    /// Seconds a response with neither its own lifetime nor Last-Modified stays fresh in
    /// the cache, overriding `cache_ttl` (0: cache only what the origin marks fresh, or can
    /// be validated).
    #[arg(long, value_name = "SECS")]
    ttl: Option<u64>,
    /// Empty the cache directory (entry files only), say what was removed, and exit.
    #[arg(long, group = "job")]
    flush_cache: bool,
    /// Check the configuration as start-up would (files and directories can be created,
    /// backends resolve), print a one-line summary or every problem, start nothing.
    #[arg(long, group = "job")]
    check: bool,
    /// Have the proxy running with this configuration read it again (through `POST
    /// {status_path}/reload` to its `listen` address): print what it did, or the mistakes
    /// that made it keep the running configuration (exit 1).
    #[arg(long, group = "job")]
    reload: bool,
    /// Stop the proxy running with this configuration gracefully (`POST
    /// {status_path}/stop`): requests in flight get up to `shutdown_timeout`; returns once it
    /// has gone, or says it has not.
    #[arg(long, group = "job")]
    stop: bool,
    /// Have the proxy running with this configuration remove what its cache stores for URL
    /// (`http://HOST/PATH`), or for PATH (starting with /) on every host, every Vary
    /// variant included (`POST {status_path}/purge`); prints how many responses went.
    #[arg(long, group = "job", value_name = "URL")]
    purge: Option<String>,
}

/// Runs the job `args` asks for; the exit status says how it went.
pub fn main(args: Args) -> ExitCode {
    let options = Overrides::from_options(args.listen, args.port, args.log, args.ttl);
    let (path, overrides) = match options.with_positional(&args.positional, Path::is_file) {
        Ok(read) => read,
        Err(why) => Args::command().error(ArgumentConflict, why).exit(),
    };
    let origin = Origin {
        path: path.clone(),
        overrides: overrides.clone(),
    };
    let config = match load_with(&path, overrides) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}");
            if args.reload {
                eprintln!("proxy: not reloaded: the running configuration stays");
            }
            return ExitCode::from(1);
        }
    };
    if args.flush_cache {
        let flushed = super::flush_cache(&config);
        match &flushed {
            Ok(said) => println!("{said}"),
            Err(e) => eprintln!("proxy: {e}"),
        }
        return ExitCode::from(u8::from(flushed.is_err()));
    }
    if args.check {
        return check(&config);
    }
    let asked = match (args.reload, args.stop, args.purge) {
        (true, _, _) => Some(Ask::Reload),
        (_, true, _) => Some(Ask::Stop),
        (_, _, Some(what)) => Some(Ask::Purge(what)),
        _ => None,
    };
    if let Some(what) = asked {
        return control(&config, &what);
    }
    serve(config, origin)
}

/// `--reload`, `--stop` and `--purge`: what the proxy answered on stdout, or what went
/// wrong on stderr.
fn control(config: &Config, what: &Ask) -> ExitCode {
    match super::ask(config, what) {
        Ok(answer) => {
            println!("{answer}");
            ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("proxy: {why}");
            ExitCode::from(1)
        }
    }
}

/// `--check`: the summary on stdout, or every problem on stderr.
fn check(config: &Config) -> ExitCode {
    match super::check(config) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for problem in &problems {
                print_error(problem);
            }
            ExitCode::from(1)
        }
    }
}

/// Serves until stopped: the log file first (its errors name `log_file`), then `run`.
fn serve(config: Config, origin: Origin) -> ExitCode {
    let started = LogFile::open(&config.log_file)
        .map_err(|why| config.blame("log_file", why))
        .and_then(|file| crate::logging::init_with(config.log_level, Some(file)))
        .and_then(|()| super::run(config, origin));
    match started {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            print_error(&e);
            ExitCode::from(1)
        }
    }
}

/// An error on stderr: one located at a proxy.conf line like the file's own errors
/// (`proxy.conf:14: access_log: ...`), any other after the program's name.
fn print_error(e: &Error) {
    match e {
        Error::Config(e) => eprintln!("{e}"),
        e => eprintln!("proxy: {e}"),
    }
}
