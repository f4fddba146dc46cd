//! Still images: the picture size their headers declare, read from the first bytes before any
//! decoder runs. FFmpeg's image demuxers leave the size to the decoder, which refuses a
//! picture over the pixel limit without saying how big it was; reading the header first turns
//! a decompression bomb (a 1 KiB PNG declaring 100000x100000) into
//! [`crate::VideoError::LimitExceeded`] with the declared size.

/// How many leading bytes [`declared_size`] looks at (JPEG headers can carry large EXIF/ICC
/// segments before the frame header).
pub(crate) const HEAD_BYTES: usize = 256 * 1024;

fn be16(d: &[u8], at: usize) -> Option<u64> {
    Some(u16::from_be_bytes([*d.get(at)?, *d.get(at + 1)?]) as u64)
}

fn le16(d: &[u8], at: usize) -> Option<u64> {
    Some(u16::from_le_bytes([*d.get(at)?, *d.get(at + 1)?]) as u64)
}

fn be32(d: &[u8], at: usize) -> Option<u64> {
    Some(u32::from_be_bytes(d.get(at..at + 4)?.try_into().ok()?) as u64)
}

fn le32(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(at..at + 4)?.try_into().ok()?))
}

fn le24(d: &[u8], at: usize) -> Option<u64> {
    Some(u32::from_le_bytes([*d.get(at)?, *d.get(at + 1)?, *d.get(at + 2)?, 0]) as u64)
}

/// `(width, height)` that a PNG, JPEG, GIF, BMP or WebP header declares; `None` for anything
/// else (or a header cut short).
pub(crate) fn declared_size(d: &[u8]) -> Option<(u64, u64)> {
    if d.starts_with(b"\x89PNG\r\n\x1a\n") && d.get(12..16) == Some(b"IHDR") {
        return Some((be32(d, 16)?, be32(d, 20)?));
    }
    if d.starts_with(b"GIF87a") || d.starts_with(b"GIF89a") {
        // the logical screen: FFmpeg's decoder allocates a canvas of this size
        return Some((le16(d, 6)?, le16(d, 8)?));
    }
    if d.starts_with(b"BM") && d.len() >= 26 {
        let w = le32(d, 18)? as i32;
        let h = le32(d, 22)? as i32;
        return Some((w.unsigned_abs() as u64, h.unsigned_abs() as u64));
    }
    if d.starts_with(b"RIFF") && d.get(8..12) == Some(b"WEBP") {
        return match d.get(12..16)? {
            b"VP8X" => Some((le24(d, 24)? + 1, le24(d, 27)? + 1)),
            b"VP8L" if d.get(20) == Some(&0x2f) => {
                let bits = le32(d, 21)?;
                Some(((bits & 0x3fff) as u64 + 1, ((bits >> 14) & 0x3fff) as u64 + 1))
            }
            b"VP8 " => Some((le16(d, 26)? & 0x3fff, le16(d, 28)? & 0x3fff)),
            _ => None,
        };
    }
    if d.starts_with(&[0xff, 0xd8]) {
        return jpeg_size(d);
    }
    None
}

/// The size in the first SOFn frame header of a JPEG.
fn jpeg_size(d: &[u8]) -> Option<(u64, u64)> {
    let mut i = 2;
    loop {
        while *d.get(i)? == 0xff && *d.get(i + 1)? == 0xff {
            i += 1;
        }
        if *d.get(i)? != 0xff {
            return None;
        }
        let m = *d.get(i + 1)?;
        if (0xd0..=0xd7).contains(&m) || m == 0x01 {
            i += 2;
            continue;
        }
        let len = be16(d, i + 2)? as usize;
        // SOF0..SOF15 except DHT (C4), JPG (C8), DAC (CC)
        if (0xc0..=0xcf).contains(&m) && m != 0xc4 && m != 0xc8 && m != 0xcc {
            return Some((be16(d, i + 7)?, be16(d, i + 5)?));
        }
        if m == 0xda || m == 0xd9 || len < 2 {
            return None;
        }
        i += 2 + len;
    }
}

#[cfg(test)]
mod tests {
    use super::declared_size;

    #[test]
    fn sizes_from_headers() {
        let mut png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
        png.extend(100_000u32.to_be_bytes());
        png.extend(7u32.to_be_bytes());
        assert_eq!(declared_size(&png), Some((100_000, 7)));
        assert_eq!(declared_size(b"GIF89a\xff\xff\x01\x00"), Some((65535, 1)));
        let mut bmp = vec![0u8; 26];
        bmp[..2].copy_from_slice(b"BM");
        bmp[18..22].copy_from_slice(&640i32.to_le_bytes());
        bmp[22..26].copy_from_slice(&(-480i32).to_le_bytes()); // top-down
        assert_eq!(declared_size(&bmp), Some((640, 480)));
        let mut webp = b"RIFF\0\0\0\0WEBPVP8L\0\0\0\0\x2f".to_vec();
        webp.extend((319u32 | (239 << 14)).to_le_bytes());
        assert_eq!(declared_size(&webp), Some((320, 240)));
        // JPEG: APP0 then SOF0 (height 240, width 320)
        let jpeg = [
            0xff, 0xd8, 0xff, 0xe0, 0x00, 0x04, 0x00, 0x00, 0xff, 0xc0, 0x00, 0x11, 0x08, 0x00,
            0xf0, 0x01, 0x40,
        ];
        assert_eq!(declared_size(&jpeg), Some((320, 240)));
        // cut headers and other formats: no opinion
        assert_eq!(declared_size(&jpeg[..12]), None);
        assert_eq!(declared_size(b"\x00\x00\x00\x20ftypisom"), None);
        assert_eq!(declared_size(b""), None);
    }
}
