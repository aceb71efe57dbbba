//! `flambe experiment.yaml --cluster cluster.yaml`, `flambe attach`, `flambe pull`.

use super::run::Finish;
use crate::progress::RemoteProgress;
use anyhow::{Context, bail};
use flambe_cluster::Cluster;
use flambe_cluster::remote::{ClusterRunnable, LaunchOptions, SITE_PORT, pull};
use flambe_config::{AwsCluster, Experiment, Extension, Runnable, SshCluster, load_file};
use serde_json::Value;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Bring the cluster and Ray up, ship and start the experiment (or a
/// script, as an experiment of one trial), follow it.
pub fn run<R: ClusterRunnable>(
    runnable: &R,
    extensions: &[Extension],
    exp: &Experiment,
    cfg: ClusterConfig<'_>,
    cluster_file: &Path,
    opts: LaunchOptions,
    finish: Finish,
) -> anyhow::Result<ExitCode> {
    // Secrets are read now, before anything changes anywhere.
    flambe_cluster::remote::secret_values(&runnable.secrets())?;
    super::cluster::runtime()?.block_on(async {
        let t0 = Instant::now();
        eprintln!("Cluster `{}`: bringing it up…", cfg.name());
        cfg.up().await?;
        let mut cluster = Cluster::open(cfg.name()).await?;
        let t1 = Instant::now();
        eprintln!(
            "Cluster ready in {:.1}s; checking Ray {}{} on every host…",
            (t1 - t0).as_secs_f64(),
            flambe_cluster::ray::RAY_VERSION,
            if opts.tensorboard {
                " and TensorBoard"
            } else {
                ""
            }
        );
        let provisioned = flambe_cluster::provision::ensure(&mut cluster, opts.tensorboard).await?;
        print_provisioned(&provisioned);
        let t2 = Instant::now();
        let ray = flambe_cluster::ray::start_ray(&cluster).await?;
        eprintln!(
            "Ray up with {} nodes in {:.1}s",
            ray.nodes,
            t2.elapsed().as_secs_f64()
        );
        let launched = runnable.setup(&cluster, extensions, opts).await?;
        if let Some(ext) = &launched.extensions {
            eprintln!(
                "Extensions: environment {} {}",
                ext.key,
                if ext.installed_on.is_empty() {
                    "up to date on every host, nothing installed".to_string()
                } else {
                    format!("installed on {}", ext.installed_on.join(", "))
                }
            );
        }
        if launched.started {
            eprintln!(
                "Experiment `{}` started on the orchestrator ({})",
                exp.name, launched.results
            );
        } else {
            eprintln!(
                "Experiment `{}` is already running there: following it",
                exp.name
            );
        }
        let cluster_file = cluster_file.display().to_string();
        let code = match follow(&cluster, &exp.name, &cluster_file).await {
            Ok(Some(end)) if finish == Finish::ScriptOutput && end.status == "finished" => {
                script_home(&cluster, exp).await
            }
            Ok(Some(end)) => Ok(ended(&cluster, &exp.name, &end, &cluster_file).await),
            Ok(None) => Ok(ExitCode::SUCCESS),
            Err(e) => Err(e),
        };
        cluster.close().await;
        code
    })
}

/// One line per host that got something, or one line saying nothing was
/// needed (a rerun).
fn print_provisioned(done: &[flambe_cluster::provision::HostProvisioned]) {
    let mut any = false;
    for host in done.iter().filter(|h| !h.steps.is_empty()) {
        any = true;
        let steps: Vec<String> = host
            .steps
            .iter()
            .map(|s| format!("{} ({}, {:.1}s)", s.what, s.how, s.seconds))
            .collect();
        eprintln!("Installed on {}: {}", host.host, steps.join(", "));
    }
    if !any {
        eprintln!("Every host has what it needs: nothing installed");
    }
}

/// A script's output comes home when it ends: its results folder is copied
/// to `save_path/NAME` here, then reported like a local run.
async fn script_home(cluster: &Cluster, exp: &Experiment) -> anyhow::Result<ExitCode> {
    let dest = exp.save_path.join(&exp.name);
    pull(cluster, &exp.name, &dest)
        .await
        .context("copying the script's output home")?;
    let report = flambe_experiment::results::read_report(&dest, exp)
        .with_context(|| format!("reading the results in {}", dest.display()))?;
    Ok(super::run::print_script_end(&report))
}

/// How a followed run ended: its status, and the stages it has (as the
/// site last listed them).
struct Ended {
    status: String,
    stages: Vec<String>,
}

/// Follow the experiment through the site's API until it ends (its final
/// status) or Ctrl-C (`None`: it goes on without us).
async fn follow(
    cluster: &Cluster,
    name: &str,
    cluster_file: &str,
) -> anyhow::Result<Option<Ended>> {
    let base = tunnel_here(cluster, SITE_PORT).await?;
    eprintln!("Report site: {base}/ (through an SSH tunnel to the orchestrator)");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut progress = RemoteProgress::new();
    let mut tensorboard_shown = false;
    let mut unreachable_since: Option<Instant> = None;
    let mut stages: Vec<String> = Vec::new();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                progress.finish();
                eprintln!("\nDetached: `{name}` goes on running on the cluster.\n  follow it again: flambe attach {name} --cluster {cluster_file}\n  copy its results here: flambe pull {name} --cluster {cluster_file}");
                return Ok(None);
            }
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let answer = async {
            client
                .get(format!("{base}/api/v1/experiment"))
                .send()
                .await?
                .json::<Value>()
                .await
        }
        .await;
        let exp = match answer {
            Ok(v) if v["name"] == name => {
                unreachable_since = None;
                v
            }
            _ => {
                let since = *unreachable_since.get_or_insert_with(Instant::now);
                // The driver exits as soon as the run ends, taking its site
                // with it: then the run's status marker says how it ended.
                if since.elapsed() > Duration::from_secs(2)
                    && flambe_cluster::remote::running_driver(cluster.orchestrator())
                        .await?
                        .is_none()
                {
                    let marker = cluster
                        .orchestrator()
                        .run(&format!(
                            "cat .flambe/experiments/{name}/runs/{name}/status 2>/dev/null"
                        ))
                        .await?;
                    // No marker: the driver died before it could write
                    // one (killed, or its machine restarted).
                    let status = match marker.stdout.trim() {
                        "" => "running".to_string(),
                        said => said.to_string(),
                    };
                    progress.finish();
                    return Ok(Some(Ended { status, stages }));
                }
                if since.elapsed() > Duration::from_secs(120) {
                    let log = cluster
                        .orchestrator()
                        .run(&format!("tail -20 .flambe/experiments/{name}/driver.log"))
                        .await
                        .map(|o| o.stdout)
                        .unwrap_or_default();
                    bail!("the driver of `{name}` does not answer; the end of its log:\n{log}");
                }
                continue;
            }
        };
        if !tensorboard_shown {
            tensorboard_shown = true;
            progress.line(&tensorboard_here(cluster, &exp).await);
        }
        progress.update(&exp);
        if let Some(listed) = exp["stages"].as_array() {
            stages = listed
                .iter()
                .filter_map(|s| s["name"].as_str().map(str::to_string))
                .collect();
        }
        let status = exp["status"].as_str().unwrap_or("");
        if matches!(status, "finished" | "interrupted" | "stopped") {
            progress.finish();
            return Ok(Some(Ended {
                status: status.to_string(),
                stages,
            }));
        }
    }
}

