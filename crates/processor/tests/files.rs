//! Media given by path go through vidlm-video-io (default `video-io` feature): a video with
//! `num_frames` / `fps`, an image, paths relative to the messages file.

#![cfg(feature = "video-io")]

use crate::common;

use common::*;
use serde_json::json;
use vidlm_processor::{Conversation, ProcessOptions, Processor, Sampling};

fn demo() -> std::path::PathBuf {
    repo_root().join("assets")
}

#[test]
fn video_and_image_paths_are_decoded() {
    // A PNG frame next to the video, written once.
    let png =
        std::env::temp_dir().join(format!("vidlm-processor-frame-{}.png", std::process::id()));
    let status = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(demo().join("demo.mp4"))
        .args(["-frames:v", "1"])
        .arg(&png)
        .status();
    assert!(status.is_ok_and(|s| s.success()), "ffmpeg could not write a PNG");
    let messages = json!([{"role": "user", "content": [
        {"type": "video", "video": "demo.mp4"},
        {"type": "image", "path": png.to_string_lossy()},
        {"type": "text", "text": "What happens?"}]}]);
    let conv = Conversation::from_json(&messages, Some(&demo())).unwrap_or_else(|e| panic!("{e}"));
    let p = Processor::from_dir(model_dir("hub", "onevision")).unwrap_or_else(|e| panic!("{e}"));
    let opts = ProcessOptions { sampling: Sampling::NumFrames(8), ..ProcessOptions::default() };
    let out = p.process(std::slice::from_ref(&conv), &opts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.video_token_counts, vec![196 * 8 + 1]);
    assert_eq!(
        out.pixel_values_videos.as_ref().map(|v| v.shape().to_vec()),
        Some(vec![1, 8, 3, 384, 384])
    );
    // demo.mp4 is 320x240: anyres keeps 384x384 (least waste) → base + 1 tile.
    assert_eq!(
        out.pixel_values.as_ref().map(|v| v.shape().to_vec()),
        Some(vec![1, 2, 3, 384, 384])
    );
    assert_eq!(out.image_sizes.as_ref().map(|s| s.row(0).to_vec()), Some(vec![240, 320]));
    // fps sampling: 120 frames at 30 fps, 2 fps → 8 frames.
    let opts = ProcessOptions { sampling: Sampling::Fps(2.0), ..ProcessOptions::default() };
    let out = p.process(&[conv], &opts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.pixel_values_videos.as_ref().map(|v| v.shape()[1]), Some(8));
    let _ = std::fs::remove_file(png);
}

#[test]
fn corrupt_video_is_a_typed_error() {
    let bad = std::env::temp_dir().join(format!("vidlm-processor-bad-{}.mp4", std::process::id()));
    std::fs::write(&bad, b"not a video at all").unwrap_or_else(|e| panic!("{e}"));
    let messages =
        json!([{"role": "user", "content": [{"type": "video", "video": bad.to_string_lossy()}]}]);
    let conv = Conversation::from_json(&messages, None).unwrap_or_else(|e| panic!("{e}"));
    let p =
        Processor::from_dir(model_dir("hub", "llava_next_video")).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        p.process(&[conv], &ProcessOptions::default()),
        Err(vidlm_processor::ProcessorError::MediaLoad { .. })
    ));
    let _ = std::fs::remove_file(bad);
}
