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
        Some(Command::TrialGuard { marker }) => {
            flambe_executor::wrapper::guard_trial(&marker);
            Ok(ExitCode::SUCCESS)
        }
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
    flambe_executor::wrapper::leave_ray_environment();
    let code = cluster::runtime()?.block_on(flambe_executor::wrapper::run_trial(spec));
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// For commands that only print: end quietly when the reader goes away
/// (`flambe x.yaml --dry-run | head`) instead of failing on a broken pipe.
/// Not for commands that talk to hosts or serve: those keep Rust's default
/// (a closed pipe or socket is an error they handle).
pub fn quit_on_closed_stdout() {
    // SAFETY: restoring the default disposition of SIGPIPE before any
    // thread or child exists; no handler is installed.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
