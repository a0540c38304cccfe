//! `webserver [--port N | --listen ADDR] [--root DIR] [--name NAME] [--log FILE]`: a demo
//! backend, a thin main over `relevo::webserver::run`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use log::LevelFilter;

/// A small static file server for the Relevo demo: serves GET and HEAD of the files under
/// ROOT, shows its NAME in every HTML page (`{{server}}`) and in `X-Served-By`, and answers
/// POST with a description of what it received. Prints `listening on IP:PORT` once ready.
///
/// Exit status: 1 when it cannot start, 2 for bad arguments.
#[derive(Parser, Debug)]
#[command(name = "webserver", version)]
struct Args {
    /// Port to listen on (on all interfaces); 0 lets the OS pick one.
    #[arg(long, value_name = "N", default_value_t = 8081)]
    port: u16,
    /// Full address to listen on, instead of --port: `127.0.0.1:0`, `[::1]:8081`.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Directory whose files are served.
    #[arg(long, value_name = "DIR", default_value = "www")]
    root: PathBuf,
    /// Name shown in pages and in the X-Served-By header.
    #[arg(long, default_value = "server-1")]
    name: String,
    /// Also append the log to this file (created with its directories).
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let listen = args
        .listen
        .unwrap_or_else(|| format!("0.0.0.0:{}", args.port));
    let site = relevo::webserver::Site {
        root: args.root,
        name: args.name,
    };
    let result = relevo::logging::init(LevelFilter::Info, args.log.as_deref())
        .and_then(|()| relevo::webserver::run(&listen, site));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("webserver: {e}");
            ExitCode::from(1)
        }
    }
}
