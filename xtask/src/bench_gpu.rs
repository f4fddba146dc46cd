//! `cargo xtask bench gpu`: the GPU measurement of issue 23 ("On a GPU we use 2 % of the card")
//! in one call of about ten minutes, on one CUDA device.
//!
//! Steps, each with a time estimate checked against what is left of `--budget-s` before it
//! starts (a step that no longer fits in its full form runs its quick form, or is skipped and
//! recorded as skipped, never guessed):
//! 1. **preflight** (seconds): `nvidia-smi`, the CUDA build of ONNX Runtime with its CUDA
//!    provider library, the vidlm binary and bench binaries (built here, or given), the Python
//!    with torch + transformers. Anything missing stops the run at once with the list, before any
//!    GPU time is spent on a step that would fail.
//! 2. **e2e**: `cargo xtask bench e2e --device cuda` on the real-size OneVision-0.5B (fp16 vidlm
//!    against transformers fp16 and fp32 on the same GPU): vision, time to first token, decode.
//! 3. **decode**: `vidlm run --json --device cuda --dtype fp16` with `--cuda-graph off` and `on`
//!    (batch-1 decode tokens/s each; the `on` run records the notice when capture is refused),
//!    the `off` run with `--profile-dir`: ONNX Runtime's per-node kernel times of the vision graph,
//!    per frame, against the measured vision stage.
//! 4. **serve**: the serving bench on CUDA, 64 concurrent requests, half with an 8-frame video
//!    (aggregate tokens/s, p50/p99 time to first token), and `python/bench_batched_generate.py`
//!    (transformers' batched `generate`, fp16, same GPU) on the same requests.
//! 5. **batch**: the batch bench on CUDA, 64 clips, captioning-length answers, videos/s with and
//!    without `--decode-device cuda` (NVDEC), and transformers' batched `generate` on the clips.
//! 6. **report**: every table against the issue's targets, printed and written as JSON under
//!    `docs/bench/` (`gpu-<gpu name>.json`).
//!
//! `--dry-run` does everything but run the steps: it parses the arguments, plans the steps within
//! the budget, runs the preflight checks (reporting, not failing), prints every command line and
//! the target table with nothing measured. It needs no GPU; `cargo xtask test`'s xtask unit tests
//! run it.
//!
//! The GPU machines lent to this project have no network and no Rust toolchain: there, give
//! prebuilt binaries (`--vidlm-bin`, `--serve-bin`, `--batch-bin`, built here with `--features
//! cuda`), `--no-setup --python-interpreter python3`, and carry the CUDA build of ONNX Runtime
//! (`ORT_DYLIB_PATH`, its provider libraries beside it).

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::{cache_dir, project_root};

/// Arguments of `cargo xtask bench gpu`.
#[derive(Parser, Debug, Clone)]
#[command(name = "cargo xtask bench gpu", about = "the issue-23 GPU measurement in one call")]
pub struct GpuArgs {
    /// Plan, check and print; run nothing (no GPU needed).
    #[arg(long)]
    pub dry_run: bool,
    /// Seconds the whole run may take (the device tool's limit is 600 s per command).
    #[arg(long, default_value_t = 570)]
    pub budget_s: u64,
    /// Every step in its quick form (tiny model, few requests): checks the harness.
    #[arg(long)]
    pub quick: bool,
    /// CUDA device.
    #[arg(long, default_value = "cuda")]
    pub device: String,
    /// Prebuilt `vidlm` (built with `--features cuda`).
    #[arg(long)]
    pub vidlm_bin: Option<PathBuf>,
    /// Prebuilt serving bench binary (`cargo bench -p vidlm-engine --features vidlm-pipeline/cuda
    /// --bench serving --no-run`).
    #[arg(long)]
    pub serve_bin: Option<PathBuf>,
    /// Prebuilt batch bench binary (`cargo bench -p vidlm --features cuda --bench batch --no-run`).
    #[arg(long)]
    pub batch_bin: Option<PathBuf>,
    /// The Python with torch and transformers (as `bench e2e --python-interpreter`).
    #[arg(long)]
    pub python_interpreter: Option<PathBuf>,
    /// No `cargo xtask setup` (a machine with no package index).
    #[arg(long)]
    pub no_setup: bool,
    /// Where checkpoints and exports live (as `bench e2e --models-dir`).
    #[arg(long)]
    pub models_dir: Option<PathBuf>,
    /// The clip (default: the 1080p test video of `bench e2e`).
    #[arg(long)]
    pub video: Option<PathBuf>,
    /// Write the JSON here (default: `docs/bench/gpu-<gpu>.json`).
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// One step of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    E2e,
    Decode,
    Serve,
    Batch,
}

