//! Host-side feature math of the LLaVA families (hf-llava-family-spec §4.2, §4.4), exactly as
//! transformers 5.23 computes it: `select_best_resolution`, `unpad_image`, the anyres tile
//! stitching of `pack_image_features`, bilinear `F.interpolate` (align_corners=False, no
//! antialias) and OneVision's `apply_pooling`.
//!
//! Features are row-major `[tokens, dim]` (`tokens = grid_h * grid_w`).

use crate::VisionError;

/// `select_best_resolution(original_size=(h, w), possible_resolutions=[[H, W], ...])`: the
/// pinpoint with the largest effective resolution, then the least waste (first on ties).
pub fn select_best_resolution(h: usize, w: usize, pinpoints: &[[usize; 2]]) -> Option<[usize; 2]> {
    let mut best = None;
    let mut max_eff = 0usize;
    let mut min_waste = usize::MAX;
    for &[ph, pw] in pinpoints {
        if h == 0 || w == 0 {
            return None;
        }
        let scale = f64::min(pw as f64 / w as f64, ph as f64 / h as f64);
        let dw = (w as f64 * scale) as usize;
        let dh = (h as f64 * scale) as usize;
        let eff = usize::min(dw * dh, w * h);
        let waste = (ph * pw).saturating_sub(eff);
        if eff > max_eff || (eff == max_eff && waste < min_waste) {
            max_eff = eff;
            min_waste = waste;
            best = Some([ph, pw]);
        }
    }
    best
}

/// `get_anyres_image_grid_shape`: tiles (rows, cols) for an image of `(h, w)`.
pub fn anyres_grid_shape(h: usize, w: usize, pinpoints: &[[usize; 2]], tile: usize) -> Option<(usize, usize)> {
    if tile == 0 {
        return None;
    }
    select_best_resolution(h, w, pinpoints).map(|[ph, pw]| (ph / tile, pw / tile))
}

/// Python's `int(round(x, 7))` for the non-negative values used by `unpad_image`.
fn round7_trunc(x: f64) -> usize {
    let r = (x * 1e7).round_ties_even() / 1e7;
    if r <= 0.0 {
        0
    } else {
        r as usize
    }
}

/// `unpad_image` for a `(cur_h, cur_w)` feature grid of an image originally `(orig_h, orig_w)`:
/// returns the kept `(row_start, row_end, col_start, col_end)`.
pub fn unpad_bounds(cur_h: usize, cur_w: usize, orig_h: usize, orig_w: usize) -> (usize, usize, usize, usize) {
    if orig_h == 0 || orig_w == 0 || cur_h == 0 || cur_w == 0 {
        return (0, cur_h, 0, cur_w);
    }
    let orig_ar = orig_w as f64 / orig_h as f64;
    let cur_ar = cur_w as f64 / cur_h as f64;
    if orig_ar > cur_ar {
        let scale = cur_w as f64 / orig_w as f64;
        let new_h = round7_trunc(orig_h as f64 * scale);
        let pad = cur_h.saturating_sub(new_h) / 2;
        (pad, cur_h - pad, 0, cur_w)
    } else {
        let scale = cur_h as f64 / orig_h as f64;
        let new_w = round7_trunc(orig_w as f64 * scale);
        let pad = cur_w.saturating_sub(new_w) / 2;
        (0, cur_h, pad, cur_w - pad)
    }
}

/// A `[height, width, dim]` grid of feature vectors (row-major, channel-last).
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    /// Rows.
    pub h: usize,
    /// Columns.
    pub w: usize,
    /// Channels.
    pub dim: usize,
    /// `h * w * dim` values.
    pub data: Vec<f32>,
}

impl Grid {
    fn at(&self, y: usize, x: usize) -> &[f32] {
        let i = (y * self.w + x) * self.dim;
        &self.data[i..i + self.dim]
    }
}

