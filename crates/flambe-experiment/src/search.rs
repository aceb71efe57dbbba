//! A stage's own search space, expanded into concrete parameter sets.
//!
//! Order (fixed, since trial ids depend on it):
//! 1. each `!s [low, high, k]` draws its k values once, in param order;
//! 2. the grid is the product of `!g` values and `!s` samples in param order,
//!    the last param varying fastest;
//! 3. the whole grid repeats `samples` times (as Ray Tune's `num_samples`),
//!    and every repetition of every grid point draws each `!c`/`!u`/`!lu`/`!i`.
//!
//! `!Random {trials: N}` draws every param of N trials in turn (a `!g` as a
//! choice among its values, `!s` as a range), so a larger N keeps the first
//! draws. `!TPE` chooses its trials as the stage runs ([`crate::study`]):
//! nothing is expanded ahead.

use crate::rng::Rng;
use flambe_config::{ParamSpec, Search, Stage};
use serde_json::{Map, Value};

/// One point of a stage's search space: param name → value, in param order.
pub type Params = Map<String, Value>;

/// The params of every trial a stage runs per parent, in trial order; empty
/// for a TPE stage, whose trials are chosen one at a time.
pub fn expand(stage: &Stage, seed: u64) -> Vec<Params> {
    match stage.search {
        Search::Grid => expand_grid(stage, seed),
        Search::Random { trials } => {
            let mut rng = Rng::for_stage(seed, &stage.name);
            (0..trials).map(|_| random_point(stage, &mut rng)).collect()
        }
        Search::Tpe { .. } => Vec::new(),
    }
}

/// Every param of `stage` drawn from its range (fixed ones as written).
pub fn random_point(stage: &Stage, rng: &mut Rng) -> Params {
    stage
        .params
        .iter()
        .map(|p| {
            let value = match &p.spec {
                ParamSpec::Grid(values) => values[rng.index(values.len())].clone(),
                ParamSpec::Sample {
                    low, high, integer, ..
                } => sample_value(rng, *low, *high, *integer),
                other => draw(rng, other),
            };
            (p.name.clone(), value)
        })
        .collect()
}

/// A value of a per-trial param (`!c`, `!u`, `!lu`, `!i`, or fixed).
fn draw(rng: &mut Rng, spec: &ParamSpec) -> Value {
    match spec {
        ParamSpec::Fixed(v) => v.clone(),
        ParamSpec::Choice(values) => values[rng.index(values.len())].clone(),
        ParamSpec::Uniform { low, high } => float(rng.uniform(*low, *high)),
        ParamSpec::LogUniform { low, high } => {
            float(rng.uniform(low.ln(), high.ln()).exp().clamp(*low, *high))
        }
        ParamSpec::Int { low, high } => Value::from(rng.int_inclusive(*low, *high)),
        ParamSpec::Grid(_) | ParamSpec::Sample { .. } => {
            unreachable!("grid axes are chosen by the grid, never drawn per trial")
        }
    }
}

fn expand_grid(stage: &Stage, seed: u64) -> Vec<Params> {
    let mut rng = Rng::for_stage(seed, &stage.name);
    // Step 1: the grid axes, with `!s` sampled once.
    let axes: Vec<(usize, Vec<Value>)> = stage
        .params
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match &p.spec {
            ParamSpec::Grid(values) => Some((i, values.clone())),
            ParamSpec::Sample {
                low,
                high,
                k,
                integer,
            } => Some((
                i,
                (0..*k)
                    .map(|_| sample_value(&mut rng, *low, *high, *integer))
                    .collect(),
            )),
            _ => None,
        })
        .collect();
    let grid_size: usize = axes.iter().map(|(_, v)| v.len()).product();
    let mut out = Vec::with_capacity(grid_size * stage.samples as usize);
    for _ in 0..stage.samples {
        for point in 0..grid_size {
            let mut chosen: Vec<Option<Value>> = vec![None; stage.params.len()];
            // Step 2: decode `point` as a mixed-radix number, last axis fastest.
            let mut rest = point;
            for (i, values) in axes.iter().rev() {
                chosen[*i] = Some(values[rest % values.len()].clone());
                rest /= values.len();
            }
            // Step 3: per-sample draws and fixed values.
            let mut params = Params::new();
            for (i, p) in stage.params.iter().enumerate() {
                let value = match chosen[i].take() {
                    Some(v) => v,
                    None => draw(&mut rng, &p.spec),
                };
                params.insert(p.name.clone(), value);
            }
            out.push(params);
        }
    }
    out
}

