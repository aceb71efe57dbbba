//! A run stopped partway (its driver killed, Ctrl-C, a second driver on
//! the same results) and run again: nothing finished runs twice.

use super::*;
use crate::common::wait_for;

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
        "pipeline:\n  s: !Stage\n    run: |-\n      trap 'echo {trial} >> $T/terminated; exit 143' TERM\n      echo $$ > $T/pid-{trial}; echo started >> $T/started; sleep 60 & wait\n    params:\n      i: !g [1, 2]\n",
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
    // Each was told first (SIGTERM, its chance to save), not just killed.
    let mut told: Vec<String> = std::fs::read_to_string(exp.path("terminated"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    told.sort();
    assert_eq!(told, ["s-000", "s-001"]);
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
