//! # vidlm-pipeline — a model loaded, and the path from its processor to the decoder
//!
//! [`Pipeline::from_pretrained`] takes a model directory (vidlm's ONNX layout: the Hugging Face
//! files plus `onnx/`) or a hub id, detects the family, checks every file it will need *before*
//! loading anything, and loads the three parts every front end runs:
//!
//! 1. the processor (`vidlm-processor`: media decoding through `vidlm-video-io`, frame sampling,
//!    preprocessing, chat template, tokenization and placeholder expansion),
//! 2. the vision graphs and their host-side steps (`vidlm-vision`),
//! 3. the language model with its KV cache (`vidlm-decoder`).
//!
//! Generation is the serving engine's (`vidlm-engine`: `Engine::start` takes
//! [`Pipeline::into_parts`]); `vidlm run`, `serve`, `batch` and the Python package all go through
//! it. This crate keeps the one path from the processor's hand-off to the decoder's input:
//! [`sequences_from_inputs`] / [`sequence_from_features`] (a conversation's unpadded ids, the
//! feature rows of its media, its M-RoPE positions), which the engine uses per media item.
//!
//! The conversations come parsed ([`Conversation`], e.g. from the HF chat-messages JSON with
//! [`Conversation::from_json`]); the model directory is read once (`vidlm_model::ModelFiles`) and
//! its parsed configs handed to the processor, vision and the decoder.
//!
//! ```
//! use vidlm_pipeline::{Conversation, Pipeline, PipelineOptions, ProcessOptions, Sampling};
//!
//! let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
//! let p = Pipeline::from_pretrained(&format!("{root}/assets/demo-model"), &PipelineOptions::default())?;
//! let messages = serde_json::json!([{"role": "user", "content": [
//!     {"type": "video", "video": "assets/demo.mp4"},
//!     {"type": "text", "text": "What happens in this video?"}]}]);
//! let conversation = Conversation::from_json(&messages, Some(std::path::Path::new(root)))?;
//! let opts = ProcessOptions { sampling: Sampling::NumFrames(8), ..Default::default() };
//! let inputs = p.processor().process(&[conversation], &opts)?;
//! assert_eq!(inputs.conversations.len(), 1);
//! let (processor, vision, lm) = p.into_parts(); // what `vidlm_engine::Engine::start` takes
//! # drop((processor, vision, lm));
//! # Ok::<(), vidlm_pipeline::PipelineError>(())
//! ```
//!
//! A runnable check of the pieces without a model: the file set a family needs.
//!
//! ```
//! use vidlm_pipeline::{required_files, Family, Precision, Precisions};
//!
//! let next_video = Family::from_model_type("llava_next_video").unwrap();
//! let files = required_files(next_video, &Precisions::default());
//! assert!(files.required.contains(&"onnx/video_encoder.onnx".to_string()));
//! assert!(files.required.contains(&"onnx/image_newline.safetensors".to_string()));
//! let q4 = required_files(next_video, &Precisions::all(Precision::Q4));
//! assert!(q4.required.contains(&"onnx/decoder_model_merged_q4.onnx".to_string()));
//! ```
#![warn(missing_docs)]

mod hub;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use hub::{resolve, FileSet, HubOptions};
pub use vidlm_decoder::{DecoderError, FinishReason};
use vidlm_decoder::{Features, LanguageModel, LmOptions, Sequence};
pub use vidlm_model::mrope::MropeRule;
use vidlm_model::mrope::{rope_index, MropePositions};
use vidlm_model::Graph;
pub use vidlm_model::{
    ErrorKind, Family, GraphUse, ModelError, ModelFiles, Precision, Precisions, ResolvedPrecisions,
    Sampling,
};
pub use vidlm_ort::{Device, MemoryOptions, Prepack, Provider, SessionOptions};
pub use vidlm_processor::{
    Conversation, ConversationInputs, ImageInput, Part, ProcessOptions, ProcessedInputs, Processor,
    ProcessorError, VideoInput, VideoIoLoader,
};
use vidlm_vision::{
    FeatureBlock, ImagePixels, VideoPixels, VisionEncoder, VisionError, VisionOptions,
};

