//! Ranking and the results table: `results.json` and `results.csv`, one row
//! per trial, written after every stage and at the end (also when stopped).
//!
//! Trials are ranked by their *best* value of the stage metric over their
//! last attempt (an early-stopped trial keeps what it reached), then by
//! trial index, so ties always break the same way.

use crate::live_curves::LiveCurves;
use crate::state::{MetricSummary, Status, Store, Trial};
use flambe_config::{Experiment, Mode, Stage};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One trial's line of the results table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// Its stage.
    pub stage: String,
    /// The trial id (`train-003`).
    pub id: String,
    /// The trial of the previous stage it went on from.
    pub parent: Option<String>,
    /// Its params, as JSON.
    pub params: serde_json::Map<String, serde_json::Value>,
    /// How it stands.
    pub status: Status,
    /// The stage's metric.
    pub metric: Option<String>,
    /// The last value reported of `metric`.
    pub final_metric: Option<f64>,
    /// The best value reported of `metric`.
    pub best_metric: Option<f64>,
    /// The step of the best value.
    pub best_step: Option<i64>,
    /// Attempts started, interrupted ones included.
    pub attempts: u32,
    /// How long its last attempt ran.
    pub duration_s: Option<f64>,
    /// Why it failed.
    pub error: Option<String>,
    /// Where it ran (`local`, a Ray node).
    pub host: Option<String>,
    /// PBT's changes of its params, in order (`params` are those it
    /// started with).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedule: Vec<crate::state::Exploited>,
    #[serde(skip)]
    /// Its place in the stage's plan (the order trials were made in).
    pub index: usize,
}

/// One stage's trials, ranked.
#[derive(Debug, Clone, Serialize)]
pub struct StageResult {
    /// The stage.
    pub name: String,
    /// Its metric.
    pub metric: Option<String>,
    /// Whether `metric` is maximised.
    pub mode: Mode,
    /// Best first (see the module docs).
    pub rows: Vec<Row>,
    /// Ids of the trials that go on to the next stage, in index order.
    pub survivors: Vec<String>,
}

impl StageResult {
    /// How many of its trials have `status`.
    pub fn count(&self, status: Status) -> usize {
        self.rows.iter().filter(|r| r.status == status).count()
    }
}

/// Every stage's results, and where they are.
#[derive(Debug, Clone)]
pub struct Report {
    /// The results folder.
    pub dir: PathBuf,
    /// The stages, in pipeline order.
    pub stages: Vec<StageResult>,
}

impl Report {
    /// The results table's CSV.
    pub fn csv_path(&self) -> PathBuf {
        crate::layout::ResultsDir::at(&self.dir).results_csv()
    }

    /// Stages where no trial succeeded (see [`stages_without_success`]).
    pub fn stages_without_success(&self) -> Vec<String> {
        let names: Vec<String> = self.stages.iter().map(|s| s.name.clone()).collect();
        let rows: Vec<Row> = self.stages.iter().flat_map(|s| s.rows.clone()).collect();
        stages_without_success(&names, &rows)
    }
}

/// The stages of `stages` (and any other stage `rows` name) where no trial
/// succeeded: a finished experiment with one is a failure (exit 3), for
/// scripts and CI that check the exit code. A trial stopped early by its
/// scheduler counts as a success: it ran, and its metric ranks it.
pub fn stages_without_success(stages: &[String], rows: &[Row]) -> Vec<String> {
    let mut names: Vec<&str> = stages.iter().map(String::as_str).collect();
    for row in rows {
        if !names.contains(&row.stage.as_str()) {
            names.push(&row.stage);
        }
    }
    names
        .into_iter()
        .filter(|stage| {
            !rows.iter().any(|r| {
                r.stage == *stage && matches!(r.status, Status::Succeeded | Status::Stopped)
            })
        })
        .map(str::to_string)
        .collect()
}

/// The report of a results folder (`save_path/NAME`) written earlier,
/// elsewhere perhaps: read from its `state.db`, changing nothing.
pub fn read_report(dir: &Path, exp: &Experiment) -> rusqlite::Result<Report> {
    let store = Store::open_read_only(&crate::layout::ResultsDir::at(dir).state_db())?;
    let stages = exp
        .pipeline
        .iter()
        .map(|stage| stage_result(&store, stage))
        .collect::<rusqlite::Result<_>>()?;
    Ok(Report {
        dir: dir.to_path_buf(),
        stages,
    })
}

