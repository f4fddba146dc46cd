//! The Hugging Face files of a model directory, as serde structs named after their JSON fields.
//!
//! Two layouts are read:
//! * **hub**: `preprocessor_config.json` (image processor), `video_preprocessor_config.json`,
//!   `processor_config.json` (processor attributes only), `chat_template.json`;
//! * **transformers 5 `save_pretrained`**: image/video processor settings nested in
//!   `processor_config.json` under `"image_processor"` / `"video_processor"`, template in
//!   `chat_template.jinja`.
//!
//! Priority for the video processor follows `VideoProcessorMixin.get_video_processor_dict`:
//! `processor_config.json["video_processor"]` → `video_preprocessor_config.json` →
//! `preprocessor_config.json`. For the image processor: `processor_config.json["image_processor"]`
//! → `preprocessor_config.json`. For the template: `chat_template.jinja` → `chat_template.json` →
//! `processor_config.json["chat_template"]` → `tokenizer_config.json["chat_template"]`.

use crate::error::{ProcessorError, Result};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// `size` / `crop_size` dictionaries (`SizeDict`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct SizeDict {
    /// Fixed output height.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Fixed output width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Resize the shorter side to this, keeping the aspect ratio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shortest_edge: Option<u32>,
    /// Upper bound of the longer side (not used by these families).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longest_edge: Option<u32>,
}

impl SizeDict {
    /// `{"height": h, "width": w}`.
    pub const fn hw(h: u32, w: u32) -> SizeDict {
        SizeDict { height: Some(h), width: Some(w), shortest_edge: None, longest_edge: None }
    }
    /// `{"shortest_edge": s}`.
    pub const fn shortest(s: u32) -> SizeDict {
        SizeDict { height: None, width: None, shortest_edge: Some(s), longest_edge: None }
    }
}

/// A float or a per-channel list (`image_mean`, `image_std`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum FloatOrList {
    /// One value for all channels.
    One(f64),
    /// One value per channel.
    List(Vec<f64>),
}

impl FloatOrList {
    /// Three per-channel values.
    pub fn channels(&self, file: &str, field: &str) -> Result<[f64; 3]> {
        match self {
            FloatOrList::One(v) => Ok([*v; 3]),
            FloatOrList::List(v) if v.len() == 3 => Ok([v[0], v[1], v[2]]),
            FloatOrList::List(v) => Err(ProcessorError::InvalidField {
                file: file.into(),
                field: field.into(),
                message: format!("expected 3 channel values, got {}", v.len()),
            }),
        }
    }
}

/// An image or video processor config (`preprocessor_config.json`,
/// `video_preprocessor_config.json`, or the nested objects of a v5 `processor_config.json`).
/// Absent fields take the class defaults of the family (see [`crate::family`]).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct VisionProcessorConfig {
    /// Image processor class name.
    pub image_processor_type: Option<String>,
    /// Video processor class name.
    pub video_processor_type: Option<String>,
    /// Processor class name.
    pub processor_class: Option<String>,
    /// Whether to resize.
    pub do_resize: Option<bool>,
    /// Resize target.
    pub size: Option<SizeDict>,
    /// PIL resample code (2 bilinear, 3 bicubic).
    pub resample: Option<u32>,
    /// Whether to center-crop.
    pub do_center_crop: Option<bool>,
    /// Center-crop size.
    pub crop_size: Option<SizeDict>,
    /// Whether to rescale.
    pub do_rescale: Option<bool>,
    /// Rescale factor (1/255).
    pub rescale_factor: Option<f64>,
    /// Whether to normalize.
    pub do_normalize: Option<bool>,
    /// Normalization mean.
    pub image_mean: Option<FloatOrList>,
    /// Normalization std.
    pub image_std: Option<FloatOrList>,
    /// Whether to pad (anyres batch padding).
    pub do_pad: Option<bool>,
    /// Whether to convert to RGB.
    pub do_convert_rgb: Option<bool>,
    /// Anyres resolutions, `[height, width]` each.
    pub image_grid_pinpoints: Option<Vec<Vec<u32>>>,
    /// Video processors: sample frames by default.
    pub do_sample_frames: Option<bool>,
    /// Video processors: default frame count.
    pub num_frames: Option<u32>,
    /// Video processors: default sampling rate.
    pub fps: Option<f64>,
}

