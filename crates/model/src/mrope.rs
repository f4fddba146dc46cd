//! M-RoPE position ids of the Qwen2.5-VL / Qwen3-VL decoders: transformers 5.23's
//! `get_rope_index`, computed once on the host, in this one place (docs/onnx-graphs.md,
//! "Qwen2.5-VL and Qwen3-VL (issue 20)").
//!
//! The traps it reproduces:
//! * after a vision block the position advances by `max(h, w) / merge`, not by the block's
//!   largest position + 1 (the original Qwen code's rule);
//! * Qwen2.5-VL's video temporal positions are `trunc(t · (tokens_per_second · second_per_grid_t))`
//!   in float32 (`second_per_grid_ts` is a float32 tensor in transformers); images advance by 1;
//! * Qwen3-VL splits every video `[t, h, w]` into `t` one-frame grids `[1, h, w]` (each frame is
//!   its own run of video tokens, between the timestamp text);
//! * the grids (and `second_per_grid_ts`) are consumed in order across the rows of a batch;
//! * left padding: a row's positions are computed over its unmasked tokens only; masked slots
//!   keep position 0;
//! * decode step `k` (0-based) of a row is at the row's last prompt position + 1 + k on all three
//!   rows, as `generate` appends positions — not at `rope_deltas + length`.
//!
//! ```
//! use vidlm_model::mrope::{rope_index, MropeRule, TemporalRule};
//!
//! let rule = MropeRule {
//!     spatial_merge_size: 2,
//!     image_token_id: 7,
//!     video_token_id: 8,
//!     temporal: TemporalRule::SecondsPerGrid { tokens_per_second: 2.0 },
//! };
//! // "a b <image 1x4x4 → 4 tokens> c"
//! let ids = [1, 2, 7, 7, 7, 7, 3];
//! let pos = rope_index(&rule, &ids, &[1; 7], 1, &[[1, 4, 4]], &[], None)?;
//! assert_eq!(pos.row(0, 0), &[0, 1, 2, 2, 2, 2, 4]); // temporal
//! assert_eq!(pos.row(1, 0), &[0, 1, 2, 2, 3, 3, 4]); // height
//! assert_eq!(pos.row(2, 0), &[0, 1, 2, 3, 2, 3, 4]); // width
//! assert_eq!(pos.decode(0, 0), [5, 5, 5]);
//! # Ok::<(), vidlm_model::mrope::MropeError>(())
//! ```

use crate::error::ErrorKind;

/// How a family turns a video's temporal grid index into a temporal position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TemporalRule {
    /// Qwen2.5-VL: `trunc(t · (tokens_per_second · second_per_grid_t))` in float32;
    /// `second_per_grid_t` defaults to 1 when the processor gives none.
    SecondsPerGrid {
        /// `vision_config.tokens_per_second`.
        tokens_per_second: f32,
    },
    /// Qwen3-VL: a video `[t, h, w]` is `t` one-frame grids `[1, h, w]`, each its own run of
    /// video tokens; its temporal position is the run's start.
    OneFrameGrids,
}

/// What the rope index needs to know about a model (the family's row names the rule).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MropeRule {
    /// `vision_config.spatial_merge_size`.
    pub spatial_merge_size: usize,
    /// `image_token_id`.
    pub image_token_id: i64,
    /// `video_token_id`.
    pub video_token_id: i64,
    /// The family's temporal rule.
    pub temporal: TemporalRule,
}

