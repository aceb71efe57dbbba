//! `flambe pull NAME --cluster C [--to DIR]`

use std::path::Path;
use std::process::ExitCode;

pub fn run(name: &str, cluster_file: &Path, to: Option<&Path>) -> anyhow::Result<ExitCode> {
    let cluster = flambe_ops::cluster_of(cluster_file)?;
    let dest = to.map_or_else(|| Path::new(name).to_path_buf(), Path::to_path_buf);
    flambe_ops::runtime()?.block_on(flambe_ops::pull(&cluster, name, &dest))?;
    println!("Results of `{name}` are in {}", dest.display());
    Ok(ExitCode::SUCCESS)
}
