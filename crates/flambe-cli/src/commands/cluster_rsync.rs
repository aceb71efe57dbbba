//! `flambe cluster rsync NAME SRC DEST [--host H] [--delete]`

use std::process::ExitCode;

pub fn run(
    name: &str,
    src: &str,
    dest: &str,
    host: Option<&str>,
    delete: bool,
) -> anyhow::Result<ExitCode> {
    let copied =
        flambe_ops::runtime()?.block_on(flambe_ops::rsync(name, src, dest, host, delete))?;
    for line in copied {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
