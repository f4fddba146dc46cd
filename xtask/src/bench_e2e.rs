//! `cargo xtask bench e2e`: the whole path, vidlm against transformers, on the same weights,
//! frames and prompt, in one run.
//!
//! For every benchmark config (a random-weight checkpoint of a real architecture):
//! 1. build the checkpoint once (`python/random_checkpoint.py`, fixed seed) into
//!    `<models>/<config>/hf`;
//! 2. export it with `cargo xtask export` for every requested dtype into `<models>/<config>/export`
//!    (re-exported when the export code or the dtype list changes; the export validates every
//!    graph and prints the quantized graphs' fidelity);
//! 3. run the real `vidlm run --json` binary once per dtype and `python/bench_generate.py`
//!    (transformers `generate`, fp32, PyTorch CPU) on the same clip, frame count, prompt and thread
//!    count, measuring each child's peak RSS with `wait4` (rusage `ru_maxrss`);
//! 4. measure this machine's memory-read bandwidth in the same run and, from the bytes of weights
//!    each dtype reads per decoded token, the decode ceiling and how close each column comes to it;
//! 5. measure the best fp32 matrix-product rate of PyTorch's BLAS on this machine, and from the
//!    arithmetic of vision + prefill (`flops.rs`, counted from the config) the floor on time to
//!    first token that no fp32 runtime can go under, and how close each column comes to it;
//! 6. print a table (vision, prefill, time to first token, decode tok/s, peak RSS; vidlm per
//!    dtype, transformers fp32, ratios) and the targets, and write everything as JSON.
//!
//! `--quick` runs a tiny OneVision config with 2 frames and a few tokens: it exercises every step
//! in a couple of minutes so that CI keeps the harness working. Its numbers mean nothing.
//! The full run (`cargo xtask bench e2e`, under the shared `heavy` lock on a shared machine) is the
//! one for the closing note.

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::{bandwidth, cache_dir, flops, project_root, run, setup, videos};

/// Arguments of `cargo xtask bench e2e`.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "cargo xtask bench e2e",
    about = "vidlm vs transformers on the whole path, per dtype"
)]
pub struct E2eArgs {
    /// Small config, 2 frames, few tokens: checks that the harness runs (CI). Numbers mean nothing.
    #[arg(long)]
    pub quick: bool,
    /// Comma-separated configs (default: onevision-0.5b,next-video-7b-2l,qwen2.5-vl-3b,qwen3-vl-2b;
    /// with --quick: quick-onevision).
    #[arg(long)]
    pub configs: Option<String>,
    /// vidlm dtypes to run, comma-separated (fp32, fp16, q8, int8, q4, q4f16). Default: fp32,q8,q4 on
    /// the CPU, fp32,fp16 on CUDA.
    #[arg(long)]
    pub dtypes: Option<String>,
    /// Where both backends run: `cpu`, or `cuda` / `cuda:N` (vidlm built with `--features cuda`,
    /// the `onnxruntime-gpu` library of `cargo xtask setup --cuda`; PyTorch on the same GPU).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// transformers dtypes, comma-separated (fp32, fp16, bf16). Default: fp32 on the CPU (fp32,bf16
    /// where it has AMX-BF16), fp32,fp16 on CUDA. Ratios are against transformers fp32.
    #[arg(long)]
    pub transformers_dtypes: Option<String>,
    /// Run this vidlm binary instead of building one (e.g. a `--features cuda` build carried to a
    /// GPU machine that has no Rust toolchain).
    #[arg(long)]
    pub vidlm_bin: Option<PathBuf>,
    /// The Python interpreter with torch and transformers for the transformers column (default:
    /// the project's venv, `.cache/venv`).
    #[arg(long)]
    pub python_interpreter: Option<PathBuf>,
    /// Add a Python-API column per dtype: the same request through the `vidlm` Python package
    /// (`LLM.stream`, wheel built with the bench's profile, on `PYTHONPATH` of the interpreter
    /// above), and a table of its overhead over `vidlm run` (caller-side time to first token and
    /// tokens/s, same run).
    #[arg(long)]
    pub python: bool,
    /// Skip `cargo xtask setup` (apt, pip, the ONNX Runtime download): for a machine that is set up
    /// already and has no package index. Give --python-interpreter, --vidlm-bin and --video with it.
    #[arg(long)]
    pub no_setup: bool,
    /// Build the checkpoints and exports, then stop (no runs).
    #[arg(long)]
    pub prepare_only: bool,
    /// Where checkpoints and exports live (`<dir>/<config>/hf`, `<dir>/<config>/export`).
    /// Default: $VIDLM_BENCH_MODELS, else `.cache/bench-models`.
    #[arg(long)]
    pub models_dir: Option<PathBuf>,
    /// The clip (default: the 60 s 1080p h264 test video).
    #[arg(long)]
    pub video: Option<PathBuf>,
    /// Frames sampled from the clip (default 8; 2 with --quick).
    #[arg(long)]
    pub num_frames: Option<usize>,
    /// New tokens generated, greedy (default 32; 6 with --quick).
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Threads for ONNX Runtime, PyTorch and the bandwidth measurement.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Runs per column; each metric keeps its best run.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// Leave out the transformers column.
    #[arg(long)]
    pub no_transformers: bool,
    /// Skip the export's ONNX Runtime vs PyTorch validation (and the fidelity report).
    #[arg(long)]
    pub skip_validate: bool,
    /// The question.
    #[arg(long, default_value = "What is happening in this video?")]
    pub prompt: String,
    /// Also write the JSON here (it always goes to `.cache/bench/e2e-<time>.json` too).
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// A benchmark model: one architecture at one size.
#[derive(Debug, Clone, Copy)]
pub struct BenchConfig {
    pub name: &'static str,
    /// `python/random_checkpoint.py --family`.
    pub family: &'static str,
    /// `tiny` or `real`.
    pub size: &'static str,
    /// Reduced LM depth (real width), if any.
    pub text_layers: Option<u32>,
    pub description: &'static str,
}

pub const CONFIGS: &[BenchConfig] = &[
    BenchConfig {
        name: "onevision-0.5b",
        family: "onevision",
        size: "real",
        text_layers: None,
        description: "LLaVA-OneVision-0.5B real size, full depth (SigLIP-so400m 26 layers, Qwen2 24 layers, GQA 14:2, tied embeddings), random weights",
    },
    BenchConfig {
        name: "next-video-7b-2l",
        family: "llava_next_video",
        size: "real",
        text_layers: Some(2),
        description: "LLaVA-NeXT-Video-7B width (CLIP-L/336, Llama hidden 4096, linear RoPE x2, untied lm_head) with 2 of its 32 LM layers, random weights",
    },
    BenchConfig {
        name: "qwen2.5-vl-3b",
        family: "qwen2_5_vl",
        size: "real",
        text_layers: None,
        description: "Qwen2.5-VL-3B-Instruct real size, full depth (ViT 32 layers of 1280 with windowed attention and 4 full-attention blocks, Qwen2.5 36 layers of 2048, GQA 16:2, M-RoPE, tied embeddings), random weights",
    },
    BenchConfig {
        name: "qwen3-vl-2b",
        family: "qwen3_vl",
        size: "real",
        text_layers: None,
        description: "Qwen3-VL-2B-Instruct real size, full depth (ViT 24 layers of 1024 with interpolated position embeddings and 3 DeepStack levels, Qwen3 28 layers of 2048, GQA 16:8, interleaved M-RoPE, tied embeddings), random weights",
    },
    BenchConfig {
        name: "quick-onevision",
        family: "onevision",
        size: "tiny",
        text_layers: None,
        description: "tiny OneVision (the fixtures' config): checks the harness, its numbers mean nothing",
    },
];

/// File-name suffix of a dtype (the transformers.js convention).
pub fn dtype_suffix(dtype: &str) -> Option<&'static str> {
    Some(match dtype {
        "fp32" => "",
        "fp16" => "_fp16",
        "q8" => "_quantized",
        "int8" => "_int8",
        "q4" => "_q4",
        "q4f16" => "_q4f16",
        _ => return None,
    })
}

fn models_dir(a: &E2eArgs) -> PathBuf {
    a.models_dir
        .clone()
        .or_else(|| std::env::var_os("VIDLM_BENCH_MODELS").map(PathBuf::from))
        .unwrap_or_else(|| cache_dir().join("bench-models"))
}

/// `--python-interpreter`, when given: the interpreter every Python step uses instead of the venv's.
static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

fn python() -> Result<Command> {
    let py = match PYTHON.get() {
        Some(p) => p.clone(),
        None => setup::python_env()?,
    };
    let mut c = Command::new(py);
    c.current_dir(project_root());
    c.env("PYTHONUNBUFFERED", "1");
    Ok(c)
}

/// A deterministic digest of files (FNV-1a over names and contents), for stamps.
fn digest(paths: &[PathBuf]) -> Result<String> {
    let mut h: u64 = 0xcbf29ce484222325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x100000001b3);
        }
    };
    for p in paths {
        feed(p.file_name().and_then(|n| n.to_str()).unwrap_or_default().as_bytes());
        feed(&std::fs::read(p).with_context(|| format!("reading {}", p.display()))?);
    }
    Ok(format!("{h:016x}"))
}

