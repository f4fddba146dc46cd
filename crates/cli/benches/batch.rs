//! `cargo xtask bench batch [--quick] [--model DIR] [--videos N] [--num-frames F]
//! [--max-new-tokens T] [--batch-size B] [--dtype D]` (or `cargo bench -p vidlm --bench batch -- ...`):
//! videos/s of `vidlm batch` with prefetch and batching against one-at-a-time processing
//! (`--batch-size 1 --prefetch 0`: decode, preprocess, vision, generate, next — what a loop of
//! `vidlm run` does, without reloading the model), on the same manifest, in the same run, one
//! after the other. Reports both rates, their ratio and each run's peak RSS (`VmHWM`, measured
//! by the process). Both runs must write the same answers (greedy), or the bench fails.
//!
//! The model: `--model DIR`, else `$VIDLM_BENCH_MODEL`, else the first real-size model found in
//! `/work/models/` (a LLaVA-OneVision 0.5B export: real config, random weights; e.g. `onevision-0.5b/perfrt-aligned-fp32`), else the demo model (said so in the output).
//! `--quick` (and `cargo test --all-targets`, which runs this without `--bench`) uses the demo
//! model on 12 requests: it checks that the harness runs, its numbers mean nothing.
//! Timings on a shared machine are noisy: only the ratio of the two runs is meaningful.
//!
//! On a GPU (`--device cuda`, the bench built with `--features cuda`, as `cargo xtask bench gpu`
//! does): both runs on CUDA, and with `--nvdec` a third run, the batched one with
//! `--decode-device cuda` (NVDEC), whose answers must equal the others; `--skip-baseline` drops
//! the one-at-a-time run; `--json FILE` writes every run's rates.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::{json, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cache() -> PathBuf {
    std::env::var_os("VIDLM_CACHE").map(PathBuf::from).unwrap_or_else(|| root().join(".cache"))
}

struct Cfg {
    model: PathBuf,
    model_note: &'static str,
    videos: usize,
    num_frames: usize,
    max_new_tokens: usize,
    batch_size: usize,
    threads: Option<usize>,
    /// `--dtype` of both runs (default: the binary's, fp32 on the CPU).
    dtype: Option<String>,
    /// `--device` of every run (default: the binary's, the CPU).
    device: Option<String>,
    /// Also run the batched form with `--decode-device cuda`.
    nvdec: bool,
    /// Skip the one-at-a-time run.
    skip_baseline: bool,
    /// Write the rates here.
    json: Option<PathBuf>,
    /// `--clips a,b,...`: the clips of the manifest, in turn (default: six test videos).
    clips: Option<Vec<PathBuf>>,
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok())
}

/// A real-size LLaVA-OneVision export under /work/models (`<name>/` or `<name>/<export>/`).
fn find_model() -> Option<PathBuf> {
    let is_model = |p: &Path| {
        p.join("config.json").is_file() && p.join("onnx/decoder_model_merged.onnx").is_file()
    };
    let mut found = Vec::new();
    for e in std::fs::read_dir("/work/models").ok()?.flatten() {
        let p = e.path();
        if is_model(&p) {
            found.push(p.clone());
        }
        for e2 in std::fs::read_dir(&p).into_iter().flatten().flatten() {
            if is_model(&e2.path()) {
                found.push(e2.path());
            }
        }
    }
    found.sort();
    // Today's export layout first (the one this runtime is tested with).
    let ov = |p: &PathBuf| p.to_string_lossy().contains("onevision");
    found
        .iter()
        .find(|p| ov(p) && p.to_string_lossy().contains("main"))
        .or_else(|| found.iter().find(|p| ov(p)))
        .cloned()
}

fn config() -> Cfg {
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--quick");
    let demo = root().join("assets/demo-model");
    if !full {
        return Cfg {
            model: demo,
            model_note: "demo model (quick mode)",
            videos: 12,
            num_frames: 4,
            max_new_tokens: 16,
            batch_size: 4,
            threads: None,
            dtype: None,
            device: arg(&args, "--device"),
            nvdec: args.iter().any(|a| a == "--nvdec"),
            skip_baseline: false,
            json: arg(&args, "--json"),
            clips: clips_arg(&args),
        };
    }
    let (model, note) = match arg::<PathBuf>(&args, "--model")
        .or_else(|| std::env::var_os("VIDLM_BENCH_MODEL").map(PathBuf::from))
    {
        Some(m) => (m, "given"),
        None => match find_model() {
            Some(m) => (m, "real-size random weights from /work/models"),
            None => (demo, "demo model: no real-size model found (give --model DIR)"),
        },
    };
    Cfg {
        model,
        model_note: note,
        videos: arg(&args, "--videos").unwrap_or(32),
        num_frames: arg(&args, "--num-frames").unwrap_or(8),
        max_new_tokens: arg(&args, "--max-new-tokens").unwrap_or(64),
        batch_size: arg(&args, "--batch-size").unwrap_or(8),
        threads: arg(&args, "--threads"),
        dtype: arg(&args, "--dtype"),
        device: arg(&args, "--device"),
        nvdec: args.iter().any(|a| a == "--nvdec"),
        skip_baseline: args.iter().any(|a| a == "--skip-baseline"),
        json: arg(&args, "--json"),
        clips: clips_arg(&args),
    }
}

