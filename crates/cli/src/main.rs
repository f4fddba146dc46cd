//! `vidlm`: the command line. Each subcommand lives in its own module.

mod backend;
#[cfg(feature = "batch")]
mod batch;
mod frames;
mod limits;
mod messages;
mod preprocess;
mod probe;
mod run;
mod sampling;
#[cfg(feature = "serve")]
mod serve;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "vidlm",
    version,
    about = "Video-language models in Rust: probe videos, sample frames, run, serve and batch"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
// Parsed once per process: boxing the larger argument structs would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Cmd {
    /// Print what a video (or image) is, as JSON.
    Probe(probe::Args),
    /// Sample frames and write them as RGB PNGs plus frames.json.
    Frames(frames::Args),
    /// Turn chat messages + media into model inputs (safetensors, transformers' key names).
    Preprocess(preprocess::Args),
    /// Answer a question about videos/images with a LLaVA-family model (streams the answer).
    Run(run::Args),
    /// Serve the OpenAI chat completions API (with video_url parts) over HTTP.
    #[cfg(feature = "serve")]
    Serve(serve::Args),
    /// Run a manifest of requests (OpenAI Batch JSONL, or JSONL/CSV/Parquet of videos): resumable, sharded.
    #[cfg(feature = "batch")]
    Batch(batch::Args),
}

fn main() -> ExitCode {
    // Errors must stay one line: keep FFmpeg's own console logging quiet.
    vidlm_video_io::set_ffmpeg_log_level(-8);
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Probe(a) => probe::run(a),
        Cmd::Frames(a) => frames::run(a),
        Cmd::Preprocess(a) => preprocess::run(a),
        Cmd::Run(a) => run::run(a),
        #[cfg(feature = "serve")]
        Cmd::Serve(a) => serve::run(a),
        #[cfg(feature = "batch")]
        Cmd::Batch(a) => batch::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes, no backtrace.
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}
