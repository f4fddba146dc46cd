//! The errors of a batch run that stop it (a bad manifest, an unusable output file, a shard
//! setting that makes no sense). Problems of one request never stop a run: they become that
//! request's error line.

use std::path::PathBuf;

use vidlm_openai::ErrorKind;

/// An error that stops a batch run or a merge before or while it works.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The input manifest is malformed where no request id can be recovered (a line that is not
    /// JSON, a missing `custom_id`, a missing column, an unreadable Parquet file).
    #[error("{path}: {location}: {message}")]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// Where (`line 3`, `row 17`, `column "video"`, ...).
        location: String,
        /// What is wrong.
        message: String,
    },
    /// Two input records have the same id; found before any work starts.
    #[error("{path}: duplicate custom_id {id:?} at {first} and {second}{more}")]
    DuplicateId {
        /// The manifest.
        path: PathBuf,
        /// The id.
        id: String,
        /// Where it first appears.
        first: String,
        /// Where it appears again.
        second: String,
        /// `" (and N more duplicated ids)"` when there are others.
        more: String,
    },
    /// A bad `--shard`, `--num-shards` or shard environment variable.
    #[error("shard settings: {0}")]
    Shard(String),
    /// Another process holds the output file (two runs of the same shard at once).
    #[error("{path} is in use by another vidlm batch process (it holds the file's lock)")]
    OutputLocked {
        /// The output file.
        path: PathBuf,
    },
    /// The output file holds lines that do not belong to this input and shard.
    #[error("{path}: {message}")]
    Output {
        /// The output file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// `vidlm batch merge` found the shard outputs incomplete or inconsistent.
    #[error("merge: {0}")]
    Merge(String),
    /// Loading the model failed (the engine's error, kept as the source).
    #[error("loading the model: {source}")]
    Model {
        /// Why.
        #[source]
        source: vidlm_engine::EngineError,
    },
    /// The engine stopped answering while requests were in flight (a bug in vidlm).
    #[error("the engine stopped with requests in flight")]
    EngineStopped,
    /// A thread that waits for a request could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(#[source] std::io::Error),
    /// Bad option value.
    #[error("{0}")]
    Options(String),
}

impl BatchError {
    /// The category of the error (see [`ErrorKind`]): bad manifests, shard settings, options,
    /// outputs of another input and inconsistent merges are [`ErrorKind::BadRequest`]; an
    /// output locked by another process [`ErrorKind::Unavailable`]; a model that does not load
    /// its own category; I/O, threads and a stopped engine [`ErrorKind::Internal`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            BatchError::Manifest { .. }
            | BatchError::DuplicateId { .. }
            | BatchError::Shard(_)
            | BatchError::Output { .. }
            | BatchError::Merge(_)
            | BatchError::Options(_) => ErrorKind::BadRequest,
            BatchError::OutputLocked { .. } => ErrorKind::Unavailable,
            BatchError::Model { source } => source.kind(),
            BatchError::Io { .. } | BatchError::EngineStopped | BatchError::Thread(_) => {
                ErrorKind::Internal
            }
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> BatchError {
        BatchError::Io { path: path.into(), source }
    }
}

/// Result with [`BatchError`].
pub type Result<T, E = BatchError> = std::result::Result<T, E>;
