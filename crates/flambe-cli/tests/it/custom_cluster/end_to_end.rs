//! A `!CommandCluster` end to end: its `up` script starts three test hosts
//! (network namespaces, root only) and prints them; flambe brings them up
//! as a cluster, runs a two-stage experiment there to the same winners as
//! here, and `cluster down` runs the `down` script, which removes them.

use super::*;
use crate::common::essence;
use serde_json::Value;

/// The test bed the scripts make (and the guard removes, whatever happens).
const BED: u32 = 171;

struct BedGuard;

impl Drop for BedGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(testbed_script())
            .args(["down", &BED.to_string()])
            .output();
    }
}

fn testbed_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/testbed.sh")
}

fn experiment(dir: &Path, save: &str) -> PathBuf {
    let config = dir.join(format!("{save}.yaml"));
    std::fs::write(
        &config,
        format!(
            r#"!Experiment
name: custom
save_path: ./{save}
pipeline:
  train: !Stage
    run: |-
      for step in 1 2 3; do echo "{{\"step\": $step, \"acc\": $(python3 -c "print({{lr}} * $step)")}}" >> $FLAMBE_METRICS; done; hostname -I | cut -d' ' -f1 > {{out}}/host
    params:
      lr: !g [0.1, 0.4, 0.2, 0.3]
    metric: acc
    mode: max
    reduce: 2
  eval: !Stage
    run: |-
      echo "{{\"step\": 1, \"score\": $(python3 -c "print({{train.params.lr}} * 10)")}}" >> $FLAMBE_METRICS
    metric: score
    mode: max
"#
        ),
    )
    .unwrap();
    config
}

