//! Resampling to the 16 kHz the Whisper encoders take, with `rubato`'s FFT resampler (whole
//! clips through `process_all`, which trims the resampler's delay so output lines up with input).

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use crate::decode::Audio;
use crate::error::{Error, Result};

/// The rate of every Whisper model.
pub const WHISPER_RATE: u32 = 16_000;

/// Resamples mono audio to `rate` (a copy when it already has that rate).
pub fn resample(audio: &Audio, rate: u32) -> Result<Audio> {
    if audio.sample_rate == rate {
        return Ok(audio.clone());
    }
    let config = |problem: String| Error::Config {
        field: "sample_rate",
        problem,
    };
    let mut r = Fft::<f32>::new(
        audio.sample_rate as usize,
        rate as usize,
        1024,
        1,
        FixedSync::Both,
    )
    .map_err(|e| config(e.to_string()))?;
    let n = audio.samples.len();
    let input = InterleavedSlice::new(&audio.samples, 1, n).map_err(|e| config(e.to_string()))?;
    let out = r
        .process_all(&input, n, None)
        .map_err(|e| config(e.to_string()))?;
    Ok(Audio {
        samples: out.take_data(),
        sample_rate: rate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 440 Hz tone at 8 kHz keeps its frequency and length at 16 kHz.
    #[test]
    fn tone_keeps_frequency_and_duration() {
        let tone = |rate: u32, n: usize| -> Vec<f32> {
            (0..n)
                .map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / rate as f32).sin())
                .collect()
        };
        let audio = Audio {
            samples: tone(8_000, 8_000),
            sample_rate: 8_000,
        };
        let up = resample(&audio, WHISPER_RATE).expect("resamples");
        assert_eq!(up.sample_rate, 16_000);
        assert!(
            (up.samples.len() as i64 - 16_000).abs() <= 2,
            "{}",
            up.samples.len()
        );
        let want = tone(16_000, up.samples.len());
        // Away from the edges the resampled tone equals the 16 kHz tone.
        let err = up.samples[2000..14000]
            .iter()
            .zip(&want[2000..14000])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 0.01, "{err}");
    }
}
