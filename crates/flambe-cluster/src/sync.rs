//! Files to and from hosts with the real rsync, over the cluster's own ssh
//! (its ssh_config, key and pinned host keys), riding on the host's
//! multiplexed connection.

use crate::host::{Host, HostError, shell_quote};
use crate::state::ClusterFiles;
use std::path::Path;
use tokio::process::Command;

/// rsync's `-e`: rsync splits it into words itself, honouring quotes, so
/// the paths are quoted (a home folder may hold spaces).
fn ssh_command(files: &ClusterFiles, host: &Host) -> String {
    format!(
        "ssh -F {} -o ControlPath={}",
        shell_quote(&files.ssh_config().display().to_string()),
        shell_quote(&host.control_socket().display().to_string())
    )
}

async fn rsync(files: &ClusterFiles, host: &Host, args: &[String]) -> Result<(), HostError> {
    tracing::info!(host = %host.name(), args = %args.join(" "), "rsync");
    let out = Command::new("rsync")
        .arg("-a")
        .arg("--partial")
        .arg("-e")
        .arg(ssh_command(files, host))
        .args(args)
        .output()
        .await
        .map_err(|e| HostError::Other {
            host: host.name().to_string(),
            detail: format!("cannot run rsync (install it here and on the hosts): {e}"),
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(HostError::Command {
        host: host.name().to_string(),
        command: format!("rsync {}", args.join(" ")),
        status: out
            .status
            .code()
            .map_or("killed".into(), |c| format!("exit code {c}")),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Copy a local file or folder to `remote` on the host. A folder's
/// contents land in `remote` (trailing-slash semantics); `delete` removes
/// remote files that are gone locally.
pub async fn rsync_up(
    files: &ClusterFiles,
    host: &Host,
    local: &Path,
    remote: &str,
    delete: bool,
) -> Result<(), HostError> {
    let mut src = local.display().to_string();
    if local.is_dir() && !src.ends_with('/') {
        src.push('/');
    }
    let mut args = Vec::new();
    if delete {
        args.push("--delete".to_string());
    }
    args.push(src);
    args.push(format!("{}:{remote}", host.name()));
    rsync(files, host, &args).await
}

/// Copy `remote` (file or folder) from the host to `local`.
pub async fn rsync_down(
    files: &ClusterFiles,
    host: &Host,
    remote: &str,
    local: &Path,
    delete: bool,
) -> Result<(), HostError> {
    if let Some(parent) = local.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let mut args = Vec::new();
    if delete {
        args.push("--delete".to_string());
    }
    args.push(format!("{}:{remote}", host.name()));
    args.push(local.display().to_string());
    rsync(files, host, &args).await
}
