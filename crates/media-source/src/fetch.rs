//! Fetching remote media with the server-side request forgery rules.
//!
//! * Every hop (the URL given and each redirect target) passes [`MediaPolicy::check_remote`]:
//!   scheme, allowed domain, no credentials, no non-public literal address.
//! * Host names are resolved by this module, not by the HTTP client: all resolved addresses must
//!   be public, and the connection goes to exactly those addresses (ureq connects to what the
//!   resolver returns), so a DNS answer cannot change between the check and the connection.
//! * Redirects are followed by hand (at most `max_redirects`), never by the client.
//! * The size limit is checked against `Content-Length` first and enforced while reading; one
//!   deadline covers DNS, connecting, every hop and the body.

use std::io::Read;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use url::Url;

use crate::error::MediaError;
use crate::net::non_public_reason;
use crate::MediaPolicy;

/// A DNS look-up: host and port to addresses. [`MediaPolicy::with_resolver`] replaces the system
/// resolver with one of these (a fixed hosts table, a test double).
pub type Lookup = Arc<dyn Fn(&str, u16) -> std::io::Result<Vec<IpAddr>> + Send + Sync>;

fn system_lookup(host: &str, port: u16, timeout: Duration) -> std::io::Result<Vec<IpAddr>> {
    // std's resolver has no timeout: run it on a helper thread and stop waiting at the deadline.
    let (tx, rx) = std::sync::mpsc::channel();
    let h = host.to_string();
    std::thread::Builder::new()
        .name("vidlm-dns".into())
        .spawn(move || {
            let r = (h.as_str(), port)
                .to_socket_addrs()
                .map(|it| it.map(|a| a.ip()).collect::<Vec<_>>());
            let _ = tx.send(r);
        })
        .map_err(std::io::Error::other)?;
    rx.recv_timeout(timeout)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "DNS look-up timed out"))?
}

/// Splits ureq's `host:port` (IPv6 hosts in brackets).
fn split_netloc(netloc: &str) -> Option<(&str, u16)> {
    let (host, port) = netloc.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    Some((host, port))
}

struct Hop {
    status: u16,
    location: Option<String>,
    response: ureq::Response,
}