/// Errors of the pipeline.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// A file the model needs is missing (local directory or hub).
    #[error("model {model}: missing {file}")]
    MissingFile {
        /// The model directory or hub id.
        model: String,
        /// The file (and why it could not be found).
        file: String,
    },
    /// The model directory's configs are missing or malformed, or the model is not one of the
    /// supported families.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Messages, media decoding or preprocessing failed.
    #[error(transparent)]
    Processor(#[from] ProcessorError),
    /// The vision graphs failed.
    #[error(transparent)]
    Vision(#[from] VisionError),
    /// The language model failed.
    #[error(transparent)]
    Decoder(#[from] DecoderError),
    /// A broken internal invariant (a bug in vidlm, not in the input).
    #[error("internal error: {0}")]
    Internal(String),
}

impl PipelineError {
    /// The category of the error, for mapping to a response (see [`ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            PipelineError::MissingFile { .. } => ErrorKind::NotFound,
            PipelineError::Model(e) => e.kind(),
            PipelineError::Processor(e) => e.kind(),
            PipelineError::Vision(e) => e.kind(),
            PipelineError::Decoder(e) => e.kind(),
            PipelineError::Internal(_) => ErrorKind::Internal,
        }
    }
}

/// How to load a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineOptions {
    /// Execution provider, threads (shared by every graph).
    pub session: SessionOptions,
    /// Most images/frames per vision call.
    pub vision_max_batch: usize,
    /// Precision variant of each graph (`fp32` unless chosen).
    pub precisions: Precisions,
    /// Hub look-up for ids.
    pub hub: HubOptions,
    /// Run `embed_tokens` in an ONNX Runtime session even where its rows can be read from the
    /// file (see `vidlm_decoder::EmbeddingTable`).
    pub embed_in_session: bool,
    /// Run graphs that would run at q8, and vision towers that would run at q4, through their
    /// `int8` variant (int8 activations, integer arithmetic) where the export has one
    /// (`vidlm_model::ModelFiles::prefer_int8`): `None` = where the CPU has VNNI or AMX
    /// (`vidlm_ort::cpu::CpuFeatures::int8_dot`) and the session runs on the CPU.
    pub int8_compute: Option<bool>,
    /// Where videos are decoded (`vidlm_video_io::OpenOptions::decode_device`: NVDEC with
    /// `Cuda`, falling back to software with one line on stderr).
    pub decode_device: vidlm_video_io::DecodeDevice,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            session: SessionOptions::default(),
            vision_max_batch: 8,
            precisions: Precisions::default(),
            hub: HubOptions::default(),
            embed_in_session: false,
            int8_compute: None,
            decode_device: vidlm_video_io::DecodeDevice::Cpu,
        }
    }
}

impl PipelineOptions {
    /// Whether graphs that run at q8 take their `int8` variant ([`Self::int8_compute`], decided
    /// by the CPU's VNNI / AMX when unset).
    pub fn uses_int8_compute(&self) -> bool {
        self.int8_compute.unwrap_or_else(|| {
            matches!(self.session.device, Device::Cpu)
                && vidlm_ort::cpu::CpuFeatures::detect().int8_dot()
        })
    }
}

/// A stage of a request that can take more than a moment (the engine's `Event::Stage`, sent as
/// it starts; `vidlm run` prints them on stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Decoding the media (FFmpeg) and preprocessing: template, tokens, pixels.
    Preprocess {
        /// Conversations in the call.
        conversations: usize,
    },
    /// Running the vision graphs.
    Vision {
        /// Images to encode.
        images: usize,
        /// Videos to encode.
        videos: usize,
    },
    /// The prefill pass over the prompt (the longest sequence of the batch).
    Prefill {
        /// Tokens of the longest prompt.
        prompt_tokens: usize,
    },
}

