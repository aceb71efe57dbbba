//! `flambe experiment.yaml --cluster cluster.yaml` end to end: test hosts
//! in network namespaces (orchestrator + 2 factories with 2 fake GPUs each),
//! Ray 2.60 from PyPI linked into each host's ~/.flambe/ray, the driver
//! detached on the orchestrator submitting trials through the Ray Jobs API.
//! Root only; skipped with a reason otherwise, a failure under CI=true.

mod common;

use common::essence;
use common::ray_cluster::RayCluster;

use flambe_testbed::missing_prerequisite;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn experiment(dir: &Path, save: &str) -> PathBuf {
    let trainer = dir.join("code/train.sh");
    std::fs::create_dir_all(trainer.parent().unwrap()).unwrap();
    std::fs::write(
        &trainer,
        "#!/bin/sh\ndate +%s.%N > $FLAMBE_OUT/start\n\
         # Wait (bounded) until another trial runs on this host too, so GPU trials overlap by design.\n\
         rv=$FLAMBE_OUT/../../../.rendezvous; mkdir -p $rv; touch $rv/$FLAMBE_TRIAL\n\
         for i in $(seq 1 600); do [ $(ls $rv | wc -l) -ge 2 ] && break; sleep 0.1; done; sleep 0.5\nfor step in 1 2 3; do echo \"{\\\"step\\\": $step, \\\"acc\\\": $(python3 -c \"print($1 * $step + $2)\")}\" >> $FLAMBE_METRICS; done\nhostname -I | cut -d' ' -f1 > $FLAMBE_OUT/host\necho \"$CUDA_VISIBLE_DEVICES\" > $FLAMBE_OUT/gpu\ndate +%s.%N > $FLAMBE_OUT/end\n",
    )
    .unwrap();
    let config = dir.join(format!("{save}.yaml"));
    std::fs::write(
        &config,
        format!(
            r#"!Experiment
name: remote
save_path: ./{save}
resources:
  code: ./code
seed: 5
pipeline:
  train: !Stage
    run: sh {{resources.code}}/train.sh {{lr}} {{w}}
    params:
      lr: !g [0.1, 0.2, 0.3, 0.4]
      w: !c [0.01, 0.02]
    gpus: 1
    metric: acc
    mode: max
    reduce: 2
  eval: !Stage
    run: |-
      echo "{{\"step\": 1, \"score\": $(python3 -c "print({{train.params.lr}} * 10)")}}" >> $FLAMBE_METRICS; cp {{train.out}}/host {{out}}/from-host
    metric: score
    mode: max
"#
        ),
    )
    .unwrap();
    config
}

