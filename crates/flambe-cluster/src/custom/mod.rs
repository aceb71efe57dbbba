//! Custom clusters: `!CommandCluster` and plugins (`!FooCluster` →
//! `flambe-cluster-foo`). Their program makes or finds the hosts (`up`,
//! which must be idempotent, as Flambé's `load_all_instances` is) and
//! releases them (`down`, also the rollback of a bring-up whose hosts never
//! answered, as Flambé's `rollback_env`). Everything after the hosts are
//! known is an `!SSHCluster`'s path: keys, this build, setup, Ray.
//!
//! The cluster's record (`custom.json` beside its state) keeps what `down`
//! needs, so `flambe cluster down NAME` works without the config file.

mod hosts;
mod protocol;

pub use hosts::{CustomHost, CustomHosts};
pub use protocol::{Action, PROTOCOL};

use crate::error::ClusterError;
use crate::home::cluster_dir;
use crate::ssh_provider::{UpReport, probe};
use crate::state::{ClusterFiles, Offered, Provider};
use flambe_config::{CustomCluster, HostAddr, SshCluster};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long the hosts `up` reported get to answer on SSH before the
/// bring-up is rolled back (hosts made a moment ago may still be booting).
const ANSWER_WITHIN: Duration = Duration::from_secs(120);

/// What went wrong with a custom cluster's program.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // each variant's #[error] message is its documentation
pub enum CustomError {
    #[error("{who} could not be run: {source}")]
    Spawn { who: String, source: std::io::Error },
    #[error("{who} failed ({}){}", code.map_or("killed by a signal".to_string(), |c| format!("exit code {c}")), if stderr.is_empty() { String::new() } else { format!("; its stderr ends:\n{stderr}") })]
    Failed {
        who: String,
        code: Option<i32>,
        stderr: String,
    },
    #[error("{who} did not finish within {seconds} s")]
    Timeout { who: String, seconds: u64 },
    #[error("{who} printed something that is not JSON ({error}); its output begins:\n{head}")]
    NotJson {
        who: String,
        error: String,
        head: String,
    },
    #[error(
        "{who} printed JSON that is not what flambe expects: at `{path}`: {problem}; its output begins:\n{head}"
    )]
    Shape {
        who: String,
        path: String,
        problem: String,
        head: String,
    },
    #[error("{who} speaks protocol {theirs}; this flambe speaks protocol {PROTOCOL}")]
    Protocol { who: String, theirs: String },
}

/// What bringing a custom cluster up did.
#[derive(Debug, Clone)]
pub struct CustomUp {
    /// The hosts the program reported.
    pub hosts: CustomHosts,
    /// Everything after: keys, build, setup.
    pub ssh: UpReport,
}

/// The record `cluster down` reads (`custom.json`).
fn record_path(name: &str) -> PathBuf {
    cluster_dir(name).join("custom.json")
}

/// Whether `name` is a custom cluster flambe knows how to release.
pub fn is_custom_cluster(name: &str) -> bool {
    record_path(name).exists()
}

/// A plugin's verdict on its fields: `(path, message)` for each problem
/// (`validate`'s `{"errors": [{"path", "message"}]}`). A `!CommandCluster`
/// has nothing to ask.
pub async fn validate(cfg: &CustomCluster) -> Result<Vec<(String, String)>, CustomError> {
    if !matches!(cfg.source, flambe_config::HostSource::Plugin { .. }) {
        return Ok(Vec::new());
    }
    let who = protocol::describe(cfg, Action::Validate);
    let answer = protocol::call(cfg, Action::Validate).await?;
    let map = protocol::json_answer(&who, &answer.stdout)?;
    let wrong = |path: &str, problem: String| CustomError::Shape {
        who: who.clone(),
        path: path.into(),
        problem,
        head: protocol::head(&answer.stdout, 5),
    };
    let items = match map.get("errors") {
        None => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(wrong(
                "errors",
                format!("expected a list, found {}", protocol::kind(other)),
            ));
        }
    };
    let mut errors = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let text = |key: &str| match item.get(key) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(wrong(
                &format!("errors[{i}].{key}"),
                format!("expected a string, found {}", protocol::kind(other)),
            )),
            None => Err(wrong(&format!("errors[{i}].{key}"), "missing".into())),
        };
        errors.push((text("path")?, text("message")?));
    }
    Ok(errors)
}

