//! The executor: the one owner of every ONNX Runtime session of the engine — the vision graphs
//! and the language model — and of the model-side state of the requests in flight (the prefill
//! in progress and the running batch's KV cache). It runs a [`Plan`] and reports what happened;
//! it decides nothing.
//!
//! One thread (the engine core's) runs it, so session runs never overlap: on the CPU, where each
//! session uses every core, a vision encode, a prefill chunk and a decode step take turns at the
//! speed of the whole machine, with no lock between them.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use vidlm_decoder::{
    DecoderError, Features, FinishReason, LanguageModel, Prefill, RunningBatch, Sequence,
    TokenEvent,
};
use vidlm_pipeline::{features_of_blocks, vision_inputs};
use vidlm_processor::ProcessedInputs;
use vidlm_vision::{EncodeState, FeatureBlock, VisionEncoder, VisionInput};

use crate::request::EngineError;
use crate::scheduler::{Plan, RequestId};

/// Which vision inputs of a processed request one media item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Units {
    /// `count` consecutive images of the request from `first` (an image is one; a video of a
    /// family that sends videos as frames is its frames).
    Images {
        /// The first image.
        first: usize,
        /// How many.
        count: usize,
    },
    /// The request's video number `index`.
    Video {
        /// Which video.
        index: usize,
    },
}

/// What the executor needs of a request in flight.
pub(crate) trait RequestData {
    /// The processed inputs of a request and which of them a media item is.
    fn vision_work(&self, id: RequestId, item: usize) -> Option<(&ProcessedInputs, Units)>;
    /// The prompt of a request whose features are all there.
    fn sequence(&self, id: RequestId) -> Option<&Sequence>;
    /// Whether the core still holds the request (not cancelled or failed).
    fn alive(&self, id: RequestId) -> bool;
    /// The generation options and log-probability count of a request.
    fn generation(
        &self,
        id: RequestId,
    ) -> Option<(&vidlm_decoder::GenerationOptions, Option<usize>)>;
}

/// A generated token of a row.
#[derive(Debug)]
pub(crate) struct RowToken {
    pub(crate) id: RequestId,
    pub(crate) event: TokenEvent,
}

/// A row that finished in a decode step.
#[derive(Debug)]
pub(crate) struct RowDone {
    pub(crate) id: RequestId,
    pub(crate) text: String,
    pub(crate) token_ids: Vec<i64>,
    pub(crate) finish_reason: FinishReason,
}

/// What running a plan did, in order.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// An encode step of a media item ran for `took`; its features once complete.
    Encoded {
        id: RequestId,
        item: usize,
        took: Duration,
        result: Result<Option<Features>, EngineError>,
    },
    /// A prefill started: the prompt's embedding time.
    PrefillStarted { id: RequestId, result: Result<Duration, EngineError> },
    /// A prefill chunk of `tokens` ran in `seconds` (a complete prompt then joins the batch).
    Chunk { id: RequestId, tokens: usize, seconds: f64 },
    /// A prefill failed (start or chunk); it is dropped.
    PrefillFailed { id: RequestId, error: EngineError },
    /// A prefilled request joined the running batch (`prefill`: its decoder time; `max_tokens`:
    /// the most tokens it may generate, for `vidlm_request_params_max_tokens`).
    Joined { id: RequestId, prefill: Duration, batch_width: usize, max_tokens: usize },
    /// A prefilled request could not join.
    JoinFailed { id: RequestId, error: EngineError },
    /// A decode step ran.
    Decoded {
        tokens: Vec<RowToken>,
        finished: Vec<RowDone>,
        step: Option<Duration>,
        batch_width: usize,
    },
    /// A decode step failed: every row of the batch fails and the batch starts over.
    DecodeFailed { rows: Vec<RequestId>, error: DecoderError },
}

/// The executor. See the module documentation.
pub(crate) struct Executor {
    vision: VisionEncoder,
    lm: LanguageModel,
    batch: RunningBatch<RequestId>,
    prefill: Option<(RequestId, Prefill)>,
    /// Media items whose encode has started and not finished.
    encodes: HashMap<(RequestId, usize), ItemEncode>,
}

/// A media item's encode in progress: which of its vision inputs is next, that input's state,
/// and the finished inputs' features.
#[derive(Default)]
struct ItemEncode {
    next: usize,
    state: EncodeState,
    blocks: Vec<FeatureBlock>,
}

