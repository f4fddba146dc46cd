//! Media loading through `vidlm-video-io` (feature `video-io`, on by default): FFmpeg decoding,
//! frame-exact sampling with transformers' `num_frames` / `fps` formulas.

use crate::error::{ProcessorError, Result};
use crate::processor::{MediaLoader, Sampling};
use ndarray::{Array3, Array4, Axis};
use std::path::Path;
use vidlm_video_io::{load_image_with, OpenOptions, SampleRequest, VideoReader};

/// Loads images and videos with `vidlm-video-io`.
#[derive(Debug, Clone, Default)]
pub struct VideoIoLoader {
    /// Decoder options (limits, threads).
    pub opts: OpenOptions,
}

fn err(path: &Path, e: impl std::fmt::Display) -> ProcessorError {
    ProcessorError::MediaLoad { path: path.to_path_buf(), message: e.to_string() }
}

impl MediaLoader for VideoIoLoader {
    fn load_image(&self, path: &Path) -> Result<Array3<u8>> {
        let frames = load_image_with(path, &self.opts).map_err(|e| err(path, e))?;
        if frames.data.shape()[0] == 0 {
            return Err(err(path, "no image decoded"));
        }
        Ok(frames.data.index_axis_move(Axis(0), 0))
    }

    fn load_video(&self, path: &Path, sampling: &Sampling) -> Result<Array4<u8>> {
        let req = match (sampling.num_frames, sampling.fps) {
            (Some(_), Some(_)) => {
                return Err(ProcessorError::Unsupported("`num_frames` and `fps` are mutually exclusive".into()))
            }
            (Some(n), None) => SampleRequest::num_frames(n),
            (None, Some(f)) => SampleRequest::fps(f),
            (None, None) => SampleRequest::all(),
        };
        let req = match sampling.max_frames {
            Some(m) => req.max_frames(m),
            None => req,
        };
        let mut reader = VideoReader::open(path, &self.opts).map_err(|e| err(path, e))?;
        Ok(reader.sample(&req).map_err(|e| err(path, e))?.data)
    }
}
