//! `flambe experiment.yaml --cluster cluster.yaml` end to end: test hosts
//! in network namespaces (orchestrator + 2 factories with 2 fake GPUs each),
//! Ray 2.60 from PyPI linked into each host's ~/.flambe/ray, the driver
//! detached on the orchestrator submitting trials through the Ray Jobs API.
//! Root only; skipped with a reason otherwise, a failure under CI=true.

use crate::common;

use crate::common::essence;
use crate::common::ray_cluster::RayCluster;
use crate::common::wait_for;

use flambe_testbed::missing_prerequisite;
use serde_json::Value;
use std::path::{Path, PathBuf};

mod attach;
mod extensions;

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
    let (mut site, addr) = remote_site(dir.path(), cluster);
    let body = finished_experiment(&addr);
    // SAFETY: interrupting our own child, as Ctrl-C would.
    unsafe { libc::kill(site.id() as i32, libc::SIGINT) };
    site.wait().unwrap();
    assert!(
        body.contains("\"name\":\"remote\"") && body.contains("\"status\":\"finished\""),
        "{body}"
    );
    wait_for(
        "the site started on the orchestrator to end",
        THIRTY_S,
        || site_helpers(bed).is_empty(),
    );
    // Killed outright, it leaves nothing behind either: neither the site
    // it started on the orchestrator nor the tunnel here.
    let (mut site, addr) = remote_site(dir.path(), cluster);
    finished_experiment(&addr);
    assert_eq!(site_helpers(bed).len(), 1, "one site runs there");
    site.kill().unwrap(); // SIGKILL: no cleanup of its own
    site.wait().unwrap();
    wait_for(
        "the killed command's site and tunnel to end",
        THIRTY_S,
        || site_helpers(bed).is_empty() && std::net::TcpStream::connect(addr.as_str()).is_err(),
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

/// How long the remote site gets to come up or to go.
const THIRTY_S: std::time::Duration = std::time::Duration::from_secs(30);

/// `flambe site remote --cluster CLUSTER`, and the address it serves here.
fn remote_site(dir: &Path, cluster: &Path) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut site = std::process::Command::new(assert_cmd::cargo::cargo_bin("flambe"))
        .env("FLAMBE_HOME", dir.join("home"))
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
    (site, addr)
}

/// The experiment's summary from the site at `addr`, once it says finished.
fn finished_experiment(addr: &str) -> String {
    let mut body = String::new();
    wait_for(
        "the remote site to show the finished experiment",
        THIRTY_S,
        || {
            if let Some((_, bytes)) = common::try_get(addr, "/api/v1/experiment") {
                body = String::from_utf8_lossy(&bytes).into_owned();
            }
            body.contains("\"status\":\"finished\"")
        },
    );
    body
}

/// The `flambe site` processes running on the orchestrator.
fn site_helpers(bed: &flambe_testbed::Testbed) -> Vec<i32> {
    bed.processes_on(1)
        .into_iter()
        .filter(|(_, args)| {
            args.len() > 2
                && args[0].ends_with("flambe")
                && args[1] == "site"
                && args.iter().any(|a| a == "--site-port")
        })
        .map(|(pid, _)| pid)
        .collect()
}
