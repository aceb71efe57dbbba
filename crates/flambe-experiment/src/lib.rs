//! # flambe-experiment: what an experiment runs
//!
//! From a validated [`flambe_config::Experiment`] to trials:
//!
//! - [`search`] expands a stage's search space (`!g`, `!s`, `!c`, `!u`, `!lu`,
//!   `samples`) into parameter sets, reproducibly from the experiment `seed`
//!   with the fixed generator in [`rng`];
//! - [`plan`] lays the stages end to end: a stage's trials are the surviving
//!   trials of the previous stage times its own variants.

pub mod plan;
pub mod rng;
pub mod search;

pub use plan::{ExperimentPlan, StagePlan, plan, trial_id};
pub use search::{Params, expand, render_value};
