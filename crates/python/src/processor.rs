//! `vidlm.Processor`: `vidlm preprocess` in-process.

use pyo3::prelude::*;
use pyo3::types::PyDict;
use vidlm_media_source::FrameSampling;
use vidlm_processor::Processor as RustProcessor;

use crate::arrays::numpy_array;
use crate::errors::{guard, Failure};
use crate::media::{parse_many, process_options};

/// The model's processor: messages → the model inputs under transformers' key names.
#[pyclass(module = "vidlm", frozen, name = "Processor")]
pub struct Processor {
    inner: RustProcessor,
}

fn numpy_dtype(d: safetensors::Dtype) -> Result<&'static str, Failure> {
    Ok(match d {
        safetensors::Dtype::F32 => "<f4",
        safetensors::Dtype::I64 => "<i8",
        safetensors::Dtype::F16 => "<f2",
        safetensors::Dtype::I32 => "<i4",
        safetensors::Dtype::U8 => "u1",
        other => {
            return Err(Failure::new(
                vidlm_model::ErrorKind::Internal,
                format!("unexpected tensor dtype {other:?}"),
            ))
        }
    })
}

#[pymethods]
impl Processor {
    #[new]
    fn new(py: Python<'_>, model: std::path::PathBuf) -> PyResult<Self> {
        guard(|| {
            let inner =
                py.allow_threads(|| RustProcessor::from_dir(&model).map_err(Failure::from))?;
            Ok(Processor { inner })
        })
    }

    /// The model family (`"onevision"`, ...).
    #[getter]
    fn family(&self) -> String {
        self.inner.family().name().to_string()
    }

    /// The model inputs of one conversation or a list of them, as `vidlm preprocess` writes
    /// them: transformers' names and dtypes (input_ids, attention_mask, pixel_values or
    /// pixel_values_images, image_sizes, pixel_values_videos, ...), as NumPy arrays.
    #[pyo3(signature = (messages, *, num_frames=None, fps=None, max_frames=None, add_generation_prompt=true))]
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        messages: &Bound<'py, PyAny>,
        num_frames: Option<usize>,
        fps: Option<f64>,
        max_frames: Option<usize>,
        add_generation_prompt: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        guard(|| {
            let mut opts = process_options(&FrameSampling { num_frames, fps, max_frames })?;
            opts.add_generation_prompt = add_generation_prompt;
            let raws = parse_many(messages)?;
            let tensors = py.allow_threads(|| -> Result<_, Failure> {
                let convs = raws
                    .iter()
                    .map(|r| r.decode(&self.inner, &opts))
                    .collect::<Result<Vec<_>, _>>()?;
                // Media are decoded and sampled: no further sampling.
                let rest =
                    vidlm_processor::ProcessOptions { add_generation_prompt, ..Default::default() };
                Ok(self.inner.process(&convs, &rest)?.tensors())
            })?;
            let out = PyDict::new(py);
            for (name, dtype, shape, bytes) in tensors {
                out.set_item(name, numpy_array(py, &bytes, numpy_dtype(dtype)?, &shape)?)?;
            }
            Ok(out)
        })
    }

    fn __repr__(&self) -> String {
        format!("Processor(family={:?}, dir={:?})", self.inner.family().name(), self.inner.dir())
    }
}
