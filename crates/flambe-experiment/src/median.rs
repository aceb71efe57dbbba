//! The median stopping rule (Golovin et al. 2017), as Ray Tune's
//! `MedianStoppingRule` applies it.
//!
//! When a trial reports at step `t >= grace_period`, the other trials that
//! have reached `t` are looked at: once there are `min_samples` of them,
//! each one's running mean (its values at steps `grace_period..=t`) is
//! taken, and the trial stops if its best value so far is worse than the
//! median of those means. Finished trials count: their results stay.

use flambe_config::Mode;
use std::collections::HashMap;

pub struct MedianStopping {
    grace_period: i64,
    min_samples: usize,
    mode: Mode,
    /// Every trial's (step, value) reports, in the order they came.
    results: HashMap<String, Vec<(i64, f64)>>,
}

impl MedianStopping {
    pub fn new(grace_period: u64, min_samples: u64, mode: Mode) -> MedianStopping {
        MedianStopping {
            grace_period: grace_period.min(i64::MAX as u64) as i64,
            min_samples: min_samples.max(1) as usize,
            mode,
            results: HashMap::new(),
        }
    }

    /// A trial reported `value` at `step`; `Some((best, median))` when it
    /// is to stop, its best so far being worse than the median.
    pub fn on_result(&mut self, trial: &str, step: i64, value: f64) -> Option<(f64, f64)> {
        self.results
            .entry(trial.to_string())
            .or_default()
            .push((step, value));
        if step < self.grace_period {
            return None;
        }
        let means: Vec<f64> = self
            .results
            .iter()
            .filter(|(id, reports)| {
                id.as_str() != trial && reports.last().is_some_and(|(s, _)| *s >= step)
            })
            .filter_map(|(_, reports)| self.running_mean(reports, step))
            .collect();
        if means.len() < self.min_samples {
            return None;
        }
        let median = median(means);
        let reports = &self.results[trial];
        let best = reports
            .iter()
            .map(|(_, v)| *v)
            .reduce(|a, b| if self.mode.better(b, a) { b } else { a })?;
        self.mode.better(median, best).then_some((best, median))
    }

    fn running_mean(&self, reports: &[(i64, f64)], step: i64) -> Option<f64> {
        let scoped: Vec<f64> = reports
            .iter()
            .filter(|(s, _)| (self.grace_period..=step).contains(s))
            .map(|(_, v)| *v)
            .collect();
        (!scoped.is_empty()).then(|| scoped.iter().sum::<f64>() / scoped.len() as f64)
    }
}

/// numpy's median: the middle value, or the mean of the two middle ones.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trial_below_the_others_median_stops_past_the_grace_period() {
        let mut m = MedianStopping::new(2, 2, Mode::Max);
        for step in 1..=4 {
            assert_eq!(m.on_result("a", step, 1.0), None);
            assert_eq!(m.on_result("b", step, 0.8), None);
        }
        // Before the grace period nothing stops.
        assert_eq!(m.on_result("c", 1, 0.1), None);
        // Means of a and b over steps 2..=2: 1.0 and 0.8, median 0.9.
        assert_eq!(m.on_result("c", 2, 0.1), Some((0.1, 0.9)));
        // A trial whose best beats the median goes on.
        assert_eq!(m.on_result("d", 2, 0.95), None);
    }

    #[test]
    fn too_few_others_at_the_step_never_stops() {
        let mut m = MedianStopping::new(0, 2, Mode::Min);
        assert_eq!(m.on_result("a", 5, 1.0), None);
        // Only `a` has reached step 5.
        assert_eq!(m.on_result("b", 5, 9.0), None);
        assert_eq!(m.on_result("c", 5, 9.0), Some((9.0, 5.0)));
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
    }
}
