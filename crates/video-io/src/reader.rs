//! `VideoReader`: open, probe, index, sample.

use crate::error::{LimitKind, SamplingError, VideoError};
use crate::ffi::{self, ff, Avio, Decoder, Dict, Frame, Input, Packet, Rgb, StreamParams};
use crate::info::{FrameCountSource, VideoInfo};
use crate::sampling::{plan, SampleRequest, Strategy, Timeline};
use ndarray::Array4;
use std::collections::{HashMap, HashSet};
use std::ffi::c_int;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Resource limits, all checked before the memory they guard is allocated.
///
/// **Memory bound.** With these limits, the peak memory of opening and sampling one input is
/// at most a fixed overhead (the process, FFmpeg's libraries: about 100 MiB) plus
/// `max_pixels × 8 bytes` for each output frame and each frame the decoder may hold (reference
/// frames, frame threads, reordering: at most ~24), plus about 200 bytes per packet of the
/// index (at most `max_packets`), plus the input itself for [`VideoReader::from_bytes`].
/// `crates/video-io/tests/corpus.rs` measures the peak RSS of every corpus file against this
/// bound. A picture over `max_pixels` is refused from its header (container, codec
/// parameters, or the still image's own header) before anything is decoded.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Maximum `width * height` of a frame, checked against the header before decoding (and
    /// enforced inside the decoder too). Default 40 M (covers 8K UHD / DCI 8K).
    pub max_pixels: u64,
    /// Maximum frames one request may return. Default 10 000.
    pub max_frames: usize,
    /// Maximum size of an in-memory input ([`VideoReader::from_bytes`]). Default 2 GiB.
    pub max_input_bytes: u64,
    /// Maximum size of one request's output buffer (`T * H * W * 3`). Default 16 GiB.
    pub max_output_bytes: u64,
    /// Maximum packets (frames) of the video stream the index holds; a file with more is
    /// refused while it is scanned. Default 2 000 000 (18.5 hours at 30 fps, ~400 MB of
    /// index); a frame-count bomb (millions of tiny frames in a small file) stops here.
    pub max_packets: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pixels: 40_000_000,
            max_frames: 10_000,
            max_input_bytes: 2 << 30,
            max_output_bytes: 16 << 30,
            max_packets: 2_000_000,
        }
    }
}

/// How to open an input.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OpenOptions {
    /// Resource limits checked before and while decoding.
    pub limits: Limits,
    /// FFmpeg decoder threads per video (frame + slice threading); 0 lets FFmpeg choose.
    pub threads: usize,
    /// Independent decoders a seeking request may spread its GOPs over (each with its own
    /// demuxer and one FFmpeg thread, joined into the same output). 0 (the default): as many
    /// as the machine has cores when [`OpenOptions::threads`] is 0, else `threads`; 1: one
    /// decoder with FFmpeg's frame threads, as before. Used only when the requested frames lie
    /// in two or more GOPs, the decoder runs in software and the input is a local file or bytes
    /// (not a URL, which every worker would fetch again); frames are identical either way (each
    /// GOP decodes from its keyframe), only where the work runs differs.
    #[serde(default)]
    pub gop_workers: usize,
    /// FFmpeg `protocol_whitelist` for URL inputs. Default `"file"`: local files only, no
    /// network. A URL (`scheme://...`) is only attempted when its scheme is listed here.
    /// Local files and in-memory inputs are read by this crate through a custom AVIO
    /// context and never let FFmpeg open anything (a playlist or reference inside them fails).
    pub protocol_whitelist: String,
    /// Take the frame count from the container header when it has one, instead of scanning
    /// the packets. Faster to open, but wrong for files whose header lies; default `false`.
    pub trust_header: bool,
    /// Where video frames are decoded (`--decode-device`). [`DecodeDevice::Cuda`] uses FFmpeg's
    /// CUDA hwaccel (NVDEC) and downloads each frame to system memory before the same RGB
    /// conversion, so frames equal the software path's; where the codec or the machine has no
    /// NVDEC the video decodes in software and [`VideoReader::decode_fallback`] says why (also
    /// printed once per process on stderr).
    #[serde(default)]
    pub decode_device: DecodeDevice,
}

/// Where [`VideoReader`] decodes video frames ([`OpenOptions::decode_device`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecodeDevice {
    /// FFmpeg's software decoders (frame and slice threads).
    #[default]
    Cpu,
    /// NVDEC through FFmpeg's CUDA hwaccel, falling back to software where it is absent.
    Cuda,
}

impl std::str::FromStr for DecodeDevice {
    type Err = VideoError;
    fn from_str(s: &str) -> Result<Self, VideoError> {
        match s {
            "cpu" => Ok(DecodeDevice::Cpu),
            "cuda" => Ok(DecodeDevice::Cuda),
            other => Err(VideoError::InvalidOption(format!(
                "decode device `{other}` (expected `cpu` or `cuda`)"
            ))),
        }
    }
}

/// Prints the NVDEC fallback notice once per process (one line on stderr).
fn notice_decode_fallback(reason: &str) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        eprintln!("[vidlm] --decode-device cuda: NVDEC unavailable, decoding on the CPU: {reason}")
    });
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            limits: Limits::default(),
            threads: 0,
            gop_workers: 0,
            protocol_whitelist: "file".into(),
            trust_header: false,
            decode_device: DecodeDevice::Cpu,
        }
    }
}

/// Decoded RGB frames with their positions in the video.
#[derive(Clone, Debug)]
pub struct Frames {
    /// `(T, H, W, 3)` RGB24, upright (rotation applied), row-major.
    pub data: Array4<u8>,
    /// Frame index (presentation order) of each of the `T` frames.
    pub indices: Vec<usize>,
    /// Presentation time of each frame in seconds (stream timestamps times the time base).
    pub pts: Vec<f64>,
    /// Requested indices that could not be decoded (only non-empty for lenient requests).
    pub missing: Vec<usize>,
    /// Whether the input was truncated/corrupt (only possible for lenient requests).
    pub truncated: bool,
}

/// What [`VideoReader::sample_into`] wrote: [`Frames`] without the pixels, which are in the
/// caller's buffer (the first `indices.len()` frame slots).
#[derive(Clone, Debug, PartialEq)]
pub struct SampledFrames {
    /// Frame index (presentation order) of each frame written.
    pub indices: Vec<usize>,
    /// Presentation time of each frame in seconds.
    pub pts: Vec<f64>,
    /// Requested indices that could not be decoded (only non-empty for lenient requests).
    pub missing: Vec<usize>,
    /// Whether the input was truncated/corrupt (only possible for lenient requests).
    pub truncated: bool,
}

impl Frames {
    /// Number of frames `T`.
    pub fn len(&self) -> usize {
        self.indices.len()
    }
    /// Whether no frame was returned.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
    /// `(height, width)` of the frames.
    pub fn size(&self) -> (usize, usize) {
        let s = self.data.shape();
        (s[1], s[2])
    }
}

/// What a reader reads.
#[derive(Clone)]
pub(crate) enum Source {
    /// A local file, read by this crate through a custom AVIO context (FFmpeg opens nothing
    /// itself, so a playlist or reference inside the file cannot reach other files).
    /// `name` is what FFmpeg sees, for probing by extension only.
    File { path: PathBuf, name: String },
    /// A URL whose scheme [`OpenOptions::protocol_whitelist`] allows: FFmpeg's protocols read
    /// it (and whatever it references, under the same whitelist).
    Url(String),
    /// Bytes in memory.
    Bytes(Arc<[u8]>),
}

#[derive(Clone, Copy, Debug)]
struct Pkt {
    pts: Option<i64>,
    dts: Option<i64>,
    key: bool,
    /// Packet duration in time-base units (0 when unknown).
    dur: i64,
}

