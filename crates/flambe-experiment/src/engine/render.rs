//! A trial's `run` command with its placeholders filled in, and the
//! ancestors (upstream trials) its placeholders and inputs point at.

use super::Engine;
use crate::error::RenderError;
use crate::search::render_value;
use crate::state::Trial;
use flambe_config::{Ref, classify_placeholder as classify};
use flambe_config::{ResourceLocation, Stage};
use std::path::{Path, PathBuf};

impl Engine<'_> {
    /// The `run` command with every placeholder filled in.
    pub(super) fn render(
        &self,
        stage: &Stage,
        trial: &Trial,
        out: &Path,
    ) -> std::result::Result<String, RenderError> {
        stage.run.render(|path| match classify(path) {
            Ref::Out => Ok(out.display().to_string()),
            Ref::Trial => Ok(trial.id.clone()),
            Ref::Param(p) => trial
                .params
                .get(p)
                .map(render_value)
                .ok_or_else(|| RenderError::NoParam(p.to_string())),
            Ref::Resource(r) => self
                .exp
                .resources
                .iter()
                .find(|x| x.name == r)
                .map(|x| match &x.location {
                    ResourceLocation::Local(p) => p.display().to_string(),
                    ResourceLocation::Cluster(p) => p.clone(),
                })
                .ok_or_else(|| RenderError::NoResource(r.to_string())),
            Ref::UpstreamOut(s) => self
                .ancestor(trial, s)
                .map(|a| self.out_dir(&a.id).display().to_string()),
            Ref::UpstreamParam(s, p) => {
                // A PBT ancestor's are the params it ended with.
                let ancestor = self.ancestor(trial, s)?;
                let schedule = self.store.schedule(&ancestor.id)?;
                schedule
                    .last()
                    .map_or(&ancestor.params, |e| &e.params)
                    .get(p)
                    .map(render_value)
                    .ok_or_else(|| RenderError::NoUpstreamParam {
                        stage: s.to_string(),
                        param: p.to_string(),
                    })
            }
            Ref::Invalid => Err(RenderError::Unknown(path.join("."))),
        })
    }

    /// The output folders of every ancestor of `trial` (what `{STAGE.out}`
    /// may point at).
    pub(super) fn ancestor_outputs(&self, trial: &Trial) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut current = trial.parent.clone();
        while let Some(id) = current {
            out.push(self.out_dir(&id));
            current = self.store.trial(&id).ok().flatten().and_then(|t| t.parent);
        }
        out
    }

    /// The trial of stage `stage` that `trial` descends from.
    fn ancestor(&self, trial: &Trial, stage: &str) -> std::result::Result<Trial, RenderError> {
        let mut current = trial.parent.clone();
        while let Some(id) = current {
            let t = self
                .store
                .trial(&id)?
                .ok_or_else(|| RenderError::Unrecorded(id.clone()))?;
            if t.stage == stage {
                return Ok(t);
            }
            current = t.parent;
        }
        Err(RenderError::NoAncestor {
            trial: trial.id.clone(),
            stage: stage.to_string(),
        })
    }
}
