//! The crate's error type, with the HTTP-ish category a server maps it to.

use std::path::PathBuf;

use vidlm_model::ErrorKind;

/// What kind of failure a [`MediaError`] is, for the `code` of its error object (the status
/// comes from [`MediaError::kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCategory {
    /// The source is not allowed by the policy (a 400 `media_not_allowed` on the wire).
    Forbidden,
    /// The source is malformed, missing, unreadable or not decodable (400, 404 for a missing
    /// file, 415 for data that cannot be decoded).
    BadRequest,
    /// The media is bigger than a size limit (413).
    TooLarge,
    /// A count/duration/pixel limit (413, code `media_limit_exceeded`).
    LimitExceeded,
    /// The remote server failed or timed out (a 4xx to the client too: the request's media is
    /// unusable; 400).
    Upstream,
}

/// Everything that can go wrong between a media reference and decoded frames.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// The reference is not a URL or path vidlm understands (or is malformed).
    #[error("invalid media URL: {0}")]
    InvalidUrl(String),
    /// A scheme other than `data:`, `file:`, `http:`, `https:` (or a plain path).
    #[error(
        "unsupported media URL scheme `{0}` (use data:, file://, a path, http:// or https://)"
    )]
    UnsupportedScheme(String),
    /// Local media given, but no allowed local folder is configured.
    #[error("local media files are not allowed (the server has no allowed local media path)")]
    LocalNotAllowed,
    /// The resolved path is outside the allowed folder (after percent-decoding, `..` and
    /// symlinks).
    #[error("media path is outside the allowed local media folder")]
    OutsideAllowedPath,
    /// A local media file does not exist (or is a dangling link).
    #[error("media file not found: {0}")]
    NotFound(String),
    /// The path is a directory, device, FIFO, ...
    #[error("media path is not a regular file: {0}")]
    NotAFile(String),
    /// Reading a local file failed.
    #[error("cannot read media file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Remote media given, but no allowed domains are configured.
    #[error("remote media URLs are not allowed (the server has no allowed media domains)")]
    RemoteNotAllowed,
    /// The URL's host is not one of the allowed domains.
    #[error("media host `{0}` is not an allowed media domain")]
    DomainNotAllowed(String),
    /// The host is, or resolves to, an address that is not public.
    #[error("media host `{host}` resolves to a {reason} address ({addr}), which is not allowed")]
    AddressNotAllowed {
        /// The host as written in the URL (normalised).
        host: String,
        /// The address.
        addr: String,
        /// Loopback, private, ...
        reason: &'static str,
    },
    /// A `data:` URL that is not base64 or whose payload is not valid base64.
    #[error("invalid data URL: {0}")]
    InvalidDataUrl(String),
    /// The media is bigger than the byte limit (checked before decoding it in full).
    #[error("media is too large: {actual} bytes, the limit is {limit} bytes")]
    TooLarge {
        /// Bytes (known or at least seen).
        actual: u64,
        /// The limit.
        limit: u64,
    },
    /// Fetching remote media failed (connection, TLS, HTTP status, malformed response).
    #[error("fetching {url} failed: {message}")]
    Fetch {
        /// The URL of the failing hop.
        url: String,
        /// What happened.
        message: String,
    },
    /// The fetch did not finish within the time limit.
    #[error("fetching {url} timed out after {seconds:.1} s")]
    Timeout {
        /// The URL.
        url: String,
        /// The limit.
        seconds: f64,
    },
    /// More redirects than allowed.
    #[error("too many redirects fetching {url} (limit {limit})")]
    TooManyRedirects {
        /// The original URL.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// Too many media items in one request.
    #[error("too many media items: {count}, the limit is {limit}")]
    TooManyItems {
        /// Items given.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The video is longer than the duration limit (from its header/index, before decoding).
    #[error("video is {seconds:.1} s long, the limit is {limit:.1} s")]
    TooLong {
        /// Duration.
        seconds: f64,
        /// The limit.
        limit: f64,
    },
    /// More frames asked for than the server's per-video cap.
    #[error("{requested} frames requested per video, the limit is {limit}")]
    TooManyFrames {
        /// Frames asked for.
        requested: usize,
        /// The cap.
        limit: usize,
    },
    /// The frame sampling settings are invalid (e.g. `fps` not positive).
    #[error("invalid frame sampling: {0}")]
    InvalidSampling(String),
    /// Decoding failed (corrupt or unsupported media, or a video-io limit such as pixels per
    /// frame).
    #[error("cannot decode {what}: {source}")]
    Decode {
        /// "video" or "image".
        what: &'static str,
        /// video-io's error.
        #[source]
        source: vidlm_video_io::VideoError,
    },
}

impl MediaError {
    /// The category of the error (see [`ErrorKind`]), which gives the status `vidlm serve`
    /// answers: sources the policy refuses are [`ErrorKind::Forbidden`] (403); sizes, counts,
    /// durations and frames over a limit [`ErrorKind::LimitExceeded`] (413); a missing local
    /// file [`ErrorKind::NotFound`] (404); media that cannot be decoded take video-io's
    /// category ([`vidlm_video_io::VideoError::kind`]: undecodable data is
    /// [`ErrorKind::UnsupportedMedia`], 415); everything else (malformed URLs and data URLs,
    /// unsupported schemes, unreadable files, remote fetches that fail)
    /// [`ErrorKind::BadRequest`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            MediaError::NotFound(_) => ErrorKind::NotFound,
            MediaError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            MediaError::Decode { source, .. } => source.kind(),
            _ => match self.category() {
                // A source the policy forbids is the request's fault: 400, as OpenAI, vLLM and
                // llama.cpp answer (`code()` says which rule: `media_not_allowed`).
                ErrorCategory::Forbidden => ErrorKind::BadRequest,
                ErrorCategory::TooLarge | ErrorCategory::LimitExceeded => ErrorKind::LimitExceeded,
                _ => ErrorKind::BadRequest,
            },
        }
    }

    /// The machine-readable `code` of the error object: `media_not_allowed`,
    /// `media_too_large`, `media_limit_exceeded`, `media_fetch_failed` or `invalid_media`.
    pub fn code(&self) -> &'static str {
        match self.category() {
            ErrorCategory::Forbidden => "media_not_allowed",
            ErrorCategory::TooLarge => "media_too_large",
            ErrorCategory::LimitExceeded => "media_limit_exceeded",
            ErrorCategory::Upstream => "media_fetch_failed",
            _ => "invalid_media",
        }
    }

    /// The finer category behind the `code` of the error object (`media_not_allowed`,
    /// `media_too_large`, `media_limit_exceeded`, `media_fetch_failed`, `invalid_media`).
    pub fn category(&self) -> ErrorCategory {
        use vidlm_video_io::{LimitKind, VideoError};
        match self {
            MediaError::LocalNotAllowed
            | MediaError::OutsideAllowedPath
            | MediaError::RemoteNotAllowed
            | MediaError::DomainNotAllowed(_)
            | MediaError::AddressNotAllowed { .. } => ErrorCategory::Forbidden,
            MediaError::TooLarge { .. } => ErrorCategory::TooLarge,
            MediaError::TooManyItems { .. }
            | MediaError::TooLong { .. }
            | MediaError::TooManyFrames { .. } => ErrorCategory::LimitExceeded,
            MediaError::Decode { source: VideoError::LimitExceeded { kind, .. }, .. } => match kind
            {
                LimitKind::InputBytes => ErrorCategory::TooLarge,
                _ => ErrorCategory::LimitExceeded,
            },
            MediaError::Fetch { .. }
            | MediaError::Timeout { .. }
            | MediaError::TooManyRedirects { .. } => ErrorCategory::Upstream,
            _ => ErrorCategory::BadRequest,
        }
    }
}
