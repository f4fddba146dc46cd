//! Media workers: the CPU-only work a request needs before the engine core — loading and
//! decoding its media (or taking them, with their vision features, from the vision cache) and
//! the processor (template, tokens, pixels). They run no ONNX Runtime session: the vision
//! encodes of the items the cache lacks are scheduled work items of the core's executor.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use vidlm_decoder::{Features, Sequence};
use vidlm_media_source::{
    decode_media, decode_video_by, DecodedMedia, FrameSampling, Loaded, MediaError, MediaKind,
    MediaLimits, MediaPolicy,
};
use vidlm_model::mrope::MropeRule;
use vidlm_model::VideoTokens;
use vidlm_pipeline::{sequence_from_features, Stage};
use vidlm_processor::{
    Conversation, MediaInput, ProcessOptions, ProcessedInputs, Processor, VideoInput, VideoMetadata,
};

use crate::cache::{CacheKey, Entry, ItemKind};
use crate::executor::Units;
use crate::request::{EngineError, EngineRequest, Event, MediaSpec};
use crate::{Job, Shared};

/// One media item of a prepared request.
pub(crate) struct Item {
    /// Its decoded pixels.
    pub(crate) media: DecodedMedia,
    /// A video sampled by its model's own formula: its indices and rate.
    pub(crate) meta: Option<VideoMetadata>,
    /// Its vision cache key (`None` for media the caller decoded).
    pub(crate) key: Option<CacheKey>,
    /// Its vision features: from the cache, or once the core has encoded it.
    pub(crate) features: Option<Arc<Features>>,
    /// Which of the processed inputs it is.
    pub(crate) units: Units,
}

/// A prepared request, on its way to the engine core.
pub(crate) struct Prepared {
    pub(crate) job: Job,
    pub(crate) inputs: ProcessedInputs,
    pub(crate) items: Vec<Item>,
    pub(crate) ready_at: Instant,
}

impl Prepared {
    /// Images or frames each item without features needs encoded, by item index.
    pub(crate) fn encodes(&self) -> Vec<(usize, usize)> {
        self.items
            .iter()
            .enumerate()
            .filter(|(_, it)| it.features.is_none())
            .map(|(i, it)| {
                // The units `VisionInput::units` counts: patches or frames, and for patchified
                // (Qwen-VL) inputs the temporal patches of their grid.
                let conv = self.inputs.conversations.first();
                let cost = match it.units {
                    Units::Images { first, count } => conv
                        .map(|c| c.images.iter().skip(first).take(count))
                        .map_or(count, |grids| {
                            grids
                                .map(|g| g.thw.map_or(g.num_patches(), |(t, _, _)| t as usize))
                                .sum()
                        }),
                    Units::Video { index } => conv
                        .and_then(|c| c.video_grids.get(index))
                        .map_or(it.media.frames(), |g| g.thw.0 as usize),
                };
                (i, cost.max(1))
            })
            .collect()
    }

    /// The prompt, once every item has its features: image placeholders take the image items'
    /// (and a video's, for families that send videos as frames) in order, video placeholders the
    /// videos'. The pipeline's sequence building ([`sequence_from_features`], with the model's
    /// M-RoPE rule where it has one).
    pub(crate) fn sequence(
        &self,
        rule: Option<&MropeRule>,
    ) -> Option<Result<Sequence, EngineError>> {
        let mut images = Vec::new();
        let mut videos = Vec::new();
        for it in &self.items {
            let f = it.features.as_deref()?;
            match it.units {
                Units::Images { .. } => images.push(f),
                Units::Video { .. } => videos.push(f),
            }
        }
        let conv = self.inputs.conversations.first()?;
        Some(sequence_from_features(conv, rule, &images, &videos).map_err(EngineError::from))
    }

