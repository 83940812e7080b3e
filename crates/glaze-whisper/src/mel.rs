//! Whisper's log-mel spectrogram on the CPU (OpenAI `whisper/audio.py`,
//! `log_mel_spectrogram`): centred STFT with reflect padding, n_fft 400, hop 160, periodic Hann
//! window, power spectrum, Slaney-style mel filters (librosa's `filters.mel`, 80 or 128 bins,
//! 0–8 kHz, Slaney area normalisation), `log10(max(x, 1e-10))`, floor at the maximum − 8, then
//! `(x + 4) / 4`. The last STFT frame is dropped, as Whisper does, so `N` samples give
//! `N / 160` frames. burn-signal's STFT needs power-of-two sizes; `realfft` takes 400.

use realfft::RealFftPlanner;

/// Settings of the spectrogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MelConfig {
    /// Mel bins: 80, or 128 for large-v3.
    pub n_mels: usize,
    /// FFT size. 400.
    pub n_fft: usize,
    /// Hop. 160.
    pub hop: usize,
    /// Sample rate. 16,000.
    pub sample_rate: u32,
}

impl Default for MelConfig {
    fn default() -> Self {
        MelConfig {
            n_mels: 80,
            n_fft: 400,
            hop: 160,
            sample_rate: 16_000,
        }
    }
}

/// A log-mel spectrogram, `[n_mels, frames]` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct LogMel {
    /// Values.
    pub data: Vec<f32>,
    /// Mel bins.
    pub n_mels: usize,
    /// Frames (10 ms each at 16 kHz).
    pub frames: usize,
}

fn hz_to_mel(f: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let logstep = 6.4f64.ln() / 27.0;
    if f >= min_log_hz {
        min_log_hz / f_sp + (f / min_log_hz).ln() / logstep
    } else {
        f / f_sp
    }
}

fn mel_to_hz(m: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if m >= min_log_mel {
        min_log_hz * (logstep * (m - min_log_mel)).exp()
    } else {
        f_sp * m
    }
}

/// librosa's Slaney mel filter bank, `[n_mels, n_fft / 2 + 1]`, rounded to f32 as Whisper's
/// stored filters are.
pub fn mel_filters(config: &MelConfig) -> Vec<f32> {
    let bins = config.n_fft / 2 + 1;
    let sr = f64::from(config.sample_rate);
    let fft_freqs: Vec<f64> = (0..bins)
        .map(|k| k as f64 * sr / config.n_fft as f64)
        .collect();
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(sr / 2.0));
    let n = config.n_mels;
    let mel_f: Vec<f64> = (0..n + 2)
        .map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (n + 1) as f64))
        .collect();
    let mut w = vec![0.0f32; n * bins];
    for i in 0..n {
        let enorm = 2.0 / (mel_f[i + 2] - mel_f[i]);
        for (k, &f) in fft_freqs.iter().enumerate() {
            let lower = (f - mel_f[i]) / (mel_f[i + 1] - mel_f[i]);
            let upper = (mel_f[i + 2] - f) / (mel_f[i + 2] - mel_f[i + 1]);
            w[i * bins + k] = (lower.min(upper).max(0.0) * enorm) as f32;
        }
    }
    w
}