impl Pkt {
    fn ts(&self) -> Option<i64> {
        self.pts.or(self.dts)
    }
}

/// The packet index of the video stream, built by reading (not decoding) every packet.
#[derive(Clone)]
struct Index {
    /// Packets in decode order (including ones the decoder discards).
    pkts: Vec<Pkt>,
    /// For each frame in presentation order: the decode position of its packet.
    frame_pkt: Vec<usize>,
    /// Presentation time of each frame in seconds.
    frame_sec: Vec<f64>,
    /// Packet timestamp -> decode position.
    pkt_by_ts: HashMap<i64, usize>,
    /// Frame timestamp -> frame index.
    frame_by_ts: HashMap<i64, usize>,
    /// Decode positions of keyframes.
    keyframes: Vec<usize>,
    /// Whether every frame has a unique timestamp (else frames are found by counting).
    seekable: bool,
    /// Why the file counts as truncated/corrupt, if it does.
    truncated: Option<String>,
    /// Presentation end of the last frame, seconds.
    end_sec: f64,
}

/// The result of the index's demux pass.
struct Scan {
    /// Packets in decode order.
    pkts: Vec<Pkt>,
    /// Per packet: flagged `AV_PKT_FLAG_DISCARD` (decoded but never shown).
    discard: Vec<bool>,
    /// Why the data counts as truncated/corrupt, if it does.
    truncated: Option<String>,
}

impl Index {
    /// The index of a reader whose demux pass has not run yet.
    fn empty() -> Self {
        Index { seekable: false, ..Index::from_packets(Vec::new(), None, false) }
    }

    /// Index stage 2: keyframes and the timestamp → packet map. The index is seekable (frames
    /// are found by timestamp) when every packet has a unique timestamp and, for codecs that
    /// reorder frames (`reorders`: B-frames), a presentation timestamp. Without one, a
    /// reordering stream's decode timestamps say nothing about presentation order (AVI with
    /// MPEG-4 part 2 or H.264 B-frames: DivX/XviD files): frames are then counted in decoder
    /// output order, as the ffmpeg CLI numbers them.
    fn from_packets(pkts: Vec<Pkt>, truncated: Option<String>, reorders: bool) -> Self {
        let mut idx = Index {
            pkt_by_ts: HashMap::with_capacity(pkts.len()),
            frame_by_ts: HashMap::with_capacity(pkts.len()),
            keyframes: pkts.iter().enumerate().filter(|(_, p)| p.key).map(|(i, _)| i).collect(),
            frame_pkt: Vec::new(),
            frame_sec: Vec::new(),
            seekable: true,
            truncated,
            end_sec: 0.0,
            pkts,
        };
        for (i, p) in idx.pkts.iter().enumerate() {
            match p.ts() {
                Some(t) => {
                    if idx.pkt_by_ts.insert(t, i).is_some() {
                        idx.seekable = false;
                    }
                }
                None => idx.seekable = false,
            }
        }
        if reorders && idx.pkts.iter().any(|p| p.pts.is_none()) {
            idx.seekable = false;
        }
        idx
    }

    /// Index stage 3: frames in presentation order (the packets that are shown, `shown`, sorted
    /// by timestamp) with their times in seconds.
    fn order_frames(&mut self, shown: &[usize], fps: f64, time_base: f64) {
        if self.seekable {
            let mut order: Vec<(i64, usize)> =
                shown.iter().filter_map(|&i| self.pkts[i].ts().map(|t| (t, i))).collect();
            order.sort_unstable();
            for (f, &(t, i)) in order.iter().enumerate() {
                self.frame_by_ts.insert(t, f);
                self.frame_pkt.push(i);
                self.frame_sec.push(t as f64 * time_base);
            }
        } else {
            // No unique timestamps: frames are counted in decoder output order. Their times
            // are the sorted packet timestamps when every packet has one, else index / fps.
            let mut ts: Vec<i64> = shown.iter().filter_map(|&i| self.pkts[i].ts()).collect();
            let all_ts = ts.len() == shown.len();
            ts.sort_unstable();
            for (f, &i) in shown.iter().enumerate() {
                self.frame_pkt.push(i);
                self.frame_sec.push(if all_ts { ts[f] as f64 * time_base } else { f as f64 / fps });
            }
        }
    }

    /// Index stage 4: the presentation end of the stream. Returns the average frame step
    /// (seconds) it was derived from.
    fn set_end(&mut self, shown: &[usize], fps: f64, time_base: f64) -> f64 {
        let n = self.frame_sec.len();
        let last = self.frame_sec.last().copied().unwrap_or(0.0);
        let step = if n >= 2 { (last - self.frame_sec[0]) / (n - 1) as f64 } else { 1.0 / fps };
        self.end_sec = last + if step.is_finite() && step > 0.0 { step } else { 1.0 / fps };
        // End of the stream as torchcodec's exact scan computes it: max(pts + duration).
        if shown.iter().all(|&i| self.pkts[i].dur > 0 && self.pkts[i].ts().is_some()) && n > 0 {
            let end =
                shown.iter().filter_map(|&i| self.pkts[i].ts().map(|t| t + self.pkts[i].dur)).max();
            if let Some(e) = end {
                let e = e as f64 * time_base;
                if e > last {
                    self.end_sec = e;
                }
            }
        }
        step
    }

    /// Whether every packet has a timestamp.
    fn is_timed(&self) -> bool {
        self.pkts.iter().all(|p| p.ts().is_some())
    }
}

/// Reads frames from one video (or image).
///
/// Open with [`VideoReader::open`] (a path) or [`VideoReader::from_bytes`]; both probe the
/// input and build a packet index, so [`VideoReader::info`] is exact. Then call
/// [`VideoReader::sample`] any number of times.
pub struct VideoReader {
    source: Source,
    opts: OpenOptions,
    input: Input,
    stream: usize,
    decoder: Decoder,
    rgb: Rgb,
    info: VideoInfo,
    index: Index,
    time_base: f64,
    /// Decode position of the next packet the demuxer will return, when known and the
    /// decoder state is continuous up to it.
    next_pkt: Option<usize>,
    /// Why NVDEC was asked for and is not used.
    decode_fallback: Option<String>,
}

fn io_error(path: &Path, e: std::io::Error) -> VideoError {
    if e.kind() == std::io::ErrorKind::NotFound {
        VideoError::NotFound(path.to_path_buf())
    } else {
        VideoError::Io { path: path.to_path_buf(), source: e }
    }
}

/// A path is a local file unless it is a URL (`scheme://...`), which must be whitelisted.
pub(crate) fn resolve(path: &Path, whitelist: &str) -> Result<Source, VideoError> {
    let s = path.to_string_lossy();
    if let Some((scheme, _)) = s.split_once("://") {
        let allowed = whitelist.split(',').any(|p| p.trim() == scheme && scheme != "file");
        if !allowed {
            return Err(VideoError::ProtocolNotAllowed(scheme.to_string()));
        }
        let url = path.to_str().ok_or_else(|| VideoError::InvalidOption(s.to_string()))?;
        return Ok(Source::Url(url.to_string()));
    }
    let meta = std::fs::metadata(path).map_err(|e| io_error(path, e))?;
    if !meta.is_file() {
        return Err(VideoError::NotAFile(path.to_path_buf()));
    }
    if meta.len() == 0 {
        return Err(VideoError::Empty);
    }
    // "file:" keeps names with ':' from being read as a protocol by demuxers that look at it.
    Ok(Source::File { path: path.to_path_buf(), name: format!("file:{s}") })
}

fn rational(r: ff::AVRational) -> Option<f64> {
    (r.num > 0 && r.den > 0).then(|| r.num as f64 / r.den as f64)
}

fn opt_ts(v: i64) -> Option<i64> {
    (v != ff::AV_NOPTS_VALUE).then_some(v)
}

