//! `flambe cluster down NAME [--purge]`

use flambe_ops::Downed;
use std::process::ExitCode;

pub fn run(name: &str, purge: bool) -> anyhow::Result<ExitCode> {
    match flambe_ops::runtime()?.block_on(flambe_ops::down(name, purge))? {
        Downed::Aws(down) => println!(
            "Cluster `{name}` is down: terminated {}; deleted {} alarms; local state (cluster key included) removed.",
            if down.terminated.is_empty() {
                "no instance (none was left)".to_string()
            } else {
                down.terminated.join(", ")
            },
            down.alarms.len()
        ),
        Downed::Ssh(down) => crate::print::cluster::down_ssh(name, &down),
        Downed::Custom(down) => {
            if let Err(e) = &down.keys {
                eprintln!("warning: the cluster key could not be taken off every host: {e}");
            }
            println!(
                "Cluster `{name}` is down: {} released its hosts; local state (cluster key included) removed.",
                down.released_by
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
