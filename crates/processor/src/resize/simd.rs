//! The resize row kernels compiled for AVX2: the only `unsafe` code of the crate.
//!
//! The kernels are plain safe Rust (integer arithmetic); compiling them with AVX2 enabled lets
//! LLVM vectorise them, with identical results. Calling a `#[target_feature]` function is
//! `unsafe` because the CPU must have the feature: [`RowKernels`] can only be made by
//! [`RowKernels::detect`], which checks at run time, so every call below is sound.

use super::{h_row, v_row, Axis, Buf};
use std::ops::Range;

/// The row kernels for this CPU (AVX2 builds when the CPU has AVX2).
#[derive(Debug, Clone, Copy)]
pub(super) struct RowKernels {
    avx2: bool,
}

impl RowKernels {
    /// Detects the CPU's features.
    pub(super) fn detect() -> RowKernels {
        #[cfg(target_arch = "x86_64")]
        let avx2 = std::is_x86_feature_detected!("avx2");
        #[cfg(not(target_arch = "x86_64"))]
        let avx2 = false;
        RowKernels { avx2 }
    }

    /// One horizontal-pass output row (see `h_row`).
    #[inline]
    pub(super) fn h_row(
        self,
        srow: &[u8],
        col0: usize,
        axis: &Axis,
        outs: &Range<usize>,
        orow: &mut [u8],
        planes: &mut Vec<i32>,
    ) {
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: `self.avx2` is only true when `detect` found AVX2 on this CPU.
            unsafe { h_row_avx2(srow, col0, axis, outs, orow, planes) };
            return;
        }
        h_row(srow, col0, axis, outs, orow, planes)
    }

    /// One vertical-pass output row (see `v_row`).
    #[inline]
    pub(super) fn v_row(
        self,
        src: &Buf<'_>,
        cols: &Range<usize>,
        axis: &Axis,
        o: usize,
        orow: &mut [u8],
        acc: &mut Vec<i32>,
    ) {
        #[cfg(target_arch = "x86_64")]
        if self.avx2 {
            // SAFETY: as in `h_row`.
            unsafe { v_row_avx2(src, cols, axis, o, orow, acc) };
            return;
        }
        v_row(src, cols, axis, o, orow, acc)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn h_row_avx2(
    srow: &[u8],
    col0: usize,
    axis: &Axis,
    outs: &Range<usize>,
    orow: &mut [u8],
    planes: &mut Vec<i32>,
) {
    h_row(srow, col0, axis, outs, orow, planes)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn v_row_avx2(
    src: &Buf<'_>,
    cols: &Range<usize>,
    axis: &Axis,
    o: usize,
    orow: &mut [u8],
    acc: &mut Vec<i32>,
) {
    v_row(src, cols, axis, o, orow, acc)
}
