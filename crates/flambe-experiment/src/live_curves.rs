//! A stage metric's curves (each trial's latest attempt), kept up to date
//! by reading only the points recorded since the last look. The report site
//! asks for a stage's ranking and curves every second: a stage of 2,000
//! trials × 200 steps is 400,000 points to read each time otherwise. The
//! ranking's summaries (last, best, best step) are folded from what is kept.

use crate::state::{MetricSummary, Result, StageCurvePoints, Store};
use std::collections::{BTreeMap, HashMap};

/// A trial's attempt and its points in step order.
pub type KeptCurve = (u32, Vec<(i64, f64)>);

/// One stage metric's curves and how far they have read. Whole again when
/// the record was replaced (fewer rows than read), or when a point arrives
/// out of step order (a step reported twice, which can change a best).
#[derive(Debug, Default)]
pub struct LiveCurves {
    key: Option<(String, String)>,
    cursor: i64,
    curves: BTreeMap<String, KeptCurve>,
}

impl LiveCurves {
    /// Read what is new of `metric` in `stage`; returns the cursor read to.
    pub fn refresh(&mut self, store: &Store, stage: &str, metric: &str) -> Result<i64> {
        let key = Some((stage.to_string(), metric.to_string()));
        if self.key != key {
            *self = LiveCurves {
                key,
                ..Default::default()
            };
        }
        let read = store.stage_metric_points(stage, metric, self.cursor)?;
        if read.cursor >= self.cursor && self.merge(read.curves) {
            self.cursor = read.cursor;
            return Ok(self.cursor);
        }
        self.curves.clear();
        let all = store.stage_metric_points(stage, metric, 0)?;
        self.merge(all.curves);
        self.cursor = all.cursor;
        Ok(self.cursor)
    }

    /// Each trial's `(attempt, points in step order)`, by trial id.
    pub fn curves(&self) -> &BTreeMap<String, KeptCurve> {
        &self.curves
    }

    /// Every trial's summary with the attempt it is of
    /// ([`Store::stage_metric_summaries`] gives the same for the trials
    /// whose latest attempt that is).
    pub fn summaries(&self, maximize: bool) -> HashMap<String, (u32, MetricSummary)> {
        self.curves
            .iter()
            .map(|(id, (attempt, points))| {
                let mut summary = MetricSummary::default();
                for &(step, value) in points {
                    summary.add(step, value, maximize);
                }
                (id.clone(), (*attempt, summary))
            })
            .collect()
    }

    /// Append new points; false when one cannot be appended (a step at or
    /// before one kept, or an older attempt).
    fn merge(&mut self, new: Vec<StageCurvePoints>) -> bool {
        for c in new {
            let (attempt, points) = self
                .curves
                .entry(c.trial)
                .or_insert((c.attempt, Vec::new()));
            if c.attempt > *attempt {
                *attempt = c.attempt;
                points.clear();
            } else if c.attempt < *attempt {
                return false;
            }
            for p in c.points {
                if points.last().is_some_and(|last| p.0 <= last.0) {
                    return false;
                }
                points.push(p);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::LiveCurves;
    use crate::state::{Status, Store, Trial};

    fn trial(id: &str) -> Trial {
        Trial {
            id: id.to_string(),
            stage: "s".into(),
            index: 0,
            parent: None,
            params: Default::default(),
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

    /// What the live curves say equals a whole read, summaries and points,
    /// after every kind of change: new steps, a new trial, a new attempt, a
    /// step reported again with a worse value.
    #[test]
    fn live_curves_equal_a_whole_read_after_every_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let mut live = LiveCurves::default();
        let check = |live: &mut LiveCurves, store: &Store| {
            let whole = store.stage_metric_summaries("s", "m", true).unwrap();
            live.refresh(store, "s", "m").unwrap();
            let points = store.stage_metric_points("s", "m", 0).unwrap().curves;
            let kept_points: Vec<_> = points
                .iter()
                .map(|c| live.curves()[&c.trial].clone())
                .collect();
            let read: Vec<_> = points
                .iter()
                .map(|c| (c.attempt, c.points.clone()))
                .collect();
            assert_eq!(kept_points, read);
            let kept = live.summaries(true);
            let latest: std::collections::HashMap<_, _> = kept
                .into_iter()
                .filter(|(id, (attempt, _))| store.trial(id).unwrap().unwrap().attempt == *attempt)
                .map(|(id, (_, s))| (id, s))
                .collect();
            assert_eq!(latest, whole);
        };
        for id in ["a", "b"] {
            store.ensure_trial(&trial(id)).unwrap();
        }
        let a1 = store.start_attempt("a", "here").unwrap();
        let m = |v: f64| vec![("m".to_string(), v), ("other".to_string(), -v)];
        store.record_metrics("a", a1, 1, &m(0.5)).unwrap();
        store.record_metrics("a", a1, 2, &m(0.9)).unwrap();
        check(&mut live, &store);
        store.record_metrics("a", a1, 3, &m(0.7)).unwrap();
        let b1 = store.start_attempt("b", "here").unwrap();
        store.record_metrics("b", b1, 1, &m(0.3)).unwrap();
        check(&mut live, &store);
        // A new attempt starts over: its first point is its whole summary.
        let a2 = store.start_attempt("a", "here").unwrap();
        check(&mut live, &store);
        store.record_metrics("a", a2, 1, &m(0.2)).unwrap();
        check(&mut live, &store);
        // Step 1 of b again, worse: the best must fall, so all is read again.
        store.record_metrics("b", b1, 1, &m(0.1)).unwrap();
        check(&mut live, &store);
        live.refresh(&store, "s", "m").unwrap();
        assert_eq!(live.summaries(true)["b"].1.best, Some(0.1));
    }
}
