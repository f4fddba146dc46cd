//! Streaming answers as server-sent events (started by the handler once the first token exists):
//! a role chunk, content chunks (stop sequences cut,
//! text that might start one held back), a last chunk with `finish_reason`, the usage chunk
//! when asked for, then `data: [DONE]`. Dropping the stream (the client went away) drops the
//! request handle, which cancels the request.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use vidlm_engine::{Engine, Event, RequestHandle};
use vidlm_openai::choice_logprob;
use vidlm_openai::response::{completion_id, finish_reason, unix_now};
use vidlm_openai::types::ChoiceLogprobs;
use vidlm_openai::{ChatRequest, ChunkBuilder, StopTrimmer, Usage};

use crate::handlers::engine_error;

struct State {
    handle: RequestHandle,
    /// The event the handler waited for before answering 200 (the first token, or the end).
    first: Option<Event>,
    tokenizer: tokenizers::Tokenizer,
    builder: ChunkBuilder,
    trimmer: StopTrimmer,
    logprobs: Option<usize>,
    out: VecDeque<String>,
    finished: bool,
}

fn data<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|e| {
        format!(r#"{{"error":{{"message":"{e}","type":"server_error","param":null,"code":null}}}}"#)
    })
}

impl State {
    /// Turns the next engine event into zero or more SSE payloads.
    async fn advance(&mut self) {
        let event = match self.first.take() {
            Some(e) => Some(e),
            None => self.handle.next().await,
        };
        match event {
            Some(Event::Token(t)) => {
                let text = self.trimmer.push(&t.text);
                let lp = match (self.logprobs, &t.logprobs) {
                    (Some(n), Some(lp)) if !self.trimmer.is_stopped() || !text.is_empty() => {
                        Some(ChoiceLogprobs {
                            content: vec![choice_logprob(&self.tokenizer, n, t.token_id, lp)],
                        })
                    }
                    _ => None,
                };
                if !text.is_empty() || lp.is_some() {
                    self.out.push_back(data(&self.builder.content(text, lp, None)));
                }
            }
            Some(Event::Done(c)) => {
                let rest = self.trimmer.finish();
                self.out.push_back(data(&self.builder.content(
                    rest,
                    None,
                    Some(finish_reason(c.finish_reason)),
                )));
                if self.builder.include_usage {
                    self.out.push_back(data(
                        &self.builder.usage(Usage::new(c.prompt_tokens, c.token_ids.len())),
                    ));
                }
                self.out.push_back("[DONE]".into());
                self.finished = true;
            }
            Some(Event::Failed(e)) => {
                self.out.push_back(engine_error(&e).to_json());
                self.out.push_back("[DONE]".into());
                self.finished = true;
            }
            Some(Event::Stage(_)) => {}
            None => {
                self.out.push_back(engine_error(&vidlm_engine::EngineError::Stopped).to_json());
                self.out.push_back("[DONE]".into());
                self.finished = true;
            }
        }
    }
}

pub(crate) fn sse(
    engine: &Engine,
    req: ChatRequest,
    handle: RequestHandle,
    first: Event,
) -> Response {
    let builder = ChunkBuilder {
        id: completion_id(),
        model: req.model.clone(),
        created: unix_now(),
        include_usage: req.include_usage,
    };
    let mut out = VecDeque::new();
    out.push_back(data(&builder.role()));
    let state = State {
        handle,
        first: Some(first),
        tokenizer: engine.processor().tokenizer().clone(),
        builder,
        trimmer: StopTrimmer::new(&req.stop),
        logprobs: req.logprobs,
        out,
        finished: false,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(d) = st.out.pop_front() {
                return Some((Ok::<_, Infallible>(SseEvent::default().data(d)), st));
            }
            if st.finished {
                return None;
            }
            st.advance().await;
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}
