//! The command line as a user meets it: examples, --version, --help,
//! completions, and dry runs that change nothing.

use assert_cmd::Command;
use std::path::Path;

fn flambe() -> Command {
    Command::cargo_bin("flambe").expect("the flambe binary is built")
}

fn stdout_of(cmd: &mut Command) -> String {
    let out = cmd.output().expect("flambe runs");
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn examples() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// flambe with a HOME that holds the key files the examples name: the
/// loader checks that `key:` is a private key, as it would for a user.
fn flambe_with_keys() -> (Command, tempfile::TempDir) {
    let home = tempfile::tempdir().unwrap();
    let ssh = home.path().join(".ssh");
    std::fs::create_dir(&ssh).unwrap();
    let fake = Path::new(env!("CARGO_MANIFEST_DIR")).join("../flambe-config/tests/bad/fake_key");
    for name in ["id_ed25519", "my-keypair.pem"] {
        std::fs::copy(&fake, ssh.join(name)).unwrap();
    }
    let mut cmd = flambe();
    cmd.env("HOME", home.path());
    (cmd, home)
}

#[test]
fn every_example_dry_runs_and_prints_its_plan() {
    let mut seen = 0;
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let (mut cmd, _home) = flambe_with_keys();
        let out = stdout_of(cmd.arg(&path).arg("--dry-run"));
        assert!(
            out.contains("Dry run: nothing was run, created or changed."),
            "{out}"
        );
        seen += 1;
    }
    assert!(seen >= 4);
}

#[test]
fn quickstart_plan_lists_its_trials_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("exp.yaml");
    std::fs::write(
        &cfg,
        "!Experiment\nname: q\nsave_path: ./out\nseed: 3\npipeline:\n  train: !Stage\n    run: echo {lr} {d}\n    params:\n      lr: !g [0.1, 0.2, 0.3]\n      d: !s [0, 10, 2]\n      k: !c [a, b]\n    samples: 2\n    metric: acc\n    mode: max\n    reduce: 2\n  eval: !Stage\n    run: echo {train.out}\n    params:\n      t: !g [1, 2]\n",
    )
    .unwrap();
    let out = stdout_of(flambe().arg(&cfg).arg("--dry-run"));
    assert!(
        out.contains("stage train: 12 trials (12 variants), 1 CPU each"),
        "{out}"
    );
    assert!(
        out.contains("stage eval: 4 trials (2 surviving trials × 2 variants)"),
        "{out}"
    );
    assert!(out.contains("train-011"), "{out}");
    assert!(out.contains("16 trials in all."), "{out}");
    // Same seed, same plan.
    assert_eq!(out, stdout_of(flambe().arg(&cfg).arg("--dry-run")));
    assert!(
        !dir.path().join("out").exists(),
        "a dry run created the results folder"
    );
}

#[test]
fn cluster_dry_runs_list_hosts_and_instances() {
    let (mut cmd, _home) = flambe_with_keys();
    let ssh = stdout_of(
        cmd.arg(examples().join("ssh-cluster.yaml"))
            .arg("--dry-run"),
    );
    assert!(ssh.contains("lab_factory_1"), "{ssh}");
    assert!(ssh.contains("203.0.113.12 (private 10.0.0.12)"), "{ssh}");
    let (mut cmd, _home) = flambe_with_keys();
    let aws = stdout_of(
        cmd.arg(examples().join("aws-cluster.yaml"))
            .arg("--dry-run"),
    );
    assert!(aws.contains("would create 3 instances"), "{aws}");
    assert!(aws.contains("g4dn.xlarge"), "{aws}");
    assert!(aws.contains("Cluster-Name=sst-cluster"), "{aws}");
    let (mut cmd, _home) = flambe_with_keys();
    let both = stdout_of(
        cmd.arg(examples().join("quickstart.yaml"))
            .arg("--cluster")
            .arg(examples().join("ssh-cluster.yaml"))
            .arg("--dry-run"),
    );
    assert!(
        both.contains("SSH cluster `lab`") && both.contains("Experiment `quickstart`"),
        "{both}"
    );
}

#[test]
fn integers_written_as_floats_load_as_integers() {
    // Flambé's own AWS example writes `volume_size: 100.`.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(examples().join("aws-cluster.yaml"))
        .unwrap()
        .lines()
        .map(|l| match l.split_once(':') {
            Some(("volume_size", _)) => "volume_size: 100.".to_string(),
            Some(("factories_num", _)) => "factories_num: 2.0".to_string(),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let cfg = dir.path().join("aws.yaml");
    std::fs::write(&cfg, text).unwrap();
    let (mut cmd, _home) = flambe_with_keys();
    let out = stdout_of(cmd.arg(&cfg).arg("--dry-run"));
    assert!(out.contains("would create 3 instances"), "{out}");
    assert!(out.contains("100 GB"), "{out}");
}

#[test]
fn cluster_flag_must_name_a_cluster() {
    let out = flambe()
        .arg(examples().join("quickstart.yaml"))
        .arg("--cluster")
        .arg(examples().join("script.yaml"))
        .arg("--dry-run")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds a !Script, not a cluster"));
}

#[test]
fn version_names_the_build() {
    let out = stdout_of(flambe().arg("--version"));
    assert!(
        out.starts_with(&format!("flambe {} (", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    assert!(out.trim_end().ends_with(')'), "{out}");
}

#[test]
fn help_lists_subcommands_and_no_args_shows_help() {
    let help = stdout_of(flambe().arg("--help"));
    assert!(help.contains("completions"), "{help}");
    assert!(
        help.contains("--dry-run") && help.contains("--cluster"),
        "{help}"
    );
    let bare = flambe().output().unwrap();
    assert_eq!(bare.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bare.stderr).contains("Usage"));
}

#[test]
fn completions_are_generated() {
    let bash = stdout_of(flambe().args(["completions", "bash"]));
    assert!(bash.contains("_flambe"), "{bash}");
}
