//! `vidlm probe VIDEO`

use anyhow::{Context, Result};
use std::path::PathBuf;
use vidlm_video_io::{OpenOptions, VideoReader};

use crate::limits::LimitsArgs;

#[derive(clap::Args)]
pub struct Args {
    /// Video or image file.
    pub video: PathBuf,
    /// Trust the container's frame count instead of scanning the packets.
    #[arg(long)]
    pub trust_header: bool,
    #[command(flatten)]
    pub limits: LimitsArgs,
}

pub fn run(a: Args) -> Result<()> {
    let opts = OpenOptions { trust_header: a.trust_header, ..a.limits.open_options() };
    let reader = VideoReader::open(&a.video, &opts)
        .with_context(|| format!("cannot probe {}", a.video.display()))?;
    println!("{}", serde_json::to_string_pretty(reader.info())?);
    Ok(())
}
