//! Continuous batching ([`DecodeBatch`]) on the tiny backbones of each architecture and on the
//! real SmolLM2: generations that join and leave a running batch answer as they do alone,
//! cancelled rows leave the cache, and a reused prompt beginning changes no answer.

use std::collections::BTreeMap;

use glaze::core::decode_batch::{DecodeBatch, RowEvent, RowId};
use glaze::core::harness::ByteCodec;
use glaze::core::{
    FinishReason, FrozenBackbone, GenerationConfig, Prompt, TextCodec, embed_prompt, generate,
};

use crate::contract::tiny_backbones;

/// A long system message shared by every request, as an app sends it (longer than two
/// prefill pieces of SmolLM2's 8-bit path).
pub(crate) const SYSTEM: &str = "You are the support assistant of a small bakery in the old town. \
    Answer every question in one short sentence, politely, in plain English. Never invent \
    opening hours, prices, ingredients or allergens; when you do not know something, say so \
    and suggest calling the shop during the day. Do not use lists, headings or emoji. If a \
    customer asks about orders for weddings or birthdays, say that the baker takes them in \
    person. If a question has nothing to do with the bakery, answer it briefly and kindly.";

/// Text and finish of each generation, in admission order.
type Answers = Vec<(String, Option<FinishReason>, usize)>;

fn collect(answers: &mut BTreeMap<RowId, (String, Option<FinishReason>, usize)>, e: RowEvent) {
    let a = answers.entry(e.id).or_default();
    a.0.push_str(&e.text);
    a.1 = e.finish;
    a.2 = e.tokens;
}

/// Runs `prompts` through one batch, admitting prompt `i` before step `joins[i]` (those of
/// the same step together).
fn batched(
    backbone: &dyn FrozenBackbone,
    codec: &dyn TextCodec,
    prompts: &[(&str, GenerationConfig)],
    joins: &[usize],
    prefix_entries: usize,
) -> (Answers, Vec<usize>) {
    let mut batch = DecodeBatch::new(prefix_entries);
    let mut answers = BTreeMap::new();
    let mut reused = Vec::new();
    let mut step = 0;
    let mut admitted = 0;
    while admitted < prompts.len() || !batch.is_empty() {
        // The prompts joining at this step are admitted together (prefilled as one batch).
        let mut now = Vec::new();
        while admitted < prompts.len() && joins[admitted] <= step {
            let (text, config) = &prompts[admitted];
            let e = embed_prompt(backbone, codec, &Prompt::new().text(*text)).expect("embeds");
            now.push((e.embeds, config.clone()));
            admitted += 1;
        }
        for a in batch.admit_many(backbone, codec, now) {
            let a = a.expect("admits");
            reused.push(a.reused);
            collect(&mut answers, a.first);
        }
        for e in batch.step(backbone, codec).expect("steps") {
            collect(&mut answers, e);
        }
        step += 1;
        assert!(step < 10_000, "the batch never emptied");
    }
    (answers.into_values().collect(), reused)
}

fn alone(
    backbone: &dyn FrozenBackbone,
    codec: &dyn TextCodec,
    prompts: &[(&str, GenerationConfig)],
) -> Answers {
    prompts
        .iter()
        .map(|(text, config)| {
            let g = generate(backbone, codec, &Prompt::new().text(*text), config, |_| {})
                .expect("generates");
            (g.text, Some(g.finish), g.ids.len())
        })
        .collect()
}

fn greedy(n: usize) -> GenerationConfig {
    GenerationConfig::new()
        .with_max_new_tokens(n)
        .with_stop_at_eos(false)
}

#[test]
fn generations_joining_a_running_batch_answer_as_they_do_alone() {
    let prompts = [
        ("a frozen backbone", greedy(12)),
        ("x", greedy(20)),
        ("a much longer prompt than the others", greedy(5)),
        (
            "sampled",
            greedy(9).with_temperature(0.8).with_top_p(0.9).with_seed(4),
        ),
    ];
    for backbone in tiny_backbones() {
        let name = backbone.config().architecture.clone();
        let expected = alone(&backbone, &ByteCodec, &prompts);
        // All at once, and joining at different steps (rows of unequal lengths, some already
        // finished when others join).
        for joins in [[0, 0, 0, 0], [0, 3, 4, 13]] {
            let (got, _) = batched(&backbone, &ByteCodec, &prompts, &joins, 0);
            assert_eq!(got, expected, "{name}, joins {joins:?}");
        }
    }
}

