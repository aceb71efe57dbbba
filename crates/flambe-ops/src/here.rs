//! `flambe FILE.yaml`: an experiment (or a script, as an experiment of one
//! trial) on this machine, or on a Ray cluster given by its address (what
//! the driver on an orchestrator does).

use crate::events::{Reporter, Step};
use crate::views::{ViewOptions, start_views};
use anyhow::Context;
use flambe_config::{ConfigFile, Experiment};
use flambe_executor::PythonEnv;
use flambe_experiment::{
    EngineError, Observer, RayTarget, Report, ResultsDir, RunOptions, RunStatus, run_experiment,
};
use std::future::Future;
use std::pin::Pin;

/// How a run here goes, beyond its config.
#[derive(Debug, Clone, Default)]
pub struct HereOptions {
    /// The engine's options. Their `python` is made here from the config's
    /// extensions: whatever the caller puts there is replaced.
    pub run: RunOptions,
    /// The report site (and TensorBoard); `None`: neither.
    pub views: Option<ViewOptions>,
}

/// How a run here ended.
#[derive(Debug)]
pub struct HereOutcome {
    /// The report, or why the run stopped.
    pub result: Result<Report, EngineError>,
    /// The results folder already held a finished run, and this one ran
    /// nothing new (a script is not run again without `--force`).
    pub ran_before: bool,
}

/// Run (or resume) `exp` here. Another driver on the same results is
/// refused before the site starts; `interrupt` stops the running trials
/// (a rerun resumes).
pub async fn run_here<C: Reporter + Observer>(
    exp: &Experiment,
    config: &ConfigFile,
    opts: HereOptions,
    console: &mut C,
    interrupt: Pin<Box<dyn Future<Output = ()> + Send>>,
) -> anyhow::Result<HereOutcome> {
    let run_opts = RunOptions {
        python: python_env(config, console)?,
        ..opts.run
    };
    let dir = ResultsDir::new(&exp.save_path, &exp.name);
    let ran_before = dir.ended_status() == Some(RunStatus::Finished) && !run_opts.force;
    // Another driver on these results is refused before the site's URL is
    // shown: a URL above the refusal would point at nothing.
    if let Err(e) = flambe_experiment::lock_results_dir(dir.path(), &exp.name) {
        return Ok(HereOutcome {
            result: Err(EngineError::Lock(e)),
            ran_before,
        });
    }
    let views = match &opts.views {
        Some(v) => Some(start_views(&flambe_report::Served::One(dir.clone()), v).await?),
        None => None,
    };
    if let Some(v) = &views {
        console.step(Step::Views {
            views: v,
            dir: dir.path(),
        });
    }
    let result = run_experiment(exp, &run_opts, console, interrupt).await;
    Ok(HereOutcome { result, ran_before })
}

/// The extensions' environment on this machine (made or found), or none
/// without extensions. Made before any trial: a failed install stops here.
fn python_env(
    config: &ConfigFile,
    reporter: &mut dyn Reporter,
) -> anyhow::Result<Option<PythonEnv>> {
    if config.extensions.is_empty() {
        return Ok(None);
    }
    let packages = flambe_cluster::extension_packages(&config.extensions);
    let envs = flambe_cluster::flambe_home().join("envs");
    reporter.step(Step::PreparingExtensions { envs: &envs });
    let env = flambe_executor::ensure_python_env_here(&envs, &packages)
        .map_err(anyhow::Error::from)
        .map_err(|e| {
            flambe_config::with_hint(
                e,
                "fix the extension (try `pip install` of it by hand), then run the same command again; no trial was started",
            )
        })?;
    reporter.step(Step::ExtensionsHere(&env));
    Ok(Some(env))
}

/// The Ray target of a driver: trials submitted to `address`, each run by
/// this very binary on the node.
pub fn ray_target(
    address: &str,
    sync: Option<flambe_executor::SyncHost>,
    secrets_file: Option<std::path::PathBuf>,
    ray_venv: Option<std::path::PathBuf>,
) -> anyhow::Result<RayTarget> {
    Ok(RayTarget {
        address: address.to_string(),
        flambe: std::env::current_exe()
            .context("cannot find the running flambe binary")?
            .display()
            .to_string(),
        max_in_flight: 64,
        // Slot workers reach the driver's socket over the cluster's ssh, or
        // on this machine: a Ray of the user's own (`--ray-address`, no
        // sync host) may place them where neither works, so there each
        // trial is a Ray job of its own unless asked otherwise.
        job_per_trial: match std::env::var("FLAMBE_RAY_JOB_PER_TRIAL").as_deref() {
            Ok("1") => true,
            Ok("0") => false,
            _ => sync.is_none(),
        },
        sync,
        secrets_file,
        ray_venv,
    })
}
