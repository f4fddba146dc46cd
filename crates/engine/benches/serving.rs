//! Serving benchmark, ratios against baselines measured in the same run:
//!
//! 1. **Continuous batching** — N concurrent requests through the engine vs the same N requests
//!    one at a time (same engine, vision cache off): generated tokens per second, and the answers
//!    must be identical.
//! 2. **Vision cache** — a follow-up question about the same video with the cache vs without:
//!    time to first token (the media decoding and vision graphs it skips).
//!
//! `cargo xtask bench serve [--quick] [--model DIR] [--dtype fp32|q8|q4|...] [--requests N] [--tokens N] [--frames N]`
//! (= `cargo bench -p vidlm-engine --bench serving -- ...`). The model defaults to
//! `VIDLM_BENCH_MODEL`, else the committed tiny demo model; point it at a full-size export for the
//! real numbers. Under `cargo test --all-targets` it runs the `--quick` form (the harness check
//! CI runs). Peak RSS is read from the kernel (`VmHWM`) at the end.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;
use vidlm_engine::{Completion, Engine, EngineConfig, EngineRequest, MediaKind, MediaSpec};
use vidlm_media_source::{FrameSampling, MediaLimits, MediaPolicy, Source};
use vidlm_pipeline::{PipelineOptions, Precision, Precisions, SessionOptions};

struct Opts {
    model: PathBuf,
    video: PathBuf,
    requests: usize,
    tokens: usize,
    frames: usize,
    threads: usize,
    precision: Precision,
    prefill_chunk: Option<usize>,
    media_workers: Option<usize>,
    quick: bool,
}

fn opts() -> Opts {
    let args: Vec<String> = std::env::args().collect();
    let bench = args.iter().any(|a| a == "--bench");
    let quick = !bench || args.iter().any(|a| a == "--quick");
    let get =
        |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let model = get("--model")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("VIDLM_BENCH_MODEL").map(PathBuf::from))
        .unwrap_or_else(|| root.join("assets/demo-model"));
    let num = |name: &str, quick_v: usize, full_v: usize| {
        get(name).and_then(|v| v.parse().ok()).unwrap_or(if quick { quick_v } else { full_v })
    };
    Opts {
        model,
        video: get("--video").map(PathBuf::from).unwrap_or_else(|| root.join("assets/demo.mp4")),
        requests: num("--requests", 4, 8),
        tokens: num("--tokens", 6, 32),
        frames: num("--frames", 4, 8),
        threads: num("--threads", 2, 2),
        prefill_chunk: get("--prefill-chunk").and_then(|v| v.parse().ok()),
        media_workers: get("--media-workers").and_then(|v| v.parse().ok()),
        precision: match get("--dtype") {
            Some(d) => d.parse().unwrap_or_else(|e| {
                eprintln!("--dtype {d}: {e}");
                std::process::exit(2)
            }),
            None => Precision::Fp32,
        },
        quick,
    }
}

fn request(o: &Opts, i: usize, with_video: bool) -> EngineRequest {
    let questions = [
        "What happens in this video?",
        "Describe the scene in detail.",
        "Who is there?",
        "What colours do you see?",
        "What happens next?",
        "Summarize it.",
        "Is it indoors?",
        "Count the objects.",
    ];
    let q = questions[i % questions.len()];
    let mut r = EngineRequest::default();
    if with_video {
        r.messages = vec![
            json!({"role": "user", "content": [{"type": "video"}, {"type": "text", "text": q}]}),
        ];
        r.media = vec![MediaSpec::Source {
            kind: MediaKind::Video,
            source: Source::Local(o.video.clone()),
            param: "video".into(),
        }];
        r.sampling = FrameSampling { num_frames: Some(o.frames), ..Default::default() };
    } else {
        r.messages = vec![json!({"role": "user", "content": [{"type": "text", "text": q}]})];
    }
    r.generation.max_new_tokens = Some(o.tokens);
    r.generation.eos_token_ids = Some(vec![]);
    r
}