#[test]
fn a_cancelled_generation_leaves_the_batch_and_the_others_go_on() {
    let backbone = &tiny_backbones()[1];
    let prompts = [("first prompt", greedy(10)), ("second", greedy(10))];
    let expected = alone(backbone, &ByteCodec, &prompts);
    let mut batch = DecodeBatch::new(0);
    let mut ids = Vec::new();
    let mut answers = BTreeMap::new();
    for (text, config) in &prompts {
        let e = embed_prompt(backbone, &ByteCodec, &Prompt::new().text(*text)).expect("embeds");
        let a = batch
            .admit(backbone, &ByteCodec, e.embeds, config)
            .expect("admits");
        ids.push(a.id);
        collect(&mut answers, a.first);
    }
    for e in batch.step(backbone, &ByteCodec).expect("steps") {
        collect(&mut answers, e);
    }
    batch.cancel(ids[0]);
    assert_eq!(batch.len(), 2, "a cancelled row leaves at the next step");
    while !batch.is_empty() {
        let events = batch.step(backbone, &ByteCodec).expect("steps");
        assert!(events.iter().all(|e| e.id == ids[1]), "{events:?}");
        events.into_iter().for_each(|e| collect(&mut answers, e));
        assert!(batch.len() <= 1);
    }
    assert_eq!(answers[&ids[1]], expected[1]);
    assert_eq!(answers[&ids[0]].2, 2, "two tokens before the cancel");
}

#[test]
fn a_reused_prompt_beginning_changes_no_answer() {
    let system = "system: you answer in one short line, politely, and never twice\n";
    let questions = [
        "user: why?\n",
        "user: what is a frozen backbone?\n",
        "user: hi\n",
    ];
    let texts: Vec<String> = questions.iter().map(|q| format!("{system}{q}")).collect();
    // Prefill in pieces of 8 positions: reuse is rounded down to whole pieces.
    let config = greedy(6).with_prefill_chunk(Some(8));
    let prompts: Vec<(&str, GenerationConfig)> =
        texts.iter().map(|t| (t.as_str(), config.clone())).collect();
    for backbone in tiny_backbones() {
        let name = backbone.config().architecture.clone();
        let expected = alone(&backbone, &ByteCodec, &prompts);
        let (got, reused) = batched(&backbone, &ByteCodec, &prompts, &[0, 2, 4], 4);
        assert_eq!(got, expected, "{name}");
        // Admitted together, with nothing cached yet: one right-padded prefill, no reuse.
        let (together, none) = batched(&backbone, &ByteCodec, &prompts, &[0, 0, 0], 4);
        assert_eq!(together, expected, "{name}");
        assert_eq!(none, [0, 0, 0], "{name}");
        // The first prompt computes everything; each later one reuses its longest shared
        // beginning with an earlier prompt (its beginning-of-sequence token included), in
        // whole pieces.
        let bos = usize::from(ByteCodec.bos_id().is_some());
        let shared =
            |a: &str, b: &str| a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
        let expected_reuse: Vec<usize> = (0..texts.len())
            .map(|i| {
                let best = (0..i).map(|j| shared(&texts[i], &texts[j])).max();
                best.map_or(0, |n| (n + bos).min(texts[i].len() + bos - 1) / 8 * 8)
            })
            .collect();
        assert!(
            expected_reuse[1] >= 64,
            "the system line spans whole pieces"
        );
        assert_eq!(reused, expected_reuse, "{name}");
    }
}

#[test]
fn smollm2_answers_in_a_batch_as_it_does_alone() {
    let lm = glaze_tests::smollm2();
    let chat = |q: &str| {
        lm.tokenizer
            .render_chat(
                &[
                    glaze::ChatMessage::new("system", SYSTEM),
                    glaze::ChatMessage::user(q),
                ],
                true,
            )
            .expect("renders")
    };
    let texts = [
        chat("Name three colours."),
        chat("What is the capital of France?"),
        chat("Write a haiku about the sea."),
    ];
    let prompts: Vec<(&str, GenerationConfig)> = texts
        .iter()
        .map(|t| (t.as_str(), GenerationConfig::new().with_max_new_tokens(16)))
        .collect();
    let expected = alone(&lm.llama, &lm.tokenizer, &prompts);
    // The first two are prefilled together, the third continues from the prefix cache.
    let (got, reused) = batched(&lm.llama, &lm.tokenizer, &prompts, &[0, 0, 5], 4);
    assert_eq!(got, expected);
    // Where generation prefills in pieces (the 8-bit kernels), the later prompts reuse the
    // system message's whole pieces.
    match lm.llama.prefill_chunk() {
        Some(piece) => {
            assert_eq!(reused[..2], [0, 0]);
            assert!(reused[2] >= piece && reused[2] % piece == 0, "{reused:?}");
        }
        None => assert_eq!(reused, [0, 0, 0]),
    }
}
