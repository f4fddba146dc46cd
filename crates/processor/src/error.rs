//! The crate's error type.

use std::path::PathBuf;
use vidlm_model::{ErrorKind, ModelError, SamplingError};

/// Everything that can go wrong while turning messages and media into model inputs.
///
/// [`ProcessorError::kind`] sorts them into the categories a server answers with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessorError {
    /// The model directory is missing a file, or one of its files is malformed.
    #[error(transparent)]
    Model(#[from] ModelError),
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
    /// An image or video is larger than the processor accepts.
    #[error("{what}: {message}")]
    MediaTooLarge {
        /// Which media item.
        what: String,
        /// What is too large.
        message: String,
    },
    /// A media file could not be loaded; the source is the loader's error (a
    /// `vidlm_video_io::VideoError` for the default loader).
    #[error("loading {path}")]
    MediaLoad {
        /// The media path.
        path: PathBuf,
        /// The loader's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// The frame-sampling request does not fit a video.
    #[error("{what}: frame sampling")]
    Sampling {
        /// Which video.
        what: String,
        /// Why.
        #[source]
        source: SamplingError,
    },
    /// The request is valid but asks for something unsupported.
    #[error("{0}")]
    Unsupported(String),
    /// A broken internal invariant (a bug in vidlm, not in the input).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ProcessorError {
    /// The category of the error (see [`ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            ProcessorError::Model(e) => e.kind(),
            ProcessorError::Tokenizer(_) | ProcessorError::UnknownToken { .. } => {
                ErrorKind::InvalidModel
            }
            ProcessorError::Template { .. }
            | ProcessorError::Messages(_)
            | ProcessorError::PlaceholderMismatch { .. }
            | ProcessorError::InvalidMedia { .. } => ErrorKind::BadRequest,
            // A prompt over the context is a 400 `context_length_exceeded`, as OpenAI and vLLM
            // answer it (not the 413 of LimitExceeded).
            ProcessorError::PromptTooLong { .. } => ErrorKind::BadRequest,
            ProcessorError::MediaTooLarge { .. } => ErrorKind::LimitExceeded,
            ProcessorError::MediaLoad { source, .. } => media_error_kind(source.as_ref()),
            ProcessorError::Sampling { source, .. } => source.kind(),
            ProcessorError::Unsupported(_) => ErrorKind::Unsupported,
            ProcessorError::Internal(_) => ErrorKind::Internal,
        }
    }

    /// A [`ProcessorError::MediaLoad`] with a plain message as its source.
    pub fn media_load(path: impl Into<PathBuf>, message: impl Into<String>) -> ProcessorError {
        let message: String = message.into();
        ProcessorError::MediaLoad { path: path.into(), source: message.into() }
    }
}

/// The category of a loader's error: the video-io loader's errors by their variant, others
/// [`ErrorKind::UnsupportedMedia`].
fn media_error_kind(e: &(dyn std::error::Error + Send + Sync + 'static)) -> ErrorKind {
    #[cfg(feature = "video-io")]
    if let Some(v) = e.downcast_ref::<vidlm_video_io::VideoError>() {
        return crate::loader::video_error_kind(v);
    }
    let _ = e;
    ErrorKind::UnsupportedMedia
}

/// Shorthand for results of this crate.
pub type Result<T, E = ProcessorError> = std::result::Result<T, E>;
