//! Timing of media loading (the processor's `VideoIoLoader`: FFmpeg through `vidlm-video-io`).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ndarray::{Array3, Array4};
use vidlm_model::Sampling;
use vidlm_processor::MediaLoader;
use vidlm_processor::ProcessorError;

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

    fn load_video(
        &self,
        path: &Path,
        sampling: &Sampling,
        max_frames: Option<usize>,
    ) -> Result<Array4<u8>, ProcessorError> {
        let t = Instant::now();
        let r = self.inner.load_video(path, sampling, max_frames);
        self.add(t.elapsed());
        r
    }

    fn probe_video(&self, path: &Path) -> Result<(usize, Option<f64>), ProcessorError> {
        let t = Instant::now();
        let r = self.inner.probe_video(path);
        self.add(t.elapsed());
        r
    }
}
