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

/// Which frame-index formula a video processor class samples with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameRule {
    /// `default_sample_indices_fn` (the LLaVA video processors): [`select_frames`].
    Uniform,
    /// `Qwen2VLVideoProcessor.sample_frames`: `num_frames` rounded half-to-even to a multiple of
    /// `temporal_patch_size`; `fps` clamped to `[min_frames, floor(min(max_frames, N)/tps)·tps]`
    /// and floored to a multiple of `tps`; indices `torch.arange(0, N, N/n).int()` in float32.
    TemporalPatchArange,
    /// `Qwen3VLVideoProcessor.sample_frames`: `num_frames` as given; `fps` gives
    /// `min(max(int(N/video_fps·fps), min_frames), max_frames, N)`; indices
    /// `np.linspace(0, N-1, n).round()` (half to even). An unknown video fps counts as 24.
    Linspace,
}

/// A video processor's frame settings (`temporal_patch_size`, `min_frames`, `max_frames`,
/// `do_sample_frames`, `fps`, `num_frames`: the config over the class defaults).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct FrameBudget {
    /// Frames per temporal patch.
    pub temporal_patch_size: usize,
    /// `min_frames`.
    pub min_frames: usize,
    /// `max_frames`.
    pub max_frames: usize,
    /// `do_sample_frames`: sample by the defaults below when the request names no sampling.
    pub do_sample_frames: bool,
    /// Default `fps`.
    pub fps: Option<f64>,
    /// Default `num_frames`.
    pub num_frames: Option<usize>,
}

/// Python's `round(x)` (half to even) for a non-negative finite float.
fn round_half_even(x: f64) -> f64 {
    x.round_ties_even()
}

/// The frames a request selects from `total` frames (playing at `video_fps`) under a video
/// processor's own formula `rule`, with the processor's `budget`. `cap` (`--max-frames`) caps
/// `num_frames` before the formula and lowers `max_frames` for `fps` sampling. [`Sampling::All`]
/// means the processor's defaults: every frame unless `do_sample_frames` (then its `fps` /
/// `num_frames`), as transformers does when the call names neither.
///
/// ```
/// use vidlm_model::sampling::{family_frames, FrameBudget, FrameRule};
/// use vidlm_model::Sampling;
/// let b = FrameBudget { temporal_patch_size: 2, min_frames: 4, max_frames: 768, do_sample_frames: false, fps: None, num_frames: None };
/// // num_frames 5 rounds half to even to 4; float32 arange over 30 frames.
/// assert_eq!(family_frames(FrameRule::TemporalPatchArange, &Sampling::NumFrames(5), 30, Some(30.0), &b, None)?, [0, 7, 15, 22]);
/// assert_eq!(family_frames(FrameRule::Linspace, &Sampling::NumFrames(5), 30, Some(30.0), &b, None)?, [0, 7, 14, 22, 29]);
/// # Ok::<(), vidlm_model::SamplingError>(())
/// ```
pub fn family_frames(
    rule: FrameRule,
    sampling: &Sampling,
    total: usize,
    video_fps: Option<f64>,
    budget: &FrameBudget,
    cap: Option<usize>,
) -> Result<Vec<usize>, SamplingError> {
    if total == 0 {
        return Err(SamplingError::NoFrames);
    }
    if cap == Some(0) {
        return Err(SamplingError::ZeroFrames);
    }
    if let Sampling::Fps(f) = sampling {
        if !f.is_finite() || *f <= 0.0 {
            return Err(SamplingError::InvalidFps(*f));
        }
    }
    let max_frames = cap.map_or(budget.max_frames, |c| c.min(budget.max_frames));
    let capped = |n: usize| cap.map_or(n, |c| n.min(c));
    // The request, with transformers' defaults filled in (None: every frame).
    let request = match sampling {
        Sampling::All if budget.do_sample_frames => match (budget.num_frames, budget.fps) {
            (Some(n), _) => Some(Sampling::NumFrames(n)),
            (None, Some(f)) => Some(Sampling::Fps(f)),
            (None, None) => None,
        },
        Sampling::All => None,
        other => Some(other.clone()),
    };
    match rule {
        FrameRule::Uniform => select_frames(sampling, total, video_fps, cap, false),
        FrameRule::TemporalPatchArange => {
            let tps = budget.temporal_patch_size.max(1);
            let n = match request {
                None => match cap {
                    // Every frame, or the cap's count by the num_frames formula.
                    Some(c) if c < total => round_half_even(c as f64 / tps as f64) as usize * tps,
                    _ => return Ok((0..total).collect()),
                },
                Some(Sampling::NumFrames(n)) => {
                    round_half_even(capped(n) as f64 / tps as f64) as usize * tps
                }
                Some(Sampling::Fps(f)) => {
                    let vf = video_fps
                        .filter(|v| v.is_finite() && *v > 0.0)
                        .ok_or(SamplingError::UnknownVideoFps)?;
                    let max_n = (max_frames.min(total) / tps * tps) as f64;
                    let n = total as f64 / vf * f;
                    let n = n.max(budget.min_frames as f64).min(max_n).min(total as f64);
                    (n / tps as f64).floor() as usize * tps
                }
                Some(Sampling::Indices(_) | Sampling::FpsByTime(_) | Sampling::Times(_)) => {
                    return select_frames(sampling, total, video_fps, cap, false)
                }
                Some(Sampling::All) => total,
            };
            if n == 0 {
                return Err(SamplingError::ZeroFrames);
            }
            if n > total {
                return Err(SamplingError::TooManyFrames { requested: n, available: total });
            }
            // torch.arange(0, total, total / n) in float32 (computed in double, stored as
            // float), then .int() (truncation).
            let step = total as f64 / n as f64;
            let len = (total as f64 / step).ceil() as usize;
            Ok((0..len).map(|i| ((i as f64 * step) as f32) as usize).collect())
        }
        FrameRule::Linspace => {
            let n = match request {
                None => capped(total.max(budget.min_frames).min(budget.max_frames)),
                Some(Sampling::NumFrames(n)) => capped(n),
                Some(Sampling::Fps(f)) => {
                    let vf = video_fps.filter(|v| v.is_finite() && *v > 0.0).unwrap_or(24.0);
                    let n = (total as f64 / vf * f) as usize;
                    n.max(budget.min_frames).min(max_frames).min(total)
                }
                Some(Sampling::Indices(_) | Sampling::FpsByTime(_) | Sampling::Times(_)) => {
                    return select_frames(sampling, total, video_fps, cap, false)
                }
                Some(Sampling::All) => total,
            };
            if n == 0 {
                return Err(SamplingError::ZeroFrames);
            }
            Ok(linspace_round(total, n))
        }
    }
}

