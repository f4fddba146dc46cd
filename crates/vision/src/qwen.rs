//! Grid-only host tables of the Qwen2.5-VL / Qwen3-VL vision graphs (docs/onnx-graphs.md,
//! "Qwen2.5-VL and Qwen3-VL (issue 20)"), exactly as `python/vidlm_export/qwen_host.py`
//! computes them (float32 where transformers computes in float32). Everything here depends on
//! one frame's patch grid `(h, w)` only, so a video's frames share one set of tables.
//!
//! * Qwen2.5-VL ([`qwen25_tables`]): the window index and its inverse, the padded batch of
//!   windows (`window_gather` / `window_scatter` / `window_key_bias`) and the 2D rotary tables in
//!   window order.
//! * Qwen3-VL ([`qwen3_tables`]): the bilinear (align_corners) position-interpolation indices
//!   and weights, and the 2D rotary tables in spatial-merge-block order.
//!
//! ```
//! use vidlm_vision::qwen::{window_index, block_major_hw};
//!
//! // A 4x4 patch grid, merge 2: patches in 2x2-block order.
//! let (hpos, wpos) = block_major_hw(4, 4, 2);
//! assert_eq!(&hpos[..8], &[0, 0, 1, 1, 0, 0, 1, 1]);
//! assert_eq!(&wpos[..8], &[0, 1, 0, 1, 2, 3, 2, 3]);
//! // Windows of 112 px hold 112/2/14 = 4 merged tokens a side: one window here.
//! let (widx, cu) = window_index(4, 4, 2, 112, 14);
//! assert_eq!(widx, vec![0, 1, 2, 3]);
//! assert_eq!(cu, vec![0, 16]);
//! ```

/// The additive bias of a masked key: float32's lowest finite value (not -inf).
pub const BIAS_MASKED: f32 = f32::MIN;

/// `(hpos, wpos)` of the `h·w` patches of one frame in spatial-merge-block order
/// (transformers' `get_vision_position_ids`).
pub fn block_major_hw(h: usize, w: usize, m: usize) -> (Vec<i64>, Vec<i64>) {
    let mut hp = Vec::with_capacity(h * w);
    let mut wp = Vec::with_capacity(h * w);
    for bh in 0..h / m {
        for bw in 0..w / m {
            for ih in 0..m {
                for iw in 0..m {
                    hp.push((bh * m + ih) as i64);
                    wp.push((bw * m + iw) as i64);
                }
            }
        }
    }
    (hp, wp)
}

/// The vision rotary inverse frequencies: `1 / theta^(arange(0, hd/2, 2) / (hd/2))`, float32.
pub fn vision_inv_freq(head_dim: usize, theta: f32) -> Vec<f32> {
    let spatial = head_dim / 2;
    (0..spatial).step_by(2).map(|i| 1.0f32 / theta.powf(i as f32 / spatial as f32)).collect()
}

/// `cos`, `sin` `[h·w, head_dim]` float32 in block-major order: `[cos(h·f), cos(w·f), cos(h·f),
/// cos(w·f)]` per patch (Qwen*VLVisionRotaryEmbedding, duplicated for rotate_half).
pub fn vision_rotary(
    h: usize,
    w: usize,
    m: usize,
    head_dim: usize,
    theta: f32,
) -> (Vec<f32>, Vec<f32>) {
    let (hp, wp) = block_major_hw(h, w, m);
    let inv = vision_inv_freq(head_dim, theta);
    let mut cos = Vec::with_capacity(h * w * head_dim);
    let mut sin = Vec::with_capacity(h * w * head_dim);
    for (&ph, &pw) in hp.iter().zip(&wp) {
        let fh: Vec<f32> = inv.iter().map(|f| ph as f32 * f).collect();
        let fw: Vec<f32> = inv.iter().map(|f| pw as f32 * f).collect();
        for _ in 0..2 {
            cos.extend(fh.iter().map(|x| x.cos()));
            cos.extend(fw.iter().map(|x| x.cos()));
            sin.extend(fh.iter().map(|x| x.sin()));
            sin.extend(fw.iter().map(|x| x.sin()));
        }
    }
    (cos, sin)
}

