//! A request body → a validated [`ChatRequest`]: vidlm's chat messages, the media to load, the
//! generation options and the frame sampling.

use serde_json::{json, Value};
use vidlm_decoder::{FinishReason, GenerationOptions};
use vidlm_media_source::{decode_media, FrameSampling, MediaError, MediaPolicy, Source};
pub use vidlm_media_source::{DecodedMedia, MediaKind};
use vidlm_processor::{Conversation, MediaInput};

use crate::error::RequestError;
use crate::response::{completion, completion_id, finish_reason, trim_at_stop, unix_now};
use crate::types::{ChatCompletion, ChoiceLogprobs, Usage};
use crate::types::{ChatCompletionRequest, ContentPart, MessageContent};

/// What the server accepts: its model names and its media policy.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// Names a request's `model` may use (the listed id first).
    pub model_names: Vec<String>,
    /// Media sources and limits (`limits.max_frames` is the per-video frame cap).
    pub media: MediaPolicy,
}

/// The names a served model answers to, the listed id first — the one rule `vidlm serve` and
/// `vidlm batch` share, so both write the same `model` in their answers. The id is
/// `served_model_name` when given, else the name of the model directory (for a directory),
/// else `model` as given; `model` as given is accepted too.
///
/// ```
/// let names = vidlm_openai::served_model_names("llava-hf/llava-interleave-qwen-0.5b-hf", None);
/// assert_eq!(names, ["llava-hf/llava-interleave-qwen-0.5b-hf"]);
/// let names = vidlm_openai::served_model_names("some/dir", Some("demo"));
/// assert_eq!(names, ["demo", "some/dir"]);
/// ```
pub fn served_model_names(model: &str, served_model_name: Option<&str>) -> Vec<String> {
    let dir_name = || {
        let p = std::path::Path::new(model);
        if !p.is_dir() {
            return None;
        }
        let c = p.canonicalize().ok()?;
        c.file_name().and_then(|n| n.to_str()).map(str::to_string)
    };
    let id = match served_model_name {
        Some(n) => n.to_string(),
        None => dir_name().unwrap_or_else(|| model.to_string()),
    };
    let mut names = vec![id];
    if !names.iter().any(|n| n == model) {
        names.push(model.to_string());
    }
    names
}

impl RequestContext {
    /// The id `/v1/models` lists and responses carry.
    pub fn model_id(&self) -> &str {
        self.model_names.first().map(String::as_str).unwrap_or("")
    }
}

/// One media item of a request, in order of appearance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaItem {
    /// Image or video.
    pub kind: MediaKind,
    /// Where it comes from (already checked against the policy).
    pub source: Source,
    /// Its place in the request (`messages[0].content[1].video_url.url`), for errors.
    pub param: String,
}

/// A validated request, ready for vidlm.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// The model id responses carry.
    pub model: String,
    /// Hugging Face chat messages (`{"role", "content"}`; media parts are `{"type": "image"}` /
    /// `{"type": "video"}` in order, matching [`ChatRequest::media`]).
    pub messages: Vec<Value>,
    /// The media, in order of appearance.
    pub media: Vec<MediaItem>,
    /// Generation options (unset fields fall back to the model's `generation_config.json`).
    pub generation: GenerationOptions,
    /// Frame sampling of every video (the server's cap included).
    pub sampling: FrameSampling,
    /// Stop sequences (generation stops at them; they are cut from the answer).
    pub stop: Vec<String>,
    /// Stream the answer.
    pub stream: bool,
    /// Send a final usage chunk when streaming.
    pub include_usage: bool,
    /// Log-probabilities: `None` off, `Some(n)` on with `n` alternatives per token.
    pub logprobs: Option<usize>,
    /// The end-user id the client sent (`user`), for the server's log.
    pub user: Option<String>,
}

fn invalid(param: &str, message: impl Into<String>) -> RequestError {
    RequestError::InvalidParameter { param: param.into(), message: message.into() }
}

fn unsupported(param: &str, message: impl Into<String>) -> RequestError {
    RequestError::Unsupported { param: param.into(), message: message.into() }
}