/// The Python sources an export depends on.
fn export_sources() -> Result<Vec<PathBuf>> {
    let dir = project_root().join("python").join("vidlm_export");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "py"))
        .collect();
    v.sort();
    v.push(project_root().join("python").join("export.py"));
    Ok(v)
}

/// Builds the random-weight checkpoint once. The stamp records what was built, so a different
/// config under the same name is rebuilt, while source edits elsewhere never force a rebuild of
/// a multi-GB checkpoint that others may share.
fn ensure_checkpoint(cfg: &BenchConfig, dir: &Path) -> Result<PathBuf> {
    let hf = dir.join("hf");
    let key =
        json!({"family": cfg.family, "size": cfg.size, "text_layers": cfg.text_layers, "seed": 0});
    let stamp = hf.join(".vidlm-bench-checkpoint");
    let stamped: Option<Value> =
        std::fs::read_to_string(&stamp).ok().and_then(|s| serde_json::from_str(&s).ok());
    if stamped.as_ref() == Some(&key) {
        return Ok(hf);
    }
    if std::fs::symlink_metadata(&hf).map(|m| m.file_type().is_symlink()).unwrap_or(false) {
        // a shared checkpoint linked in by hand (e.g. /work/models/<name>/hf): used, never rebuilt in place
        if !hf.join("config.json").is_file() {
            bail!("{} is a link to a directory without config.json", hf.display());
        }
        if stamped.is_some() {
            eprintln!(
                "[bench e2e] warning: {} was built as {} (this config is {key})",
                hf.display(),
                stamped.unwrap_or_default()
            );
        }
        return Ok(hf);
    }
    eprintln!(
        "[bench e2e] building the random-weight checkpoint {} into {}",
        cfg.name,
        hf.display()
    );
    let t0 = Instant::now();
    let mut c = python()?;
    c.arg(project_root().join("python").join("random_checkpoint.py"))
        .args(["--family", cfg.family, "--size", cfg.size, "--seed", "0", "--out"])
        .arg(&hf);
    if let Some(l) = cfg.text_layers {
        c.args(["--text-layers", &l.to_string()]);
    }
    run(&mut c)?;
    std::fs::write(&stamp, key.to_string())?;
    eprintln!("[bench e2e] checkpoint built in {:.0} s", t0.elapsed().as_secs_f64());
    Ok(hf)
}

/// Float dtypes: exported from the checkpoint. The others are quantized from the fp32 graphs
/// (`quantize.py`), so a change to the quantizer alone re-makes only them.
const FLOAT_DTYPES: &[&str] = &["fp32", "fp16"];

/// Exports the checkpoint for `dtypes` unless an export made by the same export code with (at
/// least) these dtypes is already there. The stamp records two digests: of every export source
/// (`source`) and of every source but `quantize.py` (`float_source`); when only the quantizer
/// changed, the quantized dtypes are re-made from the fp32 graphs already there (`export --dtype
/// q8,q4` on the same directory) instead of exporting everything again (~40 min at real size).
fn ensure_export(hf: &Path, dir: &Path, dtypes: &[String], skip_validate: bool) -> Result<PathBuf> {
    let out = dir.join("export");
    let sources = export_sources()?;
    let src = digest(&sources)?;
    let float_sources: Vec<PathBuf> = sources
        .iter()
        .filter(|p| p.file_name().is_none_or(|n| n != "quantize.py"))
        .cloned()
        .collect();
    let float_src = digest(&float_sources)?;
    let stamp = out.join(".vidlm-bench-export");
    let done: Option<Value> =
        std::fs::read_to_string(&stamp).ok().and_then(|s| serde_json::from_str(&s).ok());
    let have: Vec<String> = done
        .as_ref()
        .and_then(|d| d["dtypes"].as_array())
        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let same = |key: &str, digest: &str| done.as_ref().is_some_and(|d| d[key] == digest);
    if same("source", &src) && dtypes.iter().all(|t| have.contains(t)) {
        return Ok(out);
    }
    let floats_ok = same("float_source", &float_src)
        && dtypes.iter().filter(|t| FLOAT_DTYPES.contains(&t.as_str())).all(|t| have.contains(t))
        && have.iter().any(|t| t == "fp32");
    let (todo, keep): (Vec<String>, Vec<String>) = if floats_ok {
        let todo: Vec<String> =
            dtypes.iter().filter(|t| !FLOAT_DTYPES.contains(&t.as_str())).cloned().collect();
        let keep = have.iter().filter(|t| FLOAT_DTYPES.contains(&t.as_str())).cloned().collect();
        (todo, keep)
    } else {
        (dtypes.to_vec(), Vec::new())
    };
    eprintln!(
        "[bench e2e] exporting {} ({}{}) into {}",
        hf.display(),
        todo.join(","),
        if floats_ok {
            ", quantized from the fp32 graphs there: only the quantizer changed"
        } else {
            ""
        },
        out.display()
    );
    let t0 = Instant::now();
    let _ = std::fs::remove_file(&stamp);
    let mut c = python()?;
    c.arg(project_root().join("python").join("export.py"))
        .arg("--model")
        .arg(hf)
        .arg("--out")
        .arg(&out)
        .args(["--dtype", &todo.join(",")]);
    if skip_validate {
        c.arg("--skip-validate");
    }
    run(&mut c)?;
    let mut all = keep;
    all.extend(todo);
    std::fs::write(
        &stamp,
        json!({"source": src, "float_source": float_src, "dtypes": all}).to_string(),
    )?;
    eprintln!("[bench e2e] exported in {:.0} s", t0.elapsed().as_secs_f64());
    Ok(out)
}

/// A child's stdout and peak resident set size.
struct Measured {
    stdout: String,
    peak_rss_bytes: Option<u64>,
    /// Peak GPU memory in use while the command ran, above what was in use before it started
    /// (`nvidia-smi`'s `memory.used`, sampled every 50 ms); only on a CUDA run.
    peak_gpu_bytes: Option<u64>,
    wall_s: f64,
}

/// GPU memory in use now (bytes), as `nvidia-smi` reports it for the first GPU.
fn gpu_memory_used() -> Option<u64> {
    let o = Command::new("nvidia-smi")
        .args(["--query-gpu=memory.used", "--format=csv,noheader,nounits"])
        .output()
        .ok()?;
    let s = String::from_utf8_lossy(&o.stdout);
    let mib: u64 = s.lines().next()?.trim().parse().ok()?;
    Some(mib << 20)
}

/// Samples GPU memory in use until dropped; `peak()` is the highest reading above the baseline.
struct GpuSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Option<u64>>>,
    baseline: Option<u64>,
}

impl GpuSampler {
    fn start() -> GpuSampler {
        let baseline = gpu_memory_used();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak: Option<u64> = None;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(m) = gpu_memory_used() {
                    peak = Some(peak.map_or(m, |p| p.max(m)));
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            peak
        });
        GpuSampler { stop, thread: Some(thread), baseline }
    }

    fn peak(mut self) -> Option<u64> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let peak = self.thread.take()?.join().ok()??;
        Some(peak.saturating_sub(self.baseline.unwrap_or(0)))
    }
}

/// Runs a command with stdout captured and stderr passed through, and reads its peak RSS from the
/// kernel's accounting of that one child (`wait4`'s rusage: the high-water mark of the process).
fn run_measured(cmd: &mut Command, gpu: bool) -> Result<Measured> {
    let sampler = gpu.then(GpuSampler::start);
    let t0 = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("could not start {cmd:?}"))?;
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_string(&mut stdout)?;
    }
    let (success, status_text, peak) = crate::ffi::wait_with_rusage(&mut child)?;
    let wall_s = t0.elapsed().as_secs_f64();
    let peak_gpu_bytes = sampler.and_then(GpuSampler::peak);
    if !success {
        bail!("command failed ({status_text}): {cmd:?}");
    }
    Ok(Measured { stdout, peak_rss_bytes: peak, peak_gpu_bytes, wall_s })
}

/// One column of the table.
#[derive(Debug, Clone, Default)]
struct Column {
    label: String,
    backend: String,
    dtype: String,
    vision_s: Option<f64>,
    prefill_s: Option<f64>,
    ttft_s: Option<f64>,
    decode_tokens_per_s: Option<f64>,
    peak_rss_bytes: Option<u64>,
    peak_gpu_bytes: Option<u64>,
    media_decode_s: Option<f64>,
    preprocess_s: Option<f64>,
    prompt_tokens: Option<u64>,
    token_ids: Vec<i64>,
    wall_s: Option<f64>,
    weights_bytes_per_token: Option<u64>,
    decode_ceiling_tokens_per_s: Option<f64>,
    /// Floating-point operations of vision + prefill (`flops::ttft_flops`).
    ttft_flops: Option<f64>,
    /// `ttft_flops` / the measured fp32 matrix-product rate.
    compute_floor_s: Option<f64>,
    /// What the caller sees: from the request (media decoding included) to its first token.
    caller_ttft_s: Option<f64>,
    /// What the caller sees: tokens per second after the first.
    caller_tokens_per_s: Option<f64>,
    /// `caller_ttft_s` minus vision + prefill of the same run: the time outside the models
    /// (media decoding, preprocessing, scheduling, delivery), where a front end adds its cost.
    outside_models_s: Option<f64>,
}

fn min_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) | (None, x) => x,
    }
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) | (None, x) => x,
    }
}