/// `(window_index [h·w/m²], cu_window_seqlens)` of one frame (transformers'
/// `get_vision_window_index`): merged tokens in window order, and the windows' boundaries in
/// patches (empty windows dropped). The grid is always padded by `vws - g % vws`, as there.
pub fn window_index(
    h: usize,
    w: usize,
    m: usize,
    window_size: usize,
    patch_size: usize,
) -> (Vec<i64>, Vec<i64>) {
    let vws = (window_size / m / patch_size).max(1);
    let (gh, gw) = (h / m, w / m);
    let (ph, pw) = (gh + vws - gh % vws, gw + vws - gw % vws);
    let (nwh, nww) = (ph / vws, pw / vws);
    let mut widx = Vec::with_capacity(gh * gw);
    let mut cu = vec![0i64];
    for wh in 0..nwh {
        for ww in 0..nww {
            let mut n = 0i64;
            for r in wh * vws..(wh + 1) * vws {
                for c in ww * vws..(ww + 1) * vws {
                    if r < gh && c < gw {
                        widx.push((r * gw + c) as i64);
                        n += 1;
                    }
                }
            }
            if n > 0 {
                let last = *cu.last().unwrap_or(&0);
                cu.push(last + n * (m * m) as i64);
            }
        }
    }
    (widx, cu)
}

/// The windows of one frame as a padded batch.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowBatch {
    /// Number of windows.
    pub windows: usize,
    /// Slots per window: the longest window.
    pub width: usize,
    /// `[windows, width]`: patch index (window order) of each slot; pad slots repeat the
    /// window's first patch.
    pub gather: Vec<i64>,
    /// `[patches]`: flat slot `i·width + j` of every patch.
    pub scatter: Vec<i64>,
    /// `[windows, width]`: 0 for a real key, [`BIAS_MASKED`] for a pad slot.
    pub key_bias: Vec<f32>,
}

/// The padded window batch of window boundaries `cu` (in patches).
pub fn window_batches(cu: &[i64]) -> WindowBatch {
    let lens: Vec<usize> = cu.windows(2).map(|p| (p[1] - p[0]) as usize).collect();
    let windows = lens.len();
    let width = lens.iter().copied().max().unwrap_or(0);
    let mut gather = vec![0i64; windows * width];
    let mut key_bias = vec![BIAS_MASKED; windows * width];
    let mut scatter = vec![0i64; cu.last().copied().unwrap_or(0) as usize];
    for (i, &ln) in lens.iter().enumerate() {
        let a = cu[i] as usize;
        for j in 0..width {
            gather[i * width + j] = if j < ln { (a + j) as i64 } else { a as i64 };
        }
        for j in 0..ln {
            key_bias[i * width + j] = 0.0;
            scatter[a + j] = (i * width + j) as i64;
        }
    }
    WindowBatch { windows, width, gather, scatter, key_bias }
}

/// The vision geometry the tables need (from `vision_config`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QwenVisionGeometry {
    /// `spatial_merge_size`.
    pub spatial_merge_size: usize,
    /// `hidden_size / num_heads`.
    pub head_dim: usize,
    /// The vision rotary theta (`rope_parameters.rope_theta`, 10000 by default).
    pub rope_theta: f32,
    /// Qwen2.5-VL: `window_size` in pixels.
    pub window_size: usize,
    /// Qwen2.5-VL: `patch_size` in pixels.
    pub patch_size: usize,
    /// Qwen3-VL: `num_position_embeddings` (a square side²).
    pub num_position_embeddings: usize,
}

