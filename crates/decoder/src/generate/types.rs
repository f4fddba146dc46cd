//! The data that crosses the generation API: a [`Sequence`] in; events, rows and timings out.

use std::time::Duration;

use crate::merge::Features;

/// One conversation's model inputs: the expanded token ids and the features for its
/// placeholders (all images of the prompt concatenated in order, likewise all videos).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sequence {
    /// Token ids, placeholders already expanded (one id per feature row).
    pub input_ids: Vec<i64>,
    /// Features for the image placeholders, in prompt order.
    pub image_features: Option<Features>,
    /// Features for the video placeholders, in prompt order.
    pub video_features: Option<Features>,
}

impl Sequence {
    /// A text-only sequence.
    pub fn text(input_ids: Vec<i64>) -> Self {
        Sequence { input_ids, ..Default::default() }
    }
}

/// Why a row stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// It produced an EOS id (included in `token_ids`).
    Eos,
    /// Its text contains a stop string (the text includes it, as in transformers).
    StopString,
    /// `max_new_tokens` (or `max_length`) reached.
    MaxNewTokens,
    /// The context length of the model was reached.
    ContextLength,
    /// The caller cancelled.
    Cancelled,
}

/// Log-probabilities of one generated token under the model (raw logits, before repetition
/// penalty, temperature or filters).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    /// `log p(token)`.
    pub logprob: f32,
    /// The most likely tokens `(id, log p)`, best first (as many as asked for).
    pub top: Vec<(i64, f32)>,
}

/// One generated token, as streamed.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenEvent {
    /// Row (conversation index in the request).
    pub row: usize,
    /// Token id.
    pub token_id: i64,
    /// Text that became final with this token (may be empty while a character or word is
    /// incomplete; the last event of a row flushes everything).
    pub text: String,
    /// Set on the row's last event.
    pub finished: Option<FinishReason>,
    /// Log-probabilities, when the request asked for them.
    pub logprobs: Option<TokenLogprobs>,
}

/// The result for one row.
#[derive(Debug, Clone, PartialEq)]
pub struct RowOutput {
    /// Generated token ids (EOS included when it ended the row).
    pub token_ids: Vec<i64>,
    /// Decoded text (`None` without a tokenizer).
    pub text: Option<String>,
    /// Why the row stopped.
    pub finish_reason: FinishReason,
    /// Prompt length (unpadded).
    pub prompt_tokens: usize,
}

/// Wall-clock timings of the language-model stages.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LmTimings {
    /// `embed_tokens` + merge for the prompt.
    pub embed: Duration,
    /// The prefill decoder pass.
    pub prefill: Duration,
    /// Each decode step (embed of the new tokens + decoder pass), in order.
    pub decode_steps: Vec<Duration>,
    /// Host-side token selection, detokenization and stop checks.
    pub host: Duration,
}

impl LmTimings {
    /// Total decode time.
    pub fn decode_total(&self) -> Duration {
        self.decode_steps.iter().sum()
    }
}

/// The result of a generation call.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationResult {
    /// One entry per input sequence, in order.
    pub rows: Vec<RowOutput>,
    /// Timings.
    pub timings: LmTimings,
    /// Total generated tokens over all rows.
    pub generated_tokens: usize,
}
