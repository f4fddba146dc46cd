//! Separable fixed-point resampling of interleaved RGB `u8` images, bit-exact with the two
//! implementations transformers uses:
//!
//! * [`Backend::Pil`] — Pillow 13's `libImaging/Resample.c` (`ImagingResample` on an RGB image):
//!   double-precision filter weights, normalised, converted to 22-bit fixed point; each pass
//!   rounds and clips to `u8`; horizontal pass first unless Pillow 13's rule picks vertical first
//!   (`(H_in - H_out) > 0 && (H_in - H_out) > 2 * (W_in - W_out)`, PR #9549).
//! * [`Backend::Torchvision`] — torch's native CPU `uint8` antialiased path
//!   (`_upsample_bicubic2d_aa` / `_upsample_bilinear2d_aa` on `uint8`, `UpSampleKernel.cpp` +
//!   `UpSampleKernelAVXAntialias.h`): the same support and centring as Pillow, but weights are
//!   converted to `int16` with a per-axis precision chosen from the largest weight, and the
//!   horizontal pass always runs first.
//!
//! Both accumulate in `i32` with a rounding offset of `1 << (precision - 1)`, shift right and
//! clamp to `0..=255` after every pass. A pass is skipped when its dimension does not change.
//!
//! Only the output pixels inside a crop window are computed ([`resize_crop`]); every output pixel
//! depends only on its own coefficients, so this is exactly "resize, then center-crop".

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

// The only module of the crate allowed `unsafe` (AVX2 builds of the row kernels).
#[allow(unsafe_code)]
mod simd;
use simd::RowKernels;

/// Which resampling implementation to reproduce (defined with the class table in `vidlm-model`:
/// each processor class lists the backends it exists for).
pub use vidlm_model::Backend;

/// Resampling filter (PIL's `resample` codes 2 and 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Filter {
    /// `PILImageResampling.BILINEAR` (2), triangle filter, support 1.
    Bilinear,
    /// `PILImageResampling.BICUBIC` (3), Keys cubic with a = -0.5, support 2.
    Bicubic,
}

impl Filter {
    /// Maps PIL's resample code. Only bilinear (2) and bicubic (3) are implemented.
    pub fn from_pil_code(code: u32) -> Option<Filter> {
        match code {
            2 => Some(Filter::Bilinear),
            3 => Some(Filter::Bicubic),
            _ => None,
        }
    }

    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
        }
    }

    /// Pillow's `bilinear_filter` / `bicubic_filter`.
    fn eval_pil(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Bilinear => {
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Filter::Bicubic => {
                let a = -0.5;
                if x < 1.0 {
                    ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * a
                } else {
                    0.0
                }
            }
        }
    }

    /// torch's `HelperInterpLinear::aa_filter` / `HelperInterpCubic::aa_filter`.
    fn eval_torch(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Bilinear => {
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            Filter::Bicubic => {
                let a = -0.5;
                if x < 1.0 {
                    ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
                } else {
                    0.0
                }
            }
        }
    }
}

/// Fixed-point coefficients of one axis.
#[derive(Debug, Clone)]
pub(crate) struct Axis {
    /// First source index of each output index.
    start: Vec<usize>,
    /// Number of taps of each output index.
    len: Vec<usize>,
    /// `ksize` weights per output index.
    weights: Vec<i32>,
    ksize: usize,
    precision: u32,
}