fn open_input(source: &Source, opts: &OpenOptions) -> Result<Input, VideoError> {
    let mut dict = Dict::new();
    // Never let a demuxer turn a file name into a pattern or sequence.
    dict.set("pattern_type", "none")?;
    match source {
        Source::File { path, name } => {
            let file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
            let meta = file.metadata().map_err(|e| io_error(path, e))?;
            if !meta.is_file() {
                return Err(VideoError::NotAFile(path.to_path_buf()));
            }
            // Nested opens (playlists, references) get no protocol at all.
            dict.set("protocol_whitelist", "none")?;
            Input::open(name, Some(Avio::from_file(file, meta.len())?), &mut dict)
        }
        Source::Url(url) => {
            dict.set("protocol_whitelist", &opts.protocol_whitelist)?;
            Input::open(url, None, &mut dict)
        }
        Source::Bytes(data) => {
            // Nested opens (playlists, references) get no protocol at all.
            dict.set("protocol_whitelist", "none")?;
            Input::open("", Some(Avio::new(data.clone())?), &mut dict)
        }
    }
}

fn pixel_limit(w: c_int, h: c_int, max_pixels: u64) -> Result<(), VideoError> {
    let px = (w.max(0) as u64) * (h.max(0) as u64);
    if px > max_pixels {
        return Err(VideoError::LimitExceeded {
            kind: LimitKind::Pixels,
            actual: px,
            limit: max_pixels,
        });
    }
    Ok(())
}

/// Open stage 1: the size a still image's header declares (PNG, JPEG, GIF, BMP, WebP),
/// checked before FFmpeg sees the data.
fn check_still_image_size(source: &Source, max_pixels: u64) -> Result<(), VideoError> {
    let head: std::borrow::Cow<'_, [u8]> = match source {
        Source::Bytes(d) => d[..d.len().min(crate::still::HEAD_BYTES)].into(),
        Source::File { path, .. } => {
            let mut buf = Vec::new();
            let f = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
            std::io::Read::read_to_end(
                &mut std::io::Read::take(f, crate::still::HEAD_BYTES as u64),
                &mut buf,
            )
            .map_err(|e| io_error(path, e))?;
            buf.into()
        }
        Source::Url(_) => return Ok(()),
    };
    match crate::still::declared_size(&head) {
        Some((w, h)) if w.saturating_mul(h) > max_pixels => Err(VideoError::LimitExceeded {
            kind: LimitKind::Pixels,
            actual: w.saturating_mul(h),
            limit: max_pixels,
        }),
        _ => Ok(()),
    }
}

/// Open stage 2: frame sizes declared by the header are checked before
/// `avformat_find_stream_info` reads (and decodes) any data.
fn check_header_pixels(input: &Input, max_pixels: u64) -> Result<(), VideoError> {
    for i in 0..input.nb_streams() {
        if let Some(par) = input.params(i).filter(|p| p.is_video()) {
            pixel_limit(par.width, par.height, max_pixels)?;
        }
    }
    Ok(())
}

/// Demuxers that render text (ANSI art, `.txt`, `.nfo`) as pictures: a text file is not a
/// video, whatever FFmpeg can make of it.
const TEXT_FORMATS: &[&str] = &["tty", "bin", "xbin", "adf", "idf"];

fn refuse_text_formats(input: &Input) -> Result<(), VideoError> {
    let name = input.format_name();
    if TEXT_FORMATS.contains(&name.as_str()) {
        return Err(VideoError::InvalidData(format!(
            "text, not a video or image (FFmpeg's `{name}` demuxer)"
        )));
    }
    Ok(())
}

/// Whether a demuxer reads still images (one picture per file or per packet).
pub(crate) fn is_still_image_container(name: &str) -> bool {
    name == "image2" || name.ends_with("_pipe")
}

/// Open stage 4: the video stream FFmpeg considers best (other streams are discarded by the
/// demuxer from now on), its parameters (size checked again, now that stream info is read),
/// and whether the input has audio.
fn select_video_stream(
    input: &mut Input,
    max_pixels: u64,
) -> Result<(usize, StreamParams, bool), VideoError> {
    let stream = input.best_video_stream().ok_or(VideoError::NoVideoStream)?;
    let has_audio = (0..input.nb_streams()).any(|i| input.params(i).is_some_and(|p| p.is_audio()));
    input.discard_all_but(stream);
    let par = input.params(stream).ok_or(VideoError::NoVideoStream)?;
    pixel_limit(par.width, par.height, max_pixels)?;
    if par.width <= 0 || par.height <= 0 {
        return Err(VideoError::InvalidData("the video stream has no frame size".into()));
    }
    Ok((stream, par, has_audio))
}

/// Open stage 6: everything [`VideoInfo`] says that the header knows. Frame count, keyframes,
/// start time, truncation and the average fps are filled in by the packet index.
fn probe_info(
    input: &Input,
    stream: usize,
    par: &StreamParams,
    time_base: f64,
    has_audio: bool,
) -> VideoInfo {
    let (w, h) = (par.width as u32, par.height as u32);
    let orientation = display_orientation(input, stream);
    let (rotation, mirrored) = crate::rotate::to_rotation(orientation);
    let swap = crate::rotate::swaps_axes(orientation);
    let st_dur = opt_ts(par.duration).filter(|d| *d > 0).map(|d| d as f64 * time_base);
    let fmt_dur =
        opt_ts(input.duration()).filter(|d| *d > 0).map(|d| d as f64 / ff::AV_TIME_BASE as f64);
    VideoInfo {
        container: input.format_name(),
        codec: par.codec_name.clone(),
        width: w,
        height: h,
        rotation,
        mirrored,
        output_width: if swap { h } else { w },
        output_height: if swap { w } else { h },
        pixel_format: ffi::pix_fmt_name(par.format),
        color_range: ffi::color_range_name(par.color_range),
        color_space: ffi::color_space_name(par.color_space),
        time_base: [par.time_base.num, par.time_base.den],
        duration: st_dur.or(fmt_dur),
        fps: rational(par.avg_frame_rate).or_else(|| rational(par.r_frame_rate)),
        header_fps: rational(par.avg_frame_rate),
        frame_count: 0,
        frame_count_source: FrameCountSource::PacketIndex,
        header_frame_count: (par.nb_frames > 0).then_some(par.nb_frames as u64),
        keyframes: 0,
        start_time: 0.0,
        has_audio,
        stream_index: stream,
        truncated: false,
    }
}

/// An input held in memory must not be empty nor larger than `max_input_bytes` (videos and
/// images alike).
pub(crate) fn check_input_bytes(data: &[u8], opts: &OpenOptions) -> Result<(), VideoError> {
    if data.is_empty() {
        return Err(VideoError::Empty);
    }
    if data.len() as u64 > opts.limits.max_input_bytes {
        return Err(VideoError::LimitExceeded {
            kind: LimitKind::InputBytes,
            actual: data.len() as u64,
            limit: opts.limits.max_input_bytes,
        });
    }
    Ok(())
}

impl VideoReader {
    /// Opens a local video or image file.
    pub fn open(path: impl AsRef<Path>, opts: &OpenOptions) -> Result<Self, VideoError> {
        let path = path.as_ref();
        let source = resolve(path, &opts.protocol_whitelist)?;
        Self::open_source(source, opts).map_err(|e| match e {
            VideoError::NotFound(p) if p.as_os_str().is_empty() => {
                VideoError::NotFound(path.to_path_buf())
            }
            e => e,
        })
    }

    /// Opens a video or image held in memory (read through a custom AVIO context; no file or
    /// network access at all).
    pub fn from_bytes(bytes: impl Into<Arc<[u8]>>, opts: &OpenOptions) -> Result<Self, VideoError> {
        let data: Arc<[u8]> = bytes.into();
        check_input_bytes(&data, opts)?;
        Self::open_source(Source::Bytes(data), opts)
    }

