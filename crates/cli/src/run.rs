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
use vidlm_engine::{Completion, Engine, EngineConfig, EngineRequest, Event, ProcessorArgs};
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
    let conversation = conversation(&a)?;
    let started = std::time::Instant::now();
    let p = load(&a, started)?;
    // The same engine as `vidlm serve` and `vidlm batch`, with one request: its prefill runs in one
    // pass (nobody else is decoding), so the answer is the pipeline's, token for token.
    let (processor, vision, lm) = p.into_parts();
    // Local files the user named: decoded here with the command's frame sampling (the engine's
    // media policy is for untrusted requests), handed to the engine decoded.
    progress(started, Stage::Preprocess { conversations: 1 });
    let mut process = ProcessOptions::default();
    a.sampling.apply(&mut process).context("--num-frames / --fps")?;
    // A budget the model's processors refuse stops here, before any media is decoded.
    processor.check_budget(&process).context("--min-pixels / --max-pixels")?;
    let t0 = std::time::Instant::now();
    let loaded = processor.load_conversation(&conversation, &process)?;
    let media_decode = t0.elapsed();
    let mut req = EngineRequest::from_decoded(loaded)?;
    // --min-pixels / --max-pixels: the processor's pixel budgets for this request (checked
    // against the model when the engine takes it: a family without budgets refuses them).
    req.processor_args = ProcessorArgs {
        min_pixels: a.sampling.min_pixels,
        max_pixels: a.sampling.max_pixels,
        size: None,
    };
    apply_generation(&mut req, &a.generation);
    // transformers' semantics: with no length anywhere, `max_length` 20 (prompt included). Said
    // on stderr when it cuts the answer.
    let gc = lm.generation_config();
    let default_length = a.generation.max_new_tokens.is_none()
        && gc.max_new_tokens.is_none()
        && gc.max_length.is_none();
    let config = EngineConfig {
        max_batch: 1,
        max_queue: 1,
        media_workers: 1,
        vision_cache_bytes: 0,
        // One request per process: the vision weights need not stay resident during decoding.
        release_vision_after_use: !a.keep_vision_loaded,
        ..EngineConfig::default()
    };
    let engine = Engine::start(processor, vision, lm, config)?;
    let done = answer(&engine, req, a.json, started)?;
    engine.shutdown();
    if default_length && done.finish_reason == FinishReason::MaxNewTokens {
        eprintln!(
            "[vidlm] note: the answer was cut by transformers' default max_length of 20 tokens, prompt included ({} prompt tokens; the model's generation_config.json sets no length): pass --max-new-tokens N for a longer answer",
            done.prompt_tokens
        );
    }
    if a.json {
        print_json(&done, media_decode)
    } else {
        print_summary(&done, media_decode)
    }
}

/// The conversation: the `--messages` file, or one user message of the images, the videos and the
/// prompt. One rule for media paths (crate::messages): relative to the messages file's folder, or
/// to the current directory for --video/--image.
fn conversation(a: &Args) -> Result<Conversation> {
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
    Ok(Conversation::from_json(&messages, Some(&base_dir))?)
}

/// Loads the model, saying so on stderr (stdout carries only the answer or the JSON).
fn load(a: &Args, started: std::time::Instant) -> Result<Pipeline> {
    // (Releasing the vision sessions after use is the engine's job: `EngineConfig`.)
    let opts = PipelineOptions {
        embed_in_session: a.embed_in_session,
        ..a.backend.pipeline_options(&a.model)?
    };
    eprintln!("[vidlm] loading {} ...", a.model);
    let p = Pipeline::from_pretrained(&a.model, &opts).map_err(|e| explain_missing(e, &a.model))?;
    // One line names the precision of every graph, and any that fell back along the chain
    // (`q4: vision q8 (no q4 graph), embed q4, decoder q4`).
    let dtype = p.precisions();
    eprintln!(
        "[vidlm] loaded {:?} model ({dtype}) in {:.1} s ({})",
        p.family(),
        started.elapsed().as_secs_f64(),
        p.provider()
    );
    if let Some(reason) = p.cuda_fallback() {
        eprintln!("[vidlm] CUDA unavailable, running on the CPU (--allow-cpu-fallback): {reason}");
    }
    if let Some(reason) = p.cuda_graph_off() {
        eprintln!("[vidlm] {reason}");
    }
    Ok(p)
}

/// Progress on stderr for the slow stages.
fn progress(started: std::time::Instant, stage: Stage) {
    let at = started.elapsed().as_secs_f64();
    match stage {
        Stage::Preprocess { .. } => {
            eprintln!("[vidlm] {at:6.1} s  decoding media and preprocessing ...")
        }
        Stage::Vision { images, videos } => {
            eprintln!("[vidlm] {at:6.1} s  encoding {images} image(s) and {videos} video(s) ...")
        }
        Stage::Prefill { prompt_tokens } => {
            eprintln!("[vidlm] {at:6.1} s  prefill over {prompt_tokens} prompt tokens ...")
        }
    }
}

/// The generation flags onto the request's options.
fn apply_generation(req: &mut EngineRequest, flags: &GenerationArgs) {
    let options = &mut req.generation;
    options.max_new_tokens = flags.max_new_tokens;
    options.do_sample = flags.do_sample.then_some(true);
    options.temperature = flags.temperature;
    // `--temperature 0` is greedy decoding (the flag's meaning, as OpenAI and vLLM take it),
    // also for a model whose generation_config.json samples (the Qwen-VL checkpoints).
    if flags.temperature == Some(0.0) && !flags.do_sample {
        options.do_sample = Some(false);
        options.temperature = None;
    }
    options.top_k = flags.top_k;
    options.top_p = flags.top_p;
    options.min_p = flags.min_p;
    options.repetition_penalty = flags.repetition_penalty;
    options.seed = flags.seed;
    if !flags.stop.is_empty() {
        options.stop_strings = Some(flags.stop.clone());
    }
}

/// Submits the request and streams its tokens to stdout (unless `json`); returns its completion.
fn answer(
    engine: &Engine,
    req: EngineRequest,
    json: bool,
    started: std::time::Instant,
) -> Result<Completion> {
    let mut handle = engine.submit(req)?;
    let mut stdout = std::io::stdout().lock();
    loop {
        match handle.blocking_next() {
            Some(Event::Stage(Stage::Preprocess { .. })) => {}
            Some(Event::Stage(stage)) => progress(started, stage),
            Some(Event::Token(t)) => {
                if !json {
                    write!(stdout, "{}", t.text)?;
                    stdout.flush()?;
                }
            }
            Some(Event::Done(c)) => return Ok(c),
            Some(Event::Failed(e)) => return Err(e.into()),
            None => bail!("the engine stopped before the answer was complete"),
        }
    }
}

/// `--json`: one object with the text, the tokens and the timings.
fn print_json(done: &Completion, media_decode: std::time::Duration) -> Result<()> {
    let t = &done.timings;
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
            // From the request's arrival in the engine to its first token.
            "first_token": t.first_token.as_secs_f64(),
            "decode_step": t.per_token().as_secs_f64(),
            "decode_steps": t.decode_steps.len(),
            "decode_tokens_per_s": t.tokens_per_second(),
        },
    });
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

/// The end of the streamed answer, and the stage timings on stderr.
fn print_summary(done: &Completion, media_decode: std::time::Duration) -> Result<()> {
    let t = &done.timings;
    let mut stdout = std::io::stdout().lock();
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
