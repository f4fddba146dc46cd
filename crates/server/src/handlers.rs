//! The route handlers and middleware.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use vidlm_engine::{Completion, EngineError, EngineRequest, Event};
use vidlm_openai::choice_logprob;
use vidlm_openai::types::{ChoiceLogprobs, ModelCard, ModelList};
use vidlm_openai::{ApiError, ChatRequest};

use crate::AppState;

/// An [`ApiError`] as a response (JSON body, its status, `Retry-After` on 503).
pub(crate) fn error_response(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (status, [(header::CONTENT_TYPE, "application/json")], e.to_json()).into_response();
    if e.status == 503 {
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

/// The status and error object of an engine failure (the engine's mapping, shared with `vidlm batch`).
pub(crate) fn engine_error(e: &EngineError) -> ApiError {
    ApiError::from(e)
}

fn json_response<T: serde::Serialize>(v: &T) -> Response {
    match serde_json::to_string(v) {
        Ok(s) => ([(header::CONTENT_TYPE, "application/json")], s).into_response(),
        Err(e) => error_response(&ApiError::internal(e.to_string())),
    }
}

/// Adds `x-request-id` to every response: the client's when it is short printable ASCII,
/// else a fresh one.
pub(crate) async fn request_id(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(vidlm_openai::response::request_id);
    let mut resp = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// Constant-time comparison (the key's length is not secret).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `Authorization: Bearer KEY` on `/v1/*` when the server has a key.
pub(crate) async fn auth(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let Some(key) = &state.api_key {
        let ok = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .is_some_and(|given| same(given.trim().as_bytes(), key.as_bytes()));
        if !ok {
            let mut r = error_response(&ApiError::unauthorized());
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    }
    next.run(req).await
}

/// A body whose declared `content-length` is over the limit is refused (413) before any of it is
/// read, so a client is not left writing into a connection the server is about to close. Bodies
/// without a length (chunked) are cut by `DefaultBodyLimit` as they stream.
pub(crate) async fn declared_length(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > state.max_body_bytes as u64) {
        let mut r = error_response(&ApiError::body_too_large(state.max_body_bytes));
        r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    next.run(req).await
}

pub(crate) async fn health(State(state): State<Arc<AppState>>) -> Response {
    if state.engine.get().is_some() {
        json_response(&serde_json::json!({"status": "ok"}))
    } else if let Some(e) = state.load_error.get() {
        error_response(&ApiError::internal(format!("the model failed to load: {e}")))
    } else {
        error_response(&ApiError::loading())
    }
}

pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let text = match state.engine.get() {
        Some(e) => e.metrics().render(),
        None => vidlm_engine::Metrics::default().render(),
    };
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

pub(crate) async fn models(State(state): State<Arc<AppState>>) -> Response {
    json_response(&ModelList::single(state.ctx.model_id(), state.created))
}

/// `GET /v1/models/{id}`: the card of a served model (the listed id, or `--model` as given),
/// else OpenAI's 404 `model_not_found`.
pub(crate) async fn model(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Response {
    if state.ctx.model_names.contains(&id) {
        json_response(&ModelCard::new(state.ctx.model_id(), state.created))
    } else {
        error_response(&ApiError::model_not_found(&id))
    }
}

/// Whether a `Content-Type` is JSON (`application/json`, `application/*+json`, any parameters).
/// No `Content-Type` at all is taken as JSON.
fn json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(v) = headers.get(header::CONTENT_TYPE) else { return Ok(()) };
    let t = v.to_str().unwrap_or("");
    let essence = t.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        Ok(())
    } else {
        Err(ApiError::unsupported_media_type(Some(t)))
    }
}

pub(crate) async fn not_found(uri: axum::http::Uri) -> Response {
    error_response(&ApiError::not_found(uri.path()))
}

pub(crate) async fn chat_completions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(rej) if rej.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error_response(&ApiError::body_too_large(state.max_body_bytes))
        }
        Err(rej) => return error_response(&ApiError::invalid_request(rej.body_text(), None)),
    };
    if let Err(e) = json_content_type(&headers) {
        return error_response(&e);
    }
    let Some(engine) = state.engine.get() else { return error_response(&ApiError::loading()) };
    let req = match ChatRequest::from_body(&body, &state.ctx) {
        Ok(r) => r,
        Err(e) => return error_response(&e.to_api_error()),
    };
    let handle = match engine.submit(EngineRequest::from(&req)) {
        Ok(h) => h,
        Err(e) => return error_response(&engine_error(&e)),
    };
    if let Some(user) = &req.user {
        tracing::info!(request = handle.id(), user = %user, "request");
    }
    if req.stream {
        // 200 and the event stream only once the first token exists: media, template, tokens,
        // context length and the prefill have all passed, and any of them failing is a plain
        // HTTP error (the status a non-streamed request gets). Dropping this future (the client
        // left) drops the handle, which cancels the request.
        let mut handle = handle;
        let first = loop {
            match handle.next().await {
                Some(Event::Stage(_)) => {}
                Some(Event::Failed(e)) => return error_response(&engine_error(&e)),
                None => return error_response(&engine_error(&EngineError::Stopped)),
                Some(ev) => break ev,
            }
        };
        return crate::stream::sse(engine, req, handle, first);
    }
    // Non-streaming: wait for the end. If the client goes away, this future is dropped with
    // the handle, which cancels the request.
    let mut handle = handle;
    let mut logprobs = Vec::new();
    let tokenizer = engine.processor().tokenizer();
    let done: Completion = loop {
        match handle.next().await {
            Some(Event::Done(c)) => break c,
            Some(Event::Failed(e)) => return error_response(&engine_error(&e)),
            Some(Event::Token(t)) => {
                if let (Some(n), Some(lp)) = (req.logprobs, &t.logprobs) {
                    logprobs.push(choice_logprob(tokenizer, n, t.token_id, lp));
                }
            }
            Some(Event::Stage(_)) => {}
            None => return error_response(&engine_error(&EngineError::Stopped)),
        }
    };
    let c = req.completion(
        &done.text,
        done.prompt_tokens,
        done.token_ids.len(),
        done.finish_reason,
        Some(ChoiceLogprobs { content: logprobs }),
    );
    json_response(&c)
}
