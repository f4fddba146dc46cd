//! `vidlm run --model DIR|ID [--video V]... [--image I]... --prompt TEXT [--num-frames N | --fps F] [--max-frames M] ...`
//!
//! Answers a question about videos/images with a LLaVA-family model: builds one user message
//! (images, then videos, then the text — or reads a whole HF chat-messages JSON with
//! `--messages`), streams the answer to stdout and prints per-stage timings to stderr. The
//! request runs on `vidlm-engine`, the scheduler behind `vidlm serve` and `vidlm batch`.

use std::io::Write;
use std::path::PathBuf;

use crate::backend::{BackendArgs, GenerationArgs};
use crate::messages::MessagesFile;
use crate::sampling::SamplingArgs;
use anyhow::{bail, Context, Result};
use vidlm_engine::{Engine, EngineConfig, EngineRequest, Event};
use vidlm_pipeline::{
    Conversation, FinishReason, ModelFiles, Pipeline, PipelineError, PipelineOptions,
    ProcessOptions, Stage,
};

#[derive(clap::Args)]
pub struct Args {
    /// Model directory (vidlm ONNX layout) or Hugging Face hub id.
    #[arg(long)]
    pub model: String,
    /// Video file(s), in order.
    #[arg(long)]
    pub video: Vec<PathBuf>,
    /// Image file(s), in order.
    #[arg(long)]
    pub image: Vec<PathBuf>,
    /// The question.
    #[arg(long)]
    pub prompt: Option<String>,
    /// A JSON file of Hugging Face chat messages (a list of {role, content}) instead of
    /// --video/--image/--prompt. Relative media paths in it resolve against the file's own folder;
    /// --video/--image paths resolve against the current directory.
    #[arg(long, conflicts_with_all = ["video", "image", "prompt"])]
    pub messages: Option<PathBuf>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub generation: GenerationArgs,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Print one JSON object (text, tokens, timings) at the end instead of streaming.
    #[arg(long)]
    pub json: bool,
    /// Keep the vision sessions loaded during decoding (default: released after the vision stage).
    /// For memory comparisons.
    #[arg(long, hide = true)]
    pub keep_vision_loaded: bool,
    /// Run `embed_tokens` in an ONNX Runtime session instead of reading rows from its file.
    /// For memory comparisons.
    #[arg(long, hide = true)]
    pub embed_in_session: bool,
}