impl Column {
    /// Sets the caller-side time to first token and, from it, the time outside the models.
    fn with_caller_ttft(mut self, caller_ttft_s: Option<f64>) -> Column {
        self.caller_ttft_s = caller_ttft_s;
        self.outside_models_s =
            caller_ttft_s.zip(self.ttft_s).map(|(caller, models)| caller - models);
        self
    }

    /// Keeps the best value of every metric over repeated runs.
    fn merge_best(&mut self, o: Column) {
        if self.label.is_empty() {
            *self = o;
            return;
        }
        self.vision_s = min_opt(self.vision_s, o.vision_s);
        self.prefill_s = min_opt(self.prefill_s, o.prefill_s);
        self.ttft_s = min_opt(self.ttft_s, o.ttft_s);
        self.decode_tokens_per_s = max_opt(self.decode_tokens_per_s, o.decode_tokens_per_s);
        let min_u64 = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.peak_rss_bytes = min_u64(self.peak_rss_bytes, o.peak_rss_bytes);
        self.peak_gpu_bytes = min_u64(self.peak_gpu_bytes, o.peak_gpu_bytes);
        self.media_decode_s = min_opt(self.media_decode_s, o.media_decode_s);
        self.preprocess_s = min_opt(self.preprocess_s, o.preprocess_s);
        self.wall_s = min_opt(self.wall_s, o.wall_s);
        self.caller_ttft_s = min_opt(self.caller_ttft_s, o.caller_ttft_s);
        self.caller_tokens_per_s = max_opt(self.caller_tokens_per_s, o.caller_tokens_per_s);
        self.outside_models_s = min_opt(self.outside_models_s, o.outside_models_s);
    }

    fn to_json(&self) -> Value {
        json!({
            "label": self.label,
            "backend": self.backend,
            "dtype": self.dtype,
            "vision_s": self.vision_s,
            "prefill_s": self.prefill_s,
            "time_to_first_token_s": self.ttft_s,
            "decode_tokens_per_s": self.decode_tokens_per_s,
            "peak_rss_bytes": self.peak_rss_bytes,
            "peak_gpu_bytes": self.peak_gpu_bytes,
            "media_decode_s": self.media_decode_s,
            "preprocess_s": self.preprocess_s,
            "prompt_tokens": self.prompt_tokens,
            "new_tokens": self.token_ids.len(),
            "token_ids": self.token_ids,
            "process_wall_s": self.wall_s,
            "caller_ttft_s": self.caller_ttft_s,
            "outside_models_s": self.outside_models_s,
            "caller_tokens_per_s": self.caller_tokens_per_s,
            "weights_bytes_per_token": self.weights_bytes_per_token,
            "decode_ceiling_tokens_per_s": self.decode_ceiling_tokens_per_s,
            "fraction_of_ceiling": self.fraction_of_ceiling(),
            "ttft_flops": self.ttft_flops,
            "ttft_compute_floor_s": self.compute_floor_s,
            "ttft_fraction_of_compute_peak": self.fraction_of_compute_peak(),
        })
    }

    /// How close time to first token comes to its compute floor (1 = the BLAS peak throughout).
    fn fraction_of_compute_peak(&self) -> Option<f64> {
        Some(self.compute_floor_s? / self.ttft_s?)
    }

    fn fraction_of_ceiling(&self) -> Option<f64> {
        Some(self.decode_tokens_per_s? / self.decode_ceiling_tokens_per_s?)
    }
}

fn f(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

fn token_ids(v: &Value) -> Vec<i64> {
    v.get("token_ids")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default()
}

/// Parses the last JSON object a command printed on stdout.
fn parse_json(stdout: &str, what: &str) -> Result<Value> {
    let start = stdout.find('{').ok_or_else(|| anyhow!("{what} printed no JSON: {stdout:?}"))?;
    serde_json::from_str(&stdout[start..])
        .with_context(|| format!("{what} printed malformed JSON: {stdout:?}"))
}

struct RunSpec<'a> {
    device: &'a str,
    video: &'a Path,
    frames: usize,
    tokens: usize,
    threads: usize,
    prompt: &'a str,
}

#[cfg(unix)]
fn link(src: impl AsRef<Path>, dst: impl AsRef<Path>) -> std::io::Result<()> {
    std::os::unix::fs::symlink(src, dst)
}

#[cfg(not(unix))]
fn link(src: impl AsRef<Path>, dst: impl AsRef<Path>) -> std::io::Result<()> {
    std::fs::copy(src, dst).map(|_| ())
}

/// Whether this `vidlm` binary has `run --dtype`.
fn has_dtype_option(bin: &Path) -> bool {
    Command::new(bin)
        .args(["run", "--help"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("--dtype"))
        .unwrap_or(false)
}

/// A model directory in which every graph's plain name points at its `dtype` file (or at the fp32
/// file where the export wrote none for that dtype): for `vidlm` binaries without `run --dtype`.
fn dtype_view(export: &Path, dtype: &str) -> Result<PathBuf> {
    let suffix = dtype_suffix(dtype).context("dtype")?;
    let view = export.parent().unwrap_or(export).join("views").join(dtype);
    let onnx = view.join("onnx");
    if view.exists() {
        std::fs::remove_dir_all(&view)?;
    }
    std::fs::create_dir_all(&onnx)?;
    let abs = export.canonicalize()?;
    for e in std::fs::read_dir(&abs)? {
        let e = e?;
        if e.file_type()?.is_file() {
            link(e.path(), view.join(e.file_name()))?;
        }
    }
    for e in std::fs::read_dir(abs.join("onnx"))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        // external data keeps its own name (the graph refers to it by name)
        if !name.ends_with(".onnx") {
            link(e.path(), onnx.join(&name))?;
        }
    }
    for stem in ["vision_encoder", "video_encoder", "embed_tokens", "decoder_model_merged"] {
        let want = abs.join("onnx").join(format!("{stem}{suffix}.onnx"));
        let plain = abs.join("onnx").join(format!("{stem}.onnx"));
        let src = if want.is_file() { want } else { plain };
        if src.is_file() {
            link(&src, onnx.join(format!("{stem}.onnx")))?;
        }
    }
    Ok(view)
}

fn run_vidlm(bin: &Path, export: &Path, dtype: &str, r: &RunSpec) -> Result<Column> {
    let mut c = Command::new(bin);
    c.current_dir(project_root());
    if r.device != "cpu" && std::env::var_os("ORT_DYLIB_PATH").is_none() {
        // the CUDA build of ONNX Runtime (it runs CPU sessions too)
        c.env("ORT_DYLIB_PATH", setup::ort_gpu_lib());
    }
    setup::ort_env(&mut c);
    let native = dtype == "fp32" || has_dtype_option(bin);
    let model = if native { export.to_path_buf() } else { dtype_view(export, dtype)? };
    c.arg("run")
        .arg("--model")
        .arg(&model)
        .arg("--video")
        .arg(r.video)
        .args(["--num-frames", &r.frames.to_string(), "--max-new-tokens", &r.tokens.to_string()])
        .args(["--threads", &r.threads.to_string(), "--json", "--prompt", r.prompt])
        // Greedy, as the transformers column decodes: `vidlm run` otherwise follows the checkpoint's
        // generation config, and Qwen3-VL's asks for sampling (temperature 0.7, top-k 20).
        .args(["--temperature", "0"]);
    if r.device != "cpu" {
        c.args(["--device", r.device]);
    }
    // On CUDA the binary's default is fp16: name every dtype there. Where the export has no vision
    // graphs at this dtype (q4 vision misses its accuracy bound, so the export writes none), `vidlm`
    // runs them at the nearest precision the export holds (q4 -> q8 -> fp32, recorded in the
    // manifest's `dtype_fallback`), and the column says so.
    let mut label = format!("vidlm {dtype}");
    if native && (dtype != "fp32" || r.device != "cpu") {
        if let Some(alt) = vision_fallback(export, dtype) {
            label = format!("vidlm {dtype} (vision {alt})");
        }
        c.args(["--dtype", dtype]);
    }
    eprintln!("[bench e2e] vidlm {dtype}: {c:?}");
    let m = run_measured(&mut c, r.device != "cpu")?;
    let v = parse_json(&m.stdout, "vidlm run --json")?;
    let t = &v["timings"];
    let vision = f(t, "vision");
    let prefill = match (f(t, "embed"), f(t, "prefill")) {
        // embedding + merge is part of getting the prompt into the decoder
        (Some(e), Some(p)) => Some(e + p),
        (None, p) => p,
        (e, None) => e,
    };
    Ok(Column {
        label,
        backend: "vidlm".into(),
        dtype: dtype.into(),
        vision_s: vision,
        prefill_s: prefill,
        ttft_s: match (vision, prefill) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        },
        decode_tokens_per_s: f(t, "decode_tokens_per_s"),
        peak_rss_bytes: m.peak_rss_bytes,
        peak_gpu_bytes: m.peak_gpu_bytes,
        media_decode_s: f(t, "decode"),
        preprocess_s: f(t, "preprocess"),
        prompt_tokens: v.get("prompt_tokens").and_then(Value::as_u64),
        token_ids: token_ids(&v),
        wall_s: Some(m.wall_s),
        caller_tokens_per_s: f(t, "decode_tokens_per_s"),
        ..Default::default()
    }
    .with_caller_ttft(f(t, "decode").zip(f(t, "first_token")).map(|(d, ft)| d + ft)))
}

