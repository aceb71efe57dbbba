//! The Slurm showcase: `examples/slurm/flambe-cluster-slurm` on PATH serves
//! `!SlurmCluster`, against a real Slurm (Debian's slurmctld and munged in
//! the root namespace, a slurmd on each of two test hosts; see
//! scripts/slurm-testbed.sh). The plugin holds an allocation, the
//! experiment runs on its nodes, and `cluster down` releases it.

use super::*;

const BED: u32 = 172;

struct SlurmGuard;

impl Drop for SlurmGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(repo().join("scripts/slurm-testbed.sh"))
            .args(["down", &BED.to_string()])
            .output();
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn squeue(conf: &str) -> String {
    let out = std::process::Command::new("squeue")
        .args(["-h", "-n", "flambe-hpc", "-o", "%T %N"])
        .env("SLURM_CONF", conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn the_slurm_plugin_runs_an_experiment_on_an_allocation_and_releases_it() {
    let test = "the Slurm plugin test";
    if !flambe_testbed::available(test) {
        return;
    }
    let tools = flambe_testbed::tools_dir().display().to_string();
    let ray = format!("{tools}/ray");
    for (what, path) in [
        ("slurmctld", "/usr/sbin/slurmctld".to_string()),
        ("slurmd", "/usr/sbin/slurmd".to_string()),
        ("munged", "/usr/sbin/munged".to_string()),
        ("salloc", "/usr/bin/salloc".to_string()),
        ("Ray", format!("{ray}/bin/ray")),
    ] {
        if !Path::new(&path).exists() {
            flambe_testbed::missing_prerequisite(
                test,
                &format!("needs {what} at {path} (scripts/test.sh installs it)"),
            );
            return;
        }
    }
    // Three hosts: 1 is the login node (the orchestrator), 2 and 3 are
    // Slurm's compute nodes.
    let bed = flambe_testbed::Testbed::up(BED, 3);
    let _guard = SlurmGuard;
    let made = std::process::Command::new("bash")
        .arg(repo().join("scripts/slurm-testbed.sh"))
        .args(["up", &BED.to_string(), "2", "3"])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "Slurm did not start: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let conf = format!("/tmp/flambe-slurm-{BED}/slurm.conf");
    let d = Dir::new();
    let tensorboard = format!("{tools}/venv/bin/tensorboard");
    let tensorboard = if Path::new(&tensorboard).exists() {
        format!(" && mkdir -p ~/.flambe/bin && ln -sfn {tensorboard} ~/.flambe/bin/tensorboard")
    } else {
        String::new()
    };
    let cluster = d.file(
        "slurm.yaml",
        &format!(
            "!SlurmCluster\nname: hpc\nusername: {}\nkey: {}\norchestrator: {}\nnodes: 2\npartition: test\nsetup_cmds:\n  - mkdir -p ~/.flambe && ln -sfn {ray} ~/.flambe/ray{tensorboard}\n",
            bed.user,
            bed.key.display(),
            bed.addr(1)
        ),
    );
    let path = format!(
        "{}:{}",
        repo().join("examples/slurm").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let env = [("PATH", path.as_str()), ("SLURM_CONF", conf.as_str())];

    let (code, out, err) = d.run(&[cluster.as_os_str()], &env);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(": n2, ") && out.contains(": n3, "), "{out}");
    assert_eq!(squeue(&conf), "RUNNING n[2-3]", "the allocation is held");

    let (pulled, rows) = super::end_to_end::run_and_pull(&d, &cluster, &env);
    assert_eq!(rows.len(), 6, "four trials, then the two survivors");
    assert!(rows.iter().all(|r| r["status"] == "succeeded"), "{rows:?}");
    let hosts = super::end_to_end::train_hosts(&pulled, &rows);
    let nodes: std::collections::BTreeSet<String> =
        [bed.addr(2).to_string(), bed.addr(3).to_string()].into();
    assert!(
        hosts.is_subset(&nodes) && !hosts.is_empty(),
        "trials ran on the allocation's nodes: {hosts:?}"
    );
    assert_eq!(
        squeue(&conf),
        "RUNNING n[2-3]",
        "the same allocation, reused"
    );

    let (code, out, err) = d.run(&["cluster".as_ref(), "down".as_ref(), "hpc".as_ref()], &env);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("`flambe-cluster-slurm down` released its hosts"),
        "{out}"
    );
    assert_eq!(squeue(&conf), "", "squeue shows nothing of ours");
}
