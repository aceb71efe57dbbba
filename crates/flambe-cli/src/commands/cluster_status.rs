//! `flambe cluster status [NAME] [--json]`

use std::process::ExitCode;

pub fn run(name: Option<String>, json: bool) -> anyhow::Result<ExitCode> {
    let clusters = flambe_ops::runtime()?.block_on(flambe_ops::status(name.as_deref()))?;
    if json {
        let mut all = serde_json::Map::new();
        for (n, hosts) in &clusters {
            all.insert(n.clone(), serde_json::to_value(hosts)?);
        }
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else if clusters.is_empty() {
        println!("No clusters yet. Create one with `flambe CLUSTER.yaml`.");
    } else {
        for (n, hosts) in &clusters {
            crate::print::cluster::status(n, hosts);
            match flambe_ops::runtime()?.block_on(flambe_ops::program_status(n)) {
                Some(Ok(text)) => println!("Its program says:\n{}", text.trim_end()),
                Some(Err(e)) => eprintln!("warning: cluster `{n}`: {e}"),
                None => {}
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
