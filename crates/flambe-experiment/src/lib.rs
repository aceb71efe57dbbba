//! # flambe-experiment: what an experiment runs, and running it
//!
//! From a validated [`flambe_config::Experiment`] to results:
//!
//! - [`search`] expands a stage's search space (`!g`, `!s`, `!c`, `!u`, `!lu`,
//!   `!i`, `samples`, `!Random`) into parameter sets, reproducibly from the experiment `seed`
//!   with the fixed generator in [`rng`];
//! - [`plan`] lays the stages end to end for `--dry-run`: a stage's trials are
//!   the surviving trials of the previous stage times its own variants;
//! - [`study`] chooses a TPE stage's trials one at a time from the finished
//!   ones;
//! - [`engine`] runs the stages on an executor, with retries and the stage's
//!   scheduler ([`asha`], HyperBand over it, the median rule: `schedulers`), recording everything in [`state`] (SQLite, WAL) so
//!   that a killed run resumes where it was, one driver per results folder
//!   ([`lock`]); it is given [`RunOptions`] and tells an [`Observer`] what
//!   happens (`options`); `environment` resolves trials' `env` and secrets,
//!   `prepare` resumes, refuses or sets aside an existing results folder;
//! - [`layout`] owns the results folder's layout ([`ResultsDir`]) and the
//!   run's [`RunStatus`];
//! - [`results`] ranks trials, picks survivors (`reduce`) and writes
//!   `results.csv` / `results.json`.

pub mod asha;
pub mod engine;
#[cfg(test)]
mod engine_search_tests;
#[cfg(test)]
mod engine_tests;
mod environment;
mod error;
pub mod extend;
pub mod layout;
pub mod lock;
mod median;
mod options;
mod pbt;
pub mod plan;
mod prepare;
pub mod results;
pub mod rng;
mod schedulers;
pub mod search;
pub mod state;
pub mod study;

pub use engine::run_experiment;
pub use error::EngineError;
pub use layout::{ResultsDir, RunStatus, TrialDir};
pub use options::{Event, Observer, RayTarget, RunOptions};
pub use plan::{ExperimentPlan, StagePlan, plan, trial_id};
pub use prepare::diff;
pub use results::{Report, Row, StageResult};
pub use search::{Params, expand, render_value};
pub use state::Status;
