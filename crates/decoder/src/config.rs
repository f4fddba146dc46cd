//! `generation_config.json` / `config.json` (text part) and per-call generation options.

use std::path::Path;

use serde::Deserialize;

use crate::sampling::SamplingParams;
use crate::DecoderError;

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

/// The fields of `generation_config.json` that vidlm uses (names as in transformers).
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

impl GenerationConfig {
    /// Reads `generation_config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, DecoderError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| DecoderError::Io { path: path.to_path_buf(), source: e })?;
        serde_json::from_str(&text).map_err(|e| DecoderError::Config { path: path.to_path_buf(), message: e.to_string() })
    }
}

/// The language-model fields of `config.json` (`text_config`, or the top level for plain LMs).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct TextConfig {
    /// Context length.
    #[serde(default)]
    pub max_position_embeddings: Option<usize>,
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
}

#[derive(Deserialize)]
struct ConfigJson {
    #[serde(default)]
    text_config: Option<TextConfig>,
    #[serde(flatten)]
    top: TextConfig,
}

impl TextConfig {
    /// Reads the text part of a model's `config.json`.
    pub fn from_config_file(path: impl AsRef<Path>) -> Result<Self, DecoderError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| DecoderError::Io { path: path.to_path_buf(), source: e })?;
        let c: ConfigJson =
            serde_json::from_str(&text).map_err(|e| DecoderError::Config { path: path.to_path_buf(), message: e.to_string() })?;
        Ok(c.text_config.unwrap_or(c.top))
    }

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

/// Per-call generation options; `None` fields take the model's `generation_config.json` value,
/// then transformers' defaults (`max_length` 20, greedy, temperature 1, top-k 50, top-p 1).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerationOptions {
    /// New-token limit.
    pub max_new_tokens: Option<usize>,
    /// Sample instead of greedy.
    pub do_sample: Option<bool>,
    /// Temperature (> 0).
    pub temperature: Option<f32>,
    /// Top-k (0 = off).
    pub top_k: Option<usize>,
    /// Top-p in (0, 1].
    pub top_p: Option<f32>,
    /// Min-p in [0, 1].
    pub min_p: Option<f32>,
    /// Repetition penalty (> 0).
    pub repetition_penalty: Option<f32>,
    /// Seed for reproducible sampling (`None` = fresh entropy).
    pub seed: Option<u64>,
    /// End-of-sequence ids (replaces the config's list).
    pub eos_token_ids: Option<Vec<i64>>,
    /// Stop strings (replaces the config's list).
    pub stop_strings: Option<Vec<String>>,
    /// Pad token used for left padding in batches.
    pub pad_token_id: Option<i64>,
    /// Skip special tokens when detokenizing (default `true`).
    pub skip_special_tokens: Option<bool>,
}

/// Fully resolved settings of one generation call.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedGeneration {
    /// Sampling / processor parameters.
    pub sampling: SamplingParams,
    /// New-token limit (`None` = derived from `max_length` and the prompt length).
    pub max_new_tokens: Option<usize>,
    /// Total length limit used when `max_new_tokens` is `None`.
    pub max_length: usize,
    /// EOS ids.
    pub eos_token_ids: Vec<i64>,
    /// Stop strings.
    pub stop_strings: Vec<String>,
    /// Padding id.
    pub pad_token_id: i64,
    /// Seed.
    pub seed: Option<u64>,
    /// Skip special tokens in streamed text.
    pub skip_special_tokens: bool,
}

impl ResolvedGeneration {
    /// Merges call options over the model's config over transformers' defaults, validating ranges.
    pub fn resolve(cfg: &GenerationConfig, o: &GenerationOptions) -> Result<Self, DecoderError> {
        let sampling = SamplingParams {
            do_sample: o.do_sample.or(cfg.do_sample).unwrap_or(false),
            temperature: o.temperature.or(cfg.temperature).unwrap_or(1.0),
            top_k: o.top_k.or(cfg.top_k).unwrap_or(50),
            top_p: o.top_p.or(cfg.top_p).unwrap_or(1.0),
            min_p: o.min_p.or(cfg.min_p),
            repetition_penalty: o.repetition_penalty.or(cfg.repetition_penalty).unwrap_or(1.0),
        };
        let bad = |m: String| Err(DecoderError::InvalidOption(m));
        if sampling.do_sample && !(sampling.temperature > 0.0 && sampling.temperature.is_finite()) {
            return bad(format!("temperature must be > 0, got {}", sampling.temperature));
        }
        if !(sampling.top_p > 0.0 && sampling.top_p <= 1.0) {
            return bad(format!("top_p must be in (0, 1], got {}", sampling.top_p));
        }
        if let Some(m) = sampling.min_p {
            if !(0.0..=1.0).contains(&m) {
                return bad(format!("min_p must be in [0, 1], got {m}"));
            }
        }
        if !(sampling.repetition_penalty > 0.0 && sampling.repetition_penalty.is_finite()) {
            return bad(format!("repetition_penalty must be > 0, got {}", sampling.repetition_penalty));
        }
        let eos_token_ids = match &o.eos_token_ids {
            Some(v) => v.clone(),
            None => cfg.eos_token_id.as_ref().map(|e| e.to_vec()).unwrap_or_default(),
        };
        let stop_strings = match &o.stop_strings {
            Some(v) => v.clone(),
            None => cfg.stop_strings.as_ref().map(|e| e.to_vec()).unwrap_or_default(),
        };
        if o.max_new_tokens == Some(0) {
            return bad("max_new_tokens must be greater than 0".to_string());
        }
        if stop_strings.iter().any(|s| s.is_empty()) {
            return bad("stop strings must not be empty".to_string());
        }
        // transformers: pad defaults to the first EOS id.
        let pad_token_id = o.pad_token_id.or(cfg.pad_token_id).or(eos_token_ids.first().copied()).unwrap_or(0);
        Ok(ResolvedGeneration {
            sampling,
            max_new_tokens: o.max_new_tokens.or(cfg.max_new_tokens),
            max_length: cfg.max_length.unwrap_or(20),
            eos_token_ids,
            stop_strings,
            pad_token_id,
            seed: o.seed,
            skip_special_tokens: o.skip_special_tokens.unwrap_or(true),
        })
    }

