//! # vidlm-decoder — the language-model half of a LLaVA-family model on ONNX Runtime
//!
//! Runs the `embed_tokens` and `decoder_model_merged` graphs of vidlm's ONNX layout (the
//! layout of the transformers.js exports) and generates text:
//!
//! * **Prompt preparation** — [`merge_features`]: the k-th placeholder position (row-major over
//!   batch then sequence; images, then videos) gets the k-th feature row; a count mismatch is
//!   [`DecoderError::FeatureCountMismatch`]. Batches are left-padded ([`left_pad`]) and
//!   [`position_ids`] follow transformers 5.23 (`cumsum(mask) - 1`, 0 at padding).
//! * **KV cache** — zero-length past on the first step; each step's `present.*` values are fed
//!   back as `past_key_values.*` without copying. Optional inputs (`position_ids`,
//!   `use_cache_branch`, `num_logits_to_keep`) are fed only when the graph declares them; any
//!   other input is [`DecoderError::UnexpectedInput`].
//! * **Generation** — greedy or sampled with transformers' processor order (logit bias →
//!   repetition penalty → temperature → top-k → top-p → min-p), seeded [`Rng`]; stops at
//!   `max_new_tokens` (or, with [`GenerationOptions::until_context_limit`], the context),
//!   EOS ids (one or many, from `generation_config.json` unless overridden) and stop strings.
//! * **Streaming** — [`Generation`] is an iterator of [`TokenEvent`]s whose text pieces never
//!   split a UTF-8 character ([`StreamDecoder`]); dropping it or [`Generation::cancel`] stops.
//! * **Batching** — several conversations at once; finished rows leave the batch (their cache
//!   rows are dropped) so they cost nothing afterwards.
//!
//! ```
//! use vidlm_decoder::{apply_top_p, merge_features, position_ids, Features};
//!
//! // Merge two feature rows into the placeholder positions (id 9) of a 4-token prompt.
//! let ids = [1, 9, 9, 2];
//! let mut embeds = vec![0.0f32; 4 * 2];
//! let feats = Features::new(vec![1.0, 2.0, 3.0, 4.0], 2).unwrap();
//! merge_features(&mut embeds, 2, &ids, 9, &feats, "image").unwrap();
//! assert_eq!(embeds, [0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 0.0, 0.0]);
//!
//! // Position ids of a left-padded batch.
//! assert_eq!(position_ids(&[0, 1, 1, 1, 1, 1], 3, 3), [0, 0, 1, 0, 1, 2]);
//!
//! // Top-p keeps the smallest set of tokens whose mass exceeds p.
//! let mut scores: Vec<f32> = [0.1f32, 0.2, 0.3, 0.4].iter().map(|p| p.ln()).collect();
//! apply_top_p(&mut scores, 0.7);
//! assert_eq!(scores.iter().filter(|s| s.is_finite()).count(), 2);
//! ```
//!
//! With a model directory (`config.json`, `generation_config.json`, `tokenizer.json`,
//! `onnx/embed_tokens.onnx`, `onnx/decoder_model_merged.onnx`) — here the committed tiny
//! random-weight LLaVA-NeXT-Video:
//!
//! ```
//! use vidlm_decoder::{GenerationOptions, LanguageModel, LmOptions, Sequence};
//! # fn main() -> Result<(), vidlm_decoder::DecoderError> {
//! let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets/demo-model");
//! let mut lm = LanguageModel::from_dir(dir, &LmOptions::default())?;
//! let ids: Vec<i64> = lm.tokenizer().unwrap().encode("USER: Hi! ASSISTANT:", true).unwrap()
//!     .get_ids().iter().map(|&i| i as i64).collect();
//! let opts = GenerationOptions { max_new_tokens: Some(8), seed: Some(1), ..Default::default() };
//! let mut text = String::new();
//! for event in lm.stream(&[Sequence::text(ids)], &opts)? {
//!     text.push_str(&event?.text);
//! }
//! println!("{text}");
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod cache_ops;
mod config;
mod embed;
mod generate;
mod merge;
mod model;
mod sampling;
mod stream;

use std::path::{Path, PathBuf};

