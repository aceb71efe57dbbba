//! # flambe-experiment: what an experiment runs, and running it
//!
//! From a validated [`flambe_config::Experiment`] to results:
//!
//! - `search` expands a stage's search space (`!g`, `!s`, `!c`, `!u`, `!lu`,
//!   `!i`, `samples`, `!Random`) into parameter sets, reproducibly from the experiment `seed`
//!   with the fixed generator in `rng`;
//! - `plan` lays the stages end to end for `--dry-run`: a stage's trials are
//!   the surviving trials of the previous stage times its own variants;
//! - `study` chooses a TPE stage's trials one at a time from the finished
//!   ones;
//! - `engine` runs the stages on an executor, with retries and the stage's
//!   scheduler (`asha`, HyperBand over it, the median rule: `schedulers`), recording everything in `state` (SQLite, WAL) so
//!   that a killed run resumes where it was, one driver per results folder
//!   (`lock`); it is given [`RunOptions`] and tells an [`Observer`] what
//!   happens (`options`); `environment` resolves trials' `env` and secrets,
//!   `prepare` resumes, refuses or sets aside an existing results folder,
//!   comparing the config `fingerprint` it recorded;
//! - `layout` owns the results folder's layout ([`ResultsDir`]) and the
//!   run's [`RunStatus`];
//! - `results` ranks trials, picks survivors (`reduce`) and writes
//!   `results.csv` / `results.json`;
//! - `median` (the median stopping rule) and `pbt` (population-based
//!   training: exploit a donor's checkpoint, explore its params) are the
//!   schedulers besides ASHA; `error` holds [`EngineError`]; `engine_tests`
//!   and `engine_search_tests` drive the engine with a fake executor;
//! - `extend` compares a grown config with what a results folder recorded.
//!
//! Modules are private; what other crates use is re-exported here.

#![warn(missing_docs)]

mod asha;
mod engine;
#[cfg(test)]
mod engine_search_tests;
#[cfg(test)]
mod engine_tests;
mod environment;
mod error;
mod extend;
mod fingerprint;
mod layout;
mod live_curves;
mod lock;
mod median;
mod options;
mod pbt;
mod plan;
mod prepare;
mod results;
mod rng;
mod schedulers;
mod search;
mod state;
mod study;

pub use engine::run_experiment;
pub use error::EngineError;
pub use extend::{Change, Recorded, recorded as recorded_run};
pub use fingerprint::diff;
pub use layout::{ResultsDir, RunStatus, TrialDir, names as result_file_names};
pub use live_curves::LiveCurves;
pub use lock::acquire as lock_results_dir;
pub use options::{Event, Observer, RayTarget, RunOptions};
pub use plan::{ExperimentPlan, StagePlan, plan, trial_id};
pub use results::{
    Report, Row, StageResult, read_report, stage_result, stage_result_live, stages_without_success,
    trial_row,
};
pub use search::{Params, expand, render_value};
pub use state::{StageCurvePoints, StagePoints, Status, Store, now as unix_now};
