//! The scheduler: a pure state machine over request ids — no ONNX Runtime, no sessions, no
//! threads. It decides; the engine's executor (the one owner of the ONNX Runtime sessions) runs
//! what it decides; the engine core feeds the results back.
//!
//! Each request has a [`Status`]:
//!
//! ```text
//! waiting → preparing → ready → prefilling → running → finished
//!     \         \          \          \          \
//!      ───────────────────────────────────────────→ failed | cancelled
//! ```
//!
//! * **waiting**: admitted ([`Scheduler::add`]), not yet picked up by a media worker;
//! * **preparing**: a media worker fetches, decodes and preprocesses it;
//! * **ready**: its prompt length is known and its vision encodes (the media items the vision
//!   cache lacked) are scheduled as work items, at most [`SchedulerConfig::encoder_budget`]
//!   units (image patches or video frames) per step, so decode steps run between a long video's
//!   frames; once they are done it may start its prefill;
//! * **prefilling**: its prompt runs in chunks between decode steps;
//! * **running**: it is a row of the running batch and decodes one token per step.
//!
//! [`Scheduler::schedule`] returns a [`Plan`] for one step: the cancelled rows that leave the
//! batch, the vision encodes to run, the prefill chunk (self-sized: the whole prompt when nobody
//! decodes, else [`SchedulerConfig::prefill_chunk`] or what `target_stall` allows at the measured
//! prefill rate, never under [`MIN_CHUNK`]) and whether the batch decodes. It owns the KV budget
//! (a request starts its prefill only when the running batch, padded to the widest row, still
//! fits [`SchedulerConfig::kv_cache_bytes`] with it) and the queue limit. Gauges and counters
//! ([`SchedulerStats`]) are computed from its queues and transitions, never kept by hand.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// A request's id in the engine.
pub type RequestId = u64;

/// The smallest prefill chunk the scheduler sizes by itself. Every chunk reads all the decoder's
/// weights once, whatever its length: on a CPU, where the weights of a 0.5B model take ~85 ms to
/// read and a token ~4 ms to compute, a 25-token chunk (what a 100 ms stall allows) made a prefill
/// 2.5x slower than one pass; at 256 tokens the overhead is ~15 %. It is also the first chunk's
/// size while others decode, before any prefill rate is known. A given `prefill_chunk` wins.
pub const MIN_CHUNK: usize = 256;

/// The largest chunk sized from the measured rate.
const MAX_CHUNK: usize = 8192;

/// Where a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Admitted; no media worker has taken it yet.
    Waiting,
    /// A media worker loads, decodes and preprocesses it.
    Preparing,
    /// Prepared; its vision encodes run (if any), then it waits for its prefill.
    Ready,
    /// Its prompt runs, chunk by chunk.
    Prefilling,
    /// A row of the running batch.
    Running,
    /// Finished normally.
    Finished,
    /// Failed.
    Failed,
    /// Cancelled by its caller.
    Cancelled,
}

impl Status {
    /// Whether nothing more happens to the request.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Finished | Status::Failed | Status::Cancelled)
    }
}

/// How a finished request ended, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// An end-of-sequence token or a stop string.
    Stop,
    /// The token limit or the model's context.
    Length,
}

/// What the scheduler is configured with.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    /// Rows decoded together at most.
    pub max_batch: usize,
    /// Requests waiting, preparing or ready at most; [`Scheduler::add`] refuses more.
    pub max_queue: usize,
    /// Prefill chunk in tokens while others decode (`None`: sized by `target_stall`).
    pub prefill_chunk: Option<usize>,
    /// How long one prefill chunk may delay the decoding rows.
    pub target_stall: Duration,
    /// KV cache bytes the running batch (padding included) may reach with a new row.
    pub kv_cache_bytes: usize,
    /// KV cache bytes per token of one row (the model's layers × 2 × heads × head size × element
    /// size).
    pub kv_bytes_per_token: usize,
    /// Vision units (image patches or video frames) encoded per step at most (at least one).
    pub encoder_budget: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            max_batch: 16,
            max_queue: 64,
            prefill_chunk: None,
            target_stall: Duration::from_millis(100),
            kv_cache_bytes: 4 << 30,
            kv_bytes_per_token: 0,
            encoder_budget: 1,
        }
    }
}

