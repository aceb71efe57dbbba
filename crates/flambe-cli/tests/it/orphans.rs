//! Trials never outlive their driver, however their command forks: a
//! pipeline, `cmd &`, `setsid`, a double fork, `nohup`. Each trial runs
//! under a job shim (a child subreaper) that kills what the trial left
//! when the trial ends, or when the driver dies. Where the shims die too
//! (the whole tree SIGKILLed), the processes left behind are killed by the
//! next run of the same command before it runs the trials again.

use crate::common::wait_for;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// Each way of forking, as a trial's command. `hold NAME` records its pid
/// under `$T/pids/` and sleeps; the last `hold` keeps the trial running.
const STYLES: &[(&str, &str)] = &[
    ("pipeline", "$T/hold pipe-a | $T/hold pipe-b"),
    ("background", "$T/hold bg & $T/hold bg-fg"),
    ("setsid", "setsid $T/hold setsid & $T/hold setsid-fg"),
    (
        "double-fork",
        "( setsid $T/hold double & ) ; $T/hold double-fg",
    ),
    (
        "nohup",
        "nohup $T/hold nohup > /dev/null 2>&1 & $T/hold nohup-fg",
    ),
];

/// (name, pid) of every `hold` started so far.
fn holds(dir: &Path) -> Vec<(String, i32)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let (what, pid) = name.rsplit_once('.')?;
            Some((what.to_string(), pid.parse().ok()?))
        })
        .collect()
}

/// Whether `pid` is still a live `hold` of this test (not a zombie, not a
/// recycled pid).
fn alive(pid: i32, scratch: &Path) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
    if stat.is_empty() || state == Some(Some('Z')) {
        return false;
    }
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let needle = format!("T={}", scratch.display());
    environ.split(|b| *b == 0).any(|v| v == needle.as_bytes())
}

fn setup(dir: &Path) -> PathBuf {
    let hold = dir.join("hold");
    std::fs::write(
        &hold,
        "#!/bin/sh\n: > \"$T/pids/$1.$$\"\nif [ -f \"$T/second\" ]; then exit 0; fi\nexec sleep 1000\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hold, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(dir.join("pids")).unwrap();
    let styles: Vec<&str> = STYLES.iter().map(|(name, _)| *name).collect();
    let cases: String = STYLES
        .iter()
        .map(|(name, cmd)| format!("        {name}) {cmd} ;;\n"))
        .collect();
    // On the rerun (`$T/second` exists) each trial forks the same way once
    // more, but its `hold`s return at once, then it reports and ends.
    let config = dir.join("exp.yaml");
    std::fs::write(
        &config,
        format!(
            "!Experiment\nname: forks\nsave_path: ./runs\nenv:\n  T: {}\npipeline:\n  s: !Stage\n    run: |-\n      case {{style}} in\n{cases}      esac\n      [ -f $T/second ] && setsid sh -c 'sleep 1000' & \n      if [ -f $T/second ]; then setsid env -i sh -c \"echo > $T/pids/bare-{{style}}.\\$\\$; exec sleep 1000\" & until ls $T/pids/bare-{{style}}.* > /dev/null 2>&1; do sleep 0.01; done; fi\n      echo '{{\"step\": 1, \"ok\": 1}}' >> $FLAMBE_METRICS\n    params:\n      style: !g [{}]\n    metric: ok\n    mode: max\n",
            dir.display(),
            styles.join(", ")
        ),
    )
    .unwrap();
    config
}

/// The driver, running the trials of `config` until every one of them has
/// its two `hold`s.
fn driver_with_every_trial_holding(config: &Path, pids: &Path) -> std::process::Child {
    let driver = std::process::Command::new(assert_cmd::cargo::cargo_bin("flambe"))
        .arg(config)
        .args(["--cpus", "8", "--no-site"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("every trial's processes", Duration::from_secs(60), || {
        holds(pids).len() >= 2 * STYLES.len()
    });
    driver
}

/// The job shims (`flambe __flambe-job …`) running trials of this test.
fn shims(scratch: &Path) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmdline.split(|b| *b == 0).nth(1) == Some(b"__flambe-job") && alive(pid, scratch) {
            found.push(pid);
        }
    }
    found
}

#[test]
fn a_killed_drivers_trials_die_with_it_however_they_forked() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path().to_path_buf();
    let config = setup(&scratch);
    let pids = scratch.join("pids");
    let mut driver = driver_with_every_trial_holding(&config, &pids);
    let started = holds(&pids);
    assert!(!shims(&scratch).is_empty(), "no job shim found");
    driver.kill().unwrap(); // SIGKILL: no cleanup of its own
    driver.wait().unwrap();
    // Each trial's shim hears of it (its parent-death signal) and kills
    // what its trial forked, with no rerun.
    wait_for(
        "the killed driver's trials to go",
        Duration::from_secs(15),
        || started.iter().all(|(_, p)| !alive(*p, &scratch)),
    );
    assert_eq!(shims(&scratch), Vec::<i32>::new());
}

