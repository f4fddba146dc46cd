//! # vidlm-engine — many users, one loaded model
//!
//! The engine behind `vidlm run`, `vidlm serve` and `vidlm batch`, with no HTTP in it. It is
//! three parts, modelled on vLLM v1's engine core:
//!
//! * **[`Scheduler`]** — a pure state machine over request ids, with no ONNX Runtime in it: each
//!   request's [`Status`] (waiting → preparing → ready → prefilling → running →
//!   finished/failed/cancelled), the queue limit, the KV budget, prefill chunk sizing and the
//!   vision encoder budget. [`Scheduler::schedule`] returns a [`Plan`] for one step; the
//!   [`Metrics`] gauges and counters are computed from its queues.
//! * **Executor** — the one owner of every ONNX Runtime session (the vision graphs and the
//!   language model) and of the running batch's KV cache. It runs a plan: cancelled rows leave,
//!   vision encodes (scheduled work items), one prefill chunk, one batched decode step. One
//!   thread runs it, so session runs take turns — on the CPU each uses every core.
//! * **Engine core** — that thread: `step()` = schedule → execute → update, sending each
//!   request's [`Event`]s to its [`RequestHandle`].
//!
//! Around them:
//!
//! * **Admission** — [`Engine::submit`] validates the generation options and refuses with
//!   [`EngineError::QueueFull`] when `max_queue` requests are already waiting, before any media
//!   is touched.
//! * **Media workers** (`media_workers` threads) do the CPU-only work: load each request's media
//!   under the [`MediaPolicy`](vidlm_media_source::MediaPolicy), decode them with the limits and
//!   run the processor — off the core, so decoding a long video does not stall anyone's tokens.
//! * **Vision cache** — decoded frames and vision features keyed by the media's content hash,
//!   its kind, the frame sampling and the request's processor arguments (pixel budgets), bounded
//!   by `vision_cache_bytes`, evicted LRU. A follow-up question about the same video skips
//!   decoding and the vision graphs.
//! * **Per-request budgets** — [`EngineRequest::sampling`] samples each video by the model's
//!   own formula (the Qwen-VL video processors' where they have one, as `vidlm run` does), and
//!   [`EngineRequest::processor_args`] overrides the processor's pixel budgets for that request
//!   (checked against the model at [`Engine::submit`]). [`preprocess`] runs the media workers'
//!   preparation alone (no model, no cache): what the processor makes of a request.
//! * **Cancellation** — dropping a [`RequestHandle`] (or [`RequestHandle::cancel`]) cancels its
//!   request at whatever status it has; a running row leaves the batch before the next decoder
//!   pass, so a cancelled request costs at most the step already under way.
//! * **Waiting** — [`RequestHandle::next`] (async), [`RequestHandle::blocking_next`], or without
//!   blocking: [`RequestHandle::poll_next`] (one waker for many handles) and
//!   [`RequestHandle::next_timeout`] (a caller that checks something between waits).
//! * **Timings and metrics** — [`RequestTimings`] per request; [`Metrics`] (Prometheus text
//!   with vLLM's names) for the engine.
//!
//! ```
//! use vidlm_engine::{Engine, EngineConfig, EngineRequest, Event};
//! use vidlm_pipeline::PipelineOptions;
//!
//! let model = concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets/demo-model");
//! let engine = Engine::load(model, &PipelineOptions::default(), EngineConfig::default())?;
//! let mut req = EngineRequest::default();
//! req.messages = vec![serde_json::json!({"role": "user", "content": [{"type": "text", "text": "Hello!"}]})];
//! req.generation.max_new_tokens = Some(4);
//! let mut handle = engine.submit(req)?;
//! let mut text = String::new();
//! while let Some(event) = handle.blocking_next() {
//!     match event {
//!         Event::Token(t) => text.push_str(&t.text),
//!         Event::Done(c) => { assert_eq!(c.token_ids.len(), 4); assert_eq!(c.text, text); break }
//!         Event::Failed(e) => return Err(e.into()),
//!         Event::Stage(_) => {}
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

mod cache;
mod core;
mod executor;
mod metrics;
mod prep;
mod request;
pub mod scheduler;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;
use vidlm_decoder::{GenerationConfig, LanguageModel, ResolvedGeneration};
use vidlm_media_source::MediaPolicy;
use vidlm_model::mrope::MropeRule;
use vidlm_pipeline::{Pipeline, PipelineOptions};
use vidlm_processor::Processor;
use vidlm_vision::VisionEncoder;

pub use cache::{CacheKey, ItemKind, VisionCache};
pub use metrics::{Histogram, Metrics};
pub use prep::preprocess;
pub use request::{
    Completion, EngineError, EngineRequest, Event, MediaSpec, ProcessorArgs, RequestHandle,
    RequestTimings, ThreadWaker, TimedOut, TokenOut,
};
pub use scheduler::{Plan, Scheduler, SchedulerConfig, Status};
pub use vidlm_media_source::{DecodedMedia, MediaKind};

