//! A stage's scheduler, whichever it is: what the engine asks at each
//! reported value, and the reason it gives when a trial is to stop.

use crate::asha::{Asha, Decision};
use crate::median::MedianStopping;
use flambe_config::{Mode, Scheduler};

pub enum StageScheduler {
    Asha(Asha),
    /// One ASHA per bracket; a trial's bracket is its index modulo the
    /// bracket count, so a rerun puts every trial where it was.
    HyperBand(Vec<Asha>),
    Median(MedianStopping),
}

impl StageScheduler {
    pub fn new(scheduler: &Scheduler, mode: Mode) -> StageScheduler {
        match *scheduler {
            Scheduler::Asha {
                max_t,
                grace_period,
                reduction_factor,
            } => StageScheduler::Asha(Asha::new(max_t, grace_period, reduction_factor, mode)),
            Scheduler::HyperBand {
                max_t,
                grace_period,
                reduction_factor,
                brackets,
            } => StageScheduler::HyperBand(
                (0..brackets.max(1))
                    .map(|b| {
                        // Bracket b's first rung is b rungs further on
                        // (Ray Tune's `_Bracket(min_t, max_t, eta, s)`).
                        let first = u32::try_from(b)
                            .ok()
                            .and_then(|b| reduction_factor.checked_pow(b))
                            .and_then(|f| grace_period.checked_mul(f))
                            .unwrap_or(max_t)
                            .min(max_t);
                        Asha::new(max_t, first, reduction_factor, mode)
                    })
                    .collect(),
            ),
            Scheduler::MedianStopping {
                grace_period,
                min_samples,
            } => StageScheduler::Median(MedianStopping::new(grace_period, min_samples, mode)),
        }
    }

    /// Trial `id` (number `index` of its stage) reported `value` at `step`:
    /// why it is to stop, if it is.
    pub fn on_result(&mut self, id: &str, index: usize, step: i64, value: f64) -> Option<String> {
        let (asha, name, bracket) = match self {
            StageScheduler::Asha(asha) => (asha, "ASHA", None),
            StageScheduler::HyperBand(brackets) => {
                let b = index % brackets.len();
                (&mut brackets[b], "HyperBand", Some(b))
            }
            StageScheduler::Median(median) => {
                return median.on_result(id, step, value).map(|(best, m)| {
                    format!(
                        "stopped early by the median rule: best {best} worse than the median {m} at step {step}"
                    )
                });
            }
        };
        let at = bracket.map_or(String::new(), |b| format!(" (bracket {b})"));
        match asha.on_result(id, step, value) {
            Decision::Continue => None,
            Decision::StopBehind { rung } => Some(format!(
                "stopped early by {name}{at}: behind at step {rung}"
            )),
            Decision::StopBudget => Some(format!(
                "stopped by {name}{at}: reached max_t at step {step}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyperband_brackets_start_their_rungs_further_on() {
        let s = Scheduler::HyperBand {
            max_t: 81,
            grace_period: 1,
            reduction_factor: 3,
            brackets: 3,
        };
        let StageScheduler::HyperBand(brackets) = StageScheduler::new(&s, Mode::Max) else {
            unreachable!()
        };
        let rungs: Vec<Vec<u64>> = brackets.iter().map(|b| b.milestones()).collect();
        assert_eq!(rungs, [vec![1, 3, 9, 27], vec![3, 9, 27], vec![9, 27]]);
    }
}
