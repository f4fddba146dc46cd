//! The processor: model directory → settings; conversations + media → model inputs.
//!
//! [`Processor::process`] runs in named stages, like `tokenizers` stages `encode`:
//!
//! 1. [`Processor::load_media`] — media by path through the [`MediaLoader`], frames sampled;
//! 2. [`Processor::render`] — the chat template per conversation;
//! 3. `encode_prompts` — tokenization and the placeholder/media count check;
//! 4. `process_pixels` — images (with their [`PatchGrid`]) and videos to normalised pixels;
//! 5. `count_placeholders` — tokens per image and video ([`FeatureRules`]);
//! 6. `expand_placeholders` — each `<image>` / `<video>` repeated to its count, context check;
//! 7. `assemble` — the batch tensors; ids stay unpadded per conversation
//!    ([`ProcessedInputs::conversations`]): padding happens once, where a batch is formed.

use crate::config::{ModelFiles, TokenSpec};
use crate::error::{ProcessorError, Result};
use crate::family::{FamilySpec, VideoTokens};
use crate::messages::{Conversation, ImageInput, MediaInput, VideoInput, VideoMetadata};
use crate::patches::{format_seconds, patch_timestamps, process_video_patches};
use crate::pixels::{process_images, process_video, stack_images, ProcessedImage};
use crate::resize::Backend;
use crate::settings::VisionSettings;
use crate::template::ChatTemplate;
use ndarray::{Array2, Array3, Array4, ArrayD, ArrayView3, ArrayView4, Axis};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokenizers::Tokenizer;
use vidlm_model::sampling::FrameRule;
use vidlm_model::{
    family_frames, left_pad, select_frames, DecodedMedia, Family, FeatureRules, ModelError,
    PatchGrid, Sampling, SamplingError,
};

/// Loads media files for the processor. With the default `video-io` feature the processor uses
/// `VideoIoLoader` (FFmpeg through `vidlm-video-io`); otherwise [`NoMediaLoader`].
pub trait MediaLoader: Send + Sync {
    /// Loads an RGB image `(H, W, 3)`.
    fn load_image(&self, path: &Path) -> Result<Array3<u8>>;
    /// Decodes the frames of a video `(T, H, W, 3)` selected by `sampling`, at most `max_frames`.
    fn load_video(
        &self,
        path: &Path,
        sampling: &Sampling,
        max_frames: Option<usize>,
    ) -> Result<Array4<u8>>;
    /// The video's frame count and frame rate (what transformers' `VideoMetadata` holds), for
    /// the video processors that sample with their own formula. The default cannot probe.
    fn probe_video(&self, path: &Path) -> Result<(usize, Option<f64>)> {
        Err(ProcessorError::media_load(path, "this media loader cannot probe videos"))
    }
}

/// A loader that loads nothing (every path is an error): use decoded media, or plug in a loader.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMediaLoader;

impl MediaLoader for NoMediaLoader {
    fn load_image(&self, path: &Path) -> Result<Array3<u8>> {
        Err(ProcessorError::media_load(path, "no media loader configured"))
    }
    fn load_video(&self, path: &Path, _: &Sampling, _: Option<usize>) -> Result<Array4<u8>> {
        Err(ProcessorError::media_load(path, "no media loader configured"))
    }
}

/// Options of one [`Processor::process`] call.
#[derive(Debug, Clone)]
pub struct ProcessOptions {
    /// Append the assistant prefix (`add_generation_prompt`). Default true.
    pub add_generation_prompt: bool,
    /// Which frames to take from each video: all (default), `num_frames` or `fps` as
    /// transformers samples them, or explicit indices / times.
    pub sampling: Sampling,
    /// At most this many frames per video (evenly spaced over what `sampling` selects): a cap
    /// for long videos sampled by rate. Not a transformers option; `None` changes nothing.
    pub max_frames: Option<usize>,
    /// Resize backend for images (None: what transformers 5 picks — torchvision where the image
    /// processor class has it, PIL for `VideoLlavaImageProcessor`). A backend the class lacks
    /// falls back to the other, as transformers does.
    pub image_backend: Option<Backend>,
    /// Resize backend for videos (None: torchvision, the only one transformers' video processors
    /// have).
    pub video_backend: Option<Backend>,
    /// Patchified families: the lower pixel budget (`min_pixels`), for the image processor and
    /// the video processors that take it (`Qwen2VLVideoProcessor`; Qwen3-VL's video processor
    /// has no `min_pixels`, as in transformers). An error for other families.
    pub min_pixels: Option<u64>,
    /// Patchified families: the upper pixel budget (`max_pixels`), like [`Self::min_pixels`].
    pub max_pixels: Option<u64>,
    /// Patchified families: transformers' `size={"shortest_edge": a, "longest_edge": b}` call
    /// argument, `(a, b)`: the pixel budget of the image processor *and* the video processor
    /// (transformers hands `size` to both; for Qwen3-VL's video processor it bounds the whole
    /// clip, t·h·w). [`Self::min_pixels`] / [`Self::max_pixels`] override its sides where the
    /// class takes them, as transformers' `_standardize_kwargs` does. An error for other
    /// families.
    pub size: Option<(u64, u64)>,
}

impl Default for ProcessOptions {
    fn default() -> Self {
        ProcessOptions {
            add_generation_prompt: true,
            sampling: Sampling::All,
            max_frames: None,
            image_backend: None,
            video_backend: None,
            min_pixels: None,
            max_pixels: None,
            size: None,
        }
    }
}

/// The placeholder tokens (`processor_config.json` / tokenizer over the family defaults).
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
    /// Ids of the vision start / end markers (timestamped video prompts).
    pub vision_marker_ids: Option<(u32, u32)>,
}

/// One conversation of a processed batch: what vision and the decoder need, unpadded.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationInputs {
    /// Token ids with every placeholder expanded (one id per feature row), without padding.
    pub input_ids: Vec<i64>,
    /// Each image of the conversation, in order: how it was cut into patches (its rows of
    /// the image tensor follow the previous conversations' images).
    pub images: Vec<PatchGrid>,
    /// Number of videos (their rows of the video tensor follow the previous conversations').
    pub videos: usize,
    /// Patchified layouts: each video's grid and timing, in order.
    pub video_grids: Vec<VideoGrid>,
}

/// A patchified video's grid and timing (what M-RoPE positions are computed from).
#[derive(Debug, Clone, PartialEq)]
pub struct VideoGrid {
    /// `(t, h, w)` patch grid (`video_grid_thw`).
    pub thw: (u32, u32, u32),
    /// Seconds per temporal patch (`second_per_grid_ts`: `temporal_patch_size / sampled_fps`).
    pub second_per_grid_t: f32,
    /// The sampled frames' indices in the video.
    pub frames_indices: Vec<usize>,
}

