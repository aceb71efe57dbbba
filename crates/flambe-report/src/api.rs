//! The report site's JSON API, as types: the server writes them and the
//! CLI's follower (`flambe attach`, a run with `--cluster`) reads them, so
//! the two cannot drift apart.
//!
//! - `GET /api/v1/experiment` → [`ExperimentSummary`]
//! - `GET /api/v1/experiments` → [`ExperimentList`]
//! - `GET /api/v1/stages/{stage}` → [`StageDetail`]
//! - `GET /api/v1/stages/{stage}/metrics` → [`StageMetrics`]
//! - `GET /api/v1/trials/{id}` → [`TrialDetail`]
//! - `GET /api/v1/trials/{id}/metrics` → [`TrialMetrics`]
//! - any failure → its HTTP status and an [`ApiErrorBody`]
//!
//! (`/log`, `/output.tar.gz` and `/files/...` answer with the bytes.)

use flambe_config::Mode;
use flambe_experiment::{Row, RunStatus, StageResult, Status};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where an experiment stands, as the site shows it: a [`RunStatus`], or
/// `starting` before the driver recorded one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SiteStatus {
    /// The driver has not recorded a status yet.
    Starting,
    /// Trials are running (or about to).
    Running,
    /// Every stage ran.
    Finished,
    /// Stopped by Ctrl-C or SIGTERM; the same command resumes.
    Interrupted,
    /// Ended by an error.
    Stopped,
}

impl SiteStatus {
    /// The run's status, once there is one.
    pub fn run_status(self) -> Option<RunStatus> {
        match self {
            SiteStatus::Starting => None,
            SiteStatus::Running => Some(RunStatus::Running),
            SiteStatus::Finished => Some(RunStatus::Finished),
            SiteStatus::Interrupted => Some(RunStatus::Interrupted),
            SiteStatus::Stopped => Some(RunStatus::Stopped),
        }
    }

    /// The status as the API spells it.
    pub fn as_str(self) -> &'static str {
        self.run_status().map_or("starting", RunStatus::as_str)
    }
}

impl From<Option<RunStatus>> for SiteStatus {
    fn from(status: Option<RunStatus>) -> SiteStatus {
        match status {
            None => SiteStatus::Starting,
            Some(RunStatus::Running) => SiteStatus::Running,
            Some(RunStatus::Finished) => SiteStatus::Finished,
            Some(RunStatus::Interrupted) => SiteStatus::Interrupted,
            Some(RunStatus::Stopped) => SiteStatus::Stopped,
        }
    }
}

/// `GET /api/v1/experiment`: the experiment and each stage's counts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExperimentSummary {
    /// The experiment's name.
    pub name: String,
    /// Where it stands.
    pub status: SiteStatus,
    /// Unix seconds.
    pub started: Option<f64>,
    /// Unix seconds, once it ended.
    pub ended: Option<f64>,
    /// Seconds it has run (until its end, once ended).
    pub elapsed_s: Option<f64>,
    /// The results folder, where the driver runs.
    pub dir: PathBuf,
    /// TensorBoard's URL where the driver runs (its loopback), when it runs.
    pub tensorboard: Option<String>,
    /// Each stage, in pipeline order.
    pub stages: Vec<StageSummary>,
}

impl ExperimentSummary {
    /// The port of TensorBoard's URL, for a tunnel to it.
    pub fn tensorboard_port(&self) -> Option<u16> {
        self.tensorboard
            .as_deref()
            .and_then(|url| url.trim_end_matches('/').rsplit(':').next())
            .and_then(|p| p.parse().ok())
    }
}

/// One stage's trials, counted by status, and its best so far.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageSummary {
    /// The stage's name.
    pub name: String,
    /// The metric it ranks by, when it has one.
    pub metric: Option<String>,
    /// Whether higher or lower is better.
    pub mode: Mode,
    /// How many trials go on to the next stage.
    pub reduce: Option<u32>,
    /// Trials in all.
    pub total: usize,
    /// Waiting to run.
    pub pending: usize,
    /// Running now.
    pub running: usize,
    /// Ended well.
    pub succeeded: usize,
    /// Stopped early by the stage's scheduler.
    pub stopped: usize,
    /// Failed every attempt they were allowed.
    pub failed: usize,
    /// Succeeded, stopped or failed: nothing more will happen to them.
    pub done: usize,
    /// The best trial so far, once one reported the metric.
    pub best: Option<BestTrial>,
}

