//! Still images (jpg, png, webp, bmp, ...) through the same FFmpeg path as video.

use crate::{Frames, OpenOptions, SampleRequest, VideoError, VideoReader};
use std::path::Path;

/// Decodes an image file into a one-frame [`Frames`] (`T = 1`, RGB24).
pub fn load_image(path: impl AsRef<Path>) -> Result<Frames, VideoError> {
    load_image_with(path, &OpenOptions::default())
}

/// [`load_image`] with explicit options (limits).
pub fn load_image_with(path: impl AsRef<Path>, opts: &OpenOptions) -> Result<Frames, VideoError> {
    VideoReader::open(path, opts)?.sample(&SampleRequest::indices(vec![0]))
}

/// Decodes an image held in memory into a one-frame [`Frames`].
pub fn load_image_bytes(bytes: impl Into<std::sync::Arc<[u8]>>) -> Result<Frames, VideoError> {
    load_image_bytes_with(bytes, &OpenOptions::default())
}

/// [`load_image_bytes`] with explicit options (limits).
pub fn load_image_bytes_with(bytes: impl Into<std::sync::Arc<[u8]>>, opts: &OpenOptions) -> Result<Frames, VideoError> {
    VideoReader::from_bytes(bytes, opts)?.sample(&SampleRequest::indices(vec![0]))
}
