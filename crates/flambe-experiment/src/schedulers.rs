//! A stage's scheduler, whichever it is: what the engine asks at each
//! reported value, and what it answers: go on, stop (and why), or, for
//! PBT, go on from another trial's checkpoint with other params.

use crate::asha::{Asha, Decision};
use crate::median::MedianStopping;
use crate::pbt::{Exploit, Pbt};
use crate::search::Params;
use flambe_config::{Scheduler, Stage};

/// What a scheduler says of a trial that reported a value.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    Continue,
    /// Stop it, for this reason; its metrics still rank it.
    Stop(String),
    Exploit(Exploit),
}

pub enum StageScheduler {
    Asha(Asha),
    /// One ASHA per bracket; a trial's bracket is its index modulo the
    /// bracket count, so a rerun puts every trial where it was.
    HyperBand(Vec<Asha>),
    Median(MedianStopping),
    Pbt(Pbt),
}

impl StageScheduler {
    pub fn new(scheduler: &Scheduler, stage: &Stage, seed: u64) -> StageScheduler {
        let mode = stage.mode;
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
            Scheduler::Pbt {
                perturbation_interval,
                quantile,
                resample_probability,
                ref mutations,
            } => StageScheduler::Pbt(Pbt::new(
                stage,
                seed,
                perturbation_interval,
                quantile,
                resample_probability,
                mutations,
            )),
        }
    }

    /// Trial `id` (number `index` of its stage), running with `params`,
    /// reported `value` at `step`.
    pub fn on_result(
        &mut self,
        id: &str,
        index: usize,
        params: &Params,
        step: i64,
        value: f64,
    ) -> Verdict {
        let (asha, name, bracket) = match self {
            StageScheduler::Asha(asha) => (asha, "ASHA", None),
            StageScheduler::HyperBand(brackets) => {
                let b = index % brackets.len();
                (&mut brackets[b], "HyperBand", Some(b))
            }
            StageScheduler::Median(median) => {
                return median
                    .on_result(id, step, value)
                    .map_or(Verdict::Continue, |(best, m)| {
                        Verdict::Stop(format!(
                            "stopped early by the median rule: best {best} worse than the median {m} at step {step}"
                        ))
                    });
            }
            StageScheduler::Pbt(pbt) => {
                return pbt
                    .on_result(id, index, params, step, value)
                    .map_or(Verdict::Continue, Verdict::Exploit);
            }
        };
        let at = bracket.map_or(String::new(), |b| format!(" (bracket {b})"));
        match asha.on_result(id, step, value) {
            Decision::Continue => Verdict::Continue,
            Decision::StopBehind { rung } => Verdict::Stop(format!(
                "stopped early by {name}{at}: behind at step {rung}"
            )),
            Decision::StopBudget => Verdict::Stop(format!(
                "stopped by {name}{at}: reached max_t at step {step}"
            )),
        }
    }

    /// A trial ended (or had ended, on a resume): PBT ranks only the
    /// running; the others keep every result they were told.
    pub fn finished(&mut self, id: &str) {
        if let StageScheduler::Pbt(pbt) = self {
            pbt.finished(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyperband_brackets_start_their_rungs_further_on() {
        let exp = crate::engine_tests::experiment(
            std::path::Path::new("/nonexistent"),
            "  s: !Stage\n    run: echo\n    metric: m\n    mode: max\n    scheduler: !HyperBand {max_t: 81, grace_period: 1, reduction_factor: 3, brackets: 3}\n",
        );
        let stage = &exp.pipeline[0];
        let s = stage.scheduler.clone().unwrap();
        let StageScheduler::HyperBand(brackets) = StageScheduler::new(&s, stage, 0) else {
            unreachable!()
        };
        let rungs: Vec<Vec<u64>> = brackets.iter().map(|b| b.milestones()).collect();
        assert_eq!(rungs, [vec![1, 3, 9, 27], vec![3, 9, 27], vec![9, 27]]);
    }
}