/// The log-mel spectrogram of 16 kHz mono samples, zero-padded (or cut) to `pad_to` samples
/// first when given (Whisper pads every input to 30 s = 480,000 samples).
pub fn log_mel(samples: &[f32], config: &MelConfig, pad_to: Option<usize>) -> LogMel {
    let mut x: Vec<f64> = samples.iter().map(|&v| f64::from(v)).collect();
    if let Some(n) = pad_to {
        x.resize(n, 0.0);
    }
    let (n_fft, hop) = (config.n_fft, config.hop);
    let half = n_fft / 2;
    let len = x.len();
    // Reflect padding (needs more than `half` samples; shorter inputs are zero-extended first).
    if len <= half {
        x.resize(half + 1, 0.0);
    }
    let len = x.len();
    let mut padded = Vec::with_capacity(len + 2 * half);
    padded.extend((1..=half).rev().map(|i| x[i]));
    padded.extend_from_slice(&x);
    padded.extend((0..half).map(|j| x[len - 2 - j]));
    let frames = len / hop;
    let window: Vec<f64> = (0..n_fft)
        .map(|n| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / n_fft as f64).cos())
        .collect();
    let fft = RealFftPlanner::<f64>::new().plan_fft_forward(n_fft);
    let bins = n_fft / 2 + 1;
    let filters = mel_filters(config);
    let mut input = fft.make_input_vec();
    let mut spectrum = fft.make_output_vec();
    let mut power = vec![0.0f64; bins];
    let n_mels = config.n_mels;
    let mut mel = vec![0.0f64; n_mels * frames];
    for t in 0..frames {
        let start = t * hop;
        for (i, v) in input.iter_mut().enumerate() {
            *v = padded[start + i] * window[i];
        }
        fft.process(&mut input, &mut spectrum)
            .expect("invariant: buffers come from the plan");
        for (p, c) in power.iter_mut().zip(&spectrum) {
            *p = c.norm_sqr();
        }
        for m in 0..n_mels {
            let row = &filters[m * bins..(m + 1) * bins];
            mel[m * frames + t] = row.iter().zip(&power).map(|(&w, p)| f64::from(w) * p).sum();
        }
    }
    let logs: Vec<f64> = mel.iter().map(|v| v.max(1e-10).log10()).collect();
    let max = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let data = logs
        .into_iter()
        .map(|v| ((v.max(max - 8.0) + 4.0) / 4.0) as f32)
        .collect();
    LogMel {
        data,
        n_mels,
        frames,
    }
}

/// Whisper's 30-second input as faster-whisper / CTranslate2 prepare it: the log-mel of the
/// clip followed by one hop of silence (so the last samples get their frame), then zero-filled
/// (value 0, not the silence floor) to `frames` columns, or cut to them.
pub fn whisper_input(samples: &[f32], config: &MelConfig, frames: usize) -> LogMel {
    let m = log_mel(samples, config, Some(samples.len() + config.hop));
    pad_frames(&m, frames)
}

/// Zero-fills (or cuts) a spectrogram to `frames` columns.
pub fn pad_frames(mel: &LogMel, frames: usize) -> LogMel {
    let mut data = vec![0.0f32; mel.n_mels * frames];
    let keep = mel.frames.min(frames);
    for m in 0..mel.n_mels {
        data[m * frames..m * frames + keep]
            .copy_from_slice(&mel.data[m * mel.frames..m * mel.frames + keep]);
    }
    LogMel {
        data,
        n_mels: mel.n_mels,
        frames,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mel_scale_round_trips_and_filters_cover_the_band() {
        for f in [0.0, 500.0, 1000.0, 4000.0, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(f)) - f).abs() < 1e-6);
        }
        let cfg = MelConfig::default();
        let w = mel_filters(&cfg);
        assert_eq!(w.len(), 80 * 201);
        // Every filter has positive weight somewhere; none past Nyquist bin 200.
        for m in 0..80 {
            assert!(
                w[m * 201..(m + 1) * 201].iter().any(|&v| v > 0.0),
                "filter {m}"
            );
        }
    }

    #[test]
    fn frames_follow_the_hop_and_silence_is_the_floor() {
        let cfg = MelConfig::default();
        let tone: Vec<f32> = (0..16_000)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16_000.0).sin())
            .collect();
        let m = log_mel(&tone, &cfg, Some(32_000));
        assert_eq!((m.n_mels, m.frames), (80, 200));
        // The padded second half is silence: every value there is the floor (max − 8 + 4) / 4.
        let max = m.data.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let floor = max - 2.0;
        assert!(
            (m.data[150] - floor).abs() < 1e-5,
            "{} vs {floor}",
            m.data[150]
        );
    }
}
