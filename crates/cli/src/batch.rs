//! `vidlm batch --model DIR|ID --input FILE --output FILE [--shard I/N] [--batch-size N] ...` and
//! `vidlm batch merge --input FILE --output FILE SHARD_OUTPUTS...`: a thin CLI over `vidlm-batch`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use vidlm_batch::lines::RequestDefaults;
use vidlm_batch::manifest::{Format, Manifest, ManifestOptions};
use vidlm_batch::merge::{merge, ShardOutput};
use vidlm_batch::run::{run as run_batch, RunOptions};
use vidlm_batch::{ProgressMode, Shard, ShardSource};
use vidlm_openai::{MediaLimits, MediaPolicy};

use crate::backend::{BackendArgs, GenerationArgs};
use crate::sampling::SamplingArgs;

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(clap::Subcommand)]
pub enum Cmd {
    /// Join the outputs of a sharded run into one file in manifest order, checking that every
    /// record has exactly one line.
    Merge(MergeArgs),
}

/// How to read the manifest (shared by the run and merge).
#[derive(clap::Args, Debug, Clone)]
pub struct ManifestArgs {
    /// The manifest: OpenAI Batch JSONL, or a plain JSONL/CSV/Parquet manifest of videos (with --video-column).
    #[arg(long, required = true)]
    pub input: Option<PathBuf>,
    /// openai, jsonl, csv or parquet (default: from the extension; JSON lines are OpenAI Batch unless --video-column is given).
    #[arg(long)]
    pub format: Option<String>,
    /// Plain manifests: the column with the video (path relative to the manifest's folder, file://, data: or http(s) URL).
    #[arg(long)]
    pub video_column: Option<String>,
    /// Plain manifests: the column with each row's id (default: the video itself).
    #[arg(long)]
    pub id_column: Option<String>,
    /// Plain manifests: the question for every row (a --prompt-column value wins where present).
    #[arg(long)]
    pub prompt: Option<String>,
    /// Plain manifests: the column with each row's question.
    #[arg(long)]
    pub prompt_column: Option<String>,
}

