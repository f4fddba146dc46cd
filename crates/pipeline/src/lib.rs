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
//! ```
//! use vidlm_pipeline::{GenerateOptions, Pipeline, PipelineOptions};
//!
//! let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
//! let mut p = Pipeline::from_pretrained(&format!("{root}/assets/demo-model"), &PipelineOptions::default())?;
//! let messages = serde_json::json!([{"role": "user", "content": [
//!     {"type": "video", "video": format!("{root}/assets/demo.mp4")},
//!     {"type": "text", "text": "What happens in this video?"}]}]);
//! let mut opts = GenerateOptions::default();
//! opts.generation.max_new_tokens = Some(8);
//! opts.process.sampling.num_frames = Some(8);
//! let out = p.generate(&messages, &opts)?;
//! println!("{}\n{:.1} tokens/s", out.text, out.timings.tokens_per_second());
//! # Ok::<(), vidlm_pipeline::PipelineError>(())
//! ```
//!
//! A runnable check of the pieces without a model: the file set a family needs.
//!
//! ```
//! let files = vidlm_pipeline::required_files("llava_next_video", "", "", "").unwrap();
//! assert!(files.required.contains(&"onnx/video_encoder.onnx".to_string()));
//! assert!(files.required.contains(&"onnx/image_newline.safetensors".to_string()));
//! assert!(vidlm_pipeline::required_files("bert", "", "", "").is_err());
//! ```

mod hub;
mod loader;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ndarray::ArrayD;
pub use hub::{resolve, FileSet, HubOptions};
pub use loader::TimedLoader;
pub use vidlm_processor::VideoIoLoader;
use vidlm_decoder::{Features, GenerationOptions, LanguageModel, LmOptions, RowOutput, Sequence, TokenEvent};
pub use vidlm_decoder::{DecoderError, FinishReason};
pub use vidlm_ort::{Device, Provider, SessionOptions};
use vidlm_processor::processor::{ProcessOptions, ProcessedInputs};
use vidlm_processor::{Conversation, Processor, ProcessorError};
use vidlm_vision::anyres::anyres_grid_shape;
use vidlm_vision::{Family, ImagePixels, VideoPixels, VisionEncoder, VisionError, VisionOptions};

/// Errors of the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A file the model needs is missing (local directory or hub).
    #[error("model {model}: missing {file}")]
    MissingFile {
        /// The model directory or hub id.
        model: String,
        /// The file (and why it could not be found).
        file: String,
    },
    /// The model is not one of the supported families.
    #[error("unsupported model: {0}")]
    Unsupported(String),
    /// Messages, media decoding or preprocessing failed.
    #[error(transparent)]
    Processor(#[from] ProcessorError),
    /// The vision graphs failed.
    #[error(transparent)]
    Vision(#[from] VisionError),
    /// The language model failed.
    #[error(transparent)]
    Decoder(#[from] DecoderError),
    /// Reading config.json failed.
    #[error("{path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// How to load a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineOptions {
    /// Execution provider, threads (shared by every graph).
    pub session: SessionOptions,
    /// Most images/frames per vision call.
    pub vision_max_batch: usize,
    /// Precision suffix of the vision graphs (`""` fp32, `"_fp16"`, …).
    pub vision_suffix: String,
    /// Precision suffix of `embed_tokens`.
    pub embed_suffix: String,
    /// Precision suffix of `decoder_model_merged`.
    pub decoder_suffix: String,
    /// Hub look-up for ids.
    pub hub: HubOptions,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            session: SessionOptions::default(),
            vision_max_batch: 8,
            vision_suffix: String::new(),
            embed_suffix: String::new(),
            decoder_suffix: String::new(),
            hub: HubOptions::default(),
        }
    }
}

/// Options of one generation call.
#[derive(Debug, Clone, Default)]
pub struct GenerateOptions {
    /// Decoding options (over `generation_config.json`).
    pub generation: GenerationOptions,
    /// Processor options (frame sampling, generation prompt, resize backends).
    pub process: ProcessOptions,
    /// Directory that relative media paths are resolved against.
    pub base_dir: Option<PathBuf>,
    /// Called as each slow stage starts (for progress display).
    pub progress: Option<Progress>,
}

/// A stage of a call that can take more than a moment, reported to [`Progress`] as it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Decoding the media (FFmpeg) and preprocessing: template, tokens, pixels.
    Preprocess { conversations: usize },
    /// Running the vision graphs.
    Vision { images: usize, videos: usize },
    /// The prefill pass over the prompt (the longest sequence of the batch).
    Prefill { prompt_tokens: usize },
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

