//! Clusters: `flambe CLUSTER.yaml` (up), `flambe cluster down`, and the
//! cluster file a command names.

use crate::events::{Reporter, Step};
use anyhow::{anyhow, bail};
use flambe_cluster::Provider;
use flambe_cluster::{Cluster, UpReport};
use flambe_config::with_hint;
use flambe_config::{
    AwsCluster, ConfigFile, CustomCluster, HostSource, Runnable, SshCluster, load_file,
};
use std::path::Path;

/// The cluster a run goes to: machines the user has, or EC2 instances.
#[derive(Debug, Clone, Copy)]
pub enum ClusterConfig<'a> {
    /// Machines the user has.
    Ssh(&'a SshCluster),
    /// EC2 instances flambe makes.
    Aws(&'a AwsCluster),
    /// Hosts a program makes or finds (`!CommandCluster`, a plugin).
    Custom(&'a CustomCluster),
}

impl ClusterConfig<'_> {
    /// The cluster's name (its state lives under it).
    pub fn name(&self) -> &str {
        match self {
            ClusterConfig::Ssh(c) => &c.name,
            ClusterConfig::Aws(c) => &c.name,
            ClusterConfig::Custom(c) => &c.name,
        }
    }

    /// Who makes its hosts.
    pub fn provider(&self) -> Provider {
        match self {
            ClusterConfig::Ssh(_) => Provider::Ssh,
            ClusterConfig::Aws(_) => Provider::Aws,
            ClusterConfig::Custom(_) => Provider::Custom,
        }
    }

    /// How many hosts it has, where that is known before it is up.
    fn hosts(&self) -> Option<usize> {
        match self {
            ClusterConfig::Ssh(c) => Some(1 + c.factories.len()),
            ClusterConfig::Aws(c) => Some(1 + c.factories_num as usize),
            ClusterConfig::Custom(_) => None,
        }
    }
}

/// What bringing a cluster up did.
pub enum Upped {
    /// Hosts the user has.
    Ssh(UpReport),
    /// With what happened to the instances.
    Aws(flambe_aws::AwsUp),
    /// With the hosts the program reported.
    Custom(flambe_cluster::CustomUp),
}

impl Upped {
    /// The hosts, as every provider brings them up.
    pub fn hosts(&self) -> &UpReport {
        match self {
            Upped::Ssh(r) => r,
            Upped::Aws(r) => &r.ssh,
            Upped::Custom(r) => &r.ssh,
        }
    }
}

/// Create or reuse a cluster (idempotent): for AWS, instances first.
pub async fn up(cfg: ClusterConfig<'_>, reporter: &mut dyn Reporter) -> anyhow::Result<Upped> {
    reporter.step(Step::BringingUp {
        name: cfg.name(),
        provider: cfg.provider(),
        hosts: cfg.hosts(),
    });
    match cfg {
        ClusterConfig::Ssh(c) => Ok(Upped::Ssh(flambe_cluster::up(c).await?)),
        ClusterConfig::Aws(c) => {
            let report = flambe_aws::up(c).await?;
            reporter.step(Step::AwsInstances(&report));
            Ok(Upped::Aws(report))
        }
        ClusterConfig::Custom(c) => {
            check_custom(c).await?;
            Ok(Upped::Custom(flambe_cluster::up_custom(c).await?))
        }
    }
}

/// A plugin's verdict on its fields, at the file, line and column of the
/// first field it finds wrong (the others listed after it), as flambe's
/// own config errors are. A `!CommandCluster` has nothing to check.
pub async fn check_custom(c: &CustomCluster) -> anyhow::Result<()> {
    let errors = flambe_cluster::validate_custom(c).await?;
    let Some((path, message)) = errors.first() else {
        return Ok(());
    };
    let program = match &c.source {
        HostSource::Plugin { program } => program.display().to_string(),
        HostSource::Commands { .. } => String::new(),
    };
    let mut text = format!("{message} (said `{program} validate` of `{path}`)");
    for (path, message) in &errors[1..] {
        text.push_str(&format!("\n  also, at `{path}`: {message}"));
    }
    Err(flambe_config::field_error(&c.file, path, text).into())
}

/// What `cluster down` did, by provider.
pub enum Downed {
    /// The SSH cluster: its key removed from the hosts.
    Ssh(flambe_cluster::Down),
    /// The AWS cluster: its instances terminated.
    Aws(flambe_aws::AwsDown),
    /// A custom cluster: its program's `down` ran.
    Custom(flambe_cluster::CustomDown),
}

/// Take a known cluster down, as its provider does: SSH hosts lose the
/// cluster key, AWS instances are terminated. `purge` forgets an SSH
/// cluster even where its key could not be removed.
pub async fn down(name: &str, purge: bool) -> anyhow::Result<Downed> {
    let provider = match flambe_cluster::load_state(name) {
        Ok((_, state)) => state.provider,
        // An AWS bring-up that failed before its hosts were recorded still
        // has instances to terminate, by its own record.
        Err(_) if flambe_aws::is_aws_cluster(name) => Provider::Aws,
        // A custom bring-up that failed before its hosts were recorded
        // still has hosts to release, by its record.
        Err(_) if flambe_cluster::is_custom_cluster(name) => Provider::Custom,
        Err(e) => return Err(e.into()),
    };
    match provider {
        Provider::Aws if !flambe_aws::is_aws_cluster(name) => Err(with_hint(
            anyhow!(
                "cluster `{name}` is an AWS cluster, but its record ({}) is gone, so flambe cannot tell which instances are its own",
                flambe_aws::record_path(name).display()
            ),
            format!(
                "terminate them in the EC2 console (tag Cluster-Name={name}), then remove {}",
                flambe_cluster::cluster_dir(name).display()
            ),
        )
        .into()),
        Provider::Aws => Ok(Downed::Aws(flambe_aws::down(name).await?)),
        Provider::Ssh => Ok(Downed::Ssh(flambe_cluster::down_ssh(name, purge).await?)),
        Provider::Custom => Ok(Downed::Custom(flambe_cluster::down_custom(name).await?)),
    }
}

/// The cluster `--cluster` names, for `runnable` to run on: refused, with
/// the fix, when the file holds no cluster or the runnable is one itself.
pub fn cluster_target<'a>(
    cluster: &'a ConfigFile,
    runnable: &ConfigFile,
) -> anyhow::Result<ClusterConfig<'a>> {
    let target = match &cluster.runnable {
        Runnable::SshCluster(s) => ClusterConfig::Ssh(s),
        Runnable::AwsCluster(a) => ClusterConfig::Aws(a),
        Runnable::CustomCluster(c) => ClusterConfig::Custom(c),
        other => {
            return Err(with_hint(
                anyhow!(
                    "--cluster {} holds a {}, not a cluster",
                    cluster.path.display(),
                    other.tag()
                ),
                "pass a file tagged !SSHCluster, !AWSCluster, !CommandCluster or a plugin's !FooCluster",
            )
            .into());
        }
    };
    if matches!(
        runnable.runnable,
        Runnable::SshCluster(_) | Runnable::AwsCluster(_) | Runnable::CustomCluster(_)
    ) {
        let file = runnable.path.display();
        return Err(with_hint(
            anyhow!(
                "{file} is itself a cluster; --cluster takes the cluster an experiment or script runs on"
            ),
            format!("run `flambe {file}` alone to create the cluster"),
        )
        .into());
    }
    Ok(target)
}