/// Wall-clock times of a request's stages — the one timings type of vidlm, filled by the serving
/// engine (`vidlm-engine`, as its `RequestTimings`) from the request's arrival.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timings {
    /// Waiting for a media worker (the engine).
    pub queue: Duration,
    /// Loading (reading, downloading, hashing) and decoding media (FFmpeg, frame sampling);
    /// zero for items from the engine's vision cache.
    pub media: Duration,
    /// Preprocessing: template, tokenization, resize/normalize (excluding `media`).
    pub preprocess: Duration,
    /// Vision graphs and host-side feature steps (items not in the engine's vision cache).
    pub vision: Duration,
    /// Prepared, waiting for the prefill to start (the engine).
    pub wait_prefill: Duration,
    /// Token embedding and feature merge of the prompt.
    pub embed: Duration,
    /// Prefill decoder passes (all chunks).
    pub prefill: Duration,
    /// Prefill chunks (the engine).
    pub prefill_chunks: usize,
    /// Arrival to the first token (the engine).
    pub first_token: Duration,
    /// Each decoder pass after the prefill's that gave this request a token (a batched step's
    /// whole duration): one fewer than the tokens generated.
    pub decode_steps: Vec<Duration>,
    /// Arrival to the end (the engine).
    pub total: Duration,
    /// Media items served from the vision cache (the engine).
    pub cache_hits: usize,
    /// Media items decoded and encoded (the engine).
    pub cache_misses: usize,
}

impl Timings {
    /// Mean time per decode step.
    pub fn per_token(&self) -> Duration {
        if self.decode_steps.is_empty() {
            Duration::ZERO
        } else {
            self.decode_steps.iter().sum::<Duration>() / self.decode_steps.len() as u32
        }
    }

    /// Tokens per second of decoding, for one row: one token per decode step (prefill excluded;
    /// the first token comes from the prefill).
    pub fn tokens_per_second(&self) -> f64 {
        let t: Duration = self.decode_steps.iter().sum();
        if t.is_zero() {
            0.0
        } else {
            self.decode_steps.len() as f64 / t.as_secs_f64()
        }
    }
}

/// The file set a family needs, for the chosen precisions (from the family's row of the table:
/// `video_encoder` and `image_newline` where the family uses them; external weights optional).
pub fn required_files(family: Family, precisions: &Precisions) -> FileSet {
    let spec = family.spec();
    let mut files = base_files(precisions);
    let video = Graph::VideoEncoder.file(precisions.of(Graph::VideoEncoder));
    match spec.video_encoder {
        GraphUse::Required => files.required.push(video),
        GraphUse::Optional => files.optional.push(video),
        GraphUse::Unused => {}
    }
    if spec.image_newline {
        files.required.push(NEWLINE_FILE.into());
    }
    files.add_external_data();
    files
}

/// Where the `image_newline` weights of the export live.
const NEWLINE_FILE: &str = "onnx/image_newline.safetensors";

/// The configs and the three graphs every family needs.
fn base_files(precisions: &Precisions) -> FileSet {
    let mut required: Vec<String> = hub::CONFIG_FILES.iter().map(|s| s.to_string()).collect();
    required.extend(
        [Graph::VisionEncoder, Graph::EmbedTokens, Graph::DecoderModelMerged]
            .map(|g| g.file(precisions.of(g))),
    );
    let mut optional: Vec<String> = hub::OPTIONAL_FILES.iter().map(|s| s.to_string()).collect();
    optional.push(vidlm_model::manifest::MANIFEST_FILE.into());
    FileSet { required, optional }
}

/// What to fetch before the family is known (hub ids): every family's files, the
/// family-specific ones optional; [`required_files`] is checked once `config.json` is read.
fn candidate_files(precisions: &Precisions) -> FileSet {
    let mut files = base_files(precisions);
    files.optional.push(Graph::VideoEncoder.file(precisions.of(Graph::VideoEncoder)));
    files.optional.push(NEWLINE_FILE.into());
    files.add_external_data();
    files
}

