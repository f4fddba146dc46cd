//! AnyRes geometry (`image_processing_utils.select_best_resolution`, `get_patch_output_size`) and
//! the placeholder-count formulas of the processors (`_get_unpadded_features`,
//! `_get_number_of_features`, `replace_image_token`, `replace_video_token`).

/// `select_best_resolution((h, w), pinpoints)`: the pinpoint `(H, W)` that keeps the most
/// effective resolution, ties broken by the least waste, first in list order.
pub fn select_best_resolution(h: u32, w: u32, pinpoints: &[(u32, u32)]) -> Option<(u32, u32)> {
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

/// Python's `int(round(x, 7))` for the non-negative ratios used here (round to 7 decimals,
/// correctly rounded like CPython's `round`, then truncate).
fn int_round7(x: f64) -> i64 {
    let s = format!("{x:.7}");
    s.parse::<f64>().map(|v| v.trunc() as i64).unwrap_or(x as i64)
}

/// Python's float floor division `a // b` (via `fmod`, as CPython's `float_floor_div`).
pub fn py_floordiv(a: f64, b: f64) -> f64 {
    let mut m = a % b;
    let mut div = (a - m) / b;
    if m != 0.0 && ((b < 0.0) != (m < 0.0)) {
        m += b;
        div -= 1.0;
    }
    let _ = m;
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

/// `_get_unpadded_features(height, width, patches_h, patches_w, scale_h, scale_w)` with an
/// optional `anyres_max_N` budget (OneVision). Returns `(unpadded, newline)`.
pub fn unpadded_features(
    height: u32,
    width: u32,
    patches_h: u32,
    patches_w: u32,
    scale_h: u32,
    scale_w: u32,
    max_num_patches: Option<u32>,
) -> (u64, u64) {
    let mut ch = i64::from(patches_h) * i64::from(scale_h);
    let mut cw = i64::from(patches_w) * i64::from(scale_w);
    let (h, w) = (f64::from(height), f64::from(width));
    let original_ar = w / h;
    let current_ar = cw as f64 / ch as f64;
    if original_ar > current_ar {
        let new_h = int_round7(h * (cw as f64 / w));
        let pad = (ch - new_h).div_euclid(2);
        ch -= pad * 2;
    } else {
        let new_w = int_round7(w * (ch as f64 / h));
        let pad = (cw - new_w).div_euclid(2);
        cw -= pad * 2;
    }
    let mut unpadded = (ch * cw).max(0) as u64;
    let mut newline = ch.max(0) as u64;
    if let Some(max) = max_num_patches {
        let ratio = ((ch * cw) as f64 / (f64::from(max) * f64::from(patches_h) * f64::from(patches_h))).sqrt();
        if ratio > 1.1 {
            let nh = py_floordiv(ch as f64, ratio) as i64;
            let nw = py_floordiv(cw as f64, ratio) as i64;
            unpadded = (nh * nw).max(0) as u64;
            newline = nh.max(0) as u64;
        }
    }
    (unpadded, newline)
}

/// Parses `"anyres_max_9"` → 9 (transformers: `int(s.strip("anyres_max_"))`).
pub fn parse_anyres_max(s: &str) -> Option<u32> {
    s.trim_matches(|c: char| "anyres_max_".contains(c)).parse().ok()
}

/// Number of tiles (excluding the base image) for an anyres image.
pub fn anyres_tiles(best: (u32, u32), patch: u32) -> u32 {
    best.0.div_ceil(patch) * best.1.div_ceil(patch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::family::{NEXT_PINPOINTS, OV_PINPOINTS};

    fn ov() -> Vec<(u32, u32)> {
        OV_PINPOINTS.iter().map(|p| (p[0], p[1])).collect()
    }
    fn nv() -> Vec<(u32, u32)> {
        NEXT_PINPOINTS.iter().map(|p| (p[0], p[1])).collect()
    }

    /// OneVision single-image count (spec §3 examples).
    fn ov_count(h: u32, w: u32) -> u64 {
        let best = select_best_resolution(h, w, &ov()).unwrap_or((384, 384));
        let (u, n) = unpadded_features(h, w, 27, 27, best.0 / 384, best.1 / 384, Some(9));
        u + n + 729
    }

    fn nv_count(h: u32, w: u32) -> u64 {
        let best = select_best_resolution(h, w, &nv()).unwrap_or((336, 336));
        let (u, n) = unpadded_features(h, w, 24, 24, best.0 / 336, best.1 / 336, None);
        u + n + 24 * 24 + 1 - 1
    }

    #[test]
    fn onevision_examples_from_spec() {
        assert_eq!(ov_count(899, 1024), 6551);
        assert_eq!(ov_count(480, 640), 2929);
        assert_eq!(ov_count(640, 480), 2943);
        assert_eq!(ov_count(384, 384), 1485);
        assert_eq!(ov_count(224, 224), 1485);
        assert_eq!(ov_count(1080, 1920), 7269);
        assert_eq!(ov_count(100, 1000), 1467);
    }

    #[test]
    fn next_examples_from_spec() {
        assert_eq!(nv_count(899, 1024), 2634);
        assert_eq!(nv_count(480, 640), 2340);
        assert_eq!(nv_count(336, 336), 1176);
        assert_eq!(nv_count(503, 316), 1526);
    }

    #[test]
    fn radar_geometry() {
        let best = select_best_resolution(899, 1024, &ov()).unwrap();
        assert_eq!(best, (1152, 1152));
        assert_eq!(patch_output_size(899, 1024, best), (1012, 1152));
        assert_eq!(select_best_resolution(899, 1024, &nv()), Some((672, 672)));
        assert_eq!(parse_anyres_max("anyres_max_9"), Some(9));
    }
}
