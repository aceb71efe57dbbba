//! # flambe-cluster: machines to run on
//!
//! A cluster is one orchestrator (driver, Ray head, report site, TensorBoard)
//! and N factories (the machines that run trials). Providers hand back hosts;
//! everything after that is provider-agnostic.
//!
//! Today this crate knows what a cluster config *would* create ([`plan`]),
//! which `--dry-run` prints. The host layer (SSH, rsync, keys, versioning)
//! and the providers build on it.

pub mod plan;

pub use plan::{HostPlan, InstancePlan, Role, aws_instances, ssh_hosts};
