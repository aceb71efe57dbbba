//! What a host needs before Ray runs there, brought by flambe: hosts start
//! bare (a minimal image with python3 and sshd).
//!
//! For each host, in this order of preference:
//! - Ray `RAY_VERSION`: `~/.flambe/ray` when it reports that version; else a
//!   `ray` of that version on the host's login PATH (linked there); else a
//!   venv at `~/.flambe/ray` installed with the host's `python3` and pip
//!   (pip's own configuration applies: a mirror or a wheel folder);
//! - on the orchestrator, TensorBoard `TENSORBOARD_VERSION` the same way,
//!   in its own venv (`~/.flambe/tensorboard`, linked as
//!   `~/.flambe/bin/tensorboard`), since a linked Ray may not be writable;
//! - OS packages: `rsync` where missing, and `python3-venv` where a venv
//!   must be made and `python3 -m venv` cannot work (no `ensurepip`),
//!   through passwordless sudo and the OS's package manager, after
//!   cloud-init and the package lock are done.
//!
//! Every host is probed first, all at once. A host that cannot be given what
//! it needs (no sudo, a Python too old for the pinned Ray) is an error that
//! names the host, what is missing and the command that fixes it, and then
//! nothing is changed anywhere. Each step done is recorded in the host's
//! state; a rerun probes, finds everything there and does nothing.

use crate::cluster::{Cluster, ClusterError, io_err, partition};
use crate::host::{Host, HostError, shell_quote};
use crate::plan::Role;
use crate::ray::RAY_VERSION;
use crate::remote_home::RemoteHome;
use crate::state::Installed;
use futures::future::join_all;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub const TENSORBOARD_VERSION: &str = "2.21.0";
/// The oldest Python the pinned Ray has wheels for.
pub const RAY_MIN_PYTHON: (u32, u32) = (3, 10);

/// What one probe of a host found.
#[derive(Debug, Default, Clone)]
pub struct Probe {
    facts: BTreeMap<String, String>,
}

impl Probe {
    fn get(&self, key: &str) -> &str {
        self.facts.get(key).map_or("", |s| s.as_str())
    }
    fn yes(&self, key: &str) -> bool {
        self.get(key) == "yes"
    }
    /// `ray --version` of `~/.flambe/ray`, or "" where there is none.
    pub fn ray(&self) -> &str {
        self.get("flambe_ray")
    }
    pub fn tensorboard(&self) -> &str {
        self.get("flambe_tensorboard")
    }
    pub fn python(&self) -> &str {
        self.get("python")
    }
    fn python_version(&self) -> Option<(u32, u32)> {
        let (major, minor) = self.python().split_once('.')?;
        Some((major.parse().ok()?, minor.parse().ok()?))
    }
}

/// One shell round trip that reports what a host has, as `key=value` lines.
fn probe_script() -> String {
    // Versions in flambe's places come from the venvs' package metadata:
    // `ray --version` imports Ray (a second of CPU per host, on every run),
    // `tensorboard --version` about as much. The tool itself answers only
    // where there is no metadata, and the login PATH is asked only where
    // flambe's place lacks the pinned version.
    format!(
        r#"fact() {{ printf '%s=%s\n' "$1" "$2"; }}
yes() {{ if "$@" >/dev/null 2>&1; then echo yes; else echo no; fi; }}
dist() {{ for d in "$1"/lib/python3*/site-packages/"$2"-*.dist-info; do [ -d "$d" ] || continue; v=${{d##*/"$2"-}}; echo "${{v%.dist-info}}"; return; done; }}
venv_ok() {{ [ -x "$1/bin/python" ] && [ -x "$(readlink -f "$1/bin/python")" ]; }}
r=""; [ -x {ray}/bin/ray ] && venv_ok {ray} && r=$(dist {ray} ray)
if [ -n "$r" ]; then r="ray, version $r"; else r=$({ray}/bin/ray --version 2>/dev/null | head -n1); fi
fact flambe_ray "$r"
tv=""; tl=$(readlink -f {tensorboard} 2>/dev/null) && [ -x "$tl" ] && venv_ok "${{tl%/bin/*}}" && tv=$(dist "${{tl%/bin/*}}" tensorboard)
[ -n "$tv" ] || tv=$({tensorboard} --version 2>/dev/null | head -n1)
fact flambe_tensorboard "$tv"
case "$r" in *"version {ray_version}"*) ;; *)
  p=$(bash -lc 'command -v ray' 2>/dev/null); fact path_ray "$p"
  [ -n "$p" ] && fact path_ray_version "$("$p" --version 2>/dev/null | head -n1)" ;;
esac
case "$tv" in *"{tensorboard_version}"*) ;; *)
  t=$(bash -lc 'command -v tensorboard' 2>/dev/null); fact path_tensorboard "$t"
  [ -n "$t" ] && fact path_tensorboard_version "$("$t" --version 2>/dev/null | head -n1)" ;;
esac
fact python "$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)"
fact ensurepip "$(yes python3 -c 'import ensurepip, venv')"
fact rsync "$(yes command -v rsync)"
fact sudo "$(yes sudo -n true)"
fact apt "$(yes command -v apt-get)"
fact dnf "$(yes command -v dnf)"
fact cloud_init "$(yes command -v cloud-init)"
"#,
        ray = RemoteHome::relative().ray(),
        tensorboard = RemoteHome::relative().tensorboard_link(),
        ray_version = RAY_VERSION,
        tensorboard_version = TENSORBOARD_VERSION,
    )
}

