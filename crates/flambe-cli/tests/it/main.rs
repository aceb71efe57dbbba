//! The CLI's integration tests, as one test binary (as cargo's and
//! ripgrep's are): one link instead of one per file, and helpers shared
//! through `common` without `dead_code` allowances.
//!
//! Tests that need root (network namespaces) skip with a reason when not
//! root, and fail under `CI=true`. Each test that makes test hosts has its
//! own namespace ids, so tests of different modules run side by side.

mod common;

mod aws_cluster;
mod bad_inputs;
mod bare_hosts;
mod checkpoints;
mod cli;
mod cluster_faults;
mod custom_cluster;
mod local_run;
mod orphans;
mod ray_run;
mod remote_run;
mod site;
mod ssh_cluster;
