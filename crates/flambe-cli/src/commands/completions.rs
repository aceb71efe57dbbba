use crate::cli::Cli;
use clap::CommandFactory;
use clap_complete::Shell;
use std::process::ExitCode;

pub fn print(shell: Shell) -> anyhow::Result<ExitCode> {
    super::quit_on_closed_stdout();
    clap_complete::generate(shell, &mut Cli::command(), "flambe", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
