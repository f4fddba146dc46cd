//! Host-side prompt preparation: feature rows, merging them into `inputs_embeds`, and position
//! ids. Left padding is `vidlm_model::left_pad`, the one padding step of vidlm.

use crate::DecoderError;

/// A block of feature rows (`rows × dim`, row-major) — image or video features projected to
/// the language model's hidden size.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Features {
    data: Vec<f32>,
    dim: usize,
}

impl Features {
    /// Wraps `data` as rows of `dim` values. `data.len()` must be a multiple of `dim`.
    pub fn new(data: Vec<f32>, dim: usize) -> Result<Self, DecoderError> {
        if dim == 0 || data.len() % dim != 0 {
            return Err(DecoderError::Shape(format!(
                "feature data of {} values is not a whole number of rows of {dim}",
                data.len()
            )));
        }
        Ok(Features { data, dim })
    }

    /// No rows, of width `dim`.
    pub fn empty(dim: usize) -> Self {
        Features { data: Vec::new(), dim }
    }

    /// Concatenates blocks (e.g. all images of a prompt, in order). All must share `dim`.
    pub fn concat<'a>(parts: impl IntoIterator<Item = &'a Features>) -> Result<Self, DecoderError> {
        let mut out: Option<Features> = None;
        for p in parts {
            match out.as_mut() {
                None => out = Some(p.clone()),
                Some(o) => {
                    if o.dim != p.dim {
                        return Err(DecoderError::Shape(format!(
                            "feature widths differ: {} vs {}",
                            o.dim, p.dim
                        )));
                    }
                    o.data.extend_from_slice(&p.data);
                }
            }
        }
        Ok(out.unwrap_or_default())
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Row width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Row-major values.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> Option<&[f32]> {
        self.data.get(i * self.dim..(i + 1) * self.dim)
    }
}

/// Writes the k-th feature row into the k-th position of `input_ids` that equals `token_id`
/// (transformers' `masked_scatter`, row-major). `embeds` is `input_ids.len() × hidden`.
///
/// The number of such positions must equal the number of rows
/// ([`DecoderError::FeatureCountMismatch`]), and the widths must match.
pub fn merge_features(
    embeds: &mut [f32],
    hidden: usize,
    input_ids: &[i64],
    token_id: i64,
    features: &Features,
    kind: &'static str,
) -> Result<(), DecoderError> {
    let n_tokens = input_ids.iter().filter(|&&t| t == token_id).count();
    if n_tokens != features.rows() {
        return Err(DecoderError::FeatureCountMismatch {
            kind,
            tokens: n_tokens,
            features: features.rows(),
        });
    }
    if n_tokens == 0 {
        return Ok(());
    }
    if features.dim() != hidden {
        return Err(DecoderError::Shape(format!(
            "{kind} features have width {}, the language model's hidden size is {hidden}",
            features.dim()
        )));
    }
    if embeds.len() != input_ids.len() * hidden {
        return Err(DecoderError::Shape(format!(
            "inputs_embeds has {} values, expected {}",
            embeds.len(),
            input_ids.len() * hidden
        )));
    }
    for (k, (pos, _)) in input_ids.iter().enumerate().filter(|(_, &t)| t == token_id).enumerate() {
        if let (Some(dst), Some(src)) =
            (embeds.get_mut(pos * hidden..(pos + 1) * hidden), features.row(k))
        {
            dst.copy_from_slice(src);
        }
    }
    Ok(())
}

/// Position ids as transformers' `_prepare_position_ids_for_generation` (5.23):
/// `cumsum(attention_mask) - 1`, with padded positions set to 0. `mask` is `batch × width`.
/// Only the last `seq` columns of each row are returned (`batch × seq`).
pub fn position_ids(mask: &[i64], width: usize, seq: usize) -> Vec<i64> {
    let mut out = Vec::with_capacity(mask.len().checked_div(width).unwrap_or(0) * seq);
    if width == 0 {
        return out;
    }
    for row in mask.chunks(width) {
        let mut cum = 0i64;
        let mut full = Vec::with_capacity(width);
        for &m in row {
            cum += m;
            full.push(if m == 0 { 0 } else { cum - 1 });
        }
        out.extend_from_slice(&full[width.saturating_sub(seq)..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_in_order_and_count_check() {
        let ids = [5, 9, 9, 7, 9];
        let mut e = vec![0.0f32; 5 * 2];
        let f = Features::new(vec![1.0, 1.5, 2.0, 2.5, 3.0, 3.5], 2).unwrap();
        merge_features(&mut e, 2, &ids, 9, &f, "image").unwrap();
        assert_eq!(e, vec![0.0, 0.0, 1.0, 1.5, 2.0, 2.5, 0.0, 0.0, 3.0, 3.5]);
        let two = Features::new(vec![1.0; 4], 2).unwrap();
        let err = merge_features(&mut e, 2, &ids, 9, &two, "video").unwrap_err();
        assert!(matches!(
            err,
            DecoderError::FeatureCountMismatch { kind: "video", tokens: 3, features: 2 }
        ));
        assert!(err.to_string().contains("do not match"));
        // no tokens, no features: fine
        merge_features(&mut e, 2, &ids, 42, &Features::empty(2), "video").unwrap();
        // wrong width
        let f3 = Features::new(vec![0.0; 9], 3).unwrap();
        assert!(matches!(
            merge_features(&mut e, 2, &ids, 9, &f3, "image"),
            Err(DecoderError::Shape(_))
        ));
    }

    #[test]
    fn features_validation_and_concat() {
        assert!(Features::new(vec![1.0; 5], 2).is_err());
        assert!(Features::new(vec![], 0).is_err());
        let a = Features::new(vec![1.0, 2.0], 2).unwrap();
        let b = Features::new(vec![3.0, 4.0, 5.0, 6.0], 2).unwrap();
        let c = Features::concat([&a, &b]).unwrap();
        assert_eq!(c.rows(), 3);
        assert_eq!(c.row(2), Some(&[5.0, 6.0][..]));
        assert!(Features::concat([&a, &Features::empty(3)]).is_err());
    }

    #[test]
    fn left_padding_and_positions_match_transformers() {
        use vidlm_model::left_pad;
        let (ids, mask, w) = left_pad(&[vec![1, 2, 3], vec![4]], 0);
        assert_eq!(w, 3);
        assert_eq!(ids, vec![1, 2, 3, 0, 0, 4]);
        assert_eq!(mask, vec![1, 1, 1, 0, 0, 1]);
        // torch: m.cumsum(-1)-1 masked_fill(m==0, 0)
        assert_eq!(position_ids(&mask, 3, 3), vec![0, 1, 2, 0, 0, 0]);
        let mask2 = [0, 1, 1, 1, 0, 0, 1, 1];
        assert_eq!(position_ids(&mask2, 4, 4), vec![0, 0, 1, 2, 0, 0, 0, 1]);
        assert_eq!(position_ids(&mask2, 4, 1), vec![2, 1]);
    }
}
