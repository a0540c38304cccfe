//! `webserver [--port N | --listen ADDR] [--root DIR] [--name NAME] [--log FILE]`, or the
//! statement's `webserver PORT LOG_FILE DOCUMENT_ROOT`: a demo backend, a thin main over
//! `relevo::webserver::run`. The two forms are told apart by `CommandLine::into_launch`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{error::ErrorKind::ArgumentConflict, CommandFactory, Parser};
use log::LevelFilter;
use relevo::webserver::command_line::CommandLine;

/// A small static file server for the Relevo demo: serves GET and HEAD of the files under
/// ROOT, shows its NAME in every HTML page (`{{server}}`) and in `X-Served-By`, and answers
/// POST with a description of what it received. Prints `listening on IP:PORT` once ready.
///
/// Exit status: 1 when it cannot start, 2 for bad arguments.
#[derive(Parser, Debug)]
#[command(
    name = "webserver",
    version,
    override_usage = "webserver [OPTIONS]\n       webserver [OPTIONS] PORT [LOG_FILE [DOCUMENT_ROOT]]"
)]
struct Args {
    /// The web-server statement's form, `webserver 8081 logs/web.log www`: the same as
    /// --port, --log and --root, in that order.
    #[arg(value_name = "PORT LOG_FILE DOCUMENT_ROOT", num_args = 0..=3)]
    positional: Vec<String>,
    /// Port to listen on (on all interfaces), 8081 by default; 0 lets the OS pick one.
    #[arg(long, value_name = "N")]
    port: Option<u16>,
    /// Full address to listen on, instead of --port: `127.0.0.1:0`, `[::1]:8081`.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Directory whose files are served, www by default.
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Name shown in pages and in the X-Served-By header.
    #[arg(long, default_value = "server-1")]
    name: String,
    /// Also append the log to this file (created with its directories).
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let line = CommandLine {
        positional: args.positional,
        port: args.port,
        listen: args.listen,
        root: args.root,
        log: args.log,
    };
    let launch = match line.into_launch(Path::is_dir) {
        Ok(launch) => launch,
        Err(why) => Args::command().error(ArgumentConflict, why).exit(),
    };
    let site = relevo::webserver::Site {
        root: launch.root,
        name: args.name,
    };
    let result = relevo::logging::init(LevelFilter::Info, launch.log.as_deref())
        .and_then(|()| relevo::webserver::run(&launch.listen, site));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("webserver: {e}");
            ExitCode::from(1)
        }
    }
}
