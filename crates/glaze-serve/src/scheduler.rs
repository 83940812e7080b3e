//! The engine loop: continuous batching over the bounded queue.
//!
//! Each turn admits waiting requests while the batch has room (each prefilled alone, its
//! prompt beginning possibly taken from the prefix cache, and its first token sent at once),
//! drops the rows whose client went away or whose time ran out, and decodes one token for
//! every live row. The loop blocks on the queue only when nothing is being generated.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use burn::Tensor;
use glaze::core::decode_batch::{DecodeBatch, RowEvent, RowId};
use glaze::core::{FinishReason, GenerationConfig, embed_prompt};
use tokio::sync::mpsc::UnboundedSender;

use crate::engine::{Engine, Event, Input, Job};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::prompts::core_error;
use crate::stop::StopFilter;
use crate::wire::Usage;

/// A request being generated.
struct Live {
    events: UnboundedSender<Event>,
    stop: StopFilter,
    deadline: Instant,
    timeout_secs: f64,
    prompt_len: usize,
    soft_tokens: usize,
    started: Instant,
}

/// The engine's state between turns.
struct Turn<'a> {
    engine: &'a Engine,
    metrics: &'a Metrics,
    batch: DecodeBatch,
    live: HashMap<RowId, Live>,
}

impl Engine {
    /// Runs jobs until the queue's senders are gone.
    pub fn run(self, jobs: std::sync::mpsc::Receiver<Job>, metrics: Arc<Metrics>) {
        let mut turn = Turn {
            engine: &self,
            metrics: &metrics,
            batch: DecodeBatch::new(self.prefix_cache),
            live: HashMap::new(),
        };
        loop {
            // Waiting requests join while the batch has room, each prefilled as it comes.
            while turn.batch.len() < self.batch {
                let job = if turn.batch.is_empty() {
                    match jobs.recv() {
                        Ok(job) => job,
                        Err(_) => return,
                    }
                } else {
                    match jobs.try_recv() {
                        Ok(job) => job,
                        Err(_) => break,
                    }
                };
                metrics.queued.fetch_sub(1, Ordering::Relaxed);
                if let Some(prepared) = turn.prepare(job) {
                    turn.admit(prepared);
                }
                metrics.running.store(turn.batch.len(), Ordering::Relaxed);
            }
            turn.drop_abandoned();
            turn.step();
            metrics.running.store(turn.batch.len(), Ordering::Relaxed);
        }
    }
}

/// A request whose prompt is embedded, waiting for its prefill.
struct Prepared {
    live: Live,
    embeds: Tensor<3>,
    config: GenerationConfig,
}

