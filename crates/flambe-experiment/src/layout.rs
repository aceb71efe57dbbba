//! The results folder of an experiment, `save_path/NAME/`: the one place
//! its layout is spelled. Everyone else (the engine, the report site, the
//! CLI, the cluster's follower) asks a [`ResultsDir`] for a path.
//!
//! ```text
//! save_path/NAME/
//!   state.db            the durable record (SQLite, WAL)
//!   status              how the last run ended (a RunStatus), once it ended
//!   results.csv/.json   the results table
//!   extensions.json     the extensions' environment, when there is one
//!   trials/ID/          params.json, attempt, stdout.log, stderr.log,
//!                       metrics.jsonl, out/ (the trial's own output)
//! ```

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// File names inside a results folder, for readers that see it only as a
/// remote path (the follower on a cluster).
pub mod names {
    /// The durable record (SQLite).
    pub const STATE_DB: &str = "state.db";
    /// How the last run ended.
    pub const STATUS: &str = "status";
    /// The results table, as CSV.
    pub const RESULTS_CSV: &str = "results.csv";
    /// The results table, as JSON.
    pub const RESULTS_JSON: &str = "results.json";
    /// The extensions' environment.
    pub const EXTENSIONS: &str = "extensions.json";
    /// One folder per trial.
    pub const TRIALS: &str = "trials";
    /// A trial's own output folder.
    pub const OUT: &str = "out";
    /// A trial's checkpoint, inside `out`.
    pub const CHECKPOINT: &str = "checkpoint";
}

/// `save_path/NAME/` of one experiment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultsDir {
    root: PathBuf,
}

impl ResultsDir {
    /// The results folder of experiment `name` under `save_path`.
    pub fn new(save_path: &Path, name: &str) -> ResultsDir {
        ResultsDir {
            root: save_path.join(name),
        }
    }

    /// A results folder given by its own path (`flambe site DIR`).
    pub fn at(root: impl Into<PathBuf>) -> ResultsDir {
        ResultsDir { root: root.into() }
    }

    /// The folder itself.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The durable record.
    pub fn state_db(&self) -> PathBuf {
        self.root.join(names::STATE_DB)
    }

    /// Whether an experiment ran here (its state store exists).
    pub fn has_state(&self) -> bool {
        self.state_db().exists()
    }

    /// The plain marker of how the last run ended.
    pub fn status_marker(&self) -> PathBuf {
        self.root.join(names::STATUS)
    }

    /// How the last run here ended, from its marker; `None` while it runs,
    /// or when it never ended (its driver was killed).
    pub fn ended_status(&self) -> Option<RunStatus> {
        std::fs::read_to_string(self.status_marker())
            .ok()
            .and_then(|s| RunStatus::parse(s.trim()))
    }

    /// The results table, as CSV.
    pub fn results_csv(&self) -> PathBuf {
        self.root.join(names::RESULTS_CSV)
    }

    /// The results table, as JSON.
    pub fn results_json(&self) -> PathBuf {
        self.root.join(names::RESULTS_JSON)
    }

    /// The extensions' environment record.
    pub fn extensions(&self) -> PathBuf {
        self.root.join(names::EXTENSIONS)
    }

    /// The folder of every trial.
    pub fn trials(&self) -> PathBuf {
        self.root.join(names::TRIALS)
    }

    /// Trial `id`'s folder.
    pub fn trial(&self, id: &str) -> TrialDir {
        TrialDir(self.trials().join(id))
    }
}

/// `trials/ID/` of one trial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrialDir(PathBuf);

impl TrialDir {
    /// The folder itself.
    pub fn path(&self) -> &Path {
        &self.0
    }
    /// The trial's own output folder (`{out}`, `$FLAMBE_OUT`).
    pub fn out(&self) -> PathBuf {
        self.0.join(names::OUT)
    }
    /// The trial's params, as JSON.
    pub fn params(&self) -> PathBuf {
        self.0.join("params.json")
    }
    /// What the trial saves to resume from (`$FLAMBE_CHECKPOINT`): unlike
    /// `out/`, kept from one attempt to the next.
    pub fn checkpoint(&self) -> PathBuf {
        self.0.join(names::CHECKPOINT)
    }
    /// A PBT donor's checkpoint, copied when the trial was judged, to
    /// become its checkpoint once it has stopped.
    pub fn donor_checkpoint(&self) -> PathBuf {
        self.0.join(".checkpoint.donor")
    }
    /// The attempt whose results the folder takes (see
    /// `flambe_executor::ATTEMPT_FILE`).
    pub fn attempt(&self) -> PathBuf {
        self.0.join(flambe_executor::ATTEMPT_FILE)
    }
    /// From now on the folder takes the results of attempt `attempt` only.
    pub fn write_attempt(&self, attempt: u32) -> std::io::Result<()> {
        std::fs::write(self.attempt(), attempt.to_string())
    }
    /// Its stdout, appended per attempt.
    pub fn stdout(&self) -> PathBuf {
        self.0.join("stdout.log")
    }
    /// Its stderr, appended per attempt.
    pub fn stderr(&self) -> PathBuf {
        self.0.join("stderr.log")
    }
    /// Its metrics, JSON lines.
    pub fn metrics(&self) -> PathBuf {
        self.0.join("metrics.jsonl")
    }
}

/// Where a run stands: recorded in the state (`status` meta), shown by the
/// site, and written to the status marker once it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// A driver is running it.
    Running,
    /// Every stage ran.
    Finished,
    /// Ctrl-C (or SIGTERM): the running trials were stopped; a rerun resumes.
    Interrupted,
    /// An error ended it.
    Stopped,
}

impl RunStatus {
    /// The word the status file holds.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Finished => "finished",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Stopped => "stopped",
        }
    }

    /// The status a status file's word stands for.
    pub fn parse(s: &str) -> Option<RunStatus> {
        match s {
            "running" => Some(RunStatus::Running),
            "finished" => Some(RunStatus::Finished),
            "interrupted" => Some(RunStatus::Interrupted),
            "stopped" => Some(RunStatus::Stopped),
            _ => None,
        }
    }

    /// Whether the run is over (nothing will change without a new run).
    pub fn is_over(self) -> bool {
        self != RunStatus::Running
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_back_what_they_write() {
        for s in [
            RunStatus::Running,
            RunStatus::Finished,
            RunStatus::Interrupted,
            RunStatus::Stopped,
        ] {
            assert_eq!(RunStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(RunStatus::parse("done"), None);
    }

    #[test]
    fn the_marker_says_how_the_run_ended() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ResultsDir::new(tmp.path(), "exp");
        assert_eq!(dir.ended_status(), None);
        std::fs::create_dir_all(dir.path()).unwrap();
        std::fs::write(dir.status_marker(), "interrupted\n").unwrap();
        assert_eq!(dir.ended_status(), Some(RunStatus::Interrupted));
        assert_eq!(
            dir.trial("train-0").out(),
            tmp.path().join("exp/trials/train-0/out")
        );
    }
}
