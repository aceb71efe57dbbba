//! `flambe attach NAME --cluster C`: follow a run started earlier.

use crate::outcome::{followed, interrupted};
use crate::progress::RemoteProgress;
use std::path::Path;
use std::process::ExitCode;

pub fn run(name: &str, cluster_file: &Path) -> anyhow::Result<ExitCode> {
    let cluster = flambe_ops::cluster_of(cluster_file)?;
    let mut progress = RemoteProgress::new();
    let result = flambe_ops::runtime()?.block_on(flambe_ops::attach(
        &cluster,
        name,
        &mut progress,
        interrupted(),
    ));
    progress.finish();
    Ok(followed(result?, name, &cluster_file.display().to_string()))
}
