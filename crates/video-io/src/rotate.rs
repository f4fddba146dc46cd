//! Copying a converted RGB24 picture into the output, rotated upright.

/// Writes the `w x h` RGB24 picture `src` (rows `stride` bytes apart) into `dst`, rotated
/// clockwise by `rotation` degrees (0, 90, 180, 270) — the same pixel mapping as the ffmpeg
/// CLI's autorotate filters (`transpose=clock`, `hflip,vflip`, `transpose=cclock`).
/// `dst` holds exactly `w * h * 3` bytes.
pub(crate) fn rotate_into(src: &[u8], stride: usize, w: usize, h: usize, rotation: u32, dst: &mut [u8]) {
    debug_assert_eq!(dst.len(), w * h * 3);
    let px = |r: usize, c: usize| -> [u8; 3] {
        let o = r * stride + c * 3;
        match src.get(o..o + 3) {
            Some(p) => [p[0], p[1], p[2]],
            None => [0, 0, 0],
        }
    };
    match rotation {
        90 => {
            // out (W' = h, H' = w): out(r, c) = in(h - 1 - c, r)
            for (i, o) in dst.chunks_exact_mut(3).enumerate() {
                let (r, c) = (i / h, i % h);
                o.copy_from_slice(&px(h - 1 - c, r));
            }
        }
        180 => {
            for (i, o) in dst.chunks_exact_mut(3).enumerate() {
                let (r, c) = (i / w, i % w);
                o.copy_from_slice(&px(h - 1 - r, w - 1 - c));
            }
        }
        270 => {
            // out(r, c) = in(c, w - 1 - r)
            for (i, o) in dst.chunks_exact_mut(3).enumerate() {
                let (r, c) = (i / h, i % h);
                o.copy_from_slice(&px(c, w - 1 - r));
            }
        }
        _ => {
            for (r, row) in dst.chunks_exact_mut(w * 3).enumerate() {
                let o = r * stride;
                if let Some(s) = src.get(o..o + w * 3) {
                    row.copy_from_slice(s);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::rotate_into;

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

    fn run(rot: u32) -> Vec<u8> {
        let mut d = vec![0; 18];
        rotate_into(&pic(), 9, 3, 2, rot, &mut d);
        d.chunks(3).map(|p| p[0]).collect()
    }

    #[test]
    fn rotations_match_ffmpeg_transpose() {
        assert_eq!(run(0), vec![0, 1, 2, 10, 11, 12]);
        // transpose=clock of [[0,1,2],[10,11,12]] is [[10,0],[11,1],[12,2]]
        assert_eq!(run(90), vec![10, 0, 11, 1, 12, 2]);
        assert_eq!(run(180), vec![12, 11, 10, 2, 1, 0]);
        // transpose=cclock: [[2,12],[1,11],[0,10]]
        assert_eq!(run(270), vec![2, 12, 1, 11, 0, 10]);
    }
}