/// `F.interpolate(mode="bilinear", align_corners=False)` (no antialias) of a grid to `(oh, ow)`.
pub fn bilinear_resize(g: &Grid, oh: usize, ow: usize) -> Grid {
    let mut out = vec![0f32; oh * ow * g.dim];
    if g.h == 0 || g.w == 0 || oh == 0 || ow == 0 {
        return Grid { h: oh, w: ow, dim: g.dim, data: out };
    }
    let coords = |out_len: usize, in_len: usize| -> Vec<(usize, usize, f32)> {
        let scale = in_len as f32 / out_len as f32;
        (0..out_len)
            .map(|d| {
                let src = ((d as f32 + 0.5) * scale - 0.5).max(0.0);
                let i0 = (src as usize).min(in_len - 1);
                let i1 = if i0 + 1 < in_len { i0 + 1 } else { i0 };
                let l = src - i0 as f32;
                (i0, i1, l)
            })
            .collect()
    };
    let ys = coords(oh, g.h);
    let xs = coords(ow, g.w);
    for (oy, &(y0, y1, ly)) in ys.iter().enumerate() {
        for (ox, &(x0, x1, lx)) in xs.iter().enumerate() {
            let (a, b, c, d) = (g.at(y0, x0), g.at(y0, x1), g.at(y1, x0), g.at(y1, x1));
            let dst = &mut out[(oy * ow + ox) * g.dim..(oy * ow + ox + 1) * g.dim];
            for k in 0..g.dim {
                // torch's CPU kernel: h0lambda * (w0lambda * v00 + w1lambda * v01) + h1lambda * (...)
                dst[k] = (1.0 - ly) * ((1.0 - lx) * a[k] + lx * b[k]) + ly * ((1.0 - lx) * c[k] + lx * d[k]);
            }
        }
    }
    Grid { h: oh, w: ow, dim: g.dim, data: out }
}

/// Which anyres variant packs the tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackStyle {
    /// LLaVA-OneVision: `anyres_max_N` downscale when the unpadded grid exceeds N tiles by 10 %.
    OneVision {
        /// N of `anyres_max_N` (9 for the released checkpoints).
        max_num_patches: usize,
    },
    /// LLaVA-NeXT(-Video): no downscale.
    Next,
}

/// `pack_image_features` for one image.
///
/// `patches` holds `num_patches` blocks of `side * side` rows of width `dim` (the vision graph's
/// output for the base image followed by the tiles, row-major). `orig` is the original `(h, w)`.
/// Returns the packed rows (`tokens × dim`).
#[allow(clippy::too_many_arguments)] // mirrors transformers' pack_image_features + config fields
pub fn pack_image(
    patches: &[f32],
    num_patches: usize,
    side: usize,
    dim: usize,
    orig: (usize, usize),
    pinpoints: &[[usize; 2]],
    tile_size: usize,
    newline: Option<&[f32]>,
    style: PackStyle,
) -> Result<Vec<f32>, VisionError> {
    let per = side * side * dim;
    if num_patches == 0 || patches.len() != num_patches * per {
        return Err(VisionError::Shape(format!(
            "image features have {} values, expected {num_patches} patches of {side}x{side}x{dim}",
            patches.len()
        )));
    }
    if let Some(nl) = newline {
        if nl.len() != dim {
            return Err(VisionError::Shape(format!("image_newline has {} values, features have width {dim}", nl.len())));
        }
    }
    let base = &patches[..per];
    if num_patches == 1 {
        let mut out = base.to_vec();
        if let Some(nl) = newline {
            out.extend_from_slice(nl);
        }
        return Ok(out);
    }
    let (gh, gw) = anyres_grid_shape(orig.0, orig.1, pinpoints, tile_size)
        .ok_or_else(|| VisionError::Shape(format!("no anyres grid for an image of {}x{}", orig.0, orig.1)))?;
    if gh * gw != num_patches - 1 {
        return Err(VisionError::Shape(format!(
            "image of {}x{} needs {gh}x{gw} tiles + base, got {num_patches} patches",
            orig.0, orig.1
        )));
    }
    // Stitch tiles: stitched[i*side + a][j*side + b] = tile[i*gw + j][a*side + b].
    let (ch, cw) = (gh * side, gw * side);
    let (r0, r1, c0, c1) = unpad_bounds(ch, cw, orig.0, orig.1);
    let (uh, uw) = (r1 - r0, c1 - c0);
    let mut grid = Grid { h: uh, w: uw, dim, data: Vec::with_capacity(uh * uw * dim) };
    for y in r0..r1 {
        for x in c0..c1 {
            let (i, a) = (y / side, y % side);
            let (j, b) = (x / side, x % side);
            let tile = 1 + i * gw + j;
            let off = tile * per + (a * side + b) * dim;
            grid.data.extend_from_slice(&patches[off..off + dim]);
        }
    }
    if let PackStyle::OneVision { max_num_patches } = style {
        let ratio = ((uh * uw) as f64 / (max_num_patches * side * side) as f64).sqrt();
        if ratio > 1.1 {
            let oh = (uh as f64 / ratio).floor() as usize;
            let ow = (uw as f64 / ratio).floor() as usize;
            grid = bilinear_resize(&grid, oh, ow);
        }
    }
    let mut out = Vec::with_capacity(per + grid.h * (grid.w + 1) * dim);
    out.extend_from_slice(base);
    for y in 0..grid.h {
        out.extend_from_slice(&grid.data[y * grid.w * dim..(y + 1) * grid.w * dim]);
        if let Some(nl) = newline {
            out.extend_from_slice(nl);
        }
    }
    Ok(out)
}