#[test]
fn an_experiment_runs_on_the_cluster_like_it_runs_here() {
    let Some(rc) = RayCluster::new(
        "an_experiment_runs_on_the_cluster_like_it_runs_here",
        123,
        "rr",
        2,
        true,
    ) else {
        return;
    };
    let (bed, dir, cluster) = (&rc.bed, &rc.dir, &rc.cluster);
    let flambe = |args: &[&std::ffi::OsStr]| rc.flambe(args);

    let remote = experiment(dir.path(), "unused");
    let started = std::time::Instant::now();
    let (code, text) = flambe(&[
        remote.as_os_str(),
        "--cluster".as_ref(),
        cluster.as_os_str(),
    ]);
    assert_eq!(code, Some(0), "{text}");
    // Where the time went (shown with --nocapture; never asserted).
    let phases: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" in ") && (l.contains("ready") || l.contains("Ray up")))
        .collect();
    println!(
        "timings: {} | whole command {:.1}s",
        phases.join(" | "),
        started.elapsed().as_secs_f64()
    );
    assert!(text.contains("Ray up with 3 nodes"), "{text}");
    assert!(text.contains("Experiment `remote` finished"), "{text}");

    let pulled = dir.path().join("pulled");
    let (code, text) = flambe(&[
        "pull".as_ref(),
        "remote".as_ref(),
        "--cluster".as_ref(),
        cluster.as_os_str(),
        "--to".as_ref(),
        pulled.as_os_str(),
    ]);
    assert_eq!(code, Some(0), "{text}");
    let on_cluster: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(pulled.join("results.json")).unwrap())
            .unwrap();

    let local = experiment(dir.path(), "here");
    let (code, text) = flambe(&[
        local.as_os_str(),
        "--cpus".as_ref(),
        "2".as_ref(),
        "--gpus".as_ref(),
        "2".as_ref(),
        "--no-site".as_ref(),
    ]);
    assert_eq!(code, Some(0), "{text}");
    let here: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("here/remote/results.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        essence(&on_cluster),
        essence(&here),
        "same trials, parents, params, statuses and metrics"
    );

    // Trials ran on both factories (never the orchestrator), with GPUs from Ray,
    // and their outputs came back, so eval trials read their own ancestor's.
    let mut hosts = std::collections::BTreeSet::new();
    let mut spans = Vec::new();
    for r in on_cluster.iter().filter(|r| r["stage"] == "train") {
        let out = pulled
            .join("trials")
            .join(r["id"].as_str().unwrap())
            .join("out");
        let read = |f: &str| {
            std::fs::read_to_string(out.join(f))
                .unwrap()
                .trim()
                .to_string()
        };
        let (host, gpu) = (read("host"), read("gpu"));
        assert!(gpu == "0" || gpu == "1", "{gpu}");
        let start: f64 = read("start").parse().unwrap();
        let end: f64 = read("end").parse().unwrap();
        spans.push((host.clone(), gpu, start, end));
        hosts.insert(host);
    }
    // Trials that ran at the same time on the same factory had distinct GPUs.
    let mut overlapping = 0;
    for (i, a) in spans.iter().enumerate() {
        for b in &spans[i + 1..] {
            if a.0 == b.0 && a.2 < b.3 && b.2 < a.3 {
                overlapping += 1;
                assert_ne!(a.1, b.1, "concurrent trials on {} shared GPU {}", a.0, a.1);
            }
        }
    }
    assert!(
        overlapping > 0,
        "no two GPU trials overlapped on a factory: {spans:?}"
    );
    let expected: std::collections::BTreeSet<String> =
        [bed.addr(2).to_string(), bed.addr(3).to_string()].into();
    assert_eq!(hosts, expected, "trials ran on both factories");
    for r in on_cluster.iter().filter(|r| r["stage"] == "eval") {
        let parent = r["parent"].as_str().unwrap();
        let from = std::fs::read_to_string(
            pulled
                .join("trials")
                .join(r["id"].as_str().unwrap())
                .join("out/from-host"),
        )
        .unwrap();
        let parent_host =
            std::fs::read_to_string(pulled.join("trials").join(parent).join("out/host")).unwrap();
        assert_eq!(from, parent_host, "eval read its own ancestor's output");
    }

    // Running the finished experiment again resumes it: nothing to do.
    let (code, text) = flambe(&[
        remote.as_os_str(),
        "--cluster".as_ref(),
        cluster.as_os_str(),
    ]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("finished"), "{text}");

    // Its report site, served from the orchestrator through a tunnel.
    use std::io::BufRead;
    let mut site = std::process::Command::new(assert_cmd::cargo::cargo_bin("flambe"))
        .env("FLAMBE_HOME", dir.path().join("home"))
        .args(["site", "remote", "--cluster"])
        .arg(cluster)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let line = std::io::BufReader::new(site.stdout.take().unwrap())
        .lines()
        .next()
        .unwrap()
        .unwrap();
    let addr = line
        .trim_start_matches("Report site: http://")
        .trim_end_matches('/')
        .to_string();
    let mut body = String::new();
    for _ in 0..100 {
        if let Some((_, bytes)) = common::try_get(&addr, "/api/v1/experiment") {
            body = String::from_utf8_lossy(&bytes).into_owned();
            if body.contains("\"status\":\"finished\"") {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // SAFETY: interrupting our own child, as Ctrl-C would.
    unsafe { libc::kill(site.id() as i32, libc::SIGINT) };
    site.wait().unwrap();
    assert!(
        body.contains("\"name\":\"remote\"") && body.contains("\"status\":\"finished\""),
        "{body}"
    );

    // A script runs on one factory with its resources uploaded, and its
    // output comes home. It checks a secret given as `!env` (against the
    // reversed value, so that the check itself does not hold the secret).
    let secret = "tok-91c2e4d07b";
    let reversed: String = secret.chars().rev().collect();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/words.txt"), "a b c\n").unwrap();
    let script = dir.path().join("script.yaml");
    std::fs::write(
        &script,
        format!("!Script\nname: wc\nsave_path: ./scripted\nresources:\n  data: ./data\nenv:\n  TOKEN: !env FLAMBE_TEST_TOKEN\nrun: |-\n  test \"$(printf %s \"$TOKEN\" | rev)\" = {reversed} && wc -w < {{resources.data}}/words.txt > {{out}}/count && hostname -I | cut -d' ' -f1 > {{out}}/host\n"),
    )
    .unwrap();
    let script_args = [
        script.as_os_str(),
        "--cluster".as_ref(),
        cluster.as_os_str(),
    ];
    let (code, text) = flambe(&script_args);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("`!env FLAMBE_TEST_TOKEN` reads the environment variable `FLAMBE_TEST_TOKEN`, which is not set"),
        "{text}"
    );
    assert!(
        !bed.home(1).join(".flambe/experiments/wc").exists(),
        "nothing was sent"
    );
    let (code, printed) = rc.flambe_with(&script_args, &[("FLAMBE_TEST_TOKEN", secret)]);
    assert_eq!(code, Some(0), "{printed}");
    assert!(printed.contains("Script `wc` succeeded"), "{printed}");
    let out = dir.path().join("scripted/wc/trials/wc-000/out");
    assert_eq!(
        std::fs::read_to_string(out.join("count")).unwrap().trim(),
        "3"
    );
    let host = std::fs::read_to_string(out.join("host")).unwrap();
    assert!(
        expected.contains(host.trim()),
        "ran on a factory, not {host}"
    );

    // The secret is nowhere but in the orchestrator's 0600 secrets file:
    // not in what flambe printed, nor in any file here (results, FLAMBE_HOME)
    // or on any host (homes and /tmp, Ray's logs included).
    assert!(!printed.contains(secret), "{printed}");
    let mut found = common::files_containing(dir.path(), secret);
    found.extend(common::files_containing(&bed.home(1).join("../.."), secret));
    let secrets_file = bed.home(1).join(".flambe/experiments/wc/secrets.json");
    assert_eq!(
        found,
        vec![
            bed.home(1)
                .join("../..")
                .join("h1/home/.flambe/experiments/wc/secrets.json")
        ],
        "the secret is in these files"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&secrets_file)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");

    // PBT on the cluster: the engine on the orchestrator copies a donor's
    // checkpoint (the wrapper's mirror of it) and the clone's next attempt,
    // on whichever factory, fetches it before it starts.
    let config = common::pbt::toy_config(dir.path(), "pbt", common::pbt::PBT_AND_EVAL);
    let (code, text) = flambe(&[
        config.as_os_str(),
        "--cluster".as_ref(),
        cluster.as_os_str(),
    ]);
    assert_eq!(code, Some(0), "{text}");
    let pulled = dir.path().join("pulled-pbt");
    let (code, text) = flambe(&[
        "pull".as_ref(),
        "pbt".as_ref(),
        "--cluster".as_ref(),
        cluster.as_os_str(),
        "--to".as_ref(),
        pulled.as_os_str(),
    ]);
    assert_eq!(code, Some(0), "{text}");
    let rows: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(pulled.join("results.json")).unwrap())
            .unwrap();
    let exploits =
        common::pbt::assert_clones_went_on_from_their_donors(&rows, &pulled.join("trials"), false);
    assert!(exploits >= 1, "PBT changed no trial on the cluster");

    // Grown by one learning rate, the finished experiment runs on the
    // cluster only what is new: that rate's trial and its eval.
    let grown = std::fs::read_to_string(&config)
        .unwrap()
        .replace("0.4, 0.8]", "0.4, 0.8, 0.6]");
    std::fs::write(&config, grown).unwrap();
    let (code, text) = flambe(&[
        config.as_os_str(),
        "--cluster".as_ref(),
        cluster.as_os_str(),
    ]);
    assert_eq!(code, Some(0), "{text}");
    let pulled = dir.path().join("pulled-grown");
    let (code, text) = flambe(&[
        "pull".as_ref(),
        "pbt".as_ref(),
        "--cluster".as_ref(),
        cluster.as_os_str(),
        "--to".as_ref(),
        pulled.as_os_str(),
    ]);
    assert_eq!(code, Some(0), "{text}");
    let after: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(pulled.join("results.json")).unwrap())
            .unwrap();
    let fields = |r: &Value| {
        (
            r["attempts"].clone(),
            r["final_metric"].clone(),
            r["duration_s"].clone(),
        )
    };
    for before in &rows {
        let now = after
            .iter()
            .find(|r| r["id"] == before["id"])
            .expect("kept");
        assert_eq!(fields(now), fields(before), "{} ran again", before["id"]);
    }
    let new: Vec<(&str, &Value)> = after
        .iter()
        .filter(|r| !rows.iter().any(|b| b["id"] == r["id"]))
        .map(|r| (r["id"].as_str().unwrap(), &r["status"]))
        .collect();
    let succeeded = Value::from("succeeded");
    assert_eq!(
        new,
        [("train-006", &succeeded), ("eval-006", &succeeded)],
        "{after:?}"
    );
}

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

