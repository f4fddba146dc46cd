//! NumPy arrays in and out, through NumPy's Python API (no C API: the module stays abi3).
//!
//! Out: the bytes are copied once into a `bytearray` and `numpy.frombuffer` views it (a writable
//! array owning its memory through the bytearray); `read_frames` decodes straight into the
//! bytearray instead (`numpy_from_bytearray`, no copy). In: `uint8` arrays only (anything else is a
//! `BadRequestError`, never a silent conversion), copied with `tobytes()`.

use ndarray::{Array3, Array4};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyTuple};

use crate::errors::Failure;

/// A NumPy array of `dtype` (a NumPy dtype string, e.g. `"<f4"`) and `shape` over `bytes`.
pub fn numpy_array<'py>(
    py: Python<'py>,
    bytes: &[u8],
    dtype: &str,
    shape: &[usize],
) -> PyResult<Bound<'py, PyAny>> {
    numpy_from_bytearray(py, PyByteArray::new(py, bytes), dtype, shape)
}

/// A NumPy array of `dtype` and `shape` over the first bytes of `buf` (no copy: the array owns
/// the bytearray; `buf` may hold more than the shape needs).
pub fn numpy_from_bytearray<'py>(
    py: Python<'py>,
    buf: Bound<'py, PyByteArray>,
    dtype: &str,
    shape: &[usize],
) -> PyResult<Bound<'py, PyAny>> {
    let np = py.import("numpy")?;
    let count: usize = shape.iter().product();
    let kw = pyo3::types::PyDict::new(py);
    kw.set_item("count", count)?;
    let arr = np.call_method("frombuffer", (buf, dtype), Some(&kw))?;
    arr.call_method1("reshape", (PyTuple::new(py, shape)?,))
}

/// Whether `obj` is a NumPy array.
pub fn is_ndarray(obj: &Bound<'_, PyAny>) -> bool {
    obj.py()
        .import("numpy")
        .and_then(|np| np.getattr("ndarray"))
        .and_then(|t| obj.is_instance(&t))
        .unwrap_or(false)
}

/// Whether `obj` looks like a PIL image.
pub fn is_pil_image(obj: &Bound<'_, PyAny>) -> bool {
    obj.hasattr("convert").unwrap_or(false)
        && obj.hasattr("mode").unwrap_or(false)
        && obj.hasattr("size").unwrap_or(false)
}

/// The shape and bytes (C order) of a `uint8` NumPy array of rank `rank` with 3 channels last.
fn uint8_array(obj: &Bound<'_, PyAny>, rank: usize, what: &str) -> PyResult<(Vec<usize>, Vec<u8>)> {
    let dtype: String = obj.getattr("dtype")?.str()?.extract()?;
    if dtype != "uint8" {
        return Err(Failure::bad_request(format!(
            "{what}: the array must be uint8 (RGB), got dtype {dtype}"
        ))
        .into());
    }
    let shape: Vec<usize> = obj.getattr("shape")?.extract()?;
    if shape.len() != rank || shape[rank - 1] != 3 {
        let want = if rank == 4 { "[T, H, W, 3]" } else { "[H, W, 3]" };
        return Err(Failure::bad_request(format!(
            "{what}: the array must have shape {want}, got {shape:?}"
        ))
        .into());
    }
    if shape.contains(&0) {
        return Err(Failure::bad_request(format!("{what}: the array is empty ({shape:?})")).into());
    }
    let np = obj.py().import("numpy")?;
    let contiguous = np.call_method1("ascontiguousarray", (obj,))?;
    let bytes = contiguous.call_method0("tobytes")?;
    let bytes = bytes.downcast::<PyBytes>()?;
    Ok((shape, bytes.as_bytes().to_vec()))
}

/// A `uint8 [T, H, W, 3]` array as frames.
pub fn video_from_numpy(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Array4<u8>> {
    let (s, bytes) = uint8_array(obj, 4, what)?;
    Array4::from_shape_vec((s[0], s[1], s[2], s[3]), bytes)
        .map_err(|e| Failure::bad_request(format!("{what}: {e}")).into())
}

/// A PIL image (converted to RGB, as transformers' `load_image` does) or a `uint8 [H, W, 3]`
/// array as an image.
pub fn image_from_python(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Array3<u8>> {
    let arr = if is_pil_image(obj) {
        let rgb = obj.call_method1("convert", ("RGB",))?;
        obj.py().import("numpy")?.call_method1("asarray", (rgb,))?
    } else if is_ndarray(obj) {
        obj.clone()
    } else {
        let ty = obj.get_type().name()?.to_string();
        return Err(Failure::bad_request(format!(
            "{what}: an image must be a path, a URL, a PIL image or a uint8 [H, W, 3] array, got {ty}"
        ))
        .into());
    };
    let (s, bytes) = uint8_array(&arr, 3, what)?;
    Array3::from_shape_vec((s[0], s[1], s[2]), bytes)
        .map_err(|e| Failure::bad_request(format!("{what}: {e}")).into())
}
