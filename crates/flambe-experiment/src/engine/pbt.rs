//! A PBT exploit carried out. When the trial is judged, its donor's
//! checkpoint is copied aside (the donor is running then, and its
//! checkpoint its own: by the time the trial has stopped, the donor may
//! have been exploited in turn) with the donor's metrics so far. Once the
//! trial has stopped, the copy becomes its checkpoint, its new params are
//! recorded, and it is queued again; its next attempt runs with those
//! params and `$FLAMBE_RESTORE_FROM`.

use super::{Engine, Result, RunningTrial};
use crate::error::EngineError;
use crate::layout::TrialDir;
use crate::options::Event;
use crate::pbt::Exploit;
use crate::search::Params;
use crate::state::{Exploited, Status, Trial};
use std::path::Path;

/// An exploit decided, waiting for the trial to stop.
pub(super) struct PendingExploit {
    /// The step it was judged at.
    pub step: i64,
    pub exploit: Exploit,
    /// The donor's metrics when it was copied: (step, name, value).
    pub inherited: Vec<(i64, String, f64)>,
}

impl Engine<'_> {
    /// Trial `id` was judged at `step` of its attempt `attempt`: its donor's
    /// checkpoint and metrics as they are now, set aside for when it has
    /// stopped. The attempt guard moves on to the next attempt now, so that
    /// no copy back from the stopping attempt (its checkpoint mirror, its
    /// final push, which may still be under way when its stop is reported)
    /// can start any more and land over the donor's checkpoint once it is
    /// in place.
    pub(super) fn stage_exploit(
        &self,
        id: &str,
        attempt: u32,
        step: i64,
        exploit: Exploit,
    ) -> Result<PendingExploit> {
        self.guard_attempt(id, attempt + 1)?;
        let staged = self.dir.trial(id).donor_checkpoint();
        copy_into(&self.dir.trial(&exploit.donor).checkpoint(), &staged).map_err(|source| {
            EngineError::Io {
                what: format!("cannot copy the checkpoint of {} for {id}", exploit.donor),
                source,
            }
        })?;
        let inherited = self.state(self.store.trial_metrics(&exploit.donor))?;
        Ok(PendingExploit {
            step,
            exploit,
            inherited,
        })
    }

    /// The exploited trial `rt` has stopped: it goes on as `pending` says
    /// from attempt `rt.attempt + 1`. Returns it, to queue.
    pub(super) fn continue_exploited(
        &mut self,
        rt: RunningTrial,
        pending: PendingExploit,
    ) -> Result<Option<Trial>> {
        let PendingExploit {
            step,
            exploit,
            inherited,
        } = pending;
        let id = rt.trial.id.clone();
        let dir = self.dir.trial(&id);
        let next = rt.attempt + 1;
        let io = |what: String| move |source| EngineError::Io { what, source };
        // First the attempt guard: from now on a late copy of the stopped
        // attempt's checkpoint (a factory's mirror) is refused.
        self.guard_attempt(&id, next)?;
        swap_in(&dir).map_err(io(format!(
            "cannot put the checkpoint of {} in place for {id}",
            exploit.donor
        )))?;
        let change = Exploited {
            attempt: next,
            step,
            params: exploit.params,
            donor: exploit.donor,
        };
        self.state(self.store.record_exploit(&id, &change))?;
        // Its next attempt begins with the donor's curve: it goes on from
        // the donor's state, and should it end without reporting again,
        // the donor's values are its result.
        for step_values in inherited.chunk_by(|a, b| a.0 == b.0) {
            let values: Vec<(String, f64)> = step_values
                .iter()
                .map(|(_, n, v)| (n.clone(), *v))
                .collect();
            self.state(
                self.store
                    .record_metrics(&id, next, step_values[0].0, &values),
            )?;
        }
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

/// `to` made a copy of `from` (links copied as links), whatever it held;
/// a donor that never wrote a checkpoint gives an empty one.
fn copy_into(from: &Path, to: &Path) -> std::io::Result<()> {
    if to.exists() {
        std::fs::remove_dir_all(to)?;
    }
    std::fs::create_dir_all(to)?;
    if from.is_dir() {
        copy_tree(from, to)?;
    }
    Ok(())
}

/// The trial's staged donor checkpoint becomes its checkpoint by renames,
/// so the checkpoint is whole, either the old one or the donor's.
fn swap_in(dir: &TrialDir) -> std::io::Result<()> {
    let (staged, to) = (dir.donor_checkpoint(), dir.checkpoint());
    let old = dir.path().join(".checkpoint.old");
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    if to.exists() {
        std::fs::rename(&to, &old)?;
    }
    std::fs::rename(&staged, &to)?;
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    Ok(())
}

/// The donor may be running and writing its checkpoint as it is copied:
/// an entry that is renamed away meanwhile (a temporary file) is skipped.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    let gone = |r: std::io::Result<()>| match r {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    };
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        gone((|| {
            let kind = entry.file_type()?;
            if kind.is_symlink() {
                std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)
            } else if kind.is_dir() {
                std::fs::create_dir(&target)?;
                copy_tree(&entry.path(), &target)
            } else {
                std::fs::copy(entry.path(), &target).map(drop)
            }
        })())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{copy_into, swap_in};
    use crate::layout::ResultsDir;

    #[test]
    fn a_checkpoint_is_replaced_whole_by_the_donors() {
        let tmp = tempfile::tempdir().unwrap();
        let results = ResultsDir::at(tmp.path());
        let (d, m) = (results.trial("d"), results.trial("m"));
        let (donor, mine) = (d.checkpoint(), m.checkpoint());
        std::fs::create_dir_all(donor.join("sub")).unwrap();
        std::fs::create_dir_all(&mine).unwrap();
        std::fs::write(donor.join("state"), "donor").unwrap();
        std::fs::write(donor.join("sub/more"), "x").unwrap();
        std::os::unix::fs::symlink("state", donor.join("latest")).unwrap();
        std::fs::write(mine.join("state"), "mine").unwrap();
        std::fs::write(mine.join("stale"), "old").unwrap();
        copy_into(&donor, &m.donor_checkpoint()).unwrap();
        // The donor goes on writing after the copy: the trial gets the copy.
        std::fs::write(donor.join("state"), "donor, later").unwrap();
        swap_in(&m).unwrap();
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
        let left: Vec<_> = std::fs::read_dir(m.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "only the checkpoint is left beside it");
        // A donor without a checkpoint gives an empty one.
        copy_into(&tmp.path().join("nowhere"), &m.donor_checkpoint()).unwrap();
        swap_in(&m).unwrap();
        assert_eq!(std::fs::read_dir(&mine).unwrap().count(), 0);
    }
}
