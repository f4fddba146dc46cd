//! Per-call generation options over `generation_config.json` (read by `vidlm-model`).

use crate::sampling::SamplingParams;
use crate::DecoderError;
pub use vidlm_model::{GenerationConfig, TextConfig};

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
    /// OpenAI `logit_bias`: `(token id, bias)` pairs, each bias in [-100, 100], added to the
    /// logits before every other processor (see [`crate::apply_logit_bias`]).
    pub logit_bias: Option<Vec<(i64, f32)>>,
    /// With no `max_new_tokens` (here or in the config) and no `max_length` in the config:
    /// generate until a stop or the context limit, as OpenAI and vLLM do, instead of
    /// transformers' default `max_length` of 20 (prompt included). `vidlm serve` and
    /// `vidlm batch` set it; `vidlm run` keeps transformers' semantics.
    pub until_context_limit: bool,
}

/// A `max_length` meaning "no length limit": the context ends the answer.
pub const UNLIMITED_LENGTH: usize = usize::MAX;

/// Fully resolved settings of one generation call.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedGeneration {
    /// Sampling / processor parameters.
    pub sampling: SamplingParams,
    /// New-token limit (`None` = derived from `max_length` and the prompt length).
    pub max_new_tokens: Option<usize>,
    /// Total length limit used when `max_new_tokens` is `None` ([`UNLIMITED_LENGTH`]: until
    /// the context limit, see [`GenerationOptions::until_context_limit`]).
    pub max_length: usize,
    /// Whether the length limit is transformers' default `max_length` of 20, set by nobody
    /// (not the call, not `generation_config.json`): `vidlm run` says so when it cuts an answer.
    pub default_max_length: bool,
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
        let mut sampling = SamplingParams {
            do_sample: o.do_sample.or(cfg.do_sample).unwrap_or(false),
            temperature: o.temperature.or(cfg.temperature).unwrap_or(1.0),
            top_k: o.top_k.or(cfg.top_k).unwrap_or(50),
            top_p: o.top_p.or(cfg.top_p).unwrap_or(1.0),
            min_p: o.min_p.or(cfg.min_p),
            repetition_penalty: o.repetition_penalty.or(cfg.repetition_penalty).unwrap_or(1.0),
            logit_bias: Vec::new(),
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
            return bad(format!(
                "repetition_penalty must be > 0, got {}",
                sampling.repetition_penalty
            ));
        }
        for &(id, b) in o.logit_bias.iter().flatten() {
            if !(b.is_finite() && (-100.0..=100.0).contains(&b)) {
                return bad(format!(
                    "logit_bias: the bias of token {id} must be between -100 and 100, got {b}"
                ));
            }
            match usize::try_from(id) {
                Ok(i) => sampling.logit_bias.push((i, b)),
                Err(_) => {
                    return bad(format!("logit_bias: token id {id} is outside the vocabulary"))
                }
            }
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
        let pad_token_id =
            o.pad_token_id.or(cfg.pad_token_id).or(eos_token_ids.first().copied()).unwrap_or(0);
        let max_new_tokens = o.max_new_tokens.or(cfg.max_new_tokens);
        let default_max_length = max_new_tokens.is_none() && cfg.max_length.is_none();
        let max_length = match cfg.max_length {
            Some(m) => m,
            None if o.until_context_limit => UNLIMITED_LENGTH,
            None => 20,
        };
        Ok(ResolvedGeneration {
            sampling,
            max_new_tokens,
            max_length,
            default_max_length: default_max_length && !o.until_context_limit,
            eos_token_ids,
            stop_strings,
            pad_token_id,
            seed: o.seed,
            skip_special_tokens: o.skip_special_tokens.unwrap_or(true),
        })
    }

    /// New-token budget for a prompt of `prompt_len` (padded) tokens ([`UNLIMITED_LENGTH`]
    /// when only the context limits it).
    pub fn budget(&self, prompt_len: usize) -> usize {
        match self.max_new_tokens {
            Some(n) => n,
            None if self.max_length == UNLIMITED_LENGTH => UNLIMITED_LENGTH,
            None => self.max_length.saturating_sub(prompt_len),
        }
    }

    /// Refuses `logit_bias` ids outside a vocabulary of `vocab` tokens (the logits' width).
    pub fn check_vocab(&self, vocab: usize) -> Result<(), DecoderError> {
        match self.sampling.logit_bias.iter().find(|(id, _)| *id >= vocab) {
            Some((id, _)) => Err(DecoderError::InvalidOption(format!(
                "logit_bias: token id {id} is outside the vocabulary (0..{vocab})"
            ))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let o = GenerationOptions {
            max_new_tokens: Some(4),
            temperature: Some(1.5),
            eos_token_ids: Some(vec![]),
            ..Default::default()
        };
        let r = ResolvedGeneration::resolve(&cfg, &o).unwrap();
        assert_eq!(r.budget(12), 4);
        assert_eq!(r.sampling.temperature, 1.5);
        assert!(r.eos_token_ids.is_empty());
    }

    #[test]
    fn default_length_is_transformers_or_the_context() {
        let none = GenerationConfig::default();
        // transformers: max_length 20, prompt included.
        let r = ResolvedGeneration::resolve(&none, &GenerationOptions::default()).unwrap();
        assert_eq!(r.budget(12), 8);
        assert!(r.default_max_length);
        // OpenAI / vLLM: until a stop or the context.
        let o = GenerationOptions { until_context_limit: true, ..Default::default() };
        let r = ResolvedGeneration::resolve(&none, &o).unwrap();
        assert_eq!(r.budget(12), UNLIMITED_LENGTH);
        assert!(!r.default_max_length);
        // A length the config sets is honoured either way.
        let cfg: GenerationConfig = serde_json::from_str(r#"{"max_new_tokens": 7}"#).unwrap();
        assert_eq!(ResolvedGeneration::resolve(&cfg, &o).unwrap().budget(12), 7);
        let cfg: GenerationConfig = serde_json::from_str(r#"{"max_length": 30}"#).unwrap();
        assert_eq!(ResolvedGeneration::resolve(&cfg, &o).unwrap().budget(12), 18);
        assert!(
            !ResolvedGeneration::resolve(&cfg, &GenerationOptions::default())
                .unwrap()
                .default_max_length
        );
    }

    #[test]
    fn logit_bias_is_checked() {
        let cfg = GenerationConfig::default();
        let o = GenerationOptions { logit_bias: Some(vec![(3, -100.0)]), ..Default::default() };
        let r = ResolvedGeneration::resolve(&cfg, &o).unwrap();
        assert_eq!(r.sampling.logit_bias, vec![(3, -100.0)]);
        assert!(r.check_vocab(4).is_ok());
        let e = r.check_vocab(3).unwrap_err().to_string();
        assert!(e.contains("logit_bias") && e.contains("token id 3"), "{e}");
        for bad in [(1, 100.5), (1, f32::NAN), (-1, 1.0)] {
            let o = GenerationOptions { logit_bias: Some(vec![bad]), ..Default::default() };
            assert!(
                matches!(
                    ResolvedGeneration::resolve(&cfg, &o),
                    Err(DecoderError::InvalidOption(m)) if m.contains("logit_bias")
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn invalid_options_are_typed_errors() {
        let cfg = GenerationConfig::default();
        for o in [
            GenerationOptions {
                do_sample: Some(true),
                temperature: Some(0.0),
                ..Default::default()
            },
            GenerationOptions { top_p: Some(0.0), ..Default::default() },
            GenerationOptions { min_p: Some(2.0), ..Default::default() },
            GenerationOptions { repetition_penalty: Some(-1.0), ..Default::default() },
            GenerationOptions { stop_strings: Some(vec![String::new()]), ..Default::default() },
            GenerationOptions { max_new_tokens: Some(0), ..Default::default() },
        ] {
            assert!(
                matches!(
                    ResolvedGeneration::resolve(&cfg, &o),
                    Err(DecoderError::InvalidOption(_))
                ),
                "{o:?}"
            );
        }
    }
}
