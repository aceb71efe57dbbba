//! SSH clusters on real OpenSSH servers: test hosts in network namespaces
//! (scripts/testbed.sh), driven through the `flambe` binary as a user would.
//! Root only: skipped with a reason otherwise, a failure under CI=true.

use assert_cmd::Command;
use flambe_testbed::{Testbed, available};
use std::path::{Path, PathBuf};

struct Setup {
    bed: Testbed,
    home: tempfile::TempDir,
    config: PathBuf,
    name: String,
}

impl Setup {
    /// A test bed of 3 hosts (orchestrator + 2 factories) and a cluster file.
    fn new(id: u32, name: &str, setup_cmds: &[&str]) -> Setup {
        let bed = Testbed::up(id, 3);
        let home = tempfile::tempdir().unwrap();
        let config = home.path().join("cluster.yaml");
        let cmds: String = setup_cmds.iter().map(|c| format!("  - {c}\n")).collect();
        std::fs::write(
            &config,
            format!(
                "!SSHCluster\nname: {name}\norchestrator_ip: {}\nfactories_ips: [{}, {}]\nusername: {}\nkey: {}\nsetup_cmds:\n{cmds}",
                bed.addr(1),
                bed.addr(2),
                bed.addr(3),
                bed.user,
                bed.key.display()
            ),
        )
        .unwrap();
        Setup {
            bed,
            home,
            config,
            name: name.to_string(),
        }
    }

    fn flambe(&self) -> Command {
        let mut cmd = Command::cargo_bin("flambe").unwrap();
        cmd.env("FLAMBE_HOME", self.home.path().join("flambe-home"));
        cmd
    }

    fn up(&self) -> std::process::Output {
        self.flambe().arg(&self.config).output().unwrap()
    }

