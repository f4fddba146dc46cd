//! Which frames of a video to take: the request type and transformers' frame-index formulas,
//! once (video-io plans its decoding with them, the processor samples decoded arrays with them).
//!
//! The formulas follow transformers 5.x `video_utils.default_sample_indices_fn`
//! (see `hf-llava-family-spec.md` §1.2):
//!
//! * `num_frames = n`: `index_i = i * N // n` for `i in 0..n` (integer floor);
//! * `fps = f`: `n = max(1, int(N / video_fps * f))`, then the same formula;
//! * `n > N` is an error ([`SamplingError::TooManyFrames`]) unless the request clamps.

use crate::error::ErrorKind;
use serde::{Deserialize, Serialize};

/// How frames are chosen from a video.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// Every frame (in the range).
    #[default]
    All,
    /// `n` frames uniformly by index, transformers' formula `i * N // n`.
    NumFrames(usize),
    /// transformers' fps rule: `n = max(1, int(N / video_fps * fps))` frames, uniformly by index.
    Fps(f64),
    /// `fps` frames per second of presentation time: the frame shown at `t0 + k / fps` for each
    /// `k` (consecutive duplicates removed). Use this for variable-frame-rate video, where
    /// equal index steps are not equal time steps. Needs the frames' timestamps.
    FpsByTime(f64),
    /// Explicit frame indices (presentation order), returned in the given order.
    Indices(Vec<usize>),
    /// The frames shown at these presentation times (seconds), in the given order. Needs the
    /// frames' timestamps.
    Times(Vec<f64>),
}

/// Why a sampling request cannot be satisfied.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SamplingError {
    /// More frames were requested than the (range of the) video holds. transformers raises the
    /// same error; set `clamp` on the request to get every available frame instead.
    #[error("requested {requested} frames but only {available} are available (use clamp to cap the request)")]
    TooManyFrames {
        /// Frames requested.
        requested: usize,
        /// Frames the video (range) has.
        available: usize,
    },
    /// `num_frames` (or `max_frames`) is 0.
    #[error("the number of frames must be at least 1")]
    ZeroFrames,
    /// An explicit frame index is past the last frame.
    #[error("frame index {index} is out of range (the video has {count} frames)")]
    IndexOutOfRange {
        /// The index.
        index: usize,
        /// Frames in the video.
        count: usize,
    },
    /// A timestamp is negative, not finite, or past the end of the video.
    #[error("time {time}s is outside the video (0 to {duration}s)")]
    TimeOutOfRange {
        /// The time.
        time: f64,
        /// The video's duration.
        duration: f64,
    },
    /// `fps` must be finite and positive.
    #[error("invalid sampling fps {0}")]
    InvalidFps(f64),
    /// fps-based sampling needs the video's own frame rate, which is unknown.
    #[error("the video's frame rate is unknown, so fps-based sampling is impossible")]
    UnknownVideoFps,
    /// Time-based sampling needs the frames' timestamps, which decoded arrays do not have.
    #[error(
        "sampling by presentation time needs the frames' timestamps (decode the file instead)"
    )]
    NeedsTimestamps,
    /// The `start..end` time range is inverted, not finite, or holds no frame.
    #[error("the time range {start}..{end} s holds no frame")]
    EmptyRange {
        /// Range start.
        start: f64,
        /// Range end.
        end: f64,
    },
    /// A time range cannot be combined with explicit indices or timestamps.
    #[error("a start/end range cannot be combined with explicit indices or times")]
    RangeWithExplicitFrames,
    /// The video has no frames at all.
    #[error("the video has no frames")]
    NoFrames,
}

impl SamplingError {
    /// The category: a video without (usable) frames or frame rate is
    /// [`ErrorKind::UnsupportedMedia`]; every other case is a [`ErrorKind::BadRequest`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            SamplingError::NoFrames | SamplingError::UnknownVideoFps => ErrorKind::UnsupportedMedia,
            _ => ErrorKind::BadRequest,
        }
    }
}