    /// Opens `source` in named stages: demuxer → header size limit → stream info → video
    /// stream → decoder → probe → packet index.
    fn open_source(source: Source, opts: &OpenOptions) -> Result<Self, VideoError> {
        ffi::init();
        let max_pixels = opts.limits.max_pixels;
        check_still_image_size(&source, max_pixels)?;
        let mut input = open_input(&source, opts)?;
        check_header_pixels(&input, max_pixels)?;
        input.find_stream_info(Some(max_pixels)).map_err(|r| {
            VideoError::InvalidData(format!("cannot read stream info: {}", ffi::err_text(r)))
        })?;
        refuse_text_formats(&input)?;
        let (stream, par, has_audio) = select_video_stream(&mut input, max_pixels)?;
        let cuda = opts.decode_device == DecodeDevice::Cuda;
        let (decoder, decode_fallback) =
            Decoder::open(&input, stream, opts.threads, max_pixels, cuda)?;
        if let Some(reason) = &decode_fallback {
            notice_decode_fallback(reason);
        }
        let time_base = rational(par.time_base).unwrap_or(1.0 / 90000.0);
        let info = probe_info(&input, stream, &par, time_base, has_audio);
        let mut reader = VideoReader {
            source,
            opts: opts.clone(),
            input,
            stream,
            decoder,
            rgb: Rgb::new()?,
            info,
            index: Index::empty(),
            time_base,
            next_pkt: None,
            decode_fallback,
        };
        reader.build_index()?;
        Ok(reader)
    }

    /// Where this reader decodes: [`DecodeDevice::Cuda`] only when NVDEC was asked for and is
    /// used.
    pub fn decode_device(&self) -> DecodeDevice {
        if self.decoder.on_device() {
            DecodeDevice::Cuda
        } else {
            DecodeDevice::Cpu
        }
    }

    /// Why [`OpenOptions::decode_device`] asked for NVDEC and the reader decodes in software
    /// (no CUDA device, an FFmpeg without CUDA, a codec NVDEC does not decode); `None` otherwise.
    pub fn decode_fallback(&self) -> Option<&str> {
        self.decode_fallback.as_deref()
    }

    /// The probe result.
    pub fn info(&self) -> &VideoInfo {
        &self.info
    }

    /// Presentation time (seconds) of every frame, in presentation order.
    pub fn frame_times(&self) -> &[f64] {
        &self.index.frame_sec
    }

    /// Frame indices of the keyframes (random-access points), in presentation order.
    pub fn keyframe_indices(&self) -> Vec<usize> {
        let mut by_pkt: HashMap<usize, usize> = HashMap::new();
        for (f, &p) in self.index.frame_pkt.iter().enumerate() {
            by_pkt.insert(p, f);
        }
        let mut v: Vec<usize> =
            self.index.keyframes.iter().filter_map(|k| by_pkt.get(k).copied()).collect();
        v.sort_unstable();
        v
    }

    /// Which frames a request selects, without decoding anything.
    pub fn plan(&self, req: &SampleRequest) -> Result<Vec<usize>, VideoError> {
        let tl =
            Timeline { pts: &self.index.frame_sec, fps: self.info.fps, end: self.index.end_sec };
        Ok(plan(req, &tl)?)
    }

    /// Decodes the frames a request selects.
    pub fn sample(&mut self, req: &SampleRequest) -> Result<Frames, VideoError> {
        let (indices, [t, h, w, c]) = self.checked_plan(req)?;
        let mut data = Array4::<u8>::zeros((t, h, w, c));
        let out = data.as_slice_mut().ok_or(VideoError::OutOfMemory)?;
        let got = self.decode_into(&indices, req, out)?;
        if got.indices.len() < t {
            // the frames decoded are at the front, in order
            data.slice_axis_inplace(ndarray::Axis(0), ndarray::Slice::from(0..got.indices.len()));
        }
        Ok(Frames {
            data,
            indices: got.indices,
            pts: got.pts,
            missing: got.missing,
            truncated: got.truncated,
        })
    }

    /// The frames `req` selects and the shape `[T, H, W, 3]` of their pixels, checked against
    /// [`Limits`] (frame count, output bytes) before anything is decoded or allocated: what
    /// a caller of [`VideoReader::sample_into`] allocates.
    pub fn sample_shape(&self, req: &SampleRequest) -> Result<[usize; 4], VideoError> {
        Ok(self.checked_plan(req)?.1)
    }

    /// [`VideoReader::sample`] into the caller's buffer `out` of exactly
    /// [`VideoReader::sample_shape`] bytes (e.g. memory a Python array will own), with no
    /// allocation of its own. The frames decoded are written first, in order: a lenient request
    /// that misses frames fills only the first `indices.len()` of the `T` frame slots.
    pub fn sample_into(
        &mut self,
        req: &SampleRequest,
        out: &mut [u8],
    ) -> Result<SampledFrames, VideoError> {
        let (indices, shape) = self.checked_plan(req)?;
        let want = shape.iter().product::<usize>();
        if out.len() != want {
            return Err(VideoError::InvalidOption(format!(
                "sample_into: the buffer holds {} bytes, the request needs {want} ({shape:?})",
                out.len()
            )));
        }
        self.decode_into(&indices, req, out)
    }

