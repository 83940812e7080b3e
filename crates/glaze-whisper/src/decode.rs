//! Decoding audio files to mono `f32` samples at their own rate: WAV through `hound`, FLAC,
//! MP3 and Ogg/Vorbis through `symphonia`. Channels are averaged (down-mix). Durations above
//! [`AudioLimits::max_seconds`] are refused — from the header when it says how long the file
//! is, otherwise while decoding — so a huge or endless file cannot exhaust memory.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CODEC_TYPE_NULL, DecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use crate::error::{Error, Result};

/// Decoded mono audio.
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    /// Samples in [-1, 1].
    pub samples: Vec<f32>,
    /// Samples per second.
    pub sample_rate: u32,
}

impl Audio {
    /// Duration in seconds.
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.sample_rate.max(1))
    }
}

/// Limits applied while decoding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AudioLimits {
    /// Longest accepted duration in seconds. Default one hour.
    pub max_seconds: f64,
}

impl Default for AudioLimits {
    fn default() -> Self {
        AudioLimits {
            max_seconds: 3600.0,
        }
    }
}

/// Reads and decodes an audio file.
pub fn decode_file(path: &Path, limits: &AudioLimits) -> Result<Audio> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_bytes(&bytes, path, limits)
}

/// Decodes in-memory audio; `name` is used in errors and as a format hint.
pub fn decode_bytes(bytes: &[u8], name: &Path, limits: &AudioLimits) -> Result<Audio> {
    if bytes.is_empty() {
        return Err(Error::Empty {
            path: name.to_path_buf(),
        });
    }
    let audio = if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WAVE" {
        decode_wav(bytes, name, limits)?
    } else {
        decode_other(bytes, name, limits)?
    };
    if audio.samples.is_empty() {
        return Err(Error::Empty {
            path: name.to_path_buf(),
        });
    }
    Ok(audio)
}

fn too_long(path: &Path, frames: u64, rate: u32, limits: &AudioLimits) -> Result<()> {
    let seconds = frames as f64 / f64::from(rate.max(1));
    if seconds > limits.max_seconds {
        return Err(Error::TooLong {
            path: path.to_path_buf(),
            seconds,
            limit: limits.max_seconds,
        });
    }
    Ok(())
}

/// Averages interleaved channels into `out`.
fn downmix(interleaved: &[f32], channels: usize, out: &mut Vec<f32>) {
    let c = channels.max(1);
    out.extend(
        interleaved
            .chunks_exact(c)
            .map(|frame| frame.iter().sum::<f32>() / c as f32),
    );
}

fn decode_wav(bytes: &[u8], name: &Path, limits: &AudioLimits) -> Result<Audio> {
    let path: PathBuf = name.to_path_buf();
    let wav_err = |e: hound::Error| match e {
        hound::Error::Unsupported => Error::Unsupported {
            path: path.clone(),
            detail: "this WAV sample format is not supported".into(),
        },
        hound::Error::IoError(io) => Error::Corrupt {
            path: path.clone(),
            detail: format!("truncated ({io})"),
        },
        other => Error::Corrupt {
            path: path.clone(),
            detail: other.to_string(),
        },
    };
    let reader = hound::WavReader::new(Cursor::new(bytes)).map_err(wav_err)?;
    let spec = reader.spec();
    if spec.channels == 0 || spec.sample_rate == 0 {
        return Err(Error::Corrupt {
            path,
            detail: format!("{} channels at {} Hz", spec.channels, spec.sample_rate),
        });
    }
    too_long(name, u64::from(reader.duration()), spec.sample_rate, limits)?;
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader
            .into_samples::<f32>()
            .collect::<std::result::Result<_, _>>()
            .map_err(wav_err)?,
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<std::result::Result<_, _>>()
                .map_err(wav_err)?
        }
    };
    let mut samples = Vec::with_capacity(interleaved.len() / usize::from(spec.channels));
    downmix(&interleaved, usize::from(spec.channels), &mut samples);
    Ok(Audio {
        samples,
        sample_rate: spec.sample_rate,
    })
}

