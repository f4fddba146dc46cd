//! # vidlm-engine — many users, one loaded model
//!
//! The scheduling core behind `vidlm run`, `vidlm serve` and `vidlm batch`, with no HTTP in it.
//!
//! * **Admission** — [`Engine::submit`] validates the generation options and refuses with
//!   [`EngineError::QueueFull`] when `max_queue` requests are already waiting, before any media
//!   is touched.
//! * **Media workers** (`media_workers` threads) load each request's media under the
//!   [`MediaPolicy`](vidlm_media_source::MediaPolicy), decode them with the limits, run the
//!   processor and the vision graphs — off the decode loop, so a long video does not stall
//!   anyone's tokens.
//! * **Vision cache** — decoded frames and vision features keyed by the media's content hash,
//!   its kind and the frame sampling, bounded by `vision_cache_bytes`, evicted LRU. A follow-up
//!   question about the same video skips decoding and the vision graphs.
//! * **Decode loop** — one thread owns the language model: chunked prefill between decode
//!   steps, continuous batching (a prefilled request joins the running batch at the next step),
//!   finished and cancelled rows leave at once. See the `scheduler` module.
//! * **Cancellation** — dropping a [`RequestHandle`] cancels its request; it leaves the batch
//!   before the next decoder pass.
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
mod metrics;
mod prep;
mod request;
mod scheduler;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;
use vidlm_decoder::{GenerationConfig, LanguageModel, ResolvedGeneration, Sequence};
use vidlm_media_source::MediaPolicy;
use vidlm_pipeline::{Pipeline, PipelineOptions};
use vidlm_processor::Processor;
use vidlm_vision::VisionEncoder;

pub use cache::{CacheKey, ItemKind, VisionCache};
pub use metrics::{Histogram, Metrics};
pub use request::{
    Completion, EngineError, EngineRequest, Event, MediaSpec, RequestHandle, RequestTimings,
    TokenOut,
};

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
    /// Media worker threads. Default 4: one encodes (the vision graphs run one request at a time)
    /// while the others decode media and preprocess the next requests, and a text-only request
    /// does not wait behind videos for a free worker.
    pub media_workers: usize,
    /// Where media may come from, and the limits.
    pub media: MediaPolicy,
    /// Drop the vision sessions after each request's vision stage when no other request is
    /// queued (they load again, from the same files, for the next one). For one-shot use
    /// (`vidlm run`): the vision weights are not resident while the answer is decoded. Default
    /// off.
    pub release_vision_after_use: bool,
    /// Session runs one at a time, in arrival order (`vidlm_ort::gate`): a chunk of frames and a
    /// decode step alternate instead of sharing the cores. `None` (the default): on where the
    /// model runs on the CPU, whose sessions each use every core; off on CUDA.
    pub exclusive_runs: Option<bool>,
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
            media_workers: 4,
            media: MediaPolicy::default(),
            release_vision_after_use: false,
            exclusive_runs: None,
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

/// A prepared request, on its way to the decode loop.
pub(crate) struct Ready {
    pub(crate) job: Job,
    pub(crate) seq: Sequence,
    pub(crate) ready_at: Instant,
}

pub(crate) struct Shared {
    pub(crate) config: EngineConfig,
    pub(crate) metrics: Metrics,
    pub(crate) media: MediaPolicy,
    pub(crate) processor: Processor,
    pub(crate) vision: Mutex<VisionEncoder>,
    pub(crate) cache: Mutex<VisionCache>,
    pub(crate) queue: Mutex<VecDeque<Job>>,
    queue_cv: Condvar,
    stop: AtomicBool,
    next_id: AtomicU64,
    generation_config: GenerationConfig,
    has_tokenizer: bool,
    /// The language model's vocabulary (`logit_bias` ids are checked against it at submit).
    vocab_size: Option<usize>,
}