    /// `plan(req)` with every check that needs no decoding: a truncated input for a strict
    /// request, frame count and output bytes against the limits, indices in range.
    fn checked_plan(&self, req: &SampleRequest) -> Result<(Vec<usize>, [usize; 4]), VideoError> {
        if let (Some(reason), false) = (&self.index.truncated, req.lenient) {
            return Err(VideoError::Truncated {
                frame: self.info.frame_count,
                detail: reason.clone(),
            });
        }
        let indices = self.plan(req)?;
        let lim = &self.opts.limits;
        let t = indices.len();
        if t > lim.max_frames {
            return Err(VideoError::LimitExceeded {
                kind: LimitKind::Frames,
                actual: t as u64,
                limit: lim.max_frames as u64,
            });
        }
        let (oh, ow) = (self.info.output_height as usize, self.info.output_width as usize);
        let bytes =
            (t as u64).saturating_mul(oh as u64).saturating_mul(ow as u64).saturating_mul(3);
        if bytes > lim.max_output_bytes {
            return Err(VideoError::LimitExceeded {
                kind: LimitKind::OutputBytes,
                actual: bytes,
                limit: lim.max_output_bytes,
            });
        }
        let n = self.index.frame_pkt.len();
        if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
            return Err(SamplingError::IndexOutOfRange { index: bad, count: n }.into());
        }
        Ok((indices, [t, oh, ow, 3]))
    }

    /// Decodes the given frames (presentation order indices); shorthand for
    /// `sample(&SampleRequest::indices(..))`.
    pub fn frames_at(&mut self, indices: &[usize]) -> Result<Frames, VideoError> {
        self.sample(&SampleRequest::indices(indices.to_vec()))
    }

    // ----------------------------------------------------------------------------------------
    // Packet index

    fn read_video_packet(&mut self, pkt: &mut Packet) -> Result<bool, c_int> {
        // Bounded: other streams are discarded by the demuxer, but guard anyway.
        for _ in 0..1_000_000 {
            let r = self.input.read_packet(pkt);
            if r == ffi::AVERROR_EOF {
                return Ok(false);
            }
            if r < 0 {
                return Err(r);
            }
            if pkt.fields().stream_index == self.stream {
                return Ok(true);
            }
        }
        Err(ffi::EIO)
    }

    /// Builds the packet index in named stages: demux pass → timestamp maps → presentation
    /// order → end of the stream → silent-truncation check → probe figures.
    fn build_index(&mut self) -> Result<(), VideoError> {
        let scan = self.scan_packets()?;
        self.next_pkt = None;
        let reorders = self.input.params(self.stream).is_some_and(|p| p.video_delay > 0);
        let mut idx = Index::from_packets(scan.pkts, scan.truncated, reorders);
        let fps = self.info.fps.unwrap_or(25.0);
        let shown: Vec<usize> = (0..idx.pkts.len()).filter(|&i| !scan.discard[i]).collect();
        idx.order_frames(&shown, fps, self.time_base);
        let step = idx.set_end(&shown, fps, self.time_base);
        if idx.truncated.is_none() && !idx.frame_sec.is_empty() {
            idx.truncated = self.truncation_by_declared_end(&idx, step, fps);
        }
        if idx.truncated.is_none() && idx.frame_sec.is_empty() {
            idx.truncated = self.truncation_without_frames();
        }
        self.fill_info_from_index(&idx);
        self.index = idx;
        Ok(())
    }

    /// Index stage 1: one demux pass (no decoding) over the video stream's packets, stopping
    /// at the first sign that the data ends early or is broken.
    fn scan_packets(&mut self) -> Result<Scan, VideoError> {
        let mut pkt = Packet::new()?;
        let file_size = self.input.size();
        let mut scan = Scan { pkts: Vec::new(), discard: Vec::new(), truncated: None };
        // For mov/mp4-like demuxers the index lists every sample with its size before reading:
        // samples that end past the end of the data are missing.
        let first_missing_pos = self.first_missing_sample_pos(file_size);
        // A JPEG photo cut short decodes "fine" with a grey bottom (PIL refuses it).
        let still_jpeg =
            self.info.codec == "mjpeg" && is_still_image_container(&self.info.container);
        loop {
            match self.read_video_packet(&mut pkt) {
                Ok(true) => {}
                Ok(false) => break,
                Err(code) => {
                    scan.truncated = Some(format!(
                        "read error after {} packets: {}",
                        scan.pkts.len(),
                        ffi::err_text(code)
                    ));
                    break;
                }
            }
            if scan.pkts.len() >= self.opts.limits.max_packets {
                return Err(VideoError::LimitExceeded {
                    kind: LimitKind::Packets,
                    actual: scan.pkts.len() as u64 + 1,
                    limit: self.opts.limits.max_packets as u64,
                });
            }
            let p = pkt.fields();
            // Demuxers flag a packet they could not read in full as corrupt; mov-like ones list
            // every sample up front, so samples past the end of the data are known missing.
            let beyond = first_missing_pos.is_some_and(|m| p.pos >= m);
            if beyond || p.flags & ff::AV_PKT_FLAG_CORRUPT != 0 {
                scan.truncated =
                    Some(format!("packet {} is incomplete or corrupt", scan.pkts.len()));
                break;
            }
            if still_jpeg && !crate::jpeg::is_complete(pkt.data()) {
                scan.truncated = Some("the JPEG data ends before its end-of-image marker".into());
                break;
            }
            scan.pkts.push(Pkt {
                pts: opt_ts(p.pts),
                dts: opt_ts(p.dts),
                key: p.flags & ff::AV_PKT_FLAG_KEY != 0,
                dur: p.duration.max(0),
            });
            scan.discard.push(p.flags & ff::AV_PKT_FLAG_DISCARD != 0);
        }
        if scan.truncated.is_none() {
            if let Some(m) = first_missing_pos {
                scan.truncated =
                    Some(format!("sample data at byte {m} is past the end of the input"));
            }
        }
        Ok(scan)
    }

    /// Index stage 5: containers without a sample table (Matroska/WebM) end silently at EOF:
    /// compare the last frame with the video stream's own declared duration.
    fn truncation_by_declared_end(&self, idx: &Index, step: f64, fps: f64) -> Option<String> {
        let expected = self.declared_video_end()?;
        let last = idx.frame_sec.last().copied().unwrap_or(0.0);
        let frame_dur = if step.is_finite() && step > 0.0 { step } else { 1.0 / fps };
        let have = last + frame_dur;
        (expected - have > (2.0 * frame_dur).max(0.5)).then(|| {
            format!("the frames end at {have:.3} s but the stream declares {expected:.3} s")
        })
    }

    /// Index stage 5 for a stream of which no frame can be read: truncated (or broken) when
    /// its header promises frames or a duration.
    fn truncation_without_frames(&self) -> Option<String> {
        if let Some(n) = self.info.header_frame_count.filter(|&n| n > 0) {
            return Some(format!("no frame can be read, though the header declares {n}"));
        }
        let end = self.declared_video_end().filter(|&e| e > 0.0)?;
        Some(format!("no frame can be read, though the stream declares {end:.3} s"))
    }

    /// Index stage 6: the probe figures that come from the index.
    fn fill_info_from_index(&mut self, idx: &Index) {
        let n = idx.frame_sec.len();
        self.info.truncated = idx.truncated.is_some();
        self.info.keyframes = idx.keyframes.len();
        self.info.start_time = idx.frame_sec.first().copied().unwrap_or(0.0);
        match (self.opts.trust_header, self.info.header_frame_count) {
            (true, Some(h)) if h > 0 => {
                self.info.frame_count = h as usize;
                self.info.frame_count_source = FrameCountSource::Header;
            }
            _ => {
                self.info.frame_count = n;
                self.info.frame_count_source = FrameCountSource::PacketIndex;
            }
        }
        // Average fps as torchcodec reports it after its exact scan (what transformers' fps
        // sampling uses): frames / (end - begin) of the stream; the header's rate otherwise.
        if n >= 1 && idx.is_timed() {
            let span = idx.end_sec - idx.frame_sec[0];
            if span > 0.0 {
                self.info.fps = Some(n as f64 / span);
            }
        }
    }

    /// End time (seconds) the header declares for the video stream itself: its duration, or
    /// Matroska's per-track `DURATION` tag. `None` when only a container-wide duration exists.
    fn declared_video_end(&self) -> Option<f64> {
        let par = self.input.params(self.stream)?;
        let start = opt_ts(par.start_time).map_or(0.0, |s| s as f64 * self.time_base);
        if let Some(d) = opt_ts(par.duration).filter(|d| *d > 0) {
            return Some(start + d as f64 * self.time_base);
        }
        let v = self.input.stream_metadata(self.stream, c"DURATION")?;
        // "HH:MM:SS.nnnnnnnnn". FFmpeg's muxer writes the end time of the track, mkvmerge its
        // length; the earlier of the two readings is the one that cannot raise a false alarm.
        let mut secs = 0.0;
        for part in v.trim().split(':') {
            secs = secs * 60.0 + part.parse::<f64>().ok()?;
        }
        Some(secs + start.min(0.0))
    }

    /// Byte position of the first index entry of the video stream whose data ends past the
    /// end of the input (demuxers such as mov fill the index from the header).
    fn first_missing_sample_pos(&self, file_size: Option<i64>) -> Option<i64> {
        let fs = file_size?;
        let mut first: Option<i64> = None;
        for k in 0..self.input.index_entries_count(self.stream) {
            let Some((pos, size)) = self.input.index_entry(self.stream, k) else { continue };
            if pos >= 0 && size > 0 && pos + size > fs {
                first = Some(first.map_or(pos, |f: i64| f.min(pos)));
            }
        }
        first
    }

    // ----------------------------------------------------------------------------------------
    // Seeking and decoding

    /// The keyframe (decode position) to start decoding from to reach frame `f`.
    fn keyframe_for(&self, f: usize) -> usize {
        let idx = &self.index;
        let d = idx.frame_pkt[f];
        let t = idx.pkts[d].ts();
        let upto = idx.keyframes.partition_point(|&k| k <= d);
        // Latest keyframe at or before the packet whose time is not after the frame's
        // (frames shown before their GOP's keyframe, e.g. open-GOP leading pictures, need the
        // previous GOP).
        idx.keyframes[..upto].iter().rev().copied().find(|&k| idx.pkts[k].ts() <= t).unwrap_or(0)
    }

    /// Positions the demuxer so that packet `k` (a keyframe, or 0) is in `pkt`, ready to be
    /// decoded; the decoder is flushed. Uses the packet index to detect where a seek really
    /// landed: FFmpeg seeks may overshoot, in which case an earlier point is tried, and in the
    /// end the input is reopened and read from the start.
    fn position_at(&mut self, k: usize, pkt: &mut Packet) -> Result<(), VideoError> {
        self.decoder.flush();
        self.next_pkt = None;
        let budget = self.index.pkts.len() + 8;
        if !self.index.seekable {
            // Without unique timestamps a seek cannot be verified: start a fresh demuxer.
            self.reopen()?;
            if self.advance_to(k, pkt, budget)? {
                return Ok(());
            }
            return Err(VideoError::Corrupt {
                frame: None,
                detail: format!("cannot reach packet {k} of the video stream"),
            });
        }
        let mut targets: Vec<i64> = Vec::new();
        let kp = self.index.pkts[k];
        if let Some(t) = kp.dts.or(kp.pts) {
            targets.push(t);
        }
        if self.index.seekable {
            // earlier keyframes as fallbacks
            let ki = self.index.keyframes.partition_point(|&x| x < k);
            for &e in self.index.keyframes[..ki].iter().rev().take(2) {
                if let Some(t) = self.index.pkts[e].dts.or(self.index.pkts[e].pts) {
                    targets.push(t);
                }
            }
        }
        if let Some(t) = self.index.pkts.first().and_then(|p| p.dts.or(p.pts)) {
            targets.push(t);
        }
        targets.push(i64::MIN);
        for ts in targets {
            let r = self.input.seek_backward(self.stream, ts);
            if r < 0 {
                continue;
            }
            if self.advance_to(k, pkt, budget)? {
                return Ok(());
            }
        }
        // Last resort: a fresh demuxer, read from the start.
        self.reopen()?;
        if self.advance_to(k, pkt, budget)? {
            return Ok(());
        }
        Err(VideoError::Corrupt {
            frame: None,
            detail: format!("cannot reach packet {k} of the video stream"),
        })
    }

    /// Replaces the demuxer with a freshly opened one, positioned at the start, in the same
    /// state as after `open` (stream info read, other streams discarded).
    fn reopen(&mut self) -> Result<(), VideoError> {
        self.input = open_demuxer(&self.source, &self.opts, self.stream)?;
        Ok(())
    }

    /// A second reader of the same input for one GOP worker: its own demuxer and a
    /// one-thread software decoder, sharing this reader's probe and packet index.
    fn fork(&self) -> ForkParts {
        ForkParts {
            source: self.source.clone(),
            opts: self.opts.clone(),
            stream: self.stream,
            info: self.info.clone(),
            index: self.index.clone(),
            time_base: self.time_base,
        }
    }

    /// How many GOP workers a request whose frames lie in `groups` GOPs gets
    /// ([`OpenOptions::gop_workers`]).
    fn gop_workers(&self, groups: usize) -> usize {
        // A URL would be fetched again by every worker: one decoder reads it.
        if groups < 2 || self.decoder.on_device() || matches!(self.source, Source::Url(_)) {
            return 1;
        }
        let cores = || std::thread::available_parallelism().map_or(1, |n| n.get());
        let w = match (self.opts.gop_workers, self.opts.threads) {
            (0, 0) => cores(),
            (0, t) => t,
            (w, _) => w,
        };
        w.clamp(1, MAX_GOP_WORKERS).min(groups)
    }

    /// Reads packets until packet `k`; false if the demuxer is already past it.
    fn advance_to(
        &mut self,
        k: usize,
        pkt: &mut Packet,
        budget: usize,
    ) -> Result<bool, VideoError> {
        let mut pos: Option<usize> = None;
        for _ in 0..budget {
            match self.read_video_packet(pkt) {
                Ok(true) => {}
                Ok(false) | Err(_) => return Ok(false),
            }
            let ts = packet_ts(pkt);
            let here = if self.index.seekable {
                match ts.and_then(|t| self.index.pkt_by_ts.get(&t).copied()) {
                    Some(p) => p,
                    None => match pos {
                        Some(p) => p + 1,
                        None => continue,
                    },
                }
            } else {
                // Without unique timestamps only the very first packet can be recognised.
                match pos {
                    Some(p) => p + 1,
                    None if k == 0 && ts == self.index.pkts.first().and_then(|p| p.ts()) => 0,
                    None => return Ok(false),
                }
            };
            if here > k {
                return Ok(false);
            }
            pos = Some(here);
            if here == k {
                self.next_pkt = Some(k + 1);
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Decodes `indices` (checked by `checked_plan`) into `out` (`T` frames of H×W×3), the
    /// frames decoded first and in order.
    fn decode_into(
        &mut self,
        indices: &[usize],
        req: &SampleRequest,
        out: &mut [u8],
    ) -> Result<SampledFrames, VideoError> {
        let t = indices.len();
        let (oh, ow) = (self.info.output_height as usize, self.info.output_width as usize);
        let n = self.index.frame_pkt.len();
        // Frames output for an earlier request are gone: always start with a seek.
        self.next_pkt = None;
        // frame index -> output slots
        let mut slots: HashMap<usize, Vec<usize>> = HashMap::new();
        for (s, &i) in indices.iter().enumerate() {
            slots.entry(i).or_default().push(s);
        }
        let mut wanted: Vec<usize> = slots.keys().copied().collect();
        wanted.sort_unstable();
        let mut done = vec![false; n];
        let mut errors: Vec<(usize, String)> = Vec::new();
        {
            let sequential = req.strategy == Strategy::Sequential || !self.index.seekable;
            let target_pkts: HashSet<usize> =
                wanted.iter().map(|&f| self.index.frame_pkt[f]).collect();
            let frame_bytes = oh * ow * 3;
            let mut ctx = Sink {
                slots: &slots,
                target_pkts: &target_pkts,
                skip_nonref: !sequential,
                done: &mut done,
                out: slot_buffers(out, t, frame_bytes),
                frame_bytes,
                errors: &mut errors,
                lenient: req.lenient,
            };
            if sequential {
                self.run_group(0, &wanted, &mut ctx, true)?;
            } else {
                // group the wanted frames by the keyframe to start from
                let mut groups: Vec<Group> = Vec::new();
                for &f in &wanted {
                    let k = self.keyframe_for(f);
                    match groups.iter_mut().find(|(gk, _)| *gk == k) {
                        Some((_, v)) => v.push(f),
                        None => groups.push((k, vec![f])),
                    }
                }
                groups.sort_by_key(|(k, _)| *k);
                let workers = self.gop_workers(groups.len());
                if workers >= 2 {
                    self.run_groups_parallel(groups, workers, &mut ctx)?;
                } else {
                    self.run_groups(&groups, &mut ctx)?;
                }
            }
        }
        // Collect results.
        let mut missing: Vec<usize> = wanted.iter().copied().filter(|&f| !done[f]).collect();
        if !req.lenient {
            if let Some((f, e)) = errors.first() {
                return Err(VideoError::Corrupt { frame: Some(*f), detail: e.clone() });
            }
            if let Some(&f) = missing.first() {
                return Err(VideoError::Corrupt {
                    frame: Some(f),
                    detail: "the decoder produced no picture for this frame".into(),
                });
            }
        }
        missing.sort_unstable();
        let keep: Vec<usize> = (0..t).filter(|&s| done[indices[s]]).collect();
        let fb = oh * ow * 3;
        for (j, &s) in keep.iter().enumerate() {
            if j != s {
                out.copy_within(s * fb..(s + 1) * fb, j * fb);
            }
        }
        let kept: Vec<usize> = keep.iter().map(|&s| indices[s]).collect();
        Ok(SampledFrames {
            pts: kept.iter().map(|&f| self.index.frame_sec[f]).collect(),
            indices: kept,
            missing,
            truncated: self.index.truncated.is_some() || !errors.is_empty(),
        })
    }

    /// Decodes `groups` (sorted by keyframe) one after the other on this reader's decoder.
    fn run_groups(&mut self, groups: &[Group], ctx: &mut Sink<'_>) -> Result<(), VideoError> {
        for (k, fs) in groups {
            if fs.iter().all(|&f| ctx.done[f]) {
                continue;
            }
            // Dense requests: keep decoding forward when the next group starts within a
            // few packets of where the decoder is, instead of seeking again.
            let continue_seq = match self.next_pkt {
                Some(p) => p > *k || *k - p <= DENSE_GAP,
                None => false,
            };
            self.run_group(*k, fs, ctx, !continue_seq)?;
        }
        Ok(())
    }

    /// Decodes `groups` on `workers` threads, each with its own demuxer and one-thread
    /// decoder ([`ForkParts`]). The workers take GOPs from one queue, the costliest first
    /// (packets from the keyframe to the last requested frame), seek to each GOP's keyframe
    /// and write straight into the output slots of its frames. Every GOP is decoded from its
    /// keyframe whichever worker takes it, so frames and errors do not depend on the
    /// schedule: decoding errors are merged in frame order, and a GOP that cannot be decoded
    /// at all (its keyframe unreachable) fails the request, the earliest such GOP's error
    /// winning. Where the OS gives no thread at all, this reader decodes the GOPs itself.
    fn run_groups_parallel(
        &mut self,
        mut groups: Vec<Group>,
        workers: usize,
        ctx: &mut Sink<'_>,
    ) -> Result<(), VideoError> {
        let n = self.index.frame_pkt.len();
        let frame_pkt = &self.index.frame_pkt;
        let cost = |(k, fs): &Group| {
            fs.iter().map(|&f| frame_pkt[f]).max().unwrap_or(*k).saturating_sub(*k) + 1
        };
        groups.sort_by_key(|g| (std::cmp::Reverse(cost(g)), g.0));
        let forks: Vec<ForkParts> = (0..workers).map(|_| self.fork()).collect();
        let (slots, target_pkts) = (ctx.slots, ctx.target_pkts);
        let (skip_nonref, frame_bytes, lenient) = (ctx.skip_nonref, ctx.frame_bytes, ctx.lenient);
        let t = ctx.out.len();
        let next = AtomicUsize::new(0);
        let pool = Mutex::new(&mut ctx.out);
        let (groups, next, pool) = (&groups, &next, &pool);
        // Per worker: the frames it finished and its decoding errors, or the keyframe of the
        // GOP it failed on (usize::MAX: opening the worker's reader failed) and why.
        type WorkerResult = Result<(Vec<bool>, Vec<(usize, String)>), (usize, VideoError)>;
        let results: Vec<WorkerResult> = std::thread::scope(|scope| {
            let handles: Vec<_> = forks
                .into_iter()
                .filter_map(|parts| {
                    let work = move || -> WorkerResult {
                        let mut reader = parts.open().map_err(|e| (usize::MAX, e))?;
                        let mut done = vec![false; n];
                        let mut errors = Vec::new();
                        let mut sink = Sink {
                            slots,
                            target_pkts,
                            skip_nonref,
                            done: &mut done,
                            out: (0..t).map(|_| None).collect(),
                            frame_bytes,
                            errors: &mut errors,
                            lenient,
                        };
                        while let Some((k, fs)) = groups.get(next.fetch_add(1, Ordering::Relaxed)) {
                            {
                                let mut pool = pool.lock().unwrap_or_else(|e| e.into_inner());
                                for f in fs {
                                    for &s in slots.get(f).map(Vec::as_slice).unwrap_or_default() {
                                        sink.out[s] = pool.get_mut(s).and_then(Option::take);
                                    }
                                }
                            }
                            reader.run_group(*k, fs, &mut sink, true).map_err(|e| (*k, e))?;
                        }
                        Ok((done, errors))
                    };
                    std::thread::Builder::new()
                        .name("vidlm-gop".into())
                        .spawn_scoped(scope, work)
                        .ok()
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        let e = VideoError::Internal("a GOP decoding thread panicked".into());
                        Err((usize::MAX, e))
                    })
                })
                .collect()
        });
        if results.is_empty() {
            // No thread could be started: the queue is untouched, every slot still here.
            let mut groups = groups.clone();
            groups.sort_by_key(|g| g.0);
            return self.run_groups(&groups, ctx);
        }
        // This reader's own decoder took no part: its position is unknown to the next request.
        self.next_pkt = None;
        let mut errors = Vec::new();
        let mut failed: Option<(usize, VideoError)> = None;
        for r in results {
            match r {
                Ok((done, errs)) => {
                    for (f, d) in done.into_iter().enumerate() {
                        ctx.done[f] |= d;
                    }
                    errors.extend(errs);
                }
                Err((k, e)) => {
                    if failed.as_ref().is_none_or(|(fk, _)| k < *fk) {
                        failed = Some((k, e));
                    }
                }
            }
        }
        if let Some((_, e)) = failed {
            return Err(e);
        }
        errors.sort_by_key(|(f, _)| *f);
        ctx.errors.extend(errors);
        Ok(())
    }

    /// Decodes from keyframe `k` (after seeking there when `seek`) until every frame in `fs`
    /// is done or the stream ends.
    fn run_group(
        &mut self,
        k: usize,
        fs: &[usize],
        sink: &mut Sink<'_>,
        seek: bool,
    ) -> Result<(), VideoError> {
        let mut pkt = Packet::new()?;
        let mut frame = Frame::new()?;
        let mut counter: usize = 0; // output frame counter for streams without timestamps
        let count_mode = !self.index.seekable;
        let mut have_pkt = false;
        if seek || self.next_pkt.is_none() {
            self.position_at(if count_mode { 0 } else { k }, &mut pkt)?;
            have_pkt = true;
        }
        let mut last_idx: Option<usize> = None;
        let budget = self.index.pkts.len() + 16;
        let mut eof = false;
        for _ in 0..budget {
            if fs.iter().all(|&f| sink.done[f]) {
                return Ok(());
            }
            let preloaded = have_pkt;
            if !have_pkt {
                match self.read_video_packet(&mut pkt) {
                    Ok(true) => {}
                    Ok(false) => {
                        eof = true;
                        break;
                    }
                    Err(code) => {
                        let f = fs.iter().copied().find(|&f| !sink.done[f]).unwrap_or(0);
                        sink.errors.push((f, format!("read error: {}", ffi::err_text(code))));
                        eof = true;
                        break;
                    }
                }
            }
            have_pkt = false;
            if !preloaded {
                self.next_pkt = self.next_pkt.map(|p| p + 1);
            }
            let ts = packet_ts(&pkt);
            let this_pkt = if self.index.seekable {
                ts.and_then(|t| self.index.pkt_by_ts.get(&t).copied())
            } else {
                None
            };
            let skip = sink.skip_nonref && this_pkt.is_some_and(|p| !sink.target_pkts.contains(&p));
            self.decoder.set_skip_nonref(skip);
            let r = self.decoder.send_packet(Some(&pkt));
            if r < 0 && r != ffi::EAGAIN {
                let f = fs.iter().copied().find(|&f| !sink.done[f]).unwrap_or(0);
                sink.errors.push((f, format!("decoding failed: {}", ffi::err_text(r))));
                if !sink.lenient {
                    return Ok(());
                }
            }
            self.drain(&mut frame, sink, &mut counter, &mut last_idx, count_mode)?;
            if !sink.lenient && !sink.errors.is_empty() {
                return Ok(());
            }
        }
        if eof {
            // no packet: start draining
            self.decoder.send_packet(None);
            self.drain(&mut frame, sink, &mut counter, &mut last_idx, count_mode)?;
            self.decoder.flush();
            self.next_pkt = None;
        }
        Ok(())
    }

    fn drain(
        &mut self,
        frame: &mut Frame,
        sink: &mut Sink<'_>,
        counter: &mut usize,
        last_idx: &mut Option<usize>,
        count_mode: bool,
    ) -> Result<(), VideoError> {
        let n = self.index.frame_pkt.len();
        for _ in 0..4096 {
            let r = self.decoder.receive_frame(frame);
            if r == ffi::EAGAIN || r == ffi::AVERROR_EOF {
                return Ok(());
            }
            if r < 0 {
                let f = last_idx.map_or(0, |l| l + 1);
                sink.errors.push((f, format!("decoding failed: {}", ffi::err_text(r))));
                return Ok(());
            }
            let ff_frame = frame.fields();
            let (pts, best, err_flags, flags) = (
                ff_frame.pts,
                ff_frame.best_effort_timestamp,
                ff_frame.decode_error_flags,
                ff_frame.flags,
            );
            let idx = if count_mode {
                let i = *counter;
                *counter += 1;
                Some(i)
            } else {
                let ts = opt_ts(pts).or(opt_ts(best));
                ts.and_then(|t| self.index.frame_by_ts.get(&t).copied()).or(last_idx.map(|l| l + 1))
            };
            let Some(i) = idx else { continue };
            *last_idx = Some(i);
            if i >= n || sink.done[i] {
                continue;
            }
            let Some(slots) = sink.slots.get(&i) else { continue };
            if err_flags != 0 || flags & ff::AV_FRAME_FLAG_CORRUPT != 0 {
                sink.errors.push((i, "the decoder reported a corrupt picture".into()));
                continue;
            }
            let (fw, fh) = (ff_frame.width, ff_frame.height);
            if fw as u32 != self.info.width || fh as u32 != self.info.height {
                sink.errors.push((
                    i,
                    format!(
                        "frame size changed to {fw}x{fh} from {}x{}",
                        self.info.width, self.info.height
                    ),
                ));
                continue;
            }
            let orientation = crate::rotate::from_rotation(self.info.rotation, self.info.mirrored);
            let (rgb, stride, w, h) = self.rgb.convert(frame)?;
            for &s in slots {
                if let Some(dst) = sink.out.get_mut(s).and_then(|o| o.as_deref_mut()) {
                    crate::rotate::orient_into(rgb, stride, w, h, orientation, dst);
                }
            }
            sink.done[i] = true;
        }
        Ok(())
    }
}

