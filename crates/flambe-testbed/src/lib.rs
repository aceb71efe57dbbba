//! # flambe-testbed: test hosts for integration tests (dev-only)
//!
//! A thin driver of `scripts/testbed.sh`
//! (network namespaces on this machine, one sshd each). Root only; the
//! tests that use it skip with a reason when not root, and fail under
//! `CI=true`, where a missing prerequisite is a failure.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

pub struct Testbed {
    pub id: u32,
    pub user: String,
    /// The key every host accepts (the "user's own key").
    pub key: PathBuf,
    /// Host number (1-based) → address.
    pub hosts: HashMap<u32, String>,
    /// Host number → the test user's home there, as seen from here.
    homes: HashMap<u32, PathBuf>,
}

/// What a test host starts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind {
    /// This machine's root filesystem with a private home and /tmp: fast,
    /// and it has what this machine has (python3-venv, rsync, its glibc).
    Machine,
    /// Bare Debian 12 (debootstrap minbase: sshd and python3 only).
    Bookworm,
    /// Bare Debian 11 (glibc 2.31, Python 3.9).
    Bullseye,
}

impl HostKind {
    fn arg(self) -> &'static str {
        match self {
            HostKind::Machine => "host",
            HostKind::Bookworm => "bookworm",
            HostKind::Bullseye => "bullseye",
        }
    }
}

/// Whether the bare roots that `scripts/test.sh` makes are there; prints
/// why not (or panics under CI).
pub fn bare_roots_available(test: &str) -> bool {
    let tools = tools_dir();
    for path in [
        "roots/bookworm/.flambe-ready",
        "roots/bullseye/.flambe-ready",
        "apt-bookworm/Packages",
    ] {
        if !tools.join(path).exists() {
            missing_prerequisite(
                test,
                &format!(
                    "needs {} (scripts/test.sh makes the bare test roots)",
                    tools.join(path).display()
                ),
            );
            return false;
        }
    }
    true
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/testbed.sh")
}

/// Whether the test bed can run here; prints why not (or panics under CI).
pub fn available(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc_geteuid() } == 0;
    let sshd = std::path::Path::new("/usr/sbin/sshd").exists();
    let why = if !root {
        "needs root (network namespaces)"
    } else if !sshd {
        "needs /usr/sbin/sshd (apt-get install openssh-server; scripts/test.sh does)"
    } else {
        return true;
    };
    missing_prerequisite(test, why);
    false
}

/// A test cannot run here for want of `why`: a loud skip on a developer's
/// machine, a failure under `CI=true` (where every prerequisite must be
/// installed by scripts/test.sh).
pub fn missing_prerequisite(test: &str, why: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: {why}"
    );
    eprintln!("SKIPPED {test}: {why}");
}

/// Where `scripts/test.sh` installs the tests' tools (venvs for TensorBoard,
/// Ray and moto, the wheel folder, playwright-core): `$FLAMBE_TEST_TOOLS`,
/// else `/opt/flambe-test`.
pub fn tools_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("FLAMBE_TEST_TOOLS").unwrap_or_else(|_| "/opt/flambe-test".to_string()),
    )
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

fn run(args: &[String]) -> String {
    let out = Command::new("bash")
        .arg(script())
        .args(args)
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "testbed.sh {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Testbed {
    /// Test bed `id` (1..250, unique per test) with `k` hosts on this
    /// machine's root filesystem.
    pub fn up(id: u32, k: u32) -> Testbed {
        Testbed::of_kind(id, k, HostKind::Machine, &[])
    }

    /// Test bed `id` with `k` hosts of `kind`; the hosts numbered in `sudo`
    /// get passwordless sudo.
    pub fn of_kind(id: u32, k: u32, kind: HostKind, sudo: &[u32]) -> Testbed {
        let sudo: Vec<String> = sudo.iter().map(u32::to_string).collect();
        run(&[
            "up".into(),
            id.to_string(),
            k.to_string(),
            kind.arg().into(),
            sudo.join(" "),
        ]);
        let env: HashMap<String, String> = run(&["env".into(), id.to_string()])
            .lines()
            .filter_map(|l| {
                l.split_once('=')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
            })
            .collect();
        let hosts = env
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("TESTBED_HOST_")
                    .and_then(|n| n.parse().ok())
                    .map(|n| (n, v.clone()))
            })
            .collect();
        let homes = env
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("TESTBED_HOME_")
                    .and_then(|n| n.parse().ok())
                    .map(|n| (n, PathBuf::from(v)))
            })
            .collect();
        Testbed {
            id,
            user: env["TESTBED_USER"].clone(),
            key: PathBuf::from(&env["TESTBED_KEY"]),
            hosts,
            homes,
        }
    }

    pub fn addr(&self, n: u32) -> &str {
        &self.hosts[&n]
    }

    /// The home folder of host `n`, as seen from here.
    pub fn home(&self, n: u32) -> PathBuf {
        self.homes[&n].clone()
    }

    /// The live processes (not zombies) running on host `n`, with their
    /// arguments: hosts of the `Machine` kind share this machine's process
    /// table, so a process is on host `n` when it is in its network
    /// namespace.
    pub fn processes_on(&self, n: u32) -> Vec<(i32, Vec<String>)> {
        use std::os::unix::fs::MetadataExt;
        let Ok(host) = std::fs::metadata(format!("/run/netns/fb{}h{n}", self.id)) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let in_host = std::fs::metadata(entry.path().join("ns/net"))
                .is_ok_and(|p| p.ino() == host.ino() && p.dev() == host.dev());
            let zombie = std::fs::read_to_string(entry.path().join("stat")).is_ok_and(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            });
            if !in_host || zombie {
                continue;
            }
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let args = cmdline
                .strip_suffix(&[0])
                .unwrap_or(&cmdline)
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            found.push((pid, args));
        }
        found
    }

    pub fn cut(&self, n: u32) {
        run(&["cut".into(), self.id.to_string(), n.to_string()]);
    }

    pub fn restore(&self, n: u32) {
        run(&["restore".into(), self.id.to_string(), n.to_string()]);
    }

    /// Host `n` as after a reboot: all its processes gone, `/tmp` empty,
    /// sshd answering again.
    pub fn reboot(&self, n: u32) {
        run(&["reboot".into(), self.id.to_string(), n.to_string()]);
    }

    pub fn rekey(&self, n: u32) {
        run(&["rekey".into(), self.id.to_string(), n.to_string()]);
    }

    pub fn add(&mut self, n: u32, addr: &str) {
        run(&[
            "add".into(),
            self.id.to_string(),
            n.to_string(),
            addr.to_string(),
        ]);
        self.hosts.insert(n, addr.to_string());
        let home = std::fs::read_to_string(format!(
            "/var/lib/flambe-testbed/{}/h{n}/home_path",
            self.id
        ))
        .expect("testbed.sh add writes the host's home path");
        self.homes.insert(n, PathBuf::from(home.trim()));
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .args(["down", &self.id.to_string()])
            .output();
    }
}
