//! Ray on a cluster, started host by host over SSH (`ray start --head` on
//! the orchestrator, `ray start --address` on each factory), not with Ray's
//! own cluster launcher, whose on-premises mode starts only the head.
//!
//! - Version: every host uses Ray `RAY_VERSION` from `~/.flambe/ray`, put
//!   there by [`crate::provision`].
//! - Authentication: every node runs with `RAY_AUTH_MODE=token` and the
//!   cluster's own token (`~/.flambe/cluster/ray_token`, 0600); every Jobs
//!   API call carries it.
//! - Placement: the head gets `--num-cpus 0 --num-gpus 0` and a custom
//!   resource `orchestrator`, so trials land on factories only; each factory
//!   offers its real CPUs and GPUs (`nvidia-smi`, or the number in
//!   `~/.flambe/gpus` where that file exists: an override for machines whose
//!   GPUs nvidia-smi cannot see, and for tests). Nodes join over private
//!   addresses.
//! - Exposure: the dashboard (and its Jobs API) listens on the orchestrator's
//!   loopback only; flambe reaches it through an SSH tunnel. An open Ray
//!   dashboard lets anyone who reaches it run code (CVE-2023-48022).
//! - Idempotent: a node whose raylet already runs for its address is left
//!   alone.

use crate::cluster::{Cluster, ClusterError, partition};
use crate::host::{Host, HostError};
use crate::plan::Role;
use crate::remote_home::RemoteHome;
use futures::future::join_all;
use std::time::{Duration, Instant};

/// The Ray every host runs (what flambe installs).
pub const RAY_VERSION: &str = "2.60.0";
pub const GCS_PORT: u16 = 6379;
/// The Ray dashboard's port on the orchestrator (Jobs API).
pub const DASHBOARD_PORT: u16 = 8265;

/// The environment every Ray command runs with: our flambe and Ray first on
/// PATH (trial entrypoints inherit the PATH of the Ray daemons), no usage
/// statistics sent anywhere, and token authentication with the cluster's own
/// token (a user's `~/.ray/auth_token` is not the cluster's: the token path
/// takes precedence over it).
pub fn ray_env() -> String {
    let home = RemoteHome::relative();
    format!(
        "export RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=\"$HOME/{token}\" \
         PATH=\"$HOME/{bin}:$HOME/{ray}/bin:$PATH\";",
        token = home.ray_token(),
        bin = home.bin(),
        ray = home.ray()
    )
}

/// Per-host results as one: Ok, or every host's failure.
fn all_hosts_ok<T>(results: Vec<Result<T, HostError>>) -> Result<(), ClusterError> {
    let total = results.len();
    let (_, errors) = partition(results);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ClusterError::Ray { total, errors })
    }
}

/// What `start_ray` brought up.
#[derive(Debug, Clone)]
pub struct RayCluster {
    /// The head's private address (GCS on `GCS_PORT`).
    pub head: String,
    /// Alive nodes, the head included.
    pub nodes: usize,
}

