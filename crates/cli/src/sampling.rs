//! Frame-sampling flags shared by `vidlm preprocess` and `vidlm run`.

use vidlm_processor::Sampling;

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
    /// The processor's sampling settings.
    pub fn to_sampling(&self) -> Sampling {
        Sampling { num_frames: self.num_frames, fps: self.fps, max_frames: self.max_frames }
    }
}