    fn up_ok(&self) -> String {
        let out = self.up();
        assert!(
            out.status.success(),
            "cluster up failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn exec(&self, host: Option<&str>, command: &str) -> std::process::Output {
        let mut cmd = self.flambe();
        cmd.args(["cluster", "exec", &self.name]);
        if let Some(h) = host {
            cmd.args(["--host", h]);
        }
        cmd.arg("--").arg(command).output().unwrap()
    }

    fn state_dir(&self) -> PathBuf {
        self.home
            .path()
            .join("flambe-home/clusters")
            .join(&self.name)
    }

    fn read_home(&self, n: u32, file: &str) -> String {
        std::fs::read_to_string(self.bed.home(n).join(file)).unwrap_or_default()
    }
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn sha256(path: &Path) -> String {
    flambe_cluster::sha256_file(path).unwrap()
}

#[test]
fn creation_sets_up_every_host_with_its_own_key_and_this_build() {
    if !available("creation_sets_up_every_host_with_its_own_key_and_this_build") {
        return;
    }
    let s = Setup::new(
        101,
        "lab",
        &[
            "hostname -I | tr -d ' ' >> ~/marker",
            "echo second >> ~/marker",
        ],
    );
    let first = s.up_ok();
    assert!(first.contains("Cluster `lab` created"), "{first}");

    // setup_cmds ran on each host, in order, in that host's own home.
    for n in 1..=3 {
        assert_eq!(
            s.read_home(n, "marker"),
            format!("{}\nsecond\n", s.bed.addr(n)),
            "host {n}"
        );
    }
    // Key files are private.
    for f in ["id_ed25519", "id_ed25519.pub", "cluster.json", "ssh_config"] {
        assert_eq!(mode(&s.state_dir().join(f)), 0o600, "{f}");
    }
    assert_eq!(
        mode(&s.bed.home(1).join(".flambe/cluster/id_ed25519")),
        0o600
    );

    // Every host runs this exact build.
    let local = assert_cmd::cargo::cargo_bin("flambe");
    for n in 1..=3 {
        let remote = std::fs::canonicalize(s.bed.home(n).join(".flambe/bin/flambe")).unwrap();
        assert_eq!(sha256(&remote), sha256(&local), "host {n}");
    }
    let local_version =
        String::from_utf8(s.flambe().arg("--version").output().unwrap().stdout).unwrap();
    let remote_version = s.exec(Some("lab_factory_1"), ".flambe/bin/flambe --version");
    assert_eq!(
        String::from_utf8_lossy(&remote_version.stdout)
            .lines()
            .nth(1)
            .unwrap(),
        local_version.trim()
    );
    let status = String::from_utf8(
        s.flambe()
            .args(["cluster", "status", "lab", "--json"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let hosts = status["lab"].as_array().unwrap();
    assert_eq!(hosts.len(), 3);
    assert!(
        hosts.iter().all(|h| h["reachable"] == true
            && h["same_build"] == true
            && h["cpus"].as_u64() >= Some(1)),
        "{status}"
    );

    // From now on the cluster key alone is enough: drop the user's key everywhere.
    let user_key = std::fs::read_to_string(s.bed.key.with_extension("pub")).unwrap();
    for n in 1..=3 {
        let path = s.bed.home(n).join(".ssh/authorized_keys");
        let kept: String = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .filter(|l| l.trim() != user_key.trim())
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&path, kept).unwrap();
    }
    // The orchestrator reaches each factory with the cluster key and no other.
    for (n, factory) in [(2, "lab_factory_0"), (3, "lab_factory_1")] {
        let out = s.exec(
            Some("lab_orchestrator"),
            &format!("ls ~/.ssh/id_* 2>/dev/null; ssh -F .flambe/cluster/ssh_config {factory} hostname -I"),
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            stdout.lines().nth(1).unwrap().trim(),
            s.bed.addr(n),
            "{stdout}"
        );
    }

    // A second run changes nothing: no setup command, no binary sent.
    let start = std::time::Instant::now();
    let second = s.up_ok();
    eprintln!(
        "second run of a 3-host cluster took {:.2}s",
        start.elapsed().as_secs_f64()
    );
    assert!(second.contains("ready (reused)"), "{second}");
    assert_eq!(
        second.matches("0 ran, 2 already done").count(),
        3,
        "{second}"
    );
    assert_eq!(second.matches(" same ").count(), 3, "{second}");
    assert_eq!(s.read_home(2, "marker").lines().count(), 2);

    // down removes the cluster key from every host and the local state.
    let cluster_pub = std::fs::read_to_string(s.state_dir().join("id_ed25519.pub")).unwrap();
    let down = s
        .flambe()
        .args(["cluster", "down", "lab"])
        .output()
        .unwrap();
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(!s.state_dir().exists());
    for n in 1..=3 {
        assert!(
            !s.read_home(n, ".ssh/authorized_keys")
                .contains(cluster_pub.trim()),
            "host {n}"
        );
        assert!(
            s.bed.home(n).join(".flambe/bin/flambe").exists(),
            "down touches nothing else"
        );
    }
}

#[test]
fn a_failing_setup_command_is_reported_and_the_rerun_resumes_from_it() {
    if !available("a_failing_setup_command_is_reported_and_the_rerun_resumes_from_it") {
        return;
    }
    let s = Setup::new(
        102,
        "flaky",
        &[
            "echo a >> ~/steps",
            "\"test -f ~/ready || { echo 'not ready yet' >&2; exit 4; }\"",
            "echo c >> ~/steps",
        ],
    );
    let out = s.up();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("setup failed on 3 of 3 hosts"), "{stderr}");
    assert!(
        stderr.contains("on flaky_factory_1, `test -f ~/ready"),
        "{stderr}"
    );
    assert!(
        stderr.contains("exit code 4") && stderr.contains("not ready yet"),
        "{stderr}"
    );
    assert!(stderr.contains("hint:"), "{stderr}");
    for n in 1..=3 {
        assert_eq!(s.read_home(n, "steps"), "a\n");
        std::fs::write(s.bed.home(n).join("ready"), "").unwrap();
    }
    s.up_ok();
    for n in 1..=3 {
        assert_eq!(
            s.read_home(n, "steps"),
            "a\nc\n",
            "the rerun starts at the failed command"
        );
    }
}

#[test]
fn an_unreachable_factory_is_named_before_anything_changes() {
    if !available("an_unreachable_factory_is_named_before_anything_changes") {
        return;
    }
    let s = Setup::new(103, "cut", &["touch ~/touched"]);
    s.bed.cut(3);
    let out = s.up();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot reach 1 of 3 hosts; nothing was changed"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("cut_factory_1 ({}:22)", s.bed.addr(3))),
        "{stderr}"
    );
    assert!(
        !s.state_dir().exists(),
        "no local state for a cluster that was not made"
    );
    for n in 1..=3 {
        assert!(
            !s.bed.home(n).join("touched").exists(),
            "host {n} was changed"
        );
        assert!(
            !s.bed.home(n).join(".flambe").exists(),
            "host {n} was changed"
        );
    }
    s.bed.restore(3);
    s.up_ok();

    // Taking it down with a host cut off changes nothing, and says so
    // truthfully: the key is still on every host.
    let key = std::fs::read_to_string(s.state_dir().join("id_ed25519.pub")).unwrap();
    let key = key.trim();
    let has_key = |n: u32| s.read_home(n, ".ssh/authorized_keys").contains(key);
    s.bed.cut(3);
    let out = s
        .flambe()
        .args(["cluster", "down", "cut"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "cannot reach 1 of the 3 hosts that have the cluster key; nothing was changed"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("cut_factory_1"), "{stderr}");
    assert!(
        stderr.contains("flambe cluster down cut --purge"),
        "{stderr}"
    );
    assert!((1..=3).all(has_key), "nothing was changed");
    assert!(s.state_dir().exists());

    // --purge cleans what answers, forgets the cluster, and names what keeps
    // the key.
    let out = s
        .flambe()
        .args(["cluster", "down", "cut", "--purge"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("removed from cut_orchestrator, cut_factory_0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Not cleaned") && stdout.contains("cut_factory_1"),
        "{stdout}"
    );
    assert!(!has_key(1) && !has_key(2));
    assert!(has_key(3), "the cut host was not touched");
    assert!(!s.state_dir().exists());
    s.bed.restore(3);
}

#[test]
fn a_host_that_cannot_be_cleaned_is_named_and_the_rerun_finishes() {
    if !available("a_host_that_cannot_be_cleaned_is_named_and_the_rerun_finishes") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let s = Setup::new(106, "stuck", &["true"]);
    s.up_ok();
    let key = std::fs::read_to_string(s.state_dir().join("id_ed25519.pub")).unwrap();
    let key = key.trim();
    let has_key = |n: u32| s.read_home(n, ".ssh/authorized_keys").contains(key);
    assert!((1..=3).all(has_key));

    // The second factory answers, but its ~/.ssh cannot be written (as on
    // a home that went read-only): its authorized_keys cannot be rewritten.
    let ssh_dir = s.bed.home(3).join(".ssh");
    std::fs::set_permissions(&ssh_dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    let out = s
        .flambe()
        .args(["cluster", "down", "stuck"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "the cluster key was removed from stuck_orchestrator, stuck_factory_0, but not from:"
        ),
        "says exactly what changed: {stderr}"
    );
    assert!(stderr.contains("stuck_factory_1"), "{stderr}");
    assert!(stderr.contains("`stuck` is still known here"), "{stderr}");
    assert!(stderr.contains("hint: run it again to finish"), "{stderr}");
    assert!(
        !has_key(1) && !has_key(2),
        "the reachable hosts were cleaned"
    );
    assert!(has_key(3), "the key is still where it could not be removed");
    assert!(s.state_dir().exists());

    // Once the host can be written again, the same command finishes: only
    // that host is reached, and the others are named as cleaned before.
    std::fs::set_permissions(&ssh_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = s
        .flambe()
        .args(["cluster", "down", "stuck"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("removed from stuck_factory_1"), "{stdout}");
    assert!(
        stdout
            .contains("Cleaned by an earlier `cluster down`: stuck_orchestrator, stuck_factory_0"),
        "{stdout}"
    );
    assert!(!stdout.contains("Never given the cluster key"), "{stdout}");
    assert!(!(1..=3).any(has_key));
    assert!(!s.state_dir().exists());
}

#[test]
fn a_refused_login_gets_a_login_hint_and_the_cluster_can_still_be_forgotten() {
    if !available("a_refused_login_gets_a_login_hint_and_the_cluster_can_still_be_forgotten") {
        return;
    }
    let s = Setup::new(107, "nokey", &["touch ~/touched"]);
    // A real private key, but not one the hosts let in.
    let other = s.home.path().join("other_key");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(made.success());
    let config = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(
        &s.config,
        config.replace(
            &s.bed.key.display().to_string(),
            &other.display().to_string(),
        ),
    )
    .unwrap();
    let out = s.up();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot log in to nokey_orchestrator"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: check `username` and `key`"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("setup resumes at the command that failed"),
        "a login is not a setup command: {stderr}"
    );
    for n in 1..=3 {
        assert!(!s.bed.home(n).join("touched").exists());
    }
    // The cluster key never got onto any host: the cluster is forgotten
    // without reaching them.
    assert!(s.state_dir().exists());
    let out = s
        .flambe()
        .args(["cluster", "down", "nokey"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("removed from no host"), "{stdout}");
    assert!(
        stdout.contains("Never given the cluster key (nothing to remove): nokey_orchestrator, nokey_factory_0, nokey_factory_1"),
        "{stdout}"
    );
    assert!(!s.state_dir().exists());
}

#[test]
fn a_host_key_swapped_behind_our_back_is_refused() {
    if !available("a_host_key_swapped_behind_our_back_is_refused") {
        return;
    }
    let s = Setup::new(104, "pinned", &[]);
    s.up_ok();
    s.bed.rekey(2);
    let out = s.exec(None, "true");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("the host key of pinned_factory_0"), "{text}");
    assert!(text.contains("not the one pinned"), "{text}");
    // Running the cluster config again is refused the same way.
    let again = s.up();
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("not the one pinned"), "{stderr}");
    assert!(
        !stderr.contains("setup resumes"),
        "a changed host key is not a setup command: {stderr}"
    );
}

#[test]
fn rsync_round_trips_a_thousand_files_byte_for_byte() {
    if !available("rsync_round_trips_a_thousand_files_byte_for_byte") {
        return;
    }
    let s = Setup::new(105, "sync", &[]);
    s.up_ok();
    let src = s.home.path().join("src");
    for i in 0..1000u32 {
        let dir = src.join(format!("d{}", i % 10));
        std::fs::create_dir_all(&dir).unwrap();
        let body: Vec<u8> = (0..(i * 7 % 3000))
            .map(|b| (b.wrapping_mul(31).wrapping_add(i)) as u8)
            .collect();
        std::fs::write(dir.join(format!("f{i}.bin")), body).unwrap();
    }
    let up = s
        .flambe()
        .args(["cluster", "rsync", "sync"])
        .arg(&src)
        .arg(":data")
        .args(["--host", "sync_factory_0"])
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    assert!(
        !s.bed.home(3).join("data").exists(),
        "only the chosen host got the files"
    );
    let back = s.home.path().join("back");
    let down = s
        .flambe()
        .args(["cluster", "rsync", "sync", ":data/"])
        .arg(&back)
        .args(["--host", "sync_factory_0"])
        .output()
        .unwrap();
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    let mut count = 0;
    for i in 0..1000u32 {
        let rel = format!("d{}/f{i}.bin", i % 10);
        assert_eq!(
            std::fs::read(src.join(&rel)).unwrap(),
            std::fs::read(back.join(&rel)).unwrap(),
            "{rel}"
        );
        count += 1;
    }
    assert_eq!(count, 1000);
}