impl MediaPolicy {
    /// Downloads `url` under the policy: see the module docs. Returns the body.
    pub fn fetch(&self, url: &Url) -> Result<Vec<u8>, MediaError> {
        let limits = &self.limits;
        let deadline = Instant::now() + limits.fetch_timeout;
        let timeout_err = |u: &Url| MediaError::Timeout {
            url: u.to_string(),
            seconds: limits.fetch_timeout.as_secs_f64(),
        };
        let mut current = url.clone();
        for _hop in 0..=limits.max_redirects {
            self.check_remote(&current)?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(timeout_err(&current));
            }
            let hop = self.request(&current, remaining)?;
            if (300..400).contains(&hop.status) {
                let loc = hop.location.ok_or_else(|| MediaError::Fetch {
                    url: current.to_string(),
                    message: format!("HTTP {} without a Location header", hop.status),
                })?;
                current = current.join(&loc).map_err(|e| MediaError::Fetch {
                    url: current.to_string(),
                    message: format!("bad redirect target {loc:?}: {e}"),
                })?;
                continue;
            }
            if !(200..300).contains(&hop.status) {
                return Err(MediaError::Fetch {
                    url: current.to_string(),
                    message: format!("HTTP {}", hop.status),
                });
            }
            return self.read_body(hop.response, &current, deadline);
        }
        Err(MediaError::TooManyRedirects { url: url.to_string(), limit: limits.max_redirects })
    }

    fn request(&self, url: &Url, remaining: Duration) -> Result<Hop, MediaError> {
        // The resolver records why it refused, so the caller gets a typed error rather than
        // ureq's transport message.
        let refused: Arc<Mutex<Option<MediaError>>> = Arc::new(Mutex::new(None));
        let allow_private = self.allow_private_addresses;
        let lookup = self.lookup.clone();
        let refused_in = refused.clone();
        let resolver = move |netloc: &str| -> std::io::Result<Vec<SocketAddr>> {
            let (host, port) = split_netloc(netloc).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("bad address {netloc}"),
                )
            })?;
            let ips: Vec<IpAddr> = match host.parse::<IpAddr>() {
                Ok(ip) => vec![ip],
                Err(_) => match &lookup {
                    Some(f) => f(host, port)?,
                    None => system_lookup(host, port, remaining)?,
                },
            };
            if ips.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("no address for {host}"),
                ));
            }
            if !allow_private {
                // All or nothing: one non-public answer refuses the host (no fallback to the
                // "good" addresses of a name that also points inside).
                for ip in &ips {
                    if let Some(reason) = non_public_reason(*ip) {
                        let e = MediaError::AddressNotAllowed {
                            host: host.to_string(),
                            addr: ip.to_string(),
                            reason,
                        };
                        *refused_in.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::PermissionDenied,
                            "address not allowed",
                        ));
                    }
                }
            }
            Ok(ips.into_iter().map(|ip| SocketAddr::new(ip, port)).collect())
        };
        let agent = ureq::AgentBuilder::new()
            .resolver(resolver)
            .redirects(0)
            .timeout(remaining)
            .max_idle_connections(0)
            .user_agent(concat!("vidlm/", env!("CARGO_PKG_VERSION")))
            .build();
        let result = agent.request_url("GET", url).call();
        if let Some(e) = refused.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(e);
        }
        let response = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(t)) => {
                let msg = t.to_string();
                if matches!(t.kind(), ureq::ErrorKind::Io) && msg.contains("timed out")
                    || msg.contains("Timeout")
                {
                    return Err(MediaError::Timeout {
                        url: url.to_string(),
                        seconds: self.limits.fetch_timeout.as_secs_f64(),
                    });
                }
                return Err(MediaError::Fetch { url: url.to_string(), message: msg });
            }
        };
        Ok(Hop {
            status: response.status(),
            location: response.header("location").map(str::to_string),
            response,
        })
    }

    fn read_body(
        &self,
        response: ureq::Response,
        url: &Url,
        deadline: Instant,
    ) -> Result<Vec<u8>, MediaError> {
        let max = self.limits.max_bytes;
        if let Some(len) =
            response.header("content-length").and_then(|v| v.trim().parse::<u64>().ok())
        {
            if len > max {
                return Err(MediaError::TooLarge { actual: len, limit: max });
            }
        }
        let mut body = Vec::new();
        let mut reader = response.into_reader().take(max.saturating_add(1));
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if e.kind() == std::io::ErrorKind::TimedOut
                        || e.kind() == std::io::ErrorKind::WouldBlock =>
                {
                    return Err(MediaError::Timeout {
                        url: url.to_string(),
                        seconds: self.limits.fetch_timeout.as_secs_f64(),
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(MediaError::Fetch { url: url.to_string(), message: e.to_string() })
                }
            };
            if n == 0 {
                break;
            }
            body.extend_from_slice(&buf[..n]);
            if body.len() as u64 > max {
                return Err(MediaError::TooLarge { actual: body.len() as u64, limit: max });
            }
            if Instant::now() > deadline {
                return Err(MediaError::Timeout {
                    url: url.to_string(),
                    seconds: self.limits.fetch_timeout.as_secs_f64(),
                });
            }
        }
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netloc_split() {
        assert_eq!(split_netloc("a.com:80"), Some(("a.com", 80)));
        assert_eq!(split_netloc("[::1]:8080"), Some(("::1", 8080)));
        assert_eq!(split_netloc("127.0.0.1:1"), Some(("127.0.0.1", 1)));
        assert_eq!(split_netloc("nope"), None);
    }
}
