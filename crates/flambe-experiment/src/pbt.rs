//! Population-based training (Jaderberg et al. 2017), as Ray Tune's
//! `PopulationBasedTraining` applies it, asynchronously.
//!
//! When a trial reports at least `perturbation_interval` steps after its
//! last perturbation, its value becomes its score and the running trials
//! that have a score are ranked. A trial in the bottom `quantile` is
//! *exploited*: it stops and goes on from the checkpoint of a trial drawn
//! from the top `quantile`, with that trial's params *explored* (each of
//! `mutations` resampled from its spec with `resample_probability`, else
//! moved: numbers ×0.8 or ×1.2 within their range, lists one place either
//! way). Finished trials leave the ranking, as in Ray Tune.
//!
//! Every draw comes from the fixed generator, seeded by the experiment
//! seed, the stage, the trial and the step: the same reports give the same
//! exploits.

use crate::rng::Rng;
use crate::search::{Params, float};
use flambe_config::{Mode, ParamSpec, Stage};
use serde_json::Value;
use std::collections::HashMap;

/// What PBT decided for a trial that reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Exploit {
    /// The top-quantile trial whose checkpoint it goes on from.
    pub donor: String,
    /// The donor's params, explored.
    pub params: Params,
}

pub struct Pbt {
    interval: i64,
    quantile: f64,
    resample_probability: f64,
    /// Each mutated param with the spec it is explored within.
    mutations: Vec<(String, ParamSpec)>,
    mode: Mode,
    seed: u64,
    stage: String,
    trials: HashMap<String, TrialState>,
}

#[derive(Default)]
struct TrialState {
    /// Its value at its last perturbation, higher better (None before).
    score: Option<f64>,
    last_perturbation: i64,
    /// The params it runs with now.
    params: Params,
    finished: bool,
}

impl Pbt {
    pub fn new(
        stage: &Stage,
        seed: u64,
        perturbation_interval: u64,
        quantile: f64,
        resample_probability: f64,
        mutations: &[String],
    ) -> Pbt {
        Pbt {
            interval: perturbation_interval.clamp(1, i64::MAX as u64) as i64,
            quantile,
            resample_probability,
            mutations: mutations
                .iter()
                .filter_map(|name| stage.param(name).map(|p| (name.clone(), p.spec.clone())))
                .collect(),
            mode: stage.mode,
            seed,
            stage: stage.name.clone(),
            trials: HashMap::new(),
        }
    }

    /// Trial `id` (number `index`), running with `params`, reported
    /// `value` at `step`: the exploit it is to make, if it is.
    pub fn on_result(
        &mut self,
        id: &str,
        index: usize,
        params: &Params,
        step: i64,
        value: f64,
    ) -> Option<Exploit> {
        let state = self.trials.entry(id.to_string()).or_default();
        state.params = params.clone();
        if step.saturating_sub(state.last_perturbation) < self.interval || !value.is_finite() {
            return None;
        }
        state.score = Some(if self.mode == Mode::Max {
            value
        } else {
            -value
        });
        state.last_perturbation = step;
        let (lower, upper) = self.quantiles();
        if !lower.iter().any(|t| t == id) {
            return None;
        }
        let mut rng = Rng::for_stage(self.seed, &format!("{}#pbt#{index}#{step}", self.stage));
        let donor = upper[rng.index(upper.len())].clone();
        let params = self.explore(&self.trials[&donor].params, &mut rng);
        // As in Ray Tune, it keeps its own (low) score until it reports
        // again, and takes the donor's perturbation time.
        let donor_perturbation = self.trials[&donor].last_perturbation;
        if let Some(state) = self.trials.get_mut(id) {
            state.last_perturbation = donor_perturbation;
            state.params = params.clone();
        }
        Some(Exploit { donor, params })
    }

    /// A trial ended: it leaves the ranking.
    pub fn finished(&mut self, id: &str) {
        self.trials.entry(id.to_string()).or_default().finished = true;
    }

