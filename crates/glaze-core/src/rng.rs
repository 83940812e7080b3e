//! SplitMix64: the one small, seedable random generator of Glaze (sampling, data shuffling).
//!
//! Its whole state is one `u64`, so a training checkpoint can store it and a resumed run
//! draws exactly the numbers an uninterrupted run would.
//!
//! burn's own generator (parameter initialisation, `Tensor::random`) is one per backend and
//! process-wide: [`seeded`] and [`seeded_module`] seed it and build under one lock, so two
//! seeded constructions in different threads cannot interleave their draws.

use std::sync::Mutex;

use burn::module::Module;
use burn::prelude::Device;

static BURN_RNG: Mutex<()> = Mutex::new(());

/// Runs `make` with burn's generator seeded with `seed`, holding Glaze's lock on it: the
/// values `make` draws depend only on `seed`, whatever other threads that also go through
/// this function do. (Draws that bypass it, such as a bare `Tensor::random` in another
/// thread, can still land in between; Glaze's own code draws only through here.)
pub fn seeded<T>(device: &Device, seed: u64, make: impl FnOnce(&Device) -> T) -> T {
    let _guard = BURN_RNG.lock().unwrap_or_else(|e| e.into_inner());
    device.seed(seed);
    make(device)
}

/// [`seeded`] for a module: every lazily initialised parameter is drawn before the lock is
/// released (burn would otherwise draw it at its first use, from a generator other code may
/// have moved on by then).
pub fn seeded_module<M: Module>(device: &Device, seed: u64, make: impl FnOnce(&Device) -> M) -> M {
    seeded(device, seed, |d| {
        let module = make(d);
        crate::params::materialize(&module);
        module
    })
}

/// SplitMix64 (Steele, Lea & Flood 2014).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator with the given seed.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The state (store it to resume the sequence with [`SplitMix64::new`]).
    pub fn state(&self) -> u64 {
        self.0
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in `0..n` (`n > 0`), by rejection so every value is equally likely.
    pub fn below(&mut self, n: usize) -> usize {
        let n = n as u64;
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let v = self.next_u64();
            if v < zone {
                return (v % n) as usize;
            }
        }
    }

    /// A Fisher–Yates permutation of `0..n`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.below(i + 1);
            p.swap(i, j);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_a_permutation_and_seeded() {
        let a = SplitMix64::new(3).permutation(50);
        let b = SplitMix64::new(3).permutation(50);
        let c = SplitMix64::new(4).permutation(50);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut s = a.clone();
        s.sort_unstable();
        assert_eq!(s, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn state_resumes_the_sequence() {
        let mut g = SplitMix64::new(9);
        g.next_u64();
        let mut h = SplitMix64::new(g.state());
        assert_eq!(g.next_u64(), h.next_u64());
    }
}
