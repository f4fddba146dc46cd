//! # vidlm-pipeline — chat messages in, text out
//!
//! Wires the vidlm crates into one call: [`Pipeline::from_pretrained`] takes a model directory
//! (vidlm's ONNX layout: the Hugging Face files plus `onnx/`) or a hub id, detects the family,
//! checks every file it will need *before* loading anything, and loads the processor, the vision
//! graphs and the language model. [`Pipeline::generate`] then runs
//!
//! 1. media decoding (FFmpeg through `vidlm-video-io`, frame sampling by `num_frames` or `fps`),
//! 2. preprocessing, chat template, tokenization and placeholder expansion (`vidlm-processor`),
//! 3. the vision graphs and host-side steps (`vidlm-vision`),
//! 4. prefill and decoding with the KV cache (`vidlm-decoder`),
//!
//! and returns the text with per-stage [`Timings`]. [`Pipeline::stream`] yields text pieces as
//! they are generated. Several conversations can be generated as one left-padded batch
//! ([`Pipeline::generate_batch`]).
//!
//! The conversations come parsed ([`Conversation`], e.g. from the HF chat-messages JSON with
//! [`Conversation::from_json`]); the model directory is read once (`vidlm_model::ModelFiles`) and
//! its parsed configs handed to the processor, vision and the decoder. Per conversation, the
//! processor's hand-off (unpadded ids, each image's patch grid) goes to vision and the decoder;
//! the batch is padded once, by the decoder.
//!
//! ```
//! use vidlm_pipeline::{Conversation, GenerateOptions, Pipeline, PipelineOptions, Sampling};
//!
//! let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
//! let mut p = Pipeline::from_pretrained(&format!("{root}/assets/demo-model"), &PipelineOptions::default())?;
//! let messages = serde_json::json!([{"role": "user", "content": [
//!     {"type": "video", "video": "assets/demo.mp4"},
//!     {"type": "text", "text": "What happens in this video?"}]}]);
//! let conversation = Conversation::from_json(&messages, Some(std::path::Path::new(root)))?;
//! let mut opts = GenerateOptions::default();
//! opts.generation.max_new_tokens = Some(8);
//! opts.process.sampling = Sampling::NumFrames(8);
//! let out = p.generate(&conversation, &opts)?;
//! println!("{}\n{:.1} tokens/s", out.text, out.timings.tokens_per_second());
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
mod loader;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use hub::{resolve, FileSet, HubOptions};
pub use loader::TimedLoader;
pub use vidlm_decoder::{DecoderError, FinishReason};
use vidlm_decoder::{
    Features, GenerationOptions, LanguageModel, LmOptions, RowOutput, Sequence, TokenEvent,
};
use vidlm_model::Graph;
pub use vidlm_model::{
    ErrorKind, Family, GraphUse, ModelError, ModelFiles, Precision, Precisions, ResolvedPrecisions,
    Sampling,
};
pub use vidlm_ort::{Device, MemoryOptions, Prepack, Provider, SessionOptions};
pub use vidlm_processor::{
    Conversation, ImageInput, Part, ProcessOptions, ProcessedInputs, Processor, ProcessorError,
    VideoInput, VideoIoLoader,
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
    /// Release the vision sessions after each call's vision stage (they are loaded again by the
    /// next call that has images or videos), so their weights are not resident while the
    /// language model runs. Lowers peak memory for one-shot use (`vidlm run` sets it); a
    /// long-running server keeps them loaded.
    pub release_vision_after_use: bool,
    /// Run `embed_tokens` in an ONNX Runtime session even where its rows can be read from the
    /// file (see `vidlm_decoder::EmbeddingTable`).
    pub embed_in_session: bool,
    /// Run graphs that would run at q8 through their `int8` variant (int8 activations, integer
    /// arithmetic) where the export has one: `None` = where the CPU has VNNI or AMX
    /// (`vidlm_ort::cpu::CpuFeatures::int8_dot`) and the session runs on the CPU.
    pub int8_compute: Option<bool>,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            session: SessionOptions::default(),
            vision_max_batch: 8,
            precisions: Precisions::default(),
            hub: HubOptions::default(),
            release_vision_after_use: false,
            embed_in_session: false,
            int8_compute: None,
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

/// Options of one generation call.
#[derive(Debug, Clone, Default)]
pub struct GenerateOptions {
    /// Decoding options (over `generation_config.json`).
    pub generation: GenerationOptions,
    /// Processor options (frame sampling, generation prompt, resize backends).
    pub process: ProcessOptions,
    /// Called as each slow stage starts (for progress display).
    pub progress: Option<Progress>,
}

/// A stage of a call that can take more than a moment, reported to [`Progress`] as it starts.
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

/// A progress callback: called with each [`Stage`] as it starts.
#[derive(Clone)]
pub struct Progress(pub Arc<dyn Fn(Stage) + Send + Sync>);

impl Progress {
    /// Wraps a callback.
    pub fn new(f: impl Fn(Stage) + Send + Sync + 'static) -> Self {
        Progress(Arc::new(f))
    }

    fn report(opts: &GenerateOptions, stage: Stage) {
        if let Some(p) = &opts.progress {
            (p.0)(stage);
        }
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress(..)")
    }
}

/// Wall-clock times of a request's stages — the one timings type of vidlm: the pipeline's calls
/// fill what they run, and the serving engine (`vidlm-engine`, as its `RequestTimings`) all of
/// it, from the request's arrival.
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

/// The result of [`Pipeline::generate`].
#[derive(Debug, Clone)]
pub struct Output {
    /// The generated text (special tokens skipped).
    pub text: String,
    /// Token ids and finish reason.
    pub row: RowOutput,
    /// Stage timings.
    pub timings: Timings,
}

/// The result of [`Pipeline::generate_batch`].
#[derive(Debug, Clone)]
pub struct BatchOutput {
    /// One per conversation, in order.
    pub rows: Vec<RowOutput>,
    /// Stage timings of the whole batch.
    pub timings: Timings,
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
    loader: Arc<TimedLoader>,
    vision: VisionEncoder,
    lm: LanguageModel,
    release_vision: bool,
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
        let loader = Arc::new(TimedLoader::new(Arc::new(VideoIoLoader::default())));
        let processor = Processor::from_files(&files)?.with_loader(loader.clone());
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
        Ok(Pipeline {
            dir,
            precisions,
            processor,
            loader,
            vision,
            lm,
            release_vision: opts.release_vision_after_use,
        })
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

    /// The language model.
    pub fn language_model(&mut self) -> &mut LanguageModel {
        &mut self.lm
    }

    /// The loaded parts, for a caller that schedules them itself (the serving engine runs the
    /// processor and vision on media workers and the language model on its decode loop).
    pub fn into_parts(self) -> (Processor, VisionEncoder, LanguageModel) {
        (self.processor, self.vision, self.lm)
    }

    /// Answers one conversation.
    pub fn generate(
        &mut self,
        conversation: &Conversation,
        opts: &GenerateOptions,
    ) -> Result<Output, PipelineError> {
        let mut out = self.generate_batch(std::slice::from_ref(conversation), opts)?;
        let row = out.rows.pop().ok_or_else(|| {
            PipelineError::Internal("the batch of one conversation returned no row".into())
        })?;
        Ok(Output { text: row.text.clone().unwrap_or_default(), row, timings: out.timings })
    }

    /// Answers several conversations as one left-padded batch.
    pub fn generate_batch(
        &mut self,
        conversations: &[Conversation],
        opts: &GenerateOptions,
    ) -> Result<BatchOutput, PipelineError> {
        let (seqs, generation, mut timings) = self.prepare(conversations, opts)?;
        Progress::report(opts, Stage::Prefill { prompt_tokens: longest(&seqs) });
        let res = self.lm.generate(&seqs, &generation)?;
        timings.embed = res.timings.embed;
        timings.prefill = res.timings.prefill;
        timings.decode_steps = res.timings.decode_steps;
        Ok(BatchOutput { rows: res.rows, timings })
    }

    /// Streams the answer to one conversation as text pieces.
    pub fn stream(
        &mut self,
        conversation: &Conversation,
        opts: &GenerateOptions,
    ) -> Result<TextStream<'_>, PipelineError> {
        let (seqs, generation, timings) = self.prepare(std::slice::from_ref(conversation), opts)?;
        Progress::report(opts, Stage::Prefill { prompt_tokens: longest(&seqs) });
        let inner = self.lm.stream(&seqs, &generation)?;
        Ok(TextStream { inner, timings })
    }

    /// Conversations → model inputs → vision features → one [`Sequence`] per conversation, and
    /// the generation options with the processor's pad id (the batch is padded with it).
    fn prepare(
        &mut self,
        conversations: &[Conversation],
        opts: &GenerateOptions,
    ) -> Result<(Vec<Sequence>, GenerationOptions, Timings), PipelineError> {
        self.loader.reset();
        Progress::report(opts, Stage::Preprocess { conversations: conversations.len() });
        let t0 = Instant::now();
        let inputs = self.processor.process(conversations, &opts.process)?;
        let total = t0.elapsed();
        let decode = self.loader.elapsed();
        let images = inputs.image_token_counts.len();
        let videos = inputs.video_token_counts.len();
        Progress::report(opts, Stage::Vision { images, videos });
        let t1 = Instant::now();
        let seqs = sequences_from_inputs(&mut self.vision, &inputs);
        if self.release_vision {
            self.vision.release();
        }
        let seqs = seqs?;
        let vision = t1.elapsed();
        let mut generation = opts.generation.clone();
        generation.pad_token_id = generation.pad_token_id.or(Some(inputs.pad_token_id));
        Ok((
            seqs,
            generation,
            Timings {
                media: decode,
                preprocess: total.saturating_sub(decode),
                vision,
                ..Default::default()
            },
        ))
    }
}