fn decode_other(bytes: &[u8], name: &Path, limits: &AudioLimits) -> Result<Audio> {
    let path = name.to_path_buf();
    let corrupt = |e: SymError| match e {
        SymError::Unsupported(what) => Error::Unsupported {
            path: path.clone(),
            detail: what.to_string(),
        },
        other => Error::Corrupt {
            path: path.clone(),
            detail: other.to_string(),
        },
    };
    let probe = |data: Vec<u8>, ext: Option<&str>| {
        let mss = MediaSourceStream::new(Box::new(Cursor::new(data)), Default::default());
        let mut hint = Hint::new();
        if let Some(ext) = ext {
            hint.with_extension(ext);
        }
        symphonia::default::get_probe().format(
            &hint,
            mss,
            // Gapless: packets say how many encoder-delay and padding frames to drop (Ogg/Vorbis
            // pads its last block; MP3 has encoder delay), so durations come out exact.
            &FormatOptions {
                enable_gapless: true,
                ..FormatOptions::default()
            },
            &MetadataOptions::default(),
        )
    };
    let ext = name.extension().and_then(|e| e.to_str());
    let probed = match probe(bytes.to_vec(), ext) {
        Ok(p) => p,
        // A malformed ID3v2 tag (seen in the wild: size 0, then a damaged first frame) stops
        // the probe; skip the tag and let the MP3 reader search for the next frame sync.
        Err(first) if bytes.starts_with(b"ID3") && bytes.len() > 10 => {
            let size = bytes[6..10]
                .iter()
                .fold(0usize, |acc, &b| (acc << 7) | usize::from(b & 0x7f));
            let start = (10 + size).min(bytes.len());
            probe(bytes[start..].to_vec(), Some("mp3")).map_err(|_| Error::Unsupported {
                path: path.clone(),
                detail: format!("not WAV, FLAC, MP3 or Ogg/Vorbis ({first})"),
            })?
        }
        Err(e) => {
            return Err(Error::Unsupported {
                path: path.clone(),
                detail: format!("not WAV, FLAC, MP3 or Ogg/Vorbis ({e})"),
            });
        }
    };
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| Error::Unsupported {
            path: path.clone(),
            detail: "no audio track".into(),
        })?;
    let track_id = track.id;
    let params = track.codec_params.clone();
    let rate = params.sample_rate.ok_or_else(|| Error::Corrupt {
        path: path.clone(),
        detail: "no sample rate".into(),
    })?;
    if let Some(frames) = params.n_frames {
        too_long(name, frames, rate, limits)?;
    }
    let mut decoder = symphonia::default::get_codecs()
        .make(&params, &DecoderOptions::default())
        .map_err(corrupt)?;
    let mut samples = Vec::new();
    let max_samples = (limits.max_seconds * f64::from(rate)).ceil() as usize;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(SymError::ResetRequired) => break,
            Err(e) => return Err(corrupt(e)),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = decoder.decode(&packet).map_err(corrupt)?;
        let spec = *decoded.spec();
        let mut buf = SampleBuffer::<f32>::new(decoded.capacity() as u64, spec);
        buf.copy_interleaved_ref(decoded);
        let start = samples.len();
        downmix(buf.samples(), spec.channels.count(), &mut samples);
        let got = samples.len() - start;
        let (head, tail) = (packet.trim_start as usize, packet.trim_end as usize);
        if head + tail >= got {
            samples.truncate(start);
        } else {
            samples.truncate(samples.len() - tail);
            samples.drain(start..start + head);
        }
        if samples.len() > max_samples {
            too_long(name, samples.len() as u64, rate, limits)?;
        }
    }
    // The container's frame count, where it has one, is exact (an Ogg stream's last granule
    // position): decoders may emit the padding of a final block beyond it.
    if let Some(n) = params.n_frames.filter(|&n| n > 0)
        && samples.len() as u64 > n
    {
        samples.truncate(n as usize);
    }
    Ok(Audio {
        samples,
        sample_rate: rate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(channels: u16, rate: u32, frames: usize) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut out = Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut out, spec).expect("writer");
        for i in 0..frames {
            for c in 0..channels {
                // Left channel +0.5, right channel -0.25.
                let v = if c == 0 { 16384 } else { -8192 };
                w.write_sample((v + i as i32 % 2) as i16).expect("sample");
            }
        }
        w.finalize().expect("finalize");
        out.into_inner()
    }

    #[test]
    fn stereo_wav_is_downmixed() {
        let a = decode_bytes(
            &wav(2, 44_100, 100),
            Path::new("s.wav"),
            &AudioLimits::default(),
        )
        .expect("decodes");
        assert_eq!(a.sample_rate, 44_100);
        assert_eq!(a.samples.len(), 100);
        assert!((a.samples[0] - 0.125).abs() < 1e-3, "{}", a.samples[0]);
    }

    #[test]
    fn bad_files_are_typed_errors_naming_the_file() {
        let limits = AudioLimits::default();
        let full = wav(1, 16_000, 1000);
        let err = decode_bytes(&full[..full.len() - 700], Path::new("cut.wav"), &limits)
            .expect_err("truncated");
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("cut.wav"));
        let err = decode_bytes(&[], Path::new("e.wav"), &limits).expect_err("empty");
        assert!(matches!(err, Error::Empty { .. }), "{err}");
        let err =
            decode_bytes(&wav(1, 16_000, 0), Path::new("z.wav"), &limits).expect_err("no samples");
        assert!(matches!(err, Error::Empty { .. }), "{err}");
        let err = decode_bytes(b"not audio at all, just text", Path::new("t.mp3"), &limits)
            .expect_err("text");
        assert!(matches!(err, Error::Unsupported { .. }), "{err}");
        let short = AudioLimits { max_seconds: 0.01 };
        let err = decode_bytes(&full, Path::new("long.wav"), &short).expect_err("too long");
        assert!(matches!(err, Error::TooLong { .. }), "{err}");
    }
}
