//! What a run is given beyond its config ([`RunOptions`]), and what it
//! tells whoever shows it ([`Event`] to an [`Observer`]).

use crate::results::StageResult;
use crate::state::Status;
use flambe_config::Stage;
use std::path::{Path, PathBuf};

/// What a run may use and how it behaves beyond the config.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Set a changed experiment's old results aside and start afresh.
    pub force: bool,
    /// Start afresh even when the config is unchanged (old results set
    /// aside, as with `force`): how a script runs again.
    pub restart: bool,
    /// CPUs and GPUs to fill; `None`: the config's `devices`, else detected.
    pub cpus: Option<f64>,
    /// (See `cpus`.)
    pub gpus: Option<u32>,
    /// Report every output line of every trial.
    pub echo: bool,
    /// The extensions' Python environment, ready on every machine trials
    /// run on (same path): first on their PATH, recorded with the results,
    /// and part of the config (other extensions make another experiment).
    pub python: Option<flambe_executor::PythonEnv>,
    /// Run trials on a Ray cluster instead of here.
    pub ray: Option<RayTarget>,
}

/// A Ray cluster to submit trials to, through its Jobs REST API.
#[derive(Debug, Clone)]
pub struct RayTarget {
    /// The dashboard, e.g. `http://127.0.0.1:8265`.
    pub address: String,
    /// The `flambe` binary the nodes run as each trial's entrypoint.
    pub flambe: String,
    /// Jobs submitted at once, at most.
    pub max_in_flight: usize,
    /// Each trial a Ray job of its own, instead of slot workers that run
    /// trials in turn (`FLAMBE_RAY_JOB_PER_TRIAL=1`; the default without
    /// a sync host, i.e. with `--ray-address`).
    pub job_per_trial: bool,
    /// Where results live when trials run on other machines (the
    /// orchestrator, and the ssh_config that names it); `None` when every
    /// node shares this machine's files.
    pub sync: Option<flambe_executor::SyncHost>,
    /// The experiment's secrets (`!env` values) as a JSON map in a 0600
    /// file on the sync host (or here). Trials are told which keys to read
    /// from it, never the values: Ray keeps and shows every job's spec.
    pub secrets_file: Option<PathBuf>,
    /// The venv Ray runs from on the nodes (off the trials' PATH).
    pub ray_venv: Option<PathBuf>,
}

/// What happened, for whoever shows it.
#[derive(Debug)]
pub enum Event<'a> {
    /// The run begins.
    Begin {
        /// The results folder.
        dir: &'a Path,
        /// Where trials run: `this machine (2 CPUs, 0 GPUs)`, `Ray at URL`.
        on: String,
        /// A recorded run goes on.
        resumed: bool,
    },
    /// A stage begins.
    StageBegin {
        /// The stage.
        stage: &'a Stage,
        /// Its trials.
        total: usize,
        /// Already finished (resumed).
        done: usize,
        /// Already failed (resumed).
        failed: usize,
    },
    /// An attempt of a trial started.
    TrialStarted {
        /// Its stage.
        stage: &'a str,
        /// The trial.
        id: &'a str,
        /// Which attempt (1 first).
        attempt: u32,
        /// Its folder.
        dir: &'a Path,
    },
    /// A trial reported metrics.
    Metrics {
        /// Its stage.
        stage: &'a str,
        /// The trial.
        id: &'a str,
        /// The step.
        step: i64,
        /// The values.
        values: &'a [(String, f64)],
    },
    /// PBT stopped a trial, which goes on from `donor`'s checkpoint (as
    /// it was at `step`) with `params`.
    Exploited {
        /// Its stage.
        stage: &'a str,
        /// The trial.
        id: &'a str,
        /// The trial whose checkpoint it goes on from.
        donor: &'a str,
        /// The donor's step.
        step: i64,
        /// Its new params.
        params: &'a crate::search::Params,
    },
    /// A trial ended.
    TrialFinished {
        /// Its stage.
        stage: &'a str,
        /// The trial.
        id: &'a str,
        /// How.
        status: Status,
        /// Why (for a failure), else empty.
        detail: &'a str,
    },
    /// A line of a trial's output.
    Output {
        /// The trial.
        id: &'a str,
        /// From stderr.
        stderr: bool,
        /// The line.
        line: &'a str,
    },
    /// Something the user should know; the run goes on.
    Warning(String),
    /// The config only adds trials to the recorded run: what grows.
    Extended {
        /// What grows.
        grows: &'a [String],
    },
    /// A stage ended.
    StageEnd {
        /// Its results.
        result: &'a StageResult,
    },
}

/// Whoever shows what the engine does.
pub trait Observer {
    /// Hear one event.
    fn on(&mut self, event: Event<'_>);
}
