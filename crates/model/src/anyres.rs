//! AnyRes geometry, once: the processor tiles images with it and counts their placeholders,
//! vision packs their features with it.
//!
//! Ports of transformers 5.23: `image_processing_utils.select_best_resolution`,
//! `get_patch_output_size`, `divide_to_patches` (tile count), `unpad_image` and the
//! `anyres_max_N` downscale of LLaVA-OneVision (`pack_image_features` in the model,
//! `_get_unpadded_features` in the processor — the same arithmetic, Python's float `//` and
//! `int(round(x, 7))` included).

/// How the processor cut one image into patches: what vision needs to pack its features, and
/// what decides its placeholder count. The processor → vision hand-off, per image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct PatchGrid {
    /// The original image size `(height, width)` in pixels.
    pub image_size: (u32, u32),
    /// Anyres tiles `(rows, cols)` after the base patch; `None` when the image is one patch
    /// (plain layouts, and OneVision's multi-image mode).
    pub tiles: Option<(u32, u32)>,
    /// OneVision's multi-image mode (2+ images in a conversation): one padded-to-square patch,
    /// packed with one newline row.
    pub multi_image: bool,
    /// Patchified layouts: the image's `(t, h, w)` patch grid (`image_grid_thw`).
    pub thw: Option<(u32, u32, u32)>,
}

impl PatchGrid {
    /// A single-patch image.
    pub fn single(image_size: (u32, u32), multi_image: bool) -> PatchGrid {
        PatchGrid { image_size, tiles: None, multi_image, thw: None }
    }

    /// A patchified image with patch grid `thw`.
    pub fn patchified(image_size: (u32, u32), thw: (u32, u32, u32)) -> PatchGrid {
        PatchGrid { image_size, tiles: None, multi_image: false, thw: Some(thw) }
    }

    /// Patches in the pixel tensor: the base image plus the tiles.
    pub fn num_patches(&self) -> usize {
        match self.thw {
            Some((t, h, w)) => t as usize * h as usize * w as usize,
            None => 1 + self.tiles.map_or(0, |(r, c)| r as usize * c as usize),
        }
    }
}

/// `select_best_resolution((h, w), pinpoints)`: the pinpoint `(H, W)` that keeps the most
/// effective resolution, ties broken by the least waste, first in list order. `None` for an
/// empty image or no pinpoints.
pub fn select_best_resolution(h: u32, w: u32, pinpoints: &[(u32, u32)]) -> Option<(u32, u32)> {
    if h == 0 || w == 0 {
        return None;
    }
    let mut best = None;
    let mut max_eff: i64 = 0;
    let mut min_waste = f64::INFINITY;
    for &(ph, pw) in pinpoints {
        let scale = (f64::from(pw) / f64::from(w)).min(f64::from(ph) / f64::from(h));
        let dw = (f64::from(w) * scale) as i64;
        let dh = (f64::from(h) * scale) as i64;
        let eff = (dw * dh).min(i64::from(w) * i64::from(h));
        let waste = (i64::from(ph) * i64::from(pw) - eff) as f64;
        if eff > max_eff || (eff == max_eff && waste < min_waste) {
            max_eff = eff;
            min_waste = waste;
            best = Some((ph, pw));
        }
    }
    best
}

/// `get_patch_output_size`: the aspect-preserving size inside `(H, W)`.
pub fn patch_output_size(h: u32, w: u32, target: (u32, u32)) -> (u32, u32) {
    let (th, tw) = target;
    let scale_w = f64::from(tw) / f64::from(w);
    let scale_h = f64::from(th) / f64::from(h);
    if scale_w < scale_h {
        let nh = ((f64::from(h) * scale_w).ceil() as u32).min(th);
        (nh, tw)
    } else {
        let nw = ((f64::from(w) * scale_h).ceil() as u32).min(tw);
        (th, nw)
    }
}

/// `divide_to_patches`: the `(rows, cols)` of `patch`-sized tiles covering the `best` canvas
/// (tiles at the border are cut short).
pub fn tile_grid(best: (u32, u32), patch: u32) -> (u32, u32) {
    if patch == 0 {
        return (0, 0);
    }
    (best.0.div_ceil(patch), best.1.div_ceil(patch))
}

/// The anyres patch grid of an `image_size` image: the best pinpoint cut into `patch`-sized tiles.
pub fn anyres_grid(
    image_size: (u32, u32),
    pinpoints: &[(u32, u32)],
    patch: u32,
) -> Option<PatchGrid> {
    let best = select_best_resolution(image_size.0, image_size.1, pinpoints)?;
    Some(PatchGrid {
        image_size,
        tiles: Some(tile_grid(best, patch)),
        multi_image: false,
        thw: None,
    })
}

/// Python's `int(round(x, 7))` for the non-negative ratios used here: round to 7 decimals,
/// correctly rounded like CPython's `round` (on the exact binary value), then truncate.
fn int_round7(x: f64) -> i64 {
    let s = format!("{x:.7}");
    s.parse::<f64>().map(|v| v.trunc() as i64).unwrap_or(x as i64)
}

/// Python's float floor division `a // b` (via `fmod`, as CPython's `float_floor_div`).
pub fn py_floordiv(a: f64, b: f64) -> f64 {
    let m = a % b;
    let mut div = (a - m) / b;
    if m != 0.0 && ((b < 0.0) != (m < 0.0)) {
        div -= 1.0;
    }
    if div != 0.0 {
        let f = div.floor();
        if div - f > 0.5 {
            f + 1.0
        } else {
            f
        }
    } else {
        0.0
    }
}