/// OneVision `apply_pooling` on `frames` blocks of `side*side` rows: bilinear to
/// `ceil(side/2)²` per frame, frames concatenated.
pub fn onevision_pool_frames(features: &[f32], frames: usize, side: usize, dim: usize) -> Result<Vec<f32>, VisionError> {
    let per = side * side * dim;
    if features.len() != frames * per {
        return Err(VisionError::Shape(format!("video features have {} values, expected {frames}x{side}x{side}x{dim}", features.len())));
    }
    let out_side = side.div_ceil(2);
    let mut out = Vec::with_capacity(frames * out_side * out_side * dim);
    for f in 0..frames {
        let g = Grid { h: side, w: side, dim, data: features[f * per..(f + 1) * per].to_vec() };
        out.extend(bilinear_resize(&g, out_side, out_side).data);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ov_pinpoints(s: usize) -> Vec<[usize; 2]> {
        let mut v = Vec::new();
        for a in 1..=6 {
            for b in 1..=6 {
                v.push([s * a, s * b]);
            }
        }
        v
    }

    #[test]
    fn best_resolution_matches_spec_examples() {
        // radar image 899x1024 -> (1152, 1152) for OV; NV -> (672, 672)
        assert_eq!(select_best_resolution(899, 1024, &ov_pinpoints(384)), Some([1152, 1152]));
        let nv = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]];
        assert_eq!(select_best_resolution(899, 1024, &nv), Some([672, 672]));
        assert_eq!(select_best_resolution(0, 10, &nv), None);
    }

    /// Token counts of OV single images from the spec (§3): unpadded + newline rows + 729.
    fn ov_tokens(h: usize, w: usize) -> usize {
        let side = 27;
        let (gh, gw) = anyres_grid_shape(h, w, &ov_pinpoints(384), 384).unwrap();
        let n = 1 + gh * gw;
        let dim = 1;
        let patches = vec![0.0f32; n * side * side * dim];
        let nl = [1.0f32];
        pack_image(&patches, n, side, dim, (h, w), &ov_pinpoints(384), 384, Some(&nl), PackStyle::OneVision { max_num_patches: 9 })
            .unwrap()
            .len()
    }

    #[test]
    fn onevision_token_counts_match_processor() {
        assert_eq!(ov_tokens(899, 1024), 6551);
        assert_eq!(ov_tokens(480, 640), 2929);
        assert_eq!(ov_tokens(640, 480), 2943);
        assert_eq!(ov_tokens(384, 384), 1485);
        assert_eq!(ov_tokens(224, 224), 1485);
        assert_eq!(ov_tokens(1080, 1920), 7269);
        assert_eq!(ov_tokens(100, 1000), 1467);
    }

    fn nv_tokens(h: usize, w: usize) -> usize {
        let nv = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]];
        let (gh, gw) = anyres_grid_shape(h, w, &nv, 336).unwrap();
        let n = 1 + gh * gw;
        let patches = vec![0.0f32; n * 576];
        pack_image(&patches, n, 24, 1, (h, w), &nv, 336, Some(&[1.0]), PackStyle::Next).unwrap().len()
    }

    #[test]
    fn next_token_counts_match_processor() {
        assert_eq!(nv_tokens(899, 1024), 2634);
        assert_eq!(nv_tokens(480, 640), 2340);
        assert_eq!(nv_tokens(336, 336), 1176);
        assert_eq!(nv_tokens(503, 316), 1526);
    }

    #[test]
    fn stitching_order_and_unpad() {
        // 2 tiles side by side (1x2 grid), side 2, dim 1; image exactly 2:1 -> no unpad.
        let pins = [[4, 8]];
        let base = [0.0, 0.0, 0.0, 0.0];
        let t0 = [1.0, 2.0, 3.0, 4.0];
        let t1 = [5.0, 6.0, 7.0, 8.0];
        let patches: Vec<f32> = base.iter().chain(&t0).chain(&t1).copied().collect();
        let out = pack_image(&patches, 3, 2, 1, (4, 8), &pins, 4, Some(&[9.0]), PackStyle::Next).unwrap();
        // rows: [1 2 5 6 | nl], [3 4 7 8 | nl]
        assert_eq!(&out[4..], &[1.0, 2.0, 5.0, 6.0, 9.0, 3.0, 4.0, 7.0, 8.0, 9.0]);
        // Wrong patch count is an error, not a panic.
        assert!(pack_image(&patches[..8], 2, 2, 1, (4, 8), &pins, 4, None, PackStyle::Next).is_err());
    }

    #[test]
    fn unpad_bounds_examples() {
        // 27*3 x 27*3 grid of an 899x1024 image: width-limited -> rows trimmed.
        let (r0, r1, c0, c1) = unpad_bounds(81, 81, 899, 1024);
        assert_eq!((c0, c1), (0, 81));
        // new_h = int(round(899 * 81/1024, 7)) = 71 -> pad 5 -> rows 5..76
        assert_eq!((r0, r1), (5, 76));
    }

    #[test]
    fn bilinear_matches_torch_values() {
        // torch.nn.functional.interpolate(torch.arange(9.).view(1,1,3,3), size=[2,2], mode="bilinear")
        // = [[1.0, 2.5], [5.5, 7.0]]
        let g = Grid { h: 3, w: 3, dim: 1, data: (0..9).map(|v| v as f32).collect() };
        let r = bilinear_resize(&g, 2, 2);
        assert_eq!(r.data, vec![1.0, 2.5, 5.5, 7.0]);
        // 7x7 -> 4x4 (OV tiny pooling) row 0: src x = (d+.5)*1.75-.5 -> 0.375, 2.125, 3.875, 5.625
        let g = Grid { h: 7, w: 7, dim: 1, data: (0..49).map(|v| v as f32).collect() };
        let r = bilinear_resize(&g, 4, 4);
        let want0 = [0.375 * 7.0 + 0.375, 0.375 * 7.0 + 2.125, 0.375 * 7.0 + 3.875, 0.375 * 7.0 + 5.625];
        for (a, b) in r.data[..4].iter().zip(want0) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }
}