/// A loaded model: processor, vision graphs, language model.
pub struct Pipeline {
    dir: PathBuf,
    precisions: ResolvedPrecisions,
    processor: Processor,
    vision: VisionEncoder,
    lm: LanguageModel,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("dir", &self.dir)
            .field("family", &self.vision.family())
            .finish()
    }
}

impl Pipeline {
    /// Loads a model from a directory or a hub id (`owner/name`, through the Hugging Face
    /// cache). The directory is read once; every file the family needs is checked before any
    /// graph is loaded.
    pub fn from_pretrained(model: &str, opts: &PipelineOptions) -> Result<Self, PipelineError> {
        let dir = resolve(model, &candidate_files(&opts.precisions), &opts.hub)?;
        let files = ModelFiles::read(&dir)?;
        let family = files.family()?;
        // Each graph at the nearest precision the export holds (q4 -> q8 -> fp32, ...).
        let mut precisions = files.resolve_precisions(&opts.precisions);
        if opts.uses_int8_compute() {
            precisions = files.prefer_int8(precisions);
        }
        for f in required_files(family, &precisions.used).required {
            if !dir.join(&f).is_file() {
                return Err(PipelineError::MissingFile { model: model.to_string(), file: f });
            }
        }
        let video_opts =
            vidlm_video_io::OpenOptions { decode_device: opts.decode_device, ..Default::default() };
        let processor = Processor::from_files(&files)?
            .with_loader(Arc::new(VideoIoLoader { opts: video_opts }));
        let vision = VisionEncoder::from_files(
            &files,
            &VisionOptions {
                session: opts.session.clone(),
                max_batch: opts.vision_max_batch,
                precision: precisions.used.vision,
            },
        )?;
        let lm_opts = LmOptions {
            session: opts.session.clone(),
            embed_precision: precisions.used.embed,
            decoder_precision: precisions.used.decoder,
            embed_in_session: opts.embed_in_session,
        };
        // The processor's tokenizer is the model's; the LM streams text with it.
        let lm = LanguageModel::from_files(&files, &lm_opts, Some(processor.tokenizer().clone()))?;
        tracing::info!(model, dir = %dir.display(), %family, %precisions, provider = %lm.sessions().provider(), "pipeline loaded");
        Ok(Pipeline { dir, precisions, processor, vision, lm })
    }

    /// The model directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The precisions asked for and the ones each graph runs at (a graph the export does not
    /// hold at the asked precision uses the nearest one along the fallback chain; its `Display`
    /// is the one-line summary `vidlm` prints).
    pub fn precisions(&self) -> ResolvedPrecisions {
        self.precisions
    }

    /// The model family.
    pub fn family(&self) -> Family {
        self.processor.family()
    }

    /// The processor.
    pub fn processor(&self) -> &Processor {
        &self.processor
    }

    /// Execution provider of the language model.
    pub fn provider(&self) -> Provider {
        self.lm.sessions().provider()
    }

    /// Why CUDA was not used although it was asked for (`allow_cpu_fallback`): the model runs on
    /// the CPU.
    pub fn cuda_fallback(&self) -> Option<&str> {
        self.lm.sessions().cuda_fallback()
    }

    /// Why CUDA graph capture of the decode step was asked for and is off.
    pub fn cuda_graph_off(&self) -> Option<&str> {
        self.lm.sessions().cuda_graph_off()
    }

    /// The language model.
    pub fn language_model(&mut self) -> &mut LanguageModel {
        &mut self.lm
    }

    /// The loaded parts, for a caller that schedules them itself (the serving engine runs the
    /// processor and vision on media workers and the language model on its decode loop).
    pub fn into_parts(self) -> (Processor, VisionEncoder, LanguageModel) {
        (self.processor, self.vision, self.lm)
    }
}

