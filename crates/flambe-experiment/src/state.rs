//! The durable record of an experiment: `save_path/NAME/state.db`.
//!
//! SQLite in WAL mode, one transaction per change, so killing the driver at
//! any moment loses nothing that was recorded: a rerun finds every finished
//! trial, every attempt and every metric. Trials that were running when the
//! driver died are put back to pending by [`Store::recover`]; their
//! interrupted attempt does not count against `max_failures`.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde_json::Value;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// How a trial stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Not started.
    Pending,
    /// An attempt is running.
    Running,
    /// Its command exited 0.
    Succeeded,
    /// Every attempt failed.
    Failed,
    /// Stopped early by the stage's scheduler; its metrics still rank it.
    Stopped,
}

impl Status {
    /// The word stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Stopped => "stopped",
        }
    }

    fn parse(s: &str) -> Status {
        match s {
            "running" => Status::Running,
            "succeeded" => Status::Succeeded,
            "failed" => Status::Failed,
            "stopped" => Status::Stopped,
            _ => Status::Pending,
        }
    }

    /// It will not run again.
    pub fn is_done(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed | Status::Stopped)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    pub id: String,
    pub stage: String,
    pub index: usize,
    pub parent: Option<String>,
    pub params: serde_json::Map<String, Value>,
    pub status: Status,
    /// Attempts started, interrupted ones included.
    pub attempt: u32,
    /// Failed attempts (counted against `max_failures`).
    pub failures: u32,
    pub started: Option<f64>,
    pub ended: Option<f64>,
    pub error: Option<String>,
    pub pgid: Option<i64>,
    /// Where the latest attempt ran.
    pub host: Option<String>,
}

impl Trial {
    /// A trial not yet run: number `index` of `stage`.
    pub fn pending(
        stage: &flambe_config::Stage,
        index: usize,
        parent: Option<String>,
        params: serde_json::Map<String, Value>,
    ) -> Trial {
        Trial {
            id: crate::plan::trial_id(stage, index),
            stage: stage.name.clone(),
            index,
            parent,
            params,
            status: Status::Pending,
            attempt: 0,
            failures: 0,
            started: None,
            ended: None,
            error: None,
            pgid: None,
            host: None,
        }
    }
}

/// A change of a trial's params by PBT: from attempt `attempt` on, the
/// trial runs with `params`, going on from `donor`'s checkpoint as it was
/// at `step`.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Exploited {
    pub attempt: u32,
    pub step: i64,
    pub params: serde_json::Map<String, Value>,
    pub donor: String,
}

/// A trial's stage metric over its last attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct MetricSummary {
    pub last: Option<f64>,
    pub best: Option<f64>,
    pub best_step: Option<i64>,
    pub steps: usize,
}

impl MetricSummary {
    /// Take the next value, in step order: the last so far, and the best
    /// if strictly better (a tie keeps the earlier step).
    pub(crate) fn add(&mut self, step: i64, value: f64, maximize: bool) {
        self.steps += 1;
        self.last = Some(value);
        let better = match self.best {
            None => true,
            Some(b) if maximize => value > b,
            Some(b) => value < b,
        };
        if better {
            self.best = Some(value);
            self.best_step = Some(step);
        }
    }
}

mod stage_tables;
pub use stage_tables::{StageCurvePoints, StagePoints};

/// The durable record of a run: trials, attempts, metrics (SQLite, WAL).
pub struct Store {
    conn: Connection,
}

pub type Result<T> = rusqlite::Result<T>;

