//! Frame-sampling flags shared by `vidlm preprocess` and `vidlm run`.

use vidlm_media_source::{FrameSampling, MediaError};
use vidlm_processor::ProcessOptions;

/// `--num-frames N | --fps F`, optionally capped by `--max-frames M`; `--min-pixels` /
/// `--max-pixels` (patchified families' pixel budget).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SamplingArgs {
    /// Sample N frames from each video (transformers: index_i = i*N_total // N).
    #[arg(long, conflicts_with = "fps")]
    pub num_frames: Option<usize>,
    /// Sample max(1, int(N_total / video_fps * F)) frames from each video.
    #[arg(long)]
    pub fps: Option<f64>,
    /// At most M frames per video (evenly spaced), e.g. to cap `--fps` on long videos. For
    /// Qwen-VL video processors it caps `--num-frames` and is the `max_frames` of their own
    /// fps formula.
    #[arg(long)]
    pub max_frames: Option<usize>,
    /// Patchified (Qwen-VL) processors: lower pixel budget per image / video frame (transformers'
    /// `min_pixels`; Qwen3-VL's video processor has none and keeps its `size`).
    #[arg(long)]
    pub min_pixels: Option<u64>,
    /// Patchified (Qwen-VL) processors: upper pixel budget (`max_pixels`), like `--min-pixels`.
    #[arg(long)]
    pub max_pixels: Option<u64>,
}

impl SamplingArgs {
    /// The frame-sampling triple of these flags (vidlm's one type for it).
    pub fn frames(&self) -> FrameSampling {
        FrameSampling { num_frames: self.num_frames, fps: self.fps, max_frames: self.max_frames }
    }

    /// Sets the processor's frame sampling (`sampling`, `max_frames`) and pixel budgets.
    pub fn apply(&self, opts: &mut ProcessOptions) -> Result<(), MediaError> {
        let frames = self.frames();
        opts.sampling = frames.sampling()?;
        opts.max_frames = frames.max_frames;
        opts.min_pixels = self.min_pixels;
        opts.max_pixels = self.max_pixels;
        Ok(())
    }
}
