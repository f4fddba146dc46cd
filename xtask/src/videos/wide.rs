//! The wide corpus: real-world container/codec pairs and timestamp edge cases (issue 11), each
//! made by the ffmpeg CLI in a second or two. Every file must decode: frame count =
//! `ffprobe -count_frames`, sampled frames = the CLI's (`crates/video-io/tests/wide.rs`).

use super::{a, ffmpeg, make, sine, src};
use anyhow::Result;
use std::path::Path;

/// One recipe: output name, what real collections it stands for, ffmpeg arguments.
type Recipe = (&'static str, &'static str, Vec<String>);

fn cat(parts: Vec<Vec<String>>) -> Vec<String> {
    parts.into_iter().flatten().collect()
}

/// The real-world container/codec pairs. Sources are 320x240 testsrc2 unless a format needs
/// its own size (QCIF H.263, DV NTSC, XDCAM 1080i).
fn pairs() -> Vec<Recipe> {
    let s2 = || src("320x240", 25, 2.0);
    let x264 = || a(&["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]);
    vec![
        // The DivX/XviD failure of issue 11, made exactly as the issue says.
        (
            "mpeg4_bframes.avi",
            "DivX/XviD-style AVI: MPEG-4 part 2 with B-frames",
            cat(vec![
                a(&["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-t", "3"]),
                a(&["-c:v", "mpeg4", "-q:v", "4", "-bf", "2", "-g", "25"]),
            ]),
        ),
        (
            "xvid_packed.avi",
            "XviD AVI with packed B-frames and N-VOPs (libxvid)",
            cat(vec![s2(), a(&["-c:v", "libxvid", "-bf", "2", "-g", "25", "-q:v", "4"])]),
        ),
        (
            "msmpeg4v3.avi",
            "DivX 3 (MS MPEG-4 v3) AVI",
            cat(vec![s2(), a(&["-c:v", "msmpeg4", "-q:v", "4"])]),
        ),
        (
            "h264_bframes.avi",
            "H.264 with B-frames in AVI (web downloads)",
            cat(vec![s2(), x264(), a(&["-bf", "2", "-g", "25"])]),
        ),
        (
            "mjpeg_camera.avi",
            "Motion JPEG 4:2:2 AVI (digital cameras)",
            cat(vec![s2(), a(&["-c:v", "mjpeg", "-q:v", "3", "-pix_fmt", "yuvj422p"])]),
        ),
        (
            "mpeg2_dvd.mpg",
            "MPEG-2 program stream with B-frames and MP2 audio (DVD)",
            cat(vec![
                s2(),
                sine(2.0),
                a(&["-c:v", "mpeg2video", "-bf", "2", "-g", "12", "-q:v", "4", "-c:a", "mp2"]),
            ]),
        ),
        (
            "mpeg2_broadcast.ts",
            "MPEG-2 transport stream (broadcast)",
            cat(vec![
                s2(),
                sine(2.0),
                a(&["-c:v", "mpeg2video", "-bf", "2", "-g", "15", "-b:v", "2M", "-c:a", "mp2"]),
            ]),
        ),
        (
            "mpeg1_vcd.mpg",
            "MPEG-1 program stream (VCD)",
            cat(vec![s2(), a(&["-c:v", "mpeg1video", "-bf", "2", "-q:v", "4"])]),
        ),
        (
            "h263_phone.3gp",
            "H.263 in 3GP (old phones)",
            cat(vec![src("176x144", 15, 2.0), a(&["-c:v", "h263", "-q:v", "5"])]),
        ),
        (
            "hevc_hlg_phone.mov",
            "HEVC 10-bit HLG BT.2020 in QuickTime (phones)",
            cat(vec![
                s2(),
                a(&[
                    "-c:v",
                    "libx265",
                    "-preset",
                    "ultrafast",
                    "-x265-params",
                    "log-level=error",
                    "-pix_fmt",
                    "yuv420p10le",
                    "-color_primaries",
                    "bt2020",
                    "-color_trc",
                    "arib-std-b67",
                    "-colorspace",
                    "bt2020nc",
                    "-tag:v",
                    "hvc1",
                ]),
            ]),
        ),
        (
            "prores_camera.mov",
            "ProRes 422 10-bit in QuickTime (cameras, editing)",
            cat(vec![
                s2(),
                a(&["-c:v", "prores_ks", "-profile:v", "2", "-pix_fmt", "yuv422p10le"]),
            ]),
        ),
        (
            "dnxhr.mxf",
            "DNxHR LB in MXF (broadcast, editing)",
            cat(vec![s2(), a(&["-c:v", "dnxhd", "-profile:v", "dnxhr_lb", "-pix_fmt", "yuv422p"])]),
        ),
        (
            "xdcam_hd422.mxf",
            "XDCAM HD422: MPEG-2 4:2:2 1080i in MXF (broadcast)",
            cat(vec![
                src("1920x1080", 25, 1.0),
                a(&[
                    "-c:v",
                    "mpeg2video",
                    "-pix_fmt",
                    "yuv422p",
                    "-b:v",
                    "50M",
                    "-minrate",
                    "50M",
                    "-maxrate",
                    "50M",
                    "-bufsize",
                    "17825792",
                    "-g",
                    "12",
                    "-bf",
                    "2",
                    "-flags",
                    "+ildct+ilme",
                    "-top",
                    "1",
                ]),
            ]),
        ),
        (
            "dv_camcorder.dv",
            "DV NTSC 4:1:1 (camcorders)",
            cat(vec![
                a(&["-f", "lavfi", "-i", "testsrc2=size=720x480:rate=30000/1001:duration=1"]),
                a(&["-c:v", "dvvideo", "-pix_fmt", "yuv411p"]),
            ]),
        ),
        (
            "h264_interlaced.ts",
            "interlaced H.264 in MPEG-TS (broadcast recordings)",
            cat(vec![s2(), x264(), a(&["-flags", "+ildct+ilme", "-x264opts", "tff=1"])]),
        ),
        (
            "qtrle_screen.mov",
            "QuickTime Animation (screen recordings)",
            cat(vec![s2(), a(&["-c:v", "qtrle"])]),
        ),
        (
            "h264_444_screen.mkv",
            "lossless H.264 4:4:4 in Matroska (screen capture, OBS)",
            cat(vec![
                s2(),
                a(&["-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-pix_fmt", "yuv444p"]),
            ]),
        ),
        (
            "vp8.webm",
            "VP8 WebM (web)",
            cat(vec![s2(), a(&["-c:v", "libvpx", "-b:v", "500k", "-g", "25"])]),
        ),
        (
            "av1.webm",
            "AV1 WebM (web downloads)",
            cat(vec![
                src("320x240", 24, 2.0),
                a(&["-c:v", "libsvtav1", "-preset", "12", "-g", "24"]),
            ]),
        ),
        (
            "hevc.mkv",
            "HEVC in Matroska (downloads)",
            cat(vec![
                s2(),
                a(&[
                    "-c:v",
                    "libx265",
                    "-preset",
                    "ultrafast",
                    "-x265-params",
                    "log-level=error:keyint=25",
                ]),
            ]),
        ),
        (
            "flv1.flv",
            "Sorenson Spark FLV (old web video)",
            cat(vec![s2(), a(&["-c:v", "flv", "-q:v", "4"])]),
        ),
        (
            "h264.flv",
            "H.264 + AAC FLV (web downloads)",
            cat(vec![s2(), sine(2.0), x264(), a(&["-g", "25", "-c:a", "aac"])]),
        ),
        (
            "wmv2.wmv",
            "Windows Media Video 8 in ASF",
            cat(vec![s2(), a(&["-c:v", "wmv2", "-q:v", "4"])]),
        ),
        (
            "theora.ogv",
            "Theora in Ogg (web)",
            cat(vec![s2(), a(&["-c:v", "libtheora", "-q:v", "6"])]),
        ),
        (
            "rv20.rm",
            "RealVideo 2 in RealMedia (old web video)",
            cat(vec![s2(), a(&["-c:v", "rv20", "-q:v", "4"])]),
        ),
        (
            "svq1.mov",
            "Sorenson Video 1 in QuickTime (old QuickTime)",
            cat(vec![s2(), a(&["-c:v", "svq1"])]),
        ),
        (
            "cinepak.mov",
            "Cinepak in QuickTime (CD-ROM era)",
            cat(vec![src("160x120", 15, 1.0), a(&["-c:v", "cinepak"])]),
        ),
        ("ffv1.mkv", "FFV1 in Matroska (archives)", cat(vec![s2(), a(&["-c:v", "ffv1"])])),
        ("huffyuv.avi", "HuffYUV AVI (lossless capture)", cat(vec![s2(), a(&["-c:v", "huffyuv"])])),
        (
            "utvideo.avi",
            "Ut Video AVI (lossless capture)",
            cat(vec![s2(), a(&["-c:v", "utvideo"])]),
        ),
        (
            "png_in.mov",
            "PNG frames in QuickTime (still-image codec in a video container)",
            cat(vec![s2(), a(&["-c:v", "png"])]),
        ),
        (
            "jpeg2000.mxf",
            "JPEG 2000 in MXF (digital cinema, archives)",
            cat(vec![src("320x240", 25, 1.0), a(&["-c:v", "jpeg2000"])]),
        ),
        (
            "anim.gif",
            "animated GIF",
            cat(vec![s2(), a(&["-vf", "split[a][b];[a]palettegen[p];[b][p]paletteuse"])]),
        ),
        ("anim.apng", "animated PNG", cat(vec![s2(), a(&["-plays", "0", "-f", "apng"])])),
    ]
}

/// Timestamp edge cases, made from the 4 s H.264 + AAC source `_ts_src.mp4`.
fn timestamps(dir: &Path) -> Vec<Recipe> {
    let base = dir.join("_ts_src.mp4").to_string_lossy().into_owned();
    let b = base.as_str();
    let s2 = || src("320x240", 25, 2.0);
    let x264 = || a(&["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]);
    vec![
        ("raw.hevc", "HEVC elementary stream: no container, no timestamps", cat(vec![s2(), a(&["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error", "-f", "hevc"])])),
        ("raw_bframes.m4v", "MPEG-4 part 2 elementary stream with B-frames, no timestamps", cat(vec![s2(), a(&["-c:v", "mpeg4", "-bf", "2", "-q:v", "4", "-f", "m4v"])])),
        ("fragmented.mp4", "fragmented MP4 (empty moov, one moof per GOP: DASH, browsers' recorders)", cat(vec![s2(), x264(), a(&["-g", "25", "-movflags", "frag_keyframe+empty_moov+default_base_moof"])])),
        ("edit_list.mp4", "MP4 cut at 1.3 s without re-encoding: an edit list starting mid-GOP", a(&["-ss", "1.3", "-i", b, "-c", "copy"])),
        ("late_start.mp4", "MP4 whose video starts 1.5 s after its audio (empty edit)", a(&["-itsoffset", "1.5", "-i", b, "-i", b, "-map", "0:v", "-map", "1:a", "-c", "copy"])),
        ("late_start.mkv", "Matroska whose video starts 1.5 s after its audio", a(&["-itsoffset", "1.5", "-i", b, "-i", b, "-map", "0:v", "-map", "1:a", "-c", "copy"])),
        ("late_start.ts", "MPEG-TS whose video starts 1.5 s after its audio", a(&["-itsoffset", "1.5", "-i", b, "-i", b, "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "mp2"])),
        ("no_editlist_bframes.mp4", "MP4 with B-frames and no edit list: the first frame is shown at 0.08 s", cat(vec![src("320x240", 25, 2.0), x264(), a(&["-bf", "3", "-g", "25", "-use_editlist", "0"])])),
        (
            "two_video_streams.mkv",
            "a small first video stream and the main (default) one second: the best stream is not the first",
            cat(vec![
                a(&["-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=2"]),
                s2(),
                a(&["-map", "0:v", "-map", "1:v"]),
                x264(),
                a(&["-disposition:v:0", "0", "-disposition:v:1", "default"]),
            ]),
        ),
        (
            "cover_first.mkv",
            "a one-picture JPEG stream (cover, thumbnail) before the real video",
            a(&["-i", &dir.join("image.jpg").to_string_lossy(), "-i", b, "-map", "0", "-map", "1:v", "-c", "copy"]),
        ),
        (
            "cover_art.mp4",
            "an MP4 with audio and an attached cover picture after the video",
            a(&["-i", b, "-i", &dir.join("image.jpg").to_string_lossy(), "-map", "0", "-map", "1", "-c", "copy", "-disposition:v:1", "attached_pic"]),
        ),
        (
            "vfr_phone.mov",
            "variable frame rate with a 600 time scale (phone recordings)",
            cat(vec![
                src("320x240", 30, 3.0),
                a(&["-vf", "setpts='N/30/TB+if(gt(N,40),0.37/TB,0)+if(gt(N,60),0.011*N/TB,0)'", "-fps_mode", "vfr"]),
                x264(),
                a(&["-video_track_timescale", "600"]),
            ]),
        ),
        (
            "pts_gap.mkv",
            "a 2 s gap in the timestamps (a recorder that paused)",
            cat(vec![src("320x240", 25, 3.0), a(&["-vf", "setpts='if(gte(N,30),PTS+2/TB,PTS)'", "-fps_mode", "passthrough"]), x264()]),
        ),
    ]
}

/// Every file of the wide corpus: (name, description). The tests take the list from the
/// generated `wide.tsv` so that the two never disagree.
pub(super) fn generate(dir: &Path) -> Result<Vec<(String, String)>> {
    make(dir, "_ts_src.mp4", |p| {
        let args = cat(vec![
            src("320x240", 25, 4.0),
            sine(4.0),
            a(&[
                "-c:v", "libx264", "-preset", "veryfast", "-g", "25", "-pix_fmt", "yuv420p",
                "-c:a", "aac",
            ]),
        ]);
        ffmpeg(&args, p)
    })?;
    let mut list = Vec::new();
    for (name, what, args) in pairs().into_iter().chain(timestamps(dir)) {
        make(dir, name, |p| ffmpeg(&args, p))?;
        list.push((name.to_string(), what.to_string()));
    }
    // bytes of one format under another's extension: the content decides, not the name
    make(dir, "png_named.mp4", |p| Ok(std::fs::copy(dir.join("image.png"), p).map(|_| ())?))?;
    list.push(("png_named.mp4".into(), "a PNG image saved with a .mp4 name".into()));
    make(dir, "mp4_named.jpg", |p| {
        Ok(std::fs::copy(dir.join("rotated_source.mp4"), p).map(|_| ())?)
    })?;
    list.push(("mp4_named.jpg".into(), "an MP4 video saved with a .jpg name".into()));
    let text: String = list.iter().map(|(n, w)| format!("{n}\t{w}\n")).collect();
    std::fs::write(dir.join("wide.tsv"), text)?;
    Ok(list)
}