/// Run [`experiment`] on `cluster` and pull its results: (folder, rows).
pub(super) fn run_and_pull(d: &Dir, cluster: &Path, env: &[(&str, &str)]) -> (PathBuf, Vec<Value>) {
    let remote = experiment(d.path(), "there");
    let (code, out, err) = d.run(
        &[
            remote.as_os_str(),
            "--cluster".as_ref(),
            cluster.as_os_str(),
            "--no-site".as_ref(),
        ],
        env,
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let pulled = d.path().join("pulled");
    let (code, out, err) = d.run(
        &[
            "pull".as_ref(),
            "custom".as_ref(),
            "--cluster".as_ref(),
            cluster.as_os_str(),
            "--to".as_ref(),
            pulled.as_os_str(),
        ],
        env,
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let rows = serde_json::from_str(&std::fs::read_to_string(pulled.join("results.json")).unwrap())
        .unwrap();
    (pulled, rows)
}

/// Where the train stage's trials ran, as each wrote it.
pub(super) fn train_hosts(pulled: &Path, rows: &[Value]) -> std::collections::BTreeSet<String> {
    rows.iter()
        .filter(|r| r["stage"] == "train")
        .map(|r| {
            let id = r["id"].as_str().unwrap();
            std::fs::read_to_string(pulled.join("trials").join(id).join("out/host"))
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .collect()
}

#[test]
fn a_command_cluster_s_hosts_run_an_experiment_to_the_same_winners_and_go_down_with_it() {
    let test = "the !CommandCluster end-to-end test";
    if !flambe_testbed::available(test) {
        return;
    }
    let tools = flambe_testbed::tools_dir().display().to_string();
    let ray = format!("{tools}/ray");
    if !Path::new(&format!("{ray}/bin/ray")).exists() {
        flambe_testbed::missing_prerequisite(
            test,
            &format!("needs Ray in {ray} (scripts/test.sh installs it)"),
        );
        return;
    }
    let _guard = BedGuard;
    let d = Dir::new();
    let testbed = testbed_script();
    // `up` is idempotent: it makes the hosts once (giving them the user's
    // key, as a provisioning script would), then reports what it made.
    d.script(
        "up.sh",
        &format!(
            r#"set -e
echo "up $FLAMBE_CLUSTER_NAME $FLAMBE_FIELD_NODES" >> up.log
if [ ! -f hosts.json ]; then
  bash {testbed} up {BED} 3 >&2
  eval "$(bash {testbed} env {BED})"
  for n in 1 2 3; do home=TESTBED_HOME_$n; cat id_ed25519.pub >> "${{!home}}/.ssh/authorized_keys"; done
  printf '{{"protocol": 1, "orchestrator": {{"public": "%s", "name": "head"}}, "factories": [{{"public": "%s", "cpus": 2}}, {{"public": "%s", "cpus": 2}}]}}\n' \
    "$TESTBED_HOST_1" "$TESTBED_HOST_2" "$TESTBED_HOST_3" > hosts.json
fi
cat hosts.json
"#,
            testbed = testbed.display()
        ),
    );
    d.script(
        "down.sh",
        &format!(
            "set -e\nbash {} down {BED} >&2\nrm -f hosts.json\necho \"down $FLAMBE_CLUSTER_NAME\" >> down.log\n",
            testbed.display()
        ),
    );
    // TensorBoard for the driver on the orchestrator, where it looks for it
    // besides PATH (as the other cluster tests give it).
    let tensorboard = format!("{tools}/venv/bin/tensorboard");
    let tensorboard = if Path::new(&tensorboard).exists() {
        format!(" && mkdir -p ~/.flambe/bin && ln -sfn {tensorboard} ~/.flambe/bin/tensorboard")
    } else {
        String::new()
    };
    let user = std::env::var("TESTBED_USER").unwrap_or_else(|_| "flambetest".into());
    let cluster = d.file(
        "cluster.yaml",
        &format!(
            "!CommandCluster\nname: cmd\nusername: {user}\nkey: ./id_ed25519\nup: ./up.sh\ndown: ./down.sh\nstatus: cat hosts.json\nnodes: 2\nsetup_cmds:\n  - mkdir -p ~/.flambe && ln -sfn {ray} ~/.flambe/ray{tensorboard}\n"
        ),
    );

    let (code, out, err) = d.run(&[cluster.as_os_str()], &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("Hosts from the cluster's program"), "{out}");
    assert!(out.contains("head"), "the program's names are shown: {out}");
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(d.cluster_dir("cmd").join("cluster.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["provider"], "custom", "{state}");
    assert_eq!(state["hosts"].as_array().unwrap().len(), 3);
    // What the program said each host offers is what Ray will offer there.
    assert_eq!(state["hosts"][0].get("offered"), None, "{state}");
    assert_eq!(state["hosts"][1]["offered"]["cpus"], 2, "{state}");

    // The experiment on the cluster (up runs again: it is idempotent).
    let (pulled, there) = run_and_pull(&d, &cluster, &[]);
    let local = experiment(d.path(), "here");
    let (code, out, err) = d.run(&[local.as_os_str(), "--no-site".as_ref()], &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let here: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(d.path().join("here/custom/results.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(essence(&there), essence(&here), "same trials and winners");
    let hosts = train_hosts(&pulled, &there);
    assert!(
        hosts
            .iter()
            .all(|h| h.starts_with(&format!("10.213.{BED}."))),
        "trials ran on the program's hosts: {hosts:?}"
    );
    let ups = std::fs::read_to_string(d.path().join("up.log")).unwrap();
    assert!(ups.lines().count() >= 2, "up ran for each command: {ups}");
    assert!(
        ups.starts_with("up cmd 2\n"),
        "name and fields in the environment: {ups}"
    );

    // `cluster status` adds the program's own; `cluster down` calls `down`.
    let (code, out, err) = d.run(
        &["cluster".as_ref(), "status".as_ref(), "cmd".as_ref()],
        &[],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("\"name\": \"head\""), "{out}");
    let (code, out, err) = d.run(&["cluster".as_ref(), "down".as_ref(), "cmd".as_ref()], &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("the `down` command (`./down.sh`) released its hosts"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(d.path().join("down.log")).unwrap(),
        "down cmd\n"
    );
    assert!(!d.cluster_dir("cmd").exists(), "flambe forgot it");
    let namespaces = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&namespaces.stdout).contains(&format!("fb{BED}h")),
        "the hosts are gone"
    );
}
