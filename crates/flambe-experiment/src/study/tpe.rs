//! One TPE step for one param, as Optuna's `TPESampler` takes it with its
//! defaults (univariate): the finished trials split into the best
//! `min(ceil(n / 10), 25)` ("below") and the rest ("above"); a density is
//! fitted to each, 24 candidates are drawn from the below one, and the one
//! with the highest ratio below / above wins.
//!
//! Why not the `tpe` crate: it was checked first (it fits the ask/tell
//! shape), but its optimizer is the original hyperopt one. It gives every
//! trial the same weight (Optuna weighs the oldest of a group down, ramping
//! up to the latest 25, so early bad luck fades), its prior kernel is as
//! narrow as its neighbours (Optuna's is as wide as the range) and its
//! category prior weighs one observation per category (Optuna's: one in
//! all). On `scripts/bench-search.sh` it stayed 15–20% behind Optuna on the
//! learning-curve problem, locked on one optimizer; these densities, with
//! the weights, are Optuna's.

use crate::rng::Rng;

/// What a param's line is made of.
#[derive(Clone, Copy)]
pub enum Kind {
    /// `[low, high)`, numbers (log-scale params arrive as their log).
    Numeric,
    /// Categories `0..n`, each the unit bin `[i, i + 1)`.
    Categorical,
}

const CANDIDATES: usize = 24;

/// The next value on `[low, high)` given `told`: (value, loss) of the
/// finished trials, oldest first; lower loss is better.
pub fn suggest(kind: Kind, low: f64, high: f64, told: &[(f64, f64)], rng: &mut Rng) -> f64 {
    let n = told.len();
    let n_below = n.div_ceil(10).min(25);
    let mut ranked: Vec<usize> = (0..n).collect();
    ranked.sort_by(|&a, &b| told[a].1.total_cmp(&told[b].1));
    let mut is_below = vec![false; n];
    for &i in &ranked[..n_below] {
        is_below[i] = true;
    }
    // Each group keeps trial order, for the age weights.
    let group = |below: bool| -> Vec<f64> {
        (0..n)
            .filter(|&i| is_below[i] == below)
            .map(|i| told[i].0)
            .collect()
    };
    let l = Density::fit(kind, &group(true), low, high);
    let g = Density::fit(kind, &group(false), low, high);
    let mut best = (f64::NEG_INFINITY, l.sample(rng));
    for _ in 0..CANDIDATES {
        let x = l.sample(rng);
        let score = l.log_pdf(x) - g.log_pdf(x);
        if score > best.0 {
            best = (score, x);
        }
    }
    best.1
}

/// Optuna's `default_weights`: all 1 under 25 observations; else the oldest
/// `n - 25` ramp from 1/n up to 1, and the latest 25 weigh 1.
fn age_weights(n: usize) -> Vec<f64> {
    if n < 25 {
        return vec![1.0; n];
    }
    let ramp = n - 25;
    let mut w: Vec<f64> = (0..ramp)
        .map(|i| {
            let start = 1.0 / n as f64;
            if ramp == 1 {
                start
            } else {
                start + (1.0 - start) * i as f64 / (ramp - 1) as f64
            }
        })
        .collect();
    w.extend(std::iter::repeat_n(1.0, 25));
    w
}

/// The prior's weight beside the observations' (Optuna's `prior_weight`).
const PRIOR_WEIGHT: f64 = 1.0;

enum Density {
    /// Kernels (weight, mean, sigma, log of its mass inside the range),
    /// weights summing to 1.
    Parzen {
        kernels: Vec<(f64, f64, f64, f64)>,
        low: f64,
        high: f64,
    },
    /// Category probabilities.
    Histogram(Vec<f64>),
}

impl Density {
    fn fit(kind: Kind, xs: &[f64], low: f64, high: f64) -> Density {
        let mut weights = age_weights(xs.len());
        weights.push(PRIOR_WEIGHT);
        let total: f64 = weights.iter().sum();
        match kind {
            Kind::Numeric => Density::parzen(xs, &weights, total, low, high),
            Kind::Categorical => {
                let n = ((high - low).ceil() as usize).max(1);
                // Each observation's row: its category, plus the prior
                // spread thin over all; the prior's row: uniform.
                let k = (xs.len() + 1) as f64;
                let row_total = 1.0 + n as f64 * PRIOR_WEIGHT / k;
                let mut p = vec![weights[xs.len()] / n as f64; n];
                for (x, w) in xs.iter().zip(&weights) {
                    for (c, pc) in p.iter_mut().enumerate() {
                        let own = if c == bin(*x, n) { 1.0 } else { 0.0 };
                        *pc += w * (own + PRIOR_WEIGHT / k) / row_total;
                    }
                }
                Density::Histogram(p.into_iter().map(|v| v / total).collect())
            }
        }
    }

