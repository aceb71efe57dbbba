//! `flambe cluster status [NAME] [--json]`

use std::process::ExitCode;

pub fn run(name: Option<String>, json: bool) -> anyhow::Result<ExitCode> {
    let names = match name {
        Some(n) => vec![n],
        None => flambe_cluster::known_clusters(),
    };
    if names.is_empty() && !json {
        println!("No clusters yet. Create one with `flambe CLUSTER.yaml`.");
        return Ok(ExitCode::SUCCESS);
    }
    let rt = flambe_ops::runtime()?;
    let mut all = serde_json::Map::new();
    for n in &names {
        let hosts = rt.block_on(flambe_cluster::status(n))?;
        if json {
            all.insert(n.clone(), serde_json::to_value(&hosts)?);
        } else {
            crate::print::cluster::status(n, &hosts);
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    }
    Ok(ExitCode::SUCCESS)
}
