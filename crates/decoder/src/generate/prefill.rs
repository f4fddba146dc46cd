//! [`Prefill`]: one prompt run through the decoder in chunks, and its result [`Prefilled`].

use std::time::{Duration, Instant};

use super::types::Sequence;
use crate::merge::{merge_features, DeepstackRows, Features};
use crate::model::{DecoderIo, KvCache, LmSessions, StepInputs};
use crate::{DecoderError, PlaceholderIds};

/// A prompt's decoder positions: `rows × len` (`rows` = the graph's position rows), and what
/// its decode steps add to the 1-D position (`cumsum(mask) - 1`) on each row: the last prompt
/// position + 1 − the prompt length (0 for 1-D positions), so that decode step `k` is at the
/// last prompt position + 1 + k, as `generate` appends M-RoPE positions.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PromptPositions {
    pub(crate) rows: usize,
    pub(crate) ids: Vec<i64>,
    pub(crate) delta: [i64; 3],
}

/// The positions of an unpadded prompt for the decoder `io`: `0..len` for 1-D positions; the
/// sequence's own M-RoPE positions for a 3-row graph (`0..len` on each row for a prompt
/// without vision features, which is what the rope index gives text).
pub(crate) fn prompt_positions(
    io: &DecoderIo,
    seq: &Sequence,
) -> Result<PromptPositions, DecoderError> {
    let len = seq.input_ids.len();
    let linear = || (0..len as i64).collect::<Vec<i64>>();
    if io.position_rows != 3 {
        if seq.positions.is_some() {
            return Err(DecoderError::Shape(
                "M-RoPE positions for a decoder with 1-D position_ids".into(),
            ));
        }
        return Ok(PromptPositions { rows: 1, ids: linear(), delta: [0; 3] });
    }
    let Some(p) = &seq.positions else {
        let has_features = [&seq.image_features, &seq.video_features]
            .iter()
            .any(|f| f.as_ref().is_some_and(|f| f.rows() > 0));
        if has_features {
            return Err(DecoderError::Shape(
                "an M-RoPE decoder needs the sequence's 3-row positions for its vision features"
                    .into(),
            ));
        }
        return Ok(PromptPositions { rows: 3, ids: linear().repeat(3), delta: [0; 3] });
    };
    if p.batch != 1 || p.seq != len || p.ids.len() != 3 * len || len == 0 {
        return Err(DecoderError::Shape(format!(
            "M-RoPE positions of {} rows x {} for a prompt of {len} tokens",
            p.batch, p.seq
        )));
    }
    let last = p.last(0);
    let delta = last.map(|l| l + 1 - len as i64);
    Ok(PromptPositions { rows: 3, ids: p.ids.clone(), delta })
}

/// The DeepStack rows of an unpadded prompt, for a decoder that takes them (`None` otherwise;
/// features carrying DeepStack levels for a decoder without them are a shape error).
pub(crate) fn prompt_deepstack(
    io: &DecoderIo,
    seq: &Sequence,
    placeholders: PlaceholderIds,
    hidden: usize,
) -> Result<Option<DeepstackRows>, DecoderError> {
    let feats = [&seq.image_features, &seq.video_features];
    if io.deepstack_levels == 0 {
        if feats.iter().any(|f| f.as_ref().is_some_and(|f| f.deepstack_levels() > 0)) {
            return Err(DecoderError::Shape(
                "DeepStack features for a decoder without `deepstack_visual_embeds`".into(),
            ));
        }
        return Ok(None);
    }
    let parts = [
        (placeholders.image_token_id, seq.image_features.as_ref()),
        (placeholders.video_token_id, seq.video_features.as_ref()),
    ];
    Ok(Some(DeepstackRows::of_prompt(&seq.input_ids, &parts, io.deepstack_levels, hidden)?))
}

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
    positions: PromptPositions,
    deepstack: Option<DeepstackRows>,
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
    /// What the row's decode positions add to its 1-D position (see [`PromptPositions`]).
    pub(super) position_delta: [i64; 3],
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
        let positions = prompt_positions(lm.io(), seq)?;
        let deepstack = prompt_deepstack(lm.io(), seq, placeholders, lm.hidden())?;
        let embed_time = t0.elapsed();
        Ok(Prefill {
            embeds,
            positions,
            deepstack,
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
        // This chunk's slice of every position row, and of the DeepStack rows where it has
        // visual positions (zeros otherwise: the graph's input is then all zeros).
        let (len, start) = (self.len, self.done);
        let positions: Vec<i64> = (0..self.positions.rows)
            .flat_map(|a| self.positions.ids[a * len + start..a * len + total].iter().copied())
            .collect();
        let deepstack = self.deepstack.as_ref().filter(|d| d.any_visual(start, total)).map(|d| {
            let mut out = vec![0f32; lm.io().deepstack_levels * n * hidden];
            d.write(&mut out, (1, 0, n, 0), start, total);
            out
        });
        let chunk = &self.embeds[start * hidden..total * hidden];
        let inputs = StepInputs {
            embeds: chunk,
            batch: 1,
            seq: n,
            mask: &mask,
            positions: &positions,
            deepstack: deepstack.as_deref(),
        };
        let out = lm.run(&inputs, &mut self.cache)?;
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
        Ok(Prefilled {
            cache: self.cache,
            len: self.len,
            logits: self.logits,
            vocab: self.vocab,
            position_delta: self.positions.delta,
        })
    }
}
