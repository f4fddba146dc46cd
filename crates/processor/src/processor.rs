//! The processor: model directory → settings; conversations + media → model inputs.

use crate::anyres::{parse_anyres_max, select_best_resolution, unpadded_features};
use crate::config::{ModelFiles, TokenSpec};
use crate::error::{ProcessorError, Result};
use crate::family::{Family, FamilySpec, ImageLayout, VideoTokens, VisionSettings};
use crate::messages::{Conversation, ImageInput, MediaInput, VideoInput};
use crate::pixels::{process_images, process_video, stack_images, ProcessedImage};
use crate::resize::Backend;
use crate::template::ChatTemplate;
use ndarray::{Array2, Array3, Array4, ArrayD, ArrayView3, ArrayView4, Axis};
use serde_json::{json, Map, Value};
use std::path::Path;
use std::sync::Arc;
use tokenizers::Tokenizer;

/// How frames are sampled from a video (`num_frames` / `fps` of `apply_chat_template`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sampling {
    /// Exactly this many frames, evenly spaced.
    pub num_frames: Option<usize>,
    /// This many frames per second of video.
    pub fps: Option<f64>,
    /// At most this many frames (evenly spaced over what `num_frames`/`fps`/all would give):
    /// a cap for long videos sampled by rate. Not a transformers option; `None` changes nothing.
    pub max_frames: Option<usize>,
}

/// transformers 5's `default_sample_indices_fn`: `floor(i * N / n)` for `n` frames, with
/// `n = max(1, int(N / video_fps * fps))` when sampling by rate; all frames when neither is set.
pub fn sample_indices(total: usize, video_fps: Option<f64>, s: &Sampling) -> Result<Vec<usize>> {
    if s.num_frames.is_some() && s.fps.is_some() {
        return Err(ProcessorError::Unsupported("`num_frames` and `fps` are mutually exclusive".into()));
    }
    let n = match (s.num_frames, s.fps) {
        (Some(n), _) => Some(n),
        (None, Some(fps)) => {
            let vf = video_fps.filter(|f| *f > 0.0 && f.is_finite()).ok_or_else(|| {
                ProcessorError::Unsupported("sampling by fps needs the video's frame rate (decoded frames have none)".into())
            })?;
            if !(fps > 0.0 && fps.is_finite()) {
                return Err(ProcessorError::Unsupported(format!("fps must be positive, got {fps}")));
            }
            Some(((total as f64 / vf * fps) as usize).max(1))
        }
        (None, None) => None,
    };
    let n = match (n, s.max_frames) {
        (_, Some(0)) => return Err(ProcessorError::Unsupported("max_frames must be at least 1".into())),
        (Some(n), Some(m)) => Some(n.min(m)),
        (None, Some(m)) if m < total => Some(m),
        (n, _) => n,
    };
    match n {
        None => Ok((0..total).collect()),
        Some(0) => Err(ProcessorError::Unsupported("num_frames must be at least 1".into())),
        Some(n) if n > total => Err(ProcessorError::Unsupported(format!(
            "video has {total} frames, fewer than the {n} requested"
        ))),
        Some(n) => Ok((0..n).map(|i| i * total / n).collect()),
    }
}

/// Loads media files for the processor. With the default `video-io` feature the processor uses
/// `VideoIoLoader` (FFmpeg through `vidlm-video-io`); otherwise [`NoMediaLoader`].
pub trait MediaLoader: Send + Sync {
    /// Loads an RGB image `(H, W, 3)`.
    fn load_image(&self, path: &Path) -> Result<Array3<u8>>;
    /// Decodes the frames of a video `(T, H, W, 3)` selected by `sampling`.
    fn load_video(&self, path: &Path, sampling: &Sampling) -> Result<Array4<u8>>;
}

/// A loader that loads nothing (every path is an error): use decoded media, or plug in a loader.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMediaLoader;

impl MediaLoader for NoMediaLoader {
    fn load_image(&self, path: &Path) -> Result<Array3<u8>> {
        Err(ProcessorError::MediaLoad { path: path.into(), message: "no media loader configured".into() })
    }
    fn load_video(&self, path: &Path, _: &Sampling) -> Result<Array4<u8>> {
        Err(ProcessorError::MediaLoad { path: path.into(), message: "no media loader configured".into() })
    }
}

/// Options of one [`Processor::process`] call.
#[derive(Debug, Clone, Copy)]
pub struct ProcessOptions {
    /// Append the assistant prefix (`add_generation_prompt`). Default true.
    pub add_generation_prompt: bool,
    /// Frame sampling for videos.
    pub sampling: Sampling,
    /// Resize backend for images (None: what transformers 5 picks — torchvision where the image
    /// processor class has it, PIL for `VideoLlavaImageProcessor`). A backend the class lacks
    /// falls back to the other, as transformers does.
    pub image_backend: Option<Backend>,
    /// Resize backend for videos (None: torchvision, the only one transformers' video processors
    /// have).
    pub video_backend: Option<Backend>,
}