/// A step with its time estimates (seconds on one H100/H200; the full form of every step
/// together fits 570 s, see the test).
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub kind: StepKind,
    pub name: &'static str,
    pub full_s: u64,
    pub quick_s: u64,
}

/// The steps, in order. Estimates: the real-size fp16 export (~90 s on 16 cores) is in `e2e`;
/// 64 requests × 64 tokens at a few hundred tokens/s aggregate plus the transformers baseline in
/// `serve`; three batch runs of 64 clips plus the baseline in `batch`.
pub const STEPS: [Step; 4] = [
    Step {
        kind: StepKind::E2e,
        name: "e2e (export + vidlm fp16 vs transformers)",
        full_s: 200,
        quick_s: 60,
    },
    Step {
        kind: StepKind::Decode,
        name: "decode with/without CUDA graphs + vision profile",
        full_s: 60,
        quick_s: 20,
    },
    Step {
        kind: StepKind::Serve,
        name: "serve: 64 requests vs transformers batched generate",
        full_s: 130,
        quick_s: 40,
    },
    Step {
        kind: StepKind::Batch,
        name: "batch: 64 clips, NVDEC on/off vs transformers",
        full_s: 170,
        quick_s: 50,
    },
];

/// How a step runs, decided when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Full,
    Quick,
    Skip(String),
}

/// The form of `step` that fits the `left` seconds, keeping the estimates of the full forms of
/// the steps after it (`after_quick_s`: their quick forms, which must still fit).
pub fn schedule(step: &Step, left: u64, after_quick_s: u64, quick: bool) -> Mode {
    let fits = |s: u64| s + after_quick_s <= left;
    if !quick && fits(step.full_s) {
        Mode::Full
    } else if fits(step.quick_s) {
        Mode::Quick
    } else {
        Mode::Skip(format!(
            "{} s left, the quick form needs {} s (+{} s for the steps after it)",
            left, step.quick_s, after_quick_s
        ))
    }
}

/// The issue's targets (OneVision-0.5B, one H100/H200, fp16) judged on a result JSON:
/// (measure, measured, target, met). `None` where the measure is missing (not measured).
pub fn targets(r: &Value) -> Vec<(String, String, String, Option<bool>)> {
    let num = |p: &str| r.pointer(p).and_then(Value::as_f64);
    let fmt = |v: Option<f64>, unit: &str, scale: f64, prec: usize| {
        v.map(|v| format!("{:.prec$} {unit}", v * scale)).unwrap_or_else(|| "not measured".into())
    };
    let decode = num("/decode/cuda_graph_on/decode_tokens_per_s")
        .or(num("/decode/cuda_graph_off/decode_tokens_per_s"));
    let vision = num("/decode/cuda_graph_off/vision_s");
    let ttft = num("/decode/cuda_graph_off/time_to_first_token_s");
    let serve = num("/serve/vidlm/tokens_per_s");
    let serve_hf = num("/serve/transformers/tokens_per_s");
    let serve_ratio = serve.zip(serve_hf).map(|(a, b)| a / b.max(1e-9));
    let nvdec = num("/batch/vidlm/batched_nvdec/videos_per_s");
    let sw = num("/batch/vidlm/batched/videos_per_s");
    let nvdec_ratio = nvdec.zip(sw).map(|(a, b)| a / b.max(1e-9));
    vec![
        (
            "batch-1 decode".into(),
            fmt(decode, "tok/s", 1.0, 1),
            "≥ 400 tok/s".into(),
            decode.map(|v| v >= 400.0),
        ),
        (
            "8-frame vision".into(),
            fmt(vision, "ms", 1e3, 0),
            "≤ 60 ms".into(),
            vision.map(|v| v <= 0.060),
        ),
        (
            "time to first token".into(),
            fmt(ttft, "ms", 1e3, 0),
            "≤ 120 ms".into(),
            ttft.map(|v| v <= 0.120),
        ),
        (
            "64-request serving throughput".into(),
            fmt(serve_ratio, "× transformers batched generate", 1.0, 2),
            "≥ 3×".into(),
            serve_ratio.map(|v| v >= 3.0),
        ),
        (
            "batch videos/s with NVDEC".into(),
            fmt(nvdec_ratio, "× without", 1.0, 2),
            "≥ 1.5×".into(),
            nvdec_ratio.map(|v| v >= 1.5),
        ),
    ]
}

