//! `flambe cluster exec NAME [--host H] -- COMMAND…`

use std::process::ExitCode;

pub fn run(name: &str, host: Option<&str>, command: &[String]) -> anyhow::Result<ExitCode> {
    let results =
        flambe_ops::runtime()?.block_on(flambe_ops::exec(name, &command.join(" "), host))?;
    let mut failed = 0;
    for (host, result) in results {
        match result {
            Ok(out) => {
                let code = out.code.unwrap_or(-1);
                println!("── {host} (exit {code})");
                print!("{}", out.stdout);
                eprint!("{}", out.stderr);
                if code != 0 {
                    failed += 1;
                }
            }
            Err(e) => {
                println!("── {host}: {e}");
                failed += 1;
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
