//! The generation loop: prefill, token selection, stopping, streaming, batching.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokenizers::Tokenizer;

use crate::config::ResolvedGeneration;
use crate::merge::{merge_features, position_ids, Features};
use vidlm_model::left_pad;
use crate::model::{KvCache, LmSessions};
use crate::sampling::{select_token, Rng};
use crate::stream::StreamDecoder;
use crate::DecoderError;

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

#[derive(Debug)]
struct Row {
    prompt: Vec<i64>,
    padded_prompt_len: usize,
    generated: Vec<i64>,
    finished: Option<FinishReason>,
    stream: StreamDecoder,
    text: String,
    budget: usize,
}

/// A running generation: an iterator of [`TokenEvent`]s. Dropping it (or calling
/// [`Generation::cancel`]) stops the work; [`Generation::finish`] returns the result.
pub struct Generation<'m> {
    lm: &'m mut LmSessions,
    tokenizer: Option<&'m Tokenizer>,
    cfg: ResolvedGeneration,
    rows: Vec<Row>,
    /// Original row index of each batch row of the cache, in batch order.
    active: Vec<usize>,
    cache: KvCache,
    mask: Vec<i64>,
    width: usize,
    logits: Vec<f32>,
    vocab: usize,
    rng: Rng,
    timings: LmTimings,
    max_context: Option<usize>,
    pending: VecDeque<TokenEvent>,
    failed: bool,
}

impl std::fmt::Debug for Generation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation").field("active", &self.active).field("width", &self.width).finish()
    }
}

pub(crate) struct Start<'a> {
    pub seqs: &'a [Sequence],
    pub image_token_id: Option<i64>,
    pub video_token_id: Option<i64>,
    pub max_context: Option<usize>,
}

