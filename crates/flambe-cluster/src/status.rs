//! `flambe cluster status`: each host of a known cluster probed at once
//! (reachable, CPUs/GPUs, whether it runs this very flambe build, Ray and
//! TensorBoard there). Unreachable hosts are reported, not fatal.

use crate::cluster::{io_err, load_state, target};
use crate::error::ClusterError;
use crate::host::Host;
use crate::plan::Role;
use crate::provision::{Tools, probe};
use crate::remote_home::RemoteHome;
use crate::versioning::local_binary;
use futures::future::join_all;
use serde::Serialize;
use std::time::Duration;

/// One line of `flambe cluster status`.
#[derive(Debug, Clone, Serialize)]
pub struct HostStatus {
    /// The host's name.
    pub name: String,
    /// What it is for.
    pub role: Role,
    /// The address connected to.
    pub address: String,
    /// It answered over SSH.
    pub reachable: bool,
    /// Why it did not, or why probing failed.
    pub error: Option<String>,
    /// Its CPUs.
    pub cpus: Option<u32>,
    /// Its GPUs.
    pub gpus: Option<u32>,
    /// `flambe --version` as the host prints it.
    pub flambe: Option<String>,
    /// The host runs exactly this build (same sha256).
    pub same_build: bool,
    /// Why the shipped flambe does not run there (None: it runs).
    pub flambe_fails: Option<String>,
    /// Ray and TensorBoard versions there ("missing" where absent).
    pub tools: Option<Tools>,
}

/// The status of every host of a known cluster; unreachable hosts are
/// reported, not fatal.
pub async fn status(name: &str) -> Result<Vec<HostStatus>, ClusterError> {
    let (files, state) = load_state(name)?;
    let (_, local_hash) = local_binary().map_err(io_err("cannot read the local flambe binary"))?;
    let script = format!(
        "nproc; (nvidia-smi -L 2>/dev/null || true) | grep -c '^GPU' || true; \
         sha256sum -b {flambe} 2>/dev/null | cut -d' ' -f1; echo; \
         v=$({flambe} --version 2>&1); echo $?; printf '%s\n' \"$v\" | head -n1",
        flambe = RemoteHome::relative().flambe()
    );
    let checks = state.hosts.iter().map(|h| {
        let files = &files;
        let state = &state;
        let local_hash = &local_hash;
        let script = &script;
        async move {
            let mut s = HostStatus {
                name: h.name.clone(),
                role: h.role,
                address: h.connect.clone(),
                reachable: false,
                error: None,
                cpus: None,
                gpus: None,
                flambe: None,
                same_build: false,
                flambe_fails: None,
                tools: None,
            };
            let host = match tokio::time::timeout(
                Duration::from_secs(15),
                Host::connect(files, &target(state, h), None),
            )
            .await
            {
                Ok(Ok(host)) => host,
                Ok(Err(e)) => {
                    s.error = Some(e.to_string());
                    return s;
                }
                Err(_) => {
                    s.error = Some("no answer within 15 s".to_string());
                    return s;
                }
            };
            s.reachable = true;
            match host.run(script).await {
                Ok(out) => {
                    let lines: Vec<&str> = out.stdout.lines().collect();
                    s.cpus = lines.first().and_then(|l| l.trim().parse().ok());
                    s.gpus = lines.get(1).and_then(|l| l.trim().parse().ok());
                    s.same_build = lines
                        .get(2)
                        .is_some_and(|l| l.trim() == local_hash.as_str());
                    let said = lines.get(5).map_or("", |l| l.trim()).to_string();
                    match lines.get(4).map(|l| l.trim()) {
                        Some("0") => s.flambe = Some(said),
                        Some("127") => s.flambe_fails = Some("not shipped".to_string()),
                        _ => s.flambe_fails = Some(said),
                    }
                }
                Err(e) => s.error = Some(e.to_string()),
            }
            if let Ok(probe) = probe(&host).await {
                s.tools = Some((&probe).into());
            }
            host.close().await;
            s
        }
    });
    Ok(join_all(checks).await)
}
