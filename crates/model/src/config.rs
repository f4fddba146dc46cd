//! The Hugging Face files of a model directory, as serde structs named after their JSON fields.
//!
//! | file | struct |
//! |---|---|
//! | `config.json` | [`ModelConfig`] (with [`TextConfig`], [`VisionConfig`]) |
//! | `processor_config.json` | [`ProcessorConfig`] |
//! | `preprocessor_config.json`, `video_preprocessor_config.json` | [`VisionProcessorConfig`] |
//! | `tokenizer_config.json` | [`TokenizerConfig`] |
//! | `chat_template.json` | [`ChatTemplateJson`] |
//! | `generation_config.json` | [`GenerationConfig`] |
//! | `onnx/vidlm_manifest.json` | [`crate::Manifest`] |
//!
//! Every field is optional here: what a field's absence means (a class default, or an error
//! naming the file and field) is decided by whoever needs it. [`crate::ModelFiles`] reads them
//! all, once.

use crate::error::ModelError;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::path::Path;

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
    pub fn channels(&self, file: &str, field: &str) -> Result<[f64; 3], ModelError> {
        match self {
            FloatOrList::One(v) => Ok([*v; 3]),
            FloatOrList::List(v) if v.len() == 3 => Ok([v[0], v[1], v[2]]),
            FloatOrList::List(v) => Err(ModelError::InvalidField {
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
    /// Patchified processors: lower pixel budget (older name of `size.shortest_edge`; wins over
    /// `size` as transformers' `__init__` does).
    pub min_pixels: Option<u64>,
    /// Patchified processors: upper pixel budget (older name of `size.longest_edge`).
    pub max_pixels: Option<u64>,
    /// Patchified processors: spatial patch side.
    pub patch_size: Option<u32>,
    /// Patchified processors: frames per temporal patch.
    pub temporal_patch_size: Option<u32>,
    /// Patchified processors: spatial merge (`merge_size × merge_size` patches per token).
    pub merge_size: Option<u32>,
    /// Video processors: fewest frames fps sampling returns.
    pub min_frames: Option<u32>,
    /// Video processors: most frames fps sampling returns.
    pub max_frames: Option<u32>,
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

/// `config.json`: the model's architecture (the fields vidlm reads).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ModelConfig {
    /// e.g. `"llava_onevision"`.
    pub model_type: Option<String>,
    /// e.g. `["LlavaOnevisionForConditionalGeneration"]`.
    #[serde(default)]
    pub architectures: Option<Vec<String>>,
    /// Id of the image placeholder token.
    pub image_token_index: Option<i64>,
    /// v5 name of [`Self::image_token_index`].
    pub image_token_id: Option<i64>,
    /// Id of the video placeholder token.
    pub video_token_index: Option<i64>,
    /// v5 name of [`Self::video_token_index`].
    pub video_token_id: Option<i64>,
    /// Anyres resolutions (`[height, width]` pairs) the model packs features with.
    pub image_grid_pinpoints: Option<Vec<Vec<u32>>>,
    /// OneVision: `"anyres_max_9"`.
    pub vision_aspect_ratio: Option<String>,
    /// `"default"` (drop CLS) or `"full"`.
    pub vision_feature_select_strategy: Option<String>,
    /// The vision tower's config.
    pub vision_config: Option<VisionConfig>,
    /// The language model's config.
    pub text_config: Option<TextConfig>,
    /// Qwen-VL: id of `<|vision_start|>`.
    pub vision_start_token_id: Option<i64>,
    /// Qwen-VL: id of `<|vision_end|>`.
    pub vision_end_token_id: Option<i64>,
    /// A plain language model keeps the text fields at the top level.
    #[serde(flatten)]
    pub top_level_text: TextConfig,
}

impl ModelConfig {
    /// The language model's config: `text_config`, or the top level for plain language models.
    pub fn text(&self) -> &TextConfig {
        self.text_config.as_ref().unwrap_or(&self.top_level_text)
    }

    /// The placeholder ids (`image_token_id`, else `image_token_index`; same for videos).
    pub fn placeholder_ids(&self) -> PlaceholderIds {
        PlaceholderIds {
            image_token_id: self.image_token_id.or(self.image_token_index),
            video_token_id: self.video_token_id.or(self.video_token_index),
        }
    }
}

/// Placeholder token ids from `config.json`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlaceholderIds {
    /// The `<image>` id.
    pub image_token_id: Option<i64>,
    /// The `<video>` id.
    pub video_token_id: Option<i64>,
}

/// `config.json["vision_config"]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct VisionConfig {
    /// Input side in pixels.
    pub image_size: Option<usize>,
    /// Patch side in pixels.
    pub patch_size: Option<usize>,
    /// Qwen-VL: vision blocks.
    pub depth: Option<usize>,
    /// Vision hidden size.
    pub hidden_size: Option<usize>,
    /// Vision attention heads (Qwen-VL).
    pub num_heads: Option<usize>,
    /// Qwen-VL: width of the merged features (the language model's hidden size).
    pub out_hidden_size: Option<usize>,
    /// Qwen-VL: `merge × merge` patches become one token.
    pub spatial_merge_size: Option<usize>,
    /// Qwen-VL: frames per temporal patch.
    pub temporal_patch_size: Option<usize>,
    /// Qwen2.5-VL: window attention side in pixels (112).
    pub window_size: Option<usize>,
    /// Qwen2.5-VL: blocks with full attention (the others attend within windows).
    pub fullatt_block_indexes: Option<Vec<usize>>,
    /// Qwen2.5-VL: M-RoPE time positions per second of video.
    pub tokens_per_second: Option<f64>,
    /// Qwen3-VL: learned position embeddings (a square grid, interpolated per image).
    pub num_position_embeddings: Option<usize>,
    /// Qwen3-VL: vision blocks whose features are added to early decoder layers (DeepStack).
    pub deepstack_visual_indexes: Option<Vec<usize>>,
}

/// `rope_scaling` (hub) / `rope_parameters` (transformers 5) of the text config.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RopeParameters {
    /// `rope_type` (`"default"`, `"linear"`, …).
    pub rope_type: Option<String>,
    /// Older name of `rope_type` (`"mrope"` in Qwen2.5-VL's hub config).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// RoPE base (transformers 5 keeps it here).
    pub rope_theta: Option<f64>,
    /// Scaling factor (linear / dynamic).
    pub factor: Option<f64>,
    /// M-RoPE: rotary dimensions (in pairs) given to the t, h and w rows.
    pub mrope_section: Option<Vec<usize>>,
    /// M-RoPE: sections interleaved (Qwen3-VL) rather than consecutive.
    pub mrope_interleaved: Option<bool>,
}

