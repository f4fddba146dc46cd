//! [`RunningBatch`]: one KV cache for the rows being decoded, which rows join and leave.

use std::time::{Duration, Instant};

use tokenizers::Tokenizer;

use super::prefill::Prefilled;
use super::request::RequestState;
use super::types::TokenEvent;
use crate::merge::position_ids;
use crate::model::{KvCache, LmSessions};
use crate::DecoderError;

/// The rows being decoded together: one KV cache, a left-padded attention mask, and each row's
/// [`RequestState`] under a caller-chosen key.
#[derive(Debug)]
pub struct RunningBatch<K> {
    pub(super) rows: Vec<(K, RequestState)>,
    pub(super) cache: KvCache,
    /// `rows × width`.
    pub(super) mask: Vec<i64>,
    pub(super) width: usize,
    /// Pending logits of each row (`rows × vocab`), selected from at the next step.
    pub(super) logits: Vec<f32>,
    pub(super) vocab: usize,
    pub(super) done: Vec<(K, RequestState)>,
    /// Time of the last step's decoder pass (embed included), if it ran one.
    pub last_decode: Option<Duration>,
    /// Host time (selection, detokenization) of the last step.
    pub last_host: Duration,
}

impl<K: Copy + PartialEq> RunningBatch<K> {
    /// An empty batch.
    pub fn new(lm: &LmSessions) -> Result<Self, DecoderError> {
        Ok(RunningBatch {
            rows: Vec::new(),
            cache: lm.empty_cache(0)?,
            mask: Vec::new(),
            width: 0,
            logits: Vec::new(),
            vocab: 0,
            done: Vec::new(),
            last_decode: None,
            last_host: Duration::ZERO,
        })
    }

    /// Rows being decoded.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no row is being decoded.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The cache width (past length, padding included).
    pub fn width(&self) -> usize {
        self.width
    }

    /// The keys of the rows, in batch order.
    pub fn keys(&self) -> Vec<K> {
        self.rows.iter().map(|(k, _)| *k).collect()
    }

    /// A row's state.
    pub fn state(&self, key: K) -> Option<&RequestState> {
        self.rows.iter().find(|(k, _)| *k == key).map(|(_, s)| s)
    }

    /// Pending (unprocessed) logits of the rows, `len() × vocab`.
    pub fn pending_logits(&self) -> &[f32] {
        &self.logits
    }

    /// Adds a prefilled row. The shorter side (the row or the batch) is left-padded to the
    /// other's width; its first token is selected at the next [`RunningBatch::step`].
    pub fn admit(
        &mut self,
        key: K,
        state: RequestState,
        p: Prefilled,
        lm: &LmSessions,
    ) -> Result<(), DecoderError> {
        let path = lm.decoder.path.clone();
        if self.rows.is_empty() {
            self.cache = p.cache;
            self.mask = vec![1; p.len];
            self.width = p.len;
            self.logits = p.logits;
            self.vocab = p.vocab;
            self.rows.push((key, state));
            return Ok(());
        }
        if p.vocab != self.vocab {
            return Err(DecoderError::Shape(format!(
                "vocabulary {} joining a batch of {}",
                p.vocab, self.vocab
            )));
        }
        let mut row_cache = p.cache;
        let width = self.width.max(p.len);
        if width > self.width {
            let pad = width - self.width;
            self.cache.repast(0, width, pad, &path)?;
            let mut mask = Vec::with_capacity(self.rows.len() * width);
            for r in self.mask.chunks(self.width) {
                mask.extend(std::iter::repeat_n(0, pad));
                mask.extend_from_slice(r);
            }
            self.mask = mask;
            self.width = width;
        }
        if p.len < width {
            row_cache.repast(0, width, width - p.len, &path)?;
        }
        self.cache.append_rows(row_cache, &path)?;
        self.mask.extend(std::iter::repeat_n(0, width - p.len));
        self.mask.extend(std::iter::repeat_n(1, p.len));
        self.logits.extend_from_slice(&p.logits);
        self.rows.push((key, state));
        Ok(())
    }

