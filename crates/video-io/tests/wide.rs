//! The wide corpus (issue 11): real-world container/codec pairs and timestamp edge cases made
//! by `cargo xtask videos` (`xtask/src/videos/wide.rs`). Each must decode exactly like the
//! ffmpeg CLI: frame count = `ffprobe -count_frames` of the stream we pick, sampled frames =
//! the CLI's `-vsync 0` frames bit for bit (see `common::check_valid`).

use crate::common;

use common::*;
use vidlm_video_io::*;

macro_rules! wide {
    ($($test:ident => $name:expr,)*) => {
        $(
            #[test]
            fn $test() {
                check_valid($name);
            }
        )*
        /// Every generated file is listed here (the list of tests cannot silently shrink).
        const WIDE: &[&str] = &[$($name),*];
    };
}

wide! {
    // real-world container/codec pairs
    divx_mpeg4_bframes_avi => "mpeg4_bframes.avi",
    xvid_packed_bframes_avi => "xvid_packed.avi",
    divx3_msmpeg4v3_avi => "msmpeg4v3.avi",
    h264_bframes_avi => "h264_bframes.avi",
    mjpeg_camera_avi => "mjpeg_camera.avi",
    mpeg2_dvd_program_stream => "mpeg2_dvd.mpg",
    mpeg2_broadcast_ts => "mpeg2_broadcast.ts",
    mpeg1_vcd => "mpeg1_vcd.mpg",
    h263_phone_3gp => "h263_phone.3gp",
    hevc_hlg_phone_mov => "hevc_hlg_phone.mov",
    prores_camera_mov => "prores_camera.mov",
    dnxhr_mxf => "dnxhr.mxf",
    xdcam_hd422_mxf => "xdcam_hd422.mxf",
    dv_camcorder => "dv_camcorder.dv",
    h264_interlaced_ts => "h264_interlaced.ts",
    qtrle_screen_recording => "qtrle_screen.mov",
    h264_444_screen_capture => "h264_444_screen.mkv",
    vp8_webm => "vp8.webm",
    av1_webm => "av1.webm",
    hevc_mkv => "hevc.mkv",
    sorenson_flv => "flv1.flv",
    h264_flv => "h264.flv",
    wmv2_asf => "wmv2.wmv",
    theora_ogg => "theora.ogv",
    realvideo_rm => "rv20.rm",
    sorenson_svq1_mov => "svq1.mov",
    cinepak_mov => "cinepak.mov",
    ffv1_mkv => "ffv1.mkv",
    huffyuv_avi => "huffyuv.avi",
    utvideo_avi => "utvideo.avi",
    png_frames_in_mov => "png_in.mov",
    jpeg2000_mxf => "jpeg2000.mxf",
    animated_gif => "anim.gif",
    animated_png => "anim.apng",
    // timestamp edge cases
    raw_hevc_without_timestamps => "raw.hevc",
    raw_mpeg4_bframes_without_timestamps => "raw_bframes.m4v",
    fragmented_mp4 => "fragmented.mp4",
    edit_list_starting_mid_gop => "edit_list.mp4",
    video_starts_late_mp4 => "late_start.mp4",
    video_starts_late_mkv => "late_start.mkv",
    video_starts_late_ts => "late_start.ts",
    bframes_without_edit_list => "no_editlist_bframes.mp4",
    best_stream_is_the_second => "two_video_streams.mkv",
    cover_picture_before_the_video => "cover_first.mkv",
    attached_cover_picture => "cover_art.mp4",
    variable_frame_rate_phone => "vfr_phone.mov",
    timestamp_gap => "pts_gap.mkv",
    // bytes of one format under another's extension: the content decides
    png_named_mp4 => "png_named.mp4",
    mp4_named_jpg => "mp4_named.jpg",
}

#[test]
fn the_corpus_is_wide() {
    // issue 11: at least 15 container/codec pairs beyond the original fixtures, plus the
    // timestamp edge cases
    assert!(WIDE.len() >= 45, "{}", WIDE.len());
    let pairs: std::collections::HashSet<(String, String)> = WIDE
        .iter()
        .filter_map(|n| {
            let i = VideoReader::open(video(n), &OpenOptions::default()).ok()?.info().clone();
            Some((i.container, i.codec))
        })
        .collect();
    assert!(pairs.len() >= 35, "only {} distinct container/codec pairs: {pairs:?}", pairs.len());
}

#[test]
fn the_best_stream_is_picked_not_the_first() {
    for name in ["two_video_streams.mkv", "cover_first.mkv"] {
        let r = VideoReader::open(video(name), &OpenOptions::default()).unwrap();
        assert_eq!(r.info().stream_index, 1, "{name}");
        assert_eq!((r.info().width, r.info().height), (320, 240), "{name}");
    }
}

#[test]
fn divx_avi_decodes_every_frame_in_presentation_order() {
    // issue 11's known failure: `vidlm frames --num-frames 5` failed with "corrupt data at
    // frame 0: the decoder produced no picture for this frame"
    let path = video("mpeg4_bframes.avi");
    let mut r = VideoReader::open(&path, &OpenOptions::default()).unwrap();
    assert_eq!(r.info().frame_count, 75);
    let f = r.sample(&SampleRequest::num_frames(5)).unwrap();
    assert_eq!(f.indices, vec![0, 15, 30, 45, 60]);
    assert_matches_ffmpeg(&path, &f, 0, 0);
    // every frame, in one request, equals the CLI's
    let all = r.sample(&SampleRequest::all()).unwrap();
    assert_eq!(all.len(), 75);
    assert_matches_ffmpeg(&path, &all, 0, 0);
}
