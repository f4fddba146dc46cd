//! Membership changes of a running batch's KV cache: left-padding along the past axis, joining
//! two caches along the batch axis, trimming shared leading padding; and the change of layout
//! between packed and preallocated ([`KvCache`]). These copy, so the running batch calls them
//! only when rows join or leave (and a preallocated cache when it grows), never on an ordinary
//! decode step.

use std::path::Path;

use half::f16;
use vidlm_ort::ort::memory::Allocator;
use vidlm_ort::ort::value::{DynValue, PrimitiveTensorElementType, Tensor};
use vidlm_ort::TensorElementType;

use crate::model::KvCache;
use crate::DecoderError;

fn ort(path: &Path) -> impl Fn(vidlm_ort::ort::Error) -> DecoderError + '_ {
    move |e| DecoderError::Runtime { path: path.to_path_buf(), source: e }
}

/// `[batch, heads, past, dim]` of a cache tensor.
fn dims4(v: &DynValue) -> Result<[usize; 4], DecoderError> {
    let s: Vec<i64> =
        v.dtype().tensor_shape().map(|s| s.iter().copied().collect()).unwrap_or_default();
    match s.as_slice() {
        [b, h, p, d] => Ok([*b as usize, *h as usize, *p as usize, *d as usize]),
        other => {
            Err(DecoderError::Shape(format!("KV cache tensor of shape {other:?}, expected rank 4")))
        }
    }
}

/// Rebuilds every `[b, h, past, d]` tensor as `[b, h, new_past, d]` where the old columns
/// `from..past` land at `at..` (zeros elsewhere).
fn repast<T: PrimitiveTensorElementType + Copy + Default + std::fmt::Debug + 'static>(
    v: &DynValue,
    from: usize,
    new_past: usize,
    at: usize,
    path: &Path,
) -> Result<DynValue, DecoderError> {
    let [b, h, past, d] = dims4(v)?;
    let (_, data) = v.try_extract_tensor::<T>().map_err(ort(path))?;
    let keep = past.saturating_sub(from);
    if at + keep > new_past || data.len() != b * h * past * d {
        return Err(DecoderError::Shape(format!(
            "cannot move {keep} past columns to {at}..{new_past}"
        )));
    }
    let mut out = vec![T::default(); b * h * new_past * d];
    for bh in 0..b * h {
        let src = &data[(bh * past + from) * d..(bh * past + past) * d];
        let dst = &mut out[(bh * new_past + at) * d..(bh * new_past + at + keep) * d];
        dst.copy_from_slice(src);
    }
    Ok(Tensor::from_array(([b, h, new_past, d], out)).map_err(ort(path))?.into_dyn())
}

fn concat_batch<T: PrimitiveTensorElementType + Copy + std::fmt::Debug + 'static>(
    a: &DynValue,
    b: &DynValue,
    path: &Path,
) -> Result<DynValue, DecoderError> {
    let [ba, h, p, d] = dims4(a)?;
    let [bb, h2, p2, d2] = dims4(b)?;
    if (h, p, d) != (h2, p2, d2) {
        return Err(DecoderError::Shape(format!(
            "cannot join caches [{ba},{h},{p},{d}] and [{bb},{h2},{p2},{d2}]"
        )));
    }
    let (_, da) = a.try_extract_tensor::<T>().map_err(ort(path))?;
    let (_, db) = b.try_extract_tensor::<T>().map_err(ort(path))?;
    let mut out = Vec::with_capacity(da.len() + db.len());
    out.extend_from_slice(da);
    out.extend_from_slice(db);
    Ok(Tensor::from_array(([ba + bb, h, p, d], out)).map_err(ort(path))?.into_dyn())
}

/// The first `valid` past columns of a `[b, h, p, d]` tensor in a new `[b, h, len, d]` tensor,
/// zeros after them. With `alloc`, the new tensor comes from ONNX Runtime's allocator (so it can be
/// bound as a session output: a preallocated cache); without, it is owned Rust memory.
fn with_past_len<T: PrimitiveTensorElementType + Copy + Default + std::fmt::Debug + 'static>(
    v: &DynValue,
    valid: usize,
    len: usize,
    alloc: Option<&Allocator>,
    path: &Path,
) -> Result<DynValue, DecoderError> {
    let [b, h, p, d] = dims4(v)?;
    let (_, data) = v.try_extract_tensor::<T>().map_err(ort(path))?;
    if valid > p || valid > len || data.len() != b * h * p * d {
        return Err(DecoderError::Shape(format!(
            "cannot keep {valid} of {p} past columns in a cache of {len}"
        )));
    }
    let fill = |out: &mut [T]| {
        for bh in 0..b * h {
            let dst = &mut out[bh * len * d..(bh + 1) * len * d];
            dst[..valid * d].copy_from_slice(&data[bh * p * d..(bh * p + valid) * d]);
            dst[valid * d..].fill(T::default());
        }
    };
    match alloc {
        Some(a) => {
            let mut t = Tensor::<T>::new(a, [b, h, len, d]).map_err(ort(path))?;
            fill(t.extract_tensor_mut().1);
            Ok(t.into_dyn())
        }
        None => {
            let mut out = vec![T::default(); b * h * len * d];
            fill(&mut out);
            Ok(Tensor::from_array(([b, h, len, d], out)).map_err(ort(path))?.into_dyn())
        }
    }
}