impl Turn<'_> {
    /// Builds a job's prompt and its generation settings (a forecast is answered at once,
    /// a bad request refused).
    fn prepare(&mut self, job: Job) -> Option<Prepared> {
        let Job {
            input,
            events,
            deadline,
            timeout_secs,
        } = job;
        if events.is_closed() {
            self.metrics.cancelled.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if Instant::now() > deadline {
            let _ = events.send(Event::Failed(ApiError::timeout(timeout_secs)));
            return None;
        }
        let engine = self.engine;
        let built = match &input {
            Input::Chat(chat) => engine.prompt(chat),
            Input::Completion(c) => engine.completion_prompt(c),
            Input::Forecast(f) => {
                let _ = events.send(match engine.forecast(f) {
                    Ok((values, input_len)) => Event::Forecast { values, input_len },
                    Err(e) => Event::Failed(e),
                });
                return None;
            }
        };
        let fail = |e: ApiError| {
            let _ = events.send(Event::Failed(e));
            None
        };
        let (prompt, soft_tokens) = match built {
            Ok(p) => p,
            Err(e) => return fail(e),
        };
        let sampling = input.sampling()?;
        let (backbone, codec) = (&engine.lm.llama, &engine.lm.tokenizer);
        let embedded = match embed_prompt(backbone, codec, &prompt) {
            Ok(e) => e,
            Err(e) => return fail(core_error(e)),
        };
        let prompt_len = embedded.len();
        let context = engine.info().context_length;
        let room = context.saturating_sub(prompt_len);
        let max_new = match sampling.max_tokens {
            Some(m) if m > room => {
                return fail(ApiError::invalid(
                    "context_length_exceeded",
                    "max_tokens",
                    format!(
                        "the prompt takes {prompt_len} positions ({soft_tokens} soft tokens) and \
                         max_tokens asks for {m} more; the context holds {context}"
                    ),
                ));
            }
            Some(m) => m,
            None => engine.default_max_tokens.min(room),
        };
        if max_new == 0 {
            return fail(ApiError::invalid(
                "context_length_exceeded",
                "messages",
                format!("the prompt takes {prompt_len} positions; the context holds {context}"),
            ));
        }
        let config = GenerationConfig::new()
            .with_max_new_tokens(max_new)
            .with_temperature(sampling.temperature.unwrap_or(engine.default_temperature))
            .with_top_p(sampling.top_p.unwrap_or(1.0))
            .with_seed(sampling.seed.unwrap_or(0));
        let _ = events.send(Event::Started);
        Some(Prepared {
            live: Live {
                events,
                stop: StopFilter::new(sampling.stop.clone()),
                deadline,
                timeout_secs,
                prompt_len,
                soft_tokens,
                started: Instant::now(),
            },
            embeds: embedded.embeds,
            config,
        })
    }

    /// Prefills a prepared request and sends its first token. (Prefilling the waiting
    /// requests together, `DecodeBatch::admit_many`, gave an aggregate throughput within the
    /// spread of one-by-one runs and a clearly higher median time to first token:
    /// `docs/benchmarks-serve.md`.)
    fn admit(&mut self, prepared: Prepared) {
        let engine = self.engine;
        let Prepared {
            live,
            embeds,
            config,
        } = prepared;
        let result = self
            .batch
            .admit(&engine.lm.llama, &engine.lm.tokenizer, embeds, &config);
        match result {
            Ok(a) => {
                self.metrics
                    .prefix_reused
                    .fetch_add(a.reused as u64, Ordering::Relaxed);
                self.live.insert(a.id, live);
                self.deliver(a.first);
            }
            Err(e) => {
                let _ = live.events.send(Event::Failed(core_error(e)));
            }
        }
    }

    /// Ends the rows whose client went away (its cache rows are freed) or whose time ran out.
    fn drop_abandoned(&mut self) {
        let now = Instant::now();
        let ended: Vec<RowId> = self
            .live
            .iter()
            .filter(|(_, l)| l.events.is_closed() || now > l.deadline)
            .map(|(&id, _)| id)
            .collect();
        for id in ended {
            self.batch.cancel(id);
            let Some(l) = self.live.remove(&id) else {
                continue;
            };
            if l.events.is_closed() {
                self.metrics.cancelled.fetch_add(1, Ordering::Relaxed);
            } else {
                let _ = l
                    .events
                    .send(Event::Failed(ApiError::timeout(l.timeout_secs)));
            }
        }
    }

    /// One decode step for every live row; a failure fails every live request.
    fn step(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let engine = self.engine;
        match self.batch.step(&engine.lm.llama, &engine.lm.tokenizer) {
            Ok(events) => {
                self.metrics.decode_steps.fetch_add(1, Ordering::Relaxed);
                self.metrics
                    .decode_rows
                    .fetch_add(events.len() as u64, Ordering::Relaxed);
                events.into_iter().for_each(|e| self.deliver(e));
            }
            Err(e) => {
                let message = e.to_string();
                for (_, l) in self.live.drain() {
                    let _ = l
                        .events
                        .send(Event::Failed(ApiError::internal(message.clone())));
                }
                self.batch = DecodeBatch::new(engine.prefix_cache);
            }
        }
    }

    /// Sends a row's new text through its stop filter, and its end.
    fn deliver(&mut self, e: RowEvent) {
        let Some(l) = self.live.get_mut(&e.id) else {
            return;
        };
        let (out, hit) = l.stop.push(&e.text);
        if !out.is_empty() {
            let _ = l.events.send(Event::Text(out));
        }
        let finish = match (hit, e.finish) {
            (true, _) | (false, Some(FinishReason::Stop)) => "stop",
            (false, Some(FinishReason::Length)) => "length",
            // Cancelled rows were removed from `live` when they were cancelled.
            (false, Some(FinishReason::Cancelled) | None) => return,
        };
        if hit {
            self.batch.cancel(e.id);
        }
        let Some(mut l) = self.live.remove(&e.id) else {
            return;
        };
        let rest = l.stop.finish();
        if !rest.is_empty() {
            let _ = l.events.send(Event::Text(rest));
        }
        self.metrics
            .record_generation(l.prompt_len, e.tokens, l.started.elapsed().as_secs_f64());
        let _ = l.events.send(Event::Done {
            finish,
            usage: Usage {
                prompt_tokens: l.prompt_len,
                soft_tokens: l.soft_tokens,
                completion_tokens: e.tokens,
            },
        });
    }
}
