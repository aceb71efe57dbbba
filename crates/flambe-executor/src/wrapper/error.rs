//! Why the wrapper could not run a trial, or could not send it back: each
//! names the file, host or command, and ends up in the trial's outcome line.

use std::path::PathBuf;

/// Why the wrapper failed.
#[allow(missing_docs)] // each variant's #[error] message is its documentation
#[derive(Debug, thiserror::Error)]
pub enum WrapperError {
    #[error("the spec (a trial's or a slot worker's) is not hex-encoded JSON: {0}")]
    Spec(String),
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: &'static str,
        source: std::io::Error,
    },
    #[error("rsync {from} {to}: {stderr}")]
    Rsync {
        from: String,
        to: String,
        stderr: String,
    },
    #[error("cannot create {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {}{}: {detail}", path.display(), host.as_ref().map(|h| format!(" on {h}")).unwrap_or_default())]
    Read {
        path: PathBuf,
        host: Option<String>,
        detail: String,
    },
    #[error("{} is not a JSON map", path.display())]
    NotAMap { path: PathBuf },
    #[error("the trial has secrets but no secrets file")]
    NoSecretsFile,
    #[error("the secrets file has no `{0}`")]
    MissingSecret(String),
    #[error(
        "{0}; the results host cannot be reached, or the driver has started a newer attempt of this trial since (whose results stay)"
    )]
    PushResults(Box<WrapperError>),
}