/// The longest prompt of a batch (what the prefill pass covers per row).
fn longest(seqs: &[Sequence]) -> usize {
    seqs.iter().map(|s| s.input_ids.len()).max().unwrap_or(0)
}

/// Streamed text of one conversation ([`Pipeline::stream`]); also gives the token events.
pub struct TextStream<'a> {
    inner: vidlm_decoder::Generation<'a>,
    timings: Timings,
}

impl std::fmt::Debug for TextStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextStream").finish()
    }
}

impl TextStream<'_> {
    /// Stops generating.
    pub fn cancel(&mut self) {
        self.inner.cancel();
    }

    /// The next token event (with its text piece), or `None` at the end.
    pub fn next_event(&mut self) -> Option<Result<TokenEvent, PipelineError>> {
        self.inner.next().map(|r| r.map_err(PipelineError::from))
    }

    /// Stage timings so far: decode, preprocess, vision, embed and prefill (both done when the
    /// stream is created), and the decode steps run so far.
    pub fn timings(&self) -> Timings {
        let lm = self.inner.timings();
        Timings {
            embed: lm.embed,
            prefill: lm.prefill,
            decode_steps: lm.decode_steps.clone(),
            ..self.timings.clone()
        }
    }
}

impl Iterator for TextStream<'_> {
    type Item = Result<String, PipelineError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_event().map(|r| r.map(|e| e.text))
    }
}