#[test]
fn a_killed_process_trees_trials_are_killed_by_the_rerun_however_they_forked() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path().to_path_buf();
    let config = setup(&scratch);
    let bin = assert_cmd::cargo::cargo_bin("flambe");
    let pids = scratch.join("pids");
    let mut driver = driver_with_every_trial_holding(&config, &pids);
    // The driver and its shims die at once (the OOM killer, `kill -9` of
    // the tree): the driver is stopped first so it cannot see its shims go.
    let kill = |pid: i32, sig: i32| unsafe { libc::kill(pid, sig) };
    kill(driver.id() as i32, libc::SIGSTOP);
    for shim in shims(&scratch) {
        kill(shim, libc::SIGKILL);
    }
    driver.kill().unwrap();
    driver.wait().unwrap();
    let first = holds(&pids);
    // The trials' leaders (bash) die with their shims; what they forked
    // does not. (Were nothing left, this test would prove nothing.)
    let survivors: Vec<&(String, i32)> =
        first.iter().filter(|(_, p)| alive(*p, &scratch)).collect();
    assert!(
        !survivors.is_empty(),
        "nothing outlived the driver: {first:?}"
    );

    std::fs::write(scratch.join("second"), "").unwrap();
    let out = std::process::Command::new(&bin)
        .arg(&config)
        .args(["--cpus", "8", "--no-site"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the rerun failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left: Vec<&(String, i32)> = first.iter().filter(|(_, p)| alive(*p, &scratch)).collect();
    assert!(
        left.is_empty(),
        "left running after the rerun: {left:?} (of {survivors:?})"
    );
    // The rerun's trials each left a `setsid sleep` behind as they ended,
    // and one that drops its whole environment (`env -i`, so no marker):
    // they went with them.
    let mut strays = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>()
            && alive(pid, &scratch)
        {
            strays.push(pid);
        }
    }
    assert!(strays.is_empty(), "processes of the rerun left: {strays:?}");
    let bare: Vec<String> = std::fs::read_dir(&pids)
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with("bare-"))
        .collect();
    assert_eq!(bare.len(), STYLES.len(), "{bare:?}");
    for name in bare {
        let pid: i32 = name.rsplit_once('.').unwrap().1.parse().unwrap();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty()
                || stat
                    .rsplit_once(") ")
                    .is_some_and(|(_, r)| r.starts_with('Z')),
            "the `env -i` process {pid} of a rerun trial is left: {stat}"
        );
    }
    let results = std::fs::read_to_string(scratch.join("runs/forks/results.csv")).unwrap();
    assert_eq!(
        results.matches(",succeeded,").count(),
        STYLES.len(),
        "{results}"
    );
}

/// The same on a factory: there a trial runs under `flambe trial-run` (the
/// Ray job's entrypoint). When that wrapper is SIGKILLed (Ray giving up on
/// stopping a job, its raylet dying), its guard kills the trial, however
/// it forked, at once rather than at some later rerun on that node.
#[test]
fn a_killed_trial_wrappers_trial_goes_with_it_however_it_forked() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path().to_path_buf();
    setup(&scratch);
    let bin = assert_cmd::cargo::cargo_bin("flambe");
    let mut wrappers = Vec::new();
    for (name, command) in STYLES {
        let trial = scratch.join(format!("trials/{name}"));
        let out = trial.join("out");
        std::fs::create_dir_all(&out).unwrap();
        let spec = flambe_executor::JobSpec {
            id: name.to_string(),
            command: command.to_string(),
            cwd: out.clone(),
            env: vec![
                ("T".to_string(), scratch.display().to_string()),
                ("FLAMBE_OUT".to_string(), out.display().to_string()),
            ],
            cpus: 1.0,
            gpus: 0,
            timeout: None,
            stdout: trial.join("stdout.log"),
            stderr: trial.join("stderr.log"),
            metrics: trial.join("metrics.jsonl"),
            echo: false,
            inputs: Vec::new(),
            sync: None,
            secret_env: Vec::new(),
            secrets_file: None,
            path_prefix: None,
            ray_venv: None,
            checkpoint: None,
        };
        let wrapper = std::process::Command::new(&bin)
            .arg("trial-run")
            .arg(flambe_executor::encode_spec(&spec))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wrappers.push(wrapper);
    }
    let pids = scratch.join("pids");
    wait_for("every trial's processes", Duration::from_secs(60), || {
        holds(&pids).len() >= 2 * STYLES.len()
    });
    for w in &mut wrappers {
        w.kill().unwrap(); // SIGKILL: the wrapper cleans up nothing itself
        w.wait().unwrap();
    }
    let started = holds(&pids);
    wait_for(
        "the trials of the killed wrappers to go",
        Duration::from_secs(15),
        || started.iter().all(|(_, p)| !alive(*p, &scratch)),
    );
}
