//! Image and video pixel pipelines: resize → center crop → rescale + normalize, anyres tiling,
//! pad-to-square, batching. Inputs are `u8` RGB arrays `(H, W, 3)` / `(T, H, W, 3)`; outputs are
//! channels-first `f32`, written straight into the output tensor.

use crate::config::SizeDict;
use crate::error::{ProcessorError, Result};
use crate::family::{ImageLayout, VisionSettings};
use crate::resize::{resize, resize_crop, Backend, Window};
use ndarray::{s, ArrayD, ArrayView3, ArrayView4, ArrayViewMut3, Axis, IxDyn};
use rayon::prelude::*;
use std::borrow::Cow;
use vidlm_model::anyres::{patch_output_size, select_best_resolution, tile_grid, PatchGrid};

/// Largest accepted image side (pixels) — guards against absurd allocations.
pub const MAX_SIDE: usize = 1 << 15;

/// `u8` → normalized `f32` lookup tables, computed with exactly the float operations of the
/// selected backend (spec §2.4), so the table entries are bit-identical to transformers' values.
#[derive(Debug, Clone)]
pub struct Normalizer {
    lut: [[f32; 256]; 3],
}

impl Normalizer {
    /// Builds the tables for `s` under `backend`.
    pub fn new(s: &VisionSettings, backend: Backend) -> Normalizer {
        let mut lut = [[0f32; 256]; 3];
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, out) in table.iter_mut().enumerate() {
                *out = match backend {
                    Backend::Torchvision => {
                        let x = v as f32;
                        if s.do_rescale && s.do_normalize {
                            let k = (1.0 / s.rescale_factor) as f32;
                            let m = (s.mean[c] as f32) * k;
                            let d = (s.std[c] as f32) * k;
                            (x - m) / d
                        } else if s.do_normalize {
                            (x - s.mean[c] as f32) / s.std[c] as f32
                        } else if s.do_rescale {
                            x * s.rescale_factor as f32
                        } else {
                            x
                        }
                    }
                    Backend::Pil => {
                        let x = if s.do_rescale {
                            (v as f64 * s.rescale_factor) as f32
                        } else {
                            v as f32
                        };
                        if s.do_normalize {
                            (x - s.mean[c] as f32) / s.std[c] as f32
                        } else {
                            x
                        }
                    }
                };
            }
        }
        Normalizer { lut }
    }

    /// The normalized value of `u8` level `v` in channel `c` (0..3).
    pub fn value(&self, c: usize, v: u8) -> f32 {
        self.lut[c.min(2)][usize::from(v)]
    }

    /// Writes the interleaved `h × w × 3` `u8` buffer into the channels-first `out` `(3, h, w)`.
    pub fn write_chw(&self, src: &[u8], out: &mut ArrayViewMut3<'_, f32>) {
        let (h, w) = (out.shape()[1], out.shape()[2]);
        for c in 0..3 {
            let lut = &self.lut[c];
            let mut plane = out.index_axis_mut(Axis(0), c);
            if let Some(dst) = plane.as_slice_mut() {
                for (d, px) in dst.iter_mut().zip(src.chunks_exact(3)) {
                    *d = lut[usize::from(px[c])];
                }
            } else {
                for y in 0..h {
                    for x in 0..w {
                        plane[[y, x]] = lut[usize::from(src[(y * w + x) * 3 + c])];
                    }
                }
            }
        }
    }
}

/// `get_resize_output_image_size` / fixed size: the resize target for an `h × w` input.
pub fn resize_target(h: usize, w: usize, size: &SizeDict) -> (usize, usize) {
    if let Some(s) = size.shortest_edge {
        let s = s as usize;
        let (short, long) = if w <= h { (w, h) } else { (h, w) };
        if short == s || short == 0 {
            return (h, w);
        }
        let new_long = ((s as f64 * long as f64) / short as f64) as usize;
        if w <= h {
            (new_long, s)
        } else {
            (s, new_long)
        }
    } else {
        (size.height.unwrap_or(0) as usize, size.width.unwrap_or(0) as usize)
    }
}

/// The geometry of the standard pipeline for one input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Size after resize.
    pub resized: (usize, usize),
    /// Output size (after crop).
    pub out: (usize, usize),
    /// Offset of the crop in resized coordinates (negative: zero padding).
    pub offset: (i64, i64),
}