/// Parses a body into the wire type, with the JSON path of the first error.
pub fn parse_body(body: &[u8]) -> Result<ChatCompletionRequest, RequestError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let req: ChatCompletionRequest = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let param = (path != "." && !path.is_empty()).then_some(path);
        let message = match &param {
            Some(p) => format!("invalid request body at `{p}`: {inner}"),
            None => format!("invalid request body: {inner}"),
        };
        RequestError::InvalidBody { param, message }
    })?;
    Ok(req)
}

impl ChatRequest {
    /// Parses and validates a request body: [`parse_body`] then [`ChatRequest::from_request`].
    pub fn from_body(body: &[u8], ctx: &RequestContext) -> Result<ChatRequest, RequestError> {
        ChatRequest::from_request(parse_body(body)?, ctx)
    }

    /// Validates a parsed request: the model name, every option's range, the media count and
    /// every media reference against the policy (no media is fetched or decoded here).
    pub fn from_request(
        req: ChatCompletionRequest,
        ctx: &RequestContext,
    ) -> Result<ChatRequest, RequestError> {
        // `model` may be omitted or null: one model is served (as vLLM and llama.cpp allow).
        if let Some(m) = &req.model {
            if !ctx.model_names.iter().any(|n| n == m) {
                return Err(RequestError::ModelNotFound(m.clone()));
            }
        }
        refuse_unimplemented(&req.extra)?;
        let generation = generation_options(&req)?;
        let sampling = frame_sampling(&req, ctx.media.limits.max_frames)?;
        let stream = req.stream.unwrap_or(false);
        if req.stream_options.is_some() && !stream {
            return Err(invalid(
                "stream_options",
                "stream_options is only allowed when stream is true",
            ));
        }
        let include_usage =
            req.stream_options.as_ref().and_then(|o| o.include_usage).unwrap_or(false);
        if req.stream_options.as_ref().and_then(|o| o.continuous_usage_stats) == Some(true) {
            return Err(unsupported(
                "stream_options.continuous_usage_stats",
                "usage in every chunk is not supported (use include_usage)",
            ));
        }
        if let Some(image) = &req.media_io_kwargs.as_ref().and_then(|k| k.image.clone()) {
            if !(image.is_null() || image.as_object().is_some_and(|o| o.is_empty())) {
                return Err(unsupported(
                    "media_io_kwargs.image",
                    "vidlm has no image decoding options",
                ));
            }
        }
        let logprobs = match (req.logprobs.unwrap_or(false), req.top_logprobs) {
            (false, Some(_)) => {
                return Err(invalid("top_logprobs", "top_logprobs needs logprobs: true"))
            }
            (false, None) => None,
            (true, None) => Some(0),
            (true, Some(n)) if (0..=20).contains(&n) => Some(n as usize),
            (true, Some(n)) => {
                return Err(invalid("top_logprobs", format!("must be between 0 and 20, got {n}")))
            }
        };
        let stop = req.stop.as_ref().map(|s| s.to_vec()).unwrap_or_default();
        if stop.len() > 16 {
            return Err(invalid("stop", format!("at most 16 stop sequences, got {}", stop.len())));
        }
        let (messages, media) = messages(&req, &ctx.media)?;
        let mut generation = generation;
        if !stop.is_empty() {
            generation.stop_strings = Some(stop.clone());
        }
        Ok(ChatRequest {
            model: ctx.model_id().to_string(),
            messages,
            media,
            generation,
            sampling,
            stop,
            stream,
            include_usage,
            logprobs,
            user: req.user.clone(),
        })
    }

    /// Loads and decodes the media one after the other (fetching remote ones), with the
    /// policy's limits. The server's engine does this on its own workers with a cache; this is
    /// the simple path (batch runner, tests).
    pub fn load_media(&self, policy: &MediaPolicy) -> Result<Vec<DecodedMedia>, RequestError> {
        self.media
            .iter()
            .map(|m| {
                let wrap =
                    |source: MediaError| RequestError::Media { param: m.param.clone(), source };
                let loaded = policy.load(&m.source).map_err(wrap)?;
                decode_media(&loaded, m.kind, &self.sampling, &policy.limits).map_err(wrap)
            })
            .collect()
    }