impl Default for ProcessOptions {
    fn default() -> Self {
        ProcessOptions { add_generation_prompt: true, sampling: Sampling::default(), image_backend: None, video_backend: None }
    }
}

/// Processor attributes (`processor_config.json` over class defaults, tokenizer overrides).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TokenSettings {
    /// Image placeholder string.
    pub image_token: String,
    /// Video placeholder string.
    pub video_token: Option<String>,
    /// Image placeholder id.
    pub image_token_id: u32,
    /// Video placeholder id.
    pub video_token_id: Option<u32>,
    /// Vision patch size.
    pub patch_size: Option<u32>,
    /// Extra tokens per image.
    pub num_additional_image_tokens: u32,
    /// `vision_feature_select_strategy == "default"`.
    pub strategy_default: bool,
    /// OneVision base tokens.
    pub num_image_tokens: Option<u32>,
    /// OneVision `anyres_max_N`.
    pub max_num_patches: Option<u32>,
}

/// The model inputs, under transformers' names and dtypes.
#[derive(Debug, Clone)]
pub struct ProcessedInputs {
    /// `input_ids` `(B, L)`, left-padded.
    pub input_ids: Array2<i64>,
    /// `attention_mask` `(B, L)`.
    pub attention_mask: Array2<i64>,
    /// Image pixels: `(N, 3, H, W)` (plain) or `(N, P_max, 3, H, W)` (anyres).
    pub pixel_values: Option<ArrayD<f32>>,
    /// The key transformers returns the image pixels under (`pixel_values`, or
    /// `pixel_values_images` for Video-LLaVA).
    pub image_key: &'static str,
    /// Original `(height, width)` of each image (anyres families).
    pub image_sizes: Option<Array2<i64>>,
    /// Video pixels `(V, T, 3, H, W)`.
    pub pixel_values_videos: Option<ArrayD<f32>>,
    /// OneVision: images per conversation.
    pub batch_num_images: Option<Vec<i64>>,
    /// The rendered (unexpanded) prompts.
    pub prompts: Vec<String>,
    /// Placeholder tokens per image, in order.
    pub image_token_counts: Vec<usize>,
    /// Placeholder tokens per video, in order.
    pub video_token_counts: Vec<usize>,
}