/// The target table as markdown.
pub fn target_table(r: &Value) -> String {
    let mut s = String::from("| measure | measured | target | met |\n|---|---|---|---|\n");
    for (m, v, t, ok) in targets(r) {
        let ok = match ok {
            Some(true) => "yes",
            Some(false) => "no",
            None => "—",
        };
        s += &format!("| {m} | {v} | {t} | {ok} |\n");
    }
    s
}

/// A preflight check: what, and why it fails (`None`: fine).
fn preflight(a: &GpuArgs) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let smi = Command::new("nvidia-smi")
        .args(["--query-gpu=name,driver_version", "--format=csv,noheader"])
        .output();
    out.push((
        "nvidia-smi sees a GPU".to_string(),
        match smi {
            Ok(o) if o.status.success() && !o.stdout.is_empty() => None,
            Ok(o) => {
                Some(format!("nvidia-smi failed: {}", String::from_utf8_lossy(&o.stderr).trim()))
            }
            Err(e) => Some(format!("no nvidia-smi ({e})")),
        },
    ));
    let ort = std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("onnxruntime-gpu/1.31.1/libonnxruntime.so"));
    let provider = ort.with_file_name("libonnxruntime_providers_cuda.so");
    out.push((
        format!("ONNX Runtime CUDA build ({})", ort.display()),
        (!ort.is_file() || !provider.is_file()).then(|| {
            format!(
                "missing {} or {} (`cargo xtask setup --cuda`, or carry onnxruntime-gpu 1.31.1 and set ORT_DYLIB_PATH)",
                ort.display(),
                provider.display()
            )
        }),
    ));
    for (what, bin) in
        [("vidlm", &a.vidlm_bin), ("serve bench", &a.serve_bin), ("batch bench", &a.batch_bin)]
    {
        let why = match bin {
            Some(p) if !p.is_file() => Some(format!("{} does not exist", p.display())),
            Some(_) => None,
            None => which("cargo").is_none().then(|| {
                format!(
                    "no cargo to build the {what} binary with --features cuda: give it prebuilt"
                )
            }),
        };
        out.push((format!("{what} binary"), why));
    }
    let py = a.python_interpreter.clone().unwrap_or_else(|| cache_dir().join("venv/bin/python"));
    let ok = Command::new(&py)
        .args(["-c", "import torch, transformers; print(torch.cuda.is_available())"])
        .output();
    out.push((
        format!("Python with torch + transformers ({})", py.display()),
        match ok {
            Ok(o) if o.status.success() => {
                let cuda = String::from_utf8_lossy(&o.stdout).trim() == "True";
                (!cuda).then(|| "torch sees no CUDA device".to_string())
            }
            Ok(o) => Some(
                String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("failed").to_string(),
            ),
            Err(e) => Some(format!("cannot run it: {e}")),
        },
    ));
    out
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|c| c.is_file()))
}

/// The sizes of a step's form.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    config: &'static str,
    requests: usize,
    frames: usize,
    tokens: usize,
    clips: usize,
}