    /// The bottom and top quantiles of the running scored trials, by id
    /// (Ray Tune's `_quantiles`: ceil(n × quantile), at most n / 2).
    fn quantiles(&self) -> (Vec<String>, Vec<String>) {
        let mut scored: Vec<(&String, f64)> = self
            .trials
            .iter()
            .filter(|(_, s)| !s.finished)
            .filter_map(|(id, s)| s.score.map(|v| (id, v)))
            .collect();
        if scored.len() <= 1 {
            return (Vec::new(), Vec::new());
        }
        scored.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(b.0)));
        let n = scored.len();
        let k = ((n as f64 * self.quantile).ceil() as usize).min(n / 2);
        let ids = |part: &[(&String, f64)]| part.iter().map(|(id, _)| (*id).clone()).collect();
        (ids(&scored[..k]), ids(&scored[n - k..]))
    }

    fn explore(&self, params: &Params, rng: &mut Rng) -> Params {
        let mut out = params.clone();
        for (name, spec) in &self.mutations {
            let current = params.get(name).cloned().unwrap_or(Value::Null);
            let value = if rng.unit() < self.resample_probability {
                resample(spec, rng)
            } else {
                perturb(spec, &current, rng)
            };
            out.insert(name.clone(), value);
        }
        out
    }
}

/// A fresh value from the param's own spec.
fn resample(spec: &ParamSpec, rng: &mut Rng) -> Value {
    match spec {
        ParamSpec::Grid(values) | ParamSpec::Choice(values) => {
            values[rng.index(values.len())].clone()
        }
        ParamSpec::Sample {
            low, high, integer, ..
        } => crate::search::sample_value(rng, *low, *high, *integer),
        ParamSpec::Uniform { low, high } => float(rng.uniform(*low, *high)),
        ParamSpec::LogUniform { low, high } => {
            float(rng.uniform(low.ln(), high.ln()).exp().clamp(*low, *high))
        }
        ParamSpec::Int { low, high } => Value::from(rng.int_inclusive(*low, *high)),
        ParamSpec::Fixed(v) => v.clone(),
    }
}

