//! `vidlm frames VIDEO (--num-frames N | --fps F | --indices 0,5,9) [--start S --end E] [--max-frames M] --out DIR`

use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use vidlm_video_io::{SampleRequest, VideoReader};

use crate::limits::LimitsArgs;

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("how").required(true).args(["num_frames", "fps", "fps_by_time", "indices"])))]
pub struct Args {
    /// Video or image file.
    pub video: PathBuf,
    /// Sample N frames uniformly (transformers: index_i = i*N_total // N).
    #[arg(long)]
    pub num_frames: Option<usize>,
    /// transformers' fps sampling: max(1, int(N_total / video_fps * F)) frames, uniformly.
    #[arg(long)]
    pub fps: Option<f64>,
    /// F frames per second of presentation time (for variable-frame-rate video).
    #[arg(long)]
    pub fps_by_time: Option<f64>,
    /// Explicit frame indices, comma separated.
    #[arg(long, value_delimiter = ',')]
    pub indices: Option<Vec<usize>>,
    /// Only frames at or after this time (seconds).
    #[arg(long)]
    pub start: Option<f64>,
    /// Only frames before this time (seconds).
    #[arg(long)]
    pub end: Option<f64>,
    /// Take at most M frames.
    #[arg(long)]
    pub max_frames: Option<usize>,
    /// Cap requests for more frames than exist instead of failing.
    #[arg(long)]
    pub clamp: bool,
    /// Write the frames that decode from a truncated/corrupt file instead of failing.
    #[arg(long)]
    pub lenient: bool,
    /// Output directory (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub limits: LimitsArgs,
}

#[derive(Serialize)]
struct FrameEntry {
    index: usize,
    pts: f64,
    file: String,
}

#[derive(Serialize)]
struct FramesJson<'a> {
    video: String,
    width: usize,
    height: usize,
    frames: Vec<FrameEntry>,
    missing: &'a [usize],
    truncated: bool,
}

fn request(a: &Args) -> SampleRequest {
    let mut r = if let Some(n) = a.num_frames {
        SampleRequest::num_frames(n)
    } else if let Some(f) = a.fps {
        SampleRequest::fps(f)
    } else if let Some(f) = a.fps_by_time {
        SampleRequest::fps_by_time(f)
    } else {
        SampleRequest::indices(a.indices.clone().unwrap_or_default())
    };
    r.start = a.start;
    r.end = a.end;
    r.max_frames = a.max_frames;
    r.clamp = a.clamp;
    r.lenient = a.lenient;
    r
}

fn write_png(path: &Path, w: usize, h: usize, rgb: &[u8]) -> Result<()> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut enc = png::Encoder::new(BufWriter::new(file), w as u32, h as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Fast);
    let mut writer = enc.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(())
}

pub fn run(a: Args) -> Result<()> {
    let req = request(&a);
    let mut reader = VideoReader::open(&a.video, &a.limits.open_options())
        .with_context(|| format!("cannot open {}", a.video.display()))?;
    let frames = reader
        .sample(&req)
        .with_context(|| format!("cannot sample frames from {}", a.video.display()))?;
    if frames.is_empty() {
        bail!("no frame could be decoded from {}", a.video.display());
    }
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let (h, w) = frames.size();
    let mut entries = Vec::with_capacity(frames.len());
    for (t, (&index, &pts)) in frames.indices.iter().zip(&frames.pts).enumerate() {
        let name = format!("{index:06}.png");
        let view = frames.data.index_axis(ndarray::Axis(0), t);
        let owned;
        let rgb = match view.as_slice() {
            Some(s) => s,
            None => {
                owned = view.iter().copied().collect::<Vec<u8>>();
                &owned
            }
        };
        write_png(&a.out.join(&name), w, h, rgb)?;
        entries.push(FrameEntry { index, pts, file: name });
    }
    let json = FramesJson {
        video: a.video.display().to_string(),
        width: w,
        height: h,
        frames: entries,
        missing: &frames.missing,
        truncated: frames.truncated,
    };
    let path = a.out.join("frames.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("wrote {} frames to {}", frames.len(), a.out.display());
    Ok(())
}