/// Seconds since the Unix epoch: the clock every recorded time uses.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Store {
    /// Open for reading only, beside a running driver (WAL allows it).
    pub fn open_read_only(path: &Path) -> Result<Store> {
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(Store { conn })
    }

    /// Open (or create) the record at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // In WAL mode NORMAL survives any crash of this process; only a power
        // loss may drop the last transactions.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS trials (
                 id TEXT PRIMARY KEY, stage TEXT NOT NULL, idx INTEGER NOT NULL, parent TEXT,
                 params TEXT NOT NULL, status TEXT NOT NULL, attempt INTEGER NOT NULL DEFAULT 0,
                 failures INTEGER NOT NULL DEFAULT 0, started REAL, ended REAL, error TEXT, pgid INTEGER,
                 host TEXT);
             CREATE TABLE IF NOT EXISTS attempts (
                 trial TEXT NOT NULL, n INTEGER NOT NULL, started REAL NOT NULL, ended REAL,
                 outcome TEXT, counted INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (trial, n));
             CREATE TABLE IF NOT EXISTS metrics (
                 trial TEXT NOT NULL, attempt INTEGER NOT NULL, step INTEGER NOT NULL,
                 name TEXT NOT NULL, value REAL NOT NULL, PRIMARY KEY (trial, attempt, step, name));
             CREATE TABLE IF NOT EXISTS schedule (
                 trial TEXT NOT NULL, attempt INTEGER NOT NULL, step INTEGER NOT NULL,
                 params TEXT NOT NULL, donor TEXT NOT NULL, PRIMARY KEY (trial, attempt));",
        )?;
        // Stores made before trials recorded their host.
        let has_host: bool = conn
            .prepare("SELECT 1 FROM pragma_table_info('trials') WHERE name = 'host'")?
            .exists([])?;
        if !has_host {
            conn.execute_batch("ALTER TABLE trials ADD COLUMN host TEXT")?;
        }
        Ok(Store { conn })
    }

    /// A recorded value (`config`, `created`).
    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
    }

    /// Record a value.
    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
            [key, value],
        )?;
        Ok(())
    }

    /// Adds a trial unless one with its id exists (reruns keep what is there).
    pub fn ensure_trial(&self, t: &Trial) -> Result<()> {
        self.conn.execute(
            "INSERT OR IGNORE INTO trials (id, stage, idx, parent, params, status) VALUES (?1, ?2, ?3, ?4, ?5, 'pending')",
            params![t.id, t.stage, t.index as i64, t.parent, Value::Object(t.params.clone()).to_string()],
        )?;
        Ok(())
    }

    /// Trial `id`, if recorded.
    pub fn trial(&self, id: &str) -> Result<Option<Trial>> {
        self.conn
            .prepare_cached(&format!("{SELECT_TRIAL} WHERE id = ?1"))?
            .query_row([id], row_to_trial)
            .optional()
    }

    /// A stage's trials in index order.
    pub fn stage_trials(&self, stage: &str) -> Result<Vec<Trial>> {
        let mut stmt = self
            .conn
            .prepare(&format!("{SELECT_TRIAL} WHERE stage = ?1 ORDER BY idx"))?;
        stmt.query_map([stage], row_to_trial)?.collect()
    }

    /// Trials left running by a driver that died: back to pending, their
    /// attempt marked interrupted (not counted). Returns them, with the
    /// process group they ran in, so the caller can make sure it is gone.
    pub fn recover(&self) -> Result<Vec<Trial>> {
        let mut stmt = self
            .conn
            .prepare(&format!("{SELECT_TRIAL} WHERE status = 'running'"))?;
        let stale: Vec<Trial> = stmt.query_map([], row_to_trial)?.collect::<Result<_>>()?;
        for t in &stale {
            self.interrupt(&t.id, t.attempt)?;
        }
        Ok(stale)
    }

    /// Begin attempt n+1 of a trial on `host`; returns n+1.
    pub fn start_attempt(&self, id: &str, host: &str) -> Result<u32> {
        let tx = self.conn.unchecked_transaction()?;
        let n: u32 = tx.query_row("SELECT attempt + 1 FROM trials WHERE id = ?1", [id], |r| {
            r.get(0)
        })?;
        let t = now();
        tx.execute(
            "UPDATE trials SET status = 'running', attempt = ?2, started = ?3, ended = NULL, error = NULL, pgid = NULL, host = ?4 WHERE id = ?1",
            params![id, n, t, host],
        )?;
        tx.execute(
            "INSERT OR REPLACE INTO attempts (trial, n, started) VALUES (?1, ?2, ?3)",
            params![id, n, t],
        )?;
        tx.commit()?;
        Ok(n)
    }

    /// Record the process group of trial `id`'s running attempt.
    pub fn set_pgid(&self, id: &str, pgid: u32) -> Result<()> {
        self.conn.execute(
            "UPDATE trials SET pgid = ?2 WHERE id = ?1",
            params![id, i64::from(pgid)],
        )?;
        Ok(())
    }

    /// The end of an attempt. `failed` counts it against `max_failures`;
    /// `status` is what the trial becomes (pending for a retry).
    pub fn finish_attempt(
        &self,
        id: &str,
        n: u32,
        outcome: &str,
        failed: bool,
        status: Status,
    ) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        let t = now();
        tx.execute(
            "UPDATE attempts SET ended = ?3, outcome = ?4, counted = ?5 WHERE trial = ?1 AND n = ?2",
            params![id, n, t, outcome, failed],
        )?;
        tx.execute(
            "UPDATE trials SET status = ?2, ended = ?3, failures = failures + ?4, error = ?5, pgid = NULL WHERE id = ?1",
            params![
                id,
                status.as_str(),
                t,
                u32::from(failed),
                (status != Status::Succeeded).then_some(outcome)
            ],
        )?;
        tx.commit()
    }

    /// An attempt cut short by the driver stopping (Ctrl-C or a crash).
    pub fn interrupt(&self, id: &str, n: u32) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        tx.execute(
            "UPDATE attempts SET ended = ?3, outcome = 'interrupted' WHERE trial = ?1 AND n = ?2",
            params![id, n, now()],
        )?;
        tx.execute(
            "UPDATE trials SET status = 'pending', pgid = NULL WHERE id = ?1",
            [id],
        )?;
        tx.commit()
    }

    /// Record a metrics line of trial `id`'s current attempt.
    pub fn record_metrics(
        &self,
        id: &str,
        attempt: u32,
        step: i64,
        values: &[(String, f64)],
    ) -> Result<()> {
        let tx = self.conn.unchecked_transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR REPLACE INTO metrics (trial, attempt, step, name, value) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (name, value) in values {
                stmt.execute(params![id, attempt, step, name, value])?;
            }
        }
        tx.commit()
    }

    /// `metric` over the trial's latest attempt: last value, best value
    /// (by `maximize`) and the step of the best (earliest on ties).
    pub fn metric_summary(&self, id: &str, metric: &str, maximize: bool) -> Result<MetricSummary> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT step, value FROM metrics WHERE trial = ?1 AND name = ?2
             AND attempt = (SELECT attempt FROM trials WHERE id = ?1) ORDER BY step",
        )?;
        let mut rows = stmt.query(params![id, metric])?;
        let mut summary = MetricSummary::default();
        while let Some(r) = rows.next()? {
            summary.add(r.get(0)?, r.get(1)?, maximize);
        }
        Ok(summary)
    }

    /// Every metric of a trial's latest attempt: (step, name, value).
    pub fn trial_metrics(&self, id: &str) -> Result<Vec<(i64, String, f64)>> {
        let mut stmt = self.conn.prepare(
            "SELECT step, name, value FROM metrics WHERE trial = ?1
             AND attempt = (SELECT attempt FROM trials WHERE id = ?1) ORDER BY step, name",
        )?;
        stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect()
    }

    /// Record that trial `id` goes on as [`Exploited`] says (PBT).
    pub fn record_exploit(&self, id: &str, e: &Exploited) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO schedule (trial, attempt, step, params, donor) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, e.attempt, e.step, Value::Object(e.params.clone()).to_string(), e.donor],
        )?;
        Ok(())
    }

    /// Every PBT change of a trial's params, in the order they happened.
    pub fn schedule(&self, id: &str) -> Result<Vec<Exploited>> {
        let Some(mut stmt) = self.schedule_statement(
            "SELECT attempt, step, params, donor FROM schedule WHERE trial = ?1 ORDER BY attempt",
        )?
        else {
            return Ok(Vec::new());
        };
        stmt.query_map([id], |r| {
            Ok(exploited_of(
                r.get(0)?,
                r.get(1)?,
                &r.get::<_, String>(2)?,
                r.get(3)?,
            ))
        })?
        .collect()
    }

    /// A statement over the schedule table; `None` where the store has
    /// none: a store written before PBT, opened read-only (a site over old
    /// results), where nothing was exploited.
    fn schedule_statement(&self, sql: &str) -> Result<Option<rusqlite::CachedStatement<'_>>> {
        match self.conn.prepare_cached(sql) {
            Err(rusqlite::Error::SqliteFailure(_, Some(m))) if m.contains("no such table") => {
                Ok(None)
            }
            other => other.map(Some),
        }
    }

    /// How many attempts of a trial have started (interrupted ones included).
    pub fn attempt_count(&self, id: &str) -> Result<u32> {
        // Cached: a stage's table asks this once per trial (the overview of
        // a 2,000-trial stage parsed the statement 2,000 times).
        self.conn
            .prepare_cached("SELECT COUNT(*) FROM attempts WHERE trial = ?1")?
            .query_row([id], |r| r.get(0))
    }
}

/// A schedule row as an [`Exploited`] (params that are not a JSON map,
/// which flambe never writes, read as none).
fn exploited_of(attempt: u32, step: i64, params: &str, donor: String) -> Exploited {
    Exploited {
        attempt,
        step,
        params: match serde_json::from_str(params) {
            Ok(Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        },
        donor,
    }
}

const SELECT_TRIAL: &str = "SELECT id, stage, idx, parent, params, status, attempt, failures, started, ended, error, pgid, host FROM trials";

fn row_to_trial(r: &rusqlite::Row<'_>) -> Result<Trial> {
    let params: String = r.get(4)?;
    let status: String = r.get(5)?;
    Ok(Trial {
        id: r.get(0)?,
        stage: r.get(1)?,
        index: r.get::<_, i64>(2)? as usize,
        parent: r.get(3)?,
        params: match serde_json::from_str(&params) {
            Ok(Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        },
        status: Status::parse(&status),
        attempt: r.get(6)?,
        failures: r.get(7)?,
        started: r.get(8)?,
        ended: r.get(9)?,
        error: r.get(10)?,
        pgid: r.get(11)?,
        host: r.get(12)?,
    })
}
