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
use std::sync::{mpsc, Arc};
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
    tokenizer: Arc<Tokenizer>,
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
/// summary counts them (and, among them, the server errors).
///
/// The steps: `check_options` → `open_manifest` (one scan: records readable, ids unique) →
/// `resume` (the output's existing lines, each of this input and shard, once) → `load_engine`
/// (only if something is left) → `submit_all` (the submit window, one line per completion
/// through a `LineWriter`) → the engine shuts down.
pub fn run(opts: &RunOptions) -> Result<Summary> {
    let started = Instant::now();
    check_options(opts)?;
    let (manifest, index) = open_manifest(opts)?;
    let resumed = resume(opts, &manifest, &index)?;
    let mut summary = Summary {
        records: index.len(),
        shard: opts.shard,
        owned: opts.shard.share(index.len()),
        skipped: resumed.done.len(),
        skipped_failed: resumed.skipped_failed,
        succeeded: 0,
        failed: 0,
        server_errors: 0,
        prompt_tokens: 0,
        completion_tokens: 0,
        elapsed: Duration::ZERO,
        output: resumed.path.clone(),
        peak_rss_bytes: None,
        model_load: Duration::ZERO,
    };
    let todo = summary.owned.saturating_sub(resumed.done.len());
    if todo > 0 {
        let t_load = Instant::now();
        let (engine, prep) = load_engine(opts, &manifest)?;
        summary.model_load = t_load.elapsed();
        let mut writer = LineWriter {
            out: resumed.out,
            progress: Progress::new(opts.progress, todo, opts.progress_every),
            summary: &mut summary,
        };
        let result =
            submit_all(opts, &manifest, &index, &resumed.done, &engine, &prep, &mut writer);
        writer.progress.finish();
        // After a fatal error (the output cannot be written, the manifest changed) the requests
        // still in the engine finish (at most the window) and their answers are dropped.
        engine.shutdown();
        result?;
    }
    summary.elapsed = started.elapsed();
    summary.peak_rss_bytes = crate::progress::peak_rss_bytes();
    Ok(summary)
}

/// Options that make no sense stop the run before anything is read.
fn check_options(opts: &RunOptions) -> Result<()> {
    if opts.batch_size == 0 {
        return Err(BatchError::Options("--batch-size must be at least 1".into()));
    }
    Ok(())
}

/// The manifest and its id index (one streamed pass: every record readable, ids unique).
fn open_manifest(opts: &RunOptions) -> Result<(Manifest, IdIndex)> {
    let manifest = Manifest::open(&opts.input, &opts.manifest)?;
    let index = IdIndex::scan(&manifest)?;
    Ok((manifest, index))
}

/// The output file, opened for appending, and what it already holds.
struct Resumed {
    out: OutputFile,
    path: PathBuf,
    /// The ids with a complete line.
    done: IdSet,
    /// Of them, those whose line is an error.
    skipped_failed: usize,
}

/// Opens (locks) the output and checks its existing lines: each must be a record of this input
/// and shard, once.
fn resume(opts: &RunOptions, manifest: &Manifest, index: &IdIndex) -> Result<Resumed> {
    let path = opts.shard.path(&opts.output)?;
    let (out, existing) = OutputFile::open(&path, opts.sync)?;
    let mut hashes = Vec::with_capacity(existing.lines.len());
    let mut skipped_failed = 0;
    for l in &existing.lines {
        let Some(rec) = index.record_of(&l.custom_id) else {
            return Err(BatchError::Output {
                path: path.clone(),
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
                path: path.clone(),
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
        path: path.clone(),
        message: "a custom_id has two lines (the file was edited or written by two processes)"
            .into(),
    })?;
    Ok(Resumed { out, path, done, skipped_failed })
}

/// Loads the model into an engine and makes what turns records into its requests: the
/// model's names are [`vidlm_openai::served_model_names`], the rule `vidlm serve` uses, so
/// both write the same `model` in their answers.
fn load_engine(opts: &RunOptions, manifest: &Manifest) -> Result<(Engine, Prep)> {
    let engine = Engine::load(&opts.model, &opts.pipeline, opts.engine_config())
        .map_err(|source| BatchError::Model { source })?;
    let prep = Prep {
        ctx: RequestContext {
            model_names: vidlm_openai::served_model_names(&opts.model, None),
            media: opts.media.clone(),
        },
        model: opts.model.clone(),
        defaults: opts.defaults.clone(),
        manifest_dir: opts.base_dir.clone().unwrap_or_else(|| manifest.dir()),
        // For `logprobs` (token texts), shared by the threads that wait for answers.
        tokenizer: Arc::new(engine.processor().tokenizer().clone()),
    };
    Ok((engine, prep))
}

/// Appends one line per answer and counts it.
struct LineWriter<'a> {
    out: OutputFile,
    progress: Progress,
    summary: &'a mut Summary,
}

impl LineWriter<'_> {
    /// The answer's line: the completion, or the error object with its status. An error with a
    /// 5xx status is the server's (a failure inside vidlm), counted in
    /// [`Summary::server_errors`].
    fn write(&mut self, a: Answer) -> Result<()> {
        let (line, ok, tokens) = match a.result {
            Ok((body, prompt, gen)) => {
                self.summary.prompt_tokens += prompt as u64;
                self.summary.completion_tokens += gen as u64;
                (success_line(&a.custom_id, body), true, gen)
            }
            Err(e) => {
                self.summary.server_errors += usize::from(e.status >= 500);
                (error_line(&a.custom_id, e.status, json!(e.body())), false, 0)
            }
        };
        self.out.append(&line)?;
        if ok {
            self.summary.succeeded += 1;
        } else {
            self.summary.failed += 1;
        }
        self.progress.record(ok, tokens);
        Ok(())
    }
}

/// Submits every record of this shard without a line, keeping at most `batch_size + prefetch`
/// requests in the engine; each submitted request is waited for on its own thread, which sends
/// its answer back here to be written (completion order).
fn submit_all(
    opts: &RunOptions,
    manifest: &Manifest,
    index: &IdIndex,
    done: &IdSet,
    engine: &Engine,
    prep: &Prep,
    writer: &mut LineWriter<'_>,
) -> Result<()> {
    let in_flight = (opts.batch_size + opts.prefetch).max(1);
    let (tx, rx) = mpsc::channel::<Answer>();
    let mut running = 0usize;
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
            writer.write(a)?;
        }
        while running >= in_flight {
            writer.write(rx.recv().map_err(|_| BatchError::EngineStopped)?)?;
            running -= 1;
        }
        let req = match prep.request(&r) {
            Ok(req) => req,
            Err(error) => {
                writer.write(Answer { custom_id: r.custom_id, result: Err(error) })?;
                continue;
            }
        };
        match engine.submit(EngineRequest::from(&req)) {
            Ok(handle) => {
                let tx = tx.clone();
                let tokenizer = prep.tokenizer.clone();
                let custom_id = r.custom_id;
                std::thread::Builder::new()
                    .name("vidlm-batch-wait".into())
                    .spawn(move || {
                        let _ = tx.send(answer(custom_id, &req, handle, &tokenizer));
                    })
                    .map_err(BatchError::Thread)?;
                running += 1;
            }
            Err(e) => {
                writer.write(Answer { custom_id: r.custom_id, result: Err(ApiError::from(&e)) })?
            }
        }
    }
    while running > 0 {
        writer.write(rx.recv().map_err(|_| BatchError::EngineStopped)?)?;
        running -= 1;
    }
    Ok(())
}