impl Axis {
    pub(crate) fn new(in_size: usize, out_size: usize, filter: Filter, backend: Backend) -> Axis {
        let scale = in_size as f64 / out_size as f64;
        let filterscale = if scale < 1.0 { 1.0 } else { scale };
        let support = filter.support() * filterscale;
        let ksize = (support.ceil() as usize) * 2 + 1;
        let ss = 1.0 / filterscale;
        let mut start = Vec::with_capacity(out_size);
        let mut len = Vec::with_capacity(out_size);
        let mut wf = vec![0.0f64; out_size * ksize];
        let mut wt_max = 0.0f64;
        for o in 0..out_size {
            let center = (o as f64 + 0.5) * scale;
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
            let n = (xmax - xmin).clamp(0, ksize as i64) as usize;
            let k = &mut wf[o * ksize..o * ksize + ksize];
            let mut total = 0.0f64;
            for (j, kj) in k.iter_mut().enumerate().take(n) {
                let x = (j as i64 + xmin) as f64 - center + 0.5;
                let w = match backend {
                    Backend::Pil => filter.eval_pil(x * ss),
                    Backend::Torchvision => filter.eval_torch(x * ss),
                };
                *kj = w;
                total += w;
            }
            if total != 0.0 {
                for kj in k.iter_mut().take(n) {
                    *kj /= total;
                    wt_max = wt_max.max(*kj);
                }
            }
            start.push(xmin as usize);
            len.push(n);
        }
        let precision = match backend {
            Backend::Pil => 22,
            Backend::Torchvision => {
                let mut p = 0u32;
                while p < 22 {
                    let next = (0.5 + wt_max * f64::from(1u32 << (p + 1))) as i32;
                    if next >= (1 << 15) {
                        break;
                    }
                    p += 1;
                }
                p
            }
        };
        let mult = f64::from(1u32 << precision);
        let weights = wf
            .iter()
            .map(|&w| {
                let v = w * mult;
                if v < 0.0 {
                    (-0.5 + v) as i32
                } else {
                    (0.5 + v) as i32
                }
            })
            .collect();
        Axis { start, len, weights, ksize, precision }
    }

    /// Source range needed by the outputs in `outs`.
    fn source_range(&self, outs: std::ops::Range<usize>) -> std::ops::Range<usize> {
        let mut lo = usize::MAX;
        let mut hi = 0;
        for o in outs {
            lo = lo.min(self.start[o]);
            hi = hi.max(self.start[o] + self.len[o]);
        }
        if lo > hi {
            0..0
        } else {
            lo..hi
        }
    }

    #[inline]
    fn round_shift(&self, acc: i32) -> u8 {
        let r = if self.precision == 0 { acc } else { acc >> self.precision };
        r.clamp(0, 255) as u8
    }

    #[inline]
    fn init(&self) -> i32 {
        if self.precision == 0 {
            0
        } else {
            1 << (self.precision - 1)
        }
    }
}

/// An interleaved RGB buffer covering rows `row0..row0+rows` and columns `col0..col0+cols` of
/// some (virtual) image.
struct Buf<'a> {
    data: &'a [u8],
    /// Row stride in pixels.
    stride: usize,
    row0: usize,
    col0: usize,
}

/// One horizontal-pass row: the source row is split into three `i32` planes so that each output
/// value is a contiguous dot product (vectorizes well).
#[inline(always)]
fn h_row(
    srow: &[u8],
    col0: usize,
    axis: &Axis,
    outs: &std::ops::Range<usize>,
    orow: &mut [u8],
    planes: &mut Vec<i32>,
) {
    let w = srow.len() / 3;
    let ks = axis.ksize;
    // Each plane is padded with `ksize` zeros so every dot product can run over exactly `ksize`
    // taps (the weights past `len` are zero): fixed-length loops vectorize better.
    let pw = w + ks;
    planes.clear();
    planes.resize(pw * 3, 0);
    let (pr, rest) = planes.split_at_mut(pw);
    let (pg, pb) = rest.split_at_mut(pw);
    for (i, px) in srow.chunks_exact(3).enumerate() {
        pr[i] = i32::from(px[0]);
        pg[i] = i32::from(px[1]);
        pb[i] = i32::from(px[2]);
    }
    let init = axis.init();
    for (oi, o) in outs.clone().enumerate() {
        let xmin = axis.start[o] - col0;
        let k = &axis.weights[o * ks..o * ks + ks];
        let dot = |p: &[i32]| {
            let p = &p[xmin..xmin + ks];
            let mut a = init;
            for j in 0..ks {
                a += p[j] * k[j];
            }
            a
        };
        orow[oi * 3] = axis.round_shift(dot(pr));
        orow[oi * 3 + 1] = axis.round_shift(dot(pg));
        orow[oi * 3 + 2] = axis.round_shift(dot(pb));
    }
}