/// The value moved a little: a list's neighbour, a number ×0.8 or ×1.2
/// (an integer at least one step), kept within the spec's range.
fn perturb(spec: &ParamSpec, current: &Value, rng: &mut Rng) -> Value {
    let up = rng.index(2) == 1;
    match spec {
        ParamSpec::Grid(values) | ParamSpec::Choice(values) => {
            let Some(at) = values.iter().position(|v| v == current) else {
                return resample(spec, rng);
            };
            let to = if up {
                (at + 1).min(values.len() - 1)
            } else {
                at.saturating_sub(1)
            };
            values[to].clone()
        }
        ParamSpec::Fixed(v) => v.clone(),
        _ => {
            let (low, high, integer) = match *spec {
                ParamSpec::Sample {
                    low, high, integer, ..
                } => (low, high, integer),
                ParamSpec::Uniform { low, high } | ParamSpec::LogUniform { low, high } => {
                    (low, high, false)
                }
                ParamSpec::Int { low, high } => (low as f64, high as f64, true),
                _ => unreachable!("lists are handled above"),
            };
            let Some(x) = current.as_f64() else {
                return resample(spec, rng);
            };
            let factor = if up { 1.2 } else { 0.8 };
            if integer {
                let mut moved = (x * factor).round();
                if moved == x {
                    moved = if up { x + 1.0 } else { x - 1.0 };
                }
                Value::from(moved.clamp(low, high) as i64)
            } else {
                float((x * factor).clamp(low, high))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stage() -> Stage {
        let text = "!Experiment\nname: e\npipeline:\n  s: !Stage\n    run: echo {lr} {layers} {act}\n    params:\n      lr: !lu [0.001, 1.0]\n      layers: !i [1, 8]\n      act: !c [relu, tanh, gelu]\n    metric: loss\n    mode: min\n";
        match flambe_config::load_str(std::path::Path::new("t.yaml"), text, &|_| None)
            .unwrap()
            .runnable
        {
            flambe_config::Runnable::Experiment(e) => e.pipeline[0].clone(),
            _ => unreachable!(),
        }
    }

    fn params(lr: f64) -> Params {
        json!({"lr": lr, "layers": 4, "act": "tanh"})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn the_bottom_quarter_copies_the_top_quarter_at_each_interval() {
        let s = stage();
        let all = ["lr".to_string(), "layers".into(), "act".into()];
        let mut pbt = Pbt::new(&s, 7, 10, 0.25, 0.0, &all);
        // Eight trials; lower loss is better; t7 is best, t0 worst.
        for i in 0..8 {
            let id = format!("t{i}");
            assert_eq!(
                pbt.on_result(&id, i, &params(0.01 * (i + 1) as f64), 5, 1.0),
                None,
                "before the first interval nothing moves"
            );
        }
        let mut exploited = Vec::new();
        for step in [10, 20] {
            for i in 0..8 {
                let id = format!("t{i}");
                let lr = 0.01 * (i + 1) as f64;
                if let Some(e) = pbt.on_result(&id, i, &params(lr), step, 10.0 - i as f64) {
                    exploited.push((id, e));
                }
            }
        }
        // At step 10 each trial is ranked among those scored before it,
        // and none is ever in the bottom two; at 20 all eight are, and
        // ceil(8 × 0.25) = 2: t0 and t1 copy one of t6 and t7.
        let ids: Vec<&str> = exploited.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["t0", "t1"]);
        for (_, e) in &exploited {
            let d = e.donor.trim_start_matches('t').parse::<usize>().unwrap();
            assert!(d >= 6, "a donor outside the top quarter: {e:?}");
            let lr = e.params["lr"].as_f64().unwrap();
            let donor_lr = 0.01 * (d + 1) as f64;
            assert!(
                (lr - donor_lr * 0.8).abs() < 1e-9 || (lr - donor_lr * 1.2).abs() < 1e-9,
                "{lr} is not {donor_lr} × 0.8 or × 1.2"
            );
            let layers = e.params["layers"].as_i64().unwrap();
            assert!(layers == 3 || layers == 5, "{layers}");
            let act = e.params["act"].as_str().unwrap();
            assert!(act == "relu" || act == "gelu", "{act}");
        }
        // The same reports give the same exploits.
        let mut again = Pbt::new(&s, 7, 10, 0.25, 0.0, &all);
        let mut second = Vec::new();
        for step in [5, 10, 20] {
            for i in 0..8 {
                let id = format!("t{i}");
                let v = if step == 5 { 1.0 } else { 10.0 - i as f64 };
                if let Some(e) = again.on_result(&id, i, &params(0.01 * (i + 1) as f64), step, v) {
                    second.push((id, e));
                }
            }
        }
        assert_eq!(exploited, second);
    }

    #[test]
    fn perturbed_values_stay_in_range_and_finished_trials_leave_the_ranking() {
        let s = stage();
        let mut rng = Rng::for_stage(1, "x");
        let lr = &s.param("lr").unwrap().spec;
        let layers = &s.param("layers").unwrap().spec;
        for _ in 0..200 {
            let v = perturb(lr, &json!(0.95), &mut rng).as_f64().unwrap();
            assert!((0.001..=1.0).contains(&v), "{v}");
            let l = perturb(layers, &json!(8), &mut rng).as_i64().unwrap();
            assert!(
                l == 6 || l == 8,
                "8 × 0.8 rounds to 6, 8 × 1.2 is cut to 8: {l}"
            );
            let l = perturb(layers, &json!(1), &mut rng).as_i64().unwrap();
            assert!(l == 1 || l == 2, "{l}");
        }
        let mut pbt = Pbt::new(&s, 1, 1, 0.5, 1.0, &["lr".into()]);
        pbt.on_result("a", 0, &params(0.1), 1, 1.0);
        pbt.finished("a");
        // Alone among the running trials, b is never exploited.
        assert_eq!(pbt.on_result("b", 1, &params(0.1), 1, 5.0), None);
        assert_eq!(pbt.on_result("b", 1, &params(0.1), 2, 5.0), None);
    }
}
