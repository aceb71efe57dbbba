//! `flambe CLUSTER.yaml`: create (or reuse) a cluster.

use crate::progress::RemoteProgress;
use flambe_ops::ClusterConfig;
use std::process::ExitCode;

pub fn run(cfg: ClusterConfig<'_>) -> anyhow::Result<ExitCode> {
    let mut console = RemoteProgress::new();
    let upped = flambe_ops::runtime()?.block_on(flambe_ops::up(cfg, &mut console))?;
    if let flambe_ops::Upped::Custom(custom) = &upped {
        crate::print::cluster::custom_hosts(&custom.hosts);
    }
    crate::print::cluster::up(upped.hosts());
    Ok(ExitCode::SUCCESS)
}