/// [`Scheduler::add`] refused: the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull {
    /// Requests waiting, preparing or ready.
    pub waiting: usize,
}

/// One vision encode step: the next `units` units (patches or frames) of media item `item` of
/// request `request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeWork {
    /// The request.
    pub request: RequestId,
    /// The index of its media item (in the request's order).
    pub item: usize,
    /// Patches or frames to run.
    pub units: usize,
    /// Whether these are the item's last units (its features are complete after them).
    pub last: bool,
}

/// One prefill chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefillWork {
    /// The request.
    pub request: RequestId,
    /// Whether the prefill starts now (its prompt is embedded before the chunk).
    pub start: bool,
    /// Prompt tokens to run in this chunk.
    pub tokens: usize,
}

/// What one step runs, in this order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Cancelled rows to gather out of the running batch before anything runs.
    pub leave: Vec<RequestId>,
    /// A cancelled prefill to drop.
    pub drop_prefill: Option<RequestId>,
    /// Vision encodes.
    pub encodes: Vec<EncodeWork>,
    /// A prefill chunk.
    pub prefill: Option<PrefillWork>,
    /// The rows that decode one token (a row whose prefill completes in this step joins them).
    pub decode: Vec<RequestId>,
    /// No vision work is pending or can arrive (nothing waiting, preparing or encoding): the
    /// vision sessions may be released.
    pub encoder_idle: bool,
}

impl Plan {
    /// Whether the step runs nothing.
    pub fn is_empty(&self) -> bool {
        self.leave.is_empty()
            && self.drop_prefill.is_none()
            && self.encodes.is_empty()
            && self.prefill.is_none()
            && self.decode.is_empty()
    }
}

/// Counters and gauges, from the scheduler's queues and transitions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedulerStats {
    /// Requests waiting, preparing or ready (gauge).
    pub waiting: usize,
    /// Requests prefilling or running (gauge).
    pub running: usize,
    /// Requests refused because the queue was full.
    pub rejected: u64,
    /// Requests finished with a stop (EOS or stop string).
    pub finished_stop: u64,
    /// Requests finished by the token limit or the context.
    pub finished_length: u64,
    /// Requests cancelled.
    pub cancelled: u64,
    /// Requests failed.
    pub failed: u64,
    /// Prefill chunks run.
    pub prefill_chunks: u64,
    /// Batched decode steps run.
    pub decode_steps: u64,
    /// Prompt tokens of requests that joined the running batch.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub generation_tokens: u64,
}

#[derive(Debug)]
struct Entry {
    status: Status,
    prompt_tokens: usize,
    /// Encodes not fully scheduled: (item, units left).
    encodes: VecDeque<(usize, usize)>,
    /// Encode steps scheduled and not yet reported done.
    encoding: usize,
    /// Prompt tokens run so far.
    prefilled: usize,
}

/// The scheduler. See the module documentation.
#[derive(Debug)]
pub struct Scheduler {
    config: SchedulerConfig,
    /// Requests not yet terminal.
    live: HashMap<RequestId, Entry>,
    /// Waiting, preparing and ready requests, in arrival order.
    queue: VecDeque<RequestId>,
    /// The request prefilling, if any (one at a time).
    prefilling: Option<RequestId>,
    /// Rows of the running batch, in the order they joined.
    running: Vec<RequestId>,
    /// Cancelled rows still in the running batch.
    leaving: Vec<RequestId>,
    /// A cancelled prefill still held by the executor.
    dropped_prefill: Option<RequestId>,
    /// KV width of the running batch (padding included), as the executor reports it.
    batch_width: usize,
    /// Measured prefill speed (tokens/s, exponential average).
    prefill_rate: Option<f64>,
    stats: SchedulerStats,
}

