//! JPEG structure checks that FFmpeg's decoder does not make.

/// Whether a JPEG file's data reaches its end-of-image marker. The marker segments before the
/// first start-of-scan are skipped by their lengths (so an embedded EXIF thumbnail's own EOI
/// does not count); in the scan data `FF D9` can only be the real EOI, as `FF` bytes there are
/// always stuffed (`FF 00`) or restart markers.
pub(crate) fn is_complete(data: &[u8]) -> bool {
    if data.len() < 4 || data[0] != 0xff || data[1] != 0xd8 {
        return true; // not a plain JPEG file (e.g. an AVI's headerless MJPEG frame): no opinion
    }
    let mut i = 2;
    // marker segments up to the first SOS
    loop {
        // fill bytes before a marker
        while i < data.len() && data[i] == 0xff && data.get(i + 1) == Some(&0xff) {
            i += 1;
        }
        if i + 4 > data.len() || data[i] != 0xff {
            return false;
        }
        let marker = data[i + 1];
        if marker == 0xd9 {
            return true; // EOI before any scan: nothing cut (and nothing to decode)
        }
        if (0xd0..=0xd7).contains(&marker) || marker == 0x01 {
            i += 2;
            continue;
        }
        let len = u16::from_be_bytes([data[i + 2], data[i + 3]]) as usize;
        if len < 2 {
            return false;
        }
        i += 2 + len;
        if marker == 0xda {
            break;
        }
    }
    data.get(i..).is_some_and(|rest| rest.windows(2).any(|w| w == [0xff, 0xd9]))
}

#[cfg(test)]
mod tests {
    use super::is_complete;

    fn jpeg(thumb: bool, cut: bool) -> Vec<u8> {
        let mut d = vec![0xff, 0xd8];
        if thumb {
            // APP1 holding a thumbnail with its own SOI/EOI
            let payload = [b'E', b'x', b'i', b'f', 0, 0, 0xff, 0xd8, 0xff, 0xd9];
            d.extend([0xff, 0xe1]);
            d.extend(((payload.len() + 2) as u16).to_be_bytes());
            d.extend(payload);
        }
        d.extend([0xff, 0xda, 0x00, 0x04, 0x01, 0x00]); // SOS
        d.extend([0x12, 0xff, 0x00, 0x34, 0xff, 0xd0, 0x56]); // scan data, stuffing, RST0
        if !cut {
            d.extend([0xff, 0xd9]);
        }
        d
    }

    #[test]
    fn eoi_after_the_scan_is_required() {
        assert!(is_complete(&jpeg(false, false)));
        assert!(is_complete(&jpeg(true, false)));
        assert!(!is_complete(&jpeg(false, true)));
        // the thumbnail's EOI does not make a cut photo complete
        assert!(!is_complete(&jpeg(true, true)));
        // cut inside the headers
        assert!(!is_complete(&jpeg(true, false)[..8]));
        // not a JPEG file at all: no opinion
        assert!(is_complete(b"\x00\x01\x02\x03"));
    }
}
