//! The engine core: one thread repeats [`EngineCore::step`] —
//!
//! 1. **intake**: take prepared requests from the media workers (blocking only when there is
//!    nothing to do), and tell the scheduler about cancelled ones;
//! 2. **schedule**: the [`Scheduler`](crate::scheduler::Scheduler) decides the step's
//!    [`Plan`];
//! 3. **execute**: the [`Executor`] runs it (cancelled rows leave, vision encodes, one prefill
//!    chunk, one decode step);
//! 4. **update**: the outcomes go back to the scheduler, and each request's events (stages,
//!    tokens, its end) to its handle.
//!
//! So a request that arrives while others decode joins them at the next step, a long prompt
//! delays other users' tokens by at most one chunk per step, and a text-only request starts its
//! prefill while a video's encodes are still scheduled.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::Instant;

use vidlm_decoder::{FinishReason, GenerationOptions, Sequence};
use vidlm_pipeline::Stage;
use vidlm_processor::ProcessedInputs;

use crate::executor::{Executor, Outcome, RequestData, RowDone, RowToken, Units};
use crate::prep::Prepared;
use crate::request::{Completion, EngineError, Event, TokenOut};
use crate::scheduler::{Finish, Plan, RequestId};
use crate::Shared;

/// A request the core holds: ready, prefilling or running.
struct Live {
    prepared: Prepared,
    seq: Option<Sequence>,
    first_token_at: Option<Instant>,
    last_token_at: Instant,
    /// When its prefill started (vLLM's request phase histograms).
    scheduled_at: Option<Instant>,
    /// The most tokens it may generate (`vidlm_request_params_max_tokens`).
    max_tokens: usize,
}

impl RequestData for HashMap<RequestId, Live> {
    fn vision_work(&self, id: RequestId, item: usize) -> Option<(&ProcessedInputs, Units)> {
        let p = &self.get(&id)?.prepared;
        Some((&p.inputs, p.items.get(item)?.units))
    }

    fn sequence(&self, id: RequestId) -> Option<&Sequence> {
        self.get(&id)?.seq.as_ref()
    }

    fn alive(&self, id: RequestId) -> bool {
        self.contains_key(&id)
    }

    fn generation(&self, id: RequestId) -> Option<(&GenerationOptions, Option<usize>)> {
        let req = &self.get(&id)?.prepared.job.req;
        Some((&req.generation, req.logprobs))
    }
}

/// The engine core. See the module documentation.
pub(crate) struct EngineCore {
    shared: Arc<Shared>,
    executor: Executor,
    requests: HashMap<RequestId, Live>,
    rx: Receiver<Prepared>,
    open: bool,
}

/// vLLM's request-level histograms of a finished request.
fn request_metrics(shared: &Shared, live: &Live, prompt_tokens: usize, generated: usize) {
    let m = &shared.metrics;
    let now = Instant::now();
    let scheduled = live.scheduled_at.unwrap_or(now);
    let first = live.first_token_at.unwrap_or(now);
    m.request_prompt_tokens.observe(prompt_tokens as f64);
    m.request_generation_tokens.observe(generated as f64);
    m.request_params_n.observe(1.0);
    m.request_params_max_tokens.observe(live.max_tokens as f64);
    m.request_inference_time.observe(now.duration_since(scheduled).as_secs_f64());
    m.request_prefill_time.observe(first.duration_since(scheduled).as_secs_f64());
    m.request_decode_time.observe(now.duration_since(first).as_secs_f64());
}

impl EngineCore {
    pub(crate) fn new(shared: Arc<Shared>, executor: Executor, rx: Receiver<Prepared>) -> Self {
        EngineCore { shared, executor, requests: HashMap::new(), rx, open: true }
    }

    /// Steps until the engine stops and no work is left.
    pub(crate) fn run(mut self) {
        while self.intake() {
            self.step();
        }
    }

