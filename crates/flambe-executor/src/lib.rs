//! # flambe-executor: where a trial's command runs
//!
//! An executor takes a [`JobSpec`] (a command, its folder, environment and
//! CPU/GPU needs) and reports [`JobEvent`]s on a channel: started, each
//! metrics line the job appends to `$FLAMBE_METRICS` (read live), output
//! lines, and how it finished. It knows nothing of stages or searches; the
//! experiment engine decides what to launch and what an outcome means.
//!
//! - `local`: child processes on this machine, as many at once as their
//!   CPUs and GPUs fit, each in its own process group so that stopping a job
//!   stops everything it started.
//! - `ray`: jobs submitted to a Ray cluster through the Jobs REST API, with
//!   the job's CPUs/GPUs as entrypoint resources; the entrypoint is
//!   `flambe trial-run` (`wrapper`), which runs the command on the node Ray
//!   chose, as a local job there, and reports back through its log.
//! - `metrics`: the JSON-lines metrics format shared by every executor.
//! - `slots`: slot workers, the Ray executor's default: one Ray job per
//!   resource slot (`flambe slot-run`) runs trials in turn, fed by the
//!   driver over a socket (through the cluster's ssh from other nodes), so
//!   a short trial does not pay for a Ray job of its own.
//! - `ray_log`: a Ray job's log, followed over the Jobs API's websocket
//!   tail and cut into whole lines, each byte read once.
//! - `pyenv`: the extensions' Python environment (a venv keyed by what is
//!   installed in it), made here or by a script on every host.
//! - [`SyncHost`]: where a job that runs on another machine fetches its
//!   inputs from and sends its results back to.
//! - `ray_auth`: the Ray token, found where Ray itself looks for it.
//! - `error`: [`MetricLineError`] and [`RayApiError`] (the wrapper's own
//!   errors are [`WrapperError`]).
//!
//! Modules are private; what other crates use is re-exported here.

#![warn(missing_docs)]

mod error;
mod local;
mod metrics;
mod pyenv;
mod ray;
mod ray_auth;
mod ray_log;
mod slots;
mod wrapper;

pub use error::{MetricLineError, RayApiError};
pub use local::{
    LocalExecutor, MARKER_VAR, detect_cpus, detect_gpus, install_job_shim, kill_marked, marker_of,
    raise_open_file_limit, run_job_shim_if_invoked,
};
pub use metrics::{MetricLine, parse_metric_line};
pub use pyenv::{
    EnvError, InstallOutcome, Package, PackageSource, PythonEnv,
    ensure_here as ensure_python_env_here, env_key as python_env_key,
    install_script as python_env_install_script, parse_outcome as parse_python_env_outcome,
};
pub use ray::RayExecutor;
pub use slots::{SlotSpec, decode_slot_spec, relay_feed, run_slot};
pub use wrapper::{
    ATTEMPT_FILE, WrapperError, decode_spec, encode_spec, guard_trial, leave_ray_environment,
    run_trial,
};

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Where jobs run: the engine launches, releases and cancels through this,
/// and hears back on the channel the executor was made with.
pub trait Executor: Send {
    /// Whether a job needing `cpus` and `gpus` can start now.
    fn fits(&self, cpus: f64, gpus: u32) -> bool;
    /// Jobs launched and not yet released.
    fn running(&self) -> usize;
    /// Start a job; its resources stay taken until `release`.
    fn launch(&mut self, spec: JobSpec);
    /// Give back a finished job's resources.
    fn release(&mut self, id: &str);
    /// Stop a job; a `Finished` event follows.
    fn cancel(&self, id: &str);
    /// Stop every job (Ctrl-C, a failed stage).
    fn cancel_all(&self);
    /// Where jobs run, as the results table names it (`local`, `ray`).
    fn host(&self) -> &str;
    /// Stop what is left of jobs an earlier driver started, known by the
    /// `FLAMBE_OUT` each had (`outs`), and return once they are gone: a
    /// rerun never runs a trial beside its own leftover.
    fn stop_leftovers<'a>(&'a self, outs: &'a [PathBuf]) -> BoxFuture<'a, ()>;
    /// Whether jobs run elsewhere and send their folder back when they end
    /// (so that a late copy from an older attempt must be refused by the
    /// folder's attempt file, [`ATTEMPT_FILE`]).
    fn sends_results_back(&self) -> bool {
        false
    }
}

