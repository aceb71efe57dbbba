//! `flambe cluster …` and `flambe CLUSTER.yaml`.

use crate::cli::ClusterCommand;
use anyhow::{Context, bail};
use flambe_cluster::{Cluster, ClusterError, HostStatus, UpReport};
use flambe_config::{AwsCluster, SshCluster};
use std::path::Path;
use std::process::ExitCode;

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// `flambe cluster.yaml` for an `!SSHCluster`.
pub fn up_ssh(cfg: &SshCluster) -> anyhow::Result<ExitCode> {
    eprintln!(
        "Bringing up SSH cluster `{}` ({} hosts)…",
        cfg.name,
        1 + cfg.factories.len()
    );
    let report = runtime()?.block_on(flambe_cluster::up(cfg))?;
    print_up(&report);
    Ok(ExitCode::SUCCESS)
}

pub fn up_aws(cfg: &AwsCluster) -> anyhow::Result<ExitCode> {
    eprintln!(
        "Bringing up AWS cluster `{}` (1 orchestrator + {} factories)…",
        cfg.name, cfg.factories_num
    );
    let report = runtime()?.block_on(flambe_aws::up(cfg))?;
    eprintln!("{}", aws_summary(&report));
    print_up(&report.ssh);
    Ok(ExitCode::SUCCESS)
}

/// One line on what happened to the instances.
pub fn aws_summary(r: &flambe_aws::AwsUp) -> String {
    let list = |ids: &[String]| {
        if ids.is_empty() {
            "none".to_string()
        } else {
            ids.join(", ")
        }
    };
    format!(
        "Instances: created {}; started {}; reused {}; terminated {}. Idle alarms: {}.",
        list(&r.created),
        list(&r.started),
        list(&r.reused),
        list(&r.terminated),
        r.alarms
    )
}

fn print_up(r: &UpReport) {
    let verb = if r.created {
        "created"
    } else {
        "ready (reused)"
    };
    println!("Cluster `{}` {verb} in {:.1}s", r.name, r.seconds);
    println!(
        "  {:<13} {:<28} {:<16} {:>4} {:>4}  {:<14} {:<8} setup",
        "role", "host", "address", "cpus", "gpus", "platform", "flambe"
    );
    for h in &r.hosts {
        let setup = match (h.setup_ran.len(), h.setup_skipped) {
            (0, 0) => "-".to_string(),
            (ran, skipped) => format!("{ran} ran, {skipped} already done"),
        };
        println!(
            "  {:<13} {:<28} {:<16} {:>4} {:>4}  {:<14} {:<8} {setup}",
            h.role.to_string(),
            h.name,
            h.address,
            h.cpus,
            h.gpus,
            h.platform,
            if h.binary_sent { "sent" } else { "same" }
        );
    }
}

