//! `flambe experiment.yaml --cluster cluster.yaml`: bring the cluster and
//! Ray up, ship and start the experiment (or a script, as an experiment of
//! one trial), follow it.

use crate::clusters::{ClusterConfig, up};
use crate::events::{Reporter, Step};
use crate::follow::{Followed, follow};
use anyhow::Context;
use flambe_cluster::Cluster;
use flambe_cluster::{ClusterRunnable, LaunchOptions, pull};
use flambe_config::{Experiment, Extension};
use flambe_experiment::{Report, ResultsDir, RunStatus};
use std::future::Future;
use std::time::Instant;

/// How a run on a cluster ended, as seen from here.
#[derive(Debug)]
pub enum ClusterOutcome {
    /// It goes on without us (`flambe attach` follows it again).
    Detached,
    /// It ended (or its driver is gone).
    Ended(crate::follow::Ended),
    /// A script finished: its results folder, copied home.
    ScriptHome(Report),
}

/// Run `runnable` on the cluster `cfg`. `exp` is the runnable as an
/// experiment (a script's one-trial experiment), for its results here;
/// `script`: copy its results home when it finishes.
#[allow(clippy::too_many_arguments)]
pub async fn run_on_cluster<R: ClusterRunnable>(
    runnable: &R,
    extensions: &[Extension],
    exp: &Experiment,
    cfg: ClusterConfig<'_>,
    opts: LaunchOptions,
    script: bool,
    reporter: &mut dyn Reporter,
    interrupt: impl Future<Output = ()>,
) -> anyhow::Result<ClusterOutcome> {
    // Secrets are read now, before anything changes anywhere.
    flambe_cluster::secret_values(&runnable.secrets())?;
    let t0 = Instant::now();
    up(cfg, reporter).await?;
    let mut cluster = Cluster::open(cfg.name()).await?;
    reporter.step(Step::ClusterReady {
        seconds: t0.elapsed().as_secs_f64(),
        tensorboard: opts.tensorboard,
    });
    let outcome = async {
        let provisioned = flambe_cluster::provision(&mut cluster, opts.tensorboard).await?;
        reporter.step(Step::Provisioned(&provisioned));
        let t = Instant::now();
        let ray = flambe_cluster::start_ray(&cluster).await?;
        reporter.step(Step::RayUp {
            nodes: ray.nodes,
            seconds: t.elapsed().as_secs_f64(),
        });
        let launched = runnable.setup(&cluster, extensions, opts).await?;
        if let Some(ext) = &launched.extensions {
            reporter.step(Step::ClusterExtensions(ext));
        }
        reporter.step(Step::Launched {
            name: &exp.name,
            results: &launched.results,
            started: launched.started,
        });
        match follow(&cluster, &exp.name, reporter, interrupt).await? {
            Followed::Detached => Ok(ClusterOutcome::Detached),
            Followed::Ended(end) if script && end.status == Some(RunStatus::Finished) => Ok(
                ClusterOutcome::ScriptHome(script_home(&cluster, exp).await?),
            ),
            Followed::Ended(end) => Ok(ClusterOutcome::Ended(end)),
        }
    }
    .await;
    cluster.close().await;
    outcome
}

/// A script's output comes home when it ends: its results folder is copied
/// to `save_path/NAME` here, and read like a local run's.
async fn script_home(cluster: &Cluster, exp: &Experiment) -> anyhow::Result<Report> {
    let dest = ResultsDir::new(&exp.save_path, &exp.name);
    pull(cluster, &exp.name, dest.path())
        .await
        .context("copying the script's output home")?;
    flambe_experiment::read_report(dest.path(), exp)
        .with_context(|| format!("reading the results in {}", dest.path().display()))
}
