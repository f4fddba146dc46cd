//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while turning messages and media into model inputs.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    /// A file the model directory must have is absent.
    #[error("model directory {dir}: required file {file} is missing")]
    MissingFile {
        /// The model directory.
        dir: PathBuf,
        /// File name(s) looked for.
        file: String,
    },
    /// A file could not be read.
    #[error("could not read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON file is malformed or a field has the wrong type.
    #[error("{file}: invalid JSON: {message}")]
    Json {
        /// The file (or input) name.
        file: String,
        /// serde_json's message (with line/column).
        message: String,
    },
    /// A required field is absent from a config file.
    #[error("{file}: required field `{field}` is missing")]
    MissingField {
        /// The file.
        file: String,
        /// The JSON field name.
        field: String,
    },
    /// A config value is present but unusable.
    #[error("{file}: field `{field}`: {message}")]
    InvalidField {
        /// The file.
        file: String,
        /// The JSON field name.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// `config.json` names a model type this crate does not know.
    #[error("config.json: unsupported model (model_type {model_type:?}, architectures {architectures:?}); supported: llava (interleave), llava_onevision, video_llava, llava_next_video")]
    UnsupportedModel {
        /// `model_type`.
        model_type: Option<String>,
        /// `architectures`.
        architectures: Vec<String>,
    },
    /// The tokenizer could not be loaded or run.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A token the processor needs is not in the vocabulary.
    #[error("tokenizer has no token {token:?} ({what})")]
    UnknownToken {
        /// The token string.
        token: String,
        /// What it is used for.
        what: &'static str,
    },
    /// The chat template failed to compile or raised an error while rendering.
    #[error("chat template error: {message}")]
    Template {
        /// The template's own message (e.g. from `raise_exception`) or minijinja's.
        message: String,
    },
    /// The chat messages are not in the expected format.
    #[error("messages: {0}")]
    Messages(String),
    /// Number of `<image>`/`<video>` placeholders in the prompt differs from the media given.
    #[error("conversation {conversation}: the prompt has {placeholders} {kind} placeholder(s) but {media} {kind}(s) were given")]
    PlaceholderMismatch {
        /// Index of the conversation in the batch.
        conversation: usize,
        /// `"image"` or `"video"`.
        kind: &'static str,
        /// Placeholders in the rendered prompt.
        placeholders: usize,
        /// Media items given.
        media: usize,
    },
    /// The expanded prompt does not fit the model's context.
    #[error("conversation {conversation}: the expanded prompt has {tokens} tokens, more than the model's context of {max} tokens")]
    PromptTooLong {
        /// Index of the conversation in the batch.
        conversation: usize,
        /// Tokens after expansion.
        tokens: usize,
        /// `max_position_embeddings` (or the tokenizer's `model_max_length`).
        max: usize,
    },
    /// An image or video frame has an unusable shape.
    #[error("{what}: {message}")]
    InvalidMedia {
        /// Which media item.
        what: String,
        /// What is wrong.
        message: String,
    },
    /// A media file could not be loaded.
    #[error("loading {path}: {message}")]
    MediaLoad {
        /// The media path.
        path: PathBuf,
        /// The loader's message.
        message: String,
    },
    /// The request is valid JSON but asks for something unsupported.
    #[error("{0}")]
    Unsupported(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = ProcessorError> = std::result::Result<T, E>;