impl StageSummary {
    /// The summary of a ranked stage.
    pub fn of(result: &StageResult, reduce: Option<u32>) -> StageSummary {
        let count = |s: Status| result.count(s);
        StageSummary {
            name: result.name.clone(),
            metric: result.metric.clone(),
            mode: result.mode,
            reduce,
            total: result.rows.len(),
            pending: count(Status::Pending),
            running: count(Status::Running),
            succeeded: count(Status::Succeeded),
            stopped: count(Status::Stopped),
            failed: count(Status::Failed),
            done: result.rows.iter().filter(|r| r.status.is_done()).count(),
            best: result
                .rows
                .first()
                .filter(|r| r.best_metric.is_some())
                .map(|b| BestTrial {
                    id: b.id.clone(),
                    value: b.best_metric,
                }),
        }
    }
}

/// The stage's best trial and its best value of the stage metric.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BestTrial {
    /// The trial's id.
    pub id: String,
    /// Its best value of the metric.
    pub value: Option<f64>,
}

/// `GET /api/v1/stages/{stage}`: a stage and every trial of it, best first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageDetail {
    /// The stage's name.
    pub name: String,
    /// The metric it ranks by, when it has one.
    pub metric: Option<String>,
    /// Whether higher or lower is better.
    pub mode: Mode,
    /// The names of the params its trials vary.
    pub params: Vec<String>,
    /// Those of them drawn log-uniformly (`!lu`), shown on log axes.
    #[serde(default)]
    pub log_params: Vec<String>,
    /// Ids of the trials that go on to the next stage.
    pub survivors: Vec<String>,
    /// Its trials, best first.
    pub trials: Vec<Row>,
}

/// `GET /api/v1/stages/{stage}/metrics?metric=M&after=CURSOR&points=N`: one
/// metric's curve for every trial of a stage (its latest attempt).
///
/// Without `after`, whole curves, each thinned to at most `points` points
/// (the extremes of each stretch are kept). With `after` (the `cursor` of
/// an earlier answer), only the points recorded since, unthinned, unless
/// there are so many that a whole answer is smaller (`full` says which).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageMetrics {
    /// The stage.
    pub stage: String,
    /// The metric these curves are of (the stage's, unless asked for
    /// another), or none when the stage reported nothing.
    pub metric: Option<String>,
    /// Every metric the stage's trials reported.
    pub metrics: Vec<String>,
    /// Ask with `after=cursor` for what comes next.
    pub cursor: i64,
    /// Whole curves (replace what you have), or only new points (append).
    pub full: bool,
    /// Each trial's curve, by trial id.
    pub trials: BTreeMap<String, StageCurve>,
}

/// One trial's points of a [`StageMetrics`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageCurve {
    /// The attempt they are of: a new one replaces the trial's curve.
    pub attempt: u32,
    /// `(step, value)` in step order.
    pub points: Vec<(i64, f64)>,
    /// How many points the curve has, when it was thinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinned_from: Option<usize>,
}

/// `GET /api/v1/experiments`: the experiments this site serves. A site
/// over one experiment lists it alone, at `href` `./`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExperimentList {
    /// Several experiments (a `save_path`), each under its own `href`.
    pub many: bool,
    /// In name order.
    pub experiments: Vec<ExperimentEntry>,
}

/// One experiment of an [`ExperimentList`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExperimentEntry {
    /// Its name (its folder's name).
    pub name: String,
    /// Where its pages are, relative to the site's root (`x/NAME/`).
    pub href: String,
    /// Where it stands.
    pub status: SiteStatus,
    /// Unix seconds.
    pub started: Option<f64>,
    /// Trials done (succeeded, stopped or failed) in all stages.
    pub done: usize,
    /// Trials in all stages.
    pub total: usize,
    /// Trials running now.
    pub running: usize,
    /// Trials that failed.
    pub failed: usize,
    /// The best trial of its last stage that has one.
    pub best: Option<StageBest>,
    /// Why it could not be read, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A stage's best trial, named with its stage and metric.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageBest {
    /// The stage.
    pub stage: String,
    /// Its metric.
    pub metric: Option<String>,
    /// The trial and its value.
    #[serde(flatten)]
    pub trial: BestTrial,
}

/// `GET /api/v1/trials/{id}`: a trial's row and the files it wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrialDetail {
    /// The trial as the results table has it.
    #[serde(flatten)]
    pub row: Row,
    /// Paths under its output folder (at most about a thousand).
    pub files: Vec<String>,
    /// The metric its stage ranks by.
    pub stage_metric: Option<String>,
}

/// `GET /api/v1/trials/{id}/metrics`: every metric's `(step, value)` series.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrialMetrics {
    /// The trial's id.
    pub id: String,
    /// Each metric's points, in step order.
    pub metrics: BTreeMap<String, Vec<(i64, f64)>>,
}

/// What every failed API call answers, with its HTTP status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiErrorBody {
    /// What went wrong, for a person.
    pub error: String,
}