/// `np.linspace(0, total - 1, n).round().astype(int)`.
pub fn linspace_round(total: usize, n: usize) -> Vec<usize> {
    if n == 1 {
        return vec![0];
    }
    let last = total.saturating_sub(1);
    let step = last as f64 / (n - 1) as f64;
    let mut out: Vec<usize> =
        (0..n).map(|i| round_half_even(i as f64 * step).max(0.0) as usize).collect();
    if let Some(l) = out.last_mut() {
        *l = last;
    }
    out
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

    const QB: FrameBudget = FrameBudget {
        temporal_patch_size: 2,
        min_frames: 4,
        max_frames: 768,
        do_sample_frames: false,
        fps: None,
        num_frames: None,
    };

    #[test]
    fn temporal_patch_arange_matches_torch() {
        let f = |s: Sampling, total: usize, fps: Option<f64>, cap: Option<usize>| {
            family_frames(FrameRule::TemporalPatchArange, &s, total, fps, &QB, cap)
        };
        // round(5/2) = 2 (half to even) -> 4 frames; round(7/2) = 4 -> 8.
        assert_eq!(f(Sampling::NumFrames(5), 30, None, None).unwrap(), [0, 7, 15, 22]);
        assert_eq!(f(Sampling::NumFrames(7), 30, None, None).unwrap().len(), 8);
        // torch.arange(0, 7, 7/6).int(): float32 values 0, 1.1666666, 2.3333333, 3.5, 4.6666665, 5.8333335
        assert_eq!(f(Sampling::NumFrames(6), 7, None, None).unwrap(), [0, 1, 2, 3, 4, 5]);
        // fps: 30 frames at 10 fps, 2 fps -> 6 frames; min_frames 4 lifts 1 -> 4.
        assert_eq!(f(Sampling::Fps(2.0), 30, Some(10.0), None).unwrap(), [0, 5, 10, 15, 20, 25]);
        assert_eq!(f(Sampling::Fps(0.1), 30, Some(10.0), None).unwrap().len(), 4);
        // max frames floor(min(max, N)/2)*2: 5 frames -> at most 4.
        assert_eq!(f(Sampling::Fps(30.0), 5, Some(10.0), None).unwrap().len(), 4);
        assert_eq!(f(Sampling::Fps(2.0), 30, Some(10.0), Some(3)).unwrap().len(), 2);
        assert_eq!(f(Sampling::All, 9, None, None).unwrap(), (0..9).collect::<Vec<_>>());
        assert_eq!(f(Sampling::Fps(2.0), 30, None, None), Err(SamplingError::UnknownVideoFps));
        assert!(matches!(
            f(Sampling::NumFrames(40), 30, None, None),
            Err(SamplingError::TooManyFrames { .. })
        ));
        assert_eq!(f(Sampling::NumFrames(1), 30, None, None), Err(SamplingError::ZeroFrames));
    }

    #[test]
    fn linspace_matches_numpy() {
        let f = |s: Sampling, total: usize, fps: Option<f64>, cap: Option<usize>| {
            family_frames(FrameRule::Linspace, &s, total, fps, &QB, cap)
        };
        assert_eq!(f(Sampling::NumFrames(5), 30, None, None).unwrap(), [0, 7, 14, 22, 29]);
        // np.linspace(0, 9, 5) = 0, 2.25, 4.5, 6.75, 9 -> round half to even: 0, 2, 4, 7, 9
        assert_eq!(f(Sampling::NumFrames(5), 10, None, None).unwrap(), [0, 2, 4, 7, 9]);
        assert_eq!(f(Sampling::NumFrames(3), 30, None, Some(2)).unwrap(), [0, 29]);
        // fps with unknown video fps counts 24.
        assert_eq!(f(Sampling::Fps(2.0), 48, None, None).unwrap().len(), 4);
        assert_eq!(f(Sampling::Fps(2.0), 300, Some(30.0), None).unwrap().len(), 20);
        let sampled = QB_SAMPLE;
        assert_eq!(
            family_frames(FrameRule::Linspace, &Sampling::All, 300, Some(30.0), &sampled, None)
                .unwrap()
                .len(),
            20
        );
    }

    const QB_SAMPLE: FrameBudget = FrameBudget { do_sample_frames: true, fps: Some(2.0), ..QB };
}
