//! Which frames to take: the request type and the planner (pure index arithmetic).
//!
//! [`Sampling`] and transformers' frame-index formulas (`i * N // n`, the fps rule) live in
//! `vidlm-model` ([`vidlm_model::sampling`]), shared with the processor; this module adds
//! what needs the decoded stream: a `start`/`end` time range, presentation-time sampling, and
//! the decoding strategy.

use crate::error::SamplingError;
use serde::{Deserialize, Serialize};
use vidlm_model::sampling::{cap_frames, select_frames};
pub use vidlm_model::sampling::{fps_num_frames, uniform_indices, Sampling};

/// One sampling call: what to take, from which time range, with which cap and strictness.
///
/// ```
/// use vidlm_video_io::SampleRequest;
/// let req = SampleRequest::num_frames(8).start(1.0).end(5.0).max_frames(32).clamp(true);
/// assert_eq!(req.max_frames, Some(32));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleRequest {
    /// Which frames: every one, a count, a rate, indices or times.
    pub sampling: Sampling,
    /// Only frames whose presentation time is `>= start` seconds.
    pub start: Option<f64>,
    /// Only frames whose presentation time is `< end` seconds.
    pub end: Option<f64>,
    /// At most this many frames: a larger selection is subsampled uniformly (`i * L // max`).
    pub max_frames: Option<usize>,
    /// Cap requests for more frames than exist (and indices/times past the end) instead of
    /// failing with [`SamplingError`].
    pub clamp: bool,
    /// Return the frames that could be decoded from a truncated or corrupt file (and list the
    /// others in [`crate::Frames::missing`]) instead of failing.
    pub lenient: bool,
    /// How to reach the frames; [`Strategy::Auto`] is right for everything but benchmarks.
    pub strategy: Strategy,
}

/// How the decoder reaches the requested frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Seek (with the crate's own packet index) to the keyframe before each group of requested
    /// frames and decode forward; continue sequentially instead when the next group is close.
    #[default]
    Auto,
    /// Decode every frame from the start and keep the requested ones (the OpenCV-loop
    /// baseline; also used automatically for streams without usable timestamps).
    Sequential,
}

impl SampleRequest {
    /// A request for `sampling` over the whole video, strict, with the automatic strategy.
    pub fn new(sampling: Sampling) -> Self {
        SampleRequest {
            sampling,
            start: None,
            end: None,
            max_frames: None,
            clamp: false,
            lenient: false,
            strategy: Strategy::Auto,
        }
    }
    /// Every frame.
    pub fn all() -> Self {
        Self::new(Sampling::All)
    }
    /// `n` frames uniformly by index (transformers' `num_frames`).
    pub fn num_frames(n: usize) -> Self {
        Self::new(Sampling::NumFrames(n))
    }
    /// transformers' `fps` sampling.
    pub fn fps(fps: f64) -> Self {
        Self::new(Sampling::Fps(fps))
    }
    /// Uniform in presentation time (for variable-frame-rate video).
    pub fn fps_by_time(fps: f64) -> Self {
        Self::new(Sampling::FpsByTime(fps))
    }
    /// Explicit frame indices.
    pub fn indices(indices: impl Into<Vec<usize>>) -> Self {
        Self::new(Sampling::Indices(indices.into()))
    }
    /// The frames shown at these times (seconds).
    pub fn times(times: impl Into<Vec<f64>>) -> Self {
        Self::new(Sampling::Times(times.into()))
    }
    /// Only frames at or after `seconds`.
    pub fn start(mut self, seconds: f64) -> Self {
        self.start = Some(seconds);
        self
    }
    /// Only frames before `seconds`.
    pub fn end(mut self, seconds: f64) -> Self {
        self.end = Some(seconds);
        self
    }
    /// At most `n` frames (a larger selection is subsampled uniformly).
    pub fn max_frames(mut self, n: usize) -> Self {
        self.max_frames = Some(n);
        self
    }
    /// Cap a request for more frames than exist instead of failing.
    pub fn clamp(mut self, yes: bool) -> Self {
        self.clamp = yes;
        self
    }
    /// Keep the frames a damaged file still gives instead of failing.
    pub fn lenient(mut self, yes: bool) -> Self {
        self.lenient = yes;
        self
    }
    /// How to reach the frames (see [`Strategy`]).
    pub fn strategy(mut self, s: Strategy) -> Self {
        self.strategy = s;
        self
    }
}

/// What the planner needs to know about a video: frame presentation times (seconds, in
/// presentation order, non-decreasing), its average frame rate and its end time.
pub(crate) struct Timeline<'a> {
    pub pts: &'a [f64],
    pub fps: Option<f64>,
    /// Presentation end of the last frame (seconds).
    pub end: f64,
}

