//! # vidlm-media-source — where a request's images and videos may come from
//!
//! A server that takes media URLs from strangers must not read its own files, call its own
//! internal services, or decode a 10-hour video because someone asked. This crate is the one
//! place vidlm decides that, for `vidlm serve` and `vidlm batch` alike:
//!
//! 1. **Check** ([`MediaPolicy::check`]) a reference without fetching or decoding it:
//!    * `data:<type>;base64,<data>` — base64 only; refused by length before it is decoded;
//!    * `file://` URLs and plain paths — only inside the allowed folder
//!      ([`MediaPolicy::allowed_local_path`]), after percent-decoding, `..` and symlink
//!      resolution; regular files only; none at all without an allowed folder;
//!    * `http(s)://` — only to [allowed domains](MediaPolicy::allowed_domains), never to a
//!      loopback / private / link-local / multicast / unspecified address in any spelling
//!      (`localhost`, `127.1`, `0x7f000001`, `2130706433`, `[::1]`, `[::ffff:127.0.0.1]`,
//!      `0.0.0.0`); none at all without allowed domains.
//! 2. **Load** ([`MediaPolicy::load`]) the bytes with a content hash ([`ContentHash`], BLAKE3):
//!    downloads re-check every redirect hop, resolve names themselves and connect only to the
//!    checked addresses, and enforce the size limit while streaming and one deadline overall.
//! 3. **Decode** ([`decode_image`], [`decode_video`]) with vidlm-video-io, checking pixels per
//!    frame, duration and the number of sampled frames before any frame is decoded.
//!
//! Every failure is a [`MediaError`] whose [`category`](MediaError::category) says which HTTP
//! status family it belongs to.
//!
//! ```
//! use vidlm_media_source::{decode_video, FrameSampling, MediaError, MediaPolicy, Source};
//!
//! let assets = concat!(env!("CARGO_MANIFEST_DIR"), "/../../assets");
//! let policy = MediaPolicy::default().with_local_path(assets)?;
//!
//! // Inside the folder: fine, and decodable within the limits.
//! let src = policy.check(&format!("file://{assets}/demo.mp4"))?;
//! let video = decode_video(&policy.load(&src)?, &FrameSampling { num_frames: Some(4), ..Default::default() }, &policy.limits)?;
//! assert_eq!(video.shape()[0], 4);
//!
//! // Escapes, remote URLs without allowed domains, loopback spellings: refused.
//! assert!(matches!(policy.check(&format!("{assets}/../Cargo.toml")), Err(MediaError::OutsideAllowedPath)));
//! assert!(matches!(policy.check("http://example.com/a.mp4"), Err(MediaError::RemoteNotAllowed)));
//! let remote = MediaPolicy::default().with_domains(["example.com", "localhost"])?;
//! assert!(matches!(remote.check("http://0x7f000001/a.mp4"), Err(MediaError::AddressNotAllowed { .. })));
//! assert!(matches!(remote.check("http://localhost:8000/a.mp4"), Err(MediaError::AddressNotAllowed { .. })));
//! assert!(matches!(remote.check("https://example.com/a.mp4"), Ok(Source::Remote(_))));
//! # Ok::<(), MediaError>(())
//! ```
#![warn(missing_docs)]

mod decode;
mod error;
mod fetch;
pub mod net;
mod source;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use decode::{
    decode_image, decode_media, decode_video, decode_video_by, ContentHash, FrameSampling, Loaded,
    MediaData, SampledVideo,
};
pub use error::{ErrorCategory, MediaError};
pub use fetch::Lookup;
pub use source::Source;
pub use vidlm_model::{DecodedMedia, MediaKind};
pub use vidlm_video_io::DecodeDevice;

/// Limits on media, each with a sane default for a shared server.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaLimits {
    /// Bytes of one media item (decoded data URL, download, local file). Default 256 MiB.
    pub max_bytes: u64,
    /// Media items (images + videos) in one request. Default 16.
    pub max_items: usize,
    /// Frames sampled from one video: a hard cap (a request may lower it, never raise it).
    /// Default 32.
    pub max_frames: usize,
    /// Duration of one video, seconds. Default 3600.
    pub max_duration_s: f64,
    /// Pixels (`width * height`) of one frame or image, from the header before decoding.
    /// Default 16 777 216 (4096²).
    pub max_pixels: u64,
    /// One deadline for a whole download (DNS, connect, redirects, body). Default 30 s.
    pub fetch_timeout: Duration,
    /// Redirect hops followed. Default 5.
    pub max_redirects: usize,
    /// FFmpeg threads per decode (0 = FFmpeg's choice).
    pub decoder_threads: usize,
    /// Where videos are decoded (NVDEC with `Cuda`, falling back to software with one line on
    /// stderr; `--decode-device`).
    pub decode_device: vidlm_video_io::DecodeDevice,
}

