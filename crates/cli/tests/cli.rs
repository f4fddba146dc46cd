//! The `vidlm` binary: probe JSON, frames output, one-line errors.

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vidlm"))
}

fn demo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/demo.mp4")
}

fn test_videos() -> PathBuf {
    let dir = match (std::env::var_os("VIDLM_TEST_VIDEOS"), std::env::var_os("VIDLM_CACHE")) {
        (Some(d), _) => PathBuf::from(d),
        (None, Some(c)) => PathBuf::from(c).join("test-videos"),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/test-videos"),
    };
    assert!(
        dir.join(".generation").is_file(),
        "test videos not found in {}: run `cargo xtask videos`",
        dir.display()
    );
    dir
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vidlm-cli-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn probe_prints_json() {
    let out = bin().arg("probe").arg(demo()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["width"], 320);
    assert_eq!(v["height"], 240);
    assert_eq!(v["rotation"], 0);
    assert_eq!(v["frame_count"], 120);
    assert_eq!(v["frame_count_source"], "packet_index");
    assert_eq!(v["fps"], 30.0);
    assert_eq!(v["duration"], 4.0);
    assert_eq!(v["codec"], "h264");
    assert_eq!(v["pixel_format"], "yuv420p");
}

#[test]
fn frames_writes_pngs_and_json() {
    let out_dir = tmp("frames");
    let out = bin()
        .arg("frames")
        .arg(demo())
        .args(["--num-frames", "8", "--out"])
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("frames.json")).unwrap()).unwrap();
    let frames = j["frames"].as_array().unwrap();
    let idx: Vec<u64> = frames.iter().map(|f| f["index"].as_u64().unwrap()).collect();
    assert_eq!(idx, vec![0, 15, 30, 45, 60, 75, 90, 105]);
    assert_eq!(frames[1]["pts"], 0.5);
    for i in idx {
        let p = out_dir.join(format!("{i:06}.png"));
        let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&p).unwrap()));
        let reader = dec.read_info().unwrap();
        let info = reader.info();
        assert_eq!(
            (info.width, info.height, info.color_type),
            (320, 240, png::ColorType::Rgb),
            "{}",
            p.display()
        );
    }
    let _ = std::fs::remove_dir_all(&out_dir);
}

#[test]
fn frames_with_indices_range_and_cap() {
    let out_dir = tmp("indices");
    let out = bin()
        .arg("frames")
        .arg(demo())
        .args(["--indices", "0,5,9", "--out"])
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for i in [0, 5, 9] {
        assert!(out_dir.join(format!("{i:06}.png")).is_file());
    }
    let out_dir2 = tmp("range");
    let out = bin()
        .arg("frames")
        .arg(demo())
        .args(["--fps", "2", "--start", "1", "--end", "3", "--max-frames", "3", "--out"])
        .arg(&out_dir2)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir2.join("frames.json")).unwrap()).unwrap();
    // [1 s, 3 s) = frames 30..90 (60 frames): fps 2 -> 4 frames, capped to 3
    let idx: Vec<u64> =
        j["frames"].as_array().unwrap().iter().map(|f| f["index"].as_u64().unwrap()).collect();
    assert_eq!(idx, vec![30, 50, 70]);
    let _ = std::fs::remove_dir_all(&out_dir);
    let _ = std::fs::remove_dir_all(&out_dir2);
}

#[test]
fn rotated_video_frames_are_upright() {
    let out_dir = tmp("rot");
    let out = bin()
        .arg("frames")
        .arg(test_videos().join("rotated_90.mp4"))
        .args(["--indices", "0", "--out"])
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dec = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(out_dir.join("000000.png")).unwrap(),
    ));
    let reader = dec.read_info().unwrap();
    assert_eq!((reader.info().width, reader.info().height), (320, 240));
    let _ = std::fs::remove_dir_all(&out_dir);
}