/// Why the rope index cannot be computed: the prompt's placeholders and the grids disagree.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum MropeError {
    /// The ids / mask lengths are not `batch · seq`.
    #[error("input_ids has {ids} entries and attention_mask {mask}; expected batch {batch} x seq")]
    Shape {
        /// `input_ids` length.
        ids: usize,
        /// `attention_mask` length.
        mask: usize,
        /// Rows.
        batch: usize,
    },
    /// A run of placeholder tokens has no grid left to describe it.
    #[error("a run of {kind} placeholder tokens has no {kind} grid left")]
    MissingGrid {
        /// "image" or "video".
        kind: &'static str,
    },
    /// A grid that is not a positive multiple of the merge size.
    #[error("{kind} grid {grid:?} is not a positive multiple of the spatial merge size {merge}")]
    BadGrid {
        /// "image" or "video".
        kind: &'static str,
        /// The grid `[t, h, w]`.
        grid: [i64; 3],
        /// The merge size.
        merge: usize,
    },
    /// A run of placeholders whose length is not its grid's token count.
    #[error("{tokens} {kind} placeholder tokens for a grid {grid:?} of {expected} positions")]
    CountMismatch {
        /// "image" or "video".
        kind: &'static str,
        /// Placeholder tokens in the run.
        tokens: usize,
        /// The grid used.
        grid: [i64; 3],
        /// The grid's positions.
        expected: usize,
    },
    /// Grids left over after the prompt.
    #[error("{unused} {kind} grid(s) have no placeholder tokens in the prompt")]
    UnusedGrids {
        /// "image" or "video".
        kind: &'static str,
        /// How many.
        unused: usize,
    },
    /// `second_per_grid_ts` does not have one value per video.
    #[error("second_per_grid_ts has {got} values for {videos} videos")]
    SecondsPerGrid {
        /// Values given.
        got: usize,
        /// Videos.
        videos: usize,
    },
}

impl MropeError {
    /// The category: every case is a request whose prompt and media disagree.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::BadRequest
    }
}

/// Position ids `[3, batch, seq]` (row-major) and each row's last prompt position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MropePositions {
    /// Rows.
    pub batch: usize,
    /// Tokens per row (padded width).
    pub seq: usize,
    /// `[3, batch, seq]`, row-major, as the decoder graph's `position_ids` takes them.
    pub ids: Vec<i64>,
}

impl MropePositions {
    /// Axis `axis` (0 temporal, 1 height, 2 width) of batch row `row`.
    pub fn row(&self, axis: usize, row: usize) -> &[i64] {
        let a = (axis * self.batch + row) * self.seq;
        &self.ids[a..a + self.seq]
    }

    /// The three positions of the last prompt token of `row` (for left-padded rows the last
    /// slot is a real token).
    pub fn last(&self, row: usize) -> [i64; 3] {
        let s = self.seq.saturating_sub(1);
        [0, 1, 2].map(|a| self.ids[(a * self.batch + row) * self.seq + s])
    }

    /// The positions of decode step `step` (0-based) of `row`: last prompt position + 1 + step
    /// on each axis, as `generate` appends them.
    pub fn decode(&self, row: usize, step: i64) -> [i64; 3] {
        decode_positions(self.last(row), step)
    }

    /// Positions `[3, start..end]` of one row as a `[3, end-start]` block (a prefill chunk).
    pub fn chunk(&self, row: usize, start: usize, end: usize) -> Vec<i64> {
        let mut out = Vec::with_capacity(3 * (end - start));
        for a in 0..3 {
            out.extend_from_slice(&self.row(a, row)[start..end]);
        }
        out
    }
}

/// Decode step `step` (0-based) after a prompt whose last positions are `last`.
pub fn decode_positions(last: [i64; 3], step: i64) -> [i64; 3] {
    last.map(|p| p + 1 + step)
}

