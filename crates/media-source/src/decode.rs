//! Loading a checked [`Source`] into bytes with a content hash, and decoding it with limits.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use ndarray::{Array3, Array4, Axis};
use vidlm_model::{DecodedMedia, MediaKind};
use vidlm_video_io::{Limits, OpenOptions, SampleRequest, Sampling, VideoReader};

use crate::error::MediaError;
use crate::source::Source;
use crate::{MediaLimits, MediaPolicy};

/// A BLAKE3 hash of a media item's bytes: what a vision cache keys on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(pub [u8; 32]);

impl std::fmt::Display for ContentHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The bytes of a media item: in memory (data URLs, downloads) or a checked local file.
#[derive(Debug, Clone)]
pub enum MediaData {
    /// Bytes held in memory.
    Bytes(Arc<[u8]>),
    /// A regular file inside the allowed folder (canonical path), read by FFmpeg directly.
    File(PathBuf),
}

/// A loaded media item.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Its bytes.
    pub data: MediaData,
    /// The hash of those bytes.
    pub hash: ContentHash,
    /// Its size in bytes.
    pub len: u64,
}

const B64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

impl MediaPolicy {
    /// Loads a checked source: decodes a data URL, downloads a remote URL (see
    /// [`MediaPolicy::fetch`]) or hashes a local file, enforcing the byte limit.
    pub fn load(&self, source: &Source) -> Result<Loaded, MediaError> {
        match source {
            Source::Data { base64, .. } => {
                // Whitespace is legal in data URLs written by hand; drop it before decoding.
                let compact: String;
                let text: &str = if base64.bytes().any(|b| b.is_ascii_whitespace()) {
                    compact = base64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
                    &compact
                } else {
                    base64
                };
                let bound = (text.len() as u64).div_ceil(4) * 3;
                if bound > self.limits.max_bytes.saturating_add(3) {
                    return Err(MediaError::TooLarge {
                        actual: bound,
                        limit: self.limits.max_bytes,
                    });
                }
                let bytes = B64
                    .decode(text.as_bytes())
                    .map_err(|e| MediaError::InvalidDataUrl(format!("bad base64: {e}")))?;
                if bytes.len() as u64 > self.limits.max_bytes {
                    return Err(MediaError::TooLarge {
                        actual: bytes.len() as u64,
                        limit: self.limits.max_bytes,
                    });
                }
                if bytes.is_empty() {
                    return Err(MediaError::InvalidDataUrl("no data".into()));
                }
                Ok(in_memory(bytes))
            }
            Source::Remote(url) => {
                let bytes = self.fetch(url)?;
                if bytes.is_empty() {
                    return Err(MediaError::Fetch {
                        url: url.to_string(),
                        message: "empty body".into(),
                    });
                }
                Ok(in_memory(bytes))
            }
            Source::Local(path) => {
                let io = |e| MediaError::Io { path: path.clone(), source: e };
                let file = std::fs::File::open(path).map_err(io)?;
                let mut hasher = blake3::Hasher::new();
                let mut reader = file.take(self.limits.max_bytes.saturating_add(1));
                let mut buf = vec![0u8; 256 * 1024];
                let mut len = 0u64;
                loop {
                    let n = reader.read(&mut buf).map_err(io)?;
                    if n == 0 {
                        break;
                    }
                    len += n as u64;
                    if len > self.limits.max_bytes {
                        return Err(MediaError::TooLarge {
                            actual: len,
                            limit: self.limits.max_bytes,
                        });
                    }
                    hasher.update(&buf[..n]);
                }
                Ok(Loaded {
                    data: MediaData::File(path.clone()),
                    hash: ContentHash(*hasher.finalize().as_bytes()),
                    len,
                })
            }
        }
    }
}

fn in_memory(bytes: Vec<u8>) -> Loaded {
    let hash = ContentHash(*blake3::hash(&bytes).as_bytes());
    let len = bytes.len() as u64;
    Loaded { data: MediaData::Bytes(bytes.into()), hash, len }
}

fn open_options(limits: &MediaLimits) -> OpenOptions {
    OpenOptions {
        limits: Limits {
            max_pixels: limits.max_pixels,
            max_frames: limits.max_frames,
            max_input_bytes: limits.max_bytes,
            ..Limits::default()
        },
        threads: limits.decoder_threads,
        decode_device: limits.decode_device,
        ..OpenOptions::default()
    }
}

fn open(
    loaded: &Loaded,
    opts: &OpenOptions,
    what: &'static str,
) -> Result<VideoReader, MediaError> {
    let r = match &loaded.data {
        MediaData::Bytes(b) => VideoReader::from_bytes(b.clone(), opts),
        MediaData::File(p) => VideoReader::open(p, opts),
    };
    r.map_err(|source| MediaError::Decode { what, source })
}

/// Decodes a loaded item as `kind`.
pub fn decode_media(
    loaded: &Loaded,
    kind: MediaKind,
    sampling: &FrameSampling,
    limits: &MediaLimits,
) -> Result<DecodedMedia, MediaError> {
    Ok(match kind {
        MediaKind::Image => DecodedMedia::Image(Arc::new(decode_image(loaded, limits)?)),
        MediaKind::Video => DecodedMedia::Video(Arc::new(decode_video(loaded, sampling, limits)?)),
    })
}

