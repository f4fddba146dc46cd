//! `vidlm preprocess --model DIR --messages messages.json [--num-frames N | --fps F] [--max-frames M]
//! [--backend pil|torchvision] [--no-generation-prompt] --out inputs.safetensors`
//!
//! Writes what the model consumes, under transformers' key names and dtypes: `input_ids` and
//! `attention_mask` (int64), image pixels (`pixel_values`, or `pixel_values_images` for
//! Video-LLaVA) and `image_sizes` where there are images, `pixel_values_videos` where there are
//! videos (float32), with the shapes of `apply_chat_template(..., return_tensors="pt")`.
//! Media paths in messages.json are relative to that file.

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::Arc;
use vidlm_processor::{Backend, Conversation, ProcessOptions, Processor, VideoIoLoader};

use crate::limits::LimitsArgs;
use crate::messages::MessagesFile;
use crate::sampling::SamplingArgs;

#[derive(clap::Args)]
pub struct Args {
    /// Model directory (config.json, tokenizer.json, processor configs, chat template).
    #[arg(long)]
    pub model: PathBuf,
    /// Chat messages (transformers format): one conversation or a list of conversations. Relative
    /// media paths in it resolve against the file's own folder.
    #[arg(long)]
    pub messages: PathBuf,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Image resize backend (default: what transformers 5 picks — torchvision, or PIL for
    /// Video-LLaVA's image processor). Videos always use torchvision, like transformers.
    #[arg(long)]
    pub backend: Option<Backend>,
    /// Do not append the assistant prefix (`add_generation_prompt=False`).
    #[arg(long)]
    pub no_generation_prompt: bool,
    /// Output safetensors file.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub limits: LimitsArgs,
}

pub fn run(a: Args) -> Result<()> {
    let processor = Processor::from_dir(&a.model)
        .with_context(|| format!("loading {}", a.model.display()))?
        .with_loader(Arc::new(VideoIoLoader { opts: a.limits.open_options() }));
    let messages = MessagesFile::load(&a.messages)?;
    let convs = Conversation::batch_from_json(&messages.json, Some(&messages.base_dir))?;
    let mut opts = ProcessOptions {
        add_generation_prompt: !a.no_generation_prompt,
        image_backend: a.backend,
        ..Default::default()
    };
    a.sampling.apply(&mut opts).context("--num-frames / --fps")?;
    let inputs = processor.process(&convs, &opts)?;
    let bytes = inputs.to_safetensors()?;
    std::fs::write(&a.out, bytes).with_context(|| format!("writing {}", a.out.display()))?;
    let summary: Vec<String> =
        inputs.tensors().iter().map(|(n, _, s, _)| format!("{n} {s:?}")).collect();
    eprintln!(
        "[preprocess] {} ({}): {}",
        a.out.display(),
        processor.family().name(),
        summary.join(", ")
    );
    Ok(())
}
