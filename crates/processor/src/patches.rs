//! Patchified pixels (the `ImageLayout::Patchified` families): `smart_resize` within the pixel
//! budget, the standard resize + rescale/normalize, then rows `[patches, C·T·P·P]` with a
//! `(t, h, w)` grid — `Qwen2VLImageProcessor.patchify` / `Qwen2VLVideoProcessor.patchify` of
//! transformers 5.23. Also the frame timestamps of the timestamped video prompt.

use crate::config::SizeDict;
use crate::error::{ProcessorError, Result};
use crate::family::{PixelBudget, VisionSettings};
use crate::pixels::process_video;
use crate::resize::Backend;
use crate::settings::PatchSettings;
use ndarray::{Array2, ArrayD, ArrayView3, ArrayView4, Axis};
use rayon::prelude::*;

/// A patchified image or video: its rows and its grid.
#[derive(Debug, Clone)]
pub struct Patched {
    /// `[t·h·w, C·T·P·P]`, rows in merge-window order.
    pub pixels: Array2<f32>,
    /// The `(t, h, w)` patch grid.
    pub thw: (u32, u32, u32),
    /// The resized frame size `(height, width)`.
    pub resized: (usize, usize),
}

/// Python's `round()` (half to even).
fn py_round(x: f64) -> f64 {
    x.round_ties_even()
}

/// `smart_resize(height, width, factor, min_pixels, max_pixels)` of
/// `transformers.models.qwen2_vl.image_processing_qwen2_vl`: both sides multiples of `factor`,
/// `h·w` within the budget, the aspect ratio kept as closely as possible.
///
/// ```
/// use vidlm_processor::patches::smart_resize;
/// // Qwen2.5-VL's budget: 1080p keeps its size rounded to multiples of 28.
/// assert_eq!(smart_resize(1080, 1920, 28, 3136, 12845056), Ok((1092, 1932)));
/// // Too small: scaled up to the lower budget.
/// assert_eq!(smart_resize(5, 7, 28, 3136, 12845056), Ok((56, 84)));
/// ```
pub fn smart_resize(
    height: usize,
    width: usize,
    factor: usize,
    min_pixels: u64,
    max_pixels: u64,
) -> std::result::Result<(usize, usize), String> {
    smart_resize_impl(None, height, width, factor, min_pixels, max_pixels)
}

/// `smart_resize(num_frames, height, width, temporal_factor, factor, min_pixels, max_pixels)`
/// of `video_processing_qwen3_vl`: the budget bounds `t_bar · h · w` (`t_bar` is `num_frames`
/// rounded half-to-even to a multiple of `temporal_factor`), and sides below `factor` are
/// scaled up first.
pub fn smart_resize_clip(
    num_frames: usize,
    height: usize,
    width: usize,
    temporal_factor: usize,
    factor: usize,
    min_pixels: u64,
    max_pixels: u64,
) -> std::result::Result<(usize, usize), String> {
    if num_frames < temporal_factor {
        return Err(format!(
            "t:{num_frames} must be larger than temporal_factor:{temporal_factor}"
        ));
    }
    smart_resize_impl(
        Some((num_frames, temporal_factor)),
        height,
        width,
        factor,
        min_pixels,
        max_pixels,
    )
}

fn smart_resize_impl(
    clip: Option<(usize, usize)>,
    height: usize,
    width: usize,
    factor: usize,
    min_pixels: u64,
    max_pixels: u64,
) -> std::result::Result<(usize, usize), String> {
    if height == 0 || width == 0 || factor == 0 {
        return Err(format!("cannot resize a {width}x{height} image"));
    }
    let (mut height, mut width) = (height, width);
    if clip.is_some() && (height < factor || width < factor) {
        let scale = (factor as f64 / height as f64).max(factor as f64 / width as f64);
        height = (height as f64 * scale) as usize;
        width = (width as f64 * scale) as usize;
    }
    let (hf, wf, f) = (height as f64, width as f64, factor as f64);
    if hf.max(wf) / hf.min(wf) > 200.0 {
        return Err(format!(
            "absolute aspect ratio must be smaller than 200, got {}",
            hf.max(wf) / hf.min(wf)
        ));
    }
    let mut h_bar = py_round(hf / f) as usize * factor;
    let mut w_bar = py_round(wf / f) as usize * factor;
    let (t_bar, t_real) = match clip {
        Some((t, tf)) => (py_round(t as f64 / tf as f64) as u128 * tf as u128, t as f64),
        None => (1, 1.0),
    };
    let area = t_bar * h_bar as u128 * w_bar as u128;
    if area > u128::from(max_pixels) {
        let beta = ((t_real * hf * wf) / max_pixels as f64).sqrt();
        h_bar = factor.max(((hf / beta / f).floor() as usize) * factor);
        w_bar = factor.max(((wf / beta / f).floor() as usize) * factor);
    } else if area < u128::from(min_pixels) {
        let beta = (min_pixels as f64 / (t_real * hf * wf)).sqrt();
        h_bar = (hf * beta / f).ceil() as usize * factor;
        w_bar = (wf * beta / f).ceil() as usize * factor;
    }
    Ok((h_bar, w_bar))
}