/// The grid-only inputs of the Qwen2.5-VL vision graph for one frame grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Qwen25Tables {
    /// `window_index` `[h·w/m²]`.
    pub window_index: Vec<i64>,
    /// Its inverse permutation (a stable argsort).
    pub reverse_window_index: Vec<i64>,
    /// `rotary_cos` `[h·w, head_dim]` in window order.
    pub rotary_cos: Vec<f32>,
    /// `rotary_sin` `[h·w, head_dim]` in window order.
    pub rotary_sin: Vec<f32>,
    /// The padded window batch (`window_gather`, `window_scatter`, `window_key_bias`).
    pub windows: WindowBatch,
}

/// [`Qwen25Tables`] of one `(h, w)` grid (qwen_host.qwen25_vision_inputs).
pub fn qwen25_tables(h: usize, w: usize, g: &QwenVisionGeometry) -> Qwen25Tables {
    let m = g.spatial_merge_size;
    let hd = g.head_dim;
    let (widx, cu) = window_index(h, w, m, g.window_size, g.patch_size);
    let (cos, sin) = vision_rotary(h, w, m, hd, g.rope_theta);
    let unit = m * m * hd;
    let permute = |x: &[f32]| -> Vec<f32> {
        widx.iter()
            .flat_map(|&b| x[b as usize * unit..(b as usize + 1) * unit].iter().copied())
            .collect()
    };
    let mut reverse = vec![0i64; widx.len()];
    for (k, &b) in widx.iter().enumerate() {
        reverse[b as usize] = k as i64;
    }
    Qwen25Tables {
        rotary_cos: permute(&cos),
        rotary_sin: permute(&sin),
        reverse_window_index: reverse,
        windows: window_batches(&cu),
        window_index: widx,
    }
}

/// The grid-only inputs of the Qwen3-VL vision graph for one frame grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Qwen3Tables {
    /// `rotary_cos` `[h·w, head_dim]` in block-major order.
    pub rotary_cos: Vec<f32>,
    /// `rotary_sin` `[h·w, head_dim]`.
    pub rotary_sin: Vec<f32>,
    /// `pos_interp_indices` `[h·w, 4]`: the four bilinear taps into the `side x side` table.
    pub pos_interp_indices: Vec<i64>,
    /// `pos_interp_weights` `[h·w, 4]`.
    pub pos_interp_weights: Vec<f32>,
}

/// Bilinear, align_corners taps and weights on one axis, float32 as transformers computes them.
fn axis_taps(idx: i64, size: usize, side: usize) -> ([i64; 2], [f32; 2]) {
    let src = idx as f32 * (side as f32 - 1.0) / (size.saturating_sub(1).max(1) as f32);
    let fl = src.floor();
    let mut taps = [0i64; 2];
    let mut wts = [0f32; 2];
    for o in 0..2 {
        taps[o] = (fl as i64 + o as i64).clamp(0, side as i64 - 1);
        let dist = (src - fl - o as f32).abs();
        wts[o] = (1.0f32 - dist).max(0.0);
    }
    (taps, wts)
}

/// [`Qwen3Tables`] of one `(h, w)` grid (qwen_host.qwen3_vision_inputs).
pub fn qwen3_tables(h: usize, w: usize, g: &QwenVisionGeometry) -> Qwen3Tables {
    let m = g.spatial_merge_size;
    let side = (g.num_position_embeddings as f64).sqrt() as usize;
    let (hp, wp) = block_major_hw(h, w, m);
    let mut idx = Vec::with_capacity(h * w * 4);
    let mut wts = Vec::with_capacity(h * w * 4);
    for (&row, &col) in hp.iter().zip(&wp) {
        let (ht, hw) = axis_taps(row, h, side);
        let (wt, ww) = axis_taps(col, w, side);
        for a in 0..2 {
            for b in 0..2 {
                idx.push(ht[a] * side as i64 + wt[b]);
                wts.push(hw[a] * ww[b]);
            }
        }
    }
    let (cos, sin) = vision_rotary(h, w, m, g.head_dim, g.rope_theta);
    Qwen3Tables {
        rotary_cos: cos,
        rotary_sin: sin,
        pos_interp_indices: idx,
        pos_interp_weights: wts,
    }
}
