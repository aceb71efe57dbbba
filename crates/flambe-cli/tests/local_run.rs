//! Experiments run here, end to end through the `flambe` binary: what a user
//! checks is what these tests check (results rows, winners, files, logs).

mod common;

use assert_cmd::Command;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

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

/// Wait for a condition that a running process brings about.
fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn done_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("done ").map(str::to_string))
        .collect()
}

fn finished_in_state(db: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT id FROM trials WHERE status = 'succeeded' ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn sigkill_of_the_driver_then_rerun_completes_with_finished_trials_run_once() {
    let exp = Exp::new(
        "killed",
        &format!(
            "pipeline:\n  s: !Stage\n    run: |-\n      sleep 0.3 && SCORE={{i}} && {REPORT} && echo done {{trial}} >> $T/log\n    params:\n      i: !g [1, 2, 3, 4, 5, 6, 7, 8]\n    metric: score\n    mode: max\n    reduce: 2\n  t: !Stage\n    run: |-\n      echo done {{trial}} >> $T/log\n"
        ),
    );
    let bin = assert_cmd::cargo::cargo_bin("flambe");
    let mut child = std::process::Command::new(bin)
        .arg(&exp.config)
        .args(["--cpus", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let log = exp.path("log");
    wait_for("three trials to finish", Duration::from_secs(60), || {
        done_lines(&log).len() >= 3
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let recorded = finished_in_state(&exp.path("runs/killed/state.db"));
    assert!(recorded.len() >= 2, "{recorded:?}");

    exp.run_ok();
    let done = done_lines(&log);
    for id in &recorded {
        assert_eq!(
            done.iter().filter(|d| *d == id).count(),
            1,
            "{id} ran again after being recorded: {done:?}"
        );
    }
    let results = exp.results("killed");
    assert_eq!(results.len(), 10);
    assert!(
        results.iter().all(|r| r["status"] == "succeeded"),
        "{results:?}"
    );
    let survivors: Vec<&str> = rows(&results, "t")
        .iter()
        .map(|r| r["parent"].as_str().unwrap())
        .collect();
    assert_eq!(survivors, ["s-006", "s-007"]);
}

#[test]
fn ctrl_c_stops_the_children_and_says_how_to_resume() {
    let exp = Exp::new(
        "interrupted",
        "pipeline:\n  s: !Stage\n    run: |-\n      echo $$ > $T/pid-{trial}; echo started >> $T/started; sleep 60\n    params:\n      i: !g [1, 2]\n",
    );
    let bin = assert_cmd::cargo::cargo_bin("flambe");
    let child = std::process::Command::new(bin)
        .arg(&exp.config)
        .args(["--cpus", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("both trials to start", Duration::from_secs(30), || {
        std::fs::read_to_string(exp.path("started"))
            .unwrap_or_default()
            .lines()
            .count()
            == 2
    });
    // SAFETY: sending SIGINT to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("Run the same command to resume: flambe"),
        "{stderr}"
    );
    for id in ["s-000", "s-001"] {
        let pid: i32 = std::fs::read_to_string(exp.path(&format!("pid-{id}")))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let alive = !stat.is_empty()
            && stat
                .rsplit(')')
                .next()
                .is_some_and(|s| !s.trim_start().starts_with('Z'));
        assert!(!alive, "trial {id} (pid {pid}) still runs after Ctrl-C");
    }
}

#[test]
fn tensorboard_reads_every_reported_scalar() {
    let Some(python) = tensorboard_python() else {
        return;
    };
    let exp = Exp::new(
        "tb",
        "pipeline:\n  s: !Stage\n    run: |-\n      for step in 1 2 3; do echo \"{\\\"step\\\": $step, \\\"acc\\\": 0.{i}$step, \\\"loss\\\": $step.5}\" >> $FLAMBE_METRICS; done\n    params:\n      i: !g [1, 2]\n    metric: acc\n    mode: max\n",
    );
    exp.run_ok();
    let script = r#"
import json, sys, glob, os
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
out = {}
for d in sorted(glob.glob(os.path.join(sys.argv[1], "trials", "*"))):
    acc = EventAccumulator(d)
    acc.Reload()
    out[os.path.basename(d)] = {tag: [[e.step, round(e.value, 5)] for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
print(json.dumps(out))
"#;
    let out = std::process::Command::new(python)
        .args(["-c", script])
        .arg(exp.path("runs/tb"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    for (id, i) in [("s-000", 1), ("s-001", 2)] {
        let acc: Vec<(i64, f64)> = (1..=3)
            .map(|s| (s, format!("0.{i}{s}").parse().unwrap()))
            .collect();
        let loss: Vec<(i64, f64)> = (1..=3).map(|s| (s, s as f64 + 0.5)).collect();
        let got = |tag: &str| -> Vec<(i64, f64)> {
            seen[id][tag]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_i64().unwrap(), p[1].as_f64().unwrap()))
                .collect()
        };
        assert_eq!(got("acc"), acc, "{seen}");
        assert_eq!(got("loss"), loss, "{seen}");
    }
}

/// The Python with TensorBoard that scripts/test.sh installs. Missing is a
/// failure under CI and a loud skip elsewhere.
fn tensorboard_python() -> Option<String> {
    let python = std::env::var("FLAMBE_TEST_PYTHON")
        .unwrap_or_else(|_| "/opt/flambe-test/venv/bin/python".to_string());
    let ok = std::process::Command::new(&python)
        .args(["-c", "import tensorboard"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(python);
    }
    flambe_testbed::missing_prerequisite(
        "tensorboard_reads_every_reported_scalar",
        &format!("{python} cannot import tensorboard; scripts/test.sh installs it"),
    );
    None
}

#[test]
fn a_script_runs_once_with_its_resources_and_says_where_its_output_is() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/words.txt"), "a b c\n").unwrap();
    let config = dir.path().join("count.yaml");
    std::fs::write(
        &config,
        "!Script\nname: count\nsave_path: ./out\nresources:\n  data: ./data\nenv:\n  GREETING: hello\nrun: |-\n  wc -w < {resources.data}/words.txt > {out}/count && echo \"$GREETING from {trial}\"\n",
    )
    .unwrap();
    let run = |extra: &[&str]| {
        flambe()
            .arg(&config)
            .arg("--no-site")
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trial = dir.path().join("out/count/trials/count-000");
    assert!(stdout.contains("Script `count` succeeded"), "{stdout}");
    assert!(
        stdout.contains(&format!("Output: {}", trial.join("out").display())),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(trial.join("out/count"))
            .unwrap()
            .trim(),
        "3"
    );
    let log = std::fs::read_to_string(trial.join("stdout.log")).unwrap();
    assert!(log.contains("hello from count-000"), "{log}");

    // A rerun shows the earlier result; --force runs it again and keeps the
    // earlier output next to it.
    let again = run(&[]);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success());
    assert!(
        stdout.contains("--force` runs the script again"),
        "{stdout}"
    );
    std::fs::write(dir.path().join("data/words.txt"), "a b c d e\n").unwrap();
    assert!(run(&["--force"]).status.success());
    assert_eq!(
        std::fs::read_to_string(trial.join("out/count"))
            .unwrap()
            .trim(),
        "5"
    );
    let kept: Vec<_> = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("count.old-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");

    // A failing script: exit 1, its error and the end of its stderr shown.
    std::fs::write(
        &config,
        "!Script\nname: broken\nrun: |-\n  echo 'no such file: model.pt' >&2; exit 4\n",
    )
    .unwrap();
    let failed = run(&[]);
    let stdout = String::from_utf8_lossy(&failed.stdout);
    assert_eq!(failed.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("Script `broken` failed"), "{stdout}");
    assert!(stdout.contains("exited with code 4"), "{stdout}");
    assert!(stdout.contains("| no such file: model.pt"), "{stdout}");
}

#[test]
fn a_secret_reaches_trials_and_is_written_and_printed_nowhere() {
    let secret = "s3cr3t-7f1e9a";
    let exp = Exp::new(
        "secret",
        "pipeline:\n  s: !Stage\n    run: |-\n      test \"$TOKEN\" = \"$AGAIN\" && test \"${#TOKEN}\" = 13 && echo ok > {out}/checked\n    env:\n      AGAIN: !env FLAMBE_TEST_TOKEN\n",
    );
    // The experiment-wide `env` (Exp::new's has T) gets the secret too.
    let text = std::fs::read_to_string(&exp.config).unwrap().replacen(
        "env:\n",
        "env:\n  TOKEN: !env FLAMBE_TEST_TOKEN\n",
        1,
    );
    std::fs::write(&exp.config, text).unwrap();
    // Unset: a clear error naming the variable, and nothing created.
    let unset = exp.run(&["--no-site"]);
    let stderr = String::from_utf8_lossy(&unset.stderr);
    assert_eq!(unset.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "`TOKEN: !env FLAMBE_TEST_TOKEN` needs the environment variable `FLAMBE_TEST_TOKEN`"
        ),
        "{stderr}"
    );
    assert!(!exp.path("runs/secret").exists(), "nothing half-created");

    let dry = flambe()
        .arg(&exp.config)
        .arg("--dry-run")
        .env("FLAMBE_TEST_TOKEN", secret)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&dry.stdout);
    assert!(
        shown.contains("TOKEN=****** (secret, from $FLAMBE_TEST_TOKEN)"),
        "{shown}"
    );

    let out = flambe()
        .arg(&exp.config)
        .args(["--cpus", "2"])
        .env("FLAMBE_TEST_TOKEN", secret)
        .output()
        .unwrap();
    let printed = format!(
        "{}{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        shown
    );
    assert!(out.status.success(), "{printed}");
    assert_eq!(
        std::fs::read_to_string(exp.path("runs/secret/trials/s-000/out/checked")).unwrap(),
        "ok\n",
        "the trial saw the value"
    );
    assert!(!printed.contains(secret), "printed: {printed}");
    assert_eq!(
        common::files_containing(exp.dir.path(), secret),
        Vec::<PathBuf>::new()
    );
}

/// The wheel folder `scripts/test.sh` fills (setuptools and wheel for
/// isolated builds), or None (with a SKIPPED line, a failure under CI).
fn test_wheels(test: &str) -> Option<PathBuf> {
    let wheels = flambe_testbed::tools_dir().join("wheels");
    if wheels.join("setuptools-75.8.0-py3-none-any.whl").exists() {
        return Some(wheels);
    }
    flambe_testbed::missing_prerequisite(
        test,
        &format!("needs {} (scripts/test.sh fills it)", wheels.display()),
    );
    None
}

#[test]
fn extensions_are_installed_into_the_trials_environment_here() {
    let Some(wheels) = test_wheels("extensions_are_installed_into_the_trials_environment_here")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    common::write_package(dir.path(), "my_models", "v1");
    let config = dir.path().join("exp.yaml");
    std::fs::write(
        &config,
        "my_models: ./my_models\n---\n!Experiment\nname: ext\nsave_path: ./runs\npipeline:\n  s: !Stage\n    run: |-\n      python -c \"import my_models, sys; print(my_models.MARK, sys.prefix)\" > {out}/seen\n",
    )
    .unwrap();
    let home = dir.path().join("home");
    // pip without network: an index nowhere, setuptools and wheel from the folder.
    let run = |extra: &[&str]| {
        let out = flambe()
            .arg(&config)
            .args(["--no-site", "--cpus", "2"])
            .args(extra)
            .env("FLAMBE_HOME", &home)
            .env("PIP_NO_INDEX", "1")
            .env("PIP_FIND_LINKS", &wheels)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };
    let seen =
        || std::fs::read_to_string(dir.path().join("runs/ext/trials/s-000/out/seen")).unwrap();
    let (code, text) = run(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("Extensions: installed"), "{text}");
    let first = seen();
    assert!(
        first.starts_with(&format!("v1 {}", home.join("envs").display())),
        "the trial's python is the extensions' venv: {first}"
    );
    let record: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("runs/ext/extensions.json")).unwrap(),
    )
    .unwrap();
    assert!(
        record["installed"]
            .as_array()
            .unwrap()
            .iter()
            .any(
                |p| p["name"].as_str().map(|n| n.replace('-', "_")).as_deref() == Some("my_models")
                    && p["version"] == "0.3"
            ),
        "{record}"
    );
    assert!(
        !dir.path().join("my_models/build").exists(),
        "the user's folder is left alone"
    );

    // Unchanged: nothing installed.
    let (code, text) = run(&[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("up to date, nothing installed"), "{text}");

    // One file changed: another environment, and the rerun must be asked for.
    common::write_package(dir.path(), "my_models", "v2");
    let (code, text) = run(&[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("changed: extensions"), "{text}");
    let (code, text) = run(&["--force"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(seen().starts_with("v2 "), "{}", seen());
    let envs = std::fs::read_dir(home.join("envs"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join(".ready").exists())
        .count();
    assert_eq!(envs, 2, "the first environment is kept for the first set");

    // A broken extension stops the run before any trial, naming it.
    std::fs::create_dir(dir.path().join("broken")).unwrap();
    std::fs::write(
        dir.path().join("broken/setup.py"),
        "raise SystemExit('broken on purpose')\n",
    )
    .unwrap();
    std::fs::write(
        &config,
        "broken: ./broken\n---\n!Experiment\nname: bad\nsave_path: ./runs\npipeline:\n  s: !Stage\n    run: echo never\n",
    )
    .unwrap();
    let (code, text) = run(&[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("extension `broken` failed to install here"),
        "{text}"
    );
    assert!(text.contains("broken on purpose"), "{text}");
    assert!(!dir.path().join("runs/bad").exists(), "no trial started");
}

#[test]
fn a_second_driver_on_the_same_results_is_refused_and_the_first_finishes_whole() {
    // Each trial says it started, then waits for the test's go.
    let exp = Exp::new(
        "twice",
        &format!(
            "pipeline:\n  s: !Stage\n    run: |-\n      touch $T/started-{{i}}; while [ ! -f $T/go ]; do sleep 0.05; done; SCORE={{i}} && {REPORT}\n    params:\n      i: !g [1, 2]\n    metric: score\n    mode: max\n"
        ),
    );
    let bin = assert_cmd::cargo::cargo_bin("flambe");
    let first = std::process::Command::new(&bin)
        .arg(&exp.config)
        .args(["--cpus", "2", "--no-site"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("both trials to start", Duration::from_secs(60), || {
        exp.path("started-1").exists() && exp.path("started-2").exists()
    });
    // A rerun while it runs, and --force while it runs: both refused, both
    // naming the running driver, neither touching its trials or results.
    for extra in [&[][..], &["--force"][..]] {
        // With its site on: the refusal comes before any site URL.
        let mut second = std::process::Command::new(&bin)
            .arg(&exp.config)
            .args(["--cpus", "2", "--no-tensorboard"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A second driver that is not refused would wait for `go` forever.
        let refused = (0..600).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            second.try_wait().unwrap().is_some()
        });
        if !refused {
            let _ = second.kill();
        }
        let out = second.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(refused, "a second driver ran beside the first: {stderr}");
        assert!(!out.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!("already running: driver pid {}", first.id())),
            "{stderr}"
        );
        assert!(stderr.contains("flambe site"), "{stderr}");
        assert!(!stderr.contains("Report site:"), "{stderr}");
    }
    assert!(!exp.path("runs/twice.old").exists());
    assert_eq!(
        std::fs::read_dir(exp.path("runs")).unwrap().count(),
        2,
        "only the results folder and its lock file"
    );
    std::fs::write(exp.path("go"), "").unwrap();
    let out = first.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results = exp.results("twice");
    assert_eq!(results.len(), 2);
    for r in &results {
        assert_eq!(r["status"], "succeeded", "{r}");
        assert_eq!(r["attempts"], 1, "no trial ran twice: {r}");
        assert!(r["best_metric"].is_number(), "{r}");
    }
    // Once it ended, the lock is free again.
    exp.run_ok();
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
