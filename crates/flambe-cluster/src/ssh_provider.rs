//! `!SSHCluster`: machines the user already has become a cluster.
//!
//! `up` is idempotent; each run:
//! 1. checks that every host answers on its SSH port, and stops with one
//!    line per unreachable host before anything is changed;
//! 2. makes the cluster key pair (first run), pins host keys on first
//!    contact, installs the cluster's public key on every host (with the
//!    user's key, once; later runs use the cluster key only);
//! 3. ships this exact flambe build to every host (skipped where the hash
//!    matches), runs the `setup_cmds` not yet done there (hosts in parallel,
//!    each host's commands in order, resuming at a failed one);
//! 4. gives the orchestrator the cluster's private key, the factories'
//!    pinned host keys and an ssh_config, so it reaches every factory.

use crate::cluster::{ClusterError, io_err, target};
use crate::home::cluster_dir;
use crate::host::{Host, HostError, shell_quote};
use crate::plan::{Role, ssh_hosts};
use crate::remote_home::RemoteHome;
use crate::state::{ClusterFiles, ClusterState, HostState, ensure_key};
use crate::versioning::{Shipped, look_script, ship_binary};
use flambe_config::SshCluster;
use futures::future::join_all;
use serde::Serialize;
use std::time::{Duration, Instant};

/// How long a host gets to answer on its SSH port before it counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    pub name: String,
    pub role: Role,
    pub address: String,
    pub cpus: u32,
    pub gpus: u32,
    pub platform: String,
    /// The flambe build was sent (false: it was there already).
    pub binary_sent: bool,
    pub setup_ran: Vec<String>,
    pub setup_skipped: usize,
}

/// What `up` did.
#[derive(Debug, Clone, Serialize)]
pub struct UpReport {
    /// The cluster.
    pub name: String,
    /// It was created now (else it was known and checked).
    pub created: bool,
    /// Each host's part.
    pub hosts: Vec<HostReport>,
    /// How long it took.
    pub seconds: f64,
}