    /// Takes prepared requests, blocking while there is nothing to do; `false` once the media
    /// workers are gone and nothing is left to run.
    fn intake(&mut self) -> bool {
        while !self.shared.scheduler(|s| s.has_work()) {
            if !self.open {
                return false;
            }
            match self.rx.recv() {
                Ok(p) => self.admit(p),
                Err(_) => self.open = false,
            }
        }
        loop {
            match self.rx.try_recv() {
                Ok(p) => self.admit(p),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.open = false;
                    break;
                }
            }
        }
        true
    }

    /// A prepared request becomes ready (unless it was cancelled meanwhile).
    fn admit(&mut self, prepared: Prepared) {
        let id = prepared.job.id;
        let prompt = prepared.inputs.conversations.first().map_or(0, |c| c.input_ids.len());
        let encodes = prepared.encodes();
        if !self.shared.scheduler(|s| s.prepared(id, prompt, encodes)) {
            return;
        }
        let live = Live {
            prepared,
            seq: None,
            first_token_at: None,
            last_token_at: Instant::now(),
            scheduled_at: None,
            max_tokens: 0,
        };
        self.requests.insert(id, live);
        self.try_sequence(id);
    }

    /// Builds a request's prompt once every media item has its features.
    fn try_sequence(&mut self, id: RequestId) {
        let Some(live) = self.requests.get_mut(&id) else { return };
        if live.seq.is_some() {
            return;
        }
        match live.prepared.sequence(self.shared.mrope.as_ref()) {
            None => {}
            Some(Ok(seq)) => {
                live.prepared.cache(&self.shared);
                live.seq = Some(seq);
            }
            Some(Err(e)) => self.fail(id, e),
        }
    }

    /// One step: cancellations, schedule, execute, update.
    pub(crate) fn step(&mut self) {
        let cancelled: Vec<RequestId> = self
            .requests
            .iter()
            .filter(|(_, l)| l.prepared.job.cancelled())
            .map(|(id, _)| *id)
            .collect();
        for id in cancelled {
            self.shared.scheduler(|s| s.cancel(id));
            self.requests.remove(&id);
        }
        let plan = self.shared.scheduler(|s| s.schedule());
        if plan.encoder_idle && self.shared.config.release_vision_after_use {
            self.executor.release_vision();
        }
        self.starting(&plan);
        let outcomes = self.executor.run(&plan, &self.requests);
        // Tokens this step processed (`vidlm_iteration_tokens_total`): prefill chunk and decode.
        let iteration_tokens: usize = outcomes
            .iter()
            .map(|o| match o {
                Outcome::Chunk { tokens, .. } => *tokens,
                Outcome::Decoded { tokens, .. } => tokens.len(),
                _ => 0,
            })
            .sum();
        // Observed before the updates: an update may send a request its final event, and a
        // client that then scrapes `/metrics` must already see this step's tokens.
        if iteration_tokens > 0 {
            self.shared.metrics.iteration_tokens.observe(iteration_tokens as f64);
        }
        for o in outcomes {
            self.update(o);
        }
    }

    /// A prefill starts: its stage event and queue time.
    fn starting(&mut self, plan: &Plan) {
        let Some(p) = plan.prefill.filter(|p| p.start) else { return };
        let Some(live) = self.requests.get_mut(&p.request) else { return };
        let now = Instant::now();
        live.scheduled_at = Some(now);
        let job = &mut live.prepared.job;
        job.timings.wait_prefill = now.duration_since(live.prepared.ready_at);
        self.shared.metrics.queue_time.observe(now.duration_since(job.arrived).as_secs_f64());
        let prompt_tokens = live.seq.as_ref().map_or(0, |s| s.input_ids.len());
        let _ = job.tx.send(Event::Stage(Stage::Prefill { prompt_tokens }));
    }

    fn update(&mut self, o: Outcome) {
        match o {
            Outcome::Encoded { id, item, took, result: Ok(features) } => {
                let Some(live) = self.requests.get_mut(&id) else { return };
                live.prepared.job.timings.vision += took;
                if let (Some(it), Some(f)) = (live.prepared.items.get_mut(item), features) {
                    it.features = Some(Arc::new(f));
                }
                self.shared.scheduler(|s| s.encoded(id));
                self.try_sequence(id);
            }
            Outcome::Encoded { id, result: Err(e), .. }
            | Outcome::PrefillStarted { id, result: Err(e) } => self.fail(id, e),
            Outcome::PrefillStarted { id, result: Ok(embed) } => {
                if let Some(live) = self.requests.get_mut(&id) {
                    live.prepared.job.timings.embed = embed;
                }
            }
            Outcome::Chunk { id, tokens, seconds } => {
                if let Some(live) = self.requests.get_mut(&id) {
                    live.prepared.job.timings.prefill_chunks += 1;
                }
                self.shared.scheduler(|s| s.prefill_chunk_done(id, tokens, seconds));
            }
            Outcome::PrefillFailed { id, error } | Outcome::JoinFailed { id, error } => {
                self.fail(id, error)
            }
            Outcome::Joined { id, prefill, batch_width, max_tokens } => {
                if let Some(live) = self.requests.get_mut(&id) {
                    live.prepared.job.timings.prefill = prefill;
                    live.last_token_at = Instant::now();
                    live.max_tokens = max_tokens;
                }
                self.shared.scheduler(|s| s.joined(id, batch_width));
            }
            Outcome::Decoded { tokens, finished, step, batch_width } => {
                self.decoded(tokens, finished, step, batch_width)
            }
            Outcome::DecodeFailed { rows, error } => {
                // Never the request's fault: kind Internal (a 500), the decoder's error as source.
                let error = Arc::new(error);
                for id in rows {
                    self.fail(id, EngineError::decode_step(error.clone()));
                }
                self.shared.scheduler(|s| s.batch_width_is(0));
            }
        }
    }

    /// A decode step's tokens go to their requests; finished requests get their completion.
    fn decoded(
        &mut self,
        tokens: Vec<RowToken>,
        finished: Vec<RowDone>,
        step: Option<std::time::Duration>,
        batch_width: usize,
    ) {
        let now = Instant::now();
        let m = &self.shared.metrics;
        let generated = tokens.len();
        for RowToken { id, event } in tokens {
            let Some(live) = self.requests.get_mut(&id) else { continue };
            let job = &mut live.prepared.job;
            match live.first_token_at {
                None => {
                    live.first_token_at = Some(now);
                    job.timings.first_token = now.duration_since(job.arrived);
                    m.ttft.observe(job.timings.first_token.as_secs_f64());
                }
                Some(_) => m.itl.observe(now.duration_since(live.last_token_at).as_secs_f64()),
            }
            live.last_token_at = now;
            if let (None, Some(d)) = (event.finished, step) {
                job.timings.decode_steps.push(d);
            }
            let _ = job.tx.send(Event::Token(TokenOut {
                token_id: event.token_id,
                text: event.text,
                logprobs: event.logprobs,
            }));
        }
        let mut ended = Vec::new();
        let mut aborted = Vec::new();
        // Completions go out after the scheduler knows the rows ended, so a caller that reads
        // the gauges once its answer arrived sees them.
        let mut completions = Vec::new();
        for done in finished {
            let Some(live) = self.requests.remove(&done.id) else { continue };
            let prompt_tokens = live.seq.as_ref().map_or(0, |s| s.input_ids.len());
            request_metrics(&self.shared, &live, prompt_tokens, done.token_ids.len());
            let mut job = live.prepared.job;
            match done.finish_reason {
                FinishReason::Eos | FinishReason::StopString => ended.push((done.id, Finish::Stop)),
                FinishReason::MaxNewTokens | FinishReason::ContextLength => {
                    ended.push((done.id, Finish::Length))
                }
                FinishReason::Cancelled => aborted.push(done.id),
            }
            job.timings.total = job.arrived.elapsed();
            m.e2e.observe(job.timings.total.as_secs_f64());
            let completion = Completion {
                text: done.text,
                token_ids: done.token_ids,
                finish_reason: done.finish_reason,
                prompt_tokens,
                prompt_token_ids: live.seq.map(|s| s.input_ids).unwrap_or_default(),
                timings: job.timings,
            };
            completions.push((job.tx, completion));
        }
        self.shared.scheduler(|s| {
            s.decoded(generated, &ended, batch_width);
            for id in aborted {
                s.cancel(id);
            }
        });
        for (tx, completion) in completions {
            let _ = tx.send(Event::Done(completion));
        }
    }

    /// A request failed: the scheduler forgets it and its handle gets the error.
    fn fail(&mut self, id: RequestId, e: EngineError) {
        self.shared.scheduler(|s| s.fail(id));
        if let Some(live) = self.requests.remove(&id) {
            let _ = live.prepared.job.tx.send(Event::Failed(e));
        }
    }
}