fn engine(o: &Opts, cache_bytes: usize) -> Engine {
    let popts = PipelineOptions {
        session: SessionOptions { intra_threads: Some(o.threads), ..Default::default() },
        precisions: Precisions::all(o.precision),
        ..Default::default()
    };
    let limits = MediaLimits { max_frames: o.frames.max(32), ..Default::default() };
    let d = EngineConfig::default();
    let config = EngineConfig {
        vision_cache_bytes: cache_bytes,
        media: MediaPolicy::default().with_limits(limits),
        prefill_chunk: o.prefill_chunk.or(d.prefill_chunk),
        media_workers: o.media_workers.unwrap_or(d.media_workers),
        ..d
    };
    match Engine::load(o.model.to_str().unwrap_or_default(), &popts, config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot load {}: {e}", o.model.display());
            std::process::exit(1);
        }
    }
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn main() {
    let o = opts();
    println!(
        "model: {} ({}) | {} requests (half with a {}-frame video), {} new tokens each, {} ORT threads{}\n",
        o.model.display(),
        o.precision,
        o.requests,
        o.frames,
        o.tokens,
        o.threads,
        if o.quick { " | --quick" } else { "" }
    );
    let reqs: Vec<EngineRequest> = (0..o.requests).map(|i| request(&o, i, i % 2 == 0)).collect();

    // 1. Continuous batching vs one at a time (vision cache off so neither run helps the other).
    let e = engine(&o, 0);
    // Warm-up (ORT session initialisation, page faults).
    let _ = e.submit(reqs[0].clone()).and_then(|h| h.wait());
    let t0 = Instant::now();
    let solo: Vec<Completion> = reqs
        .iter()
        .map(|r| e.submit(r.clone()).and_then(|h| h.wait()).expect("one at a time"))
        .collect();
    let t_solo = t0.elapsed();
    let t1 = Instant::now();
    let handles: Vec<_> = reqs.iter().map(|r| e.submit(r.clone()).expect("submit")).collect();
    let batched: Vec<Completion> =
        handles.into_iter().map(|h| h.wait().expect("batched")).collect();
    let t_batched = t1.elapsed();
    let same = solo.iter().zip(&batched).filter(|(a, b)| a.token_ids == b.token_ids).count();
    let tokens: usize = solo.iter().map(|c| c.token_ids.len()).sum();
    let mean_ttft = |cs: &[Completion]| {
        cs.iter().map(|c| c.timings.first_token.as_secs_f64()).sum::<f64>() / cs.len() as f64
    };
    println!(
        "| {} requests, {} tokens | wall time | tokens/s | mean TTFT | speed-up |",
        o.requests, tokens
    );
    println!("|---|---|---|---|---|");
    println!(
        "| baseline: one at a time | {:.2} s | {:.1} | {:.0} ms | 1.00x |",
        t_solo.as_secs_f64(),
        tokens as f64 / t_solo.as_secs_f64(),
        mean_ttft(&solo) * 1e3
    );
    println!(
        "| vidlm engine: concurrent, continuous batching | {:.2} s | {:.1} | {:.0} ms | {:.2}x |",
        t_batched.as_secs_f64(),
        tokens as f64 / t_batched.as_secs_f64(),
        mean_ttft(&batched) * 1e3,
        t_solo.as_secs_f64() / t_batched.as_secs_f64()
    );
    println!("\nanswers identical to one-at-a-time: {same}/{}\n", o.requests);
    if std::env::args().any(|a| a == "--verbose") {
        for (name, cs) in [("solo", &solo), ("batched", &batched)] {
            for (i, c) in cs.iter().enumerate() {
                let t = &c.timings;
                let steps: f64 = t.decode_steps.iter().map(|d| d.as_secs_f64()).sum();
                println!(
                    "{name} #{i}: queue {:.2} media {:.2} vision {:.2} wait {:.2} prefill {:.2} ({} chunks) first {:.2} decode {} steps {:.2} s total {:.2}",
                    t.queue.as_secs_f64(), t.media.as_secs_f64(), t.vision.as_secs_f64(), t.wait_prefill.as_secs_f64(),
                    t.prefill.as_secs_f64(), t.prefill_chunks, t.first_token.as_secs_f64(), t.decode_steps.len(), steps, t.total.as_secs_f64()
                );
            }
        }
    }
    assert_eq!(same, o.requests, "batched answers differ from the solo ones");
    drop(e);

    if std::env::args().any(|a| a == "--batching-only") {
        return;
    }
    // 2. Vision cache: a follow-up question about the same video.
    let reps = if o.quick { 2 } else { 3 };
    let follow = |e: &Engine, i: usize| -> (Duration, Duration, usize) {
        let c = e.submit(request(&o, i, true)).and_then(|h| h.wait()).expect("follow-up");
        (c.timings.first_token, c.timings.media + c.timings.vision, c.timings.cache_hits)
    };
    let cold = engine(&o, 0);
    let _ = follow(&cold, 0);
    let nocache: Vec<_> = (1..=reps).map(|i| follow(&cold, i)).collect();
    drop(cold);
    let warm = engine(&o, 512 << 20);
    let _ = follow(&warm, 0); // the first question fills the cache
    let cached: Vec<_> = (1..=reps).map(|i| follow(&warm, i)).collect();
    assert!(cached.iter().all(|c| c.2 == 1), "follow-ups hit the cache");
    let best = |v: &[(Duration, Duration, usize)]| v.iter().map(|x| x.0).min().unwrap_or_default();
    let media = |v: &[(Duration, Duration, usize)]| v.iter().map(|x| x.1).min().unwrap_or_default();
    println!("| follow-up question on the same video ({} frames) | time to first token | media decode + vision | speed-up |", o.frames);
    println!("|---|---|---|---|");
    println!(
        "| baseline: no vision cache | {:.1} ms | {:.1} ms | 1.00x |",
        best(&nocache).as_secs_f64() * 1e3,
        media(&nocache).as_secs_f64() * 1e3
    );
    println!(
        "| vidlm engine: vision cache hit | {:.1} ms | {:.1} ms | {:.2}x |",
        best(&cached).as_secs_f64() * 1e3,
        media(&cached).as_secs_f64() * 1e3,
        best(&nocache).as_secs_f64() / best(&cached).as_secs_f64().max(1e-9)
    );
    println!("\npeak RSS: {:.0} MiB (VmHWM, the whole bench process)", peak_rss_mib());
    println!(
        "(timings on a shared machine are noisy; compare the ratios, measured in the same run)"
    );
}