    /// The `chat.completion` object of a finished answer, exactly as `vidlm serve` returns it:
    /// the text cut at the first stop sequence, `finish_reason` mapped, `usage` from the counts
    /// (`completion_tokens` counts every generated token, an end-of-sequence token included).
    pub fn completion(
        &self,
        text: &str,
        prompt_tokens: usize,
        completion_tokens: usize,
        finish: FinishReason,
        logprobs: Option<ChoiceLogprobs>,
    ) -> ChatCompletion {
        let text = trim_at_stop(text, &self.stop).to_string();
        let usage = Usage::new(prompt_tokens, completion_tokens);
        let logprobs = self.logprobs.map(|_| logprobs.unwrap_or_default());
        completion(
            &completion_id(),
            &self.model,
            unix_now(),
            text,
            finish_reason(finish),
            usage,
            logprobs,
        )
    }

    /// vidlm's conversation: the messages with the decoded media (one per [`ChatRequest::media`]
    /// entry, in order). Frames are already sampled, so the processor's own sampling must be
    /// left unset.
    pub fn conversation(&self, media: Vec<DecodedMedia>) -> Result<Conversation, RequestError> {
        if media.len() != self.media.len() {
            return Err(invalid(
                "messages",
                format!(
                    "{} media items decoded for {} in the request",
                    media.len(),
                    self.media.len()
                ),
            ));
        }
        let media = media.into_iter().map(MediaInput::from).collect();
        Ok(Conversation { messages: self.messages.clone(), media })
    }
}

fn finite(param: &str, v: f64) -> Result<f64, RequestError> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(invalid(param, "must be a finite number"))
    }
}

fn generation_options(req: &ChatCompletionRequest) -> Result<GenerationOptions, RequestError> {
    let mut g = GenerationOptions::default();
    let max = match (req.max_completion_tokens, req.max_tokens) {
        (Some(m), _) => Some(("max_completion_tokens", m)),
        (None, Some(m)) => Some(("max_tokens", m)),
        (None, None) => None,
    };
    if let Some((param, m)) = max {
        if m < 1 {
            return Err(invalid(param, format!("must be at least 1, got {m}")));
        }
        g.max_new_tokens = Some(usize::try_from(m).unwrap_or(usize::MAX));
    }
    // No limit given: until a stop or the context limit (OpenAI, vLLM), never transformers'
    // default `max_length` of 20. A length the model's generation_config.json sets still applies.
    g.until_context_limit = true;
    if let Some(t) = req.temperature {
        let t = finite("temperature", t)?;
        if !(0.0..=100.0).contains(&t) {
            return Err(invalid("temperature", format!("must be between 0 and 100, got {t}")));
        }
        if t == 0.0 {
            g.do_sample = Some(false);
        } else {
            g.do_sample = Some(true);
            g.temperature = Some(t as f32);
        }
    }
    if let Some(p) = req.top_p {
        let p = finite("top_p", p)?;
        if !(p > 0.0 && p <= 1.0) {
            return Err(invalid("top_p", format!("must be in (0, 1], got {p}")));
        }
        g.top_p = Some(p as f32);
    }
    if let Some(k) = req.top_k {
        match k {
            -1 | 0 => g.top_k = Some(0),
            k if k > 0 => g.top_k = Some(usize::try_from(k).unwrap_or(usize::MAX)),
            k => return Err(invalid("top_k", format!("must be -1, 0 (off) or positive, got {k}"))),
        }
    }
    if let Some(m) = req.min_p {
        let m = finite("min_p", m)?;
        if !(0.0..=1.0).contains(&m) {
            return Err(invalid("min_p", format!("must be in [0, 1], got {m}")));
        }
        g.min_p = (m > 0.0).then_some(m as f32);
    }
    if let Some(r) = req.repetition_penalty {
        let r = finite("repetition_penalty", r)?;
        if r <= 0.0 {
            return Err(invalid("repetition_penalty", format!("must be positive, got {r}")));
        }
        g.repetition_penalty = Some(r as f32);
    }
    for (param, v) in
        [("frequency_penalty", req.frequency_penalty), ("presence_penalty", req.presence_penalty)]
    {
        if let Some(v) = v {
            if v != 0.0 {
                return Err(unsupported(param, "not supported (use repetition_penalty)"));
            }
        }
    }
    if let Some(s) = req.seed {
        g.seed = Some(s as u64);
    }
    if let Some(b) = &req.logit_bias {
        g.logit_bias = logit_bias(b)?;
    }
    if req.ignore_eos == Some(true) {
        g.eos_token_ids = Some(Vec::new());
    }
    g.skip_special_tokens = req.skip_special_tokens;
    if let Some(n) = req.n {
        if n != 1 {
            return Err(unsupported("n", format!("only n = 1 is supported, got {n}")));
        }
    }
    if let Some(t) = &req.tools {
        if !(t.is_null() || t.as_array().is_some_and(Vec::is_empty)) {
            return Err(unsupported("tools", "tool calling is not supported"));
        }
    }
    if let Some(f) = &req.response_format {
        if !(f.is_null() || f.get("type").and_then(Value::as_str) == Some("text")) {
            return Err(unsupported("response_format", "only {\"type\": \"text\"} is supported"));
        }
    }
    Ok(g)
}

