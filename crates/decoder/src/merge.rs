//! Host-side prompt preparation: feature rows, merging them into `inputs_embeds`, and position
//! ids. Left padding is `vidlm_model::left_pad`, the one padding step of vidlm.

use crate::DecoderError;

/// A block of feature rows (`rows × dim`, row-major) — image or video features projected to
/// the language model's hidden size — and, for models with DeepStack (Qwen3-VL), the rows of
/// each DeepStack level aligned with them (`levels × rows × dim`, level-major: row `i` of every
/// level goes to the prompt position that row `i` of the features goes to).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Features {
    data: Vec<f32>,
    dim: usize,
    /// `(levels, levels × rows × dim values)`.
    deepstack: Option<(usize, Vec<f32>)>,
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
        Ok(Features { data, dim, deepstack: None })
    }

    /// Adds the DeepStack levels of these rows: `levels × rows × dim` values, level-major.
    pub fn with_deepstack(mut self, levels: usize, data: Vec<f32>) -> Result<Self, DecoderError> {
        if levels == 0 || data.len() != levels * self.data.len() {
            return Err(DecoderError::Shape(format!(
                "{} DeepStack values for {levels} levels of {} rows of {}",
                data.len(),
                self.rows(),
                self.dim
            )));
        }
        self.deepstack = Some((levels, data));
        Ok(self)
    }

    /// No rows, of width `dim`.
    pub fn empty(dim: usize) -> Self {
        Features { data: Vec::new(), dim, deepstack: None }
    }

    /// DeepStack levels carried (0: none).
    pub fn deepstack_levels(&self) -> usize {
        self.deepstack.as_ref().map_or(0, |(l, _)| *l)
    }

    /// Row `i` of DeepStack level `level`.
    pub fn deepstack_row(&self, level: usize, i: usize) -> Option<&[f32]> {
        let (levels, data) = self.deepstack.as_ref()?;
        if level >= *levels || i >= self.rows() {
            return None;
        }
        let start = (level * self.rows() + i) * self.dim;
        data.get(start..start + self.dim)
    }

    /// Concatenates blocks (e.g. all images of a prompt, in order). All must share `dim`, and
    /// the blocks with rows the same DeepStack level count (their levels are concatenated level by
    /// level).
    pub fn concat<'a>(parts: impl IntoIterator<Item = &'a Features>) -> Result<Self, DecoderError> {
        let parts: Vec<&Features> = parts.into_iter().collect();
        let Some(first) = parts.first() else { return Ok(Features::default()) };
        let dim = first.dim;
        if let Some(p) = parts.iter().find(|p| p.dim != dim) {
            return Err(DecoderError::Shape(format!("feature widths differ: {dim} vs {}", p.dim)));
        }
        let with_rows: Vec<&&Features> = parts.iter().filter(|p| p.rows() > 0).collect();
        let levels = with_rows.first().map_or(0, |p| p.deepstack_levels());
        if with_rows.iter().any(|p| p.deepstack_levels() != levels) {
            return Err(DecoderError::Shape(
                "feature blocks with and without the same DeepStack levels".into(),
            ));
        }
        let data: Vec<f32> = parts.iter().flat_map(|p| p.data.iter().copied()).collect();
        let mut out = Features { data, dim, deepstack: None };
        if levels > 0 {
            let mut deep = Vec::with_capacity(levels * out.data.len());
            for l in 0..levels {
                for p in &with_rows {
                    if let Some((_, d)) = &p.deepstack {
                        let n = p.rows() * dim;
                        deep.extend_from_slice(&d[l * n..(l + 1) * n]);
                    }
                }
            }
            out.deepstack = Some((levels, deep));
        }
        Ok(out)
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

/// The DeepStack rows of one prompt: for each position, the visual row whose levels go there
/// (the k-th image placeholder takes image row k, likewise videos: the rows [`merge_features`]
/// puts into `inputs_embeds`), every other position zero (docs/onnx-graphs.md, "Merging features
/// into the prompt"). Kept sparse; [`DeepstackRows::write`] makes the dense
/// `deepstack_visual_embeds` rows of any slice of the prompt (a chunk, or a padded batch row).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct DeepstackRows {
    levels: usize,
    dim: usize,
    /// Per prompt position: its index among the visual rows.
    slots: Vec<Option<usize>>,
    /// `levels × visual × dim`, level-major.
    data: Vec<f32>,
    visual: usize,
}

impl DeepstackRows {
    /// The rows of a prompt whose placeholders take `parts` (`(token id, features)`), for a
    /// graph with `levels` levels of width `dim`. Features without DeepStack levels where the
    /// graph takes them (or with another level count) are a shape error.
    pub(crate) fn of_prompt(
        ids: &[i64],
        parts: &[(Option<i64>, Option<&Features>)],
        levels: usize,
        dim: usize,
    ) -> Result<Self, DecoderError> {
        let mut slots = vec![None; ids.len()];
        let mut sources: Vec<(&Features, usize)> = Vec::new();
        for (token, feats) in parts {
            let (Some(t), Some(f)) = (token, feats) else { continue };
            if f.rows() == 0 {
                continue;
            }
            if f.deepstack_levels() != levels {
                return Err(DecoderError::Shape(format!(
                    "the decoder takes {levels} DeepStack levels, the features carry {}",
                    f.deepstack_levels()
                )));
            }
            for (k, (pos, _)) in ids.iter().enumerate().filter(|(_, &id)| id == *t).enumerate() {
                slots[pos] = Some(sources.len());
                sources.push((f, k));
            }
        }
        let visual = sources.len();
        let mut data = Vec::with_capacity(levels * visual * dim);
        for l in 0..levels {
            for (f, k) in &sources {
                let row = f.deepstack_row(l, *k).filter(|r| r.len() == dim).ok_or_else(|| {
                    DecoderError::Shape(format!(
                        "no DeepStack row {k} of width {dim} at level {l} (merge counts rows first)"
                    ))
                })?;
                data.extend_from_slice(row);
            }
        }
        Ok(DeepstackRows { levels, dim, slots, data, visual })
    }

    /// Whether any of the positions `start..end` is visual.
    pub(crate) fn any_visual(&self, start: usize, end: usize) -> bool {
        self.slots.get(start..end).is_some_and(|s| s.iter().any(Option::is_some))
    }

    /// Writes positions `start..end` of the prompt into row `row` of a dense
    /// `[levels, batch, width, dim]` tensor `out`, from column `at` (zeros are left in place).
    pub(crate) fn write(
        &self,
        out: &mut [f32],
        (batch, row, width, at): (usize, usize, usize, usize),
        start: usize,
        end: usize,
    ) {
        let d = self.dim;
        for l in 0..self.levels {
            for (i, slot) in self.slots.get(start..end).unwrap_or_default().iter().enumerate() {
                let Some(v) = slot else { continue };
                let src = &self.data[(l * self.visual + v) * d..(l * self.visual + v + 1) * d];
                let o = ((l * batch + row) * width + at + i) * d;
                if let Some(dst) = out.get_mut(o..o + d) {
                    dst.copy_from_slice(src);
                }
            }
        }
    }
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