    /// Each observation's kernel is as wide as its larger gap to a
    /// neighbour (the end ones: their one neighbour), clipped to
    /// `[width / min(100, 2 + n), width]`; the prior's sits mid-range, as
    /// wide as the range. All are normals truncated to the range.
    fn parzen(xs: &[f64], weights: &[f64], total: f64, low: f64, high: f64) -> Density {
        let width = high - low;
        let n = xs.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| xs[a].total_cmp(&xs[b]));
        let sorted: Vec<f64> = order.iter().map(|&i| xs[i]).collect();
        let min_sigma = width / (2.0 + n as f64).min(100.0);
        let mut kernels = Vec::with_capacity(n + 1);
        for (rank, &i) in order.iter().enumerate() {
            let left = if rank == 0 { low } else { sorted[rank - 1] };
            let right = if rank + 1 == n {
                high
            } else {
                sorted[rank + 1]
            };
            let mut sigma = (sorted[rank] - left).max(right - sorted[rank]);
            if n >= 2 && rank == 0 {
                sigma = sorted[1] - sorted[0];
            } else if n >= 2 && rank + 1 == n {
                sigma = sorted[n - 1] - sorted[n - 2];
            }
            kernels.push((weights[i], xs[i], sigma.clamp(min_sigma, width)));
        }
        kernels.push((weights[n], (low + high) / 2.0, width));
        Density::Parzen {
            kernels: kernels
                .into_iter()
                .map(|(w, mu, sigma)| {
                    let mass = phi((high - mu) / sigma) - phi((low - mu) / sigma);
                    (w / total, mu, sigma, mass.max(1e-300).ln())
                })
                .collect(),
            low,
            high,
        }
    }

    fn log_pdf(&self, x: f64) -> f64 {
        match self {
            Density::Histogram(p) => p[bin(x, p.len())].max(1e-300).ln(),
            Density::Parzen { kernels, .. } => {
                let terms: Vec<f64> = kernels
                    .iter()
                    .map(|(w, mu, sigma, log_mass)| {
                        let z = (x - mu) / sigma;
                        w.ln() - 0.5 * z * z - sigma.ln() - LOG_SQRT_2PI - log_mass
                    })
                    .collect();
                let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                max + terms.iter().map(|t| (t - max).exp()).sum::<f64>().ln()
            }
        }
    }

    fn sample(&self, rng: &mut Rng) -> f64 {
        match self {
            Density::Histogram(p) => pick(p.iter().copied(), rng) as f64,
            Density::Parzen { kernels, low, high } => {
                let (_, mu, sigma, _) = kernels[pick(kernels.iter().map(|k| k.0), rng)];
                // Rejection: a kernel centred in the range and no wider
                // than it has at least a third of its mass inside.
                loop {
                    let (u1, u2) = (1.0 - rng.unit(), rng.unit());
                    let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                    let x = mu + sigma * z;
                    if (*low..*high).contains(&x) {
                        return x;
                    }
                }
            }
        }
    }
}

const LOG_SQRT_2PI: f64 = 0.918_938_533_204_672_8;

/// An index drawn by weight (weights summing to about 1).
fn pick(weights: impl Iterator<Item = f64>, rng: &mut Rng) -> usize {
    let mut u = rng.unit();
    let mut last = 0;
    for (i, w) in weights.enumerate() {
        if u < w {
            return i;
        }
        u -= w;
        last = i;
    }
    last
}

fn bin(x: f64, n: usize) -> usize {
    (x.floor().max(0.0) as usize).min(n - 1)
}

/// The standard normal's CDF.
fn phi(z: f64) -> f64 {
    0.5 * (1.0 + erf(z / std::f64::consts::SQRT_2))
}

/// erf to about 1e-7 (Abramowitz and Stegun 7.1.26).
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let y = 1.0 - poly * (-x * x).exp();
    if x < 0.0 { -y } else { y }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parzen_density_integrates_to_one_over_its_range() {
        let xs = [-1.9, 0.0, 0.1, 2.5];
        let mut w = age_weights(4);
        w.push(PRIOR_WEIGHT);
        let d = Density::parzen(&xs, &w, w.iter().sum(), -2.0, 3.0);
        let steps = 20_000;
        let dx = 5.0 / steps as f64;
        let mass: f64 = (0..steps)
            .map(|i| d.log_pdf(-2.0 + (i as f64 + 0.5) * dx).exp() * dx)
            .sum();
        assert!((mass - 1.0).abs() < 1e-3, "{mass}");
    }

    #[test]
    fn category_probabilities_sum_to_one_and_favour_what_was_seen() {
        let Density::Histogram(p) = Density::fit(Kind::Categorical, &[1.5, 1.5], 0.0, 3.0) else {
            unreachable!()
        };
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // Optuna's rows: (1 + 1/3) / 2 at the category seen, twice, and
        // the uniform prior: (2/3 + 2/3 + 1/3) / 3.
        assert!((p[1] - 5.0 / 9.0).abs() < 1e-12 && p[0] == p[2], "{p:?}");
    }

    #[test]
    fn age_weights_are_optunas() {
        assert_eq!(age_weights(3), vec![1.0; 3]);
        let w = age_weights(30);
        assert_eq!(w.len(), 30);
        assert!((w[0] - 1.0 / 30.0).abs() < 1e-12);
        assert!((w[4] - 1.0).abs() < 1e-12 && w[29] == 1.0);
        assert!(w[1] > w[0] && w[2] > w[1]);
    }
}
