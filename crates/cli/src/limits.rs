//! Media resource limits shared by the subcommands that decode (`vidlm_video_io::Limits`).

use vidlm_video_io::{Limits, OpenOptions};

/// `--max-frame-pixels`, `--max-packets`, `--max-output-bytes`: refuse inputs over these before
/// decoding them (defaults: `vidlm_video_io::Limits::default()`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct LimitsArgs {
    /// Largest frame (width * height) to decode; larger pictures are refused from their header.
    /// Default 40000000. (`--max-pixels` is the Qwen-VL processors' pixel budget.)
    #[arg(long = "max-frame-pixels", id = "max_frame_pixels", value_name = "PIXELS")]
    pub max_pixels: Option<u64>,
    /// Most packets (frames) a video stream may have. Default 2000000.
    #[arg(long, value_name = "N")]
    pub max_packets: Option<usize>,
    /// Largest output of one video (frames * height * width * 3 bytes). Default 17179869184.
    #[arg(long, value_name = "BYTES")]
    pub max_output_bytes: Option<u64>,
}

impl LimitsArgs {
    /// The library limits: the defaults, with the flags given.
    pub fn limits(&self) -> Limits {
        let d = Limits::default();
        Limits {
            max_pixels: self.max_pixels.unwrap_or(d.max_pixels),
            max_packets: self.max_packets.unwrap_or(d.max_packets),
            max_output_bytes: self.max_output_bytes.unwrap_or(d.max_output_bytes),
            ..d
        }
    }

    /// Open options with these limits.
    pub fn open_options(&self) -> OpenOptions {
        OpenOptions { limits: self.limits(), ..OpenOptions::default() }
    }
}
