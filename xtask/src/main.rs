//! vidlm's project automation, in the style of rust-analyzer's xtask: plain Rust,
//! no shell scripts to keep portable, one subcommand per job.
//!
//! * `cargo xtask setup`  — install apt packages, ONNX Runtime, the Python env (idempotent)
//! * `cargo xtask demo`   — the README's main command: set up what the runtime needs, run the demo
//! * `cargo xtask test`   — the README's test command (also what `.ci/run` calls)
//! * `cargo xtask videos` — generate the test videos (idempotent; `test` runs it first)
//! * `cargo xtask bench video` — the video-io benchmark
//! * `cargo xtask export` — convert a HF checkpoint into vidlm's ONNX model directory
//! * `cargo xtask fixtures [--check]` — tiny test models + transformers goldens
//! * `cargo xtask bench processor` — preprocessing vs transformers (1080p, 8/32 frames)
//! * `cargo xtask tidy`   — source-tree invariants (unsafe only in FFI/SIMD modules, family
//!   matches only in vidlm-model, lib.rs overviews, READMEs); part of `test`
//! * `cargo xtask bench batch [--quick]` — `vidlm batch` with prefetch + batching vs one at a time

mod export;
mod setup;
mod tidy;
mod videos;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::Command;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "vidlm project automation")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install everything the project needs (apt packages, ONNX Runtime, Python env). Idempotent.
    Setup {
        /// Skip the Python export environment (the runtime does not need it).
        #[arg(long)]
        no_python: bool,
        /// Skip apt packages.
        #[arg(long)]
        no_apt: bool,
    },
    /// Print the path of the ONNX Runtime library that `setup` installed.
    OrtPath,
    /// The README's main command: set up, then run the bundled demo.
    Demo {
        /// Extra arguments passed to the demo.
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Convert a Hugging Face checkpoint (local dir or hub id) into a vidlm model directory.
    Export(export::ExportArgs),
    /// Build the tiny test models, export them, write the transformers goldens
    /// (`--check`: fail when the committed goldens differ from what transformers produces).
    Fixtures {
        #[arg(long)]
        check: bool,
        /// Extra arguments for python/fixtures.py (e.g. `--only llava_next_video`).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// The README's test command: set up, generate test videos, run every test.
    Test {
        /// Extra arguments passed to `cargo test`.
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Generate the test videos into .cache/test-videos (or $VIDLM_CACHE/test-videos). Idempotent.
    Videos,
    /// Check the source tree's invariants: `unsafe` only in FFI/SIMD modules, family matches only
    /// in vidlm-model, every lib.rs with a doc overview and runnable example, READMEs. Part of `test`.
    Tidy,
    /// Run a benchmark: `video` (frame sampling vs decode-everything and the ffmpeg CLI), `processor` (preprocessing vs transformers),
    /// `batch` (vidlm batch with prefetch + batching vs one at a time; `--quick`, `--model DIR`, `--videos N`, ...).
    Bench {
        /// Which benchmark.
        what: String,
        /// Arguments for the benchmark (e.g. `--quick`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Setup { no_python, no_apt } => setup::setup(setup::Parts { apt: !no_apt, ort: true, python: !no_python }),
        Cmd::OrtPath => {
            println!("{}", setup::ort_lib().display());
            Ok(())
        }
        Cmd::Demo { args } => demo(&args),
        Cmd::Export(a) => export::export(&a),
        Cmd::Fixtures { check, args } => export::fixtures(check, &args),
        Cmd::Test { args } => test(&args),
        Cmd::Videos => videos::videos().map(|d| println!("{}", d.display())),
        Cmd::Tidy => tidy::tidy(&project_root()),
        Cmd::Bench { what, args } => bench(&what, &args),
    }
}

/// The workspace root (xtask lives one level below it).
pub fn project_root() -> PathBuf {
    let dir = env!("CARGO_MANIFEST_DIR");
    PathBuf::from(dir).parent().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."))
}

/// The project-local cache: ONNX Runtime, the venv, generated test videos and models.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("VIDLM_CACHE").map(PathBuf::from).unwrap_or_else(|| project_root().join(".cache"))
}

/// Runs a command, failing with its command line when it does not succeed.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("command failed ({status}): {cmd:?}");
    }
    Ok(())
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(project_root());
    setup::ort_env(&mut c);
    c
}

