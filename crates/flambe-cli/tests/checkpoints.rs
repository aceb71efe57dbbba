//! Trial checkpoints here: `$FLAMBE_CHECKPOINT` outlives an attempt, so a
//! trial that died at step 50 of 100 (its command failing, or its driver
//! SIGKILLed) goes on from step 51 at its next attempt, not from step 1.
//! (On a cluster, the same after a factory is cut off: `cluster_faults`.)

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One trial counting to 100, saving its step after each (write, then
/// rename: a checkpoint is whole or absent), reporting `loss = 100 - step`.
/// At step 50 of its first attempt it does `at_50`.
fn experiment(dir: &Path, at_50: &str) -> PathBuf {
    let config = dir.join("exp.yaml");
    std::fs::write(
        &config,
        format!(
            r#"!Experiment
name: ckpt
save_path: ./runs
max_failures: 1
pipeline:
  train: !Stage
    run: |-
      s=$(cat "$FLAMBE_CHECKPOINT/step" 2>/dev/null || echo 0)
      echo $s > "$FLAMBE_OUT/resumed-from"
      while [ $s -lt 100 ]; do
        s=$((s + 1))
        echo $s > "$FLAMBE_CHECKPOINT/step.tmp" && mv "$FLAMBE_CHECKPOINT/step.tmp" "$FLAMBE_CHECKPOINT/step"
        echo "{{\"step\": $s, \"loss\": $((100 - s))}}" >> "$FLAMBE_METRICS"
        if [ $s -eq 50 ] && [ "$FLAMBE_ATTEMPT" = 1 ]; then {at_50}; fi
      done
    metric: loss
    mode: min
"#
        ),
    )
    .unwrap();
    config
}

fn trial_dir(dir: &Path) -> PathBuf {
    dir.join("runs/ckpt/trials/train-000")
}

/// The steps the trial's latest attempt reported, in order.
fn steps(dir: &Path) -> Vec<i64> {
    steps_in(&trial_dir(dir))
}

fn steps_in(trial: &Path) -> Vec<i64> {
    std::fs::read_to_string(trial.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_i64()
                .unwrap()
        })
        .collect()
}

fn flambe(config: &Path) -> Command {
    flambe_on(config, 1)
}

fn flambe_on(config: &Path, cpus: u32) -> Command {
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("flambe"));
    cmd.arg(config)
        .args(["--no-site", "--cpus", &cpus.to_string()]);
    cmd
}

fn run_ok(config: &Path) {
    run_ok_on(config, 1);
}

fn run_ok_on(config: &Path, cpus: u32) {
    let out = flambe_on(config, cpus).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn assert_resumed_at_51(dir: &Path) {
    let resumed = std::fs::read_to_string(trial_dir(dir).join("out/resumed-from")).unwrap();
    assert_eq!(resumed.trim(), "50");
    assert_eq!(steps(dir), (51..=100).collect::<Vec<_>>());
    let results = std::fs::read_to_string(dir.join("runs/ckpt/results.csv")).unwrap();
    let row = results.lines().nth(1).unwrap();
    assert!(row.contains(",succeeded,"), "{results}");
    assert!(row.contains(",loss,0,0,100,2,"), "{results}");
}

#[test]
fn a_trial_failing_at_step_50_retries_from_its_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let config = experiment(tmp.path(), "exit 1");
    run_ok(&config);
    assert_resumed_at_51(tmp.path());
}

#[test]
fn a_trial_of_a_killed_driver_resumes_from_its_checkpoint_on_the_rerun() {
    let tmp = tempfile::tempdir().unwrap();
    let config = experiment(tmp.path(), "sleep 1000");
    let mut driver = flambe(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let step = trial_dir(tmp.path()).join("checkpoint/step");
    let start = Instant::now();
    while std::fs::read_to_string(&step).unwrap_or_default().trim() != "50" {
        assert!(start.elapsed() < Duration::from_secs(60), "no step 50");
        std::thread::sleep(Duration::from_millis(20));
    }
    driver.kill().unwrap();
    driver.wait().unwrap();
    run_ok(&config);
    assert_resumed_at_51(tmp.path());
}

/// A toy whose best learning rate falls as it trains (its comment says
/// how); it prints what it restored from.
const TOY: &str = include_str!("../../../scripts/bench/pbt_toy.py");

/// Six learning rates, trained with `scheduler` (or without one); the rows
/// of `results.json`.
fn toy_population(dir: &Path, name: &str, scheduler: &str) -> Vec<serde_json::Value> {
    let script = dir.join("toy.py");
    std::fs::write(&script, TOY).unwrap();
    let config = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &config,
        format!(
            "!Experiment\nname: {name}\nsave_path: ./runs\npipeline:\n  train: !Stage\n    run: python3 {} {{lr}}\n    params:\n      lr: !g [0.025, 0.05, 0.1, 0.2, 0.4, 0.8]\n    metric: loss\n    mode: min\n{scheduler}",
            script.display()
        ),
    )
    .unwrap();
    run_ok_on(&config, 6);
    let results = std::fs::read(dir.join("runs").join(name).join("results.json")).unwrap();
    serde_json::from_slice(&results).unwrap()
}

