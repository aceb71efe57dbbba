//! What flambe remembers of a cluster, in `~/.flambe/clusters/NAME/`:
//!
//! - `cluster.json`: hosts, roles, addresses, which setup commands ran where,
//!   which flambe build each host has;
//! - `id_ed25519` / `id_ed25519.pub`: the cluster's own key pair (0600);
//! - `known_hosts`: host keys pinned on first contact;
//! - `ssh_config`: one `Host` block per host, used by every ssh and rsync
//!   flambe runs (and by `flambe cluster ssh`), so they all use the cluster
//!   key and the pinned host keys, and nothing else.

use crate::plan::Role;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Who made the cluster's hosts, and so who takes them down.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// Machines the user has (`!SSHCluster`): down removes the key.
    Ssh,
    /// EC2 instances flambe created (`!AWSCluster`): down terminates them
    /// (the AWS crate keeps its own record of where they are).
    Aws,
    /// Hosts a program made or found (`!CommandCluster`, a plugin): down
    /// runs its `down` (its record is `custom.json`).
    Custom,
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Provider::Ssh => "SSH",
            Provider::Aws => "AWS",
            Provider::Custom => "custom",
        })
    }
}

/// What flambe records of a cluster.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterState {
    /// Its name.
    pub name: String,
    /// Who made its machines.
    pub provider: Provider,
    /// The login on every host.
    pub username: String,
    /// The SSH port.
    pub port: u16,
    /// Its hosts, orchestrator first.
    pub hosts: Vec<HostState>,
}

/// One step flambe took on a host, as recorded in its state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Installed {
    /// `ray 2.60.0`, `tensorboard 2.21.0`, `os: python3-venv rsync`.
    pub what: String,
    /// `pip`, `linked /usr/local/bin/ray`, `apt-get (sudo)`.
    pub how: String,
    /// How long it took.
    pub seconds: f64,
}

/// What flambe records of one host.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HostState {
    /// Its name in the cluster.
    pub name: String,
    /// What it is for.
    pub role: Role,
    /// The address flambe connects to from here.
    pub connect: String,
    /// The address the other hosts reach this one on.
    pub private: String,
    /// The cluster key is in this host's authorized_keys.
    pub key_installed: bool,
    /// A partly failed `cluster down` removed the cluster key here (the
    /// next `cluster down` skips it; `up` installs the key again).
    #[serde(default)]
    pub key_removed: bool,
    /// `setup_cmds` that completed here, in the order they ran.
    pub setup_done: Vec<String>,
    /// sha256 of the flambe binary last shipped here.
    pub binary: Option<String>,
    /// What flambe installed here (OS packages, Ray, TensorBoard), in order.
    #[serde(default)]
    pub installed: Vec<Installed>,
    /// CPUs and GPUs a custom cluster's program gave this host (a Slurm
    /// allocation's share): Ray offers these instead of the host's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offered: Option<Offered>,
}

/// What a custom cluster's program says a host offers.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Offered {
    /// CPUs, when it said.
    pub cpus: Option<u64>,
    /// GPUs, when it said.
    pub gpus: Option<u64>,
}

impl ClusterState {
    /// The orchestrator's record.
    pub fn orchestrator(&self) -> Option<&HostState> {
        self.hosts.iter().find(|h| h.role == Role::Orchestrator)
    }

    /// Host `name`'s record.
    pub fn host(&self, name: &str) -> Option<&HostState> {
        self.hosts.iter().find(|h| h.name == name)
    }
}

/// The files of one cluster's folder.
#[derive(Debug, Clone)]
pub struct ClusterFiles {
    /// The cluster's folder here.
    pub dir: PathBuf,
}

