//! The decode loop: one thread owns the language model and repeats
//!
//! 1. take prepared requests (non-blocking while there is work, blocking when idle);
//! 2. drop cancelled requests — waiting, prefilling or decoding (their batch rows are gathered
//!    out before the next decoder pass);
//! 3. start the next prefill if the batch has room and its KV cache fits the budget;
//! 4. run one prefill chunk (sized so that it stalls the decoding rows about `target_stall`;
//!    the whole prompt at once when nobody is decoding); a finished prefill joins the running
//!    batch;
//! 5. run one batched decode step and send each row its token; finished rows leave.
//!
//! So a request that arrives while others decode joins them at the next step, and a long prompt
//! delays other users' tokens by at most one chunk per step.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::Instant;

use vidlm_decoder::{FinishReason, LanguageModel, Prefill, RunningBatch};
use vidlm_pipeline::Stage;

use crate::request::{Completion, EngineError, Event, TokenOut};
use crate::{Job, Ready, Shared};

/// The smallest prefill chunk the scheduler sizes by itself. Every chunk reads all the decoder's
/// weights once, whatever its length: on a CPU, where the weights of a 0.5B model take ~85 ms to
/// read and a token ~4 ms to compute, a 25-token chunk (what a 100 ms stall allows) made a prefill
/// 2.5x slower than one pass; at 256 tokens the overhead is ~15 %. It is also the first chunk's
/// size while others decode, before any prefill rate is known. A given `prefill_chunk` wins.
const MIN_CHUNK: usize = 256;

struct Active {
    job: Job,
    prompt_tokens: usize,
    /// The row's token limit (`vidlm_request_params_max_tokens`).
    max_tokens: usize,
    /// When its prefill started (request phase metrics).
    scheduled_at: Instant,
    first_token_at: Option<Instant>,
    last_token_at: Instant,
}

struct Prefilling {
    ready: Ready,
    prefill: Prefill,
    scheduled_at: Instant,
}

/// vLLM's request-level histograms of a finished request.
fn request_metrics(shared: &Shared, a: &Active, generated: usize, now: Instant) {
    let m = &shared.metrics;
    m.request_prompt_tokens.observe(a.prompt_tokens as f64);
    m.request_generation_tokens.observe(generated as f64);
    m.request_params_n.observe(1.0);
    m.request_params_max_tokens.observe(a.max_tokens as f64);
    let first = a.first_token_at.unwrap_or(now);
    m.request_inference_time.observe(now.duration_since(a.scheduled_at).as_secs_f64());
    m.request_prefill_time.observe(first.duration_since(a.scheduled_at).as_secs_f64());
    m.request_decode_time.observe(now.duration_since(first).as_secs_f64());
}

fn finish_metrics(shared: &Shared, r: FinishReason) {
    let m = &shared.metrics;
    match r {
        FinishReason::Eos | FinishReason::StopString => {
            m.finished_stop.fetch_add(1, Ordering::Relaxed)
        }
        FinishReason::MaxNewTokens | FinishReason::ContextLength => {
            m.finished_length.fetch_add(1, Ordering::Relaxed)
        }
        FinishReason::Cancelled => m.finished_abort.fetch_add(1, Ordering::Relaxed),
    };
}

fn fail(shared: &Shared, job: &Job, e: EngineError) {
    shared.metrics.failed.fetch_add(1, Ordering::Relaxed);
    let _ = job.tx.send(Event::Failed(e));
}

/// Bytes of KV cache per token of one row.
fn kv_bytes_per_token(lm: &LanguageModel) -> usize {
    let io = lm.sessions().io();
    let elem = if io.kv_type == vidlm_ort::TensorElementType::Float16 { 2 } else { 4 };
    io.layers.len() * 2 * io.kv_heads * io.head_dim * elem
}

