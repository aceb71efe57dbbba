//! Asynchronous successive halving (ASHA, Li et al. 2018), as Ray Tune runs it.
//!
//! Rungs sit at `grace_period × reduction_factor^k` steps, up to `max_t`.
//! When a trial first reports at or past a rung, its value is compared with
//! the values other trials reported at that rung: unless it is in the top
//! `1 / reduction_factor` of them, the trial stops. The first trials to reach
//! a rung always continue (nothing to compare with yet), which is what makes
//! the halving asynchronous: no trial waits for another. A trial reaching
//! `max_t` stops too: it has had its full budget.

use flambe_config::Mode;
use std::collections::HashSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Continue,
    /// Behind at a rung: stop it.
    StopBehind {
        rung: u64,
    },
    /// Reached `max_t`.
    StopBudget,
}

pub struct Asha {
    max_t: u64,
    reduction_factor: u64,
    mode: Mode,
    /// (milestone, values recorded there), ascending by milestone.
    rungs: Vec<(u64, Vec<f64>)>,
    recorded: HashSet<(String, u64)>,
}

impl Asha {
    pub fn new(max_t: u64, grace_period: u64, reduction_factor: u64, mode: Mode) -> Asha {
        let mut rungs = Vec::new();
        let mut milestone = grace_period;
        while milestone < max_t {
            rungs.push((milestone, Vec::new()));
            milestone = milestone.saturating_mul(reduction_factor);
        }
        Asha {
            max_t,
            reduction_factor,
            mode,
            rungs,
            recorded: HashSet::new(),
        }
    }

    /// The rungs' milestones (tests read them; the engine needs only decisions).
    #[cfg(test)]
    pub fn milestones(&self) -> Vec<u64> {
        self.rungs.iter().map(|(m, _)| *m).collect()
    }

    /// A trial reported `value` at `step`.
    pub fn on_result(&mut self, trial: &str, step: i64, value: f64) -> Decision {
        let step = step.max(0) as u64;
        if step >= self.max_t {
            return Decision::StopBudget;
        }
        // Only the highest rung reached counts, once per trial and rung.
        let Some((milestone, values)) = self.rungs.iter_mut().rev().find(|(m, _)| step >= *m)
        else {
            return Decision::Continue;
        };
        if !self.recorded.insert((trial.to_string(), *milestone)) {
            return Decision::Continue;
        }
        // Work in "higher is better" so one cutoff rule serves both modes.
        let signed = if self.mode == Mode::Max {
            value
        } else {
            -value
        };
        let cutoff = percentile(values, 1.0 - 1.0 / self.reduction_factor as f64);
        values.push(signed);
        match cutoff {
            Some(c) if signed < c => Decision::StopBehind { rung: *milestone },
            _ => Decision::Continue,
        }
    }
}

/// Linear-interpolated quantile `q` in [0, 1] (numpy's default); None when empty.
fn percentile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rungs_follow_grace_and_factor() {
        assert_eq!(Asha::new(20, 2, 3, Mode::Max).milestones(), vec![2, 6, 18]);
        assert_eq!(
            Asha::new(100, 1, 4, Mode::Max).milestones(),
            vec![1, 4, 16, 64]
        );
    }

    #[test]
    fn trials_behind_at_a_rung_stop() {
        let mut a = Asha::new(20, 2, 2, Mode::Max);
        assert_eq!(a.on_result("a", 1, 0.1), Decision::Continue); // below the first rung
        assert_eq!(a.on_result("a", 2, 0.9), Decision::Continue); // first at rung 2
        assert_eq!(a.on_result("b", 2, 0.5), Decision::StopBehind { rung: 2 });
        assert_eq!(a.on_result("c", 2, 0.95), Decision::Continue);
        assert_eq!(a.on_result("a", 3, 0.0), Decision::Continue); // rung 2 already judged
        assert_eq!(a.on_result("c", 20, 0.99), Decision::StopBudget);
    }

    #[test]
    fn min_mode_prefers_lower() {
        let mut a = Asha::new(20, 2, 2, Mode::Min);
        assert_eq!(a.on_result("a", 2, 0.1), Decision::Continue);
        assert_eq!(a.on_result("b", 2, 0.5), Decision::StopBehind { rung: 2 });
    }

    #[test]
    fn percentile_matches_numpy() {
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 0.5), Some(2.5));
        assert_eq!(percentile(&[5.0], 0.9), Some(5.0));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