use tokenizers::Tokenizer;
use vidlm_model::{ErrorKind, Graph, ModelError, ModelFiles};

pub use config::{GenerationOptions, ResolvedGeneration, UNLIMITED_LENGTH};
pub use embed::{Embedder, EmbeddingTable};
pub use generate::{
    FinishReason, Generation, GenerationResult, LmTimings, Prefill, Prefilled, RequestState,
    RowOutput, RunningBatch, Sequence, TokenEvent, TokenLogprobs,
};
pub use merge::{merge_features, position_ids, Features};
pub use model::{
    DecoderIo, KvCache, LanguageModelFiles, LayerIo, LmSessions, StepOutput, DEFAULT_KV_HEADROOM,
};
pub use sampling::{
    apply_logit_bias, apply_min_p, apply_repetition_penalty, apply_temperature, apply_top_k,
    apply_top_p, argmax, process_logits, sample, select_token, Rng, SamplingParams,
};
pub use stream::StreamDecoder;
pub use vidlm_model::{
    left_pad, GenerationConfig, OneOrMany, PlaceholderIds, Precision, TextConfig,
};
pub use vidlm_ort::{Device, OrtError, Provider, SessionOptions};

/// Errors of the language-model runtime.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecoderError {
    /// The model directory is missing a file or one of its configs is malformed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// ONNX Runtime set-up or session loading failed (includes a missing graph).
    #[error(transparent)]
    Ort(#[from] OrtError),
    /// ONNX Runtime failed while running a graph.
    #[error("ONNX Runtime error in {path}")]
    Runtime {
        /// The graph.
        path: PathBuf,
        /// ORT's error.
        #[source]
        source: vidlm_ort::ort::Error,
    },
    /// The graph declares an input this runtime does not know how to feed.
    #[error("{path}: unexpected graph input `{name}` (known: inputs_embeds, attention_mask, position_ids, past_key_values.N.key/value, use_cache_branch, num_logits_to_keep)")]
    UnexpectedInput {
        /// The graph.
        path: PathBuf,
        /// The input name.
        name: String,
    },
    /// The graph's interface is not the expected layout.
    #[error("{path}: {message}")]
    UnexpectedGraph {
        /// The graph.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Placeholder tokens and feature rows differ in number.
    #[error("Number of {kind} tokens and features do not match: {tokens} placeholder tokens, {features} feature rows")]
    FeatureCountMismatch {
        /// "image" or "video".
        kind: &'static str,
        /// Placeholder positions in the prompt.
        tokens: usize,
        /// Feature rows supplied.
        features: usize,
    },
    /// A prompt is longer than the model's context.
    #[error("prompt {row} has {tokens} tokens, more than the model's context length {max}")]
    PromptTooLong {
        /// Row.
        row: usize,
        /// Its length.
        tokens: usize,
        /// `max_position_embeddings`.
        max: usize,
    },
    /// A token id outside the embedding table.
    #[error("token id {id} is outside the vocabulary (0..{vocab})")]
    TokenOutOfRange {
        /// The id.
        id: i64,
        /// Rows of the embedding table.
        vocab: usize,
    },
    /// Bad option value.
    #[error("invalid generation option: {0}")]
    InvalidOption(String),
    /// Tensor shapes disagree.
    #[error("shape error: {0}")]
    Shape(String),
    /// Tokenizer failure.
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    /// A broken invariant of this crate's API use (e.g. finishing a prefill that has chunks
    /// left): a bug in the caller, never the request's fault.
    #[error("internal error: {0}")]
    Internal(String),
    /// A graph's weight file could not be read (the embedding table served from its file).
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl DecoderError {
    /// The category of the error (see [`ErrorKind`]). In the pipeline and the engine the
    /// sequences come from the processor and vision (which checked placeholders against the
    /// media before any model ran), so a feature/placeholder mismatch is
    /// [`ErrorKind::Internal`]; so is a failure inside ONNX Runtime ([`DecoderError::Runtime`]).
    /// Only an invalid generation option is the request's fault ([`ErrorKind::BadRequest`]),
    /// and a prompt over the context [`ErrorKind::LimitExceeded`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            DecoderError::Model(e) => e.kind(),
            DecoderError::Ort(e) => e.kind(),
            DecoderError::UnexpectedInput { .. }
            | DecoderError::UnexpectedGraph { .. }
            | DecoderError::Io { .. } => ErrorKind::InvalidModel,
            // 400 `context_length_exceeded`, as OpenAI and vLLM answer it.
            DecoderError::PromptTooLong { .. } => ErrorKind::BadRequest,
            DecoderError::InvalidOption(_) => ErrorKind::BadRequest,
            _ => ErrorKind::Internal,
        }
    }
}