/// Wall-clock time of each stage of a call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timings {
    /// Media decoding (FFmpeg, frame sampling).
    pub decode: Duration,
    /// Preprocessing: template, tokenization, resize/normalize (excluding `decode`).
    pub preprocess: Duration,
    /// Vision graphs and host-side feature steps.
    pub vision: Duration,
    /// Token embedding and feature merge of the prompt.
    pub embed: Duration,
    /// The prefill pass.
    pub prefill: Duration,
    /// Each decode step.
    pub decode_steps: Vec<Duration>,
    /// Tokens generated (all rows).
    pub generated_tokens: usize,
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

    /// Generated tokens per second of decoding (prefill excluded; the first token comes from
    /// the prefill).
    pub fn tokens_per_second(&self) -> f64 {
        let t: Duration = self.decode_steps.iter().sum();
        if t.is_zero() {
            0.0
        } else {
            self.generated_tokens.saturating_sub(1) as f64 / t.as_secs_f64()
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

/// The file set a family needs, with precision suffixes.
pub fn required_files(model_type: &str, vision_suffix: &str, embed_suffix: &str, decoder_suffix: &str) -> Result<FileSet, PipelineError> {
    let family = Family::from_model_type(model_type).ok_or_else(|| PipelineError::Unsupported(format!("model_type `{model_type}`")))?;
    let mut required: Vec<String> = hub::CONFIG_FILES.iter().map(|s| s.to_string()).collect();
    required.push(format!("onnx/vision_encoder{vision_suffix}.onnx"));
    required.push(format!("onnx/embed_tokens{embed_suffix}.onnx"));
    required.push(format!("onnx/decoder_model_merged{decoder_suffix}.onnx"));
    let mut optional: Vec<String> = hub::OPTIONAL_FILES.iter().map(|s| s.to_string()).collect();
    match family {
        Family::VideoLlava | Family::NextVideo => required.push(format!("onnx/video_encoder{vision_suffix}.onnx")),
        Family::OneVision => optional.push(format!("onnx/video_encoder{vision_suffix}.onnx")),
        Family::Interleave => {}
    }
    if matches!(family, Family::OneVision | Family::NextVideo) {
        required.push("onnx/image_newline.safetensors".into());
    }
    // External weights of big graphs.
    let graphs: Vec<String> = required.iter().chain(optional.iter()).filter(|f| f.ends_with(".onnx")).cloned().collect();
    for g in graphs {
        optional.push(format!("{g}_data"));
        for i in 1..8 {
            optional.push(format!("{g}_data_{i}"));
        }
    }
    optional.push("onnx/vidlm_manifest.json".into());
    Ok(FileSet { required, optional })
}

fn model_type(dir: &Path) -> Result<String, PipelineError> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| PipelineError::Config { path: path.clone(), message: e.to_string() })?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| PipelineError::Config { path: path.clone(), message: e.to_string() })?;
    v.get("model_type")
        .and_then(|t| t.as_str())
        .map(str::to_string)
        .ok_or_else(|| PipelineError::Config { path, message: "no model_type".into() })
}

/// A loaded model: processor, vision graphs, language model.
pub struct Pipeline {
    dir: PathBuf,
    processor: Processor,
    loader: Arc<TimedLoader>,
    vision: VisionEncoder,
    lm: LanguageModel,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").field("dir", &self.dir).field("family", &self.vision.family()).finish()
    }
}

impl Pipeline {
    /// Loads a model from a directory or a hub id (`owner/name`, through the Hugging Face
    /// cache). Every required file is checked before any graph is loaded.
    pub fn from_pretrained(model: &str, opts: &PipelineOptions) -> Result<Self, PipelineError> {
        let cfg_only = FileSet { required: vec!["config.json".into()], optional: vec![] };
        let dir = resolve(model, &cfg_only, &opts.hub)?;
        let mt = model_type(&dir)?;
        let files = required_files(&mt, &opts.vision_suffix, &opts.embed_suffix, &opts.decoder_suffix)?;
        let dir = resolve(model, &files, &opts.hub)?;
        for f in &files.required {
            if !dir.join(f).is_file() {
                return Err(PipelineError::MissingFile { model: model.to_string(), file: f.clone() });
            }
        }
        let loader = Arc::new(TimedLoader::new(Arc::new(VideoIoLoader::default())));
        let processor = Processor::from_dir(&dir)?.with_loader(loader.clone());
        let vision = VisionEncoder::from_dir(
            &dir,
            &VisionOptions { session: opts.session.clone(), max_batch: opts.vision_max_batch, suffix: opts.vision_suffix.clone() },
        )?;
        let mut lm = LanguageModel::from_dir(
            &dir,
            &LmOptions { session: opts.session.clone(), embed_suffix: opts.embed_suffix.clone(), decoder_suffix: opts.decoder_suffix.clone() },
        )?;
        // The processor's tokenizer is the model's; the LM streams text with it.
        lm.set_tokenizer(Some(processor.tokenizer().clone()));
        tracing::info!(model, dir = %dir.display(), family = ?vision.family(), provider = %lm.sessions().provider(), "pipeline loaded");
        Ok(Pipeline { dir, processor, loader, vision, lm })
    }

