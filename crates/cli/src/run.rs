//! `vidlm run --model DIR|ID [--video V]... [--image I]... --prompt TEXT [--num-frames N | --fps F] [--max-frames M] ...`
//!
//! Answers a question about videos/images with a LLaVA-family model: builds one user message
//! (images, then videos, then the text — or reads a whole HF chat-messages JSON with
//! `--messages`), streams the answer to stdout and prints per-stage timings to stderr. The
//! request runs on `vidlm-engine`, the scheduler behind `vidlm serve` and `vidlm batch`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use crate::messages::MessagesFile;
use crate::sampling::SamplingArgs;
use vidlm_engine::{Engine, EngineConfig, EngineRequest, Event};
use vidlm_pipeline::{
    Conversation, Device, FinishReason, HubOptions, ModelFiles, Pipeline, PipelineError, PipelineOptions, Precision, Precisions, ProcessOptions,
    SessionOptions, Stage,
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
    /// Weight precision: fp32, fp16, q8, q4 or q4f16 for every graph, or per graph
    /// (`vision=q8,decoder=q4,embed=q4`; `q4,vision=fp32` = q4 but the vision graphs fp32). The
    /// files are `onnx/<graph><suffix>.onnx` with the transformers.js suffixes "", _fp16,
    /// _quantized, _q4, _q4f16. Default: fp32 on the CPU; on CUDA fp16 where the export has it.
    #[arg(long)]
    pub dtype: Option<Dtype>,
    /// ONNX Runtime intra-op threads.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Only use the local Hugging Face cache for hub ids.
    #[arg(long)]
    pub offline: bool,
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

/// `--dtype`: one precision for every graph, and/or one per graph (`vision`, `embed`, `decoder`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dtype {
    all: Option<Precision>,
    vision: Option<Precision>,
    embed: Option<Precision>,
    decoder: Option<Precision>,
}

impl std::str::FromStr for Dtype {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut d = Dtype::default();
        for part in s.split(',').map(str::trim) {
            let (slot, name) = match part.split_once('=') {
                None => (&mut d.all, part),
                Some((graph, name)) => match graph.trim() {
                    "vision" => (&mut d.vision, name),
                    "embed" => (&mut d.embed, name),
                    "decoder" => (&mut d.decoder, name),
                    other => return Err(format!("unknown graph {other:?} (vision, embed, decoder)")),
                },
            };
            if slot.is_some() {
                return Err(format!("{part:?}: the precision is given twice"));
            }
            *slot = Some(name.trim().parse::<Precision>().map_err(|e| e.to_string())?);
        }
        Ok(d)
    }
}

impl Dtype {
    /// The precision of each graph, `default` where `--dtype` does not say.
    fn precisions(self, default: Precision) -> Precisions {
        let all = self.all.unwrap_or(default);
        Precisions { vision: self.vision.unwrap_or(all), embed: self.embed.unwrap_or(all), decoder: self.decoder.unwrap_or(all) }
    }
}

/// The default precision: fp32 on the CPU, fp16 on CUDA where the model has an fp16 decoder (a
/// local directory is looked at; a hub id is taken to be a transformers.js-style export, which
/// has one).
fn default_precision(device: Device, model: &str) -> Precision {
    match device {
        Device::Cpu => Precision::Fp32,
        Device::Cuda { .. } => {
            let dir = Path::new(model);
            let fp16 = dir.join(format!("onnx/decoder_model_merged{}.onnx", Precision::Fp16.suffix()));
            if !dir.is_dir() || fp16.is_file() {
                Precision::Fp16
            } else {
                Precision::Fp32
            }
        }
    }
}

/// A graph missing for the chosen precision, said with the precisions the directory has per graph.
fn explain_missing(e: PipelineError, model: &str) -> anyhow::Error {
    if let PipelineError::MissingFile { file, .. } = &e {
        if file.starts_with("onnx/") && file.ends_with(".onnx") {
            let have = ModelFiles::read(model)
                .map(|f| {
                    f.available_graphs()
                        .iter()
                        .map(|(g, ps)| format!("{g} {}", ps.iter().map(|p| p.name()).collect::<Vec<_>>().join("/")))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            let have = if have.is_empty() { String::new() } else { format!(" (this model has: {have})") };
            return anyhow::Error::new(e).context(format!("no graph for the chosen --dtype{have}"));
        }
    }
    e.into()
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
    let device = device(&a.device)?;
    let precisions = a.dtype.unwrap_or_default().precisions(default_precision(device, &a.model));
    let opts = PipelineOptions {
        session: SessionOptions { device, allow_cpu_fallback: a.allow_cpu_fallback, intra_threads: a.threads, ..Default::default() },
        precisions,
        hub: HubOptions { offline: a.offline, ..Default::default() },
        // One request per process: the vision weights need not stay resident during decoding.
        release_vision_after_use: !a.keep_vision_loaded,
        embed_in_session: a.embed_in_session,
        ..Default::default()
    };
    // Progress on stderr for the slow stages (stdout carries only the answer or the JSON).
    let started = std::time::Instant::now();
    eprintln!("[vidlm] loading {} ...", a.model);
    let p = Pipeline::from_pretrained(&a.model, &opts).map_err(|e| explain_missing(e, &a.model))?;
    let dtype = if precisions.vision == precisions.embed && precisions.embed == precisions.decoder {
        precisions.decoder.to_string()
    } else {
        format!("vision {}, embed {}, decoder {}", precisions.vision, precisions.embed, precisions.decoder)
    };
    eprintln!("[vidlm] loaded {:?} model ({dtype}) in {:.1} s ({})", p.family(), started.elapsed().as_secs_f64(), p.provider());
    if let Some(reason) = p.cuda_fallback() {
        eprintln!("[vidlm] CUDA unavailable, running on the CPU (--allow-cpu-fallback): {reason}");
    }
    let progress = |stage: Stage| {
        let at = started.elapsed().as_secs_f64();
        match stage {
            Stage::Preprocess { .. } => eprintln!("[vidlm] {at:6.1} s  decoding media and preprocessing ..."),
            Stage::Vision { images, videos } => {
                eprintln!("[vidlm] {at:6.1} s  encoding {images} image(s) and {videos} video(s) ...")
            }
            Stage::Prefill { prompt_tokens } => eprintln!("[vidlm] {at:6.1} s  prefill over {prompt_tokens} prompt tokens ..."),
        }
    };
    // The same engine as `vidlm serve` and `vidlm batch`, with one request: its prefill runs in one
    // pass (nobody else is decoding), so the answer is the pipeline's, token for token.
    let (processor, vision, lm) = p.into_parts();
    // Local files the user named: decoded here with the command's frame sampling (the engine's
    // media policy is for untrusted requests), handed to the engine decoded.
    progress(Stage::Preprocess { conversations: 1 });
    let mut process = ProcessOptions::default();
    a.sampling.apply(&mut process);
    let t0 = std::time::Instant::now();
    let loaded = processor.load_conversation(&conversation, &process)?;
    let media_decode = t0.elapsed();
    let mut req = EngineRequest::from_decoded(loaded)?;
    let g = &mut req.generation;
    g.max_new_tokens = a.max_new_tokens;
    g.do_sample = a.do_sample.then_some(true);
    g.temperature = a.temperature;
    g.top_k = a.top_k;
    g.top_p = a.top_p;
    g.min_p = a.min_p;
    g.repetition_penalty = a.repetition_penalty;
    g.seed = a.seed;
    if !a.stop.is_empty() {
        g.stop_strings = Some(a.stop.clone());
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
