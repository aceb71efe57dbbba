//! A config file's extensions: the packages of the trials' Python
//! environment (`flambe_executor::PythonEnv`), here and on every host.

use crate::cluster::Cluster;
use crate::error::{ClusterError, InstallFailure};
use crate::host::shell_quote;
use crate::remote_home::RemoteHome;
use crate::sync::rsync_up;
use flambe_config::{Extension, ExtensionSource};
use flambe_executor::{
    InstallOutcome, Package, PackageSource, parse_python_env_outcome, python_env_install_script,
    python_env_key,
};
use futures::future::join_all;
use std::path::PathBuf;

/// Each extension as pip installs it: a folder as it is, a requirement as
/// written, a git URL as pip's `git+` requirement.
pub fn packages(extensions: &[Extension]) -> Vec<Package> {
    extensions
        .iter()
        .map(|e| Package {
            name: e.name.clone(),
            source: match &e.source {
                ExtensionSource::LocalFolder(dir) => PackageSource::Folder(dir.clone()),
                ExtensionSource::Pip(r) => PackageSource::Requirement(r.clone()),
                ExtensionSource::Git(url) if url.starts_with("git+") => {
                    PackageSource::Requirement(url.clone())
                }
                ExtensionSource::Git(url) => match url.strip_prefix("git@") {
                    // scp-like `git@host:org/repo.git` → `git+ssh://git@host/org/repo.git`
                    Some(rest) => PackageSource::Requirement(format!(
                        "git+ssh://git@{}",
                        rest.replacen(':', "/", 1)
                    )),
                    None => PackageSource::Requirement(format!("git+{url}")),
                },
            },
        })
        .collect()
}

/// What preparing the extensions did across the cluster.
#[derive(Debug)]
pub struct Prepared {
    /// The extensions as the hosts have them (folders at their uploaded
    /// paths): what the shipped config names.
    pub remote: Vec<Extension>,
    /// The environment's key (its folder under `~/.flambe/envs`).
    pub key: String,
    /// Hosts that installed (the others were ready already).
    pub installed_on: Vec<String>,
}

/// Give every host the extensions' environment: local folders uploaded
/// (rsync: only what changed), then the install script on every host at
/// once, which installs nothing where the environment is ready.
pub async fn prepare(
    cluster: &Cluster,
    extensions: &[Extension],
    home: &str,
) -> Result<Prepared, ClusterError> {
    let key = python_env_key(&packages(extensions)).map_err(|e| ClusterError::Io {
        what: "reading the extensions".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let mut remote = extensions.to_vec();
    for ext in &mut remote {
        if let ExtensionSource::LocalFolder(local) = &ext.source {
            let dest = RemoteHome::at(home).extension(&ext.name);
            let uploads = join_all(cluster.hosts.iter().map(|h| {
                let dest = dest.clone();
                async move {
                    h.mkdir(&dest).await?;
                    rsync_up(&cluster.files, h, local, &dest, true).await
                }
            }))
            .await;
            for r in uploads {
                r?;
            }
            ext.source = ExtensionSource::LocalFolder(PathBuf::from(dest));
        }
    }
    let script = python_env_install_script(&RemoteHome::tilde().envs(), &key, &packages(&remote));
    let command = format!("bash -c {}", shell_quote(&script));
    let outcomes = join_all(cluster.hosts.iter().map(|h| h.run(&command))).await;
    let mut failures = Vec::new();
    let mut installed_on = Vec::new();
    for (h, out) in cluster.hosts.iter().zip(outcomes) {
        let out = out?;
        match parse_python_env_outcome(&out.stdout) {
            InstallOutcome::Ready => {}
            InstallOutcome::Installed => installed_on.push(h.name().to_string()),
            InstallOutcome::Failed { name, error } => failures.push(InstallFailure {
                host: format!("{} ({})", h.name(), h.target.addr),
                extension: name,
                error: format!("{error}{}", out.stderr.trim()),
            }),
        }
    }
    if !failures.is_empty() {
        return Err(ClusterError::Extensions { failures });
    }
    Ok(Prepared {
        remote,
        key,
        installed_on,
    })
}
