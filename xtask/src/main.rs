//! vidlm's project automation, in the style of rust-analyzer's xtask: plain Rust,
//! no shell scripts to keep portable, one subcommand per job.
//!
//! * `cargo xtask setup`  — install apt packages, ONNX Runtime, the Python env (idempotent)
//! * `cargo xtask demo`   — the README's main command: set up what the runtime needs, run the demo
//! * `cargo xtask test`   — the README's test command (also what `.ci/run` calls)
//! * `cargo xtask videos` — generate the test videos (idempotent; `test` runs it first)
//! * `cargo xtask bench video [--python [--quick]]` — the video-io benchmark; `--python`:
//!   `vidlm.read_frames` vs PyAV, torchcodec and decord on the same frames
//! * `cargo xtask wheel [--dev] [--cuda]` — the `vidlm` Python package's abi3 wheel (maturin)
//! * `cargo xtask test-python` — the package step of `test` alone (dev wheel, fresh venv, pytest)
//! * `cargo xtask export` — convert a HF checkpoint into vidlm's ONNX model directory
//! * `cargo xtask fixtures [--check]` — tiny test models + transformers goldens
//! * `cargo xtask bench processor` — preprocessing vs transformers (1080p, 8/32 frames)
//! * `cargo xtask bench e2e [--quick] [--python]` — the whole path, vidlm per dtype vs transformers
//!   `generate`; `--python`: a Python-API column and its overhead over `vidlm run`
//! * `cargo xtask tidy`   — source-tree invariants (unsafe only in FFI/SIMD modules, family
//!   matches only in vidlm-model, lib.rs overviews and missing_docs, READMEs), `cargo fmt
//!   --check` and `cargo clippy -D warnings`; part of `test`
//! * `cargo xtask fuzz [TARGET] [--seconds N] [--debug]` — the libFuzzer targets of `fuzz/`
//! * `cargo xtask corpus` — the media corpus table (outcome, time, peak RSS per file)
//! * `cargo xtask bench batch [--quick]` — `vidlm batch` with prefetch + batching vs one at a time
//! * `cargo xtask bench gpu [--dry-run]` — issue 23's GPU measurement in one ~10-minute call
//!   (`bench_gpu.rs`: e2e, CUDA-graph decode, vision profile, serve and batch vs transformers)