/// `logit_bias`: a JSON object of token ids (decimal strings) to numbers in [-100, 100]. The
/// vocabulary bound is checked by the engine, which knows the model (also a 400).
fn logit_bias(v: &Value) -> Result<Option<Vec<(i64, f32)>>, RequestError> {
    let map = match v {
        Value::Null => return Ok(None),
        Value::Object(m) => m,
        _ => {
            return Err(invalid(
                "logit_bias",
                "must be an object mapping token ids to biases, e.g. {\"50256\": -100}",
            ))
        }
    };
    let mut out = Vec::with_capacity(map.len());
    for (k, b) in map {
        let id = match k.trim().parse::<i64>() {
            Ok(id) if id >= 0 => id,
            _ => {
                return Err(invalid(
                    "logit_bias",
                    format!("key {k:?} is not a token id (a non-negative integer)"),
                ))
            }
        };
        let Some(b) = b.as_f64() else {
            return Err(invalid(
                "logit_bias",
                format!("the bias of token {k:?} must be a number, got {b}"),
            ));
        };
        if !(-100.0..=100.0).contains(&b) {
            return Err(invalid(
                "logit_bias",
                format!("the bias of token {k:?} must be between -100 and 100, got {b}"),
            ));
        }
        out.push((id, b as f32));
    }
    Ok(Some(out))
}

