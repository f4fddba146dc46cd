//! `vidlm run --model DIR|ID [--video V]... [--image I]... --prompt TEXT [--num-frames N | --fps F] [--max-frames M] ...`
//!
//! Answers a question about videos/images with a LLaVA-family model: builds one user message
//! (images, then videos, then the text — or reads a whole HF chat-messages JSON with
//! `--messages`), streams the answer to stdout and prints per-stage timings to stderr.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use crate::messages::MessagesFile;
use crate::sampling::SamplingArgs;
use vidlm_pipeline::{Conversation, Device, FinishReason, GenerateOptions, HubOptions, Pipeline, PipelineOptions, Progress, SessionOptions, Stage};

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
    /// Most new tokens.
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Sample instead of greedy decoding.
    #[arg(long)]
    pub do_sample: bool,
    /// Sampling temperature.
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Top-k.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Top-p.
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Min-p.
    #[arg(long)]
    pub min_p: Option<f32>,
    /// Repetition penalty.
    #[arg(long)]
    pub repetition_penalty: Option<f32>,
    /// Seed for reproducible sampling.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop string (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Use the CPU if CUDA cannot run.
    #[arg(long)]
    pub allow_cpu_fallback: bool,
    /// ONNX Runtime intra-op threads.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Only use the local Hugging Face cache for hub ids.
    #[arg(long)]
    pub offline: bool,
    /// Print one JSON object (text, tokens, timings) at the end instead of streaming.
    #[arg(long)]
    pub json: bool,
}

pub(crate) fn device(s: &str) -> Result<Device> {
    match s {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::Cuda { device_id: 0 }),
        other => match other.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
            Some(device_id) => Ok(Device::Cuda { device_id }),
            None => bail!("unknown --device {other:?} (cpu, cuda, cuda:N)"),
        },
    }
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
            (serde_json::json!([{"role": "user", "content": content}]), std::env::current_dir().context("reading the current directory")?)
        }
    };
    let conversation = Conversation::from_json(&messages, Some(&base_dir))?;
    let opts = PipelineOptions {
        session: SessionOptions { device: device(&a.device)?, allow_cpu_fallback: a.allow_cpu_fallback, intra_threads: a.threads, ..Default::default() },
        hub: HubOptions { offline: a.offline, ..Default::default() },
        ..Default::default()
    };
    // Progress on stderr for the slow stages (stdout carries only the answer or the JSON).
    let started = std::time::Instant::now();
    eprintln!("[vidlm] loading {} ...", a.model);
    let mut p = Pipeline::from_pretrained(&a.model, &opts)?;
    eprintln!("[vidlm] loaded {:?} model in {:.1} s", p.family(), started.elapsed().as_secs_f64());
    let progress = Progress::new(move |stage| {
        let at = started.elapsed().as_secs_f64();
        match stage {
            Stage::Preprocess { .. } => eprintln!("[vidlm] {at:6.1} s  decoding media and preprocessing ..."),
            Stage::Vision { images, videos } => {
                eprintln!("[vidlm] {at:6.1} s  encoding {images} image(s) and {videos} video(s) ...")
            }
            Stage::Prefill { prompt_tokens } => eprintln!("[vidlm] {at:6.1} s  prefill over {prompt_tokens} prompt tokens ..."),
        }
    });
    let mut g = GenerateOptions { progress: Some(progress), ..Default::default() };
    a.sampling.apply(&mut g.process);
    g.generation.max_new_tokens = a.max_new_tokens;
    g.generation.do_sample = a.do_sample.then_some(true);
    g.generation.temperature = a.temperature;
    g.generation.top_k = a.top_k;
    g.generation.top_p = a.top_p;
    g.generation.min_p = a.min_p;
    g.generation.repetition_penalty = a.repetition_penalty;
    g.generation.seed = a.seed;
    if !a.stop.is_empty() {
        g.generation.stop_strings = Some(a.stop.clone());
    }
    if a.json {
        let out = p.generate(&conversation, &g)?;
        let t = &out.timings;
        let finish_reason = match out.row.finish_reason {
            FinishReason::Eos => "eos",
            FinishReason::StopString => "stop_string",
            FinishReason::MaxNewTokens => "max_new_tokens",
            FinishReason::ContextLength => "context_length",
            FinishReason::Cancelled => "cancelled",
        };
        let v = serde_json::json!({
            "text": out.text,
            "token_ids": out.row.token_ids,
            "prompt_tokens": out.row.prompt_tokens,
            "finish_reason": finish_reason,
            // Seconds per stage; `decode_step` is the mean time of one decode step.
            "timings": {
                "decode": t.decode.as_secs_f64(),
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
    let mut stream = p.stream(&conversation, &g)?;
    let mut stdout = std::io::stdout().lock();
    while let Some(ev) = stream.next_event() {
        write!(stdout, "{}", ev?.text)?;
        stdout.flush()?;
    }
    writeln!(stdout)?;
    stdout.flush()?;
    let t = stream.timings();
    eprintln!(
        "[vidlm] decode {:.0} ms, preprocess {:.0} ms, vision {:.0} ms, embed {:.0} ms, prefill {:.0} ms, {} tokens, {:.1} ms/token, {:.1} tokens/s",
        t.decode.as_secs_f64() * 1e3,
        t.preprocess.as_secs_f64() * 1e3,
        t.vision.as_secs_f64() * 1e3,
        t.embed.as_secs_f64() * 1e3,
        t.prefill.as_secs_f64() * 1e3,
        t.generated_tokens,
        t.per_token().as_secs_f64() * 1e3,
        t.tokens_per_second()
    );
    Ok(())
}
