//! # vidlm-video-io
//!
//! Frame-exact video and image decoding for video-language models, with FFmpeg in-process
//! (`ffmpeg-next` over the system's libav*).
//!
//! * **Open** a local file ([`VideoReader::open`]) or bytes in memory
//!   ([`VideoReader::from_bytes`]), both read by this crate through a custom AVIO context, so
//!   FFmpeg never opens a file or connection itself: playlists and references inside a file
//!   (`m3u8`, `ffconcat`, `sdp`) cannot reach other files or the network. URLs are refused
//!   unless their scheme is in [`OpenOptions::protocol_whitelist`].
//! * **Probe** ([`VideoInfo`]): container, codec, stored size, pixel format, time base,
//!   duration, average fps, rotation (display matrix), audio presence and an exact frame
//!   count from a scan of every packet (no decoding) — headers lie (webm/mkv say 0).
//! * **Sample** ([`SampleRequest`]): `num_frames` with transformers' formula `i * N // n`,
//!   `fps` (`max(1, int(N / video_fps * fps))`), a `max_frames` cap, a `start`/`end` time
//!   range, explicit indices, presentation times, or uniform-in-time sampling for
//!   variable-frame-rate video. Too many frames is a typed error unless the request clamps.
//! * **Decode frame-exactly**: frame `i` is the `i`-th frame in presentation order. The reader
//!   seeks with its own packet index to the keyframe before each group of requested frames
//!   (checking where FFmpeg's seek really landed) and decodes only those GOPs; dense requests
//!   decode straight through.
//! * **Output** ([`Frames`]): RGB24 `Array4<u8>` `(T, H, W, 3)`, upright, with indices and
//!   presentation times. Colour conversion is swscale configured exactly like the ffmpeg
//!   CLI's (colour matrix and range per frame, 10-bit and full range included), so frames
//!   are bit-identical to `ffmpeg -pix_fmt rgb24`.
//! * **Images** ([`load_image`], [`load_image_bytes`]) go through the same path (`T = 1`).
//! * **Limits** ([`Limits`]) on pixels per frame (from the header, before decoding), frames per
//!   request, input bytes and output bytes; typed errors ([`VideoError`]) for every failure,
//!   no panics, no hangs; truncated files fail unless the request is lenient.
//! * **Throughput**: frames in several GOPs are decoded by one one-thread decoder per core,
//!   each taking the next GOP from a queue ([`OpenOptions::gop_workers`]; 1.2–1.4× one
//!   decoder with FFmpeg's frame threads on 2 cores, same frames); a single GOP uses FFmpeg's
//!   frame threads; [`sample_many`] decodes several videos in parallel with rayon.
//!
//! ```
//! use vidlm_video_io::{OpenOptions, SampleRequest, VideoReader};
//!
//! let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets/demo.mp4");
//! let mut reader = VideoReader::open(path, &OpenOptions::default())?;
//! let info = reader.info().clone();
//! assert!(info.frame_count > 8);
//!
//! let frames = reader.sample(&SampleRequest::num_frames(8))?;
//! assert_eq!(frames.indices, vidlm_video_io::uniform_indices(info.frame_count, 8));
//! assert_eq!(frames.data.shape(), &[8, info.output_height as usize, info.output_width as usize, 3]);
//! # Ok::<(), vidlm_video_io::VideoError>(())
//! ```
#![warn(missing_docs)]

mod error;
mod exif;
// The FFI module is the only one allowed `unsafe` (the crate denies `unsafe_code`).
#[allow(unsafe_code)]
mod ffi;
mod image;
mod info;
mod jpeg;
mod reader;
mod rotate;
mod sampling;
mod still;

pub use error::{LimitKind, SamplingError, VideoError};
pub use ffi::set_ffmpeg_log_level;
pub use image::{load_image, load_image_bytes, load_image_bytes_with, load_image_with};
pub use info::{FrameCountSource, VideoInfo};
pub use reader::{DecodeDevice, Frames, Limits, OpenOptions, SampledFrames, VideoReader};
pub use sampling::{fps_num_frames, uniform_indices, SampleRequest, Sampling, Strategy};

/// Re-export of the FFmpeg bindings this crate is built on.
pub use ffmpeg_next;

use rayon::prelude::*;
use std::path::Path;

/// Opens and samples several videos in parallel (rayon), one result per path, in order.
/// Each video still uses FFmpeg's own threads ([`OpenOptions::threads`]).
pub fn sample_many<P: AsRef<Path> + Sync>(
    paths: &[P],
    req: &SampleRequest,
    opts: &OpenOptions,
) -> Vec<Result<Frames, VideoError>> {
    paths.par_iter().map(|p| VideoReader::open(p, opts).and_then(|mut r| r.sample(req))).collect()
}

/// Probes a file: shorthand for `VideoReader::open(path, opts)?.info().clone()`.
pub fn probe(path: impl AsRef<Path>, opts: &OpenOptions) -> Result<VideoInfo, VideoError> {
    Ok(VideoReader::open(path, opts)?.info().clone())
}

#[cfg(test)]
mod tests {
    /// Readers and results can move to worker threads (one reader per thread).
    #[test]
    fn reader_and_frames_are_send() {
        fn send<T: Send>() {}
        send::<crate::VideoReader>();
        send::<crate::Frames>();
        send::<crate::VideoError>();
    }
}
