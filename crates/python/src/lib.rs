//! # vidlm-python — the `vidlm` Python package
//!
//! A thin PyO3 shell over the vidlm crates (abi3, Python ≥ 3.9, built by maturin from
//! `crates/python/pyproject.toml`; `pip install ./crates/python`). It has no model logic of its
//! own: every call goes to the crate that does the job.
//!
//! * `vidlm.LLM(model, dtype=None, device="cpu", threads=None)` — `vidlm-pipeline` loads the
//!   model, `vidlm-engine` runs it (`engine_api`, the one module that touches the engine);
//!   `chat(messages | [conversations], SamplingParams, num_frames=/fps=/max_frames=)` and
//!   `stream(...)` (text deltas). The GIL is released while vidlm works; Ctrl-C cancels.
//! * `vidlm.probe(path)`, `vidlm.read_frames(path, ...)` — `vidlm-video-io` (`vidlm probe`,
//!   `vidlm frames`).
//! * `vidlm.Processor(model)(messages, ...)` — `vidlm-processor` (`vidlm preprocess`).
//! * Errors: one Python class per [`vidlm_model::ErrorKind`] under `vidlm.VidlmError`
//!   ([`errors`]); a Rust panic becomes `vidlm.InternalError`, never a `PanicException`.
//! * The ONNX Runtime library: the Python side finds `libonnxruntime.so` inside the installed
//!   `onnxruntime` (or `onnxruntime-gpu`) package and passes it to
//!   `vidlm_ort::set_library_path` (`vidlm.set_onnxruntime_library`).
//!
//! Message parsing ([`media`]) is plain Rust over Python objects; the exception classes are
//! chosen by kind:
//!
//! ```
//! use vidlm_model::ErrorKind;
//! use _vidlm::errors::{class_name, Failure};
//!
//! let f = Failure::bad_request("give num_frames or fps, not both");
//! assert_eq!(class_name(f.kind), "BadRequestError"); // also a ValueError in Python
//! assert_eq!(class_name(ErrorKind::NotFound), "NotFoundError"); // also a FileNotFoundError
//! ```

#![warn(missing_docs)]

pub mod arrays;
pub mod engine_api;
pub mod errors;
pub mod llm;
pub mod media;
pub mod processor;
pub mod video;

use pyo3::prelude::*;

/// Sets the ONNX Runtime library vidlm loads (before the first model is loaded); `None`
/// clears it. `ORT_DYLIB_PATH`, when set, still wins.
#[pyfunction]
#[pyo3(signature = (path))]
fn set_onnxruntime_library(path: Option<std::path::PathBuf>) {
    vidlm_ort::set_library_path(path);
}

/// The ONNX Runtime library vidlm would load now (or has loaded).
#[pyfunction]
fn onnxruntime_library(py: Python<'_>) -> PyResult<String> {
    errors::guard(|| {
        if let Some(p) = vidlm_ort::loaded_library() {
            return Ok(p.display().to_string());
        }
        let p = vidlm_ort::find_library()
            .map_err(|e| errors::Failure::new(vidlm_model::ErrorKind::NotFound, e.to_string()))?;
        let _ = py;
        Ok(p.display().to_string())
    })
}

/// Panics inside the panic guard (for the tests: a panic must arrive as `InternalError`).
#[pyfunction]
fn _panic_for_tests() -> PyResult<()> {
    errors::guard(|| panic!("a deliberate panic (vidlm._vidlm._panic_for_tests)"))
}

/// The extension module `vidlm._vidlm` (re-exported by `vidlm/__init__.py`).
#[pymodule]
fn _vidlm(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(set_onnxruntime_library, m)?)?;
    m.add_function(wrap_pyfunction!(onnxruntime_library, m)?)?;
    m.add_function(wrap_pyfunction!(_panic_for_tests, m)?)?;
    m.add_function(wrap_pyfunction!(video::probe, m)?)?;
    m.add_function(wrap_pyfunction!(video::read_frames, m)?)?;
    m.add_class::<processor::Processor>()?;
    m.add_class::<llm::LLM>()?;
    m.add_class::<llm::SamplingParams>()?;
    m.add_class::<llm::RequestOutput>()?;
    m.add_class::<llm::CompletionOutput>()?;
    m.add_class::<llm::TextStream>()?;
    Ok(())
}
