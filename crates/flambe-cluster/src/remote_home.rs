//! What flambe keeps on every cluster host, under the login's home: the one
//! place that layout is spelled.
//!
//! ```text
//! ~/.flambe/
//!   bin/flambe -> flambe-SHA256    this exact build (see versioning)
//!   bin/tensorboard                linked from tensorboard/ (orchestrator)
//!   cluster/                       0700: the cluster key, known_hosts,
//!                                  ssh_config, ray_token (0600 each)
//!   ray/  tensorboard/             the venvs flambe installs
//!   gpus                           a GPU count that overrides nvidia-smi
//!   driver.json                    the experiment the cluster runs (orchestrator)
//!   envs/KEY/  extensions/NAME/    the extensions' venv and sources
//!   experiments/NAME/              see ExperimentHome
//! ```
//!
//! Remote commands run in the login's home, so most paths are written
//! relative to it ([`RemoteHome::relative`]); the ones that go into files
//! read elsewhere are absolute ([`RemoteHome::at`]) or `~/` ([`RemoteHome::tilde`],
//! for ssh_config, which expands it).

/// `~/.flambe` on a host, as a prefix: relative, `~/`, or absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteHome {
    prefix: String,
}

impl RemoteHome {
    /// Paths relative to the login's home (where remote commands start).
    pub fn relative() -> RemoteHome {
        RemoteHome {
            prefix: ".flambe".into(),
        }
    }

    /// Paths as `~/.flambe/…` (ssh_config and shells expand them).
    pub fn tilde() -> RemoteHome {
        RemoteHome {
            prefix: "~/.flambe".into(),
        }
    }

    /// Absolute paths under the login's home `home` (as the host said it).
    pub fn at(home: &str) -> RemoteHome {
        RemoteHome {
            prefix: format!("{}/.flambe", home.trim_end_matches('/')),
        }
    }

    fn join(&self, rest: &str) -> String {
        format!("{}/{rest}", self.prefix)
    }

    /// The home folder itself (`~/.flambe`, or absolute).
    pub fn root(&self) -> &str {
        &self.prefix
    }
    /// Where flambe binaries are kept.
    pub fn bin(&self) -> String {
        self.join("bin")
    }
    /// The link to the build every host runs.
    pub fn flambe(&self) -> String {
        self.join("bin/flambe")
    }
    /// One build, by the sha256 of its bytes.
    pub fn flambe_build(&self, hash: &str) -> String {
        self.join(&format!("bin/flambe-{hash}"))
    }
    /// The `tensorboard` link in `bin`.
    pub fn tensorboard_link(&self) -> String {
        self.join("bin/tensorboard")
    }
    /// The cluster's own files on the host (0700).
    pub fn cluster(&self) -> String {
        self.join("cluster")
    }
    /// The cluster's private key (the orchestrator reaches factories with it).
    pub fn cluster_key(&self) -> String {
        self.join("cluster/id_ed25519")
    }
    /// The cluster's pinned host keys.
    pub fn known_hosts(&self) -> String {
        self.join("cluster/known_hosts")
    }
    /// Host aliases of the cluster, for ssh and rsync between hosts.
    pub fn ssh_config(&self) -> String {
        self.join("cluster/ssh_config")
    }
    /// The cluster's Ray token (0600).
    pub fn ray_token(&self) -> String {
        self.join("cluster/ray_token")
    }
    /// The Ray venv flambe installs.
    pub fn ray(&self) -> String {
        self.join("ray")
    }
    /// The TensorBoard venv flambe installs (orchestrator).
    pub fn tensorboard(&self) -> String {
        self.join("tensorboard")
    }
    /// A GPU count written by the user, over what nvidia-smi sees.
    pub fn gpus(&self) -> String {
        self.join("gpus")
    }
    /// The running driver's [`crate::driver::Driver`] record (orchestrator).
    pub fn driver_record(&self) -> String {
        self.join("driver.json")
    }
    /// Where the extensions' venvs are made, one per key.
    pub fn envs(&self) -> String {
        self.join("envs")
    }
    /// An extension's uploaded source folder.
    pub fn extension(&self, name: &str) -> String {
        self.join(&format!("extensions/{name}"))
    }
    /// Experiment `name`'s folder on every host.
    pub fn experiment(&self, name: &str) -> ExperimentHome {
        ExperimentHome {
            base: self.join(&format!("experiments/{name}")),
            name: name.to_string(),
        }
    }
}

/// `~/.flambe/experiments/NAME/` on every host (same user, same home: the
/// same absolute paths everywhere):
///
/// ```text
///   resources/R/     each local resource, uploaded with rsync
///   runnable.yaml    the experiment or script rewritten for the cluster
///   runs/NAME/       its results folder (orchestrator; trials send theirs back)
///   driver.sh        how the driver is started; driver.pid its pid
///   driver.spec.json the driver's DriverSpec
///   driver.log       the driver's console
///   secrets.json     the experiment's !env values (0600), when it has any
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExperimentHome {
    base: String,
    name: String,
}

impl ExperimentHome {
    fn join(&self, rest: &str) -> String {
        format!("{}/{rest}", self.base)
    }
    /// The experiment's folder.
    pub fn base(&self) -> &str {
        &self.base
    }
    /// Where resource `name` is uploaded.
    pub fn resource(&self, name: &str) -> String {
        self.join(&format!("resources/{name}"))
    }
    /// The runnable's shipped config.
    pub fn runnable(&self) -> String {
        self.join("runnable.yaml")
    }
    /// The `save_path` of the shipped runnable.
    pub fn runs(&self) -> String {
        self.join("runs")
    }
    /// The results folder (`runs/NAME`): a `ResultsDir` on the orchestrator.
    pub fn results(&self) -> String {
        self.join(&format!("runs/{}", self.name))
    }
    /// A file of the results folder (`flambe_experiment::result_file_names`).
    pub fn result_file(&self, file: &str) -> String {
        format!("{}/{file}", self.results())
    }
    /// The driver's start script.
    pub fn driver_script(&self) -> String {
        self.join("driver.sh")
    }
    /// The driver's spec (`flambe drive SPEC`).
    pub fn driver_spec(&self) -> String {
        self.join("driver.spec.json")
    }
    /// The running driver's record.
    pub fn driver_pid(&self) -> String {
        self.join("driver.pid")
    }
    /// The driver's log.
    pub fn driver_log(&self) -> String {
        self.join("driver.log")
    }
    /// The secrets file (0600), read by trials on the orchestrator.
    pub fn secrets(&self) -> String {
        self.join("secrets.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_layout_three_spellings() {
        assert_eq!(RemoteHome::relative().flambe(), ".flambe/bin/flambe");
        assert_eq!(
            RemoteHome::tilde().known_hosts(),
            "~/.flambe/cluster/known_hosts"
        );
        let exp = RemoteHome::at("/home/u/").experiment("mnist");
        assert_eq!(
            exp.results(),
            "/home/u/.flambe/experiments/mnist/runs/mnist"
        );
        assert_eq!(
            exp.result_file("status"),
            "/home/u/.flambe/experiments/mnist/runs/mnist/status"
        );
    }
}
