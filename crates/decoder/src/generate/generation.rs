//! [`Generation`]: the one-call API, a batch prefilled together and then decoded in a
//! [`RunningBatch`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokenizers::Tokenizer;
use vidlm_model::left_pad;

use super::prefill::merge_all;
use super::request::RequestState;
use super::running_batch::RunningBatch;
use super::types::{GenerationResult, LmTimings, Sequence, TokenEvent};
use crate::config::ResolvedGeneration;
use crate::merge::position_ids;
use crate::model::LmSessions;
use crate::{DecoderError, PlaceholderIds};

/// A running generation: an iterator of [`TokenEvent`]s. Dropping it (or calling
/// [`Generation::cancel`]) stops the work; [`Generation::finish`] returns the result.
pub struct Generation<'m> {
    lm: &'m mut LmSessions,
    tokenizer: Option<&'m Tokenizer>,
    batch: RunningBatch<usize>,
    /// Finished (or cancelled) rows by original index.
    results: Vec<Option<RequestState>>,
    timings: LmTimings,
    pending: VecDeque<TokenEvent>,
    failed: bool,
}

impl std::fmt::Debug for Generation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation")
            .field("active", &self.batch.keys())
            .field("width", &self.batch.width())
            .finish()
    }
}

pub(crate) struct Start<'a> {
    pub seqs: &'a [Sequence],
    pub placeholders: PlaceholderIds,
    pub max_context: Option<usize>,
}

impl<'m> Generation<'m> {
    /// Prefills all rows together (left-padded, one pass) and starts decoding them.
    pub(crate) fn start(
        lm: &'m mut LmSessions,
        tokenizer: Option<&'m Tokenizer>,
        cfg: ResolvedGeneration,
        s: Start<'_>,
    ) -> Result<Self, DecoderError> {
        if s.seqs.is_empty() {
            return Err(DecoderError::InvalidOption("no sequences to generate from".into()));
        }
        if !cfg.stop_strings.is_empty() && tokenizer.is_none() {
            return Err(DecoderError::InvalidOption("stop strings need a tokenizer".into()));
        }
        for (i, seq) in s.seqs.iter().enumerate() {
            if seq.input_ids.is_empty() {
                return Err(DecoderError::InvalidOption(format!("sequence {i} has no input ids")));
            }
            if let Some(max) = s.max_context {
                if seq.input_ids.len() > max {
                    return Err(DecoderError::PromptTooLong {
                        row: i,
                        tokens: seq.input_ids.len(),
                        max,
                    });
                }
            }
        }
        let batch = s.seqs.len();
        let prompts: Vec<Vec<i64>> = s.seqs.iter().map(|q| q.input_ids.clone()).collect();
        let (ids, mask, width) = left_pad(&prompts, cfg.pad_token_id);
        if let Some(max) = s.max_context {
            if width > max {
                return Err(DecoderError::PromptTooLong { row: 0, tokens: width, max });
            }
        }
        let hidden = lm.hidden();
        let t0 = Instant::now();
        let mut embeds = lm.embed(&ids, batch, width)?;
        for (r, seq) in s.seqs.iter().enumerate() {
            let row_ids = &ids[r * width..(r + 1) * width];
            let row_emb = &mut embeds[r * width * hidden..(r + 1) * width * hidden];
            merge_all(row_emb, hidden, row_ids, seq, s.placeholders)?;
        }
        let embed_time = t0.elapsed();
        let positions = position_ids(&mask, width, width);
        let mut cache = lm.empty_cache(batch)?;
        let t1 = Instant::now();
        let out = lm.step(&embeds, batch, width, &mask, &positions, &mut cache)?;
        let prefill = t1.elapsed();
        // One RNG per row, seeded alike: a row samples the same tokens whatever its batch.
        let rows: Vec<(usize, RequestState)> = s
            .seqs
            .iter()
            .enumerate()
            .map(|(i, q)| {
                (i, RequestState::new(q.input_ids.clone(), cfg.clone(), width, s.max_context))
            })
            .collect();
        let batch_state = RunningBatch {
            rows,
            cache,
            mask,
            width,
            logits: out.logits,
            vocab: out.vocab,
            done: Vec::new(),
            last_decode: None,
            last_host: Duration::ZERO,
        };
        Ok(Generation {
            lm,
            tokenizer,
            batch: batch_state,
            results: (0..batch).map(|_| None).collect(),
            timings: LmTimings { embed: embed_time, prefill, ..Default::default() },
            pending: VecDeque::new(),
            failed: false,
        })
    }

