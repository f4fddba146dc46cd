//! The EXIF orientation of a still image, read the way Pillow's `Image.getexif()` reads it,
//! which transformers' `load_image` applies with `ImageOps.exif_transpose`:
//!
//! * JPEG: the first `APP1` segment starting `Exif\0\0` (later ones are appended to it);
//!   else the `tiff:Orientation` of the last XMP `APP1` segment;
//! * PNG: the `eXIf` chunk (anywhere in the file); else the `XML:com.adobe.xmp` iTXt chunk;
//! * WebP: the `EXIF` chunk; else the `XMP ` chunk;
//! * TIFF: the first IFD of the file itself.
//!
//! Orientation 1..=8 as in the EXIF specification; values outside 2..=8 mean "as stored".
//! Not read (rare, and PNG-only): ImageMagick's zTXt "Raw profile type exif".

fn u16_at(d: &[u8], at: usize, le: bool) -> Option<u16> {
    let b: [u8; 2] = d.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(if le { u16::from_le_bytes(b) } else { u16::from_be_bytes(b) })
}

fn u32_at(d: &[u8], at: usize, le: bool) -> Option<u32> {
    let b: [u8; 4] = d.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(if le { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) })
}

/// Orientation tag (274) of the first IFD of a TIFF structure (EXIF payload without its
/// `Exif\0\0` prefix).
fn tiff_orientation(t: &[u8]) -> Option<u32> {
    let t = t.strip_prefix(b"Exif\0\0").unwrap_or(t);
    let le = match t.get(..4)? {
        b"II*\0" => true,
        b"MM\0*" => false,
        _ => return None,
    };
    let ifd = u32_at(t, 4, le)? as usize;
    let n = u16_at(t, ifd, le)? as usize;
    for k in 0..n.min(1024) {
        let e = ifd + 2 + 12 * k;
        if u16_at(t, e, le)? != 0x0112 {
            continue;
        }
        let typ = u16_at(t, e + 2, le)?;
        let count = u32_at(t, e + 4, le)?;
        if count == 0 {
            return None;
        }
        // the first value, stored in the entry itself (it fits: count * size <= 4 for one value
        // of these types; PIL keeps the first of several)
        return match typ {
            1 | 7 => t.get(e + 8).map(|&b| b as u32), // BYTE, UNDEFINED
            3 => u16_at(t, e + 8, le).map(u32::from), // SHORT
            8 => u16_at(t, e + 8, le).map(|v| v as i16 as i64).and_then(|v| u32::try_from(v).ok()), // SSHORT
            4 => u32_at(t, e + 8, le), // LONG
            9 => u32_at(t, e + 8, le).and_then(|v| u32::try_from(v as i32).ok()), // SLONG
            _ => None,
        };
    }
    None
}

/// `tiff:Orientation="N"` or `<tiff:Orientation>N<`, Pillow's XMP fallback.
fn xmp_orientation(x: &[u8]) -> Option<u32> {
    let key = b"tiff:Orientation";
    let mut from = 0;
    while let Some(p) = x.get(from..)?.windows(key.len()).position(|w| w == key) {
        let at = from + p + key.len();
        let digit = match x.get(at..at + 2)? {
            [b'=', b'"'] => x.get(at + 2),
            [b'>', d] => Some(d),
            _ => None,
        };
        if let Some(d) = digit.filter(|d| d.is_ascii_digit()) {
            return Some((d - b'0') as u32);
        }
        from = at;
    }
    None
}

fn jpeg(d: &[u8]) -> Option<u32> {
    let mut i = 2;
    let mut exif: Option<Vec<u8>> = None;
    let mut xmp: Option<&[u8]> = None;
    while i + 4 <= d.len() {
        if d[i] != 0xff {
            break;
        }
        let m = d[i + 1];
        if m == 0xff {
            i += 1;
            continue;
        }
        if (0xd0..=0xd7).contains(&m) || m == 0x01 {
            i += 2;
            continue;
        }
        if m == 0xda || m == 0xd9 {
            break;
        }
        let len = u16::from_be_bytes([d[i + 2], d[i + 3]]) as usize;
        if len < 2 {
            break;
        }
        let seg = d.get(i + 4..(i + 2 + len).min(d.len()))?;
        if m == 0xe1 {
            if seg.starts_with(b"Exif\0\0") {
                match &mut exif {
                    Some(e) => e.extend_from_slice(&seg[6..]),
                    None => exif = Some(seg.to_vec()),
                }
            } else if let Some(rest) = seg.strip_prefix(b"http://ns.adobe.com/xap/1.0/\0") {
                xmp = Some(rest);
            }
        }
        i += 2 + len;
    }
    match exif.as_deref().and_then(tiff_orientation) {
        Some(o) => Some(o),
        None => xmp.and_then(xmp_orientation),
    }
}