impl Executor {
    /// An executor over loaded parts.
    pub(crate) fn new(vision: VisionEncoder, lm: LanguageModel) -> Result<Self, EngineError> {
        let batch = RunningBatch::new(lm.sessions())?;
        Ok(Executor { vision, lm, batch, prefill: None, encodes: HashMap::new() })
    }

    /// Bytes of KV cache per token of one row.
    pub(crate) fn kv_bytes_per_token(&self) -> usize {
        let io = self.lm.sessions().io();
        let elem = if io.kv_type == vidlm_ort::TensorElementType::Float16 { 2 } else { 4 };
        io.layers.len() * 2 * io.kv_heads * io.head_dim * elem
    }

    /// Whether the vision graphs run on the CPU.
    pub(crate) fn vision_on_cpu(&self) -> bool {
        matches!(self.vision.provider(), vidlm_ort::Provider::Cpu)
    }

    /// Drops the vision sessions (they load again, from the same files, for the next encode).
    pub(crate) fn release_vision(&mut self) {
        if self.vision.is_loaded() {
            self.vision.release();
        }
    }

    /// Runs a plan: cancelled rows leave, a cancelled prefill is dropped, the encodes run, then
    /// the prefill chunk (a prefill that completes joins the batch), then one decode step.
    pub(crate) fn run(&mut self, plan: &Plan, data: &dyn RequestData) -> Vec<Outcome> {
        let mut out = Vec::new();
        if !plan.leave.is_empty() {
            if let Err(e) = self.batch.remove(&plan.leave, self.lm.sessions()) {
                tracing::error!(error = %e, "removing cancelled rows");
            }
        }
        if let Some(id) = plan.drop_prefill {
            if self.prefill.as_ref().is_some_and(|(p, _)| *p == id) {
                self.prefill = None;
            }
        }
        self.encodes.retain(|(id, _), _| data.sequence(*id).is_none() && data.alive(*id));
        let mut failed: HashSet<RequestId> = HashSet::new();
        for w in &plan.encodes {
            if failed.contains(&w.request) {
                continue;
            }
            let t0 = Instant::now();
            let result = match data.vision_work(w.request, w.item) {
                Some((inputs, units)) => {
                    self.encode(inputs, units, (w.request, w.item), w.units, w.last)
                }
                None => Err(internal(format!("no vision input for request {}", w.request))),
            };
            if result.is_err() {
                failed.insert(w.request);
                self.encodes.retain(|(id, _), _| *id != w.request);
            }
            let took = t0.elapsed();
            out.push(Outcome::Encoded { id: w.request, item: w.item, took, result });
        }
        if let Some(p) = plan.prefill {
            self.run_prefill(p.request, p.start, p.tokens, data, &mut out);
        }
        if !self.batch.is_empty() {
            out.push(self.decode());
        }
        out
    }