/// Computes where resize and center crop put things.
pub fn geometry(h: usize, w: usize, s: &VisionSettings, backend: Backend) -> Geometry {
    let resized = if s.do_resize { resize_target(h, w, &s.size) } else { (h, w) };
    match (s.do_center_crop, s.crop_size) {
        (true, Some(c)) => {
            let (ch, cw) = (c.height.unwrap_or(0) as usize, c.width.unwrap_or(0) as usize);
            let off = |full: usize, crop: usize| -> i64 {
                let (full, crop) = (full as i64, crop as i64);
                match backend {
                    // numpy `center_crop`: floor((H - c) / 2) even when negative (the ceil-padding
                    // on top/left it applies when c > H lands the crop exactly there).
                    Backend::Pil => (full - crop).div_euclid(2),
                    // torchvision: pad (c-W)//2 left, then int((H-c)/2) of the padded image (0).
                    Backend::Torchvision => {
                        if crop > full {
                            -((crop - full) / 2)
                        } else {
                            (full - crop) / 2
                        }
                    }
                }
            };
            Geometry { resized, out: (ch, cw), offset: (off(resized.0, ch), off(resized.1, cw)) }
        }
        _ => Geometry { resized, out: resized, offset: (0, 0) },
    }
}

/// Runs resize + crop on one interleaved image and returns the `out.0 × out.1 × 3` bytes.
fn resize_and_crop(
    src: &[u8],
    h: usize,
    w: usize,
    g: &Geometry,
    s: &VisionSettings,
    backend: Backend,
) -> Vec<u8> {
    let (oh, ow) = g.resized;
    let (ch, cw) = g.out;
    // Intersection of the crop window with the resized image.
    let y0 = g.offset.0.max(0) as usize;
    let x0 = g.offset.1.max(0) as usize;
    let y1 = ((g.offset.0 + ch as i64).min(oh as i64)).max(0) as usize;
    let x1 = ((g.offset.1 + cw as i64).min(ow as i64)).max(0) as usize;
    let win =
        Window { top: y0, left: x0, height: y1.saturating_sub(y0), width: x1.saturating_sub(x0) };
    let inner = resize_crop(src, h, w, oh, ow, win, s.filter, backend);
    if win.height == ch && win.width == cw {
        return inner;
    }
    let mut out = vec![0u8; ch * cw * 3];
    let dy = (y0 as i64 - g.offset.0) as usize;
    let dx = (x0 as i64 - g.offset.1) as usize;
    for r in 0..win.height {
        let dst = ((dy + r) * cw + dx) * 3;
        out[dst..dst + win.width * 3]
            .copy_from_slice(&inner[r * win.width * 3..(r + 1) * win.width * 3]);
    }
    out
}

/// Validates an image's shape and returns it as contiguous bytes (borrowed when possible).
fn contiguous<'a>(img: &'a ArrayView3<'_, u8>, what: &dyn Fn() -> String) -> Result<Cow<'a, [u8]>> {
    let sh = img.shape();
    if sh[2] != 3 {
        return Err(ProcessorError::InvalidMedia {
            what: what(),
            message: format!("expected 3 RGB channels in (H, W, 3), got shape {sh:?}"),
        });
    }
    if sh[0] == 0 || sh[1] == 0 {
        return Err(ProcessorError::InvalidMedia {
            what: what(),
            message: format!("image size {}x{} is empty", sh[1], sh[0]),
        });
    }
    if sh[0] > MAX_SIDE || sh[1] > MAX_SIDE {
        return Err(ProcessorError::MediaTooLarge {
            what: what(),
            message: format!("image size {}x{} is outside 1..={MAX_SIDE}", sh[1], sh[0]),
        });
    }
    Ok(match img.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(img.iter().copied().collect()),
    })
}

/// The standard pipeline (resize → crop → rescale/normalize) for one image into `out (3, H, W)`.
fn standard_into(
    src: &[u8],
    h: usize,
    w: usize,
    s: &VisionSettings,
    backend: Backend,
    norm: &Normalizer,
    out: &mut ArrayViewMut3<'_, f32>,
) {
    let g = geometry(h, w, s, backend);
    if g.resized == (h, w) && g.out == (h, w) {
        norm.write_chw(src, out);
    } else {
        let bytes = resize_and_crop(src, h, w, &g, s, backend);
        norm.write_chw(&bytes, out);
    }
}