fn elem(v: &DynValue) -> Option<TensorElementType> {
    v.dtype().tensor_type()
}

impl KvCache {
    /// Rewrites every tensor with its first `past_len` columns in a tensor of `len` columns
    /// (preallocated with `alloc`, packed without).
    fn relayout(
        &mut self,
        len: usize,
        alloc: Option<&Allocator>,
        path: &Path,
    ) -> Result<(), DecoderError> {
        let mut out = Vec::with_capacity(self.values.len());
        for v in &self.values {
            out.push(match elem(v) {
                Some(TensorElementType::Float16) => {
                    with_past_len::<f16>(v, self.past_len, len, alloc, path)?
                }
                Some(TensorElementType::Float32) => {
                    with_past_len::<f32>(v, self.past_len, len, alloc, path)?
                }
                other => {
                    return Err(DecoderError::Shape(format!(
                        "cannot lay out a cache tensor of type {other:?}"
                    )))
                }
            });
        }
        self.values = out;
        Ok(())
    }

    /// Makes the cache preallocated with room for `capacity` positions (host memory from ONNX
    /// Runtime's default allocator), keeping its `past_len` columns.
    pub(crate) fn preallocate(&mut self, capacity: usize, path: &Path) -> Result<(), DecoderError> {
        if capacity < self.past_len {
            return Err(DecoderError::Shape(format!(
                "a cache of {capacity} positions cannot hold {}",
                self.past_len
            )));
        }
        self.relayout(capacity, Some(&Allocator::default()), path)?;
        self.capacity = Some(capacity);
        Ok(())
    }

    /// Makes a preallocated cache packed again (every tensor exactly `past_len` long); a packed
    /// cache is left as it is.
    pub(crate) fn compact(&mut self, path: &Path) -> Result<(), DecoderError> {
        if self.capacity.is_none() {
            return Ok(());
        }
        self.relayout(self.past_len, None, path)?;
        self.capacity = None;
        Ok(())
    }

    /// Moves the past columns `from..` to start at `at` in a past of `new_past` columns, zeros
    /// elsewhere: `from > 0` trims leading padding, `at > 0` adds it.
    pub(crate) fn repast(
        &mut self,
        from: usize,
        new_past: usize,
        at: usize,
        path: &Path,
    ) -> Result<(), DecoderError> {
        if from == 0 && at == 0 && new_past == self.past_len {
            return Ok(());
        }
        self.compact(path)?;
        let mut out = Vec::with_capacity(self.values.len());
        for v in &self.values {
            out.push(match elem(v) {
                Some(TensorElementType::Float16) => repast::<f16>(v, from, new_past, at, path)?,
                Some(TensorElementType::Float32) => repast::<f32>(v, from, new_past, at, path)?,
                other => {
                    return Err(DecoderError::Shape(format!(
                        "cannot pad a cache tensor of type {other:?}"
                    )))
                }
            });
        }
        self.values = out;
        self.past_len = new_past;
        Ok(())
    }

    /// Appends `other`'s rows after this cache's (same past length).
    pub(crate) fn append_rows(
        &mut self,
        mut other: KvCache,
        path: &Path,
    ) -> Result<(), DecoderError> {
        if self.batch == 0 {
            *self = other;
            return Ok(());
        }
        self.compact(path)?;
        other.compact(path)?;
        if other.past_len != self.past_len || other.values.len() != self.values.len() {
            return Err(DecoderError::Shape(format!(
                "cannot join a cache of past {} to one of past {}",
                other.past_len, self.past_len
            )));
        }
        let mut out = Vec::with_capacity(self.values.len());
        for (a, b) in self.values.iter().zip(other.values.iter()) {
            out.push(match elem(a) {
                Some(TensorElementType::Float16) => concat_batch::<f16>(a, b, path)?,
                Some(TensorElementType::Float32) => concat_batch::<f32>(a, b, path)?,
                other => {
                    return Err(DecoderError::Shape(format!(
                        "cannot join cache tensors of type {other:?}"
                    )))
                }
            });
        }
        self.values = out;
        self.batch += other.batch;
        Ok(())
    }
}