/// Turns the processor's hand-off into one [`Sequence`] per conversation: runs the vision graphs
/// over every image (packed by the patch grid the processor recorded) and video, and gives each
/// conversation its unpadded ids and the feature rows of its own media, in order
/// ([`sequence_from_features`]). The serving engine runs the same steps one media item at a time
/// ([`vision_inputs`], [`features_of_blocks`], [`sequence_from_features`]), skipping the items its
/// vision cache has.
pub fn sequences_from_inputs(
    vision: &mut VisionEncoder,
    inputs: &ProcessedInputs,
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
                conv.input_ids.clone(),
                &image_parts.iter().collect::<Vec<_>>(),
                &video_parts.iter().collect::<Vec<_>>(),
            )
        })
        .collect()
}

/// One conversation's [`Sequence`]: its unpadded ids, and the feature rows of its images (in
/// order; for families that send a video as frames, those frames' rows in the video's place) and
/// of its videos, each concatenated. Every part must have the same width.
pub fn sequence_from_features(
    input_ids: Vec<i64>,
    image_parts: &[&Features],
    video_parts: &[&Features],
) -> Result<Sequence, PipelineError> {
    Ok(Sequence {
        input_ids,
        image_features: join_features(image_parts)?,
        video_features: join_features(video_parts)?,
    })
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
    blocks.map(|b| Ok(Features::new(b.data, b.dim)?)).collect()
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
            Ok(ImagePixels { pixel_values, grid: *grid })
        })
        .collect()
}

fn video_pixels<'a>(
    vision: &VisionEncoder,
    inputs: &'a ProcessedInputs,
) -> Result<Vec<VideoPixels<'a>>, PipelineError> {
    let Some(pv) = &inputs.pixel_values_videos else { return Ok(Vec::new()) };
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
        .map(|pixel_values| VideoPixels { pixel_values, frames: t })
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
