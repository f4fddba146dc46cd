//! Vision benchmark: frames per second of `video_features` / `image_features` for different
//! `max_batch` chunk sizes, as ratios against one frame per call (the baseline) in the same run.
//!
//! `cargo bench -p vidlm-vision --bench chunking` (model: `VIDLM_BENCH_MODEL`, default the
//! committed tiny `assets/demo-model`; point it at a full-size export for real shapes).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use vidlm_ort::SessionOptions;
use vidlm_vision::{VideoPixels, VisionEncoder, VisionOptions};

fn main() {
    let dir = std::env::var_os("VIDLM_BENCH_MODEL").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets/demo-model")
    });
    let frames = 32;
    let session = SessionOptions { intra_threads: Some(2), ..Default::default() };
    let mut base: Option<Duration> = None;
    println!(
        "model: {}, one video of {frames} frames, best of 5 after 2 warm-up runs\n",
        dir.display()
    );
    println!("| max_batch | time | frames/s | vs max_batch 1 |");
    println!("|---|---|---|---|");
    for mb in [1usize, 4, 8, 32] {
        let mut v = match VisionEncoder::from_dir(
            &dir,
            &VisionOptions { session: session.clone(), max_batch: mb, ..Default::default() },
        ) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("cannot load {}: {e}", dir.display());
                std::process::exit(1);
            }
        };
        let s = v.image_size();
        let px: Vec<f32> =
            (0..frames * 3 * s * s).map(|i| ((i % 251) as f32 / 125.0) - 1.0).collect();
        let video = [VideoPixels { pixel_values: &px, frames, grid_thw: None }];
        // Warm-up (ONNX Runtime allocates and plans on the first runs of each shape).
        for _ in 0..2 {
            std::hint::black_box(v.video_features(&video).expect("video features"));
        }
        let mut best = Duration::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            let out = v.video_features(&video).expect("video features");
            std::hint::black_box(out);
            best = best.min(t.elapsed());
        }
        let b = *base.get_or_insert(best);
        println!(
            "| {mb} | {:.1} ms | {:.0} | {:.2}x |",
            best.as_secs_f64() * 1e3,
            frames as f64 / best.as_secs_f64(),
            b.as_secs_f64() / best.as_secs_f64()
        );
    }
}