/// What a GOP worker needs to open its own reader on another thread (the reader itself holds
/// FFmpeg contexts that are `Send` but not `Sync`).
struct ForkParts {
    source: Source,
    opts: OpenOptions,
    stream: usize,
    info: VideoInfo,
    index: Index,
    time_base: f64,
}

impl ForkParts {
    fn open(self) -> Result<VideoReader, VideoError> {
        let input = open_demuxer(&self.source, &self.opts, self.stream)?;
        let max_pixels = self.opts.limits.max_pixels;
        let (decoder, _) = Decoder::open(&input, self.stream, 1, max_pixels, false)?;
        Ok(VideoReader {
            source: self.source,
            opts: self.opts,
            input,
            stream: self.stream,
            decoder,
            rgb: Rgb::new()?,
            info: self.info,
            index: self.index,
            time_base: self.time_base,
            next_pkt: None,
            decode_fallback: None,
        })
    }
}

/// A demuxer on `source` in the state a reader keeps after `open`: stream info read, every
/// stream but `stream` discarded. The same data gives the same streams.
fn open_demuxer(source: &Source, opts: &OpenOptions, stream: usize) -> Result<Input, VideoError> {
    let mut input = open_input(source, opts)?;
    input.find_stream_info(Some(opts.limits.max_pixels)).map_err(|r| {
        VideoError::InvalidData(format!("cannot read stream info: {}", ffi::err_text(r)))
    })?;
    if input.nb_streams() <= stream {
        return Err(VideoError::InvalidData("the input changed while reading".into()));
    }
    input.discard_all_but(stream);
    Ok(input)
}