/// `python/<script> --model <model> ...`: the arguments the Python API's and transformers'
/// bench scripts share.
fn python_script(script: &str, model: &Path, dtype: &str, r: &RunSpec) -> Result<Command> {
    let mut c = python()?;
    c.arg(project_root().join("python").join(script))
        .arg("--model")
        .arg(model)
        .arg("--video")
        .arg(r.video)
        .args(["--num-frames", &r.frames.to_string(), "--max-new-tokens", &r.tokens.to_string()])
        .args(["--threads", &r.threads.to_string(), "--prompt", r.prompt])
        .args(["--device", r.device, "--dtype", dtype]);
    Ok(c)
}

/// The same request as [`run_vidlm`] through the Python package (`python/bench_python_api.py`,
/// the wheel's files in `site`, put on `PYTHONPATH`).
fn run_python_api(site: &Path, export: &Path, dtype: &str, r: &RunSpec) -> Result<Column> {
    let mut c = python_script("bench_python_api.py", export, dtype, r)?;
    c.env("PYTHONPATH", site).env_remove("ORT_DYLIB_PATH");
    eprintln!("[bench e2e] python {dtype}: {c:?}");
    let m = run_measured(&mut c, r.device != "cpu")?;
    let v = parse_json(&m.stdout, "python/bench_python_api.py")?;
    let t = &v["timings"];
    let vision = f(t, "vision");
    let prefill = f(t, "embed").zip(f(t, "prefill")).map(|(e, p)| e + p);
    Ok(Column {
        label: format!("python {dtype}"),
        backend: "vidlm-python".into(),
        dtype: dtype.into(),
        vision_s: vision,
        prefill_s: prefill,
        ttft_s: vision.zip(prefill).map(|(a, b)| a + b),
        decode_tokens_per_s: f(t, "decode_tokens_per_s"),
        peak_rss_bytes: m.peak_rss_bytes,
        peak_gpu_bytes: m.peak_gpu_bytes,
        media_decode_s: f(t, "decode"),
        preprocess_s: f(t, "preprocess"),
        prompt_tokens: v.get("prompt_tokens").and_then(Value::as_u64),
        token_ids: token_ids(&v),
        wall_s: Some(m.wall_s),
        caller_tokens_per_s: f(t, "caller_tokens_per_s"),
        ..Default::default()
    }
    .with_caller_ttft(f(t, "caller_first_token")))
}

/// The Python API's overhead over `vidlm run`, dtype by dtype (issue 22's target: under 2% of
/// time to first token and of tokens/s).
fn python_overhead_table(cols: &[Column], py_cols: &[Column]) -> String {
    let mut s = String::from(
        "\nPython API (`vidlm.LLM.stream`) vs `vidlm run`, same inputs, same run (caller-side: \
         time to first token from the request, media decoding included; tokens/s after the first). \
         Both run the same engine code, so what Python can add is the time outside the models: \
         caller-side time to first token minus vision + prefill (media decoding, preprocessing, \
         scheduling, delivery to the caller). The stage times themselves vary between processes on \
         a shared host; compare them with the best of several `--repeat` runs:\n\n\
         | dtype | run TTFT s | Python TTFT s | overhead | run tok/s | Python tok/s | overhead | outside the models, run / Python s | same tokens |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for (c, p) in cols.iter().zip(py_cols) {
        let pct = |a: Option<f64>, b: Option<f64>, slower_is_more: bool| match (a, b) {
            (Some(a), Some(b)) if a > 0.0 && b > 0.0 => {
                let r = if slower_is_more { b / a } else { a / b };
                format!("{:+.1}%", (r - 1.0) * 100.0)
            }
            _ => "-".into(),
        };
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} / {} | {} |\n",
            c.dtype,
            fmt_opt(c.caller_ttft_s, 3),
            fmt_opt(p.caller_ttft_s, 3),
            pct(c.caller_ttft_s, p.caller_ttft_s, true),
            fmt_opt(c.caller_tokens_per_s, 2),
            fmt_opt(p.caller_tokens_per_s, 2),
            pct(c.caller_tokens_per_s, p.caller_tokens_per_s, false),
            fmt_opt(c.outside_models_s, 3),
            fmt_opt(p.outside_models_s, 3),
            if c.token_ids == p.token_ids { "yes" } else { "NO" },
        );
    }
    s
}

/// The precision the export's vision graphs run at when `dtype` is asked for, where it is another
/// one: the manifest's `dtype_fallback` record (older exports: the first file along the chain).
fn vision_fallback(export: &Path, dtype: &str) -> Option<String> {
    let manifest = std::fs::read_to_string(export.join("onnx/vidlm_manifest.json")).ok();
    let recorded = manifest
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|m| m["dtype_fallback"][dtype]["vision_encoder"].as_str().map(String::from));
    let used = recorded.or_else(|| {
        let has = |d: &str| {
            let suffix = dtype_suffix(d).unwrap_or_default();
            export.join("onnx").join(format!("vision_encoder{suffix}.onnx")).is_file()
        };
        let chain: &[&str] = match dtype {
            "q4" => &["q4", "q8", "fp32"],
            "q4f16" => &["q4f16", "fp16", "fp32"],
            "int8" => &["int8", "q8", "fp32"],
            _ => &[dtype, "fp32"],
        };
        chain.iter().find(|d| has(d)).map(|d| d.to_string())
    })?;
    (used != dtype).then_some(used)
}

fn run_transformers(hf: &Path, dtype: &str, r: &RunSpec) -> Result<Column> {
    let mut c = python_script("bench_generate.py", hf, dtype, r)?;
    eprintln!("[bench e2e] transformers {dtype}: {c:?}");
    let m = run_measured(&mut c, r.device != "cpu")?;
    let v = parse_json(&m.stdout, "python/bench_generate.py")?;
    let t = &v["timings"];
    Ok(Column {
        label: format!("transformers {dtype}"),
        backend: v["backend"].as_str().unwrap_or("transformers").into(),
        dtype: dtype.into(),
        vision_s: f(t, "vision"),
        prefill_s: f(t, "prefill"),
        ttft_s: f(t, "time_to_first_token"),
        decode_tokens_per_s: f(t, "decode_tokens_per_s"),
        peak_rss_bytes: m.peak_rss_bytes,
        peak_gpu_bytes: m.peak_gpu_bytes,
        media_decode_s: f(t, "decode"),
        preprocess_s: f(t, "preprocess"),
        prompt_tokens: v.get("prompt_tokens").and_then(Value::as_u64),
        token_ids: token_ids(&v),
        wall_s: Some(m.wall_s),
        ..Default::default()
    })
}

/// What the decoder reads per generated token besides its weights: the KV cache.
#[derive(Debug, Clone, Copy)]
struct TextShape {
    layers: u64,
    kv_heads: u64,
    head_dim: u64,
    hidden: u64,
    vocab: u64,
    tied: bool,
}