pub fn run(cmd: ClusterCommand) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    match cmd {
        ClusterCommand::Status { name, json } => {
            let names = match name {
                Some(n) => vec![n],
                None => flambe_cluster::known_clusters(),
            };
            if names.is_empty() && !json {
                println!("No clusters yet. Create one with `flambe CLUSTER.yaml`.");
                return Ok(ExitCode::SUCCESS);
            }
            let mut all = serde_json::Map::new();
            for n in &names {
                let hosts = rt.block_on(flambe_cluster::status(n))?;
                if json {
                    all.insert(n.clone(), serde_json::to_value(&hosts)?);
                } else {
                    print_status(n, &hosts);
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Exec {
            name,
            host,
            command,
        } => rt.block_on(async {
            let cluster = Cluster::open(&name).await?;
            let results = cluster.exec(&command.join(" "), host.as_deref()).await?;
            cluster.close().await;
            let mut failed = 0;
            for (host, result) in results {
                match result {
                    Ok(out) => {
                        let code = out.code.unwrap_or(-1);
                        println!("── {host} (exit {code})");
                        print!("{}", out.stdout);
                        eprint!("{}", out.stderr);
                        if code != 0 {
                            failed += 1;
                        }
                    }
                    Err(e) => {
                        println!("── {host}: {e}");
                        failed += 1;
                    }
                }
            }
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }),
        ClusterCommand::Ssh { name, host } => ssh_shell(&name, host.as_deref()),
        ClusterCommand::Rsync {
            name,
            src,
            dest,
            host,
            delete,
        } => rt.block_on(rsync(&name, &src, &dest, host.as_deref(), delete)),
        ClusterCommand::Down { name, .. } if flambe_aws::provider::is_aws_cluster(&name) => {
            let down = rt.block_on(flambe_aws::down(&name))?;
            println!(
                "Cluster `{name}` is down: terminated {}; deleted {} alarms; local state (cluster key included) removed.",
                if down.terminated.is_empty() {
                    "no instance (none was left)".to_string()
                } else {
                    down.terminated.join(", ")
                },
                down.alarms.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        ClusterCommand::Down { name, purge } => {
            let (_, state) = flambe_cluster::cluster::load_state(&name)?;
            if state.provider != "ssh" {
                bail!(
                    "cluster `{name}` is an {} cluster, but its record ({}) is gone, so flambe cannot tell which instances are its own\nhint: terminate them in the EC2 console (tag Cluster-Name={name}), then remove {}",
                    state.provider,
                    flambe_cluster::home::cluster_dir(&name)
                        .join("aws.json")
                        .display(),
                    flambe_cluster::home::cluster_dir(&name).display()
                );
            }
            let down = rt.block_on(flambe_cluster::down_ssh(&name, purge))?;
            print_down(&name, &down);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_down(name: &str, down: &flambe_cluster::Down) {
    let cleaned = if down.cleaned.is_empty() {
        "no host".to_string()
    } else {
        down.cleaned.join(", ")
    };
    println!(
        "Cluster `{name}` is down: its key was removed from {cleaned}, and it is forgotten here."
    );
    if !down.never_keyed.is_empty() {
        println!(
            "Never given the cluster key (nothing to remove): {}.",
            down.never_keyed.join(", ")
        );
    }
    for e in &down.left {
        println!(
            "Not cleaned, the key stays in its ~/.ssh/authorized_keys (comment `flambe-cluster-{name}`): {e}"
        );
    }
}

fn print_status(name: &str, hosts: &[HostStatus]) {
    println!("cluster {name}");
    println!(
        "  {:<13} {:<28} {:<16} {:<10} {:>4} {:>4}  {:<18} {:<18} flambe",
        "role", "host", "address", "state", "cpus", "gpus", "ray", "tensorboard"
    );
    for h in hosts {
        let state = if h.reachable { "up" } else { "UNREACHABLE" };
        let opt = |v: Option<u32>| v.map_or("-".to_string(), |v| v.to_string());
        let build = match (&h.flambe, h.same_build, &h.flambe_fails) {
            (Some(v), true, _) => format!("{v} (same build, runs)"),
            (Some(v), false, _) => format!("{v} (DIFFERENT build: rerun `flambe CLUSTER.yaml`)"),
            (None, _, Some(why)) => format!("DOES NOT RUN: {why}"),
            (None, _, None) => "-".to_string(),
        };
        // `ray, version 2.60.0` → `ray 2.60.0`; TensorBoard prints its version alone.
        let (ray, tensorboard) = h.tools.as_ref().map_or(("-".into(), "-".into()), |t| {
            let version = |tool: &str, v: &str| match v.rsplit(' ').next() {
                Some(n) if v != "missing" => format!("{tool} {n}"),
                _ => format!("{tool} missing"),
            };
            (
                version("ray", &t.ray),
                version("tensorboard", &t.tensorboard),
            )
        });
        println!(
            "  {:<13} {:<28} {:<16} {:<10} {:>4} {:>4}  {ray:<18} {tensorboard:<18} {build}",
            h.role.to_string(),
            h.name,
            h.address,
            state,
            opt(h.cpus),
            opt(h.gpus)
        );
        if let Some(e) = &h.error {
            println!("      {e}");
        }
    }
}

fn ssh_shell(name: &str, host: Option<&str>) -> anyhow::Result<ExitCode> {
    use std::os::unix::process::CommandExt;
    let (files, state) = flambe_cluster::cluster::load_state(name)?;
    let target = match host {
        Some(h) => {
            state
                .host(h)
                .map(|h| h.name.clone())
                .ok_or_else(|| ClusterError::UnknownHost {
                    cluster: name.to_string(),
                    host: h.to_string(),
                    known: state
                        .hosts
                        .iter()
                        .map(|h| h.name.clone())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?
        }
        None => state
            .orchestrator()
            .map(|h| h.name.clone())
            .context("the cluster has no orchestrator")?,
    };
    let err = std::process::Command::new("ssh")
        .arg("-F")
        .arg(files.ssh_config())
        .arg("-o")
        .arg("BatchMode=no")
        .arg(&target)
        .exec();
    Err(err).context("cannot run ssh")
}

async fn rsync(
    name: &str,
    src: &str,
    dest: &str,
    host: Option<&str>,
    delete: bool,
) -> anyhow::Result<ExitCode> {
    let cluster = Cluster::open(name).await?;
    let result = async {
        match (src.strip_prefix(':'), dest.strip_prefix(':')) {
            (None, Some(remote)) => {
                let hosts: Vec<&flambe_cluster::host::Host> = match host {
                    Some(h) => vec![cluster.host(h)?],
                    None => cluster.hosts.iter().collect(),
                };
                for h in hosts {
                    flambe_cluster::sync::rsync_up(
                        &cluster.files,
                        h,
                        Path::new(src),
                        remote,
                        delete,
                    )
                    .await?;
                    println!("{src} → {}:{remote}", h.name());
                }
                Ok(ExitCode::SUCCESS)
            }
            (Some(remote), None) => {
                let h = match host {
                    Some(h) => cluster.host(h)?,
                    None => cluster.orchestrator(),
                };
                flambe_cluster::sync::rsync_down(
                    &cluster.files,
                    h,
                    remote,
                    Path::new(dest),
                    delete,
                )
                .await?;
                println!("{}:{remote} → {dest}", h.name());
                Ok(ExitCode::SUCCESS)
            }
            _ => bail!(
                "exactly one side must be remote, written with a leading `:` (e.g. `./data :data`)"
            ),
        }
    }
    .await;
    cluster.close().await;
    result
}
