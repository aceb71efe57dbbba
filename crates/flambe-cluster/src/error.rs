//! Why a cluster operation failed: which hosts, and what happened on each.
//! What to do about it is the error's [`Hint`](flambe_config::Hint),
//! printed once by the CLI's renderer.

use crate::host::HostError;
use flambe_config::Hint;

/// Why a cluster operation failed.
#[allow(missing_docs)] // each variant's #[error] message is its documentation
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("no cluster named `{0}` is known here")]
    NotFound(String),
    #[error("cannot reach {} of {total} hosts; nothing was changed:\n{}", .errors.len(), list(.errors))]
    Unreachable {
        total: usize,
        errors: Vec<HostError>,
    },
    #[error("setup failed on {} of {total} hosts:\n{}", .errors.len(), list(.errors))]
    Setup {
        total: usize,
        errors: Vec<HostError>,
    },
    #[error("cannot prepare {} of {total} hosts for Ray; nothing was installed anywhere:\n{}", .errors.len(), list(.errors))]
    Provision {
        total: usize,
        errors: Vec<HostError>,
    },
    #[error("installing what Ray needs failed on {} of {total} hosts:\n{}", .errors.len(), list(.errors))]
    Install {
        total: usize,
        errors: Vec<HostError>,
    },
    #[error("Ray failed on {} of {total} hosts:\n{}", .errors.len(), list(.errors))]
    Ray {
        total: usize,
        errors: Vec<HostError>,
    },
    #[error("cannot reach {} of the {total} hosts that have the cluster key; nothing was changed (the key is still on every host, and `{name}` is still known here):\n{}", .errors.len(), list(.errors))]
    DownUnreachable {
        name: String,
        total: usize,
        errors: Vec<HostError>,
    },
    #[error("the cluster key was removed from {}, but not from:\n{}\n`{name}` is still known here", if .cleaned.is_empty() { "no host".to_string() } else { .cleaned.join(", ") }, list(.errors))]
    DownPartly {
        name: String,
        cleaned: Vec<String>,
        errors: Vec<HostError>,
    },
    #[error("{0}")]
    Host(#[from] HostError),
    #[error("the cluster is busy: experiment `{running}` has run there since {} (unix time {since:.0})", since_text(*.since))]
    Busy { running: String, since: f64 },
    #[error("no host named `{host}` in cluster `{cluster}` (hosts: {known})")]
    UnknownHost {
        cluster: String,
        host: String,
        known: String,
    },
    #[error(
        "`!env {0}` reads the environment variable `{0}`, which is not set in this shell; nothing was sent to the cluster"
    )]
    UnsetSecret(String),
    #[error("extensions failed to install on {} host(s); no trial was started:\n{}", .failures.len(), .failures.iter().map(|f| f.to_string()).collect::<Vec<_>>().join("\n"))]
    Extensions { failures: Vec<InstallFailure> },
    #[error(transparent)]
    Custom(#[from] crate::custom::CustomError),
    #[error("{cause}\nRolled back: {down} ran to release the hosts{}", match .outcome { Ok(()) => ", and they were released".to_string(), Err(e) => format!(", and failed: {e}") })]
    RolledBack {
        cause: Box<ClusterError>,
        down: String,
        outcome: Result<(), String>,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

fn since_text(since: f64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let minutes = ((now - since) / 60.0).max(0.0);
    format!("{minutes:.0} minutes ago")
}

/// The hints that fit what went wrong: a failed command resumes where it
/// failed; a refused login or a changed host key is not a setup problem.
fn setup_hints(errors: &[HostError]) -> Vec<&'static str> {
    let commands = errors
        .iter()
        .any(|e| matches!(e, HostError::Command { .. } | HostError::Timeout { .. }));
    let logins = errors.iter().any(|e| matches!(e, HostError::Login { .. }));
    let mut hints = Vec::new();
    if logins {
        hints.push(
            "check `username` and `key` in the cluster file: the key must let you in by hand (`ssh -i KEY USER@HOST`); nothing was set up on a host that refused the login",
        );
    }
    if commands {
        hints.push(
            "fix the command and run the same command again: setup resumes at the command that failed",
        );
    }
    hints
}

fn list(errors: &[HostError]) -> String {
    errors
        .iter()
        .map(|e| format!("  - {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Hint for ClusterError {
    fn hint(&self) -> Option<String> {
        // What each host needs, then what the whole operation does.
        let mut hints: Vec<String> = self.host_errors().iter().filter_map(|e| e.hint()).collect();
        hints.dedup();
        hints.extend(self.own_hint());
        (!hints.is_empty()).then(|| hints.join("\nhint: "))
    }
}

impl ClusterError {
    /// The hosts' errors this error lists.
    fn host_errors(&self) -> &[HostError] {
        match self {
            ClusterError::Unreachable { errors, .. }
            | ClusterError::Setup { errors, .. }
            | ClusterError::Provision { errors, .. }
            | ClusterError::Install { errors, .. }
            | ClusterError::Ray { errors, .. }
            | ClusterError::DownUnreachable { errors, .. }
            | ClusterError::DownPartly { errors, .. } => errors,
            ClusterError::Host(e) => std::slice::from_ref(e),
            ClusterError::RolledBack { cause, .. } => cause.host_errors(),
            _ => &[],
        }
    }

    fn own_hint(&self) -> Option<String> {
        Some(match self {
            ClusterError::NotFound(_) => "create it with `flambe CLUSTER.yaml`; `flambe cluster status` lists known clusters".into(),
            ClusterError::Setup { errors, .. } => {
                let hints = setup_hints(errors);
                if hints.is_empty() {
                    return None;
                }
                hints.join("\nhint: ")
            }
            ClusterError::Install { .. } => "what did install stays (and is recorded); run the same command again to resume".into(),
            ClusterError::DownUnreachable { name, .. } => format!("run it again once they answer, or `flambe cluster down {name} --purge` to clean the hosts that answer and forget the cluster anyway"),
            ClusterError::DownPartly { .. } => "run it again to finish (the hosts already cleaned are skipped), or add --purge to forget it anyway".into(),
            ClusterError::Busy { .. } => "wait for it, or pass --force to stop it and start this one".into(),
            ClusterError::UnsetSecret(var) => format!("export {var}=… (its value goes only to a 0600 file on the orchestrator), then run the same command again"),
            ClusterError::Extensions { .. } => "fix the extension (try `pip install` of it on that host), then run the same command again".into(),
            ClusterError::Custom(crate::custom::CustomError::Failed { .. } | crate::custom::CustomError::Spawn { .. }) => "run the command by hand in the config file's folder to see why; flambe gives it the cluster's fields on stdin (JSON) and as FLAMBE_FIELD_* variables".into(),
            ClusterError::Custom(crate::custom::CustomError::NotJson { .. } | crate::custom::CustomError::Shape { .. }) => "`up` must print only the hosts as JSON on stdout: {\"orchestrator\": {\"public\": ADDR, \"private\": ADDR}, \"factories\": [...]} (anything for people goes to stderr)".into(),
            ClusterError::Custom(crate::custom::CustomError::Protocol { .. }) => "update flambe, or use a version of the plugin that speaks this flambe's protocol".into(),
            ClusterError::RolledBack { outcome: Ok(()), .. } => "check that the hosts `up` reports run sshd on `port` and are reachable from here (the addresses, `use_public`); then run the same command again".into(),
            ClusterError::RolledBack { outcome: Err(_), .. } => "release the hosts by hand (or fix `down` and run `flambe cluster down NAME`), then run the same command again".into(),
            _ => return None,
        })
    }
}

/// An extension that did not install on a host.
#[derive(Debug, Clone)]
pub struct InstallFailure {
    pub host: String,
    pub extension: String,
    pub error: String,
}

impl std::fmt::Display for InstallFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "  - on {}, extension `{}`:", self.host, self.extension)?;
        for line in self.error.lines() {
            write!(f, "\n      {line}")?;
        }
        Ok(())
    }
}

/// Why a driver spec could not be read.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // each variant's #[error] message is its documentation
pub enum DriverSpecError {
    /// The file is not there, or not readable.
    #[error("cannot read the driver spec {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The file is not a spec this flambe writes.
    #[error("the driver spec {} is not valid: {source}", path.display())]
    Invalid {
        path: std::path::PathBuf,
        source: serde_json::Error,
    },
}
