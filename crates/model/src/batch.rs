//! Forming a batch: left padding, once.
//!
//! Conversations travel unpadded from the processor to the decoder; the batch is padded where
//! it is formed (the decoder's prefill), and the transformers-shaped `input_ids` /
//! `attention_mask` tensors of `vidlm preprocess` are made by the same function.

/// Left-pads `rows` to the longest with `pad_id`. Returns `(ids, attention_mask, width)`, both
/// `rows.len() × width`, row-major (transformers' `padding=True, padding_side="left"`).
///
/// ```
/// let (ids, mask, width) = vidlm_model::left_pad(&[vec![1, 2, 3], vec![4]], 0);
/// assert_eq!((ids, mask, width), (vec![1, 2, 3, 0, 0, 4], vec![1, 1, 1, 0, 0, 1], 3));
/// ```
pub fn left_pad<R: AsRef<[i64]>>(rows: &[R], pad_id: i64) -> (Vec<i64>, Vec<i64>, usize) {
    let width = rows.iter().map(|r| r.as_ref().len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(rows.len() * width);
    let mut mask = Vec::with_capacity(rows.len() * width);
    for r in rows {
        let r = r.as_ref();
        let pad = width - r.len();
        ids.extend(std::iter::repeat_n(pad_id, pad));
        ids.extend_from_slice(r);
        mask.extend(std::iter::repeat_n(0i64, pad));
        mask.extend(std::iter::repeat_n(1i64, r.len()));
    }
    (ids, mask, width)
}
