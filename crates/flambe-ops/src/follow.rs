//! Following an experiment on a cluster: its driver's report site, read
//! through an SSH tunnel with the site's own types, until the run ends; then
//! how it ended, from its results folder on the orchestrator.

use crate::events::{Reporter, Step, TensorBoardAt};
use anyhow::bail;
use flambe_cluster::Cluster;
use flambe_cluster::RemoteHome;
use flambe_cluster::{SITE_PORT, running_driver};
use flambe_experiment::result_file_names as names;
use flambe_experiment::stages_without_success;
use flambe_experiment::{Row, RunStatus};
use flambe_report::ExperimentSummary;
use std::future::Future;
use std::time::{Duration, Instant};

/// How following a run stopped.
#[derive(Debug)]
pub enum Followed {
    /// Interrupted here: the run goes on without us.
    Detached,
    /// It ended (or its driver is gone).
    Ended(Ended),
}

/// How a followed run ended.
#[derive(Debug)]
pub struct Ended {
    /// The experiment's name.
    pub name: String,
    /// `None`: its driver is gone without saying how it ended (killed, or
    /// its machine restarted); the same command resumes it.
    pub status: Option<RunStatus>,
    /// For a finished run, the stages where no trial succeeded.
    pub stages_without_success: Vec<String>,
}

impl Ended {
    /// Exit code, as for a run here: 0 finished, 1 not finished, 3 finished
    /// with a stage where no trial succeeded.
    pub fn exit_code(&self) -> u8 {
        match self.status {
            Some(RunStatus::Finished) if self.stages_without_success.is_empty() => 0,
            Some(RunStatus::Finished) => 3,
            _ => 1,
        }
    }
}

impl Ended {
    /// Why the run did not end, when its driver died without a word.
    pub fn driver_gone(&self) -> Option<DriverGone> {
        self.status.is_none().then(|| DriverGone {
            name: self.name.clone(),
            log: RemoteHome::tilde().experiment(&self.name).driver_log(),
        })
    }
}

/// A driver that ended without finishing its run or saying how it ended.
#[derive(Debug, thiserror::Error)]
#[error(
    "the driver of `{name}` on the orchestrator ended without finishing it (killed, or the machine restarted; its log is {log} there)"
)]
pub struct DriverGone {
    /// The experiment's name.
    pub name: String,
    /// The driver's log on the orchestrator.
    pub log: String,
}

impl flambe_config::Hint for DriverGone {
    fn hint(&self) -> Option<String> {
        Some("run the same command again: it resumes the experiment there, and trials that finished are not run again".into())
    }
}

/// How long the driver may not answer (while it still runs) before
/// following gives up.
const DRIVER_SILENCE: Duration = Duration::from_secs(120);

