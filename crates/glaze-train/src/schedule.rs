//! Learning-rate schedules: constant, linear warmup then cosine decay, and one-cycle.

/// How the learning rate moves over the optimizer steps of a run.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LrSchedule {
    /// The base rate throughout.
    Constant,
    /// Linear warmup over `warmup` steps (a fraction of the run when < 1, else a count), then
    /// cosine decay to `base · min_ratio` at the last step.
    WarmupCosine {
        /// Warmup length: fraction of all steps (< 1) or a number of steps (≥ 1).
        warmup: f64,
        /// Final rate as a fraction of the base rate.
        min_ratio: f64,
    },
    /// One-cycle (Smith & Topin 2019) as Time-LLM uses it: cosine rise from `base/div` to
    /// `base` over `pct_start` of the run, cosine fall to `base/(div·final_div)`.
    OneCycle {
        /// Fraction of the run spent rising.
        pct_start: f64,
        /// Initial rate is `base / div`.
        div: f64,
        /// Final rate is `base / (div · final_div)`.
        final_div: f64,
    },
}

impl Default for LrSchedule {
    fn default() -> Self {
        LrSchedule::WarmupCosine {
            warmup: 0.05,
            min_ratio: 0.1,
        }
    }
}

fn cos_interp(from: f64, to: f64, frac: f64) -> f64 {
    to + (from - to) * 0.5 * (1.0 + (std::f64::consts::PI * frac.clamp(0.0, 1.0)).cos())
}

impl LrSchedule {
    /// Rate at optimizer step `step` (0-based) of `total` steps.
    pub fn lr(&self, base: f64, step: usize, total: usize) -> f64 {
        let total = total.max(1);
        match *self {
            LrSchedule::Constant => base,
            LrSchedule::WarmupCosine { warmup, min_ratio } => {
                let w = if warmup < 1.0 {
                    (warmup * total as f64).round() as usize
                } else {
                    warmup as usize
                };
                if step < w {
                    base * (step + 1) as f64 / w as f64
                } else {
                    let span = (total - w.min(total)).max(1) as f64;
                    cos_interp(base, base * min_ratio, (step - w) as f64 / span)
                }
            }
            LrSchedule::OneCycle {
                pct_start,
                div,
                final_div,
            } => {
                let up = ((pct_start * total as f64).round() as usize).max(1);
                let start = base / div;
                if step < up {
                    cos_interp(start, base, step as f64 / up as f64)
                } else {
                    let span = (total - up.min(total)).max(1) as f64;
                    cos_interp(base, start / final_div, (step - up) as f64 / span)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        let s = LrSchedule::WarmupCosine {
            warmup: 10.0,
            min_ratio: 0.1,
        };
        assert!((s.lr(1.0, 0, 110) - 0.1).abs() < 1e-12);
        assert!((s.lr(1.0, 9, 110) - 1.0).abs() < 1e-12);
        assert!((s.lr(1.0, 10, 110) - 1.0).abs() < 1e-12);
        assert!((s.lr(1.0, 60, 110) - 0.55).abs() < 1e-12);
        assert!((s.lr(1.0, 110, 110) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn one_cycle_rises_then_falls() {
        let s = LrSchedule::OneCycle {
            pct_start: 0.2,
            div: 25.0,
            final_div: 1e4,
        };
        assert!((s.lr(1.0, 0, 100) - 0.04).abs() < 1e-12);
        assert!((s.lr(1.0, 20, 100) - 1.0).abs() < 1e-12);
        assert!(s.lr(1.0, 99, 100) < 0.001);
        assert!(s.lr(1.0, 10, 100) > 0.04 && s.lr(1.0, 10, 100) < 1.0);
    }
}
