//! The wire format over `vidlm-engine`: a validated [`ChatRequest`] becomes the engine's
//! [`EngineRequest`], and an [`EngineError`] becomes the OpenAI status and error object. This is
//! the one place an engine failure is mapped to HTTP.

use vidlm_engine::{EngineError, EngineRequest, MediaSpec};

use crate::convert::ChatRequest;
use crate::error::ApiError;

impl From<&ChatRequest> for EngineRequest {
    /// The engine request of a validated OpenAI request: its messages, media sources, frame
    /// sampling, generation options and log-probability count.
    fn from(r: &ChatRequest) -> Self {
        EngineRequest {
            messages: r.messages.clone(),
            media: r
                .media
                .iter()
                .map(|m| MediaSpec::Source {
                    kind: m.kind,
                    source: m.source.clone(),
                    param: m.param.clone(),
                })
                .collect(),
            sampling: r.sampling,
            generation: r.generation.clone(),
            logprobs: r.logprobs,
        }
    }
}

impl From<&EngineError> for ApiError {
    /// What `vidlm serve` answers and what `vidlm batch` writes as the request's error line:
    /// [`ApiError::from_kind`] of the error's [`EngineError::kind`], its message,
    /// [`EngineError::param`] and [`EngineError::code`] — the one mapping every engine failure
    /// goes through (a full queue is a 503, the request's faults a 4xx, a prompt over the
    /// context a 400 `context_length_exceeded`, vidlm's or the model's failures a 500).
    fn from(e: &EngineError) -> Self {
        ApiError::from_kind(e.kind(), e.to_string(), e.param(), e.code())
    }
}
