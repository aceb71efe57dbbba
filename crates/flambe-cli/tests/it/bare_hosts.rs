//! First runs on hosts as they come: bare Debian roots (debootstrap minbase:
//! sshd and python3, no python3-venv, no rsync, nothing of flambe, Ray or
//! TensorBoard), each host chrooted in its own network and PID namespace.
//! What stands in for the internet is local: a wheel folder named by the
//! hosts' pip.conf and a local apt repository. flambe must bring the rest.
//! Root only; skipped with a reason otherwise, a failure under CI=true.

use crate::common;

use assert_cmd::Command;
use flambe_testbed::{HostKind, Testbed, available, bare_roots_available};
use serde_json::Value;
use std::ffi::OsStr;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

struct Bare {
    bed: Testbed,
    dir: tempfile::TempDir,
}

impl Bare {
    fn new(test: &str, id: u32, hosts: u32, kind: HostKind, sudo: &[u32]) -> Option<Bare> {
        if !available(test) || !bare_roots_available(test) {
            return None;
        }
        let started = Instant::now();
        let bed = Testbed::of_kind(id, hosts, kind, sudo);
        println!(
            "{test}: {hosts} {kind:?} hosts booted in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        Some(Bare {
            bed,
            dir: tempfile::tempdir().unwrap(),
        })
    }

    /// A cluster file: host 1 orchestrates, the others are factories.
    fn cluster(&self, name: &str, setup_cmds: &[&str]) -> PathBuf {
        let factories: Vec<String> = self
            .bed
            .hosts
            .keys()
            .filter(|n| **n != 1)
            .map(|n| self.bed.addr(*n).to_string())
            .collect();
        let mut text = format!(
            "!SSHCluster\nname: {name}\norchestrator_ip: {}\nfactories_ips: [{}]\nusername: {}\nkey: {}\n",
            self.bed.addr(1),
            factories.join(", "),
            self.bed.user,
            self.bed.key.display()
        );
        if !setup_cmds.is_empty() {
            text.push_str("setup_cmds:\n");
            for c in setup_cmds {
                text.push_str(&format!("  - {c}\n"));
            }
        }
        let path = self.dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    fn command(&self) -> Command {
        let mut cmd = Command::cargo_bin("flambe").unwrap();
        cmd.env("FLAMBE_HOME", self.dir.path().join("home"));
        cmd
    }

    /// Run flambe: (exit code, stdout + stderr).
    fn flambe(&self, args: &[&OsStr]) -> (Option<i32>, String) {
        let out = self.command().args(args).output().unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// What flambe recorded of each host of cluster `name`.
    fn state(&self, name: &str) -> Value {
        let path = self
            .dir
            .path()
            .join(format!("home/clusters/{name}/cluster.json"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }
}

/// Two stages: train (8 trials, the best 2 kept) and eval, which waits for a
/// file the test writes into the factories' homes, so TensorBoard can be
/// checked while the experiment runs.
fn experiment(dir: &Path, save: &str, wait: bool) -> PathBuf {
    let wait = if wait {
        "for i in $(seq 1 1500); do [ -f $HOME/release ] && break; sleep 0.2; done; "
    } else {
        ""
    };
    let config = dir.join(format!("{save}.yaml"));
    std::fs::write(
        &config,
        format!(
            r#"!Experiment
name: first
save_path: ./{save}
seed: 3
pipeline:
  train: !Stage
    run: |-
      for step in 1 2 3; do echo "{{\"step\": $step, \"acc\": $(python3 -c "print({{lr}} * $step + {{w}})")}}" >> $FLAMBE_METRICS; done
    params:
      lr: !g [0.1, 0.2, 0.3, 0.4]
      w: !c [0.01, 0.02]
    samples: 2
    cpus: 1
    metric: acc
    mode: max
    reduce: 2
  eval: !Stage
    run: |-
      {wait}echo "{{\"step\": 1, \"score\": $(python3 -c "print({{train.params.lr}} * 10)")}}" >> $FLAMBE_METRICS
    cpus: 1
    metric: score
    mode: max
"#
        ),
    )
    .unwrap();
    config
}

fn winners(results: &Path) -> Vec<String> {
    let rows: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(results).unwrap()).unwrap();
    common::essence(&rows)
}

#[test]
fn a_first_run_on_bare_hosts_brings_everything_and_a_second_installs_nothing() {
    let test = "a_first_run_on_bare_hosts_brings_everything_and_a_second_installs_nothing";
    let Some(b) = Bare::new(test, 140, 3, HostKind::Bookworm, &[1, 2, 3]) else {
        return;
    };
    let cluster = b.cluster("bare", &[]);
    let exp = experiment(b.dir.path(), "unused", true);
    let started = Instant::now();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("flambe"))
        .env("FLAMBE_HOME", b.dir.path().join("home"))
        .arg(&exp)
        .arg("--cluster")
        .arg(&cluster)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stdout = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap());
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen: Vec<String> = Vec::new();
    let mut stamped = Vec::new();
    // Up to TensorBoard's URL, which comes once the driver serves it.
    let url = loop {
        let Some(Ok(line)) = lines.next() else {
            panic!(
                "flambe ended before TensorBoard was shown:\n{}",
                seen.join("\n")
            )
        };
        stamped.push(format!("{:6.1}s {line}", started.elapsed().as_secs_f64()));
        seen.push(line.clone());
        if let Some(url) = line.strip_prefix("TensorBoard: http://") {
            break url.split('/').next().unwrap().to_string();
        }
    };
    // TensorBoard, installed by flambe on the orchestrator, answers through
    // its tunnel with the scalars of this experiment's train trials.
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut last;
    let tags = loop {
        last = common::try_get(&url, "/data/plugin/scalars/tags")
            .map(|(s, b)| (s, String::from_utf8_lossy(&b).into_owned()));
        if let Some((200, body)) = &last
            && body.contains("\"acc\"")
        {
            break body.clone();
        }
        assert!(
            Instant::now() < deadline,
            "TensorBoard never showed the train scalars at {url}: last answer {last:?}\n{}",
            seen.join("\n")
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(tags.contains("train-"), "{tags}");
    for n in [2, 3] {
        std::fs::write(b.bed.home(n).join("release"), "").unwrap();
    }
    for line in lines.map_while(Result::ok) {
        stamped.push(format!("{:6.1}s {line}", started.elapsed().as_secs_f64()));
        seen.push(line);
    }
    let status = child.wait().unwrap();
    let text = format!("{}{}", stdout.join().unwrap(), seen.join("\n"));
    assert!(status.success(), "{text}");
    // Where the time went on bare hosts (shown with --nocapture).
    println!("first run on bare hosts:\n{}", stamped.join("\n"));

    // Every host got rsync and python3-venv from the OS and Ray from pip;
    // the orchestrator TensorBoard too.
    for (n, name) in [
        (1, "bare_orchestrator"),
        (2, "bare_factory_0"),
        (3, "bare_factory_1"),
    ] {
        let line = seen
            .iter()
            .find(|l| l.starts_with(&format!("Installed on {name}:")))
            .unwrap_or_else(|| panic!("nothing installed on {name}?\n{text}"));
        assert!(line.contains("os: rsync python3-venv"), "{line}");
        assert!(line.contains("ray 2.60.0 (pip"), "{line}");
        assert_eq!(line.contains("tensorboard 2.21.0"), n == 1, "{line}");
        let ray = b.bed.home(n).join(".flambe/ray/bin/ray");
        assert!(ray.exists(), "no {}", ray.display());
    }
    let token = b.bed.home(2).join(".flambe/cluster/ray_token");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&token).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let state = b.state("bare");
    for h in state["hosts"].as_array().unwrap() {
        let what: Vec<&str> = h["installed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["what"].as_str().unwrap())
            .collect();
        assert!(what.contains(&"ray 2.60.0"), "{h}");
        println!("recorded on {}: {}", h["name"], h["installed"]);
    }

    // The same winners as a run here.
    let pulled = b.dir.path().join("pulled");
    let (code, text) = b.flambe(&[
        "pull".as_ref(),
        "first".as_ref(),
        "--cluster".as_ref(),
        cluster.as_os_str(),
        "--to".as_ref(),
        pulled.as_os_str(),
    ]);
    assert_eq!(code, Some(0), "{text}");
    let local = experiment(b.dir.path(), "here", false);
    let (code, text) = b.flambe(&[local.as_os_str(), "--no-site".as_ref()]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(
        winners(&pulled.join("results.json")),
        winners(&b.dir.path().join("here/first/results.json"))
    );

    // A second run installs nothing and changes no record.
    let again = Instant::now();
    let (code, text) = b.flambe(&[
        exp.as_os_str(),
        "--cluster".as_ref(),
        cluster.as_os_str(),
        "--no-tensorboard".as_ref(),
    ]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("Every host has what it needs: nothing installed"),
        "{text}"
    );
    assert_eq!(b.state("bare")["hosts"], state["hosts"]);
    println!("second run: {:.1}s", again.elapsed().as_secs_f64());

    // `cluster status` shows the shipped flambe runs, and the versions.
    let (code, text) = b.flambe(&["cluster".as_ref(), "status".as_ref(), "bare".as_ref()]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("ray 2.60.0"), "{text}");
    assert!(text.contains("tensorboard 2.21.0"), "{text}");
}

#[test]
fn debian_11_hosts_run_the_shipped_binary_and_ray_names_the_python_fix() {
    let test = "debian_11_hosts_run_the_shipped_binary_and_ray_names_the_python_fix";
    let Some(b) = Bare::new(test, 141, 2, HostKind::Bullseye, &[]) else {
        return;
    };
    // A setup command that does not exist: host, command, 127, the shell's words.
    let broken = b.cluster("old", &["no-such-program --flag"]);
    let (code, text) = b.flambe(&[broken.as_os_str()]);
    assert_ne!(code, Some(0), "{text}");
    for host in ["old_orchestrator", "old_factory_0"] {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("on {host}, `no-such-program --flag`")))
            .unwrap_or_else(|| panic!("{host} not named:\n{text}"));
        assert!(line.contains("exit code 127"), "{line}");
    }
    assert!(
        text.contains("no-such-program: command not found"),
        "{text}"
    );

    let cluster = b.cluster("old", &[]);
    let (code, text) = b.flambe(&[cluster.as_os_str()]);
    assert_eq!(code, Some(0), "{text}");
    let local = Command::cargo_bin("flambe")
        .unwrap()
        .arg("--version")
        .output()
        .unwrap();
    let local = String::from_utf8_lossy(&local.stdout).trim().to_string();
    let (code, text) = b.flambe(&[
        "cluster".as_ref(),
        "exec".as_ref(),
        "old".as_ref(),
        "--".as_ref(),
        "~/.flambe/bin/flambe --version; ldd --version | head -n1".as_ref(),
    ]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(
        text.matches(&local).count(),
        2,
        "both hosts print {local}:\n{text}"
    );
    assert!(text.contains("2.31"), "the hosts' glibc is 2.31:\n{text}");

    // The pinned Ray has no wheel for Python 3.9: each host named, with the fix,
    // and nothing installed.
    let exp = experiment(b.dir.path(), "unused", false);
    let (code, text) = b.flambe(&[exp.as_os_str(), "--cluster".as_ref(), cluster.as_os_str()]);
    assert_ne!(code, Some(0), "{text}");
    for host in ["old_orchestrator", "old_factory_0"] {
        let line = text
            .lines()
            .find(|l| l.contains(host))
            .unwrap_or_else(|| panic!("{host} not named:\n{text}"));
        assert!(
            line.contains("Python 3.9") && line.contains("3.10 or newer"),
            "{line}"
        );
    }
    assert!(text.contains("hint: install Python 3.10+"), "{text}");
    for n in [1, 2] {
        assert!(!b.bed.home(n).join(".flambe/ray").exists());
    }
}

#[test]
fn without_sudo_or_python3_venv_each_host_gets_the_fix_and_nothing_changes() {
    let test = "without_sudo_or_python3_venv_each_host_gets_the_fix_and_nothing_changes";
    let Some(b) = Bare::new(test, 142, 2, HostKind::Bookworm, &[]) else {
        return;
    };
    let cluster = b.cluster("nosudo", &[]);
    let (code, text) = b.flambe(&[cluster.as_os_str()]);
    assert_eq!(code, Some(0), "{text}");
    let listing = |n: u32| {
        let mut files: Vec<String> = walk(&b.bed.home(n));
        files.sort();
        files
    };
    let before = (listing(1), listing(2));
    let exp = experiment(b.dir.path(), "unused", false);
    let (code, text) = b.flambe(&[exp.as_os_str(), "--cluster".as_ref(), cluster.as_os_str()]);
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("nothing was installed anywhere"), "{text}");
    for host in ["nosudo_orchestrator", "nosudo_factory_0"] {
        let line = text
            .lines()
            .find(|l| l.contains(host))
            .unwrap_or_else(|| panic!("{host} not named:\n{text}"));
        assert!(line.contains("python3-venv"), "{line}");
        assert!(line.contains("no passwordless sudo"), "{line}");
    }
    assert_eq!(
        text.matches("hint: on nosudo_").count(),
        2,
        "one fix per host:\n{text}"
    );
    assert!(
        text.contains("`sudo apt-get install -y rsync python3-venv`"),
        "{text}"
    );
    assert_eq!(
        (listing(1), listing(2)),
        before,
        "nothing changed on the hosts"
    );
}

/// Every path under `dir`, relative to it.
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            }
        }
    }
    out
}
