//! Broken and hostile input: every file gets its typed error, within a bounded time, and no
//! input panics.

use crate::common;

use common::*;
use std::path::PathBuf;
use vidlm_video_io::*;

const LIMIT_S: u64 = 30;

fn open(name: &str) -> Result<VideoReader, VideoError> {
    let p = video(name);
    within(LIMIT_S, name, move || VideoReader::open(&p, &OpenOptions::default()))
}

fn open_bytes(name: &str) -> Result<VideoReader, VideoError> {
    let d = std::fs::read(video(name)).unwrap();
    within(LIMIT_S, name, move || VideoReader::from_bytes(d, &OpenOptions::default()))
}

#[test]
fn empty_file() {
    assert!(matches!(open("broken_empty.mp4"), Err(VideoError::Empty)));
    assert!(matches!(
        VideoReader::from_bytes(Vec::new(), &OpenOptions::default()),
        Err(VideoError::Empty)
    ));
}

#[test]
fn random_bytes() {
    for name in ["broken_random.mp4", "broken_random_small.bin"] {
        assert!(matches!(open(name), Err(VideoError::InvalidData(_))), "{name}");
        assert!(matches!(open_bytes(name), Err(VideoError::InvalidData(_))), "{name} (bytes)");
    }
}

#[test]
fn truncated_mp4_without_index_is_invalid() {
    // moov atom at the end, cut off
    assert!(matches!(open("broken_truncated_moov_at_end.mp4"), Err(VideoError::InvalidData(_))));
}

fn check_truncated(name: &str, full: &str, frames_left: usize) {
    let mut r = open(name).unwrap();
    assert!(r.info().truncated, "{name}");
    assert_eq!(r.info().frame_count, frames_left, "{name}");
    // strict (default): a typed error naming the frame where the data ends
    match within(LIMIT_S, name, {
        let mut r = open(name).unwrap();
        move || r.sample(&SampleRequest::num_frames(4))
    }) {
        Err(VideoError::Truncated { frame, .. }) => assert_eq!(frame, frames_left, "{name}"),
        other => panic!("{name}: expected Truncated, got {other:?}"),
    }
    // lenient: the frames that are there, flagged, and identical to the intact file's
    let f = r.sample(&SampleRequest::num_frames(8).lenient(true)).unwrap();
    assert!(f.truncated);
    assert_eq!(f.indices, uniform_indices(frames_left, 8));
    let mut intact = VideoReader::open(video(full), &OpenOptions::default()).unwrap();
    let g = intact.sample(&SampleRequest::indices(f.indices.clone())).unwrap();
    assert_eq!(f.data, g.data, "{name}: frames before the cut differ from the intact file");
    // asking for frames past the cut: a sampling error (they do not exist)
    assert!(matches!(
        r.sample(&SampleRequest::indices(vec![frames_left]).lenient(true)),
        Err(VideoError::InvalidSampling(SamplingError::IndexOutOfRange { .. }))
    ));
}

#[test]
fn truncated_mp4_with_index() {
    check_truncated("broken_truncated_faststart.mp4", "_faststart_src.mp4", 50);
}

#[test]
fn truncated_webm() {
    check_truncated("broken_truncated.webm", "_webm_src.webm", 51);
}

#[test]
fn truncated_avi() {
    check_truncated("broken_truncated.avi", "mpeg4.avi", 52);
}

#[test]
fn header_without_data() {
    let mut r = open("broken_header_only.mp4").unwrap();
    assert!(r.info().truncated);
    assert_eq!(r.info().frame_count, 0);
    assert!(matches!(
        r.sample(&SampleRequest::num_frames(1)),
        Err(VideoError::Truncated { frame: 0, .. })
    ));
    assert!(matches!(
        r.sample(&SampleRequest::num_frames(1).lenient(true)),
        Err(VideoError::InvalidSampling(SamplingError::NoFrames))
    ));
}

#[test]
fn huge_frame_size_in_header() {
    // mp4 whose sample entry claims 16384x16384 (the bitstream is 320x240): refused from the
    // header, before anything is decoded or allocated
    for r in [open("hostile_16384x16384.mp4"), open_bytes("hostile_16384x16384.mp4")] {
        match r {
            Err(VideoError::LimitExceeded { kind: LimitKind::Pixels, actual, limit }) => {
                assert_eq!(actual, 16384 * 16384);
                assert_eq!(limit, Limits::default().max_pixels);
            }
            other => {
                panic!("expected a pixel limit error, got {:?}", other.map(|r| r.info().clone()))
            }
        }
    }
    // raw y4m claiming 8192x8192: refused before its (400 MB) first frame is read
    assert!(matches!(
        open("hostile_8192x8192.y4m"),
        Err(VideoError::LimitExceeded { kind: LimitKind::Pixels, actual: 67_108_864, .. })
    ));
    // 16384x16384 y4m: FFmpeg itself refuses the header
    assert!(matches!(open("hostile_16384x16384.y4m"), Err(VideoError::InvalidData(_))));
    // a lower limit applies to ordinary files too
    let opts = OpenOptions {
        limits: Limits { max_pixels: 320 * 240 - 1, ..Limits::default() },
        ..OpenOptions::default()
    };
    assert!(matches!(
        VideoReader::open(video("mpeg4.avi"), &opts),
        Err(VideoError::LimitExceeded { kind: LimitKind::Pixels, actual: 76_800, .. })
    ));
}

