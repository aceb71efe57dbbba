use crate::cli::Cli;
use clap::CommandFactory;
use clap_complete::Shell;
use std::process::ExitCode;

pub fn print(shell: Shell) -> anyhow::Result<ExitCode> {
    clap_complete::generate(shell, &mut Cli::command(), "flambe", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