/// The name of the cluster a cluster file describes.
pub fn cluster_of(path: &Path) -> anyhow::Result<String> {
    match load_file(path)?.runnable {
        Runnable::SshCluster(c) => Ok(c.name),
        Runnable::AwsCluster(c) => Ok(c.name),
        Runnable::CustomCluster(c) => Ok(c.name),
        other => bail!(
            "{} holds a {}, not a cluster (!SSHCluster, !AWSCluster, !CommandCluster or a plugin's)",
            path.display(),
            other.tag()
        ),
    }
}

/// `flambe cluster rsync NAME SRC DEST`: exactly one side remote (a
/// leading `:`); up to every host, down from one (the orchestrator by
/// default). Returns what was copied, as `from → to` lines.
pub async fn rsync(
    name: &str,
    src: &str,
    dest: &str,
    host: Option<&str>,
    delete: bool,
) -> anyhow::Result<Vec<String>> {
    let cluster = Cluster::open(name).await?;
    let result = async {
        let mut copied = Vec::new();
        match (src.strip_prefix(':'), dest.strip_prefix(':')) {
            (None, Some(remote)) => {
                let hosts: Vec<&flambe_cluster::Host> = match host {
                    Some(h) => vec![cluster.host(h)?],
                    None => cluster.hosts.iter().collect(),
                };
                for h in hosts {
                    flambe_cluster::rsync_up(&cluster.files, h, Path::new(src), remote, delete)
                        .await?;
                    copied.push(format!("{src} → {}:{remote}", h.name()));
                }
            }
            (Some(remote), None) => {
                let h = match host {
                    Some(h) => cluster.host(h)?,
                    None => cluster.orchestrator(),
                };
                flambe_cluster::rsync_down(&cluster.files, h, remote, Path::new(dest), delete)
                    .await?;
                copied.push(format!("{}:{remote} → {dest}", h.name()));
            }
            _ => bail!(
                "exactly one side must be remote, written with a leading `:` (e.g. `./data :data`)"
            ),
        }
        Ok(copied)
    }
    .await;
    cluster.close().await;
    result
}

/// What a custom cluster's program says of its hosts (`status`), when it
/// is one and has something to say.
pub async fn program_status(name: &str) -> Option<anyhow::Result<String>> {
    flambe_cluster::custom_status(name)
        .await
        .map(|r| r.map_err(anyhow::Error::from))
}