mod bandwidth;
mod bench_e2e;
mod bench_gpu;
mod export;
// The FFI module (wait4) is the only one allowed `unsafe` (the crate denies `unsafe_code`).
#[allow(unsafe_code)]
mod ffi;
mod flops;
mod fuzz;
mod python_pkg;
mod setup;
mod steps;
mod tidy;
mod videos;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::Command;
use steps::{Lane, Steps};

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
        /// Also install the CUDA build of ONNX Runtime (`onnxruntime-gpu`) beside the CPU one,
        /// for `vidlm` built with `--features cuda` (README: "On an NVIDIA GPU").
        #[arg(long)]
        cuda: bool,
    },
    /// Print the path of the ONNX Runtime library that `setup` installed.
    OrtPath,
    /// The README's main command: set up, then run the bundled demo.
    Demo {
        /// Extra arguments passed to the demo.
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Build the `vidlm` Python package's abi3 wheel (`crates/python`, maturin) into
    /// `target/wheels/` (`pip install target/wheels/vidlm-*.whl`).
    Wheel {
        /// Build with the dev profile (faster to build, slower to run) instead of release.
        #[arg(long)]
        dev: bool,
        /// With the CUDA execution provider (`LLM(..., device="cuda")` with `onnxruntime-gpu`).
        #[arg(long)]
        cuda: bool,
    },
    /// The Python package step of `cargo xtask test` alone: the dev wheel, a fresh venv, pytest.
    TestPython,
    /// The export's own tests on the fixtures (`python -m unittest`: its memory-lean paths give the
    /// plain paths' graphs, the Qwen host tables equal transformers'). Part of `test`.
    TestExport,
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
    /// Check the source tree's invariants (`unsafe` only in FFI/SIMD modules, family matches only
    /// in vidlm-model, every lib.rs with a doc overview, runnable example and missing_docs, READMEs),
    /// then `cargo fmt --check` and `cargo clippy -D warnings`. Part of `test`.
    Tidy {
        /// Only the text checks and `cargo fmt --check` (seconds; clippy takes minutes).
        #[arg(long)]
        no_clippy: bool,
    },
    /// Build the libFuzzer targets of fuzz/ (stable toolchain, no cargo-fuzz needed) and run them.
    Fuzz(fuzz::FuzzArgs),
    /// Run the media corpus (wide + hostile files, one process each) and write its table to
    /// target/corpus.md.
    Corpus,
    /// Run a benchmark: `video` (frame sampling vs decode-everything and the ffmpeg CLI), `processor`
    /// (preprocessing vs transformers), `e2e` (the whole path, vidlm per dtype vs transformers;
    /// `cargo xtask bench e2e --help`), `serve` (continuous batching vs one at a time, vision cache;
    /// `--quick`, `--model DIR`, `--requests N`, `--tokens N`, `--frames N`), `batch` (vidlm batch with
    /// prefetch + batching vs one at a time; `--quick`, `--model DIR`, `--videos N`, ...), `gpu` (the
    /// whole GPU measurement in one ~10-minute call; `--dry-run` plans and checks without a GPU).
    Bench {
        /// Which benchmark.
        what: String,
        /// Arguments of the benchmark (e2e: `--quick`, `--dtypes fp32,q8,q4`, ...).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Setup { no_python, no_apt, cuda } => {
            setup::setup(setup::Parts { apt: !no_apt, ort: true, python: !no_python, cuda })
        }
        Cmd::OrtPath => {
            println!("{}", setup::ort_lib().display());
            Ok(())
        }
        Cmd::Demo { args } => demo(&args),
        Cmd::Wheel { dev, cuda } => {
            python_pkg::wheel(if dev { "dev" } else { "release" }, cuda).map(|_| ())
        }
        Cmd::TestPython => {
            python_pkg::test_package(&videos::videos()?, &cache_dir().join("fixtures"))
        }
        Cmd::TestExport => export::test_export(),
        Cmd::Export(a) => export::export(&a),
        Cmd::Fixtures { check, args } => export::fixtures(check, &args),
        Cmd::Test { args } => test(&args),
        Cmd::Videos => videos::videos().map(|d| println!("{}", d.display())),
        Cmd::Tidy { no_clippy } => tidy::tidy(&project_root(), !no_clippy),
        Cmd::Bench { what, args } => bench(&what, &args),
        Cmd::Fuzz(a) => fuzz::fuzz(&a),
        Cmd::Corpus => corpus(),
    }
}

/// The workspace root (xtask lives one level below it).
pub fn project_root() -> PathBuf {
    let dir = env!("CARGO_MANIFEST_DIR");
    PathBuf::from(dir).parent().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."))
}

/// The project-local cache: ONNX Runtime, the venv, generated test videos and models.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("VIDLM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join(".cache"))
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
    setup::setup(setup::Parts { apt: true, ort: true, python: false, cuda: false })?;
    let root = project_root();
    let video = root.join("assets").join("demo.mp4");
    let model = root.join("assets").join("demo-model");
    let vidlm = |sub: &str| {
        let mut c = cargo();
        // `probe` and `run` need neither the server nor batch (Parquet): without those default
        // features the first release build compiles neither axum/tokio nor arrow/parquet.
        c.args(["run", "--release", "--quiet", "-p", "vidlm", "--no-default-features", "--", sub]);
        c
    };
    eprintln!("[demo] building vidlm (release) and probing {}", video.display());
    run(vidlm("probe").arg(&video))?;
    eprintln!();
    eprintln!("[demo] asking the bundled demo model about the video (8 frames, offline).");
    eprintln!("[demo] NOTE: assets/demo-model is a tiny LLaVA-NeXT-Video with RANDOM weights: its answer is");
    eprintln!(
        "[demo] gibberish by design. It checks that decoding, preprocessing, the chat template,"
    );
    eprintln!("[demo] tokenization, the vision encoder and the decoder all run end to end.");
    let mut ask = vidlm("run");
    ask.arg("--model")
        .arg(&model)
        .arg("--video")
        .arg(&video)
        .args([
            "--num-frames",
            "8",
            "--max-new-tokens",
            "24",
            "--prompt",
            "What is happening in this video?",
        ])
        .args(args);
    run(&mut ask)?;
    eprintln!();
    eprintln!("[demo] for a real model: cargo xtask export --model llava-hf/llava-onevision-qwen2-0.5b-ov-hf --out models/ov");
    eprintln!("[demo]                   cargo run --release -p vidlm -- run --model models/ov --video cats.mp4 --prompt '...'");
    Ok(())
}

