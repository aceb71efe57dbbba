//! Experiments whose trials run as Ray jobs, submitted through the real
//! Ray Jobs REST API of a one-node Ray (from PyPI, with 2 CPUs and 2 fake
//! GPUs) started by this test on loopback: same results as a local run,
//! distinct GPUs for concurrent GPU trials, lost jobs retried.

use crate::common::{essence, try_get_as};
use assert_cmd::Command;
use flambe_testbed::missing_prerequisite;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A Ray head of our own, in its own process group, killed on drop.
struct LocalRay {
    child: std::process::Child,
    pgid: i32,
    dashboard: String,
    /// Ray runs with token authentication and this token file (whatever
    /// `~/.ray/auth_token` the user running the tests may have).
    token_path: PathBuf,
    token: String,
    _dir: tempfile::TempDir,
}

impl LocalRay {
    fn start(gcs_port: u16, dashboard_port: u16) -> Option<LocalRay> {
        let tools = flambe_testbed::tools_dir().display().to_string();
        let ray = format!("{tools}/ray/bin/ray");
        if !Path::new(&ray).exists() {
            missing_prerequisite(
                "ray_run",
                &format!("needs {ray} (scripts/test.sh installs Ray 2.60)"),
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let token = format!("test-token-{}-{gcs_port}", std::process::id());
        let token_path = dir.path().join("ray_token");
        std::fs::write(&token_path, &token).unwrap();
        let child = std::process::Command::new(&ray)
            .args([
                "start",
                "--head",
                "--block",
                "--disable-usage-stats",
                "--num-cpus",
                "2",
                "--num-gpus",
                "2",
            ])
            .args([
                "--port",
                &gcs_port.to_string(),
                "--dashboard-host",
                "127.0.0.1",
            ])
            .args(["--dashboard-port", &dashboard_port.to_string()])
            .args(own_ports(gcs_port))
            .arg("--temp-dir")
            .arg(dir.path().join("ray"))
            .env("RAY_USAGE_STATS_ENABLED", "0")
            .env("RAY_AUTH_MODE", "token")
            .env("RAY_AUTH_TOKEN_PATH", &token_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let ray = LocalRay {
            pgid: child.id() as i32,
            child,
            dashboard: format!("http://127.0.0.1:{dashboard_port}"),
            token_path,
            token,
            _dir: dir,
        };
        let start = Instant::now();
        while !matches!(
            try_get_as(&ray.dashboard, "/api/jobs/", Some(&ray.token)),
            Some((200, _))
        ) {
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "Ray's dashboard never came up"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Some(ray)
    }
}

/// Every port a Ray head opens, set apart from Ray's defaults and from the
/// other test's Ray: two heads (or a user's Ray) on one machine otherwise
/// collide on the agent's fixed ports, and one of them takes no jobs.
fn own_ports(gcs_port: u16) -> Vec<String> {
    let base = 20_000 + (gcs_port % 10) * 1_000;
    let named = [
        "--node-manager-port",
        "--object-manager-port",
        "--dashboard-agent-listen-port",
        "--dashboard-agent-grpc-port",
        "--metrics-export-port",
        "--runtime-env-agent-port",
        "--ray-client-server-port",
    ];
    let mut args = Vec::new();
    for (i, flag) in named.iter().enumerate() {
        args.push(flag.to_string());
        args.push((base + i as u16).to_string());
    }
    args.push("--min-worker-port".to_string());
    args.push((base + 100).to_string());
    args.push("--max-worker-port".to_string());
    args.push((base + 299).to_string());
    args
}

use std::os::unix::process::CommandExt;

impl Drop for LocalRay {
    fn drop(&mut self) {
        // SAFETY: signalling the process group this test created.
        unsafe {
            libc::kill(-self.pgid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// The experiment, results in `./{save}`. Through Ray, the trial with lr
/// 0.2 kills its wrapper (`flambe trial-run` or the slot worker `flambe
/// slot-run`, the parent of the job shim that is its own parent) once: a
/// job dying mid-trial, to be retried. Each trial notes its wrapper's pid.
fn write(dir: &Path, save: &str) -> PathBuf {
    let config = dir.join(format!("{save}.yaml"));
    std::fs::write(
        &config,
        format!(
            r#"!Experiment
name: rayexp
save_path: ./{save}
env:
  T: {scratch}
max_failures: 1
seed: 11
pipeline:
  train: !Stage
    run: |-
      w=$(cut -d' ' -f4 /proc/$PPID/stat); grep -qE 'trial-run|slot-run' /proc/$w/cmdline || w=none
      if [ {{lr}} = 0.2 ] && [ ! -f $T/{save}-died ] && [ $w != none ]; then touch $T/{save}-died; kill -9 $w; sleep 5; fi
      start=$(date +%s.%N); sleep 0.5
      for step in 1 2 3; do echo "{{\"step\": $step, \"acc\": $(python3 -c "print({{lr}} * $step + {{w}})")}}" >> $FLAMBE_METRICS; done
      echo "$start $(date +%s.%N) $w $CUDA_VISIBLE_DEVICES" >> $T/{save}-gpus
      echo {{trial}} > {{out}}/who
    params:
      lr: !g [0.1, 0.2, 0.3]
      w: !c [0.01, 0.02, 0.03]
    gpus: 1
    cpus: 0.5
    metric: acc
    mode: max
    reduce: 2
  eval: !Stage
    run: |-
      echo "{{\"step\": 1, \"score\": $(python3 -c "print({{train.params.lr}} * 10)")}}" >> $FLAMBE_METRICS; cp {{train.out}}/who {{out}}/from
      cut -d' ' -f4 /proc/$PPID/stat >> $T/{save}-evals
    metric: score
    mode: max
"#,
            scratch = dir.display()
        ),
    )
    .unwrap();
    config
}

fn results(dir: &Path, save: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join(save).join("rayexp/results.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// One Ray job per trial (`FLAMBE_RAY_JOB_PER_TRIAL=1`): the same
/// results as here, every trial its own `flambe trial-run` job.
#[test]
fn trials_run_as_ray_jobs_with_the_same_results_as_here() {
    let Some(ray) = LocalRay::start(6391, 8291) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let jobs = same_results_as_here(&ray, dir.path(), true);
    assert_eq!(
        jobs.len(),
        3 + 1 + 2,
        "3 train trials, one retry, 2 eval trials"
    );
    assert!(
        jobs.iter()
            .all(|j| j["entrypoint"].as_str().unwrap().contains(" trial-run ")),
        "{jobs:?}"
    );
    let wrappers = wrapper_pids(dir.path());
    let distinct: std::collections::HashSet<_> = wrappers.iter().collect();
    assert_eq!(distinct.len(), wrappers.len(), "a wrapper per trial");
}

/// Slot workers (the default): the same results as here; a trial that
/// kills its worker is lost and retried; GPUs stay distinct; and workers
/// ran more than one trial each (fewer wrappers than trials).
#[test]
fn slot_workers_run_trials_in_turn_with_the_same_results_as_here() {
    let Some(ray) = LocalRay::start(6394, 8294) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let jobs = same_results_as_here(&ray, dir.path(), false);
    assert!(
        jobs.iter()
            .all(|j| j["entrypoint"].as_str().unwrap().contains(" slot-run ")),
        "{jobs:?}"
    );
    let wrappers = wrapper_pids(dir.path());
    let distinct: std::collections::HashSet<_> = wrappers.iter().collect();
    assert!(
        distinct.len() < wrappers.len(),
        "some slot worker ran two trials: {wrappers:?}"
    );
}

/// The wrapper pid of every trial that ran to its end (train, then eval).
fn wrapper_pids(dir: &Path) -> Vec<String> {
    let train = std::fs::read_to_string(dir.join("viaray-gpus")).unwrap();
    let eval = std::fs::read_to_string(dir.join("viaray-evals")).unwrap();
    let mut pids: Vec<String> = train
        .lines()
        .map(|l| l.split_whitespace().nth(2).unwrap().to_string())
        .collect();
    pids.extend(eval.lines().map(|l| l.trim().to_string()));
    assert!(pids.iter().all(|p| p != "none"), "{pids:?}");
    pids
}

/// Run the experiment through `ray` and here; assert what must be equal
/// between them and what Ray must show; return Ray's job list.
fn same_results_as_here(ray: &LocalRay, dir: &Path, job_per_trial: bool) -> Vec<Value> {
    let remote = write(dir, "viaray");
    let out = Command::cargo_bin("flambe")
        .unwrap()
        .arg(&remote)
        .args(["--ray-address", &ray.dashboard, "--no-site"])
        .env("RAY_AUTH_TOKEN_PATH", &ray.token_path)
        .env(
            "FLAMBE_RAY_JOB_PER_TRIAL",
            if job_per_trial { "1" } else { "0" },
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lost = if job_per_trial {
        "lost: Ray reports the job FAILED"
    } else {
        "was lost mid-trial: its connection to the driver closed"
    };
    assert!(
        stderr.contains(lost),
        "the killed job was reported lost: {stderr}"
    );

    let local = write(dir, "here");
    let out = Command::cargo_bin("flambe")
        .unwrap()
        .arg(&local)
        .args(["--cpus", "2", "--gpus", "2", "--no-site"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let via_ray = results(dir, "viaray");
    let here = results(dir, "here");
    assert_eq!(
        essence(&via_ray),
        essence(&here),
        "same trials, parents, params, statuses and metrics"
    );
    assert!(via_ray.iter().all(|r| r["host"] == "ray"), "{via_ray:?}");
    let lost = via_ray.iter().find(|r| r["params"]["lr"] == 0.2).unwrap();
    assert_eq!(lost["attempts"], 2, "the lost job was retried: {lost}");
    assert_eq!(lost["status"], "succeeded");

    // Every trial went through Ray's Jobs API.
    let (status, _) = try_get_as(&ray.dashboard, "/api/jobs/", None).unwrap();
    assert_eq!(status, 401, "Ray refuses a call without its token");
    let (status, body) = try_get_as(&ray.dashboard, "/api/jobs/", Some(&ray.token)).unwrap();
    assert_eq!(status, 200);
    let jobs: Vec<Value> = serde_json::from_slice(&body).unwrap();

    // GPU trials that overlapped in time had different GPUs from Ray.
    let spans: Vec<(f64, f64, String)> = std::fs::read_to_string(dir.join("viaray-gpus"))
        .unwrap()
        .lines()
        .map(|l| {
            let p: Vec<&str> = l.split_whitespace().collect();
            (
                p[0].parse().unwrap(),
                p[1].parse().unwrap(),
                p.get(3).unwrap_or(&"").to_string(),
            )
        })
        .collect();
    assert_eq!(spans.len(), 3);
    for s in &spans {
        assert!(
            s.2 == "0" || s.2 == "1",
            "CUDA_VISIBLE_DEVICES from Ray: {spans:?}"
        );
    }
    for (i, a) in spans.iter().enumerate() {
        for b in &spans[i + 1..] {
            if a.0 < b.1 && b.0 < a.1 {
                assert_ne!(a.2, b.2, "overlapping trials shared a GPU: {spans:?}");
            }
        }
    }
    for r in via_ray.iter().filter(|r| r["stage"] == "eval") {
        let from = std::fs::read_to_string(dir.join(format!(
            "viaray/rayexp/trials/{}/out/from",
            r["id"].as_str().unwrap()
        )))
        .unwrap();
        assert_eq!(from.trim(), r["parent"].as_str().unwrap());
    }
    jobs
}

/// Trials that print tens of MB between metrics reported at a high rate:
/// every metric reaches the driver, none twice, however the log's bytes are
/// cut on their way (the Jobs API streams it in chunks that end mid-line).
#[test]
fn a_loud_trial_loses_no_metric_through_ray() {
    let Some(ray) = LocalRay::start(6393, 8293) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("loud.yaml");
    // 4,000 steps, each a metric line and 6 KiB of output in lines of
    // uneven length: about 24 MiB per trial.
    std::fs::write(
        &config,
        r#"!Experiment
name: loud
save_path: ./runs
pipeline:
  train: !Stage
    run: |-
      python3 -u -c "
      import json, os, sys, time
      m = open(os.environ['FLAMBE_METRICS'], 'a')
      for step in range(1, 4001):
          for k in range(6):
              sys.stdout.write('x' * (700 + 97 * ((step + k) % 7)) + ' @@flambe not a message ' + str(step) + '\n')
          m.write(json.dumps({'step': step, 'v': step * {k}}) + '\n'); m.flush()
          if step % 400 == 0: time.sleep(0.3)
      "
    params:
      k: !g [1, 2]
    cpus: 1
    metric: v
    mode: max
"#,
    )
    .unwrap();
    // The driver talks to Ray through a proxy that counts what Ray sends.
    let (proxy, from_ray) = counting_proxy(&ray.dashboard);
    let out = Command::cargo_bin("flambe")
        .unwrap()
        .arg(&config)
        .args(["--ray-address", &proxy, "--no-site"])
        .env("RAY_AUTH_TOKEN_PATH", &ray.token_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Each log is read once (about 24 MiB a trial), not again at every poll.
    let log_bytes: u64 = ["train-000", "train-001"]
        .iter()
        .map(|t| {
            std::fs::metadata(dir.path().join(format!("runs/loud/trials/{t}/stdout.log")))
                .unwrap()
                .len()
        })
        .sum();
    let received = from_ray.load(std::sync::atomic::Ordering::SeqCst);
    eprintln!("received {received} bytes from Ray for {log_bytes} bytes of logs");
    assert!(log_bytes > 40 << 20, "the trials printed {log_bytes} bytes");
    assert!(
        received < log_bytes * 5 / 4,
        "the driver received {} MiB from Ray for {} MiB of logs",
        received >> 20,
        log_bytes >> 20
    );
    let db = dir.path().join("runs/loud/state.db");
    let conn = rusqlite::Connection::open(db).unwrap();
    for (trial, k) in [("train-000", 1i64), ("train-001", 2)] {
        let (count, distinct, sum): (i64, i64, i64) = conn
            .query_row(
                "SELECT COUNT(*), COUNT(DISTINCT step), CAST(SUM(value) AS INTEGER) FROM metrics WHERE trial = ?1",
                [trial],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(
            (count, distinct, sum),
            (4000, 4000, k * 4000 * 4001 / 2),
            "{trial}: every metric once"
        );
    }
    let text = std::fs::read_to_string(dir.path().join("runs/loud/results.json")).unwrap();
    let rows: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r["status"] == "succeeded"), "{rows:?}");
}

/// A TCP proxy on loopback to `target` (`http://127.0.0.1:PORT`): its URL,
/// and the count of bytes that came back from the target.
fn counting_proxy(target: &str) -> (String, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let target = target.trim_start_matches("http://").to_string();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicU64::new(0));
    let counted = count.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = std::net::TcpStream::connect(&target) else {
                continue;
            };
            let (mut c_read, mut s_write) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_read, &mut s_write);
                let _ = s_write.shutdown(std::net::Shutdown::Write);
            });
            let (mut s_read, mut c_write) = (server, client);
            let counted = counted.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match std::io::Read::read(&mut s_read, &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            counted.fetch_add(n as u64, Ordering::SeqCst);
                            if std::io::Write::write_all(&mut c_write, &buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = c_write.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (url, count)
}
