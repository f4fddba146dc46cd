//! A batch run: scan the manifest, resume from the output, decode and preprocess ahead of the
//! model on a bounded queue, generate in batches, append one line per request.
//!
//! ```text
//!  reader thread ──jobs (bounded)──► prefetch workers ──ready (bounded, --prefetch)──► model loop
//!  (manifest, shard, done ids)       (body → request → media            (vision + batched decode,
//!                                      decoding → processor)              one line per request)
//! ```
//!
//! Memory is bounded by the queues: at most `workers` requests being decoded, `prefetch` ready
//! ones and two batches' worth waiting for compatible partners, whatever the manifest's length
//! (the id index keeps 16 bytes and a record number per record).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vidlm_decoder::{DecoderError, GenerationOptions, LanguageModel, Sequence};
use vidlm_openai::{ApiError, ChatRequest, MediaPolicy, RequestContext};
use vidlm_pipeline::{sequences_from_inputs, ErrorKind, Pipeline, PipelineError, PipelineOptions};
use vidlm_processor::{ProcessOptions, ProcessedInputs, Processor, ProcessorError};
use vidlm_vision::VisionEncoder;

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
    /// Requests generated together (rows of one decoder batch).
    pub batch_size: usize,
    /// Requests decoded and preprocessed ahead of the model (0: none, one at a time).
    pub prefetch: usize,
    /// Threads decoding and preprocessing ahead.
    pub workers: usize,
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
    /// workers, durable lines, local media from the manifest's folder only.
    pub fn new(model: impl Into<String>, input: impl Into<PathBuf>, output: impl Into<String>) -> RunOptions {
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
            defaults: RequestDefaults::default(),
            media: MediaPolicy::default(),
            base_dir: None,
            sync: true,
            progress: ProgressMode::Auto,
            progress_every: 100,
        }
    }
}

/// A request ready for the model.
struct Prepared {
    custom_id: String,
    req: ChatRequest,
    inputs: ProcessedInputs,
    /// Sampled with a seed: generated alone, so it gives what it gives alone.
    solo: bool,
}

enum Ready {
    Prepared(Box<Prepared>),
    Failed { custom_id: String, error: ApiError },
    Fatal(BatchError),
}

/// What the prefetch workers share.
struct Prep {
    processor: Arc<Processor>,
    ctx: RequestContext,
    model: String,
    defaults: RequestDefaults,
    manifest_dir: PathBuf,
    config_do_sample: bool,
}

impl Prep {
    /// A plain manifest's video as the URL its body carries: URLs and absolute paths as they
    /// are, relative paths against the manifest's folder.
    fn video_url(&self, v: &str) -> String {
        let has_scheme = v.split_once(':').is_some_and(|(s, _)| s.len() > 1 && s.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)));
        if has_scheme || Path::new(v).is_absolute() {
            v.to_string()
        } else {
            self.manifest_dir.join(v).to_string_lossy().into_owned()
        }
    }

    fn prepare(&self, record: Record) -> Ready {
        let custom_id = record.custom_id.clone();
        match self.try_prepare(record) {
            Ok(p) => Ready::Prepared(Box::new(p)),
            Err(error) => Ready::Failed { custom_id, error },
        }
    }

    fn try_prepare(&self, record: Record) -> std::result::Result<Prepared, ApiError> {
        let body = body_of(&record.request, &self.model, &self.defaults, |v| self.video_url(v)).map_err(|m| ApiError::invalid_request(m, None))?;
        let req = ChatRequest::from_body(&body, &self.ctx).map_err(|e| e.to_api_error())?;
        if req.stream {
            return Err(ApiError::invalid_request("stream is not supported in a batch (each request gets one line)", Some("stream".into())));
        }
        if req.logprobs.is_some() {
            return Err(ApiError::new(400, "invalid_request_error", "logprobs are not supported by vidlm batch yet", Some("logprobs".into()), Some("unsupported_parameter")));
        }
        let media = req.load_media(&self.ctx.media).map_err(|e| e.to_api_error())?;
        let conv = req.conversation(media).map_err(|e| e.to_api_error())?;
        // The frames are sampled already (by the request's rules): the processor must not sample again.
        let inputs = self.processor.process(&[conv], &ProcessOptions::default()).map_err(|e| processor_error(&e))?;
        let sampled = req.generation.do_sample.unwrap_or(self.config_do_sample);
        let solo = sampled && req.generation.seed.is_some();
        Ok(Prepared { custom_id: record.custom_id, req, inputs, solo })
    }
}

/// The status and error object of a failure inside vidlm (processor, vision, language model),
/// from its [`ErrorKind`]: the request's fault is a 400 (a prompt over the context is
/// `context_length_exceeded`), the model's or vidlm's a 500.
fn kind_error(kind: ErrorKind, message: String) -> ApiError {
    match kind {
        ErrorKind::LimitExceeded if message.contains("context") || message.contains("prompt") => {
            ApiError::new(400, "invalid_request_error", message, Some("messages".into()), Some("context_length_exceeded"))
        }
        ErrorKind::InvalidModel | ErrorKind::Internal => ApiError::internal(message),
        _ => ApiError::invalid_request(message, Some("messages".into())),
    }
}