fn test(args: &[String]) -> Result<()> {
    let steps = Steps::new();
    let r = test_steps(&steps, args);
    // The table also when a step failed: where the time went up to it.
    steps.table();
    r
}

fn test_steps(steps: &Steps, args: &[String]) -> Result<()> {
    let root = project_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    // Text-only checks and formatting first: they take seconds and fail fast.
    steps.time("tidy: text checks, cargo fmt --check", || {
        tidy::text_checks(&root)?;
        tidy::fmt_check(&root)
    })?;
    // What the builds need (FFmpeg headers and clang for the dependencies' build scripts), and
    // both ONNX Runtime builds (`cuda`: for the no-GPU CUDA test of vidlm-ort below).
    steps.time("setup: apt, ONNX Runtime (CPU and CUDA builds)", || {
        setup::setup(setup::Parts { apt: true, ort: true, python: false, cuda: true })
    })?;
    // The Python half runs beside the builds (module `steps`): the venv, the test videos, the tiny
    // test models + their ONNX exports into .cache/fixtures with a check that the committed
    // goldens are still what transformers produces, the export's own tests on them, then the fuzz targets' build (its own target
    // dir) and seed corpora, which need the videos and the venv.
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let mut lane = Lane::start(
        steps,
        &target.join("xtask-test"),
        target.join("xtask-test").join("background.log"),
        vec![
            ("setup: Python env", s(&["setup", "--no-apt"])),
            ("videos", s(&["videos"])),
            ("fixtures --check", s(&["fixtures", "--check"])),
            ("export tests (python/tests, unittest)", s(&["test-export"])),
            (
                "fuzz: build the targets (debug) + seed corpora",
                s(&["fuzz", "--debug", "--build-only"]),
            ),
        ],
    )?;
    let videos = videos::videos_dir();
    // `args` (extra `cargo test` arguments) go to the workspace's test and doc-test commands.
    let test_cmd = |extra: &[&str], with_args: bool| -> Result<Command> {
        let mut t = cargo();
        t.env("VIDLM_TEST_VIDEOS", &videos);
        // Exported tiny models: $VIDLM_FIXTURES/<family>/model (goldens: tests/goldens/<family>/).
        t.env("VIDLM_FIXTURES", cache_dir().join("fixtures"));
        // Clippy lints while the test build compiles (`tidy::lint_while_building`): the build
        // compiles every dependency once, where a separate `cargo clippy` would check them all
        // again. Every cargo command below keeps it, so that they reuse that build.
        tidy::lint_while_building(&mut t)?;
        t.args(["test"]).args(extra);
        if with_args {
            t.args(args);
        }
        Ok(t)
    };
    steps.time(
        "cargo test --workspace --all-targets --no-run (clippy -D warnings as the compiler)",
        || run(&mut test_cmd(&["--workspace", "--all-targets", "--no-run"], true)?),
    )?;
    lane.check()?;
    // The GPU path, on a machine without one (CI's): the `cuda` feature's code (all of it in
    // vidlm-ort, which tidy checks) linted and built, every target of vidlm-ort.
    let cuda = ["-p", "vidlm-ort", "--features", "cuda"];
    steps
        .time("cargo test -p vidlm-ort --features cuda --all-targets --no-run (clippy)", || {
            run(&mut test_cmd(&[&cuda[..], &["--all-targets", "--no-run"]].concat(), false)?)
        })?;
    lane.check()?;
    steps.time("wait for the background lane", || lane.join())?;
    steps.time("cargo test --workspace --all-targets", || {
        run(&mut test_cmd(&["--workspace", "--all-targets"], true)?)
    })?;
    // `--all-targets` leaves out doctests; every lib.rs opens with a runnable example.
    steps.time("cargo test --workspace --doc", || {
        run(&mut test_cmd(&["--workspace", "--doc"], true)?)
    })?;
    // vidlm-ort's CUDA test checks the errors that name what is missing and the CPU fallback with
    // both ONNX Runtime builds (README: "On an NVIDIA GPU").
    steps.time("cargo test -p vidlm-ort --features cuda --test cuda", || {
        run(&mut test_cmd(&[&cuda[..], &["--test", "cuda"]].concat(), false)?)
    })?;
    // The end-to-end benchmark's harness on a tiny model (its numbers mean nothing here), so that it
    // cannot rot: checkpoint, fp32/q8/q4 export, vidlm run per dtype, transformers, bandwidth, JSON.
    std::env::set_var(
        "VIDLM_BENCH_BIN",
        target.join("debug").join(format!("vidlm{}", std::env::consts::EXE_SUFFIX)),
    );
    steps.time("bench e2e --quick", || bench_e2e::bench_e2e(&["--quick".to_string()]))?;
    // The Python package: its wheel (dev profile) installed into a fresh venv, then
    // `pytest crates/python/tests` there (goldens through `LLM.chat`, read_frames against
    // `vidlm frames`, errors, threads, Ctrl-C, the Ray Data example).
    steps.time("python package (wheel, fresh venv, pytest)", || {
        python_pkg::test_package(&videos, &cache_dir().join("fixtures"))
    })?;
    // Smoke run of every fuzz target (10 s each, two at a time on CI's two cores), so that the
    // harness cannot rot. The smoke run uses the unoptimised build the background lane made
    // (`--debug`: the same instrumentation, a much shorter compile); the long runs are
    // `cargo xtask fuzz --seconds N`, optimised.
    steps.time("fuzz smoke (10 s per target, 2 at a time)", || {
        fuzz::fuzz(&fuzz::FuzzArgs {
            target: None,
            seconds: 10,
            debug: true,
            build_only: false,
            jobs: 2,
        })
    })?;
    Ok(())
}