/// A keyframe (decode position) and the requested frames decoded from it.
type Group = (usize, Vec<usize>);

/// The most GOP workers one request uses.
const MAX_GOP_WORKERS: usize = 16;

/// Packets between the decoder's position and the next keyframe needed that are cheaper to
/// decode than a seek (flush + refill of the frame-threading pipeline).
const DENSE_GAP: usize = 8;

/// `out` (`t` frames of `frame_bytes`) as one buffer per output slot.
fn slot_buffers(out: &mut [u8], t: usize, frame_bytes: usize) -> Vec<Option<&mut [u8]>> {
    if frame_bytes == 0 {
        return (0..t).map(|_| Some(<&mut [u8]>::default())).collect();
    }
    out.chunks_mut(frame_bytes).map(Some).collect()
}

struct Sink<'a> {
    slots: &'a HashMap<usize, Vec<usize>>,
    /// Decode positions of the packets holding requested frames; when `skip_nonref`, all
    /// other packets are decoded with `skip_frame = AVDISCARD_NONREF` (frames nothing else
    /// references and nobody asked for are not reconstructed at all).
    target_pkts: &'a HashSet<usize>,
    skip_nonref: bool,
    done: &'a mut Vec<bool>,
    /// The output buffer of each output slot (`frame_bytes` each); `None` for slots another
    /// GOP worker fills.
    out: Vec<Option<&'a mut [u8]>>,
    frame_bytes: usize,
    errors: &'a mut Vec<(usize, String)>,
    lenient: bool,
}