    /// The model directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The model family.
    pub fn family(&self) -> Family {
        self.vision.family()
    }

    /// The processor.
    pub fn processor(&self) -> &Processor {
        &self.processor
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

    /// Answers one conversation (HF chat-messages JSON: a list of `{role, content}`).
    pub fn generate(&mut self, messages: &serde_json::Value, opts: &GenerateOptions) -> Result<Output, PipelineError> {
        let mut out = self.generate_batch(std::slice::from_ref(messages), opts)?;
        let row = out.rows.pop().ok_or_else(|| PipelineError::Unsupported("no output row".into()))?;
        Ok(Output { text: row.text.clone().unwrap_or_default(), row, timings: out.timings })
    }

    /// Answers several conversations as one left-padded batch.
    pub fn generate_batch(&mut self, conversations: &[serde_json::Value], opts: &GenerateOptions) -> Result<BatchOutput, PipelineError> {
        let (seqs, mut timings) = self.prepare(conversations, opts)?;
        Progress::report(opts, Stage::Prefill { prompt_tokens: longest(&seqs) });
        let res = self.lm.generate(&seqs, &opts.generation)?;
        timings.embed = res.timings.embed;
        timings.prefill = res.timings.prefill;
        timings.decode_steps = res.timings.decode_steps;
        timings.generated_tokens = res.generated_tokens;
        Ok(BatchOutput { rows: res.rows, timings })
    }

    /// Streams the answer to one conversation as text pieces.
    pub fn stream(&mut self, messages: &serde_json::Value, opts: &GenerateOptions) -> Result<TextStream<'_>, PipelineError> {
        let (seqs, timings) = self.prepare(std::slice::from_ref(messages), opts)?;
        Progress::report(opts, Stage::Prefill { prompt_tokens: longest(&seqs) });
        let inner = self.lm.stream(&seqs, &opts.generation)?;
        Ok(TextStream { inner, timings })
    }