fn sizes(mode: &Mode) -> Sizes {
    match mode {
        Mode::Full => {
            Sizes { config: "onevision-0.5b", requests: 64, frames: 8, tokens: 64, clips: 64 }
        }
        _ => Sizes { config: "quick-onevision", requests: 8, frames: 2, tokens: 8, clips: 8 },
    }
}

/// Command lines of a step (for the run and for `--dry-run`).
fn commands(a: &GpuArgs, kind: StepKind, s: Sizes, export: &Path, out: &Path) -> Vec<Vec<String>> {
    let py = a.python_interpreter.clone().unwrap_or_else(|| cache_dir().join("venv/bin/python"));
    let py = py.display().to_string();
    let hf = export.with_file_name("hf").display().to_string();
    let export = export.display().to_string();
    let clip = a
        .video
        .clone()
        .unwrap_or_else(|| crate::videos::videos_dir().join("h264_1080p30_60s.mp4"))
        .display()
        .to_string();
    // Without --vidlm-bin, the binary the e2e step builds (release, `--features cuda`).
    let vidlm = a
        .vidlm_bin
        .clone()
        .unwrap_or_else(|| project_root().join("target/release/vidlm"))
        .display()
        .to_string();
    // A prebuilt bench binary, or cargo building it with the CUDA feature.
    let bench = |bin: &Option<PathBuf>, cargo: &[&str]| -> Vec<String> {
        match bin {
            Some(b) => vec![b.display().to_string(), "--bench".into()],
            None => cargo.iter().map(|s| s.to_string()).collect(),
        }
    };
    let o = |f: &str| out.join(f).display().to_string();
    let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let n = |x: usize| x.to_string();
    match kind {
        StepKind::E2e => {
            let mut c = v(&[
                "cargo",
                "xtask",
                "bench",
                "e2e",
                "--device",
                &a.device,
                "--configs",
                s.config,
            ]);
            c.extend(v(&[
                "--dtypes",
                "fp16",
                "--transformers-dtypes",
                "fp16,fp32",
                "--skip-validate",
            ]));
            c.extend(v(&["--num-frames", &n(s.frames), "--json", &o("e2e.json")]));
            if a.no_setup {
                c.push("--no-setup".into());
            }
            for (flag, p) in [
                ("--vidlm-bin", &a.vidlm_bin),
                ("--python-interpreter", &a.python_interpreter),
                ("--models-dir", &a.models_dir),
                ("--video", &a.video),
            ] {
                if let Some(p) = p {
                    c.extend([flag.to_string(), p.display().to_string()]);
                }
            }
            vec![c]
        }
        StepKind::Decode => ["off", "on"]
            .iter()
            .map(|g| {
                let mut c = v(&[&vidlm, "run", "--model", &export, "--video", &clip]);
                c.extend(v(&["--num-frames", &n(s.frames), "--max-new-tokens", &n(s.tokens)]));
                c.extend(v(&[
                    "--device",
                    &a.device,
                    "--dtype",
                    "fp16",
                    "--json",
                    "--cuda-graph",
                    g,
                ]));
                c.extend(v(&["--prompt", "What is happening in this video?"]));
                if *g == "off" {
                    c.extend(v(&["--profile-dir", &o("profile")]));
                }
                c
            })
            .collect(),
        StepKind::Serve => {
            let mut c = bench(
                &a.serve_bin,
                &[
                    "cargo",
                    "bench",
                    "-p",
                    "vidlm-engine",
                    "--features",
                    "vidlm-pipeline/cuda",
                    "--bench",
                    "serving",
                    "--",
                ],
            );
            c.extend(v(&["--model", &export, "--dtype", "fp16", "--device", &a.device]));
            c.extend(v(&[
                "--requests",
                &n(s.requests),
                "--frames",
                &n(s.frames),
                "--tokens",
                &n(s.tokens),
            ]));
            c.extend(v(&[
                "--video",
                &clip,
                "--json",
                &o("serve.json"),
                "--skip-solo",
                "--batching-only",
            ]));
            let mut hf_c =
                v(&[&py, "python/bench_batched_generate.py", "--model", &hf, "--videos", &clip]);
            hf_c.extend(v(&[
                "--requests",
                &n(s.requests),
                "--video-every",
                "2",
                "--num-frames",
                &n(s.frames),
            ]));
            hf_c.extend(v(&["--max-new-tokens", &n(s.tokens), "--batch-size", &n(s.requests)]));
            hf_c.extend(v(&["--device", &a.device, "--dtype", "fp16"]));
            vec![c, hf_c]
        }
        StepKind::Batch => {
            let mut c = bench(
                &a.batch_bin,
                &["cargo", "bench", "-p", "vidlm", "--features", "cuda", "--bench", "batch", "--"],
            );
            c.extend(v(&["--model", &export, "--dtype", "fp16", "--device", &a.device]));
            c.extend(v(&[
                "--videos",
                &n(s.clips),
                "--num-frames",
                &n(s.frames),
                "--max-new-tokens",
                "48",
            ]));
            c.extend(v(&[
                "--batch-size",
                "16",
                "--nvdec",
                "--skip-baseline",
                "--json",
                &o("batch.json"),
            ]));
            // The same clip for vidlm and transformers (a 1080p long-GOP clip: where decoding costs).
            c.extend(v(&["--clips", &clip]));
            let mut hf_c =
                v(&[&py, "python/bench_batched_generate.py", "--model", &hf, "--videos", &clip]);
            hf_c.extend(v(&[
                "--requests",
                &n(s.clips),
                "--video-every",
                "1",
                "--num-frames",
                &n(s.frames),
            ]));
            hf_c.extend(v(&["--max-new-tokens", "48", "--batch-size", "16", "--time-decode"]));
            hf_c.extend(v(&["--device", &a.device, "--dtype", "fp16"]));
            vec![c, hf_c]
        }
    }
}

