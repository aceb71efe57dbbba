//! One module per command; each parses nothing and prints what its library
//! operation returns.

mod cluster;
mod completions;
mod remote;
mod run;
mod site;

use crate::cli::{Cli, Command};
use std::process::ExitCode;

pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Some(Command::Completions { shell }) => completions::print(shell),
        Some(Command::TrialRun { spec }) => trial_run(&spec),
        Some(Command::Attach { name, cluster }) => remote::attach(&name, &cluster),
        Some(Command::Pull { name, cluster, to }) => {
            remote::pull_results(&name, &cluster, to.as_deref())
        }
        Some(Command::Cluster(cmd)) => cluster::run(cmd),
        Some(Command::Site {
            target,
            cluster: None,
            site,
        }) => site::run(&target, &site),
        Some(Command::Site {
            target,
            cluster: Some(cluster),
            ..
        }) => remote::site(&target.display().to_string(), &cluster),
        None => run::run(cli.run, cli.verbose),
    }
}

/// `flambe trial-run SPEC`: one trial, as the entrypoint of a Ray job.
fn trial_run(spec: &str) -> anyhow::Result<ExitCode> {
    let spec = flambe_executor::wrapper::decode_spec(spec)
        .map_err(|e| anyhow::anyhow!("bad trial spec: {e}"))?;
    let code = cluster::runtime()?.block_on(flambe_executor::wrapper::run_trial(spec));
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
