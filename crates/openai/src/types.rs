//! The wire types of OpenAI's chat completions API, as vidlm speaks it (field names as in the
//! API; vLLM's extensions `top_k`, `min_p`, `repetition_penalty`, `media_io_kwargs`,
//! `ignore_eos`, `skip_special_tokens`).
//!
//! Every field declared here is honoured or refused with a 400 (`ChatRequest::from_request`).
//! Other top-level keys land in [`ChatCompletionRequest::extra`]: the OpenAI and vLLM fields
//! vidlm knows but does not implement are refused unless they hold their no-op value; keys
//! nobody defines are ignored, as vLLM does.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

/// `POST /v1/chat/completions` request body. Unknown fields are kept in `extra` (OpenAI/vLLM
/// fields vidlm does not implement are refused there; keys nobody defines are ignored).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionRequest {
    /// The model: the id `/v1/models` lists, or the server's `--model` argument. May be omitted
    /// or null (one model is served), as vLLM and llama.cpp allow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The conversation so far.
    pub messages: Vec<ChatMessage>,
    /// Most tokens to generate (deprecated name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<i64>,
    /// Most tokens to generate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<i64>,
    /// Sampling temperature; 0 is greedy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling mass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Top-k (vLLM extension); 0 or -1 turns it off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<i64>,
    /// Min-p (vLLM extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_p: Option<f64>,
    /// Repetition penalty (vLLM extension; transformers' semantics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repetition_penalty: Option<f64>,
    /// Not supported unless 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// Not supported unless 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    /// Seed for reproducible sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Stop sequences (not included in the output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    /// Stream the answer as server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Streaming options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Return the log-probability of each generated token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    /// Also the `n` most likely tokens at each position (0–20; needs `logprobs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<i64>,
    /// Choices per request: only 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<i64>,
    /// Media decoding options (vLLM): `{"video": {"num_frames": N}}` or `{"video": {"fps": F}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_io_kwargs: Option<MediaIoKwargs>,
    /// OpenAI `logit_bias`: `{"token id": bias}`, each bias in [-100, 100], added to the logits
    /// before sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logit_bias: Option<serde_json::Value>,
    /// vLLM: keep generating past end-of-sequence tokens (stop strings and the token limit
    /// still end the answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_eos: Option<bool>,
    /// vLLM: drop special tokens from the answer's text (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_special_tokens: Option<bool>,
    /// End-user id: no effect on the answer (OpenAI uses it for abuse monitoring); `vidlm
    /// serve` writes it to its log with the request id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Tool definitions: not supported (refused when non-empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<serde_json::Value>,
    /// Output format: only `{"type": "text"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<serde_json::Value>,
    /// Every other top-level key (see the type's docs).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// `stop`: one string or a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One stop sequence.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl Stop {
    /// The non-empty sequences.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s.clone()],
            Stop::Many(v) => v.clone(),
        }
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect()
    }
}

/// `stream_options`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with `usage` (and no choices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    /// vLLM: usage in every chunk (not supported: refused when true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuous_usage_stats: Option<bool>,
}

/// `media_io_kwargs` (vLLM): per-modality decoding options.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MediaIoKwargs {
    /// Video sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<VideoIoKwargs>,
    /// Image options: vidlm has none (a non-empty object is refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<serde_json::Value>,
}

/// `media_io_kwargs.video`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoIoKwargs {
    /// Frames per video, evenly spaced (at most the server's `--max-frames`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_frames: Option<i64>,
    /// Frames per second of video (capped at the server's `--max-frames`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fps: Option<f64>,
    /// A lower per-request frame cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_frames: Option<i64>,
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `developer` (= system), `user` or `assistant`.
    pub role: String,
    /// A string, a list of parts, or null (assistant messages).
    #[serde(default)]
    pub content: Option<MessageContent>,
    /// Participant name: the LLaVA chat templates have no place for it, so a non-empty name is
    /// refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Other keys of the message (`tool_calls`, `function_call`, `audio` are refused unless
    /// empty; others are ignored).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Message content: a string or a list of parts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Text, images and videos, interleaved.
    Parts(Vec<ContentPart>),
}

impl<'de> Deserialize<'de> for MessageContent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MessageContent;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or a list of content parts")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(MessageContent::Text(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(MessageContent::Text(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut parts = Vec::new();
                while let Some(p) = seq.next_element()? {
                    parts.push(p);
                }
                Ok(MessageContent::Parts(parts))
            }
        }
        d.deserialize_any(V)
    }
}

/// One content part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// `{"type": "text", "text": ...}`
    Text {
        /// The text.
        text: String,
    },
    /// `{"type": "input_text", "text": ...}` (Responses-API spelling of `text`).
    InputText {
        /// The text.
        text: String,
    },
    /// `{"type": "image_url", "image_url": {"url": ...}}`
    ImageUrl {
        /// The image.
        image_url: MediaUrl,
    },
    /// `{"type": "input_image", "image_url": ...}` (Responses-API spelling of `image_url`, where
    /// the URL is a bare string; an object is accepted too).
    InputImage {
        /// The image.
        image_url: MediaUrl,
    },
    /// `{"type": "video_url", "video_url": {"url": ...}}` (vLLM)
    VideoUrl {
        /// The video.
        video_url: MediaUrl,
    },
    /// `{"type": "input_video", "input_video": {"url": ...}}`, also with a `video_url` field: another
    /// name for `video_url`.
    InputVideo {
        /// The video.
        #[serde(alias = "video_url")]
        input_video: MediaUrl,
    },
}