    /// Puts the items' features in the vision cache.
    pub(crate) fn cache(&self, shared: &Shared) {
        let mut cache = shared.cache.lock().unwrap_or_else(|p| p.into_inner());
        for it in &self.items {
            if let (Some(key), Some(f)) = (it.key, &it.features) {
                cache.insert(
                    key,
                    Entry { media: it.media.clone(), meta: it.meta.clone(), features: f.clone() },
                );
            }
        }
        shared
            .metrics
            .vision_cache_bytes
            .store(cache.used() as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A media worker: takes waiting requests in arrival order and prepares them.
pub(crate) fn worker(shared: Arc<Shared>, tx: mpsc::Sender<Prepared>) {
    while let Some(mut job) = shared.next_job() {
        if job.cancelled() {
            shared.scheduler(|s| s.cancel(job.id));
            continue;
        }
        if !shared.scheduler(|s| s.start_preparing(job.id)) {
            continue;
        }
        match prepare(&shared, &mut job) {
            Ok((inputs, items)) => {
                let p = Prepared { job, inputs, items, ready_at: Instant::now() };
                if let Err(mpsc::SendError(p)) = tx.send(p) {
                    shared.scheduler(|s| s.fail(p.job.id));
                    let _ = p.job.tx.send(Event::Failed(EngineError::Stopped));
                }
            }
            Err(e) => {
                if job.cancelled() {
                    shared.scheduler(|s| s.cancel(job.id));
                } else {
                    shared.scheduler(|s| s.fail(job.id));
                    let _ = job.tx.send(Event::Failed(e));
                }
            }
        }
    }
}

/// Loads (or takes from the cache) a job's media and runs the processor.
fn prepare(shared: &Shared, job: &mut Job) -> Result<(ProcessedInputs, Vec<Item>), EngineError> {
    job.timings.queue = job.arrived.elapsed();
    let _ = job.tx.send(Event::Stage(Stage::Preprocess { conversations: 1 }));
    let specs = job.req.media.clone();
    let images = specs.iter().filter(|m| m.kind() == MediaKind::Image).count();
    let mut media = Vec::with_capacity(specs.len());
    for spec in &specs {
        if job.cancelled() {
            return Err(EngineError::Stopped);
        }
        media.push(load(shared, job, spec, images)?);
    }
    // The processor: template, tokens, pixels (frames are sampled already: taken as they are),
    // with the request's processor arguments.
    let t1 = Instant::now();
    let conv = conversation(&job.req, media.iter().map(|l| (&l.media, &l.meta)));
    let inputs =
        shared.processor.process(std::slice::from_ref(&conv), &process_options(&job.req))?;
    job.timings.preprocess = t1.elapsed();
    // Which processed inputs each item is: a family that sends videos as frames (its
    // `FamilySpec`) has each video's frames among the images.
    let as_frames = shared.processor.spec().video_tokens == VideoTokens::FramesAsImages;
    let (mut image_at, mut video_at) = (0, 0);
    let items: Vec<Item> = media
        .into_iter()
        .map(|LoadedItem { media, meta, key, features }| {
            let units = match &media {
                DecodedMedia::Video(_) if !as_frames => {
                    video_at += 1;
                    Units::Video { index: video_at - 1 }
                }
                m => {
                    image_at += m.frames();
                    Units::Images { first: image_at - m.frames(), count: m.frames() }
                }
            };
            Item { media, meta, key, features, units }
        })
        .collect();
    let conv_inputs = inputs.conversations.first();
    if conv_inputs.map(|c| (c.images.len(), c.videos)) != Some((image_at, video_at)) {
        return Err(EngineError::Pipeline(vidlm_pipeline::PipelineError::Internal(format!(
            "{:?} images and videos from the processor for {image_at} images and {video_at} videos",
            conv_inputs.map(|c| (c.images.len(), c.videos))
        ))));
    }
    let videos = items.iter().filter(|i| i.media.kind() == MediaKind::Video).count();
    let _ = job.tx.send(Event::Stage(Stage::Vision { images: items.len() - videos, videos }));
    Ok((inputs, items))
}

/// A loaded media item: its pixels (with the metadata of a video its model sampled by its own
/// formula), its vision cache key (media named by source) and its features when the cache had
/// them.
struct LoadedItem {
    media: DecodedMedia,
    meta: Option<VideoMetadata>,
    key: Option<CacheKey>,
    features: Option<Arc<Features>>,
}

/// One media item: decoded by the caller, or loaded — from the vision cache (with its features)
/// or loaded and decoded.
fn load(
    shared: &Shared,
    job: &mut Job,
    spec: &MediaSpec,
    images: usize,
) -> Result<LoadedItem, EngineError> {
    let (kind, source, param) = match spec {
        MediaSpec::Decoded(m) => {
            return Ok(LoadedItem { media: m.clone(), meta: None, key: None, features: None })
        }
        MediaSpec::SampledVideo(frames, meta) => {
            return Ok(LoadedItem {
                media: DecodedMedia::Video(frames.clone()),
                meta: Some(meta.clone()),
                key: None,
                features: None,
            })
        }
        MediaSpec::Source { kind, source, param } => (*kind, source, param),
    };
    let wrap = |source| EngineError::Media { param: param.clone(), source };
    let t0 = Instant::now();
    let loaded = shared.media.load(source).map_err(wrap)?;
    let item_kind = match kind {
        MediaKind::Image => ItemKind::Image { multi: images != 1 },
        MediaKind::Video => ItemKind::Video,
    };
    let key = CacheKey::new(loaded.hash, item_kind, &job.req.sampling, &job.req.processor_args);
    let hit = shared.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key);
    let m = &shared.metrics;
    if let Some(e) = hit {
        job.timings.media += t0.elapsed();
        job.timings.cache_hits += 1;
        m.vision_cache_hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Ok(LoadedItem {
            media: e.media,
            meta: e.meta,
            key: Some(key),
            features: Some(e.features),
        });
    }
    let decoded =
        decode_item(&shared.processor, &loaded, kind, &job.req.sampling, &shared.media.limits);
    job.timings.media += t0.elapsed();
    job.timings.cache_misses += 1;
    m.vision_cache_misses.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (media, meta) = decoded.map_err(wrap)?;
    Ok(LoadedItem { media, meta, key: Some(key), features: None })
}

/// Decodes a loaded item with the request's frame sampling: a video by its model's own
/// formula where the model's video processor has one (the Qwen-VL families: the frame count
/// and rate are read first, the processor picks the indices exactly as for a file `vidlm run`
/// names, and only those frames are decoded), else by transformers'
/// `default_sample_indices_fn` as `vidlm run` decodes files (`decode_media`). The limits apply
/// either way, before any frame is decoded.
fn decode_item(
    processor: &Processor,
    loaded: &Loaded,
    kind: MediaKind,
    sampling: &FrameSampling,
    limits: &MediaLimits,
) -> Result<(DecodedMedia, Option<VideoMetadata>), MediaError> {
    if kind == MediaKind::Image || !processor.samples_by_family() {
        return decode_media(loaded, kind, sampling, limits).map(|m| (m, None));
    }
    let opts = ProcessOptions {
        sampling: sampling.sampling()?,
        max_frames: sampling.max_frames,
        ..ProcessOptions::default()
    };
    if let Some(n) = sampling.num_frames {
        if n > limits.max_frames {
            return Err(MediaError::TooManyFrames { requested: n, limit: limits.max_frames });
        }
    }
    let v = decode_video_by(loaded, limits, |total, fps| {
        processor.video_frame_indices(&opts, total, fps).map_err(|e| {
            let mut message = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                message = format!("{message}: {c}");
                cause = c.source();
            }
            MediaError::InvalidSampling(message)
        })
    })?;
    let meta = VideoMetadata {
        total_num_frames: v.total_frames,
        fps: v.fps,
        frames_indices: Some(v.indices),
    };
    Ok((DecodedMedia::Video(Arc::new(v.frames)), Some(meta)))
}

/// The processor's options of a request: its processor arguments (the frames are sampled
/// already, so no sampling).
fn process_options(req: &EngineRequest) -> ProcessOptions {
    let mut opts = ProcessOptions::default();
    req.processor_args.apply(&mut opts);
    opts
}

/// The request's conversation over its loaded media, in order: a video with metadata (sampled
/// by its model's formula) goes to the processor with it.
fn conversation<'a>(
    req: &EngineRequest,
    media: impl Iterator<Item = (&'a DecodedMedia, &'a Option<VideoMetadata>)>,
) -> Conversation {
    let media = media
        .map(|(m, meta)| match (m, meta) {
            (DecodedMedia::Video(frames), Some(meta)) => {
                MediaInput::Video(VideoInput::WithMetadata(frames.clone(), meta.clone()))
            }
            (m, _) => MediaInput::from(m.clone()),
        })
        .collect();
    Conversation { messages: req.messages.clone(), media }
}