pub(crate) fn sample_value(rng: &mut Rng, low: f64, high: f64, integer: bool) -> Value {
    if integer {
        Value::from(rng.int_inclusive(low as i64, high as i64))
    } else {
        float(rng.uniform(low, high))
    }
}

/// Drawn floats keep 6 significant digits: plenty for a hyperparameter, and
/// short enough to read in a trial list or a command line.
pub(crate) fn float(f: f64) -> Value {
    let rounded: f64 = format!("{f:.5e}").parse().unwrap_or(f);
    serde_json::Number::from_f64(rounded).map_or(Value::Null, Value::Number)
}

/// A parameter value as it goes into a command line: strings bare, the rest
/// as JSON (`0.01`, `true`, `[1,2]`).
pub fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flambe_config::load_str;
    use std::path::Path;

    fn stage(yaml: &str) -> Stage {
        let text = format!("!Experiment\nname: t\npipeline:\n  s: !Stage\n    run: echo\n{yaml}");
        match load_str(Path::new("t.yaml"), &text, &|_| None)
            .unwrap()
            .runnable
        {
            flambe_config::Runnable::Experiment(e) => e.pipeline[0].clone(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn counts_grid_times_s_times_samples() {
        let s = stage(
            "    params:\n      lr: !g [1, 2, 3]\n      d: !s [0.0, 0.5, 4]\n      l: !c [1, 2]\n      w: !lu [1.0e-6, 1.0e-2]\n    samples: 2\n",
        );
        let variants = expand(&s, 7);
        assert_eq!(variants.len(), 3 * 4 * 2);
        assert_eq!(s.variant_count(), 24);
        // `!s` values are drawn once: the same 4 dropouts appear in every block.
        let mut dropouts: Vec<String> = variants.iter().map(|v| v["d"].to_string()).collect();
        dropouts.sort();
        dropouts.dedup();
        assert_eq!(dropouts.len(), 4);
        for v in &variants {
            let w = v["w"].as_f64().unwrap();
            assert!((1.0e-6..=1.0e-2).contains(&w));
            assert!([1, 2].contains(&v["l"].as_i64().unwrap()));
        }
    }

    #[test]
    fn integer_bounds_give_integers_and_draws_repeat_with_the_seed() {
        let s = stage("    params:\n      n: !s [1, 10, 5]\n      u: !u [0, 1]\n    samples: 3\n");
        let a = expand(&s, 1);
        assert!(a.iter().all(|v| v["n"].is_i64()));
        assert_eq!(a, expand(&s, 1));
        assert_ne!(a, expand(&s, 2));
    }

    #[test]
    fn random_search_draws_every_param_and_more_trials_keep_the_first() {
        let ten = stage(
            "    params:\n      a: !g [1, 2, 3]\n      n: !i [-2, 2]\n      s: !s [0, 10, 2]\n      f: x\n    search: !Random {trials: 10}\n",
        );
        let a = expand(&ten, 3);
        assert_eq!(a.len(), 10);
        for p in &a {
            assert!([1, 2, 3].contains(&p["a"].as_i64().unwrap()));
            assert!((-2..=2).contains(&p["n"].as_i64().unwrap()));
            assert!((0..=10).contains(&p["s"].as_i64().unwrap()));
            assert_eq!(p["f"], "x");
        }
        // Not a grid: more than the two `!s` values appear.
        let mut s: Vec<i64> = a.iter().map(|p| p["s"].as_i64().unwrap()).collect();
        s.sort();
        s.dedup();
        assert!(s.len() > 2, "{s:?}");
        let mut twenty = ten.clone();
        twenty.search = flambe_config::Search::Random { trials: 20 };
        assert_eq!(expand(&twenty, 3)[..10], a[..]);
    }

    #[test]
    fn last_param_varies_fastest() {
        let s = stage("    params:\n      a: !g [1, 2]\n      b: !g [x, y]\n      c: 5\n");
        let v: Vec<String> = expand(&s, 0)
            .iter()
            .map(|p| format!("{}{}{}", p["a"], render_value(&p["b"]), p["c"]))
            .collect();
        assert_eq!(v, ["1x5", "1y5", "2x5", "2y5"]);
    }
}
