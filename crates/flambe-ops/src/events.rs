//! What operations tell whoever shows them. Nothing here decides anything;
//! a reporter that ignores every step changes no outcome.

use crate::views::Views;
use flambe_cluster::HostProvisioned;
use flambe_cluster::Prepared;
use flambe_cluster::Provider;
use flambe_executor::PythonEnv;
use flambe_report::ExperimentSummary;
use std::path::Path;

/// One thing an operation did or learnt, in the order it happened.
#[derive(Debug)]
pub enum Step<'a> {
    /// A cluster is being created or reused.
    BringingUp {
        /// The cluster's name.
        name: &'a str,
        /// Who makes its hosts.
        provider: Provider,
        /// Hosts it has (the orchestrator included), when known before
        /// it is up (a custom cluster's program says).
        hosts: Option<usize>,
    },
    /// What happened to an AWS cluster's instances.
    AwsInstances(&'a flambe_aws::AwsUp),
    /// Every host answers with this flambe; next, what they need.
    ClusterReady {
        /// Since the bring-up began.
        seconds: f64,
        /// Whether TensorBoard is wanted on the orchestrator.
        tensorboard: bool,
    },
    /// What each host got (empty steps: nothing was needed).
    Provisioned(&'a [HostProvisioned]),
    /// Ray runs on every host.
    RayUp {
        /// Nodes alive in the Ray cluster.
        nodes: usize,
        /// How long starting (or finding) it took.
        seconds: f64,
    },
    /// The extensions' environment on every host of a cluster.
    ClusterExtensions(&'a Prepared),
    /// The experiment's driver on the orchestrator: started, or found
    /// running (`started: false`, this run follows it).
    Launched {
        /// The experiment's name.
        name: &'a str,
        /// Its results folder on the orchestrator.
        results: &'a str,
        /// False: it was already running there.
        started: bool,
    },
    /// The extensions' environment is being made here, in `envs`.
    PreparingExtensions {
        /// Where environments are kept here.
        envs: &'a Path,
    },
    /// The extensions' environment here, made or found.
    ExtensionsHere(&'a PythonEnv),
    /// The report site and TensorBoard of a run here, over `dir`.
    Views {
        /// What serves them.
        views: &'a Views,
        /// The results folder they show.
        dir: &'a Path,
    },
    /// The orchestrator's report site, through a tunnel from here.
    SiteTunnel {
        /// The site's URL here.
        url: &'a str,
    },
    /// The orchestrator's TensorBoard, through a tunnel from here.
    TensorBoardTunnel(TensorBoardAt<'a>),
    /// The followed experiment, as its site last described it.
    Progress(&'a ExperimentSummary),
}

/// Where a followed experiment's TensorBoard is.
#[derive(Debug)]
pub enum TensorBoardAt<'a> {
    /// The URL here.
    Tunnel(&'a str),
    /// It runs there, but no tunnel could be made.
    TunnelFailed(String),
    /// Off (`--no-tensorboard`), or it did not start there.
    Off,
}

/// Whoever shows what operations do (the CLI's console).
pub trait Reporter {
    /// One step, as it happens.
    fn step(&mut self, step: Step<'_>);
}

/// A reporter that shows nothing.
impl Reporter for () {
    fn step(&mut self, _: Step<'_>) {}
}