/// How to load a [`LanguageModel`] from a directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LmOptions {
    /// Session options (device, threads).
    pub session: SessionOptions,
    /// Precision variant of `embed_tokens`.
    pub embed_precision: Precision,
    /// Precision variant of `decoder_model_merged`.
    pub decoder_precision: Precision,
    /// Run `embed_tokens` in an ONNX Runtime session even when it is a plain `Gather` whose rows
    /// can be read from the file (the default reads them: see [`EmbeddingTable`]).
    pub embed_in_session: bool,
}

/// A loaded language model: sessions, configs, tokenizer and placeholder ids.
#[derive(Debug)]
pub struct LanguageModel {
    sessions: LmSessions,
    text_config: TextConfig,
    generation_config: GenerationConfig,
    tokenizer: Option<Tokenizer>,
    placeholders: PlaceholderIds,
}

impl LanguageModel {
    /// Loads from a model directory: `config.json` (required), `generation_config.json` and
    /// `tokenizer.json` (optional), `onnx/embed_tokens*.onnx`, `onnx/decoder_model_merged*.onnx`.
    /// All files are checked before any graph is loaded.
    pub fn from_dir(dir: impl AsRef<Path>, opts: &LmOptions) -> Result<Self, DecoderError> {
        let files = ModelFiles::read(dir)?;
        let tokenizer = match &files.tokenizer_json {
            Some(p) => Some(
                Tokenizer::from_file(p)
                    .map_err(|e| DecoderError::Tokenizer(format!("{}: {e}", p.display())))?,
            ),
            None => None,
        };
        Self::from_files(&files, opts, tokenizer)
    }

    /// Loads the graphs of an already-read model directory, with the configs it holds
    /// (`text_config`, placeholder ids, `generation_config.json`) and `tokenizer` (for streamed
    /// text and stop strings).
    pub fn from_files(
        files: &ModelFiles,
        opts: &LmOptions,
        tokenizer: Option<Tokenizer>,
    ) -> Result<Self, DecoderError> {
        let graphs = LanguageModelFiles {
            embed_tokens: files.graph_path(Graph::EmbedTokens, opts.embed_precision),
            decoder: files.graph_path(Graph::DecoderModelMerged, opts.decoder_precision),
        };
        for p in [&graphs.embed_tokens, &graphs.decoder] {
            if !p.is_file() {
                return Err(DecoderError::Ort(OrtError::GraphMissing(p.clone())));
            }
        }
        let text_config = files.config.text().clone();
        let sessions =
            LmSessions::load_with(&graphs, &text_config, &opts.session, !opts.embed_in_session)?;
        Ok(LanguageModel {
            sessions,
            text_config,
            generation_config: files.generation.clone(),
            tokenizer,
            placeholders: files.config.placeholder_ids(),
        })
    }

    /// Assembles a model from parts.
    pub fn new(
        sessions: LmSessions,
        text_config: TextConfig,
        generation_config: GenerationConfig,
        tokenizer: Option<Tokenizer>,
        placeholders: PlaceholderIds,
    ) -> Self {
        LanguageModel { sessions, text_config, generation_config, tokenizer, placeholders }
    }

    /// Replaces the tokenizer (used for streaming text and stop strings).
    pub fn set_tokenizer(&mut self, tokenizer: Option<Tokenizer>) {
        self.tokenizer = tokenizer;
    }

    /// The tokenizer, if any.
    pub fn tokenizer(&self) -> Option<&Tokenizer> {
        self.tokenizer.as_ref()
    }

    /// The generation defaults.
    pub fn generation_config(&self) -> &GenerationConfig {
        &self.generation_config
    }