use crate::core::EngineCore;
use crate::executor::Executor;
use crate::prep::Prepared;

/// How the engine schedules.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Rows decoded together at most. Default 16.
    pub max_batch: usize,
    /// Requests waiting (queued, loading media, prefilled-ready) at most; more are refused with
    /// [`EngineError::QueueFull`]. Default 64.
    pub max_queue: usize,
    /// Prefill chunk in tokens while others decode (`None`: sized by `target_stall` from the
    /// measured prefill speed).
    pub prefill_chunk: Option<usize>,
    /// How long one prefill chunk may delay the decoding rows. Default 100 ms.
    pub target_stall: Duration,
    /// KV cache bytes of the running batch (padding included) a new row may bring it to;
    /// a request that does not fit waits. Default 4 GiB.
    pub kv_cache_bytes: usize,
    /// Vision cache budget in bytes (0 disables it). Default 512 MiB.
    pub vision_cache_bytes: usize,
    /// Vision units (image patches or video frames) encoded per engine step at most; decode
    /// steps and prefill chunks run between. `None` (the default): one where the vision graphs
    /// run on the CPU — a decode step waits for one frame's encode at most, as measured on 2
    /// cores — and 8 elsewhere.
    pub encoder_budget: Option<usize>,
    /// Media worker threads (fetch, decode, processor). Default 4: a text-only request does not
    /// wait behind videos for a free worker.
    pub media_workers: usize,
    /// Where media may come from, and the limits.
    pub media: MediaPolicy,
    /// Drop the vision sessions whenever no vision work is pending or can arrive (no request
    /// waiting, preparing or with encodes left); they load again, from the same files, for the
    /// next encode. For one-shot use (`vidlm run`): the vision weights are not resident while
    /// the answer is decoded. Default off.
    pub release_vision_after_use: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_batch: 16,
            max_queue: 64,
            prefill_chunk: None,
            target_stall: Duration::from_millis(100),
            kv_cache_bytes: 4 << 30,
            vision_cache_bytes: 512 << 20,
            encoder_budget: None,
            media_workers: 4,
            media: MediaPolicy::default(),
            release_vision_after_use: false,
        }
    }
}

/// A request in the engine.
pub(crate) struct Job {
    pub(crate) id: u64,
    pub(crate) req: EngineRequest,
    pub(crate) tx: UnboundedSender<Event>,
    pub(crate) cancel: Arc<AtomicBool>,
    pub(crate) arrived: Instant,
    pub(crate) timings: RequestTimings,
}

impl Job {
    pub(crate) fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst) || self.tx.is_closed()
    }
}

/// What the engine's threads share.
pub(crate) struct Shared {
    pub(crate) config: EngineConfig,
    pub(crate) metrics: Metrics,
    pub(crate) media: MediaPolicy,
    pub(crate) processor: Processor,
    pub(crate) cache: Mutex<VisionCache>,
    scheduler: Mutex<Scheduler>,
    /// Waiting requests, for the media workers, in arrival order.
    jobs: Mutex<VecDeque<Job>>,
    jobs_cv: Condvar,
    stop: AtomicBool,
    next_id: AtomicU64,
    generation_config: GenerationConfig,
    has_tokenizer: bool,
    /// The language model's vocabulary (`logit_bias` ids are checked against it at submit).
    vocab_size: Option<usize>,
    /// The model's M-RoPE rule (the rope index of each prompt), where it has one.
    pub(crate) mrope: Option<MropeRule>,
}

impl Shared {
    /// Runs `f` on the scheduler, then publishes its gauges and counters.
    pub(crate) fn scheduler<R>(&self, f: impl FnOnce(&mut Scheduler) -> R) -> R {
        let mut s = self.scheduler.lock().unwrap_or_else(|p| p.into_inner());
        let r = f(&mut s);
        self.metrics.publish(&s.stats());
        r
    }

    /// The next waiting request for a media worker (`None` once the engine stops and none is
    /// left).
    pub(crate) fn next_job(&self) -> Option<Job> {
        let mut q = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(j) = q.pop_front() {
                return Some(j);
            }
            if self.stop.load(Ordering::SeqCst) {
                return None;
            }
            q = self.jobs_cv.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// The engine: submit requests, read their events.
pub struct Engine {
    shared: Arc<Shared>,
    ready_tx: Mutex<Option<mpsc::Sender<Prepared>>>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("config", &self.shared.config).finish_non_exhaustive()
    }
}

impl Engine {
    /// Loads a model (directory or hub id) and starts the engine.
    pub fn load(
        model: &str,
        opts: &PipelineOptions,
        config: EngineConfig,
    ) -> Result<Engine, EngineError> {
        let p = Pipeline::from_pretrained(model, opts)?;
        let (processor, vision, lm) = p.into_parts();
        Engine::start(processor, vision, lm, config)
    }