    /// Removes rows (cancelled requests) and returns their states, marked cancelled.
    pub fn remove(
        &mut self,
        keys: &[K],
        lm: &LmSessions,
    ) -> Result<Vec<(K, RequestState)>, DecoderError> {
        let keep: Vec<usize> =
            (0..self.rows.len()).filter(|&b| !keys.contains(&self.rows[b].0)).collect();
        if keep.len() == self.rows.len() {
            return Ok(Vec::new());
        }
        let mut removed = Vec::new();
        let mut kept = Vec::new();
        let mut logits = Vec::with_capacity(keep.len() * self.vocab);
        for (b, (k, mut s)) in std::mem::take(&mut self.rows).into_iter().enumerate() {
            if keep.contains(&b) {
                logits.extend_from_slice(&self.logits[b * self.vocab..(b + 1) * self.vocab]);
                kept.push((k, s));
            } else {
                s.cancel();
                removed.push((k, s));
            }
        }
        self.logits = logits;
        self.rows = kept;
        self.gather(&keep, lm)?;
        Ok(removed)
    }

    /// Keeps cache/mask rows `keep` (indices in batch order) and trims the leading padding no
    /// remaining row needs.
    fn gather(&mut self, keep: &[usize], lm: &LmSessions) -> Result<(), DecoderError> {
        let path = lm.decoder.path.clone();
        let w = self.width;
        self.cache.retain_rows(keep, &path)?;
        let mut mask = Vec::with_capacity(keep.len() * w);
        for &b in keep {
            mask.extend_from_slice(&self.mask[b * w..(b + 1) * w]);
        }
        self.mask = mask;
        if keep.is_empty() {
            self.cache = lm.empty_cache(0)?;
            self.mask.clear();
            self.width = 0;
            return Ok(());
        }
        let lead = self
            .mask
            .chunks(w)
            .map(|r| r.iter().take_while(|&&m| m == 0).count())
            .min()
            .unwrap_or(0);
        if lead > 0 {
            self.cache.repast(lead, w - lead, 0, &path)?;
            let mut mask = Vec::with_capacity(keep.len() * (w - lead));
            for r in self.mask.chunks(w) {
                mask.extend_from_slice(&r[lead..]);
            }
            self.mask = mask;
            self.width = w - lead;
        }
        Ok(())
    }

    /// Rows that finished (or were removed by a step's error handling) since the last call.
    pub fn take_finished(&mut self) -> Vec<(K, RequestState)> {
        std::mem::take(&mut self.done)
    }

    /// One step: selects a token for every row from its pending logits, moves finished rows out
    /// (see [`RunningBatch::take_finished`]), and runs one decoder pass for the rows that
    /// continue. Returns the events in batch order.
    pub fn step(
        &mut self,
        lm: &mut LmSessions,
        tokenizer: Option<&Tokenizer>,
    ) -> Result<Vec<(K, TokenEvent)>, DecoderError> {
        self.last_decode = None;
        if self.rows.is_empty() {
            return Ok(Vec::new());
        }
        let th = Instant::now();
        let vocab = self.vocab;
        let mut events = Vec::with_capacity(self.rows.len());
        let mut keep = Vec::with_capacity(self.rows.len());
        let mut next_ids = Vec::with_capacity(self.rows.len());
        for (b, (k, state)) in self.rows.iter_mut().enumerate() {
            let scores = self
                .logits
                .get_mut(b * vocab..(b + 1) * vocab)
                .ok_or_else(|| DecoderError::Shape("logits shorter than the batch".into()))?;
            let ev = state.select(scores, tokenizer, b)?;
            if ev.finished.is_none() {
                keep.push(b);
                next_ids.push(ev.token_id);
            }
            events.push((*k, ev));
        }
        self.last_host = th.elapsed();
        if keep.len() != self.rows.len() {
            let mut kept = Vec::with_capacity(keep.len());
            for (b, row) in std::mem::take(&mut self.rows).into_iter().enumerate() {
                if keep.contains(&b) {
                    kept.push(row);
                } else {
                    self.done.push(row);
                }
            }
            self.rows = kept;
            self.gather(&keep, lm)?;
        }
        if self.rows.is_empty() {
            self.logits.clear();
            return Ok(events);
        }
        let t0 = Instant::now();
        let batch = self.rows.len();
        let w = self.width;
        let mut mask = Vec::with_capacity(batch * (w + 1));
        for r in self.mask.chunks(w.max(1)).take(batch) {
            mask.extend_from_slice(r);
            mask.push(1);
        }
        self.mask = mask;
        self.width = w + 1;
        let positions = position_ids(&self.mask, self.width, 1);
        let embeds = lm.embed(&next_ids, batch, 1)?;
        let out = lm.step(&embeds, batch, 1, &self.mask, &positions, &mut self.cache)?;
        self.logits = out.logits;
        self.vocab = out.vocab;
        self.last_decode = Some(t0.elapsed());
        Ok(events)
    }
}
