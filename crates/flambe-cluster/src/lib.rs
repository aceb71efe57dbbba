//! # flambe-cluster: machines to run on
//!
//! A cluster is one orchestrator (driver, Ray head, report site, TensorBoard)
//! and N factories (the machines that run trials). Providers hand back hosts;
//! everything after that is provider-agnostic.
//!
//! - [`plan`]: what a cluster config describes, without touching a machine
//!   (`--dry-run`);
//! - [`host`]: one host over OpenSSH with a multiplexed connection: run
//!   commands (exit code, output, timeout), mkdir, tunnels, docker; every
//!   failure names the host and the command;
//! - [`sync`]: rsync up and down over the cluster's own ssh;
//! - [`state`]: `~/.flambe/clusters/NAME/`: hosts, the cluster key pair
//!   (0600), pinned host keys, an ssh_config;
//! - [`versioning`]: every host runs this exact flambe build, by sha256;
//! - [`provision`]: what a bare host needs for Ray and TensorBoard, brought
//!   by flambe (pip, OS packages through sudo) or a per-host error with the fix;
//! - [`ssh_provider`]: `!SSHCluster` up (idempotent, resumable setup);
//! - [`cluster`]: a known cluster connected, and status / exec / down;
//! - [`extensions`]: the extensions' environment on every host;
//! - [`ray`]: Ray started (or found) on every host with the cluster's token;
//! - [`driver`]: an experiment shipped to a cluster and its driver started
//!   there with a typed [`driver::DriverSpec`]; the running driver's record;
//! - [`remote_home`]: the one owner of the `~/.flambe/` layout on hosts;
//! - [`home`]: where flambe keeps its clusters here (`$FLAMBE_HOME`);
//! - `error`: [`ClusterError`], with the hint for each kind.

pub mod cluster;
pub mod driver;
mod error;
pub mod extensions;
pub mod home;
pub mod host;
pub mod plan;
pub mod provision;
pub mod ray;
pub mod remote_home;
pub mod ssh_provider;
pub mod state;
pub mod sync;
pub mod versioning;

pub use cluster::{Cluster, ClusterError, Down, HostStatus, down_ssh, known_clusters, status};
pub use plan::{HostPlan, InstancePlan, Role, aws_instances, ssh_hosts};
pub use ssh_provider::{UpReport, up};
