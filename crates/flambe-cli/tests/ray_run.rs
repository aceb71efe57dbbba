//! Experiments whose trials run as Ray jobs, submitted through the real
//! Ray Jobs REST API of a one-node Ray (from PyPI, with 2 CPUs and 2 fake
//! GPUs) started by this test on loopback: same results as a local run,
//! distinct GPUs for concurrent GPU trials, lost jobs retried.

mod common;

use assert_cmd::Command;
use common::{essence, try_get_as};
use flambe_cluster::testbed::missing_prerequisite;
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
        let tools = flambe_cluster::testbed::tools_dir().display().to_string();
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
      if [ {{lr}} = 0.2 ] && [ ! -f $T/{save}-died ] && grep -q trial-run /proc/$PPID/cmdline; then touch $T/{save}-died; kill -9 $PPID; sleep 5; fi
      start=$(date +%s.%N); sleep 0.5
      for step in 1 2 3; do echo "{{\"step\": $step, \"acc\": $(python3 -c "print({{lr}} * $step + {{w}})")}}" >> $FLAMBE_METRICS; done
      echo "$start $(date +%s.%N) $CUDA_VISIBLE_DEVICES" >> $T/{save}-gpus
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

/// What must be equal between two runs of the same experiment.
#[test]
fn trials_run_as_ray_jobs_with_the_same_results_as_here() {
    let Some(ray) = LocalRay::start(6391, 8291) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let remote = write(dir.path(), "viaray");
    let out = Command::cargo_bin("flambe")
        .unwrap()
        .arg(&remote)
        .args(["--ray-address", &ray.dashboard, "--no-site"])
        .env("RAY_AUTH_TOKEN_PATH", &ray.token_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("lost: Ray reports the job FAILED"),
        "the killed job was reported lost: {stderr}"
    );

    let local = write(dir.path(), "here");
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

    let via_ray = results(dir.path(), "viaray");
    let here = results(dir.path(), "here");
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
    assert_eq!(
        jobs.len(),
        3 + 1 + 2,
        "3 train trials, one retry, 2 eval trials"
    );

    // GPU trials that overlapped in time had different GPUs from Ray.
    let spans: Vec<(f64, f64, String)> = std::fs::read_to_string(dir.path().join("viaray-gpus"))
        .unwrap()
        .lines()
        .map(|l| {
            let p: Vec<&str> = l.split_whitespace().collect();
            (
                p[0].parse().unwrap(),
                p[1].parse().unwrap(),
                p.get(2).unwrap_or(&"").to_string(),
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
        let from = std::fs::read_to_string(dir.path().join(format!(
            "viaray/rayexp/trials/{}/out/from",
            r["id"].as_str().unwrap()
        )))
        .unwrap();
        assert_eq!(from.trim(), r["parent"].as_str().unwrap());
    }
}
