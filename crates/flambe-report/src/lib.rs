//! # flambe-report: what people look at
//!
//! `tensorboard` writes every metric a trial reports into TensorBoard event
//! files next to the trial's output, so `tensorboard --logdir save_path/NAME`
//! shows every trial as a run. It is an [`flambe_experiment::Observer`]: the
//! engine reports, this crate shows.
//!
//! `site` serves the live report site over a results folder (read-only,
//! while the driver writes it): the pages, built into the binary, and the
//! JSON API whose types are `api`, shared with the CLI's follower.

#![warn(missing_docs)]

mod api;
mod site;
mod tensorboard;

pub use api::{
    ApiErrorBody, BestTrial, ExperimentEntry, ExperimentList, ExperimentSummary, SiteStatus,
    StageBest, StageCurve, StageDetail, StageMetrics, StageSummary, TrialDetail, TrialMetrics,
};
pub use site::{Served, Site, SiteOptions, new_token, serve};
pub use tensorboard::{EventWriter, TensorBoardObserver, TensorBoardServer};
