//! The cluster fault matrix, on test hosts in network namespaces
//! (orchestrator + 2 factories, Ray from PyPI): in every case the
//! experiment finishes with every trial's result, and no trial the driver
//! had recorded as finished runs again.
//!
//! - the orchestrator's driver killed with SIGKILL mid-stage, three times,
//!   each followed by the same command from the laptop (it resumes there);
//! - the laptop side killed mid-run, then `flambe attach`;
//! - a factory cut off mid-trial, then brought back;
//! - the orchestrator rebooted (every process gone, Ray included, `/tmp`
//!   emptied), then the same command.
//!
//! In the first case the trials also fork in every way a command can: what
//! they forked on the factories ends with their attempts, whether their
//! driver was killed or they ran to their end.
//!
//! Root only; skipped with a reason otherwise, a failure under CI=true.

use crate::common::ray_cluster::RayCluster;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// An experiment of `trials` trials of `seconds` one-second steps each;
/// every trial marks its start and its end in the home of the host it runs
/// on, saves its step in `$FLAMBE_CHECKPOINT` after each second and goes on
/// from there when it runs again (reporting that step again), writing
/// where it started to `out/resumed-from`. With `forks`, each attempt also
/// leaves processes behind in every way a command can fork (see [`FORKS`]).
fn experiment(dir: &Path, name: &str, trials: u32, seconds: u32, forks: bool) -> PathBuf {
    let config = dir.join(format!("{name}.yaml"));
    let values: Vec<String> = (1..=trials).map(|i| i.to_string()).collect();
    std::fs::write(
        &config,
        format!(
            r#"!Experiment
name: {name}
max_failures: 3
pipeline:
  s: !Stage
    run: |-
      {}
      echo {{trial}} >> $HOME/started-{name}
      s=$(cat $FLAMBE_CHECKPOINT/s 2>/dev/null || echo 0)
      echo $s > {{out}}/resumed-from
      # Where it resumes, it reports that step again: an attempt that
      # resumes at the very end still reports its metric.
      [ $s -gt 0 ] && echo "{{\"step\": $s, \"a\": {{i}}}}" >> $FLAMBE_METRICS
      while [ $s -lt {seconds} ]; do
        sleep 1; s=$((s + 1))
        echo $s > $FLAMBE_CHECKPOINT/s.tmp && mv $FLAMBE_CHECKPOINT/s.tmp $FLAMBE_CHECKPOINT/s
        echo "{{\"step\": $s, \"a\": {{i}}}}" >> $FLAMBE_METRICS
      done
      echo {{trial}} >> $HOME/done-{name}; echo $FLAMBE_ATTEMPT > {{out}}/ran-attempt
    params:
      i: !g [{}]
    cpus: 1
    metric: a
    mode: max
"#,
            if forks { FORKS } else { ":" },
            values.join(", ")
        ),
    )
    .unwrap();
    config
}

/// Processes a trial leaves behind, one per way of forking: `setsid`, a
/// double fork, a pipeline in the background, `nohup`. Each sleeps for a
/// time no other process of the suite sleeps for (see [`forked_alive`]).
const FORKS: &str = "setsid sleep 7031.1 </dev/null >/dev/null 2>&1 & (sleep 7031.2 </dev/null >/dev/null 2>&1 &); sleep 7031.3 </dev/null | cat >/dev/null & nohup sleep 7031.4 </dev/null >/dev/null 2>&1 &";

/// The live processes [`FORKS`] left on the factories: (pid, what it
/// sleeps for).
fn forked_alive(m: &Matrix) -> Vec<(i32, String)> {
    [2, 3]
        .into_iter()
        .flat_map(|n| m.rc.bed.processes_on(n))
        .filter(|(_, args)| {
            args.len() >= 2 && args[0].ends_with("sleep") && args[1].starts_with("7031.")
        })
        .map(|(pid, args)| (pid, args[1].clone()))
        .collect()
}

struct Matrix {
    rc: RayCluster,
}

struct Snapshot {
    finished: BTreeSet<String>,
    completions: BTreeMap<String, usize>,
}

impl Matrix {
    fn results_dir(&self, name: &str) -> PathBuf {
        self.rc
            .bed
            .home(1)
            .join(format!(".flambe/experiments/{name}/runs/{name}"))
    }