#[test]
fn unknown_codec() {
    assert!(matches!(open("hostile_unknown_codec.avi"), Err(VideoError::UnsupportedCodec(_))));
}

#[test]
fn audio_only() {
    assert!(matches!(open("audio_only.m4a"), Err(VideoError::NoVideoStream)));
    assert!(matches!(open_bytes("audio_only.m4a"), Err(VideoError::NoVideoStream)));
}

#[test]
fn paths_that_are_not_videos() {
    let missing = videos_dir().join("does-not-exist.mp4");
    assert!(
        matches!(VideoReader::open(&missing, &OpenOptions::default()), Err(VideoError::NotFound(p)) if p == missing)
    );
    assert!(matches!(
        VideoReader::open(videos_dir(), &OpenOptions::default()),
        Err(VideoError::NotAFile(_))
    ));
    // a FIFO would block a reader forever: refused up front
    assert!(matches!(
        VideoReader::open("/dev/zero", &OpenOptions::default()),
        Err(VideoError::NotAFile(_))
    ));
}

#[test]
fn network_is_off_by_default() {
    for url in ["http://127.0.0.1:9/x.mp4", "rtmp://127.0.0.1/live", "file:///etc/passwd"] {
        assert!(
            matches!(
                VideoReader::open(url, &OpenOptions::default()),
                Err(VideoError::ProtocolNotAllowed(_))
            ),
            "{url}"
        );
    }
}

#[test]
fn limits_on_bytes_frames_and_output() {
    let data = std::fs::read(video("mpeg4.avi")).unwrap();
    let opts = OpenOptions {
        limits: Limits { max_input_bytes: 1000, ..Limits::default() },
        ..OpenOptions::default()
    };
    assert!(matches!(
        VideoReader::from_bytes(data.clone(), &opts),
        Err(VideoError::LimitExceeded { kind: LimitKind::InputBytes, limit: 1000, .. })
    ));
    let opts = OpenOptions {
        limits: Limits { max_frames: 4, ..Limits::default() },
        ..OpenOptions::default()
    };
    let mut r = VideoReader::from_bytes(data.clone(), &opts).unwrap();
    assert!(matches!(
        r.sample(&SampleRequest::num_frames(5)),
        Err(VideoError::LimitExceeded { kind: LimitKind::Frames, actual: 5, limit: 4 })
    ));
    assert_eq!(r.sample(&SampleRequest::num_frames(4)).unwrap().len(), 4);
    let opts = OpenOptions {
        limits: Limits { max_output_bytes: 320 * 240 * 3 * 2, ..Limits::default() },
        ..OpenOptions::default()
    };
    let mut r = VideoReader::from_bytes(data, &opts).unwrap();
    assert!(matches!(
        r.sample(&SampleRequest::num_frames(3)),
        Err(VideoError::LimitExceeded { kind: LimitKind::OutputBytes, .. })
    ));
}

/// Cuts and corrupts real files at many points; every outcome must be a value or a typed error
/// within the time bound (a panic inside fails the test through `within`'s thread).
#[test]
fn fuzzed_truncations_and_corruptions_never_panic_or_hang() {
    let sources: Vec<PathBuf> =
        ["h264_bframes.mp4", "vp9.webm", "mpeg4.avi", "hevc.mp4", "image.png"]
            .iter()
            .map(|n| video(n))
            .collect();
    for src in sources {
        let data = std::fs::read(&src).unwrap();
        let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
        for k in 1..10 {
            let cut = data.len() * k / 10;
            cases.push((format!("cut at {cut}"), data[..cut].to_vec()));
        }
        let mut seed = 0x9e3779b97f4a7c15u64;
        for k in 0..6 {
            // 16 runs of 8 bytes in the second half
            let d = corrupted(&data, &mut seed, 16, data.len() / 2, data.len() / 2 - 8);
            cases.push((format!("corruption {k}"), d));
        }
        for (what, bytes) in cases {
            let label = format!("{} {what}", src.display());
            within(LIMIT_S, &label.clone(), move || {
                if let Ok(mut r) = VideoReader::from_bytes(bytes, &OpenOptions::default()) {
                    let _ = r.sample(&SampleRequest::num_frames(8));
                    let _ = r.sample(&SampleRequest::num_frames(8).lenient(true).clamp(true));
                    let _ = r
                        .sample(&SampleRequest::all().lenient(true).strategy(Strategy::Sequential));
                }
            });
        }
    }
}
