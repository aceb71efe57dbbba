//! A whole stage's per-trial figures in one statement each: the results
//! table and the site's overview of a stage of 2,000 trials asked three
//! statements per trial (6,000 a request, most of a busy driver's CPU).

use super::{Exploited, MetricSummary, Result, Store, exploited_of};
use rusqlite::params;
use std::collections::HashMap;

impl Store {
    /// [`Store::metric_summary`] of every trial of `stage`, by trial id
    /// (trials with no value of `metric` are absent).
    pub fn stage_metric_summaries(
        &self,
        stage: &str,
        metric: &str,
        maximize: bool,
    ) -> Result<HashMap<String, MetricSummary>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT m.trial, m.step, m.value FROM metrics m JOIN trials t
             ON t.id = m.trial AND m.attempt = t.attempt
             WHERE t.stage = ?1 AND m.name = ?2 ORDER BY m.trial, m.step",
        )?;
        let mut rows = stmt.query(params![stage, metric])?;
        let mut summaries: HashMap<String, MetricSummary> = HashMap::new();
        // Rows come trial by trial: one String per trial, not per point.
        let mut current: Option<(String, MetricSummary)> = None;
        while let Some(r) = rows.next()? {
            let trial = r.get_ref(0)?.as_str()?;
            if current.as_ref().is_none_or(|(id, _)| id != trial) {
                if let Some((id, summary)) = current.take() {
                    summaries.insert(id, summary);
                }
                current = Some((trial.to_string(), MetricSummary::default()));
            }
            if let Some((_, summary)) = current.as_mut() {
                summary.add(r.get(1)?, r.get(2)?, maximize);
            }
        }
        if let Some((id, summary)) = current {
            summaries.insert(id, summary);
        }
        Ok(summaries)
    }

    /// [`Store::attempt_count`] of every trial of `stage` that has started.
    pub fn stage_attempt_counts(&self, stage: &str) -> Result<HashMap<String, u32>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT a.trial, COUNT(*) FROM attempts a JOIN trials t ON t.id = a.trial
             WHERE t.stage = ?1 GROUP BY a.trial",
        )?;
        stmt.query_map([stage], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
    }

    /// [`Store::schedule`] of every trial of `stage` that has one.
    pub fn stage_schedules(&self, stage: &str) -> Result<HashMap<String, Vec<Exploited>>> {
        let Some(mut stmt) = self.schedule_statement(
            "SELECT s.trial, s.attempt, s.step, s.params, s.donor FROM schedule s
             JOIN trials t ON t.id = s.trial WHERE t.stage = ?1 ORDER BY s.trial, s.attempt",
        )?
        else {
            return Ok(HashMap::new());
        };
        let mut rows = stmt.query([stage])?;
        let mut schedules: HashMap<String, Vec<Exploited>> = HashMap::new();
        while let Some(r) = rows.next()? {
            let trial: String = r.get(0)?;
            let exploited = exploited_of(r.get(1)?, r.get(2)?, &r.get::<_, String>(3)?, r.get(4)?);
            schedules.entry(trial).or_default().push(exploited);
        }
        Ok(schedules)
    }

    /// The points of `metric` in the latest attempts of `stage`'s trials
    /// recorded after `cursor` (0: all), as one curve per trial in trial
    /// order, points in step order, and the cursor to ask from next time.
    /// One read transaction, so a point recorded while this reads is either
    /// in this answer or after the cursor it returns.
    pub fn stage_metric_points(
        &self,
        stage: &str,
        metric: &str,
        cursor: i64,
    ) -> Result<StagePoints> {
        let tx = self.conn.unchecked_transaction()?;
        let next: i64 = tx.query_row("SELECT COALESCE(MAX(rowid), 0) FROM metrics", [], |r| {
            r.get(0)
        })?;
        let mut curves: Vec<StageCurvePoints> = Vec::new();
        {
            let mut stmt = tx.prepare_cached(
                "SELECT m.trial, m.attempt, m.step, m.value FROM metrics m JOIN trials t
                 ON t.id = m.trial AND m.attempt = t.attempt
                 WHERE t.stage = ?1 AND m.name = ?2 AND m.rowid > ?3 AND m.rowid <= ?4
                 ORDER BY m.trial, m.step",
            )?;
            let mut rows = stmt.query(params![stage, metric, cursor, next])?;
            while let Some(r) = rows.next()? {
                // A trial's name is read as text in place: one String per
                // trial, not per point (a stage of 2,000 × 200 is 400k).
                let trial = r.get_ref(0)?.as_str()?;
                let point = (r.get(2)?, r.get(3)?);
                match curves.last_mut() {
                    Some(c) if c.trial == trial => c.points.push(point),
                    _ => curves.push(StageCurvePoints {
                        trial: trial.to_string(),
                        attempt: r.get(1)?,
                        points: vec![point],
                    }),
                }
            }
        }
        tx.finish()?;
        Ok(StagePoints {
            curves,
            cursor: next,
        })
    }

    /// The names of the metrics `stage`'s trials reported in rows after
    /// `cursor` (0: all), in name order, and the cursor to ask from next.
    pub fn stage_metric_names(&self, stage: &str, cursor: i64) -> Result<(Vec<String>, i64)> {
        let tx = self.conn.unchecked_transaction()?;
        let next: i64 = tx.query_row("SELECT COALESCE(MAX(rowid), 0) FROM metrics", [], |r| {
            r.get(0)
        })?;
        let names = {
            let mut stmt = tx.prepare_cached(
                "SELECT DISTINCT m.name FROM metrics m JOIN trials t ON t.id = m.trial
                 WHERE t.stage = ?1 AND m.rowid > ?2 AND m.rowid <= ?3 ORDER BY m.name",
            )?;
            stmt.query_map(params![stage, cursor, next], |r| r.get(0))?
                .collect::<Result<Vec<String>>>()?
        };
        tx.finish()?;
        Ok((names, next))
    }
}

/// One trial's points of a stage's curves.
#[derive(Debug, Clone, PartialEq)]
pub struct StageCurvePoints {
    /// The trial that reported them.
    pub trial: String,
    /// Their attempt (the trial's latest when read).
    pub attempt: u32,
    /// `(step, value)` in step order.
    pub points: Vec<(i64, f64)>,
}

/// [`Store::stage_metric_points`]: curves, and where to read on from.
#[derive(Debug, Clone)]
pub struct StagePoints {
    /// In trial order.
    pub curves: Vec<StageCurvePoints>,
    /// Every point recorded so far has a row id at or below it.
    pub cursor: i64,
}
