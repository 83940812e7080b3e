//! Baselines without training: repeat the last input value over the horizon (the "Repeat"
//! row of Zeng et al. 2023).

use crate::dataset::WindowSet;
use crate::task::Metrics;

/// Test MSE/MAE of repeating each window's last input value.
pub fn repeat_last(set: &WindowSet) -> Metrics {
    let mut m = Metrics::default();
    for i in 0..set.len() {
        let (x, y, _) = set.get(i);
        let last = x.last().copied().unwrap_or(0.0);
        m.add(&vec![last; y.len()], y);
    }
    m
}