/// `get_rope_index` of transformers 5.23 over a `[batch, seq]` prompt (`input_ids` and
/// `attention_mask` row-major). `image_grids` / `video_grids` are `[t, h, w]` in patches, in prompt
/// order across the rows; `second_per_grid_ts` one float32 per video (Qwen2.5-VL only; ignored
/// by [`TemporalRule::OneFrameGrids`], where it does not exist).
pub fn rope_index(
    rule: &MropeRule,
    input_ids: &[i64],
    attention_mask: &[i64],
    batch: usize,
    image_grids: &[[i64; 3]],
    video_grids: &[[i64; 3]],
    second_per_grid_ts: Option<&[f32]>,
) -> Result<MropePositions, MropeError> {
    if batch == 0 || input_ids.len() % batch != 0 || attention_mask.len() != input_ids.len() {
        return Err(MropeError::Shape { ids: input_ids.len(), mask: attention_mask.len(), batch });
    }
    let seq = input_ids.len() / batch;
    let m = rule.spatial_merge_size.max(1) as i64;
    let videos: Vec<[i64; 3]> = match rule.temporal {
        TemporalRule::OneFrameGrids => video_grids
            .iter()
            .flat_map(|g| std::iter::repeat_n([1, g[1], g[2]], g[0].max(0) as usize))
            .collect(),
        TemporalRule::SecondsPerGrid { .. } => video_grids.to_vec(),
    };
    if let (TemporalRule::SecondsPerGrid { .. }, Some(s)) = (rule.temporal, second_per_grid_ts) {
        if s.len() != video_grids.len() {
            return Err(MropeError::SecondsPerGrid { got: s.len(), videos: video_grids.len() });
        }
    }
    let (mut next_img, mut next_vid) = (0usize, 0usize);
    let mut ids_out = vec![0i64; 3 * batch * seq];
    for r in 0..batch {
        let row_ids = &input_ids[r * seq..(r + 1) * seq];
        let row_mask = &attention_mask[r * seq..(r + 1) * seq];
        let valid: Vec<usize> = (0..seq).filter(|&i| row_mask[i] == 1).collect();
        let kind_of = |id: i64| {
            if id == rule.image_token_id {
                1u8
            } else if id == rule.video_token_id {
                2
            } else {
                0
            }
        };
        let mut cols: [Vec<i64>; 3] = Default::default();
        let mut cur = 0i64;
        let mut i = 0usize;
        while i < valid.len() {
            let key = kind_of(row_ids[valid[i]]);
            let mut j = i + 1;
            while j < valid.len() && kind_of(row_ids[valid[j]]) == key {
                j += 1;
            }
            let n = j - i;
            if key == 0 {
                for c in &mut cols {
                    c.extend((0..n as i64).map(|k| k + cur));
                }
                cur += n as i64;
                i = j;
                continue;
            }
            let (kind, grid, interval) = if key == 1 {
                let g =
                    *image_grids.get(next_img).ok_or(MropeError::MissingGrid { kind: "image" })?;
                next_img += 1;
                ("image", g, None)
            } else {
                let g = *videos.get(next_vid).ok_or(MropeError::MissingGrid { kind: "video" })?;
                let interval = match rule.temporal {
                    TemporalRule::SecondsPerGrid { tokens_per_second } => {
                        let s = second_per_grid_ts.map_or(1.0f32, |s| s[next_vid]);
                        Some(tokens_per_second * s)
                    }
                    TemporalRule::OneFrameGrids => None,
                };
                next_vid += 1;
                ("video", g, interval)
            };
            let [t, h, w] = grid;
            if t <= 0 || h <= 0 || w <= 0 || h % m != 0 || w % m != 0 {
                return Err(MropeError::BadGrid { kind, grid, merge: m as usize });
            }
            let (gh, gw) = (h / m, w / m);
            let expected = (t * gh * gw) as usize;
            if expected != n {
                return Err(MropeError::CountMismatch { kind, tokens: n, grid, expected });
            }
            for tt in 0..t {
                // float32 product, truncated (`.long()`), as transformers computes it.
                let tpos = match interval {
                    Some(iv) => ((tt as f32) * iv).trunc() as i64,
                    None => tt,
                };
                for hh in 0..gh {
                    for ww in 0..gw {
                        cols[0].push(tpos + cur);
                        cols[1].push(hh + cur);
                        cols[2].push(ww + cur);
                    }
                }
            }
            cur += h.max(w) / m;
            i = j;
        }
        for (a, col) in cols.iter().enumerate() {
            for (k, &slot) in valid.iter().enumerate() {
                ids_out[(a * batch + r) * seq + slot] = col[k];
            }
        }
    }
    if next_img != image_grids.len() {
        return Err(MropeError::UnusedGrids {
            kind: "image",
            unused: image_grids.len() - next_img,
        });
    }
    if next_vid != videos.len() {
        return Err(MropeError::UnusedGrids { kind: "video", unused: videos.len() - next_vid });
    }
    Ok(MropePositions { batch, seq, ids: ids_out })
}
