//! A cluster's experiments seen from here: `flambe pull`, and
//! `flambe site NAME --cluster C`.

use crate::follow::tunnel_here;
use anyhow::{Context, bail};
use flambe_cluster::Cluster;
use flambe_cluster::RemoteHome;
use flambe_cluster::shell_quote;
use flambe_cluster::{SITE_PORT, running_driver};
use flambe_experiment::result_file_names as names;
use std::future::Future;
use std::path::Path;

/// Copy experiment `name`'s results folder from the cluster's orchestrator
/// to `dest` here.
pub async fn pull(cluster_name: &str, name: &str, dest: &Path) -> anyhow::Result<()> {
    let cluster = Cluster::open_orchestrator(cluster_name).await?;
    let r = flambe_cluster::pull(&cluster, name, dest)
        .await
        .context("pulling the results");
    cluster.close().await;
    r
}

/// Where `flambe site NAME --cluster C` serves a finished experiment on the
/// orchestrator (its loopback), when its driver is gone.
const SITE_ONLY_PORT: u16 = 8181;

/// The report site of experiment `name` on the cluster, through a tunnel:
/// its driver's site while it runs, otherwise a `flambe site` started on
/// the orchestrator. `on_url` is told the local URL; the site is served
/// until `until` ends, then what was started there is stopped. What was
/// started there, and the tunnel, also end if this process is killed.
pub async fn serve_cluster_site(
    cluster_name: &str,
    name: &str,
    on_url: impl FnOnce(&str),
    until: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let cluster = Cluster::open_orchestrator(cluster_name).await?;
    let result = async {
        let orch = cluster.orchestrator();
        let (remote_port, started) = match running_driver(orch).await? {
            Some(d) if d.name == name => (SITE_PORT, None),
            _ => {
                let home = RemoteHome::relative();
                let results = home.experiment(name).results();
                let state = format!("{results}/{}", names::STATE_DB);
                if orch
                    .run(&format!("test -f {}", shell_quote(&state)))
                    .await?
                    .code
                    != Some(0)
                {
                    bail!("no experiment `{name}` on cluster `{cluster_name}`");
                }
                // Held by this process: it ends with it, however it ends.
                let held = orch.hold(&format!(
                    "{} site {} --site-port {SITE_ONLY_PORT}",
                    home.flambe(),
                    shell_quote(&results)
                ))?;
                (SITE_ONLY_PORT, Some(held))
            }
        };
        let url = tunnel_here(&cluster, remote_port).await?;
        on_url(&format!("{url}/"));
        until.await;
        drop(started);
        Ok(())
    }
    .await;
    cluster.close().await;
    result
}