    /// Trials the driver has recorded as succeeded.
    fn succeeded(&self, name: &str) -> BTreeSet<String> {
        let db = self.results_dir(name).join("state.db");
        let Ok(conn) =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        else {
            return BTreeSet::new();
        };
        let Ok(mut stmt) = conn.prepare("SELECT id FROM trials WHERE status = 'succeeded'") else {
            return BTreeSet::new();
        };
        stmt.query_map([], |r| r.get(0))
            .map(|rows| rows.flatten().collect())
            .unwrap_or_default()
    }

    /// How many times each trial's command ran to its end, on any factory.
    fn completions(&self, name: &str) -> BTreeMap<String, usize> {
        self.marks(&format!("done-{name}"))
    }

    fn marks(&self, file: &str) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for n in [2, 3] {
            let text = std::fs::read_to_string(self.rc.bed.home(n).join(file)).unwrap_or_default();
            for line in text.lines() {
                *counts.entry(line.to_string()).or_default() += 1;
            }
        }
        counts
    }

    /// The laptop side: `flambe CONFIG --cluster C`, its output in a file.
    fn start(&self, config: &Path, log: &str) -> Child {
        let out = std::fs::File::create(self.rc.dir.path().join(log)).unwrap();
        std::process::Command::new(assert_cmd::cargo::cargo_bin("flambe"))
            .env("FLAMBE_HOME", self.rc.dir.path().join("home"))
            .arg("-v")
            .arg(config)
            .arg("--cluster")
            .arg(&self.rc.cluster)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap()
    }

    /// A trial started on a factory, not ended there, whose checkpoint the
    /// orchestrator holds (it has sent one back).
    fn running_with_checkpoint(&self, name: &str) -> Option<String> {
        let started = self.marks(&format!("started-{name}"));
        let done = self.completions(name);
        started
            .into_iter()
            .filter(|(id, n)| done.get(id).copied().unwrap_or(0) < *n)
            .map(|(id, _)| id)
            .find(|id| {
                let s = self
                    .results_dir(name)
                    .join(format!("trials/{id}/checkpoint/s"));
                std::fs::read_to_string(s).is_ok_and(|s| s.trim().parse::<u32>().unwrap_or(0) >= 1)
            })
    }

    /// The step the trial's last attempt went on from (0: from the start).
    fn resumed_from(&self, name: &str, id: &str) -> u32 {
        std::fs::read_to_string(
            self.results_dir(name)
                .join(format!("trials/{id}/out/resumed-from")),
        )
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
    }

    /// The recorded attempt count of a trial.
    fn attempts(&self, name: &str, id: &str) -> i64 {
        let db = rusqlite::Connection::open_with_flags(
            self.results_dir(name).join("state.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        db.query_row("SELECT attempt FROM trials WHERE id = ?1", [id], |row| {
            row.get(0)
        })
        .unwrap()
    }

    fn log(&self, log: &str) -> String {
        std::fs::read_to_string(self.rc.dir.path().join(log)).unwrap_or_default()
    }

    fn driver_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.rc.bed.home(1).join(".flambe/driver.json")).ok()?;
        let v: Value = serde_json::from_str(&text).ok()?;
        v["pid"].as_i64().map(|p| p as i32)
    }

    /// Wait until `done` holds, polling the files it reads.
    fn wait_for(&self, what: &str, limit: u64, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(
                start.elapsed() < Duration::from_secs(limit),
                "timed out after {limit} s waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// What the driver had recorded as finished at a moment, and how often
    /// each trial's command had run to its end by then.
    fn snapshot(&self, name: &str) -> Snapshot {
        Snapshot {
            finished: self.succeeded(name),
            completions: self.completions(name),
        }
    }

    /// Every trial succeeded with its own metric, and none that a snapshot
    /// saw finished ran again after it. (A command that ended just before
    /// its driver died, unrecorded, rightly runs again.)
    fn assert_whole(&self, name: &str, trials: u32, snapshots: &[Snapshot]) {
        let text = std::fs::read_to_string(self.results_dir(name).join("results.json")).unwrap();
        let rows: Vec<Value> = serde_json::from_str(&text).unwrap();
        assert_eq!(rows.len(), trials as usize, "{rows:?}");
        for r in &rows {
            assert_eq!(r["status"], "succeeded", "{r}");
            assert_eq!(r["best_metric"].as_f64(), r["params"]["i"].as_f64(), "{r}");
        }
        // Each trial's folder holds what its recorded attempt made, not a
        // late copy from an older attempt (a factory cut off, then back).
        let db = rusqlite::Connection::open_with_flags(
            self.results_dir(name).join("state.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        for r in &rows {
            let id = r["id"].as_str().unwrap();
            let attempt: i64 = db
                .query_row("SELECT attempt FROM trials WHERE id = ?1", [id], |row| {
                    row.get(0)
                })
                .unwrap();
            let ran = std::fs::read_to_string(
                self.results_dir(name)
                    .join(format!("trials/{id}/out/ran-attempt")),
            )
            .unwrap_or_default();
            assert_eq!(ran.trim(), attempt.to_string(), "{id}'s folder");
        }
        let done = self.completions(name);
        for r in &rows {
            let id = r["id"].as_str().unwrap();
            assert!(
                done.get(id).copied().unwrap_or(0) >= 1,
                "{id} never ran to its end"
            );
        }
        for snap in snapshots {
            assert!(!snap.finished.is_empty());
            for id in &snap.finished {
                assert_eq!(
                    done.get(id),
                    snap.completions.get(id),
                    "{id} was recorded as finished, then ran again: {done:?} (then: {:?})",
                    snap.completions
                );
            }
        }
    }
}

fn wait_exit(child: &mut Child, limit: u64, m: &Matrix, log: &str) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if start.elapsed() > Duration::from_secs(limit) {
            let _ = child.kill();
            panic!(
                "the laptop side did not end within {limit} s:\n{}",
                m.log(log)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn every_trial_finishes_once_through_driver_kills_a_lost_laptop_a_cut_factory_and_a_reboot() {
    let test =
        "every_trial_finishes_once_through_driver_kills_a_lost_laptop_a_cut_factory_and_a_reboot";
    let Some(rc) = RayCluster::new(test, 128, "faults", 2, false) else {
        return;
    };
    let m = Matrix { rc };
    let dir = m.rc.dir.path().to_path_buf();
    let mut costs = Vec::new();

    // 1. The driver killed three times, each time followed by the same
    // command, which resumes the experiment on the orchestrator.
    let begin = Instant::now();
    let config = experiment(&dir, "killed", 16, 3, true);
    let mut snapshots = Vec::new();
    let mut checkpointed = None;
    for round in 0..3 {
        let log = format!("killed-{round}.log");
        let mut laptop = m.start(&config, &log);
        let before = m.succeeded("killed").len();
        m.wait_for("two more trials to finish", 300, || {
            m.succeeded("killed").len() >= before + 2
        });
        if round == 0 {
            // The first kill lands while a trial that has sent a checkpoint
            // back runs: its next attempt must go on from there.
            m.wait_for("a running trial with a checkpoint", 120, || {
                checkpointed = m.running_with_checkpoint("killed");
                checkpointed.is_some()
            });
            // What the running trials forked is there to be left behind
            // (were nothing there, the check after the last run would
            // prove nothing).
            m.wait_for("the running trials' forked processes", 60, || {
                let styles: BTreeSet<String> =
                    forked_alive(&m).into_iter().map(|(_, s)| s).collect();
                styles.len() == 4
            });
        }
        snapshots.push(m.snapshot("killed"));
        let pid = m.driver_pid().expect("a driver runs");
        // SAFETY: signalling the driver process this test's run started.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
        let code = wait_exit(&mut laptop, 120, &m, &log);
        assert_ne!(code, Some(0), "{}", m.log(&log));
    }
    let mut laptop = m.start(&config, "killed-last.log");
    let code = wait_exit(&mut laptop, 600, &m, "killed-last.log");
    assert_eq!(code, Some(0), "{}", m.log("killed-last.log"));
    m.assert_whole("killed", 16, &snapshots);
    // Nothing any attempt forked outlives it: not the trials of a killed
    // driver (the rerun stops their Ray jobs; each wrapper's guard takes
    // what its trial started), not those that ran to their end.
    m.wait_for("every process the trials forked to end", 60, || {
        forked_alive(&m).is_empty()
    });
    let id = checkpointed.expect("seen before the first kill");
    let resumed = m.resumed_from("killed", &id);
    let attempts = m.attempts("killed", &id);
    eprintln!(
        "{id}, running at the first kill: attempts {attempts}, last resumed from step {resumed}"
    );
    assert!(
        attempts < 2 || resumed >= 1,
        "{id} started over after the driver was killed"
    );
    costs.push(("driver SIGKILL x3, then the same command", begin.elapsed()));

    // 2. The laptop side killed mid-run, then `flambe attach`.
    let begin = Instant::now();
    let config = experiment(&dir, "detached", 8, 3, false);
    let mut laptop = m.start(&config, "detached.log");
    m.wait_for("two trials to finish", 300, || {
        m.succeeded("detached").len() >= 2
    });
    laptop.kill().unwrap();
    laptop.wait().unwrap();
    let snapshot = m.snapshot("detached");
    let (code, text) = m.rc.flambe(&[
        "attach".as_ref(),
        "detached".as_ref(),
        "--cluster".as_ref(),
        m.rc.cluster.as_os_str(),
    ]);
    assert_eq!(code, Some(0), "{text}");
    m.assert_whole("detached", 8, &[snapshot]);
    costs.push(("laptop killed, then attach", begin.elapsed()));

    // 3. A factory cut off while its trials run, brought back later.
    let begin = Instant::now();
    let config = experiment(&dir, "cut", 12, 4, false);
    let mut laptop = m.start(&config, "cut.log");
    // A trial runs on factory 1 (host 3) now: started there, not ended.
    let running_on_3 = || {
        let read = |f: &str| -> BTreeSet<String> {
            std::fs::read_to_string(m.rc.bed.home(3).join(f))
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect()
        };
        read("started-cut")
            .difference(&read("done-cut"))
            .cloned()
            .collect::<Vec<String>>()
    };
    // ... and has sent a checkpoint back to the orchestrator.
    let checkpointed_on_3 = || -> Option<String> {
        running_on_3().into_iter().find(|id| {
            let s = m
                .results_dir("cut")
                .join(format!("trials/{id}/checkpoint/s"));
            std::fs::read_to_string(s).is_ok_and(|s| s.trim().parse::<u32>().unwrap_or(0) >= 1)
        })
    };
    m.wait_for(
        "a finished trial and a checkpointed one on factory 1",
        300,
        || !m.succeeded("cut").is_empty() && checkpointed_on_3().is_some(),
    );
    let cut_trial = checkpointed_on_3().expect("seen just now");
    let snapshot = m.snapshot("cut");
    m.rc.bed.cut(3);
    // Ray declares the factory dead and the trial's job lost; the driver
    // runs the trial again, on the other factory.
    m.wait_for("the cut-off trial to run again elsewhere", 300, || {
        m.attempts("cut", &cut_trial) >= 2
    });
    m.wait_for("two more trials to finish elsewhere", 300, || {
        m.succeeded("cut").len() >= snapshot.finished.len() + 2
    });
    m.rc.bed.restore(3);
    let code = wait_exit(&mut laptop, 600, &m, "cut.log");
    assert_eq!(code, Some(0), "{}", m.log("cut.log"));
    m.assert_whole("cut", 12, &[snapshot]);
    // The trial cut off mid-way went on from its checkpoint where it ran
    // again (a factory fetches it from the orchestrator before the trial).
    let attempts = m.attempts("cut", &cut_trial);
    let resumed = m.resumed_from("cut", &cut_trial);
    eprintln!(
        "{cut_trial}, cut off on factory 1: attempts {attempts}, last resumed from step {resumed}"
    );
    assert!(attempts >= 2 && resumed >= 1, "{cut_trial} started over");
    costs.push(("factory cut off and brought back", begin.elapsed()));

    // 4. The orchestrator rebooted: every process gone, Ray included.
    let begin = Instant::now();
    let config = experiment(&dir, "rebooted", 8, 3, false);
    let mut laptop = m.start(&config, "rebooted-0.log");
    m.wait_for("two trials to finish", 300, || {
        m.succeeded("rebooted").len() >= 2
    });
    let snapshot = m.snapshot("rebooted");
    m.rc.bed.reboot(1);
    let code = wait_exit(&mut laptop, 180, &m, "rebooted-0.log");
    assert_ne!(code, Some(0), "{}", m.log("rebooted-0.log"));
    let mut laptop = m.start(&config, "rebooted-1.log");
    let code = wait_exit(&mut laptop, 600, &m, "rebooted-1.log");
    assert_eq!(code, Some(0), "{}", m.log("rebooted-1.log"));
    m.assert_whole("rebooted", 8, &[snapshot]);
    costs.push((
        "orchestrator rebooted, then the same command",
        begin.elapsed(),
    ));

    for (case, took) in costs {
        eprintln!("fault matrix: {case}: {:.0} s", took.as_secs_f64());
    }
}
