//! Generation, split the way a serving engine needs it:
//!
//! * [`RequestState`] — everything that belongs to one request: its sampling settings and seeded
//!   RNG, stop conditions, streaming detokenizer, token budget, generated ids. Token selection
//!   reads only this state and the row's logits, so a row's tokens do not depend on which other
//!   rows share its batch.
//! * [`Prefill`] — one prompt run through the decoder in chunks of any size (the engine puts
//!   other users' decode steps between chunks); the last chunk's logits equal a one-shot prefill's.
//! * [`RunningBatch`] — one KV cache for the rows being decoded. It admits a prefilled row at
//!   any step (left-padding whichever side is shorter) and drops finished or cancelled rows
//!   (gathering the cache rows out and trimming the padding they no longer need). Copies happen
//!   only on these membership changes, never on an ordinary decode step.
//! * [`Generation`] — the one-call API (`LanguageModel::stream` / `generate`): a batch prefilled
//!   together, then decoded in a [`RunningBatch`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokenizers::Tokenizer;

use crate::config::ResolvedGeneration;
use crate::merge::{merge_features, position_ids, Features};
use crate::model::{KvCache, LmSessions};
use crate::sampling::{select_token, Rng};
use crate::stream::StreamDecoder;
use crate::{DecoderError, PlaceholderIds};
use vidlm_model::left_pad;

/// One conversation's model inputs: the expanded token ids and the features for its
/// placeholders (all images of the prompt concatenated in order, likewise all videos).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sequence {
    /// Token ids, placeholders already expanded (one id per feature row).
    pub input_ids: Vec<i64>,
    /// Features for the image placeholders, in prompt order.
    pub image_features: Option<Features>,
    /// Features for the video placeholders, in prompt order.
    pub video_features: Option<Features>,
}

impl Sequence {
    /// A text-only sequence.
    pub fn text(input_ids: Vec<i64>) -> Self {
        Sequence { input_ids, ..Default::default() }
    }
}

/// Why a row stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// It produced an EOS id (included in `token_ids`).
    Eos,
    /// Its text contains a stop string (the text includes it, as in transformers).
    StopString,
    /// `max_new_tokens` (or `max_length`) reached.
    MaxNewTokens,
    /// The context length of the model was reached.
    ContextLength,
    /// The caller cancelled.
    Cancelled,
}

/// Log-probabilities of one generated token under the model (raw logits, before repetition
/// penalty, temperature or filters).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprobs {
    /// `log p(token)`.
    pub logprob: f32,
    /// The most likely tokens `(id, log p)`, best first (as many as asked for).
    pub top: Vec<(i64, f32)>,
}

/// One generated token, as streamed.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenEvent {
    /// Row (conversation index in the request).
    pub row: usize,
    /// Token id.
    pub token_id: i64,
    /// Text that became final with this token (may be empty while a character or word is
    /// incomplete; the last event of a row flushes everything).
    pub text: String,
    /// Set on the row's last event.
    pub finished: Option<FinishReason>,
    /// Log-probabilities, when the request asked for them.
    pub logprobs: Option<TokenLogprobs>,
}

/// The result for one row.
#[derive(Debug, Clone, PartialEq)]
pub struct RowOutput {
    /// Generated token ids (EOS included when it ended the row).
    pub token_ids: Vec<i64>,
    /// Decoded text (`None` without a tokenizer).
    pub text: Option<String>,
    /// Why the row stopped.
    pub finish_reason: FinishReason,
    /// Prompt length (unpadded).
    pub prompt_tokens: usize,
}

/// Wall-clock timings of the language-model stages.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LmTimings {
    /// `embed_tokens` + merge for the prompt.
    pub embed: Duration,
    /// The prefill decoder pass.
    pub prefill: Duration,
    /// Each decode step (embed of the new tokens + decoder pass), in order.
    pub decode_steps: Vec<Duration>,
    /// Host-side token selection, detokenization and stop checks.
    pub host: Duration,
}

impl LmTimings {
    /// Total decode time.
    pub fn decode_total(&self) -> Duration {
        self.decode_steps.iter().sum()
    }
}

/// The result of a generation call.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationResult {
    /// One entry per input sequence, in order.
    pub rows: Vec<RowOutput>,
    /// Timings.
    pub timings: LmTimings,
    /// Total generated tokens over all rows.
    pub generated_tokens: usize,
}

/// The per-request half of generation: sampling (with its own seeded RNG), stop conditions,
/// streaming detokenization, the token budget and the generated ids.
#[derive(Debug)]
pub struct RequestState {
    prompt: Vec<i64>,
    generated: Vec<i64>,
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

fn merge_all(
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
/// [`RunningBatch`].
#[derive(Debug)]
pub struct Prefilled {
    cache: KvCache,
    len: usize,
    logits: Vec<f32>,
    vocab: usize,
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
            return Err(DecoderError::InvalidOption(format!(
                "prefill has {} tokens left",
                self.len - self.done
            )));
        }
        Ok(Prefilled { cache: self.cache, len: self.len, logits: self.logits, vocab: self.vocab })
    }
}

/// The rows being decoded together: one KV cache, a left-padded attention mask, and each row's
/// [`RequestState`] under a caller-chosen key.
#[derive(Debug)]
pub struct RunningBatch<K> {
    rows: Vec<(K, RequestState)>,
    cache: KvCache,
    /// `rows × width`.
    mask: Vec<i64>,
    width: usize,
    /// Pending logits of each row (`rows × vocab`), selected from at the next step.
    logits: Vec<f32>,
    vocab: usize,
    done: Vec<(K, RequestState)>,
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

    /// Stops all unfinished rows with [`FinishReason::Cancelled`].
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
