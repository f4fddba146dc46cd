//! Typed errors of vidlm-vision on the committed demo model (tiny LLaVA-NeXT-Video).

#[path = "../../decoder/tests/common/mod.rs"]
mod common;

use common::*;
use vidlm_model::{ErrorKind, ModelError};
use vidlm_vision::*;

fn copy_model(without: &[&str]) -> std::path::PathBuf {
    let src = demo_model();
    let dst = std::env::temp_dir().join(format!(
        "vidlm-vision-{}-{}",
        std::process::id(),
        without.join("-").replace('/', "_")
    ));
    std::fs::create_dir_all(dst.join("onnx")).unwrap();
    std::fs::copy(src.join("config.json"), dst.join("config.json")).unwrap();
    for f in ["vision_encoder.onnx", "video_encoder.onnx", "image_newline.safetensors"] {
        if !without.contains(&f) {
            std::fs::copy(src.join("onnx").join(f), dst.join("onnx").join(f)).unwrap();
        }
    }
    dst
}

#[test]
fn missing_files_are_typed() {
    let d = copy_model(&["vision_encoder.onnx"]);
    let e = VisionEncoder::from_dir(&d, &VisionOptions::default()).unwrap_err();
    assert!(
        matches!(&e, VisionError::Ort(vidlm_ort::OrtError::GraphMissing(p)) if p.ends_with("vision_encoder.onnx")),
        "{e}"
    );
    let d2 = copy_model(&["image_newline.safetensors"]);
    let e = VisionEncoder::from_dir(&d2, &VisionOptions::default()).unwrap_err();
    assert!(
        matches!(&e, VisionError::File { path, .. } if path.ends_with("image_newline.safetensors")),
        "{e}"
    );
    // NeXT-Video without its video graph: images work, videos are a typed error.
    let d3 = copy_model(&["video_encoder.onnx"]);
    let mut v = VisionEncoder::from_dir(&d3, &VisionOptions::default()).unwrap();
    let s = v.image_size();
    let e = v
        .video_features(&[VideoPixels { pixel_values: &vec![0.0; 2 * 3 * s * s], frames: 2 }])
        .unwrap_err();
    assert!(matches!(e, VisionError::Unsupported(_)), "{e}");
    // config.json missing / not a LLaVA family.
    let e = VisionEncoder::from_dir(
        std::env::temp_dir().join("vidlm-no-such-model"),
        &VisionOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(e, VisionError::Model(ModelError::MissingFile { .. })), "{e}");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    std::fs::write(
        d.join("config.json"),
        r#"{"model_type":"bert","vision_config":{"image_size":32,"patch_size":4}}"#,
    )
    .unwrap();
    let e = VisionEncoder::from_dir(&d, &VisionOptions::default()).unwrap_err();
    assert!(matches!(e, VisionError::Model(ModelError::UnsupportedModel { .. })), "{e}");
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    for p in [d, d2, d3] {
        let _ = std::fs::remove_dir_all(p);
    }
}

#[test]
fn bad_pixel_inputs_are_typed() {
    let mut v = VisionEncoder::from_dir(
        demo_model(),
        &VisionOptions { max_batch: 2, ..Default::default() },
    )
    .unwrap();
    assert_eq!(v.family(), Family::LlavaNextVideo);
    assert_eq!(v.image_newline().map(<[f32]>::len), Some(16));
    let s = v.image_size();
    let per = 3 * s * s;
    // A 32x64 image cut into 1x2 tiles + base = 3 patches.
    let grid =
        PatchGrid { image_size: (32, 64), tiles: Some((1, 2)), multi_image: false, thw: None };
    // Pixel count that does not match the patch count.
    let e = v
        .image_features(&[ImagePixels { pixel_values: &vec![0.0; per * 3 + 1], grid }])
        .unwrap_err();
    assert!(matches!(e, VisionError::Shape(_)), "{e}");
    // Pixels for fewer patches than the grid has.
    let e =
        v.image_features(&[ImagePixels { pixel_values: &vec![0.0; per * 2], grid }]).unwrap_err();
    assert!(matches!(e, VisionError::Shape(_)), "{e}");
    let ok = v.image_features(&[ImagePixels { pixel_values: &vec![0.0; per * 3], grid }]).unwrap();
    // base 8x8=64 rows + unpadded 8x16 grid with a newline per row = 8*17.
    assert_eq!(ok[0].rows(), 64 + 8 * 17);
    assert_eq!(ok[0].dim, 16);
    // Zero frames, wrong frame data.
    assert!(matches!(
        v.video_features(&[VideoPixels { pixel_values: &[], frames: 0 }]).unwrap_err(),
        VisionError::Shape(_)
    ));
    assert!(matches!(
        v.video_features(&[VideoPixels { pixel_values: &vec![0.0; per], frames: 2 }]).unwrap_err(),
        VisionError::Shape(_)
    ));
    // Frames are chunked (max_batch 2) but the features equal one big call.
    let frames = 5;
    let px: Vec<f32> = (0..frames * per).map(|i| ((i % 97) as f32 / 48.0) - 1.0).collect();
    let chunked = v.video_features(&[VideoPixels { pixel_values: &px, frames }]).unwrap();
    let mut whole = VisionEncoder::from_dir(
        demo_model(),
        &VisionOptions { max_batch: 64, ..Default::default() },
    )
    .unwrap();
    let one = whole.video_features(&[VideoPixels { pixel_values: &px, frames }]).unwrap();
    assert_eq!(chunked[0].rows(), frames * 16);
    assert!(max_abs_diff(&chunked[0].data, &one[0].data) < 1e-5);
}

#[test]
fn released_sessions_load_again_with_the_same_results() {
    let mut v = VisionEncoder::from_dir(
        demo_model(),
        &VisionOptions { max_batch: 4, ..Default::default() },
    )
    .unwrap();
    assert!(v.is_loaded());
    let s = v.image_size();
    let per = 3 * s * s;
    let px: Vec<f32> = (0..3 * per).map(|i| ((i % 89) as f32 / 44.0) - 1.0).collect();
    let video = [VideoPixels { pixel_values: &px, frames: 3 }];
    let grid =
        PatchGrid { image_size: (32, 64), tiles: Some((1, 2)), multi_image: false, thw: None };
    let image = [ImagePixels { pixel_values: &px, grid }];
    let (v1, i1) = (v.video_features(&video).unwrap(), v.image_features(&image).unwrap());
    v.release();
    assert!(!v.is_loaded());
    assert_eq!(v.provider(), vidlm_ort::Provider::Cpu);
    // The next calls load each graph again; results are bit-identical.
    let v2 = v.video_features(&video).unwrap();
    assert!(v.is_loaded());
    let i2 = v.image_features(&image).unwrap();
    assert_eq!(v1, v2);
    assert_eq!(i1, i2);
    v.release();
    v.release();
    assert!(!v.is_loaded());
}
