//! Images decode into the same frame type as videos: lossless formats bit-exact with the ffmpeg
//! CLI's rgb24 output, JPEG as PIL decodes it (see `orientation.rs`).

use crate::common;

use common::*;
use vidlm_video_io::*;

/// Lossless formats decode exactly as the ffmpeg CLI (and PIL) decode them. JPEG is decoded
/// with libjpeg-turbo like PIL does, and checked against transformers in `orientation.rs`.
#[test]
fn images_match_ffmpeg() {
    for name in IMAGES.iter().filter(|n| !n.ends_with(".jpg")) {
        let path = video(name);
        let f = load_image(&path).unwrap();
        assert_eq!(f.len(), 1, "{name}");
        assert_eq!(f.indices, vec![0]);
        let (_, want) = ffmpeg_frames(&path, 0, &[0], None, false);
        let ours: Vec<u8> = f.data.iter().copied().collect();
        assert_eq!(ours.len(), want[0].len(), "{name}");
        assert!(ours == want[0], "{name}: differs from ffmpeg -pix_fmt rgb24");
        // from memory: identical
        let g = load_image_bytes(std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(f.data, g.data, "{name} from bytes");
    }
}

#[test]
fn image_sizes_and_alpha() {
    let f = load_image(video("image.png")).unwrap();
    assert_eq!(f.data.shape(), &[1, 241, 321, 3]); // odd sizes are kept
                                                   // RGBA: alpha is dropped (like PIL's convert("RGB")), colour kept
    let a = load_image(video("image_rgba.png")).unwrap();
    let b = load_image(video("image.bmp")).unwrap();
    assert_eq!(a.data, b.data, "the same lossless picture as PNG-RGBA and BMP");
}

#[test]
fn broken_images_are_typed_errors() {
    let png = std::fs::read(video("image.png")).unwrap();
    for cut in [8, 40, png.len() / 2] {
        match load_image_bytes(png[..cut].to_vec()) {
            Err(
                VideoError::InvalidData(_)
                | VideoError::Truncated { .. }
                | VideoError::Corrupt { .. },
            ) => {}
            other => panic!(
                "PNG cut at {cut}: expected a data error, got {:?}",
                other.map(|f| f.indices)
            ),
        }
    }
    assert!(matches!(load_image_bytes(Vec::new()), Err(VideoError::Empty)));
}
