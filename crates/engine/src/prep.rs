//! Media workers: everything a request needs before the decode loop — loading and decoding its
//! media (or taking them from the vision cache), the processor (template, tokens, pixels) and
//! the vision graphs. They run on their own threads, so a long video never stalls other users'
//! tokens.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use vidlm_decoder::{Features, Sequence};
use vidlm_media_source::{decode_image, decode_video};
use vidlm_openai::{DecodedMedia, MediaKind};
use vidlm_pipeline::{vision_inputs, Stage};
use vidlm_processor::{Conversation, ImageInput, MediaInput, ProcessOptions, VideoInput};

use crate::cache::{CacheKey, Entry, ItemKind, Pixels};
use crate::request::{EngineError, Event, MediaSpec};
use crate::{Job, Ready, Shared};

/// One media item on its way through the worker.
struct Item {
    pixels: Pixels,
    key: Option<CacheKey>,
    features: Option<Arc<Features>>,
}

/// Prepares one job; on success the result goes to the decode loop.
pub(crate) fn prepare(shared: &Shared, mut job: Job) -> Result<Ready, (Job, EngineError)> {
    let picked = Instant::now();
    job.timings.queue = picked.duration_since(job.arrived);
    let _ = job.tx.send(Event::Stage(Stage::Preprocess { conversations: 1 }));
    // Media: the cache first, else load + decode.
    let specs = job.req.media.clone();
    let images = specs
        .iter()
        .filter(|m| {
            matches!(
                m,
                MediaSpec::Source { kind: MediaKind::Image, .. }
                    | MediaSpec::Decoded(DecodedMedia::Image(_))
            )
        })
        .count();
    let mut items = Vec::with_capacity(specs.len());
    for spec in &specs {
        if job.cancelled() {
            return Err((job, EngineError::Stopped));
        }
        match spec {
            MediaSpec::Decoded(DecodedMedia::Image(a)) => {
                items.push(Item { pixels: Pixels::Image(a.clone()), key: None, features: None })
            }
            MediaSpec::Decoded(DecodedMedia::Video(a)) => {
                items.push(Item { pixels: Pixels::Video(a.clone()), key: None, features: None })
            }
            MediaSpec::Source { kind, source, param } => {
                let wrap = |source| EngineError::Media { param: param.clone(), source };
                let t0 = Instant::now();
                let loaded = match shared.media.load(source) {
                    Ok(l) => l,
                    Err(e) => return Err((job, wrap(e))),
                };
                let ik = match kind {
                    MediaKind::Image => ItemKind::Image { multi: images != 1 },
                    MediaKind::Video => ItemKind::Video,
                };
                let key = CacheKey::new(loaded.hash, ik, &job.req.sampling);
                let hit = shared.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key);
                if let Some(e) = hit {
                    job.timings.media += t0.elapsed();
                    job.timings.cache_hits += 1;
                    shared.metrics.vision_cache_hits.fetch_add(1, Ordering::Relaxed);
                    items.push(Item {
                        pixels: e.pixels,
                        key: Some(key),
                        features: Some(e.features),
                    });
                    continue;
                }
                let limits = &shared.media.limits;
                let pixels = match kind {
                    MediaKind::Image => {
                        decode_image(&loaded, limits).map(|a| Pixels::Image(Arc::new(a)))
                    }
                    MediaKind::Video => decode_video(&loaded, &job.req.sampling, limits)
                        .map(|a| Pixels::Video(Arc::new(a))),
                };
                job.timings.media += t0.elapsed();
                job.timings.cache_misses += 1;
                shared.metrics.vision_cache_misses.fetch_add(1, Ordering::Relaxed);
                match pixels {
                    Ok(p) => items.push(Item { pixels: p, key: Some(key), features: None }),
                    Err(e) => return Err((job, wrap(e))),
                }
            }
        }
    }
    // The processor: template, tokens, pixels.
    let t1 = Instant::now();
    let conv = Conversation {
        messages: job.req.messages.clone(),
        media: items
            .iter()
            .map(|it| match &it.pixels {
                Pixels::Image(a) => MediaInput::Image(ImageInput::Decoded(a.clone())),
                Pixels::Video(a) => MediaInput::Video(VideoInput::Decoded(a.clone())),
            })
            .collect(),
    };
    // Frames are sampled already: the processor takes them as they are.
    let inputs =
        match shared.processor.process(std::slice::from_ref(&conv), &ProcessOptions::default()) {
            Ok(i) => i,
            Err(e) => return Err((job, EngineError::Processor(e))),
        };
    job.timings.preprocess = t1.elapsed();
    if job.cancelled() {
        return Err((job, EngineError::Stopped));
    }
    // Vision, for the items the cache did not have.
    let n_img_items = items.iter().filter(|i| matches!(i.pixels, Pixels::Image(_))).count();
    let n_vid_items = items.len() - n_img_items;
    let _ = job.tx.send(Event::Stage(Stage::Vision { images: n_img_items, videos: n_vid_items }));
    let t2 = Instant::now();
    // Families without a video processor take a video's frames as images.
    let frames_as_images = n_vid_items > 0 && inputs.pixel_values_videos.is_none();
    // A text-only request never waits for the vision lock (another request's encode may hold it).
    let (images, videos) = if items.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        let vision = shared.vision.lock().unwrap_or_else(|p| p.into_inner());
        match vision_inputs(&vision, &inputs) {
            Ok(x) => x,
            Err(e) => return Err((job, EngineError::Pipeline(e))),
        }
    };
    // Which vision inputs belong to which item, in order.
    let mut image_slots: Vec<(usize, usize)> = Vec::new(); // (item, count of images)
    let mut video_slots: Vec<usize> = Vec::new();
    for (i, it) in items.iter().enumerate() {
        match &it.pixels {
            Pixels::Image(_) => image_slots.push((i, 1)),
            Pixels::Video(v) if frames_as_images => image_slots.push((i, v.shape()[0])),
            Pixels::Video(_) => video_slots.push(i),
        }
    }
    if image_slots.iter().map(|s| s.1).sum::<usize>() != images.len()
        || video_slots.len() != videos.len()
    {
        let msg = format!(
            "{} images / {} videos from the processor for the request's media",
            images.len(),
            videos.len()
        );
        return Err((job, EngineError::Pipeline(vidlm_pipeline::PipelineError::Internal(msg))));
    }
    let mut need_images = Vec::new();
    let mut need_image_items = Vec::new();
    let mut at = 0usize;
    for &(item, count) in &image_slots {
        if items[item].features.is_none() {
            need_images.extend(images[at..at + count].iter().cloned());
            need_image_items.push((item, count));
        }
        at += count;
    }
    let mut need_videos = Vec::new();
    let mut need_video_items = Vec::new();
    for (j, &item) in video_slots.iter().enumerate() {
        if items[item].features.is_none() {
            need_videos.push(videos[j]);
            need_video_items.push(item);
        }
    }
    if !need_images.is_empty() || !need_videos.is_empty() {
        let mut vision = shared.vision.lock().unwrap_or_else(|p| p.into_inner());
        if !need_images.is_empty() {
            let blocks = match vision.image_features(&need_images) {
                Ok(b) => b,
                Err(e) => return Err((job, EngineError::Vision(e))),
            };
            let mut blocks = blocks.into_iter();
            for (item, count) in need_image_items {
                let parts: Vec<_> = blocks.by_ref().take(count).collect();
                match features_of(parts) {
                    Ok(f) => items[item].features = Some(Arc::new(f)),
                    Err(e) => return Err((job, e)),
                }
            }
        }
        if !need_videos.is_empty() {
            let blocks = match vision.video_features(&need_videos) {
                Ok(b) => b,
                Err(e) => return Err((job, EngineError::Vision(e))),
            };
            for (item, block) in need_video_items.into_iter().zip(blocks) {
                match features_of(vec![block]) {
                    Ok(f) => items[item].features = Some(Arc::new(f)),
                    Err(e) => return Err((job, e)),
                }
            }
        }
    }
    if shared.config.release_vision_after_use {
        let mut vision = shared.vision.lock().unwrap_or_else(|p| p.into_inner());
        if shared.queue.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
            vision.release();
        }
    }
    job.timings.vision = t2.elapsed();
    // Cache what was computed.
    {
        let mut cache = shared.cache.lock().unwrap_or_else(|p| p.into_inner());
        for it in &items {
            if let (Some(key), Some(f)) = (it.key, &it.features) {
                cache.insert(key, Entry { pixels: it.pixels.clone(), features: f.clone() });
            }
        }
        shared.metrics.vision_cache_bytes.store(cache.used() as u64, Ordering::Relaxed);
    }
    // The sequence: image placeholders take the image items' (and frames-as-images videos')
    // features in order; video placeholders the videos'.
    let Some(input_ids) = inputs.conversations.first().map(|c| c.input_ids.clone()) else {
        return Err((
            job,
            EngineError::Pipeline(vidlm_pipeline::PipelineError::Internal(
                "the processor returned no conversation".into(),
            )),
        ));
    };
    let mut image_parts = Vec::new();
    let mut video_parts = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let Some(f) = &it.features else { continue };
        if image_slots.iter().any(|s| s.0 == i) {
            image_parts.push(f.clone());
        } else {
            video_parts.push(f.clone());
        }
    }
    let join = |parts: Vec<Arc<Features>>| -> Result<Option<Features>, EngineError> {
        if parts.is_empty() {
            return Ok(None);
        }
        Ok(Some(Features::concat(parts.iter().map(|a| a.as_ref()))?))
    };
    let image_features = match join(image_parts) {
        Ok(f) => f,
        Err(e) => return Err((job, e)),
    };
    let video_features = match join(video_parts) {
        Ok(f) => f,
        Err(e) => return Err((job, e)),
    };
    let seq = Sequence { input_ids, image_features, video_features };
    Ok(Ready { job, seq, ready_at: Instant::now() })
}

fn features_of(blocks: Vec<vidlm_vision::FeatureBlock>) -> Result<Features, EngineError> {
    let dim = blocks.first().map(|b| b.dim).unwrap_or(1);
    let data: Vec<f32> = blocks.into_iter().flat_map(|b| b.data).collect();
    Ok(Features::new(data, dim)?)
}
