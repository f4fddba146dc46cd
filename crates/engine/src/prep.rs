//! Media workers: the CPU-only work a request needs before the engine core — loading and
//! decoding its media (or taking them, with their vision features, from the vision cache) and
//! the processor (template, tokens, pixels). They run no ONNX Runtime session: the vision
//! encodes of the items the cache lacks are scheduled work items of the core's executor.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use vidlm_decoder::{Features, Sequence};
use vidlm_media_source::{decode_media, DecodedMedia, MediaKind};
use vidlm_model::VideoTokens;
use vidlm_pipeline::{sequence_from_features, Stage};
use vidlm_processor::{Conversation, MediaInput, ProcessOptions, ProcessedInputs};

use crate::cache::{CacheKey, Entry, ItemKind};
use crate::executor::Units;
use crate::request::{EngineError, Event, MediaSpec};
use crate::{Job, Shared};

/// One media item of a prepared request.
pub(crate) struct Item {
    /// Its decoded pixels.
    pub(crate) media: DecodedMedia,
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
                let cost = match it.units {
                    Units::Images { first, count } => self
                        .inputs
                        .conversations
                        .first()
                        .map(|c| c.images.iter().skip(first).take(count))
                        .map_or(count, |grids| grids.map(|g| g.num_patches()).sum()),
                    Units::Video { .. } => it.media.frames(),
                };
                (i, cost.max(1))
            })
            .collect()
    }

    /// The prompt, once every item has its features: image placeholders take the image items'
    /// (and a video's, for families that send videos as frames) in order, video placeholders the
    /// videos'. The pipeline's sequence building ([`sequence_from_features`]).
    pub(crate) fn sequence(&self) -> Option<Result<Sequence, EngineError>> {
        let mut images = Vec::new();
        let mut videos = Vec::new();
        for it in &self.items {
            let f = it.features.as_deref()?;
            match it.units {
                Units::Images { .. } => images.push(f),
                Units::Video { .. } => videos.push(f),
            }
        }
        let ids = self.inputs.conversations.first()?.input_ids.clone();
        Some(sequence_from_features(ids, &images, &videos).map_err(EngineError::from))
    }

    /// Puts the items' features in the vision cache.
    pub(crate) fn cache(&self, shared: &Shared) {
        let mut cache = shared.cache.lock().unwrap_or_else(|p| p.into_inner());
        for it in &self.items {
            if let (Some(key), Some(f)) = (it.key, &it.features) {
                cache.insert(key, Entry { media: it.media.clone(), features: f.clone() });
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
    // The processor: template, tokens, pixels (frames are sampled already: taken as they are).
    let t1 = Instant::now();
    let conv = Conversation {
        messages: job.req.messages.clone(),
        media: media.iter().map(|(m, _, _)| MediaInput::from(m.clone())).collect(),
    };
    let inputs =
        shared.processor.process(std::slice::from_ref(&conv), &ProcessOptions::default())?;
    job.timings.preprocess = t1.elapsed();
    // Which processed inputs each item is: a family that sends videos as frames (its
    // `FamilySpec`) has each video's frames among the images.
    let as_frames = shared.processor.spec().video_tokens == VideoTokens::FramesAsImages;
    let (mut image_at, mut video_at) = (0, 0);
    let items: Vec<Item> = media
        .into_iter()
        .map(|(media, key, features)| {
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
            Item { media, key, features, units }
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

/// A loaded media item: its pixels, its vision cache key (media named by source) and its
/// features when the cache had them.
type Loaded = (DecodedMedia, Option<CacheKey>, Option<Arc<Features>>);

/// One media item: decoded by the caller, or loaded — from the vision cache (with its features)
/// or loaded and decoded.
fn load(
    shared: &Shared,
    job: &mut Job,
    spec: &MediaSpec,
    images: usize,
) -> Result<Loaded, EngineError> {
    let (kind, source, param) = match spec {
        MediaSpec::Decoded(m) => return Ok((m.clone(), None, None)),
        MediaSpec::Source { kind, source, param } => (*kind, source, param),
    };
    let wrap = |source| EngineError::Media { param: param.clone(), source };
    let t0 = Instant::now();
    let loaded = shared.media.load(source).map_err(wrap)?;
    let item_kind = match kind {
        MediaKind::Image => ItemKind::Image { multi: images != 1 },
        MediaKind::Video => ItemKind::Video,
    };
    let key = CacheKey::new(loaded.hash, item_kind, &job.req.sampling);
    let hit = shared.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key);
    let m = &shared.metrics;
    if let Some(e) = hit {
        job.timings.media += t0.elapsed();
        job.timings.cache_hits += 1;
        m.vision_cache_hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Ok((e.media, Some(key), Some(e.features)));
    }
    let decoded = decode_media(&loaded, kind, &job.req.sampling, &shared.media.limits);
    job.timings.media += t0.elapsed();
    job.timings.cache_misses += 1;
    m.vision_cache_misses.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok((decoded.map_err(wrap)?, Some(key), None))
}