pub async fn probe(host: &Host) -> Result<Probe, HostError> {
    let out = host.check(&probe_script()).await?;
    Ok(Probe {
        facts: out
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect(),
    })
}

/// How a host gets one of its Python tools.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    /// Already in flambe's place at the pinned version.
    Present,
    /// Pinned version on the login PATH, at this path.
    Link(String),
    Install,
}

/// What must be done on one host.
#[derive(Debug, Clone)]
struct Plan {
    os_packages: Vec<&'static str>,
    ray: Source,
    tensorboard: Option<Source>,
}

fn source(present: &str, path: &str, path_version: &str, version: &str) -> Source {
    if present.contains(version) {
        Source::Present
    } else if !path.is_empty() && path_version.contains(version) {
        Source::Link(path.to_string())
    } else {
        Source::Install
    }
}

/// Decide what `host` needs (TensorBoard too where `tensorboard`), or say
/// why it cannot be had there.
fn plan(name: &str, probe: &Probe, tensorboard: bool) -> Result<Plan, HostError> {
    let ray = source(
        probe.ray(),
        probe.get("path_ray"),
        probe.get("path_ray_version"),
        &format!("version {RAY_VERSION}"),
    );
    let tensorboard = tensorboard.then(|| {
        source(
            probe.tensorboard(),
            probe.get("path_tensorboard"),
            probe.get("path_tensorboard_version"),
            TENSORBOARD_VERSION,
        )
    });
    let fail = |detail: String, hint: String| HostError::Unmet {
        host: name.to_string(),
        detail,
        hint,
    };
    let installs = ray == Source::Install || tensorboard == Some(Source::Install);
    if installs {
        match probe.python_version() {
            None => {
                return Err(fail(
                    format!("has no python3, needed to install Ray {RAY_VERSION}"),
                    format!(
                        "on {name} run `sudo apt-get install -y python3 python3-venv` (or your OS's equivalent), then run the same command again"
                    ),
                ));
            }
            Some(v) if v < RAY_MIN_PYTHON => {
                let (major, minor) = RAY_MIN_PYTHON;
                return Err(fail(
                    format!(
                        "has Python {}, too old for Ray {RAY_VERSION} (it needs Python {major}.{minor} or newer)",
                        probe.python(),
                    ),
                    format!(
                        "install Python {major}.{minor}+ on {name} as `python3` (a newer OS release, or deadsnakes/pyenv), \
                         or put Ray {RAY_VERSION} on its PATH, then run the same command again"
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    let mut os_packages = Vec::new();
    if !probe.yes("rsync") {
        os_packages.push("rsync");
    }
    if installs && !probe.yes("ensurepip") {
        os_packages.push("python3-venv");
    }
    if !os_packages.is_empty() && !(probe.yes("sudo") && (probe.yes("apt") || probe.yes("dnf"))) {
        let why = os_packages
            .iter()
            .map(|p| match *p {
                "python3-venv" => "python3-venv (`python3 -m venv` cannot work: no ensurepip)",
                other => other,
            })
            .collect::<Vec<_>>()
            .join(" and ");
        let manager = if probe.yes("dnf") { "dnf" } else { "apt-get" };
        return Err(fail(
            format!("is missing {why}, and flambe has no passwordless sudo there to install it"),
            format!(
                "on {name} run `sudo {manager} install -y {}`, then run the same command again",
                os_packages.join(" ")
            ),
        ));
    }
    Ok(Plan {
        os_packages,
        ray,
        tensorboard,
    })
}

/// What `ensure` did on one host (empty: nothing was needed).
#[derive(Debug, Clone)]
pub struct HostProvisioned {
    /// The host.
    pub host: String,
    /// What was installed there, in order.
    pub steps: Vec<Installed>,
}

/// Give every host what Ray (and, on the orchestrator, TensorBoard) needs,
/// and the cluster's Ray token. Nothing is changed on any host when one of
/// them cannot be provisioned.
pub async fn ensure(
    cluster: &mut Cluster,
    tensorboard: bool,
) -> Result<Vec<HostProvisioned>, ClusterError> {
    let wants_tensorboard: Vec<bool> = cluster
        .hosts
        .iter()
        .map(|h| {
            cluster
                .state
                .host(h.name())
                .is_some_and(|s| tensorboard && s.role == Role::Orchestrator)
        })
        .collect();
    let probes = join_all(cluster.hosts.iter().map(probe)).await;
    let planned: Vec<Result<Plan, HostError>> = probes
        .into_iter()
        .zip(&cluster.hosts)
        .zip(&wants_tensorboard)
        .map(|((p, h), tb)| p.and_then(|p| plan(h.name(), &p, *tb)))
        .collect();
    let total = planned.len();
    let (plans, errors) = partition(planned);
    if !errors.is_empty() {
        return Err(ClusterError::Provision { total, errors });
    }
    let token = crate::state::ensure_ray_token(&cluster.files).map_err(io_err(format!(
        "cannot make the cluster's Ray token in {}",
        cluster.files.dir.display()
    )))?;
    let done = join_all(
        cluster
            .hosts
            .iter()
            .zip(plans)
            .map(|(h, p)| provision_host(h, p, &token)),
    )
    .await;
    // What was installed is recorded even where another host failed.
    let (done, errors) = partition(done);
    for d in &done {
        if let Some(state) = cluster.state.hosts.iter_mut().find(|s| s.name == d.host) {
            state.installed.extend(d.steps.iter().cloned());
        }
    }
    cluster
        .files
        .save(&cluster.state)
        .map_err(io_err("cannot save the cluster state"))?;
    if !errors.is_empty() {
        return Err(ClusterError::Install { total, errors });
    }
    Ok(done)
}

async fn provision_host(
    host: &Host,
    plan: Plan,
    token: &str,
) -> Result<HostProvisioned, HostError> {
    let mut steps = Vec::new();
    let remote = RemoteHome::relative();
    host.check(&format!(
        "umask 077; mkdir -p {} {}",
        remote.cluster(),
        remote.bin()
    ))
    .await?;
    host.write_private(&remote.ray_token(), token.as_bytes())
        .await?;
    if !plan.os_packages.is_empty() {
        let t = Instant::now();
        let how = install_os_packages(host, &plan.os_packages).await?;
        steps.push(Installed {
            what: format!("os: {}", plan.os_packages.join(" ")),
            how,
            seconds: t.elapsed().as_secs_f64(),
        });
    }
    let ray = Tool {
        what: format!("ray {RAY_VERSION}"),
        home: remote.ray(),
        requirement: format!("ray[default]=={RAY_VERSION}"),
        binary: "ray",
        link: None,
    };
    if let Some(step) = ray.ensure(host, &plan.ray).await? {
        steps.push(step);
    }
    if let Some(tb) = &plan.tensorboard {
        let tool = Tool {
            what: format!("tensorboard {TENSORBOARD_VERSION}"),
            home: remote.tensorboard(),
            requirement: format!("tensorboard=={TENSORBOARD_VERSION}"),
            binary: "tensorboard",
            link: Some(remote.tensorboard_link()),
        };
        if let Some(step) = tool.ensure(host, tb).await? {
            steps.push(step);
        }
    }
    Ok(HostProvisioned {
        host: host.name().to_string(),
        steps,
    })
}

/// A Python tool flambe keeps in a venv of its own on a host.
struct Tool {
    what: String,
    /// The venv, relative to the home.
    home: String,
    requirement: String,
    binary: &'static str,
    /// Where the binary is also linked (TensorBoard: `~/.flambe/bin`).
    link: Option<String>,
}

impl Tool {
    async fn ensure(&self, host: &Host, source: &Source) -> Result<Option<Installed>, HostError> {
        let t = Instant::now();
        let (home, bin) = (self.home.as_str(), self.binary);
        let how = match source {
            Source::Present => return Ok(None),
            Source::Link(path) => {
                // The venv's bin/ gets just the binary: the rest of that
                // installation stays where it is.
                host.check(&format!(
                    "rm -rf {home} && mkdir -p {home}/bin && ln -sfn {} {home}/bin/{bin}",
                    shell_quote(path)
                ))
                .await?;
                format!("linked {path}")
            }
            Source::Install => {
                let command = format!(
                    "rm -rf {home} && python3 -m venv {home} && \
                     {home}/bin/pip install -q --disable-pip-version-check {}",
                    shell_quote(&self.requirement)
                );
                host.check_within(&command, Duration::from_secs(30 * 60))
                    .await
                    .map_err(|e| install_failed(host, &self.what, e))?;
                "pip".to_string()
            }
        };
        if let Some(link) = &self.link {
            host.check(&format!("ln -sfn \"$HOME/{home}/bin/{bin}\" {link}"))
                .await?;
        }
        Ok(Some(Installed {
            what: self.what.clone(),
            how,
            seconds: t.elapsed().as_secs_f64(),
        }))
    }
}

fn install_failed(host: &Host, what: &str, e: HostError) -> HostError {
    HostError::Unmet {
        host: host.name().to_string(),
        detail: format!("installing {what} failed: {e}"),
        hint: format!(
            "pip on {} needs a package index it can reach (its pip.conf may name a mirror or a wheel folder)",
            host.name()
        ),
    }
}

/// Install OS packages with sudo: after cloud-init has finished (fresh cloud
/// instances run apt themselves at first boot) and waiting for the package
/// lock; the package lists are refreshed once if the install fails on them.
async fn install_os_packages(host: &Host, packages: &[&str]) -> Result<String, HostError> {
    let list = packages.join(" ");
    let command = format!(
        "if command -v cloud-init >/dev/null 2>&1; then sudo -n cloud-init status --wait >/dev/null 2>&1 || true; fi; \
         if command -v apt-get >/dev/null 2>&1; then \
           apt='sudo -n env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q'; \
           $apt install {list} >/dev/null 2>&1 || {{ $apt update >/dev/null && $apt install {list} >/dev/null; }} && echo apt-get; \
         else sudo -n dnf install -y -q {} >/dev/null && echo dnf; fi",
        packages
            .iter()
            .map(|p| if *p == "python3-venv" { "python3" } else { p })
            .collect::<Vec<_>>()
            .join(" ")
    );
    let manager = host
        .check_within(&command, Duration::from_secs(20 * 60))
        .await
        .map_err(|e| HostError::Unmet {
            host: host.name().to_string(),
            detail: format!("installing the OS packages {list} with sudo failed: {e}"),
            hint: format!(
                "on {} run `sudo apt-get install -y {list}`, then run the same command again",
                host.name()
            ),
        })?;
    Ok(format!("sudo {}", manager.trim()))
}

/// What `flambe cluster status` shows of a host's tools.
#[derive(Debug, Clone, Serialize)]
pub struct Tools {
    pub ray: String,
    pub tensorboard: String,
}

impl From<&Probe> for Tools {
    fn from(p: &Probe) -> Tools {
        let shown = |v: &str| {
            if v.is_empty() {
                "missing".to_string()
            } else {
                v.to_string()
            }
        };
        Tools {
            ray: shown(p.ray()),
            tensorboard: shown(p.tensorboard()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flambe_config::Hint;

    fn probe(pairs: &[(&str, &str)]) -> Probe {
        Probe {
            facts: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn plans_follow_the_order_of_preference() {
        let bare = probe(&[("python", "3.11"), ("ensurepip", "yes"), ("rsync", "yes")]);
        let p = plan("h", &bare, true).unwrap();
        assert_eq!(p.ray, Source::Install);
        assert_eq!(p.tensorboard, Some(Source::Install));
        assert!(p.os_packages.is_empty());

        let on_path = probe(&[
            ("python", "3.9"),
            ("rsync", "yes"),
            ("path_ray", "/usr/local/bin/ray"),
            ("path_ray_version", "ray, version 2.60.0"),
        ]);
        let p = plan("h", &on_path, false).unwrap();
        assert_eq!(p.ray, Source::Link("/usr/local/bin/ray".into()));

        let old = probe(&[("python", "3.9"), ("ensurepip", "yes"), ("rsync", "yes")]);
        let e = plan("h", &old, false).unwrap_err().to_string();
        assert!(
            e.contains("Python 3.9") && e.contains("3.10 or newer"),
            "{e}"
        );

        let no_venv = probe(&[("python", "3.11"), ("apt", "yes")]);
        let e = plan("h", &no_venv, false).unwrap_err();
        let hint = e.hint().unwrap_or_default();
        assert!(
            hint.contains("sudo apt-get install -y rsync python3-venv"),
            "{e}\nhint: {hint}"
        );
        let with_sudo = probe(&[("python", "3.11"), ("apt", "yes"), ("sudo", "yes")]);
        let p = plan("h", &with_sudo, false).unwrap();
        assert_eq!(p.os_packages, vec!["rsync", "python3-venv"]);
    }
}
