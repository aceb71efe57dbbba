//! An SSH cluster of test hosts with Ray, for the tests that run
//! experiments on a cluster (remote_run, cluster_faults).

use assert_cmd::Command;
use flambe_testbed::{Testbed, available, missing_prerequisite};
use std::path::{Path, PathBuf};

/// Test hosts with Ray linked in (orchestrator + `factories`), a cluster
/// file for them, and a FLAMBE_HOME of the test's own.
pub struct RayCluster {
    pub bed: Testbed,
    pub dir: tempfile::TempDir,
    pub cluster: PathBuf,
}

impl RayCluster {
    pub fn new(
        test: &str,
        id: u32,
        name: &str,
        factories: u32,
        fake_gpus: bool,
    ) -> Option<RayCluster> {
        if !available(test) {
            return None;
        }
        let tools = flambe_testbed::tools_dir().display().to_string();
        let ray = format!("{tools}/ray");
        if !Path::new(&format!("{ray}/bin/ray")).exists() {
            missing_prerequisite(
                test,
                &format!("needs Ray in {ray} (scripts/test.sh installs it)"),
            );
            return None;
        }
        let bed = Testbed::up(id, 1 + factories);
        let dir = tempfile::tempdir().unwrap();
        let cluster = dir.path().join("cluster.yaml");
        let factories_ips: Vec<String> = (2..=1 + factories)
            .map(|n| bed.addr(n).to_string())
            .collect();
        // TensorBoard for the driver on the orchestrator, where it looks
        // for it besides PATH.
        let tensorboard = format!("{tools}/venv/bin/tensorboard");
        let tensorboard = if Path::new(&tensorboard).exists() {
            format!(" && mkdir -p ~/.flambe/bin && ln -sfn {tensorboard} ~/.flambe/bin/tensorboard")
        } else {
            String::new()
        };
        let gpus = if fake_gpus {
            " && echo 2 > ~/.flambe/gpus"
        } else {
            ""
        };
        std::fs::write(
            &cluster,
            format!(
                "!SSHCluster\nname: {name}\norchestrator_ip: {}\nfactories_ips: [{}]\nusername: {}\nkey: {}\nsetup_cmds:\n  - mkdir -p ~/.flambe && ln -sfn {ray} ~/.flambe/ray{tensorboard}{gpus}\n",
                bed.addr(1),
                factories_ips.join(", "),
                bed.user,
                bed.key.display()
            ),
        )
        .unwrap();
        Some(RayCluster { bed, dir, cluster })
    }

    /// Run flambe with the test's FLAMBE_HOME: (exit code, stdout + stderr).
    pub fn flambe(&self, args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
        self.flambe_with(args, &[])
    }

    /// [`flambe`](Self::flambe) with more environment variables.
    pub fn flambe_with(
        &self,
        args: &[&std::ffi::OsStr],
        env: &[(&str, &str)],
    ) -> (Option<i32>, String) {
        let out = Command::cargo_bin("flambe")
            .unwrap()
            .env("FLAMBE_HOME", self.dir.path().join("home"))
            .envs(env.iter().copied())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}
