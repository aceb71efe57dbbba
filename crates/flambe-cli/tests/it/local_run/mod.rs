//! Experiments run here, end to end through the `flambe` binary: what a user
//! checks is what these tests check (results rows, winners, files, logs).

use crate::common;

use assert_cmd::Command;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

mod environment;
mod interrupts;

fn flambe() -> Command {
    Command::cargo_bin("flambe").expect("the flambe binary is built")
}

struct Exp {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Exp {
    /// An experiment file in a fresh folder; `save_path: ./runs`, and `$T`
    /// in trials is that folder.
    fn new(name: &str, body: &str) -> Exp {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("exp.yaml");
        let scratch = dir.path().display();
        std::fs::write(
            &config,
            format!("!Experiment\nname: {name}\nsave_path: ./runs\nenv:\n  T: {scratch}\n{body}"),
        )
        .unwrap();
        Exp { dir, config }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn run(&self, extra: &[&str]) -> std::process::Output {
        flambe()
            .arg(&self.config)
            .args(["--cpus", "2"])
            .args(extra)
            .output()
            .unwrap()
    }

    fn run_ok(&self) -> String {
        let out = self.run(&[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "flambe failed:\n{stderr}");
        String::from_utf8(out.stdout).unwrap()
    }

    fn results(&self, name: &str) -> Vec<Value> {
        let text =
            std::fs::read_to_string(self.path(&format!("runs/{name}/results.json"))).unwrap();
        serde_json::from_str::<Vec<Value>>(&text).unwrap()
    }
}

fn rows<'a>(results: &'a [Value], stage: &str) -> Vec<&'a Value> {
    results.iter().filter(|r| r["stage"] == stage).collect()
}

const REPORT: &str = r#"echo "{\"step\": 1, \"score\": $SCORE}" >> $FLAMBE_METRICS"#;

#[test]
fn grid_times_s_times_samples_gives_the_exact_trial_count() {
    let exp = Exp::new(
        "count",
        &format!(
            "seed: 3\npipeline:\n  s: !Stage\n    run: |-\n      SCORE={{a}} && {REPORT}\n    params:\n      a: !g [1, 2, 3]\n      b: !s [0.0, 1.0, 2]\n      c: !c [x, y]\n      d: !lu [0.001, 0.1]\n    samples: 2\n    cpus: 0.5\n    metric: score\n    mode: max\n"
        ),
    );
    exp.run_ok();
    let results = exp.results("count");
    assert_eq!(results.len(), 3 * 2 * 2);
    assert!(results.iter().all(|r| r["status"] == "succeeded"));
    // The dry-run plan is exactly what ran.
    let plan = String::from_utf8(
        flambe()
            .arg(&exp.config)
            .arg("--dry-run")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    for r in &results {
        let id = r["id"].as_str().unwrap();
        let line = plan
            .lines()
            .find(|l| l.trim_start().starts_with(id))
            .unwrap_or_else(|| panic!("{id} not in plan"));
        let b = r["params"]["b"].as_f64().unwrap();
        assert!(line.contains(&format!("b={b}")), "{line} vs {r}");
    }
}

#[test]
fn reduce_keeps_the_best_and_downstream_trials_use_their_own_ancestor() {
    // score = lr * 10 + width: the best two are known in advance.
    let exp = Exp::new(
        "reduce",
        &format!(
            r#"pipeline:
  train: !Stage
    run: |-
      echo {{trial}} > {{out}}/who && SCORE=$(python3 -c "print({{lr}} * 10 + {{width}} * 0.1)") && {REPORT}
    params:
      lr: !g [0.1, 0.2, 0.3]
      width: !g [1, 2]
    metric: score
    mode: max
    reduce: 2
  eval: !Stage
    run: |-
      cp {{train.out}}/who {{out}}/from && SCORE=$(python3 -c "print({{train.params.lr}} + {{k}} + {{train.params.width}} * 0.01)") && {REPORT}
    params:
      k: !g [0, 100]
    metric: score
    mode: max
    reduce: 1
  final: !Stage
    run: |-
      echo {{eval.out}} {{train.out}} > {{out}}/chain
"#
        ),
    );
    let stdout = exp.run_ok();
    let results = exp.results("reduce");
    let train = rows(&results, "train");
    assert_eq!(train.len(), 6);
    let eval = rows(&results, "eval");
    assert_eq!(eval.len(), 4, "2 survivors × 2 variants");
    let mut parents: Vec<&str> = eval.iter().map(|r| r["parent"].as_str().unwrap()).collect();
    parents.sort();
    parents.dedup();
    // lr=0.3 with width 1 and 2 are train-004 and train-005.
    assert_eq!(parents, ["train-004", "train-005"]);
    for r in &eval {
        let from = std::fs::read_to_string(exp.path(&format!(
            "runs/reduce/trials/{}/out/from",
            r["id"].as_str().unwrap()
        )))
        .unwrap();
        assert_eq!(
            from.trim(),
            r["parent"].as_str().unwrap(),
            "{{train.out}} points at the trial's own ancestor"
        );
    }
    let last = rows(&results, "final");
    assert_eq!(last.len(), 1, "reduce: 1 on eval keeps one");
    let winner = eval
        .iter()
        .max_by(|a, b| {
            a["best_metric"]
                .as_f64()
                .partial_cmp(&b["best_metric"].as_f64())
                .unwrap()
        })
        .unwrap();
    assert_eq!(last[0]["parent"], winner["id"]);
    assert!(
        stdout.contains("stage train (ranked by score, max)"),
        "{stdout}"
    );
}

#[test]
fn two_cpus_never_run_more_than_two_one_cpu_trials_at_once() {
    let exp = Exp::new(
        "parallel",
        "pipeline:\n  s: !Stage\n    run: |-\n      echo \"start $(date +%s.%N)\" >> $T/spans && sleep 0.4 && echo \"end $(date +%s.%N)\" >> $T/spans\n    params:\n      i: !g [1, 2, 3, 4]\n    cpus: 1\n",
    );
    exp.run_ok();
    let spans = std::fs::read_to_string(exp.path("spans")).unwrap();
    let mut events: Vec<(f64, i32)> = spans
        .lines()
        .map(|l| {
            let (kind, t) = l.split_once(' ').unwrap();
            (t.parse().unwrap(), if kind == "start" { 1 } else { -1 })
        })
        .collect();
    assert_eq!(events.len(), 8);
    events.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap().then(a.1.cmp(&b.1)));
    let (mut now, mut peak) = (0, 0);
    for (_, d) in events {
        now += d;
        peak = peak.max(now);
    }
    assert_eq!(
        peak, 2,
        "at most two at once, and the two CPUs were both used"
    );
}

#[test]
fn an_always_failing_trial_runs_max_failures_plus_one_times_and_the_others_finish() {
    let exp = Exp::new(
        "failing",
        &format!(
            "max_failures: 2\npipeline:\n  s: !Stage\n    run: |-\n      echo run >> $T/count-{{trial}} && if [ {{i}} = 2 ]; then echo boom >&2; exit 3; fi; SCORE={{i}} && {REPORT}\n    params:\n      i: !g [1, 2, 3]\n    metric: score\n    mode: max\n"
        ),
    );
    let out = exp.run(&[]);
    assert!(
        out.status.success(),
        "a failed trial does not fail the experiment"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("trial s-001 failed: exited with code 3"),
        "{stderr}"
    );
    let runs = |id: &str| {
        std::fs::read_to_string(exp.path(&format!("count-{id}")))
            .unwrap()
            .lines()
            .count()
    };
    assert_eq!(runs("s-001"), 3);
    assert_eq!(runs("s-000"), 1);
    assert_eq!(runs("s-002"), 1);
    let results = exp.results("failing");
    let status: Vec<&str> = results
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(status, ["succeeded", "failed", "succeeded"]);
    assert_eq!(results[1]["attempts"], 3);
    assert_eq!(results[1]["error"], "exited with code 3");
    let log = std::fs::read_to_string(exp.path("runs/failing/trials/s-001/stderr.log")).unwrap();
    assert_eq!(
        log.lines().filter(|l| *l == "boom").count(),
        3,
        "every attempt's stderr is kept"
    );
}

#[test]
fn a_stage_where_no_trial_succeeds_fails_the_experiment_with_exit_3() {
    let exp = Exp::new(
        "nothing",
        "pipeline:\n  s: !Stage\n    run: exit 4\n    params:\n      i: !g [1, 2]\n",
    );
    let out = exp.run(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("no trial succeeded in stage s"), "{stderr}");
    // The results are written all the same.
    assert_eq!(exp.results("nothing").len(), 2);
}

#[test]
fn exit_zero_without_the_metric_fails_and_bad_metric_lines_are_reported() {
    let exp = Exp::new(
        "silent",
        "pipeline:\n  s: !Stage\n    run: |-\n      if [ {i} = 1 ]; then true; else echo 'not json' >> $FLAMBE_METRICS; echo '{\"step\": 1, \"score\": 1}' >> $FLAMBE_METRICS; fi\n    params:\n      i: !g [1, 2]\n    metric: score\n    mode: max\n",
    );
    let out = exp.run(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("exited with code 0 without reporting `score`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("trial s-001: line 1 of its metrics file is ignored: not JSON"),
        "{stderr}"
    );
    let results = exp.results("silent");
    assert_eq!(results[0]["status"], "failed");
    assert_eq!(results[1]["status"], "succeeded");
}

#[test]
fn asha_stops_trials_that_fall_behind() {
    // Each trial reports its own constant score at steps 1..=8.
    let exp = Exp::new(
        "asha",
        "pipeline:\n  s: !Stage\n    run: |-\n      for step in 1 2 3 4 5 6 7 8; do echo \"{\\\"step\\\": $step, \\\"score\\\": {q}}\" >> $FLAMBE_METRICS; sleep 0.2; done\n    params:\n      q: !g [9, 8, 1, 2, 3, 4]\n    cpus: 1\n    metric: score\n    mode: max\n    scheduler: !ASHA {max_t: 8, grace_period: 2, reduction_factor: 2}\n",
    );
    exp.run_ok();
    let results = exp.results("asha");
    let stopped_behind: Vec<&Value> = results
        .iter()
        .filter(|r| r["error"].as_str().is_some_and(|e| e.contains("behind")))
        .collect();
    assert!(!stopped_behind.is_empty(), "{results:?}");
    // The best trial is never stopped for being behind.
    assert!(stopped_behind.iter().all(|r| r["params"]["q"] != 9));
    assert_eq!(results[0]["params"]["q"], 9);
    assert!(
        results
            .iter()
            .all(|r| r["status"] == "stopped" || r["status"] == "succeeded")
    );
}

#[test]
fn a_second_run_reruns_nothing_and_a_changed_config_is_refused_unless_forced() {
    let exp = Exp::new(
        "resume",
        "pipeline:\n  s: !Stage\n    run: |-\n      echo x >> $T/runs-log\n    params:\n      i: !g [1, 2]\n",
    );
    exp.run_ok();
    let again = exp.run_ok();
    assert!(again.contains("stage s"), "{again}");
    assert_eq!(
        std::fs::read_to_string(exp.path("runs-log"))
            .unwrap()
            .lines()
            .count(),
        2
    );

    let text = std::fs::read_to_string(&exp.config)
        .unwrap()
        .replace("[1, 2]", "[1, 3]");
    std::fs::write(&exp.config, text).unwrap();
    let refused = exp.run(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr.contains("changed: pipeline.s.params.i"), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");

    let forced = exp.run(&["--force"]);
    assert!(forced.status.success());
    let aside: Vec<String> = std::fs::read_dir(exp.path("runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("resume.old-"))
        .collect();
    assert_eq!(aside.len(), 1, "old results set aside, not deleted");
    assert!(
        exp.path(&format!("runs/{}/results.json", aside[0]))
            .exists()
    );
    // Two more at once (within the same second, as often as not): each is
    // set aside under its own name, and each run says where.
    for (from, to) in [("[1, 3]", "[1, 4]"), ("[1, 4]", "[1, 5]")] {
        let text = std::fs::read_to_string(&exp.config)
            .unwrap()
            .replace(from, to);
        std::fs::write(&exp.config, text).unwrap();
        let forced = exp.run(&["--force"]);
        let stderr = String::from_utf8_lossy(&forced.stderr);
        assert!(forced.status.success(), "{stderr}");
        assert!(
            stderr.contains("the old results are set aside in") && stderr.contains("resume.old-"),
            "{stderr}"
        );
    }
    let aside = std::fs::read_dir(exp.path("runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("resume.old-"))
        .count();
    assert_eq!(aside, 3, "every forced run kept what it replaced");
}

#[test]
fn quiet_by_default_and_v_and_vv_show_flambes_steps_with_stage_and_trial() {
    let body = "pipeline:\n  s: !Stage\n    run: echo said {x}\n    params:\n      x: !g [1, 2]\n";
    let stderr_of = |flags: &[&str]| {
        let exp = Exp::new("verbose", body);
        let out = exp.run(&[&["--no-site"], flags].concat());
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let quiet = stderr_of(&[]);
    assert!(
        !quiet.contains(" INFO ") && !quiet.contains(" DEBUG ") && !quiet.contains("said 1"),
        "{quiet}"
    );
    let v = stderr_of(&["-v"]);
    assert!(v.contains("[s-000] said 1"), "trials' output: {v}");
    let launched = v
        .lines()
        .find(|l| l.contains("trial launched") && l.contains("trial=s-001"))
        .unwrap_or_else(|| panic!("{v}"));
    assert!(
        launched.contains(" INFO ") && launched.contains("stage{stage=s}"),
        "{launched}"
    );
    assert!(
        v.lines()
            .any(|l| l.contains("trial finished") && l.contains("trial=s-000")),
        "{v}"
    );
    assert!(!v.contains(" DEBUG "), "{v}");
    let vv = stderr_of(&["-vv"]);
    assert!(
        vv.lines().any(|l| l.contains(" DEBUG ")
            && l.contains("trial command")
            && l.contains("echo said 2")),
        "{vv}"
    );
}
