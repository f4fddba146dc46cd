//! Frame-sampling flags shared by `vidlm preprocess` and `vidlm run`.

use vidlm_processor::{ProcessOptions, Sampling};

/// `--num-frames N | --fps F`, optionally capped by `--max-frames M`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SamplingArgs {
    /// Sample N frames from each video (transformers: index_i = i*N_total // N).
    #[arg(long, conflicts_with = "fps")]
    pub num_frames: Option<usize>,
    /// Sample max(1, int(N_total / video_fps * F)) frames from each video.
    #[arg(long)]
    pub fps: Option<f64>,
    /// At most M frames per video (evenly spaced), e.g. to cap `--fps` on long videos.
    #[arg(long)]
    pub max_frames: Option<usize>,
}

impl SamplingArgs {
    /// Sets the processor's frame sampling (`sampling`, `max_frames`).
    pub fn apply(&self, opts: &mut ProcessOptions) {
        opts.sampling = match (self.num_frames, self.fps) {
            (Some(n), _) => Sampling::NumFrames(n),
            (None, Some(f)) => Sampling::Fps(f),
            (None, None) => Sampling::All,
        };
        opts.max_frames = self.max_frames;
    }
}
