//! `search: !TPE`: each trial's params chosen from the results so far by a
//! tree-structured Parzen estimator (Bergstra et al. 2011), one estimator
//! per param as Optuna's default `TPESampler` does ([`tpe`]).
//!
//! Nothing of a study is kept but its trials: a suggestion is recorded as
//! the trial it becomes (params and all) before it runs, and the next one
//! is worked out again from the recorded trials that have finished. So an
//! interrupted study resumes exactly where it was, and each suggestion is
//! drawn from a generator seeded by (seed, stage, parent, trial number): with
//! `concurrency: 1` the same config gives the same trials.

mod tpe;

use crate::rng::Rng;
use crate::search::{Params, float, random_point};
use flambe_config::{ParamSpec, Stage};
use serde_json::Value;

/// A finished trial as the study learns from it: its params and its best
/// value of the stage metric, lower is better (negated for `mode: max`).
pub struct Observation<'a> {
    pub params: &'a Params,
    pub loss: f64,
}

/// The params of trial `k` (from 0) of the study under parent number
/// `parent`: random for the first `startup`, then TPE over `history`.
pub fn suggest(
    stage: &Stage,
    seed: u64,
    parent: usize,
    k: usize,
    startup: u32,
    history: &[Observation],
) -> Params {
    let mut rng = Rng::for_stage(seed, &format!("{}#tpe#{parent}#{k}", stage.name));
    if k < startup as usize || history.is_empty() {
        return random_point(stage, &mut rng);
    }
    stage
        .params
        .iter()
        .map(|p| {
            let value = match Space::of(&p.spec) {
                None => fixed(&p.spec),
                Some(space) => {
                    let told = history
                        .iter()
                        .filter_map(|o| Some((space.internal(o.params.get(&p.name)?)?, o.loss)));
                    space.ask(told, &mut rng)
                }
            };
            (p.name.clone(), value)
        })
        .collect()
}

fn fixed(spec: &ParamSpec) -> Value {
    match spec {
        ParamSpec::Fixed(v) => v.clone(),
        _ => Value::Null,
    }
}

/// How one param looks to its estimator: a number line or categories.
enum Space<'a> {
    Linear {
        low: f64,
        high: f64,
    },
    Log {
        low: f64,
        high: f64,
    },
    /// `low..=high`, searched as the line `[low, high + 1)` cut into unit bins.
    Int {
        low: i64,
        high: i64,
    },
    Categories(&'a [Value]),
}

impl<'a> Space<'a> {
    fn of(spec: &'a ParamSpec) -> Option<Space<'a>> {
        Some(match spec {
            ParamSpec::Fixed(_) => return None,
            ParamSpec::Grid(values) | ParamSpec::Choice(values) => Space::Categories(values),
            ParamSpec::Uniform { low, high } => Space::Linear {
                low: *low,
                high: *high,
            },
            ParamSpec::LogUniform { low, high } => Space::Log {
                low: *low,
                high: *high,
            },
            ParamSpec::Int { low, high } => Space::Int {
                low: *low,
                high: *high,
            },
            ParamSpec::Sample {
                low,
                high,
                integer: true,
                ..
            } => Space::Int {
                low: *low as i64,
                high: *high as i64,
            },
            ParamSpec::Sample { low, high, .. } => Space::Linear {
                low: *low,
                high: *high,
            },
        })
    }

    /// The estimator's range, `[start, end)`.
    fn range(&self) -> (f64, f64) {
        match self {
            Space::Linear { low, high } => (*low, *high),
            Space::Log { low, high } => (low.ln(), high.ln()),
            Space::Int { low, high } => (*low as f64, *high as f64 + 1.0),
            Space::Categories(values) => (0.0, values.len() as f64),
        }
    }

    /// A recorded value on the estimator's line (None if it is not one of
    /// this space's, e.g. after the config changed).
    fn internal(&self, value: &Value) -> Option<f64> {
        let x = match self {
            Space::Linear { .. } => value.as_f64()?,
            Space::Log { .. } => value.as_f64().filter(|v| *v > 0.0)?.ln(),
            Space::Int { .. } => value.as_f64()? + 0.5,
            Space::Categories(values) => values.iter().position(|v| v == value)? as f64 + 0.5,
        };
        // Rounding (floats keep 6 digits) may put a value a hair outside.
        let (start, end) = self.range();
        Some(x.clamp(start, end - (end - start) * 1e-9))
    }

    fn ask(&self, told: impl Iterator<Item = (f64, f64)>, rng: &mut Rng) -> Value {
        let (start, end) = self.range();
        let kind = match self {
            Space::Categories(_) => tpe::Kind::Categorical,
            _ => tpe::Kind::Numeric,
        };
        let told: Vec<(f64, f64)> = told.filter(|(_, loss)| loss.is_finite()).collect();
        let x = tpe::suggest(kind, start, end, &told, rng);
        match self {
            Space::Linear { low, high } => float(x.clamp(*low, *high)),
            Space::Log { low, high } => float(x.exp().clamp(*low, *high)),
            Space::Int { low, high } => Value::from((x.floor() as i64).clamp(*low, *high)),
            Space::Categories(values) => {
                values[(x.floor().max(0.0) as usize).min(values.len() - 1)].clone()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flambe_config::load_str;
    use std::path::Path;

    fn stage(yaml: &str) -> Stage {
        let text = format!(
            "!Experiment\nname: t\npipeline:\n  s: !Stage\n    run: echo\n    metric: y\n    mode: min\n{yaml}"
        );
        match load_str(Path::new("t.yaml"), &text, &|_| None)
            .unwrap()
            .runnable
        {
            flambe_config::Runnable::Experiment(e) => e.pipeline[0].clone(),
            _ => unreachable!(),
        }
    }

    /// 1-D (x - 0.7)² plus a categorical penalty, minimised sequentially.
    fn run(stage: &Stage, seed: u64, n: usize) -> (Vec<Params>, Vec<f64>) {
        let mut trials: Vec<Params> = Vec::new();
        let mut losses = Vec::new();
        for k in 0..n {
            let history: Vec<Observation> = trials
                .iter()
                .zip(&losses)
                .map(|(p, l)| Observation {
                    params: p,
                    loss: *l,
                })
                .collect();
            let p = suggest(stage, seed, 0, k, 5, &history);
            let x = p["x"].as_f64().unwrap();
            let c = if p["c"] == "b" { 0.0 } else { 1.0 };
            losses.push((x - 0.7).powi(2) + c);
            trials.push(p);
        }
        (trials, losses)
    }

    #[test]
    fn tpe_homes_in_and_repeats_with_the_seed() {
        let s = stage(
            "    params:\n      x: !u [0, 1]\n      c: !c [a, b, c]\n      n: !i [1, 4]\n    search: !TPE {trials: 40, startup: 5}\n",
        );
        let (trials, losses) = run(&s, 1, 40);
        assert_eq!(run(&s, 1, 40).0, trials);
        assert_ne!(run(&s, 2, 40).0, trials);
        let best = losses.iter().cloned().fold(f64::INFINITY, f64::min);
        assert!(best < 0.01, "best {best}");
        // The model's picks favour the good category.
        let late_b = trials[20..].iter().filter(|p| p["c"] == "b").count();
        assert!(late_b >= 12, "{late_b} of 20 late picks are `b`");
        assert!(
            trials
                .iter()
                .all(|p| (1..=4).contains(&p["n"].as_i64().unwrap()))
        );
    }
}