/// OpenAI and vLLM request fields vidlm does not implement: refused (400 `unsupported_parameter`)
/// unless they hold a value that changes nothing. `ok` says which values are no-ops. Fields that
/// only identify or label a request (`metadata`, `prompt_cache_key`, `safety_identifier`,
/// `request_id`) change no answer and pass, like keys nobody defines.
fn refuse_unimplemented(extra: &serde_json::Map<String, Value>) -> Result<(), RequestError> {
    let null = |v: &Value| v.is_null();
    let empty = |v: &Value| {
        v.is_null()
            || v.as_array().is_some_and(Vec::is_empty)
            || v.as_object().is_some_and(|o| o.is_empty())
    };
    let falsy = |v: &Value| v.is_null() || v == &Value::Bool(false);
    let truthy = |v: &Value| v.is_null() || v == &Value::Bool(true);
    let zero = |v: &Value| v.is_null() || v.as_f64() == Some(0.0);
    let one = |v: &Value| v.is_null() || v.as_f64() == Some(1.0);
    #[allow(clippy::type_complexity)]
    let table: &[(&str, &dyn Fn(&Value) -> bool, &str)] = &[
        (
            "tool_choice",
            &|v| null(v) || v == "none" || v == "auto",
            "tool calling is not supported",
        ),
        ("parallel_tool_calls", &|_| true, ""),
        ("functions", &empty, "function calling is not supported"),
        (
            "function_call",
            &|v| null(v) || v == "none" || v == "auto",
            "function calling is not supported",
        ),
        (
            "modalities",
            &|v| null(v) || v == &serde_json::json!(["text"]),
            "only text output is supported",
        ),
        ("audio", &null, "audio output is not supported"),
        ("prediction", &null, "predicted outputs are not supported"),
        ("reasoning_effort", &null, "not a reasoning model"),
        ("verbosity", &null, "not supported"),
        ("web_search_options", &null, "web search is not supported"),
        (
            "service_tier",
            &|v| null(v) || v == "auto" || v == "default",
            "only the default service tier exists",
        ),
        ("store", &falsy, "completions are not stored"),
        ("echo", &falsy, "echoing the prompt is not supported"),
        ("min_tokens", &zero, "min_tokens is not supported"),
        ("stop_token_ids", &empty, "stop_token_ids is not supported (use stop)"),
        ("best_of", &one, "only best_of = 1 is supported"),
        ("use_beam_search", &falsy, "beam search is not supported"),
        ("length_penalty", &one, "length_penalty is not supported"),
        ("include_stop_str_in_output", &falsy, "stop sequences are always cut from the answer"),
        ("spaces_between_special_tokens", &truthy, "not supported"),
        ("truncate_prompt_tokens", &null, "prompt truncation is not supported"),
        ("add_generation_prompt", &truthy, "the generation prompt is always added"),
        ("continue_final_message", &falsy, "continuing the final message is not supported"),
        ("add_special_tokens", &falsy, "not supported"),
        ("chat_template", &null, "the model's own chat template is used"),
        ("chat_template_kwargs", &empty, "chat template arguments are not supported"),
        (
            "mm_processor_kwargs",
            &empty,
            "processor arguments are not supported (use media_io_kwargs)",
        ),
        ("documents", &empty, "documents are not supported"),
        ("guided_json", &null, "guided decoding is not supported"),
        ("guided_regex", &null, "guided decoding is not supported"),
        ("guided_choice", &null, "guided decoding is not supported"),
        ("guided_grammar", &null, "guided decoding is not supported"),
        ("guided_decoding_backend", &null, "guided decoding is not supported"),
        ("structured_outputs", &null, "structured outputs are not supported"),
        ("prompt_logprobs", &null, "prompt logprobs are not supported"),
        ("allowed_token_ids", &null, "allowed_token_ids is not supported (use logit_bias)"),
        ("bad_words", &empty, "bad_words is not supported (use logit_bias)"),
        ("logits_processors", &empty, "custom logits processors are not supported"),
        ("priority", &zero, "request priorities are not supported"),
        ("return_tokens_as_token_ids", &falsy, "not supported"),
        ("cache_salt", &null, "cache salting is not supported"),
        ("kv_transfer_params", &null, "not supported"),
        ("vllm_xargs", &empty, "not supported"),
    ];
    for (name, ok, why) in table {
        if let Some(v) = extra.get(*name) {
            if !ok(v) {
                return Err(unsupported(name, format!("{why} (got {v})")));
            }
        }
    }
    Ok(())
}

fn frame_sampling(req: &ChatCompletionRequest, cap: usize) -> Result<FrameSampling, RequestError> {
    let mut s = FrameSampling { max_frames: Some(cap), ..Default::default() };
    let Some(v) = req.media_io_kwargs.as_ref().and_then(|k| k.video.as_ref()) else { return Ok(s) };
    if v.num_frames.is_some() && v.fps.is_some() {
        return Err(invalid("media_io_kwargs.video", "give num_frames or fps, not both"));
    }
    if let Some(n) = v.num_frames {
        if n < 1 {
            return Err(invalid(
                "media_io_kwargs.video.num_frames",
                format!("must be at least 1, got {n}"),
            ));
        }
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        if n > cap {
            return Err(RequestError::Media {
                param: "media_io_kwargs.video.num_frames".into(),
                source: MediaError::TooManyFrames { requested: n, limit: cap },
            });
        }
        s.num_frames = Some(n);
    }
    if let Some(f) = v.fps {
        if !(f.is_finite() && f > 0.0) {
            return Err(invalid(
                "media_io_kwargs.video.fps",
                format!("must be a positive number, got {f}"),
            ));
        }
        s.fps = Some(f);
    }
    if let Some(m) = v.max_frames {
        if m < 1 {
            return Err(invalid(
                "media_io_kwargs.video.max_frames",
                format!("must be at least 1, got {m}"),
            ));
        }
        s.max_frames = Some(usize::try_from(m).unwrap_or(usize::MAX).min(cap));
    }
    Ok(s)
}