impl ProcessedInputs {
    /// The tensors under transformers' key names, as `(name, dtype, shape, little-endian bytes)`:
    /// `input_ids` / `attention_mask` (int64), the image key and `pixel_values_videos` (float32),
    /// `image_sizes` (int64), `batch_num_images` (int64, OneVision).
    pub fn tensors(&self) -> Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> {
        fn i64s<'a>(it: impl Iterator<Item = &'a i64>) -> Vec<u8> {
            it.flat_map(|v| v.to_le_bytes()).collect()
        }
        fn f32s<'a>(it: impl Iterator<Item = &'a f32>) -> Vec<u8> {
            it.flat_map(|v| v.to_le_bytes()).collect()
        }
        use safetensors::Dtype;
        let mut out = vec![
            ("input_ids".to_string(), Dtype::I64, self.input_ids.shape().to_vec(), i64s(self.input_ids.iter())),
            ("attention_mask".to_string(), Dtype::I64, self.attention_mask.shape().to_vec(), i64s(self.attention_mask.iter())),
        ];
        if let Some(p) = &self.pixel_values {
            out.push((self.image_key.to_string(), Dtype::F32, p.shape().to_vec(), f32s(p.iter())));
        }
        if let Some(s) = &self.image_sizes {
            out.push(("image_sizes".to_string(), Dtype::I64, s.shape().to_vec(), i64s(s.iter())));
        }
        if let Some(b) = &self.batch_num_images {
            out.push(("batch_num_images".to_string(), Dtype::I64, vec![b.len()], i64s(b.iter())));
        }
        if let Some(v) = &self.pixel_values_videos {
            out.push(("pixel_values_videos".to_string(), Dtype::F32, v.shape().to_vec(), f32s(v.iter())));
        }
        out
    }

    /// Serializes [`Self::tensors`] as a safetensors file (loadable with
    /// `safetensors.torch.load_file` and passable to the model as `**inputs`).
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        let tensors = self.tensors();
        let views = tensors
            .iter()
            .map(|(name, dtype, shape, bytes)| {
                safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| ProcessorError::Unsupported(format!("safetensors: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        safetensors::serialize(views, &None).map_err(|e| ProcessorError::Unsupported(format!("safetensors: {e}")))
    }
}

/// A processor for one model directory.
pub struct Processor {
    spec: &'static FamilySpec,
    files: ModelFiles,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    image: Option<VisionSettings>,
    video: Option<VisionSettings>,
    tokens: TokenSettings,
    bos_token: Option<String>,
    pad_token_id: Option<u32>,
    special_tokens: Map<String, Value>,
    max_len: Option<usize>,
    loader: Arc<dyn MediaLoader>,
}

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor")
            .field("family", &self.spec.family)
            .field("dir", &self.files.dir)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

fn token_id(tok: &Tokenizer, token: &str, what: &'static str) -> Result<u32> {
    tok.token_to_id(token).ok_or_else(|| ProcessorError::UnknownToken { token: token.into(), what })
}

impl Processor {
    /// Reads a model directory (hub or transformers-5 layout).
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Processor> {
        let files = ModelFiles::read(dir.as_ref())?;
        Processor::from_files(files)
    }

    /// Builds the processor from already-read files.
    pub fn from_files(files: ModelFiles) -> Result<Processor> {
        let archs = files.config.architectures.clone().unwrap_or_default();
        let family = Family::detect(files.config.model_type.as_deref(), &archs)?;
        let spec = family.spec();
        let tokenizer = Tokenizer::from_file(&files.tokenizer_json)
            .map_err(|e| ProcessorError::Tokenizer(format!("{}: {e}", files.tokenizer_json.display())))?;

        let image = match &files.image_processor {
            Some((cfg, file)) => Some(VisionSettings::resolve(cfg, file, spec.image_class)?),
            None => {
                return Err(ProcessorError::MissingFile {
                    dir: files.dir.clone(),
                    file: "preprocessor_config.json (or processor_config.json with \"image_processor\")".into(),
                })
            }
        };
        let video = match (spec.video_class, &files.video_processor) {
            (None, _) => None,
            (Some(class), Some((cfg, file))) => Some(VisionSettings::resolve(cfg, file, class)?),
            (Some(_), None) => {
                return Err(ProcessorError::MissingFile {
                    dir: files.dir.clone(),
                    file: "video_preprocessor_config.json (or processor_config.json with \"video_processor\")".into(),
                })
            }
        };

        let tc = &files.tokenizer_config;
        let pc = &files.processor;
        let d = &spec.processor;
        let image_token = tc
            .image_token
            .as_ref()
            .map(|t| t.content().to_string())
            .or_else(|| tc.named_special("image_token"))
            .or_else(|| pc.image_token.clone())
            .unwrap_or_else(|| d.image_token.to_string());
        let video_token = if d.video_token.is_some() {
            Some(
                tc.video_token
                    .as_ref()
                    .map(|t| t.content().to_string())
                    .or_else(|| tc.named_special("video_token"))
                    .or_else(|| pc.video_token.clone())
                    .unwrap_or_else(|| d.video_token.unwrap_or("<video>").to_string()),
            )
        } else {
            None
        };
        let image_token_id = token_id(&tokenizer, &image_token, "image placeholder")?;
        let video_token_id = match &video_token {
            Some(t) => Some(token_id(&tokenizer, t, "video placeholder")?),
            None => None,
        };
        let strategy = pc.vision_feature_select_strategy.clone().or(d.strategy.map(String::from));
        let patch_size = pc.patch_size.or(d.patch_size);
        let needs_patch = !matches!(spec.image_layout, ImageLayout::AnyresOnevision);
        if needs_patch && patch_size.is_none() {
            return Err(ProcessorError::MissingField { file: "processor_config.json".into(), field: "patch_size".into() });
        }
        if patch_size == Some(0) {
            return Err(ProcessorError::InvalidField {
                file: "processor_config.json".into(),
                field: "patch_size".into(),
                message: "must be positive".into(),
            });
        }
        let num_image_tokens = pc.num_image_tokens.or(d.num_image_tokens);
        let mut max_num_patches = None;
        if spec.image_layout == ImageLayout::AnyresOnevision {
            if num_image_tokens.is_none() {
                return Err(ProcessorError::MissingField {
                    file: "processor_config.json".into(),
                    field: "num_image_tokens".into(),
                });
            }
            let ar = pc.vision_aspect_ratio.clone().unwrap_or_else(|| d.vision_aspect_ratio.to_string());
            max_num_patches = Some(parse_anyres_max(&ar).ok_or_else(|| ProcessorError::InvalidField {
                file: "processor_config.json".into(),
                field: "vision_aspect_ratio".into(),
                message: format!("expected \"anyres_max_N\", got {ar:?}"),
            })?);
        }
        let tokens = TokenSettings {
            image_token,
            video_token,
            image_token_id,
            video_token_id,
            patch_size,
            num_additional_image_tokens: pc.num_additional_image_tokens.unwrap_or(d.num_additional_image_tokens),
            strategy_default: strategy.as_deref() == Some("default"),
            num_image_tokens,
            max_num_patches,
        };

        let template = match &files.chat_template {
            Some((src, _)) => Some(ChatTemplate::new(src)?),
            None => None,
        };

        let content = |t: &Option<TokenSpec>| t.as_ref().map(|t| t.content().to_string());
        let bos_token = content(&tc.bos_token);
        let pad_token_id = match content(&tc.pad_token) {
            Some(p) => Some(token_id(&tokenizer, &p, "padding")?),
            None => files.config.text_config.as_ref().and_then(|t| t.pad_token_id),
        };
        let mut special_tokens = Map::new();
        for (k, v) in [
            ("bos_token", &tc.bos_token),
            ("eos_token", &tc.eos_token),
            ("unk_token", &tc.unk_token),
            ("pad_token", &tc.pad_token),
        ] {
            if let Some(s) = content(v) {
                special_tokens.insert(k.into(), Value::String(s));
            }
        }
        for src in [&tc.extra_special_tokens, &tc.model_specific_special_tokens].into_iter().flatten() {
            if let Some(obj) = src.as_object() {
                for (k, v) in obj {
                    let s = v.as_str().map(String::from).or_else(|| v.get("content").and_then(Value::as_str).map(String::from));
                    if let Some(s) = s {
                        special_tokens.entry(k.clone()).or_insert(Value::String(s));
                    }
                }
            }
        }
        let max_len = files
            .config
            .text_config
            .as_ref()
            .and_then(|t| t.max_position_embeddings)
            .or_else(|| tc.model_max_length.filter(|m| *m > 0.0 && *m < 1e12).map(|m| m as usize));

        Ok(Processor {
            spec,
            files,
            tokenizer,
            template,
            image,
            video,
            tokens,
            bos_token,
            pad_token_id,
            special_tokens,
            max_len,
            loader: default_loader(),
        })
    }

    /// Uses `loader` for media given by path.
    pub fn with_loader(mut self, loader: Arc<dyn MediaLoader>) -> Processor {
        self.loader = loader;
        self
    }

    /// The model family.
    pub fn family(&self) -> Family {
        self.spec.family
    }

    /// The family's spec row.
    pub fn spec(&self) -> &'static FamilySpec {
        self.spec
    }

    /// Effective image processor settings.
    pub fn image_settings(&self) -> Option<&VisionSettings> {
        self.image.as_ref()
    }

    /// Effective video processor settings.
    pub fn video_settings(&self) -> Option<&VisionSettings> {
        self.video.as_ref()
    }

    /// Processor attributes and placeholder ids.
    pub fn token_settings(&self) -> &TokenSettings {
        &self.tokens
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The context limit used for the prompt-length check.
    pub fn max_len(&self) -> Option<usize> {
        self.max_len
    }

    /// The parsed model files.
    pub fn files(&self) -> &ModelFiles {
        &self.files
    }

    fn image_backend(&self, want: Option<Backend>) -> Backend {
        let Some(s) = &self.image else { return Backend::Torchvision };
        match want {
            Some(b) if s.backends.contains(&b) => b,
            _ => s.default_backend(),
        }
    }

    /// Renders one conversation's prompt with the model's chat template.
    pub fn render(&self, conv: &Conversation, add_generation_prompt: bool) -> Result<String> {
        let t = self.template.as_ref().ok_or_else(|| ProcessorError::MissingFile {
            dir: self.files.dir.clone(),
            file: "chat_template.jinja / chat_template.json (no chat template)".into(),
        })?;
        t.render(&conv.messages, add_generation_prompt, &self.special_tokens)
    }

    fn load_image(&self, img: &ImageInput, what: &str) -> Result<Arc<Array3<u8>>> {
        match img {
            ImageInput::Decoded(a) => Ok(a.clone()),
            ImageInput::Path(p) => self.loader.load_image(p).map(Arc::new),
            ImageInput::Url(u) => Err(ProcessorError::Unsupported(format!("{what}: URLs are not fetched ({u}); download it first"))),
            ImageInput::Base64(_) => Err(ProcessorError::Unsupported(format!("{what}: base64 images are not supported"))),
        }
    }

    fn load_video(&self, v: &VideoInput, sampling: &Sampling, what: &str) -> Result<Arc<Array4<u8>>> {
        match v {
            VideoInput::Decoded(a) => {
                if sampling.num_frames.is_none() && sampling.fps.is_none() {
                    return Ok(a.clone());
                }
                let idx = sample_indices(a.shape()[0], None, sampling)?;
                Ok(Arc::new(a.select(Axis(0), &idx)))
            }
            VideoInput::Path(p) => self.loader.load_video(p, sampling).map(Arc::new),
            VideoInput::Url(u) => Err(ProcessorError::Unsupported(format!("{what}: URLs are not fetched ({u}); download it first"))),
            VideoInput::Frames(list) => {
                if sampling.num_frames.is_some() || sampling.fps.is_some() {
                    return Err(ProcessorError::Unsupported(format!(
                        "{what}: frame sampling is not supported for a video given as a list of images"
                    )));
                }
                let frames = list
                    .iter()
                    .enumerate()
                    .map(|(i, f)| self.load_image(f, &format!("{what} frame {i}")))
                    .collect::<Result<Vec<_>>>()?;
                stack_frames(&frames, what)
            }
        }
    }

    /// Number of placeholder tokens for a processed image.
    pub fn image_token_count(&self, img: &ProcessedImage) -> Result<usize> {
        let t = &self.tokens;
        let sh = img.patches.shape();
        let (ph, pw) = (sh[sh.len() - 2] as u32, sh[sh.len() - 1] as u32);
        let adj = usize::from(t.strategy_default);
        let count = match self.spec.image_layout {
            ImageLayout::Plain => {
                let p = t.patch_size.unwrap_or(1);
                ((ph / p) * (pw / p) + t.num_additional_image_tokens) as usize
            }
            ImageLayout::AnyresOnevision => {
                let nit = t.num_image_tokens.unwrap_or(0);
                if img.multi_image {
                    nit as usize + 1
                } else {
                    let best = self.best_resolution(img)?;
                    let patches = f64::from(nit).sqrt() as u32;
                    let (u, n) = unpadded_features(
                        img.size.0 as u32,
                        img.size.1 as u32,
                        patches,
                        patches,
                        best.0 / ph.max(1),
                        best.1 / pw.max(1),
                        t.max_num_patches,
                    );
                    (u + n) as usize + nit as usize
                }
            }
            ImageLayout::AnyresNext => {
                let p = t.patch_size.unwrap_or(1);
                let best = self.best_resolution(img)?;
                let (gh, gw) = (ph / p, pw / p);
                let (u, n) = unpadded_features(img.size.0 as u32, img.size.1 as u32, gh, gw, best.0 / ph.max(1), best.1 / pw.max(1), None);
                (u + n) as usize + (gh * gw + t.num_additional_image_tokens) as usize
            }
        };
        Ok(count.saturating_sub(adj))
    }

    fn best_resolution(&self, img: &ProcessedImage) -> Result<(u32, u32)> {
        let pins = self.image.as_ref().map(|s| s.pinpoints.as_slice()).unwrap_or(&[]);
        select_best_resolution(img.size.0 as u32, img.size.1 as u32, pins).ok_or_else(|| ProcessorError::InvalidMedia {
            what: "image".into(),
            message: "no image_grid_pinpoints configured".into(),
        })
    }

    /// Number of placeholder tokens for a processed video `(T, 3, H, W)`.
    pub fn video_token_count(&self, t_frames: usize, h: usize, w: usize) -> usize {
        let t = &self.tokens;
        let p = t.patch_size.unwrap_or(1) as usize;
        match self.spec.video_tokens {
            VideoTokens::FramesAsImages => 0,
            VideoTokens::OnevisionPooled => {
                let side = f64::from(t.num_image_tokens.unwrap_or(0)).sqrt() as usize;
                let pooled = side.div_ceil(2);
                t_frames * pooled * pooled + 1
            }
            VideoTokens::PerFrame => ((h / p) * (w / p) + t.num_additional_image_tokens as usize) * t_frames,
            VideoTokens::NextPooled => (h / p) * (w / p) / 4 * t_frames,
        }
    }

    /// Renders, tokenizes, expands and processes a batch of conversations, like
    /// `processor.apply_chat_template(conversations, tokenize=True, return_dict=True,
    /// padding=True, padding_side="left", return_tensors="pt")`.
    pub fn process(&self, conversations: &[Conversation], opts: &ProcessOptions) -> Result<ProcessedInputs> {
        if conversations.is_empty() {
            return Err(ProcessorError::Messages("no conversations given".into()));
        }
        let mut prompts = Vec::with_capacity(conversations.len());
        let mut images: Vec<Vec<ImageRef>> = Vec::new();
        let mut videos: Vec<Vec<Arc<Array4<u8>>>> = Vec::new();
        for (ci, conv) in conversations.iter().enumerate() {
            let mut conv_images = Vec::new();
            let mut conv_videos = Vec::new();
            // Load media in order.
            let mut loaded: Vec<Result<MediaLoaded>> = Vec::with_capacity(conv.media.len());
            for (mi, m) in conv.media.iter().enumerate() {
                let what = format!("conversation {ci} media {mi}");
                loaded.push(match m {
                    MediaInput::Image(i) => self.load_image(i, &what).map(MediaLoaded::Image),
                    MediaInput::Video(v) => self.load_video(v, &opts.sampling, &what).map(MediaLoaded::Video),
                });
            }
            let loaded = loaded.into_iter().collect::<Result<Vec<_>>>()?;
            let mut messages = conv.messages.clone();
            if self.spec.video_tokens == VideoTokens::FramesAsImages {
                // No video processor: a video is its frames, each an image part.
                let frame_counts: Vec<usize> = loaded
                    .iter()
                    .filter_map(|m| match m {
                        MediaLoaded::Video(v) => Some(v.shape()[0]),
                        MediaLoaded::Image(_) => None,
                    })
                    .collect();
                messages = videos_to_image_parts(&messages, &frame_counts);
                for m in loaded {
                    match m {
                        MediaLoaded::Image(i) => conv_images.push(ImageRef::Image(i)),
                        // The frames stay in the decoded video: views, no copy.
                        MediaLoaded::Video(v) => {
                            for t in 0..v.shape()[0] {
                                conv_images.push(ImageRef::Frame(v.clone(), t));
                            }
                        }
                    }
                }
            } else {
                for m in loaded {
                    match m {
                        MediaLoaded::Image(i) => conv_images.push(ImageRef::Image(i)),
                        MediaLoaded::Video(v) => conv_videos.push(v),
                    }
                }
            }
            let prompt = self.render(&Conversation { messages, media: Vec::new() }, opts.add_generation_prompt)?;
            prompts.push(prompt);
            images.push(conv_images);
            videos.push(conv_videos);
        }
        let img_views: Vec<Vec<ArrayView3<'_, u8>>> = images
            .iter()
            .map(|c| {
                c.iter()
                    .map(|r| match r {
                        ImageRef::Image(a) => a.view(),
                        ImageRef::Frame(v, t) => v.index_axis(Axis(0), *t),
                    })
                    .collect()
            })
            .collect();
        let vid_views: Vec<Vec<ArrayView4<'_, u8>>> = videos.iter().map(|c| c.iter().map(|a| a.view()).collect()).collect();
        self.process_prompts(&prompts, &img_views, &vid_views, opts)
    }

    /// Like `processor(text=prompts, images=images, videos=videos, padding=True,
    /// padding_side="left")`: `images[i]` / `videos[i]` belong to `prompts[i]`.
    pub fn process_prompts(
        &self,
        prompts: &[String],
        images: &[Vec<ArrayView3<'_, u8>>],
        videos: &[Vec<ArrayView4<'_, u8>>],
        opts: &ProcessOptions,
    ) -> Result<ProcessedInputs> {
        let b = prompts.len();
        if b == 0 {
            return Err(ProcessorError::Messages("no prompts given".into()));
        }
        if images.len() > b || videos.len() > b {
            return Err(ProcessorError::Messages("more media lists than prompts".into()));
        }
        let empty_i: Vec<ArrayView3<'_, u8>> = Vec::new();
        let empty_v: Vec<ArrayView4<'_, u8>> = Vec::new();
        // Tokenize (unexpanded) and check placeholder counts before any pixel work.
        let mut encoded = Vec::with_capacity(b);
        for (ci, prompt) in prompts.iter().enumerate() {
            let add_special = !self.bos_token.as_ref().is_some_and(|bos| prompt.starts_with(bos.as_str()));
            let enc = self
                .tokenizer
                .encode(prompt.as_str(), add_special)
                .map_err(|e| ProcessorError::Tokenizer(e.to_string()))?;
            let ids: Vec<u32> = enc.get_ids().to_vec();
            let n_img = ids.iter().filter(|&&i| i == self.tokens.image_token_id).count();
            let n_vid = match self.tokens.video_token_id {
                Some(v) => ids.iter().filter(|&&i| i == v).count(),
                None => 0,
            };
            let conv_images = images.get(ci).unwrap_or(&empty_i).len();
            let conv_videos = videos.get(ci).unwrap_or(&empty_v).len();
            if n_img != conv_images {
                return Err(ProcessorError::PlaceholderMismatch { conversation: ci, kind: "image", placeholders: n_img, media: conv_images });
            }
            if n_vid != conv_videos {
                if self.tokens.video_token_id.is_none() {
                    return Err(ProcessorError::Unsupported(format!(
                        "{} has no video processor: pass a video's frames as images",
                        self.spec.processor_class
                    )));
                }
                return Err(ProcessorError::PlaceholderMismatch { conversation: ci, kind: "video", placeholders: n_vid, media: conv_videos });
            }
            encoded.push(ids);
        }

        // Pixels.
        let ib = self.image_backend(opts.image_backend);
        let vb = opts.video_backend.unwrap_or(Backend::Torchvision);
        let mut batch_num_images = Vec::with_capacity(b);
        let mut flat: Vec<ArrayView3<'_, u8>> = Vec::new();
        let mut multi: Vec<bool> = Vec::new();
        let mut names: Vec<(usize, usize)> = Vec::new();
        for (ci, conv) in images.iter().enumerate() {
            batch_num_images.push(conv.len() as i64);
            for (ii, img) in conv.iter().enumerate() {
                flat.push(img.view());
                multi.push(conv.len() != 1);
                names.push((ci, ii));
            }
        }
        let processed_images: Vec<ProcessedImage> = if flat.is_empty() {
            Vec::new()
        } else {
            let s = self.image.as_ref().ok_or_else(|| ProcessorError::Unsupported("no image processor".into()))?;
            let what = |i: usize| {
                let (ci, ii) = names.get(i).copied().unwrap_or((0, i));
                format!("conversation {ci} image {ii}")
            };
            process_images(&flat, &multi, self.spec.image_layout, s, ib, &what)?
        };
        let mut processed_videos: Vec<ArrayD<f32>> = Vec::new();
        for (ci, conv) in videos.iter().enumerate() {
            for (vi, v) in conv.iter().enumerate() {
                let s = self.video.as_ref().ok_or_else(|| ProcessorError::Unsupported("no video processor".into()))?;
                processed_videos.push(process_video(v.view(), s, vb, &format!("conversation {ci} video {vi}"))?);
            }
        }
        let image_token_counts = processed_images.iter().map(|im| self.image_token_count(im)).collect::<Result<Vec<_>>>()?;
        let video_token_counts: Vec<usize> = processed_videos
            .iter()
            .map(|v| {
                let s = v.shape();
                self.video_token_count(s[0], s[2], s[3])
            })
            .collect();

        // Expand placeholders and check the context.
        let mut ii = 0;
        let mut vi = 0;
        let mut expanded = Vec::with_capacity(b);
        for (ci, ids) in encoded.iter().enumerate() {
            let mut out: Vec<i64> = Vec::with_capacity(ids.len());
            for &id in ids {
                if id == self.tokens.image_token_id {
                    let n = image_token_counts.get(ii).copied().unwrap_or(0);
                    out.extend(std::iter::repeat_n(i64::from(id), n));
                    ii += 1;
                } else if Some(id) == self.tokens.video_token_id {
                    let n = video_token_counts.get(vi).copied().unwrap_or(0);
                    out.extend(std::iter::repeat_n(i64::from(id), n));
                    vi += 1;
                } else {
                    out.push(i64::from(id));
                }
            }
            if let Some(max) = self.max_len {
                if out.len() > max {
                    return Err(ProcessorError::PromptTooLong { conversation: ci, tokens: out.len(), max });
                }
            }
            expanded.push(out);
        }

        // Left-pad.
        let len = expanded.iter().map(Vec::len).max().unwrap_or(0);
        let needs_pad = expanded.iter().any(|e| e.len() != len);
        let pad = match (needs_pad, self.pad_token_id) {
            (false, p) => p.unwrap_or(0),
            (true, Some(p)) => p,
            (true, None) => {
                return Err(ProcessorError::Unsupported(
                    "conversations of different lengths need a pad_token in tokenizer_config.json".into(),
                ))
            }
        };
        let mut input_ids = Array2::<i64>::from_elem((b, len), i64::from(pad));
        let mut attention_mask = Array2::<i64>::zeros((b, len));
        for (r, e) in expanded.iter().enumerate() {
            let off = len - e.len();
            for (j, &id) in e.iter().enumerate() {
                input_ids[[r, off + j]] = id;
                attention_mask[[r, off + j]] = 1;
            }
        }

        let (pixel_values, image_sizes) = if processed_images.is_empty() {
            (None, None)
        } else {
            let do_pad = self.image.as_ref().is_some_and(|s| s.do_pad);
            let pv = stack_images(&processed_images, self.spec.image_layout, do_pad)?;
            let sizes = match self.spec.image_layout {
                ImageLayout::Plain => None,
                _ => {
                    let mut a = Array2::<i64>::zeros((processed_images.len(), 2));
                    for (i, im) in processed_images.iter().enumerate() {
                        a[[i, 0]] = im.size.0 as i64;
                        a[[i, 1]] = im.size.1 as i64;
                    }
                    Some(a)
                }
            };
            (Some(pv), sizes)
        };
        let pixel_values_videos = if processed_videos.is_empty() { None } else { Some(stack_videos(&processed_videos)?) };
        Ok(ProcessedInputs {
            input_ids,
            attention_mask,
            pixel_values,
            image_key: self.spec.image_key,
            image_sizes,
            pixel_values_videos,
            batch_num_images: (self.spec.image_layout == ImageLayout::AnyresOnevision && !processed_images.is_empty())
                .then_some(batch_num_images.into_iter().filter(|&n| n > 0).collect()),
            prompts: prompts.to_vec(),
            image_token_counts,
            video_token_counts,
        })
    }
}

#[cfg(feature = "video-io")]
fn default_loader() -> Arc<dyn MediaLoader> {
    Arc::new(crate::loader::VideoIoLoader::default())
}

#[cfg(not(feature = "video-io"))]
fn default_loader() -> Arc<dyn MediaLoader> {
    Arc::new(NoMediaLoader)
}

/// An image to process: a decoded image, or frame `t` of a decoded video (families without a
/// video processor take a video's frames as images without copying them).
enum ImageRef {
    Image(Arc<Array3<u8>>),
    Frame(Arc<Array4<u8>>, usize),
}

enum MediaLoaded {
    Image(Arc<Array3<u8>>),
    Video(Arc<Array4<u8>>),
}

fn stack_frames(frames: &[Arc<Array3<u8>>], what: &str) -> Result<Arc<Array4<u8>>> {
    let first = frames
        .first()
        .ok_or_else(|| ProcessorError::InvalidMedia { what: what.into(), message: "empty frame list".into() })?;
    let sh = first.shape().to_vec();
    if frames.iter().any(|f| f.shape() != sh.as_slice()) {
        return Err(ProcessorError::InvalidMedia { what: what.into(), message: "frames have different sizes".into() });
    }
    let mut out = Array4::<u8>::zeros((frames.len(), sh[0], sh[1], sh[2]));
    for (i, f) in frames.iter().enumerate() {
        out.index_axis_mut(Axis(0), i).assign(&**f);
    }
    Ok(Arc::new(out))
}

fn stack_videos(videos: &[ArrayD<f32>]) -> Result<ArrayD<f32>> {
    let sh = videos.first().map(|v| v.shape().to_vec()).unwrap_or_default();
    if videos.iter().any(|v| v.shape() != sh.as_slice()) {
        return Err(ProcessorError::InvalidMedia {
            what: "videos".into(),
            message: "videos have different frame counts or sizes and cannot be batched into one tensor".into(),
        });
    }
    let views: Vec<_> = videos.iter().map(|v| v.view()).collect();
    ndarray::stack(Axis(0), &views).map_err(|e| ProcessorError::InvalidMedia { what: "videos".into(), message: e.to_string() })
}

/// Replaces each video part by `T` image parts (in place), for families without a video
/// processor.
fn videos_to_image_parts(messages: &[Value], frame_counts: &[usize]) -> Vec<Value> {
    let mut vi = 0;
    messages
        .iter()
        .map(|m| {
            let mut m = m.clone();
            if let Some(Value::Array(parts)) = m.get_mut("content") {
                let mut out = Vec::with_capacity(parts.len());
                for p in parts.iter() {
                    if p.get("type").and_then(Value::as_str) == Some("video") {
                        let t = frame_counts.get(vi).copied().unwrap_or(0);
                        vi += 1;
                        out.extend(std::iter::repeat_n(json!({"type": "image"}), t));
                    } else {
                        out.push(p.clone());
                    }
                }
                *parts = out;
            }
            m
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_matches_transformers_v5() {
        let s = |n| Sampling { num_frames: Some(n), ..Sampling::default() };
        assert_eq!(sample_indices(300, None, &s(8)).unwrap_or_default(), vec![0, 37, 75, 112, 150, 187, 225, 262]);
        assert_eq!(sample_indices(100, None, &s(3)).unwrap_or_default(), vec![0, 33, 66]);
        assert_eq!(sample_indices(20, None, &s(8)).unwrap_or_default(), vec![0, 2, 5, 7, 10, 12, 15, 17]);
        let f = Sampling { fps: Some(2.0), ..Sampling::default() };
        assert_eq!(sample_indices(20, Some(10.0), &f).unwrap_or_default(), vec![0, 5, 10, 15]);
        assert!(sample_indices(5, None, &s(8)).is_err());
        assert!(sample_indices(20, None, &f).is_err());
    }

    #[test]
    fn max_frames_caps_evenly() {
        let cap = |n: Option<usize>, m| Sampling { num_frames: n, max_frames: Some(m), ..Sampling::default() };
        assert_eq!(sample_indices(100, None, &cap(Some(64), 4)).unwrap_or_default(), vec![0, 25, 50, 75]);
        assert_eq!(sample_indices(9, None, &cap(None, 3)).unwrap_or_default(), vec![0, 3, 6]);
        assert_eq!(sample_indices(2, None, &cap(None, 3)).unwrap_or_default(), vec![0, 1]);
        assert_eq!(sample_indices(100, None, &cap(Some(3), 8)).unwrap_or_default(), vec![0, 33, 66]);
        assert!(sample_indices(100, None, &cap(Some(3), 0)).is_err());
        let by_rate = Sampling { fps: Some(5.0), max_frames: Some(4), ..Sampling::default() };
        assert_eq!(sample_indices(100, Some(10.0), &by_rate).unwrap_or_default(), vec![0, 25, 50, 75]);
    }
}
