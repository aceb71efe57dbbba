//! `flambe cluster status | exec | ssh`: what a known cluster's hosts have,
//! a command on them, and where a shell on one of them goes.

use anyhow::Context;
use flambe_cluster::{Cluster, ClusterError, HostStatus};
use flambe_cluster::{HostError, Output};
use std::path::PathBuf;

/// Each cluster's hosts as they are now: `name`, or every known cluster.
pub async fn status(name: Option<&str>) -> anyhow::Result<Vec<(String, Vec<HostStatus>)>> {
    let names = match name {
        Some(n) => vec![n.to_string()],
        None => flambe_cluster::known_clusters(),
    };
    let mut all = Vec::new();
    for n in names {
        let hosts = flambe_cluster::status(&n).await?;
        all.push((n, hosts));
    }
    Ok(all)
}

/// `command` on every host of cluster `name` (or only on `host`), at
/// once: each host's output or why it could not run there.
pub async fn exec(
    name: &str,
    command: &str,
    host: Option<&str>,
) -> anyhow::Result<Vec<(String, Result<Output, HostError>)>> {
    let cluster = Cluster::open(name).await?;
    let results = cluster.exec(command, host).await;
    cluster.close().await;
    Ok(results?)
}

/// Where `ssh` goes for a shell on `host` of cluster `name` (the
/// orchestrator by default): the cluster's ssh_config and the host's name
/// in it.
pub fn ssh_target(name: &str, host: Option<&str>) -> anyhow::Result<(PathBuf, String)> {
    let (files, state) = flambe_cluster::load_state(name)?;
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
    Ok((files.ssh_config(), target))
}
