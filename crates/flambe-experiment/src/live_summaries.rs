//! Each trial's summary of its stage's metric (last, best, best step), kept
//! up to date by folding in only the points recorded since the last look.
//! The report site asks for a stage's ranking every second: a stage of
//! 2,000 trials × 200 steps is 400,000 points to read each time otherwise.

use crate::state::{MetricSummary, Result, Store};
use std::collections::HashMap;

/// A stage's summaries and how far they have read. Whole again when the
/// record was replaced (fewer rows than read), or when a point arrives out
/// of step order (a step reported twice, which can change a best).
#[derive(Debug, Default)]
pub struct LiveSummaries {
    key: Option<(String, String, bool)>,
    cursor: i64,
    trials: HashMap<String, Kept>,
}

#[derive(Debug, Clone)]
struct Kept {
    attempt: u32,
    last_step: i64,
    summary: MetricSummary,
}

impl LiveSummaries {
    /// Read what is new of `metric` in `stage` and return every trial's
    /// summary with the attempt it is of ([`Store::stage_metric_summaries`]
    /// gives the same for the trials whose latest attempt that is).
    pub fn refresh(
        &mut self,
        store: &Store,
        stage: &str,
        metric: &str,
        maximize: bool,
    ) -> Result<HashMap<String, (u32, MetricSummary)>> {
        let key = Some((stage.to_string(), metric.to_string(), maximize));
        if self.key != key {
            *self = LiveSummaries {
                key,
                ..Default::default()
            };
        }
        let mut read = store.stage_metric_points(stage, metric, self.cursor)?;
        if read.cursor < self.cursor || !self.fold(&read.curves, maximize) {
            self.trials.clear();
            read = store.stage_metric_points(stage, metric, 0)?;
            self.fold(&read.curves, maximize);
        }
        self.cursor = read.cursor;
        Ok(self
            .trials
            .iter()
            .map(|(id, k)| (id.clone(), (k.attempt, k.summary)))
            .collect())
    }

    /// Fold in new curves; false when one cannot be folded (a point at or
    /// before a step already folded, or an older attempt).
    fn fold(&mut self, curves: &[crate::state::StageCurvePoints], maximize: bool) -> bool {
        for curve in curves {
            let kept = self.trials.entry(curve.trial.clone()).or_insert(Kept {
                attempt: curve.attempt,
                last_step: i64::MIN,
                summary: MetricSummary::default(),
            });
            if curve.attempt > kept.attempt {
                *kept = Kept {
                    attempt: curve.attempt,
                    last_step: i64::MIN,
                    summary: MetricSummary::default(),
                };
            } else if curve.attempt < kept.attempt {
                return false;
            }
            for &(step, value) in &curve.points {
                if step <= kept.last_step {
                    return false;
                }
                kept.last_step = step;
                kept.summary.add(step, value, maximize);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::LiveSummaries;
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

    /// What the live summaries say equals a whole read, after every kind
    /// of change: new steps, a new trial, a new attempt, a step reported
    /// again with a worse value.
    #[test]
    fn live_summaries_equal_a_whole_read_after_every_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let mut live = LiveSummaries::default();
        let check = |live: &mut LiveSummaries, store: &Store| {
            let whole = store.stage_metric_summaries("s", "m", true).unwrap();
            let kept = live.refresh(store, "s", "m", true).unwrap();
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
        assert_eq!(
            live.refresh(&store, "s", "m", true).unwrap()["b"].1.best,
            Some(0.1)
        );
    }
}