/// Run the program's `up`, then bring its hosts up as an `!SSHCluster`.
/// Hosts of a new cluster that do not answer within [`ANSWER_WITHIN`] are
/// released with `down` (the rollback), and the error says so; a cluster
/// flambe knew before is left as it is.
pub async fn up(cfg: &CustomCluster) -> Result<CustomUp, ClusterError> {
    let who = protocol::describe(cfg, Action::Up);
    let answer = protocol::call(cfg, Action::Up).await?;
    let hosts = hosts::parse(&who, &answer.stdout)?;
    let files = ClusterFiles::new(cluster_dir(&cfg.name));
    // Only a bring-up that made the cluster is rolled back: a cluster that
    // was up before keeps its hosts (and its allocation) when some of them
    // do not answer this time.
    let known_before = matches!(files.load(), Ok(Some(_)));
    // What `down` needs, before anything can fail: a rollback or a later
    // `cluster down` may need it.
    std::fs::create_dir_all(cluster_dir(&cfg.name))
        .and_then(|()| {
            std::fs::write(
                record_path(&cfg.name),
                serde_json::to_string_pretty(cfg).unwrap_or_default(),
            )
        })
        .map_err(|source| ClusterError::Io {
            what: format!("cannot write {}", record_path(&cfg.name).display()),
            source,
        })?;
    let ssh = as_ssh_cluster(cfg, &hosts);
    if let Err(unanswered) = wait_for_answers(&ssh).await {
        if known_before {
            return Err(unanswered);
        }
        let rollback = protocol::call(cfg, Action::Down).await;
        if rollback.is_ok() {
            let _ = std::fs::remove_dir_all(cluster_dir(&cfg.name));
        }
        return Err(ClusterError::RolledBack {
            cause: Box::new(unanswered),
            down: protocol::describe(cfg, Action::Down),
            outcome: rollback.map(|_| ()).map_err(|e| e.to_string()),
        });
    }
    let report = crate::ssh_provider::up(&ssh).await?;
    if let Ok(Some(mut state)) = files.load() {
        state.provider = Provider::Custom;
        // What each host offers, as the program said, for Ray to offer.
        let all = std::iter::once(&hosts.orchestrator).chain(&hosts.factories);
        for (kept, said) in state.hosts.iter_mut().zip(all) {
            kept.offered = (said.cpus.is_some() || said.gpus.is_some()).then_some(Offered {
                cpus: said.cpus,
                gpus: said.gpus,
            });
        }
        files.save(&state).map_err(|source| ClusterError::Io {
            what: format!("cannot save {}", files.state().display()),
            source,
        })?;
    }
    Ok(CustomUp { hosts, ssh: report })
}

/// Every host answers on its SSH port, or the error of those that never did.
async fn wait_for_answers(ssh: &SshCluster) -> Result<(), ClusterError> {
    let planned = crate::plan::ssh_hosts(ssh);
    let wait = std::env::var("FLAMBE_HOSTS_ANSWER_WITHIN")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(ANSWER_WITHIN, Duration::from_secs_f64);
    let start = Instant::now();
    loop {
        let probes =
            futures::future::join_all(planned.iter().map(|h| probe(&h.name, &h.connect, ssh.port)))
                .await;
        let errors: Vec<_> = probes.into_iter().filter_map(Result::err).collect();
        if errors.is_empty() {
            return Ok(());
        }
        if start.elapsed() >= wait {
            return Err(ClusterError::Unreachable {
                total: planned.len(),
                errors,
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn as_ssh_cluster(cfg: &CustomCluster, hosts: &CustomHosts) -> SshCluster {
    let addr = |h: &CustomHost| HostAddr {
        public: h.public.clone(),
        private: h.private.clone(),
    };
    SshCluster {
        name: cfg.name.clone(),
        orchestrator: addr(&hosts.orchestrator),
        factories: hosts.factories.iter().map(addr).collect(),
        username: cfg.username.clone(),
        key: cfg.key.clone(),
        use_public: cfg.use_public,
        port: cfg.port,
        setup_cmds: cfg.setup_cmds.clone(),
    }
}

/// What `cluster down` did to a custom cluster.
#[derive(Debug)]
pub struct CustomDown {
    /// The cluster key taken off its hosts (those that answered).
    pub keys: Result<crate::cluster::Down, String>,
    /// What ran to release the hosts.
    pub released_by: String,
}

/// `cluster down` of a custom cluster: the cluster key off every host that
/// answers, then the program's `down`, then flambe forgets it. A failing
/// `down` keeps the record, so the same command can try again.
pub async fn down(name: &str) -> Result<CustomDown, ClusterError> {
    let path = record_path(name);
    let text = std::fs::read_to_string(&path).map_err(|source| ClusterError::Io {
        what: format!("cannot read {}", path.display()),
        source,
    })?;
    let cfg: CustomCluster = serde_json::from_str(&text).map_err(|e| ClusterError::Io {
        what: format!("cannot read {}", path.display()),
        source: std::io::Error::other(e),
    })?;
    // Forgetting the cluster removes its folder: keep the record until the
    // program has released the hosts.
    let keys = if crate::cluster::load_state(name).is_ok() {
        let kept = std::fs::read(&path).ok();
        let keys = crate::cluster::down_ssh(name, true)
            .await
            .map_err(|e| e.to_string());
        if let Some(kept) = kept {
            let _ = std::fs::create_dir_all(cluster_dir(name));
            let _ = std::fs::write(&path, kept);
        }
        keys
    } else {
        Ok(crate::cluster::Down::default())
    };
    protocol::call(&cfg, Action::Down).await?;
    let _ = std::fs::remove_dir_all(cluster_dir(name));
    Ok(CustomDown {
        keys,
        released_by: protocol::describe(&cfg, Action::Down),
    })
}

/// The program's `status` output, when it has one.
pub async fn status_text(name: &str) -> Option<Result<String, CustomError>> {
    let cfg: CustomCluster =
        serde_json::from_str(&std::fs::read_to_string(record_path(name)).ok()?).ok()?;
    if let flambe_config::HostSource::Commands { status: None, .. } = cfg.source {
        return None;
    }
    Some(protocol::call(&cfg, Action::Status).await.map(|a| a.stdout))
}