fn text_shape(hf: &Path) -> Result<TextShape> {
    let p = hf.join("config.json");
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?,
    )?;
    let t = v.get("text_config").unwrap_or(&v);
    let g = |k: &str| t.get(k).and_then(Value::as_u64);
    let hidden = g("hidden_size").context("text_config.hidden_size")?;
    let heads = g("num_attention_heads").context("text_config.num_attention_heads")?;
    Ok(TextShape {
        layers: g("num_hidden_layers").context("text_config.num_hidden_layers")?,
        kv_heads: g("num_key_value_heads").unwrap_or(heads),
        head_dim: g("head_dim").unwrap_or(hidden / heads.max(1)),
        hidden,
        vocab: g("vocab_size").context("text_config.vocab_size")?,
        tied: v
            .get("tie_word_embeddings")
            .or_else(|| t.get("tie_word_embeddings"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

/// Bytes of weights in a graph: the `.onnx` file plus its external data files. (The graph
/// structure itself is a few hundred KB; initializers are the rest.)
fn graph_bytes(onnx_dir: &Path, stem: &str) -> Option<u64> {
    let main = onnx_dir.join(format!("{stem}.onnx"));
    let mut total = std::fs::metadata(&main).ok()?.len();
    if let Ok(rd) = std::fs::read_dir(onnx_dir) {
        for e in rd.flatten() {
            let n = e.file_name();
            let n = n.to_string_lossy();
            if n.starts_with(&format!("{stem}.onnx_data"))
                || n.starts_with(&format!("{stem}.onnx.data"))
            {
                total += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    Some(total)
}

fn gb(b: u64) -> f64 {
    b as f64 / 1e9
}

fn fmt_opt(v: Option<f64>, prec: usize) -> String {
    v.map(|x| format!("{x:.prec$}")).unwrap_or_else(|| "—".into())
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// The table of one config, in Markdown.
fn table(cols: &[Column], hf: Option<&Column>) -> String {
    let mut s = String::new();
    let mut head = "| stage |".to_string();
    let mut sep = "|---|".to_string();
    for c in cols {
        head += &format!(" {} |", c.label);
        sep += "---|";
    }
    if let Some(h) = hf {
        head += &format!(" {} |", h.label);
        sep += "---|";
        for c in cols {
            head += &format!(" {} vs {} |", c.label, h.label);
            sep += "---|";
        }
    }
    s += &head;
    s.push('\n');
    s += &sep;
    s.push('\n');
    // (name, getter, precision, how the ratio reads)
    type Get = fn(&Column) -> Option<f64>;
    let mut rows: Vec<(&str, Get, usize, &str)> = vec![
        ("vision (s)", |c| c.vision_s, 2, "faster"),
        ("prefill (s)", |c| c.prefill_s, 2, "faster"),
        ("vision + prefill = time to first token (s)", |c| c.ttft_s, 2, "faster"),
        ("decode (tokens/s)", |c| c.decode_tokens_per_s, 2, "rate"),
        ("peak RSS (GB)", |c| c.peak_rss_bytes.map(gb), 2, "memory"),
        ("weights read per token (GB)", |c| c.weights_bytes_per_token.map(gb), 3, "none"),
        ("decode ceiling (tokens/s)", |c| c.decode_ceiling_tokens_per_s, 1, "none"),
        ("decode / ceiling", |c| c.fraction_of_ceiling().map(|x| x * 100.0), 0, "none"),
        ("vision + prefill arithmetic (TFLOP)", |c| c.ttft_flops.map(|x| x / 1e12), 2, "none"),
        ("time to first token compute floor (s)", |c| c.compute_floor_s, 2, "none"),
        (
            "compute floor / time to first token",
            |c| c.fraction_of_compute_peak().map(|x| x * 100.0),
            0,
            "none",
        ),
    ];
    if cols.iter().chain(hf).any(|c| c.peak_gpu_bytes.is_some()) {
        rows.insert(5, ("peak GPU memory (GB)", |c| c.peak_gpu_bytes.map(gb), 2, "memory"));
    }
    for (name, get, prec, kind) in rows {
        let mut line = format!("| {name} |");
        let pct = name == "decode / ceiling" || name == "compute floor / time to first token";
        for c in cols {
            line += &format!(
                " {}{} |",
                fmt_opt(get(c), prec),
                if pct && get(c).is_some() { " %" } else { "" }
            );
        }
        if let Some(h) = hf {
            line += &format!(
                " {}{} |",
                fmt_opt(get(h), prec),
                if pct && get(h).is_some() { " %" } else { "" }
            );
            for c in cols {
                let cell = match kind {
                    "faster" => ratio(get(h), get(c)).map(|r| format!("{r:.2}× faster")),
                    "rate" => ratio(get(c), get(h)).map(|r| format!("{r:.2}×")),
                    "memory" => ratio(get(c), get(h)).map(|r| format!("{r:.2}× the memory")),
                    _ => None,
                };
                line += &format!(" {} |", cell.unwrap_or_default());
            }
        }
        s += &line;
        s.push('\n');
    }
    if let Some(h) = hf {
        let mut line = "| tokens equal to transformers |".to_string();
        for c in cols {
            if let Some(why) = prompts_differ(c, h) {
                line += &format!(" not comparable: {why} |");
                continue;
            }
            let same = c.token_ids.iter().zip(&h.token_ids).filter(|(a, b)| a == b).count();
            line += &format!(" {same}/{} |", h.token_ids.len().max(c.token_ids.len()));
        }
        line += " — |";
        for _ in cols {
            line += " |";
        }
        s += &line;
        s.push('\n');
    }
    s
}

/// Why two columns' tokens cannot be compared: their prompts differ in length (the two sides fed the
/// model different inputs, e.g. different frames), so a token mismatch would say nothing about parity.
fn prompts_differ(c: &Column, h: &Column) -> Option<String> {
    match (c.prompt_tokens, h.prompt_tokens) {
        (Some(a), Some(b)) if a != b => Some(format!("prompt {a} vs transformers' {b} tokens")),
        _ => None,
    }
}

/// The targets, evaluated on one config's columns.
fn targets(cols: &[Column], hf: &Column) -> Vec<(String, Option<bool>, String)> {
    let by = |d: &str| cols.iter().find(|c| c.dtype == d);
    let mut out = Vec::new();
    let mut push =
        |name: &str, ok: Option<bool>, detail: String| out.push((name.to_string(), ok, detail));
    if let Some(c) = by("fp32") {
        let vp = |x: &Column| Some(x.vision_s? + x.prefill_s?);
        let r = ratio(vp(hf), vp(c));
        push(
            "fp32 vision + prefill >= 1.3x faster than transformers",
            r.map(|r| r >= 1.3),
            format!("{}x", fmt_opt(r, 2)),
        );
        let r = ratio(hf.ttft_s, c.ttft_s);
        // What the target asks of the hardware: 1.3x transformers' time, against the compute floor.
        let needs = match (hf.ttft_s, c.compute_floor_s) {
            (Some(h), Some(floor)) => format!(
                " (1.3x needs {:.0} % of the measured fp32 matmul peak throughout)",
                floor / (h / 1.3) * 100.0
            ),
            _ => String::new(),
        };
        push(
            "fp32 time to first token >= 1.3x faster",
            r.map(|r| r >= 1.3),
            format!("{}x{needs}", fmt_opt(r, 2)),
        );
        let r = ratio(c.decode_tokens_per_s, hf.decode_tokens_per_s);
        push(
            "fp32 decode >= transformers' tokens/s",
            r.map(|r| r >= 1.0),
            format!("{}x", fmt_opt(r, 2)),
        );
        let fr = c.fraction_of_ceiling();
        push(
            "fp32 decode >= 85% of the bandwidth ceiling",
            fr.map(|x| x >= 0.85),
            format!("{} %", fmt_opt(fr.map(|x| x * 100.0), 0)),
        );
        let r = ratio(c.peak_rss_bytes.map(|b| b as f64), hf.peak_rss_bytes.map(|b| b as f64));
        push("fp32 peak RSS <= transformers'", r.map(|r| r <= 1.0), format!("{}x", fmt_opt(r, 2)));
        match prompts_differ(c, hf) {
            Some(why) => push("fp32 tokens identical to transformers", None, why),
            None => push(
                "fp32 tokens identical to transformers",
                Some(c.token_ids == hf.token_ids),
                format!("{} tokens", c.token_ids.len()),
            ),
        }
    }
    if let Some(c) = by("q8") {
        let r = ratio(c.decode_tokens_per_s, hf.decode_tokens_per_s);
        push(
            "q8 decode >= 2x transformers fp32",
            r.map(|r| r >= 2.0),
            format!("{}x", fmt_opt(r, 2)),
        );
    }
    if let Some(c) = by("q4") {
        let r = ratio(c.decode_tokens_per_s, hf.decode_tokens_per_s);
        push(
            "q4 decode >= 3x transformers fp32",
            r.map(|r| r >= 3.0),
            format!("{}x", fmt_opt(r, 2)),
        );
        let r = ratio(c.peak_rss_bytes.map(|b| b as f64), hf.peak_rss_bytes.map(|b| b as f64));
        push(
            "q4 peak RSS <= 0.5x transformers'",
            r.map(|r| r <= 0.5),
            format!("{}x", fmt_opt(r, 2)),
        );
    }
    out
}

fn gpu_name() -> Option<String> {
    let o = Command::new("nvidia-smi")
        .args(["--query-gpu=name,driver_version", "--format=csv,noheader"])
        .output()
        .ok()?;
    o.status.success().then(|| {
        String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or_default().trim().to_string()
    })
}

fn git_commit() -> Option<String> {
    let o = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(project_root())
        .output()
        .ok()?;
    o.status.success().then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn cpu_model() -> Option<String> {
    let s = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    s.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|x| x.trim().to_string())
}

/// Builds the `vidlm` binary (release for real runs; for `--quick`, whose numbers are not read, the
/// `test` profile that `cargo xtask test` has just built, so that CI compiles nothing more).
fn build_vidlm(release: bool, cuda: bool) -> Result<PathBuf> {
    // `cargo xtask test` passes the binary its `cargo test --workspace --all-targets` built:
    // `cargo build -p vidlm` alone resolves features differently and would compile it again.
    if let Some(bin) = std::env::var_os("VIDLM_BENCH_BIN").map(PathBuf::from) {
        if !release && !cuda && bin.is_file() {
            return Ok(bin);
        }
    }
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(project_root()).args([
        "build",
        "--quiet",
        "-p",
        "vidlm",
        "--profile",
        if release { "release" } else { "test" },
    ]);
    if cuda {
        c.args(["--features", "cuda"]);
    }
    setup::ort_env(&mut c);
    run(&mut c)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join("target"));
    let bin = target
        .join(if release { "release" } else { "debug" })
        .join(format!("vidlm{}", std::env::consts::EXE_SUFFIX));
    if !bin.is_file() {
        bail!("cargo build produced no {}", bin.display());
    }
    Ok(bin)
}

/// `cargo xtask bench e2e`: `plan` (the arguments checked), `prepare` (set-up, clip,
/// checkpoints and exports, the binary), `measure_machine` (bandwidth and matrix-product rate),
/// then per config `run_config` (every backend and dtype) and `report_config` (ceilings, table,
/// targets, JSON), the report written after each config.
pub fn bench_e2e(args: &[String]) -> Result<()> {
    let a = E2eArgs::try_parse_from(std::iter::once("e2e".to_string()).chain(args.iter().cloned()))
        .map_err(|e| anyhow!("{e}"))?;
    let plan = plan(&a)?;
    let started = Instant::now();
    let Some(prepared) = prepare(&a, &plan, started)? else {
        return Ok(());
    };
    let machine = measure_machine(&a, plan.cuda)?;
    let spec = RunSpec {
        device: &a.device,
        video: &prepared.video,
        frames: plan.frames,
        tokens: plan.tokens,
        threads: a.threads,
        prompt: &a.prompt,
    };
    let mut report = Report::new(&a, &plan, &prepared.video, &machine, started);
    for cfg in &plan.configs {
        let run = run_config(&a, &plan, &prepared, &spec, cfg)?;
        let (block, json) = report_config(&a, &plan, &prepared.video, &machine, cfg, run)?;
        print!("{block}");
        report.text += &block;
        report.configs.push(json);
        // Written after every config, so a long run that is stopped keeps what it measured.
        report.write(false)?;
    }
    report.write(true)
}

/// What a run does: the arguments checked and their defaults filled in.
struct Plan {
    /// Both backends on a CUDA device (`--device cuda[:N]`).
    cuda: bool,
    /// vidlm dtypes, one column each.
    dtypes: Vec<String>,
    /// transformers dtypes, one column each.
    hf_dtypes: Vec<String>,
    configs: Vec<BenchConfig>,
    frames: usize,
    tokens: usize,
}

fn plan(a: &E2eArgs) -> Result<Plan> {
    let cuda = a.device != "cpu";
    if cuda && !a.device.starts_with("cuda") {
        bail!("--device {:?}: cpu, cuda or cuda:N", a.device);
    }
    let list = |s: &str| -> Vec<String> {
        s.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
    };
    let dtypes = list(a.dtypes.as_deref().unwrap_or(if cuda { "fp32,fp16" } else { "fp32,q8,q4" }));
    for d in &dtypes {
        if dtype_suffix(d).is_none() {
            bail!("unknown dtype {d:?} (fp32, fp16, q8, int8, q4, q4f16)");
        }
    }
    // On a CPU with AMX-BF16 a PyTorch user would try bfloat16: it gets its own column there.
    let hf_default = if cuda {
        "fp32,fp16"
    } else if cpu_has_amx_bf16() {
        "fp32,bf16"
    } else {
        "fp32"
    };
    let hf_dtypes = list(a.transformers_dtypes.as_deref().unwrap_or(hf_default));
    if let Some(d) = hf_dtypes.iter().find(|d| !matches!(d.as_str(), "fp32" | "fp16" | "bf16")) {
        bail!("unknown transformers dtype {d:?} (fp32, fp16, bf16)");
    }
    if let Some(p) = &a.python_interpreter {
        let _ = PYTHON.set(p.clone());
    }
    let names: Vec<String> = match &a.configs {
        Some(c) => c.split(',').map(|s| s.trim().to_string()).collect(),
        None if a.quick => vec!["quick-onevision".into()],
        None => ["onevision-0.5b", "next-video-7b-2l", "qwen2.5-vl-3b", "qwen3-vl-2b"]
            .map(String::from)
            .to_vec(),
    };
    let configs: Vec<BenchConfig> = names
        .iter()
        .map(|n| {
            CONFIGS.iter().find(|c| c.name == n).copied().ok_or_else(|| {
                anyhow!(
                    "unknown config {n:?} (known: {})",
                    CONFIGS.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
                )
            })
        })
        .collect::<Result<_>>()?;
    Ok(Plan {
        cuda,
        dtypes,
        hf_dtypes,
        configs,
        frames: a.num_frames.unwrap_or(if a.quick { 2 } else { 8 }),
        tokens: a.max_new_tokens.unwrap_or(if a.quick { 6 } else { 32 }),
    })
}

/// What the runs need on disk: the clip, the models folder and the `vidlm` binary.
struct Prepared {
    video: PathBuf,
    models: PathBuf,
    bin: PathBuf,
    /// `--python`: the folder holding the installed `vidlm` package.
    python_site: Option<PathBuf>,
}

/// Set-up, the clip, and the `vidlm` binary; with `--prepare-only`, every config's checkpoint
/// and export, and then `None` (nothing to run).
fn prepare(a: &E2eArgs, plan: &Plan, started: Instant) -> Result<Option<Prepared>> {
    if !a.no_setup {
        setup::setup(setup::Parts { apt: true, ort: true, python: true, cuda: plan.cuda })?;
    }
    let video = match &a.video {
        Some(v) => v.clone(),
        None => videos::videos()?.join("h264_1080p30_60s.mp4"),
    };
    if !video.is_file() {
        bail!("no clip at {}", video.display());
    }
    let models = models_dir(a);
    std::fs::create_dir_all(&models)?;
    if a.prepare_only {
        for cfg in &plan.configs {
            prepare_config(a, plan, &models, cfg)?;
        }
        eprintln!(
            "[bench e2e] --prepare-only: checkpoints and exports ready in {:.0} s",
            started.elapsed().as_secs_f64()
        );
        return Ok(None);
    }
    let bin = match &a.vidlm_bin {
        Some(b) => b.clone(),
        None => build_vidlm(!a.quick, plan.cuda)?,
    };
    // `--python`: the package's wheel (release, or dev with --quick, as the binary), its files
    // unpacked into a folder that goes on PYTHONPATH (the venv itself is left as it is).
    let python_site = match a.python {
        false => None,
        true => Some(crate::python_pkg::unpacked_wheel(
            if a.quick { "dev" } else { "release" },
            plan.cuda,
            &cache_dir().join("bench-python").join("vidlm"),
        )?),
    };
    Ok(Some(Prepared { video, models, bin, python_site }))
}

/// A config's checkpoint and export (built once, reused while their stamps match).
fn prepare_config(
    a: &E2eArgs,
    plan: &Plan,
    models: &Path,
    cfg: &BenchConfig,
) -> Result<(PathBuf, PathBuf)> {
    let dir = models.join(cfg.name);
    std::fs::create_dir_all(&dir)?;
    let hf = ensure_checkpoint(cfg, &dir)?;
    let export = ensure_export(&hf, &dir, &plan.dtypes, a.skip_validate)?;
    Ok((hf, export))
}

/// This machine's ceilings, measured in the same run as the columns.
struct Machine {
    /// Memory-read bandwidth (host, or the GPU's on CUDA).
    bw: bandwidth::Bandwidth,
    /// The best fp32 matrix-product rate of PyTorch's BLAS, FLOP/s.
    peak_flops: f64,
    /// The `machine` object of the JSON report.
    json: BTreeMap<&'static str, Value>,
}

fn measure_machine(a: &E2eArgs, cuda: bool) -> Result<Machine> {
    let bw = if cuda {
        eprintln!("[bench e2e] measuring the GPU's memory-read bandwidth ...");
        let mut c = python()?;
        c.arg(project_root().join("python").join("bench_generate.py")).args([
            "--measure-bandwidth",
            "--device",
            &a.device,
        ]);
        let m = run_measured(&mut c, false)?;
        let v = parse_json(&m.stdout, "bench_generate.py --measure-bandwidth")?;
        let bytes_per_s =
            f(&v, "read_bandwidth_bytes_per_s").context("no read_bandwidth_bytes_per_s")?;
        bandwidth::Bandwidth {
            bytes_per_s,
            threads: 0,
            bytes_per_pass: f(&v, "bytes_per_pass").unwrap_or(0.0) as usize,
            passes: 10,
        }
    } else {
        eprintln!("[bench e2e] measuring memory-read bandwidth ({} threads) ...", a.threads);
        let per_thread = if a.quick { 64 << 20 } else { 512 << 20 };
        bandwidth::measure(a.threads, per_thread, if a.quick { 3 } else { 8 })
    };
    eprintln!("[bench e2e] read bandwidth: {:.1} GB/s", bw.bytes_per_s / 1e9);
    // The compute ceiling of vision + prefill: the best fp32 matrix product PyTorch's BLAS runs here.
    eprintln!("[bench e2e] measuring the fp32 matrix-product rate ({} threads) ...", a.threads);
    let peak_flops = {
        let mut c = python()?;
        c.arg(project_root().join("python").join("bench_generate.py")).args([
            "--measure-compute",
            "--device",
            &a.device,
            "--threads",
            &a.threads.to_string(),
        ]);
        if a.quick {
            c.arg("--quick");
        }
        let m = run_measured(&mut c, false)?;
        let v = parse_json(&m.stdout, "bench_generate.py --measure-compute")?;
        f(&v, "matmul_fp32_flops_per_s").context("no matmul_fp32_flops_per_s")?
    };
    eprintln!("[bench e2e] fp32 matrix product: {:.0} GFLOP/s", peak_flops / 1e9);
    eprintln!("[bench e2e] host: {}", cpu_host());
    let mut json = BTreeMap::new();
    json.insert("cpu", json!(cpu_model()));
    json.insert("cpu_isa", json!(cpu_isa()));
    json.insert("logical_cpus", json!(std::thread::available_parallelism().map(|n| n.get()).ok()));
    json.insert("device", json!(a.device));
    if cuda {
        json.insert("gpu", json!(gpu_name()));
    }
    json.insert(
        "read_bandwidth_of",
        json!(if cuda {
            "GPU memory (PyTorch, full reads of a 4 GiB tensor)"
        } else {
            "host memory"
        }),
    );
    json.insert("read_bandwidth_bytes_per_s", json!(bw.bytes_per_s));
    json.insert("read_bandwidth_threads", json!(bw.threads));
    json.insert("read_bandwidth_bytes_per_pass", json!(bw.bytes_per_pass));
    json.insert("read_bandwidth_passes", json!(bw.passes));
    json.insert("matmul_fp32_flops_per_s", json!(peak_flops));
    json.insert("matmul_fp32_of", json!("PyTorch's BLAS, best of square fp32 products (1024..4096), the benchmark's thread count"));
    Ok(Machine { bw, peak_flops, json })
}

/// One config's measurements: vidlm's columns (one per dtype) and transformers'.
struct ConfigRun {
    hf: PathBuf,
    export: PathBuf,
    shape: TextShape,
    cols: Vec<Column>,
    hf_cols: Vec<Column>,
    /// `--python`: the Python API column of each vidlm dtype (empty without it).
    py_cols: Vec<Column>,
}

/// Runs every vidlm dtype and (unless `--no-transformers`) every transformers dtype on one config,
/// `--repeat` times, keeping each metric's best run.
fn run_config(
    a: &E2eArgs,
    plan: &Plan,
    prepared: &Prepared,
    spec: &RunSpec,
    cfg: &BenchConfig,
) -> Result<ConfigRun> {
    let (hf, export) = prepare_config(a, plan, &prepared.models, cfg)?;
    let shape = text_shape(&hf)?;
    let mut cols: Vec<Column> = plan.dtypes.iter().map(|_| Column::default()).collect();
    let mut hf_cols: Vec<Column> = plan.hf_dtypes.iter().map(|_| Column::default()).collect();
    let mut py_cols: Vec<Column> = Vec::new();
    if prepared.python_site.is_some() {
        py_cols = plan.dtypes.iter().map(|_| Column::default()).collect();
    }
    for rep in 0..a.repeat.max(1) {
        eprintln!("[bench e2e] {}: run {}/{}", cfg.name, rep + 1, a.repeat.max(1));
        for (i, d) in plan.dtypes.iter().enumerate() {
            cols[i].merge_best(run_vidlm(&prepared.bin, &export, d, spec)?);
            if let Some(site) = &prepared.python_site {
                py_cols[i].merge_best(run_python_api(site, &export, d, spec)?);
            }
        }
        if !a.no_transformers {
            for (i, d) in plan.hf_dtypes.iter().enumerate() {
                hf_cols[i].merge_best(run_transformers(&hf, d, spec)?);
            }
        }
    }
    Ok(ConfigRun { hf, export, shape, cols, hf_cols, py_cols })
}

/// Each column's decode ceiling (bandwidth / bytes read per token) and its compute floor on time
/// to first token (the arithmetic of vision + prefill at the measured matrix-product rate).
fn add_ceilings(run: &mut ConfigRun, plan: &Plan, machine: &Machine) -> Result<()> {
    let onnx = run.export.join("onnx");
    let shape = &run.shape;
    // Decode ceiling: bandwidth / (decoder weights + the KV cache read at the mean context).
    let kv_bytes = |elem: u64, prompt: u64| -> u64 {
        let ctx = prompt + plan.tokens as u64 / 2;
        2 * shape.layers * shape.kv_heads * shape.head_dim * ctx * elem
    };
    // PyTorch reads the same weights (lm_head included) once per token as the graph of its
    // dtype; an fp16 PyTorch model with no fp16 graph exported reads half the fp32 bytes.
    for c in run.cols.iter_mut().chain(run.hf_cols.iter_mut()) {
        let suffix = dtype_suffix(&c.dtype).unwrap_or_default();
        let elem = if c.dtype.contains("16") { 2 } else { 4 };
        let w = graph_bytes(&onnx, &format!("decoder_model_merged{suffix}")).or_else(|| {
            (c.dtype == "fp16")
                .then(|| graph_bytes(&onnx, "decoder_model_merged").map(|b| b / 2))
                .flatten()
        });
        if let Some(w) = w {
            let total = w + kv_bytes(elem, c.prompt_tokens.unwrap_or(0));
            c.weights_bytes_per_token = Some(total);
            c.decode_ceiling_tokens_per_s = Some(machine.bw.bytes_per_s / total as f64);
        }
    }
    // Compute floor of vision + prefill: the model's arithmetic at the measured matmul rate.
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(run.hf.join("config.json"))?)?;
    for c in run.cols.iter_mut().chain(run.hf_cols.iter_mut()) {
        if let Some(fl) =
            c.prompt_tokens.and_then(|p| flops::ttft_flops(&config, plan.frames as u64, p))
        {
            c.ttft_flops = Some(fl.total());
            c.compute_floor_s = Some(fl.total() / machine.peak_flops);
        }
    }
    Ok(())
}

/// The instruction-set extensions that decide which CPU kernels run (the kernel's
/// `/proc/cpuinfo` flags; AMX is not stable in `is_x86_feature_detected!`): an AVX2-only host and
/// an AVX-512 / VNNI / AMX one differ about 2× in matmul rate, so every report names them.
fn cpu_isa() -> Vec<&'static str> {
    let flags = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|i| i.lines().find(|l| l.starts_with("flags")).map(|l| format!("{l} ")))
        .unwrap_or_default();
    [
        ("avx2", "AVX2"),
        ("avx512f", "AVX-512"),
        ("avx512_vnni", "AVX-512 VNNI"),
        ("amx_int8", "AMX-INT8"),
        ("amx_bf16", "AMX-BF16"),
    ]
    .into_iter()
    .filter(|(flag, _)| flags.contains(&format!(" {flag} ")))
    .map(|(_, name)| name)
    .collect()
}

/// "CPU model (ISA, ...)": how every report names the host.
fn cpu_host() -> String {
    format!("{} ({})", cpu_model().unwrap_or_else(|| "unknown CPU".into()), cpu_isa().join(", "))
}

/// Whether this CPU has AMX-BF16 (PyTorch's bfloat16 matmuls run on its tiles).
fn cpu_has_amx_bf16() -> bool {
    cpu_isa().contains(&"AMX-BF16")
}

/// The export's agreement with fp32 per dtype (teacher-forced top-1, mean KL, cosine; measured
/// by `cargo xtask export` on real pipeline inputs), as a markdown table; empty without one.
fn agreement_table(agreement: Option<&Value>) -> String {
    let Some(rows) = agreement.and_then(Value::as_object).filter(|m| !m.is_empty()) else {
        return String::new();
    };
    let mut t = String::from(
        "\nAgreement with fp32 (export, teacher-forced over real pipeline inputs):\n\n| dtype | positions | top-1 agreement | mean KL | min cosine |\n|---|---|---|---|---|\n",
    );
    for (dtype, r) in rows {
        match r.get("error").and_then(Value::as_str) {
            Some(e) => t += &format!("| {dtype} | not measured: {e} | | | |\n"),
            None => {
                let g = |k: &str| r.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
                t += &format!(
                    "| {dtype} | {} | {:.1} % | {:.4} | {:.5} |\n",
                    r.get("positions").and_then(Value::as_u64).unwrap_or(0),
                    100.0 * g("top1_agreement"),
                    g("mean_kl"),
                    g("min_cosine")
                );
            }
        }
    }
    t
}

/// One config's markdown block (table and targets) and its object in the JSON report.
fn report_config(
    a: &E2eArgs,
    plan: &Plan,
    video: &Path,
    machine: &Machine,
    cfg: &BenchConfig,
    mut run: ConfigRun,
) -> Result<(String, Value)> {
    add_ceilings(&mut run, plan, machine)?;
    let ConfigRun { hf, export, shape, cols, hf_cols, py_cols } = run;
    let cuda = plan.cuda;
    // Ratios are against transformers fp32 (else its first dtype); its other dtypes are shown
    // as columns beside vidlm's.
    let ref_i = plan.hf_dtypes.iter().position(|d| d == "fp32").unwrap_or(0);
    let hf_ref = (!a.no_transformers).then(|| hf_cols.get(ref_i)).flatten();
    let mut shown = cols.clone();
    if !a.no_transformers {
        shown.extend(
            hf_cols.iter().enumerate().filter(|(i, _)| *i != ref_i).map(|(_, c)| c.clone()),
        );
    }
    let t = table(&shown, hf_ref);
    // The targets are for the 2-core CPU machine.
    let tg = if cuda { Vec::new() } else { hf_ref.map(|h| targets(&cols, h)).unwrap_or_default() };
    let mut block = format!(
        "\n### {} — {}{}\n{} frames of {}, {} new tokens (greedy), {} threads, prompt {} tokens; {} read bandwidth {:.1} GB/s; fp32 matrix product {:.0} GFLOP/s\n\n{}",
        cfg.name,
        cfg.description,
        if cuda {
            format!(" — on {} ({})", a.device, gpu_name().unwrap_or_default())
        } else {
            format!(" — on {}", cpu_host())
        },
        plan.frames,
        video.file_name().and_then(|n| n.to_str()).unwrap_or_default(),
        plan.tokens,
        a.threads,
        cols.first().and_then(|c| c.prompt_tokens).map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
        if cuda { "GPU" } else { "host" },
        machine.bw.bytes_per_s / 1e9,
        machine.peak_flops / 1e9,
        t
    );
    if !tg.is_empty() {
        block += "\nTargets (issue 8):\n";
        for (name, ok, detail) in &tg {
            let mark = match ok {
                Some(true) => "met    ",
                Some(false) => "NOT met",
                None => "n/a    ",
            };
            block += &format!("- [{mark}] {name}: {detail}\n");
        }
    }
    if !py_cols.is_empty() {
        block += &python_overhead_table(&cols, &py_cols);
    }
    let manifest = std::fs::read_to_string(export.join("onnx").join("vidlm_manifest.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<Value>(&s).ok());
    let fidelity = manifest.as_ref().and_then(|m| m.get("fidelity").cloned());
    // The export's llama.cpp-style measures (python/vidlm_export/agreement.py).
    let agreement = manifest.as_ref().and_then(|m| m.get("agreement").cloned());
    block += &agreement_table(agreement.as_ref());
    let json = json!({
        "config": cfg.name,
        "description": cfg.description,
        "checkpoint": hf,
        "export": export,
        "text_config": {"layers": shape.layers, "kv_heads": shape.kv_heads, "head_dim": shape.head_dim,
                         "hidden": shape.hidden, "vocab": shape.vocab, "tied_embeddings": shape.tied},
        "columns": cols.iter().chain(if a.no_transformers { &[][..] } else { &hf_cols[..] }).chain(&py_cols).map(Column::to_json).collect::<Vec<_>>(),
        "targets": tg.iter().map(|(n, ok, d)| json!({"target": n, "met": ok, "value": d})).collect::<Vec<_>>(),
        "fidelity": fidelity,
        "agreement": agreement,
    });
    Ok((block, json))
}

/// The run's report so far: the JSON's configs and the markdown text.
struct Report<'a> {
    a: &'a E2eArgs,
    plan: &'a Plan,
    video: &'a Path,
    machine: &'a BTreeMap<&'static str, Value>,
    started: Instant,
    /// Seconds since the epoch at the start: the report's name.
    now: u64,
    configs: Vec<Value>,
    text: String,
}

impl<'a> Report<'a> {
    fn new(
        a: &'a E2eArgs,
        plan: &'a Plan,
        video: &'a Path,
        machine: &'a Machine,
        started: Instant,
    ) -> Self {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        Report {
            a,
            plan,
            video,
            machine: &machine.json,
            started,
            now,
            configs: Vec::new(),
            text: String::new(),
        }
    }

    /// Writes the JSON (`.cache/bench/e2e-[quick-]<time>.json`, and `--json`) and the markdown
    /// tables beside it. `complete` is false while configs remain to be run.
    fn write(&self, complete: bool) -> Result<()> {
        let (a, now) = (self.a, self.now);
        let doc = json!({
            "benchmark": "cargo xtask bench e2e",
            "quick": a.quick,
            "unix_time": now,
            "git_commit": git_commit(),
            "machine": self.machine,
            "run": {"video": self.video, "num_frames": self.plan.frames,
                    "max_new_tokens": self.plan.tokens, "threads": a.threads,
                    "prompt": a.prompt, "repeat": a.repeat, "dtypes": self.plan.dtypes,
                    "best_of": "each metric keeps its best run over --repeat runs"},
            "notes": [
                "vision + prefill = model time to first token (media decoding and preprocessing are listed separately).",
                "vidlm prefill includes embed_tokens and the feature merge; transformers' prefill is the time from the end of the vision tower to the first logits, inside the same generate call.",
                "peak RSS is the kernel's high-water mark of each child process (wait4 rusage).",
                "decode ceiling = read bandwidth / (decoder graph weights + KV cache at the mean context); embed_tokens is a gather and reads one row per token.",
                "time to first token compute floor = the arithmetic of vision + prefill (xtask/src/flops.rs: matrix products of the vision layers up to the feature layer, the projector, the decoder over the prompt with causal attention, lm_head on the last position) / the best fp32 matrix-product rate of PyTorch's BLAS here.",
            ],
            "configs": self.configs,
            "complete": complete,
            "seconds": self.started.elapsed().as_secs_f64(),
        });
        let out_dir = cache_dir().join("bench");
        std::fs::create_dir_all(&out_dir)?;
        let path = out_dir.join(format!("e2e-{}{now}.json", if a.quick { "quick-" } else { "" }));
        let body = serde_json::to_string_pretty(&doc)? + "\n";
        std::fs::write(&path, &body)?;
        if let Some(p) = &a.json {
            if let Some(parent) = p.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(p, &body)?;
        }
        let md = path.with_extension("md");
        std::fs::write(&md, &self.text)?;
        eprintln!(
            "\n[bench e2e] wrote {} and {}{} in {:.0} s",
            path.display(),
            md.display(),
            if complete { "" } else { " (so far)" },
            self.started.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(dtype: &str, v: f64, p: f64, tps: f64, rss: u64) -> Column {
        Column {
            label: format!("x {dtype}"),
            backend: "x".into(),
            dtype: dtype.into(),
            vision_s: Some(v),
            prefill_s: Some(p),
            ttft_s: Some(v + p),
            decode_tokens_per_s: Some(tps),
            peak_rss_bytes: Some(rss),
            token_ids: vec![1, 2, 3],
            ..Default::default()
        }
    }

    #[test]
    fn targets_are_judged_against_transformers() {
        let hf = col("fp32", 20.0, 8.0, 10.0, 5_000_000_000);
        let mut fp32 = col("fp32", 15.0, 5.0, 11.0, 4_000_000_000);
        fp32.decode_ceiling_tokens_per_s = Some(12.0);
        let q4 = col("q4", 15.0, 5.0, 29.0, 2_000_000_000);
        let t = targets(&[fp32, q4], &hf);
        let get = |n: &str| t.iter().find(|x| x.0.starts_with(n)).map(|x| x.1).unwrap();
        assert_eq!(get("fp32 vision + prefill"), Some(true)); // 28 / 20 = 1.4
        assert_eq!(get("fp32 time to first"), Some(true));
        assert_eq!(get("fp32 decode >= transformers"), Some(true));
        assert_eq!(get("fp32 decode >= 85%"), Some(true)); // 11 / 12
        assert_eq!(get("fp32 peak RSS"), Some(true));
        assert_eq!(get("q4 decode"), Some(false)); // 2.9x
        assert_eq!(get("q4 peak RSS"), Some(true)); // 0.4x
    }

    #[test]
    fn tokens_of_different_prompts_are_not_compared() {
        let mut hf = col("fp32", 20.0, 8.0, 10.0, 5_000_000_000);
        hf.prompt_tokens = Some(4113);
        let mut fp32 = col("fp32", 15.0, 5.0, 11.0, 4_000_000_000);
        fp32.prompt_tokens = Some(8212);
        let t = targets(std::slice::from_ref(&fp32), &hf);
        let same = t.iter().find(|x| x.0.starts_with("fp32 tokens identical")).unwrap();
        assert_eq!(same.1, None, "{same:?}");
        let t = table(&[fp32], Some(&hf));
        assert!(t.contains("not comparable: prompt 8212 vs transformers' 4113 tokens"), "{t}");
    }

    #[test]
    fn best_of_keeps_each_metric_best() {
        let mut a = col("fp32", 10.0, 5.0, 8.0, 3);
        a.merge_best(col("fp32", 12.0, 4.0, 9.0, 2));
        assert_eq!(a.vision_s, Some(10.0));
        assert_eq!(a.prefill_s, Some(4.0));
        assert_eq!(a.decode_tokens_per_s, Some(9.0));
        assert_eq!(a.peak_rss_bytes, Some(2));
    }

    #[test]
    fn the_table_has_every_row_and_ratio() {
        let hf = col("fp32", 20.0, 8.0, 10.0, 5_000_000_000);
        let t = table(&[col("fp32", 10.0, 4.0, 20.0, 2_500_000_000)], Some(&hf));
        assert!(t.contains("| vision (s) | 10.00 | 20.00 | 2.00× faster |"), "{t}");
        assert!(t.contains("| decode (tokens/s) | 20.00 | 10.00 | 2.00× |"), "{t}");
        assert!(t.contains("0.50× the memory"), "{t}");
        assert!(t.contains("| tokens equal to transformers | 3/3 |"), "{t}");
        // The compute floor row, as a share of each column's time to first token.
        let mut c = col("fp32", 10.0, 4.0, 20.0, 2_500_000_000);
        c.compute_floor_s = Some(7.0);
        let mut h = hf.clone();
        h.compute_floor_s = Some(7.0);
        let t = table(&[c.clone()], Some(&h));
        assert!(t.contains("| compute floor / time to first token | 50 % | 25 % |"), "{t}");
        let tg = targets(&[c], &h);
        let ttft = tg.iter().find(|(n, _, _)| n.contains("time to first token")).unwrap();
        // 1.3x faster than 28 s is 21.54 s; a 7 s floor is 32.5 % of it.
        assert!(ttft.2.contains("needs 32 % of the measured fp32 matmul peak"), "{}", ttft.2);
    }

    #[test]
    fn suffixes_follow_transformers_js() {
        assert_eq!(dtype_suffix("q8"), Some("_quantized"));
        assert_eq!(dtype_suffix("q4"), Some("_q4"));
        assert_eq!(dtype_suffix("q4f16"), Some("_q4f16"));
        assert_eq!(dtype_suffix("int3"), None);
    }
}