impl<'m> Generation<'m> {
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
                    return Err(DecoderError::PromptTooLong { row: i, tokens: seq.input_ids.len(), max });
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
            for (token, feats, kind) in [
                (s.image_token_id, &seq.image_features, "image"),
                (s.video_token_id, &seq.video_features, "video"),
            ] {
                let empty = Features::empty(hidden);
                let f = feats.as_ref().unwrap_or(&empty);
                match token {
                    Some(t) => merge_features(row_emb, hidden, row_ids, t, f, kind)?,
                    None if f.rows() > 0 => {
                        return Err(DecoderError::FeatureCountMismatch { kind, tokens: 0, features: f.rows() })
                    }
                    None => {}
                }
            }
        }
        let embed_time = t0.elapsed();
        let positions = position_ids(&mask, width, width);
        let mut cache = lm.empty_cache(batch)?;
        let t1 = Instant::now();
        let out = lm.step(&embeds, batch, width, &mask, &positions, &mut cache)?;
        let prefill = t1.elapsed();
        let rows = s
            .seqs
            .iter()
            .map(|q| Row {
                prompt: q.input_ids.clone(),
                padded_prompt_len: width,
                generated: Vec::new(),
                finished: None,
                stream: StreamDecoder::new(cfg.skip_special_tokens),
                text: String::new(),
                budget: cfg.budget(width),
            })
            .collect();
        let rng = match cfg.seed {
            Some(seed) => Rng::new(seed),
            None => Rng::from_entropy(),
        };
        Ok(Generation {
            lm,
            tokenizer,
            cfg,
            rows,
            active: (0..batch).collect(),
            cache,
            mask,
            width,
            logits: out.logits,
            vocab: out.vocab,
            rng,
            timings: LmTimings { embed: embed_time, prefill, ..Default::default() },
            max_context: s.max_context,
            pending: VecDeque::new(),
            failed: false,
        })
    }

    /// Last-position logits of the current step, `active rows × vocab` (after prefill: the
    /// first-step logits, before any processing).
    pub fn current_logits(&self) -> &[f32] {
        &self.logits
    }

    /// Timings so far (embed, prefill, the decode steps run so far).
    pub fn timings(&self) -> &LmTimings {
        &self.timings
    }

    /// Tokens generated so far over all rows.
    pub fn generated_tokens(&self) -> usize {
        self.rows.iter().map(|r| r.generated.len()).sum()
    }

    /// Whether every row has finished.
    pub fn is_finished(&self) -> bool {
        self.active.is_empty()
    }

    /// Stops all unfinished rows with [`FinishReason::Cancelled`].
    pub fn cancel(&mut self) {
        for &r in &self.active {
            if let Some(row) = self.rows.get_mut(r) {
                row.finished = Some(FinishReason::Cancelled);
            }
        }
        self.active.clear();
    }

    fn check_stop_string(&self, row: &Row) -> bool {
        self.cfg.stop_strings.iter().any(|s| row.text.contains(s.as_str()))
    }

    /// Selects one token for every active row and runs the next decoder pass for the rows that
    /// continue. Returns that step's events (one per row that was active).
    pub fn step(&mut self) -> Result<Vec<TokenEvent>, DecoderError> {
        if self.active.is_empty() {
            return Ok(Vec::new());
        }
        let th = Instant::now();
        let mut events = Vec::with_capacity(self.active.len());
        let mut next_ids = Vec::with_capacity(self.active.len());
        let mut keep = Vec::with_capacity(self.active.len());
        let vocab = self.vocab;
        for (b, &r) in self.active.clone().iter().enumerate() {
            let scores = self
                .logits
                .get_mut(b * vocab..(b + 1) * vocab)
                .ok_or_else(|| DecoderError::Shape("logits shorter than the batch".into()))?;
            let row = self.rows.get_mut(r).ok_or_else(|| DecoderError::Shape("row index".into()))?;
            // The repetition penalty looks at the prompt (without padding) and the generated ids.
            let history: Vec<i64> = if self.cfg.sampling.repetition_penalty != 1.0 {
                row.prompt.iter().chain(row.generated.iter()).copied().collect()
            } else {
                Vec::new()
            };
            let tok = select_token(scores, &history, &self.cfg.sampling, &mut self.rng) as i64;
            row.generated.push(tok);
            let mut text = String::new();
            if let Some(t) = self.tokenizer {
                let id = u32::try_from(tok).map_err(|_| DecoderError::Shape(format!("token id {tok} out of range")))?;
                text = row.stream.push(t, id)?;
                row.text.push_str(&text);
            }
            let mut finished = None;
            if self.cfg.eos_token_ids.contains(&tok) {
                finished = Some(FinishReason::Eos);
            } else if !self.cfg.stop_strings.is_empty() && self.check_stop_string(&self.rows[r]) {
                finished = Some(FinishReason::StopString);
            } else if self.rows[r].generated.len() >= self.rows[r].budget {
                finished = Some(FinishReason::MaxNewTokens);
            } else if let Some(max) = self.max_context {
                if self.rows[r].padded_prompt_len + self.rows[r].generated.len() >= max {
                    finished = Some(FinishReason::ContextLength);
                }
            }
            let row = &mut self.rows[r];
            if finished.is_some() {
                if let Some(t) = self.tokenizer {
                    let rest = row.stream.finish(t)?;
                    row.text.push_str(&rest);
                    text.push_str(&rest);
                }
                row.finished = finished;
            } else {
                keep.push(b);
                next_ids.push(tok);
            }
            events.push(TokenEvent { row: r, token_id: tok, text, finished });
        }
        self.timings.host += th.elapsed();
        if keep.is_empty() {
            self.active.clear();
            return Ok(events);
        }
        let t0 = Instant::now();
        let path = self.lm.decoder.path.clone();
        if keep.len() != self.active.len() {
            // Finished rows leave the batch: their cache and mask rows are dropped.
            self.cache.retain_rows(&keep, &path)?;
            let w = self.width;
            let mut mask = Vec::with_capacity(keep.len() * (w + 1));
            for &b in &keep {
                mask.extend_from_slice(&self.mask[b * w..(b + 1) * w]);
            }
            self.mask = mask;
            self.active = keep.iter().map(|&b| self.active[b]).collect();
        }
        let batch = self.active.len();
        let w = self.width;
        let mut mask = Vec::with_capacity(batch * (w + 1));
        for b in 0..batch {
            mask.extend_from_slice(&self.mask[b * w..(b + 1) * w]);
            mask.push(1);
        }
        self.mask = mask;
        self.width = w + 1;
        let positions = position_ids(&self.mask, self.width, 1);
        let embeds = self.lm.embed(&next_ids, batch, 1)?;
        let out = self.lm.step(&embeds, batch, 1, &self.mask, &positions, &mut self.cache)?;
        self.logits = out.logits;
        self.vocab = out.vocab;
        self.timings.decode_steps.push(t0.elapsed());
        Ok(events)
    }

    /// Runs to the end, calling `on_token` for every event; returning
    /// `std::ops::ControlFlow::Break(())` cancels.
    pub fn run(mut self, mut on_token: impl FnMut(&TokenEvent) -> std::ops::ControlFlow<()>) -> Result<GenerationResult, DecoderError> {
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
        let generated_tokens = self.rows.iter().map(|r| r.generated.len()).sum();
        let skip = self.cfg.skip_special_tokens;
        let rows = std::mem::take(&mut self.rows)
            .into_iter()
            .map(|r| {
                let text = tokenizer.map(|t| {
                    let ids: Vec<u32> = r.generated.iter().filter_map(|&x| u32::try_from(x).ok()).collect();
                    t.decode(&ids, skip).unwrap_or(r.text.clone())
                });
                RowOutput {
                    prompt_tokens: r.prompt.len(),
                    token_ids: r.generated,
                    text,
                    finish_reason: r.finished.unwrap_or(FinishReason::Cancelled),
                }
            })
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