/// `unpad_image` for a `(cur_h, cur_w)` feature grid of an image originally `(orig_h, orig_w)`:
/// the kept `(row_start, row_end, col_start, col_end)`.
pub fn unpad_bounds(
    cur_h: usize,
    cur_w: usize,
    orig_h: usize,
    orig_w: usize,
) -> (usize, usize, usize, usize) {
    if orig_h == 0 || orig_w == 0 || cur_h == 0 || cur_w == 0 {
        return (0, cur_h, 0, cur_w);
    }
    let (h, w) = (orig_h as f64, orig_w as f64);
    if w / h > cur_w as f64 / cur_h as f64 {
        let new_h = int_round7(h * (cur_w as f64 / w)).max(0) as usize;
        let pad = cur_h.saturating_sub(new_h) / 2;
        (pad, cur_h - pad, 0, cur_w)
    } else {
        let new_w = int_round7(w * (cur_h as f64 / h)).max(0) as usize;
        let pad = cur_w.saturating_sub(new_w) / 2;
        (0, cur_h, pad, cur_w - pad)
    }
}

/// OneVision's `anyres_max_N` budget: a `(h, w)` feature grid with more than `1.1² · N` tiles'
/// worth of `side × side` rows is bilinearly downscaled to `(int(h // ratio), int(w // ratio))`,
/// `ratio = sqrt(h·w / (N·side²))`. Returns the grid size after the budget.
pub fn anyres_max_size(h: usize, w: usize, max_num_patches: u32, side: usize) -> (usize, usize) {
    let ratio = ((h * w) as f64 / (f64::from(max_num_patches) * side as f64 * side as f64)).sqrt();
    if ratio > 1.1 {
        (
            py_floordiv(h as f64, ratio).max(0.0) as usize,
            py_floordiv(w as f64, ratio).max(0.0) as usize,
        )
    } else {
        (h, w)
    }
}

/// The feature grid an anyres image packs to (after the base patch): tiles of `side × side`
/// rows stitched, unpadded, downscaled by `max_num_patches` if given. `(rows, cols)`; each row
/// is followed by one newline row.
pub fn packed_grid(
    image_size: (u32, u32),
    tiles: (u32, u32),
    side: (usize, usize),
    max_num_patches: Option<u32>,
) -> (usize, usize) {
    let (ch, cw) = (side.0 * tiles.0 as usize, side.1 * tiles.1 as usize);
    let (r0, r1, c0, c1) = unpad_bounds(ch, cw, image_size.0 as usize, image_size.1 as usize);
    let (h, w) = (r1 - r0, c1 - c0);
    match max_num_patches {
        Some(max) => anyres_max_size(h, w, max, side.0),
        None => (h, w),
    }
}

/// Parses `"anyres_max_9"` → 9 (transformers: `int(s.strip("anyres_max_"))`).
pub fn parse_anyres_max(s: &str) -> Option<u32> {
    s.trim_matches(|c: char| "anyres_max_".contains(c)).parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::family::{NEXT_PINPOINTS, OV_PINPOINTS};

    fn pins(p: &[[u32; 2]]) -> Vec<(u32, u32)> {
        p.iter().map(|p| (p[0], p[1])).collect()
    }

    #[test]
    fn radar_geometry() {
        let best = select_best_resolution(899, 1024, &pins(&OV_PINPOINTS)).unwrap();
        assert_eq!(best, (1152, 1152));
        assert_eq!(patch_output_size(899, 1024, best), (1012, 1152));
        assert_eq!(tile_grid(best, 384), (3, 3));
        assert_eq!(select_best_resolution(899, 1024, &pins(&NEXT_PINPOINTS)), Some((672, 672)));
        assert_eq!(select_best_resolution(0, 10, &pins(&NEXT_PINPOINTS)), None);
        assert_eq!(select_best_resolution(10, 10, &[]), None);
        assert_eq!(parse_anyres_max("anyres_max_9"), Some(9));
    }

    #[test]
    fn unpad_bounds_examples() {
        // 27*3 x 27*3 grid of an 899x1024 image: width-limited -> rows trimmed.
        // new_h = int(round(899 * 81/1024, 7)) = 71 -> pad 5 -> rows 5..76
        assert_eq!(unpad_bounds(81, 81, 899, 1024), (5, 76, 0, 81));
        assert_eq!(unpad_bounds(0, 4, 10, 10), (0, 0, 0, 4));
    }

    #[test]
    fn floordiv_is_pythons() {
        assert_eq!(py_floordiv(7.0, 2.0), 3.0);
        assert_eq!(py_floordiv(81.0, 1.2), 67.0);
        assert_eq!(py_floordiv(0.0, 3.0), 0.0);
        // 1 // 0.1 == 9.0 in Python (fmod), while floor(1 / 0.1) == 10.
        assert_eq!(py_floordiv(1.0, 0.1), 9.0);
    }

    #[test]
    fn onevision_budget() {
        // Within budget: unchanged. 899x1024 on 3x3 tiles of 27: 71x81 after unpadding, ratio
        // sqrt(5751 / 6561) < 1.1.
        assert_eq!(packed_grid((384, 384), (1, 1), (27, 27), Some(9)), (27, 27));
        assert_eq!(packed_grid((899, 1024), (3, 3), (27, 27), Some(9)), (71, 81));
        // Over budget: 1080x1920 on 3x5 tiles -> 75x135 unpadded, ratio 1.25 -> (60, 108)
        // (transformers: 60·108 + 60 + 729 = 7269 tokens).
        assert_eq!(packed_grid((1080, 1920), (3, 5), (27, 27), Some(9)), (60, 108));
        assert_eq!(packed_grid((1080, 1920), (3, 5), (27, 27), None), (75, 135));
    }
}