    /// Starts the engine on loaded parts: the core thread (which owns the sessions) and the
    /// media workers.
    pub fn start(
        processor: Processor,
        vision: VisionEncoder,
        lm: LanguageModel,
        config: EngineConfig,
    ) -> Result<Engine, EngineError> {
        let generation_config = lm.generation_config().clone();
        let has_tokenizer = lm.tokenizer().is_some();
        let vocab_size = lm.text_config().vocab_size;
        let mrope = lm.mrope_rule().copied();
        let executor = Executor::new(vision, lm)?;
        let scheduler = Scheduler::new(SchedulerConfig {
            max_batch: config.max_batch,
            max_queue: config.max_queue,
            prefill_chunk: config.prefill_chunk,
            target_stall: config.target_stall,
            kv_cache_bytes: config.kv_cache_bytes,
            kv_bytes_per_token: executor.kv_bytes_per_token(),
            encoder_budget: config.encoder_budget.unwrap_or(if executor.vision_on_cpu() {
                1
            } else {
                8
            }),
        });
        let shared = Arc::new(Shared {
            metrics: Metrics::default(),
            media: config.media.clone(),
            processor,
            cache: Mutex::new(VisionCache::new(config.vision_cache_bytes)),
            scheduler: Mutex::new(scheduler),
            jobs: Mutex::new(VecDeque::new()),
            jobs_cv: Condvar::new(),
            stop: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            generation_config,
            has_tokenizer,
            vocab_size,
            mrope,
            config,
        });
        let (ready_tx, ready_rx) = mpsc::channel::<Prepared>();
        let mut threads = Vec::new();
        let core = EngineCore::new(shared.clone(), executor, ready_rx);
        let spawn_err = |e: std::io::Error| {
            EngineError::Pipeline(vidlm_pipeline::PipelineError::Internal(format!(
                "cannot start an engine thread: {e}"
            )))
        };
        threads.push(
            std::thread::Builder::new()
                .name("vidlm-core".into())
                .spawn(move || core.run())
                .map_err(spawn_err)?,
        );
        for i in 0..shared.config.media_workers.max(1) {
            let s = shared.clone();
            let tx = ready_tx.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("vidlm-media-{i}"))
                    .spawn(move || prep::worker(s, tx))
                    .map_err(spawn_err)?,
            );
        }
        Ok(Engine { shared, ready_tx: Mutex::new(Some(ready_tx)), threads })
    }

    /// Submits a request. Refused at once when the queue is full or the options are invalid
    /// for this model; otherwise events arrive on the handle.
    pub fn submit(&self, req: EngineRequest) -> Result<RequestHandle, EngineError> {
        if self.shared.stop.load(Ordering::SeqCst) {
            return Err(EngineError::Stopped);
        }
        let cfg = ResolvedGeneration::resolve(&self.shared.generation_config, &req.generation)?;
        if let Some(v) = self.shared.vocab_size {
            cfg.check_vocab(v)?;
        }
        if !cfg.stop_strings.is_empty() && !self.shared.has_tokenizer {
            return Err(EngineError::Decoder(vidlm_decoder::DecoderError::InvalidOption(
                "stop strings need a tokenizer".into(),
            )));
        }
        if !req.processor_args.is_empty() {
            let mut opts = vidlm_processor::ProcessOptions::default();
            req.processor_args.apply(&mut opts);
            self.shared
                .processor
                .check_budget(&opts)
                .map_err(|source| EngineError::ProcessorArgs { source })?;
        }
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        self.shared
            .scheduler(|s| s.add(id))
            .map_err(|full| EngineError::QueueFull { waiting: full.waiting })?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let job = Job {
            id,
            req,
            tx,
            cancel: cancel.clone(),
            arrived: Instant::now(),
            timings: RequestTimings::default(),
        };
        self.shared.jobs.lock().unwrap_or_else(|p| p.into_inner()).push_back(job);
        self.shared.jobs_cv.notify_one();
        Ok(RequestHandle { id, rx, cancel })
    }

    /// The engine's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.shared.config
    }

    /// The processor (tokenizer, family, template).
    pub fn processor(&self) -> &Processor {
        &self.shared.processor
    }

    /// Entries and bytes held by the vision cache.
    pub fn vision_cache_usage(&self) -> (usize, usize) {
        let c = self.shared.cache.lock().unwrap_or_else(|p| p.into_inner());
        (c.len(), c.used())
    }

    /// Stops taking requests, lets the running ones finish, and joins the threads.
    pub fn shutdown(mut self) {
        self.stop_threads();
    }

    fn stop_threads(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.jobs_cv.notify_all();
        self.ready_tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop_threads();
    }
}
