//! How a run's results are shown: the ranked table of every stage, or how
//! a script ended.

use flambe_experiment::{Report, ResultsDir, Status, render_value};
use std::process::ExitCode;

/// How a script ended, where its output and logs are (under `dir`), and the
/// end of its stderr when it failed. Exit 0 only when it succeeded.
pub fn script_end(report: &Report) -> ExitCode {
    let Some(row) = report.stages.first().and_then(|s| s.rows.first()) else {
        eprintln!("the script did not run; see {}", report.dir.display());
        return ExitCode::FAILURE;
    };
    let trial = ResultsDir::at(&report.dir).trial(&row.id);
    let time = row
        .duration_s
        .map_or(String::new(), |d| format!(" in {d:.1}s"));
    let ok = row.status == Status::Succeeded;
    println!(
        "Script `{}` {}{time}{}",
        row.stage,
        if ok { "succeeded" } else { "failed" },
        row.host
            .as_deref()
            .filter(|h| *h != "local")
            .map_or(String::new(), |h| format!(" on {h}"))
    );
    if !ok {
        if let Some(error) = &row.error {
            println!("  {error}");
        }
        let stderr = std::fs::read_to_string(trial.stderr()).unwrap_or_default();
        let tail: Vec<&str> = stderr.lines().rev().take(10).collect();
        for line in tail.into_iter().rev() {
            println!("  | {line}");
        }
    }
    println!("Output: {}", trial.out().display());
    println!("Logs:   {} and stderr.log", trial.stdout().display());
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Rows shown per stage in the final table.
const TABLE_ROWS: usize = 5;

pub fn ranked_table(report: &Report) {
    for stage in &report.stages {
        let metric = stage.metric.as_deref().unwrap_or("-");
        println!(
            "\nstage {} (ranked by {metric}{})",
            stage.name,
            if stage.metric.is_some() {
                match stage.mode {
                    flambe_config::Mode::Max => ", max",
                    flambe_config::Mode::Min => ", min",
                }
            } else {
                ""
            }
        );
        println!(
            "  {:<4} {:<14} {:<10} {:>10} {:>6} {:>8}  params",
            "rank", "trial", "status", metric, "step", "time"
        );
        for (rank, row) in stage.rows.iter().enumerate().take(TABLE_ROWS) {
            let value = row
                .best_metric
                .map_or("-".to_string(), |v| format!("{v:.4}"));
            let step = row.best_step.map_or("-".to_string(), |s| s.to_string());
            let time = row
                .duration_s
                .map_or("-".to_string(), |d| format!("{d:.1}s"));
            // A PBT trial ended with its latest params; where it began
            // is in results.json.
            let latest = row.schedule.last().map_or(&row.params, |e| &e.params);
            let mut params: Vec<String> = latest
                .iter()
                .map(|(k, v)| format!("{k}={}", render_value(v)))
                .collect();
            if !row.schedule.is_empty() {
                params.push(format!("(PBT: changed {}×)", row.schedule.len()));
            }
            if let Some(parent) = &row.parent {
                params.insert(0, format!("(from {parent})"));
            }
            let keep =
                if stage.survivors.contains(&row.id) && stage.survivors.len() < stage.rows.len() {
                    "*"
                } else {
                    " "
                };
            println!(
                "  {:<4} {:<14} {:<10} {value:>10} {step:>6} {time:>8}  {}",
                format!("{}{keep}", rank + 1),
                row.id,
                row.status.as_str(),
                params.join(" ")
            );
        }
        if stage.rows.len() > TABLE_ROWS {
            println!("  … {} more in results.csv", stage.rows.len() - TABLE_ROWS);
        }
    }
}
