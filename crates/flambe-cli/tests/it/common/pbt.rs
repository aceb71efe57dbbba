//! The PBT toy of `scripts/bench/pbt_toy.py` as an experiment, and what
//! its results must show wherever it ran (checkpoints, remote_run).

use serde_json::Value;
use std::path::{Path, PathBuf};

const TOY: &str = include_str!("../../../../../scripts/bench/pbt_toy.py");

/// `NAME.yaml` in `dir`: six learning rates of the toy (sent as the
/// resource `toy`), then `rest` (a scheduler line, more stages), results
/// in `./runs`.
pub fn toy_config(dir: &Path, name: &str, rest: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("toy")).unwrap();
    std::fs::write(dir.join("toy/pbt_toy.py"), TOY).unwrap();
    let config = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &config,
        format!(
            "!Experiment\nname: {name}\nsave_path: ./runs\nresources:\n  toy: ./toy\npipeline:\n  train: !Stage\n    run: python3 {{resources.toy}}/pbt_toy.py {{lr}}\n    params:\n      lr: !g [0.025, 0.05, 0.1, 0.2, 0.4, 0.8]\n    metric: loss\n    mode: min\n{rest}"
        ),
    )
    .unwrap();
    config
}

/// PBT every 2 steps, the bottom quarter from the top quarter, and a stage
/// after it that writes the `lr` its parent ended with.
pub const PBT_AND_EVAL: &str = "    scheduler: !PBT {perturbation_interval: 2, quantile: 0.25, mutations: [lr]}\n  eval: !Stage\n    run: echo {train.params.lr} > {out}/lr\n";

pub fn stage_rows<'a>(rows: &'a [Value], stage: &str) -> Vec<&'a Value> {
    rows.iter().filter(|r| r["stage"] == stage).collect()
}

pub fn best_final(rows: &[Value]) -> f64 {
    stage_rows(rows, "train")
        .into_iter()
        .map(|r| r["final_metric"].as_f64().unwrap())
        .fold(f64::INFINITY, f64::min)
}

/// The steps a trial's latest attempt reported, in order.
pub fn steps_in(trial: &Path) -> Vec<i64> {
    std::fs::read_to_string(trial.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["step"]
                .as_i64()
                .unwrap()
        })
        .collect()
}

/// Every trial succeeded with one attempt per PBT change, each clone found
/// its donor's checkpoint and ran with the new params, its latest attempt
/// went on from the step it restored to the end, and the eval stage saw
/// the rate each trial ended with. Returns how many changes there were.
///
/// `every_attempt_logged`: a trial's `stdout.log` holds all its attempts
/// (here); on a cluster it holds the latest attempt's only (the factory's
/// copy of the folder comes back whole), so only the latest change is
/// checked against it.
pub fn assert_clones_went_on_from_their_donors(
    rows: &[Value],
    trials: &Path,
    every_attempt_logged: bool,
) -> usize {
    let schedule = |row: &Value| row["schedule"].as_array().cloned().unwrap_or_default();
    let row_of = |id: &str| rows.iter().find(|r| r["id"] == id).unwrap();
    let mut exploits = 0;
    for row in stage_rows(rows, "train") {
        let id = row["id"].as_str().unwrap();
        assert_eq!(row["status"], "succeeded", "{row}");
        let stdout = std::fs::read_to_string(trials.join(id).join("stdout.log")).unwrap();
        let restored: Vec<&str> = stdout
            .lines()
            .filter(|l| l.starts_with("restored "))
            .collect();
        let changes = schedule(row);
        exploits += changes.len();
        assert_eq!(
            row["attempts"].as_u64(),
            Some(1 + changes.len() as u64),
            "{row}"
        );
        let checked: Vec<(&Value, &str)> = if every_attempt_logged {
            assert_eq!(
                restored.len(),
                1 + changes.len(),
                "one attempt per change: {stdout}"
            );
            assert!(restored[0].starts_with(&format!("restored owner={id} step=0 ")));
            changes.iter().zip(restored[1..].iter().copied()).collect()
        } else {
            let latest = *restored.last().unwrap_or_else(|| panic!("{id}: {stdout}"));
            match changes.last() {
                Some(e) => vec![(e, latest)],
                None => {
                    assert!(latest.starts_with(&format!("restored owner={id} step=0 ")));
                    vec![]
                }
            }
        };
        let mut last_step = 0;
        for (e, line) in checked {
            let donor = e["donor"].as_str().unwrap();
            assert_ne!(donor, id);
            // The state it found was made by its donor, or (where the donor
            // had itself just gone on from another and not yet saved) by
            // one the donor went on from.
            let mut makers = vec![donor.to_string()];
            let mut i = 0;
            while i < makers.len() {
                for earlier in schedule(row_of(&makers[i])) {
                    let d = earlier["donor"].as_str().unwrap().to_string();
                    if !makers.contains(&d) {
                        makers.push(d);
                    }
                }
                i += 1;
            }
            let rest = line.strip_prefix("restored owner=").unwrap();
            let (owner, rest) = rest.split_once(" step=").unwrap();
            assert!(makers.iter().any(|m| m == owner), "{id}: {line} for {e}");
            let step: i64 = rest.split(' ').next().unwrap().parse().unwrap();
            assert!(step >= 1, "{line}");
            let (lr, attempt) = (&e["params"]["lr"], &e["attempt"]);
            assert!(
                line.ends_with(&format!(" lr={lr} attempt={attempt}")),
                "{line} for {e}"
            );
            last_step = step;
        }
        let own = steps_in(&trials.join(id));
        assert_eq!(own, (last_step + 1..=30).collect::<Vec<_>>(), "{id}");
    }
    // A later stage sees the params each trial ended with.
    let evals = stage_rows(rows, "eval");
    assert_eq!(evals.len(), 6);
    for eval in evals {
        let parent = row_of(eval["parent"].as_str().unwrap());
        let ended = match schedule(parent).last() {
            Some(e) => e["params"]["lr"].clone(),
            None => parent["params"]["lr"].clone(),
        };
        let out = trials.join(eval["id"].as_str().unwrap()).join("out/lr");
        let seen = std::fs::read_to_string(out).unwrap();
        assert_eq!(seen.trim(), ended.to_string(), "{eval}");
    }
    exploits
}