/// A pure-Python wheel `helper_pkg 1.0`, made by hand (a wheel is a zip).
fn write_helper_wheel(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let script = r#"
import sys, zipfile
d = "helper_pkg-1.0.dist-info"
with zipfile.ZipFile(sys.argv[1] + "/helper_pkg-1.0-py3-none-any.whl", "w") as z:
    z.writestr("helper_pkg.py", "GREETING = 'hi-from-helper'\n")
    z.writestr(d + "/METADATA", "Metadata-Version: 2.1\nName: helper_pkg\nVersion: 1.0\n")
    z.writestr(d + "/WHEEL", "Wheel-Version: 1.0\nGenerator: flambe-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    z.writestr(d + "/RECORD", "helper_pkg.py,,\n" + d + "/METADATA,,\n" + d + "/WHEEL,,\n" + d + "/RECORD,,\n")
"#;
    let ok = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(dir)
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn extensions_are_installed_on_every_host_and_trials_use_them() {
    let test = "extensions_are_installed_on_every_host_and_trials_use_them";
    let Some(rc) = RayCluster::new(test, 126, "ext", 2, false) else {
        return;
    };
    let (bed, dir, cluster) = (&rc.bed, &rc.dir, &rc.cluster);
    let tools = flambe_testbed::tools_dir().display().to_string();
    if !Path::new(&format!("{tools}/wheels")).exists() {
        missing_prerequisite(
            test,
            &format!("needs {tools}/wheels (scripts/test.sh fills it)"),
        );
        return;
    }
    // The hosts have no network: pip there uses no index, and finds wheels in
    // the shared tools folder and in the host's own ~/wheels.
    for n in 1..=3 {
        let home = bed.home(n);
        write_helper_wheel(&home.join("wheels"));
        std::fs::create_dir_all(home.join(".config/pip")).unwrap();
        std::fs::write(
            home.join(".config/pip/pip.conf"),
            format!("[global]\nno-index = true\nfind-links =\n    {tools}/wheels\n    /home/{}/wheels\n", bed.user),
        )
        .unwrap();
        for path in [home.join("wheels"), home.join(".config")] {
            let ok = std::process::Command::new("chown")
                .args(["-R", &bed.user])
                .arg(path)
                .status()
                .unwrap();
            assert!(ok.success());
        }
    }
    common::write_package(dir.path(), "my_models", "v1");
    let config = dir.path().join("exta.yaml");
    std::fs::write(
        &config,
        "my_models: ./my_models\nhelper: helper_pkg==1.0\n---\n!Experiment\nname: exta\npipeline:\n  s: !Stage\n    run: |-\n      python -c \"import my_models, helper_pkg, sys; print(my_models.MARK, helper_pkg.GREETING, sys.prefix)\" > {out}/seen && hostname -I | cut -d' ' -f1 > {out}/host\n    params:\n      i: !g [1, 2, 3, 4]\n",
    )
    .unwrap();
    let args = [
        config.as_os_str(),
        "--cluster".as_ref(),
        cluster.as_os_str(),
    ];
    let pulled = dir.path().join("pulled");
    let pull = || {
        let _ = std::fs::remove_dir_all(&pulled);
        let (code, text) = rc.flambe(&[
            "pull".as_ref(),
            "exta".as_ref(),
            "--cluster".as_ref(),
            cluster.as_os_str(),
            "--to".as_ref(),
            pulled.as_os_str(),
        ]);
        assert_eq!(code, Some(0), "{text}");
        (1..=4)
            .map(|i| {
                let out = pulled.join(format!("trials/s-00{}/out", i - 1));
                (
                    std::fs::read_to_string(out.join("seen")).unwrap(),
                    std::fs::read_to_string(out.join("host"))
                        .unwrap()
                        .trim()
                        .to_string(),
                )
            })
            .collect::<Vec<_>>()
    };

    let (code, text) = rc.flambe(&args);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("installed on ext_orchestrator"), "{text}");
    let seen = pull();
    let hosts: std::collections::BTreeSet<&str> = seen.iter().map(|(_, h)| h.as_str()).collect();
    assert_eq!(
        hosts,
        [bed.addr(2), bed.addr(3)].into(),
        "trials ran on both factories"
    );
    for (line, _) in &seen {
        assert!(
            line.starts_with(&format!(
                "v1 hi-from-helper /home/{}/.flambe/envs/",
                bed.user
            )),
            "the trial's python is the extensions' venv, with the local package: {line}"
        );
    }
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(pulled.join("extensions.json")).unwrap())
            .unwrap();
    let installed = record["installed"].as_array().unwrap();
    // pip lists names normalized or not, depending on the build backend.
    let normal = |v: &Value| v.as_str().unwrap_or("").to_lowercase().replace('_', "-");
    for (name, version) in [("my-models", "0.3"), ("helper-pkg", "1.0")] {
        assert!(
            installed
                .iter()
                .any(|p| normal(&p["name"]) == name && p["version"] == version),
            "{record}"
        );
    }

    // Unchanged: nothing installed anywhere.
    let (code, text) = rc.flambe(&args);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("up to date on every host, nothing installed"),
        "{text}"
    );

    // One file changed locally: installed again, and the trials see it.
    common::write_package(dir.path(), "my_models", "v2");
    let forced = [args[0], args[1], args[2], "--force".as_ref()];
    let (code, text) = rc.flambe(&forced);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("installed on"), "{text}");
    for (line, _) in pull() {
        assert!(line.starts_with("v2 "), "{line}");
    }
    // Two extension sets, two environments, each whole.
    let factory_envs = bed.home(2).join(".flambe/envs");
    let ready: Vec<PathBuf> = std::fs::read_dir(&factory_envs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join(".ready").exists())
        .collect();
    assert_eq!(ready.len(), 2, "{ready:?}");
    let marks: std::collections::BTreeSet<String> = ready
        .iter()
        .map(|p| std::fs::read_to_string(p.join("src/my_models/my_models.py")).unwrap())
        .collect();
    assert_eq!(
        marks,
        ["MARK = \"v1\"\n".to_string(), "MARK = \"v2\"\n".to_string()].into()
    );

    // A broken extension fails before any trial, naming host, extension and error.
    std::fs::create_dir(dir.path().join("broken")).unwrap();
    std::fs::write(
        dir.path().join("broken/setup.py"),
        "raise SystemExit('broken on purpose')\n",
    )
    .unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "broken: ./broken\n---\n!Experiment\nname: extbad\npipeline:\n  s: !Stage\n    run: echo never\n",
    )
    .unwrap();
    let (code, text) = rc.flambe(&[bad.as_os_str(), "--cluster".as_ref(), cluster.as_os_str()]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("extensions failed to install on 3 host(s)"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "on ext_factory_0 ({}), extension `broken`",
            bed.addr(2)
        )),
        "{text}"
    );
    assert!(text.contains("broken on purpose"), "{text}");
    assert!(
        !bed.home(1).join(".flambe/experiments/extbad/runs").exists(),
        "no trial started"
    );
}
