//! Prompt-as-Prefix (Time-LLM §3.2): a short text with the dataset description, the task and
//! statistics of the (normalised) input window — min, max, median, trend and the five lags
//! with the highest autocorrelation — embedded by the frozen LLM and placed before the
//! reprogrammed patches.
//!
//! Differences from the reference code, all to keep prompts short and meaningful on a CPU:
//! numbers are written with 3 decimals; the lags come from the mean-removed autocorrelation
//! over lags `1..=L/2` (the reference takes the circular FFT autocorrelation, where lag 0 is
//! always first); the median is the lower median, as `torch.median` gives.

/// Statistics of one input window.
#[derive(Debug, Clone, PartialEq)]
pub struct InputStats {
    /// Minimum.
    pub min: f32,
    /// Maximum.
    pub max: f32,
    /// Lower median.
    pub median: f32,
    /// Sum of first differences (`> 0`: upward).
    pub trend: f32,
    /// The five lags with the highest autocorrelation, best first.
    pub top_lags: Vec<usize>,
}

/// Computes [`InputStats`] of `x`.
pub fn input_stats(x: &[f32]) -> InputStats {
    let mut sorted = x.to_vec();
    sorted.sort_by(f32::total_cmp);
    let median = sorted
        .get((sorted.len().max(1) - 1) / 2)
        .copied()
        .unwrap_or(0.0);
    let trend = x.windows(2).map(|w| w[1] - w[0]).sum();
    InputStats {
        min: sorted.first().copied().unwrap_or(0.0),
        max: sorted.last().copied().unwrap_or(0.0),
        median,
        trend,
        top_lags: top_lags(x, 5),
    }
}

/// The `k` lags in `1..=len/2` with the highest autocorrelation of the mean-removed series.
pub fn top_lags(x: &[f32], k: usize) -> Vec<usize> {
    let n = x.len();
    if n < 4 {
        return Vec::new();
    }
    let m = x.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
    let c: Vec<f64> = x.iter().map(|&v| v as f64 - m).collect();
    let mut scored: Vec<(usize, f64)> = (1..=n / 2)
        .map(|lag| {
            let s: f64 = (lag..n).map(|t| c[t] * c[t - lag]).sum();
            (lag, s)
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.into_iter().take(k).map(|(l, _)| l).collect()
}

/// The prompt text for one window.
pub fn prompt_text(description: &str, input_len: usize, horizon: usize, s: &InputStats) -> String {
    let lags: Vec<String> = s.top_lags.iter().map(|l| l.to_string()).collect();
    format!(
        "Dataset: {description} Task: forecast the next {horizon} steps from the previous \
         {input_len} steps. Input statistics: min {:.3}, max {:.3}, median {:.3}, trend {}, \
         top 5 lags {}.",
        s.min,
        s.max,
        s.median,
        if s.trend > 0.0 { "upward" } else { "downward" },
        lags.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_by_hand() {
        let x = [3.0f32, 1.0, 4.0, 1.0, 5.0, 9.0];
        let s = input_stats(&x);
        assert_eq!((s.min, s.max, s.median), (1.0, 9.0, 3.0));
        assert_eq!(s.trend, 6.0);
        // A period-4 signal: lag 4 has the highest autocorrelation among 1..=6.
        let p: Vec<f32> = (0..12).map(|t| [0.0f32, 1.0, 0.0, -1.0][t % 4]).collect();
        assert_eq!(top_lags(&p, 1), [4]);
        let text = prompt_text("ETT.", 96, 24, &s);
        assert!(text.contains("next 24 steps"));
        assert!(text.contains("min 1.000, max 9.000, median 3.000, trend upward"));
    }
}
