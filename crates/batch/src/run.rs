//! A batch run: scan the manifest, resume from the output, submit the requests to one
//! [`Engine`] and append one line per request as each completes.
//!
//! ```text
//!  manifest reader ──submit (≤ batch_size + prefetch in flight)──► Engine
//!  (shard, done ids,                     media workers: load, decode, processor, vision
//!   body → ChatRequest)                  decode loop: chunked prefill, continuous batching
//!        ▲                                            │
//!        └────────── one line per completion ◄────────┘ (append + flush, completion order)
//! ```
//!
//! This is the engine `vidlm serve` runs: the same admission, media workers, vision cache and
//! continuous batching. `--batch-size` is the engine's running batch; `--prefetch` more
//! requests are submitted beyond it, so their media are decoded and encoded by the engine's
//! media workers (`--prefetch-workers`) while the batch decodes. Memory is bounded by that
//! window whatever the manifest's length (the id index keeps 16 bytes and a record number per
//! record); lines are written in completion order, which resume and merge allow (merge
//! restores manifest order).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vidlm_engine::{Engine, EngineConfig, EngineError, EngineRequest, Event};
use vidlm_openai::types::ChoiceLogprobs;
use vidlm_openai::{choice_logprob, ApiError, ChatRequest, MediaPolicy, RequestContext, Tokenizer};
use vidlm_pipeline::PipelineOptions;

use crate::error::{BatchError, Result};
use crate::ids::{IdIndex, IdSet};
use crate::lines::{body_of, error_line, line_ids, success_line, RequestDefaults};
use crate::manifest::{Manifest, ManifestOptions, Record};
use crate::output::OutputFile;
use crate::progress::{Progress, ProgressMode, Summary};
use crate::shard::Shard;

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Model directory or hub id, as given (a body's `model` may name it so).
    pub model: String,
    /// How to load the model.
    pub pipeline: PipelineOptions,
    /// The manifest.
    pub input: PathBuf,
    /// How to read it.
    pub manifest: ManifestOptions,
    /// Output path; may contain `{shard}`.
    pub output: String,
    /// This run's share of the input.
    pub shard: Shard,
    /// Requests decoded together: the engine's running batch (`max_batch`).
    pub batch_size: usize,
    /// Requests submitted beyond the running batch, so that their media are decoded,
    /// preprocessed and encoded ahead of the decode loop (0: none).
    pub prefetch: usize,
    /// The engine's media worker threads (decoding, processor, vision).
    pub workers: usize,
    /// The engine's vision cache budget in bytes (a manifest asking several questions about
    /// one clip decodes and encodes it once; 0 disables it).
    pub vision_cache_bytes: usize,
    /// Settings for requests that do not set their own.
    pub defaults: RequestDefaults,
    /// Where media may come from (the allowed local folder, domains) and the limits.
    pub media: MediaPolicy,
    /// The folder relative video paths of a plain manifest resolve against (default: the
    /// manifest's folder, the rule of `--messages` files).
    pub base_dir: Option<PathBuf>,
    /// `fdatasync` every line.
    pub sync: bool,
    /// Progress display.
    pub progress: ProgressMode,
    /// Without a terminal: a progress line every this many requests.
    pub progress_every: usize,
}

impl RunOptions {
    /// Defaults for `model`, `input` and `output`: batches of 4, 8 requests prefetched by 2
    /// media workers, a 128 MiB vision cache, durable lines, local media from the manifest's
    /// folder only.
    pub fn new(
        model: impl Into<String>,
        input: impl Into<PathBuf>,
        output: impl Into<String>,
    ) -> RunOptions {
        RunOptions {
            model: model.into(),
            pipeline: PipelineOptions::default(),
            input: input.into(),
            manifest: ManifestOptions::default(),
            output: output.into(),
            shard: Shard::ALL,
            batch_size: 4,
            prefetch: 8,
            workers: 2,
            vision_cache_bytes: 128 << 20,
            defaults: RequestDefaults::default(),
            media: MediaPolicy::default(),
            base_dir: None,
            sync: true,
            progress: ProgressMode::Auto,
            progress_every: 100,
        }
    }

    /// The engine this run submits to.
    fn engine_config(&self) -> EngineConfig {
        let in_flight = self.batch_size + self.prefetch;
        EngineConfig {
            max_batch: self.batch_size,
            // Never refused: at most `in_flight` requests are in the engine at once.
            max_queue: in_flight.max(1),
            vision_cache_bytes: self.vision_cache_bytes,
            media_workers: self.workers.max(1),
            media: self.media.clone(),
            ..EngineConfig::default()
        }
    }
}

/// What turns a record into a request (the server's parsing and media rules).
struct Prep {
    ctx: RequestContext,
    model: String,
    defaults: RequestDefaults,
    manifest_dir: PathBuf,
}