/// Bring up an `!SSHCluster`: keys, this build, setup commands; idempotent and resumable.
pub async fn up(cfg: &SshCluster) -> Result<UpReport, ClusterError> {
    let start = Instant::now();
    let files = ClusterFiles::new(cluster_dir(&cfg.name));
    let previous = files
        .load()
        .map_err(io_err(format!("cannot read {}", files.state().display())))?;
    let planned = ssh_hosts(cfg);

    let probes = join_all(planned.iter().map(|h| probe(&h.name, &h.connect, cfg.port))).await;
    let unreachable: Vec<HostError> = probes.into_iter().filter_map(Result::err).collect();
    if !unreachable.is_empty() {
        return Err(ClusterError::Unreachable {
            total: planned.len(),
            errors: unreachable,
        });
    }

    let mut state = ClusterState {
        name: cfg.name.clone(),
        provider: crate::state::Provider::Ssh,
        username: cfg.username.clone(),
        port: cfg.port,
        hosts: planned
            .iter()
            .map(|p| {
                let known = previous.as_ref().and_then(|s| {
                    s.hosts
                        .iter()
                        .find(|h| h.name == p.name && h.connect == p.connect)
                });
                HostState {
                    name: p.name.clone(),
                    role: p.role,
                    connect: p.connect.clone(),
                    private: p.private.clone(),
                    key_installed: known.is_some_and(|h| h.key_installed),
                    key_removed: known.is_some_and(|h| h.key_removed),
                    setup_done: known.map(|h| h.setup_done.clone()).unwrap_or_default(),
                    binary: known.and_then(|h| h.binary.clone()),
                    installed: known.map(|h| h.installed.clone()).unwrap_or_default(),
                    offered: known.and_then(|h| h.offered),
                }
            })
            .collect(),
    };
    ensure_key(&files, &cfg.name).map_err(io_err(format!(
        "cannot make the cluster key in {}",
        files.dir.display()
    )))?;
    files
        .write_ssh_config(&state)
        .map_err(io_err("cannot write the cluster's ssh_config"))?;
    files
        .save(&state)
        .map_err(io_err("cannot save the cluster state"))?;
    let public_key = std::fs::read_to_string(files.public_key())
        .map_err(io_err("cannot read the cluster's public key"))?;

    let prepared = join_all(
        state
            .hosts
            .iter()
            .map(|h| prepare_host(&files, &state, h, cfg, public_key.trim())),
    )
    .await;
    let mut reports = Vec::new();
    let mut errors = Vec::new();
    let mut hosts = Vec::new();
    for (i, p) in prepared.into_iter().enumerate() {
        state.hosts[i] = p.state;
        if let Some(r) = p.report {
            reports.push(r);
        }
        if let Some(e) = p.error {
            errors.push(e);
        }
        if let Some(h) = p.host {
            hosts.push(h);
        }
    }
    files
        .save(&state)
        .map_err(io_err("cannot save the cluster state"))?;
    if errors.is_empty()
        && let Err(e) = equip_hosts(&files, &state, &hosts).await
    {
        errors.push(e);
    }
    for h in hosts {
        h.close().await;
    }
    if !errors.is_empty() {
        return Err(ClusterError::Setup {
            total: state.hosts.len(),
            errors,
        });
    }
    Ok(UpReport {
        name: cfg.name.clone(),
        created: previous.is_none(),
        hosts: reports,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Does anything answer on the SSH port?
pub(crate) async fn probe(name: &str, addr: &str, port: u16) -> Result<(), HostError> {
    let fail = |detail: String| HostError::Unreachable {
        host: name.to_string(),
        addr: format!("{addr}:{port}"),
        detail,
    };
    match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect((addr, port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(fail(e.to_string())),
        Err(_) => Err(fail(format!(
            "no answer within {} s",
            PROBE_TIMEOUT.as_secs()
        ))),
    }
}

struct Prepared {
    state: HostState,
    report: Option<HostReport>,
    error: Option<HostError>,
    host: Option<Host>,
}

async fn prepare_host(
    files: &ClusterFiles,
    cluster: &ClusterState,
    h: &HostState,
    cfg: &SshCluster,
    public_key: &str,
) -> Prepared {
    let mut state = h.clone();
    let host = match connect(files, cluster, h, cfg).await {
        Ok(host) => host,
        Err(e) => {
            return Prepared {
                state,
                report: None,
                error: Some(e),
                host: None,
            };
        }
    };
    let mut report = None;
    let error = match setup_host(&host, &mut state, cfg, public_key).await {
        Ok(r) => {
            report = Some(r);
            None
        }
        Err(e) => Some(e),
    };
    Prepared {
        state,
        report,
        error,
        host: Some(host),
    }
}

/// The cluster key once installed; the user's key before (or if the
/// cluster key was removed behind our back).
async fn connect(
    files: &ClusterFiles,
    cluster: &ClusterState,
    h: &HostState,
    cfg: &SshCluster,
) -> Result<Host, HostError> {
    let t = target(cluster, h);
    if h.key_installed {
        match Host::connect(files, &t, None).await {
            Err(HostError::Login { .. }) => {}
            other => return other,
        }
    }
    Host::connect(files, &t, Some(&cfg.key)).await
}

async fn setup_host(
    host: &Host,
    state: &mut HostState,
    cfg: &SshCluster,
    public_key: &str,
) -> Result<HostReport, HostError> {
    // The cluster's key, the host's facts, and a look for this build
    // (made current where it is there), in one round trip.
    let key = shell_quote(public_key);
    let facts = host
        .check(&format!(
            "umask 077; {{ mkdir -p .ssh && touch .ssh/authorized_keys && chmod 700 .ssh && chmod 600 .ssh/authorized_keys && \
             (grep -qxF {key} .ssh/authorized_keys || echo {key} >> .ssh/authorized_keys) && \
             nproc && ((nvidia-smi -L 2>/dev/null || true) | grep -c '^GPU' || true); }} || exit 1; {look}",
            look = look_script()?
        ))
        .await?;
    state.key_installed = true;
    state.key_removed = false;
    let lines: Vec<&str> = facts.lines().collect();
    let looked = lines.get(2..).unwrap_or_default().join("\n");
    let shipped = ship_binary(host, Some(&looked)).await?;
    state.binary = crate::versioning::local_binary().ok().map(|(_, h)| h);

    let mut ran = Vec::new();
    let mut skipped = 0;
    for cmd in &cfg.setup_cmds {
        if state.setup_done.contains(cmd) {
            skipped += 1;
            continue;
        }
        host.check(&format!("bash -c {}", shell_quote(cmd)))
            .await
            .map_err(|e| match e {
                HostError::Command {
                    host,
                    status,
                    stderr,
                    ..
                } => HostError::Command {
                    host,
                    command: cmd.clone(),
                    status,
                    stderr,
                },
                other => other,
            })?;
        state.setup_done.push(cmd.clone());
        ran.push(cmd.clone());
    }
    Ok(HostReport {
        name: state.name.clone(),
        role: state.role,
        address: state.connect.clone(),
        cpus: lines
            .first()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0),
        gpus: lines
            .get(1)
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0),
        platform: lines.get(2).unwrap_or(&"").trim().to_string(),
        binary_sent: shipped == Shipped::Sent,
        setup_ran: ran,
        setup_skipped: skipped,
    })
}

/// Every host gets the cluster's private key (0600), the hosts' keys as
/// pinned here (under their private addresses) and an ssh_config naming
/// every host, in `~/.flambe/cluster/`: the orchestrator reaches the
/// factories, and trials on factories fetch inputs from and send results to
/// the orchestrator.
async fn equip_hosts(
    files: &ClusterFiles,
    state: &ClusterState,
    hosts: &[Host],
) -> Result<(), HostError> {
    let pinned = std::fs::read_to_string(files.known_hosts()).unwrap_or_default();
    let mut known_hosts = String::new();
    let mut config = format!(
        "Host *\n  IdentitiesOnly yes\n  BatchMode yes\n  StrictHostKeyChecking yes\n  User {}\n  Port {}\n  \
         UserKnownHostsFile {}\n  IdentityFile {}\n",
        state.username,
        state.port,
        RemoteHome::tilde().known_hosts(),
        RemoteHome::tilde().cluster_key()
    );
    for h in &state.hosts {
        let pattern = host_pattern(&h.connect, state.port);
        for line in pinned.lines() {
            let mut parts = line.splitn(2, ' ');
            if parts.next() == Some(pattern.as_str())
                && let Some(key) = parts.next()
            {
                known_hosts.push_str(&format!("{} {key}\n", host_pattern(&h.private, state.port)));
            }
        }
        config.push_str(&format!("\nHost {}\n  HostName {}\n", h.name, h.private));
    }
    let (_, errors) = crate::cluster::partition(
        join_all(
            hosts
                .iter()
                .map(|h| equip_host(files, h, &known_hosts, &config)),
        )
        .await,
    );
    errors.into_iter().next().map_or(Ok(()), Err)
}

async fn equip_host(
    files: &ClusterFiles,
    host: &Host,
    known_hosts: &str,
    config: &str,
) -> Result<(), HostError> {
    let remote = RemoteHome::relative();
    // All three through stdin (0600), never on a command line, in one round
    // trip; a bare host needs no rsync for them.
    let key = std::fs::read(files.key()).map_err(|e| HostError::Other {
        host: host.name().to_string(),
        detail: format!("cannot read the cluster key {}: {e}", files.key().display()),
    })?;
    host.write_private_files(
        &remote.cluster(),
        &[
            (remote.cluster_key(), key.as_slice()),
            (remote.known_hosts(), known_hosts.as_bytes()),
            (remote.ssh_config(), config.as_bytes()),
        ],
    )
    .await
}

/// How known_hosts names a host: `addr`, or `[addr]:port` off port 22.
fn host_pattern(addr: &str, port: u16) -> String {
    if port == 22 {
        addr.to_string()
    } else {
        format!("[{addr}]:{port}")
    }
}
