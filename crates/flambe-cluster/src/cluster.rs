//! A known cluster, connected: what every command after creation uses
//! (status, exec, rsync, down, and the runnables that run on it). It reaches
//! hosts with the cluster's own key only.

pub use crate::error::ClusterError;
use crate::home::cluster_dir;
use crate::host::{Host, HostError, Output, Target};
use crate::remote_home::RemoteHome;
use crate::state::{ClusterFiles, ClusterState, HostState};
use futures::future::join_all;

/// Per-host results split into what worked and what failed.
pub fn partition<T>(results: Vec<Result<T, HostError>>) -> (Vec<T>, Vec<HostError>) {
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(v) => ok.push(v),
            Err(e) => errors.push(e),
        }
    }
    (ok, errors)
}

pub fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Io { what, source }
}

pub fn target(state: &ClusterState, h: &HostState) -> Target {
    Target {
        name: h.name.clone(),
        addr: h.connect.clone(),
        port: state.port,
        user: state.username.clone(),
    }
}

/// Names of every cluster with local state.
pub fn known_clusters() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(crate::home::clusters_dir())
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().join("cluster.json").exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The files and the recorded state of the known cluster `name`.
pub fn load_state(name: &str) -> Result<(ClusterFiles, ClusterState), ClusterError> {
    let files = ClusterFiles::new(cluster_dir(name));
    match files
        .load()
        .map_err(io_err(format!("cannot read {}", files.state().display())))?
    {
        Some(state) => Ok((files, state)),
        None => Err(ClusterError::NotFound(name.to_string())),
    }
}

/// A known cluster, every host connected.
pub struct Cluster {
    /// Its folder here.
    pub files: ClusterFiles,
    /// What is recorded of it.
    pub state: ClusterState,
    /// Connected hosts, orchestrator first, in state order.
    pub hosts: Vec<Host>,
}

impl Cluster {
    /// Connect to every host of a known cluster with the cluster key.
    pub async fn open(name: &str) -> Result<Cluster, ClusterError> {
        let (files, state) = load_state(name)?;
        let targets: Vec<Target> = state.hosts.iter().map(|h| target(&state, h)).collect();
        let (hosts, errors) =
            partition(join_all(targets.iter().map(|t| Host::connect(&files, t, None))).await);
        if !errors.is_empty() {
            let total = state.hosts.len();
            for h in hosts {
                h.close().await;
            }
            return Err(ClusterError::Unreachable { total, errors });
        }
        Ok(Cluster {
            files,
            state,
            hosts,
        })
    }

    /// Connect to the orchestrator only: enough to follow, pull from or
    /// serve an experiment, even while a factory is down.
    pub async fn open_orchestrator(name: &str) -> Result<Cluster, ClusterError> {
        let (files, state) = load_state(name)?;
        let orch = state
            .orchestrator()
            .ok_or_else(|| ClusterError::NotFound(name.to_string()))?;
        let host = Host::connect(&files, &target(&state, orch), None).await?;
        Ok(Cluster {
            files,
            state,
            hosts: vec![host],
        })
    }

