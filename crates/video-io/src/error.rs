//! The crate's error type.

use std::path::PathBuf;

use vidlm_model::ErrorKind;

/// Which limit of [`crate::Limits`] a request ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LimitKind {
    /// Pixels per frame (`width * height`), checked against the header before any decoding.
    Pixels,
    /// Frames in one request.
    Frames,
    /// Size of an in-memory input in bytes.
    InputBytes,
    /// Bytes of the output frame buffer (`T * H * W * 3`).
    OutputBytes,
    /// Packets (frames) of the video stream in the index.
    Packets,
}

impl std::fmt::Display for LimitKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LimitKind::Pixels => "pixels per frame",
            LimitKind::Frames => "frames per request",
            LimitKind::InputBytes => "input bytes",
            LimitKind::OutputBytes => "output bytes",
            LimitKind::Packets => "packets in the video stream",
        })
    }
}

/// Why a [`crate::SampleRequest`] cannot be satisfied (defined with the sampling formulas in
/// `vidlm-model`).
pub use vidlm_model::sampling::SamplingError;

/// Everything that can go wrong opening, probing or decoding a video or image.
///
/// No input makes the crate panic or hang; every failure ends up here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VideoError {
    /// The path does not exist.
    #[error("file not found: {0}")]
    NotFound(PathBuf),
    /// The path exists but is not a regular file (a directory, FIFO, device...).
    #[error("not a regular file: {0}")]
    NotAFile(PathBuf),
    /// Reading the file failed at the OS level.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The input holds no bytes.
    #[error("input is empty (0 bytes)")]
    Empty,
    /// FFmpeg does not recognise the data as any container/image format, or the header is broken.
    #[error("unrecognised or invalid media data: {0}")]
    InvalidData(String),
    /// A URL scheme was given that the options do not allow (only local files by default).
    #[error("protocol not allowed: {0} (only local files are read unless OpenOptions::protocol_whitelist allows more)")]
    ProtocolNotAllowed(String),
    /// The input has no video (or image) stream, e.g. an audio-only file.
    #[error("no video stream in the input")]
    NoVideoStream,
    /// No decoder for the stream's codec.
    #[error("unsupported codec: {0}")]
    UnsupportedCodec(String),
    /// The data ends early: frames from `frame` on are missing or incomplete.
    /// (Lenient requests return the frames before it instead.)
    #[error("truncated input: the data ends at frame {frame} ({detail})")]
    Truncated {
        /// The first frame that is missing or incomplete.
        frame: usize,
        /// What FFmpeg reported.
        detail: String,
    },
    /// Data that cannot be demuxed or decoded; `frame` is the frame being reached, if known.
    #[error("corrupt data{}: {detail}", frame.map(|f| format!(" at frame {f}")).unwrap_or_default())]
    Corrupt {
        /// The frame being reached, if known.
        frame: Option<usize>,
        /// What FFmpeg reported.
        detail: String,
    },
    /// A [`crate::Limits`] value would be exceeded; checked before allocating.
    #[error("limit exceeded: {kind} is {actual}, the limit is {limit}")]
    LimitExceeded {
        /// Which limit.
        kind: LimitKind,
        /// The input's value.
        actual: u64,
        /// The limit's value.
        limit: u64,
    },
    /// The sampling request does not fit the video.
    #[error("invalid sampling: {0}")]
    InvalidSampling(#[from] SamplingError),
    /// An option value that FFmpeg cannot take (e.g. containing a NUL byte).
    #[error("invalid option value {0:?}")]
    InvalidOption(String),
    /// An allocation inside FFmpeg failed.
    #[error("out of memory")]
    OutOfMemory,
    /// A broken invariant of this crate (a bug, never the input's fault).
    #[error("internal error: {0}")]
    Internal(String),
    /// Any other FFmpeg failure, with the operation and FFmpeg's message.
    #[error("FFmpeg {op} failed: {message}")]
    Ffmpeg {
        /// The FFmpeg call that failed.
        op: &'static str,
        /// FFmpeg's error code (a negative `AVERROR`).
        code: i32,
        /// FFmpeg's message for the code.
        message: String,
    },
}

impl VideoError {
    /// The category of the error: missing files are [`ErrorKind::NotFound`], limits
    /// [`ErrorKind::LimitExceeded`], bad sampling requests and options
    /// [`ErrorKind::BadRequest`], OS and allocation failures and broken invariants
    /// [`ErrorKind::Internal`], and data FFmpeg cannot decode [`ErrorKind::UnsupportedMedia`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            VideoError::NotFound(_) | VideoError::NotAFile(_) => ErrorKind::NotFound,
            VideoError::LimitExceeded { .. } => ErrorKind::LimitExceeded,
            VideoError::InvalidSampling(s) => s.kind(),
            VideoError::ProtocolNotAllowed(_) | VideoError::InvalidOption(_) => {
                ErrorKind::BadRequest
            }
            VideoError::Io { .. } | VideoError::OutOfMemory | VideoError::Internal(_) => {
                ErrorKind::Internal
            }
            _ => ErrorKind::UnsupportedMedia,
        }
    }

    pub(crate) fn from_open_error(code: i32) -> Self {
        let msg = crate::ffi::err_text(code);
        if code == crate::ffi::ENOMEM {
            VideoError::OutOfMemory
        } else if code == crate::ffi::ENOENT {
            VideoError::NotFound(PathBuf::new())
        } else {
            VideoError::InvalidData(msg)
        }
    }
}