/// Runs a command line; returns its stdout (stderr passes through).
fn run_line(line: &[String]) -> Result<String> {
    let (prog, rest) = line.split_first().ok_or_else(|| anyhow!("empty command"))?;
    let mut c = if prog == "cargo" {
        let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        crate::setup::ort_env(&mut c);
        c
    } else {
        Command::new(prog)
    };
    c.args(rest).current_dir(project_root());
    let o = c.output().with_context(|| format!("could not start {prog}"))?;
    eprint!("{}", String::from_utf8_lossy(&o.stderr));
    if !o.status.success() {
        bail!("{} failed ({})", line.join(" "), o.status);
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// The last JSON object a command printed.
fn last_json(stdout: &str) -> Option<Value> {
    let start = stdout.rfind("\n{").map(|i| i + 1).or_else(|| stdout.find('{'))?;
    serde_json::from_str(&stdout[start..]).ok()
}

/// The vision graphs' times in the ORT profiles under `dir`, in seconds: the sum of the nodes'
/// `_kernel_time` events (with the CUDA provider that is each node's host-side compute call, which
/// launches its kernels asynchronously), and the sum of `Kernel` events (GPU kernel durations,
/// which ORT writes only when built with CUDA profiling; `None` without them).
fn vision_profile(dir: &Path) -> Option<(f64, Option<f64>)> {
    let (mut nodes, mut kernels) = (0.0, 0.0);
    let (mut found, mut gpu) = (false, false);
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("vision_encoder") || name.starts_with("video_encoder")) {
            continue;
        }
        let v: Value = serde_json::from_str(&std::fs::read_to_string(e.path()).ok()?).ok()?;
        for ev in v.as_array()? {
            let dur = ev["dur"].as_f64().unwrap_or(0.0);
            if ev["cat"] == "Node"
                && ev["name"].as_str().is_some_and(|n| n.ends_with("_kernel_time"))
            {
                nodes += dur;
                found = true;
            } else if ev["cat"] == "Kernel" {
                kernels += dur;
                gpu = true;
            }
        }
    }
    found.then_some((nodes / 1e6, gpu.then_some(kernels / 1e6)))
}

fn gpu_name() -> String {
    Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown-gpu".into())
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect()
}