/// A graph missing for the chosen precision, said with the precisions the directory has per graph.
fn explain_missing(e: PipelineError, model: &str) -> anyhow::Error {
    if let PipelineError::MissingFile { file, .. } = &e {
        if file.starts_with("onnx/") && file.ends_with(".onnx") {
            let have = ModelFiles::read(model)
                .map(|f| {
                    f.available_graphs()
                        .iter()
                        .map(|(g, ps)| {
                            format!(
                                "{g} {}",
                                ps.iter().map(|p| p.name()).collect::<Vec<_>>().join("/")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            let have =
                if have.is_empty() { String::new() } else { format!(" (this model has: {have})") };
            return anyhow::Error::new(e).context(format!("no graph for the chosen --dtype{have}"));
        }
    }
    e.into()
}

pub fn run(a: Args) -> Result<()> {
    // One rule for media paths (crate::messages): relative to the messages file's folder, or to the
    // current directory for --video/--image.
    let (messages, base_dir) = match &a.messages {
        Some(p) => {
            let f = MessagesFile::load(p)?;
            (f.json, f.base_dir)
        }
        None => {
            let Some(prompt) = &a.prompt else { bail!("give --prompt (or --messages FILE)") };
            let mut content = Vec::new();
            for i in &a.image {
                content.push(serde_json::json!({"type": "image", "image": i}));
            }
            for v in &a.video {
                content.push(serde_json::json!({"type": "video", "video": v}));
            }
            content.push(serde_json::json!({"type": "text", "text": prompt}));
            (
                serde_json::json!([{"role": "user", "content": content}]),
                std::env::current_dir().context("reading the current directory")?,
            )
        }
    };
    let conversation = Conversation::from_json(&messages, Some(&base_dir))?;
    // (Releasing the vision sessions after use is the engine's job: `EngineConfig` below.)
    let opts = PipelineOptions {
        embed_in_session: a.embed_in_session,
        ..a.backend.pipeline_options(&a.model)?
    };
    // Progress on stderr for the slow stages (stdout carries only the answer or the JSON).
    let started = std::time::Instant::now();
    eprintln!("[vidlm] loading {} ...", a.model);
    let p = Pipeline::from_pretrained(&a.model, &opts).map_err(|e| explain_missing(e, &a.model))?;
    let precisions = opts.precisions;
    let dtype = if precisions.vision == precisions.embed && precisions.embed == precisions.decoder {
        precisions.decoder.to_string()
    } else {
        format!(
            "vision {}, embed {}, decoder {}",
            precisions.vision, precisions.embed, precisions.decoder
        )
    };
    eprintln!(
        "[vidlm] loaded {:?} model ({dtype}) in {:.1} s ({})",
        p.family(),
        started.elapsed().as_secs_f64(),
        p.provider()
    );
    if let Some(reason) = p.cuda_fallback() {
        eprintln!("[vidlm] CUDA unavailable, running on the CPU (--allow-cpu-fallback): {reason}");
    }
    let progress = |stage: Stage| {
        let at = started.elapsed().as_secs_f64();
        match stage {
            Stage::Preprocess { .. } => {
                eprintln!("[vidlm] {at:6.1} s  decoding media and preprocessing ...")
            }
            Stage::Vision { images, videos } => {
                eprintln!(
                    "[vidlm] {at:6.1} s  encoding {images} image(s) and {videos} video(s) ..."
                )
            }
            Stage::Prefill { prompt_tokens } => {
                eprintln!("[vidlm] {at:6.1} s  prefill over {prompt_tokens} prompt tokens ...")
            }
        }
    };
    // The same engine as `vidlm serve` and `vidlm batch`, with one request: its prefill runs in one
    // pass (nobody else is decoding), so the answer is the pipeline's, token for token.
    let (processor, vision, lm) = p.into_parts();
    // Local files the user named: decoded here with the command's frame sampling (the engine's
    // media policy is for untrusted requests), handed to the engine decoded.
    progress(Stage::Preprocess { conversations: 1 });
    if a.sampling.min_pixels.is_some() || a.sampling.max_pixels.is_some() {
        anyhow::bail!(
            "--min-pixels / --max-pixels are not supported by `vidlm run` yet (only by `vidlm preprocess`)"
        );
    }
    let mut process = ProcessOptions::default();
    a.sampling.apply(&mut process);
    let t0 = std::time::Instant::now();
    let loaded = processor.load_conversation(&conversation, &process)?;
    let media_decode = t0.elapsed();
    let mut req = EngineRequest::from_decoded(loaded)?;
    let g = &mut req.generation;
    let ga = &a.generation;
    g.max_new_tokens = ga.max_new_tokens;
    g.do_sample = ga.do_sample.then_some(true);
    g.temperature = ga.temperature;
    g.top_k = ga.top_k;
    g.top_p = ga.top_p;
    g.min_p = ga.min_p;
    g.repetition_penalty = ga.repetition_penalty;
    g.seed = ga.seed;
    if !ga.stop.is_empty() {
        g.stop_strings = Some(ga.stop.clone());
    }
    let config = EngineConfig {
        max_batch: 1,
        max_queue: 1,
        media_workers: 1,
        vision_cache_bytes: 0,
        // One request per process: the vision weights need not stay resident during decoding.
        release_vision_after_use: !a.keep_vision_loaded,
        ..EngineConfig::default()
    };
    let engine = Engine::start(processor, vision, lm, config);
    let mut handle = engine.submit(req)?;
    let mut stdout = std::io::stdout().lock();
    let done = loop {
        match handle.blocking_next() {
            Some(Event::Stage(Stage::Preprocess { .. })) => {}
            Some(Event::Stage(stage)) => progress(stage),
            Some(Event::Token(t)) => {
                if !a.json {
                    write!(stdout, "{}", t.text)?;
                    stdout.flush()?;
                }
            }
            Some(Event::Done(c)) => break c,
            Some(Event::Failed(e)) => return Err(e.into()),
            None => bail!("the engine stopped before the answer was complete"),
        }
    };
    drop(handle);
    engine.shutdown();
    let t = &done.timings;
    if a.json {
        let finish_reason = match done.finish_reason {
            FinishReason::Eos => "eos",
            FinishReason::StopString => "stop_string",
            FinishReason::MaxNewTokens => "max_new_tokens",
            FinishReason::ContextLength => "context_length",
            FinishReason::Cancelled => "cancelled",
        };
        let v = serde_json::json!({
            "text": done.text,
            "token_ids": done.token_ids,
            "prompt_tokens": done.prompt_tokens,
            "finish_reason": finish_reason,
            // Seconds per stage: `decode` is media decoding (FFmpeg), `decode_step` the mean time
            // of one decode step.
            "timings": {
                "decode": media_decode.as_secs_f64(),
                "preprocess": t.preprocess.as_secs_f64(),
                "vision": t.vision.as_secs_f64(),
                "embed": t.embed.as_secs_f64(),
                "prefill": t.prefill.as_secs_f64(),
                "decode_step": t.per_token().as_secs_f64(),
                "decode_steps": t.decode_steps.len(),
                "decode_tokens_per_s": t.tokens_per_second(),
            },
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    writeln!(stdout)?;
    stdout.flush()?;
    eprintln!(
        "[vidlm] decode {:.0} ms, preprocess {:.0} ms, vision {:.0} ms, embed {:.0} ms, prefill {:.0} ms, {} tokens, {:.1} ms/token, {:.1} tokens/s",
        media_decode.as_secs_f64() * 1e3,
        t.preprocess.as_secs_f64() * 1e3,
        t.vision.as_secs_f64() * 1e3,
        t.embed.as_secs_f64() * 1e3,
        t.prefill.as_secs_f64() * 1e3,
        done.token_ids.len(),
        t.per_token().as_secs_f64() * 1e3,
        t.tokens_per_second()
    );
    Ok(())
}