/// `processor_config.json`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProcessorConfig {
    /// Processor class name.
    pub processor_class: Option<String>,
    /// Image placeholder string.
    pub image_token: Option<String>,
    /// Video placeholder string.
    pub video_token: Option<String>,
    /// Vision patch size.
    pub patch_size: Option<u32>,
    /// `"default"` (drop CLS) or `"full"`.
    pub vision_feature_select_strategy: Option<String>,
    /// Extra tokens per image (CLS).
    pub num_additional_image_tokens: Option<u32>,
    /// OneVision: tokens per base image (729).
    pub num_image_tokens: Option<u32>,
    /// OneVision: `"anyres_max_9"`.
    pub vision_aspect_ratio: Option<String>,
    /// v5 layout: nested image processor settings.
    pub image_processor: Option<VisionProcessorConfig>,
    /// v5 layout: nested video processor settings.
    pub video_processor: Option<VisionProcessorConfig>,
    /// Older layouts: the template stored here.
    pub chat_template: Option<String>,
}

/// The parts of `config.json` the processor needs.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ModelConfig {
    /// e.g. `"llava_onevision"`.
    pub model_type: Option<String>,
    /// e.g. `["LlavaOnevisionForConditionalGeneration"]`.
    #[serde(default)]
    pub architectures: Option<Vec<String>>,
    /// Id of the image placeholder token.
    pub image_token_index: Option<u32>,
    /// v5 name of [`Self::image_token_index`].
    pub image_token_id: Option<u32>,
    /// Id of the video placeholder token.
    pub video_token_index: Option<u32>,
    /// v5 name of [`Self::video_token_index`].
    pub video_token_id: Option<u32>,
    /// Anyres resolutions.
    pub image_grid_pinpoints: Option<Vec<Vec<u32>>>,
    /// The language model's config.
    pub text_config: Option<TextConfig>,
}

/// `config.json["text_config"]`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TextConfig {
    /// The LM's context length.
    pub max_position_embeddings: Option<usize>,
    /// `pad_token_id`.
    pub pad_token_id: Option<u32>,
}

/// A special token given as a string or as an `AddedToken` object.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum TokenSpec {
    /// `"<s>"`.
    Plain(String),
    /// `{"content": "<s>", ...}`.
    Added {
        /// The token text.
        content: String,
    },
}

impl TokenSpec {
    /// The token text.
    pub fn content(&self) -> &str {
        match self {
            TokenSpec::Plain(s) => s,
            TokenSpec::Added { content } => content,
        }
    }
}

/// `tokenizer_config.json` (transformers 4 and 5 forms; v5 may name `TokenizersBackend` as
/// `tokenizer_class` and list `extra_special_tokens`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TokenizerConfig {
    /// e.g. `"LlamaTokenizer"` or `"TokenizersBackend"`.
    pub tokenizer_class: Option<String>,
    /// BOS token.
    pub bos_token: Option<TokenSpec>,
    /// EOS token.
    pub eos_token: Option<TokenSpec>,
    /// Padding token.
    pub pad_token: Option<TokenSpec>,
    /// Unknown token.
    pub unk_token: Option<TokenSpec>,
    /// `"left"` or `"right"`.
    pub padding_side: Option<String>,
    /// The tokenizer's maximum length (may be a huge float sentinel).
    pub model_max_length: Option<f64>,
    /// Image placeholder (v5 model-specific special token).
    pub image_token: Option<TokenSpec>,
    /// Video placeholder (v5 model-specific special token).
    pub video_token: Option<TokenSpec>,
    /// v5: a dict `{name: token}` or a list of tokens.
    pub extra_special_tokens: Option<serde_json::Value>,
    /// v5: model-specific special tokens `{name: token}`.
    pub model_specific_special_tokens: Option<serde_json::Value>,
    /// Old layouts keep the template here.
    pub chat_template: Option<serde_json::Value>,
}

impl TokenizerConfig {
    /// A named special token from `extra_special_tokens` / `model_specific_special_tokens`.
    pub fn named_special(&self, name: &str) -> Option<String> {
        for v in [&self.extra_special_tokens, &self.model_specific_special_tokens].into_iter().flatten() {
            if let Some(t) = v.get(name) {
                if let Some(s) = t.as_str() {
                    return Some(s.to_string());
                }
                if let Some(s) = t.get("content").and_then(|c| c.as_str()) {
                    return Some(s.to_string());
                }
            }
        }
        None
    }
}

/// `chat_template.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatTemplateJson {
    /// The template (a string, or a list of `{name, template}`).
    pub chat_template: serde_json::Value,
}

/// Picks the template from a `chat_template` value (string, or named list → `"default"`).
pub fn template_from_value(v: &serde_json::Value, file: &str) -> Result<String> {
    match v {
        serde_json::Value::String(s) => Ok(s.clone()),
        serde_json::Value::Array(items) => {
            let named = |want: Option<&str>| {
                items.iter().find_map(|it| {
                    let name = it.get("name")?.as_str()?;
                    if want.is_none_or(|w| w == name) {
                        it.get("template")?.as_str().map(String::from)
                    } else {
                        None
                    }
                })
            };
            named(Some("default")).or_else(|| named(None)).ok_or_else(|| ProcessorError::InvalidField {
                file: file.into(),
                field: "chat_template".into(),
                message: "no template in the list".into(),
            })
        }
        _ => Err(ProcessorError::InvalidField {
            file: file.into(),
            field: "chat_template".into(),
            message: "expected a string or a list of {name, template}".into(),
        }),
    }
}

