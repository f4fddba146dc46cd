//! `vidlm.probe` and `vidlm.read_frames`: `vidlm probe` and `vidlm frames` in-process.

use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyDict, PyTuple};
use vidlm_video_io::{OpenOptions, SampleRequest, VideoReader};

use crate::arrays::numpy_from_bytearray;
use crate::errors::{guard, Failure};

fn path_of(obj: &Bound<'_, PyAny>) -> PyResult<std::path::PathBuf> {
    // str or os.PathLike; relative paths resolve against the current directory (FFmpeg's view).
    let s: std::path::PathBuf = obj
        .extract()
        .map_err(|_| PyErr::from(Failure::bad_request("path must be a str or an os.PathLike")))?;
    Ok(s)
}

/// A JSON value as the Python object `json.loads` makes of it.
pub fn json_to_py<'py>(py: Python<'py>, v: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(v)
        .map_err(|e| Failure::new(vidlm_model::ErrorKind::Internal, e.to_string()))?;
    py.import("json")?.call_method1("loads", (text,))
}

/// `vidlm probe PATH` as a dict (the same keys).
#[pyfunction]
pub fn probe<'py>(py: Python<'py>, path: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    guard(|| {
        let p = path_of(path)?;
        let info = py.allow_threads(|| {
            vidlm_video_io::probe(&p, &OpenOptions::default()).map_err(Failure::from)
        })?;
        let v = serde_json::to_value(&info)
            .map_err(|e| Failure::new(vidlm_model::ErrorKind::Internal, e.to_string()))?;
        json_to_py(py, &v)
    })
}

/// `vidlm frames`: the sampled frames `uint8 [T, H, W, 3]` and their `indices` and `pts`.
#[pyfunction]
#[pyo3(signature = (path, num_frames=None, fps=None, max_frames=None, indices=None))]
pub fn read_frames<'py>(
    py: Python<'py>,
    path: &Bound<'py, PyAny>,
    num_frames: Option<usize>,
    fps: Option<f64>,
    max_frames: Option<usize>,
    indices: Option<Vec<usize>>,
) -> PyResult<Bound<'py, PyTuple>> {
    guard(|| {
        let p = path_of(path)?;
        let given = [num_frames.is_some(), fps.is_some(), indices.is_some()];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(Failure::bad_request("give at most one of num_frames, fps, indices").into());
        }
        let mut req = if let Some(n) = num_frames {
            SampleRequest::num_frames(n)
        } else if let Some(f) = fps {
            SampleRequest::fps(f)
        } else if let Some(i) = indices {
            SampleRequest::indices(i)
        } else {
            SampleRequest::all()
        };
        req.max_frames = max_frames;
        // Decoded straight into the bytearray the NumPy array will own (no second copy of the
        // frames): the shape is known and checked against the limits before anything is
        // allocated, and the GIL is released while decoding (nothing else can reach the
        // bytearray before it is returned).
        let (mut reader, shape, video_fps) = py.allow_threads(|| -> Result<_, Failure> {
            let reader = VideoReader::open(&p, &OpenOptions::default())?;
            let shape = reader.sample_shape(&req)?;
            let fps = reader.info().fps;
            Ok((reader, shape, fps))
        })?;
        let mut got = None;
        let buf = PyByteArray::new_with(py, shape.iter().product(), |out| {
            got = Some(py.allow_threads(|| reader.sample_into(&req, out)));
            Ok(())
        })?;
        let frames = got
            .ok_or_else(|| Failure::new(vidlm_model::ErrorKind::Internal, "no frames decoded"))?
            .map_err(Failure::from)?;
        if frames.indices.is_empty() {
            return Err(Failure::new(
                vidlm_model::ErrorKind::UnsupportedMedia,
                format!("no frame could be decoded from {}", p.display()),
            )
            .into());
        }
        let [_, h, w, c] = shape;
        let arr = numpy_from_bytearray(py, buf, "u1", &[frames.indices.len(), h, w, c])?;
        let info = PyDict::new(py);
        info.set_item("indices", frames.indices.clone())?;
        info.set_item("pts", frames.pts.clone())?;
        info.set_item("width", w)?;
        info.set_item("height", h)?;
        info.set_item("fps", video_fps)?;
        info.set_item("missing", frames.missing.clone())?;
        info.set_item("truncated", frames.truncated)?;
        PyTuple::new(py, [arr, info.into_any()])
    })
}