fn processor_error(e: &ProcessorError) -> ApiError {
    kind_error(e.kind(), e.to_string())
}

fn pipeline_error(e: &PipelineError) -> ApiError {
    kind_error(e.kind(), e.to_string())
}

fn decoder_error(e: &DecoderError) -> ApiError {
    kind_error(e.kind(), e.to_string())
}

/// The model side: vision graphs and language model.
struct Model {
    vision: VisionEncoder,
    lm: LanguageModel,
}

/// One request's result.
struct Answer {
    custom_id: String,
    result: std::result::Result<(Value, usize, usize), ApiError>,
}

impl Model {
    /// Vision features and a batched generation; a failing batch is retried one request at a
    /// time so that only the request at fault gets an error line.
    fn run(&mut self, batch: Vec<Prepared>) -> Vec<Answer> {
        let mut answers = Vec::with_capacity(batch.len());
        let mut ready: Vec<(Prepared, Sequence)> = Vec::with_capacity(batch.len());
        for p in batch {
            match sequences_from_inputs(&mut self.vision, &p.inputs) {
                Ok(mut seqs) if seqs.len() == 1 => {
                    let s = seqs.remove(0);
                    ready.push((p, s));
                }
                Ok(seqs) => answers.push(Answer {
                    custom_id: p.custom_id,
                    result: Err(ApiError::internal(format!("{} sequences for one conversation", seqs.len()))),
                }),
                Err(e) => answers.push(Answer { custom_id: p.custom_id, result: Err(pipeline_error(&e)) }),
            }
        }
        if ready.is_empty() {
            return answers;
        }
        let opts: GenerationOptions = ready[0].0.req.generation.clone();
        let seqs: Vec<Sequence> = ready.iter().map(|(_, s)| s.clone()).collect();
        match self.lm.generate(&seqs, &opts) {
            Ok(res) => {
                for ((p, _), row) in ready.into_iter().zip(res.rows) {
                    let text = row.text.clone().unwrap_or_default();
                    // The server's completion object; only its id is derived from the custom_id.
                    let mut body = p.req.completion(&text, row.prompt_tokens, row.token_ids.len(), row.finish_reason, None);
                    body.id = line_ids(&p.custom_id).2;
                    let body = serde_json::to_value(&body).unwrap_or(Value::Null);
                    answers.push(Answer { custom_id: p.custom_id, result: Ok((body, row.prompt_tokens, row.token_ids.len())) });
                }
            }
            Err(e) if ready.len() == 1 => {
                let (p, _) = ready.remove(0);
                answers.push(Answer { custom_id: p.custom_id, result: Err(decoder_error(&e)) });
            }
            Err(_) => {
                for (p, _) in ready {
                    answers.extend(self.run(vec![p]));
                }
            }
        }
        answers
    }
}

/// Whether `b` can share a decoder batch with `a` (same generation settings; seeded sampling
/// runs alone).
fn compatible(a: &Prepared, b: &Prepared) -> bool {
    !a.solo && !b.solo && a.req.generation == b.req.generation
}

/// Takes the next batch: the oldest request and up to `size - 1` compatible ones after it.
fn take_batch(pending: &mut VecDeque<Prepared>, size: usize) -> Vec<Prepared> {
    let Some(first) = pending.pop_front() else { return Vec::new() };
    let mut batch = vec![first];
    let mut i = 0;
    while batch.len() < size && i < pending.len() {
        if compatible(&batch[0], &pending[i]) {
            if let Some(p) = pending.remove(i) {
                batch.push(p);
            }
        } else {
            i += 1;
        }
    }
    batch
}