/// The frame shown at time `t`: the last frame with `pts <= t` (the first frame before it).
fn frame_at(pts: &[f64], t: f64) -> usize {
    pts.partition_point(|&p| p <= t).saturating_sub(1)
}

/// Turns a request into frame indices (presentation order), before any decoding.
pub(crate) fn plan(req: &SampleRequest, tl: &Timeline<'_>) -> Result<Vec<usize>, SamplingError> {
    let total = tl.pts.len();
    if total == 0 {
        return Err(SamplingError::NoFrames);
    }
    let explicit = matches!(req.sampling, Sampling::Indices(_) | Sampling::Times(_));
    if explicit && (req.start.is_some() || req.end.is_some()) {
        return Err(SamplingError::RangeWithExplicitFrames);
    }
    // The candidate range [lo, hi) of frames with start <= pts < end.
    let (lo, hi) = {
        let start = req.start.unwrap_or(f64::NEG_INFINITY);
        let end = req.end.unwrap_or(f64::INFINITY);
        if start.is_nan() || end.is_nan() || start >= end {
            return Err(SamplingError::EmptyRange { start, end });
        }
        let lo = tl.pts.partition_point(|&p| p < start);
        let hi = tl.pts.partition_point(|&p| p < end);
        if lo >= hi {
            return Err(SamplingError::EmptyRange { start, end });
        }
        (lo, hi)
    };
    let count = hi - lo;
    match &req.sampling {
        // Index arithmetic over the candidate range (explicit indices have no range: lo = 0).
        Sampling::All | Sampling::NumFrames(_) | Sampling::Fps(_) | Sampling::Indices(_) => {
            let idx = select_frames(&req.sampling, count, tl.fps, req.max_frames, req.clamp)?;
            Ok(idx.into_iter().map(|i| lo + i).collect())
        }
        Sampling::FpsByTime(f) => {
            if !f.is_finite() || *f <= 0.0 {
                return Err(SamplingError::InvalidFps(*f));
            }
            let t0 = req.start.unwrap_or(tl.pts[lo]).max(tl.pts[lo]);
            let t1 = req.end.unwrap_or(tl.end).min(tl.end);
            let step = 1.0 / f;
            // Frame i is shown during [pts[i], pts[i+1]); it is taken when some sample time
            // t0 + k * step (k >= 0) falls in that interval. One pass over the frames, so the
            // cost is bounded by the frame count whatever the fps.
            let mut out: Vec<usize> = Vec::new();
            for i in lo..hi {
                let seg_start = tl.pts[i].max(t0);
                let seg_end = if i + 1 < hi { tl.pts[i + 1] } else { t1 }.min(t1);
                if seg_end <= seg_start {
                    continue;
                }
                let k = ((seg_start - t0) / step - 1e-9).ceil().max(0.0);
                if t0 + k * step < seg_end {
                    out.push(i);
                }
            }
            if out.is_empty() {
                out.push(lo);
            }
            cap_frames(out, req.max_frames)
        }
        Sampling::Times(v) => {
            let mut out = Vec::with_capacity(v.len());
            for &t in v {
                let bad = !t.is_finite() || t < 0.0 || t >= tl.end;
                if bad && (!req.clamp || t.is_nan()) {
                    return Err(SamplingError::TimeOutOfRange { time: t, duration: tl.end });
                }
                out.push(frame_at(tl.pts, t.clamp(0.0, tl.end)));
            }
            if out.is_empty() {
                return Err(SamplingError::ZeroFrames);
            }
            cap_frames(out, req.max_frames)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tl(n: usize, fps: f64) -> (Vec<f64>, f64) {
        ((0..n).map(|i| i as f64 / fps).collect(), n as f64 / fps)
    }

    fn run(req: SampleRequest, n: usize, fps: f64) -> Result<Vec<usize>, SamplingError> {
        let (pts, end) = tl(n, fps);
        plan(&req, &Timeline { pts: &pts, fps: Some(fps), end })
    }

    #[test]
    fn plans_follow_the_transformers_formulas() {
        // hf-llava-family-spec.md §1.2 (the formulas themselves are tested in vidlm-model).
        assert_eq!(
            run(SampleRequest::num_frames(8), 20, 10.0).unwrap(),
            vec![0, 2, 5, 7, 10, 12, 15, 17]
        );
        // fps=2 with {total_num_frames: 20, fps: 10} -> n = 4
        assert_eq!(run(SampleRequest::fps(2.0), 20, 10.0).unwrap(), vec![0, 5, 10, 15]);
        assert_eq!(run(SampleRequest::num_frames(7), 17, 10.0).unwrap().len(), 7);
    }

    #[test]
    fn too_many_frames_is_an_error_unless_clamped() {
        assert_eq!(
            run(SampleRequest::num_frames(11), 10, 10.0),
            Err(SamplingError::TooManyFrames { requested: 11, available: 10 })
        );
        assert_eq!(
            run(SampleRequest::num_frames(11).clamp(true), 10, 10.0).unwrap(),
            (0..10).collect::<Vec<_>>()
        );
        // fps above the video's own rate asks for more frames than exist
        assert!(matches!(
            run(SampleRequest::fps(60.0), 30, 30.0),
            Err(SamplingError::TooManyFrames { .. })
        ));
        assert_eq!(run(SampleRequest::num_frames(0), 10, 10.0), Err(SamplingError::ZeroFrames));
    }

    #[test]
    fn max_frames_caps_the_count() {
        assert_eq!(
            run(SampleRequest::num_frames(64).max_frames(4), 100, 25.0).unwrap(),
            vec![0, 25, 50, 75]
        );
        assert_eq!(run(SampleRequest::all().max_frames(3), 9, 25.0).unwrap(), vec![0, 3, 6]);
        assert_eq!(
            run(SampleRequest::indices(vec![1, 2, 3, 4]).max_frames(2), 9, 25.0).unwrap(),
            vec![1, 3]
        );
    }

    #[test]
    fn time_range_restricts_candidates() {
        // 10 fps, frames 20..40 lie in [2, 4)
        assert_eq!(
            run(SampleRequest::num_frames(4).start(2.0).end(4.0), 100, 10.0).unwrap(),
            vec![20, 25, 30, 35]
        );
        assert_eq!(
            run(SampleRequest::fps(1.0).start(2.0).end(4.0), 100, 10.0).unwrap(),
            vec![20, 30]
        );
        assert!(matches!(
            run(SampleRequest::num_frames(1).start(50.0), 100, 10.0),
            Err(SamplingError::EmptyRange { .. })
        ));
        assert!(matches!(
            run(SampleRequest::num_frames(1).start(3.0).end(2.0), 100, 10.0),
            Err(SamplingError::EmptyRange { .. })
        ));
        assert_eq!(
            run(SampleRequest::indices(vec![1]).start(1.0), 100, 10.0),
            Err(SamplingError::RangeWithExplicitFrames)
        );
    }

    #[test]
    fn explicit_indices_and_times() {
        assert_eq!(
            run(SampleRequest::indices(vec![9, 0, 5, 5]), 10, 10.0).unwrap(),
            vec![9, 0, 5, 5]
        );
        assert_eq!(
            run(SampleRequest::indices(vec![10]), 10, 10.0),
            Err(SamplingError::IndexOutOfRange { index: 10, count: 10 })
        );
        assert_eq!(run(SampleRequest::indices(vec![10]).clamp(true), 10, 10.0).unwrap(), vec![9]);
        assert_eq!(
            run(SampleRequest::times(vec![0.0, 0.55, 0.99]), 10, 10.0).unwrap(),
            vec![0, 5, 9]
        );
        assert!(matches!(
            run(SampleRequest::times(vec![1.0]), 10, 10.0),
            Err(SamplingError::TimeOutOfRange { .. })
        ));
        assert!(matches!(
            run(SampleRequest::times(vec![f64::NAN]).clamp(true), 10, 10.0),
            Err(SamplingError::TimeOutOfRange { .. })
        ));
    }

    #[test]
    fn fps_by_time_follows_presentation_time() {
        // variable frame rate: 10 frames in the first second, then 1 frame per second for 4 s
        let mut pts: Vec<f64> = (0..10).map(|i| i as f64 / 10.0).collect();
        pts.extend([1.0, 2.0, 3.0, 4.0]);
        let t = Timeline { pts: &pts, fps: Some(14.0 / 5.0), end: 5.0 };
        assert_eq!(plan(&SampleRequest::fps_by_time(1.0), &t).unwrap(), vec![0, 10, 11, 12, 13]);
        assert_eq!(plan(&SampleRequest::fps_by_time(2.0), &t).unwrap(), vec![0, 5, 10, 11, 12, 13]);
        // index-based sampling spends most frames on the dense first second
        assert_eq!(plan(&SampleRequest::num_frames(5), &t).unwrap(), vec![0, 2, 5, 8, 11]);
        assert!(matches!(
            plan(&SampleRequest::fps_by_time(0.0), &t),
            Err(SamplingError::InvalidFps(_))
        ));
        // absurd rates cost one pass over the frames and return each frame once
        assert_eq!(
            plan(&SampleRequest::fps_by_time(1e12), &t).unwrap(),
            (0..14).collect::<Vec<_>>()
        );
        // a third of a second: 0, 1/3, 2/3 fall in the first second's frames 0, 3, 6 (float-safe)
        assert_eq!(&plan(&SampleRequest::fps_by_time(3.0), &t).unwrap()[..4], &[0, 3, 6, 10]);
    }
}