    /// The next `units` patches or frames of one media item — its images (packed by their patch
    /// grids), or its video; its features once complete (`last`: run whatever is left).
    fn encode(
        &mut self,
        inputs: &ProcessedInputs,
        units: Units,
        key: (RequestId, usize),
        mut budget: usize,
        last: bool,
    ) -> Result<Option<Features>, EngineError> {
        let (images, videos) = vision_inputs(&self.vision, inputs)?;
        let item: Vec<VisionInput<'_>> = match units {
            Units::Images { first, count } => images
                .get(first..first + count)
                .ok_or_else(|| {
                    internal(format!(
                        "images {first}..{} of {} from the processor",
                        first + count,
                        images.len()
                    ))
                })?
                .iter()
                .map(|im| VisionInput::Image(*im))
                .collect(),
            Units::Video { index } => {
                vec![VisionInput::Video(*videos.get(index).ok_or_else(|| {
                    internal(format!("video {index} of {} from the processor", videos.len()))
                })?)]
            }
        };
        if last {
            budget = usize::MAX;
        }
        let mut enc = self.encodes.remove(&key).unwrap_or_default();
        while budget > 0 {
            let Some(input) = item.get(enc.next) else { break };
            let before = enc.state.done();
            match self.vision.encode_step(input, &mut enc.state, budget)? {
                Some(block) => {
                    budget = budget.saturating_sub(input.units() - before);
                    enc.blocks.push(block);
                    enc.next += 1;
                    enc.state = EncodeState::default();
                }
                None => budget = budget.saturating_sub(enc.state.done() - before),
            }
        }
        if enc.next < item.len() {
            self.encodes.insert(key, enc);
            return Ok(None);
        }
        Ok(Some(features_of_blocks(enc.blocks)?.unwrap_or_else(|| Features::empty(1))))
    }

    fn run_prefill(
        &mut self,
        id: RequestId,
        start: bool,
        tokens: usize,
        data: &dyn RequestData,
        out: &mut Vec<Outcome>,
    ) {
        if start {
            let started = match data.sequence(id) {
                Some(seq) => self.lm.prefill(seq).map_err(EngineError::from),
                None => Err(internal(format!("request {id} has no prompt"))),
            };
            match started {
                Ok(p) => {
                    out.push(Outcome::PrefillStarted { id, result: Ok(p.embed_time) });
                    self.prefill = Some((id, p));
                }
                Err(e) => {
                    out.push(Outcome::PrefillStarted { id, result: Err(e) });
                    return;
                }
            }
        }
        let Some((pid, mut prefill)) = self.prefill.take() else { return };
        if pid != id {
            out.push(Outcome::PrefillFailed {
                id,
                error: internal(format!("request {id} is not the one prefilling ({pid})")),
            });
            return;
        }
        let n = tokens.min(prefill.remaining());
        let t0 = Instant::now();
        let (sessions, _) = self.lm.parts_mut();
        match prefill.step(sessions, tokens) {
            Ok(done) => {
                out.push(Outcome::Chunk { id, tokens: n, seconds: t0.elapsed().as_secs_f64() });
                if done {
                    out.push(self.join(id, prefill, data));
                } else {
                    self.prefill = Some((id, prefill));
                }
            }
            Err(e) => out.push(Outcome::PrefillFailed { id, error: e.into() }),
        }
    }

    /// A complete prefill joins the running batch.
    fn join(&mut self, id: RequestId, prefill: Prefill, data: &dyn RequestData) -> Outcome {
        let decoder_time = prefill.decoder_time;
        let joined = (|| {
            let (Some(seq), Some((generation, logprobs))) =
                (data.sequence(id), data.generation(id))
            else {
                return Err(internal(format!("request {id} has no prompt")));
            };
            let prefilled = prefill.finish()?;
            let state = self.lm.request_state(seq.input_ids.clone(), generation, logprobs)?;
            let max_tokens = state.max_tokens();
            self.batch.admit(id, state, prefilled, self.lm.sessions())?;
            Ok::<usize, EngineError>(max_tokens)
        })();
        match joined {
            Ok(max_tokens) => Outcome::Joined {
                id,
                prefill: decoder_time,
                batch_width: self.batch.width(),
                max_tokens,
            },
            Err(error) => Outcome::JoinFailed { id, error },
        }
    }

    /// One batched decode step; finished rows leave the batch.
    fn decode(&mut self) -> Outcome {
        let (sessions, tokenizer) = self.lm.parts_mut();
        match self.batch.step(sessions, tokenizer) {
            Ok(events) => {
                let tokens = events.into_iter().map(|(id, event)| RowToken { id, event }).collect();
                let (_, tokenizer) = self.lm.parts_mut();
                let finished = self
                    .batch
                    .take_finished()
                    .into_iter()
                    .map(|(id, state)| {
                        let out = state.into_output(tokenizer);
                        RowDone {
                            id,
                            text: out.text.unwrap_or_default(),
                            token_ids: out.token_ids,
                            finish_reason: out.finish_reason,
                        }
                    })
                    .collect();
                Outcome::Decoded {
                    tokens,
                    finished,
                    step: self.batch.last_decode,
                    batch_width: self.batch.width(),
                }
            }
            Err(error) => {
                // A failed batched pass fails every row in it; the batch starts over.
                tracing::error!(error = %error, "decode step failed");
                let rows = self.batch.keys();
                match RunningBatch::new(self.lm.sessions()) {
                    Ok(b) => self.batch = b,
                    Err(e) => tracing::error!(error = %e, "cannot reset the running batch"),
                }
                Outcome::DecodeFailed { rows, error }
            }
        }
    }
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("rows", &self.batch.len())
            .field("prefilling", &self.prefill.as_ref().map(|p| p.0))
            .finish_non_exhaustive()
    }
}

fn internal(msg: String) -> EngineError {
    EngineError::Pipeline(vidlm_pipeline::PipelineError::Internal(msg))
}
