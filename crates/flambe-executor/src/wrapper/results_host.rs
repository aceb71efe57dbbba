//! What crosses between a trial's node and the results host (the
//! orchestrator): the trial's inputs and checkpoint before it runs, its
//! checkpoint after every metric line, its whole folder when it ends, and
//! its secrets (read over ssh, never written on the node).

use super::ATTEMPT_FILE;
use super::error::WrapperError;
use crate::{JobSpec, SyncHost};
use tokio::sync::mpsc;

/// A shell test that holds where `dir`'s attempt file names `attempt`.
pub(super) fn attempt_guard(dir: &std::path::Path, attempt: &str) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let file = format!("{}/{ATTEMPT_FILE}", dir.display());
    format!(
        "test \"$(cat {} 2>/dev/null)\" = {}",
        quote(&file),
        quote(attempt)
    )
}

/// How a copy treats files the destination has and the source has not.
#[derive(Clone, Copy, PartialEq)]
enum Extra {
    Keep,
    /// A mirror (`--delete`): a checkpoint is what its trial last left.
    Delete,
}

/// rsync over the cluster's own ssh; `remote_guard`, when given, is a shell
/// test run on the other side first: the copy happens only if it holds.
async fn rsync(
    sync: &SyncHost,
    from: &str,
    to: &str,
    remote_guard: Option<&str>,
    extra: Extra,
) -> Result<(), WrapperError> {
    let mut rsync = tokio::process::Command::new("rsync");
    // The paths are the cluster's own (no spaces: its home and name are
    // checked when it is made), so joining them for rsync's -e is safe.
    rsync.args(["-a", "-e", &format!("ssh {}", sync.ssh_args().join(" "))]);
    if extra == Extra::Delete {
        // A checkpoint is rewritten in place, often at the same size and
        // within the same second: rsync's quick check (size and mtime to
        // the second) would keep a stale copy (a PBT clone restored its own
        // state instead of its donor's). Every file is compared by content.
        rsync.args(["--delete", "--ignore-times"]);
    }
    if let Some(guard) = remote_guard {
        rsync.arg(format!("--rsync-path={guard} && rsync"));
    }
    let out = rsync
        .args([from, to])
        .output()
        .await
        .map_err(|source| WrapperError::Spawn {
            program: "rsync",
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(WrapperError::Rsync {
            from: from.to_string(),
            to: to.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

fn dir_arg(p: &std::path::Path) -> String {
    format!("{}/", p.display())
}

/// Fetch the job's inputs from the results host.
pub(super) async fn fetch_inputs(spec: &JobSpec, sync: &SyncHost) -> Result<(), WrapperError> {
    let host = &sync.host;
    for input in &spec.inputs {
        std::fs::create_dir_all(input).map_err(|source| WrapperError::CreateDir {
            path: input.clone(),
            source,
        })?;
        rsync(
            sync,
            &format!("{host}:{}", dir_arg(input)),
            &dir_arg(input),
            None,
            Extra::Keep,
        )
        .await?;
    }
    // The checkpoint as the trial's last attempt left it, wherever that
    // ran; whatever an older attempt left on this node goes.
    if let Some(checkpoint) = &spec.checkpoint {
        std::fs::create_dir_all(checkpoint).map_err(|source| WrapperError::CreateDir {
            path: checkpoint.clone(),
            source,
        })?;
        rsync(
            sync,
            &format!("{host}:{}", dir_arg(checkpoint)),
            &dir_arg(checkpoint),
            None,
            Extra::Delete,
        )
        .await?;
    }
    Ok(())
}

/// The attempt guard of the job's folder on the results host, if the job
/// knows its attempt.
fn folder_guard(spec: &JobSpec) -> Option<String> {
    let dir = spec.metrics.parent()?;
    let attempt = spec
        .env
        .iter()
        .find(|(k, _)| k == "FLAMBE_ATTEMPT")
        .map(|(_, v)| v.clone())?;
    Some(attempt_guard(dir, &attempt))
}

/// Sends the checkpoint folder back to the results host whenever it is
/// poked (after each metric line), one copy at a time: pokes that come
/// while a copy runs make one more copy after it, never a queue of them.
pub(super) struct CheckpointSender {
    poke: mpsc::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl CheckpointSender {
    pub(super) fn start(spec: &JobSpec) -> Option<CheckpointSender> {
        let sync = spec.sync.clone()?;
        let checkpoint = spec.checkpoint.clone()?;
        let guard = folder_guard(spec);
        let (poke, mut poked) = mpsc::channel::<()>(1);
        let task = tokio::spawn(async move {
            while poked.recv().await.is_some() {
                let to = format!("{}:{}", sync.host, dir_arg(&checkpoint));
                // A failed copy is tried again at the next poke; the copy
                // of the whole folder at the end says whether it got back.
                let _ = rsync(
                    &sync,
                    &dir_arg(&checkpoint),
                    &to,
                    guard.as_deref(),
                    Extra::Delete,
                )
                .await;
            }
        });
        Some(CheckpointSender { poke, task })
    }

    pub(super) fn poke(&self) {
        // Full means a copy is already due: this poke is in it.
        let _ = self.poke.try_send(());
    }

    /// Let the copy under way finish (a copy left running could land after
    /// the final one, with older files), then stop.
    pub(super) async fn stop(self) {
        drop(self.poke);
        let _ = self.task.await;
    }
}

/// Send the job's folder back to the results host.
pub(super) async fn push_results(spec: &JobSpec, sync: &SyncHost) -> Result<(), WrapperError> {
    let host = &sync.host;
    let Some(dir) = spec.metrics.parent() else {
        return Ok(());
    };
    // Only into the folder of this very attempt: if the driver has started
    // another since (this node was cut off and came back late), the newer
    // attempt's results stay.
    let guard = folder_guard(spec);
    rsync(
        sync,
        &dir_arg(dir),
        &format!("{host}:{}", dir_arg(dir)),
        guard.as_deref(),
        Extra::Keep,
    )
    .await
    .map_err(|e| WrapperError::PushResults(Box::new(e)))
}

/// The secrets file's JSON map: read over ssh from the results host (never
/// copied to this node's disk), or from this machine when it has no sync host.
async fn read_secrets(
    file: &std::path::Path,
    sync: Option<&SyncHost>,
) -> Result<std::collections::HashMap<String, String>, WrapperError> {
    let text = match sync {
        Some(sync @ SyncHost { host, .. }) => {
            let out = tokio::process::Command::new("ssh")
                .args(sync.ssh_args())
                .arg(host)
                .arg(format!("cat {}", file.display()))
                .stdin(std::process::Stdio::null())
                .output()
                .await
                .map_err(|source| WrapperError::Spawn {
                    program: "ssh",
                    source,
                })?;
            if !out.status.success() {
                return Err(WrapperError::Read {
                    path: file.to_path_buf(),
                    host: Some(host.clone()),
                    detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                });
            }
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
        None => std::fs::read_to_string(file).map_err(|e| WrapperError::Read {
            path: file.to_path_buf(),
            host: None,
            detail: e.to_string(),
        })?,
    };
    serde_json::from_str(&text).map_err(|_| WrapperError::NotAMap {
        path: file.to_path_buf(),
    })
}

/// Put the values of the spec's secret variables into its environment.
pub(super) async fn resolve_secrets(spec: &mut JobSpec) -> Result<(), WrapperError> {
    if spec.secret_env.is_empty() {
        return Ok(());
    }
    let file = spec
        .secrets_file
        .clone()
        .ok_or(WrapperError::NoSecretsFile)?;
    let values = read_secrets(&file, spec.sync.as_ref()).await?;
    for (var, key) in std::mem::take(&mut spec.secret_env) {
        let value = values
            .get(&key)
            .ok_or_else(|| WrapperError::MissingSecret(key.clone()))?;
        spec.env.push((var, value.clone()));
    }
    Ok(())
}
