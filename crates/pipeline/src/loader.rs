//! Media loading for the processor through `vidlm-video-io` (FFmpeg in-process), with timing.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ndarray::{Array3, Array4};
use vidlm_processor::processor::{MediaLoader, Sampling};
use vidlm_processor::ProcessorError;
use vidlm_video_io::{OpenOptions, SampleRequest, VideoReader};

/// Decodes images and videos with FFmpeg (`vidlm-video-io`): frames are sampled with
/// transformers' formulas (`num_frames`: `floor(i * N / n)`; `fps`: `max(1, int(N / video_fps * fps))`
/// frames), all frames when neither is set.
#[derive(Debug, Clone, Default)]
pub struct VideoIoLoader {
    /// FFmpeg open options (limits, protocol whitelist).
    pub open: OpenOptions,
}

fn media_err(path: &Path, e: impl std::fmt::Display) -> ProcessorError {
    ProcessorError::MediaLoad { path: path.to_path_buf(), message: e.to_string() }
}

impl MediaLoader for VideoIoLoader {
    fn load_image(&self, path: &Path) -> Result<Array3<u8>, ProcessorError> {
        let frames = vidlm_video_io::load_image_with(path, &self.open).map_err(|e| media_err(path, e))?;
        let (_, h, w, c) = frames.data.dim();
        frames
            .data
            .into_shape_with_order((h, w, c))
            .map_err(|e| media_err(path, e))
    }

    fn load_video(&self, path: &Path, sampling: &Sampling) -> Result<Array4<u8>, ProcessorError> {
        let req = match (sampling.num_frames, sampling.fps) {
            (Some(_), Some(_)) => return Err(ProcessorError::Unsupported("`num_frames` and `fps` are mutually exclusive".into())),
            (Some(n), None) => SampleRequest::num_frames(n),
            (None, Some(f)) => SampleRequest::fps(f),
            (None, None) => SampleRequest::all(),
        };
        let mut reader = VideoReader::open(path, &self.open).map_err(|e| media_err(path, e))?;
        let frames = reader.sample(&req).map_err(|e| media_err(path, e))?;
        Ok(frames.data)
    }
}

/// Wraps a loader and adds up the time spent in it (the pipeline's "decode" stage).
pub struct TimedLoader {
    inner: Arc<dyn MediaLoader>,
    spent: Mutex<Duration>,
}

impl std::fmt::Debug for TimedLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimedLoader").field("spent", &self.elapsed()).finish()
    }
}

impl TimedLoader {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn MediaLoader>) -> Self {
        TimedLoader { inner, spent: Mutex::new(Duration::ZERO) }
    }

    /// Time spent loading since the last [`TimedLoader::reset`].
    pub fn elapsed(&self) -> Duration {
        *self.spent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Zeroes the timer.
    pub fn reset(&self) {
        *self.spent.lock().unwrap_or_else(|p| p.into_inner()) = Duration::ZERO;
    }

    fn add(&self, d: Duration) {
        *self.spent.lock().unwrap_or_else(|p| p.into_inner()) += d;
    }
}

impl MediaLoader for TimedLoader {
    fn load_image(&self, path: &Path) -> Result<Array3<u8>, ProcessorError> {
        let t = Instant::now();
        let r = self.inner.load_image(path);
        self.add(t.elapsed());
        r
    }

    fn load_video(&self, path: &Path, sampling: &Sampling) -> Result<Array4<u8>, ProcessorError> {
        let t = Instant::now();
        let r = self.inner.load_video(path, sampling);
        self.add(t.elapsed());
        r
    }
}