    /// New-token budget for a prompt of `prompt_len` (padded) tokens.
    pub fn budget(&self, prompt_len: usize) -> usize {
        self.max_new_tokens.unwrap_or_else(|| self.max_length.saturating_sub(prompt_len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eos_single_or_list() {
        let a: GenerationConfig = serde_json::from_str(r#"{"eos_token_id": 2, "bos_token_id": 1}"#).unwrap();
        assert_eq!(a.eos_token_id.unwrap().to_vec(), vec![2]);
        let b: GenerationConfig = serde_json::from_str(r#"{"eos_token_id": [151645, 151643], "transformers_version": "5"}"#).unwrap();
        assert_eq!(b.eos_token_id.unwrap().to_vec(), vec![151645, 151643]);
    }

    #[test]
    fn resolve_precedence_and_defaults() {
        let cfg: GenerationConfig =
            serde_json::from_str(r#"{"eos_token_id": [5, 6], "temperature": 0.7, "max_length": 30, "stop_strings": "END"}"#).unwrap();
        let r = ResolvedGeneration::resolve(&cfg, &GenerationOptions::default()).unwrap();
        assert!(!r.sampling.do_sample);
        assert_eq!(r.sampling.temperature, 0.7);
        assert_eq!(r.sampling.top_k, 50);
        assert_eq!(r.eos_token_ids, vec![5, 6]);
        assert_eq!(r.pad_token_id, 5);
        assert_eq!(r.stop_strings, vec!["END".to_string()]);
        assert_eq!(r.budget(12), 18);
        let o = GenerationOptions { max_new_tokens: Some(4), temperature: Some(1.5), eos_token_ids: Some(vec![]), ..Default::default() };
        let r = ResolvedGeneration::resolve(&cfg, &o).unwrap();
        assert_eq!(r.budget(12), 4);
        assert_eq!(r.sampling.temperature, 1.5);
        assert!(r.eos_token_ids.is_empty());
    }

    #[test]
    fn invalid_options_are_typed_errors() {
        let cfg = GenerationConfig::default();
        for o in [
            GenerationOptions { do_sample: Some(true), temperature: Some(0.0), ..Default::default() },
            GenerationOptions { top_p: Some(0.0), ..Default::default() },
            GenerationOptions { min_p: Some(2.0), ..Default::default() },
            GenerationOptions { repetition_penalty: Some(-1.0), ..Default::default() },
            GenerationOptions { stop_strings: Some(vec![String::new()]), ..Default::default() },
            GenerationOptions { max_new_tokens: Some(0), ..Default::default() },
        ] {
            assert!(matches!(ResolvedGeneration::resolve(&cfg, &o), Err(DecoderError::InvalidOption(_))), "{o:?}");
        }
    }

    #[test]
    fn text_config_nested_or_top_level() {
        let d = std::env::temp_dir().join(format!("vidlm-dec-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("config.json");
        std::fs::write(&p, r#"{"model_type":"llava","text_config":{"hidden_size":64,"num_attention_heads":4,"max_position_embeddings":128}}"#).unwrap();
        let t = TextConfig::from_config_file(&p).unwrap();
        assert_eq!(t.head_dim(), Some(16));
        assert_eq!(t.kv_heads(), Some(4));
        assert_eq!(t.max_position_embeddings, Some(128));
        std::fs::write(&p, r#"{"hidden_size":8,"num_attention_heads":2,"num_key_value_heads":1}"#).unwrap();
        let t = TextConfig::from_config_file(&p).unwrap();
        assert_eq!((t.head_dim(), t.kv_heads()), (Some(4), Some(1)));
        std::fs::write(&p, "{not json").unwrap();
        assert!(matches!(TextConfig::from_config_file(&p), Err(DecoderError::Config { .. })));
        let _ = std::fs::remove_dir_all(&d);
    }
}
