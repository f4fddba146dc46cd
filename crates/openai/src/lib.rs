//! # vidlm-openai — OpenAI chat completions, as vidlm speaks them
//!
//! The one place that knows the OpenAI wire format, shared by `vidlm serve` (HTTP) and
//! `vidlm batch` (OpenAI Batch JSONL), so a body means the same thing to both:
//!
//! * **Types** ([`types`]): the request ([`ChatCompletionRequest`]: multi-turn messages, content
//!   parts `text` / `image_url` / `video_url` / `input_video`, `media_io_kwargs`, `max_tokens` /
//!   `max_completion_tokens`, `temperature`, `top_p`, `top_k`, `min_p`, `repetition_penalty`,
//!   `seed`, `stop`, `stream`, `stream_options`, `logprobs` / `top_logprobs`), the
//!   `chat.completion` object, `chat.completion.chunk`, `usage`, `/v1/models`.
//! * **Validation** ([`ChatRequest::from_body`]): body → [`ChatRequest`] — vidlm's chat
//!   messages, the media items (each checked against the [`MediaPolicy`] of
//!   `vidlm-media-source`: data URLs, local files in the allowed folder, allowed domains, no
//!   private addresses, counts), `GenerationOptions` and the frame sampling (the server's frame
//!   cap can be lowered by `media_io_kwargs`, never raised). Nothing is fetched or decoded yet,
//!   so a server can refuse or queue a request before spending anything on it.
//! * **Errors** ([`RequestError`] → [`ApiError`]): `{"error": {"message", "type", "param",
//!   "code"}}` with its 4xx status (`model_not_found` 404, `media_not_allowed` 400, too large
//!   413, ...).
//! * **Responses** ([`response`]): completion and chunk builders, `finish_reason`, stop
//!   sequences cut from the answer (also while streaming: [`StopTrimmer`]), log-probabilities.
//!
//! ```
//! use vidlm_media_source::MediaPolicy;
//! use vidlm_openai::{ChatRequest, MediaKind, RequestContext, RequestError};
//!
//! let assets = concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets");
//! let ctx = RequestContext {
//!     model_names: vec!["demo-model".into()],
//!     media: MediaPolicy::default().with_local_path(assets).unwrap(),
//! };
//! let body = serde_json::json!({
//!     "model": "demo-model",
//!     "messages": [{"role": "user", "content": [
//!         {"type": "video_url", "video_url": {"url": "file://".to_owned() + assets + "/demo.mp4"}},
//!         {"type": "text", "text": "What happens?"}]}],
//!     "max_tokens": 8, "temperature": 0,
//!     "media_io_kwargs": {"video": {"num_frames": 4}}
//! });
//! let req = ChatRequest::from_body(body.to_string().as_bytes(), &ctx)?;
//! assert_eq!(req.media[0].kind, MediaKind::Video);
//! assert_eq!(req.messages[0]["content"][0]["type"], "video");
//! assert_eq!(req.generation.max_new_tokens, Some(8));
//! assert_eq!(req.generation.do_sample, Some(false));
//! assert_eq!(req.sampling.num_frames, Some(4));
//!
//! // The decoded media and the messages make vidlm's conversation.
//! let media = req.load_media(&ctx.media)?;
//! let conv = req.conversation(media)?;
//! assert_eq!(conv.media.len(), 1);
//!
//! // Errors carry their status and OpenAI code.
//! let bad = serde_json::json!({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]});
//! let err = ChatRequest::from_body(bad.to_string().as_bytes(), &ctx).unwrap_err().to_api_error();
//! assert_eq!((err.status, err.code.as_deref()), (404, Some("model_not_found")));
//! # Ok::<(), RequestError>(())
//! ```
#![warn(missing_docs)]

mod convert;
mod engine;
mod error;
pub mod response;
pub mod types;

pub use convert::{
    parse_body, served_model_names, ChatRequest, DecodedMedia, MediaItem, MediaKind, RequestContext,
};
pub use error::{default_code, error_type, ApiError, ErrorKind, ErrorResponse, RequestError};
pub use response::{choice_logprob, finish_reason, ChunkBuilder, StopTrimmer};
/// The tokenizer type of [`choice_logprob`] and `response::token_logprob`.
pub use tokenizers::Tokenizer;
pub use types::{ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Usage};
pub use vidlm_media_source::{MediaError, MediaLimits, MediaPolicy};