/// The model inputs: per conversation ([`Self::conversations`]) for vision and the decoder, and
/// as the tensors transformers returns, under its names and dtypes.
#[derive(Debug, Clone)]
pub struct ProcessedInputs {
    /// One entry per conversation, in order: unpadded ids and the patch grid of each image.
    pub conversations: Vec<ConversationInputs>,
    /// The id [`Self::input_ids`] pads with (the tokenizer's pad token).
    pub pad_token_id: i64,
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
    /// Patchified layouts: `(t, h, w)` per image (`image_grid_thw`).
    pub image_grid_thw: Option<Array2<i64>>,
    /// Patchified layouts: `(t, h, w)` per video (`video_grid_thw`).
    pub video_grid_thw: Option<Array2<i64>>,
    /// `second_per_grid_ts` per video (families that return it).
    pub second_per_grid_ts: Option<Vec<f32>>,
}

impl ProcessedInputs {
    /// `input_ids` and `attention_mask` `(B, L)`, left-padded as transformers returns them
    /// (`padding=True, padding_side="left"`), made by `vidlm_model::left_pad`.
    pub fn padded(&self) -> (Array2<i64>, Array2<i64>) {
        let rows: Vec<&[i64]> = self.conversations.iter().map(|c| c.input_ids.as_slice()).collect();
        let (ids, mask, width) = left_pad(&rows, self.pad_token_id);
        let b = rows.len();
        let shaped = |v: Vec<i64>| {
            Array2::from_shape_vec((b, width), v).unwrap_or_else(|_| Array2::zeros((b, width)))
        };
        (shaped(ids), shaped(mask))
    }

    /// `input_ids` `(B, L)`, left-padded (see [`Self::padded`]).
    pub fn input_ids(&self) -> Array2<i64> {
        self.padded().0
    }

    /// `attention_mask` `(B, L)` (see [`Self::padded`]).
    pub fn attention_mask(&self) -> Array2<i64> {
        self.padded().1
    }

