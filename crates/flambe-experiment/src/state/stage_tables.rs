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
        while let Some(r) = rows.next()? {
            let trial: String = r.get(0)?;
            summaries
                .entry(trial)
                .or_default()
                .add(r.get(1)?, r.get(2)?, maximize);
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
}
