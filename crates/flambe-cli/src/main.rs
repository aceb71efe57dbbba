//! The `flambe` command line: parses flags, calls one operation per command in
//! the library crates, and renders the result. It holds no logic of its own.

mod cli;
mod commands;
mod logging;
mod outcome;
mod print;
mod progress;
mod render;
mod steps;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    logging::init(cli.verbose);
    let result = commands::dispatch(cli);
    match result {
        Ok(code) => code,
        Err(err) => render::error(&err),
    }
}
