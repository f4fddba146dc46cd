//! The media source rules against real files, symlinks and a live local HTTP server (loopback
//! only; the server is started by each test).

use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vidlm_media_source::{
    decode_image, decode_video, ErrorCategory, FrameSampling, MediaError, MediaLimits, MediaPolicy,
    Source,
};

fn assets() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets")
}

fn demo_bytes() -> Vec<u8> {
    std::fs::read(assets().join("demo.mp4")).expect("assets/demo.mp4")
}

/// A folder with `inside/demo.mp4`, `inside/sub/`, `secret.txt` next to `inside`, and symlinks.
struct Tree {
    _dir: tempfile::TempDir,
    root: PathBuf,
    inside: PathBuf,
}

fn tree() -> Tree {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().canonicalize().expect("canonical tempdir");
    let inside = root.join("inside");
    std::fs::create_dir_all(inside.join("sub")).expect("mkdir");
    std::fs::write(inside.join("demo.mp4"), demo_bytes()).expect("write");
    std::fs::write(root.join("secret.txt"), b"secret").expect("write");
    std::os::unix::fs::symlink(root.join("secret.txt"), inside.join("escape.mp4"))
        .expect("symlink");
    std::os::unix::fs::symlink(&root, inside.join("up")).expect("symlink");
    std::os::unix::fs::symlink(inside.join("demo.mp4"), inside.join("sub/ok.mp4"))
        .expect("symlink");
    std::os::unix::fs::symlink(root.join("missing"), inside.join("dangling.mp4")).expect("symlink");
    Tree { _dir: dir, root, inside }
}

fn local_policy(t: &Tree) -> MediaPolicy {
    MediaPolicy::default().with_local_path(&t.inside).expect("allowed path")
}

#[test]
fn local_files_only_inside_the_allowed_folder() {
    let t = tree();
    let p = local_policy(&t);
    let inside = t.inside.display().to_string();
    let ok = [
        format!("{inside}/demo.mp4"),
        format!("file://{inside}/demo.mp4"),
        format!("file://{inside}/sub/../demo.mp4"),
        format!("file://{inside}/%64emo.mp4"),
        "demo.mp4".to_string(),
        "sub/ok.mp4".to_string(),
        format!("file://localhost{inside}/demo.mp4"),
    ];
    for r in &ok {
        match p.check(r) {
            Ok(Source::Local(path)) => assert_eq!(path, t.inside.join("demo.mp4"), "{r}"),
            other => panic!("{r}: {other:?}"),
        }
    }
    let outside = [
        format!("{inside}/../secret.txt"),
        format!("file://{inside}/../secret.txt"),
        format!("file://{inside}/%2e%2e/secret.txt"),
        format!("file://{inside}/%2E%2E/%2e%2e/%2e%2e/etc/passwd"),
        format!("file://{inside}/sub/..%2f..%2fsecret.txt"),
        "../secret.txt".to_string(),
        format!("{inside}/escape.mp4"),
        format!("{inside}/up/secret.txt"),
        "/etc/passwd".to_string(),
        "file:///etc/passwd".to_string(),
        format!("{}/secret.txt", t.root.display()),
    ];
    for r in &outside {
        match p.check(r) {
            Err(MediaError::OutsideAllowedPath) => {}
            // `..%2f..%2f` stays one (non-existent) file name inside the folder: not found.
            Err(MediaError::NotFound(_)) if r.contains("%2f") => {}
            other => panic!("{r}: expected a refusal, got {other:?}"),
        }
        if let Err(e) = p.check(r) {
            assert!(
                matches!(e.category(), ErrorCategory::Forbidden | ErrorCategory::BadRequest),
                "{r}"
            );
        }
    }
    assert!(matches!(p.check(&format!("{inside}/nope.mp4")), Err(MediaError::NotFound(_))));
    assert!(matches!(
        p.check(&format!("{inside}/dangling.mp4")),
        Err(MediaError::NotFound(_) | MediaError::OutsideAllowedPath)
    ));
    assert!(matches!(p.check(&format!("{inside}/sub")), Err(MediaError::NotAFile(_))));
    assert!(matches!(p.check("file://otherhost/x.mp4"), Err(MediaError::InvalidUrl(_))));
    assert!(matches!(p.check("ftp://example.com/x.mp4"), Err(MediaError::UnsupportedScheme(_))));
    assert!(matches!(p.check(""), Err(MediaError::InvalidUrl(_))));
    // No allowed folder: no local file at all, whatever the spelling.
    let none = MediaPolicy::default();
    for r in [format!("{inside}/demo.mp4"), format!("file://{inside}/demo.mp4"), "demo.mp4".into()]
    {
        let e = none.check(&r).expect_err("refused");
        assert!(matches!(e, MediaError::LocalNotAllowed), "{r}: {e:?}");
        assert_eq!(e.category(), ErrorCategory::Forbidden);
    }
    // Size limit on local files, before reading them.
    let small = local_policy(&t).with_limits(MediaLimits { max_bytes: 100, ..Default::default() });
    assert!(matches!(small.check("demo.mp4"), Err(MediaError::TooLarge { .. })));
}