/// The orientation (EXIF numbering, see `rotate.rs`) that displays the stream upright, from
/// its display matrix, as the ffmpeg CLI's autorotate (FFmpeg 5.1 `ffmpeg_filter.c`) picks
/// its filters: the angle `-round(av_display_rotation_get)` within 1° of a quarter turn, and
/// the matrix' signs for mirrors (`transpose=cclock_flip`/`clock_flip`, `hflip`, `vflip`).
/// Other angles (the CLI's `rotate` filter) are taken to the nearest quarter turn.
fn display_orientation(input: &Input, stream: usize) -> u8 {
    let Some(m) = input.display_matrix(stream) else { return 1 };
    let r = ffi::display_rotation_get(&m);
    if !r.is_finite() {
        return 1;
    }
    let mut theta = -r.round();
    theta -= 360.0 * (theta / 360.0 + 0.9 / 360.0).floor();
    let near = |a: f64| (theta - a).abs() < 1.0;
    if near(90.0) {
        if m[3] > 0 {
            5
        } else {
            6
        }
    } else if near(180.0) {
        match (m[0] < 0, m[4] < 0) {
            (true, true) => 3,
            (true, false) => 2,
            (false, true) => 4,
            (false, false) => 1,
        }
    } else if near(270.0) {
        if m[3] < 0 {
            7
        } else {
            8
        }
    } else if theta.abs() < 1.0 || near(360.0) {
        if m[4] < 0 {
            4
        } else {
            1
        }
    } else {
        let q = (theta / 90.0).round() as i64;
        crate::rotate::from_rotation((q.rem_euclid(4) * 90) as u32, false)
    }
}

/// A packet's presentation timestamp, else its decoding timestamp.
fn packet_ts(pkt: &Packet) -> Option<i64> {
    let p = pkt.fields();
    opt_ts(p.pts).or(opt_ts(p.dts))
}
