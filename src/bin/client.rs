//! `client [OPTIONS] LOG_FILE URL` and `client flush [--cache-dir DIR]`: Relevo's HTTP
//! client. The options, their help and the exit statuses are in `relevo::client::cli`.

use std::process::ExitCode;

use clap::Parser;
use relevo::client::cli::{self, Cli};

fn main() -> ExitCode {
    ExitCode::from(cli::main(Cli::parse()))
}
