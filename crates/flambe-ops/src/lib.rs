//! # flambe-ops: the operations every command is made of
//!
//! As cargo's `ops` under its thin `commands`: each `flambe` command parses
//! its flags, calls one operation here, and prints what it returns. An
//! operation knows nothing of the terminal: it tells a [`Reporter`] what
//! it does ([`Step`]), and the engine's [`flambe_experiment::Observer`]
//! what the experiment does; the CLI decides how that looks.
//!
//! - `here`: [`run_here`], an experiment or script on this machine (or on
//!   a Ray cluster given by address), with its report site and TensorBoard;
//! - `on_cluster`: [`run_on_cluster`], bring-up → provisioning → Ray →
//!   setup → the driver on the orchestrator, then [`follow`];
//! - `follow`: follow a cluster's experiment through its site's typed API
//!   until it ends, and how it ended ([`Ended`]); [`attach`] does the same
//!   for a run started earlier;
//! - `remote`: [`pull`] a cluster's results, [`serve_cluster_site`];
//! - `clusters`: [`up`] and [`down`] for every provider, [`rsync`];
//! - `hosts`: [`status`], [`exec`] on hosts, [`ssh_target`] for a shell;
//! - `views`: the report site and TensorBoard over a results folder;
//! - `events`: what operations report ([`Reporter`], [`Step`]).
//!
//! Modules are private; the CLI uses what is re-exported here.

#![warn(missing_docs)]

mod clusters;
mod events;
mod follow;
mod here;
mod hosts;
mod on_cluster;
mod remote;
mod views;

pub use clusters::{
    ClusterConfig, Downed, Upped, check_custom, cluster_of, cluster_target, down, program_status,
    rsync, up,
};
pub use events::{Reporter, Step, TensorBoardAt};
pub use follow::{DriverGone, Ended, Followed, attach, follow};
pub use here::{HereOptions, HereOutcome, ray_target, run_here};
pub use hosts::{exec, ssh_target, status};
pub use on_cluster::{ClusterOutcome, run_on_cluster};
pub use remote::{pull, serve_cluster_site};
pub use views::{ViewOptions, Views, site_target_of, start_views};

/// The async runtime every operation runs on (two workers: the work is
/// I/O, and hosts may be small).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