/// One vertical-pass output row.
#[inline(always)]
fn v_row(
    src: &Buf<'_>,
    cols: &std::ops::Range<usize>,
    axis: &Axis,
    o: usize,
    orow: &mut [u8],
    acc: &mut Vec<i32>,
) {
    let cw = cols.len();
    acc.clear();
    acc.resize(cw * 3, axis.init());
    let ymin = axis.start[o];
    let n = axis.len[o];
    let k = &axis.weights[o * axis.ksize..o * axis.ksize + n];
    for (j, &kw) in k.iter().enumerate() {
        let y = ymin + j - src.row0;
        let base = (y * src.stride + (cols.start - src.col0)) * 3;
        let srow = &src.data[base..base + cw * 3];
        for (a, &p) in acc.iter_mut().zip(srow) {
            *a += i32::from(p) * kw;
        }
    }
    for (dst, a) in orow.iter_mut().zip(acc.iter()) {
        *dst = axis.round_shift(*a);
    }
}

/// Horizontal pass: for each buffer row in `rows` (image coordinates), computes the output
/// columns `outs`. Returns `rows.len() × outs.len() × 3`.
fn h_pass(
    src: &Buf<'_>,
    rows: std::ops::Range<usize>,
    axis: &Axis,
    outs: std::ops::Range<usize>,
) -> Vec<u8> {
    let ow = outs.len();
    let mut out = vec![0u8; rows.len() * ow * 3];
    if ow == 0 {
        return out;
    }
    let kernels = RowKernels::detect();
    let work = |planes: &mut Vec<i32>, (ri, orow): (usize, &mut [u8])| {
        let y = rows.start + ri;
        let srow = &src.data[(y - src.row0) * src.stride * 3..(y - src.row0 + 1) * src.stride * 3];
        kernels.h_row(srow, src.col0, axis, &outs, orow, planes);
    };
    if rows.len() * ow >= 1 << 16 {
        out.par_chunks_mut(ow * 3).enumerate().for_each_init(Vec::new, work);
    } else {
        let mut planes = Vec::new();
        out.chunks_mut(ow * 3).enumerate().for_each(|x| work(&mut planes, x));
    }
    out
}

/// Vertical pass: computes output rows `outs` for buffer columns `cols` (image coordinates).
/// Returns `outs.len() × cols.len() × 3`.
fn v_pass(
    src: &Buf<'_>,
    cols: std::ops::Range<usize>,
    axis: &Axis,
    outs: std::ops::Range<usize>,
) -> Vec<u8> {
    let cw = cols.len();
    let mut out = vec![0u8; outs.len() * cw * 3];
    if cw == 0 {
        return out;
    }
    let kernels = RowKernels::detect();
    let work = |acc: &mut Vec<i32>, (oi, orow): (usize, &mut [u8])| {
        let o = outs.start + oi;
        kernels.v_row(src, &cols, axis, o, orow, acc);
    };
    if outs.len() * cw >= 1 << 16 {
        out.par_chunks_mut(cw * 3).enumerate().for_each_init(Vec::new, work);
    } else {
        let mut acc = Vec::new();
        out.chunks_mut(cw * 3).enumerate().for_each(|x| work(&mut acc, x));
    }
    out
}

/// A crop window in output coordinates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// First row.
    pub top: usize,
    /// First column.
    pub left: usize,
    /// Number of rows.
    pub height: usize,
    /// Number of columns.
    pub width: usize,
}