    /// Messages → model inputs → vision features → one [`Sequence`] per conversation.
    fn prepare(&mut self, conversations: &[serde_json::Value], opts: &GenerateOptions) -> Result<(Vec<Sequence>, Timings), PipelineError> {
        let base = opts.base_dir.as_deref();
        let convs = conversations.iter().map(|m| Conversation::from_json(m, base)).collect::<Result<Vec<_>, _>>()?;
        self.loader.reset();
        Progress::report(opts, Stage::Preprocess { conversations: convs.len() });
        let t0 = Instant::now();
        let inputs = self.processor.process(&convs, &opts.process)?;
        let total = t0.elapsed();
        let decode = self.loader.elapsed();
        let images = inputs.image_token_counts.len();
        let videos = inputs.video_token_counts.len();
        Progress::report(opts, Stage::Vision { images, videos });
        let t1 = Instant::now();
        let seqs = sequences_from_inputs(&mut self.vision, &inputs, self.lm.placeholders())?;
        let vision = t1.elapsed();
        Ok((seqs, Timings { decode, preprocess: total.saturating_sub(decode), vision, ..Default::default() }))
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
            generated_tokens: self.inner.generated_tokens(),
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

fn dims(a: &ArrayD<f32>) -> Vec<usize> {
    a.shape().to_vec()
}

/// Turns the processor's batched model inputs into one [`Sequence`] per conversation: runs the
/// vision graphs over all images and videos (anyres patch counts from each image's size), then
/// hands each row the feature rows of its own placeholders (row-major over the batch, as
/// transformers' `masked_scatter`).
pub fn sequences_from_inputs(
    vision: &mut VisionEncoder,
    inputs: &ProcessedInputs,
    placeholders: vidlm_decoder::PlaceholderIds,
) -> Result<Vec<Sequence>, PipelineError> {
    let (b, w) = inputs.input_ids.dim();
    let mut rows: Vec<Vec<i64>> = Vec::with_capacity(b);
    for r in 0..b {
        rows.push((0..w).filter(|&c| inputs.attention_mask[[r, c]] != 0).map(|c| inputs.input_ids[[r, c]]).collect());
    }
    let size = vision.config().vision_config.image_size;
    let per = 3 * size * size;
    let image_feats = match &inputs.pixel_values {
        None => None,
        Some(pv) => {
            let shape = dims(pv);
            let data = pv.as_standard_layout();
            let data = data.as_slice().ok_or_else(|| PipelineError::Unsupported("pixel_values not contiguous".into()))?;
            let (n, max_p) = match shape.as_slice() {
                [n, p, 3, h, w2] if *h == size && *w2 == size => (*n, *p),
                [n, 3, h, w2] if *h == size && *w2 == size => (*n, 1),
                other => return Err(PipelineError::Unsupported(format!("pixel_values of shape {other:?} for image size {size}"))),
            };
            let pins = vision.config().image_grid_pinpoints.clone().unwrap_or_default();
            // OneVision multi-image mode: conversations with several images get one patch each.
            let mut single_patch = vec![false; n];
            if let Some(bni) = &inputs.batch_num_images {
                let mut i = 0usize;
                for &k in bni {
                    for _ in 0..k.max(0) {
                        if let Some(s) = single_patch.get_mut(i) {
                            *s = k != 1;
                        }
                        i += 1;
                    }
                }
            }
            let mut images = Vec::with_capacity(n);
            for i in 0..n {
                let (h, wd) = match &inputs.image_sizes {
                    Some(s) if s.nrows() > i => (s[[i, 0]].max(0) as usize, s[[i, 1]].max(0) as usize),
                    _ => (size, size),
                };
                let anyres = shape.len() == 5 && matches!(vision.family(), Family::OneVision | Family::NextVideo) && !single_patch[i];
                let patches = if anyres {
                    let (gh, gw) = anyres_grid_shape(h, wd, &pins, size)
                        .ok_or_else(|| PipelineError::Unsupported(format!("no anyres grid for a {h}x{wd} image")))?;
                    1 + gh * gw
                } else {
                    1
                };
                if patches > max_p {
                    return Err(PipelineError::Unsupported(format!("image {i} needs {patches} patches, pixel_values has {max_p}")));
                }
                let start = i * max_p * per;
                let px = data
                    .get(start..start + patches * per)
                    .ok_or_else(|| PipelineError::Unsupported("pixel_values shorter than its shape".into()))?;
                images.push(ImagePixels { pixel_values: px.to_vec(), num_patches: patches, image_size: (h, wd) });
            }
            let blocks = vision.image_features(&images)?;
            Some(concat(blocks)?)
        }
    };
    let video_feats = match &inputs.pixel_values_videos {
        None => None,
        Some(pv) => {
            let shape = dims(pv);
            let data = pv.as_standard_layout();
            let data = data.as_slice().ok_or_else(|| PipelineError::Unsupported("pixel_values_videos not contiguous".into()))?;
            let [n, t, 3, h, w2] = shape.as_slice() else {
                return Err(PipelineError::Unsupported(format!("pixel_values_videos of shape {shape:?}")));
            };
            if *h != size || *w2 != size {
                return Err(PipelineError::Unsupported(format!("video frames of {h}x{w2}, the vision graph takes {size}")));
            }
            let pv_per = t * per;
            let vids: Vec<VideoPixels> =
                (0..*n).map(|i| VideoPixels { pixel_values: data[i * pv_per..(i + 1) * pv_per].to_vec(), frames: *t }).collect();
            Some(concat(vision.video_features(&vids)?)?)
        }
    };
    let imgs = split_rows(&rows, placeholders.image_token_id, image_feats, "image")?;
    let vids = split_rows(&rows, placeholders.video_token_id, video_feats, "video")?;
    Ok(rows
        .into_iter()
        .zip(imgs)
        .zip(vids)
        .map(|((input_ids, image_features), video_features)| Sequence { input_ids, image_features, video_features })
        .collect())
}

fn concat(blocks: Vec<vidlm_vision::FeatureBlock>) -> Result<Features, PipelineError> {
    let dim = blocks.first().map(|b| b.dim).unwrap_or(1);
    let data: Vec<f32> = blocks.into_iter().flat_map(|b| b.data).collect();
    Features::new(data, dim).map_err(PipelineError::Decoder)
}

/// Splits the batch's features by each row's placeholder count (the total must match).
fn split_rows(rows: &[Vec<i64>], token: Option<i64>, feats: Option<Features>, kind: &'static str) -> Result<Vec<Option<Features>>, PipelineError> {
    let Some(f) = feats else { return Ok(vec![None; rows.len()]) };
    let counts: Vec<usize> = rows.iter().map(|r| token.map(|t| r.iter().filter(|&&x| x == t).count()).unwrap_or(0)).collect();
    let total: usize = counts.iter().sum();
    if total != f.rows() {
        return Err(PipelineError::Decoder(DecoderError::FeatureCountMismatch { kind, tokens: total, features: f.rows() }));
    }
    let dim = f.dim();
    let mut start = 0usize;
    let mut out = Vec::with_capacity(rows.len());
    for n in counts {
        let part = f.data()[start * dim..(start + n) * dim].to_vec();
        start += n;
        out.push(Some(Features::new(part, dim).unwrap_or_else(|_| Features::empty(dim))));
    }
    Ok(out)
}