/// The ranked rows of one stage and who survives it.
pub fn stage_result(store: &Store, stage: &Stage) -> rusqlite::Result<StageResult> {
    // One statement per table for the whole stage, not three per trial.
    let summaries = match &stage.metric {
        Some(m) => store.stage_metric_summaries(&stage.name, m, stage.mode == Mode::Max)?,
        None => Default::default(),
    };
    ranked(store, stage, store.stage_trials(&stage.name)?, summaries)
}

/// [`stage_result`] for a reader that asks again and again (the report
/// site): the metric's curves are kept in `live`, which reads only what
/// was recorded since it last read, and the summaries folded from them.
pub fn stage_result_live(
    store: &Store,
    stage: &Stage,
    live: &mut LiveCurves,
) -> rusqlite::Result<StageResult> {
    let trials = store.stage_trials(&stage.name)?;
    let Some(metric) = &stage.metric else {
        return ranked(store, stage, trials, Default::default());
    };
    let attempts: HashMap<&str, u32> = trials.iter().map(|t| (t.id.as_str(), t.attempt)).collect();
    live.refresh(store, &stage.name, metric)?;
    // A summary of an attempt that is no longer the trial's latest is no
    // summary of it: its new attempt has not reported yet.
    let summaries = live
        .summaries(stage.mode == Mode::Max)
        .into_iter()
        .filter(|(id, (attempt, _))| attempts.get(id.as_str()) == Some(attempt))
        .map(|(id, (_, summary))| (id, summary))
        .collect();
    ranked(store, stage, trials, summaries)
}

fn ranked(
    store: &Store,
    stage: &Stage,
    trials: Vec<Trial>,
    mut summaries: HashMap<String, MetricSummary>,
) -> rusqlite::Result<StageResult> {
    let attempts = store.stage_attempt_counts(&stage.name)?;
    let mut schedules = store.stage_schedules(&stage.name)?;
    let mut rows = Vec::with_capacity(trials.len());
    for t in trials {
        let summary = summaries.remove(&t.id).unwrap_or_default();
        let attempts = attempts.get(&t.id).copied().unwrap_or(0);
        let schedule = schedules.remove(&t.id).unwrap_or_default();
        rows.push(row(stage, t, summary, attempts, schedule));
    }
    rows.sort_by(|a, b| rank(stage.mode, a, b));
    let mut survivors: Vec<&Row> = rows.iter().filter(|r| eligible(stage, r)).collect();
    if let Some(k) = stage.reduce {
        survivors.truncate(k as usize);
    }
    survivors.sort_by_key(|r| r.index);
    Ok(StageResult {
        name: stage.name.clone(),
        metric: stage.metric.clone(),
        mode: stage.mode,
        survivors: survivors.iter().map(|r| r.id.clone()).collect(),
        rows,
    })
}

/// One trial's row, without ranking its stage.
pub fn trial_row(store: &Store, stage: &Stage, id: &str) -> rusqlite::Result<Option<Row>> {
    let Some(t) = store.trial(id)? else {
        return Ok(None);
    };
    let summary = match &stage.metric {
        Some(m) => store.metric_summary(id, m, stage.mode == Mode::Max)?,
        None => MetricSummary::default(),
    };
    let attempts = store.attempt_count(id)?;
    let schedule = store.schedule(id)?;
    Ok(Some(row(stage, t, summary, attempts, schedule)))
}

fn row(
    stage: &Stage,
    t: Trial,
    s: MetricSummary,
    attempts: u32,
    schedule: Vec<crate::state::Exploited>,
) -> Row {
    Row {
        stage: t.stage,
        id: t.id,
        parent: t.parent,
        params: t.params,
        status: t.status,
        metric: stage.metric.clone(),
        final_metric: s.last,
        best_metric: s.best,
        best_step: s.best_step,
        attempts,
        duration_s: match (t.started, t.ended) {
            (Some(a), Some(b)) if t.status.is_done() => Some(b - a),
            _ => None,
        },
        error: t.error,
        host: t.host,
        schedule,
        index: t.index,
    }
}

/// A finished trial that may have descendants: succeeded or stopped early,
/// with the stage's metric reported when the stage has one.
fn eligible(stage: &Stage, r: &Row) -> bool {
    matches!(r.status, Status::Succeeded | Status::Stopped)
        && (stage.metric.is_none() || r.best_metric.is_some())
}