pub(crate) fn run(shared: Arc<Shared>, mut lm: LanguageModel, rx: Receiver<Ready>) {
    let cfg = shared.config.clone();
    let bpt = kv_bytes_per_token(&lm);
    let mut batch: RunningBatch<u64> = match RunningBatch::new(lm.sessions()) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "cannot create the running batch");
            return;
        }
    };
    let mut active: HashMap<u64, Active> = HashMap::new();
    let mut ready: VecDeque<Ready> = VecDeque::new();
    let mut prefilling: Option<Prefilling> = None;
    // Measured prefill speed (tokens/s, exponential average) to size chunks by time.
    let mut prefill_rate: Option<f64> = None;
    let mut open = true;
    loop {
        // Tokens this turn processes (`vidlm_iteration_tokens_total`).
        let mut iteration_tokens = 0usize;
        // 1. Intake.
        let idle = batch.is_empty() && prefilling.is_none() && ready.is_empty();
        if idle {
            if !open {
                break;
            }
            match rx.recv() {
                Ok(r) => ready.push_back(r),
                Err(_) => break,
            }
        }
        loop {
            match rx.try_recv() {
                Ok(r) => ready.push_back(r),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        // 2. Cancellations.
        ready.retain(|r| {
            if r.job.cancelled() {
                shared.metrics.waiting.fetch_sub(1, Ordering::Relaxed);
                shared.metrics.finished_abort.fetch_add(1, Ordering::Relaxed);
                false
            } else {
                true
            }
        });
        if prefilling.as_ref().is_some_and(|p| p.ready.job.cancelled()) {
            prefilling = None;
            shared.metrics.running.fetch_sub(1, Ordering::Relaxed);
            shared.metrics.finished_abort.fetch_add(1, Ordering::Relaxed);
        }
        let gone: Vec<u64> =
            active.iter().filter(|(_, a)| a.job.cancelled()).map(|(k, _)| *k).collect();
        if !gone.is_empty() {
            match batch.remove(&gone, lm.sessions()) {
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "removing cancelled rows"),
            }
            let at = shared.metrics.decode_steps.load(Ordering::Relaxed);
            shared.metrics.cancelled_at_step.store(at, Ordering::SeqCst);
            for k in gone {
                active.remove(&k);
                shared.metrics.running.fetch_sub(1, Ordering::Relaxed);
                shared.metrics.finished_abort.fetch_add(1, Ordering::SeqCst);
            }
        }
        // 3. Start the next prefill.
        if prefilling.is_none() && batch.len() < cfg.max_batch {
            let fits = |len: usize| {
                batch.is_empty()
                    || (batch.len() + 1) * (batch.width() + 1).max(len) * bpt <= cfg.kv_cache_bytes
            };
            if ready.front().is_some_and(|r| fits(r.seq.input_ids.len())) {
                if let Some(mut r) = ready.pop_front() {
                    shared.metrics.waiting.fetch_sub(1, Ordering::Relaxed);
                    shared.metrics.running.fetch_add(1, Ordering::Relaxed);
                    let now = Instant::now();
                    r.job.timings.wait_prefill = now.duration_since(r.ready_at);
                    shared
                        .metrics
                        .queue_time
                        .observe(now.duration_since(r.job.arrived).as_secs_f64());
                    let _ = r.job.tx.send(Event::Stage(Stage::Prefill {
                        prompt_tokens: r.seq.input_ids.len(),
                    }));
                    match lm.prefill(&r.seq) {
                        Ok(p) => {
                            r.job.timings.embed = p.embed_time;
                            prefilling =
                                Some(Prefilling { ready: r, prefill: p, scheduled_at: now });
                        }
                        Err(e) => {
                            shared.metrics.running.fetch_sub(1, Ordering::Relaxed);
                            fail(&shared, &r.job, e.into());
                        }
                    }
                }
            }
        }
        // 4. One prefill chunk.
        if let Some(mut p) = prefilling.take() {
            let chunk = if batch.is_empty() {
                usize::MAX
            } else {
                match (cfg.prefill_chunk, prefill_rate) {
                    (Some(c), _) => c,
                    (None, Some(rate)) => {
                        ((rate * cfg.target_stall.as_secs_f64()) as usize).clamp(MIN_CHUNK, 8192)
                    }
                    (None, None) => MIN_CHUNK,
                }
            };
            let n = chunk.min(p.prefill.remaining());
            // The turn to run (vidlm_ort::gate, when on) is taken before the clock starts: the
            // prefill rate that sizes the chunks is the decoder's, not the wait for a vision run.
            let turn = vidlm_ort::gate::enter();
            let t0 = Instant::now();
            let (sessions, _) = lm.parts_mut();
            let stepped = p.prefill.step(sessions, chunk);
            drop(turn);
            match stepped {
                Ok(done) => {
                    shared.metrics.prefill_chunks.fetch_add(1, Ordering::Relaxed);
                    iteration_tokens += n;
                    p.ready.job.timings.prefill_chunks += 1;
                    let dt = t0.elapsed().as_secs_f64();
                    if n >= 8 && dt > 0.0 {
                        let r = n as f64 / dt;
                        prefill_rate = Some(prefill_rate.map_or(r, |old| 0.7 * old + 0.3 * r));
                    }
                    if done {
                        admit(&shared, &mut lm, &mut batch, &mut active, p);
                    } else {
                        prefilling = Some(p);
                    }
                }
                Err(e) => {
                    shared.metrics.running.fetch_sub(1, Ordering::Relaxed);
                    fail(&shared, &p.ready.job, e.into());
                }
            }
        }
        // 5. One decode step.
        if !batch.is_empty() {
            let (sessions, tokenizer) = lm.parts_mut();
            let turn = vidlm_ort::gate::enter();
            let stepped = batch.step(sessions, tokenizer);
            drop(turn);
            match stepped {
                Ok(events) => {
                    shared.metrics.decode_steps.fetch_add(1, Ordering::Relaxed);
                    let now = Instant::now();
                    let step = batch.last_decode;
                    iteration_tokens += events.len();
                    for (id, ev) in events {
                        let Some(a) = active.get_mut(&id) else { continue };
                        shared.metrics.generation_tokens.fetch_add(1, Ordering::Relaxed);
                        match a.first_token_at {
                            None => {
                                a.first_token_at = Some(now);
                                a.job.timings.first_token = now.duration_since(a.job.arrived);
                                shared
                                    .metrics
                                    .ttft
                                    .observe(a.job.timings.first_token.as_secs_f64());
                            }
                            Some(_) => shared
                                .metrics
                                .itl
                                .observe(now.duration_since(a.last_token_at).as_secs_f64()),
                        }
                        a.last_token_at = now;
                        if ev.finished.is_none() {
                            if let Some(d) = step {
                                a.job.timings.decode_steps.push(d);
                            }
                        }
                        let _ = a.job.tx.send(Event::Token(TokenOut {
                            token_id: ev.token_id,
                            text: ev.text,
                            logprobs: ev.logprobs,
                        }));
                    }
                    let (_, tokenizer) = lm.parts_mut();
                    for (id, state) in batch.take_finished() {
                        let Some(mut a) = active.remove(&id) else { continue };
                        shared.metrics.running.fetch_sub(1, Ordering::Relaxed);
                        let out = state.into_output(tokenizer);
                        finish_metrics(&shared, out.finish_reason);
                        a.job.timings.total = a.job.arrived.elapsed();
                        shared.metrics.e2e.observe(a.job.timings.total.as_secs_f64());
                        request_metrics(&shared, &a, out.token_ids.len(), Instant::now());
                        let _ = a.job.tx.send(Event::Done(Completion {
                            text: out.text.unwrap_or_default(),
                            token_ids: out.token_ids,
                            finish_reason: out.finish_reason,
                            prompt_tokens: a.prompt_tokens,
                            timings: a.job.timings.clone(),
                        }));
                    }
                }
                Err(e) => {
                    // A failed batched pass fails every row in it; the batch starts over.
                    // It is the server's failure (kind Internal), never the requests': the
                    // cause is kept as the error's source.
                    tracing::error!(error = %e, "decode step failed");
                    let cause = Arc::new(e);
                    for (_, a) in active.drain() {
                        shared.metrics.running.fetch_sub(1, Ordering::Relaxed);
                        fail(&shared, &a.job, EngineError::decode_step(cause.clone()));
                    }
                    match RunningBatch::new(lm.sessions()) {
                        Ok(b) => batch = b,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot reset the running batch");
                            return;
                        }
                    }
                }
            }
        }
        if iteration_tokens > 0 {
            shared.metrics.iteration_tokens.observe(iteration_tokens as f64);
        }
    }
}

