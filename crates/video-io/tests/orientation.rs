//! Pictures come out upright:
//! * images like transformers' `load_image` (PIL decode + `ImageOps.exif_transpose`): JPEGs
//!   with every EXIF orientation (and XMP, progressive, grey, 4:4:4, CMYK, a PNG), compared
//!   bit for bit with the goldens `python/exif_goldens.py` wrote from transformers;
//! * videos like the ffmpeg CLI's autorotate, for all eight display-matrix orientations
//!   (rotations and mirrors).

use crate::common;

use common::*;
use ndarray::Axis;
use std::path::{Path, PathBuf};
use vidlm_video_io::*;

fn goldens() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/goldens/exif")
}

/// `(height, width, RGB bytes)` of a golden PNG.
fn read_png(p: &Path) -> (usize, usize, Vec<u8>) {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(p).unwrap()));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0; r.output_buffer_size()];
    let info = r.next_frame(&mut buf).unwrap();
    assert_eq!(
        (info.color_type, info.bit_depth),
        (png::ColorType::Rgb, png::BitDepth::Eight),
        "{}",
        p.display()
    );
    buf.truncate(info.buffer_size());
    (info.height as usize, info.width as usize, buf)
}

const CASES: &[&str] = &[
    "orientation_1.jpg",
    "orientation_2.jpg",
    "orientation_3.jpg",
    "orientation_4.jpg",
    "orientation_5.jpg",
    "orientation_6.jpg",
    "orientation_7.jpg",
    "orientation_8.jpg",
    "orientation_6_444.jpg",
    "orientation_3_progressive.jpg",
    "orientation_8_gray.jpg",
    "orientation_5_xmp.jpg",
    "cmyk.jpg",
    "orientation_7.png",
];

#[test]
fn images_equal_transformers_load_image() {
    for name in CASES {
        let path = goldens().join(name);
        let (h, w, want) = read_png(&goldens().join(format!("{name}.expected.png")));
        for (how, f) in [
            ("path", load_image(&path)),
            ("bytes", load_image_bytes(std::fs::read(&path).unwrap())),
        ] {
            let f = f.unwrap_or_else(|e| panic!("{name} ({how}): {e}"));
            assert_eq!(f.data.shape(), &[1, h, w, 3], "{name} ({how})");
            let ours: Vec<u8> = f.data.iter().copied().collect();
            let diff = ours.iter().zip(&want).filter(|(a, b)| a != b).count();
            assert_eq!(
                diff,
                0,
                "{name} ({how}): {diff} of {} bytes differ from transformers",
                want.len()
            );
        }
    }
}

#[test]
fn every_orientation_is_the_same_picture_turned() {
    // the eight JPEGs hold the same pixels; only the EXIF tag differs
    let up = load_image(goldens().join("orientation_1.jpg")).unwrap().data;
    let stored = VideoReader::open(goldens().join("orientation_6.jpg"), &OpenOptions::default())
        .unwrap()
        .info()
        .clone();
    assert_eq!((stored.width, stored.height), (61, 37));
    for o in 2..=8 {
        let f = load_image(goldens().join(format!("orientation_{o}.jpg"))).unwrap().data;
        let swap = o >= 5;
        assert_eq!(f.shape()[1..3], if swap { [61, 37] } else { [37, 61] }, "orientation {o}");
        // undo it: the red block of the top-left corner is back there
        let red = |d: &ndarray::Array4<u8>, r: usize, c: usize| {
            d[[0, r, c, 0]] > 180 && d[[0, r, c, 2]] < 90
        };
        assert!(red(&up, 2, 2));
        let (h, w) = (f.shape()[1], f.shape()[2]);
        let corner = match o {
            2 => (2, w - 3),
            3 => (h - 3, w - 3),
            4 => (h - 3, 2),
            5 => (2, 2),
            6 => (2, w - 3),
            7 => (h - 3, w - 3),
            _ => (h - 3, 2),
        };
        assert!(
            red(&f, corner.0, corner.1),
            "orientation {o}: the red corner is not where exif_transpose puts it"
        );
    }
}

#[test]
fn cut_jpeg_photos_are_truncated_like_pil_says() {
    let d = std::fs::read(goldens().join("orientation_6.jpg")).unwrap();
    for cut in [d.len() / 2, d.len() - 2] {
        assert!(
            matches!(load_image_bytes(d[..cut].to_vec()), Err(VideoError::Truncated { .. })),
            "cut at {cut} of {}",
            d.len()
        );
    }
}

/// The CLI filters that turn an orientation upright (FFmpeg 5.1 autorotate's choices).
fn filter(o: u8) -> Option<&'static str> {
    match o {
        2 => Some("hflip"),
        3 => Some("hflip,vflip"),
        4 => Some("vflip"),
        5 => Some("transpose=cclock_flip"),
        6 => Some("transpose=clock"),
        7 => Some("transpose=clock_flip"),
        8 => Some("transpose=cclock"),
        _ => None,
    }
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (*x as i32 - *y as i32).abs() as f64).sum::<f64>() / a.len() as f64
}

#[test]
fn display_matrices_rotations_and_mirrors_like_the_cli() {
    let src = video("rotated_source.mp4");
    let (_, upright) = ffmpeg_frames(&src, 0, &[0, 25], None, false);
    for o in 1..=8u8 {
        let name = format!("oriented_{o}.mp4");
        let path = video(&name);
        let mut r = VideoReader::open(&path, &OpenOptions::default()).unwrap();
        let info = r.info().clone();
        let expect_rot = [0, 0, 180, 180, 270, 90, 90, 270][o as usize - 1];
        assert_eq!(
            (info.rotation, info.mirrored),
            (expect_rot, [2, 4, 5, 7].contains(&o)),
            "{name}"
        );
        let swap = o >= 5;
        assert_eq!(
            (info.output_width, info.output_height),
            if swap { (240, 320) } else { (320, 240) },
            "{name}"
        );
        let f = r.sample(&SampleRequest::indices(vec![0, 25])).unwrap();
        // exactly the CLI's rgb24 frames turned by the named filters
        let vf = filter(o).map(|x| format!("format=rgb24,{x}"));
        let (_, want) = ffmpeg_frames(&path, 0, &[0, 25], vf.as_deref(), true);
        for (t, want) in want.iter().enumerate() {
            let ours: Vec<u8> = f.data.index_axis(Axis(0), t).iter().copied().collect();
            assert!(
                ours == *want,
                "{name} frame {t}: differs from -noautorotate -vf format=rgb24,{:?}",
                filter(o)
            );
        }
        // and the CLI's own autorotation picks the same turn (it turns YUV before converting,
        // so pixels differ slightly at colour edges)
        let (_, cli) = ffmpeg_frames(&path, 0, &[0, 25], None, false);
        for (t, cli) in cli.iter().enumerate() {
            let ours: Vec<u8> = f.data.index_axis(Axis(0), t).iter().copied().collect();
            let d = mean_abs_diff(&ours, cli);
            assert!(
                d < 1.5,
                "{name} frame {t}: mean abs difference to the CLI's autorotated frame is {d}"
            );
        }
        // a mirrored picture is not the upright one (the check above is orientation-sensitive)
        if o == 2 {
            let ours: Vec<u8> = f.data.index_axis(Axis(0), 0).iter().copied().collect();
            assert!(mean_abs_diff(&ours, &upright[0]) > 20.0);
        }
    }
}
