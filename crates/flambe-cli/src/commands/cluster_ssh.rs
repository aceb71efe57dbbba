//! `flambe cluster ssh NAME [HOST]`: a shell on a host (the orchestrator by
//! default), through the cluster's own ssh_config.

use anyhow::Context;
use flambe_cluster::ClusterError;
use std::process::ExitCode;

pub fn run(name: &str, host: Option<&str>) -> anyhow::Result<ExitCode> {
    use std::os::unix::process::CommandExt;
    let (files, state) = flambe_cluster::cluster::load_state(name)?;
    let target = match host {
        Some(h) => {
            state
                .host(h)
                .map(|h| h.name.clone())
                .ok_or_else(|| ClusterError::UnknownHost {
                    cluster: name.to_string(),
                    host: h.to_string(),
                    known: state
                        .hosts
                        .iter()
                        .map(|h| h.name.clone())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?
        }
        None => state
            .orchestrator()
            .map(|h| h.name.clone())
            .context("the cluster has no orchestrator")?,
    };
    let err = std::process::Command::new("ssh")
        .arg("-F")
        .arg(files.ssh_config())
        .arg("-o")
        .arg("BatchMode=no")
        .arg(&target)
        .exec();
    Err(err).context("cannot run ssh")
}
