//! An experiment on a cluster: the cluster runnable's `setup`, and its
//! driver's launch, record and end.
//!
//! Everything lives under `~/.flambe/experiments/NAME/` on every host
//! ([`ExperimentHome`]): local resources are uploaded with rsync (only what
//! changed), `!cluster` resources are checked to exist on every host, and
//! the runnable is rewritten for the cluster (resources at their uploaded
//! paths, `save_path` under `runs/`).
//!
//! The driver runs on the orchestrator detached from SSH (`setsid`),
//! started as `flambe drive driver.spec.json` with a typed [`DriverSpec`];
//! it submits trials to Ray, and serves the report site on the
//! orchestrator's loopback (`SITE_PORT`). `~/.flambe/driver.json` ([`Driver`])
//! names the experiment the cluster runs: one at a time.

use crate::cluster::{Cluster, ClusterError};
pub use crate::error::DriverSpecError;
use crate::host::{Host, HostError, shell_quote};
use crate::ray::{DASHBOARD_PORT, ray_env};
use crate::remote_home::RemoteHome;
use crate::sync::{rsync_down, rsync_up};
use flambe_config::{Experiment, Extension, Resource, ResourceLocation, Script};
use futures::future::join_all;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The report site's port on the orchestrator's loopback.
pub const SITE_PORT: u16 = 8180;

/// How the driver on the orchestrator runs: written next to the runnable
/// as `driver.spec.json`, read by the hidden `flambe drive SPEC`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriverSpec {
    /// The runnable rewritten for the cluster (`runnable.yaml`).
    pub runnable: PathBuf,
    /// The Ray dashboard (Jobs API) on the orchestrator's loopback.
    pub ray_address: String,
    /// The orchestrator's name in `ssh_config`: where trials send results.
    pub sync_host: String,
    /// The cluster's ssh_config on every host, for the trials' rsync.
    pub ssh_config: PathBuf,
    /// The venv Ray runs from on every host.
    pub ray_venv: PathBuf,
    /// The report site's port on the orchestrator's loopback.
    pub site_port: u16,
    /// The experiment's `!env` values, a 0600 JSON map.
    pub secrets_file: Option<PathBuf>,
    /// Replace a changed experiment's results (set aside, never deleted).
    pub force: bool,
    /// Serve TensorBoard over the results, next to the site.
    pub tensorboard: bool,
}

