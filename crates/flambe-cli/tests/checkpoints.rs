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
    std::fs::read_to_string(trial_dir(dir).join("metrics.jsonl"))
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
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("flambe"));
    cmd.arg(config).args(["--no-site", "--cpus", "1"]);
    cmd
}

fn run_ok(config: &Path) {
    let out = flambe(config).output().unwrap();
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

/// A toy whose best learning rate falls as it trains: each step shrinks
/// `v` by (1 − lr), and the loss has a floor that grows with lr. Its state
/// (owner, step, v) is its checkpoint; it says on stdout what it restored.
const TOY: &str = r#"import json, os, sys, time
lr = float(sys.argv[1])
me, ck = os.environ["FLAMBE_TRIAL"], os.environ["FLAMBE_CHECKPOINT"]
src = os.environ.get("FLAMBE_RESTORE_FROM", ck)
state = {"owner": me, "step": 0, "v": 1.0}
try:
    with open(os.path.join(src, "state.json")) as f:
        state = json.load(f)
except FileNotFoundError:
    pass
print("restored owner=%s step=%d lr=%s attempt=%s" % (state["owner"], state["step"], lr, os.environ["FLAMBE_ATTEMPT"]), flush=True)
with open(os.environ["FLAMBE_METRICS"], "a") as metrics:
    while state["step"] < 80:
        state["step"] += 1
        state["v"] *= 1 - lr
        state["owner"] = me
        tmp = os.path.join(ck, "state.json.tmp")
        with open(tmp, "w") as f:
            json.dump(state, f)
        os.replace(tmp, os.path.join(ck, "state.json"))
        metrics.write(json.dumps({"step": state["step"], "loss": state["v"] + 0.2 * lr}) + "\n")
        metrics.flush()
        time.sleep(0.015)
"#;

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
    let out = Command::new(assert_cmd::cargo::cargo_bin("flambe"))
        .arg(&config)
        .args(["--no-site", "--cpus", "6"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = std::fs::read(dir.join("runs").join(name).join("results.json")).unwrap();
    serde_json::from_slice(&results).unwrap()
}

fn best_final(rows: &[serde_json::Value]) -> f64 {
    rows.iter()
        .map(|r| r["final_metric"].as_f64().unwrap())
        .fold(f64::INFINITY, f64::min)
}

#[test]
fn pbt_clones_go_on_from_their_donors_checkpoints_and_beat_the_typical_fixed_rate() {
    let tmp = tempfile::tempdir().unwrap();
    let fixed = toy_population(tmp.path(), "fixed", "");
    let pbt = toy_population(
        tmp.path(),
        "pbt",
        "    scheduler: !PBT {perturbation_interval: 2, quantile: 0.25, mutations: [lr]}\n",
    );
    // Fixed rates end at (1 − lr)^80 + 0.2 lr: 0.020 (lr 0.1) at best,
    // 0.06 at the median. PBT's lineages start fast and slow down as v
    // shrinks. How far below the best fixed rate it gets varies with the
    // order the trials report in (scripts/bench-pbt.sh measures it); its
    // best is below the median fixed rate's whatever that order.
    let median = {
        let mut finals: Vec<f64> = fixed
            .iter()
            .map(|r| r["final_metric"].as_f64().unwrap())
            .collect();
        finals.sort_by(f64::total_cmp);
        (finals[2] + finals[3]) / 2.0
    };
    let pbt_best = best_final(&pbt);
    assert!(
        pbt_best < median,
        "PBT's best {pbt_best} is not below the median fixed rate's {median} (best {})",
        best_final(&fixed)
    );
    let mut exploits = 0;
    for row in &pbt {
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
        let own: Vec<i64> = std::fs::read_to_string(trial.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                    .as_i64()
                    .unwrap()
            })
            .collect();
        assert_eq!(own, (last_step + 1..=80).collect::<Vec<_>>(), "{id}");
    }
    assert!(exploits >= 2, "PBT changed {exploits} trials");
}