fn png(d: &[u8]) -> Option<u32> {
    let mut i = 8;
    let mut xmp = None;
    while i + 8 <= d.len() {
        let len = u32::from_be_bytes(d[i..i + 4].try_into().ok()?) as usize;
        let kind = &d[i + 4..i + 8];
        let body = d.get(i + 8..(i + 8).checked_add(len)?.min(d.len()))?;
        match kind {
            b"eXIf" => {
                if let Some(o) = tiff_orientation(body) {
                    return Some(o);
                }
            }
            b"iTXt" if body.starts_with(b"XML:com.adobe.xmp\0") => {
                // keyword\0 compression flag, method, language\0, translated keyword\0, text
                let rest = &body[18..];
                if rest.first() == Some(&0) {
                    let mut parts = rest.get(2..)?.splitn(3, |&b| b == 0);
                    let _lang = parts.next();
                    let _translated = parts.next();
                    xmp = parts.next().and_then(xmp_orientation);
                }
            }
            b"IEND" => break,
            _ => {}
        }
        i = i.checked_add(12 + len)?;
    }
    xmp
}

fn webp(d: &[u8]) -> Option<u32> {
    let mut i = 12;
    let mut xmp = None;
    while i + 8 <= d.len() {
        let kind = &d[i..i + 4];
        let len = u32::from_le_bytes(d[i + 4..i + 8].try_into().ok()?) as usize;
        let body = d.get(i + 8..(i + 8).checked_add(len)?.min(d.len()))?;
        match kind {
            b"EXIF" => {
                if let Some(o) = tiff_orientation(body) {
                    return Some(o);
                }
            }
            b"XMP " => xmp = xmp_orientation(body),
            _ => {}
        }
        i = i.checked_add(8 + len + (len & 1))?;
    }
    xmp
}

/// The orientation (2..=8) a still image asks to be displayed with; `None` for "as stored"
/// (no tag, orientation 1, a value Pillow ignores, or not an image format that carries it).
pub(crate) fn orientation(data: &[u8]) -> Option<u8> {
    let o = if data.starts_with(&[0xff, 0xd8]) {
        jpeg(data)
    } else if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        png(data)
    } else if data.starts_with(b"RIFF") && data.get(8..12) == Some(b"WEBP") {
        webp(data)
    } else if data.starts_with(b"II*\0") || data.starts_with(b"MM\0*") {
        tiff_orientation(data)
    } else {
        None
    }?;
    (2..=8).contains(&o).then_some(o as u8)
}

#[cfg(test)]
mod tests {
    use super::orientation;

    /// A big-endian TIFF with one IFD entry: orientation `o` of type `typ`.
    fn tiff(o: u16, typ: u16) -> Vec<u8> {
        let mut t = b"MM\0*\0\0\0\x08\0\x01".to_vec();
        t.extend(0x0112u16.to_be_bytes());
        t.extend(typ.to_be_bytes());
        t.extend(1u32.to_be_bytes());
        match typ {
            4 => t.extend((o as u32).to_be_bytes()),
            _ => t.extend([(o >> 8) as u8, o as u8, 0, 0]),
        }
        t.extend([0, 0, 0, 0]);
        t
    }

    fn jpeg_with_app1(payload: &[u8]) -> Vec<u8> {
        let mut d = vec![0xff, 0xd8, 0xff, 0xe1];
        d.extend(((payload.len() + 2) as u16).to_be_bytes());
        d.extend(payload);
        d.extend([0xff, 0xda, 0, 2, 0xff, 0xd9]);
        d
    }

    #[test]
    fn jpeg_exif_and_xmp() {
        for o in 1..=8u16 {
            let mut p = b"Exif\0\0".to_vec();
            p.extend(tiff(o, 3));
            assert_eq!(orientation(&jpeg_with_app1(&p)), (o >= 2).then_some(o as u8), "{o}");
        }
        let mut p = b"Exif\0\0".to_vec();
        p.extend(tiff(9, 3));
        assert_eq!(orientation(&jpeg_with_app1(&p)), None); // out of range: as stored
        let x = b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta><rdf:Description tiff:Orientation=\"6\"/></x:xmpmeta>";
        assert_eq!(orientation(&jpeg_with_app1(x)), Some(6));
        let x = b"http://ns.adobe.com/xap/1.0/\0<tiff:Orientation>8</tiff:Orientation>";
        assert_eq!(orientation(&jpeg_with_app1(x)), Some(8));
    }

    #[test]
    fn png_webp_tiff() {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let t = tiff(5, 3);
        png.extend((t.len() as u32).to_be_bytes());
        png.extend(b"eXIf");
        png.extend(&t);
        png.extend([0; 4]);
        assert_eq!(orientation(&png), Some(5));
        let mut webp = b"RIFF\0\0\0\0WEBPEXIF".to_vec();
        let t = tiff(7, 4);
        webp.extend((t.len() as u32).to_le_bytes());
        webp.extend(&t);
        assert_eq!(orientation(&webp), Some(7));
        assert_eq!(orientation(&tiff(3, 3)), Some(3));
    }

    #[test]
    fn garbage_is_as_stored() {
        assert_eq!(orientation(b""), None);
        assert_eq!(orientation(&[0xff, 0xd8, 0xff, 0xe1, 0xff, 0xff]), None);
        let mut p = b"Exif\0\0MM\0*\xff\xff\xff\xff".to_vec();
        p.extend([0; 8]);
        assert_eq!(orientation(&jpeg_with_app1(&p)), None);
    }
}
