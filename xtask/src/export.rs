//! `cargo xtask export` and `cargo xtask fixtures`: thin wrappers that run the Python exporter
//! (`python/export.py`, `python/fixtures.py`) in the project's pinned venv (`setup::python_env`).
//!
//! The Python side does the work (transformers model -> ONNX graphs -> validation against PyTorch);
//! see `python/README.md` for the output layout and `docs/onnx-graphs.md` for the graph contract.

use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;
use std::process::Command;

use crate::{project_root, run, setup};

/// Arguments of `cargo xtask export`.
#[derive(Args, Debug, Clone)]
pub struct ExportArgs {
    /// A local Hugging Face checkpoint directory, or a hub id (fetched through the normal HF cache).
    #[arg(long)]
    pub model: String,
    /// Output model directory (HF files + `onnx/`).
    #[arg(long)]
    pub out: PathBuf,
    /// Precisions to export, comma-separated: fp32, fp16, q8 (`_quantized`), int8 (`_int8`), q4
    /// (`_q4`); q8/int8/q4 are quantized from the fp32 graphs (e.g. `--dtype fp32,q4`).
    #[arg(long, default_value = "fp32")]
    pub dtype: String,
    /// Skip the ONNX Runtime vs PyTorch validation (for models too big to run twice in RAM).
    #[arg(long)]
    pub skip_validate: bool,
    /// `dynamo` (torch.export, default) or `torchscript`.
    #[arg(long, default_value = "dynamo")]
    pub exporter: String,
    /// ONNX opset (default 20; 23 gives fused Attention/RotaryEmbedding/RMSNormalization ops).
    #[arg(long)]
    pub opset: Option<u32>,
    /// Only these graphs (comma-separated names, e.g. `decoder_model_merged`).
    #[arg(long)]
    pub graphs: Option<String>,
    /// The fp32 decoder: `fused` (built from the weights with GroupQueryAttention, default) or
    /// `exporter` (torch.onnx.export's graph).
    #[arg(long, default_value = "fused")]
    pub decoder: String,
}

fn python() -> Result<Command> {
    let py = setup::python_env()?;
    let mut c = Command::new(py);
    c.current_dir(project_root());
    // Unbuffered output so the progress and the validation table appear as they happen.
    c.env("PYTHONUNBUFFERED", "1");
    Ok(c)
}

/// `cargo xtask export --model <dir|hub id> --out <dir> [--dtype fp32,fp16] [--skip-validate]`.
pub fn export(a: &ExportArgs) -> Result<()> {
    for d in a.dtype.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if !matches!(d, "fp32" | "fp16" | "q8" | "q4") {
            bail!("unknown --dtype {d:?}: supported are fp32, fp16, q8 and q4");
        }
    }
    if !matches!(a.exporter.as_str(), "dynamo" | "torchscript") {
        bail!("unknown --exporter {:?}: dynamo or torchscript", a.exporter);
    }
    let mut c = python()?;
    c.arg(project_root().join("python").join("export.py"))
        .args(["--model", &a.model])
        .arg("--out")
        .arg(&a.out)
        .args(["--dtype", &a.dtype, "--exporter", &a.exporter]);
    if a.skip_validate {
        c.arg("--skip-validate");
    }
    if let Some(o) = a.opset {
        c.args(["--opset", &o.to_string()]);
    }
    if let Some(g) = &a.graphs {
        c.args(["--graphs", g]);
    }
    if !matches!(a.decoder.as_str(), "fused" | "exporter") {
        bail!("unknown --decoder {:?}: fused or exporter", a.decoder);
    }
    c.args(["--decoder", &a.decoder]);
    run(&mut c)
}

/// `cargo xtask test-export`: the export's tests in `python/tests` on the fixtures (which
/// `cargo xtask fixtures` builds): the memory-lean export paths against the plain ones, the
/// Qwen-VL host tables against transformers' helpers, and a LLaVA-Video-7B-Qwen2-shaped
/// checkpoint (untied Qwen2 `lm_head`) through the OneVision export, token-exact.
pub fn test_export() -> Result<()> {
    let root = project_root();
    let mut c = Command::new(setup::python_env()?);
    // From `python/`, so that the tools' modules (`assets`, `fixtures`) are found before the
    // repository's `assets/` folder.
    c.current_dir(root.join("python"))
        .env("VIDLM_FIXTURES", crate::cache_dir().join("fixtures"))
        .args(["-m", "unittest", "-v"])
        .args([
            "tests/test_export_memory.py",
            "tests/test_qwen_host.py",
            "tests/test_llava_video.py",
        ]);
    run(&mut c)
}

/// `cargo xtask fixtures [--check]`: builds the tiny random-weight models of every family (the four
/// LLaVA families, Qwen2.5-VL and Qwen3-VL), exports them, and writes (or with `check`, compares)
/// the transformers goldens.
pub fn fixtures(check: bool, extra: &[String]) -> Result<()> {
    let mut c = python()?;
    c.arg(project_root().join("python").join("fixtures.py"));
    if check {
        c.arg("--check");
    }
    c.args(extra);
    run(&mut c)
}
