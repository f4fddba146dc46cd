//! [`RequestState`]: the per-request half of generation.

use tokenizers::Tokenizer;

use super::types::{FinishReason, RowOutput, TokenEvent, TokenLogprobs};
use crate::config::ResolvedGeneration;
use crate::sampling::{select_token, Rng};
use crate::stream::StreamDecoder;
use crate::DecoderError;

/// The per-request half of generation: sampling (with its own seeded RNG), stop conditions,
/// streaming detokenization, the token budget and the generated ids.
#[derive(Debug)]
pub struct RequestState {
    prompt: Vec<i64>,
    pub(super) generated: Vec<i64>,
    cfg: ResolvedGeneration,
    rng: Rng,
    stream: StreamDecoder,
    text: String,
    budget: usize,
    /// Length counted against the context: the prompt (or, in a batch prefilled together, the
    /// padded width, as transformers counts it).
    context_base: usize,
    max_context: Option<usize>,
    finished: Option<FinishReason>,
    logprobs: Option<usize>,
}

impl RequestState {
    /// State for a prompt of `prompt` ids. `counted_len` is the prompt length the budget
    /// (`max_length`) and the context check count (the prompt's own length for a request that
    /// is prefilled alone).
    pub fn new(
        prompt: Vec<i64>,
        cfg: ResolvedGeneration,
        counted_len: usize,
        max_context: Option<usize>,
    ) -> Self {
        let rng = match cfg.seed {
            Some(seed) => Rng::new(seed),
            None => Rng::from_entropy(),
        };
        let budget = match (cfg.budget(counted_len), max_context) {
            // Until the context limit, with no known context: transformers' default length.
            (crate::UNLIMITED_LENGTH, None) => 20usize.saturating_sub(counted_len),
            (b, _) => b,
        };
        RequestState {
            budget,
            stream: StreamDecoder::new(cfg.skip_special_tokens),
            prompt,
            generated: Vec::new(),
            cfg,
            rng,
            text: String::new(),
            context_base: counted_len,
            max_context,
            finished: None,
            logprobs: None,
        }
    }

    /// Also report log-probabilities with `top` alternatives per token.
    pub fn with_logprobs(mut self, top: Option<usize>) -> Self {
        self.logprobs = top;
        self
    }

    /// The resolved settings.
    pub fn config(&self) -> &ResolvedGeneration {
        &self.cfg
    }

    /// The most tokens this row may generate: its budget, or what the context leaves if that
    /// is less (at least 1: a row always generates its first token).
    pub fn max_tokens(&self) -> usize {
        let room = self.max_context.map_or(usize::MAX, |m| m.saturating_sub(self.context_base));
        self.budget.min(room).max(1)
    }

    /// Prompt length.
    pub fn prompt_len(&self) -> usize {
        self.prompt.len()
    }

    /// Tokens generated so far.
    pub fn generated(&self) -> &[i64] {
        &self.generated
    }

    /// Text streamed so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Why the row stopped, once it has.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finished
    }

    /// Marks the row cancelled (if it has not finished).
    pub fn cancel(&mut self) {
        self.finished.get_or_insert(FinishReason::Cancelled);
    }

    /// Picks the next token from this row's logits (processed in place), updates the text and
    /// the stop conditions. `row` is copied into the event.
    pub fn select(
        &mut self,
        scores: &mut [f32],
        tokenizer: Option<&Tokenizer>,
        row: usize,
    ) -> Result<TokenEvent, DecoderError> {
        if !self.cfg.sampling.logit_bias.is_empty() {
            self.cfg.check_vocab(scores.len())?;
        }
        let logprobs = self.logprobs.map(|n| logprobs_of(scores, n));
        // The repetition penalty looks at the prompt (without padding) and the generated ids.
        let history: Vec<i64> = if self.cfg.sampling.repetition_penalty != 1.0 {
            self.prompt.iter().chain(self.generated.iter()).copied().collect()
        } else {
            Vec::new()
        };
        let tok = select_token(scores, &history, &self.cfg.sampling, &mut self.rng) as i64;
        let logprobs = logprobs.map(|f| f(tok));
        self.generated.push(tok);
        let mut text = String::new();
        if let Some(t) = tokenizer {
            let id = u32::try_from(tok)
                .map_err(|_| DecoderError::Shape(format!("token id {tok} out of range")))?;
            text = self.stream.push(t, id)?;
            self.text.push_str(&text);
        }
        let mut finished = None;
        if self.cfg.eos_token_ids.contains(&tok) {
            finished = Some(FinishReason::Eos);
        } else if !self.cfg.stop_strings.is_empty()
            && self.cfg.stop_strings.iter().any(|s| self.text.contains(s.as_str()))
        {
            finished = Some(FinishReason::StopString);
        } else if self.generated.len() >= self.budget {
            finished = Some(FinishReason::MaxNewTokens);
        } else if let Some(max) = self.max_context {
            if self.context_base + self.generated.len() >= max {
                finished = Some(FinishReason::ContextLength);
            }
        }
        if finished.is_some() {
            if let Some(t) = tokenizer {
                let rest = self.stream.finish(t)?;
                self.text.push_str(&rest);
                text.push_str(&rest);
            }
            self.finished = finished;
        }
        Ok(TokenEvent { row, token_id: tok, text, finished, logprobs })
    }

    /// The row's result (an unfinished row is reported as cancelled). The text is the decoding
    /// of all generated ids.
    pub fn into_output(self, tokenizer: Option<&Tokenizer>) -> RowOutput {
        let text = tokenizer.map(|t| {
            let ids: Vec<u32> =
                self.generated.iter().filter_map(|&x| u32::try_from(x).ok()).collect();
            t.decode(&ids, self.cfg.skip_special_tokens).unwrap_or(self.text.clone())
        });
        RowOutput {
            prompt_tokens: self.prompt.len(),
            token_ids: self.generated,
            text,
            finish_reason: self.finished.unwrap_or(FinishReason::Cancelled),
        }
    }
}

/// `log_softmax` of the raw scores, and a function giving the chosen token's entry.
fn logprobs_of(scores: &[f32], top: usize) -> impl FnOnce(i64) -> TokenLogprobs {
    let max = scores.iter().copied().filter(|v| v.is_finite()).fold(f32::NEG_INFINITY, f32::max);
    let lse = max as f64 + scores.iter().map(|&s| ((s - max) as f64).exp()).sum::<f64>().ln();
    let lp = move |s: f32| (s as f64 - lse) as f32;
    let mut best: Vec<(i64, f32)> = Vec::with_capacity(top + 1);
    if top > 0 {
        for (i, &s) in scores.iter().enumerate() {
            if best.len() < top || best.last().is_some_and(|&(_, b)| s > b) {
                let at = best.partition_point(|&(_, b)| b >= s);
                best.insert(at, (i as i64, s));
                best.truncate(top);
            }
        }
    }
    let top: Vec<(i64, f32)> = best.into_iter().map(|(i, s)| (i, lp(s))).collect();
    let raw = scores.to_vec();
    move |tok| TokenLogprobs {
        logprob: usize::try_from(tok)
            .ok()
            .and_then(|i| raw.get(i))
            .map(|&s| lp(s))
            .unwrap_or(f32::NEG_INFINITY),
        top,
    }
}
