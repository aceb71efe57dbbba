//! One module per command; each parses nothing and prints what its library
//! operation returns.

mod cluster;
mod completions;
mod run;
mod site;

use crate::cli::{Cli, Command};
use std::process::ExitCode;

pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Some(Command::Completions { shell }) => completions::print(shell),
        Some(Command::Cluster(cmd)) => cluster::run(cmd),
        Some(Command::Site { target, site }) => site::run(&target, &site),
        None => run::run(cli.run, cli.verbose),
    }
}
