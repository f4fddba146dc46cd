//! `cargo xtask bench processor` (or `cargo bench -p vidlm-processor --bench processor`):
//! 8 and 32 frames of a 1080p video → `pixel_values_videos` for each family, against
//! transformers' video processor fed the same frames decoded by PyAV, measured in the same run.
//!
//! The clip is generated once with the ffmpeg CLI into `.cache/bench/processor_1080p.mp4`; the
//! model directories come from `python/assets.py`. Decoding is not timed on either side: both get
//! decoded `uint8` frames. Reported: median seconds over 5 runs (after a warm-up) and the ratio.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use vidlm_processor::family::ImageLayout;
use vidlm_processor::pixels::{process_images, process_video};
use vidlm_processor::{Backend, Processor};
use vidlm_video_io::{OpenOptions, SampleRequest, VideoReader};

const FAMILIES: [&str; 4] = ["interleave", "onevision", "video_llava", "llava_next_video"];
const FRAMES: [usize; 2] = [8, 32];
const REPEAT: usize = 5;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cache() -> PathBuf {
    std::env::var_os("VIDLM_CACHE").map(PathBuf::from).unwrap_or_else(|| root().join(".cache"))
}

fn run(cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed");
}

fn clip() -> PathBuf {
    let dir = cache().join("bench");
    let path = dir.join("processor_1080p.mp4");
    if !path.is_file() {
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let tmp = dir.join("processor_1080p.tmp.mp4");
        run(Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=1920x1080:rate=30:duration=10",
            ])
            .args(["-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "veryfast"])
            .arg(&tmp));
        std::fs::rename(&tmp, &path).unwrap_or_else(|e| panic!("{e}"));
    }
    path
}

fn models() -> PathBuf {
    let dir = cache().join("assets").join("hub");
    if FAMILIES.iter().any(|f| {
        !dir.join(f).join("tokenizer.json").is_file()
            || !dir.join(f).join("chat_template.json").is_file()
    }) {
        run(Command::new(cache().join("venv/bin/python"))
            .arg(root().join("python/assets.py"))
            .args(["--all", "--out"])
            .arg(&dir));
    }
    dir
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes --bench. Under `cargo test --all-targets` this runs as a quick smoke
    // test (the small demo clip, 2 frames, no Python baseline) so the code cannot rot.
    let full = std::env::args().any(|a| a == "--bench");
    let models = models();
    if !full {
        let video = root().join("assets/demo.mp4");
        let mut reader =
            VideoReader::open(&video, &OpenOptions::default()).unwrap_or_else(|e| panic!("{e}"));
        let frames =
            reader.sample(&SampleRequest::num_frames(2)).unwrap_or_else(|e| panic!("{e}")).data;
        for fam in FAMILIES {
            let p = Processor::from_dir(models.join(fam)).unwrap_or_else(|e| panic!("{fam}: {e}"));
            let s =
                p.video_settings().or(p.image_settings()).unwrap_or_else(|| panic!("no settings"));
            let v = process_video(frames.view(), s, Backend::Torchvision, "video")
                .unwrap_or_else(|e| panic!("{e}"));
            println!("smoke {fam}: {:?}", v.shape());
        }
        return;
    }
    let video = clip();
    // Baseline first (Python), in the same run.
    let out = Command::new(cache().join("venv/bin/python"))
        .arg(root().join("python/bench_processor.py"))
        .arg(&video)
        .arg(&models)
        .args(["--repeat", &REPEAT.to_string(), "--frames"])
        .args(FRAMES.map(|f| f.to_string()))
        .output()
        .unwrap_or_else(|e| panic!("python baseline: {e}"));
    assert!(
        out.status.success(),
        "python baseline failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let base: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("baseline output: {e}"));

    println!("1080p video → pixel_values_videos (median of {REPEAT}, decoded frames in, rayon threads: {})", rayon::current_num_threads());
    println!(
        "| family | frames | output shape | transformers (s) | vidlm (s) | speed-up | |Σ diff| |"
    );
    println!("|---|---|---|---|---|---|---|");
    for t in FRAMES {
        // A fresh reader per request, as a user decoding one clip at a time would.
        let mut reader =
            VideoReader::open(&video, &OpenOptions::default()).unwrap_or_else(|e| panic!("{e}"));
        let frames =
            reader.sample(&SampleRequest::num_frames(t)).unwrap_or_else(|e| panic!("{e}")).data;
        for fam in FAMILIES {
            let p = Processor::from_dir(models.join(fam)).unwrap_or_else(|e| panic!("{fam}: {e}"));
            let work = || -> ndarray::ArrayD<f32> {
                if fam == "interleave" {
                    // No video processor: the frames go through the image processor.
                    let s = p.image_settings().unwrap_or_else(|| panic!("no image settings"));
                    let views: Vec<_> =
                        (0..t).map(|i| frames.index_axis(ndarray::Axis(0), i)).collect();
                    let imgs = process_images(
                        &views,
                        &vec![false; t],
                        ImageLayout::Plain,
                        s,
                        Backend::Torchvision,
                        &|i| format!("frame {i}"),
                    )
                    .unwrap_or_else(|e| panic!("{e}"));
                    vidlm_processor::pixels::stack_images(&imgs, ImageLayout::Plain, false)
                        .unwrap_or_else(|e| panic!("{e}"))
                } else {
                    let s = p.video_settings().unwrap_or_else(|| panic!("no video settings"));
                    let v = process_video(frames.view(), s, Backend::Torchvision, "video")
                        .unwrap_or_else(|e| panic!("{e}"));
                    v.insert_axis(ndarray::Axis(0))
                }
            };
            let result = work();
            let shape = result.shape().to_vec();
            let sum: f64 = result.iter().map(|v| f64::from(*v)).sum();
            let secs = median(
                (0..REPEAT)
                    .map(|_| {
                        let t0 = Instant::now();
                        std::hint::black_box(work());
                        t0.elapsed().as_secs_f64()
                    })
                    .collect(),
            );
            let b = &base[format!("{fam}/{t}")];
            let bs = b["seconds"].as_f64().unwrap_or(f64::NAN);
            let bshape: Vec<usize> = b["shape"]
                .as_array()
                .map(|a| a.iter().map(|v| v.as_u64().unwrap_or(0) as usize).collect())
                .unwrap_or_default();
            assert_eq!(shape, bshape, "{fam}/{t}: shape differs from transformers");
            let dsum = (sum - b["checksum"].as_f64().unwrap_or(f64::NAN)).abs();
            println!(
                "| {fam} | {t} | {shape:?} | {bs:.4} | {secs:.4} | {:.2}× | {dsum:.2e} |",
                bs / secs
            );
        }
    }
}
