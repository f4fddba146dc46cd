//! Copying a converted RGB24 picture into the output, turned upright.
//!
//! Orientations are numbered as in EXIF (and applied as Pillow's `exif_transpose` does):
//! 1 as stored, 2 mirrored left-right, 3 turned 180°, 4 mirrored top-bottom, 5 transposed,
//! 6 turned 90° clockwise, 7 transversed, 8 turned 90° counter-clockwise. Videos map their
//! display matrix to the same eight (see `reader::display_orientation`).

/// Orientation from a clockwise rotation (after an optional left-right mirror).
pub(crate) fn from_rotation(rotation: u32, mirrored: bool) -> u8 {
    match (rotation % 360, mirrored) {
        (90, false) => 6,
        (180, false) => 3,
        (270, false) => 8,
        (0, true) => 2,
        (90, true) => 7,
        (180, true) => 4,
        (270, true) => 5,
        _ => 1,
    }
}

/// `(clockwise rotation, mirrored first)` of an orientation.
pub(crate) fn to_rotation(orientation: u8) -> (u32, bool) {
    match orientation {
        2 => (0, true),
        3 => (180, false),
        4 => (180, true),
        5 => (270, true),
        6 => (90, false),
        7 => (90, true),
        8 => (270, false),
        _ => (0, false),
    }
}

/// Whether the orientation swaps width and height.
pub(crate) fn swaps_axes(orientation: u8) -> bool {
    (5..=8).contains(&orientation)
}

/// Writes the `w x h` RGB24 picture `src` (rows `stride` bytes apart) into `dst` in the given
/// orientation. For the rotations this is the pixel mapping of the ffmpeg CLI's autorotate
/// filters (`transpose=clock`, `hflip,vflip`, `transpose=cclock`, `hflip`, `vflip`,
/// `transpose=cclock_flip`, `transpose=clock_flip`). `dst` holds exactly `w * h * 3` bytes.
pub(crate) fn orient_into(
    src: &[u8],
    stride: usize,
    w: usize,
    h: usize,
    orientation: u8,
    dst: &mut [u8],
) {
    debug_assert_eq!(dst.len(), w * h * 3);
    if w == 0 || h == 0 {
        return;
    }
    let px = |r: usize, c: usize| -> [u8; 3] {
        let o = r * stride + c * 3;
        match src.get(o..o + 3) {
            Some(p) => [p[0], p[1], p[2]],
            None => [0, 0, 0],
        }
    };
    if orientation <= 1 || orientation > 8 {
        for (r, row) in dst.chunks_exact_mut(w * 3).enumerate() {
            let o = r * stride;
            if let Some(s) = src.get(o..o + w * 3) {
                row.copy_from_slice(s);
            }
        }
        return;
    }
    // output width: the stored height when the axes swap
    let ow = if swaps_axes(orientation) { h } else { w };
    for (i, o) in dst.chunks_exact_mut(3).enumerate() {
        let (r, c) = (i / ow, i % ow);
        let (sr, sc) = match orientation {
            2 => (r, w - 1 - c),
            3 => (h - 1 - r, w - 1 - c),
            4 => (h - 1 - r, c),
            5 => (c, r),
            6 => (h - 1 - c, r),
            7 => (h - 1 - c, w - 1 - r),
            _ => (c, w - 1 - r), // 8
        };
        o.copy_from_slice(&px(sr, sc));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 3 wide, 2 high, pixel value = 10*row + col in every channel
    fn pic() -> Vec<u8> {
        let mut v = Vec::new();
        for r in 0..2u8 {
            for c in 0..3u8 {
                v.extend([10 * r + c; 3]);
            }
        }
        v
    }

    fn run(o: u8) -> Vec<u8> {
        let mut d = vec![0; 18];
        orient_into(&pic(), 9, 3, 2, o, &mut d);
        d.chunks(3).map(|p| p[0]).collect()
    }

    #[test]
    fn orientations_match_pil_and_ffmpeg() {
        // [[0,1,2],[10,11,12]]
        assert_eq!(run(1), vec![0, 1, 2, 10, 11, 12]);
        assert_eq!(run(2), vec![2, 1, 0, 12, 11, 10]); // FLIP_LEFT_RIGHT, hflip
        assert_eq!(run(3), vec![12, 11, 10, 2, 1, 0]); // ROTATE_180, hflip,vflip
        assert_eq!(run(4), vec![10, 11, 12, 0, 1, 2]); // FLIP_TOP_BOTTOM, vflip
        assert_eq!(run(5), vec![0, 10, 1, 11, 2, 12]); // TRANSPOSE, transpose=cclock_flip
        assert_eq!(run(6), vec![10, 0, 11, 1, 12, 2]); // ROTATE_270 (90° cw), transpose=clock
        assert_eq!(run(7), vec![12, 2, 11, 1, 10, 0]); // TRANSVERSE, transpose=clock_flip
        assert_eq!(run(8), vec![2, 12, 1, 11, 0, 10]); // ROTATE_90 (ccw), transpose=cclock
    }

    #[test]
    fn rotation_and_mirror_round_trip() {
        for o in 1..=8u8 {
            let (r, m) = to_rotation(o);
            assert_eq!(from_rotation(r, m), o);
        }
    }
}
