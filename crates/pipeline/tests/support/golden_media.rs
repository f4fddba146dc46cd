// Shared by the pipeline's and the engine's golden tests: a golden scenario's conversation as
// transformers saw it. The Qwen-VL goldens (`golden.json` with `video_metadata`) give their videos
// as PNG frame lists declared as clips of `video_metadata.fps`, sampled by the video processor
// with the scenario's `video_sampling` (`num_frames` or `fps`); the other families' frame lists
// are taken as they are.
#![allow(dead_code)]

use std::sync::Arc;

use vidlm_model::Sampling;
use vidlm_processor::{
    Conversation, DecodedMedia, MediaInput, ProcessOptions, Processor, VideoInput, VideoMetadata,
};

/// The scenario's conversation with its videos as whole clips with their metadata, and the
/// processor options that sample them as transformers did.
pub fn golden_conversation(
    processor: &Processor,
    conv: Conversation,
    meta: &serde_json::Value,
    scenario: &serde_json::Value,
) -> (Conversation, ProcessOptions) {
    let mut opts = ProcessOptions::default();
    let Some(fps) = meta["video_metadata"]["fps"].as_f64() else { return (conv, opts) };
    let sampling = &scenario["video_sampling"];
    if let Some(n) = sampling["num_frames"].as_u64() {
        opts.sampling = Sampling::NumFrames(n as usize);
    } else if let Some(f) = sampling["fps"].as_f64() {
        opts.sampling = Sampling::Fps(f);
    }
    // The frames, loaded as they are (no sampling yet), then declared as the whole clip.
    let loaded = processor.load_conversation(&conv, &ProcessOptions::default()).expect("media");
    let media = loaded
        .media
        .into_iter()
        .map(|m| match m {
            MediaInput::Video(VideoInput::WithMetadata(a, _))
            | MediaInput::Decoded(DecodedMedia::Video(a)) => {
                let meta = VideoMetadata {
                    total_num_frames: a.shape()[0],
                    fps: Some(fps),
                    frames_indices: None,
                };
                MediaInput::Video(VideoInput::WithMetadata(Arc::clone(&a), meta))
            }
            m => m,
        })
        .collect();
    (Conversation { messages: loaded.messages, media }, opts)
}