fn corpus() -> Result<()> {
    let videos = videos::videos()?;
    let report = project_root().join("target").join("corpus.md");
    let mut t = cargo();
    t.env("VIDLM_TEST_VIDEOS", &videos).env("VIDLM_CORPUS_REPORT", &report);
    t.args(["test", "-p", "vidlm-video-io", "--test", "corpus"]);
    run(&mut t)?;
    eprintln!("[corpus] table written to {}", report.display());
    Ok(())
}

fn bench(what: &str, args: &[String]) -> Result<()> {
    if !matches!(what, "e2e" | "serve" | "batch" | "gpu" | "video") && !args.is_empty() {
        bail!("benchmark {what:?} takes no arguments");
    }
    match what {
        "e2e" => bench_e2e::bench_e2e(args),
        // Issue 23's GPU measurement in one ~10-minute call (`--dry-run`: plan + checks, no GPU).
        "gpu" => bench_gpu::bench_gpu(args),
        "video" => {
            let videos = videos::videos()?;
            // `--python [--quick]`: vidlm.read_frames vs PyAV, torchcodec and decord.
            let python = args.iter().any(|a| a == "--python");
            let quick = args.iter().any(|a| a == "--quick");
            if let Some(other) = args.iter().find(|a| *a != "--python" && *a != "--quick") {
                bail!("bench video: unknown argument {other:?} (--python [--quick])");
            }
            if quick && !python {
                bail!("bench video: --quick goes with --python");
            }
            if python {
                return python_pkg::bench_video(&videos, quick);
            }
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
        "serve" => {
            // Continuous batching vs one at a time, and the vision cache on a repeated video.
            let mut b = cargo();
            b.args(["bench", "-p", "vidlm-engine", "--bench", "serving", "--"]).args(args);
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
        other => {
            bail!("unknown benchmark {other:?} (known: video, processor, e2e, serve, batch, gpu)")
        }
    }
}
