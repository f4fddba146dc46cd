//! Media references → checked [`Source`]s: `data:` URLs, local paths, remote URLs.

use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use url::{Host, Url};

use crate::error::MediaError;
use crate::net::{is_local_name, non_public_reason};
use crate::MediaPolicy;

/// Where one media item comes from, after the policy's checks that need no network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A `data:` URL: its media type and its base64 payload (decoded by
    /// [`MediaPolicy::load`], after the size check).
    Data {
        /// The media type as written (`video/mp4`, `image/png`, may be empty).
        mime: String,
        /// The base64 text.
        base64: Arc<str>,
    },
    /// A regular file inside the allowed folder: the canonical path (no symlinks, no `..`).
    Local(PathBuf),
    /// An `http(s)://` URL whose host is an allowed domain (its addresses are checked when it is
    /// fetched, at every redirect hop).
    Remote(Url),
}

impl Source {
    /// A short description for logs and errors (never the data itself).
    pub fn describe(&self) -> String {
        match self {
            Source::Data { mime, base64 } => format!("data:{mime} ({} base64 chars)", base64.len()),
            Source::Local(p) => p.display().to_string(),
            Source::Remote(u) => u.to_string(),
        }
    }
}

/// Upper bound of the decoded size of a base64 text of `len` characters.
fn base64_decoded_len(len: usize) -> u64 {
    (len as u64).div_ceil(4) * 3
}

fn scheme_of(s: &str) -> Option<&str> {
    let (scheme, _) = s.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    // A one-letter "scheme" is a Windows drive letter, not a scheme.
    (first.is_ascii_alphabetic()
        && scheme.len() > 1
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)))
    .then_some(scheme)
}

impl MediaPolicy {
    /// Checks a media reference (a URL or a path) against the policy, without fetching or
    /// decoding anything. Local paths are resolved here (percent-decoding of `file://` URLs,
    /// `..`, symlinks) and must be regular files inside the allowed folder; remote hosts must be
    /// allowed domains and not be (or spell) a non-public address; `data:` URLs must be base64
    /// and within the byte limit.
    pub fn check(&self, reference: &str) -> Result<Source, MediaError> {
        let reference = reference.trim();
        if reference.is_empty() {
            return Err(MediaError::InvalidUrl("empty media URL".into()));
        }
        match scheme_of(reference).map(str::to_ascii_lowercase).as_deref() {
            Some("data") => self.check_data(reference),
            Some("http") | Some("https") => {
                let url =
                    Url::parse(reference).map_err(|e| MediaError::InvalidUrl(format!("{e}")))?;
                self.check_remote(&url)?;
                Ok(Source::Remote(url))
            }
            Some("file") => {
                if self.allowed_local_path.is_none() {
                    return Err(MediaError::LocalNotAllowed);
                }
                let url =
                    Url::parse(reference).map_err(|e| MediaError::InvalidUrl(format!("{e}")))?;
                let path = url.to_file_path().map_err(|_| {
                    MediaError::InvalidUrl(
                        "a file:// URL must name a local absolute path (no host)".into(),
                    )
                })?;
                self.check_local(&path).map(Source::Local)
            }
            Some(other) => Err(MediaError::UnsupportedScheme(other.to_string())),
            None => self.check_local(Path::new(reference)).map(Source::Local),
        }
    }

    fn check_data(&self, reference: &str) -> Result<Source, MediaError> {
        let rest = &reference[5..];
        let (meta, payload) = rest.split_once(',').ok_or_else(|| {
            MediaError::InvalidDataUrl("no `,` between the media type and the data".into())
        })?;
        let mut parts = meta.split(';');
        let mime = parts.next().unwrap_or("").trim().to_string();
        if !parts.any(|p| p.trim().eq_ignore_ascii_case("base64")) {
            return Err(MediaError::InvalidDataUrl(
                "only base64 data URLs are supported (data:<type>;base64,<data>)".into(),
            ));
        }
        let approx = base64_decoded_len(payload.len());
        if approx > self.limits.max_bytes.saturating_add(3) {
            return Err(MediaError::TooLarge { actual: approx, limit: self.limits.max_bytes });
        }
        if payload.is_empty() {
            return Err(MediaError::InvalidDataUrl("no data".into()));
        }
        Ok(Source::Data { mime, base64: Arc::from(payload) })
    }

