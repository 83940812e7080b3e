//! Generated sound events with captions that state what was generated (issue 5, task b): pure
//! tones of a given pitch and length, noise of a given colour, rising or falling chirps, click
//! trains, and rhythms. Seeded, so a split is reproducible; 16 kHz mono.

use crate::decode::Audio;
use crate::resample::WHISPER_RATE;

/// What a clip contains.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SoundEvent {
    /// A sine tone.
    Tone {
        /// Frequency in Hz.
        hz: u32,
        /// Length in tenths of a second.
        tenths: u32,
    },
    /// Noise of a colour (`white`, `pink` or `brown`).
    Noise {
        /// The colour.
        colour: String,
    },
    /// A sweep between 300 Hz and 3 kHz.
    Chirp {
        /// Upwards (true) or downwards.
        rising: bool,
    },
    /// A train of short clicks.
    Clicks {
        /// How many.
        count: u32,
    },
    /// Beeps at a steady tempo.
    Rhythm {
        /// Beats in the clip.
        beats: u32,
        /// Fast (4 per second) or slow (2 per second).
        fast: bool,
    },
}

const NUMBER_WORDS: [&str; 9] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
];

impl SoundEvent {
    /// The caption the model learns to write.
    pub fn caption(&self) -> String {
        match self {
            SoundEvent::Tone { hz, tenths } => {
                let pitch = if *hz < 500 {
                    "low"
                } else if *hz < 1500 {
                    "middle"
                } else {
                    "high"
                };
                format!(
                    "a {pitch} tone of {hz} hertz lasting {:.1} seconds",
                    f64::from(*tenths) / 10.0
                )
            }
            SoundEvent::Noise { colour } => format!("{colour} noise"),
            SoundEvent::Chirp { rising } => {
                format!("a {} chirp", if *rising { "rising" } else { "falling" })
            }
            SoundEvent::Clicks { count } => format!("{} clicks", NUMBER_WORDS[*count as usize]),
            SoundEvent::Rhythm { beats, fast } => format!(
                "{} {} beeps",
                NUMBER_WORDS[*beats as usize],
                if *fast { "fast" } else { "slow" }
            ),
        }
    }