#[test]
fn local_file_loads_hashes_and_decodes() {
    let t = tree();
    let p = local_policy(&t);
    let src = p.check("demo.mp4").expect("ok");
    let loaded = p.load(&src).expect("load");
    let data = demo_bytes();
    assert_eq!(loaded.len, data.len() as u64);
    // The same bytes as a data URL hash the same (the vision cache keys on content).
    let b64 = base64_encode(&data);
    let d = p.check(&format!("data:video/mp4;base64,{b64}")).expect("data url");
    let dl = p.load(&d).expect("load data");
    assert_eq!(dl.hash, loaded.hash);
    let s = FrameSampling { num_frames: Some(4), ..Default::default() };
    let a = decode_video(&loaded, &s, &p.limits).expect("decode file");
    let b = decode_video(&dl, &s, &p.limits).expect("decode bytes");
    assert_eq!(a.shape()[0], 4);
    assert_eq!(a, b, "file and in-memory decoding give the same frames");
}

fn base64_encode(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[test]
fn data_urls() {
    let p = MediaPolicy::default();
    // Garbage: not base64, bad base64, valid base64 of garbage bytes.
    assert!(matches!(p.check("data:video/mp4,rawtext"), Err(MediaError::InvalidDataUrl(_))));
    assert!(matches!(p.check("data:video/mp4;base64"), Err(MediaError::InvalidDataUrl(_))));
    let bad = p.check("data:video/mp4;base64,@@@not*base64@@@").expect("checked lazily");
    assert!(matches!(p.load(&bad), Err(MediaError::InvalidDataUrl(_))));
    let junk = p
        .check(&format!("data:video/mp4;base64,{}", base64_encode(b"this is not a video at all")))
        .expect("ok");
    let loaded = p.load(&junk).expect("bytes");
    let e = decode_video(&loaded, &FrameSampling::default(), &p.limits).expect_err("garbage");
    assert!(matches!(e, MediaError::Decode { .. }), "{e:?}");
    assert_eq!(e.category(), ErrorCategory::BadRequest);
    let e = decode_image(&loaded, &p.limits).expect_err("garbage image");
    assert!(matches!(e, MediaError::Decode { .. }));
    // Too large: refused from the length alone, before decoding.
    let small =
        MediaPolicy::default().with_limits(MediaLimits { max_bytes: 1000, ..Default::default() });
    let big = format!("data:video/mp4;base64,{}", "A".repeat(100_000));
    let e = small.check(&big).expect_err("too large");
    assert!(matches!(e, MediaError::TooLarge { .. }));
    assert_eq!(e.category(), ErrorCategory::TooLarge);
    // Whitespace inside base64 is tolerated.
    let spaced = p
        .check(&format!(
            "data:image/png;base64,{}",
            base64_encode(&demo_bytes()[..300]).replace('A', "A ")
        ))
        .expect("ok");
    assert!(p.load(&spaced).is_ok());
}

#[test]
fn video_limits_are_checked_before_decoding() {
    let t = tree();
    let base = local_policy(&t);
    let src = base.check("demo.mp4").expect("ok");
    let loaded = base.load(&src).expect("load");
    // More frames than the cap.
    let e = decode_video(
        &loaded,
        &FrameSampling { num_frames: Some(33), ..Default::default() },
        &base.limits,
    )
    .expect_err("cap");
    assert!(matches!(e, MediaError::TooManyFrames { requested: 33, limit: 32 }), "{e:?}");
    // fps sampling is capped evenly by max_frames instead.
    let capped = FrameSampling { fps: Some(1000.0), max_frames: Some(3), ..Default::default() };
    assert_eq!(decode_video(&loaded, &capped, &base.limits).expect("capped").shape()[0], 3);
    // All frames of the video, more than the cap: refused (the caller sets max_frames to cap).
    let limits = MediaLimits { max_frames: 2, ..Default::default() };
    let e = decode_video(&loaded, &FrameSampling::default(), &limits).expect_err("too many");
    assert!(matches!(e, MediaError::TooManyFrames { .. }), "{e:?}");
    // Duration.
    let limits = MediaLimits { max_duration_s: 0.1, ..Default::default() };
    let e = decode_video(
        &loaded,
        &FrameSampling { num_frames: Some(1), ..Default::default() },
        &limits,
    )
    .expect_err("too long");
    assert!(matches!(e, MediaError::TooLong { .. }), "{e:?}");
    assert_eq!(e.category(), ErrorCategory::LimitExceeded);
    // Pixels per frame (from the header).
    let limits = MediaLimits { max_pixels: 100, ..Default::default() };
    let e = decode_video(
        &loaded,
        &FrameSampling { num_frames: Some(1), ..Default::default() },
        &limits,
    )
    .expect_err("pixels");
    assert_eq!(e.category(), ErrorCategory::LimitExceeded, "{e:?}");
    let e = decode_image(&loaded, &limits).expect_err("pixels");
    assert_eq!(e.category(), ErrorCategory::LimitExceeded, "{e:?}");
    // Too many items.
    assert!(matches!(base.check_count(17), Err(MediaError::TooManyItems { count: 17, limit: 16 })));
    assert!(base.check_count(16).is_ok());
}

/// A tiny loopback HTTP responder for the fetch tests: it answers each connection by path with
/// canned responses and counts connections.
struct Upstream {
    port: u16,
    hits: Arc<AtomicUsize>,
}

type Handler = Arc<dyn Fn(&str, u16) -> Vec<u8> + Send + Sync>;

fn upstream(handler: Handler) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            h.fetch_add(1, Ordering::SeqCst);
            let handler = handler.clone();
            std::thread::spawn(move || serve_one(&mut conn, &handler, port));
        }
    });
    Upstream { port, hits }
}

