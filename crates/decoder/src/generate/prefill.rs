//! [`Prefill`]: one prompt run through the decoder in chunks, and its result [`Prefilled`].

use std::time::{Duration, Instant};

use super::types::Sequence;
use crate::merge::{merge_features, Features};
use crate::model::{KvCache, LmSessions};
use crate::{DecoderError, PlaceholderIds};

/// Checks the prompt and builds its `inputs_embeds` (`len × hidden`) with the features merged.
fn prompt_embeds(
    lm: &mut LmSessions,
    seq: &Sequence,
    placeholders: PlaceholderIds,
    max_context: Option<usize>,
) -> Result<Vec<f32>, DecoderError> {
    if seq.input_ids.is_empty() {
        return Err(DecoderError::InvalidOption("the sequence has no input ids".into()));
    }
    if let Some(max) = max_context {
        if seq.input_ids.len() > max {
            return Err(DecoderError::PromptTooLong { row: 0, tokens: seq.input_ids.len(), max });
        }
    }
    let hidden = lm.hidden();
    let mut embeds = lm.embed(&seq.input_ids, 1, seq.input_ids.len())?;
    merge_all(&mut embeds, hidden, &seq.input_ids, seq, placeholders)?;
    Ok(embeds)
}

pub(super) fn merge_all(
    embeds: &mut [f32],
    hidden: usize,
    ids: &[i64],
    seq: &Sequence,
    p: PlaceholderIds,
) -> Result<(), DecoderError> {
    for (token, feats, kind) in [
        (p.image_token_id, &seq.image_features, "image"),
        (p.video_token_id, &seq.video_features, "video"),
    ] {
        let empty = Features::empty(hidden);
        let f = feats.as_ref().unwrap_or(&empty);
        match token {
            Some(t) => merge_features(embeds, hidden, ids, t, f, kind)?,
            None if f.rows() > 0 => {
                return Err(DecoderError::FeatureCountMismatch {
                    kind,
                    tokens: 0,
                    features: f.rows(),
                })
            }
            None => {}
        }
    }
    Ok(())
}

/// A prompt being prefilled, chunk by chunk, into its own one-row KV cache.
#[derive(Debug)]
pub struct Prefill {
    embeds: Vec<f32>,
    len: usize,
    done: usize,
    cache: KvCache,
    logits: Vec<f32>,
    vocab: usize,
    /// Time spent in `embed_tokens` + merge.
    pub embed_time: Duration,
    /// Time spent in decoder passes so far.
    pub decoder_time: Duration,
}

/// A prefilled prompt: its cache and its last-position logits, ready to join a
/// [`RunningBatch`](super::RunningBatch).
#[derive(Debug)]
pub struct Prefilled {
    pub(super) cache: KvCache,
    pub(super) len: usize,
    pub(super) logits: Vec<f32>,
    pub(super) vocab: usize,
}

impl Prefilled {
    /// Prompt length (the cache's past length).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the prompt is empty (never: prompts have at least one token).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first-step logits (`vocab` values, unprocessed).
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }
}

impl Prefill {
    /// Embeds the prompt and merges its features (errors for mismatched placeholders or a prompt
    /// over `max_context` come here, before any decoder pass).
    pub fn new(
        lm: &mut LmSessions,
        seq: &Sequence,
        placeholders: PlaceholderIds,
        max_context: Option<usize>,
    ) -> Result<Self, DecoderError> {
        let t0 = Instant::now();
        let embeds = prompt_embeds(lm, seq, placeholders, max_context)?;
        let embed_time = t0.elapsed();
        Ok(Prefill {
            embeds,
            len: seq.input_ids.len(),
            done: 0,
            cache: lm.empty_cache(1)?,
            logits: Vec::new(),
            vocab: 0,
            embed_time,
            decoder_time: Duration::ZERO,
        })
    }

    /// Prompt length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the prompt is empty (never).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Tokens not yet run.
    pub fn remaining(&self) -> usize {
        self.len - self.done
    }

    /// Runs the next chunk of at most `max_tokens` (≥ 1) prompt tokens; returns whether the
    /// prompt is complete.
    pub fn step(&mut self, lm: &mut LmSessions, max_tokens: usize) -> Result<bool, DecoderError> {
        let n = max_tokens.max(1).min(self.remaining());
        if n == 0 {
            return Ok(true);
        }
        let hidden = lm.hidden();
        let t0 = Instant::now();
        let total = self.done + n;
        let mask = vec![1i64; total];
        let positions: Vec<i64> = (self.done as i64..total as i64).collect();
        let chunk = &self.embeds[self.done * hidden..total * hidden];
        let out = lm.step(chunk, 1, n, &mask, &positions, &mut self.cache)?;
        self.logits = out.logits;
        self.vocab = out.vocab;
        self.done = total;
        self.decoder_time += t0.elapsed();
        Ok(self.done == self.len)
    }

    /// The prefilled prompt (an error if chunks remain).
    pub fn finish(self) -> Result<Prefilled, DecoderError> {
        if self.done != self.len {
            return Err(DecoderError::Internal(format!(
                "prefill finished with {} tokens left",
                self.len - self.done
            )));
        }
        Ok(Prefilled { cache: self.cache, len: self.len, logits: self.logits, vocab: self.vocab })
    }
}