    /// The class a caption names first: `tone`, `noise`, `chirp`, `clicks` or `rhythm`.
    pub fn class(&self) -> &'static str {
        match self {
            SoundEvent::Tone { .. } => "tone",
            SoundEvent::Noise { .. } => "noise",
            SoundEvent::Chirp { .. } => "chirp",
            SoundEvent::Clicks { .. } => "clicks",
            SoundEvent::Rhythm { .. } => "rhythm",
        }
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

/// The `i`-th event of the seeded sequence.
pub fn event(seed: u64, i: u64) -> SoundEvent {
    let mut r = Rng(seed ^ i.wrapping_mul(0xD1B5_4A32_D192_ED03));
    match r.below(5) {
        0 => SoundEvent::Tone {
            hz: [220, 330, 440, 880, 1000, 1760, 2500][r.below(7) as usize],
            tenths: 3 + r.below(13) as u32,
        },
        1 => SoundEvent::Noise {
            colour: ["white", "pink", "brown"][r.below(3) as usize].to_string(),
        },
        2 => SoundEvent::Chirp {
            rising: r.below(2) == 0,
        },
        3 => SoundEvent::Clicks {
            count: 2 + r.below(7) as u32,
        },
        _ => SoundEvent::Rhythm {
            beats: 3 + r.below(6) as u32,
            fast: r.below(2) == 0,
        },
    }
}

/// Renders an event (amplitude 0.3–0.6, a little background noise, 16 kHz).
pub fn render(e: &SoundEvent, seed: u64) -> Audio {
    let sr = WHISPER_RATE as f32;
    let mut r = Rng(seed);
    let amp = 0.3 + 0.3 * (r.unit() * 0.5 + 0.5);
    let secs = |s: f32| (s * sr) as usize;
    let tone = |hz: f32, n: usize, out: &mut Vec<f32>| {
        let start = out.len();
        for k in 0..n {
            // 5 ms fades avoid clicks at the edges.
            let fade = (k.min(n - 1 - k) as f32 / (0.005 * sr)).min(1.0);
            out.push(
                amp * fade * (2.0 * std::f32::consts::PI * hz * (start + k) as f32 / sr).sin(),
            );
        }
    };
    let mut x: Vec<f32> = Vec::new();
    match e {
        SoundEvent::Tone { hz, tenths } => {
            x.extend(std::iter::repeat_n(0.0, secs(0.2)));
            tone(*hz as f32, secs(*tenths as f32 / 10.0), &mut x);
            x.extend(std::iter::repeat_n(0.0, secs(0.2)));
        }
        SoundEvent::Noise { colour } => {
            let n = secs(1.5);
            let (mut b0, mut b1, mut b2, mut brown) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
            for _ in 0..n {
                let w = r.unit();
                let v = match colour.as_str() {
                    "pink" => {
                        // Paul Kellet's economy pink filter.
                        b0 = 0.99765 * b0 + w * 0.099_046;
                        b1 = 0.963 * b1 + w * 0.296_516_4;
                        b2 = 0.57 * b2 + w * 1.052_691_3;
                        (b0 + b1 + b2 + w * 0.1848) * 0.2
                    }
                    "brown" => {
                        brown = (brown + 0.02 * w) / 1.02;
                        brown * 3.5
                    }
                    _ => w * 0.5,
                };
                x.push(amp * v);
            }
        }
        SoundEvent::Chirp { rising } => {
            let n = secs(1.2);
            let (f0, f1) = if *rising {
                (300.0f32, 3000.0f32)
            } else {
                (3000.0, 300.0)
            };
            let mut phase = 0.0f32;
            for k in 0..n {
                let f = f0 * (f1 / f0).powf(k as f32 / n as f32);
                phase += 2.0 * std::f32::consts::PI * f / sr;
                x.push(amp * phase.sin());
            }
        }
        SoundEvent::Clicks { count } => {
            let gap = secs(0.18);
            x.extend(std::iter::repeat_n(0.0, secs(0.1)));
            for _ in 0..*count {
                for k in 0..secs(0.004) {
                    x.push(
                        amp * 1.5
                            * (-(k as f32) / 12.0).exp()
                            * if k % 2 == 0 { 1.0 } else { -1.0 },
                    );
                }
                x.extend(std::iter::repeat_n(0.0, gap));
            }
        }
        SoundEvent::Rhythm { beats, fast } => {
            let period = if *fast { 0.25 } else { 0.5 };
            for _ in 0..*beats {
                tone(1200.0, secs(0.08), &mut x);
                x.extend(std::iter::repeat_n(0.0, secs(period - 0.08)));
            }
        }
    }
    for v in &mut x {
        *v += 0.003 * r.unit();
    }
    Audio {
        samples: x,
        sample_rate: WHISPER_RATE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_seeded_varied_and_audible() {
        let evs: Vec<SoundEvent> = (0..200).map(|i| event(7, i)).collect();
        assert_eq!(evs, (0..200).map(|i| event(7, i)).collect::<Vec<_>>());
        for class in ["tone", "noise", "chirp", "clicks", "rhythm"] {
            assert!(
                evs.iter().filter(|e| e.class() == class).count() > 20,
                "{class}"
            );
        }
        for (i, e) in evs.iter().enumerate().take(40) {
            let a = render(e, i as u64);
            let peak = a.samples.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(
                a.seconds() > 0.3 && a.seconds() < 5.0 && peak > 0.05 && peak <= 1.0,
                "{e:?}"
            );
        }
        assert_eq!(
            SoundEvent::Tone { hz: 440, tenths: 5 }.caption(),
            "a low tone of 440 hertz lasting 0.5 seconds"
        );
    }
}
