//! # flambe-cluster: machines to run on
//!
//! A cluster is one orchestrator (driver, Ray head, report site, TensorBoard)
//! and N factories (the machines that run trials). Providers hand back hosts;
//! everything after that is provider-agnostic.
//!
//! - `plan`: what a cluster config describes, without touching a machine
//!   (`--dry-run`);
//! - `host`: one host over OpenSSH with a multiplexed connection: run
//!   commands (exit code, output, timeout), mkdir, tunnels, docker; every
//!   failure names the host and the command;
//! - `sync`: rsync up and down over the cluster's own ssh;
//! - `state`: `~/.flambe/clusters/NAME/`: hosts, the cluster key pair
//!   (0600), pinned host keys, an ssh_config;
//! - `versioning`: every host runs this exact flambe build, by sha256;
//! - `provision`: what a bare host needs for Ray and TensorBoard, brought
//!   by flambe (pip, OS packages through sudo) or a per-host error with the fix;
//! - `ssh_provider`: `!SSHCluster` up (idempotent, resumable setup);
//! - `custom`: `!CommandCluster` and plugins: a program's hosts, then
//!   the `!SSHCluster` path; its `down` for down and rollback;
//! - `cluster`: a known cluster connected, and exec / down;
//! - `status`: every host of a known cluster probed (`cluster status`);
//! - `extensions`: the extensions' environment on every host;
//! - `ray`: Ray started (or found) on every host with the cluster's token;
//! - `driver`: an experiment shipped to a cluster and its driver started
//!   there with a typed [`DriverSpec`]; the running driver's record;
//! - `remote_home`: the one owner of the `~/.flambe/` layout on hosts;
//! - `home`: where flambe keeps its clusters here (`$FLAMBE_HOME`);
//! - `error`: [`ClusterError`], with the hint for each kind.
//!
//! Modules are private; what other crates use is re-exported here.

#![warn(missing_docs)]

mod cluster;
mod custom;
mod driver;
mod error;
mod extensions;
mod home;
mod host;
mod plan;
mod provision;
mod ray;
mod remote_home;
mod ssh_provider;
mod state;
mod status;
mod sync;
mod versioning;

pub use cluster::{Cluster, Down, down_ssh, known_clusters, load_state};
pub use custom::{
    Action as CustomAction, CustomDown, CustomError, CustomHost, CustomHosts, CustomUp,
    PROTOCOL as CUSTOM_PROTOCOL, down as down_custom, is_custom_cluster,
    status_text as custom_status, up as up_custom, validate as validate_custom,
};
pub use driver::{
    ClusterRunnable, Driver, DriverSpec, LaunchOptions, SITE_PORT, pull, running_driver,
    secret_values,
};
pub use error::{ClusterError, DriverSpecError};
pub use extensions::{Prepared, packages as extension_packages};
pub use home::{cluster_dir, flambe_home};
pub use host::{HeldCommand, Host, HostError, Output, shell_quote};
pub use plan::{HostPlan, InstancePlan, Role, aws_instances, instance_tags, ssh_hosts};
pub use provision::{HostProvisioned, ensure as provision};
pub use ray::{DASHBOARD_PORT, RAY_VERSION, start_ray, stop_ray};
pub use remote_home::{ExperimentHome, RemoteHome};
pub use ssh_provider::{UpReport, up};
pub use state::{ClusterFiles, ClusterState, HostState, Installed, Offered, Provider};
pub use status::{HostStatus, status};
pub use sync::{rsync_down, rsync_up};
pub use versioning::sha256_file;
