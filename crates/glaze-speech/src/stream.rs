//! Streaming recognition: audio arrives in chunks; each finished chunk is encoded on its own,
//! turned into soft tokens and prefilled into the frozen LLM's KV cache at once, so when the
//! stream ends only the last partial chunk and the instruction remain to be prefilled before
//! the first word. The first-token latency is measured from `finish` (the end of the audio) to
//! the first generated token.
//!
//! Chunks are encoded independently (no attention across chunk borders, log-mel floor per
//! chunk), so features differ from whole-clip encoding; `docs/results/speech.md` reports what
//! that costs in WER for an adapter trained on whole clips.

use std::time::Instant;

use burn::prelude::*;
use glaze_core::{
    Adapter, Features, ForwardOptions, FrozenBackbone, GenerationConfig, KvCache, TextCodec,
    generate_cached,
};
use glaze_whisper::mel::log_mel;
use glaze_whisper::{AudioEncoder, WHISPER_RATE};

use crate::adapter::SpeechAdapter;
use crate::asr::SpeechPipeline;
use crate::error::{Error, Result};

/// What a finished stream produced.
#[derive(Debug, Clone)]
pub struct StreamResult {
    /// The transcript.
    pub text: String,
    /// Seconds from `finish` to the first generated token.
    pub first_token_secs: f64,
    /// Seconds from `finish` to the end of generation.
    pub total_secs: f64,
    /// Chunks encoded (including the last partial one).
    pub chunks: usize,
    /// Soft tokens spliced in.
    pub soft_tokens: usize,
}

/// Incremental recognition of one stream.
pub struct StreamingRecognizer<'a> {
    pipeline: SpeechPipeline<'a>,
    encoder: &'a AudioEncoder,
    adapter: &'a SpeechAdapter,
    cache: KvCache,
    pending: Vec<f32>,
    chunk: usize,
    tail_ids: Vec<u32>,
    chunks: usize,
    soft_tokens: usize,
}

impl<'a> StreamingRecognizer<'a> {
    /// Starts a stream with chunks of `chunk_seconds` (at 16 kHz); prefills the prompt up to the
    /// audio.
    pub fn new(
        backbone: &'a dyn FrozenBackbone,
        codec: &'a dyn TextCodec,
        encoder: &'a AudioEncoder,
        adapter: &'a SpeechAdapter,
        chunk_seconds: f64,
    ) -> Result<Self> {
        let chunk = (chunk_seconds * f64::from(WHISPER_RATE)).round() as usize;
        if chunk < 2 * encoder.mel_config().hop || chunk > encoder.max_samples() {
            return Err(Error::config(
                "chunk_seconds",
                format!("{chunk_seconds} s is outside 0.02 s ..= 30 s"),
            ));
        }
        let pipeline = SpeechPipeline { backbone, codec };
        let mut segments = pipeline.segments()?;
        let tail_ids = segments.pop().unwrap_or_default();
        let head = segments.into_iter().next().unwrap_or_default();
        let mut cache = backbone.new_cache();
        let n = head.len();
        let ids = Tensor::<2, Int>::from_data(
            TensorData::new(head.into_iter().map(i64::from).collect(), [1, n]),
            backbone.device(),
        );
        backbone.forward(backbone.embed(ids), ForwardOptions::generating(&mut cache));
        Ok(StreamingRecognizer {
            pipeline,
            encoder,
            adapter,
            cache,
            pending: Vec::new(),
            chunk,
            tail_ids,
            chunks: 0,
            soft_tokens: 0,
        })
    }

    /// Soft tokens of `samples` prefilled into the cache.
    fn feed(&mut self, samples: &[f32]) {
        let device = self.pipeline.backbone.device().clone();
        let mel = log_mel(samples, self.encoder.mel_config(), None);
        let feats = self.encoder.encode_mel(&mel, &device);
        let soft = self.adapter.adapt(&Features::new(feats), None);
        self.soft_tokens += soft.dims()[1];
        self.chunks += 1;
        self.pipeline
            .backbone
            .forward(soft, ForwardOptions::generating(&mut self.cache));
    }

    /// Adds 16 kHz samples; every complete chunk is encoded and prefilled now. Returns the
    /// number of chunks processed by this call.
    pub fn push(&mut self, samples: &[f32]) -> usize {
        self.pending.extend_from_slice(samples);
        let mut done = 0;
        while self.pending.len() >= self.chunk {
            let rest = self.pending.split_off(self.chunk);
            let chunk = std::mem::replace(&mut self.pending, rest);
            self.feed(&chunk);
            done += 1;
        }
        done
    }

    /// Ends the stream: encodes what is left, prefills the instruction and generates greedily.
    pub fn finish(mut self, max_new_tokens: usize) -> Result<StreamResult> {
        let start = Instant::now();
        if self.pending.len() >= 2 * self.encoder.mel_config().hop {
            let rest = std::mem::take(&mut self.pending);
            self.feed(&rest);
        }
        if self.chunks == 0 {
            return Err(Error::config("audio", "the stream ended without audio"));
        }
        let backbone = self.pipeline.backbone;
        let n = self.tail_ids.len();
        let ids = Tensor::<2, Int>::from_data(
            TensorData::new(
                self.tail_ids.iter().map(|&i| i64::from(i)).collect(),
                [1, n],
            ),
            backbone.device(),
        );
        let mut first = None;
        let config = GenerationConfig::new().with_max_new_tokens(max_new_tokens);
        let g = generate_cached(
            backbone,
            self.pipeline.codec,
            &mut self.cache,
            backbone.embed(ids),
            &config,
            |_| {
                first.get_or_insert_with(|| start.elapsed().as_secs_f64());
            },
        )?;
        let total = start.elapsed().as_secs_f64();
        Ok(StreamResult {
            text: g.text.trim().to_string(),
            first_token_secs: first.unwrap_or(total),
            total_secs: total,
            chunks: self.chunks,
            soft_tokens: self.soft_tokens,
        })
    }
}
