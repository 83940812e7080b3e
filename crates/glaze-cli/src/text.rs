//! `glaze generate`, `glaze chat` and `glaze prompt-tune`: text through the frozen LLM.

use std::io::{BufRead, Write};
use std::time::Instant;

use glaze::llm::{GenerationConfig, LanguageModel};
use glaze::train::{PromptTuningConfig, TuningExample, tune_soft_prompt};
use glaze::{ChatMessage, Prompt, TextCodec};
use indicatif::{ProgressBar, ProgressStyle};

use crate::{ModelArgs, SampleArgs};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// `glaze generate`: continues `prompt` (or answers it as a user turn with `chat`).
pub fn generate(prompt: &str, chat: bool, model_args: &ModelArgs, sample: &SampleArgs) -> Res<()> {
    let model = crate::load(model_args)?;
    let text = if chat {
        model
            .tokenizer
            .render_chat(&[ChatMessage::user(prompt)], true)?
    } else {
        prompt.to_string()
    };
    if !chat {
        print!("{prompt}");
    }
    stream(&model, &Prompt::new().text(text), &sample.config())?;
    Ok(())
}

/// `glaze chat`: user turns from stdin, one per line.
pub fn chat(system: Option<String>, model_args: &ModelArgs, sample: &SampleArgs) -> Res<()> {
    let model = crate::load(model_args)?;
    let mut messages: Vec<ChatMessage> = system
        .into_iter()
        .map(|s| ChatMessage::new("system", s))
        .collect();
    eprintln!("chat: type a message per line; end with Ctrl-D");
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        messages.push(ChatMessage::user(line));
        let text = model.tokenizer.render_chat(&messages, true)?;
        print!("assistant: ");
        let answer = stream(&model, &Prompt::new().text(text), &sample.config())?;
        messages.push(ChatMessage::new("assistant", answer));
    }
    Ok(())
}

/// `glaze prompt-tune`: trains a soft prompt so the frozen model answers `question` with
/// `target`, and shows the answer before and after.
pub fn prompt_tune(
    question: &str,
    target: &str,
    tokens: usize,
    steps: usize,
    lr: f64,
    seed: u64,
    model_args: &ModelArgs,
) -> Res<()> {
    let model = crate::load(model_args)?;
    let context = model
        .tokenizer
        .render_chat(&[ChatMessage::user(question)], true)?;
    let config = GenerationConfig::new().with_max_new_tokens(48);
    println!("question: {question}");
    print!("frozen model, no soft prompt: ");
    let before = stream(&model, &Prompt::new().text(context.clone()), &config)?;
    // The model learns to end its turn: the tokenizer's end-of-turn token follows.
    let end_of_turn = match model.tokenizer.stop_ids().first() {
        Some(&id) => model.tokenizer.decode(&[id], true)?,
        None => String::new(),
    };
    let examples = [TuningExample {
        context: Prompt::new().text(context.clone()),
        target: format!("{target}{end_of_turn}"),
    }];
    let tuning = PromptTuningConfig::new()
        .with_n_tokens(tokens)
        .with_steps(steps)
        .with_lr(lr)
        .with_seed(seed);
    let pb = ProgressBar::new(steps as u64);
    pb.set_style(
        ProgressStyle::with_template("training {bar:30} {pos}/{len} steps, {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let start = Instant::now();
    let (soft, report) = tune_soft_prompt(
        &model.llama,
        &model.tokenizer,
        &examples,
        &tuning,
        |step, loss| {
            pb.set_position(step as u64 + 1);
            pb.set_message(format!("loss {loss:.4}"));
        },
    )?;
    pb.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "trained {} soft-prompt vectors in {} steps, {secs:.1} s ({:.2} s/step); loss {:.3} -> {:.4}",
        soft.len(),
        report.losses.len(),
        secs / report.losses.len().max(1) as f64,
        report.losses.first().copied().unwrap_or(f32::NAN),
        report.losses.last().copied().unwrap_or(f32::NAN)
    );
    let soft_plain = glaze::SoftTokens::new(soft.tokens().into_tensor().inner_plain());
    print!("frozen model + trained soft prompt: ");
    let after = stream(
        &model,
        &Prompt::new().soft(soft_plain).text(context),
        &config,
    )?;
    println!(
        "target {}reached (before: {:?}, after: {:?})",
        if after.trim() == target.trim() {
            ""
        } else {
            "NOT "
        },
        before.trim(),
        after.trim()
    );
    Ok(())
}

/// Streams a generation to stdout and its speeds to stderr; returns the text.
fn stream(model: &LanguageModel, prompt: &Prompt, config: &GenerationConfig) -> Res<String> {
    let mut stdout = std::io::stdout();
    let out = glaze::llm::generate(&model.llama, &model.tokenizer, prompt, config, |piece| {
        let _ = write!(stdout, "{piece}");
        let _ = stdout.flush();
    })?;
    println!();
    let n = out.ids.len().max(1);
    eprintln!(
        "[{} prompt tokens: {:.1} tok/s prefill; {} new tokens: {:.1} tok/s decode; {:?}]",
        out.prompt_len,
        out.prompt_len as f64 / out.prefill_secs.max(1e-9),
        out.ids.len(),
        n.saturating_sub(1) as f64 / out.decode_secs.max(1e-9),
        out.finish
    );
    Ok(out.text)
}

/// Moves an autodiff tensor's values to a plain tensor, for inference.
trait InnerPlain {
    fn inner_plain(self) -> Self;
}

impl InnerPlain for burn::prelude::Tensor<2> {
    fn inner_plain(self) -> Self {
        let device = self.device().without_autodiff();
        burn::prelude::Tensor::from_data(self.into_data(), &device)
    }
}
