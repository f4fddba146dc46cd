//! The crate's error type, and the error categories every vidlm crate reports.

use std::path::PathBuf;

/// The category of a failure, for callers that turn errors into responses: a server maps
/// each kind to an HTTP status ([`ErrorKind::http_status`]). Every public error enum of vidlm
/// has a `kind()` method returning one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request is malformed or inconsistent: bad messages, placeholders that do not match
    /// the media, an invalid option or sampling request.
    BadRequest,
    /// A file the request names (a media file, a model) does not exist.
    NotFound,
    /// A media file cannot be decoded: corrupt or truncated data, unknown codec, no video stream.
    UnsupportedMedia,
    /// The request is over a limit: a prompt longer than the context, too many frames, pixels
    /// or bytes.
    LimitExceeded,
    /// A valid request for something vidlm or this model does not do (media by URL, videos for a
    /// family without a video processor, …).
    Unsupported,
    /// The model directory is broken: a missing or malformed file, a graph with an unexpected
    /// interface. A deployment problem, not the client's.
    InvalidModel,
    /// A broken internal invariant or a runtime failure (e.g. inside ONNX Runtime).
    Internal,
    /// The request is refused by a policy: a media source outside the allowed folder or
    /// domains, a private address.
    Forbidden,
    /// The server cannot take the request now (a full queue, a server shutting down): retry
    /// later.
    Unavailable,
}

impl ErrorKind {
    /// The HTTP status a server answers with: 400, 404, 415, 413, 422, 500 (invalid model and
    /// internal), 403, 503. `vidlm serve` and `vidlm batch` put exactly this status on the wire
    /// (`vidlm_openai::ApiError::from_kind`).
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::BadRequest => 400,
            ErrorKind::Forbidden => 403,
            ErrorKind::Unavailable => 503,
            ErrorKind::NotFound => 404,
            ErrorKind::UnsupportedMedia => 415,
            ErrorKind::LimitExceeded => 413,
            ErrorKind::Unsupported => 422,
            ErrorKind::InvalidModel | ErrorKind::Internal => 500,
        }
    }

    /// Whether the client caused it (a 4xx status); otherwise it is the server's failure
    /// (invalid model, internal, unavailable: a 5xx).
    pub fn is_client_error(self) -> bool {
        self.http_status() < 500
    }
}

/// A model directory could not be read: a file is missing, unreadable or malformed, or the
/// model is not one of the supported families.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A file the model directory must have is absent.
    #[error("model directory {dir}: required file {file} is missing")]
    MissingFile {
        /// The model directory.
        dir: PathBuf,
        /// File name(s) looked for.
        file: String,
    },
    /// A file could not be read.
    #[error("could not read {path}")]
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
    /// `config.json` names a model this crate does not know.
    #[error("config.json: unsupported model (model_type {model_type:?}, architectures {architectures:?}); supported: llava (interleave), llava_onevision, video_llava, llava_next_video")]
    UnsupportedModel {
        /// `model_type`.
        model_type: Option<String>,
        /// `architectures`.
        architectures: Vec<String>,
    },
}

impl ModelError {
    /// The category: [`ErrorKind::NotFound`] when the directory itself does not exist,
    /// [`ErrorKind::Unsupported`] for an unknown model type, else [`ErrorKind::InvalidModel`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            ModelError::MissingFile { file, .. } if file == DIRECTORY => ErrorKind::NotFound,
            ModelError::UnsupportedModel { .. } => ErrorKind::Unsupported,
            _ => ErrorKind::InvalidModel,
        }
    }
}

/// The `file` of [`ModelError::MissingFile`] when the model directory itself is missing.
pub const DIRECTORY: &str = "(directory)";
