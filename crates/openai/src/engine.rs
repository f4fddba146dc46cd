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
    /// What `vidlm serve` answers and what `vidlm batch` writes as the request's error line: a
    /// full queue is a 503, media and other faults of the request a 4xx (a prompt over the
    /// context is `context_length_exceeded`), the model's or vidlm's a 500.
    fn from(e: &EngineError) -> Self {
        match e {
            EngineError::QueueFull { waiting } => ApiError::overloaded(*waiting),
            EngineError::Media { param, source } => {
                ApiError::from_media(source, Some(param.clone()))
            }
            e if e.is_context_length() => ApiError::new(
                400,
                "invalid_request_error",
                e.to_string(),
                Some("messages".into()),
                Some("context_length_exceeded"),
            ),
            e if e.is_client_error() => ApiError::new(
                400,
                "invalid_request_error",
                e.to_string(),
                None,
                Some("invalid_request"),
            ),
            EngineError::Stopped => ApiError::new(
                503,
                "server_error",
                "the server is shutting down",
                None,
                Some("server_unavailable"),
            ),
            e => ApiError::internal(e.to_string()),
        }
    }
}