/// Requests in `pending` that can join the oldest one's batch (itself included).
fn compatible_count(pending: &VecDeque<Prepared>, size: usize) -> usize {
    match pending.front() {
        None => 0,
        Some(f) if f.solo => size,
        Some(f) => 1 + pending.iter().skip(1).filter(|p| compatible(f, p)).count(),
    }
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
        message: "a custom_id has two lines (the file was edited or written by two processes)".into(),
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
    let pipeline = Pipeline::from_pretrained(&opts.model, &opts.pipeline).map_err(|e| BatchError::Model(e.to_string()))?;
    let mut model_names = vec![opts.model.clone()];
    if let Some(name) = pipeline.dir().file_name().map(|n| n.to_string_lossy().into_owned()) {
        if !model_names.contains(&name) {
            model_names.push(name);
        }
    }
    let (processor, vision, lm) = pipeline.into_parts();
    let prep = Prep {
        config_do_sample: lm.generation_config().do_sample.unwrap_or(false),
        processor: Arc::new(processor),
        ctx: RequestContext { model_names, media: opts.media.clone() },
        model: opts.model.clone(),
        defaults: opts.defaults.clone(),
        manifest_dir: opts.base_dir.clone().unwrap_or_else(|| manifest.dir()),
    };
    let mut model = Model { vision, lm };
    summary.model_load = t_load.elapsed();
    let mut progress = Progress::new(opts.progress, todo, opts.progress_every);
    let mut write = |a: Answer, summary: &mut Summary, progress: &mut Progress| -> Result<()> {
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
    let wanted = |r: &Record| opts.shard.owns(r.index) && !done.contains(&r.custom_id);
    let checked = |r: &Record| -> Result<()> {
        if index.record_of(&r.custom_id) != Some(r.index) {
            return Err(BatchError::Manifest {
                path: manifest.path().to_path_buf(),
                location: r.location.clone(),
                message: "the manifest changed during the run".into(),
            });
        }
        Ok(())
    };

    let result = if opts.prefetch == 0 || opts.workers == 0 {
        // One at a time, in order: decode and preprocess, then the model.
        let mut pending = VecDeque::new();
        let mut go = || -> Result<()> {
            for r in manifest.records()? {
                let r = r?;
                checked(&r)?;
                if !wanted(&r) {
                    continue;
                }
                match prep.prepare(r) {
                    Ready::Prepared(p) => pending.push_back(*p),
                    Ready::Failed { custom_id, error } => write(Answer { custom_id, result: Err(error) }, &mut summary, &mut progress)?,
                    Ready::Fatal(e) => return Err(e),
                }
                while compatible_count(&pending, opts.batch_size) >= opts.batch_size {
                    for a in model.run(take_batch(&mut pending, opts.batch_size)) {
                        write(a, &mut summary, &mut progress)?;
                    }
                }
            }
            while !pending.is_empty() {
                for a in model.run(take_batch(&mut pending, opts.batch_size)) {
                    write(a, &mut summary, &mut progress)?;
                }
            }
            Ok(())
        };
        go()
    } else {
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let (job_tx, job_rx) = sync_channel::<Record>(opts.workers);
            let job_rx = Arc::new(Mutex::new(job_rx));
            let (ready_tx, ready_rx) = sync_channel::<Ready>(opts.prefetch);
            {
                let ready_tx = ready_tx.clone();
                let (stop, manifest, wanted, checked) = (&stop, &manifest, &wanted, &checked);
                scope.spawn(move || read_jobs(manifest, wanted, checked, &job_tx, &ready_tx, stop));
            }
            for _ in 0..opts.workers {
                let (job_rx, ready_tx, prep, stop) = (job_rx.clone(), ready_tx.clone(), &prep, &stop);
                scope.spawn(move || prefetch_worker(prep, &job_rx, &ready_tx, stop));
            }
            drop(ready_tx);
            let r = model_loop(&ready_rx, opts.batch_size, &mut model, &mut |a| write(a, &mut summary, &mut progress));
            stop.store(true, Ordering::SeqCst);
            drop(ready_rx);
            r
        })
    };
    progress.finish();
    summary.elapsed = started.elapsed();
    summary.peak_rss_bytes = crate::progress::peak_rss_bytes();
    result.map(|()| summary)
}

fn read_jobs(
    manifest: &Manifest,
    wanted: &(dyn Fn(&Record) -> bool + Sync),
    checked: &(dyn Fn(&Record) -> Result<()> + Sync),
    jobs: &SyncSender<Record>,
    ready: &SyncSender<Ready>,
    stop: &AtomicBool,
) {
    let records = match manifest.records() {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Ready::Fatal(e));
            return;
        }
    };
    for r in records {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let r = match r.and_then(|r| checked(&r).map(|()| r)) {
            Ok(r) => r,
            Err(e) => {
                let _ = ready.send(Ready::Fatal(e));
                return;
            }
        };
        if wanted(&r) && jobs.send(r).is_err() {
            return;
        }
    }
}

fn prefetch_worker(prep: &Prep, jobs: &Mutex<Receiver<Record>>, ready: &SyncSender<Ready>, stop: &AtomicBool) {
    loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(record) = job else { return };
        if ready.send(prep.prepare(record)).is_err() {
            return;
        }
    }
}

/// Pulls ready requests, writes failures at once, and runs the model on full batches (a
/// partial one when the input is exhausted).
fn model_loop(ready: &Receiver<Ready>, size: usize, model: &mut Model, write: &mut dyn FnMut(Answer) -> Result<()>) -> Result<()> {
    let mut pending: VecDeque<Prepared> = VecDeque::new();
    let max_pending = 2 * size;
    let mut closed = false;
    loop {
        while !closed && compatible_count(&pending, size) < size && pending.len() < max_pending {
            match ready.recv() {
                Ok(Ready::Prepared(p)) => pending.push_back(*p),
                Ok(Ready::Failed { custom_id, error }) => write(Answer { custom_id, result: Err(error) })?,
                Ok(Ready::Fatal(e)) => return Err(e),
                Err(_) => closed = true,
            }
        }
        if pending.is_empty() {
            if closed {
                return Ok(());
            }
            continue;
        }
        for a in model.run(take_batch(&mut pending, size)) {
            write(a)?;
        }
    }
}
