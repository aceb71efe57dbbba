//! # flambe-experiment: what an experiment runs, and running it
//!
//! From a validated [`flambe_config::Experiment`] to results:
//!
//! - [`search`] expands a stage's search space (`!g`, `!s`, `!c`, `!u`, `!lu`,
//!   `samples`) into parameter sets, reproducibly from the experiment `seed`
//!   with the fixed generator in [`rng`];
//! - [`plan`] lays the stages end to end for `--dry-run`: a stage's trials are
//!   the surviving trials of the previous stage times its own variants;
//! - [`engine`] runs the stages on an executor, with retries and the stage's
//!   scheduler ([`asha`]), recording everything in [`state`] (SQLite, WAL) so
//!   that a killed run resumes where it was, one driver per results folder
//!   ([`lock`]);
//! - [`results`] ranks trials, picks survivors (`reduce`) and writes
//!   `results.csv` / `results.json`.

pub mod asha;
pub mod engine;
pub mod lock;
pub mod plan;
pub mod results;
pub mod rng;
pub mod search;
pub mod state;

pub use engine::{EngineError, Event, Observer, RayTarget, RunOptions, run_experiment};
pub use plan::{ExperimentPlan, StagePlan, plan, trial_id};
pub use results::{Report, Row, StageResult};
pub use search::{Params, expand, render_value};
pub use state::Status;