/// The language-model fields of `config.json` (`text_config`, or the top level for plain LMs).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct TextConfig {
    /// Context length.
    #[serde(default)]
    pub max_position_embeddings: Option<usize>,
    /// `pad_token_id`.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    /// Hidden size.
    #[serde(default)]
    pub hidden_size: Option<usize>,
    /// Attention heads.
    #[serde(default)]
    pub num_attention_heads: Option<usize>,
    /// KV heads (GQA).
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Head dimension.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// Layers.
    #[serde(default)]
    pub num_hidden_layers: Option<usize>,
    /// Vocabulary size.
    #[serde(default)]
    pub vocab_size: Option<usize>,
    /// RoPE base (hub layout; transformers 5 moves it into `rope_parameters`).
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// RoPE parameters (`rope_parameters`, or the hub's `rope_scaling`).
    #[serde(default, alias = "rope_scaling")]
    pub rope_parameters: Option<RopeParameters>,
}

impl TextConfig {
    /// KV heads, falling back to the attention heads.
    pub fn kv_heads(&self) -> Option<usize> {
        self.num_key_value_heads.or(self.num_attention_heads)
    }

    /// Head dimension, falling back to hidden / heads.
    pub fn head_dim(&self) -> Option<usize> {
        self.head_dim.or_else(|| match (self.hidden_size, self.num_attention_heads) {
            (Some(h), Some(n)) if n > 0 => Some(h / n),
            _ => None,
        })
    }
}

