//! `proxy [CONFIG] [OPTIONS]` or `proxy PORT [LOG_FILE [TTL]] [OPTIONS]`: the Relevo
//! reverse proxy. What each argument means, and the exit statuses, are in
//! `relevo::proxy::command`.

use std::process::ExitCode;

use clap::Parser;
use relevo::proxy::command::{main as run, Args};

fn main() -> ExitCode {
    run(Args::parse())
}