    /// The patch grid of every image of the batch, in tensor order.
    pub fn image_grids(&self) -> impl Iterator<Item = &PatchGrid> {
        self.conversations.iter().flat_map(|c| c.images.iter())
    }

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
        let (input_ids, attention_mask) = self.padded();
        let mut out = vec![
            (
                "input_ids".to_string(),
                Dtype::I64,
                input_ids.shape().to_vec(),
                i64s(input_ids.iter()),
            ),
            (
                "attention_mask".to_string(),
                Dtype::I64,
                attention_mask.shape().to_vec(),
                i64s(attention_mask.iter()),
            ),
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
            out.push((
                "pixel_values_videos".to_string(),
                Dtype::F32,
                v.shape().to_vec(),
                f32s(v.iter()),
            ));
        }
        for (name, g) in
            [("image_grid_thw", &self.image_grid_thw), ("video_grid_thw", &self.video_grid_thw)]
        {
            if let Some(g) = g {
                out.push((name.to_string(), Dtype::I64, g.shape().to_vec(), i64s(g.iter())));
            }
        }
        if let Some(t) = &self.second_per_grid_ts {
            out.push(("second_per_grid_ts".to_string(), Dtype::F32, vec![t.len()], f32s(t.iter())));
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
                    .map_err(|e| ProcessorError::Internal(format!("safetensors: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        safetensors::serialize(views, &None)
            .map_err(|e| ProcessorError::Internal(format!("safetensors: {e}")))
    }
}

/// The tokenizer's special tokens, as the chat template and the tokenizer see them.
#[derive(Debug, Clone, Default)]
struct SpecialTokens {
    /// `bos_token` (not added again when the rendered prompt starts with it).
    bos: Option<String>,
    /// Id of `pad_token` (or `text_config.pad_token_id`).
    pad_id: Option<u32>,
    /// Every named special token, for the template's context.
    named: Map<String, Value>,
}

/// A processor for one model directory.
pub struct Processor {
    spec: &'static FamilySpec,
    dir: PathBuf,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    image: Option<VisionSettings>,
    video: Option<VisionSettings>,
    tokens: TokenSettings,
    rules: FeatureRules,
    special: SpecialTokens,
    max_len: Option<usize>,
    loader: Arc<dyn MediaLoader>,
}

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor")
            .field("family", &self.spec.family)
            .field("dir", &self.dir)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

fn token_id(tok: &Tokenizer, token: &str, what: &'static str) -> Result<u32> {
    tok.token_to_id(token).ok_or_else(|| ProcessorError::UnknownToken { token: token.into(), what })
}

/// An image to process: a decoded image, or frame `t` of a decoded video (families without a
/// video processor take a video's frames as images without copying them).
enum ImageRef {
    Image(Arc<Array3<u8>>),
    Frame(Arc<Array4<u8>>, usize),
}

enum MediaLoaded {
    Image(Arc<Array3<u8>>),
    /// Sampled frames and their metadata (`frames_indices` always set).
    Video(Arc<Array4<u8>>, VideoMetadata),
}

/// One conversation after [`Processor::load_media`]: its prompt and its decoded media.
struct LoadedConversation {
    prompt: String,
    images: Vec<ImageRef>,
    videos: Vec<(Arc<Array4<u8>>, VideoMetadata)>,
}

/// One processed video: pixels (`(T, 3, H, W)`, or rows for patchified layouts) and, for
/// patchified layouts, its grid and metadata.
struct ProcessedVideo {
    pixels: ArrayD<f32>,
    thw: Option<(u32, u32, u32)>,
    meta: VideoMetadata,
}

impl Processor {
    /// Reads a model directory (hub or transformers-5 layout).
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Processor> {
        Processor::from_files(&ModelFiles::read(dir.as_ref())?)
    }

    /// Builds the processor from the model directory's parsed files.
    pub fn from_files(files: &ModelFiles) -> Result<Processor> {
        let spec = files.spec()?;
        let tokenizer = Self::load_tokenizer(files)?;
        let (image, video) = Self::vision_settings(files, spec)?;
        let tokens = Self::resolve_tokens(files, spec, &tokenizer)?;
        let mut rules = FeatureRules::resolve(spec, &files.processor)?;
        if let Some(p) = image.as_ref().and_then(|s| s.patch.as_ref()) {
            rules.merge_size = Some(p.merge_size as u32);
        }
        let template = match &files.chat_template {
            Some((src, _)) => Some(ChatTemplate::new(src)?),
            None => None,
        };
        let special = Self::special_tokens(files, &tokenizer)?;
        let tc = &files.tokenizer_config;
        let max_len =
            files.config.text().max_position_embeddings.or_else(|| {
                tc.model_max_length.filter(|m| *m > 0.0 && *m < 1e12).map(|m| m as usize)
            });
        Ok(Processor {
            spec,
            dir: files.dir.clone(),
            tokenizer,
            template,
            image,
            video,
            tokens,
            rules,
            special,
            max_len,
            loader: default_loader(),
        })
    }

    fn load_tokenizer(files: &ModelFiles) -> Result<Tokenizer> {
        let path = files.tokenizer_json.as_ref().ok_or_else(|| ModelError::MissingFile {
            dir: files.dir.clone(),
            file: "tokenizer.json".into(),
        })?;
        Tokenizer::from_file(path)
            .map_err(|e| ProcessorError::Tokenizer(format!("{}: {e}", path.display())))
    }

    /// The image processor's settings (required) and the video processor's (families with one).
    fn vision_settings(
        files: &ModelFiles,
        spec: &FamilySpec,
    ) -> Result<(Option<VisionSettings>, Option<VisionSettings>)> {
        let image = match &files.image_processor {
            Some((cfg, file)) => VisionSettings::resolve(cfg, file, spec.image_class)?,
            None => return Err(ModelError::MissingFile {
                dir: files.dir.clone(),
                file:
                    "preprocessor_config.json (or processor_config.json with \"image_processor\")"
                        .into(),
            }
            .into()),
        };
        let video = match (spec.video_class, &files.video_processor) {
            (None, _) => None,
            // `preprocessor_config.json` standing in for the video config: its image class does
            // not apply (transformers picks the model's video processor class).
            (Some(class), Some((cfg, file))) if file == "preprocessor_config.json" => {
                Some(VisionSettings::resolve_video(cfg, file, class)?)
            }
            (Some(class), Some((cfg, file))) => Some(VisionSettings::resolve(cfg, file, class)?),
            (Some(_), None) => {
                return Err(ModelError::MissingFile {
                    dir: files.dir.clone(),
                    file: "video_preprocessor_config.json (or processor_config.json with \"video_processor\")".into(),
                }
                .into())
            }
        };
        Ok((Some(image), video))
    }

    /// The placeholder strings (tokenizer config, then processor config, then the family's
    /// defaults) and their ids in the vocabulary.
    fn resolve_tokens(
        files: &ModelFiles,
        spec: &FamilySpec,
        tokenizer: &Tokenizer,
    ) -> Result<TokenSettings> {
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
        let video_token = d.video_token.map(|default| {
            tc.video_token
                .as_ref()
                .map(|t| t.content().to_string())
                .or_else(|| tc.named_special("video_token"))
                .or_else(|| pc.video_token.clone())
                .unwrap_or_else(|| default.to_string())
        });
        let image_token_id = token_id(tokenizer, &image_token, "image placeholder")?;
        let video_token_id = match &video_token {
            Some(t) => Some(token_id(tokenizer, t, "video placeholder")?),
            None => None,
        };
        let vision_marker_ids = match d.vision_markers {
            Some((start, end)) => Some((
                token_id(tokenizer, start, "vision start")?,
                token_id(tokenizer, end, "vision end")?,
            )),
            None => None,
        };
        Ok(TokenSettings {
            image_token,
            video_token,
            image_token_id,
            video_token_id,
            vision_marker_ids,
        })
    }

    /// BOS, the pad id and the named special tokens the template sees.
    fn special_tokens(files: &ModelFiles, tokenizer: &Tokenizer) -> Result<SpecialTokens> {
        let tc = &files.tokenizer_config;
        let content = |t: &Option<TokenSpec>| t.as_ref().map(|t| t.content().to_string());
        let pad_id = match content(&tc.pad_token) {
            Some(p) => Some(token_id(tokenizer, &p, "padding")?),
            None => files.config.text().pad_token_id,
        };
        let mut named = Map::new();
        for (k, v) in [
            ("bos_token", &tc.bos_token),
            ("eos_token", &tc.eos_token),
            ("unk_token", &tc.unk_token),
            ("pad_token", &tc.pad_token),
        ] {
            if let Some(s) = content(v) {
                named.insert(k.into(), Value::String(s));
            }
        }
        for src in
            [&tc.extra_special_tokens, &tc.model_specific_special_tokens].into_iter().flatten()
        {
            if let Some(obj) = src.as_object() {
                for (k, v) in obj {
                    let s = v
                        .as_str()
                        .map(String::from)
                        .or_else(|| v.get("content").and_then(Value::as_str).map(String::from));
                    if let Some(s) = s {
                        named.entry(k.clone()).or_insert(Value::String(s));
                    }
                }
            }
        }
        Ok(SpecialTokens { bos: content(&tc.bos_token), pad_id, named })
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

    /// The model directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Effective image processor settings.
    pub fn image_settings(&self) -> Option<&VisionSettings> {
        self.image.as_ref()
    }

    /// Effective video processor settings.
    pub fn video_settings(&self) -> Option<&VisionSettings> {
        self.video.as_ref()
    }

    /// Placeholder strings and ids.
    pub fn token_settings(&self) -> &TokenSettings {
        &self.tokens
    }

    /// The rules that decide each image's and video's placeholder count.
    pub fn feature_rules(&self) -> &FeatureRules {
        &self.rules
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The context limit used for the prompt-length check.
    pub fn max_len(&self) -> Option<usize> {
        self.max_len
    }

    /// The id batches are padded with (the tokenizer's pad token), if the model has one.
    pub fn pad_token_id(&self) -> Option<u32> {
        self.special.pad_id
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
        let t = self.template.as_ref().ok_or_else(|| ModelError::MissingFile {
            dir: self.dir.clone(),
            file: "chat_template.jinja / chat_template.json (no chat template)".into(),
        })?;
        t.render(&conv.messages, add_generation_prompt, &self.special.named)
    }

    /// The conversation with every media item loaded and sampled as [`Processor::process`] would
    /// (paths through the media loader, videos sampled by `opts`): images become
    /// [`MediaInput::Decoded`] (Qwen-VL videos [`VideoInput::WithMetadata`]). Processing the result with
    /// `ProcessOptions { sampling: Sampling::All, max_frames: None, .. }` gives the same inputs as
    /// processing `conv` with `opts`. `vidlm run` decodes this way before handing the request to the
    /// engine.
    pub fn load_conversation(
        &self,
        conv: &Conversation,
        opts: &ProcessOptions,
    ) -> Result<Conversation> {
        let media = self
            .load_items(0, conv, opts)?
            .into_iter()
            .map(|m| match m {
                MediaLoaded::Image(a) => MediaInput::Decoded(DecodedMedia::Image(a)),
                // Patchified video processors need the sampled indices and the frame rate.
                MediaLoaded::Video(a, meta) if self.video_patch_rule().is_some() => {
                    MediaInput::Video(VideoInput::WithMetadata(a, meta))
                }
                MediaLoaded::Video(a, _) => MediaInput::Decoded(DecodedMedia::Video(a)),
            })
            .collect();
        Ok(Conversation { messages: conv.messages.clone(), media })
    }

    /// Loads conversation `ci`'s media in order (paths through the loader, videos sampled by `opts`).
    fn load_items(
        &self,
        ci: usize,
        conv: &Conversation,
        opts: &ProcessOptions,
    ) -> Result<Vec<MediaLoaded>> {
        conv.media
            .iter()
            .enumerate()
            .map(|(mi, m)| {
                let what = format!("conversation {ci} media {mi}");
                match m {
                    MediaInput::Image(i) => self.load_image(i, &what).map(MediaLoaded::Image),
                    MediaInput::Video(v) => {
                        self.load_video(v, opts, &what).map(|(a, m)| MediaLoaded::Video(a, m))
                    }
                    MediaInput::Decoded(DecodedMedia::Image(a)) => {
                        Ok(MediaLoaded::Image(Arc::clone(a)))
                    }
                    MediaInput::Decoded(DecodedMedia::Video(a)) => self
                        .sample_decoded_video(a, opts, &what)
                        .map(|(a, m)| MediaLoaded::Video(a, m)),
                }
            })
            .collect()
    }

    fn load_image(&self, img: &ImageInput, what: &str) -> Result<Arc<Array3<u8>>> {
        match img {
            ImageInput::Path(p) => self.loader.load_image(p).map(Arc::new),
            ImageInput::Url(u) => Err(ProcessorError::Unsupported(format!(
                "{what}: URLs are not fetched ({u}); download it first"
            ))),
            ImageInput::Base64(_) => {
                Err(ProcessorError::Unsupported(format!("{what}: base64 images are not supported")))
            }
        }
    }

    /// The frame rule of a patchified video processor (None: the standard sampling).
    fn video_patch_rule(&self) -> Option<FrameRule> {
        self.video.as_ref().and_then(|s| s.patch.as_ref()).map(|p| p.frame_rule)
    }

    /// The frames `opts` selects from a video of `total` frames at `fps`, by the video
    /// processor's own formula.
    fn pick_frames(
        &self,
        opts: &ProcessOptions,
        total: usize,
        fps: Option<f64>,
        what: &str,
    ) -> Result<Vec<usize>> {
        let sampling_err =
            |source: SamplingError| ProcessorError::Sampling { what: what.to_string(), source };
        match self.video.as_ref().and_then(|s| s.patch.as_ref()) {
            Some(p) => {
                family_frames(p.frame_rule, &opts.sampling, total, fps, &p.frames, opts.max_frames)
                    .map_err(sampling_err)
            }
            None => select_frames(&opts.sampling, total, fps, opts.max_frames, false)
                .map_err(sampling_err),
        }
    }

    /// A decoded video's frames (the whole clip as far as is known) sampled by `opts`. Decoded
    /// frames have no timestamps or frame rate: index-based sampling only.
    fn sample_decoded_video(
        &self,
        a: &Arc<Array4<u8>>,
        opts: &ProcessOptions,
        what: &str,
    ) -> Result<(Arc<Array4<u8>>, VideoMetadata)> {
        let total = a.shape()[0];
        let idx = if self.samples_frames(opts) {
            self.pick_frames(opts, total, None, what)?
        } else {
            (0..total).collect()
        };
        let every = idx.iter().copied().eq(0..total);
        let meta =
            VideoMetadata { total_num_frames: total, fps: None, frames_indices: Some(idx.clone()) };
        let frames = if every { Arc::clone(a) } else { Arc::new(a.select(Axis(0), &idx)) };
        Ok((frames, meta))
    }

    /// Whether `opts` asks for frame sampling.
    fn sampling_requested(opts: &ProcessOptions) -> bool {
        opts.sampling != Sampling::All || opts.max_frames.is_some()
    }

    /// Whether a video's frames get sampled: on request, or always where the family's video
    /// processor has its own formula (Qwen3-VL's default fps).
    fn samples_frames(&self, opts: &ProcessOptions) -> bool {
        Self::sampling_requested(opts) || self.video_patch_rule().is_some()
    }

    fn load_video(
        &self,
        v: &VideoInput,
        opts: &ProcessOptions,
        what: &str,
    ) -> Result<(Arc<Array4<u8>>, VideoMetadata)> {
        let sampled = Self::sampling_requested(opts);
        let patch_rule = self.video_patch_rule();
        let whole = |a: &Arc<Array4<u8>>, fps: Option<f64>| VideoMetadata {
            total_num_frames: a.shape()[0],
            fps,
            frames_indices: Some((0..a.shape()[0]).collect()),
        };
        let samples = self.samples_frames(opts);
        match v {
            VideoInput::WithMetadata(a, meta) => match &meta.frames_indices {
                Some(idx) => {
                    if sampled {
                        return Err(ProcessorError::Unsupported(format!(
                            "{what}: the video is already sampled (frames_indices given); it cannot be sampled again"
                        )));
                    }
                    if idx.len() != a.shape()[0] {
                        return Err(ProcessorError::InvalidMedia {
                            what: what.into(),
                            message: format!(
                                "{} frames_indices for {} frames",
                                idx.len(),
                                a.shape()[0]
                            ),
                        });
                    }
                    Ok((a.clone(), meta.clone()))
                }
                None => {
                    if a.shape()[0] != meta.total_num_frames {
                        return Err(ProcessorError::InvalidMedia {
                            what: what.into(),
                            message: format!(
                                "total_num_frames is {} but {} frames are given",
                                meta.total_num_frames,
                                a.shape()[0]
                            ),
                        });
                    }
                    if !samples {
                        return Ok((a.clone(), whole(a, meta.fps)));
                    }
                    let idx = self.pick_frames(opts, a.shape()[0], meta.fps, what)?;
                    let out = VideoMetadata {
                        total_num_frames: meta.total_num_frames,
                        fps: meta.fps,
                        frames_indices: Some(idx.clone()),
                    };
                    Ok((Arc::new(a.select(Axis(0), &idx)), out))
                }
            },
            VideoInput::Path(p) => {
                if patch_rule.is_some() {
                    let (total, fps) = self.loader.probe_video(p)?;
                    let idx = self.pick_frames(opts, total, fps, what)?;
                    let frames =
                        self.loader.load_video(p, &Sampling::Indices(idx.clone()), None)?;
                    let meta =
                        VideoMetadata { total_num_frames: total, fps, frames_indices: Some(idx) };
                    return Ok((Arc::new(frames), meta));
                }
                let a = Arc::new(self.loader.load_video(p, &opts.sampling, opts.max_frames)?);
                let meta = whole(&a, None);
                Ok((a, meta))
            }
            VideoInput::Url(u) => Err(ProcessorError::Unsupported(format!(
                "{what}: URLs are not fetched ({u}); download it first"
            ))),
            VideoInput::Frames(list) => {
                if sampled {
                    return Err(ProcessorError::Unsupported(format!(
                        "{what}: frame sampling is not supported for a video given as a list of images"
                    )));
                }
                let frames = list
                    .iter()
                    .enumerate()
                    .map(|(i, f)| self.load_image(f, &format!("{what} frame {i}")))
                    .collect::<Result<Vec<_>>>()?;
                let a = stack_frames(&frames, what)?;
                let meta = whole(&a, None);
                Ok((a, meta))
            }
        }
    }

    /// Renders, tokenizes, expands and processes a batch of conversations, like
    /// `processor.apply_chat_template(conversations, tokenize=True, return_dict=True,
    /// padding=True, padding_side="left", return_tensors="pt")`.
    pub fn process(
        &self,
        conversations: &[Conversation],
        opts: &ProcessOptions,
    ) -> Result<ProcessedInputs> {
        if conversations.is_empty() {
            return Err(ProcessorError::Messages("no conversations given".into()));
        }
        let loaded = conversations
            .iter()
            .enumerate()
            .map(|(ci, conv)| self.load_media(ci, conv, opts))
            .collect::<Result<Vec<_>>>()?;
        let prompts: Vec<String> = loaded.iter().map(|c| c.prompt.clone()).collect();
        let img_views: Vec<Vec<ArrayView3<'_, u8>>> = loaded
            .iter()
            .map(|c| {
                c.images
                    .iter()
                    .map(|r| match r {
                        ImageRef::Image(a) => a.view(),
                        ImageRef::Frame(v, t) => v.index_axis(Axis(0), *t),
                    })
                    .collect()
            })
            .collect();
        let vid_views: Vec<Vec<ArrayView4<'_, u8>>> =
            loaded.iter().map(|c| c.videos.iter().map(|(a, _)| a.view()).collect()).collect();
        let metas: Vec<Vec<VideoMetadata>> =
            loaded.iter().map(|c| c.videos.iter().map(|(_, m)| m.clone()).collect()).collect();
        self.process_all(&prompts, &img_views, &vid_views, Some(&metas), opts)
    }

    /// Stage 1: loads a conversation's media in order and renders its prompt (a family without a
    /// video processor gets each video as its frames, each an image part).
    fn load_media(
        &self,
        ci: usize,
        conv: &Conversation,
        opts: &ProcessOptions,
    ) -> Result<LoadedConversation> {
        let loaded = self.load_items(ci, conv, opts)?;
        let mut images = Vec::new();
        let mut videos = Vec::new();
        let mut messages = conv.messages.clone();
        if self.spec.video_tokens == VideoTokens::FramesAsImages {
            let frame_counts: Vec<usize> = loaded
                .iter()
                .filter_map(|m| match m {
                    MediaLoaded::Video(v, _) => Some(v.shape()[0]),
                    MediaLoaded::Image(_) => None,
                })
                .collect();
            messages = videos_to_image_parts(&messages, &frame_counts);
            for m in loaded {
                match m {
                    MediaLoaded::Image(i) => images.push(ImageRef::Image(i)),
                    // The frames stay in the decoded video: views, no copy.
                    MediaLoaded::Video(v, _) => {
                        images.extend((0..v.shape()[0]).map(|t| ImageRef::Frame(v.clone(), t)))
                    }
                }
            }
        } else {
            for m in loaded {
                match m {
                    MediaLoaded::Image(i) => images.push(ImageRef::Image(i)),
                    MediaLoaded::Video(v, meta) => videos.push((v, meta)),
                }
            }
        }
        let prompt =
            self.render(&Conversation { messages, media: Vec::new() }, opts.add_generation_prompt)?;
        Ok(LoadedConversation { prompt, images, videos })
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
        self.process_all(prompts, images, videos, None, opts)
    }

    /// [`Self::process_prompts`] with each video's metadata (None: every frame of a video of
    /// unknown frame rate, as transformers assumes for arrays without `video_metadata`).
    fn process_all(
        &self,
        prompts: &[String],
        images: &[Vec<ArrayView3<'_, u8>>],
        videos: &[Vec<ArrayView4<'_, u8>>],
        metas: Option<&[Vec<VideoMetadata>]>,
        opts: &ProcessOptions,
    ) -> Result<ProcessedInputs> {
        if prompts.is_empty() {
            return Err(ProcessorError::Messages("no prompts given".into()));
        }
        if images.len() > prompts.len() || videos.len() > prompts.len() {
            return Err(ProcessorError::Messages("more media lists than prompts".into()));
        }
        let media_count =
            |ci: usize| (images.get(ci).map_or(0, Vec::len), videos.get(ci).map_or(0, Vec::len));
        let encoded = self.encode_prompts(prompts, &media_count)?;
        let (processed_images, processed_videos) =
            self.process_pixels(images, videos, metas, opts)?;
        let (image_token_counts, video_token_counts) =
            self.count_placeholders(&processed_images, &processed_videos);
        let video_expansions = self.video_expansions(&processed_videos, &video_token_counts)?;
        let expanded =
            self.expand_placeholders(&encoded, &image_token_counts, &video_expansions)?;
        self.assemble(
            prompts,
            expanded,
            processed_images,
            processed_videos,
            image_token_counts,
            video_token_counts,
        )
    }

    /// Stage 3: tokenizes each prompt (unexpanded) and checks its placeholders against its
    /// media, before any pixel work.
    fn encode_prompts(
        &self,
        prompts: &[String],
        media_count: &dyn Fn(usize) -> (usize, usize),
    ) -> Result<Vec<Vec<u32>>> {
        prompts
            .iter()
            .enumerate()
            .map(|(ci, prompt)| {
                let add_special =
                    !self.special.bos.as_ref().is_some_and(|bos| prompt.starts_with(bos.as_str()));
                let enc = self
                    .tokenizer
                    .encode(prompt.as_str(), add_special)
                    .map_err(|e| ProcessorError::Tokenizer(e.to_string()))?;
                let ids: Vec<u32> = enc.get_ids().to_vec();
                let n_img = ids.iter().filter(|&&i| i == self.tokens.image_token_id).count();
                let n_vid = self
                    .tokens
                    .video_token_id
                    .map_or(0, |v| ids.iter().filter(|&&i| i == v).count());
                let (conv_images, conv_videos) = media_count(ci);
                if n_img != conv_images {
                    return Err(ProcessorError::PlaceholderMismatch {
                        conversation: ci,
                        kind: "image",
                        placeholders: n_img,
                        media: conv_images,
                    });
                }
                if n_vid != conv_videos {
                    if self.tokens.video_token_id.is_none() {
                        return Err(ProcessorError::Unsupported(format!(
                            "{} has no video processor: pass a video's frames as images",
                            self.spec.processor_class
                        )));
                    }
                    return Err(ProcessorError::PlaceholderMismatch {
                        conversation: ci,
                        kind: "video",
                        placeholders: n_vid,
                        media: conv_videos,
                    });
                }
                Ok(ids)
            })
            .collect()
    }

    /// Stage 4: every image (in parallel) and video to normalised pixels. `images[i]` is
    /// processed as OneVision's multi-image mode when conversation `i` has 2+ images.
    #[allow(clippy::type_complexity)]
    fn process_pixels(
        &self,
        images: &[Vec<ArrayView3<'_, u8>>],
        videos: &[Vec<ArrayView4<'_, u8>>],
        metas: Option<&[Vec<VideoMetadata>]>,
        opts: &ProcessOptions,
    ) -> Result<(Vec<Vec<ProcessedImage>>, Vec<Vec<ProcessedVideo>>)> {
        let mut flat: Vec<ArrayView3<'_, u8>> = Vec::new();
        let mut multi: Vec<bool> = Vec::new();
        let mut names: Vec<(usize, usize)> = Vec::new();
        for (ci, conv) in images.iter().enumerate() {
            for (ii, img) in conv.iter().enumerate() {
                flat.push(img.view());
                multi.push(conv.len() != 1);
                names.push((ci, ii));
            }
        }
        let processed = if flat.is_empty() {
            Vec::new()
        } else {
            let image = self
                .image
                .as_ref()
                .ok_or_else(|| ProcessorError::Unsupported("no image processor".into()))?;
            let image = self.with_budget(image, opts)?;
            let s = &image;
            let what = |i: usize| {
                let (ci, ii) = names.get(i).copied().unwrap_or((0, i));
                format!("conversation {ci} image {ii}")
            };
            process_images(
                &flat,
                &multi,
                self.spec.image_layout,
                s,
                self.image_backend(opts.image_backend),
                &what,
            )?
        };
        let mut processed = processed.into_iter();
        let per_conv_images =
            images.iter().map(|conv| processed.by_ref().take(conv.len()).collect()).collect();
        let vb = opts.video_backend.unwrap_or(Backend::Torchvision);
        let per_conv_videos = videos
            .iter()
            .enumerate()
            .map(|(ci, conv)| {
                conv.iter()
                    .enumerate()
                    .map(|(vi, v)| {
                        let s = self.video.as_ref().ok_or_else(|| {
                            ProcessorError::Unsupported("no video processor".into())
                        })?;
                        let video = self.with_budget(s, opts)?;
                        let s = &video;
                        let what = format!("conversation {ci} video {vi}");
                        let t = v.shape()[0];
                        let meta = metas
                            .and_then(|m| m.get(ci))
                            .and_then(|m| m.get(vi))
                            .cloned()
                            .unwrap_or(VideoMetadata {
                                total_num_frames: t,
                                fps: None,
                                frames_indices: Some((0..t).collect()),
                            });
                        if s.patch.is_some() {
                            let p = process_video_patches(v.view(), s, vb, &what)?;
                            return Ok(ProcessedVideo {
                                pixels: p.pixels.into_dyn(),
                                thw: Some(p.thw),
                                meta,
                            });
                        }
                        let pixels = process_video(v.view(), s, vb, &what)?;
                        Ok(ProcessedVideo { pixels, thw: None, meta })
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((per_conv_images, per_conv_videos))
    }

    /// `s` with the call's pixel budget: `size` (both processors), then `min_pixels` /
    /// `max_pixels` over its sides where the class takes them (transformers' call arguments;
    /// Qwen3-VL's video processor takes only `size`). A budget for a processor without one
    /// (the LLaVA families) is [`ProcessorError::Unsupported`]; a value outside 1..=2³²-1 is
    /// [`ProcessorError::InvalidOption`].
    fn with_budget(&self, s: &VisionSettings, opts: &ProcessOptions) -> Result<VisionSettings> {
        let mut out = s.clone();
        if opts.min_pixels.is_none() && opts.max_pixels.is_none() && opts.size.is_none() {
            return Ok(out);
        }
        let Some(p) = out.patch.as_mut() else {
            return Err(ProcessorError::Unsupported(format!(
                "pixel budgets (min_pixels / max_pixels / size) apply to the patchified (Qwen-VL) processors; {} has none",
                s.class
            )));
        };
        let options = [
            ("size.shortest_edge", opts.size.map(|s| s.0)),
            ("size.longest_edge", opts.size.map(|s| s.1)),
            ("min_pixels", opts.min_pixels),
            ("max_pixels", opts.max_pixels),
        ];
        for (option, v) in options {
            if let Some(v) = v.filter(|v| *v == 0 || *v > u64::from(u32::MAX)) {
                return Err(ProcessorError::InvalidOption {
                    option,
                    message: format!("pixel budget {v} is outside 1..={}", u32::MAX),
                });
            }
        }
        if let Some((min, max)) = opts.size {
            (p.min_pixels, p.max_pixels) = (min, max);
        }
        // A lower budget left above the upper one (a call's max_pixels under the config's
        // min_pixels) is not an error in transformers: smart_resize shrinks to the upper budget
        // first. So it is not one here either.
        if p.pixel_kwargs {
            p.min_pixels = opts.min_pixels.unwrap_or(p.min_pixels);
            p.max_pixels = opts.max_pixels.unwrap_or(p.max_pixels);
        }
        Ok(out)
    }

    /// Checks a call's pixel budget (`opts.size`, `opts.min_pixels`, `opts.max_pixels`)
    /// against this model's image and video processors without processing anything: what
    /// [`Self::process`] would refuse, said before any media is loaded (the engine checks a
    /// request with it when it is submitted).
    pub fn check_budget(&self, opts: &ProcessOptions) -> Result<()> {
        for s in [self.image.as_ref(), self.video.as_ref()].into_iter().flatten() {
            self.with_budget(s, opts)?;
        }
        Ok(())
    }

    /// Whether this model's video processor samples frames with its own formula (the
    /// patchified, Qwen-VL families): then a video's frames are picked with
    /// [`Self::video_frame_indices`] from its frame count and rate, and handed to the processor
    /// with their [`VideoMetadata`].
    pub fn samples_by_family(&self) -> bool {
        self.video_patch_rule().is_some()
    }

    /// The frames `opts` (its `sampling` and `max_frames`) takes from a video of `total` frames
    /// playing at `fps`, by this model's video processor's own formula where it has one
    /// (`vidlm_model::family_frames`), else transformers' `default_sample_indices_fn`
    /// (`vidlm_model::select_frames`) — what the processor does with a video given by path.
    pub fn video_frame_indices(
        &self,
        opts: &ProcessOptions,
        total: usize,
        fps: Option<f64>,
    ) -> Result<Vec<usize>> {
        self.pick_frames(opts, total, fps, "video")
    }

    /// Stage 5: placeholder tokens per image and video, per conversation.
    fn count_placeholders(
        &self,
        images: &[Vec<ProcessedImage>],
        videos: &[Vec<ProcessedVideo>],
    ) -> (Vec<Vec<usize>>, Vec<Vec<usize>>) {
        let video_merge = self
            .video
            .as_ref()
            .and_then(|s| s.patch.as_ref())
            .map(|p| p.merge_size as u32)
            .or(self.rules.merge_size);
        let image_counts = images
            .iter()
            .map(|c| c.iter().map(|im| self.image_token_count(im)).collect())
            .collect();
        let video_counts = videos
            .iter()
            .map(|c| {
                c.iter()
                    .map(|v| match v.thw {
                        Some(thw) => {
                            FeatureRules { merge_size: video_merge, ..self.rules }.grid_tokens(thw)
                        }
                        None => {
                            let s = v.pixels.shape();
                            self.rules.video_tokens(s[0], s[2], s[3])
                        }
                    })
                    .collect()
            })
            .collect();
        (image_counts, video_counts)
    }

    /// Number of placeholder tokens for a processed image.
    pub fn image_token_count(&self, img: &ProcessedImage) -> usize {
        let sh = img.patches.shape();
        let patch_px = (sh[sh.len() - 2] as u32, sh[sh.len() - 1] as u32);
        self.rules.image_tokens(&img.grid, patch_px)
    }

    /// Number of placeholder tokens for a processed video `(T, 3, H, W)`.
    pub fn video_token_count(&self, t_frames: usize, h: usize, w: usize) -> usize {
        self.rules.video_tokens(t_frames, h, w)
    }

    /// The ids each video placeholder becomes: its count of placeholders, or for the timestamped
    /// video prompt, per temporal patch `<{t:.1f} seconds>` + start marker + `h·w/merge²`
    /// placeholders + end marker (the marker the template put around the placeholder stays).
    fn video_expansions(
        &self,
        videos: &[Vec<ProcessedVideo>],
        counts: &[Vec<usize>],
    ) -> Result<Vec<Vec<Vec<i64>>>> {
        let Some(vid) = self.tokens.video_token_id else {
            return Ok(counts.iter().map(|c| c.iter().map(|_| Vec::new()).collect()).collect());
        };
        let timestamped = self.spec.video_tokens == VideoTokens::GridMergedTimestamped;
        videos
            .iter()
            .zip(counts)
            .map(|(conv, conv_counts)| {
                conv.iter()
                    .zip(conv_counts)
                    .map(|(v, &n)| {
                        if !timestamped {
                            return Ok(vec![i64::from(vid); n]);
                        }
                        let ((t, _, _), Some((start, end))) =
                            (v.thw.unwrap_or((1, 0, 0)), self.tokens.vision_marker_ids)
                        else {
                            return Err(ProcessorError::Internal(
                                "timestamped video prompt without vision markers".into(),
                            ));
                        };
                        let per_frame = n / (t.max(1) as usize);
                        let tp = self
                            .video
                            .as_ref()
                            .and_then(|s| s.patch.as_ref())
                            .map_or(2, |p| p.temporal_patch_size);
                        let indices = v.meta.frames_indices.clone().unwrap_or_default();
                        // transformers: an unknown frame rate counts as 24.
                        let fps = v.meta.fps.unwrap_or(24.0);
                        let stamps = patch_timestamps(&indices, fps, tp);
                        let mut out = Vec::with_capacity(n + 12 * t as usize);
                        for ti in 0..t as usize {
                            let ts = stamps.get(ti).copied().unwrap_or(0.0);
                            let text = format!("<{} seconds>", format_seconds(ts));
                            let enc = self
                                .tokenizer
                                .encode(text.as_str(), false)
                                .map_err(|e| ProcessorError::Tokenizer(e.to_string()))?;
                            out.extend(enc.get_ids().iter().map(|&i| i64::from(i)));
                            out.push(i64::from(start));
                            out.extend(std::iter::repeat_n(i64::from(vid), per_frame));
                            out.push(i64::from(end));
                        }
                        Ok(out)
                    })
                    .collect()
            })
            .collect()
    }

    /// Stage 6: repeats each placeholder to its count and checks each prompt against the context.
    fn expand_placeholders(
        &self,
        encoded: &[Vec<u32>],
        image_counts: &[Vec<usize>],
        video_expansions: &[Vec<Vec<i64>>],
    ) -> Result<Vec<Vec<i64>>> {
        encoded
            .iter()
            .enumerate()
            .map(|(ci, ids)| {
                let mut img = image_counts.get(ci).map(|v| v.iter()).unwrap_or_default();
                let mut vid = video_expansions.get(ci).map(|v| v.iter()).unwrap_or_default();
                let mut out: Vec<i64> = Vec::with_capacity(ids.len());
                for &id in ids {
                    if id == self.tokens.image_token_id {
                        out.extend(std::iter::repeat_n(
                            i64::from(id),
                            img.next().copied().unwrap_or(0),
                        ));
                    } else if Some(id) == self.tokens.video_token_id {
                        if let Some(e) = vid.next() {
                            out.extend_from_slice(e);
                        }
                    } else {
                        out.push(i64::from(id));
                    }
                }
                if let Some(max) = self.max_len {
                    if out.len() > max {
                        return Err(ProcessorError::PromptTooLong {
                            conversation: ci,
                            tokens: out.len(),
                            max,
                        });
                    }
                }
                Ok(out)
            })
            .collect()
    }

    /// Stage 7: the per-conversation hand-off and the batch's pixel tensors.
    fn assemble(
        &self,
        prompts: &[String],
        expanded: Vec<Vec<i64>>,
        images: Vec<Vec<ProcessedImage>>,
        videos: Vec<Vec<ProcessedVideo>>,
        image_counts: Vec<Vec<usize>>,
        video_counts: Vec<Vec<usize>>,
    ) -> Result<ProcessedInputs> {
        let tp = self.video.as_ref().and_then(|s| s.patch.as_ref()).map(|p| p.temporal_patch_size);
        let video_grid = |v: &ProcessedVideo| -> Option<VideoGrid> {
            let thw = v.thw?;
            let n = v.meta.frames_indices.as_ref().map_or(0, Vec::len);
            // `VideoMetadata.sampled_fps`: len(indices) / total * fps, or fps (24 if unknown).
            let sampled_fps = match v.meta.fps {
                Some(fps) if v.meta.total_num_frames > 0 && n > 0 => {
                    n as f64 / v.meta.total_num_frames as f64 * fps
                }
                Some(fps) => fps,
                None => 24.0,
            };
            Some(VideoGrid {
                thw,
                second_per_grid_t: (tp.unwrap_or(2) as f64 / sampled_fps) as f32,
                frames_indices: v.meta.frames_indices.clone().unwrap_or_default(),
            })
        };
        // Conversations of different lengths are left-padded where they are batched; check now
        // that this model can pad.
        let first_len = expanded.first().map_or(0, Vec::len);
        let needs_pad = expanded.iter().any(|e| e.len() != first_len);
        let pad_token_id =
            match (needs_pad, self.special.pad_id) {
                (_, Some(p)) => i64::from(p),
                (false, None) => 0,
                (true, None) => return Err(ProcessorError::Unsupported(
                    "conversations of different lengths need a pad_token in tokenizer_config.json"
                        .into(),
                )),
            };
        let conversations = expanded
            .into_iter()
            .enumerate()
            .map(|(ci, input_ids)| ConversationInputs {
                input_ids,
                images: images
                    .get(ci)
                    .map(|c| c.iter().map(|im| im.grid).collect())
                    .unwrap_or_default(),
                videos: videos.get(ci).map_or(0, Vec::len),
                video_grids: videos
                    .get(ci)
                    .map(|c| c.iter().filter_map(video_grid).collect())
                    .unwrap_or_default(),
            })
            .collect();
        let batch_num_images: Vec<i64> = images.iter().map(|c| c.len() as i64).collect();
        let images: Vec<ProcessedImage> = images.into_iter().flatten().collect();
        let videos: Vec<ProcessedVideo> = videos.into_iter().flatten().collect();
        let outputs = self.spec.video_outputs;
        let grid_rows = |rows: Vec<(u32, u32, u32)>| -> Option<Array2<i64>> {
            if rows.is_empty() {
                return None;
            }
            let mut a = Array2::<i64>::zeros((rows.len(), 3));
            for (i, (t, h, w)) in rows.into_iter().enumerate() {
                a[[i, 0]] = i64::from(t);
                a[[i, 1]] = i64::from(h);
                a[[i, 2]] = i64::from(w);
            }
            Some(a)
        };
        let image_grid_thw = if outputs.grid_thw {
            grid_rows(images.iter().filter_map(|im| im.grid.thw).collect())
        } else {
            None
        };
        let video_grid_thw = if outputs.grid_thw {
            grid_rows(videos.iter().filter_map(|v| v.thw).collect())
        } else {
            None
        };
        let second_per_grid_ts = (outputs.second_per_grid_ts && !videos.is_empty())
            .then(|| videos.iter().filter_map(video_grid).map(|g| g.second_per_grid_t).collect());
        let (pixel_values, image_sizes) = if images.is_empty() {
            (None, None)
        } else {
            let do_pad = self.image.as_ref().is_some_and(|s| s.do_pad);
            let pv = stack_images(&images, self.spec.image_layout, do_pad)?;
            let sizes = self.spec.image_layout.is_anyres().then(|| {
                let mut a = Array2::<i64>::zeros((images.len(), 2));
                for (i, im) in images.iter().enumerate() {
                    a[[i, 0]] = i64::from(im.grid.image_size.0);
                    a[[i, 1]] = i64::from(im.grid.image_size.1);
                }
                a
            });
            (Some(pv), sizes)
        };
        let patchified = self.spec.image_layout.is_patchified();
        let video_pixels: Vec<ArrayD<f32>> = videos.into_iter().map(|v| v.pixels).collect();
        let pixel_values_videos = if video_pixels.is_empty() {
            None
        } else if patchified {
            Some(concat_rows(&video_pixels)?)
        } else {
            Some(stack_videos(&video_pixels)?)
        };
        // transformers returns `batch_num_images` for OneVision (the only family with a
        // multi-image mode), counting the conversations that have images.
        let multi_image_family =
            self.spec.image_layout == vidlm_model::ImageLayout::AnyresOnevision;
        Ok(ProcessedInputs {
            conversations,
            pad_token_id,
            pixel_values,
            image_key: self.spec.image_key,
            image_sizes,
            pixel_values_videos,
            batch_num_images: (multi_image_family && !images.is_empty())
                .then(|| batch_num_images.into_iter().filter(|&n| n > 0).collect()),
            prompts: prompts.to_vec(),
            image_token_counts: image_counts.into_iter().flatten().collect(),
            video_token_counts: video_counts.into_iter().flatten().collect(),
            image_grid_thw,
            video_grid_thw,
            second_per_grid_ts,
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

fn stack_frames(frames: &[Arc<Array3<u8>>], what: &str) -> Result<Arc<Array4<u8>>> {
    let first = frames.first().ok_or_else(|| ProcessorError::InvalidMedia {
        what: what.into(),
        message: "empty frame list".into(),
    })?;
    let sh = first.shape().to_vec();
    if frames.iter().any(|f| f.shape() != sh.as_slice()) {
        return Err(ProcessorError::InvalidMedia {
            what: what.into(),
            message: "frames have different sizes".into(),
        });
    }
    let mut out = Array4::<u8>::zeros((frames.len(), sh[0], sh[1], sh[2]));
    for (i, f) in frames.iter().enumerate() {
        out.index_axis_mut(Axis(0), i).assign(&**f);
    }
    Ok(Arc::new(out))
}

/// Patchified videos: rows `[patches, C·T·P·P]` concatenated.
fn concat_rows(videos: &[ArrayD<f32>]) -> Result<ArrayD<f32>> {
    let views: Vec<_> = videos.iter().map(|v| v.view()).collect();
    ndarray::concatenate(Axis(0), &views)
        .map_err(|e| ProcessorError::Internal(format!("concatenating video patches: {e}")))
}

fn stack_videos(videos: &[ArrayD<f32>]) -> Result<ArrayD<f32>> {
    let sh = videos.first().map(|v| v.shape().to_vec()).unwrap_or_default();
    if videos.iter().any(|v| v.shape() != sh.as_slice()) {
        return Err(ProcessorError::InvalidMedia {
            what: "videos".into(),
            message:
                "videos have different frame counts or sizes and cannot be batched into one tensor"
                    .into(),
        });
    }
    let views: Vec<_> = videos.iter().map(|v| v.view()).collect();
    ndarray::stack(Axis(0), &views)
        .map_err(|e| ProcessorError::Internal(format!("stacking videos: {e}")))
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
