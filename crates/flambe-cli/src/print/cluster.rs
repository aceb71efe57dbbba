//! How clusters are shown: bring-up, status, down.

use flambe_cluster::{HostStatus, UpReport};

/// One line on what happened to the instances.
pub fn aws_summary(r: &flambe_aws::AwsUp) -> String {
    let list = |ids: &[String]| {
        if ids.is_empty() {
            "none".to_string()
        } else {
            ids.join(", ")
        }
    };
    format!(
        "Instances: created {}; started {}; reused {}; terminated {}. Idle alarms: {}.",
        list(&r.created),
        list(&r.started),
        list(&r.reused),
        list(&r.terminated),
        r.alarms
    )
}

pub fn up(r: &UpReport) {
    let verb = if r.created {
        "created"
    } else {
        "ready (reused)"
    };
    println!("Cluster `{}` {verb} in {:.1}s", r.name, r.seconds);
    println!(
        "  {:<13} {:<28} {:<16} {:>4} {:>4}  {:<14} {:<8} setup",
        "role", "host", "address", "cpus", "gpus", "platform", "flambe"
    );
    for h in &r.hosts {
        let setup = match (h.setup_ran.len(), h.setup_skipped) {
            (0, 0) => "-".to_string(),
            (ran, skipped) => format!("{ran} ran, {skipped} already done"),
        };
        println!(
            "  {:<13} {:<28} {:<16} {:>4} {:>4}  {:<14} {:<8} {setup}",
            h.role.to_string(),
            h.name,
            h.address,
            h.cpus,
            h.gpus,
            h.platform,
            if h.binary_sent { "sent" } else { "same" }
        );
    }
}

pub fn down_ssh(name: &str, down: &flambe_cluster::Down) {
    let cleaned = if down.cleaned.is_empty() {
        "no host".to_string()
    } else {
        down.cleaned.join(", ")
    };
    println!(
        "Cluster `{name}` is down: its key was removed from {cleaned}, and it is forgotten here."
    );
    if !down.cleaned_before.is_empty() {
        println!(
            "Cleaned by an earlier `cluster down`: {}.",
            down.cleaned_before.join(", ")
        );
    }
    if !down.never_keyed.is_empty() {
        println!(
            "Never given the cluster key (nothing to remove): {}.",
            down.never_keyed.join(", ")
        );
    }
    for e in &down.left {
        println!(
            "Not cleaned, the key stays in its ~/.ssh/authorized_keys (comment `flambe-cluster-{name}`): {e}"
        );
    }
}

pub fn status(name: &str, hosts: &[HostStatus]) {
    println!("cluster {name}");
    println!(
        "  {:<13} {:<28} {:<16} {:<10} {:>4} {:>4}  {:<18} {:<18} flambe",
        "role", "host", "address", "state", "cpus", "gpus", "ray", "tensorboard"
    );
    for h in hosts {
        let state = if h.reachable { "up" } else { "UNREACHABLE" };
        let opt = |v: Option<u32>| v.map_or("-".to_string(), |v| v.to_string());
        let build = match (&h.flambe, h.same_build, &h.flambe_fails) {
            (Some(v), true, _) => format!("{v} (same build, runs)"),
            (Some(v), false, _) => format!("{v} (DIFFERENT build: rerun `flambe CLUSTER.yaml`)"),
            (None, _, Some(why)) => format!("DOES NOT RUN: {why}"),
            (None, _, None) => "-".to_string(),
        };
        // `ray, version 2.60.0` → `ray 2.60.0`; TensorBoard prints its version alone.
        let (ray, tensorboard) = h.tools.as_ref().map_or(("-".into(), "-".into()), |t| {
            let version = |tool: &str, v: &str| match v.rsplit(' ').next() {
                Some(n) if v != "missing" => format!("{tool} {n}"),
                _ => format!("{tool} missing"),
            };
            (
                version("ray", &t.ray),
                version("tensorboard", &t.tensorboard),
            )
        });
        println!(
            "  {:<13} {:<28} {:<16} {:<10} {:>4} {:>4}  {ray:<18} {tensorboard:<18} {build}",
            h.role.to_string(),
            h.name,
            h.address,
            state,
            opt(h.cpus),
            opt(h.gpus)
        );
        if let Some(e) = &h.error {
            println!("      {e}");
        }
    }
}

/// The hosts a custom cluster's program reported.
pub fn custom_hosts(hosts: &flambe_cluster::CustomHosts) {
    let line = |role: &str, h: &flambe_cluster::CustomHost| {
        let mut extra = Vec::new();
        if let Some(name) = &h.name {
            extra.push(name.clone());
        }
        if let Some(cpus) = h.cpus {
            extra.push(format!("{cpus} CPUs"));
        }
        if let Some(gpus) = h.gpus {
            extra.push(format!("{gpus} GPUs"));
        }
        println!(
            "  {role:<13} {} (private {}){}",
            h.public,
            h.private,
            if extra.is_empty() {
                String::new()
            } else {
                format!(": {}", extra.join(", "))
            }
        );
    };
    println!("Hosts from the cluster's program:");
    line("orchestrator", &hosts.orchestrator);
    for f in &hosts.factories {
        line("factory", f);
    }
}
