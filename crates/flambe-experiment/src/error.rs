//! Why a run could not go on.

use crate::results::ResultsError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // each variant's #[error] message is its documentation
pub enum EngineError {
    #[error(
        "experiment `{name}` already has results in {} from a different config (changed: {})",
        dir.display(),
        changes.join(", ")
    )]
    ChangedConfig {
        name: String,
        dir: PathBuf,
        changes: Vec<String>,
    },
    #[error("stage `{stage}` needs {need} per trial, but this machine offers {have}")]
    Resources {
        stage: String,
        need: String,
        have: String,
    },
    #[error("`{name}: !env {var}` needs the environment variable `{var}`, which is not set")]
    UnsetSecret { name: String, var: String },
    #[error(
        "`{name}: !env {var}`: secrets reach Ray trials only through a cluster's secrets file (run with --cluster)"
    )]
    SecretWithoutFile { name: String, var: String },
    #[error("the secrets file {path} cannot be read: {detail}")]
    SecretsFile { path: PathBuf, detail: String },
    #[error("interrupted: {running} running trials were stopped")]
    Interrupted { dir: PathBuf, running: usize },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("experiment state in {}: {source}", path.display())]
    State {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(transparent)]
    Results(#[from] ResultsError),
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
}

impl flambe_config::Hint for EngineError {
    fn hint(&self) -> Option<String> {
        Some(match self {
            EngineError::ChangedConfig { name, .. } => format!(
                "rerun with --force to set the old results aside (kept next to them as `{name}.old-<time>`) and start afresh, or give the experiment another `name`"
            ),
            EngineError::Resources { .. } => "lower the stage's `cpus`/`gpus`, or tell flambe what this machine has with --cpus N / --gpus N (or `devices:` in the experiment)".to_string(),
            EngineError::SecretWithoutFile { .. } => {
                "run it with `--cluster cluster.yaml`, or here without --ray-address".to_string()
            }
            EngineError::UnsetSecret { var, .. } => {
                format!("export {var} in this shell, then run the same command again")
            }
            EngineError::Lock(crate::lock::LockError::Held { dir, .. }) => format!(
                "follow it with `flambe site {}`, or wait for it to end (a second driver on the same results would corrupt them)",
                dir.display()
            ),
            _ => return None,
        })
    }
}

/// Why a trial's `run` command could not be filled in (the trial fails
/// with this as its detail; the config loader refuses most of these first).
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("no param `{0}`")]
    NoParam(String),
    #[error("no resource `{0}`")]
    NoResource(String),
    #[error("no param `{param}` in stage `{stage}`")]
    NoUpstreamParam { stage: String, param: String },
    #[error("unknown placeholder {{{0}}}")]
    Unknown(String),
    #[error("trial {trial} has no ancestor in stage `{stage}`")]
    NoAncestor { trial: String, stage: String },
    #[error("ancestor {0} is not recorded")]
    Unrecorded(String),
    #[error("experiment state: {0}")]
    State(#[from] rusqlite::Error),
}