/// Decodes an image `(H, W, 3)` RGB as transformers' `load_image` does (JPEG as PIL decodes it,
/// EXIF orientation applied; the pixel limit is checked from the header first).
pub fn decode_image(loaded: &Loaded, limits: &MediaLimits) -> Result<Array3<u8>, MediaError> {
    let opts = open_options(limits);
    let frames = match &loaded.data {
        MediaData::Bytes(b) => vidlm_video_io::load_image_bytes_with(b.clone(), &opts),
        MediaData::File(p) => vidlm_video_io::load_image_with(p, &opts),
    }
    .map_err(|source| MediaError::Decode { what: "image", source })?;
    if frames.data.shape()[0] == 0 {
        return Err(MediaError::Decode {
            what: "image",
            source: vidlm_video_io::VideoError::InvalidData("no image decoded".into()),
        });
    }
    Ok(frames.data.index_axis_move(Axis(0), 0))
}

/// Frame sampling of one video: vidlm's one type for the `num_frames` | `fps`, `max_frames`
/// triple, whoever asks (`vidlm run`'s `--num-frames` / `--fps` / `--max-frames`, the server's
/// and batch's `media_io_kwargs.video`, the Python package's keyword arguments).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FrameSampling {
    /// Exactly this many frames, evenly spaced (transformers' `i * N // n`).
    pub num_frames: Option<usize>,
    /// This many frames per second of video.
    pub fps: Option<f64>,
    /// At most this many frames, evenly spaced over what the above selects.
    pub max_frames: Option<usize>,
}

impl FrameSampling {
    /// The sampling rule: `num_frames`, `fps` (finite and positive) or every frame; both at
    /// once is an error.
    pub fn sampling(&self) -> Result<Sampling, MediaError> {
        Ok(match (self.num_frames, self.fps) {
            (Some(_), Some(_)) => {
                return Err(MediaError::InvalidSampling(
                    "`num_frames` and `fps` are mutually exclusive".into(),
                ))
            }
            (Some(n), None) => Sampling::NumFrames(n),
            (None, Some(f)) if !(f.is_finite() && f > 0.0) => {
                return Err(MediaError::InvalidSampling(format!("`fps` must be > 0, got {f}")))
            }
            (None, Some(f)) => Sampling::Fps(f),
            (None, None) => Sampling::All,
        })
    }

    /// The video-io request (the same mapping as `vidlm run`'s loader).
    pub fn request(&self) -> Result<SampleRequest, MediaError> {
        let req = SampleRequest::new(self.sampling()?);
        Ok(match self.max_frames {
            Some(m) => req.max_frames(m),
            None => req,
        })
    }
}

/// Decodes the sampled frames of a video `(T, H, W, 3)`. Before decoding any frame, the
/// duration, the pixels per frame and the number of frames the sampling selects are checked
/// against the limits.
pub fn decode_video(
    loaded: &Loaded,
    sampling: &FrameSampling,
    limits: &MediaLimits,
) -> Result<Array4<u8>, MediaError> {
    if let Some(n) = sampling.num_frames {
        if n > limits.max_frames {
            return Err(MediaError::TooManyFrames { requested: n, limit: limits.max_frames });
        }
    }
    let req = sampling.request()?;
    let mut reader = open_video(loaded, limits)?;
    sample_checked(&mut reader, &req, limits)
}

/// A video sampled by a caller's own formula ([`decode_video_by`]): the frames and what the
/// formula saw.
#[derive(Debug, Clone)]
pub struct SampledVideo {
    /// The frames `(T, H, W, 3)`, in the order of `indices`.
    pub frames: Array4<u8>,
    /// The video's frame count (`VideoInfo::frame_count`).
    pub total_frames: usize,
    /// Its frame rate, where the container says.
    pub fps: Option<f64>,
    /// The frames taken.
    pub indices: Vec<usize>,
}

/// Decodes the frames `choose` picks from a video's frame count and frame rate — a video
/// processor's own sampling formula (the Qwen-VL families') — with the limits of
/// [`decode_video`]: duration and pixels per frame from the header, the number of frames
/// picked against `max_frames`, all before any frame is decoded.
pub fn decode_video_by(
    loaded: &Loaded,
    limits: &MediaLimits,
    choose: impl FnOnce(usize, Option<f64>) -> Result<Vec<usize>, MediaError>,
) -> Result<SampledVideo, MediaError> {
    let mut reader = open_video(loaded, limits)?;
    let (total_frames, fps) = (reader.info().frame_count, reader.info().fps);
    let indices = choose(total_frames, fps)?;
    if indices.len() > limits.max_frames {
        return Err(MediaError::TooManyFrames {
            requested: indices.len(),
            limit: limits.max_frames,
        });
    }
    let req = SampleRequest::indices(indices.clone());
    let frames = sample_checked(&mut reader, &req, limits)?;
    Ok(SampledVideo { frames, total_frames, fps, indices })
}

/// Opens a video and checks its duration against the limit (from the header / packet index).
fn open_video(loaded: &Loaded, limits: &MediaLimits) -> Result<VideoReader, MediaError> {
    let reader = open(loaded, &open_options(limits), "video")?;
    let info = reader.info();
    let duration = info
        .duration
        .or_else(|| info.fps.filter(|f| *f > 0.0).map(|f| info.frame_count as f64 / f));
    if let Some(d) = duration {
        if d > limits.max_duration_s {
            return Err(MediaError::TooLong { seconds: d, limit: limits.max_duration_s });
        }
    }
    Ok(reader)
}

/// Plans `req`, checks the frame count against the limit, then decodes.
fn sample_checked(
    reader: &mut VideoReader,
    req: &SampleRequest,
    limits: &MediaLimits,
) -> Result<Array4<u8>, MediaError> {
    let plan = reader.plan(req).map_err(|source| MediaError::Decode { what: "video", source })?;
    if plan.len() > limits.max_frames {
        return Err(MediaError::TooManyFrames { requested: plan.len(), limit: limits.max_frames });
    }
    let frames =
        reader.sample(req).map_err(|source| MediaError::Decode { what: "video", source })?;
    Ok(frames.data)
}