fn serve_one(conn: &mut TcpStream, handler: &Handler, port: u16) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16384 {
        match conn.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => return,
        }
    }
    let text = String::from_utf8_lossy(&head);
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
    let resp = handler(&path, port);
    let _ = conn.write_all(&resp);
}

fn ok_response(body: &[u8]) -> Vec<u8> {
    let mut r =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
            .into_bytes();
    r.extend_from_slice(body);
    r
}

fn media_server() -> Upstream {
    let body = Arc::new(demo_bytes());
    upstream(Arc::new(move |path: &str, port: u16| {
        match path {
        "/demo.mp4" => ok_response(&body),
        "/redirect-loopback" => format!("HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{port}/demo.mp4\r\nContent-Length: 0\r\n\r\n").into_bytes(),
        "/redirect-other" => format!("HTTP/1.1 302 Found\r\nLocation: http://other.test:{port}/demo.mp4\r\nContent-Length: 0\r\n\r\n").into_bytes(),
        "/redirect-ok" => b"HTTP/1.1 301 Moved\r\nLocation: /demo.mp4\r\nContent-Length: 0\r\n\r\n".to_vec(),
        "/loop" => b"HTTP/1.1 302 Found\r\nLocation: /loop\r\nContent-Length: 0\r\n\r\n".to_vec(),
        "/big-declared" => b"HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\nxxxx".to_vec(),
        "/big-streamed" => {
            let mut r = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
            r.extend(std::iter::repeat_n(b'x', 300_000));
            r
        }
        "/slow" => {
            std::thread::sleep(Duration::from_secs(4));
            ok_response(b"late")
        }
        "/missing" => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
        _ => b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n".to_vec(),
    }
    }))
}

#[test]
fn every_loopback_spelling_is_refused_without_a_connection() {
    let s = media_server();
    let port = s.port;
    let spellings = [
        "localhost",
        "LOCALHOST.",
        "sub.localhost",
        "127.0.0.1",
        "127.1",
        "127.0.1",
        "0x7f000001",
        "0x7f.0.0.1",
        "0177.0.0.1",
        "2130706433",
        "017700000001",
        "[::1]",
        "[0:0:0:0:0:0:0:1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "0.0.0.0",
        "0",
        "[::]",
        "10.0.0.1",
        "192.168.0.1",
        "169.254.169.254",
        "[fe80::1]",
    ];
    // Allow every spelling as a domain, so the refusal is the address rule's, not the list's.
    let p = MediaPolicy::default().with_domains(spellings).expect("domains");
    for host in spellings {
        let url = format!("http://{host}:{port}/demo.mp4");
        let e = match p.check(&url) {
            Err(e) => e,
            Ok(src) => p.load(&src).expect_err(&url),
        };
        assert!(matches!(e, MediaError::AddressNotAllowed { .. }), "{url}: {e:?}");
        assert_eq!(e.category(), ErrorCategory::Forbidden);
    }
    assert_eq!(s.hits.load(Ordering::SeqCst), 0, "no connection was made");
}

fn lookup(table: &'static [(&'static str, &'static str)]) -> vidlm_media_source::Lookup {
    Arc::new(move |host: &str, _port: u16| {
        let ips: Vec<IpAddr> = table
            .iter()
            .filter(|(h, _)| *h == host)
            .filter_map(|(_, ip)| ip.parse().ok())
            .collect();
        if ips.is_empty() {
            Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no such host"))
        } else {
            Ok(ips)
        }
    })
}