/// `cargo xtask bench gpu [args]`.
pub fn bench_gpu(args: &[String]) -> Result<()> {
    let a = GpuArgs::try_parse_from(std::iter::once("gpu".to_string()).chain(args.iter().cloned()))
        .map_err(|e| anyhow!("{e}"))?;
    if !a.device.starts_with("cuda") {
        bail!("--device {:?}: cuda or cuda:N (this benchmark measures the GPU)", a.device);
    }
    let started = Instant::now();
    let out = cache_dir().join("bench").join("gpu");
    std::fs::create_dir_all(&out)?;
    let checks = preflight(&a);
    eprintln!("[bench gpu] preflight:");
    for (what, why) in &checks {
        eprintln!(
            "  {} {what}{}",
            if why.is_none() { "ok  " } else { "MISS" },
            why.as_ref().map(|w| format!(": {w}")).unwrap_or_default()
        );
    }
    let missing: Vec<&String> = checks.iter().filter_map(|(_, w)| w.as_ref()).collect();
    if !a.dry_run && !missing.is_empty() {
        bail!("preflight failed ({} missing); nothing was run", missing.len());
    }
    let models = a.models_dir.clone().unwrap_or_else(|| cache_dir().join("bench-models"));
    let mut results = json!({
        "benchmark": "cargo xtask bench gpu",
        "issue": 23,
        "device": a.device,
        "gpu": if a.dry_run { Value::Null } else { json!(gpu_name()) },
        "budget_s": a.budget_s,
        "steps": {},
    });
    for (i, step) in STEPS.iter().enumerate() {
        let left = a.budget_s.saturating_sub(started.elapsed().as_secs());
        let after: u64 = STEPS[i + 1..].iter().map(|s| s.quick_s).sum();
        let mode = schedule(step, left, after, a.quick);
        let s = sizes(&mode);
        let export = models.join(s.config).join("export");
        let lines = commands(&a, step.kind, s, &export, &out);
        eprintln!("[bench gpu] {} — {:?} ({} s left)", step.name, mode, left);
        for l in &lines {
            eprintln!("    $ {}", l.join(" "));
        }
        results["steps"][step.name] = json!({"mode": format!("{mode:?}"), "commands": lines.iter().map(|l| l.join(" ")).collect::<Vec<_>>()});
        if a.dry_run || matches!(mode, Mode::Skip(_)) {
            continue;
        }
        let t = Instant::now();
        let outcome = run_step(step.kind, &lines, &out, &mut results);
        results["steps"][step.name]["seconds"] = json!(t.elapsed().as_secs_f64());
        if let Err(e) = outcome {
            eprintln!("[bench gpu] {} failed: {e:#}", step.name);
            results["steps"][step.name]["error"] = json!(format!("{e:#}"));
        }
    }
    let table = target_table(&results);
    println!(
        "\n## Issue 23 GPU targets ({})\n\n{table}",
        if a.dry_run { "dry run: nothing measured" } else { "measured" }
    );
    if a.dry_run {
        return Ok(());
    }
    results["targets_table"] = json!(table);
    let path = a.json.clone().unwrap_or_else(|| {
        project_root().join("docs/bench").join(format!("gpu-{}.json", slug(&gpu_name())))
    });
    std::fs::write(&path, serde_json::to_string_pretty(&results)?)?;
    println!("written: {} ({:.0} s)", path.display(), started.elapsed().as_secs_f64());
    Ok(())
}