impl Prep {
    /// A plain manifest's video as the URL its body carries: URLs and absolute paths as they
    /// are, relative paths against the manifest's folder.
    fn video_url(&self, v: &str) -> String {
        let has_scheme = v.split_once(':').is_some_and(|(s, _)| {
            s.len() > 1 && s.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        });
        if has_scheme || Path::new(v).is_absolute() {
            v.to_string()
        } else {
            self.manifest_dir.join(v).to_string_lossy().into_owned()
        }
    }

    /// The record's validated request (its media are checked against the policy by the
    /// engine's media workers, as for `vidlm serve`).
    fn request(&self, record: &Record) -> std::result::Result<ChatRequest, ApiError> {
        let body = body_of(&record.request, &self.model, &self.defaults, |v| self.video_url(v))
            .map_err(|m| ApiError::invalid_request(m, None))?;
        let req = ChatRequest::from_body(&body, &self.ctx).map_err(|e| e.to_api_error())?;
        if req.stream {
            return Err(ApiError::invalid_request(
                "stream is not supported in a batch (each request gets one line)",
                Some("stream".into()),
            ));
        }
        Ok(req)
    }
}

/// One request's result.
struct Answer {
    custom_id: String,
    result: std::result::Result<(Value, usize, usize), ApiError>,
}

/// Waits for one submitted request and makes its answer: the server's completion object (only
/// its id is derived from the `custom_id`; `logprobs` as the server gives them) or its error.
fn answer(
    custom_id: String,
    req: &ChatRequest,
    mut handle: vidlm_engine::RequestHandle,
    tokenizer: &Tokenizer,
) -> Answer {
    let mut logprobs = Vec::new();
    let done = loop {
        match handle.blocking_next() {
            Some(Event::Token(t)) => {
                if let (Some(n), Some(lp)) = (req.logprobs, &t.logprobs) {
                    logprobs.push(choice_logprob(tokenizer, n, t.token_id, lp));
                }
            }
            Some(Event::Done(c)) => break Ok(c),
            Some(Event::Failed(e)) => break Err(e),
            Some(Event::Stage(_)) => {}
            None => break Err(EngineError::Stopped),
        }
    };
    let result = match done {
        Ok(c) => {
            let mut body = req.completion(
                &c.text,
                c.prompt_tokens,
                c.token_ids.len(),
                c.finish_reason,
                Some(ChoiceLogprobs { content: logprobs }),
            );
            body.id = line_ids(&custom_id).2;
            serde_json::to_value(&body)
                .map(|b| (b, c.prompt_tokens, c.token_ids.len()))
                .map_err(|e| ApiError::internal(e.to_string()))
        }
        Err(e) => Err(ApiError::from(&e)),
    };
    Answer { custom_id, result }
}