fn patch_settings<'a>(s: &'a VisionSettings, what: &str) -> Result<&'a PatchSettings> {
    s.patch.as_ref().ok_or_else(|| {
        ProcessorError::Internal(format!("{what}: {} is not a patchified processor", s.class))
    })
}

/// Resizes (to `target`) and normalizes every frame: `(T, 3, H, W)`.
fn normalized(
    frames: ArrayView4<'_, u8>,
    s: &VisionSettings,
    target: (usize, usize),
    backend: Backend,
    what: &str,
) -> Result<ArrayD<f32>> {
    let mut fixed = s.clone();
    fixed.size = SizeDict::hw(target.0 as u32, target.1 as u32);
    fixed.do_center_crop = false;
    fixed.crop_size = None;
    fixed.patch = None;
    process_video(frames, &fixed, backend, what)
}

/// Rows `[gt·gh·gw, C·tp·P·P]` of `frames (T, C, H, W)`, the last frame repeated up to a multiple
/// of `tp` frames (`patchify`): row `(t, bh, bw, mh, mw)`, column `(c, tt, py, px)` holds
/// `frames[t·tp + tt, c, (bh·m + mh)·P + py, (bw·m + mw)·P + px]`.
fn patchify(frames: &ArrayD<f32>, p: &PatchSettings) -> (Array2<f32>, (u32, u32, u32)) {
    let sh = frames.shape().to_vec();
    let (t, c, h, w) = (sh[0], sh[1], sh[2], sh[3]);
    let (ps, tp, m) = (p.patch_size, p.temporal_patch_size, p.merge_size);
    let gt = t.div_ceil(tp);
    let (gh, gw) = (h / ps, w / ps);
    let cols = c * tp * ps * ps;
    let contiguous = frames.as_standard_layout();
    let src: &[f32] = contiguous.as_slice().unwrap_or(&[]);
    let mut data = vec![0f32; gt * gh * gw * cols];
    let per_t = gh * gw;
    let (bw_n, mm) = ((gw / m).max(1), m * m);
    data.par_chunks_mut(cols.max(1)).enumerate().for_each(|(r, dst)| {
        let ti = r / per_t;
        let rem = r % per_t;
        let block = rem / mm;
        let (bh, bw) = (block / bw_n, block % bw_n);
        let (mh, mw) = ((rem % mm) / m, rem % m);
        let (y0, x0) = ((bh * m + mh) * ps, (bw * m + mw) * ps);
        let mut k = 0;
        for ci in 0..c {
            for tt in 0..tp {
                let f = (ti * tp + tt).min(t - 1);
                for py in 0..ps {
                    let o = ((f * c + ci) * h + y0 + py) * w + x0;
                    if let (Some(d), Some(s)) = (dst.get_mut(k..k + ps), src.get(o..o + ps)) {
                        d.copy_from_slice(s);
                    }
                    k += ps;
                }
            }
        }
    });
    let out = Array2::from_shape_vec((gt * gh * gw, cols), data)
        .unwrap_or_else(|_| Array2::zeros((0, cols)));
    (out, (gt as u32, gh as u32, gw as u32))
}

fn check_divisible(h: usize, w: usize, p: &PatchSettings, what: &str) -> Result<()> {
    let f = p.patch_size * p.merge_size;
    if h % f != 0 || w % f != 0 || h == 0 || w == 0 {
        return Err(ProcessorError::InvalidMedia {
            what: what.into(),
            message: format!("{w}x{h} is not a multiple of patch_size·merge_size = {f}"),
        });
    }
    Ok(())
}

fn resize_error(what: &str, message: String) -> ProcessorError {
    ProcessorError::InvalidMedia { what: what.into(), message }
}