/// A field that Hugging Face writes either as one value or as a list.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    /// A single value.
    One(T),
    /// A list of values.
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    /// As a list.
    pub fn to_vec(&self) -> Vec<T> {
        match self {
            OneOrMany::One(v) => vec![v.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// `generation_config.json` (the fields vidlm uses).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct GenerationConfig {
    /// Beginning-of-sequence token.
    #[serde(default)]
    pub bos_token_id: Option<i64>,
    /// End-of-sequence token(s): generation of a row stops when it emits one.
    #[serde(default)]
    pub eos_token_id: Option<OneOrMany<i64>>,
    /// Padding token.
    #[serde(default)]
    pub pad_token_id: Option<i64>,
    /// Total length limit (prompt + new tokens); transformers' default is 20.
    #[serde(default)]
    pub max_length: Option<usize>,
    /// New-token limit (wins over `max_length`).
    #[serde(default)]
    pub max_new_tokens: Option<usize>,
    /// Sample instead of greedy.
    #[serde(default)]
    pub do_sample: Option<bool>,
    /// Sampling temperature.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Top-k filter.
    #[serde(default)]
    pub top_k: Option<usize>,
    /// Top-p filter.
    #[serde(default)]
    pub top_p: Option<f32>,
    /// Min-p filter.
    #[serde(default)]
    pub min_p: Option<f32>,
    /// Repetition penalty.
    #[serde(default)]
    pub repetition_penalty: Option<f32>,
    /// Stop strings.
    #[serde(default)]
    pub stop_strings: Option<OneOrMany<String>>,
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
        for v in
            [&self.extra_special_tokens, &self.model_specific_special_tokens].into_iter().flatten()
        {
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
pub fn template_from_value(v: &serde_json::Value, file: &str) -> Result<String, ModelError> {
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
            named(Some("default")).or_else(|| named(None)).ok_or_else(|| ModelError::InvalidField {
                file: file.into(),
                field: "chat_template".into(),
                message: "no template in the list".into(),
            })
        }
        _ => Err(ModelError::InvalidField {
            file: file.into(),
            field: "chat_template".into(),
            message: "expected a string or a list of {name, template}".into(),
        }),
    }
}

/// Reads a file as text, mapping errors.
pub fn read_text(path: &Path) -> Result<String, ModelError> {
    std::fs::read_to_string(path)
        .map_err(|source| ModelError::Io { path: path.to_path_buf(), source })
}

/// Parses JSON text into `T`, naming `file` in errors.
pub fn parse_json<T: DeserializeOwned>(text: &str, file: &str) -> Result<T, ModelError> {
    serde_json::from_str(text)
        .map_err(|e| ModelError::Json { file: file.into(), message: e.to_string() })
}

/// Reads `dir/name` as JSON if it exists.
pub fn read_json_opt<T: DeserializeOwned>(dir: &Path, name: &str) -> Result<Option<T>, ModelError> {
    let p = dir.join(name);
    if !p.is_file() {
        return Ok(None);
    }
    parse_json(&read_text(&p)?, name).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_config_nested_or_top_level() {
        let c: ModelConfig = parse_json(
            r#"{"model_type":"llava","text_config":{"hidden_size":64,"num_attention_heads":4,"max_position_embeddings":128}}"#,
            "config.json",
        )
        .unwrap();
        let t = c.text();
        assert_eq!(t.head_dim(), Some(16));
        assert_eq!(t.kv_heads(), Some(4));
        assert_eq!(t.max_position_embeddings, Some(128));
        let c: ModelConfig = parse_json(
            r#"{"hidden_size":8,"num_attention_heads":2,"num_key_value_heads":1}"#,
            "config.json",
        )
        .unwrap();
        assert_eq!((c.text().head_dim(), c.text().kv_heads()), (Some(4), Some(1)));
        assert!(matches!(
            parse_json::<ModelConfig>("{not json", "config.json"),
            Err(ModelError::Json { .. })
        ));
    }

    #[test]
    fn placeholder_ids_prefer_the_v5_names() {
        let c: ModelConfig = parse_json(
            r#"{"image_token_index": 5, "image_token_id": 7, "video_token_index": 9}"#,
            "config.json",
        )
        .unwrap();
        assert_eq!(
            c.placeholder_ids(),
            PlaceholderIds { image_token_id: Some(7), video_token_id: Some(9) }
        );
    }

    #[test]
    fn eos_single_or_list() {
        let a: GenerationConfig =
            serde_json::from_str(r#"{"eos_token_id": 2, "bos_token_id": 1}"#).unwrap();
        assert_eq!(a.eos_token_id.unwrap().to_vec(), vec![2]);
        let b: GenerationConfig = serde_json::from_str(
            r#"{"eos_token_id": [151645, 151643], "transformers_version": "5"}"#,
        )
        .unwrap();
        assert_eq!(b.eos_token_id.unwrap().to_vec(), vec![151645, 151643]);
    }
}