fn run_step(kind: StepKind, lines: &[Vec<String>], out: &Path, results: &mut Value) -> Result<()> {
    match kind {
        StepKind::E2e => {
            run_line(&lines[0])?;
            let v: Value = serde_json::from_str(&std::fs::read_to_string(out.join("e2e.json"))?)?;
            results["e2e"] = v;
        }
        StepKind::Decode => {
            let _ = std::fs::remove_dir_all(out.join("profile"));
            for (line, key) in lines.iter().zip(["cuda_graph_off", "cuda_graph_on"]) {
                let stdout = run_line(line)?;
                let v =
                    last_json(&stdout).ok_or_else(|| anyhow!("{key}: no JSON from vidlm run"))?;
                let t = &v["timings"];
                // Time to first token as `bench e2e` counts it: vision + embed + prefill.
                let ttft = ["vision", "embed", "prefill"]
                    .iter()
                    .map(|k| t[*k].as_f64())
                    .sum::<Option<f64>>();
                results["decode"][key] = json!({
                    "decode_tokens_per_s": t["decode_tokens_per_s"],
                    "vision_s": t["vision"],
                    "time_to_first_token_s": ttft,
                    "media_decode_s": t["decode"],
                    "token_ids": v["token_ids"],
                });
            }
            let frames = lines[0]
                .iter()
                .position(|x| x == "--num-frames")
                .and_then(|i| lines[0].get(i + 1))
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(8.0);
            if let Some((nodes, kernels)) = vision_profile(&out.join("profile")) {
                let d = &mut results["decode"];
                d["vision_node_s"] = json!(nodes);
                d["vision_node_s_per_frame"] = json!(nodes / frames);
                d["vision_gpu_kernel_s"] = json!(kernels);
                d["vision_gpu_kernel_s_per_frame"] = json!(kernels.map(|k| k / frames));
            }
            let same = results["decode"]["cuda_graph_off"]["token_ids"]
                == results["decode"]["cuda_graph_on"]["token_ids"];
            results["decode"]["tokens_equal_with_and_without_graphs"] = json!(same);
        }
        StepKind::Serve | StepKind::Batch => {
            let (file, key) = if kind == StepKind::Serve {
                ("serve.json", "serve")
            } else {
                ("batch.json", "batch")
            };
            run_line(&lines[0])?;
            let v: Value = serde_json::from_str(&std::fs::read_to_string(out.join(file))?)?;
            results[key]["vidlm"] =
                if kind == StepKind::Serve { v["concurrent"].clone() } else { v };
            let hf = run_line(&lines[1])?;
            results[key]["transformers"] =
                last_json(&hf).ok_or_else(|| anyhow!("no JSON from bench_batched_generate.py"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_full_run_fits_the_device_limit() {
        let full: u64 = STEPS.iter().map(|s| s.full_s).sum();
        assert!(full <= 570, "{full} s of estimates do not fit one 600 s call");
        // Every step gets its full form with the default budget at the start.
        let mut left = 570;
        for (i, s) in STEPS.iter().enumerate() {
            let after: u64 = STEPS[i + 1..].iter().map(|s| s.quick_s).sum();
            assert_eq!(schedule(s, left, after, false), Mode::Full, "{}", s.name);
            left -= s.full_s;
        }
    }

    #[test]
    fn short_budgets_fall_back_to_quick_then_skip() {
        let s = &STEPS[2];
        assert_eq!(schedule(s, 1000, 0, false), Mode::Full);
        assert_eq!(schedule(s, 1000, 0, true), Mode::Quick, "--quick");
        assert_eq!(schedule(s, s.quick_s + 10, 0, false), Mode::Quick);
        assert_eq!(
            schedule(s, s.full_s, 10, false),
            Mode::Quick,
            "the steps after it keep their quick time"
        );
        assert!(matches!(schedule(s, s.quick_s - 1, 0, false), Mode::Skip(_)));
    }

    #[test]
    fn targets_are_judged_or_left_unmeasured() {
        // Nothing measured: every target says so, none is judged.
        let empty = json!({});
        assert!(targets(&empty).iter().all(|t| t.3.is_none() && t.1 == "not measured"));
        let r = json!({
            "decode": {"cuda_graph_off": {"decode_tokens_per_s": 95.0, "vision_s": 0.05,
                                          "time_to_first_token_s": 0.2},
                       "cuda_graph_on": {"decode_tokens_per_s": 410.0}},
            "serve": {"vidlm": {"tokens_per_s": 3000.0}, "transformers": {"tokens_per_s": 1200.0}},
            "batch": {"vidlm": {"batched": {"videos_per_s": 2.0}, "batched_nvdec": {"videos_per_s": 3.2}}},
        });
        let t = targets(&r);
        let met: Vec<Option<bool>> = t.iter().map(|x| x.3).collect();
        assert_eq!(met, [Some(true), Some(true), Some(false), Some(false), Some(true)]);
        assert_eq!(t[0].1, "410.0 tok/s");
        assert_eq!(t[1].1, "50 ms");
        assert!(target_table(&r).contains(
            "| 64-request serving throughput | 2.50 × transformers batched generate | ≥ 3× | no |"
        ));
    }

    #[test]
    fn commands_carry_the_issue_sizes() {
        let a = GpuArgs::try_parse_from(["gpu", "--dry-run", "--vidlm-bin", "/b/vidlm"]).unwrap();
        let out = Path::new("/o");
        let export = Path::new("/m/onevision-0.5b/export");
        let s = sizes(&Mode::Full);
        let serve = commands(&a, StepKind::Serve, s, export, out);
        let line = serve[0].join(" ");
        assert!(
            line.starts_with("cargo bench -p vidlm-engine --features vidlm-pipeline/cuda"),
            "{line}"
        );
        assert!(
            line.contains("--requests 64 --frames 8") && line.contains("--device cuda"),
            "{line}"
        );
        let hf = serve[1].join(" ");
        assert!(
            hf.contains("--model /m/onevision-0.5b/hf") && hf.contains("--video-every 2"),
            "{hf}"
        );
        let batch = commands(&a, StepKind::Batch, s, export, out)[0].join(" ");
        assert!(batch.contains("--videos 64") && batch.contains("--nvdec"), "{batch}");
        assert!(batch.contains("--clips ") && batch.contains("h264_1080p30_60s.mp4"), "{batch}");
        let decode = commands(&a, StepKind::Decode, s, export, out);
        assert!(decode[0].join(" ").starts_with("/b/vidlm run"));
        assert!(decode[0].contains(&"off".to_string()) && decode[1].contains(&"on".to_string()));
    }

    #[test]
    fn dry_run_plans_and_prints_without_a_gpu() {
        // The CPU-only path of the whole script: parse, preflight (reported), plan, print.
        // (`--python-interpreter true`: the preflight reports a Python without torch instead of importing it.)
        let args: Vec<String> =
            ["--dry-run", "--python-interpreter", "true"].iter().map(|s| s.to_string()).collect();
        bench_gpu(&args).unwrap();
        assert!(bench_gpu(&["--dry-run".to_string(), "--device".into(), "cpu".into()]).is_err());
    }

    #[test]
    fn profiles_sum_the_vision_nodes_and_kernels() {
        let dir = std::env::temp_dir().join(format!("vidlm-gpu-profile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ev = json!([
            {"cat": "Session", "name": "model_run", "dur": 900},
            {"cat": "Node", "name": "/conv/Conv_kernel_time", "dur": 300},
            {"cat": "Node", "name": "/mm/MatMul_kernel_time", "dur": 200},
            {"cat": "Node", "name": "/mm/MatMul_fence_before", "dur": 7},
        ]);
        let with_gpu = json!([
            {"cat": "Node", "name": "/conv/Conv_kernel_time", "dur": 100},
            {"cat": "Kernel", "name": "sm90_xmma_gemm", "dur": 40},
        ]);
        std::fs::write(dir.join("vision_encoder_fp16_2026.json"), ev.to_string()).unwrap();
        std::fs::write(dir.join("decoder_model_merged_2026.json"), ev.to_string()).unwrap();
        let (nodes, kernels) = vision_profile(&dir).unwrap();
        assert!((nodes - 500e-6).abs() < 1e-12, "{nodes}");
        assert_eq!(kernels, None, "no Kernel events: no GPU kernel time");
        std::fs::write(dir.join("video_encoder_fp16_2026.json"), with_gpu.to_string()).unwrap();
        let (nodes, kernels) = vision_profile(&dir).unwrap();
        assert!((nodes - 600e-6).abs() < 1e-12, "{nodes}");
        assert!((kernels.unwrap() - 40e-6).abs() < 1e-12);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