impl ManifestArgs {
    fn options(&self) -> Result<(PathBuf, ManifestOptions)> {
        let Some(input) = self.input.clone() else { bail!("give --input FILE") };
        let format = self.format.as_deref().map(str::parse::<Format>).transpose()?;
        Ok((
            input,
            ManifestOptions {
                format,
                video_column: self.video_column.clone(),
                id_column: self.id_column.clone(),
                prompt: self.prompt.clone(),
                prompt_column: self.prompt_column.clone(),
                ..Default::default()
            },
        ))
    }
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// Model directory (vidlm ONNX layout) or Hugging Face hub id.
    #[arg(long, required = true)]
    pub model: Option<String>,
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// Output JSONL (OpenAI Batch output), appended and resumed; may contain {shard} (or give each shard task its own literal path). Locked for the run: a second writer exits at once.
    #[arg(long, required = true)]
    pub output: Option<String>,
    /// Run shard I of N (0-based) of the input.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Number of shards, with the index from JOB_COMPLETION_INDEX (Kubernetes Indexed Job) or SLURM_ARRAY_TASK_ID.
    #[arg(long)]
    pub num_shards: Option<usize>,
    /// Requests decoded together: the engine's running batch (continuous batching).
    #[arg(long, default_value_t = 4)]
    pub batch_size: usize,
    /// Requests submitted beyond the running batch, so that their media are decoded, preprocessed and encoded ahead (0: none; with --batch-size 1, one at a time).
    #[arg(long, default_value_t = 8)]
    pub prefetch: usize,
    /// The engine's media worker threads (decoding, preprocessing, vision).
    #[arg(long, default_value_t = 2)]
    pub prefetch_workers: usize,
    /// Local media must be inside this folder (default: the input file's folder).
    #[arg(long)]
    pub allowed_local_media_path: Option<PathBuf>,
    /// Remote (http/https) media may come from these hosts (comma-separated); none by default.
    #[arg(long, value_delimiter = ',')]
    pub allowed_media_domains: Vec<String>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Generation defaults for requests that set none (`--max-new-tokens` is their `max_tokens`).
    #[command(flatten)]
    pub generation: GenerationArgs,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Do not fdatasync each output line (faster on slow disks; a power cut may then lose the last lines, never tear the file for resume).
    #[arg(long)]
    pub no_fsync: bool,
    /// auto (a bar on a terminal, else lines), bar, lines or off.
    #[arg(long, default_value = "auto")]
    pub progress: String,
    /// Without a terminal: one progress line every N requests.
    #[arg(long, default_value_t = 100)]
    pub progress_every: usize,
    /// Also write the end summary (counts, rates, peak RSS) as JSON to this file.
    #[arg(long)]
    pub summary_json: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct MergeArgs {
    #[command(flatten)]
    pub manifest: ManifestArgs,
    /// The merged output (written whole or not at all).
    #[arg(long)]
    pub output: PathBuf,
    /// With one output path containing {shard}: the number of shards.
    #[arg(long)]
    pub num_shards: Option<usize>,
    /// The shard outputs: a path with {shard} (and --num-shards), or the files themselves.
    #[arg(required = true)]
    pub shards: Vec<String>,
}

pub fn run(a: Args) -> Result<()> {
    match a.cmd {
        Some(Cmd::Merge(m)) => run_merge(m),
        None => run_shard(a.run),
    }
}

fn progress_mode(s: &str) -> Result<ProgressMode> {
    Ok(match s {
        "auto" => ProgressMode::Auto,
        "bar" => ProgressMode::Bar,
        "lines" => ProgressMode::Lines,
        "off" => ProgressMode::Off,
        other => bail!("unknown --progress {other:?} (auto, bar, lines, off)"),
    })
}

fn run_shard(a: RunArgs) -> Result<()> {
    let Some(model) = a.model.clone() else { bail!("give --model DIR|ID") };
    let Some(output) = a.output.clone() else { bail!("give --output FILE") };
    let (input, manifest_opts) = a.manifest.options()?;
    let (shard, source) =
        Shard::resolve(a.shard.as_deref(), a.num_shards, |k| std::env::var(k).ok())?;
    // Relative paths in a plain manifest resolve against its folder (the rule of messages
    // files); local media must be inside --allowed-local-media-path, by default that folder.
    let base_dir = crate::messages::base_dir_of(&input);
    let media_dir = a.allowed_local_media_path.clone().unwrap_or_else(|| base_dir.clone());
    let s = &a.sampling;
    // The hard frame cap is the server's default, raised to what the command line asks for.
    let limits =
        MediaLimits { decode_device: a.backend.decode_device.device(), ..MediaLimits::default() };
    let cap = [Some(limits.max_frames), s.num_frames, s.max_frames]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(limits.max_frames);
    let media = MediaPolicy::default()
        .with_local_path(&media_dir)
        .with_context(|| format!("--allowed-local-media-path {}", media_dir.display()))?
        .with_domains(&a.allowed_media_domains)
        .context("--allowed-media-domains")?
        .with_limits(MediaLimits { max_frames: cap, ..limits });
    let g = &a.generation;
    let temperature = match (g.temperature.map(f64::from), g.do_sample) {
        (Some(t), _) => Some(t),
        (None, true) => Some(1.0),
        (None, false) => None,
    };
    let defaults = RequestDefaults {
        frames: s.frames(),
        min_pixels: s.min_pixels,
        max_pixels: s.max_pixels,
        max_tokens: g.max_new_tokens,
        temperature,
        top_p: g.top_p.map(f64::from),
        top_k: g.top_k,
        min_p: g.min_p.map(f64::from),
        repetition_penalty: g.repetition_penalty.map(f64::from),
        seed: g.seed,
        stop: g.stop.clone(),
    };
    let pipeline = a.backend.pipeline_options(&model)?;
    let opts = RunOptions {
        model,
        pipeline,
        input,
        manifest: manifest_opts,
        output,
        shard,
        batch_size: a.batch_size,
        prefetch: a.prefetch,
        workers: a.prefetch_workers,
        vision_cache_bytes: 128 << 20,
        defaults,
        media,
        base_dir: Some(base_dir),
        sync: !a.no_fsync,
        progress: progress_mode(&a.progress)?,
        progress_every: a.progress_every,
    };
    match source {
        ShardSource::None => {}
        ShardSource::Flag => eprintln!("[batch] shard {shard}"),
        ShardSource::Kubernetes => eprintln!("[batch] shard {shard} (JOB_COMPLETION_INDEX)"),
        ShardSource::Slurm => eprintln!("[batch] shard {shard} (Slurm array task)"),
    }
    let summary = run_batch(&opts)?;
    eprintln!("[batch] {summary}");
    if let Some(p) = &a.summary_json {
        std::fs::write(p, summary.to_json().to_string() + "\n")
            .with_context(|| format!("writing {}", p.display()))?;
    }
    // A request's own failure (4xx) is its line and the run succeeds; a failure inside vidlm
    // (5xx) is written as that request's line too, but the run reports it with its status.
    if summary.server_errors > 0 {
        bail!(
            "{} request(s) failed inside vidlm (server errors, status 5xx); their error lines are in {}",
            summary.server_errors,
            summary.output.display()
        );
    }
    Ok(())
}

fn run_merge(m: MergeArgs) -> Result<()> {
    let (input, manifest_opts) = m.manifest.options()?;
    let manifest = Manifest::open(&input, &manifest_opts)?;
    let inputs = match (m.shards.as_slice(), m.num_shards) {
        ([t], Some(n)) if t.contains(vidlm_batch::shard::SHARD_PLACEHOLDER) => {
            ShardOutput::from_template(t, n)?
        }
        ([t], None) if t.contains(vidlm_batch::shard::SHARD_PLACEHOLDER) => {
            bail!("{t} contains {{shard}}: give --num-shards N")
        }
        (files, None) => {
            files.iter().map(|f| ShardOutput { path: PathBuf::from(f), shard: None }).collect()
        }
        (_, Some(_)) => bail!("--num-shards goes with one output path containing {{shard}}"),
    };
    let r = merge(&manifest, &inputs, &m.output)?;
    eprintln!(
        "[batch] merged {} shard outputs into {}: {} lines ({} succeeded, {} failed), none missing or doubled",
        r.shards,
        m.output.display(),
        r.lines,
        r.succeeded,
        r.failed
    );
    Ok(())
}