/// A tunnel from a free port here to `port` on the orchestrator's loopback;
/// its base URL.
async fn tunnel_here(cluster: &Cluster, port: u16) -> anyhow::Result<String> {
    let local = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    cluster
        .orchestrator()
        .tunnel(local, "127.0.0.1", port)
        .await?;
    Ok(format!("http://127.0.0.1:{local}"))
}

/// The line that says where TensorBoard is: the driver's TensorBoard on the
/// orchestrator, through a tunnel, when it runs there.
async fn tensorboard_here(cluster: &Cluster, exp: &Value) -> String {
    let remote_port = exp["tensorboard"]
        .as_str()
        .and_then(|url| url.trim_end_matches('/').rsplit(':').next())
        .and_then(|p| p.parse::<u16>().ok());
    match remote_port {
        Some(port) => match tunnel_here(cluster, port).await {
            Ok(base) => format!("TensorBoard: {base}/ (through an SSH tunnel to the orchestrator)"),
            Err(e) => format!("TensorBoard: runs on the orchestrator, but the tunnel failed: {e:#}"),
        },
        None => "TensorBoard: off (--no-tensorboard), or it did not start on the orchestrator (see driver.log there)".to_string(),
    }
}

/// Say how the run ended and where its results are. Exit codes as for a
/// run here: 0 finished, 1 not finished, 3 finished with a stage where no
/// trial succeeded (read from the results table on the orchestrator).
async fn ended(cluster: &Cluster, name: &str, end: &Ended, cluster_file: &str) -> ExitCode {
    println!(
        "Experiment `{name}` {}. Copy its results here with: flambe pull {name} --cluster {cluster_file}",
        end.status
    );
    if end.status == "running" {
        // The status marker still says running, but no driver runs.
        eprintln!(
            "error: the driver of `{name}` on the orchestrator ended without finishing it (killed, or the machine restarted; its log is ~/.flambe/experiments/{name}/driver.log there)\nhint: run the same command again: it resumes the experiment there, and trials that finished are not run again"
        );
    }
    if end.status != "finished" {
        return ExitCode::FAILURE;
    }
    let table = cluster
        .orchestrator()
        .run(&format!(
            "cat .flambe/experiments/{name}/runs/{name}/results.json 2>/dev/null"
        ))
        .await
        .ok()
        .and_then(|o| serde_json::from_str::<Vec<Value>>(&o.stdout).ok())
        .unwrap_or_default();
    let mut stages = end.stages.clone();
    for row in &table {
        if let Some(stage) = row["stage"].as_str()
            && !stages.iter().any(|s| s == stage)
        {
            stages.push(stage.to_string());
        }
    }
    let empty: Vec<&str> = stages
        .iter()
        .filter(|stage| {
            !table.iter().any(|r| {
                r["stage"] == stage.as_str()
                    && matches!(r["status"].as_str(), Some("succeeded" | "stopped"))
            })
        })
        .map(String::as_str)
        .collect();
    if empty.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "error: no trial succeeded in stage {}: see the results table (flambe pull {name} --cluster {cluster_file}) and the trials' logs",
            empty.join(", ")
        );
        ExitCode::from(3)
    }
}

