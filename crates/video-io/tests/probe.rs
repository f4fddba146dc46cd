//! Probe metadata of every fixture, snapshot-tested with insta (`tests/snapshots/`).
//! Review changes with `cargo insta review` (or `INSTA_UPDATE=always` and `git diff`).

use crate::common;

use common::*;
use vidlm_video_io::*;

fn snapshot(name: &str) {
    let info = VideoReader::open(video(name), &OpenOptions::default()).unwrap().info().clone();
    insta::assert_json_snapshot!(name.replace(['/', '.'], "_"), info);
}

#[test]
fn probe_valid_videos() {
    for name in VALID {
        snapshot(name);
    }
}

#[test]
fn probe_images() {
    for name in IMAGES {
        snapshot(name);
    }
}

#[test]
fn probe_truncated_files() {
    for name in [
        "broken_truncated_faststart.mp4",
        "broken_truncated.webm",
        "broken_truncated.avi",
        "broken_header_only.mp4",
    ] {
        snapshot(name);
    }
}

#[test]
fn probe_json_has_the_documented_fields() {
    let info =
        VideoReader::open(video("rotated_90.mp4"), &OpenOptions::default()).unwrap().info().clone();
    let v = serde_json::to_value(&info).unwrap();
    assert_eq!(v["width"], 240); // as stored
    assert_eq!(v["height"], 320);
    assert_eq!(v["rotation"], 90);
    assert_eq!(v["output_width"], 320);
    assert_eq!(v["output_height"], 240);
    assert_eq!(v["frame_count"], 50);
    assert_eq!(v["frame_count_source"], "packet_index");
    assert_eq!(v["fps"], 25.0);
    assert_eq!(v["duration"], 2.0);
    assert_eq!(v["codec"], "h264");
    assert_eq!(v["pixel_format"], "yuv420p");
    // webm/mkv headers carry no frame count: the packet index supplies it
    let info =
        VideoReader::open(video("vp9.webm"), &OpenOptions::default()).unwrap().info().clone();
    assert_eq!((info.header_frame_count, info.frame_count), (None, 150));
}
