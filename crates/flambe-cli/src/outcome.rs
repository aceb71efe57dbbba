//! How a run's end is shown and which exit code it gives: 0 done, 1 not
//! done, 3 finished with a stage where no trial succeeded, 130 interrupted
//! here. The same for a run here and one followed on a cluster.

use crate::progress::Console;
use flambe_config::{ConfigFile, Experiment};
use flambe_experiment::EngineError;
use flambe_ops::{ClusterOutcome, Ended, Followed, HereOptions};
use std::process::ExitCode;

/// Ctrl-C or SIGTERM.
pub async fn interrupted() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        Some(()) = async {
            match term.as_mut() {
                Some(t) => t.recv().await,
                None => std::future::pending().await,
            }
        } => {}
    }
}

/// Run here, then print the table (or the script's end) and give its exit code.
pub fn run_here_and_report(
    exp: &Experiment,
    config: &ConfigFile,
    opts: HereOptions,
    script: bool,
    rerun: &str,
) -> anyhow::Result<ExitCode> {
    let mut console = Console::new();
    let outcome = flambe_ops::runtime()?.block_on(flambe_ops::run_here(
        exp,
        config,
        opts,
        &mut console,
        Box::pin(interrupted()),
    ))?;
    match outcome.result {
        Ok(report) if script => {
            let code = crate::print::results::script_end(&report);
            if outcome.ran_before {
                println!(
                    "(an earlier run's result: `{rerun} --force` runs the script again, keeping this one next to it)"
                );
            }
            Ok(code)
        }
        Ok(report) => {
            crate::print::results::ranked_table(&report);
            println!("\nResults: {}", report.csv_path().display());
            println!("TensorBoard: tensorboard --logdir {}", report.dir.display());
            let empty = report.stages_without_success();
            if empty.is_empty() {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "error: no trial succeeded in stage {}: see the table above and the trials' logs",
                    empty.join(", ")
                );
                Ok(ExitCode::from(3))
            }
        }
        Err(EngineError::Interrupted { dir, running }) => {
            eprintln!(
                "\nInterrupted: stopped {running} running trials; finished trials are kept in {}.\nRun the same command to resume: {rerun}",
                dir.display()
            );
            Ok(ExitCode::from(130))
        }
        Err(err) => Err(err.into()),
    }
}

/// What a run on a cluster (or `attach`) prints as it ends, and its code.
pub fn cluster_outcome(
    outcome: ClusterOutcome,
    name: &str,
    cluster_file: &str,
) -> anyhow::Result<ExitCode> {
    match outcome {
        ClusterOutcome::Detached => Ok(detached(name, cluster_file)),
        ClusterOutcome::ScriptHome(report) => Ok(crate::print::results::script_end(&report)),
        ClusterOutcome::Ended(end) => Ok(ended(&end, cluster_file)),
    }
}

pub fn followed(followed: Followed, name: &str, cluster_file: &str) -> ExitCode {
    match followed {
        Followed::Detached => detached(name, cluster_file),
        Followed::Ended(end) => ended(&end, cluster_file),
    }
}

fn detached(name: &str, cluster_file: &str) -> ExitCode {
    eprintln!(
        "\nDetached: `{name}` goes on running on the cluster.\n  follow it again: flambe attach {name} --cluster {cluster_file}\n  copy its results here: flambe pull {name} --cluster {cluster_file}"
    );
    ExitCode::SUCCESS
}

/// Say how the run ended and where its results are.
fn ended(end: &Ended, cluster_file: &str) -> ExitCode {
    let name = &end.name;
    println!(
        "Experiment `{name}` {}. Copy its results here with: flambe pull {name} --cluster {cluster_file}",
        end.status.map_or("running", |s| s.as_str())
    );
    if let Some(gone) = end.driver_gone() {
        crate::render::error(&anyhow::Error::new(gone));
    }
    let code = end.exit_code();
    if code == 3 {
        eprintln!(
            "error: no trial succeeded in stage {}: see the results table (flambe pull {name} --cluster {cluster_file}) and the trials' logs",
            end.stages_without_success.join(", ")
        );
    }
    ExitCode::from(code)
}