/// Turns the processor's hand-off into one [`Sequence`] per conversation: runs the vision graphs
/// over every image (packed by the patch grid the processor recorded) and video, and gives each
/// conversation its unpadded ids and the feature rows of its own media, in order
/// ([`sequence_from_features`], with the M-RoPE `rule` of models that have one:
/// `LanguageModel::mrope_rule`). The serving engine runs the same steps one media item at a time
/// ([`vision_inputs`], [`features_of_blocks`], [`sequence_from_features`]), skipping the items its
/// vision cache has.
pub fn sequences_from_inputs(
    vision: &mut VisionEncoder,
    inputs: &ProcessedInputs,
    rule: Option<&MropeRule>,
) -> Result<Vec<Sequence>, PipelineError> {
    let mut images = image_features(vision, inputs)?.into_iter();
    let mut videos = video_features(vision, inputs)?.into_iter();
    inputs
        .conversations
        .iter()
        .map(|conv| {
            let image_parts = blocks_to_features(images.by_ref().take(conv.images.len()))?;
            let video_parts = blocks_to_features(videos.by_ref().take(conv.videos))?;
            sequence_from_features(
                conv,
                rule,
                &image_parts.iter().collect::<Vec<_>>(),
                &video_parts.iter().collect::<Vec<_>>(),
            )
        })
        .collect()
}

/// One conversation's [`Sequence`]: its unpadded ids, and the feature rows of its images (in
/// order; for families that send a video as frames, those frames' rows in the video's place) and
/// of its videos, each concatenated (with their DeepStack levels, where the vision graph gives
/// them). Every part must have the same width. With an M-RoPE `rule`, the sequence's 3-row
/// positions: `vidlm_model::mrope::rope_index` over its ids and its images' and videos' grids
/// (and `second_per_grid_ts`) — the one place the rope index is computed.
pub fn sequence_from_features(
    conv: &ConversationInputs,
    rule: Option<&MropeRule>,
    image_parts: &[&Features],
    video_parts: &[&Features],
) -> Result<Sequence, PipelineError> {
    let positions = match rule {
        Some(rule) => Some(mrope_positions(rule, conv)?),
        None => None,
    };
    Ok(Sequence {
        input_ids: conv.input_ids.clone(),
        image_features: join_features(image_parts)?,
        video_features: join_features(video_parts)?,
        positions,
    })
}