/// `{"url": ..., "detail": ...}`, or (only for `input_image`, the Responses API's form) just the
/// URL string: `image_url` / `video_url` / `input_video` parts given a bare string are refused.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MediaUrl {
    /// A `data:` URL, a `file://` URL or path, or an `http(s)://` URL.
    pub url: String,
    /// `detail`: `auto` or `high` (vidlm always gives the model the full resolution its
    /// processor takes); `low` is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The URL came as a bare string rather than `{"url": ...}`.
    #[serde(skip)]
    pub bare: bool,
}

impl<'de> Deserialize<'de> for MediaUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Obj {
            url: String,
            #[serde(default)]
            detail: Option<String>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MediaUrl;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a URL string or an object with a `url` string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(MediaUrl { url: v.to_string(), detail: None, bare: true })
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let o = Obj::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(MediaUrl { url: o.url, detail: o.detail, bare: false })
            }
        }
        d.deserialize_any(V)
    }
}

/// Token counts of a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens (placeholders expanded: image and video tokens count).
    pub prompt_tokens: usize,
    /// Generated tokens (an end-of-sequence token included).
    pub completion_tokens: usize,
    /// The sum.
    pub total_tokens: usize,
}

impl Usage {
    /// From the two counts.
    pub fn new(prompt_tokens: usize, completion_tokens: usize) -> Self {
        Usage { prompt_tokens, completion_tokens, total_tokens: prompt_tokens + completion_tokens }
    }
}

/// One alternative token at a position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopLogprob {
    /// The token's text.
    pub token: String,
    /// Its log-probability.
    pub logprob: f32,
    /// Its UTF-8 bytes.
    pub bytes: Option<Vec<u8>>,
}

/// The log-probability of one generated token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    /// The token's text.
    pub token: String,
    /// Its log-probability under the model (before sampling filters).
    pub logprob: f32,
    /// Its UTF-8 bytes.
    pub bytes: Option<Vec<u8>>,
    /// The most likely tokens at this position.
    pub top_logprobs: Vec<TopLogprob>,
}

/// `choices[].logprobs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChoiceLogprobs {
    /// One entry per generated token.
    pub content: Vec<TokenLogprob>,
}

/// The assistant's message in a completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssistantMessage {
    /// Always `assistant`.
    pub role: String,
    /// The answer.
    pub content: String,
}

/// One choice of a completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// 0.
    pub index: u32,
    /// The answer.
    pub message: AssistantMessage,
    /// Token log-probabilities, if asked for.
    pub logprobs: Option<ChoiceLogprobs>,
    /// `stop` (end of sequence or a stop sequence) or `length` (token budget or context).
    pub finish_reason: String,
}

/// The `chat.completion` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletion {
    /// `chatcmpl-...`
    pub id: String,
    /// `chat.completion`
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model id.
    pub model: String,
    /// One choice.
    pub choices: Vec<Choice>,
    /// Token counts.
    pub usage: Usage,
}

/// The new part of the answer in a chunk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    /// `assistant` in the first chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// New text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// One choice of a chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    /// 0.
    pub index: u32,
    /// New text.
    pub delta: Delta,
    /// Log-probabilities of the tokens this chunk covers.
    #[serde(default)]
    pub logprobs: Option<ChoiceLogprobs>,
    /// Set only in the last choice chunk.
    pub finish_reason: Option<String>,
}

/// The `chat.completion.chunk` object (one server-sent event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionChunk {
    /// Same id for every chunk of a request.
    pub id: String,
    /// `chat.completion.chunk`
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model id.
    pub model: String,
    /// One choice, or none in the usage chunk.
    pub choices: Vec<ChunkChoice>,
    /// `null` in every chunk but the last one when `include_usage` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<Usage>>,
}

/// One entry of `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    /// The id to put in requests.
    pub id: String,
    /// `model`
    pub object: String,
    /// Unix seconds (when the server loaded it).
    pub created: u64,
    /// `vidlm`
    pub owned_by: String,
}

/// `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelList {
    /// `list`
    pub object: String,
    /// The served models.
    pub data: Vec<ModelCard>,
}

impl ModelCard {
    /// The card of a served model.
    pub fn new(id: &str, created: u64) -> Self {
        ModelCard { id: id.to_string(), object: "model".into(), created, owned_by: "vidlm".into() }
    }
}

impl ModelList {
    /// One model.
    pub fn single(id: &str, created: u64) -> Self {
        ModelList { object: "list".into(), data: vec![ModelCard::new(id, created)] }
    }
}
