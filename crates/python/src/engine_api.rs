//! The one module that talks to `vidlm-engine` (so that adapting to a reshaped engine is an edit
//! here only). Engine items used: `Engine::start`, `Engine::submit`, `Engine::processor`,
//! `Engine::metrics` (`running`, `waiting`), `EngineConfig`, `EngineRequest::from_decoded` (+ its
//! `generation`), `RequestHandle::poll_next` / `next_timeout` (waits that return, so the caller
//! can look at Python's signals between them; dropping the handle cancels), `ThreadWaker`,
//! `Event` (`Stage`/`Token`/`Done`/`Failed`), `Completion` (with its `prompt_token_ids`),
//! `RequestTimings`, `EngineError`.
//!
//! No thread per request: the caller's own thread (GIL released) waits on its requests' handles.
//! A [`Waiter`] polls many [`Request`]s with one waker and parks until one of them has news.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use vidlm_decoder::{FinishReason, GenerationOptions};
use vidlm_engine::{
    Engine, EngineConfig, EngineError, EngineRequest, Event, RequestHandle, RequestTimings,
    ThreadWaker,
};
use vidlm_pipeline::{Pipeline, PipelineOptions};
use vidlm_processor::{Conversation, Processor};

use crate::errors::Failure;

/// What a caller receives about one request.
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

impl Update {
    /// Whether nothing follows this update.
    pub fn is_last(&self) -> bool {
        !matches!(self, Update::Token { .. })
    }
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
    /// The prompt's ids, placeholders expanded (transformers' `input_ids`).
    pub prompt_token_ids: Vec<i64>,
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

fn update(e: Option<Event>) -> Option<Update> {
    Some(match e {
        Some(Event::Stage(_)) => return None,
        Some(Event::Token(t)) => Update::Token { id: t.token_id, text: t.text },
        Some(Event::Done(c)) => Update::Done(Finished {
            text: c.text,
            token_ids: c.token_ids,
            finish_reason: finish_reason(c.finish_reason),
            prompt_token_ids: c.prompt_token_ids,
            timings: timings(&c.timings),
        }),
        Some(Event::Failed(e)) => Update::Failed(Failure::engine(&e)),
        None => Update::Failed(Failure::engine(&EngineError::Stopped)),
    })
}

/// A request in the engine. Dropping it cancels the request: the engine frees its batch row
/// before its next decoder step.
#[derive(Debug)]
pub struct Request {
    handle: RequestHandle,
}

impl Request {
    /// The next update if one is there (stage events skipped); registers `cx`'s waker
    /// otherwise.
    pub fn poll(&mut self, cx: &mut Context<'_>) -> Option<Update> {
        loop {
            match self.handle.poll_next(cx) {
                Poll::Pending => return None,
                Poll::Ready(e) => {
                    if let Some(u) = update(e) {
                        return Some(u);
                    }
                }
            }
        }
    }

    /// The next update within `timeout` (`None`: none came).
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Update> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.handle.next_timeout(left) {
                Err(_) => return None,
                Ok(e) => {
                    if let Some(u) = update(e) {
                        return Some(u);
                    }
                }
            }
        }
    }
}

/// One thread waiting on many requests: poll each with [`Waiter::context`], then
/// [`Waiter::park`] until one of them has news (or the timeout passes).
pub struct Waiter {
    waker: Waker,
}

impl Default for Waiter {
    fn default() -> Self {
        Waiter { waker: Waker::from(Arc::new(ThreadWaker(std::thread::current()))) }
    }
}

impl Waiter {
    /// The context whose waker unparks this thread (create the waiter on the waiting thread).
    pub fn context(&self) -> Context<'_> {
        Context::from_waker(&self.waker)
    }

    /// Sleeps until a polled request has news, at most `timeout`.
    pub fn park(&self, timeout: Duration) {
        std::thread::park_timeout(timeout);
    }
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
        Ok(Host { engine: Engine::start(processor, vision, lm, config)? })
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

    /// Submits a conversation whose media are all decoded. Refused at once (invalid options,
    /// queue full) as an error.
    pub fn submit(
        &self,
        conv: Conversation,
        generation: GenerationOptions,
    ) -> Result<Request, Failure> {
        let mut req = EngineRequest::from_decoded(conv)?;
        req.generation = generation;
        Ok(Request { handle: self.engine.submit(req)? })
    }
}

/// How long a waiting caller sleeps at most between looks at Python's signals.
pub const POLL: Duration = Duration::from_millis(20);
