//! The one module that talks to `vidlm-engine` (so that adapting to a reshaped engine is an edit
//! here only). Engine items used: `Engine::start`, `Engine::submit`, `Engine::processor`,
//! `Engine::metrics` (`running`, `waiting`), `EngineConfig`, `EngineRequest::from_decoded` (+ its
//! `generation`), `RequestHandle::blocking_next` (dropping the handle cancels), `Event`
//! (`Stage`/`Token`/`Done`/`Failed`), `Completion`, `RequestTimings`, `EngineError`.
//!
//! Each submitted request gets a forwarding thread that moves its events onto a std channel
//! shared by the caller ([`Host::submit`]), so the caller can wait with a timeout (and look at
//! Python's signals between waits). When the caller drops its receiver, the forwarder's next
//! send fails and it drops the engine's handle, which cancels the request: within one decoder
//! step of the next event.

use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::time::Duration;

use vidlm_decoder::{FinishReason, GenerationOptions};
use vidlm_engine::{Engine, EngineConfig, EngineError, EngineRequest, Event, RequestTimings};
use vidlm_pipeline::{Pipeline, PipelineOptions};
use vidlm_processor::{Conversation, Processor};

use crate::errors::Failure;

/// What a caller receives about one request (tagged with the caller's index).
#[derive(Debug)]
pub enum Update {
    /// A generated token and the text that became final with it.
    Token {
        /// Its id.
        id: i64,
        /// Its text piece.
        text: String,
    },
    /// The end.
    Done(Finished),
    /// The request failed.
    Failed(Failure),
}

/// A finished request.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The decoded text of all generated tokens.
    pub text: String,
    /// The generated ids.
    pub token_ids: Vec<i64>,
    /// OpenAI's word: `"stop"` (EOS or a stop string) or `"length"` (a token or context limit).
    pub finish_reason: &'static str,
    /// Prompt tokens (placeholders expanded).
    pub prompt_tokens: usize,
    /// Per-stage times in seconds, tokens per second.
    pub timings: Vec<(&'static str, f64)>,
}

fn finish_reason(r: FinishReason) -> &'static str {
    match r {
        FinishReason::Eos | FinishReason::StopString => "stop",
        FinishReason::MaxNewTokens | FinishReason::ContextLength => "length",
        _ => "abort",
    }
}

fn timings(t: &RequestTimings) -> Vec<(&'static str, f64)> {
    vec![
        ("queue", t.queue.as_secs_f64()),
        ("media", t.media.as_secs_f64()),
        ("preprocess", t.preprocess.as_secs_f64()),
        ("vision", t.vision.as_secs_f64()),
        ("embed", t.embed.as_secs_f64()),
        ("prefill", t.prefill.as_secs_f64()),
        ("first_token", t.first_token.as_secs_f64()),
        ("decode_step", t.per_token().as_secs_f64()),
        ("decode_tokens_per_s", t.tokens_per_second()),
        ("total", t.total.as_secs_f64()),
    ]
}

/// A loaded model and its engine.
#[derive(Debug)]
pub struct Host {
    engine: Engine,
}

impl Host {
    /// Loads `model` (a directory or hub id) and starts an engine that decodes up to
    /// `max_batch` rows together.
    pub fn load(model: &str, opts: &PipelineOptions, max_batch: usize) -> Result<Host, Failure> {
        let p = Pipeline::from_pretrained(model, opts)?;
        let (processor, vision, lm) = p.into_parts();
        let config = EngineConfig {
            max_batch: max_batch.max(1),
            // `LLM.chat` keeps at most a window of requests in the engine per call; several
            // Python threads may call at once.
            max_queue: 4096,
            // Media arrive decoded (not cached by the engine).
            vision_cache_bytes: 0,
            ..EngineConfig::default()
        };
        Ok(Host { engine: Engine::start(processor, vision, lm, config) })
    }

    /// The processor (decodes media for requests, Processor-equal inputs).
    pub fn processor(&self) -> &Processor {
        self.engine.processor()
    }

    /// Requests running and waiting in the engine.
    pub fn load_counts(&self) -> (u64, u64) {
        let m = self.engine.metrics();
        (m.running.load(Ordering::Relaxed), m.waiting.load(Ordering::Relaxed))
    }

    /// Submits a conversation whose media are all decoded; its updates arrive on `tx` tagged
    /// with `tag`. Refused at once (invalid options, queue full) as an error.
    pub fn submit(
        &self,
        conv: Conversation,
        generation: GenerationOptions,
        tag: usize,
        tx: Sender<(usize, Update)>,
    ) -> Result<(), Failure> {
        let mut req = EngineRequest::from_decoded(conv)?;
        req.generation = generation;
        let mut handle = self.engine.submit(req)?;
        std::thread::Builder::new()
            .name("vidlm-py-request".into())
            .spawn(move || loop {
                let update = match handle.blocking_next() {
                    Some(Event::Token(t)) => Update::Token { id: t.token_id, text: t.text },
                    Some(Event::Stage(_)) => continue,
                    Some(Event::Done(c)) => Update::Done(Finished {
                        text: c.text,
                        token_ids: c.token_ids,
                        finish_reason: finish_reason(c.finish_reason),
                        prompt_tokens: c.prompt_tokens,
                        timings: timings(&c.timings),
                    }),
                    Some(Event::Failed(e)) => Update::Failed(Failure::engine(&e)),
                    None => Update::Failed(Failure::engine(&EngineError::Stopped)),
                };
                let last = !matches!(update, Update::Token { .. });
                // A closed receiver: the caller gave up; dropping `handle` cancels the request.
                if tx.send((tag, update)).is_err() || last {
                    return;
                }
            })
            .map_err(|e| {
                Failure::new(
                    vidlm_model::ErrorKind::Internal,
                    format!("cannot start a thread: {e}"),
                )
            })?;
        Ok(())
    }
}

/// How long a waiting caller sleeps between looks at Python's signals.
pub const POLL: Duration = Duration::from_millis(20);