/// One image `(H, W, 3)` → its rows (the frame repeated `temporal_patch_size` times) and
/// `(1, h, w)` grid, like `Qwen2VLImageProcessor`.
pub fn process_image_patches(
    img: ArrayView3<'_, u8>,
    s: &VisionSettings,
    backend: Backend,
    what: &str,
) -> Result<Patched> {
    let p = patch_settings(s, what)?;
    let (h, w) = (img.shape()[0], img.shape()[1]);
    let target = if s.do_resize {
        smart_resize(h, w, p.patch_size * p.merge_size, p.min_pixels, p.max_pixels)
            .map_err(|m| resize_error(what, m))?
    } else {
        (h, w)
    };
    check_divisible(target.0, target.1, p, what)?;
    let frames = normalized(img.insert_axis(Axis(0)), s, target, backend, what)?;
    let (pixels, thw) = patchify(&frames, p);
    Ok(Patched { pixels, thw, resized: target })
}

/// One video `(T, H, W, 3)` → its rows and `(t, h, w)` grid, like the video processor (the
/// budget per frame or over the clip, by the class).
pub fn process_video_patches(
    frames: ArrayView4<'_, u8>,
    s: &VisionSettings,
    backend: Backend,
    what: &str,
) -> Result<Patched> {
    let p = patch_settings(s, what)?;
    let sh = frames.shape();
    let (t, h, w) = (sh[0], sh[1], sh[2]);
    if t == 0 {
        return Err(ProcessorError::InvalidMedia {
            what: what.into(),
            message: "video has no frames".into(),
        });
    }
    let factor = p.patch_size * p.merge_size;
    let target = if !s.do_resize {
        (h, w)
    } else {
        match p.budget {
            PixelBudget::PerFrame => smart_resize(h, w, factor, p.min_pixels, p.max_pixels),
            PixelBudget::PerClip => smart_resize_clip(
                t,
                h,
                w,
                p.temporal_patch_size,
                factor,
                p.min_pixels,
                p.max_pixels,
            ),
        }
        .map_err(|m| resize_error(what, m))?
    };
    check_divisible(target.0, target.1, p, what)?;
    let normalized = normalized(frames, s, target, backend, what)?;
    let (pixels, thw) = patchify(&normalized, p);
    Ok(Patched { pixels, thw, resized: target })
}

/// `Qwen3VLProcessor._calculate_timestamps`: the indices padded with the last one to a multiple
/// of `temporal_patch_size`, each over `fps`, and per temporal patch the mean of its first and
/// last frame's time.
pub fn patch_timestamps(indices: &[usize], fps: f64, temporal_patch_size: usize) -> Vec<f64> {
    let tp = temporal_patch_size.max(1);
    let mut idx = indices.to_vec();
    if let Some(&last) = idx.last() {
        while idx.len() % tp != 0 {
            idx.push(last);
        }
    }
    let ts: Vec<f64> = idx.iter().map(|&i| i as f64 / fps).collect();
    ts.chunks(tp).map(|c| (c[0] + c[c.len() - 1]) / 2.0).collect()
}

/// Python's `f"{x:.1f}"` (the exact binary value rounded half to even).
///
/// ```
/// use vidlm_processor::patches::format_seconds;
/// assert_eq!(format_seconds(0.75), "0.8");
/// assert_eq!(format_seconds(1.25), "1.2");
/// assert_eq!(format_seconds(0.35), "0.3"); // 0.34999…
/// ```
pub fn format_seconds(x: f64) -> String {
    // Rust's `{:.1}` formats the exact binary value and rounds ties to even, as CPython does.
    format!("{x:.1}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_resize_matches_python() {
        // Values computed with transformers 5.23's smart_resize.
        assert_eq!(smart_resize(240, 320, 28, 3136, 12845056), Ok((252, 308)));
        assert_eq!(smart_resize(1080, 1920, 32, 65536, 16777216), Ok((1088, 1920)));
        // round(2.5) = 2 (half to even): 70 / 28 = 2.5 -> 56.
        assert_eq!(smart_resize(70, 70, 28, 56, 12845056), Ok((56, 56)));
        assert!(smart_resize(1, 300, 28, 3136, 12845056).is_err());
        assert_eq!(smart_resize_clip(1, 10, 10, 2, 32, 4096, 25165824).ok(), None);
    }

    #[test]
    fn timestamps_pad_and_average() {
        assert_eq!(patch_timestamps(&[0, 1, 2], 2.0, 2), vec![0.25, 1.0]);
        assert_eq!(format_seconds(0.25), "0.2");
        assert_eq!(format_seconds(1.0), "1.0");
        assert_eq!(format_seconds(12.45), "12.4"); // 12.4499…
        assert_eq!(format_seconds(0.05), "0.1"); // 0.05000000000000000277
    }
}