/// What the engine's media workers make of a request before any model runs, without the
/// vision cache: its media loaded under `policy` (with its limits) and decoded with the
/// request's frame sampling (by the model's own formula where it has one), then the processor
/// with the request's processor arguments — the template, the token ids with every placeholder
/// expanded, the pixels and the grids. For tools and tests: `vidlm serve` and `vidlm batch`
/// requests are prepared exactly so (the engine checks the processor arguments at submission;
/// here the processor does).
pub fn preprocess(
    processor: &Processor,
    policy: &MediaPolicy,
    req: &EngineRequest,
) -> Result<ProcessedInputs, EngineError> {
    let mut media = Vec::with_capacity(req.media.len());
    for spec in &req.media {
        let item = match spec {
            MediaSpec::Decoded(m) => (m.clone(), None),
            MediaSpec::SampledVideo(frames, meta) => {
                (DecodedMedia::Video(frames.clone()), Some(meta.clone()))
            }
            MediaSpec::Source { kind, source, param } => {
                let wrap = |source| EngineError::Media { param: param.clone(), source };
                let loaded = policy.load(source).map_err(wrap)?;
                decode_item(processor, &loaded, *kind, &req.sampling, &policy.limits)
                    .map_err(wrap)?
            }
        };
        media.push(item);
    }
    let conv = conversation(req, media.iter().map(|(m, meta)| (m, meta)));
    Ok(processor.process(std::slice::from_ref(&conv), &process_options(req))?)
}