/// The cluster a run goes to: machines the user has, or EC2 instances.
#[derive(Clone, Copy)]
pub enum ClusterConfig<'a> {
    Ssh(&'a SshCluster),
    Aws(&'a AwsCluster),
}

impl ClusterConfig<'_> {
    fn name(&self) -> &str {
        match self {
            ClusterConfig::Ssh(c) => &c.name,
            ClusterConfig::Aws(c) => &c.name,
        }
    }

    /// Create or reuse it (idempotent): for AWS, instances first.
    async fn up(&self) -> anyhow::Result<()> {
        match self {
            ClusterConfig::Ssh(c) => {
                flambe_cluster::up(c).await?;
            }
            ClusterConfig::Aws(c) => {
                let report = flambe_aws::up(c).await?;
                eprintln!("{}", super::cluster::aws_summary(&report));
            }
        }
        Ok(())
    }
}

/// The name of the cluster a cluster file describes.
fn cluster_name(path: &Path) -> anyhow::Result<String> {
    match load_file(path)?.runnable {
        Runnable::SshCluster(c) => Ok(c.name),
        Runnable::AwsCluster(c) => Ok(c.name),
        other => bail!(
            "{} holds a {}, not a cluster (!SSHCluster or !AWSCluster)",
            path.display(),
            other.tag()
        ),
    }
}

/// `flambe attach NAME --cluster C`
pub fn attach(name: &str, cluster_file: &Path) -> anyhow::Result<ExitCode> {
    let cluster_name = cluster_name(cluster_file)?;
    super::cluster::runtime()?.block_on(async {
        let cluster = Cluster::open_orchestrator(&cluster_name).await?;
        let cluster_file = cluster_file.display().to_string();
        let code = match follow(&cluster, name, &cluster_file).await {
            Ok(Some(end)) => Ok(ended(&cluster, name, &end, &cluster_file).await),
            Ok(None) => Ok(ExitCode::SUCCESS),
            Err(e) => Err(e),
        };
        cluster.close().await;
        code
    })
}

/// `flambe pull NAME --cluster C [--to DIR]`
pub fn pull_results(
    name: &str,
    cluster_file: &Path,
    to: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let cluster_name = cluster_name(cluster_file)?;
    let dest = to.map_or_else(|| Path::new(name).to_path_buf(), Path::to_path_buf);
    super::cluster::runtime()?.block_on(async {
        let cluster = Cluster::open_orchestrator(&cluster_name).await?;
        let r = pull(&cluster, name, &dest)
            .await
            .context("pulling the results");
        cluster.close().await;
        r
    })?;
    println!("Results of `{name}` are in {}", dest.display());
    Ok(ExitCode::SUCCESS)
}

/// Where `flambe site NAME --cluster C` serves a finished experiment on the
/// orchestrator (its loopback), when its driver is gone.
const SITE_ONLY_PORT: u16 = 8181;

/// `flambe site NAME --cluster C`: the report site of an experiment on the
/// cluster, through a tunnel; its driver's site while it runs, otherwise a
/// `flambe site` started on the orchestrator for as long as this runs.
pub fn site(name: &str, cluster_file: &Path) -> anyhow::Result<ExitCode> {
    let cluster_name = cluster_name(cluster_file)?;
    super::cluster::runtime()?.block_on(async {
        let cluster = Cluster::open_orchestrator(&cluster_name).await?;
        let orch = cluster.orchestrator();
        let running = flambe_cluster::remote::running_driver(orch).await?;
        let (remote_port, started) = match running {
            Some(d) if d.name == name => (SITE_PORT, None),
            _ => {
                let results = format!(".flambe/experiments/{name}/runs/{name}");
                if orch.run(&format!("test -f {results}/state.db")).await?.code != Some(0) {
                    bail!("no experiment `{name}` on cluster `{cluster_name}`");
                }
                let pid = orch
                    .check(&format!(
                        "setsid .flambe/bin/flambe site {results} --site-port {SITE_ONLY_PORT} >/dev/null 2>&1 </dev/null & echo $!"
                    ))
                    .await?;
                (SITE_ONLY_PORT, Some(pid.trim().to_string()))
            }
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        orch.tunnel(port, "127.0.0.1", remote_port).await?;
        println!("Report site: http://127.0.0.1:{port}/");
        eprintln!("Serving `{name}` from cluster `{cluster_name}`; Ctrl-C to stop.");
        tokio::signal::ctrl_c().await?;
        if let Some(pid) = started {
            orch.run(&format!("kill {pid}")).await?;
        }
        cluster.close().await;
        Ok(ExitCode::SUCCESS)
    })
}
