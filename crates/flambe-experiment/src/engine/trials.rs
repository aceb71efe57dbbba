//! Which trials a stage runs: its variants under each surviving parent,
//! created up front, or a TPE study's suggestions, created one at a time;
//! and what its finished trials tell a new scheduler on a resume.

use super::{Engine, Result};
use crate::schedulers::StageScheduler;
use crate::search::expand;
use crate::state::Trial;
use crate::study::{Observation, suggest};
use flambe_config::Stage;
use std::collections::{HashMap, HashSet};

/// A trial's identity within its stage: its parent, its params, and which
/// repetition of those it is (a grid with `samples` repeats its points).
type Identity = (Option<String>, String, usize);

/// Identities seen so far, counting repetitions.
#[derive(Default)]
struct Identities {
    seen: HashMap<(Option<String>, String), usize>,
    all: HashSet<Identity>,
}

impl Identities {
    fn record(&mut self, parent: Option<&str>, params: &crate::search::Params) -> Identity {
        let key = (
            parent.map(str::to_string),
            serde_json::Value::Object(params.clone()).to_string(),
        );
        let n = self.seen.entry(key.clone()).or_insert(0);
        let identity = (key.0, key.1, *n);
        *n += 1;
        self.all.insert(identity.clone());
        identity
    }

    fn holds(&self, identity: &Identity) -> bool {
        self.all.contains(identity)
    }
}

impl Engine<'_> {
    /// Surviving parents × the stage's variants, ids by index. A variant
    /// already recorded (same parent, same params, same repetition) is
    /// kept as it is, whatever its index now: a config that grew keeps its
    /// trials' ids, and what is new takes the next free indices.
    pub(super) fn create_trials(&self, stage: &Stage, parents: &[Option<Trial>]) -> Result<()> {
        let variants = expand(stage, self.exp.seed);
        let mut existing = self.state(self.store.stage_trials(&stage.name))?;
        existing.sort_by_key(|t| t.index);
        let mut known = Identities::default();
        for t in &existing {
            known.record(t.parent.as_deref(), &t.params);
        }
        let mut taken: HashSet<usize> = existing.iter().map(|t| t.index).collect();
        let mut next = existing.iter().map(|t| t.index + 1).max().unwrap_or(0);
        let mut wanted = Identities::default();
        for (p, parent) in parents.iter().enumerate() {
            let parent_id = parent.as_ref().map(|t| t.id.clone());
            for (v, params) in variants.iter().enumerate() {
                if known.holds(&wanted.record(parent_id.as_deref(), params)) {
                    continue;
                }
                let mut index = p * variants.len() + v;
                if taken.contains(&index) {
                    index = next;
                }
                taken.insert(index);
                next = next.max(index + 1);
                let trial = Trial::pending(stage, index, parent_id.clone(), params.clone());
                self.state(self.store.ensure_trial(&trial))?;
            }
        }
        Ok(())
    }

    /// The parent (by number) whose TPE study has run the fewest trials,
    /// and how many it has, while one has budget left.
    pub(super) fn suggest_slot(
        &self,
        stage: &Stage,
        parents: &[Option<Trial>],
        budget: u32,
    ) -> Result<Option<(usize, Vec<Trial>)>> {
        let existing = self.state(self.store.stage_trials(&stage.name))?;
        let mut best: Option<(usize, Vec<Trial>)> = None;
        for (p, parent) in parents.iter().enumerate() {
            let parent_id = parent.as_ref().map(|t| t.id.as_str());
            let mine: Vec<Trial> = existing
                .iter()
                .filter(|t| t.parent.as_deref() == parent_id)
                .cloned()
                .collect();
            let fewer = best.as_ref().is_none_or(|(_, b)| mine.len() < b.len());
            if mine.len() < budget as usize && fewer {
                best = Some((p, mine));
            }
        }
        Ok(best)
    }

    /// The next trial of a TPE stage, recorded (params and all) before it
    /// runs; None once every study has had its budget.
    pub(super) fn next_suggestion(
        &self,
        stage: &Stage,
        parents: &[Option<Trial>],
        budget: u32,
        startup: u32,
    ) -> Result<Option<Trial>> {
        let Some((p, mine)) = self.suggest_slot(stage, parents, budget)? else {
            return Ok(None);
        };
        let metric = stage.metric.as_deref().unwrap_or_default();
        let maximize = stage.mode == flambe_config::Mode::Max;
        let mut losses = Vec::new();
        for t in mine.iter().filter(|t| t.status.is_done()) {
            let summary = self.state(self.store.metric_summary(&t.id, metric, maximize))?;
            if let Some(best) = summary.best {
                losses.push((t, if maximize { -best } else { best }));
            }
        }
        let history: Vec<Observation> = losses
            .iter()
            .map(|(t, loss)| Observation {
                params: &t.params,
                loss: *loss,
            })
            .collect();
        let k = mine.len();
        // A budget that grew leaves the indices of the next parent's study
        // taken: then the next free one.
        let all = self.state(self.store.stage_trials(&stage.name))?;
        let mut index = p * budget as usize + k;
        if all.iter().any(|t| t.index == index) {
            index = all.iter().map(|t| t.index + 1).max().unwrap_or(0);
        }
        let trial = Trial::pending(
            stage,
            index,
            parents[p].as_ref().map(|t| t.id.clone()),
            suggest(stage, self.exp.seed, p, k, startup, &history),
        );
        self.state(self.store.ensure_trial(&trial))?;
        Ok(Some(trial))
    }

    /// What the stage's finished trials reported, told to a new scheduler
    /// in step order: a resumed stage judges its remaining trials against
    /// the same rungs and medians as the run that was cut short.
    pub(super) fn replay_finished(
        &self,
        stage: &Stage,
        metric: &str,
        scheduler: &mut StageScheduler,
    ) -> Result<()> {
        for trial in self.state(self.store.stage_trials(&stage.name))? {
            if !trial.status.is_done() {
                continue;
            }
            let (params, _) = self.attempt_params(&trial, trial.attempt)?;
            for (step, name, value) in self.state(self.store.trial_metrics(&trial.id))? {
                if name == metric {
                    let _ = scheduler.on_result(&trial.id, trial.index, &params, step, value);
                }
            }
            scheduler.finished(&trial.id);
        }
        Ok(())
    }
}