impl Default for MediaLimits {
    fn default() -> Self {
        MediaLimits {
            max_bytes: 256 << 20,
            max_items: 16,
            max_frames: 32,
            max_duration_s: 3600.0,
            max_pixels: 4096 * 4096,
            fetch_timeout: Duration::from_secs(30),
            max_redirects: 5,
            decoder_threads: 0,
            decode_device: vidlm_video_io::DecodeDevice::Cpu,
        }
    }
}

/// What media sources are allowed, and the limits. The default allows `data:` URLs only.
#[derive(Clone, Default)]
pub struct MediaPolicy {
    /// The folder local files must be in (canonical). `None`: no local files.
    pub allowed_local_path: Option<PathBuf>,
    /// Host names (normalised: lower case, IDNA, IP literals in canonical form) remote media may
    /// come from, compared exactly (no implicit subdomains). Empty: no remote media.
    pub allowed_domains: Vec<String>,
    /// Let remote hosts resolve to loopback/private/link-local addresses (an intranet media
    /// server). Off by default; the domain allow-list still applies.
    pub allow_private_addresses: bool,
    /// Limits.
    pub limits: MediaLimits,
    /// DNS override (None: the system resolver).
    pub(crate) lookup: Option<Lookup>,
}

impl std::fmt::Debug for MediaPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaPolicy")
            .field("allowed_local_path", &self.allowed_local_path)
            .field("allowed_domains", &self.allowed_domains)
            .field("allow_private_addresses", &self.allow_private_addresses)
            .field("limits", &self.limits)
            .field("custom_resolver", &self.lookup.is_some())
            .finish()
    }
}

impl MediaPolicy {
    /// Allows local files inside `dir` (canonicalised now; it must be a directory).
    pub fn with_local_path(mut self, dir: impl AsRef<Path>) -> Result<Self, MediaError> {
        let dir = dir.as_ref();
        let real = std::fs::canonicalize(dir)
            .map_err(|e| MediaError::Io { path: dir.to_path_buf(), source: e })?;
        if !real.is_dir() {
            return Err(MediaError::NotAFile(format!(
                "{} (the allowed media path must be a directory)",
                dir.display()
            )));
        }
        self.allowed_local_path = Some(real);
        Ok(self)
    }

    /// Allows remote media from these hosts (`example.com`, `cdn.example.org`, `[2001:db8::1]`).
    /// Each is normalised like a URL host; a malformed one is an error.
    pub fn with_domains<S: AsRef<str>>(
        mut self,
        domains: impl IntoIterator<Item = S>,
    ) -> Result<Self, MediaError> {
        for d in domains {
            let d = d.as_ref().trim();
            if d.is_empty() {
                continue;
            }
            let host = url::Host::parse(d)
                .map_err(|e| MediaError::InvalidUrl(format!("allowed domain {d:?}: {e}")))?;
            let key = match &host {
                url::Host::Domain(s) => source::host_key(&url::Host::Domain(s.as_str())),
                url::Host::Ipv4(a) => a.to_string(),
                url::Host::Ipv6(a) => a.to_string(),
            };
            if !self.allowed_domains.contains(&key) {
                self.allowed_domains.push(key);
            }
        }
        Ok(self)
    }

    /// Lets allowed domains resolve to private/loopback addresses (an intranet media server).
    pub fn with_private_addresses(mut self, allow: bool) -> Self {
        self.allow_private_addresses = allow;
        self
    }

    /// Replaces the limits.
    pub fn with_limits(mut self, limits: MediaLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Resolves host names with `lookup` instead of the system resolver (a fixed hosts table;
    /// tests). The address rules apply to its answers as to DNS's.
    pub fn with_resolver(mut self, lookup: Lookup) -> Self {
        self.lookup = Some(lookup);
        self
    }

    /// Checks the number of media items of one request against the limit.
    pub fn check_count(&self, count: usize) -> Result<(), MediaError> {
        if count > self.limits.max_items {
            return Err(MediaError::TooManyItems { count, limit: self.limits.max_items });
        }
        Ok(())
    }
}
