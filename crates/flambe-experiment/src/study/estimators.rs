//! The densities TPE compares, as Optuna's `TPESampler` builds them (its
//! defaults), plugged into the `tpe` crate's optimizer through its
//! `BuildDensityEstimator` trait. The crate's own estimators are those of
//! the original hyperopt TPE; Optuna's differ in two ways that matter on
//! the benchmark (`scripts/bench-search.sh`):
//!
//! - numbers: the prior kernel (at the middle of the range) is as wide as
//!   the range, so the model keeps exploring towards the edges; each
//!   observation's kernel is as wide as its larger gap to a neighbour
//!   (the end ones: their one neighbour), clipped to
//!   `[width / min(100, 1 + n), width]`, and every kernel is a normal
//!   truncated to the range;
//! - categories: the prior weighs as much as one observation, spread over
//!   the categories (not one observation per category), so a category
//!   that did well is picked again sooner.

use rand::Rng;
use rand::distr::Distribution;
use std::convert::Infallible;
use tpe::density_estimation::{BuildDensityEstimator, DensityEstimator};
use tpe::range::Range;

/// Which density a param gets.
pub enum Estimator {
    Numeric,
    Categorical,
}

impl BuildDensityEstimator for Estimator {
    type Estimator = Density;
    type Error = Infallible;

    fn build_density_estimator<I>(&self, xs: I, range: Range) -> Result<Density, Infallible>
    where
        I: Iterator<Item = f64> + Clone,
    {
        Ok(match self {
            Estimator::Numeric => Density::Parzen(Parzen::new(xs.collect(), range)),
            Estimator::Categorical => Density::Histogram(Histogram::new(xs, range)),
        })
    }
}

pub enum Density {
    Parzen(Parzen),
    Histogram(Histogram),
}

impl DensityEstimator for Density {
    fn log_pdf(&self, x: f64) -> f64 {
        match self {
            Density::Parzen(p) => p.log_pdf(x),
            Density::Histogram(h) => h.probabilities[bin(x, h.probabilities.len())].ln(),
        }
    }
}

impl Distribution<f64> for Density {
    fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        match self {
            Density::Parzen(p) => p.sample(rng),
            Density::Histogram(h) => {
                let mut u = unit(rng);
                for (i, p) in h.probabilities.iter().enumerate() {
                    if u < *p {
                        return i as f64;
                    }
                    u -= p;
                }
                (h.probabilities.len() - 1) as f64
            }
        }
    }
}

/// A mixture of equally weighted normals, each truncated to the range.
pub struct Parzen {
    /// (mean, sigma, log of the mass it has inside the range).
    kernels: Vec<(f64, f64, f64)>,
    low: f64,
    high: f64,
}

impl Parzen {
    fn new(mut xs: Vec<f64>, range: Range) -> Parzen {
        let (low, high) = (range.start(), range.end());
        let width = high - low;
        xs.retain(|x| x.is_finite());
        xs.sort_by(f64::total_cmp);
        let n = xs.len();
        let mut kernels = Vec::with_capacity(n + 1);
        let min_sigma = width / (1.0 + (n + 1) as f64).min(100.0);
        for i in 0..n {
            let left = if i == 0 { low } else { xs[i - 1] };
            let right = if i + 1 == n { high } else { xs[i + 1] };
            let mut sigma = (xs[i] - left).max(right - xs[i]);
            // The end kernels are as wide as the gap to their one neighbour.
            if n >= 2 && i == 0 {
                sigma = xs[1] - xs[0];
            } else if n >= 2 && i + 1 == n {
                sigma = xs[n - 1] - xs[n - 2];
            }
            kernels.push((xs[i], sigma.clamp(min_sigma, width)));
        }
        kernels.push(((low + high) / 2.0, width));
        Parzen {
            kernels: kernels
                .into_iter()
                .map(|(mu, sigma)| {
                    let mass = phi((high - mu) / sigma) - phi((low - mu) / sigma);
                    (mu, sigma, mass.max(1e-300).ln())
                })
                .collect(),
            low,
            high,
        }
    }

    fn log_pdf(&self, x: f64) -> f64 {
        let terms: Vec<f64> = self
            .kernels
            .iter()
            .map(|(mu, sigma, log_mass)| {
                let z = (x - mu) / sigma;
                -0.5 * z * z - sigma.ln() - 0.5 * (2.0 * std::f64::consts::PI).ln() - log_mass
            })
            .collect();
        let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        max + terms.iter().map(|t| (t - max).exp()).sum::<f64>().ln()
            - (self.kernels.len() as f64).ln()
    }

    fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        let k = &self.kernels
            [((unit(rng) * self.kernels.len() as f64) as usize).min(self.kernels.len() - 1)];
        // Rejection: a kernel centred in the range, no wider than it, has at
        // least a third of its mass inside.
        loop {
            let (u1, u2) = (1.0 - unit(rng), unit(rng));
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            let x = k.0 + k.1 * z;
            if (self.low..self.high).contains(&x) {
                return x;
            }
        }
    }
}

/// Category probabilities: counts, plus one observation's worth of prior
/// spread evenly.
pub struct Histogram {
    probabilities: Vec<f64>,
}

impl Histogram {
    fn new(xs: impl Iterator<Item = f64>, range: Range) -> Histogram {
        let n = (range.width().ceil() as usize).max(1);
        let mut weights = vec![1.0 / n as f64; n];
        for x in xs {
            weights[bin(x, n)] += 1.0;
        }
        let total: f64 = weights.iter().sum();
        Histogram {
            probabilities: weights.into_iter().map(|w| w / total).collect(),
        }
    }
}

fn bin(x: f64, n: usize) -> usize {
    (x.floor().max(0.0) as usize).min(n - 1)
}

/// Uniform in [0, 1), 53 bits.
fn unit<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
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
        let range = tpe::range(-2.0, 3.0).unwrap();
        let p = Parzen::new(vec![-1.9, 0.0, 0.1, 2.5], range);
        let steps = 20_000;
        let dx = 5.0 / steps as f64;
        let mass: f64 = (0..steps)
            .map(|i| p.log_pdf(-2.0 + (i as f64 + 0.5) * dx).exp() * dx)
            .sum();
        assert!((mass - 1.0).abs() < 1e-3, "{mass}");
    }

    #[test]
    fn categories_that_did_well_weigh_more_than_the_prior() {
        let h = Histogram::new([1.5, 1.5].into_iter(), tpe::categorical_range(3).unwrap());
        // (2 + 1/3) / 3 for the one seen twice.
        assert!((h.probabilities[1] - 7.0 / 9.0).abs() < 1e-12);
        assert!((h.probabilities.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
}