impl Scheduler {
    /// An empty scheduler.
    pub fn new(config: SchedulerConfig) -> Self {
        Scheduler {
            config,
            live: HashMap::new(),
            queue: VecDeque::new(),
            prefilling: None,
            running: Vec::new(),
            leaving: Vec::new(),
            dropped_prefill: None,
            batch_width: 0,
            prefill_rate: None,
            stats: SchedulerStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// Admits a request as waiting, or refuses it when `max_queue` requests are waiting,
    /// preparing or ready.
    pub fn add(&mut self, id: RequestId) -> Result<(), QueueFull> {
        let waiting = self.queue.len();
        if waiting >= self.config.max_queue {
            self.stats.rejected += 1;
            return Err(QueueFull { waiting });
        }
        let entry = Entry {
            status: Status::Waiting,
            prompt_tokens: 0,
            encodes: VecDeque::new(),
            encoding: 0,
            prefilled: 0,
        };
        self.live.insert(id, entry);
        self.queue.push_back(id);
        Ok(())
    }

    /// A media worker takes a waiting request. `false` if it is not waiting (cancelled).
    pub fn start_preparing(&mut self, id: RequestId) -> bool {
        self.transition(id, Status::Waiting, Status::Preparing)
    }

    /// A media worker has prepared a request: its prompt length and the units (patches or frames)
    /// of each media item that needs the vision graphs, by item index. `false` if it is not
    /// preparing (cancelled meanwhile).
    pub fn prepared(
        &mut self,
        id: RequestId,
        prompt_tokens: usize,
        encodes: Vec<(usize, usize)>,
    ) -> bool {
        if !self.transition(id, Status::Preparing, Status::Ready) {
            return false;
        }
        if let Some(e) = self.live.get_mut(&id) {
            e.prompt_tokens = prompt_tokens;
            e.encodes = encodes.into();
        }
        true
    }

    /// Cancels a request at whatever status it has; returns that status (`None` if it is not
    /// live). A running row leaves the batch in the next plan ([`Plan::leave`]); a prefill is
    /// dropped in the next plan ([`Plan::drop_prefill`]).
    pub fn cancel(&mut self, id: RequestId) -> Option<Status> {
        let status = self.remove(id)?;
        match status {
            Status::Running => self.leaving.push(id),
            Status::Prefilling => self.dropped_prefill = Some(id),
            _ => {}
        }
        self.stats.cancelled += 1;
        Some(status)
    }

    /// A request failed (its work, or the step that ran it). A failed row or prefill is gone
    /// from the executor already.
    pub fn fail(&mut self, id: RequestId) -> Option<Status> {
        let status = self.remove(id)?;
        self.stats.failed += 1;
        Some(status)
    }

    /// Decides one step. See [`Plan`].
    pub fn schedule(&mut self) -> Plan {
        let mut plan = Plan {
            leave: std::mem::take(&mut self.leaving),
            drop_prefill: self.dropped_prefill.take(),
            ..Plan::default()
        };
        // Vision encodes, oldest request first, within the budget (at least one unit).
        let budget = self.config.encoder_budget.max(1);
        let mut spent = 0usize;
        'encodes: for id in &self.queue {
            let Some(e) = self.live.get_mut(id) else { continue };
            if e.status != Status::Ready {
                continue;
            }
            while let Some(front) = e.encodes.front_mut() {
                if spent >= budget {
                    break 'encodes;
                }
                let units = front.1.min(budget - spent);
                front.1 -= units;
                spent += units;
                e.encoding += 1;
                let last = front.1 == 0;
                plan.encodes.push(EncodeWork { request: *id, item: front.0, units, last });
                if last {
                    e.encodes.pop_front();
                }
            }
        }
        plan.encoder_idle = plan.encodes.is_empty()
            && self.queue.iter().all(|id| {
                self.live.get(id).is_some_and(|e| {
                    e.status == Status::Ready && e.encodes.is_empty() && e.encoding == 0
                })
            });
        // Start the next prefill: the oldest ready request whose encodes are done (a text-only
        // request never waits behind a video's encodes), if the batch has room and its KV fits.
        if self.prefilling.is_none() && self.running.len() < self.config.max_batch {
            let next = self.queue.iter().copied().find(|id| {
                self.live.get(id).is_some_and(|e| {
                    e.status == Status::Ready && e.encodes.is_empty() && e.encoding == 0
                })
            });
            if let Some(id) = next {
                let prompt = self.live.get(&id).map_or(0, |e| e.prompt_tokens);
                if self.fits(prompt) {
                    self.queue.retain(|q| *q != id);
                    if let Some(e) = self.live.get_mut(&id) {
                        e.status = Status::Prefilling;
                    }
                    self.prefilling = Some(id);
                    plan.prefill = Some(PrefillWork { request: id, start: true, tokens: 0 });
                }
            }
        }
        // One chunk of the prefill.
        if let Some(id) = self.prefilling {
            let remaining = self.live.get(&id).map_or(0, |e| e.prompt_tokens - e.prefilled);
            let tokens = self.chunk_size().min(remaining).max(1);
            let start = plan.prefill.is_some_and(|p| p.start);
            plan.prefill = Some(PrefillWork { request: id, start, tokens });
        }
        plan.decode = self.running.clone();
        plan
    }

    /// The next prefill chunk's size: the whole prompt when nobody decodes; else the configured
    /// chunk, or what `target_stall` allows at the measured rate (at least [`MIN_CHUNK`]).
    pub fn chunk_size(&self) -> usize {
        if self.running.is_empty() {
            return usize::MAX;
        }
        match (self.config.prefill_chunk, self.prefill_rate) {
            (Some(c), _) => c,
            (None, Some(rate)) => ((rate * self.config.target_stall.as_secs_f64()) as usize)
                .clamp(MIN_CHUNK, MAX_CHUNK),
            (None, None) => MIN_CHUNK,
        }
    }

    /// Whether a prompt of `len` tokens may join the running batch: the batch, padded to its
    /// widest row, with one more row, within the KV budget (an empty batch always fits).
    fn fits(&self, len: usize) -> bool {
        self.running.is_empty()
            || (self.running.len() + 1)
                * (self.batch_width + 1).max(len)
                * self.config.kv_bytes_per_token
                <= self.config.kv_cache_bytes
    }

    /// An encode step finished (successfully: a failure is [`Scheduler::fail`]).
    pub fn encoded(&mut self, id: RequestId) {
        if let Some(e) = self.live.get_mut(&id) {
            e.encoding = e.encoding.saturating_sub(1);
        }
    }

    /// A prefill chunk of `tokens` ran in `seconds` (the rate that sizes the next chunks).
    pub fn prefill_chunk_done(&mut self, id: RequestId, tokens: usize, seconds: f64) {
        self.stats.prefill_chunks += 1;
        if let Some(e) = self.live.get_mut(&id) {
            e.prefilled = (e.prefilled + tokens).min(e.prompt_tokens);
        }
        if tokens >= 8 && seconds > 0.0 {
            let r = tokens as f64 / seconds;
            self.prefill_rate = Some(self.prefill_rate.map_or(r, |old| 0.7 * old + 0.3 * r));
        }
    }

    /// A prefilled request joined the running batch, which is now `batch_width` wide.
    pub fn joined(&mut self, id: RequestId, batch_width: usize) {
        if self.transition(id, Status::Prefilling, Status::Running) {
            self.prefilling = None;
            self.running.push(id);
            self.stats.prompt_tokens += self.live.get(&id).map_or(0, |e| e.prompt_tokens) as u64;
        }
        self.batch_width = batch_width;
    }

    /// A decode step ran: `tokens` tokens were generated, these rows finished, and the batch is
    /// now `batch_width` wide.
    pub fn decoded(&mut self, tokens: usize, finished: &[(RequestId, Finish)], batch_width: usize) {
        self.stats.decode_steps += 1;
        self.stats.generation_tokens += tokens as u64;
        for &(id, how) in finished {
            if self.remove(id).is_some() {
                match how {
                    Finish::Stop => self.stats.finished_stop += 1,
                    Finish::Length => self.stats.finished_length += 1,
                }
            }
        }
        self.batch_width = batch_width;
    }

    /// The running batch was emptied (rows gathered out, or a failed step reset it).
    pub fn batch_width_is(&mut self, batch_width: usize) {
        self.batch_width = batch_width;
    }

    /// A request's status (`None` once terminal: terminal requests are forgotten).
    pub fn status(&self, id: RequestId) -> Option<Status> {
        self.live.get(&id).map(|e| e.status)
    }

    /// Rows of the running batch.
    pub fn running(&self) -> &[RequestId] {
        &self.running
    }

    /// The request prefilling.
    pub fn prefilling(&self) -> Option<RequestId> {
        self.prefilling
    }

    /// Whether any request is ready, prefilling or running (the core has a step to run), or a
    /// cancellation is still to be carried out.
    pub fn has_work(&self) -> bool {
        self.prefilling.is_some()
            || !self.running.is_empty()
            || !self.leaving.is_empty()
            || self.dropped_prefill.is_some()
            || self.queue.iter().any(|id| self.status(*id) == Some(Status::Ready))
    }

    /// Counters and gauges.
    pub fn stats(&self) -> SchedulerStats {
        SchedulerStats {
            waiting: self.queue.len(),
            running: self.running.len() + usize::from(self.prefilling.is_some()),
            ..self.stats
        }
    }

    /// Moves `id` from `from` to `to`; `false` if it is not at `from`.
    fn transition(&mut self, id: RequestId, from: Status, to: Status) -> bool {
        match self.live.get_mut(&id) {
            Some(e) if e.status == from => {
                e.status = to;
                true
            }
            _ => false,
        }
    }

    /// Forgets a live request; returns the status it had.
    fn remove(&mut self, id: RequestId) -> Option<Status> {
        let e = self.live.remove(&id)?;
        match e.status {
            Status::Waiting | Status::Preparing | Status::Ready => self.queue.retain(|q| *q != id),
            Status::Prefilling => self.prefilling = None,
            Status::Running => self.running.retain(|r| *r != id),
            _ => {}
        }
        Some(e.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(max_batch: usize, max_queue: usize) -> Scheduler {
        Scheduler::new(SchedulerConfig {
            max_batch,
            max_queue,
            kv_bytes_per_token: 1,
            encoder_budget: 8,
            ..SchedulerConfig::default()
        })
    }

    /// Adds, prepares and readies a request of `prompt` tokens with these encodes.
    fn ready(s: &mut Scheduler, id: RequestId, prompt: usize, encodes: Vec<(usize, usize)>) {
        s.add(id).unwrap();
        assert!(s.start_preparing(id));
        assert!(s.prepared(id, prompt, encodes));
        assert_eq!(s.status(id), Some(Status::Ready));
    }

    /// Runs the plan's prefill to the end and joins the row (batch width = its prompt at most).
    fn prefill_and_join(s: &mut Scheduler, id: RequestId, width: usize) {
        loop {
            let plan = s.schedule();
            let p = plan.prefill.expect("a prefill");
            assert_eq!(p.request, id);
            s.prefill_chunk_done(id, p.tokens, 0.01);
            if s.live[&id].prefilled == s.live[&id].prompt_tokens {
                s.joined(id, width);
                return;
            }
        }
    }

    #[test]
    fn admission_and_the_queue_limit() {
        let mut s = sched(4, 2);
        s.add(1).unwrap();
        s.add(2).unwrap();
        assert_eq!(s.add(3), Err(QueueFull { waiting: 2 }));
        assert_eq!(s.stats().rejected, 1);
        assert_eq!(s.stats().waiting, 2);
        assert_eq!(s.status(1), Some(Status::Waiting));
        assert!(s.start_preparing(1));
        assert!(!s.start_preparing(1), "only a waiting request is taken");
        assert_eq!(s.status(1), Some(Status::Preparing));
        // Nothing to run until a request is ready.
        assert!(!s.has_work());
        assert!(s.schedule().is_empty());
        assert!(s.prepared(1, 10, vec![]));
        assert!(s.has_work());
        // Prefilling frees a queue place.
        let plan = s.schedule();
        assert_eq!(plan.prefill, Some(PrefillWork { request: 1, start: true, tokens: 10 }));
        assert_eq!(s.status(1), Some(Status::Prefilling));
        assert_eq!(s.stats().waiting, 1);
        assert_eq!(s.stats().running, 1);
        s.add(3).unwrap();
    }

    #[test]
    fn whole_prompt_alone_then_chunks_beside_decoding_rows() {
        let mut s = sched(4, 8);
        ready(&mut s, 1, 1000, vec![]);
        // Nobody decodes: the whole prompt in one chunk.
        let plan = s.schedule();
        assert_eq!(plan.prefill.map(|p| p.tokens), Some(1000));
        assert!(plan.decode.is_empty());
        s.prefill_chunk_done(1, 1000, 0.5);
        s.joined(1, 1000);
        assert_eq!(s.status(1), Some(Status::Running));
        // Beside a decoding row: a self-sized chunk, at least MIN_CHUNK; the rate measured above
        // (2000 tokens/s) allows 200 tokens in 100 ms, so MIN_CHUNK it is.
        ready(&mut s, 2, 600, vec![]);
        let plan = s.schedule();
        assert_eq!(plan.prefill, Some(PrefillWork { request: 2, start: true, tokens: MIN_CHUNK }));
        assert_eq!(plan.decode, vec![1]);
        // A faster measured rate: bigger chunks (20k tokens/s → 2000 in 100 ms); the last chunk
        // is what remains.
        s.prefill_chunk_done(2, MIN_CHUNK, MIN_CHUNK as f64 / 20_000.0);
        s.prefill_rate = Some(20_000.0);
        let plan = s.schedule();
        assert_eq!(plan.prefill, Some(PrefillWork { request: 2, start: false, tokens: 344 }));
        // A configured chunk wins.
        let mut c = Scheduler::new(SchedulerConfig {
            prefill_chunk: Some(64),
            kv_bytes_per_token: 1,
            ..SchedulerConfig::default()
        });
        ready(&mut c, 1, 10, vec![]);
        prefill_and_join(&mut c, 1, 10);
        ready(&mut c, 2, 500, vec![]);
        assert_eq!(c.schedule().prefill.map(|p| p.tokens), Some(64));
        assert_eq!(c.chunk_size(), 64);
    }

    #[test]
    fn rows_join_and_leave_the_running_batch() {
        let mut s = sched(2, 8);
        for id in 1..=3 {
            ready(&mut s, id, 5, vec![]);
        }
        prefill_and_join(&mut s, 1, 5);
        prefill_and_join(&mut s, 2, 6);
        // The batch is full: request 3 waits.
        let plan = s.schedule();
        assert_eq!(plan.prefill, None);
        assert_eq!(plan.decode, vec![1, 2]);
        assert_eq!(s.status(3), Some(Status::Ready));
        // Row 1 finishes: 3 starts.
        s.decoded(2, &[(1, Finish::Stop)], 7);
        assert_eq!(s.status(1), None);
        let plan = s.schedule();
        assert_eq!(plan.prefill.map(|p| p.request), Some(3));
        assert_eq!(plan.decode, vec![2]);
        s.prefill_chunk_done(3, 5, 0.01);
        s.joined(3, 7);
        s.decoded(2, &[(2, Finish::Length), (3, Finish::Stop)], 0);
        let st = s.stats();
        assert_eq!((st.finished_stop, st.finished_length), (2, 1));
        assert_eq!((st.running, st.waiting), (0, 0));
        assert_eq!(st.decode_steps, 2);
        assert_eq!(st.generation_tokens, 4);
        assert_eq!(st.prompt_tokens, 15);
        assert!(!s.has_work());
    }

    #[test]
    fn the_kv_budget_holds_a_request_back_until_rows_leave() {
        let mut s = Scheduler::new(SchedulerConfig {
            kv_cache_bytes: 1000,
            kv_bytes_per_token: 1,
            ..SchedulerConfig::default()
        });
        ready(&mut s, 1, 300, vec![]);
        prefill_and_join(&mut s, 1, 300);
        // Two rows, padded to 301 columns: fits.
        ready(&mut s, 2, 200, vec![]);
        prefill_and_join(&mut s, 2, 301);
        // Three rows of 600 (padded) = 1800 > 1000: waits.
        ready(&mut s, 3, 600, vec![]);
        // A smaller request behind it does not overtake it (first come, first served).
        ready(&mut s, 4, 10, vec![]);
        let plan = s.schedule();
        assert_eq!(plan.prefill, None);
        assert_eq!(s.status(3), Some(Status::Ready));
        // Row 1 leaves: two rows of 600 = 1200, still too many.
        s.decoded(2, &[(1, Finish::Length)], 302);
        assert_eq!(s.schedule().prefill, None);
        // Row 2 leaves too: an empty batch, and the whole prompt at once.
        s.decoded(1, &[(2, Finish::Length)], 0);
        let plan = s.schedule();
        assert_eq!(plan.prefill, Some(PrefillWork { request: 3, start: true, tokens: 600 }));
        // An empty batch always fits, however long the prompt.
        let mut e = Scheduler::new(SchedulerConfig {
            kv_cache_bytes: 10,
            kv_bytes_per_token: 1,
            ..SchedulerConfig::default()
        });
        ready(&mut e, 1, 5000, vec![]);
        assert_eq!(e.schedule().prefill.map(|p| p.tokens), Some(5000));
    }

    #[test]
    fn encodes_are_work_items_within_the_budget_and_text_does_not_wait_for_them() {
        let mut s = sched(4, 8);
        // A video of 8 frames and an image; then a text-only request.
        ready(&mut s, 1, 100, vec![(0, 8), (1, 1)]);
        ready(&mut s, 2, 20, vec![]);
        let plan = s.schedule();
        // Budget 8: the video's frames fill this step.
        let w = |item, units, last| EncodeWork { request: 1, item, units, last };
        assert_eq!(plan.encodes, vec![w(0, 8, true)]);
        assert!(!plan.encoder_idle);
        // The text-only request starts its prefill at once.
        assert_eq!(plan.prefill.map(|p| p.request), Some(2));
        s.encoded(1);
        s.prefill_chunk_done(2, 20, 0.01);
        s.joined(2, 20);
        let plan = s.schedule();
        assert_eq!(plan.encodes, vec![w(1, 1, true)]);
        assert_eq!(plan.prefill, None, "request 1's encodes are not done");
        assert_eq!(plan.decode, vec![2], "the running row decodes beside the encode");
        s.encoded(1);
        let plan = s.schedule();
        assert!(plan.encodes.is_empty() && plan.encoder_idle);
        assert_eq!(plan.prefill.map(|p| p.request), Some(1));
        // A small budget splits a long video over steps; small items share a step.
        let mut b =
            Scheduler::new(SchedulerConfig { encoder_budget: 3, ..SchedulerConfig::default() });
        ready(&mut b, 1, 10, vec![(0, 1), (1, 1), (2, 4)]);
        ready(&mut b, 2, 10, vec![(0, 2)]);
        let w = |request, item, units, last| EncodeWork { request, item, units, last };
        assert_eq!(
            b.schedule().encodes,
            vec![w(1, 0, 1, true), w(1, 1, 1, true), w(1, 2, 1, false)]
        );
        assert_eq!(b.schedule().encodes, vec![w(1, 2, 3, true)]);
        assert_eq!(b.schedule().encodes, vec![w(2, 0, 2, true)]);
        assert!(b.schedule().encodes.is_empty());
        // Request 1 waits for its in-flight encodes to be reported.
        assert_eq!(b.schedule().prefill, None);
        for _ in 0..4 {
            b.encoded(1);
        }
        assert_eq!(b.schedule().prefill.map(|p| p.request), Some(1));
        // Waiting requests may still bring vision work.
        b.add(3).unwrap();
        assert!(!b.schedule().encoder_idle);
        // A budget of 0 still makes progress: one unit per step.
        let mut z = Scheduler::new(SchedulerConfig { encoder_budget: 0, ..Default::default() });
        ready(&mut z, 1, 10, vec![(0, 2)]);
        assert_eq!(
            z.schedule().encodes,
            vec![EncodeWork { request: 1, item: 0, units: 1, last: false }]
        );
    }

    #[test]
    fn cancellation_at_each_status() {
        let mut s = sched(4, 8);
        // Waiting: a worker does not take it.
        s.add(1).unwrap();
        assert_eq!(s.cancel(1), Some(Status::Waiting));
        assert!(!s.start_preparing(1));
        // Preparing: the worker's result is refused.
        s.add(2).unwrap();
        assert!(s.start_preparing(2));
        assert_eq!(s.cancel(2), Some(Status::Preparing));
        assert!(!s.prepared(2, 10, vec![]));
        // Ready, with encodes pending: they are not scheduled.
        ready(&mut s, 3, 10, vec![(0, 4)]);
        assert_eq!(s.cancel(3), Some(Status::Ready));
        let plan = s.schedule();
        assert!(plan.encodes.is_empty() && plan.prefill.is_none());
        // Running: the row leaves in the next plan and is not decoded.
        ready(&mut s, 4, 10, vec![]);
        prefill_and_join(&mut s, 4, 10);
        ready(&mut s, 5, 10, vec![]);
        prefill_and_join(&mut s, 5, 10);
        assert_eq!(s.cancel(4), Some(Status::Running));
        let plan = s.schedule();
        assert_eq!(plan.leave, vec![4]);
        assert_eq!(plan.decode, vec![5]);
        assert!(s.schedule().leave.is_empty(), "it leaves once");
        // Prefilling: dropped in the next plan, and the next request may start.
        ready(&mut s, 6, 1000, vec![]);
        let plan = s.schedule();
        assert_eq!(plan.prefill.map(|p| p.request), Some(6));
        s.prefill_chunk_done(6, MIN_CHUNK, 0.1);
        assert_eq!(s.cancel(6), Some(Status::Prefilling));
        ready(&mut s, 7, 10, vec![]);
        let plan = s.schedule();
        assert_eq!(plan.drop_prefill, Some(6));
        assert_eq!(plan.prefill.map(|p| p.request), Some(7));
        // Finished: nothing to cancel; and twice is nothing.
        s.prefill_chunk_done(7, 10, 0.01);
        s.joined(7, 10);
        s.decoded(2, &[(7, Finish::Stop)], 10);
        assert_eq!(s.cancel(7), None);
        assert_eq!(s.cancel(4), None);
        let st = s.stats();
        assert_eq!(st.cancelled, 5);
        assert_eq!(st.finished_stop, 1);
        assert_eq!((st.waiting, st.running), (0, 1));
    }

    #[test]
    fn failures_free_their_places() {
        let mut s = sched(1, 8);
        ready(&mut s, 1, 10, vec![(0, 1)]);
        assert_eq!(s.schedule().encodes.len(), 1);
        assert_eq!(s.fail(1), Some(Status::Ready));
        ready(&mut s, 2, 10, vec![]);
        prefill_and_join(&mut s, 2, 10);
        ready(&mut s, 3, 10, vec![]);
        assert_eq!(s.schedule().prefill, None, "the batch of one is full");
        // A failed decode step fails every row; the batch is empty again.
        assert_eq!(s.fail(2), Some(Status::Running));
        s.batch_width_is(0);
        assert_eq!(s.schedule().prefill.map(|p| p.request), Some(3));
        assert_eq!(s.stats().failed, 2);
        assert_eq!(s.fail(2), None);
    }
}