/// Bad input: non-zero exit, exactly one line on stderr, no panic or backtrace.
fn assert_one_line_error(args: &[&str], expect: &str) {
    let out = bin().args(args).env("RUST_BACKTRACE", "1").output().unwrap();
    assert!(!out.status.success(), "{args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: stderr is not one line: {err:?}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(expect), "{args:?}: {err:?} does not mention {expect:?}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
}

#[test]
fn bad_input_is_a_one_line_error() {
    let v = test_videos();
    let s = |name: &str| v.join(name).to_string_lossy().into_owned();
    let out = tmp("bad").to_string_lossy().into_owned();
    assert_one_line_error(&["probe", "/no/such/video.mp4"], "not found");
    assert_one_line_error(&["probe", &s("broken_empty.mp4")], "empty");
    assert_one_line_error(&["probe", &s("broken_random.mp4")], "invalid media data");
    assert_one_line_error(&["probe", &s("audio_only.m4a")], "no video stream");
    assert_one_line_error(&["probe", &s("hostile_16384x16384.mp4")], "limit exceeded");
    assert_one_line_error(&["probe", &s("hostile_unknown_codec.avi")], "unsupported codec");
    assert_one_line_error(
        &["frames", &s("broken_truncated_faststart.mp4"), "--num-frames", "4", "--out", &out],
        "truncated",
    );
    assert_one_line_error(
        &["frames", &s("one_frame.mp4"), "--num-frames", "4", "--out", &out],
        "requested 4 frames",
    );
    assert_one_line_error(
        &["frames", &s("one_frame.mp4"), "--indices", "7", "--out", &out],
        "out of range",
    );
    // the lenient flag decodes what is there
    let ok = bin()
        .args([
            "frames",
            &s("broken_truncated_faststart.mp4"),
            "--num-frames",
            "4",
            "--lenient",
            "--out",
            &out,
        ])
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(Path::new(&out).join("frames.json")).unwrap())
            .unwrap();
    assert_eq!(j["truncated"], true);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn divx_avi_with_bframes() {
    // issue 11: `vidlm frames --num-frames 5` failed with "corrupt data at frame 0: the decoder
    // produced no picture for this frame" on MPEG-4 part 2 with B-frames in AVI
    let v = test_videos().join("mpeg4_bframes.avi");
    let out = bin().arg("probe").arg(&v).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(p["frame_count"], 75);
    let out_dir = tmp("divx");
    let out = bin()
        .arg("frames")
        .arg(&v)
        .args(["--num-frames", "5", "--out"])
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("frames.json")).unwrap()).unwrap();
    let idx: Vec<u64> =
        j["frames"].as_array().unwrap().iter().map(|f| f["index"].as_u64().unwrap()).collect();
    assert_eq!(idx, vec![0, 15, 30, 45, 60]);
    let _ = std::fs::remove_dir_all(&out_dir);
}

#[test]
fn limits_are_settable() {
    let v = test_videos();
    let s = |name: &str| v.join(name).to_string_lossy().into_owned();
    let out = tmp("limits").to_string_lossy().into_owned();
    // 320x240 = 76800 pixels: one pixel less is refused before decoding
    assert_one_line_error(
        &["probe", &s("mpeg4.avi"), "--max-frame-pixels", "76799"],
        "pixels per frame is 76800, the limit is 76799",
    );
    assert!(bin()
        .args(["probe", &s("mpeg4.avi"), "--max-frame-pixels", "76800"])
        .output()
        .unwrap()
        .status
        .success());
    assert_one_line_error(
        &["probe", &s("mpeg4.avi"), "--max-packets", "50"],
        "packets in the video stream",
    );
    assert_one_line_error(
        &[
            "frames",
            &s("mpeg4.avi"),
            "--num-frames",
            "3",
            "--max-output-bytes",
            "460799",
            "--out",
            &out,
        ],
        "output bytes is 691200",
    );
    // decompression bombs stop at the header, whatever the limit
    assert_one_line_error(
        &["probe", &s("bomb_100000x100000.png")],
        "pixels per frame is 10000000000",
    );
    let _ = std::fs::remove_dir_all(&out);
}