    /// Last-position logits of the current step, `active rows × vocab` (after prefill: the
    /// first-step logits, before any processing).
    pub fn current_logits(&self) -> &[f32] {
        self.batch.pending_logits()
    }

    /// Timings so far (embed, prefill, the decode steps run so far).
    pub fn timings(&self) -> &LmTimings {
        &self.timings
    }

    /// Tokens generated so far over all rows.
    pub fn generated_tokens(&self) -> usize {
        let active: usize = self.batch.rows.iter().map(|(_, s)| s.generated.len()).sum();
        active + self.results.iter().flatten().map(|s| s.generated.len()).sum::<usize>()
    }

    /// Whether every row has finished.
    pub fn is_finished(&self) -> bool {
        self.batch.is_empty()
    }

    /// Stops all unfinished rows with [`FinishReason::Cancelled`](super::FinishReason::Cancelled).
    pub fn cancel(&mut self) {
        for (k, mut s) in std::mem::take(&mut self.batch.rows) {
            s.cancel();
            if let Some(slot) = self.results.get_mut(k) {
                *slot = Some(s);
            }
        }
        self.batch.logits.clear();
    }

    fn collect_finished(&mut self) {
        for (k, s) in self.batch.take_finished() {
            if let Some(slot) = self.results.get_mut(k) {
                *slot = Some(s);
            }
        }
    }

    /// Selects one token for every active row and runs the next decoder pass for the rows that
    /// continue. Returns that step's events (one per row that was active).
    pub fn step(&mut self) -> Result<Vec<TokenEvent>, DecoderError> {
        let events = self.batch.step(self.lm, self.tokenizer)?;
        self.timings.host += self.batch.last_host;
        if let Some(d) = self.batch.last_decode {
            self.timings.decode_steps.push(d);
        }
        self.collect_finished();
        Ok(events
            .into_iter()
            .map(|(k, mut e)| {
                e.row = k;
                e
            })
            .collect())
    }

    /// Runs to the end, calling `on_token` for every event; returning
    /// `std::ops::ControlFlow::Break(())` cancels.
    pub fn run(
        mut self,
        mut on_token: impl FnMut(&TokenEvent) -> std::ops::ControlFlow<()>,
    ) -> Result<GenerationResult, DecoderError> {
        while !self.is_finished() {
            let events = self.step()?;
            let mut stop = false;
            for e in &events {
                if on_token(e).is_break() {
                    stop = true;
                }
            }
            if stop {
                self.cancel();
            }
        }
        Ok(self.finish())
    }

    /// The result so far (unfinished rows are reported as cancelled).
    pub fn finish(mut self) -> GenerationResult {
        self.cancel();
        let tokenizer = self.tokenizer;
        let generated_tokens = self.generated_tokens();
        let rows = std::mem::take(&mut self.results)
            .into_iter()
            .flatten()
            .map(|s| s.into_output(tokenizer))
            .collect();
        GenerationResult { rows, timings: std::mem::take(&mut self.timings), generated_tokens }
    }
}

impl Iterator for Generation<'_> {
    type Item = Result<TokenEvent, DecoderError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(Ok(e));
            }
            if self.failed || self.is_finished() {
                return None;
            }
            match self.step() {
                Ok(events) => self.pending.extend(events),
                Err(e) => {
                    self.failed = true;
                    self.cancel();
                    return Some(Err(e));
                }
            }
        }
    }
}