fn stage_rows<'a>(rows: &'a [serde_json::Value], stage: &str) -> Vec<&'a serde_json::Value> {
    rows.iter().filter(|r| r["stage"] == stage).collect()
}

fn best_final(rows: &[serde_json::Value]) -> f64 {
    stage_rows(rows, "train")
        .into_iter()
        .map(|r| r["final_metric"].as_f64().unwrap())
        .fold(f64::INFINITY, f64::min)
}

#[test]
fn pbt_beats_the_best_fixed_rate_and_its_clones_go_on_from_their_donors_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let fixed = toy_population(tmp.path(), "fixed", "");
    let pbt = toy_population(
        tmp.path(),
        "pbt",
        "    scheduler: !PBT {perturbation_interval: 2, quantile: 0.25, mutations: [lr]}\n  eval: !Stage\n    run: echo {train.params.lr} > {out}/lr\n",
    );
    // Fixed rates end at (1 − lr)^30 + 0.2 lr: 0.041 (lr 0.2) at best.
    // PBT's lineages start fast and slow down as v shrinks: 0.005–0.014
    // over 20 runs here (scripts/bench-pbt.sh).
    let (fixed_best, pbt_best) = (best_final(&fixed), best_final(&pbt));
    assert!(
        pbt_best < fixed_best * 0.75,
        "PBT's best {pbt_best} is not clearly below the best fixed rate's {fixed_best}"
    );
    let mut exploits = 0;
    for row in stage_rows(&pbt, "train") {
        let id = row["id"].as_str().unwrap();
        assert_eq!(row["status"], "succeeded", "{row}");
        let trial = tmp.path().join("runs/pbt/trials").join(id);
        let stdout = std::fs::read_to_string(trial.join("stdout.log")).unwrap();
        let restored: Vec<&str> = stdout
            .lines()
            .filter(|l| l.starts_with("restored "))
            .collect();
        let schedule = row["schedule"].as_array().cloned().unwrap_or_default();
        assert_eq!(
            restored.len(),
            1 + schedule.len(),
            "one attempt per change: {stdout}"
        );
        assert!(restored[0].starts_with(&format!("restored owner={id} step=0 ")));
        let mut last_step = 0;
        for (e, line) in schedule.iter().zip(&restored[1..]) {
            exploits += 1;
            let donor = e["donor"].as_str().unwrap();
            let lr = e["params"]["lr"].as_f64().unwrap();
            let attempt = e["attempt"].as_i64().unwrap();
            assert_ne!(donor, id);
            // The checkpoint it found is its donor's, made at or after the
            // step it was judged at.
            let head = format!("restored owner={donor} step=");
            assert!(line.starts_with(&head), "{id}: {line} for {e}");
            let step: i64 = line[head.len()..]
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert!(step >= 1, "{line}");
            assert!(
                line.ends_with(&format!(" lr={lr} attempt={attempt}")),
                "{line} for {e}"
            );
            last_step = step;
        }
        // The latest attempt's own lines go on from the step it restored.
        let own = steps_in(&trial);
        assert_eq!(own, (last_step + 1..=30).collect::<Vec<_>>(), "{id}");
    }
    assert!(exploits >= 2, "PBT changed {exploits} trials");
    // A later stage sees the params each trial ended with.
    for eval in stage_rows(&pbt, "eval") {
        let parent = pbt.iter().find(|r| r["id"] == eval["parent"]).unwrap();
        let ended = match parent["schedule"].as_array() {
            Some(s) => &s.last().unwrap()["params"]["lr"],
            None => &parent["params"]["lr"],
        };
        let out = tmp
            .path()
            .join("runs/pbt/trials")
            .join(eval["id"].as_str().unwrap());
        let seen = std::fs::read_to_string(out.join("out/lr")).unwrap();
        assert_eq!(seen.trim(), ended.to_string(), "{eval}");
    }
    assert_eq!(stage_rows(&pbt, "eval").len(), 6);
}