/// The rope index of one unpadded conversation (batch 1, every token attended).
fn mrope_positions(
    rule: &MropeRule,
    conv: &ConversationInputs,
) -> Result<MropePositions, PipelineError> {
    let thw = |(t, h, w): (u32, u32, u32)| [i64::from(t), i64::from(h), i64::from(w)];
    let images = conv
        .images
        .iter()
        .map(|g| {
            g.thw.map(thw).ok_or_else(|| {
                PipelineError::Internal("an image without its patch grid (thw)".into())
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let videos: Vec<[i64; 3]> = conv.video_grids.iter().map(|g| thw(g.thw)).collect();
    if videos.len() != conv.videos {
        return Err(PipelineError::Internal(format!(
            "{} video grids for {} videos",
            videos.len(),
            conv.videos
        )));
    }
    let seconds: Vec<f32> = conv.video_grids.iter().map(|g| g.second_per_grid_t).collect();
    let mask = vec![1i64; conv.input_ids.len()];
    rope_index(rule, &conv.input_ids, &mask, 1, &images, &videos, Some(&seconds))
        .map_err(|e| PipelineError::Internal(format!("rope index: {e}")))
}

/// The parts concatenated (`None` for none); parts of different widths are an internal error.
fn join_features(parts: &[&Features]) -> Result<Option<Features>, PipelineError> {
    let Some(first) = parts.first() else { return Ok(None) };
    if parts.iter().any(|p| p.dim() != first.dim()) {
        return Err(PipelineError::Internal("feature blocks of different widths".into()));
    }
    Ok(Some(Features::concat(parts.iter().copied())?))
}

fn blocks_to_features(
    blocks: impl Iterator<Item = FeatureBlock>,
) -> Result<Vec<Features>, PipelineError> {
    blocks
        .map(|b| {
            let f = Features::new(b.data, b.dim)?;
            Ok(match b.deepstack {
                Some(d) => f.with_deepstack(d.levels, d.data)?,
                None => f,
            })
        })
        .collect()
}

/// Checks that the processor's patches have the vision graph's input size.
fn check_patch_size(h: usize, w: usize, size: usize) -> Result<(), PipelineError> {
    if (h, w) == (size, size) {
        return Ok(());
    }
    Err(ModelError::InvalidField {
        file: "preprocessor_config.json".into(),
        field: "size".into(),
        message: format!("the processor makes {h}x{w} patches, the vision graph (config.json vision_config) takes {size}x{size}"),
    }
    .into())
}

/// The vision graphs' inputs of a processed batch, borrowed from it: one [`ImagePixels`] per
/// image (packed by the patch grid the processor recorded) and one [`VideoPixels`] per video, in
/// order. The serving engine uses it to run the vision graphs only for media its cache lacks.
pub fn vision_inputs<'a>(
    vision: &VisionEncoder,
    inputs: &'a ProcessedInputs,
) -> Result<(Vec<ImagePixels<'a>>, Vec<VideoPixels<'a>>), PipelineError> {
    Ok((image_pixels(vision, inputs)?, video_pixels(vision, inputs)?))
}

fn image_pixels<'a>(
    vision: &VisionEncoder,
    inputs: &'a ProcessedInputs,
) -> Result<Vec<ImagePixels<'a>>, PipelineError> {
    let grids: Vec<_> = inputs.image_grids().copied().collect();
    let Some(pv) = &inputs.pixel_values else {
        return if grids.is_empty() {
            Ok(Vec::new())
        } else {
            Err(PipelineError::Internal(format!("{} images but no pixel_values", grids.len())))
        };
    };
    if vision.spec().image_layout.is_patchified() {
        let thw = grid_rows(inputs.image_grid_thw.as_ref(), "image_grid_thw")?;
        if thw.len() != grids.len() {
            return Err(PipelineError::Internal(format!(
                "image_grid_thw holds {} images, the conversations {}",
                thw.len(),
                grids.len()
            )));
        }
        let parts = patch_rows(pv, &thw, "pixel_values")?;
        return Ok(parts
            .into_iter()
            .zip(thw)
            .zip(&grids)
            .map(|((pixel_values, g), grid)| ImagePixels {
                pixel_values,
                grid: *grid,
                grid_thw: Some(g),
            })
            .collect());
    }
    let size = vision.image_size();
    let per = 3 * size * size;
    let (n, max_patches) = match *pv.shape() {
        [n, p, 3, h, w] => check_patch_size(h, w, size).map(|_| (n, p))?,
        [n, 3, h, w] => check_patch_size(h, w, size).map(|_| (n, 1))?,
        ref other => {
            return Err(PipelineError::Internal(format!("pixel_values of shape {other:?}")))
        }
    };
    if n != grids.len() {
        return Err(PipelineError::Internal(format!(
            "pixel_values holds {n} images, the conversations {}",
            grids.len()
        )));
    }
    let data = pv
        .as_slice()
        .ok_or_else(|| PipelineError::Internal("pixel_values is not contiguous".into()))?;
    grids
        .iter()
        .enumerate()
        .map(|(i, grid)| {
            let patches = grid.num_patches();
            if patches > max_patches {
                return Err(PipelineError::Internal(format!(
                    "image {i} has {patches} patches, pixel_values holds {max_patches}"
                )));
            }
            let start = i * max_patches * per;
            let pixel_values = data.get(start..start + patches * per).ok_or_else(|| {
                PipelineError::Internal("pixel_values is shorter than its shape".into())
            })?;
            Ok(ImagePixels { pixel_values, grid: *grid, grid_thw: None })
        })
        .collect()
}

fn video_pixels<'a>(
    vision: &VisionEncoder,
    inputs: &'a ProcessedInputs,
) -> Result<Vec<VideoPixels<'a>>, PipelineError> {
    let Some(pv) = &inputs.pixel_values_videos else { return Ok(Vec::new()) };
    if vision.spec().image_layout.is_patchified() {
        let thw = grid_rows(inputs.video_grid_thw.as_ref(), "video_grid_thw")?;
        let parts = patch_rows(pv, &thw, "pixel_values_videos")?;
        return Ok(parts
            .into_iter()
            .zip(thw)
            .map(|(pixel_values, g)| VideoPixels { pixel_values, frames: g[0], grid_thw: Some(g) })
            .collect());
    }
    let size = vision.image_size();
    let [n, t, 3, h, w] = *pv.shape() else {
        return Err(PipelineError::Internal(format!(
            "pixel_values_videos of shape {:?}",
            pv.shape()
        )));
    };
    check_patch_size(h, w, size)?;
    let data = pv
        .as_slice()
        .ok_or_else(|| PipelineError::Internal("pixel_values_videos is not contiguous".into()))?;
    let per = t * 3 * size * size;
    Ok(data
        .chunks_exact(per.max(1))
        .take(n)
        .map(|pixel_values| VideoPixels { pixel_values, frames: t, grid_thw: None })
        .collect())
}