/// Processes a video `(T, H, W, 3)` into `(T, 3, H', W')` with the standard pipeline, frames in
/// parallel.
pub fn process_video(
    frames: ArrayView4<'_, u8>,
    s: &VisionSettings,
    backend: Backend,
    what: &str,
) -> Result<ArrayD<f32>> {
    let sh = frames.shape();
    let (t, h, w) = (sh[0], sh[1], sh[2]);
    if t == 0 {
        return Err(ProcessorError::InvalidMedia {
            what: what.into(),
            message: "video has no frames".into(),
        });
    }
    // Validate once (all frames share the shape).
    let first = frames.index_axis(Axis(0), 0);
    contiguous(&first, &|| what.to_string())?;
    let g = geometry(h, w, s, backend);
    let (oh, ow) = g.out;
    check_out(oh, ow, what)?;
    let norm = Normalizer::new(s, backend);
    let mut out = ArrayD::<f32>::zeros(IxDyn(&[t, 3, oh, ow]));
    par_planes(&mut out, (oh, ow), |i, d3| {
        let frame = frames.index_axis(Axis(0), i);
        let bytes: Cow<'_, [u8]> = match frame.as_slice() {
            Some(b) => Cow::Borrowed(b),
            None => Cow::Owned(frame.iter().copied().collect()),
        };
        standard_into(&bytes, h, w, s, backend, &norm, d3);
    });
    Ok(out)
}

/// Runs `f(i, (3, h, w) view)` for every leading index of the standard-layout `out`, in parallel.
fn par_planes<F>(out: &mut ArrayD<f32>, (h, w): (usize, usize), f: F)
where
    F: Fn(usize, &mut ArrayViewMut3<'_, f32>) + Sync,
{
    let per = 3 * h * w;
    if per == 0 {
        return;
    }
    if let Some(data) = out.as_slice_mut() {
        data.par_chunks_mut(per).enumerate().for_each(|(i, chunk)| {
            if let Ok(mut v) = ArrayViewMut3::from_shape((3, h, w), chunk) {
                f(i, &mut v);
            }
        });
    }
}

fn check_out(oh: usize, ow: usize, what: &str) -> Result<()> {
    if oh == 0 || ow == 0 || oh > MAX_SIDE || ow > MAX_SIDE {
        // The sizes come from the processor config (checked against MAX_CONFIG_SIDE when read).
        return Err(ProcessorError::MediaTooLarge {
            what: what.into(),
            message: format!("processed size {ow}x{oh} is outside 1..={MAX_SIDE}"),
        });
    }
    Ok(())
}

/// One processed image: its patches `(P, 3, H, W)` and how it was cut into them.
#[derive(Debug, Clone)]
pub struct ProcessedImage {
    /// Patches (P = 1 for plain images): the base image, then the anyres tiles row-major.
    pub patches: ArrayD<f32>,
    /// The original size, the anyres tiles, and whether the image was processed as part of a
    /// multi-image sample (OneVision): what vision packs the features by.
    pub grid: PatchGrid,
}

/// How [`process_image`] cuts an image, decided from its size alone: what vision packs the
/// features by, and (through `vidlm_model::FeatureRules`) its placeholder count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImagePlan {
    /// The original size, the anyres tiles, the multi-image flag.
    pub grid: PatchGrid,
    /// The processed size `(H, W)` of each patch (after resize and crop).
    pub patch_out: (usize, usize),
    /// The anyres canvas and tiles, for anyres layouts.
    pub tiling: Option<Tiling>,
}

/// An anyres image's canvas and tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiling {
    /// The best resolution `(H, W)` (`select_best_resolution` over the pinpoints).
    pub best: (u32, u32),
    /// Side of a tile in canvas pixels.
    pub tile: usize,
    /// Size the base (whole) image is resized to.
    pub base: (usize, usize),
}