fn demo(args: &[String]) -> Result<()> {
    setup::setup(setup::Parts { apt: true, ort: true, python: false })?;
    let root = project_root();
    let video = root.join("assets").join("demo.mp4");
    let model = root.join("assets").join("demo-model");
    let vidlm = |sub: &str| {
        let mut c = cargo();
        c.args(["run", "--release", "--quiet", "-p", "vidlm", "--", sub]);
        c
    };
    eprintln!("[demo] building vidlm (release) and probing {}", video.display());
    run(vidlm("probe").arg(&video))?;
    eprintln!();
    eprintln!("[demo] asking the bundled demo model about the video (8 frames, offline).");
    eprintln!("[demo] NOTE: assets/demo-model is a tiny LLaVA-NeXT-Video with RANDOM weights: its answer is");
    eprintln!("[demo] gibberish by design. It checks that decoding, preprocessing, the chat template,");
    eprintln!("[demo] tokenization, the vision encoder and the decoder all run end to end.");
    let mut ask = vidlm("run");
    ask.arg("--model")
        .arg(&model)
        .arg("--video")
        .arg(&video)
        .args(["--num-frames", "8", "--max-new-tokens", "24", "--prompt", "What is happening in this video?"])
        .args(args);
    run(&mut ask)?;
    eprintln!();
    eprintln!("[demo] for a real model: cargo xtask export --model llava-hf/llava-onevision-qwen2-0.5b-ov-hf --out models/ov");
    eprintln!("[demo]                   cargo run --release -p vidlm -- run --model models/ov --video cats.mp4 --prompt '...'");
    Ok(())
}

fn test(args: &[String]) -> Result<()> {
    // TODO(issue 13): run `tidy::tidy(&project_root())?` here (first: it takes a second) once the
    // media change that moves video-io's raw-pointer reads behind `ffi.rs` is on main; until
    // then `cargo xtask tidy` reports exactly those 16 lines of `reader.rs`.
    setup::setup(setup::Parts { apt: true, ort: true, python: true })?;
    let videos = videos::videos()?;
    // Tiny test models + their ONNX exports into .cache/fixtures (idempotent), and a check that the
    // committed goldens are still what transformers produces.
    export::fixtures(true, &[])?;
    let mut t = cargo();
    t.env("VIDLM_TEST_VIDEOS", &videos);
    // Exported tiny models: $VIDLM_FIXTURES/<family>/model (goldens: tests/goldens/<family>/).
    t.env("VIDLM_FIXTURES", cache_dir().join("fixtures"));
    t.args(["test", "--workspace", "--all-targets"]).args(args);
    run(&mut t)?;
    // `--all-targets` leaves out doctests; every lib.rs opens with a runnable example.
    let mut d = cargo();
    d.env("VIDLM_TEST_VIDEOS", &videos);
    d.args(["test", "--workspace", "--doc"]).args(args);
    run(&mut d)?;
    Ok(())
}

fn bench(what: &str, args: &[String]) -> Result<()> {
    match what {
        "video" => {
            let videos = videos::videos()?;
            let mut b = cargo();
            b.env("VIDLM_TEST_VIDEOS", &videos);
            b.args(["bench", "-p", "vidlm-video-io", "--bench", "sampling"]);
            run(&mut b)
        }
        "processor" => {
            // 1080p clip (ffmpeg CLI) + model dirs (python/assets.py) are made by the bench itself.
            let mut b = cargo();
            b.args(["bench", "-p", "vidlm-processor", "--bench", "processor"]);
            run(&mut b)
        }
        "batch" => {
            // Test videos; the model is --model DIR, $VIDLM_BENCH_MODEL, a real-size one in
            // /work/models, or the demo model (see crates/cli/benches/batch.rs).
            let videos = videos::videos()?;
            let mut b = cargo();
            b.env("VIDLM_TEST_VIDEOS", &videos);
            b.args(["bench", "-p", "vidlm", "--bench", "batch", "--"]).args(args);
            run(&mut b)
        }
        other => bail!("unknown benchmark {other:?} (known: video, processor, batch)"),
    }
}
