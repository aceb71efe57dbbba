//! The `flambe` command line: parses flags, calls one operation per command in
//! the library crates, and renders the result. It holds no logic of its own.
//!
//! - `cli`: the flags (clap), Flambé's commands as typed;
//! - `commands`: one file per command: parse, call one operation, print;
//! - `print`: how plans, results and clusters look on the console;
//! - `progress` (the engine's events) and `steps` (an operation's steps):
//!   the console's observers, spinners and lines;
//! - `outcome`: what a finished run prints and its exit code;
//! - `render`: the one error renderer: the error, each cause once, every hint;
//! - `logging`: `tracing` to stderr, `-v` for more.

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
    // This binary is also what each local trial runs under (the job shim):
    // that is decided before anything else, the command line included.
    if let Some(code) = flambe_executor::run_job_shim_if_invoked() {
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    flambe_executor::install_job_shim();
    let cli = cli::Cli::parse();
    logging::init(cli.verbose);
    let open_files = flambe_executor::raise_open_file_limit();
    tracing::debug!(open_files, "open file limit");
    let result = commands::dispatch(cli);
    match result {
        Ok(code) => code,
        Err(err) => render::error(&err),
    }
}
