//! One module per command; each parses its arguments, calls one operation
//! (`flambe_ops`, or a library call), and prints what it returns.

mod attach;
mod cluster_down;
mod cluster_exec;
mod cluster_rsync;
mod cluster_ssh;
mod cluster_status;
mod completions;
mod drive;
mod pull;
mod run;
mod site;
mod trial;
mod up;

use crate::cli::{Cli, ClusterCommand, Command};
use std::process::ExitCode;

pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Some(Command::Completions { shell }) => completions::print(shell),
        Some(Command::TrialRun { spec }) => trial::run(&spec),
        Some(Command::TrialGuard { marker }) => trial::guard(&marker),
        Some(Command::SlotRun { spec }) => trial::slot(&spec),
        Some(Command::SlotFeed { socket }) => trial::feed(&socket),
        Some(Command::Drive { spec }) => drive::run(&spec, cli.verbose),
        Some(Command::Attach { name, cluster }) => attach::run(&name, &cluster),
        Some(Command::Pull { name, cluster, to }) => pull::run(&name, &cluster, to.as_deref()),
        Some(Command::Cluster(cmd)) => match cmd {
            ClusterCommand::Status { name, json } => cluster_status::run(name, json),
            ClusterCommand::Exec {
                name,
                host,
                command,
            } => cluster_exec::run(&name, host.as_deref(), &command),
            ClusterCommand::Ssh { name, host } => cluster_ssh::run(&name, host.as_deref()),
            ClusterCommand::Rsync {
                name,
                src,
                dest,
                host,
                delete,
            } => cluster_rsync::run(&name, &src, &dest, host.as_deref(), delete),
            ClusterCommand::Down { name, purge } => cluster_down::run(&name, purge),
        },
        Some(Command::Site {
            target,
            cluster,
            site,
        }) => site::run(&target, cluster.as_deref(), &site),
        None => run::run(cli.run, cli.verbose),
    }
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