/// The engine: submit requests, read their events.
pub struct Engine {
    shared: Arc<Shared>,
    ready_tx: Mutex<Option<mpsc::Sender<Ready>>>,
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
        Ok(Engine::start(processor, vision, lm, config))
    }

    /// Starts the engine on loaded parts: the decode loop thread and the media workers.
    pub fn start(
        processor: Processor,
        mut vision: VisionEncoder,
        lm: LanguageModel,
        config: EngineConfig,
    ) -> Engine {
        vidlm_ort::gate::set_exclusive_runs(
            config.exclusive_runs.unwrap_or(matches!(vision.provider(), vidlm_ort::Provider::Cpu)),
        );
        if vidlm_ort::gate::exclusive_runs() {
            // One frame (or image) per vision run: decode steps take their turns between frames,
            // so a video delays the running batch by one frame's encode at a time.
            vision.set_max_batch(1);
        }
        let shared = Arc::new(Shared {
            metrics: Metrics::default(),
            media: config.media.clone(),
            processor,
            vision: Mutex::new(vision),
            cache: Mutex::new(VisionCache::new(config.vision_cache_bytes)),
            queue: Mutex::new(VecDeque::new()),
            queue_cv: Condvar::new(),
            stop: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            generation_config: lm.generation_config().clone(),
            has_tokenizer: lm.tokenizer().is_some(),
            vocab_size: lm.text_config().vocab_size,
            config,
        });
        let (ready_tx, ready_rx) = mpsc::channel::<Ready>();
        let mut threads = Vec::new();
        let s = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("vidlm-decode".into())
                .spawn(move || scheduler::run(s, lm, ready_rx))
                .unwrap_or_else(|e| panic!("cannot start the decode thread: {e}")),
        );
        for i in 0..shared.config.media_workers.max(1) {
            let s = shared.clone();
            let tx = ready_tx.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("vidlm-media-{i}"))
                    .spawn(move || worker(s, tx))
                    .unwrap_or_else(|e| panic!("cannot start a media worker: {e}")),
            );
        }
        Engine { shared, ready_tx: Mutex::new(Some(ready_tx)), threads }
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
        let m = &self.shared.metrics;
        // Count first, so concurrent submits cannot overshoot the limit.
        let waiting = m.waiting.fetch_add(1, Ordering::SeqCst) as usize;
        if waiting >= self.shared.config.max_queue {
            m.waiting.fetch_sub(1, Ordering::SeqCst);
            m.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(EngineError::QueueFull { waiting });
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let job = Job {
            id,
            req,
            tx,
            cancel: cancel.clone(),
            arrived: Instant::now(),
            timings: RequestTimings::default(),
        };
        self.shared.queue.lock().unwrap_or_else(|p| p.into_inner()).push_back(job);
        self.shared.queue_cv.notify_one();
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
        self.shared.queue_cv.notify_all();
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

fn worker(shared: Arc<Shared>, tx: mpsc::Sender<Ready>) {
    loop {
        let job = {
            let mut q = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(j) = q.pop_front() {
                    break Some(j);
                }
                if shared.stop.load(Ordering::SeqCst) {
                    break None;
                }
                q = shared.queue_cv.wait(q).unwrap_or_else(|p| p.into_inner());
            }
        };
        let Some(job) = job else { return };
        if job.cancelled() {
            shared.metrics.waiting.fetch_sub(1, Ordering::Relaxed);
            shared.metrics.finished_abort.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        match prep::prepare(&shared, job) {
            Ok(ready) => {
                if let Err(mpsc::SendError(r)) = tx.send(ready) {
                    shared.metrics.waiting.fetch_sub(1, Ordering::Relaxed);
                    let _ = r.job.tx.send(Event::Failed(EngineError::Stopped));
                }
            }
            Err((job, e)) => {
                shared.metrics.waiting.fetch_sub(1, Ordering::Relaxed);
                if job.cancelled() {
                    shared.metrics.finished_abort.fetch_add(1, Ordering::Relaxed);
                } else {
                    shared.metrics.failed.fetch_add(1, Ordering::Relaxed);
                    let _ = job.tx.send(Event::Failed(e));
                }
            }
        }
    }
}
