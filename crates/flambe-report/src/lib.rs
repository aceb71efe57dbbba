//! # flambe-report: what people look at
//!
//! [`tensorboard`] writes every metric a trial reports into TensorBoard event
//! files next to the trial's output, so `tensorboard --logdir save_path/NAME`
//! shows every trial as a run. It is an [`flambe_experiment::Observer`]: the
//! engine reports, this crate shows. The live report site builds on it.

pub mod api;
pub mod site;
pub mod tensorboard;

pub use tensorboard::{EventWriter, TensorBoardObserver, TensorBoardServer};
