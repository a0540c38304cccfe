//! `proxy [CONFIG] [--listen ADDR] [--port N] [--log FILE] [--ttl SECS] [--flush-cache]`: the
//! Relevo reverse proxy.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Relevo: an HTTP/1.1 reverse proxy that spreads requests over backends in round-robin
/// order. Prints `listening on IP:PORT` once ready, then logs every request.
///
/// Exit status: 0 never (it serves until stopped) except after --flush-cache, 1 for a bad
/// configuration or a start-up failure (address in use, log file not writable, cache not
/// flushable), 2 for bad arguments.
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
    let mut config = match relevo::config::load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    if let Some(listen) = args.listen {
        match relevo::config::parse_listen(&listen) {
            Ok(listen) => config.listen = listen,
            Err(why) => {
                eprintln!("proxy: --listen {why}");
                return ExitCode::from(1);
            }
        }
    }
    if let Some(port) = args.port {
        config.listen = relevo::config::with_port(&config.listen, port);
    }
    if let Some(log) = args.log {
        config.log_file = log;
    }
    if let Some(ttl) = args.ttl {
        config.cache_ttl = ttl;
    }
    if args.flush_cache {
        let dir = &config.cache_dir;
        let store = relevo::cache::Store::new(dir, config.cache_max_size, config.cache_max_object);
        return match store.flush() {
            Ok((files, bytes)) => {
                println!("removed {files} files ({bytes} B) from {}", dir.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("proxy: cannot flush {}: {e}", dir.display());
                ExitCode::from(1)
            }
        };
    }
    let started = relevo::logging::init(config.log_level, Some(&config.log_file))
        .and_then(|()| relevo::proxy::run(config));
    match started {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            eprintln!("proxy: {e}");
            ExitCode::from(1)
        }
    }
}