/// Runs a batch to the end (or to a fatal error). Requests that fail get error lines; the
/// summary counts them.
pub fn run(opts: &RunOptions) -> Result<Summary> {
    let started = Instant::now();
    if opts.batch_size == 0 {
        return Err(BatchError::Options("--batch-size must be at least 1".into()));
    }
    let manifest = Manifest::open(&opts.input, &opts.manifest)?;
    let index = IdIndex::scan(&manifest)?;
    let out_path = opts.shard.path(&opts.output)?;
    let (mut out, existing) = OutputFile::open(&out_path, opts.sync)?;
    // Lines already there must be this shard's, once each.
    let mut hashes = Vec::with_capacity(existing.lines.len());
    let mut skipped_failed = 0;
    for l in &existing.lines {
        let Some(rec) = index.record_of(&l.custom_id) else {
            return Err(BatchError::Output {
                path: out_path.clone(),
                message: format!(
                    "line {} has custom_id {:?}, which is not in {} (an output of another input? use another --output)",
                    l.line,
                    l.custom_id,
                    manifest.path().display()
                ),
            });
        };
        if !opts.shard.owns(rec) {
            return Err(BatchError::Output {
                path: out_path.clone(),
                message: format!(
                    "line {} has custom_id {:?}, which belongs to shard {}/{}, not {} (written with other shard settings?)",
                    l.line,
                    l.custom_id,
                    Shard::owner(rec, opts.shard.count),
                    opts.shard.count,
                    opts.shard
                ),
            });
        }
        skipped_failed += usize::from(!l.ok);
        hashes.push(crate::ids::id_hash(&l.custom_id));
    }
    let done = IdSet::from_hashes(hashes).map_err(|_| BatchError::Output {
        path: out_path.clone(),
        message: "a custom_id has two lines (the file was edited or written by two processes)"
            .into(),
    })?;
    let owned = opts.shard.share(index.len());
    let mut summary = Summary {
        records: index.len(),
        shard: opts.shard,
        owned,
        skipped: done.len(),
        skipped_failed,
        succeeded: 0,
        failed: 0,
        prompt_tokens: 0,
        completion_tokens: 0,
        elapsed: Duration::ZERO,
        output: out_path.clone(),
        peak_rss_bytes: None,
        model_load: Duration::ZERO,
    };
    let todo = owned.saturating_sub(done.len());
    if todo == 0 {
        summary.elapsed = started.elapsed();
        summary.peak_rss_bytes = crate::progress::peak_rss_bytes();
        return Ok(summary);
    }

    let t_load = Instant::now();
    let model_names = model_names(&opts.model);
    let engine = Engine::load(&opts.model, &opts.pipeline, opts.engine_config())
        .map_err(|e| BatchError::Model(e.to_string()))?;
    // For `logprobs` (token texts), shared by the threads that wait for answers.
    let tokenizer = std::sync::Arc::new(engine.processor().tokenizer().clone());
    let prep = Prep {
        ctx: RequestContext { model_names, media: opts.media.clone() },
        model: opts.model.clone(),
        defaults: opts.defaults.clone(),
        manifest_dir: opts.base_dir.clone().unwrap_or_else(|| manifest.dir()),
    };
    summary.model_load = t_load.elapsed();
    let mut progress = Progress::new(opts.progress, todo, opts.progress_every);
    let mut write = |a: Answer| -> Result<()> {
        let (line, ok, tokens) = match a.result {
            Ok((body, prompt, gen)) => {
                summary.prompt_tokens += prompt as u64;
                summary.completion_tokens += gen as u64;
                (success_line(&a.custom_id, body), true, gen)
            }
            Err(e) => (error_line(&a.custom_id, e.status, json!(e.body())), false, 0),
        };
        out.append(&line)?;
        if ok {
            summary.succeeded += 1;
        } else {
            summary.failed += 1;
        }
        progress.record(ok, tokens);
        Ok(())
    };

    // Each submitted request is waited for on its own thread, which sends its answer here; at
    // most `in_flight` are submitted and not yet written.
    let in_flight = (opts.batch_size + opts.prefetch).max(1);
    let (tx, rx) = mpsc::channel::<Answer>();
    let mut running = 0usize;
    let mut go = || -> Result<()> {
        for r in manifest.records()? {
            let r = r?;
            if index.record_of(&r.custom_id) != Some(r.index) {
                return Err(BatchError::Manifest {
                    path: manifest.path().to_path_buf(),
                    location: r.location.clone(),
                    message: "the manifest changed during the run".into(),
                });
            }
            if !opts.shard.owns(r.index) || done.contains(&r.custom_id) {
                continue;
            }
            // Write what has finished; wait while the window is full.
            while let Ok(a) = rx.try_recv() {
                running -= 1;
                write(a)?;
            }
            while running >= in_flight {
                let a = rx.recv().map_err(|_| BatchError::Model("the engine stopped".into()))?;
                running -= 1;
                write(a)?;
            }
            let req = match prep.request(&r) {
                Ok(req) => req,
                Err(error) => {
                    write(Answer { custom_id: r.custom_id, result: Err(error) })?;
                    continue;
                }
            };
            match engine.submit(EngineRequest::from(&req)) {
                Ok(handle) => {
                    let tx = tx.clone();
                    let tokenizer = tokenizer.clone();
                    let custom_id = r.custom_id;
                    std::thread::Builder::new()
                        .name("vidlm-batch-wait".into())
                        .spawn(move || {
                            let _ = tx.send(answer(custom_id, &req, handle, &tokenizer));
                        })
                        .map_err(|e| BatchError::Model(format!("cannot start a thread: {e}")))?;
                    running += 1;
                }
                Err(e) => {
                    write(Answer { custom_id: r.custom_id, result: Err(ApiError::from(&e)) })?
                }
            }
        }
        while running > 0 {
            let a = rx.recv().map_err(|_| BatchError::Model("the engine stopped".into()))?;
            running -= 1;
            write(a)?;
        }
        Ok(())
    };
    let result = go();
    progress.finish();
    // After a fatal error (the output cannot be written, the manifest changed) the requests
    // still in the engine finish (at most the window) and their answers are dropped.
    engine.shutdown();
    summary.elapsed = started.elapsed();
    summary.peak_rss_bytes = crate::progress::peak_rss_bytes();
    result.map(|()| summary)
}

/// The names a body's `model` may use: the argument as given and, for a directory, its name
/// (what `vidlm serve` lists).
fn model_names(model: &str) -> Vec<String> {
    let mut names = vec![model.to_string()];
    let p = Path::new(model);
    if p.is_dir() {
        if let Some(name) =
            p.canonicalize().ok().as_deref().and_then(|c| c.file_name()).and_then(|n| n.to_str())
        {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
    }
    names
}
