//! Media loading through `vidlm-video-io` (feature `video-io`, on by default): FFmpeg decoding,
//! frame-exact sampling with transformers' `num_frames` / `fps` formulas.

use crate::error::{ProcessorError, Result};
use crate::processor::MediaLoader;
use ndarray::{Array3, Array4, Axis};
use std::path::Path;
use vidlm_model::{ErrorKind, Sampling};
use vidlm_video_io::{load_image_with, OpenOptions, SampleRequest, VideoError, VideoReader};

/// Loads images and videos with `vidlm-video-io`.
#[derive(Debug, Clone, Default)]
pub struct VideoIoLoader {
    /// Decoder options (limits, threads).
    pub opts: OpenOptions,
}

fn err(path: &Path, e: VideoError) -> ProcessorError {
    ProcessorError::MediaLoad { path: path.to_path_buf(), source: Box::new(e) }
}

impl MediaLoader for VideoIoLoader {
    fn load_image(&self, path: &Path) -> Result<Array3<u8>> {
        let frames = load_image_with(path, &self.opts).map_err(|e| err(path, e))?;
        if frames.data.shape()[0] == 0 {
            return Err(ProcessorError::media_load(path, "no image decoded"));
        }
        Ok(frames.data.index_axis_move(Axis(0), 0))
    }

    fn load_video(
        &self,
        path: &Path,
        sampling: &Sampling,
        max_frames: Option<usize>,
    ) -> Result<Array4<u8>> {
        let mut req = SampleRequest::new(sampling.clone());
        req.max_frames = max_frames;
        let mut reader = VideoReader::open(path, &self.opts).map_err(|e| err(path, e))?;
        Ok(reader.sample(&req).map_err(|e| err(path, e))?.data)
    }

    fn probe_video(&self, path: &Path) -> Result<(usize, Option<f64>)> {
        let reader = VideoReader::open(path, &self.opts).map_err(|e| err(path, e))?;
        let info = reader.info();
        Ok((info.frame_count, info.fps))
    }
}

/// The category of a `vidlm-video-io` error ([`VideoError::kind`]).
pub fn video_error_kind(e: &VideoError) -> ErrorKind {
    e.kind()
}