/// The `(t, h, w)` rows of a processor's `image_grid_thw` / `video_grid_thw`.
fn grid_rows(
    a: Option<&ndarray::Array2<i64>>,
    name: &str,
) -> Result<Vec<[usize; 3]>, PipelineError> {
    let a =
        a.ok_or_else(|| PipelineError::Internal(format!("patchified pixels without {name}")))?;
    if a.ncols() != 3 {
        return Err(PipelineError::Internal(format!("{name} of shape {:?}", a.shape())));
    }
    a.rows()
        .into_iter()
        .map(|r| {
            let v = |i: usize| {
                usize::try_from(r[i])
                    .map_err(|_| PipelineError::Internal(format!("{name} holds {}", r[i])))
            };
            Ok([v(0)?, v(1)?, v(2)?])
        })
        .collect()
}

/// Each item's rows of a patchified pixel tensor `[patches, C·T·P·P]`: `t·h·w` rows per grid, in
/// order; the grids must cover the tensor exactly.
fn patch_rows<'a>(
    pv: &'a ndarray::ArrayD<f32>,
    thw: &[[usize; 3]],
    name: &str,
) -> Result<Vec<&'a [f32]>, PipelineError> {
    let [rows, width] = *pv.shape() else {
        return Err(PipelineError::Internal(format!("{name} of shape {:?}", pv.shape())));
    };
    let need: usize = thw.iter().map(|g| g[0] * g[1] * g[2]).sum();
    if need != rows {
        return Err(PipelineError::Internal(format!(
            "{name} holds {rows} patch rows, the grids {thw:?} cover {need}"
        )));
    }
    let data = pv
        .as_slice()
        .ok_or_else(|| PipelineError::Internal(format!("{name} is not contiguous")))?;
    let mut start = 0;
    Ok(thw
        .iter()
        .map(|g| {
            let n = g[0] * g[1] * g[2] * width;
            let part = &data[start..start + n];
            start += n;
            part
        })
        .collect())
}

/// Feature rows of every image of the batch, in order.
fn image_features(
    vision: &mut VisionEncoder,
    inputs: &ProcessedInputs,
) -> Result<Vec<FeatureBlock>, PipelineError> {
    let pixels = image_pixels(vision, inputs)?;
    Ok(vision.image_features(&pixels)?)
}

/// Feature rows of every video of the batch, in order.
fn video_features(
    vision: &mut VisionEncoder,
    inputs: &ProcessedInputs,
) -> Result<Vec<FeatureBlock>, PipelineError> {
    let vids = video_pixels(vision, inputs)?;
    Ok(vision.video_features(&vids)?)
}

/// The feature rows of one media item's vision outputs (an image's block, a video's, or the
/// blocks of a video's frames), concatenated; `None` for no blocks.
pub fn features_of_blocks(
    blocks: impl IntoIterator<Item = FeatureBlock>,
) -> Result<Option<Features>, PipelineError> {
    let parts = blocks_to_features(blocks.into_iter())?;
    join_features(&parts.iter().collect::<Vec<_>>())
}