/// transformers v5 `default_sample_indices_fn` index formula: `i * total // n` for `i in 0..n`.
///
/// ```
/// assert_eq!(vidlm_model::uniform_indices(300, 8), vec![0, 37, 75, 112, 150, 187, 225, 262]);
/// ```
pub fn uniform_indices(total: usize, n: usize) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    // u128 keeps i * total exact for any usize inputs.
    (0..n).map(|i| ((i as u128 * total as u128) / n as u128) as usize).collect()
}

/// transformers' frame count for fps sampling: `max(1, int(total / video_fps * fps))`.
pub fn fps_num_frames(total: usize, video_fps: f64, fps: f64) -> usize {
    let n = total as f64 / video_fps * fps;
    if n.is_finite() && n >= 1.0 {
        n.floor().min(usize::MAX as f64) as usize
    } else {
        1
    }
}

/// Subsamples a selection to at most `max` frames, uniformly (`i * L // max`).
pub fn cap_frames(v: Vec<usize>, max: Option<usize>) -> Result<Vec<usize>, SamplingError> {
    match max {
        Some(0) => Err(SamplingError::ZeroFrames),
        Some(m) if v.len() > m => {
            Ok(uniform_indices(v.len(), m).into_iter().map(|i| v[i]).collect())
        }
        _ => Ok(v),
    }
}

