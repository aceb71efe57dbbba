//! A PBT exploit carried out: the stopped trial's checkpoint folder
//! becomes a copy of its donor's, its new params are recorded, and it is
//! queued again; its next attempt runs with those params and
//! `$FLAMBE_RESTORE_FROM`.

use super::{Engine, Result, RunningTrial};
use crate::error::EngineError;
use crate::options::Event;
use crate::pbt::Exploit;
use crate::search::Params;
use crate::state::{Exploited, Status, Trial};
use std::path::Path;

impl Engine<'_> {
    /// The exploited trial `rt` has stopped: it goes on as `exploit` says
    /// from attempt `rt.attempt + 1`. Returns it, to queue.
    pub(super) fn continue_exploited(
        &mut self,
        rt: RunningTrial,
        step: i64,
        exploit: Exploit,
    ) -> Result<Option<Trial>> {
        let id = rt.trial.id.clone();
        let dir = self.dir.trial(&id);
        let next = rt.attempt + 1;
        let io = |what: String| move |source| EngineError::Io { what, source };
        // First the attempt guard: from now on a late copy of the stopped
        // attempt's checkpoint (a factory's mirror) is refused.
        std::fs::write(dir.attempt(), next.to_string())
            .map_err(io(format!("cannot write the attempt of {id}")))?;
        let from = self.dir.trial(&exploit.donor).checkpoint();
        copy_checkpoint(&from, &dir.checkpoint()).map_err(io(format!(
            "cannot copy the checkpoint of {} for {id}",
            exploit.donor
        )))?;
        let change = Exploited {
            attempt: next,
            step,
            params: exploit.params,
            donor: exploit.donor,
        };
        self.state(self.store.record_exploit(&id, &change))?;
        let detail = format!(
            "stopped by PBT at step {step}: goes on from {}'s checkpoint",
            change.donor
        );
        self.state(
            self.store
                .finish_attempt(&id, rt.attempt, &detail, false, Status::Pending),
        )?;
        tracing::info!(trial = %id, donor = %change.donor, step, "trial exploited");
        self.observer.on(Event::Exploited {
            stage: &self.exp.pipeline[rt.stage].name,
            id: &id,
            donor: &change.donor,
            step,
            params: &change.params,
        });
        self.state(self.store.trial(&id))
    }

    /// The params attempt `attempt` of `trial` runs with (its own, or PBT's
    /// latest for it), and the exploit that attempt begins, if one does.
    pub(super) fn attempt_params(
        &self,
        trial: &Trial,
        attempt: u32,
    ) -> Result<(Params, Option<Exploited>)> {
        let schedule = self.state(self.store.schedule(&trial.id))?;
        let latest = schedule.into_iter().rfind(|e| e.attempt <= attempt);
        Ok(match latest {
            Some(e) => (e.params.clone(), (e.attempt == attempt).then_some(e)),
            None => (trial.params.clone(), None),
        })
    }
}

/// Replace `to` with a copy of `from` (links copied as links): built
/// beside it and renamed in, so `to` is whole or as it was. A donor that
/// never wrote a checkpoint gives an empty one.
fn copy_checkpoint(from: &Path, to: &Path) -> std::io::Result<()> {
    let name = to
        .file_name()
        .map_or_else(|| "checkpoint".into(), |n| n.to_string_lossy().into_owned());
    let parent = to.parent().unwrap_or(Path::new("."));
    let fresh = parent.join(format!(".{name}.next"));
    let old = parent.join(format!(".{name}.old"));
    for leftover in [&fresh, &old] {
        if leftover.exists() {
            std::fs::remove_dir_all(leftover)?;
        }
    }
    std::fs::create_dir_all(&fresh)?;
    if from.is_dir() {
        copy_tree(from, &fresh)?;
    }
    if to.exists() {
        std::fs::rename(to, &old)?;
    }
    std::fs::rename(&fresh, to)?;
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
        } else if kind.is_dir() {
            std::fs::create_dir(&target)?;
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::copy_checkpoint;

    #[test]
    fn a_checkpoint_is_replaced_whole_by_the_donors() {
        let tmp = tempfile::tempdir().unwrap();
        let donor = tmp.path().join("d/checkpoint");
        let mine = tmp.path().join("m/checkpoint");
        std::fs::create_dir_all(donor.join("sub")).unwrap();
        std::fs::create_dir_all(&mine).unwrap();
        std::fs::write(donor.join("state"), "donor").unwrap();
        std::fs::write(donor.join("sub/more"), "x").unwrap();
        std::os::unix::fs::symlink("state", donor.join("latest")).unwrap();
        std::fs::write(mine.join("state"), "mine").unwrap();
        std::fs::write(mine.join("stale"), "old").unwrap();
        copy_checkpoint(&donor, &mine).unwrap();
        assert_eq!(
            std::fs::read_to_string(mine.join("state")).unwrap(),
            "donor"
        );
        assert_eq!(std::fs::read_to_string(mine.join("sub/more")).unwrap(), "x");
        assert_eq!(
            std::fs::read_link(mine.join("latest")).unwrap(),
            std::path::Path::new("state")
        );
        assert!(!mine.join("stale").exists());
        let left: Vec<_> = std::fs::read_dir(tmp.path().join("m")).unwrap().collect();
        assert_eq!(left.len(), 1, "only the checkpoint is left beside it");
        // A donor without a checkpoint gives an empty one.
        copy_checkpoint(&tmp.path().join("nowhere"), &mine).unwrap();
        assert_eq!(std::fs::read_dir(&mine).unwrap().count(), 0);
    }
}
