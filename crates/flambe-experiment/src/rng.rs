//! The random numbers behind `!s`, `!c`, `!u` and `!lu`.
//!
//! A SplitMix64 generator, written out here on purpose: the draws of an
//! experiment must stay the same across flambe versions and platforms (a
//! rerun resumes by trial id, and a cluster run must match a local one), and
//! a dependency's algorithm may change under a version bump.

pub struct Rng(u64);

impl Rng {
    /// A generator for one stage: the experiment seed mixed with the stage
    /// name, so adding a stage never shifts another stage's draws.
    pub fn for_stage(seed: u64, stage: &str) -> Rng {
        Rng(seed ^ fnv1a(stage.as_bytes()))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), 53 bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [low, high).
    pub fn uniform(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }

    /// Uniform integer in [low, high], both inclusive.
    pub fn int_inclusive(&mut self, low: i64, high: i64) -> i64 {
        let span = (high as i128 - low as i128 + 1) as u128;
        let draw = (u128::from(self.next_u64()) * span) >> 64;
        (low as i128 + draw as i128) as i64
    }

    /// An index below `n` (n > 0).
    pub fn index(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_fixed_forever() {
        // Changing these numbers changes every user's experiments: don't.
        let mut r = Rng(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        let mut a = Rng::for_stage(7, "train");
        let mut b = Rng::for_stage(7, "train");
        assert_eq!(a.next_u64(), b.next_u64());
        assert_ne!(
            Rng::for_stage(7, "eval").next_u64(),
            Rng::for_stage(7, "train").next_u64()
        );
    }

    #[test]
    fn ranges_hold() {
        let mut r = Rng::for_stage(1, "s");
        for _ in 0..10_000 {
            let i = r.int_inclusive(-2, 3);
            assert!((-2..=3).contains(&i));
            let f = r.uniform(0.5, 0.75);
            assert!((0.5..0.75).contains(&f));
            assert!(r.index(3) < 3);
        }
    }
}