/// Start Ray on every host (head first) and wait until every node is alive.
pub async fn start_ray(cluster: &Cluster) -> Result<RayCluster, ClusterError> {
    let state = &cluster.state;
    let head_ip = state
        .orchestrator()
        .map(|h| h.private.clone())
        .ok_or_else(|| ClusterError::Io {
            what: "the cluster has no orchestrator".into(),
            source: std::io::Error::other("no orchestrator in the cluster state"),
        })?;
    let env = ray_env();
    let head = cluster.orchestrator();
    let said = head
        .check(&format!(
            "{env} if {running}; then echo {HEAD_WAS_RUNNING}; else ray start --head --node-ip-address {head_ip} --port {GCS_PORT} \
             --dashboard-host 127.0.0.1 --dashboard-port {DASHBOARD_PORT} --num-cpus 0 --num-gpus 0 \
             --resources '{{\"orchestrator\": 1}}' --disable-usage-stats; fi",
            running = raylet_running(&head_ip)
        ))
        .await?;
    // A new head (the orchestrator rebooted, or Ray died there) is a new
    // Ray cluster: workers still running belong to the old one and would
    // never join it. They are stopped and started again.
    let new_head = !said.contains(HEAD_WAS_RUNNING);
    let workers = cluster.hosts.iter().filter_map(|h| {
        let hs = state.host(h.name())?;
        (hs.role == Role::Factory).then(|| {
            let ip = hs.private.clone();
            let head_ip = head_ip.clone();
            let env = env.clone();
            // What a custom cluster's program gave the host, else its own.
            let offered = hs.offered.unwrap_or_default();
            let cpus = offered
                .cpus
                .map_or_else(|| "$(nproc)".to_string(), |n| n.to_string());
            let gpus = offered.gpus.map_or_else(
                || {
                    format!(
                        "$(cat {} 2>/dev/null || (nvidia-smi -L 2>/dev/null | grep -c '^GPU'))",
                        RemoteHome::relative().gpus()
                    )
                },
                |n| n.to_string(),
            );
            async move {
                let stale = if new_head {
                    format!("{}; ", stop_node(&ip))
                } else {
                    String::new()
                };
                h.check(&format!(
                    "{env} {stale}{running} || ray start --address {head_ip}:{GCS_PORT} --node-ip-address {ip} \
                     --num-cpus {cpus} --num-gpus {gpus} --disable-usage-stats",
                    running = raylet_running(&ip),
                ))
                .await
            }
        })
    });
    let (_, errors) = partition(join_all(workers).await);
    if !errors.is_empty() {
        return Err(ClusterError::Ray {
            total: state.hosts.len(),
            errors,
        });
    }
    let expected = state.hosts.len();
    let start = Instant::now();
    loop {
        let nodes = alive_nodes(head, &head_ip).await?;
        if nodes >= expected {
            return Ok(RayCluster {
                head: head_ip,
                nodes,
            });
        }
        if start.elapsed() > Duration::from_secs(120) {
            return Err(ClusterError::Host(HostError::Other {
                host: head.name().to_string(),
                detail: format!("only {nodes} of {expected} Ray nodes joined within 120 s"),
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A shell test for "a raylet of this user already runs for this node
/// address", through /proc (minimal hosts have no pgrep).
fn raylet_running(ip: &str) -> String {
    format!(
        "(for f in /proc/[0-9]*/cmdline; do [ -O \"$f\" ] && tr '\\0' ' ' < \"$f\" 2>/dev/null | \
         grep -qE 'raylet.*node.ip.address={ip}( |$)' && exit 0; done; exit 1)"
    )
}

/// What the head's start command prints when Ray already ran there.
const HEAD_WAS_RUNNING: &str = "flambe: the Ray head already runs";

/// A shell command that stops this user's Ray processes of one node (by
/// the node address they were started with) and waits until they are gone.
/// Not `ray stop`: it stops every Ray of the user on the machine, and one
/// machine can hold several nodes' processes (or another Ray of the user).
fn stop_node(ip: &str) -> String {
    format!(
        "for _ in $(seq 1 50); do found=0; for f in /proc/[0-9]*/cmdline; do [ -O \"$f\" ] && tr '\\0' ' ' < \"$f\" 2>/dev/null | \
         grep -qE 'node.ip.address={ip}( |$)' && {{ p=${{f#/proc/}}; kill -9 ${{p%/cmdline}} 2>/dev/null; found=1; }}; done; \
         [ $found = 0 ] && break; sleep 0.2; done"
    )
}

/// Alive nodes as `ray status` on the head counts them.
async fn alive_nodes(head: &Host, head_ip: &str) -> Result<usize, HostError> {
    let out = head
        .run(&format!(
            "{} ray status --address {head_ip}:{GCS_PORT} 2>/dev/null",
            ray_env()
        ))
        .await?;
    Ok(count_active(&out.stdout))
}

/// Nodes listed under `Active:` in `ray status` output.
pub fn count_active(status: &str) -> usize {
    status
        .lines()
        .skip_while(|l| l.trim() != "Active:")
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .filter(|l| l.contains("node_"))
        .map(|l| {
            l.split_whitespace()
                .next()
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(1)
        })
        .sum()
}

/// Stop Ray on every host.
pub async fn stop_ray(cluster: &Cluster) -> Result<(), ClusterError> {
    let cmd = format!("{} ray stop --force >/dev/null 2>&1 || true", ray_env());
    all_hosts_ok(join_all(cluster.hosts.iter().map(|h| h.check(&cmd))).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_active_nodes() {
        let status = "======== Autoscaler status ========\nNode status\n---------\nActive:\n 1 node_aa\n 1 node_bb\n 1 node_cc\nPending:\n (no pending nodes)\n";
        assert_eq!(count_active(status), 3);
        assert_eq!(count_active(""), 0);
    }
}