/// A prefill finished: its request state joins the running batch.
fn admit(
    shared: &Shared,
    lm: &mut LanguageModel,
    batch: &mut RunningBatch<u64>,
    active: &mut HashMap<u64, Active>,
    p: Prefilling,
) {
    let Prefilling { ready, prefill, scheduled_at } = p;
    let mut job = ready.job;
    job.timings.prefill = prefill.decoder_time;
    let prompt = ready.seq.input_ids;
    let prompt_tokens = prompt.len();
    let prefilled = match prefill.finish() {
        Ok(x) => x,
        Err(e) => {
            shared.metrics.running.fetch_sub(1, Ordering::Relaxed);
            return fail(shared, &job, e.into());
        }
    };
    let state = match lm.request_state(prompt, &job.req.generation, job.req.logprobs) {
        Ok(s) => s,
        Err(e) => {
            shared.metrics.running.fetch_sub(1, Ordering::Relaxed);
            return fail(shared, &job, e.into());
        }
    };
    let max_tokens = state.max_tokens();
    if let Err(e) = batch.admit(job.id, state, prefilled, lm.sessions()) {
        shared.metrics.running.fetch_sub(1, Ordering::Relaxed);
        return fail(shared, &job, e.into());
    }
    shared.metrics.prompt_tokens.fetch_add(prompt_tokens as u64, Ordering::Relaxed);
    let id = job.id;
    active.insert(
        id,
        Active {
            job,
            prompt_tokens,
            max_tokens,
            scheduled_at,
            first_token_at: None,
            last_token_at: Instant::now(),
        },
    );
}
