//! The plan of an experiment: what each stage will run, before anything runs.
//! `--dry-run` prints exactly this, and the engine runs exactly this.

use crate::search::{Params, expand};
use flambe_config::{Experiment, Stage};
use serde::Serialize;

/// What an experiment will run, stage by stage (`--dry-run`).
#[derive(Debug, Clone, Serialize)]
pub struct ExperimentPlan {
    /// The experiment.
    pub name: String,
    /// Its stages, in order.
    pub stages: Vec<StagePlan>,
}

/// What one stage will run.
#[derive(Debug, Clone, Serialize)]
pub struct StagePlan {
    /// The stage.
    pub name: String,
    /// The stage's own search space, expanded (empty for TPE, whose
    /// trials are chosen as it runs).
    pub variants: Vec<Params>,
    /// How the trials are chosen.
    pub search: flambe_config::Search,
    /// Surviving trials of the previous stage; `None` for the first stage.
    pub parents: Option<u64>,
    /// `parents × variants`.
    pub trials: u64,
    /// How many trials go on to the next stage.
    pub survivors: u64,
    /// CPUs each trial takes.
    pub cpus: f64,
    /// GPUs each trial takes.
    pub gpus: u32,
}

/// Lay the experiment's stages end to end.
pub fn plan(exp: &Experiment) -> ExperimentPlan {
    let mut parents: Option<u64> = None;
    let stages = exp
        .pipeline
        .iter()
        .map(|stage| {
            let variants = expand(stage, exp.seed);
            // A TPE stage has no variants ahead: its budget counts.
            let trials = parents.unwrap_or(1) * stage.variant_count();
            let survivors = stage.reduce.map_or(trials, |r| u64::from(r).min(trials));
            let plan = StagePlan {
                name: stage.name.clone(),
                variants,
                search: stage.search,
                parents,
                trials,
                survivors,
                cpus: stage.cpus,
                gpus: stage.gpus,
            };
            parents = Some(survivors);
            plan
        })
        .collect();
    ExperimentPlan {
        name: exp.name.clone(),
        stages,
    }
}

/// A trial's id: the stage name and its index within the stage, readable and
/// stable across reruns (`train-007`).
pub fn trial_id(stage: &Stage, index: usize) -> String {
    format!("{}-{index:03}", stage.name)
}