#[test]
fn names_resolving_inside_are_refused_and_addresses_are_pinned() {
    let s = media_server();
    let port = s.port;
    // A public-looking name whose DNS answer includes a loopback address (rebinding): refused.
    let p = MediaPolicy::default()
        .with_domains(["media.test", "mixed.test"])
        .expect("domains")
        .with_resolver(lookup(&[
            ("media.test", "127.0.0.1"),
            ("mixed.test", "93.184.216.34"),
            ("mixed.test", "127.0.0.1"),
        ]));
    for host in ["media.test", "mixed.test"] {
        let src = p.check(&format!("http://{host}:{port}/demo.mp4")).expect("allowed domain");
        let e = p.load(&src).expect_err("resolves inside");
        assert!(matches!(e, MediaError::AddressNotAllowed { .. }), "{host}: {e:?}");
    }
    assert_eq!(s.hits.load(Ordering::SeqCst), 0);
    // Allowed private addresses (an intranet server): the connection goes to the address the
    // policy's resolver returned — `media.test` exists nowhere else.
    let intranet = p.clone().with_private_addresses(true);
    let src = intranet.check(&format!("http://media.test:{port}/demo.mp4")).expect("ok");
    let loaded = intranet.load(&src).expect("fetched");
    assert_eq!(loaded.len, demo_bytes().len() as u64);
    assert_eq!(s.hits.load(Ordering::SeqCst), 1);
    // Not an allowed domain.
    assert!(matches!(
        intranet.check(&format!("http://other.test:{port}/demo.mp4")),
        Err(MediaError::DomainNotAllowed(_))
    ));
    assert!(matches!(
        intranet.check(&format!("http://user:pw@media.test:{port}/x")),
        Err(MediaError::InvalidUrl(_))
    ));
    // No allowed domains at all.
    assert!(matches!(
        MediaPolicy::default().check("https://example.com/v.mp4"),
        Err(MediaError::RemoteNotAllowed)
    ));
}

#[test]
fn redirects_sizes_and_time_are_checked() {
    let s = media_server();
    let port = s.port;
    let p = MediaPolicy::default()
        .with_private_addresses(true)
        .with_domains(["media.test"])
        .expect("domains")
        .with_resolver(lookup(&[("media.test", "127.0.0.1"), ("other.test", "127.0.0.1")]))
        .with_limits(MediaLimits {
            max_bytes: 200_000,
            fetch_timeout: Duration::from_secs(2),
            ..Default::default()
        });
    let url = |path: &str| p.check(&format!("http://media.test:{port}{path}")).expect("allowed");
    // A redirect within the allowed domain is followed.
    assert_eq!(p.load(&url("/redirect-ok")).expect("redirected").len, demo_bytes().len() as u64);
    // Each hop is checked: a redirect to a host that is not allowed (by name or by address).
    assert!(matches!(p.load(&url("/redirect-other")), Err(MediaError::DomainNotAllowed(_))));
    assert!(matches!(p.load(&url("/redirect-loopback")), Err(MediaError::DomainNotAllowed(_))));
    assert!(matches!(p.load(&url("/loop")), Err(MediaError::TooManyRedirects { limit: 5, .. })));
    // Sizes: declared, and enforced while streaming.
    assert!(matches!(
        p.load(&url("/big-declared")),
        Err(MediaError::TooLarge { actual: 999999999, .. })
    ));
    let e = p.load(&url("/big-streamed")).expect_err("too large");
    assert!(matches!(e, MediaError::TooLarge { .. }), "{e:?}");
    // HTTP errors.
    assert!(matches!(p.load(&url("/missing")), Err(MediaError::Fetch { .. })));
    // Time: one deadline.
    let t0 = Instant::now();
    let e = p.load(&url("/slow")).expect_err("slow");
    assert!(matches!(e, MediaError::Timeout { .. } | MediaError::Fetch { .. }), "{e:?}");
    assert!(
        t0.elapsed() < Duration::from_millis(3900),
        "gave up at the deadline, took {:?}",
        t0.elapsed()
    );
    assert_eq!(e.category(), ErrorCategory::Upstream);
}

#[test]
fn allowed_domains_are_normalised() {
    let p = MediaPolicy::default()
        .with_domains(["Example.COM", "127.1", "[::FFFF:7f00:1]", " ", "bücher.example"])
        .expect("ok");
    assert_eq!(
        p.allowed_domains,
        ["example.com", "127.0.0.1", "::ffff:127.0.0.1", "xn--bcher-kva.example"]
    );
    assert!(MediaPolicy::default().with_domains(["bad host!"]).is_err());
    assert!(matches!(p.check("https://EXAMPLE.com./a.png"), Ok(Source::Remote(_))));
}