/// Reads a file as text, mapping errors.
pub fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| ProcessorError::Io { path: path.to_path_buf(), source })
}

/// Parses JSON text into `T`, naming `file` in errors.
pub fn parse_json<T: DeserializeOwned>(text: &str, file: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| ProcessorError::Json { file: file.into(), message: e.to_string() })
}

/// Reads `dir/name` as JSON if it exists.
pub fn read_json_opt<T: DeserializeOwned>(dir: &Path, name: &str) -> Result<Option<T>> {
    let p = dir.join(name);
    if !p.is_file() {
        return Ok(None);
    }
    parse_json(&read_text(&p)?, name).map(Some)
}

/// All config files of a model directory, parsed.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// The directory.
    pub dir: PathBuf,
    /// `config.json`.
    pub config: ModelConfig,
    /// `processor_config.json` (empty if absent).
    pub processor: ProcessorConfig,
    /// Image processor settings and the file they came from.
    pub image_processor: Option<(VisionProcessorConfig, String)>,
    /// Video processor settings and the file they came from.
    pub video_processor: Option<(VisionProcessorConfig, String)>,
    /// `tokenizer_config.json` (empty if absent).
    pub tokenizer_config: TokenizerConfig,
    /// Path of `tokenizer.json`.
    pub tokenizer_json: PathBuf,
    /// The chat template and the file it came from.
    pub chat_template: Option<(String, String)>,
}

impl ModelFiles {
    /// Reads every file of `dir` (either layout).
    pub fn read(dir: &Path) -> Result<ModelFiles> {
        if !dir.is_dir() {
            return Err(ProcessorError::MissingFile { dir: dir.to_path_buf(), file: "(directory)".into() });
        }
        let config: ModelConfig = read_json_opt(dir, "config.json")?
            .ok_or_else(|| ProcessorError::MissingFile { dir: dir.to_path_buf(), file: "config.json".into() })?;
        let mut processor: ProcessorConfig = read_json_opt(dir, "processor_config.json")?.unwrap_or_default();
        let preprocessor: Option<VisionProcessorConfig> = read_json_opt(dir, "preprocessor_config.json")?;
        let video_pre: Option<VisionProcessorConfig> = read_json_opt(dir, "video_preprocessor_config.json")?;

        let image_processor = match (processor.image_processor.take(), preprocessor.clone()) {
            (Some(p), _) => Some((p, "processor_config.json[image_processor]".to_string())),
            (None, Some(p)) => Some((p, "preprocessor_config.json".to_string())),
            (None, None) => None,
        };
        let video_processor = match (processor.video_processor.take(), video_pre) {
            (Some(p), _) => Some((p, "processor_config.json[video_processor]".to_string())),
            (None, Some(p)) => Some((p, "video_preprocessor_config.json".to_string())),
            // `preprocessor_config.json` serves as the video config only if it is one.
            (None, None) => preprocessor
                .filter(|p| p.video_processor_type.is_some())
                .map(|p| (p, "preprocessor_config.json".to_string())),
        };

        let tokenizer_config: TokenizerConfig = read_json_opt(dir, "tokenizer_config.json")?.unwrap_or_default();
        let tokenizer_json = dir.join("tokenizer.json");
        if !tokenizer_json.is_file() {
            return Err(ProcessorError::MissingFile { dir: dir.to_path_buf(), file: "tokenizer.json".into() });
        }

        let jinja = dir.join("chat_template.jinja");
        let chat_template = if jinja.is_file() {
            Some((read_text(&jinja)?, "chat_template.jinja".to_string()))
        } else if let Some(t) = read_json_opt::<ChatTemplateJson>(dir, "chat_template.json")? {
            Some((template_from_value(&t.chat_template, "chat_template.json")?, "chat_template.json".to_string()))
        } else if let Some(t) = processor.chat_template.clone() {
            Some((t, "processor_config.json".to_string()))
        } else if let Some(v) = &tokenizer_config.chat_template {
            Some((template_from_value(v, "tokenizer_config.json")?, "tokenizer_config.json".to_string()))
        } else {
            None
        };

        Ok(ModelFiles {
            dir: dir.to_path_buf(),
            config,
            processor,
            image_processor,
            video_processor,
            tokenizer_config,
            tokenizer_json,
            chat_template,
        })
    }
}
