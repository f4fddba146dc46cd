//! Rust errors → Python exceptions, and the panic guard.
//!
//! Every error crosses into Python as one class of `vidlm._errors` (defined in Python so that a
//! class can have two bases: `BadRequestError(VidlmError, ValueError)`,
//! `NotFoundError(VidlmError, FileNotFoundError)`), chosen by the error's
//! [`ErrorKind`]. The message is the Rust error's one-line text.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::prelude::*;
use pyo3::types::PyType;
use vidlm_engine::EngineError;
use vidlm_model::ErrorKind;

/// A Rust-side failure on its way to Python: the class (by kind) and the one-line message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Which exception class.
    pub kind: ErrorKind,
    /// The message.
    pub message: String,
}

impl Failure {
    /// A failure of this kind.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Failure { kind, message: message.into() }
    }

    /// A bad request (`BadRequestError`, also a `ValueError`).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Failure::new(ErrorKind::BadRequest, message)
    }

    /// The failure of an engine error.
    pub fn engine(e: &EngineError) -> Self {
        Failure::new(e.kind(), e.to_string())
    }
}

/// The Python class name (in `vidlm`) of each error kind.
///
/// ```
/// use vidlm_model::ErrorKind;
/// assert_eq!(_vidlm::errors::class_name(ErrorKind::NotFound), "NotFoundError");
/// ```
pub fn class_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::BadRequest => "BadRequestError",
        ErrorKind::NotFound => "NotFoundError",
        ErrorKind::UnsupportedMedia => "UnsupportedMediaError",
        ErrorKind::LimitExceeded => "LimitExceededError",
        ErrorKind::Unsupported => "UnsupportedError",
        ErrorKind::InvalidModel => "InvalidModelError",
        _ => "InternalError",
    }
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        Failure::engine(&e)
    }
}

impl From<vidlm_processor::ProcessorError> for Failure {
    fn from(e: vidlm_processor::ProcessorError) -> Self {
        Failure::new(e.kind(), e.to_string())
    }
}

impl From<vidlm_pipeline::PipelineError> for Failure {
    fn from(e: vidlm_pipeline::PipelineError) -> Self {
        Failure::new(e.kind(), e.to_string())
    }
}

impl From<vidlm_video_io::VideoError> for Failure {
    fn from(e: vidlm_video_io::VideoError) -> Self {
        Failure::new(e.kind(), e.to_string())
    }
}

impl From<vidlm_media_source::MediaError> for Failure {
    fn from(e: vidlm_media_source::MediaError) -> Self {
        Failure::new(e.kind(), e.to_string())
    }
}

impl From<vidlm_model::SamplingError> for Failure {
    fn from(e: vidlm_model::SamplingError) -> Self {
        Failure::new(e.kind(), e.to_string())
    }
}

/// The Python exception of a failure (a class of `vidlm._errors`).
pub fn to_pyerr(py: Python<'_>, f: &Failure) -> PyErr {
    let class = py
        .import("vidlm._errors")
        .and_then(|m| m.getattr(class_name(f.kind)))
        .and_then(|c| c.downcast_into::<PyType>().map_err(PyErr::from));
    match class {
        Ok(c) => PyErr::from_type(c, (f.message.clone(),)),
        Err(e) => e,
    }
}

impl From<Failure> for PyErr {
    fn from(f: Failure) -> PyErr {
        Python::with_gil(|py| to_pyerr(py, &f))
    }
}

/// Runs `f`, turning a Rust panic into an `InternalError` (never a `PanicException`).
pub fn guard<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(Failure::new(ErrorKind::Internal, format!("internal error in vidlm: {msg}")).into())
        }
    }
}
