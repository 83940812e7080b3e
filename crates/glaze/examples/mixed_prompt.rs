//! One prompt, soft tokens from two plugins: a spoken clip through a speech adapter
//! (`glaze-speech`) and a sound through the APT aligner (`glaze-audio`), spliced with text into
//! one chat turn of the frozen SmolLM2.
//!
//! ```sh
//! cargo run -p glaze --features speech --example mixed_prompt -- \
//!     SPEECH_ADAPTER APT_ADAPTER SPEECH.wav SOUND.wav
//! ```
//! The adapters are `adapter.safetensors` files of `glaze speech train` and `glaze audio train`
//! (Whisper tiny.en, trim window). Needs `cargo xtask fetch`.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;

use burn::prelude::*;
use glaze::audio::{AudioEncoder, AudioLimits, encode_files};
use glaze::core::{Adapter, ChatMessage, Condition, GenerationConfig, PromptTemplate, SoftTokens};
use glaze::llm::{LanguageModel, generate};
use glaze::{FrozenBackbone, TextCodec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    let [speech_adapter, apt_adapter, speech_clip, sound_clip] = &args[..] else {
        return Err("usage: mixed_prompt SPEECH_ADAPTER APT_ADAPTER SPEECH.wav SOUND.wav".into());
    };
    let device = Device::flex();
    let lm = LanguageModel::load_default(&device)?;
    let encoder = AudioEncoder::load_default(&device)?;
    let (speech, _) = glaze::speech::experiment::load_adapter(&lm.llama, &encoder, speech_adapter)?;
    let (apt, _) = glaze::audio::experiment::load_aligner(&lm.llama, &encoder, apt_adapter)?;
    let bank = encode_files(
        &encoder,
        None,
        &[speech_clip.clone(), sound_clip.clone()],
        &AudioLimits::default(),
        &device,
    )?;

    // Plugin 1: the spoken clip as frame-stacked soft tokens.
    let spoken = speech.adapt(&bank.batch(&[0], &device), None);
    // Plugin 2: the sound as 16 APT queries, conditioned on the question.
    let question = "Describe the sound.";
    let ids: Vec<i64> = lm
        .tokenizer
        .encode(question)?
        .into_iter()
        .map(i64::from)
        .collect();
    let n = ids.len();
    let condition = Condition {
        embeds: lm.llama.embed(Tensor::<2, Int>::from_data(
            TensorData::new(ids, [1, n]),
            &device,
        )),
        mask: None,
    };
    let sound = apt.adapt(&bank.batch(&[1], &device), Some(&condition));

    let turn = lm.tokenizer.render_chat(
        &[ChatMessage::user(format!(
            "First clip: <speech>\nSecond clip: <audio>\nWhat is said in the first clip? {question}"
        ))],
        true,
    )?;
    let prompt = PromptTemplate::new(turn)
        .with_placeholder("<speech>")
        .with_placeholder("<audio>")
        .fill(vec![
            ("<speech>", SoftTokens::from_batch(spoken)[0].clone()),
            ("<audio>", SoftTokens::from_batch(sound)[0].clone()),
        ])?;
    let out = generate(
        &lm.llama,
        &lm.tokenizer,
        &prompt,
        &GenerationConfig::new().with_max_new_tokens(40),
        |t| print!("{t}"),
    )?;
    println!(
        "\n({} prompt positions, {} new tokens)",
        out.prompt_len,
        out.ids.len()
    );
    Ok(())
}
