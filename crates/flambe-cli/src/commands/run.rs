//! `flambe FILE.yaml [--cluster C.yaml] [--force] [--dry-run]`: parse,
//! call one operation (run here, run on a cluster, bring a cluster up),
//! print what it returns.

use crate::cli::RunArgs;
use crate::outcome::{cluster_outcome, interrupted};
use crate::progress::RemoteProgress;
use anyhow::{Context, anyhow, bail};
use flambe_cluster::driver::LaunchOptions;
use flambe_config::hint::with_hint;
use flambe_config::{ConfigFile, Experiment, Runnable, load_file};
use flambe_ops::{ClusterConfig, HereOptions, ViewOptions};
use std::process::ExitCode;

pub fn run(args: RunArgs, verbose: u8) -> anyhow::Result<ExitCode> {
    let file = args.file.clone().context("no config file given")?;
    let config = load_file(&file)?;
    let cluster = args.cluster.as_deref().map(load_file).transpose()?;
    let target = match &cluster {
        None => None,
        Some(c) => Some(match &c.runnable {
            Runnable::SshCluster(s) => ClusterConfig::Ssh(s),
            Runnable::AwsCluster(a) => ClusterConfig::Aws(a),
            other => {
                return Err(with_hint(
                    anyhow!(
                        "--cluster {} holds a {}, not a cluster",
                        c.path.display(),
                        other.tag()
                    ),
                    "pass a file tagged !SSHCluster or !AWSCluster",
                )
                .into());
            }
        }),
    };
    if target.is_some()
        && matches!(
            config.runnable,
            Runnable::SshCluster(_) | Runnable::AwsCluster(_)
        )
    {
        return Err(with_hint(
            anyhow!(
                "{} is itself a cluster; --cluster takes the cluster an experiment or script runs on",
                file.display()
            ),
            format!("run `flambe {}` alone to create the cluster", file.display()),
        )
        .into());
    }
    if args.dry_run {
        super::quit_on_closed_stdout();
        crate::print::plan::dry_run(&config, cluster.as_ref());
        return Ok(ExitCode::SUCCESS);
    }
    let opts = LaunchOptions {
        force: args.force,
        tensorboard: !args.site.no_tensorboard,
    };
    match (&config.runnable, target) {
        (Runnable::Experiment(exp), None) => here(exp, &config, &args, verbose, false),
        (Runnable::Script(s), None) => here(&s.as_experiment(), &config, &args, verbose, true),
        (Runnable::SshCluster(c), None) => super::up::run(ClusterConfig::Ssh(c)),
        (Runnable::AwsCluster(c), None) => super::up::run(ClusterConfig::Aws(c)),
        (Runnable::Experiment(exp), Some(target)) => {
            let mut progress = RemoteProgress::new();
            let outcome = flambe_ops::runtime()?.block_on(flambe_ops::run_on_cluster(
                exp,
                &config.extensions,
                exp,
                target,
                opts,
                false,
                &mut progress,
                interrupted(),
            ));
            progress.finish();
            cluster_outcome(outcome?, &exp.name, &cluster_path(&cluster))
        }
        (Runnable::Script(script), Some(target)) => {
            let exp = script.as_experiment();
            let mut progress = RemoteProgress::new();
            let outcome = flambe_ops::runtime()?.block_on(flambe_ops::run_on_cluster(
                script,
                &config.extensions,
                &exp,
                target,
                opts,
                true,
                &mut progress,
                interrupted(),
            ));
            progress.finish();
            cluster_outcome(outcome?, &exp.name, &cluster_path(&cluster))
        }
        (runnable, Some(_)) => bail!("a {} does not run on a cluster", runnable.tag()),
    }
}

fn cluster_path(cluster: &Option<ConfigFile>) -> String {
    cluster
        .as_ref()
        .map(|c| c.path.display().to_string())
        .unwrap_or_default()
}

/// A run here (or, for a driver, on the Ray cluster of `--ray-address`).
fn here(
    exp: &Experiment,
    config: &ConfigFile,
    args: &RunArgs,
    verbose: u8,
    script: bool,
) -> anyhow::Result<ExitCode> {
    let ray = match &args.ray_address {
        Some(address) => Some(flambe_ops::ray_target(address, None, None)?),
        None => None,
    };
    let opts = HereOptions {
        force: args.force,
        restart: args.force && script,
        cpus: args.cpus,
        gpus: args.gpus,
        echo: verbose > 0,
        ray,
        views: (!args.site.no_site).then_some(ViewOptions {
            host: args.site.site_host,
            port: args.site.site_port,
            tensorboard: !args.site.no_tensorboard,
        }),
    };
    crate::outcome::run_here_and_report(
        exp,
        config,
        opts,
        script,
        &format!("flambe {}", config.path.display()),
    )
}