/// Plans how an `h × w` image is cut for `layout` (`multi_image`: OneVision's rule for samples
/// with 2+ images). `h` and `w` are within `1..=MAX_SIDE`.
pub fn image_plan(
    h: usize,
    w: usize,
    layout: ImageLayout,
    s: &VisionSettings,
    multi_image: bool,
    what: &str,
) -> Result<ImagePlan> {
    if h == 0 || w == 0 || h > MAX_SIDE || w > MAX_SIDE {
        return Err(ProcessorError::MediaTooLarge {
            what: what.into(),
            message: format!("image size {w}x{h} is outside 1..={MAX_SIDE}"),
        });
    }
    let image_size = (h as u32, w as u32);
    match layout {
        // The processed size does not depend on the backend (only the crop offsets do).
        ImageLayout::Plain => {
            let patch_out = geometry(h, w, s, Backend::Torchvision).out;
            Ok(ImagePlan { grid: PatchGrid::single(image_size, false), patch_out, tiling: None })
        }
        ImageLayout::AnyresOnevision if multi_image => {
            let m = h.max(w);
            let patch_out = geometry(m, m, s, Backend::Torchvision).out;
            Ok(ImagePlan { grid: PatchGrid::single(image_size, true), patch_out, tiling: None })
        }
        ImageLayout::AnyresOnevision | ImageLayout::AnyresNext => {
            let base = match (s.size.height, s.size.width, s.size.shortest_edge) {
                (Some(a), Some(b), _) => (a as usize, b as usize),
                (_, _, Some(e)) => (e as usize, e as usize),
                _ => (0, 0),
            };
            let tile =
                match (s.crop_size.and_then(|c| c.height), s.size.height, s.size.shortest_edge) {
                    (Some(c), _, _) if s.do_center_crop => c as usize,
                    (_, Some(hh), _) => hh as usize,
                    (_, _, Some(e)) => e as usize,
                    _ => 0,
                };
            check_out(base.0, base.1, what)?;
            check_out(tile, tile, what)?;
            let best = select_best_resolution(image_size.0, image_size.1, &s.pinpoints)
                .ok_or_else(|| {
                    ProcessorError::Model(vidlm_model::ModelError::MissingField {
                        file: "preprocessor_config.json".into(),
                        field: "image_grid_pinpoints".into(),
                    })
                })?;
            let grid = PatchGrid {
                image_size,
                tiles: Some(tile_grid(best, tile as u32)),
                multi_image: false,
                thw: None,
            };
            let patch_out = geometry(base.0, base.1, s, Backend::Torchvision).out;
            Ok(ImagePlan { grid, patch_out, tiling: Some(Tiling { best, tile, base }) })
        }
        ImageLayout::Patchified => {
            let p = s.patch.as_ref().ok_or_else(|| {
                ProcessorError::Internal(format!("{what}: {} is not patchified", s.class))
            })?;
            let out = if s.do_resize {
                crate::patches::smart_resize(
                    h,
                    w,
                    p.patch_size * p.merge_size,
                    p.min_pixels,
                    p.max_pixels,
                )
                .map_err(|message| ProcessorError::InvalidMedia { what: what.into(), message })?
            } else {
                (h, w)
            };
            check_out(out.0, out.1, what)?;
            let thw = (1, (out.0 / p.patch_size) as u32, (out.1 / p.patch_size) as u32);
            Ok(ImagePlan {
                grid: PatchGrid::patchified(image_size, thw),
                patch_out: out,
                tiling: None,
            })
        }
    }
}