impl ClusterFiles {
    /// The files of the folder `dir`.
    pub fn new(dir: PathBuf) -> ClusterFiles {
        ClusterFiles { dir }
    }
    /// `state.json`.
    pub fn state(&self) -> PathBuf {
        self.dir.join("cluster.json")
    }
    /// The cluster's private key (0600).
    pub fn key(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }
    /// Its public key.
    pub fn public_key(&self) -> PathBuf {
        self.dir.join("id_ed25519.pub")
    }
    /// The pinned host keys.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }
    /// The ssh_config every ssh and rsync of the cluster uses.
    pub fn ssh_config(&self) -> PathBuf {
        self.dir.join("ssh_config")
    }
    /// The token of the cluster's Ray (0600), copied to every host.
    pub fn ray_token(&self) -> PathBuf {
        self.dir.join("ray_token")
    }
    /// Control sockets of multiplexed connections (short path: sockets have
    /// a 108-byte limit).
    pub fn control_dir(&self) -> PathBuf {
        self.dir.join("ctl")
    }

    /// The recorded state (None: not created yet).
    pub fn load(&self) -> std::io::Result<Option<ClusterState>> {
        match std::fs::read(self.state()) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Record `state` (atomically).
    pub fn save(&self, state: &ClusterState) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
        write_private(&self.state(), &json)
    }

    /// The `ssh_config` that every ssh invocation of this cluster uses.
    pub fn write_ssh_config(&self, state: &ClusterState) -> std::io::Result<()> {
        let known_hosts = ssh_config_path(&self.known_hosts())?;
        let key = ssh_config_path(&self.key())?;
        let mut text = format!(
            "# Written by flambe for cluster `{}`; regenerated on every run.\n\
             Host *\n  IdentitiesOnly yes\n  BatchMode yes\n  PasswordAuthentication no\n  \
             KbdInteractiveAuthentication no\n  HashKnownHosts no\n  StrictHostKeyChecking accept-new\n  \
             UserKnownHostsFile {}\n  ConnectTimeout 10\n  ServerAliveInterval 15\n  LogLevel ERROR\n",
            state.name, known_hosts
        );
        for h in &state.hosts {
            text.push_str(&format!(
                "\nHost {}\n  HostName {}\n  Port {}\n  User {}\n  IdentityFile {}\n",
                h.name, h.connect, state.port, state.username, key
            ));
        }
        write_private(&self.ssh_config(), text.as_bytes())
    }
}

/// A local path as an ssh_config argument: double-quoted (a home folder may
/// hold spaces) with `%` doubled (ssh expands `%d`, `%u`… in these fields).
/// A quote or a line break cannot be written there at all.
fn ssh_config_path(path: &Path) -> std::io::Result<String> {
    let text = path.display().to_string();
    if text.contains(['"', '\n', '\r']) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("`{text}` holds a quote or a line break, which ssh_config cannot take"),
        ));
    }
    Ok(format!("\"{}\"", text.replace('%', "%%")))
}

/// Write a file readable by its owner only (0600), atomically.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The cluster's Ray token, made from the OS's random source on first use.
pub fn ensure_ray_token(files: &ClusterFiles) -> std::io::Result<String> {
    match std::fs::read_to_string(files.ray_token()) {
        Ok(token) if !token.trim().is_empty() => return Ok(token.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        std::io::Error::other(format!("the OS gave no randomness for the Ray token: {e}"))
    })?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_private(&files.ray_token(), token.as_bytes())?;
    Ok(token)
}

/// Make the cluster's ed25519 key pair unless it exists; both files 0600.
pub fn ensure_key(files: &ClusterFiles, cluster: &str) -> std::io::Result<()> {
    if files.key().exists() && files.public_key().exists() {
        return Ok(());
    }
    std::fs::create_dir_all(&files.dir)?;
    set_mode(&files.dir, 0o700)?;
    let _ = std::fs::remove_file(files.key());
    let _ = std::fs::remove_file(files.public_key());
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C"])
        .arg(format!("flambe-cluster-{cluster}"))
        .arg("-f")
        .arg(files.key())
        .output()
        .map_err(|e| {
            std::io::Error::other(format!(
                "cannot run ssh-keygen (install openssh-client): {e}"
            ))
        })?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "ssh-keygen failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    set_mode(&files.key(), 0o600)?;
    set_mode(&files.public_key(), 0o600)
}

pub fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}
