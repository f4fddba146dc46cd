//! Membership changes of a running batch's KV cache: left-padding along the past axis, joining
//! two caches along the batch axis, trimming shared leading padding. These copy, so the running
//! batch calls them only when rows join or leave, never on an ordinary decode step.

use std::path::Path;

use half::f16;
use vidlm_ort::ort::value::{DynValue, PrimitiveTensorElementType, Tensor};
use vidlm_ort::TensorElementType;

use crate::model::KvCache;
use crate::DecoderError;

fn ort(path: &Path) -> impl Fn(vidlm_ort::ort::Error) -> DecoderError + '_ {
    move |e| DecoderError::Runtime { path: path.to_path_buf(), source: e }
}

/// `[batch, heads, past, dim]` of a cache tensor.
fn dims4(v: &DynValue) -> Result<[usize; 4], DecoderError> {
    let s: Vec<i64> = v.dtype().tensor_shape().map(|s| s.iter().copied().collect()).unwrap_or_default();
    match s.as_slice() {
        [b, h, p, d] => Ok([*b as usize, *h as usize, *p as usize, *d as usize]),
        other => Err(DecoderError::Shape(format!("KV cache tensor of shape {other:?}, expected rank 4"))),
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
        return Err(DecoderError::Shape(format!("cannot move {keep} past columns to {at}..{new_past}")));
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
        return Err(DecoderError::Shape(format!("cannot join caches [{ba},{h},{p},{d}] and [{bb},{h2},{p2},{d2}]")));
    }
    let (_, da) = a.try_extract_tensor::<T>().map_err(ort(path))?;
    let (_, db) = b.try_extract_tensor::<T>().map_err(ort(path))?;
    let mut out = Vec::with_capacity(da.len() + db.len());
    out.extend_from_slice(da);
    out.extend_from_slice(db);
    Ok(Tensor::from_array(([ba + bb, h, p, d], out)).map_err(ort(path))?.into_dyn())
}

fn elem(v: &DynValue) -> Option<TensorElementType> {
    v.dtype().tensor_type()
}

impl KvCache {
    /// Moves the past columns `from..` to start at `at` in a past of `new_past` columns, zeros
    /// elsewhere: `from > 0` trims leading padding, `at > 0` adds it.
    pub(crate) fn repast(&mut self, from: usize, new_past: usize, at: usize, path: &Path) -> Result<(), DecoderError> {
        if from == 0 && at == 0 && new_past == self.past_len {
            return Ok(());
        }
        let mut out = Vec::with_capacity(self.values.len());
        for v in &self.values {
            out.push(match elem(v) {
                Some(TensorElementType::Float16) => repast::<f16>(v, from, new_past, at, path)?,
                Some(TensorElementType::Float32) => repast::<f32>(v, from, new_past, at, path)?,
                other => return Err(DecoderError::Shape(format!("cannot pad a cache tensor of type {other:?}"))),
            });
        }
        self.values = out;
        self.past_len = new_past;
        Ok(())
    }

    /// Appends `other`'s rows after this cache's (same past length).
    pub(crate) fn append_rows(&mut self, other: KvCache, path: &Path) -> Result<(), DecoderError> {
        if self.batch == 0 {
            *self = other;
            return Ok(());
        }
        if other.past_len != self.past_len || other.values.len() != self.values.len() {
            return Err(DecoderError::Shape(format!("cannot join a cache of past {} to one of past {}", other.past_len, self.past_len)));
        }
        let mut out = Vec::with_capacity(self.values.len());
        for (a, b) in self.values.iter().zip(other.values.iter()) {
            out.push(match elem(a) {
                Some(TensorElementType::Float16) => concat_batch::<f16>(a, b, path)?,
                Some(TensorElementType::Float32) => concat_batch::<f32>(a, b, path)?,
                other => return Err(DecoderError::Shape(format!("cannot join cache tensors of type {other:?}"))),
            });
        }
        self.values = out;
        self.batch += other.batch;
        Ok(())
    }
}
