//! One experiment at a time on a cluster: detach, attach, --force, and a
//! factory cut off mid-stage.

use super::*;

fn slow_experiment(dir: &Path, name: &str, seconds: u32) -> PathBuf {
    let config = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &config,
        format!(
            "!Experiment\nname: {name}\npipeline:\n  s: !Stage\n    run: |-\n      sleep {seconds}; echo '{{\"step\": 1, \"a\": {{i}}}}' >> $FLAMBE_METRICS\n    params:\n      i: !g [1, 2]\n    metric: a\n    mode: max\n"
        ),
    )
    .unwrap();
    config
}

#[test]
fn one_experiment_at_a_time_detach_attach_and_force() {
    let Some(rc) = RayCluster::new(
        "one_experiment_at_a_time_detach_attach_and_force",
        124,
        "busy",
        1,
        false,
    ) else {
        return;
    };
    let (bed, dir, cluster) = (&rc.bed, &rc.dir, &rc.cluster);
    let home = dir.path().join("home");
    let flambe = |args: &[&std::ffi::OsStr]| rc.flambe(args);
    use std::io::BufRead;
    // Start a slow experiment, wait until it runs, then kill the laptop side.
    let start_and_leave = |config: &Path, check_tensorboard: bool| {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("flambe"))
            .env("FLAMBE_HOME", &home)
            .arg(config)
            .arg("--cluster")
            .arg(cluster)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = Vec::new();
        loop {
            let Some(Ok(line)) = lines.next() else {
                panic!(
                    "flambe ended before the experiment ran:\n{}",
                    seen.join("\n")
                )
            };
            if line.starts_with("[running]") {
                break;
            }
            seen.push(line);
        }
        if check_tensorboard {
            // TensorBoard on the orchestrator, through a tunnel of its own,
            // serves this experiment's folder (it takes a while to start).
            let url = seen
                .iter()
                .find_map(|l| l.strip_prefix("TensorBoard: http://"))
                .unwrap_or_else(|| panic!("no TensorBoard URL shown:\n{}", seen.join("\n")));
            let addr = url.split('/').next().unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(50);
            let body = loop {
                if let Some((200, bytes)) = common::try_get(addr, "/data/environment") {
                    break String::from_utf8_lossy(&bytes).into_owned();
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "TensorBoard never answered on {addr}"
                );
                std::thread::sleep(std::time::Duration::from_millis(500));
            };
            assert!(body.contains("runs/second"), "{body}");
        }
        child.kill().unwrap();
        child.wait().unwrap();
    };

    let first = slow_experiment(dir.path(), "first", 6);
    start_and_leave(&first, false);
    let (code, text) = flambe(&[
        "attach".as_ref(),
        "first".as_ref(),
        "--cluster".as_ref(),
        cluster.as_os_str(),
    ]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("Experiment `first` finished"), "{text}");

    let second = slow_experiment(dir.path(), "second", 60);
    start_and_leave(&second, true);
    let third = slow_experiment(dir.path(), "third", 1);
    let (code, text) = flambe(&[third.as_os_str(), "--cluster".as_ref(), cluster.as_os_str()]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("the cluster is busy: experiment `second` has run there since"),
        "{text}"
    );
    assert!(text.contains("--force"), "{text}");

    let (code, text) = flambe(&[
        third.as_os_str(),
        "--cluster".as_ref(),
        cluster.as_os_str(),
        "--force".as_ref(),
    ]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("Experiment `third` finished"), "{text}");
    let status = std::fs::read_to_string(
        bed.home(1)
            .join(".flambe/experiments/second/runs/second/status"),
    )
    .unwrap();
    assert_eq!(
        status.trim(),
        "interrupted",
        "--force stopped the running experiment"
    );

    // A stage where no trial succeeds fails the experiment with exit 3, on a
    // cluster as here, whether followed from the start or attached after.
    let hopeless = dir.path().join("hopeless.yaml");
    std::fs::write(
        &hopeless,
        "!Experiment\nname: hopeless\nmax_failures: 0\npipeline:\n  s: !Stage\n    run: exit 1\n    params:\n      i: !g [1, 2]\n  t: !Stage\n    run: echo never\n",
    )
    .unwrap();
    let (code, text) = flambe(&[
        hopeless.as_os_str(),
        "--cluster".as_ref(),
        cluster.as_os_str(),
    ]);
    assert_eq!(code, Some(3), "{text}");
    assert!(text.contains("no trial succeeded in stage s, t"), "{text}");
    let (code, text) = flambe(&[
        "attach".as_ref(),
        "hopeless".as_ref(),
        "--cluster".as_ref(),
        cluster.as_os_str(),
    ]);
    assert_eq!(code, Some(3), "{text}");
}

#[test]
fn trials_on_a_factory_cut_off_mid_stage_are_retried_on_the_other() {
    let Some(rc) = RayCluster::new(
        "trials_on_a_factory_cut_off_mid_stage_are_retried_on_the_other",
        125,
        "cut",
        2,
        false,
    ) else {
        return;
    };
    let config = rc.dir.path().join("cut.yaml");
    std::fs::write(
        &config,
        "!Experiment\nname: cutexp\nmax_failures: 2\npipeline:\n  s: !Stage\n    run: |-\n      hostname -I | cut -d' ' -f1 >> $HOME/started-{trial}; sleep 15; echo '{\"step\": 1, \"a\": {i}}' >> $FLAMBE_METRICS\n    params:\n      i: !g [1, 2, 3, 4]\n    cpus: 1\n    metric: a\n    mode: max\n",
    )
    .unwrap();
    let run = std::process::Command::new(assert_cmd::cargo::cargo_bin("flambe"))
        .env("FLAMBE_HOME", rc.dir.path().join("home"))
        .arg(&config)
        .arg("--cluster")
        .arg(&rc.cluster)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until every trial has started somewhere, then cut factory 1 (host 3) off.
    let started = |n: u32| -> usize {
        std::fs::read_dir(rc.bed.home(n))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("started-"))
                    .count()
            })
            .unwrap_or(0)
    };
    let begin = std::time::Instant::now();
    while started(2) + started(3) < 4 {
        assert!(
            begin.elapsed() < std::time::Duration::from_secs(180),
            "the trials never all started"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(
        started(3) > 0,
        "some trials run on the factory about to be cut"
    );
    rc.bed.cut(3);
    let out = run.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("Experiment `cutexp` finished"), "{text}");
    let pulled = rc.dir.path().join("pulled");
    let (code, text) = rc.flambe(&[
        "pull".as_ref(),
        "cutexp".as_ref(),
        "--cluster".as_ref(),
        rc.cluster.as_os_str(),
        "--to".as_ref(),
        pulled.as_os_str(),
    ]);
    assert_eq!(code, Some(0), "{text}");
    let rows: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(pulled.join("results.json")).unwrap())
            .unwrap();
    assert!(rows.iter().all(|r| r["status"] == "succeeded"), "{rows:?}");
    assert!(
        rows.iter().any(|r| r["attempts"].as_u64() >= Some(2)),
        "the cut factory's trials were retried: {rows:?}"
    );
}
