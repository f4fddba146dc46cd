//! Decoded media: an image's pixels or a video's sampled frames.

use std::sync::Arc;

use ndarray::{Array3, Array4};

/// Image or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// An image.
    Image,
    /// A video.
    Video,
}

/// A decoded media item — vidlm's one type for it: what `vidlm-media-source` decodes, what the
/// serving engine caches and what callers that decode media themselves hand on (the processor
/// takes it as a `MediaInput`).
#[derive(Debug, Clone)]
pub enum DecodedMedia {
    /// `(H, W, 3)` RGB.
    Image(Arc<Array3<u8>>),
    /// `(T, H, W, 3)` RGB, sampled.
    Video(Arc<Array4<u8>>),
}

impl DecodedMedia {
    /// Image or video.
    pub fn kind(&self) -> MediaKind {
        match self {
            DecodedMedia::Image(_) => MediaKind::Image,
            DecodedMedia::Video(_) => MediaKind::Video,
        }
    }

    /// Bytes of pixels held.
    pub fn bytes(&self) -> usize {
        match self {
            DecodedMedia::Image(a) => a.len(),
            DecodedMedia::Video(a) => a.len(),
        }
    }

    /// Frames: 1 for an image.
    pub fn frames(&self) -> usize {
        match self {
            DecodedMedia::Image(_) => 1,
            DecodedMedia::Video(a) => a.shape()[0],
        }
    }
}