/// The frames an index-based request selects from `count` frames (of a video playing at
/// `video_fps`), capped at `max_frames`; with `clamp`, a request for more frames than exist
/// (or an index past the end) is capped instead of failing. Returns indices into `0..count`.
///
/// [`Sampling::FpsByTime`] and [`Sampling::Times`] need timestamps:
/// [`SamplingError::NeedsTimestamps`].
///
/// ```
/// use vidlm_model::{select_frames, Sampling};
/// assert_eq!(select_frames(&Sampling::NumFrames(8), 20, None, None, false)?, [0, 2, 5, 7, 10, 12, 15, 17]);
/// assert_eq!(select_frames(&Sampling::Fps(2.0), 20, Some(10.0), None, false)?, [0, 5, 10, 15]);
/// assert_eq!(select_frames(&Sampling::All, 9, None, Some(3), false)?, [0, 3, 6]);
/// # Ok::<(), vidlm_model::SamplingError>(())
/// ```
pub fn select_frames(
    sampling: &Sampling,
    count: usize,
    video_fps: Option<f64>,
    max_frames: Option<usize>,
    clamp: bool,
) -> Result<Vec<usize>, SamplingError> {
    if count == 0 {
        return Err(SamplingError::NoFrames);
    }
    let uniform = |n: usize| -> Result<Vec<usize>, SamplingError> {
        if n == 0 {
            return Err(SamplingError::ZeroFrames);
        }
        let mut n = n;
        if let Some(m) = max_frames {
            if m == 0 {
                return Err(SamplingError::ZeroFrames);
            }
            n = n.min(m);
        }
        if n > count {
            if clamp {
                n = count;
            } else {
                return Err(SamplingError::TooManyFrames { requested: n, available: count });
            }
        }
        Ok(uniform_indices(count, n))
    };
    match sampling {
        Sampling::All => uniform(max_frames.unwrap_or(count).min(count)),
        Sampling::NumFrames(n) => uniform(*n),
        Sampling::Fps(f) => {
            if !f.is_finite() || *f <= 0.0 {
                return Err(SamplingError::InvalidFps(*f));
            }
            let vf = video_fps
                .filter(|v| v.is_finite() && *v > 0.0)
                .ok_or(SamplingError::UnknownVideoFps)?;
            uniform(fps_num_frames(count, vf, *f))
        }
        Sampling::Indices(v) => {
            let mut out = Vec::with_capacity(v.len());
            for &i in v {
                if i >= count {
                    if clamp {
                        out.push(count - 1);
                        continue;
                    }
                    return Err(SamplingError::IndexOutOfRange { index: i, count });
                }
                out.push(i);
            }
            if out.is_empty() {
                return Err(SamplingError::ZeroFrames);
            }
            cap_frames(out, max_frames)
        }
        Sampling::FpsByTime(_) | Sampling::Times(_) => Err(SamplingError::NeedsTimestamps),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(
        s: Sampling,
        count: usize,
        fps: Option<f64>,
        max: Option<usize>,
    ) -> Result<Vec<usize>, SamplingError> {
        select_frames(&s, count, fps, max, false)
    }

    #[test]
    fn spec_test_vectors() {
        // hf-llava-family-spec.md §1.2
        assert_eq!(uniform_indices(300, 8), vec![0, 37, 75, 112, 150, 187, 225, 262]);
        assert_eq!(uniform_indices(100, 3), vec![0, 33, 66]);
        assert_eq!(uniform_indices(33, 8), vec![0, 4, 8, 12, 16, 20, 24, 28]);
        assert_eq!(uniform_indices(20, 8), vec![0, 2, 5, 7, 10, 12, 15, 17]);
        // n=7, N=17: v5 never returns n+1 indices
        assert_eq!(uniform_indices(17, 7).len(), 7);
        assert_eq!(sel(Sampling::Fps(2.0), 20, Some(10.0), None).unwrap(), vec![0, 5, 10, 15]);
    }

    #[test]
    fn fps_formula_truncates_and_is_at_least_one() {
        assert_eq!(fps_num_frames(100, 30.0, 1.0), 3); // 3.33 -> 3
        assert_eq!(fps_num_frames(10, 30.0, 0.1), 1); // 0.033 -> max(1, 0)
        assert_eq!(fps_num_frames(1800, 30.0, 2.0), 120);
    }

    #[test]
    fn errors_are_typed() {
        assert_eq!(
            sel(Sampling::NumFrames(11), 10, None, None),
            Err(SamplingError::TooManyFrames { requested: 11, available: 10 })
        );
        assert_eq!(
            select_frames(&Sampling::NumFrames(11), 10, None, None, true).unwrap(),
            (0..10).collect::<Vec<_>>()
        );
        assert_eq!(sel(Sampling::NumFrames(0), 10, None, None), Err(SamplingError::ZeroFrames));
        assert_eq!(sel(Sampling::Fps(2.0), 10, None, None), Err(SamplingError::UnknownVideoFps));
        assert_eq!(
            sel(Sampling::Fps(-1.0), 10, Some(10.0), None),
            Err(SamplingError::InvalidFps(-1.0))
        );
        assert_eq!(
            sel(Sampling::Times(vec![0.0]), 10, None, None),
            Err(SamplingError::NeedsTimestamps)
        );
        assert_eq!(sel(Sampling::All, 0, None, None), Err(SamplingError::NoFrames));
        assert_eq!(
            sel(Sampling::Indices(vec![10]), 10, None, None),
            Err(SamplingError::IndexOutOfRange { index: 10, count: 10 })
        );
        assert_eq!(
            SamplingError::TooManyFrames { requested: 2, available: 1 }.kind(),
            ErrorKind::BadRequest
        );
    }

    #[test]
    fn max_frames_caps_evenly() {
        assert_eq!(sel(Sampling::NumFrames(64), 100, None, Some(4)).unwrap(), vec![0, 25, 50, 75]);
        assert_eq!(sel(Sampling::All, 9, None, Some(3)).unwrap(), vec![0, 3, 6]);
        assert_eq!(sel(Sampling::All, 2, None, Some(3)).unwrap(), vec![0, 1]);
        assert_eq!(sel(Sampling::NumFrames(3), 100, None, Some(8)).unwrap(), vec![0, 33, 66]);
        assert_eq!(sel(Sampling::NumFrames(3), 100, None, Some(0)), Err(SamplingError::ZeroFrames));
        assert_eq!(sel(Sampling::Fps(5.0), 100, Some(10.0), Some(4)).unwrap(), vec![0, 25, 50, 75]);
        assert_eq!(sel(Sampling::Indices(vec![1, 2, 3, 4]), 9, None, Some(2)).unwrap(), vec![1, 3]);
    }
}
