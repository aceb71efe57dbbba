//! Custom clusters: `!CommandCluster` and plugins (`!FooCluster` served by
//! `flambe-cluster-foo` on PATH), driven through the `flambe` binary. The
//! programs are real scripts; the hosts are test hosts in network
//! namespaces (root only), or loopback addresses nothing answers on.

use assert_cmd::Command;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

mod end_to_end;
mod plugins;
mod slurm;

/// A folder with a user key (as a user has one) and a FLAMBE_HOME.
struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id_ed25519");
        let made = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(made.success());
        Dir { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn key(&self) -> PathBuf {
        self.path().join("id_ed25519")
    }

    /// An executable script in the folder.
    fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, format!("#!/bin/bash\n{body}")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn flambe(&self) -> Command {
        let mut cmd = Command::cargo_bin("flambe").unwrap();
        cmd.env("FLAMBE_HOME", self.path().join("home"));
        cmd
    }

    /// Run flambe: (exit code, stdout, stderr).
    fn run(&self, args: &[&std::ffi::OsStr], env: &[(&str, &str)]) -> (i32, String, String) {
        let out = self
            .flambe()
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn cluster_dir(&self, name: &str) -> PathBuf {
        self.path().join("home/clusters").join(name)
    }
}

/// A `!CommandCluster` whose `up` is `up` (a shell command) and whose
/// `down` appends to `down.log`.
fn command_cluster(d: &Dir, name: &str, up: &str, extra: &str) -> PathBuf {
    d.file(
        "cluster.yaml",
        &format!(
            "!CommandCluster\nname: {name}\nusername: nobody\nkey: {}\nup: {up}\ndown: echo released $FLAMBE_CLUSTER_NAME >> down.log\n{extra}",
            d.key().display()
        ),
    )
}

/// Each wrong answer of `up` fails the bring-up with what was wrong and
/// where, names the command, and changes nothing.
#[test]
fn a_command_cluster_s_wrong_answers_say_what_and_where() {
    let d = Dir::new();
    let cases: &[(&str, &[&str])] = &[
        (
            "echo hello; echo world",
            &[
                "the `up` command (`echo hello; echo world`)",
                "not JSON",
                "its output begins:\nhello\nworld",
            ],
        ),
        (
            r#"echo '{"orchestrator": {"public": "127.0.0.2"}}'"#,
            &["at `factories`: missing"],
        ),
        (
            r#"echo '{"orchestrator": {"public": 7}, "factories": []}'"#,
            &["at `orchestrator.public`: expected a string, found a number"],
        ),
        (
            r#"echo '{"orchestrator": {"public": "127.0.0.2"}, "factories": [{"public": "127.0.0.3", "gpus": "two"}]}'"#,
            &["at `factories[0].gpus`: expected a whole number"],
        ),
        (
            r#"echo '{"protocol": 9, "orchestrator": {"public": "127.0.0.2"}, "factories": []}'"#,
            &["speaks protocol 9", "this flambe speaks protocol 1"],
        ),
        (
            "echo starting >&2; echo boom >&2; exit 3",
            &["failed (exit code 3)", "its stderr ends:\nstarting\nboom"],
        ),
    ];
    for (up, expected) in cases {
        let quoted = format!("'{}'", up.replace('\'', "''"));
        let config = command_cluster(&d, "wrong", &quoted, "");
        let (code, _, err) = d.run(&[config.as_os_str()], &[]);
        assert_ne!(code, 0, "{up}");
        for part in *expected {
            assert!(err.contains(part), "{up}: missing {part:?} in:\n{err}");
        }
        assert!(err.contains("hint:"), "{up}: {err}");
        assert!(
            !d.path().join("down.log").exists(),
            "{up}: nothing to release"
        );
        assert!(
            !d.cluster_dir("wrong").join("cluster.json").exists(),
            "{up}: no cluster recorded"
        );
    }
}

/// Hosts that never answer: the bring-up runs `down` (the rollback), says
/// so, and leaves no cluster behind.
#[test]
fn a_bring_up_whose_hosts_never_answer_is_rolled_back_with_down() {
    let d = Dir::new();
    // Loopback addresses on a port nothing listens on: refused at once.
    let up = r#"'echo "{\"orchestrator\": {\"public\": \"127.0.0.2\"}, \"factories\": [{\"public\": \"127.0.0.3\"}]}"'"#;
    let config = command_cluster(&d, "never", up, "port: 1\n");
    let (code, _, err) = d.run(
        &[config.as_os_str()],
        &[("FLAMBE_HOSTS_ANSWER_WITHIN", "2")],
    );
    assert_ne!(code, 0);
    assert!(err.contains("cannot reach 2 of 2 hosts"), "{err}");
    assert!(
        err.contains("Rolled back: the `down` command (`echo released $FLAMBE_CLUSTER_NAME >> down.log`) ran to release the hosts, and they were released"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(d.path().join("down.log")).unwrap(),
        "released never\n",
        "down ran once, with the cluster's name"
    );
    assert!(!d.cluster_dir("never").exists(), "nothing left to forget");
    let (code, _, err) = d.run(
        &["cluster".as_ref(), "down".as_ref(), "never".as_ref()],
        &[],
    );
    assert_ne!(code, 0);
    assert!(err.contains("no cluster named `never`"), "{err}");
}

/// `--dry-run` prints the commands and runs none of them.
#[test]
fn a_dry_run_of_a_command_cluster_runs_nothing() {
    let d = Dir::new();
    let config = command_cluster(&d, "dry", "'touch ran-up'", "status: echo fine\n");
    let (code, out, err) = d.run(&[config.as_os_str(), "--dry-run".as_ref()], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("!CommandCluster `dry`"), "{out}");
    assert!(out.contains("up:     touch ran-up"), "{out}");
    assert!(out.contains("status: echo fine"), "{out}");
    assert!(!d.path().join("ran-up").exists());
}

/// A cluster flambe already knows is never rolled back: when its hosts do
/// not answer this time, they (and whatever holds them) are left alone.
#[test]
fn a_known_cluster_whose_hosts_do_not_answer_is_not_rolled_back() {
    let d = Dir::new();
    // What an earlier bring-up recorded.
    let known = d.cluster_dir("known");
    std::fs::create_dir_all(&known).unwrap();
    std::fs::write(
        known.join("cluster.json"),
        r#"{"name": "known", "provider": "custom", "username": "nobody", "port": 1, "hosts": []}"#,
    )
    .unwrap();
    let up = r#"'echo "{\"orchestrator\": {\"public\": \"127.0.0.2\"}, \"factories\": [{\"public\": \"127.0.0.3\"}]}"'"#;
    let config = command_cluster(&d, "known", up, "port: 1\n");
    let (code, _, err) = d.run(
        &[config.as_os_str()],
        &[("FLAMBE_HOSTS_ANSWER_WITHIN", "1")],
    );
    assert_ne!(code, 0);
    assert!(err.contains("cannot reach 2 of 2 hosts"), "{err}");
    assert!(!err.contains("Rolled back"), "{err}");
    assert!(!d.path().join("down.log").exists(), "down never ran");
    assert!(
        known.join("cluster.json").exists(),
        "the cluster is still known"
    );
}