/// A boxed future, so that [`Executor`] stays object-safe.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// One run of one command.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct JobSpec {
    /// The trial id; every event names it.
    pub id: String,
    /// Run with `bash -c`.
    pub command: String,
    /// The folder it runs in.
    pub cwd: PathBuf,
    /// Its environment, over the inherited one.
    pub env: Vec<(String, String)>,
    /// CPUs it takes while it runs.
    pub cpus: f64,
    /// GPUs it takes (given as `CUDA_VISIBLE_DEVICES`).
    pub gpus: u32,
    #[serde(with = "secs")]
    /// How long it may run before it is stopped.
    pub timeout: Option<Duration>,
    /// stdout and stderr are appended to these files.
    pub stdout: PathBuf,
    /// (See `stdout`.)
    pub stderr: PathBuf,
    /// Truncated at start; the job appends JSON lines to it.
    pub metrics: PathBuf,
    /// Also send every output line as a [`JobEvent::Output`].
    pub echo: bool,
    /// Folders the job reads (outputs of upstream trials), fetched from
    /// the sync host before it starts when it runs elsewhere.
    #[serde(default)]
    pub inputs: Vec<PathBuf>,
    /// The host holding the results (the orchestrator): inputs come from
    /// it, and the job's folder (logs, metrics, `out/`) goes back to it
    /// when the job ends. `None` when the job shares the driver's files.
    #[serde(default)]
    pub sync: Option<SyncHost>,
    /// Secret variables as (variable, key in `secrets_file`): whoever runs
    /// the command reads the values there (on the sync host when set), so
    /// that they never travel in a spec.
    #[serde(default)]
    pub secret_env: Vec<(String, String)>,
    #[serde(default)]
    /// The file (on the sync host when set) `secret_env` values are read from.
    pub secrets_file: Option<PathBuf>,
    /// Put first on the job's PATH (the extensions' venv `bin`), on the
    /// machine where it runs.
    #[serde(default)]
    pub path_prefix: Option<PathBuf>,
    /// The venv Ray runs from on the nodes: the wrapper takes it off the
    /// trial's PATH, so a trial finds the `python` a login would.
    #[serde(default)]
    pub ray_venv: Option<PathBuf>,
    /// The trial's checkpoint folder (`$FLAMBE_CHECKPOINT`), kept across
    /// its attempts. Where the job runs elsewhere, the wrapper fetches it
    /// from the sync host first and sends it back after every metric line.
    #[serde(default)]
    pub checkpoint: Option<PathBuf>,
}

/// The results host of a job that runs on another machine, and how to
/// reach it (the cluster's ssh_config on every host: its key, its pinned
/// host keys, the hosts' names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncHost {
    /// The host's name in `ssh_config`.
    pub host: String,
    /// The ssh_config that names it (the cluster's own).
    pub ssh_config: PathBuf,
    /// An ssh master connection to it that this node already holds (a
    /// slot worker's feed): copies and reads go through it, with no
    /// handshake of their own. Set on the node, never by the driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_path: Option<PathBuf>,
}

impl SyncHost {
    /// The ssh command line (for rsync's `-e`, or to run) that reaches it.
    pub fn ssh_args(&self) -> Vec<String> {
        let mut args = vec!["-F".to_string(), self.ssh_config.display().to_string()];
        if let Some(path) = &self.control_path {
            // No master there (it went away): ssh connects on its own.
            args.push("-o".to_string());
            args.push(format!("ControlPath={}", path.display()));
            args.push("-o".to_string());
            args.push("ControlMaster=no".to_string());
        }
        args
    }
}

/// What an executor tells the engine about a job.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    /// The job's process started.
    Started {
        /// The job.
        id: String,
        /// Its process id (the group leader).
        pid: u32,
        /// The GPUs it was given.
        gpus: Vec<u32>,
    },
    /// A metrics line the job appended.
    Metric {
        /// The job.
        id: String,
        /// Its line number in the metrics file.
        line: usize,
        /// The parsed line.
        metric: MetricLine,
    },
    /// A metrics line that could not be parsed.
    BadMetricLine {
        /// The job.
        id: String,
        /// Its line number.
        line: usize,
        /// What is wrong with it.
        error: String,
    },
    /// A line of the job's output.
    Output {
        /// The job.
        id: String,
        /// From stderr (else stdout).
        stderr: bool,
        /// The line, without its newline.
        line: String,
    },
    /// The job ended.
    Finished {
        /// The job.
        id: String,
        /// How.
        outcome: Outcome,
    },
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_some(&d.map(|d| d.as_secs_f64()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.map(Duration::from_secs_f64))
    }
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The command exited with this code.
    Exited(i32),
    /// Killed by a signal nobody here sent.
    Signaled(i32),
    /// Ran past its timeout and was stopped.
    TimedOut,
    /// Stopped on request (early stopping, Ctrl-C).
    Cancelled,
    /// Could not be started at all.
    SpawnFailed(String),
    /// Gone with no exit code: the machine or the job runner lost it.
    Lost(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Exited(code) => write!(f, "exited with code {code}"),
            Outcome::Signaled(sig) => write!(f, "killed by signal {sig}"),
            Outcome::TimedOut => write!(f, "timed out"),
            Outcome::Cancelled => write!(f, "stopped"),
            Outcome::SpawnFailed(why) => write!(f, "could not start: {why}"),
            Outcome::Lost(why) => write!(f, "lost: {why}"),
        }
    }
}