    /// Checks a remote URL (scheme, credentials, host spelling, allowed domain). Called for the
    /// URL given and for every redirect target.
    pub fn check_remote(&self, url: &Url) -> Result<(), MediaError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(MediaError::UnsupportedScheme(url.scheme().to_string()));
        }
        if self.allowed_domains.is_empty() {
            return Err(MediaError::RemoteNotAllowed);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(MediaError::InvalidUrl("credentials in media URLs are not allowed".into()));
        }
        let host = url.host().ok_or_else(|| MediaError::InvalidUrl("no host".into()))?;
        let name = host_key(&host);
        if !self.allow_private_addresses {
            let literal: Option<IpAddr> = match host {
                Host::Ipv4(a) => Some(IpAddr::V4(a)),
                Host::Ipv6(a) => Some(IpAddr::V6(a)),
                Host::Domain(_) => None,
            };
            if let Some(ip) = literal {
                if let Some(reason) = non_public_reason(ip) {
                    return Err(MediaError::AddressNotAllowed {
                        host: name,
                        addr: ip.to_string(),
                        reason,
                    });
                }
            } else if is_local_name(&name) {
                return Err(MediaError::AddressNotAllowed {
                    host: name.clone(),
                    addr: name,
                    reason: "loopback",
                });
            }
        }
        if !self.allowed_domains.contains(&name) {
            return Err(MediaError::DomainNotAllowed(name));
        }
        Ok(())
    }

    /// Resolves a local path and checks that it is a regular file inside the allowed folder.
    fn check_local(&self, path: &Path) -> Result<PathBuf, MediaError> {
        let root = self.allowed_local_path.as_ref().ok_or(MediaError::LocalNotAllowed)?;
        let joined = if path.is_absolute() { path.to_path_buf() } else { root.join(path) };
        // Lexically first (so nothing outside the folder is even looked at), then for real
        // (symlinks).
        let lexical = normalize_lexically(&joined).ok_or(MediaError::OutsideAllowedPath)?;
        if !lexical.starts_with(root) {
            return Err(MediaError::OutsideAllowedPath);
        }
        let real = std::fs::canonicalize(&lexical).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => MediaError::NotFound(path.display().to_string()),
            _ => MediaError::Io { path: path.to_path_buf(), source: e },
        })?;
        if !real.starts_with(root) {
            return Err(MediaError::OutsideAllowedPath);
        }
        let meta = std::fs::metadata(&real)
            .map_err(|e| MediaError::Io { path: path.to_path_buf(), source: e })?;
        if !meta.is_file() {
            return Err(MediaError::NotAFile(path.display().to_string()));
        }
        if meta.len() > self.limits.max_bytes {
            return Err(MediaError::TooLarge { actual: meta.len(), limit: self.limits.max_bytes });
        }
        Ok(real)
    }
}

/// The normalised host string allowed-domain entries are compared with.
pub(crate) fn host_key(host: &Host<&str>) -> String {
    match host {
        Host::Domain(d) => d.trim_end_matches('.').to_ascii_lowercase(),
        Host::Ipv4(a) => a.to_string(),
        Host::Ipv6(a) => a.to_string(),
    }
}

/// `a/b/../c/./d` → `a/c/d` without touching the file system; `None` if `..` climbs above the
/// root.
fn normalize_lexically(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Prefix(_) | Component::RootDir => out.push(c.as_os_str()),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() || out.as_os_str().is_empty() {
                    return None;
                }
            }
            Component::Normal(s) => out.push(s),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_normalization() {
        assert_eq!(normalize_lexically(Path::new("/a/b/../c/./d")), Some(PathBuf::from("/a/c/d")));
        assert_eq!(normalize_lexically(Path::new("/a/../..")), None);
        assert_eq!(normalize_lexically(Path::new("/..")), None);
    }

    #[test]
    fn schemes() {
        assert_eq!(scheme_of("data:x"), Some("data"));
        assert_eq!(scheme_of("HTTP://x"), Some("HTTP"));
        assert_eq!(scheme_of("/a/b:c"), None);
        assert_eq!(scheme_of("C:\\x"), None);
        assert_eq!(scheme_of("video.mp4"), None);
        assert_eq!(scheme_of("gopher://x"), Some("gopher"));
    }

    #[test]
    fn base64_bound() {
        assert_eq!(base64_decoded_len(4), 3);
        assert_eq!(base64_decoded_len(5), 6);
        assert_eq!(base64_decoded_len(0), 0);
    }
}
