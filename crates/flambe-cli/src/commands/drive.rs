//! `flambe drive SPEC` (hidden): the driver of an experiment on a cluster's
//! orchestrator, started by the launch with a typed `DriverSpec`.

use flambe_cluster::DriverSpec;
use flambe_config::{Runnable, load_file};
use flambe_executor::SyncHost;
use flambe_experiment::RunOptions;
use flambe_ops::{HereOptions, ViewOptions};
use std::path::Path;
use std::process::ExitCode;

pub fn run(spec: &Path, verbose: u8) -> anyhow::Result<ExitCode> {
    let spec = DriverSpec::read(spec)?;
    let config = load_file(&spec.runnable)?;
    let (exp, script) = match &config.runnable {
        Runnable::Experiment(exp) => (exp.clone(), false),
        Runnable::Script(s) => (s.as_experiment(), true),
        other => anyhow::bail!(
            "a driver runs an experiment or a script, not a {}",
            other.tag()
        ),
    };
    let sync = SyncHost {
        host: spec.sync_host.clone(),
        ssh_config: spec.ssh_config.clone(),
        control_path: None,
    };
    let opts = HereOptions {
        run: RunOptions {
            force: spec.force,
            restart: spec.force && script,
            cpus: None,
            gpus: None,
            echo: verbose > 0,
            ray: Some(flambe_ops::ray_target(
                &spec.ray_address,
                Some(sync),
                spec.secrets_file.clone(),
                Some(spec.ray_venv.clone()),
            )?),
            python: None,
        },
        views: Some(ViewOptions {
            host: std::net::Ipv4Addr::LOCALHOST.into(),
            port: spec.site_port,
            tensorboard: spec.tensorboard,
        }),
    };
    let rerun = format!("flambe {}", config.path.display());
    crate::outcome::run_here_and_report(&exp, &config, opts, script, &rerun)
}