/// Resizes the interleaved RGB image `src` (`sh × sw × 3`, row-major) to `oh × ow` and returns
/// only the pixels in `win` (which must lie inside `oh × ow`), as `win.height × win.width × 3`.
///
/// Panics never; an empty image or window gives an empty buffer. Callers validate sizes.
#[allow(clippy::too_many_arguments)] // mirrors the C signature: source, sizes, window, filter, backend
pub fn resize_crop(
    src: &[u8],
    sh: usize,
    sw: usize,
    oh: usize,
    ow: usize,
    win: Window,
    filter: Filter,
    backend: Backend,
) -> Vec<u8> {
    let rows = win.top..win.top + win.height;
    let cols = win.left..win.left + win.width;
    if sh == 0
        || sw == 0
        || oh == 0
        || ow == 0
        || win.height == 0
        || win.width == 0
        || src.len() < sh * sw * 3
    {
        return vec![0u8; win.height * win.width * 3];
    }
    let need_h = ow != sw;
    let need_v = oh != sh;
    let full = Buf { data: src, stride: sw, row0: 0, col0: 0 };
    match (need_h, need_v) {
        (false, false) => {
            let mut out = Vec::with_capacity(win.height * win.width * 3);
            for y in rows {
                out.extend_from_slice(&src[(y * sw + cols.start) * 3..(y * sw + cols.end) * 3]);
            }
            out
        }
        (true, false) => {
            let ax = Axis::new(sw, ow, filter, backend);
            h_pass(&full, rows, &ax, cols)
        }
        (false, true) => {
            let ay = Axis::new(sh, oh, filter, backend);
            v_pass(&full, cols, &ay, rows)
        }
        (true, true) => {
            let ax = Axis::new(sw, ow, filter, backend);
            let ay = Axis::new(sh, oh, filter, backend);
            let vertical_first = backend == Backend::Pil
                && sh > oh
                && (sh - oh) as i64 > 2 * (sw as i64 - ow as i64);
            if vertical_first {
                let src_cols = ax.source_range(cols.clone());
                let tmp = v_pass(&full, src_cols.clone(), &ay, rows.clone());
                let buf = Buf {
                    data: &tmp,
                    stride: src_cols.len(),
                    row0: rows.start,
                    col0: src_cols.start,
                };
                h_pass(&buf, rows, &ax, cols)
            } else {
                let src_rows = ay.source_range(rows.clone());
                let tmp = h_pass(&full, src_rows.clone(), &ax, cols.clone());
                let buf =
                    Buf { data: &tmp, stride: cols.len(), row0: src_rows.start, col0: cols.start };
                v_pass(&buf, cols, &ay, rows)
            }
        }
    }
}

/// Resizes the whole image (no crop). See [`resize_crop`].
pub fn resize(
    src: &[u8],
    sh: usize,
    sw: usize,
    oh: usize,
    ow: usize,
    filter: Filter,
    backend: Backend,
) -> Vec<u8> {
    resize_crop(
        src,
        sh,
        sw,
        oh,
        ow,
        Window { top: 0, left: 0, height: oh, width: ow },
        filter,
        backend,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_copy() {
        let src: Vec<u8> = (0..4 * 5 * 3).map(|i| (i * 7 % 256) as u8).collect();
        for b in [Backend::Pil, Backend::Torchvision] {
            assert_eq!(resize(&src, 4, 5, 4, 5, Filter::Bicubic, b), src);
        }
    }

    #[test]
    fn constant_image_stays_constant() {
        let src = vec![77u8; 37 * 53 * 3];
        for b in [Backend::Pil, Backend::Torchvision] {
            for (oh, ow) in [(10, 10), (100, 20), (37, 11), (5, 53), (224, 224)] {
                let out = resize(&src, 37, 53, oh, ow, Filter::Bicubic, b);
                assert!(out.iter().all(|&v| v == 77), "{b:?} {oh}x{ow}");
            }
        }
    }

    #[test]
    fn crop_window_equals_full_then_crop() {
        let (sh, sw) = (61, 97);
        let src: Vec<u8> = (0..sh * sw * 3).map(|i| ((i * 2654435761usize) >> 7) as u8).collect();
        for b in [Backend::Pil, Backend::Torchvision] {
            for (oh, ow) in [(40, 30), (30, 70), (120, 200), (61, 20), (20, 97)] {
                let full = resize(&src, sh, sw, oh, ow, Filter::Bicubic, b);
                let win = Window { top: oh / 4, left: ow / 3, height: oh / 2, width: ow / 2 };
                let part = resize_crop(&src, sh, sw, oh, ow, win, Filter::Bicubic, b);
                let mut expect = Vec::new();
                for y in win.top..win.top + win.height {
                    expect.extend_from_slice(
                        &full[(y * ow + win.left) * 3..(y * ow + win.left + win.width) * 3],
                    );
                }
                assert_eq!(part, expect, "{b:?} {oh}x{ow}");
            }
        }
    }

    #[test]
    fn torch_precision_fits_int16() {
        for (i, o) in [(1920, 336), (100, 384), (7, 1000), (384, 384 * 3)] {
            let ax = Axis::new(i, o, Filter::Bicubic, Backend::Torchvision);
            assert!(ax.weights.iter().all(|&w| (-32768..32768).contains(&w)));
            assert!(ax.precision > 10);
        }
    }
}