    /// Replaces the generation defaults.
    pub fn set_generation_config(&mut self, cfg: GenerationConfig) {
        self.generation_config = cfg;
    }

    /// Text config.
    pub fn text_config(&self) -> &TextConfig {
        &self.text_config
    }

    /// Placeholder ids.
    pub fn placeholders(&self) -> PlaceholderIds {
        self.placeholders
    }

    /// The sessions.
    pub fn sessions(&self) -> &LmSessions {
        &self.sessions
    }

    /// Starts a generation; iterate it for streamed [`TokenEvent`]s. The prefill runs here, so
    /// feature/placeholder mismatches and over-long prompts are reported before any token.
    pub fn stream<'a>(
        &'a mut self,
        seqs: &[Sequence],
        opts: &GenerationOptions,
    ) -> Result<Generation<'a>, DecoderError> {
        let cfg = ResolvedGeneration::resolve(&self.generation_config, opts)?;
        let start = generate::Start {
            seqs,
            placeholders: self.placeholders,
            max_context: self.text_config.max_position_embeddings,
        };
        Generation::start(&mut self.sessions, self.tokenizer.as_ref(), cfg, start)
    }

    /// The sessions, mutably, and the tokenizer (what a [`RunningBatch`] or [`Prefill`] step
    /// needs at once).
    pub fn parts_mut(&mut self) -> (&mut LmSessions, Option<&Tokenizer>) {
        (&mut self.sessions, self.tokenizer.as_ref())
    }

    /// The context length (`max_position_embeddings`), if known.
    pub fn max_context(&self) -> Option<usize> {
        self.text_config.max_position_embeddings
    }

    /// Resolves per-call options over the model's generation config (ranges validated).
    pub fn resolve(&self, opts: &GenerationOptions) -> Result<ResolvedGeneration, DecoderError> {
        let cfg = ResolvedGeneration::resolve(&self.generation_config, opts)?;
        if !cfg.stop_strings.is_empty() && self.tokenizer.is_none() {
            return Err(DecoderError::InvalidOption("stop strings need a tokenizer".into()));
        }
        Ok(cfg)
    }

    /// The per-request state of a prompt that is prefilled on its own ([`Prefill`]): its budget
    /// and context check count its own length. `logprobs`: report log-probabilities with that
    /// many alternatives.
    pub fn request_state(
        &self,
        prompt: Vec<i64>,
        opts: &GenerationOptions,
        logprobs: Option<usize>,
    ) -> Result<RequestState, DecoderError> {
        let cfg = self.resolve(opts)?;
        let n = prompt.len();
        Ok(RequestState::new(prompt, cfg, n, self.max_context()).with_logprobs(logprobs))
    }

    /// Starts a chunked prefill of one sequence (embedding and feature merge happen here).
    pub fn prefill(&mut self, seq: &Sequence) -> Result<Prefill, DecoderError> {
        let max = self.max_context();
        Prefill::new(&mut self.sessions, seq, self.placeholders, max)
    }

    /// Generates to the end.
    pub fn generate(
        &mut self,
        seqs: &[Sequence],
        opts: &GenerationOptions,
    ) -> Result<GenerationResult, DecoderError> {
        self.stream(seqs, opts)?.run(|_| std::ops::ControlFlow::Continue(()))
    }

    /// Generates to the end, calling `on_token` per token; `ControlFlow::Break(())` cancels.
    pub fn generate_with(
        &mut self,
        seqs: &[Sequence],
        opts: &GenerationOptions,
        on_token: impl FnMut(&TokenEvent) -> std::ops::ControlFlow<()>,
    ) -> Result<GenerationResult, DecoderError> {
        self.stream(seqs, opts)?.run(on_token)
    }

    /// Prefill only: the first-step (last prompt position) logits of each row, `rows × vocab`.
    pub fn first_step_logits(&mut self, seqs: &[Sequence]) -> Result<Vec<f32>, DecoderError> {
        let g = self
            .stream(seqs, &GenerationOptions { max_new_tokens: Some(1), ..Default::default() })?;
        Ok(g.current_logits().to_vec())
    }
}