    /// The host named `name`, or an error listing the known ones.
    pub fn host(&self, name: &str) -> Result<&Host, ClusterError> {
        self.hosts
            .iter()
            .find(|h| h.name() == name)
            .ok_or_else(|| ClusterError::UnknownHost {
                cluster: self.state.name.clone(),
                host: name.to_string(),
                known: self
                    .hosts
                    .iter()
                    .map(|h| h.name().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// The orchestrator.
    pub fn orchestrator(&self) -> &Host {
        &self.hosts[0]
    }

    /// Run a command on every host (or one), in parallel.
    pub async fn exec(
        &self,
        command: &str,
        only: Option<&str>,
    ) -> Result<Vec<(String, Result<Output, HostError>)>, ClusterError> {
        let hosts: Vec<&Host> = match only {
            Some(name) => vec![self.host(name)?],
            None => self.hosts.iter().collect(),
        };
        let results = join_all(hosts.iter().map(|h| h.run(command))).await;
        Ok(hosts
            .iter()
            .map(|h| h.name().to_string())
            .zip(results)
            .collect())
    }

    /// Close every host's connection.
    pub async fn close(self) {
        for h in self.hosts {
            h.close().await;
        }
    }
}

/// What `cluster down` did, host by host.
#[derive(Debug, Default)]
pub struct Down {
    /// Hosts the cluster key was removed from.
    pub cleaned: Vec<String>,
    /// Hosts that never got the key (nothing of the cluster's to remove).
    pub never_keyed: Vec<String>,
    /// Hosts an earlier, partly failed `cluster down` cleaned already.
    pub cleaned_before: Vec<String>,
    /// With `purge`: hosts that could not be cleaned, and why; the cluster
    /// key stays in their `~/.ssh/authorized_keys`.
    pub left: Vec<HostError>,
}

/// Remove the cluster's key from every host that has it (and the cluster's
/// files from `~/.flambe/cluster`), then forget the cluster locally. Nothing
/// else on the machines is touched.
///
/// Every host is reached before any is changed: one that cannot be reached
/// stops the command with nothing changed. Hosts cleaned before a later
/// failure are recorded as such, so running it again finishes the rest.
/// `purge` forgets the cluster whatever could not be cleaned, and says where
/// the key stays.
pub async fn down_ssh(name: &str, purge: bool) -> Result<Down, ClusterError> {
    let (files, mut state) = load_state(name)?;
    let public = std::fs::read_to_string(files.public_key()).unwrap_or_default();
    let public = public.trim().to_string();
    let mut down = Down::default();
    let (keyed, never): (Vec<&HostState>, Vec<&HostState>) =
        state.hosts.iter().partition(|h| h.key_installed);
    let (cleaned_before, never): (Vec<&HostState>, Vec<&HostState>) =
        never.into_iter().partition(|h| h.key_removed);
    down.never_keyed = never.iter().map(|h| h.name.clone()).collect();
    down.cleaned_before = cleaned_before.iter().map(|h| h.name.clone()).collect();

    let targets: Vec<Target> = keyed.iter().map(|h| target(&state, h)).collect();
    let connected = join_all(targets.iter().map(|t| Host::connect(&files, t, None))).await;
    let mut hosts = Vec::new();
    let mut unreachable = Vec::new();
    for c in connected {
        match c {
            Ok(host) => hosts.push(host),
            Err(e) => unreachable.push(e),
        }
    }
    if !unreachable.is_empty() && !purge {
        for h in hosts {
            h.close().await;
        }
        return Err(ClusterError::DownUnreachable {
            name: name.to_string(),
            total: keyed.len(),
            errors: unreachable,
        });
    }
    down.left = unreachable;

    let remove = if public.is_empty() {
        format!("rm -rf {}", RemoteHome::relative().cluster())
    } else {
        format!(
            // Every step must work, or the host is reported as not cleaned
            // (grep exits 1 when no line is left: that is a success here);
            // the last check proves the key is gone.
            "set -e; if [ -f .ssh/authorized_keys ]; then \
             {{ grep -vxF {key} .ssh/authorized_keys || [ $? -eq 1 ]; }} > .ssh/authorized_keys.flambe-tmp; \
             chmod 600 .ssh/authorized_keys.flambe-tmp; mv .ssh/authorized_keys.flambe-tmp .ssh/authorized_keys; fi; \
             if [ -f .ssh/authorized_keys ] && grep -qxF {key} .ssh/authorized_keys; then \
             echo 'the cluster key is still in ~/.ssh/authorized_keys' >&2; exit 1; fi; rm -rf {dir}",
            key = crate::host::shell_quote(&public),
            dir = RemoteHome::relative().cluster()
        )
    };
    let removed = join_all(hosts.iter().map(|host| {
        let remove = &remove;
        async move { host.check(remove).await.map(|_| host.name().to_string()) }
    }))
    .await;
    for host in hosts {
        host.close().await;
    }
    let (cleaned, failed) = partition(removed);
    down.cleaned = cleaned;
    if !failed.is_empty() && !purge {
        // What was cleaned stays cleaned: the next run skips those hosts
        // (the cluster key no longer logs in there).
        for h in state.hosts.iter_mut() {
            if down.cleaned.contains(&h.name) {
                h.key_installed = false;
                h.key_removed = true;
            }
        }
        files
            .save(&state)
            .map_err(io_err("cannot save the cluster state"))?;
        return Err(ClusterError::DownPartly {
            name: name.to_string(),
            cleaned: down.cleaned,
            errors: failed,
        });
    }
    down.left.extend(failed);
    std::fs::remove_dir_all(&files.dir)
        .map_err(io_err(format!("cannot remove {}", files.dir.display())))?;
    Ok(down)
}
