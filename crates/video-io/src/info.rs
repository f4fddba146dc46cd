//! Probe results.

use serde::Serialize;

/// Where [`VideoInfo::frame_count`] comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameCountSource {
    /// The container header (`nb_frames`); only used when [`crate::OpenOptions::trust_header`]
    /// is set and the header has a count.
    Header,
    /// A scan of every packet of the video stream (no decoding): exact, also for files whose
    /// header has no count (webm/mkv) or a wrong one. The default.
    PacketIndex,
}

/// What a video (or image) is, as probed on open. Serialises to the JSON `vidlm probe` prints.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VideoInfo {
    /// Container (demuxer) name as FFmpeg reports it, e.g. `"mov,mp4,m4a,3gp,3g2,mj2"`.
    pub container: String,
    /// Codec name, e.g. `"h264"`, `"hevc"`, `"vp9"`, `"av1"`, `"png"`.
    pub codec: String,
    /// Stored width in pixels (before rotation).
    pub width: u32,
    /// Stored height in pixels (before rotation).
    pub height: u32,
    /// Clockwise rotation (0, 90, 180 or 270 degrees) that displays the frames upright, from
    /// the stream's display matrix. Decoded frames have it applied already.
    pub rotation: u32,
    /// Whether the display matrix also mirrors the picture (left-right, applied before
    /// `rotation`); decoded frames have it applied already. Omitted from JSON when false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub mirrored: bool,
    /// Width of the returned (upright) frames.
    pub output_width: u32,
    /// Height of the returned (upright) frames.
    pub output_height: u32,
    /// Decoder pixel format, e.g. `"yuv420p"`, `"yuv420p10le"`.
    pub pixel_format: String,
    /// `"tv"` (limited), `"pc"` (full) or `"unknown"`.
    pub color_range: String,
    /// Colour matrix, e.g. `"bt709"`, `"unknown"` (converted as BT.601, like FFmpeg does).
    pub color_space: String,
    /// Stream time base as `[numerator, denominator]`.
    pub time_base: [i32; 2],
    /// Duration in seconds from the header (stream, else container); `None` if absent.
    pub duration: Option<f64>,
    /// Average frame rate: frames / (end - start) of the stream from the packet index (as
    /// torchcodec computes it after its exact scan); the header's rate when the stream has no
    /// timestamps. `None` if unknown.
    pub fps: Option<f64>,
    /// The header's average frame rate (`avg_frame_rate`), if any.
    pub header_fps: Option<f64>,
    /// Number of frames (in presentation order, as a decoder outputs them).
    pub frame_count: usize,
    /// Where `frame_count` comes from.
    pub frame_count_source: FrameCountSource,
    /// The header's own frame count, if it has one (may be 0 or wrong).
    pub header_frame_count: Option<u64>,
    /// Number of keyframes (random-access points) in the video stream.
    pub keyframes: usize,
    /// Presentation time of the first frame, seconds.
    pub start_time: f64,
    /// Whether the input also has an audio stream.
    pub has_audio: bool,
    /// Index of the chosen video stream within the container.
    pub stream_index: usize,
    /// Whether the data ends before the container says it should (or holds a broken packet).
    /// Strict requests fail on such files; lenient ones decode what is there.
    pub truncated: bool,
}