fn rank(mode: Mode, a: &Row, b: &Row) -> Ordering {
    let key = |r: &Row| match r.status {
        Status::Succeeded | Status::Stopped => 0,
        Status::Running | Status::Pending => 1,
        Status::Failed => 2,
    };
    key(a)
        .cmp(&key(b))
        .then_with(|| match (a.best_metric, b.best_metric) {
            (Some(x), Some(y)) => match mode {
                Mode::Max => y.total_cmp(&x),
                Mode::Min => x.total_cmp(&y),
            },
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        })
        .then(a.index.cmp(&b.index))
}

/// Build the report of every stage so far and write the results files.
pub fn write_results(dir: &Path, exp: &Experiment, store: &Store) -> Result<Report, ResultsError> {
    let mut stages = Vec::new();
    for stage in &exp.pipeline {
        stages.push(stage_result(store, stage)?);
    }
    let rows: Vec<&Row> = stages
        .iter()
        .flat_map(|s| {
            let mut rows: Vec<&Row> = s.rows.iter().collect();
            rows.sort_by_key(|r| r.index);
            rows
        })
        .collect();
    let layout = crate::layout::ResultsDir::at(dir);
    let json = serde_json::to_string_pretty(&rows)
        .map_err(|e| ResultsError::Io(layout.results_json(), e.into()))?;
    write_atomic(&layout.results_json(), json.as_bytes())?;
    write_atomic(&layout.results_csv(), &csv_bytes(&rows)?)?;
    Ok(Report {
        dir: dir.to_path_buf(),
        stages,
    })
}

fn csv_bytes(rows: &[&Row]) -> Result<Vec<u8>, ResultsError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let fmt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    let io = |e: csv::Error| {
        ResultsError::Io(
            PathBuf::from(crate::layout::names::RESULTS_CSV),
            std::io::Error::other(e),
        )
    };
    w.write_record([
        "stage",
        "id",
        "parent",
        "params",
        "status",
        "metric",
        "final_metric",
        "best_metric",
        "best_step",
        "attempts",
        "duration_s",
        "error",
        "schedule",
    ])
    .map_err(io)?;
    for r in rows {
        w.write_record([
            r.stage.clone(),
            r.id.clone(),
            r.parent.clone().unwrap_or_default(),
            serde_json::Value::Object(r.params.clone()).to_string(),
            r.status.as_str().to_string(),
            r.metric.clone().unwrap_or_default(),
            fmt(r.final_metric),
            fmt(r.best_metric),
            r.best_step.map(|s| s.to_string()).unwrap_or_default(),
            r.attempts.to_string(),
            r.duration_s.map(|d| format!("{d:.3}")).unwrap_or_default(),
            r.error.clone().unwrap_or_default(),
            match r.schedule.is_empty() {
                true => String::new(),
                false => serde_json::to_string(&r.schedule).unwrap_or_default(),
            },
        ])
        .map_err(io)?;
    }
    w.into_inner().map_err(|e| {
        ResultsError::Io(
            PathBuf::from(crate::layout::names::RESULTS_CSV),
            std::io::Error::other(e.to_string()),
        )
    })
}

/// Write through a temporary file and rename, so a reader (or a crash) never
/// sees half a results file.
/// Replace `path` whole or not at all: written to a temporary file of its
/// own (named after it, so `results.json` and `results.csv` never share
/// one), synced, renamed over it, and the folder synced so the rename
/// survives a crash.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ResultsError> {
    use std::io::Write;
    let io = |e| ResultsError::Io(path.to_path_buf(), e);
    let name = path
        .file_name()
        .map_or_else(|| "results".into(), |n| n.to_string_lossy().into_owned());
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::write_atomic;

    #[test]
    fn two_files_written_at_once_keep_their_own_contents() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("results.json");
        let csv = dir.path().join("results.csv");
        let writer = |path: std::path::PathBuf, text: &'static str| {
            std::thread::spawn(move || {
                for _ in 0..300 {
                    write_atomic(&path, text.as_bytes()).unwrap();
                }
            })
        };
        let a = writer(json.clone(), "[{\"json\": true}]");
        let b = writer(csv.clone(), "stage,id\n");
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(
            std::fs::read_to_string(&json).unwrap(),
            "[{\"json\": true}]"
        );
        assert_eq!(std::fs::read_to_string(&csv).unwrap(), "stage,id\n");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| n.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("cannot write {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("cannot read the experiment state: {0}")]
    State(#[from] rusqlite::Error),
}