fn messages(
    req: &ChatCompletionRequest,
    policy: &MediaPolicy,
) -> Result<(Vec<Value>, Vec<MediaItem>), RequestError> {
    if req.messages.is_empty() {
        return Err(invalid("messages", "at least one message is required"));
    }
    // Count the media first: too many items is refused before any of them is looked at.
    let count: usize = req
        .messages
        .iter()
        .filter_map(|m| match &m.content {
            Some(MessageContent::Parts(p)) => Some(
                p.iter()
                    .filter(|p| {
                        !matches!(p, ContentPart::Text { .. } | ContentPart::InputText { .. })
                    })
                    .count(),
            ),
            _ => None,
        })
        .sum();
    policy
        .check_count(count)
        .map_err(|source| RequestError::Media { param: "messages".into(), source })?;
    let mut out = Vec::with_capacity(req.messages.len());
    let mut media = Vec::with_capacity(count);
    for (mi, m) in req.messages.iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "developer" => "system",
            "user" => "user",
            "assistant" => "assistant",
            other => {
                return Err(unsupported(
                    &format!("messages[{mi}].role"),
                    format!("role `{other}` is not supported (system, developer, user, assistant)"),
                ))
            }
        };
        if m.name.as_deref().is_some_and(|n| !n.is_empty()) {
            return Err(unsupported(
                &format!("messages[{mi}].name"),
                "participant names are not supported (the model's chat template has no place for them)",
            ));
        }
        for key in ["tool_calls", "function_call", "audio"] {
            if let Some(v) = m.extra.get(key) {
                let empty = v.is_null() || v.as_array().is_some_and(Vec::is_empty);
                if !empty {
                    return Err(unsupported(
                        &format!("messages[{mi}].{key}"),
                        format!("`{key}` in messages is not supported"),
                    ));
                }
            }
        }
        let content = match &m.content {
            None if role == "assistant" => Value::Array(Vec::new()),
            None => return Err(invalid(&format!("messages[{mi}].content"), "content is required")),
            // The LLaVA templates iterate over content parts: a string is one text part (what
            // vLLM calls the "openai" content format).
            Some(MessageContent::Text(t)) => json!([{"type": "text", "text": t}]),
            Some(MessageContent::Parts(parts)) => {
                let mut list = Vec::with_capacity(parts.len());
                for (pi, p) in parts.iter().enumerate() {
                    let (kind, part, field, bare_ok) = match p {
                        ContentPart::Text { text } | ContentPart::InputText { text } => {
                            list.push(json!({"type": "text", "text": text}));
                            continue;
                        }
                        ContentPart::ImageUrl { image_url } => {
                            (MediaKind::Image, image_url, "image_url", false)
                        }
                        // The Responses API's `input_image` takes the URL as a bare string.
                        ContentPart::InputImage { image_url } => {
                            (MediaKind::Image, image_url, "image_url", true)
                        }
                        ContentPart::VideoUrl { video_url } => {
                            (MediaKind::Video, video_url, "video_url", false)
                        }
                        ContentPart::InputVideo { input_video } => {
                            (MediaKind::Video, input_video, "input_video", false)
                        }
                    };
                    if part.bare && !bare_ok {
                        return Err(invalid(
                            &format!("messages[{mi}].content[{pi}].{field}"),
                            format!("`{field}` must be an object {{\"url\": \"...\"}}, not a bare string"),
                        ));
                    }
                    match part.detail.as_deref() {
                        None | Some("auto") | Some("high") => {}
                        Some(d) => {
                            return Err(unsupported(
                                &format!("messages[{mi}].content[{pi}].{field}.detail"),
                                format!("detail {d:?} is not supported (auto or high: the model always gets the full resolution its processor takes)"),
                            ))
                        }
                    }
                    let url = &part.url;
                    if role == "assistant" {
                        return Err(unsupported(
                            &format!("messages[{mi}].content[{pi}]"),
                            "assistant messages cannot hold media",
                        ));
                    }
                    let param = format!("messages[{mi}].content[{pi}].{field}.url");
                    let source = policy
                        .check(url)
                        .map_err(|source| RequestError::Media { param: param.clone(), source })?;
                    list.push(match kind {
                        MediaKind::Image => json!({"type": "image"}),
                        MediaKind::Video => json!({"type": "video"}),
                    });
                    media.push(MediaItem { kind, source, param });
                }
                Value::Array(list)
            }
        };
        out.push(json!({"role": role, "content": content}));
    }
    Ok((out, media))
}
