//! `flambe cluster ssh NAME [HOST]`: a shell on a host (the orchestrator by
//! default), through the cluster's own ssh_config.

use anyhow::Context;
use std::process::ExitCode;

pub fn run(name: &str, host: Option<&str>) -> anyhow::Result<ExitCode> {
    use std::os::unix::process::CommandExt;
    let (ssh_config, target) = flambe_ops::ssh_target(name, host)?;
    let err = std::process::Command::new("ssh")
        .arg("-F")
        .arg(ssh_config)
        .arg("-o")
        .arg("BatchMode=no")
        .arg(&target)
        .exec();
    Err(err).context("cannot run ssh")
}