/// Processes one image according to the family's layout. `multi_image`: OneVision's rule for
/// samples with 2+ images (pad to square + resize instead of anyres).
pub fn process_image(
    img: ArrayView3<'_, u8>,
    layout: ImageLayout,
    s: &VisionSettings,
    backend: Backend,
    multi_image: bool,
    what: &str,
) -> Result<ProcessedImage> {
    let bytes = contiguous(&img, &|| what.to_string())?;
    let (h, w) = (img.shape()[0], img.shape()[1]);
    let plan = image_plan(h, w, layout, s, multi_image, what)?;
    if layout == ImageLayout::Patchified {
        let p = crate::patches::process_image_patches(img, s, backend, what)?;
        debug_assert_eq!(Some(p.thw), plan.grid.thw);
        return Ok(ProcessedImage { patches: p.pixels.into_dyn(), grid: plan.grid });
    }
    let image_size = plan.grid.image_size;
    let norm = Normalizer::new(s, backend);
    match layout {
        ImageLayout::Plain => {
            let g = geometry(h, w, s, backend);
            check_out(g.out.0, g.out.1, what)?;
            let mut out = ArrayD::<f32>::zeros(IxDyn(&[1, 3, g.out.0, g.out.1]));
            let mut d3 =
                out.index_axis_mut(Axis(0), 0).into_dimensionality::<ndarray::Ix3>().map_err(
                    |e| ProcessorError::InvalidMedia { what: what.into(), message: e.to_string() },
                )?;
            standard_into(&bytes, h, w, s, backend, &norm, &mut d3);
            Ok(ProcessedImage { patches: out, grid: PatchGrid::single(image_size, false) })
        }
        ImageLayout::AnyresOnevision if multi_image => {
            // pad_to_square with int(mean*255), then the standard pipeline.
            let fill: [u8; 3] = [0, 1, 2].map(|c| (s.mean[c] * 255.0).clamp(0.0, 255.0) as u8);
            let m = h.max(w);
            let (padded, ph, pw): (Cow<'_, [u8]>, usize, usize) = if h == w {
                (bytes, h, w)
            } else {
                let left = (m - w) / 2;
                let top = (m - h) / 2;
                let mut buf: Vec<u8> = Vec::with_capacity(m * m * 3);
                for _ in 0..m * m {
                    buf.extend_from_slice(&fill);
                }
                for y in 0..h {
                    let d = ((top + y) * m + left) * 3;
                    buf[d..d + w * 3].copy_from_slice(&bytes[y * w * 3..(y + 1) * w * 3]);
                }
                (Cow::Owned(buf), m, m)
            };
            let g = geometry(ph, pw, s, backend);
            check_out(g.out.0, g.out.1, what)?;
            let mut out = ArrayD::<f32>::zeros(IxDyn(&[1, 3, g.out.0, g.out.1]));
            let mut d3 =
                out.index_axis_mut(Axis(0), 0).into_dimensionality::<ndarray::Ix3>().map_err(
                    |e| ProcessorError::InvalidMedia { what: what.into(), message: e.to_string() },
                )?;
            standard_into(&padded, ph, pw, s, backend, &norm, &mut d3);
            Ok(ProcessedImage { patches: out, grid: PatchGrid::single(image_size, true) })
        }
        ImageLayout::Patchified => {
            Err(ProcessorError::Internal(format!("{what}: patchified image not patchified")))
        }
        ImageLayout::AnyresOnevision | ImageLayout::AnyresNext => {
            let Some(tiling) = plan.tiling else {
                return Err(ProcessorError::Internal(format!(
                    "{what}: anyres image without a tiling"
                )));
            };
            let (base_h, base_w) = tiling.base;
            let patch = tiling.tile;
            let best = tiling.best;
            let (bh, bw) = (best.0 as usize, best.1 as usize);
            let (nh, nw) = patch_output_size(h as u32, w as u32, best);
            let (nh, nw) = (nh as usize, nw as usize);
            // Resized (aspect-preserving) then zero-padded (centered) canvas of (bh, bw).
            let resized = resize(&bytes, h, w, nh, nw, s.filter, backend);
            let (px, rx) = ((bw - nw) / 2, (bw - nw) % 2);
            let (py, _ry) = ((bh - nh) / 2, (bh - nh) % 2);
            let _ = rx;
            let mut canvas = vec![0u8; bh * bw * 3];
            for y in 0..nh {
                let d = ((py + y) * bw + px) * 3;
                canvas[d..d + nw * 3].copy_from_slice(&resized[y * nw * 3..(y + 1) * nw * 3]);
            }
            drop(resized);
            // Tiles, row-major; a tile at the border is cut short (divide_to_patches slicing).
            let mut tiles: Vec<(Vec<u8>, usize, usize)> = Vec::new();
            let mut y = 0;
            while y < bh {
                let mut x = 0;
                while x < bw {
                    let th = patch.min(bh - y);
                    let tw = patch.min(bw - x);
                    let mut t = Vec::with_capacity(th * tw * 3);
                    for r in 0..th {
                        let d = ((y + r) * bw + x) * 3;
                        t.extend_from_slice(&canvas[d..d + tw * 3]);
                    }
                    tiles.push((t, th, tw));
                    x += patch;
                }
                y += patch;
            }
            drop(canvas);
            // Base image: squash-resize of the original to (base_h, base_w).
            let base = resize(&bytes, h, w, base_h, base_w, s.filter, backend);
            let mut all: Vec<(Cow<'_, [u8]>, usize, usize)> =
                vec![(Cow::Owned(base), base_h, base_w)];
            all.extend(tiles.into_iter().map(|(t, th, tw)| (Cow::Owned(t), th, tw)));
            // Every patch then goes through resize(size) → crop → normalize.
            let geos: Vec<Geometry> =
                all.iter().map(|(_, ph, pw)| geometry(*ph, *pw, s, backend)).collect();
            let g0 = geos[0];
            if geos.iter().any(|g| g.out != g0.out) {
                return Err(ProcessorError::InvalidMedia {
                    what: what.into(),
                    message: "anyres patches have different processed sizes (inconsistent size/crop_size config)".into(),
                });
            }
            check_out(g0.out.0, g0.out.1, what)?;
            let mut out = ArrayD::<f32>::zeros(IxDyn(&[all.len(), 3, g0.out.0, g0.out.1]));
            par_planes(&mut out, g0.out, |i, d3| {
                let (buf, ph, pw) = &all[i];
                standard_into(buf, *ph, *pw, s, backend, &norm, d3);
            });
            let grid = plan.grid;
            if grid.num_patches() != all.len() {
                return Err(ProcessorError::Internal(format!(
                    "{what}: {} patches for a grid of {grid:?}",
                    all.len()
                )));
            }
            Ok(ProcessedImage { patches: out, grid })
        }
    }
}

/// Processes several images in parallel (rayon): `images[i]` with `multi_image[i]`.
pub fn process_images(
    images: &[ArrayView3<'_, u8>],
    multi_image: &[bool],
    layout: ImageLayout,
    s: &VisionSettings,
    backend: Backend,
    what: &(dyn Fn(usize) -> String + Sync),
) -> Result<Vec<ProcessedImage>> {
    images
        .par_iter()
        .enumerate()
        .map(|(i, img)| {
            process_image(
                img.view(),
                layout,
                s,
                backend,
                multi_image.get(i).copied().unwrap_or(false),
                &what(i),
            )
        })
        .collect()
}

/// Stacks processed images into the family's image tensor: `(N, 3, H, W)` for plain images,
/// `(N, P_max, 3, H, W)` (zero-padded along P when `do_pad`) for anyres layouts.
pub fn stack_images(
    images: &[ProcessedImage],
    layout: ImageLayout,
    do_pad: bool,
) -> Result<ArrayD<f32>> {
    let first = images.first().ok_or_else(|| ProcessorError::InvalidMedia {
        what: "images".into(),
        message: "no images to stack".into(),
    })?;
    let inner = &first.patches.shape()[1..];
    if images.iter().any(|im| &im.patches.shape()[1..] != inner) {
        return Err(ProcessorError::InvalidMedia {
            what: "images".into(),
            message: "processed images have different sizes and cannot be batched into one tensor"
                .into(),
        });
    }
    match layout {
        // Patchified images are rows `[patches, C·T·P·P]`: concatenated like plain images.
        ImageLayout::Plain | ImageLayout::Patchified => {
            let n: usize = images.iter().map(|im| im.patches.shape()[0]).sum();
            let mut shape = vec![n];
            shape.extend_from_slice(inner);
            let mut out = ArrayD::<f32>::zeros(IxDyn(&shape));
            let mut i = 0;
            for im in images {
                for p in im.patches.axis_iter(Axis(0)) {
                    out.index_axis_mut(Axis(0), i).assign(&p);
                    i += 1;
                }
            }
            Ok(out)
        }
        _ => {
            let pmax = images.iter().map(|im| im.patches.shape()[0]).max().unwrap_or(0);
            if !do_pad && images.iter().any(|im| im.patches.shape()[0] != pmax) {
                return Err(ProcessorError::InvalidMedia {
                    what: "images".into(),
                    message: "images have different patch counts and do_pad is false".into(),
                });
            }
            let mut shape = vec![images.len(), pmax];
            shape.extend_from_slice(inner);
            let mut out = ArrayD::<f32>::zeros(IxDyn(&shape));
            for (i, im) in images.iter().enumerate() {
                let p = im.patches.shape()[0];
                out.index_axis_mut(Axis(0), i).slice_mut(s![..p, .., .., ..]).assign(&im.patches);
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortest_edge_rounding() {
        assert_eq!(resize_target(480, 640, &SizeDict::shortest(224)), (224, 298));
        assert_eq!(resize_target(480, 640, &SizeDict::shortest(336)), (336, 448));
        assert_eq!(resize_target(640, 480, &SizeDict::shortest(336)), (448, 336));
        assert_eq!(resize_target(1080, 1920, &SizeDict::shortest(336)), (336, 597));
        assert_eq!(resize_target(5, 5, &SizeDict::hw(7, 9)), (7, 9));
    }
}