/// Follow experiment `name` on `cluster` until it ends, or until
/// `interrupt` (then it goes on without us).
pub async fn follow(
    cluster: &Cluster,
    name: &str,
    reporter: &mut dyn Reporter,
    interrupt: impl Future<Output = ()>,
) -> anyhow::Result<Followed> {
    let base = tunnel_here(cluster, SITE_PORT).await?;
    reporter.step(Step::SiteTunnel {
        url: &format!("{base}/"),
    });
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut tensorboard_shown = false;
    let mut unreachable_since: Option<Instant> = None;
    let mut stages: Vec<String> = Vec::new();
    tokio::pin!(interrupt);
    loop {
        tokio::select! {
            () = &mut interrupt => return Ok(Followed::Detached),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let answer = async {
            client
                .get(format!("{base}/api/v1/experiment"))
                .send()
                .await?
                .json::<ExperimentSummary>()
                .await
        }
        .await;
        let exp = match answer {
            Ok(exp) if exp.name == name => {
                unreachable_since = None;
                exp
            }
            _ => {
                let since = *unreachable_since.get_or_insert_with(Instant::now);
                // The driver exits as soon as the run ends, taking its site
                // with it: then the run's status marker says how it ended.
                // Asked at once (one command over the open connection): a
                // short run's end is then seen within a poll.
                if running_driver(cluster.orchestrator()).await?.is_none() {
                    return Ok(Followed::Ended(ended(cluster, name, stages, None).await?));
                }
                if since.elapsed() > DRIVER_SILENCE {
                    let log = RemoteHome::relative().experiment(name).driver_log();
                    let tail = cluster
                        .orchestrator()
                        .run(&format!("tail -20 {log}"))
                        .await
                        .map(|o| o.stdout)
                        .unwrap_or_default();
                    bail!("the driver of `{name}` does not answer; the end of its log:\n{tail}");
                }
                continue;
            }
        };
        if !tensorboard_shown {
            tensorboard_shown = true;
            let tunnel = match exp.tensorboard_port() {
                Some(port) => Some(
                    tunnel_here(cluster, port)
                        .await
                        .map(|url| format!("{url}/")),
                ),
                None => None,
            };
            reporter.step(Step::TensorBoardTunnel(match &tunnel {
                Some(Ok(url)) => TensorBoardAt::Tunnel(url),
                Some(Err(e)) => TensorBoardAt::TunnelFailed(format!("{e:#}")),
                None => TensorBoardAt::Off,
            }));
        }
        reporter.step(Step::Progress(&exp));
        stages = exp.stages.iter().map(|s| s.name.clone()).collect();
        if let Some(status) = exp.status.run_status().filter(|s| s.is_over()) {
            // The site said how it ended; the marker may lag behind it.
            return Ok(Followed::Ended(
                ended(cluster, name, stages, Some(status)).await?,
            ));
        }
    }
}

/// How the run ended, from its results folder on the orchestrator: the
/// status the site gave, else the status marker (none: the driver died
/// before it could write one), and, when it finished, the results table.
async fn ended(
    cluster: &Cluster,
    name: &str,
    mut stages: Vec<String>,
    known: Option<RunStatus>,
) -> anyhow::Result<Ended> {
    let results = RemoteHome::relative().experiment(name);
    let orch = cluster.orchestrator();
    let status = match known {
        Some(status) => Some(status),
        None => {
            let marker = orch
                .run(&format!(
                    "cat {} 2>/dev/null",
                    results.result_file(names::STATUS)
                ))
                .await?;
            RunStatus::parse(marker.stdout.trim()).filter(|s| s.is_over())
        }
    };
    let mut without = Vec::new();
    if status == Some(RunStatus::Finished) {
        let table = orch
            .run(&format!(
                "cat {} 2>/dev/null",
                results.result_file(names::RESULTS_JSON)
            ))
            .await
            .ok()
            .and_then(|o| serde_json::from_str::<Vec<Row>>(&o.stdout).ok())
            .unwrap_or_default();
        stages.dedup();
        without = stages_without_success(&stages, &table);
    }
    Ok(Ended {
        name: name.to_string(),
        status,
        stages_without_success: without,
    })
}

/// A tunnel from a free port here to `port` on the orchestrator's
/// loopback; its base URL.
pub(crate) async fn tunnel_here(cluster: &Cluster, port: u16) -> anyhow::Result<String> {
    let local = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    cluster
        .orchestrator()
        .tunnel(local, "127.0.0.1", port)
        .await?;
    Ok(format!("http://127.0.0.1:{local}"))
}

/// `flambe attach NAME --cluster C`: follow a run started earlier.
pub async fn attach(
    cluster_name: &str,
    name: &str,
    reporter: &mut dyn Reporter,
    interrupt: impl Future<Output = ()>,
) -> anyhow::Result<Followed> {
    let cluster = Cluster::open_orchestrator(cluster_name).await?;
    let followed = follow(&cluster, name, reporter, interrupt).await;
    cluster.close().await;
    followed
}
