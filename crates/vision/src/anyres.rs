//! Host-side feature packing of the LLaVA families (hf-llava-family-spec §4.2, §4.4), exactly
//! as transformers 5.23 computes it: the anyres tile stitching of `pack_image_features`,
//! bilinear `F.interpolate` (align_corners=False, no antialias) and OneVision's
//! `apply_pooling`. The geometry (best resolution, unpadding, the `anyres_max` budget) is
//! `vidlm_model::anyres`, shared with the processor's placeholder counts.
//!
//! Features are row-major `[tokens, dim]` (`tokens = grid_h * grid_w`).

use crate::VisionError;
use vidlm_model::anyres::{anyres_max_size, unpad_bounds, PatchGrid};

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
                dst[k] = (1.0 - ly) * ((1.0 - lx) * a[k] + lx * b[k])
                    + ly * ((1.0 - lx) * c[k] + lx * d[k]);
            }
        }
    }
    Grid { h: oh, w: ow, dim: g.dim, data: out }
}

/// `pack_image_features` for one image.
///
/// `patches` holds `grid.num_patches()` blocks of `side * side` rows of width `dim` (the vision
/// graph's output for the base image followed by the tiles, row-major). A single-patch image
/// (plain, or OneVision's multi-image mode) is its rows plus one newline row. Anyres tiles are
/// stitched, unpadded to the original aspect ratio, downscaled when `max_num_patches` (OneVision's
/// `anyres_max_N`) is given and exceeded, and each row is followed by the newline.
/// Returns the packed rows (`tokens × dim`).
pub fn pack_image(
    patches: &[f32],
    side: usize,
    dim: usize,
    grid: &PatchGrid,
    newline: Option<&[f32]>,
    max_num_patches: Option<u32>,
) -> Result<Vec<f32>, VisionError> {
    let per = side * side * dim;
    let num_patches = grid.num_patches();
    if per == 0 || patches.len() != num_patches * per {
        return Err(VisionError::Shape(format!(
            "image features have {} values, expected {num_patches} patches of {side}x{side}x{dim}",
            patches.len()
        )));
    }
    if let Some(nl) = newline {
        if nl.len() != dim {
            return Err(VisionError::Shape(format!(
                "image_newline has {} values, features have width {dim}",
                nl.len()
            )));
        }
    }
    let base = &patches[..per];
    let Some((gh, gw)) = grid.tiles.map(|(r, c)| (r as usize, c as usize)) else {
        let mut out = base.to_vec();
        if let Some(nl) = newline {
            out.extend_from_slice(nl);
        }
        return Ok(out);
    };
    // Stitch tiles: stitched[i*side + a][j*side + b] = tile[i*gw + j][a*side + b].
    let (ch, cw) = (gh * side, gw * side);
    let (h, w) = (grid.image_size.0 as usize, grid.image_size.1 as usize);
    let (r0, r1, c0, c1) = unpad_bounds(ch, cw, h, w);
    let (uh, uw) = (r1 - r0, c1 - c0);
    let mut packed = Grid { h: uh, w: uw, dim, data: Vec::with_capacity(uh * uw * dim) };
    for y in r0..r1 {
        for x in c0..c1 {
            let (i, a) = (y / side, y % side);
            let (j, b) = (x / side, x % side);
            let tile = 1 + i * gw + j;
            let off = tile * per + (a * side + b) * dim;
            packed.data.extend_from_slice(&patches[off..off + dim]);
        }
    }
    if let Some(max) = max_num_patches {
        let (oh, ow) = anyres_max_size(uh, uw, max, side);
        if (oh, ow) != (uh, uw) {
            packed = bilinear_resize(&packed, oh, ow);
        }
    }
    let mut out = Vec::with_capacity(per + packed.h * (packed.w + 1) * dim);
    out.extend_from_slice(base);
    for y in 0..packed.h {
        out.extend_from_slice(&packed.data[y * packed.w * dim..(y + 1) * packed.w * dim]);
        if let Some(nl) = newline {
            out.extend_from_slice(nl);
        }
    }
    Ok(out)
}

/// OneVision `apply_pooling` on `frames` blocks of `side*side` rows: bilinear to
/// `ceil(side/2)²` per frame, frames concatenated.
pub fn onevision_pool_frames(
    features: &[f32],
    frames: usize,
    side: usize,
    dim: usize,
) -> Result<Vec<f32>, VisionError> {
    let per = side * side * dim;
    if features.len() != frames * per {
        return Err(VisionError::Shape(format!(
            "video features have {} values, expected {frames}x{side}x{side}x{dim}",
            features.len()
        )));
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
    use vidlm_model::anyres::anyres_grid;
    use vidlm_model::family::OV_PINPOINTS;

    /// Packed rows of an OV image from the spec (§3): base 729 + unpadded grid with a newline
    /// per row. (Every size and pinpoint against the processor's count:
    /// `crates/pipeline/tests/placeholders.rs`.)
    #[test]
    fn onevision_radar_image_packs_to_the_spec_count() {
        let pins: Vec<(u32, u32)> = OV_PINPOINTS.iter().map(|p| (p[0], p[1])).collect();
        let g = anyres_grid((899, 1024), &pins, 384).unwrap();
        let patches = vec![0.0f32; g.num_patches() * 27 * 27];
        assert_eq!(pack_image(&patches, 27, 1, &g, Some(&[1.0]), Some(9)).unwrap().len(), 6551);
        // NeXT, a 336x672 image on 1x2 tiles of 24: base 576 + 24 rows of 48 + newline.
        let g = PatchGrid {
            image_size: (336, 672),
            tiles: Some((1, 2)),
            multi_image: false,
            thw: None,
        };
        let patches = vec![0.0f32; 3 * 576];
        assert_eq!(
            pack_image(&patches, 24, 1, &g, Some(&[1.0]), None).unwrap().len(),
            576 + 24 * 49
        );
    }

    #[test]
    fn stitching_order_and_unpad() {
        // 2 tiles side by side (1x2 grid), side 2, dim 1; image exactly 2:1 -> no unpad.
        let grid =
            PatchGrid { image_size: (4, 8), tiles: Some((1, 2)), multi_image: false, thw: None };
        let base = [0.0, 0.0, 0.0, 0.0];
        let t0 = [1.0, 2.0, 3.0, 4.0];
        let t1 = [5.0, 6.0, 7.0, 8.0];
        let patches: Vec<f32> = base.iter().chain(&t0).chain(&t1).copied().collect();
        let out = pack_image(&patches, 2, 1, &grid, Some(&[9.0]), None).unwrap();
        // rows: [1 2 5 6 | nl], [3 4 7 8 | nl]
        assert_eq!(&out[4..], &[1.0, 2.0, 5.0, 6.0, 9.0, 3.0, 4.0, 7.0, 8.0, 9.0]);
        // Wrong patch count is an error, not a panic.
        assert!(pack_image(&patches[..8], 2, 1, &grid, None, None).is_err());
        // A single patch (OneVision multi-image mode): rows + one newline.
        let one = pack_image(&base, 2, 1, &PatchGrid::single((4, 8), true), Some(&[9.0]), Some(9))
            .unwrap();
        assert_eq!(one, vec![0.0, 0.0, 0.0, 0.0, 9.0]);
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
        let want0 =
            [0.375 * 7.0 + 0.375, 0.375 * 7.0 + 2.125, 0.375 * 7.0 + 3.875, 0.375 * 7.0 + 5.625];
        for (a, b) in r.data[..4].iter().zip(want0) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }
}