fn clips_arg(args: &[String]) -> Option<Vec<PathBuf>> {
    arg::<String>(args, "--clips").map(|s| s.split(',').map(PathBuf::from).collect())
}

struct Measured {
    seconds: f64,
    /// Requests per second after the model was loaded.
    rate: f64,
    peak_rss: Option<u64>,
    answers: Vec<(String, String)>,
    /// The one-line notice `vidlm batch` printed when `--decode-device cuda` fell back to software.
    nvdec_fallback: Option<String>,
}

fn run(cfg: &Cfg, manifest: &Path, out: &Path, extra: &[&str]) -> Measured {
    let _ = std::fs::remove_file(out);
    let summary = out.with_extension("summary.json");
    let mut c = Command::new(env!("CARGO_BIN_EXE_vidlm"));
    c.args(["batch", "--model"])
        .arg(&cfg.model)
        .arg("--input")
        .arg(manifest)
        .arg("--output")
        .arg(out)
        .arg("--summary-json")
        .arg(&summary);
    c.args([
        "--num-frames",
        &cfg.num_frames.to_string(),
        "--max-new-tokens",
        &cfg.max_new_tokens.to_string(),
        "--progress",
        "off",
    ]);
    if let Some(t) = cfg.threads {
        c.args(["--threads", &t.to_string()]);
    }
    if let Some(d) = &cfg.dtype {
        c.args(["--dtype", d]);
    }
    if let Some(d) = &cfg.device {
        c.args(["--device", d]);
    }
    c.args(extra);
    let t0 = Instant::now();
    let o = c.output().expect("run vidlm batch");
    let seconds = t0.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "vidlm batch failed: {err}");
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&summary).expect("summary"))
        .expect("summary json");
    let peak_rss = s["peak_rss_bytes"].as_u64();
    let rate = s["requests_per_second_after_load"].as_f64().unwrap_or(0.0);
    let text = std::fs::read_to_string(out).expect("output");
    let mut answers: Vec<(String, String)> = text
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("line");
            (
                v["custom_id"].as_str().unwrap_or("").to_string(),
                v["response"]["body"]["choices"][0]["message"]["content"].to_string(),
            )
        })
        .collect();
    answers.sort();
    let nvdec_fallback =
        err.lines().find(|l| l.contains("NVDEC unavailable")).map(|l| l.trim().to_string());
    Measured { seconds, rate, peak_rss, answers, nvdec_fallback }
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn main() {
    let cfg = config();
    let videos = std::env::var_os("VIDLM_TEST_VIDEOS")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache().join("test-videos"));
    let clips: Vec<PathBuf> = match &cfg.clips {
        Some(c) => c.clone(),
        None => [
            "h264_bframes.mp4",
            "vp9.webm",
            "mpeg4.avi",
            "h264_10bit.mp4",
            "odd_853x479.webm",
            "rotated_90.mp4",
        ]
        .iter()
        .map(|c| videos.join(c))
        .collect(),
    };
    for c in &clips {
        assert!(c.is_file(), "{} missing: run `cargo xtask videos`", c.display());
    }
    // Local media must be inside --allowed-local-media-path: the clips' common folder.
    let media_dir = match &cfg.clips {
        Some(c) if c.iter().all(|p| p.parent() == c[0].parent()) => {
            c[0].parent().map(Path::to_path_buf).unwrap_or_else(|| videos.clone())
        }
        Some(_) => PathBuf::from("/"),
        None => videos.clone(),
    };
    let dir = cache().join("bench").join("batch");
    std::fs::create_dir_all(&dir).expect("bench dir");
    // A plain manifest in the bench folder, pointing at the test videos (allowed below).
    let manifest = dir.join("manifest.jsonl");
    let mut text = String::new();
    for i in 0..cfg.videos {
        let v = &clips[i % clips.len()];
        text.push_str(&json!({"id": format!("v{i:04}"), "video": v}).to_string());
        text.push('\n');
    }
    std::fs::write(&manifest, text).expect("manifest");
    let common = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "--video-column",
            "video",
            "--id-column",
            "id",
            "--prompt",
            "Describe this video in detail.",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.push("--allowed-local-media-path".into());
        a.push(media_dir.to_string_lossy().into_owned());
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    eprintln!(
        "[bench batch] model {} ({}, dtype {}), {} videos, {} frames, {} new tokens, batch size {}",
        cfg.model.display(),
        cfg.model_note,
        cfg.dtype.as_deref().unwrap_or("default"),
        cfg.videos,
        cfg.num_frames,
        cfg.max_new_tokens,
        cfg.batch_size
    );
    let base_args = common(&["--batch-size", "1", "--prefetch", "0"]);
    let bs = cfg.batch_size.to_string();
    let pf = (2 * cfg.batch_size).to_string();
    let fast_args = common(&["--batch-size", &bs, "--prefetch", &pf, "--prefetch-workers", "2"]);
    let n = cfg.videos as f64;
    let mib = |b: Option<u64>| {
        b.map(|b| format!("{:.0} MiB", b as f64 / 1048576.0)).unwrap_or_else(|| "n/a".into())
    };
    let fast = run(&cfg, &manifest, &dir.join("prefetch-batched.jsonl"), &refs(&fast_args));
    let base = (!cfg.skip_baseline)
        .then(|| run(&cfg, &manifest, &dir.join("one-at-a-time.jsonl"), &refs(&base_args)));
    let nvdec_args = {
        let mut a = fast_args.clone();
        a.extend(["--decode-device".to_string(), "cuda".to_string()]);
        a
    };
    let nvdec = cfg.nvdec.then(|| {
        run(&cfg, &manifest, &dir.join("prefetch-batched-nvdec.jsonl"), &refs(&nvdec_args))
    });
    if let Some(base) = &base {
        assert_eq!(base.answers, fast.answers, "batched answers differ from one-at-a-time answers");
    }
    if let Some(nv) = &nvdec {
        assert_eq!(nv.answers, fast.answers, "NVDEC answers differ from software-decode answers");
    }
    println!("| mode | videos/s (after load) | videos/s (wall, incl. load) | wall s | peak RSS |");
    println!("|---|---|---|---|---|");
    let row = |name: &str, m: &Measured| {
        println!(
            "| {name} | {:.3} | {:.3} | {:.1} | {} |",
            m.rate,
            n / m.seconds,
            m.seconds,
            mib(m.peak_rss)
        )
    };
    if let Some(base) = &base {
        row("one at a time (`--batch-size 1 --prefetch 0`)", base);
    }
    row(
        &format!("prefetch + batching (`--batch-size {bs} --prefetch {pf} --prefetch-workers 2`)"),
        &fast,
    );
    if let Some(nv) = &nvdec {
        match &nv.nvdec_fallback {
            None => row("prefetch + batching, `--decode-device cuda` (NVDEC)", nv),
            Some(_) => {
                row("prefetch + batching, `--decode-device cuda` (fell back to software)", nv)
            }
        }
    }
    if let Some(base) = &base {
        println!(
            "ratio (prefetch + batching / one at a time, after load): {:.2}x; wall incl. load: {:.2}x  (target >= 1.5x)",
            fast.rate / base.rate.max(1e-9),
            base.seconds / fast.seconds
        );
    }
    if let Some(nv) = &nvdec {
        match &nv.nvdec_fallback {
            None => println!(
                "NVDEC / software decode (batched, after load): {:.2}x  (target >= 1.5x)",
                nv.rate / fast.rate.max(1e-9)
            ),
            Some(why) => println!("NVDEC not measured: {why}"),
        }
    }
    if let Some(path) = &cfg.json {
        let m = |m: &Measured| {
            json!({"videos_per_s": m.rate, "wall_s": m.seconds, "videos_per_s_wall": n / m.seconds,
                   "peak_rss_bytes": m.peak_rss})
        };
        let v = json!({
            "videos": cfg.videos,
            "num_frames": cfg.num_frames,
            "max_new_tokens": cfg.max_new_tokens,
            "batch_size": cfg.batch_size,
            "device": cfg.device.as_deref().unwrap_or("cpu"),
            "dtype": cfg.dtype.as_deref().unwrap_or("default"),
            "model": cfg.model.display().to_string(),
            "one_at_a_time": base.as_ref().map(m),
            "batched": m(&fast),
            // Only a run that decoded on NVDEC counts as one; a fallback is recorded as such.
            "batched_nvdec": nvdec.as_ref().filter(|n| n.nvdec_fallback.is_none()).map(m),
            "nvdec_fallback": nvdec.as_ref().and_then(|n| n.nvdec_fallback.clone()),
        });
        std::fs::write(path, serde_json::to_string_pretty(&v).unwrap_or_default())
            .expect("write --json");
    }
}
