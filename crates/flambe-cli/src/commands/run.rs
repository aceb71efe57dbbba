//! `flambe FILE.yaml [--cluster C.yaml] [--force] [--dry-run]`: parse,
//! call one operation (run here, run on a cluster, bring a cluster up),
//! print what it returns.

use crate::cli::RunArgs;
use crate::outcome::{cluster_outcome, interrupted};
use crate::progress::RemoteProgress;
use anyhow::{Context, bail};
use flambe_cluster::{ClusterRunnable, LaunchOptions};
use flambe_config::{ConfigFile, Experiment, Runnable, load_file};
use flambe_experiment::RunOptions;
use flambe_ops::{ClusterConfig, HereOptions, ViewOptions};
use std::process::ExitCode;

pub fn run(args: RunArgs, verbose: u8) -> anyhow::Result<ExitCode> {
    let file = args.file.clone().context("no config file given")?;
    let config = load_file(&file)?;
    let cluster = args.cluster.as_deref().map(load_file).transpose()?;
    let target = match &cluster {
        Some(c) => Some(flambe_ops::cluster_target(c, &config)?),
        None => None,
    };
    if args.dry_run {
        super::quit_on_closed_stdout();
        if let Runnable::CustomCluster(c) = &config.runnable {
            flambe_ops::runtime()?.block_on(flambe_ops::check_custom(c))?;
        }
        crate::print::plan::dry_run(&config, cluster.as_ref());
        return Ok(ExitCode::SUCCESS);
    }
    let shown = args
        .cluster
        .as_deref()
        .map_or(String::new(), |p| p.display().to_string());
    let opts = LaunchOptions {
        force: args.force,
        tensorboard: !args.site.no_tensorboard,
    };
    match (&config.runnable, target) {
        (Runnable::Experiment(exp), None) => here(exp, &config, &args, verbose, false),
        (Runnable::Script(s), None) => here(&s.as_experiment(), &config, &args, verbose, true),
        (Runnable::SshCluster(c), None) => super::up::run(ClusterConfig::Ssh(c)),
        (Runnable::AwsCluster(c), None) => super::up::run(ClusterConfig::Aws(c)),
        (Runnable::CustomCluster(c), None) => super::up::run(ClusterConfig::Custom(c)),
        (Runnable::Experiment(exp), Some(to)) => {
            on_cluster(exp, exp, &config, to, &shown, opts, false)
        }
        (Runnable::Script(s), Some(to)) => {
            on_cluster(s, &s.as_experiment(), &config, to, &shown, opts, true)
        }
        (runnable, Some(_)) => bail!("a {} does not run on a cluster", runnable.tag()),
    }
}

/// A run on a cluster, followed until it ends (or Ctrl-C detaches).
fn on_cluster<R: ClusterRunnable>(
    runnable: &R,
    exp: &Experiment,
    config: &ConfigFile,
    to: ClusterConfig<'_>,
    cluster_file: &str,
    opts: LaunchOptions,
    script: bool,
) -> anyhow::Result<ExitCode> {
    let mut progress = RemoteProgress::new();
    let extensions = &config.extensions;
    let outcome = flambe_ops::runtime()?.block_on(flambe_ops::run_on_cluster(
        runnable,
        extensions,
        exp,
        to,
        opts,
        script,
        &mut progress,
        interrupted(),
    ));
    progress.finish();
    cluster_outcome(outcome?, &exp.name, cluster_file)
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
        Some(address) => Some(flambe_ops::ray_target(address, None, None, None)?),
        None => None,
    };
    let opts = HereOptions {
        run: RunOptions {
            force: args.force,
            restart: args.force && script,
            cpus: args.cpus,
            gpus: args.gpus,
            echo: verbose > 0,
            ray,
            python: None,
        },
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