impl DriverSpec {
    /// Read a spec the launch wrote; the error says which file and why.
    pub fn read(path: &Path) -> Result<DriverSpec, DriverSpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| DriverSpecError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| DriverSpecError::Invalid {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// What `~/.flambe/driver.json` on the orchestrator records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Driver {
    /// The experiment (or script) it drives.
    pub name: String,
    /// Unix seconds.
    pub started: f64,
    /// Its process id on the orchestrator.
    pub pid: u32,
}

#[derive(Debug)]
pub struct Launched {
    pub name: String,
    /// The experiment's results folder on the orchestrator.
    pub results: String,
    /// False when that experiment was already running: this call attached.
    pub started: bool,
    /// The extensions' environment, when there are extensions.
    pub extensions: Option<crate::extensions::Prepared>,
}

fn other(host: &Host, detail: String) -> ClusterError {
    ClusterError::Host(HostError::Other {
        host: host.name().to_string(),
        detail,
    })
}

/// A shell test for "process `pid` runs": it exists and is not a zombie
/// (a killed driver whose parent is an init that does not reap, as in many
/// containers, stays in the process table and answers `kill -0`).
fn process_alive(pid: u32) -> String {
    format!(
        "s=$(sed 's/.*) //' /proc/{pid}/stat 2>/dev/null | cut -c1); [ -n \"$s\" ] && [ \"$s\" != Z ]"
    )
}

/// The running driver, if any.
pub async fn running_driver(orch: &Host) -> Result<Option<Driver>, ClusterError> {
    let record = RemoteHome::relative().driver_record();
    let out = orch.run(&format!("cat {record} 2>/dev/null")).await?;
    let Ok(driver) = serde_json::from_str::<Driver>(out.stdout.trim()) else {
        return Ok(None);
    };
    let alive = orch.run(&process_alive(driver.pid)).await?;
    Ok((alive.code == Some(0)).then_some(driver))
}

/// Stop a driver (its whole session): it stops its Ray jobs on the way out.
pub async fn stop_driver(orch: &Host, driver: &Driver) -> Result<(), ClusterError> {
    orch.run(&format!(
        "kill -TERM -{pid} 2>/dev/null || kill -TERM {pid}",
        pid = driver.pid
    ))
    .await?;
    for _ in 0..120 {
        if orch.run(&process_alive(driver.pid)).await?.code != Some(0) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    orch.run(&format!(
        "kill -KILL -{pid} 2>/dev/null; kill -KILL {pid}",
        pid = driver.pid
    ))
    .await?;
    Ok(())
}

/// How a runnable is started on a cluster.
#[derive(Debug, Clone, Copy)]
pub struct LaunchOptions {
    /// Replace a running experiment (and a changed one's results).
    pub force: bool,
    /// The driver serves TensorBoard over the results, next to the site.
    pub tensorboard: bool,
}

/// What runs on a cluster: `!Experiment` and `!Script` (Flambé's cluster
/// runnables). `setup` ships the runnable, rewritten for the cluster, and
/// starts its driver on the orchestrator.
pub trait ClusterRunnable: Clone + Send + Sync {
    /// Its name: its folder on the hosts, its results folder's name.
    fn name(&self) -> &str;
    /// Its resources, which the shipped copy points at their uploaded paths.
    fn resources_mut(&mut self) -> &mut Vec<Resource>;
    /// Make this copy the one the orchestrator runs: results under
    /// `save_path`, nothing of this machine's (its device overrides) kept.
    fn retarget(&mut self, save_path: PathBuf);
    /// Plain YAML that the remote `flambe` loads like any config file
    /// (`!env NAME` stays a name: values go in the secrets file).
    fn to_yaml(&self) -> String;
    /// The local environment variables its `!env` values read.
    fn secrets(&self) -> Vec<String>;

    /// Set it up on the cluster and start its driver (or attach to it when
    /// it already runs). Ray must be running.
    fn setup(
        &self,
        cluster: &Cluster,
        extensions: &[Extension],
        opts: LaunchOptions,
    ) -> impl std::future::Future<Output = Result<Launched, ClusterError>> + Send {
        launch(cluster, self, extensions, opts)
    }
}

impl ClusterRunnable for Experiment {
    fn name(&self) -> &str {
        &self.name
    }
    fn resources_mut(&mut self) -> &mut Vec<Resource> {
        &mut self.resources
    }
    fn retarget(&mut self, save_path: PathBuf) {
        self.save_path = save_path;
        self.devices = Default::default();
    }
    fn to_yaml(&self) -> String {
        flambe_config::experiment_yaml(self)
    }
    fn secrets(&self) -> Vec<String> {
        Experiment::secrets(self)
    }
}

impl ClusterRunnable for Script {
    fn name(&self) -> &str {
        &self.name
    }
    fn resources_mut(&mut self) -> &mut Vec<Resource> {
        &mut self.resources
    }
    fn retarget(&mut self, save_path: PathBuf) {
        self.save_path = save_path;
    }
    fn to_yaml(&self) -> String {
        flambe_config::script_yaml(self)
    }
    fn secrets(&self) -> Vec<String> {
        Script::secrets(self)
    }
}

/// The values of `names` from this process's environment, read at submit
/// time; the first unset one is an error that names it.
pub fn secret_values(names: &[String]) -> Result<BTreeMap<String, String>, ClusterError> {
    names
        .iter()
        .map(|n| {
            std::env::var(n)
                .map(|v| (n.clone(), v))
                .map_err(|_| ClusterError::UnsetSecret(n.clone()))
        })
        .collect()
}

/// `ClusterRunnable::setup`.
pub async fn launch<R: ClusterRunnable>(
    cluster: &Cluster,
    runnable: &R,
    extensions: &[Extension],
    opts: LaunchOptions,
) -> Result<Launched, ClusterError> {
    let LaunchOptions { force, tensorboard } = opts;
    let name = runnable.name().to_string();
    let secrets = secret_values(&runnable.secrets())?;
    let orch = cluster.orchestrator();
    let home = orch.check("printf %s \"$HOME\"").await?;
    for h in &cluster.hosts {
        let theirs = h.check("printf %s \"$HOME\"").await?;
        if theirs != home {
            return Err(other(
                h,
                format!(
                    "its home is {theirs}, the orchestrator's {home}: flambe needs the same user and home on every host"
                ),
            ));
        }
    }
    let remote = RemoteHome::at(&home);
    let layout = remote.experiment(&name);
    let base = layout.base().to_string();
    let results = layout.results();
    if let Some(driver) = running_driver(orch).await? {
        if driver.name == name && !force {
            return Ok(Launched {
                name: name.clone(),
                results,
                started: false,
                extensions: None,
            });
        }
        if !force {
            return Err(ClusterError::Busy {
                running: driver.name,
                since: driver.started,
            });
        }
        stop_driver(orch, &driver).await?;
    }

    let mut shipped = runnable.clone();
    shipped.retarget(PathBuf::from(layout.runs()));
    for r in shipped.resources_mut() {
        match &r.location {
            ResourceLocation::Local(path) => {
                let uploaded = upload(cluster, path, &layout.resource(&r.name)).await?;
                r.location = ResourceLocation::Local(PathBuf::from(uploaded));
            }
            ResourceLocation::Cluster(path) => {
                let test = format!("test -e {}", shell_quote(path));
                let checks = join_all(cluster.hosts.iter().map(|h| h.check(&test))).await;
                for (h, r) in cluster.hosts.iter().zip(checks) {
                    if r.is_err() {
                        return Err(other(
                            h,
                            format!("the `!cluster` resource {path} does not exist there"),
                        ));
                    }
                }
            }
        }
    }
    // Extensions: on every host before anything starts; the shipped config
    // names their uploaded folders.
    let (yaml, python) = if extensions.is_empty() {
        (shipped.to_yaml(), None)
    } else {
        let prepared = crate::extensions::prepare(cluster, extensions, &home).await?;
        let yaml = format!(
            "{}{}",
            flambe_config::extensions_yaml(&prepared.remote),
            shipped.to_yaml()
        );
        (yaml, Some(prepared))
    };
    orch.check(&format!(
        "mkdir -p {base} && printf '%s' {} > {}",
        shell_quote(&yaml),
        layout.runnable()
    ))
    .await?;
    // Secrets: a 0600 file on the orchestrator, written through stdin; a
    // run without secrets leaves none behind from an earlier one.
    let secrets_file = layout.secrets();
    let secrets_file = if secrets.is_empty() {
        orch.check(&format!("rm -f {secrets_file}")).await?;
        None
    } else {
        let json = serde_json::to_vec(&secrets).unwrap_or_default();
        orch.write_private(&secrets_file, &json).await?;
        Some(PathBuf::from(secrets_file))
    };
    let spec = DriverSpec {
        runnable: PathBuf::from(layout.runnable()),
        ray_address: format!("http://127.0.0.1:{DASHBOARD_PORT}"),
        sync_host: orch.name().to_string(),
        ssh_config: PathBuf::from(remote.ssh_config()),
        ray_venv: PathBuf::from(remote.ray()),
        site_port: SITE_PORT,
        secrets_file,
        force,
        tensorboard,
    };
    let spec_json = serde_json::to_string_pretty(&spec).unwrap_or_default();
    orch.check(&format!(
        "printf '%s' {} > {}",
        shell_quote(&spec_json),
        layout.driver_spec()
    ))
    .await?;
    // The driver as a script, so that `setsid` starts one command whose pid
    // is also its session's and process group's id.
    // It writes its own pid: `$!` of the backgrounded `setsid` is the
    // shell's subshell (or `setsid`'s parent), not the driver.
    let script = format!(
        "#!/bin/sh\necho $$ > {pid}.tmp && mv {pid}.tmp {pid}\nexec {flambe} drive {spec} > {log} 2>&1\n",
        pid = shell_quote(&layout.driver_pid()),
        flambe = shell_quote(&remote.flambe()),
        spec = shell_quote(&layout.driver_spec()),
        log = shell_quote(&layout.driver_log()),
    );
    let script_path = layout.driver_script();
    orch.check(&format!(
        "printf '%s' {} > {script_path} && chmod 755 {script_path}",
        shell_quote(&script)
    ))
    .await?;
    let pid = orch
        .check(&format!(
            "cd {base} && rm -f {pid} && ({env} setsid {script_path} >/dev/null 2>&1 </dev/null &) && \
             for _ in $(seq 1 100); do [ -s {pid} ] && exec cat {pid}; sleep 0.1; done; exit 1",
            env = ray_env(),
            pid = layout.driver_pid()
        ))
        .await
        .map_err(|e| {
            other(
                orch,
                format!("the driver did not start ({e}); see {}", layout.driver_log()),
            )
        })?;
    let pid: u32 = pid.trim().parse().map_err(|_| {
        other(
            orch,
            format!("the driver did not start; see {}", layout.driver_log()),
        )
    })?;
    let driver = Driver {
        name: name.clone(),
        started: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
        pid,
    };
    let json = serde_json::to_string(&driver).unwrap_or_default();
    orch.check(&format!(
        "printf '%s' {} > {}",
        shell_quote(&json),
        RemoteHome::relative().driver_record()
    ))
    .await?;
    Ok(Launched {
        name: name.clone(),
        results,
        started: true,
        extensions: python,
    })
}

/// Upload a local file or folder to `dest` on every host; returns the path
/// the resource has there.
async fn upload(cluster: &Cluster, local: &Path, dest: &str) -> Result<String, ClusterError> {
    let (target, remote_path) = if local.is_dir() {
        (dest.to_string(), dest.to_string())
    } else {
        let file = local
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        (format!("{dest}/{file}"), format!("{dest}/{file}"))
    };
    let results = join_all(cluster.hosts.iter().map(|h| {
        let target = target.clone();
        async move {
            h.mkdir(dest).await?;
            rsync_up(&cluster.files, h, local, &target, local.is_dir()).await
        }
    }))
    .await;
    for r in results {
        r?;
    }
    Ok(remote_path)
}

/// Copy an experiment's results folder from the orchestrator to `local`.
pub async fn pull(cluster: &Cluster, name: &str, local: &Path) -> Result<(), ClusterError> {
    let orch = cluster.orchestrator();
    let home = orch.check("printf %s \"$HOME\"").await?;
    let results = format!("{}/", RemoteHome::at(&home).experiment(name).results());
    if orch.run(&format!("test -d {results}")).await?.code != Some(0) {
        return Err(other(
            orch,
            format!("no results of an experiment `{name}` on this cluster"),
        ));
    }
    std::fs::create_dir_all(local).map_err(crate::cluster::io_err(format!(
        "cannot create {}",
        local.display()
    )))?;
    rsync_down(&cluster.files, orch, &results, local, false).await?;
    Ok(())
}
