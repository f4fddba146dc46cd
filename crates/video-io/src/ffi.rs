//! Thin RAII wrappers over the FFmpeg C API (through `ffmpeg_next::ffi`), with safe accessors.
//!
//! This module (with its `turbojpeg` child, libjpeg-turbo's decoder) is the only one in the
//! crate with `unsafe` code. Each wrapper owns exactly one
//! FFmpeg object and frees it on drop, so early returns on error never leak; everything the
//! rest of the crate reads from FFmpeg's structs (stream parameters, packet and frame fields,
//! index entries, side data) is copied out through the accessors below, so no raw pointer
//! leaves this module.

pub(crate) mod turbojpeg;

use crate::error::VideoError;
use ffmpeg_next::error as errno;
pub(crate) use ffmpeg_next::ffi as ff;
use std::ffi::{c_int, c_void, CStr, CString};
use std::ptr;

/// `AVERROR(EAGAIN)`: the decoder wants input before it can output (or the reverse).
pub(crate) const EAGAIN: c_int = ff::AVERROR(errno::EAGAIN);
/// `AVERROR(EINVAL)`.
pub(crate) const EINVAL: c_int = ff::AVERROR(errno::EINVAL);
/// `AVERROR(EIO)`.
pub(crate) const EIO: c_int = ff::AVERROR(errno::EIO);
/// `AVERROR(ENOMEM)`.
pub(crate) const ENOMEM: c_int = ff::AVERROR(errno::ENOMEM);
/// `AVERROR(ENOENT)`.
pub(crate) const ENOENT: c_int = ff::AVERROR(errno::ENOENT);
pub(crate) const AVERROR_EOF: c_int = ff::AVERROR_EOF;

/// Human-readable text of an FFmpeg error code.
pub(crate) fn err_text(code: c_int) -> String {
    let mut buf = [0 as std::ffi::c_char; 256];
    // SAFETY: the buffer is valid for 256 bytes and av_strerror NUL-terminates it.
    unsafe {
        if ff::av_strerror(code, buf.as_mut_ptr(), buf.len()) < 0 {
            return format!("FFmpeg error {code}");
        }
        CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
    }
}

pub(crate) fn ffmpeg_err(op: &'static str, code: c_int) -> VideoError {
    VideoError::Ffmpeg { op, code, message: err_text(code) }
}

/// Copies a C string owned by FFmpeg (possibly NULL) into a `String`.
pub(crate) fn cstr(p: *const std::ffi::c_char) -> Option<String> {
    if p.is_null() {
        None
    } else {
        // SAFETY: FFmpeg returns static or context-owned NUL-terminated strings.
        Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }
}

/// A pixel format from the `int` stored in `AVFrame::format` / `AVCodecParameters::format`.
pub(crate) fn pix_fmt(v: c_int) -> Option<ff::AVPixelFormat> {
    if (0..ff::AVPixelFormat::AV_PIX_FMT_NB as c_int).contains(&v) {
        // SAFETY: AVPixelFormat is a fieldless repr(i32) enum whose variants are exactly the
        // contiguous values -1..=AV_PIX_FMT_NB of the headers the bindings were built from.
        Some(unsafe { std::mem::transmute::<c_int, ff::AVPixelFormat>(v) })
    } else {
        None
    }
}

pub(crate) fn pix_fmt_name(v: c_int) -> String {
    // SAFETY: av_get_pix_fmt_name returns a static string or NULL.
    pix_fmt(v)
        .and_then(|f| cstr(unsafe { ff::av_get_pix_fmt_name(f) }))
        .unwrap_or_else(|| "none".into())
}

/// An owned `AVDictionary`.
pub(crate) struct Dict(*mut ff::AVDictionary);

impl Dict {
    pub(crate) fn new() -> Self {
        Dict(ptr::null_mut())
    }
    pub(crate) fn set(&mut self, key: &str, value: &str) -> Result<(), VideoError> {
        let k = CString::new(key).map_err(|_| VideoError::InvalidOption(key.into()))?;
        let v = CString::new(value).map_err(|_| VideoError::InvalidOption(value.into()))?;
        // SAFETY: self.0 is NULL or a dictionary allocated by av_dict_set; strings are copied.
        let r = unsafe { ff::av_dict_set(&mut self.0, k.as_ptr(), v.as_ptr(), 0) };
        if r < 0 {
            return Err(ffmpeg_err("av_dict_set", r));
        }
        Ok(())
    }
}

impl Drop for Dict {
    fn drop(&mut self) {
        // SAFETY: av_dict_free accepts NULL and resets the pointer.
        unsafe { ff::av_dict_free(&mut self.0) }
    }
}

/// Where a custom AVIO context reads from: bytes in memory or a local file opened by us (so
/// that FFmpeg itself never opens anything for a local input).
pub(crate) enum AvioSource {
    Mem { data: std::sync::Arc<[u8]>, pos: usize },
    File { file: std::fs::File, len: u64, pos: u64 },
}

impl AvioSource {
    fn len(&self) -> u64 {
        match self {
            AvioSource::Mem { data, .. } => data.len() as u64,
            AvioSource::File { len, .. } => *len,
        }
    }

    /// Reads up to `buf.len()` bytes: the count, 0 at the end, or an FFmpeg error code.
    fn read(&mut self, buf: &mut [u8]) -> c_int {
        match self {
            AvioSource::Mem { data, pos } => {
                let rest = data.get(*pos..).unwrap_or_default();
                let n = rest.len().min(buf.len());
                buf[..n].copy_from_slice(&rest[..n]);
                *pos += n;
                n as c_int
            }
            AvioSource::File { file, pos, .. } => loop {
                match std::io::Read::read(file, buf) {
                    Ok(n) => {
                        *pos += n as u64;
                        return n as c_int;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => return EIO,
                }
            },
        }
    }

    /// Moves to `target` (already checked to be within `0..=len`).
    fn seek_to(&mut self, target: u64) -> Result<(), c_int> {
        match self {
            AvioSource::Mem { pos, .. } => *pos = target as usize,
            AvioSource::File { file, pos, .. } => {
                std::io::Seek::seek(file, std::io::SeekFrom::Start(target)).map_err(|_| EIO)?;
                *pos = target;
            }
        }
        Ok(())
    }

    fn pos(&self) -> u64 {
        match self {
            AvioSource::Mem { pos, .. } => *pos as u64,
            AvioSource::File { pos, .. } => *pos,
        }
    }
}

unsafe extern "C" fn avio_read(opaque: *mut c_void, buf: *mut u8, buf_size: c_int) -> c_int {
    if opaque.is_null() || buf.is_null() || buf_size <= 0 {
        return EINVAL;
    }
    // SAFETY: opaque is the Box<AvioSource> owned by the Avio that registered this callback;
    // FFmpeg guarantees buf holds buf_size bytes and calls us from one thread at a time.
    let (src, buf) = unsafe {
        (&mut *(opaque as *mut AvioSource), std::slice::from_raw_parts_mut(buf, buf_size as usize))
    };
    match src.read(buf) {
        0 => AVERROR_EOF,
        n => n,
    }
}

unsafe extern "C" fn avio_seek(opaque: *mut c_void, offset: i64, whence: c_int) -> i64 {
    if opaque.is_null() {
        return EINVAL as i64;
    }
    // SAFETY: see avio_read.
    let src = unsafe { &mut *(opaque as *mut AvioSource) };
    let len = src.len() as i64;
    if whence & ff::AVSEEK_SIZE != 0 {
        return len;
    }
    let base = match whence & !(ff::AVSEEK_FORCE) {
        0 => 0,                // SEEK_SET
        1 => src.pos() as i64, // SEEK_CUR
        2 => len,              // SEEK_END
        _ => return EINVAL as i64,
    };
    let Some(target) = base.checked_add(offset) else { return EINVAL as i64 };
    if target < 0 || target > len {
        return EINVAL as i64;
    }
    match src.seek_to(target as u64) {
        Ok(()) => target,
        Err(e) => e as i64,
    }
}

/// A custom read-only AVIO context over bytes in memory or a local file.
pub(crate) struct Avio {
    ctx: *mut ff::AVIOContext,
    _src: Box<AvioSource>,
}

impl Avio {
    /// Reads from bytes held in memory.
    pub(crate) fn new(data: std::sync::Arc<[u8]>) -> Result<Self, VideoError> {
        Self::with_source(AvioSource::Mem { data, pos: 0 })
    }

    /// Reads from a local file (opened and read by this crate, never by FFmpeg).
    pub(crate) fn from_file(file: std::fs::File, len: u64) -> Result<Self, VideoError> {
        Self::with_source(AvioSource::File { file, len, pos: 0 })
    }

    fn with_source(src: AvioSource) -> Result<Self, VideoError> {
        const BUF: usize = 64 * 1024;
        let mut src = Box::new(src);
        // SAFETY: av_malloc returns NULL or a buffer of BUF bytes, handed to the AVIO context,
        // which owns it from then on (freed in Drop through ctx->buffer, which it may replace).
        unsafe {
            let buf = ff::av_malloc(BUF) as *mut u8;
            if buf.is_null() {
                return Err(VideoError::OutOfMemory);
            }
            let ctx = ff::avio_alloc_context(
                buf,
                BUF as c_int,
                0,
                &mut *src as *mut AvioSource as *mut c_void,
                Some(avio_read),
                None,
                Some(avio_seek),
            );
            if ctx.is_null() {
                ff::av_free(buf as *mut c_void);
                return Err(VideoError::OutOfMemory);
            }
            Ok(Avio { ctx, _src: src })
        }
    }
}

impl Drop for Avio {
    fn drop(&mut self) {
        // SAFETY: ctx was created by avio_alloc_context; its current buffer is ours to free.
        unsafe {
            if !self.ctx.is_null() {
                ff::av_freep(&mut (*self.ctx).buffer as *mut *mut u8 as *mut c_void);
                ff::avio_context_free(&mut self.ctx);
            }
        }
    }
}

/// What the rest of the crate needs to know about one stream, copied out of its `AVStream`
/// and `AVCodecParameters`.
#[derive(Clone, Debug)]
pub(crate) struct StreamParams {
    pub(crate) media_type: ff::AVMediaType,
    /// FFmpeg's codec name (`avcodec_get_name`), e.g. `"h264"`.
    pub(crate) codec_name: String,
    pub(crate) width: c_int,
    pub(crate) height: c_int,
    /// `AVCodecParameters::format` (a pixel format for video; may be -1).
    pub(crate) format: c_int,
    pub(crate) color_range: ff::AVColorRange,
    pub(crate) color_space: ff::AVColorSpace,
    pub(crate) time_base: ff::AVRational,
    pub(crate) avg_frame_rate: ff::AVRational,
    pub(crate) r_frame_rate: ff::AVRational,
    /// The header's frame count (0 when unknown).
    pub(crate) nb_frames: i64,
    /// Stream duration and start in `time_base` units (`AV_NOPTS_VALUE` when unknown).
    pub(crate) duration: i64,
    pub(crate) start_time: i64,
    /// Frames of reordering delay (`has_b_frames` as `avformat_find_stream_info` found it):
    /// > 0 when decode order differs from presentation order.
    pub(crate) video_delay: c_int,
}

impl StreamParams {
    pub(crate) fn is_video(&self) -> bool {
        self.media_type == ff::AVMediaType::AVMEDIA_TYPE_VIDEO
    }
    pub(crate) fn is_audio(&self) -> bool {
        self.media_type == ff::AVMediaType::AVMEDIA_TYPE_AUDIO
    }
}

/// Name of a colour range (`"tv"`, `"pc"`, ...), `"unknown"` when FFmpeg has none.
pub(crate) fn color_range_name(r: ff::AVColorRange) -> String {
    // SAFETY: av_color_range_name returns a static string or NULL.
    cstr(unsafe { ff::av_color_range_name(r) }).unwrap_or_else(|| "unknown".into())
}

/// Name of a colour matrix (`"bt709"`, ...), `"unknown"` when FFmpeg has none.
pub(crate) fn color_space_name(c: ff::AVColorSpace) -> String {
    // SAFETY: av_color_space_name returns a static string or NULL.
    cstr(unsafe { ff::av_color_space_name(c) }).unwrap_or_else(|| "unknown".into())
}

/// Counter-clockwise rotation in degrees that a 3x3 display matrix applies
/// (`av_display_rotation_get`); NaN for a degenerate matrix.
pub(crate) fn display_rotation_get(matrix: &[i32; 9]) -> f64 {
    // SAFETY: av_display_rotation_get reads exactly 9 int32 values.
    unsafe { ff::av_display_rotation_get(matrix.as_ptr()) }
}

/// An opened demuxer (`AVFormatContext`), optionally reading through a custom AVIO context.
///
/// Field order matters: the format context is closed before the AVIO context is freed.
pub(crate) struct Input {
    ctx: *mut ff::AVFormatContext,
    _avio: Option<Avio>,
}

// SAFETY: the FFmpeg objects are only touched through &mut self; nothing is shared between
// threads, so moving the owner to another thread is sound.
unsafe impl Send for Input {}

impl Input {
    /// Opens `url` (already `file:`-prefixed for local paths) or, when `avio` is given, the
    /// custom in-memory source. `opts` are the demuxer/protocol options.
    pub(crate) fn open(url: &str, avio: Option<Avio>, opts: &mut Dict) -> Result<Self, VideoError> {
        let curl = CString::new(url).map_err(|_| VideoError::InvalidOption(url.into()))?;
        // SAFETY: standard avformat_open_input protocol; on failure FFmpeg frees the context
        // (and sets it to NULL) but never frees a custom pb, which `avio` still owns.
        unsafe {
            let mut ctx = ff::avformat_alloc_context();
            if ctx.is_null() {
                return Err(VideoError::OutOfMemory);
            }
            if let Some(a) = &avio {
                (*ctx).pb = a.ctx;
                (*ctx).flags |= ff::AVFMT_FLAG_CUSTOM_IO;
            }
            let r = ff::avformat_open_input(&mut ctx, curl.as_ptr(), ptr::null(), &mut opts.0);
            if r < 0 {
                return Err(VideoError::from_open_error(r));
            }
            Ok(Input { ctx, _avio: avio })
        }
    }

    /// The stream `i`, or `None` past the last one.
    fn stream(&self, i: usize) -> Option<*mut ff::AVStream> {
        if i >= self.nb_streams() {
            return None;
        }
        // SAFETY: i < nb_streams, so streams[i] is a valid stream owned by the context.
        let st = unsafe { *(*self.ctx).streams.add(i) };
        (!st.is_null()).then_some(st)
    }

    pub(crate) fn nb_streams(&self) -> usize {
        // SAFETY: ctx is a valid open format context.
        unsafe { (*self.ctx).nb_streams as usize }
    }

    /// The parameters of stream `i`, copied out; `None` past the last stream.
    pub(crate) fn params(&self, i: usize) -> Option<StreamParams> {
        let st = self.stream(i)?;
        // SAFETY: st is a valid stream; its codecpar is always allocated by libavformat.
        unsafe {
            let par = (*st).codecpar;
            if par.is_null() {
                return None;
            }
            Some(StreamParams {
                media_type: (*par).codec_type,
                codec_name: cstr(ff::avcodec_get_name((*par).codec_id)).unwrap_or_default(),
                width: (*par).width,
                height: (*par).height,
                format: (*par).format,
                color_range: (*par).color_range,
                color_space: (*par).color_space,
                time_base: (*st).time_base,
                avg_frame_rate: (*st).avg_frame_rate,
                r_frame_rate: (*st).r_frame_rate,
                nb_frames: (*st).nb_frames,
                duration: (*st).duration,
                start_time: (*st).start_time,
                video_delay: (*par).video_delay,
            })
        }
    }

    /// `avformat_find_stream_info`, with the decoders it opens limited to `max_pixels` per
    /// frame when given. Returns FFmpeg's error code on failure.
    pub(crate) fn find_stream_info(&mut self, max_pixels: Option<u64>) -> Result<(), c_int> {
        let n = self.nb_streams();
        let mut dicts: Vec<*mut ff::AVDictionary> = vec![ptr::null_mut(); n.max(1)];
        let val = max_pixels.map(|p| CString::new(p.to_string()).unwrap_or_default());
        // SAFETY: ctx is open; `dicts` holds one (possibly NULL) dictionary per stream, as
        // avformat_find_stream_info requires, and every dictionary is freed afterwards.
        unsafe {
            if let Some(v) = &val {
                for d in dicts.iter_mut() {
                    ff::av_dict_set(d, c"max_pixels".as_ptr(), v.as_ptr(), 0);
                }
            }
            let opts = if val.is_some() { dicts.as_mut_ptr() } else { ptr::null_mut() };
            let r = ff::avformat_find_stream_info(self.ctx, opts);
            for d in dicts.iter_mut() {
                ff::av_dict_free(d);
            }
            if r < 0 {
                Err(r)
            } else {
                Ok(())
            }
        }
    }

    /// `av_find_best_stream` for video: the index of the stream FFmpeg would pick.
    pub(crate) fn best_video_stream(&self) -> Option<usize> {
        // SAFETY: ctx is open; no decoder is requested back.
        let best = unsafe {
            ff::av_find_best_stream(
                self.ctx,
                ff::AVMediaType::AVMEDIA_TYPE_VIDEO,
                -1,
                -1,
                ptr::null_mut(),
                0,
            )
        };
        (best >= 0).then_some(best as usize)
    }

    /// Tells the demuxer to drop the packets of every stream except `keep`.
    pub(crate) fn discard_all_but(&mut self, keep: usize) {
        for i in 0..self.nb_streams() {
            if i != keep {
                if let Some(st) = self.stream(i) {
                    // SAFETY: st is a valid stream; `discard` is a plain field read at demux time.
                    unsafe { (*st).discard = ff::AVDiscard::AVDISCARD_ALL };
                }
            }
        }
    }

    /// The demuxer's short name(s), e.g. `"mov,mp4,m4a,3gp,3g2,mj2"`.
    pub(crate) fn format_name(&self) -> String {
        // SAFETY: an open context always has its input format set.
        unsafe {
            let f = (*self.ctx).iformat;
            if f.is_null() {
                return String::new();
            }
            cstr((*f).name).unwrap_or_default()
        }
    }

    /// The container duration in `AV_TIME_BASE` units (`AV_NOPTS_VALUE` when unknown).
    pub(crate) fn duration(&self) -> i64 {
        // SAFETY: ctx is open.
        unsafe { (*self.ctx).duration }
    }

    /// Total input size in bytes, if known.
    pub(crate) fn size(&self) -> Option<i64> {
        // SAFETY: pb may be NULL for some formats; avio_size handles a valid pb.
        unsafe {
            let pb = (*self.ctx).pb;
            if pb.is_null() {
                return None;
            }
            let s = ff::avio_size(pb);
            (s >= 0).then_some(s)
        }
    }

    /// `av_read_frame` into `pkt` (unreferenced first): 0, `AVERROR_EOF` or another error code.
    pub(crate) fn read_packet(&mut self, pkt: &mut Packet) -> c_int {
        pkt.unref();
        // SAFETY: valid context and packet.
        unsafe { ff::av_read_frame(self.ctx, pkt.0) }
    }

    /// `av_seek_frame(stream, ts, AVSEEK_FLAG_BACKWARD)`: FFmpeg's return code.
    pub(crate) fn seek_backward(&mut self, stream: usize, ts: i64) -> c_int {
        // SAFETY: valid context; FFmpeg checks the stream index itself.
        unsafe { ff::av_seek_frame(self.ctx, stream as c_int, ts, ff::AVSEEK_FLAG_BACKWARD) }
    }

    /// The value of the metadata tag `key` of stream `i`.
    pub(crate) fn stream_metadata(&self, i: usize, key: &CStr) -> Option<String> {
        let st = self.stream(i)?;
        // SAFETY: valid stream; av_dict_get accepts a NULL dictionary; the entry's strings are
        // owned by the dictionary and copied before returning.
        unsafe {
            let e = ff::av_dict_get((*st).metadata, key.as_ptr(), ptr::null(), 0);
            if e.is_null() {
                return None;
            }
            cstr((*e).value)
        }
    }

    /// Number of entries in the demuxer's index of stream `i` (mov/mp4-like demuxers fill it
    /// from the header's sample table before anything is read).
    pub(crate) fn index_entries_count(&self, i: usize) -> usize {
        let Some(st) = self.stream(i) else { return 0 };
        // SAFETY: valid stream.
        unsafe { ff::avformat_index_get_entries_count(st).max(0) as usize }
    }

    /// `(byte position, size)` of entry `k` of stream `i`'s index.
    pub(crate) fn index_entry(&self, i: usize, k: usize) -> Option<(i64, i64)> {
        let st = self.stream(i)?;
        let k = c_int::try_from(k).ok()?;
        // SAFETY: valid stream; the entry is a read-only view owned by the stream, copied
        // before any other call on the context.
        unsafe {
            let e = ff::avformat_index_get_entry(st, k);
            if e.is_null() {
                return None;
            }
            Some(((*e).pos, (*e).size() as i64))
        }
    }

    /// The stream's display matrix (side data `AV_PKT_DATA_DISPLAYMATRIX`), if it has one.
    pub(crate) fn display_matrix(&self, i: usize) -> Option<[i32; 9]> {
        let st = self.stream(i)?;
        // SAFETY: the side data is owned by the stream; its size is checked before reading
        // nine int32 values (unaligned reads, as the buffer is a byte array).
        unsafe {
            let mut size: usize = 0;
            let p = ff::av_stream_get_side_data(
                st,
                ff::AVPacketSideDataType::AV_PKT_DATA_DISPLAYMATRIX,
                &mut size,
            );
            if p.is_null() || size < 9 * 4 {
                return None;
            }
            let mut m = [0i32; 9];
            for (k, v) in m.iter_mut().enumerate() {
                *v = ptr::read_unaligned((p as *const i32).add(k));
            }
            Some(m)
        }
    }
}

impl Drop for Input {
    fn drop(&mut self) {
        // SAFETY: ctx came from avformat_open_input; close_input frees it and nulls the pointer.
        unsafe { ff::avformat_close_input(&mut self.ctx) }
    }
}

/// The fields of a demuxed packet the crate uses, copied out.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PacketFields {
    pub(crate) stream_index: usize,
    pub(crate) pts: i64,
    pub(crate) dts: i64,
    pub(crate) flags: c_int,
    /// Byte position in the input (-1 when unknown).
    pub(crate) pos: i64,
    pub(crate) duration: i64,
}

/// An owned `AVPacket`.
pub(crate) struct Packet(*mut ff::AVPacket);

impl Packet {
    pub(crate) fn new() -> Result<Self, VideoError> {
        // SAFETY: plain allocation.
        let p = unsafe { ff::av_packet_alloc() };
        if p.is_null() {
            return Err(VideoError::OutOfMemory);
        }
        Ok(Packet(p))
    }
    pub(crate) fn unref(&mut self) {
        // SAFETY: valid packet.
        unsafe { ff::av_packet_unref(self.0) }
    }
    /// The packet's payload (empty for an unreferenced packet).
    pub(crate) fn data(&self) -> &[u8] {
        // SAFETY: valid packet; data is NULL or points to size bytes owned by the packet, which
        // outlive the borrow of self.
        unsafe {
            let p = &*self.0;
            if p.data.is_null() || p.size <= 0 {
                return &[];
            }
            std::slice::from_raw_parts(p.data, p.size as usize)
        }
    }

    pub(crate) fn fields(&self) -> PacketFields {
        // SAFETY: valid packet (an unreferenced one holds defaults).
        unsafe {
            let p = &*self.0;
            PacketFields {
                stream_index: p.stream_index.max(0) as usize,
                pts: p.pts,
                dts: p.dts,
                flags: p.flags,
                pos: p.pos,
                duration: p.duration,
            }
        }
    }
}

impl Drop for Packet {
    fn drop(&mut self) {
        // SAFETY: av_packet_free accepts the pointer we allocated.
        unsafe { ff::av_packet_free(&mut self.0) }
    }
}

/// The fields of a decoded frame the crate uses, copied out.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FrameFields {
    pub(crate) pts: i64,
    pub(crate) best_effort_timestamp: i64,
    pub(crate) decode_error_flags: c_int,
    pub(crate) flags: c_int,
    pub(crate) width: c_int,
    pub(crate) height: c_int,
}

/// An owned `AVFrame`.
pub(crate) struct Frame(*mut ff::AVFrame);

// SAFETY: only used through &mut self on one thread at a time.
unsafe impl Send for Frame {}

impl Frame {
    pub(crate) fn new() -> Result<Self, VideoError> {
        // SAFETY: plain allocation.
        let p = unsafe { ff::av_frame_alloc() };
        if p.is_null() {
            return Err(VideoError::OutOfMemory);
        }
        Ok(Frame(p))
    }
    pub(crate) fn fields(&self) -> FrameFields {
        // SAFETY: valid frame.
        unsafe {
            let f = &*self.0;
            FrameFields {
                pts: f.pts,
                best_effort_timestamp: f.best_effort_timestamp,
                decode_error_flags: f.decode_error_flags,
                flags: f.flags,
                width: f.width,
                height: f.height,
            }
        }
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        // SAFETY: av_frame_free accepts the pointer we allocated.
        unsafe { ff::av_frame_free(&mut self.0) }
    }
}

/// A hardware decoding device (`AVHWDeviceContext`), shared by every decoder of the process.
pub(crate) struct HwDevice(*mut ff::AVBufferRef);

// SAFETY: the device context is reference-counted with atomics and FFmpeg's CUDA device
// context may be used from any thread; we only take new references to it.
unsafe impl Send for HwDevice {}
// SAFETY: as above; `&HwDevice` only hands out `av_buffer_ref` copies.
unsafe impl Sync for HwDevice {}

impl HwDevice {
    /// The process's CUDA device 0 (`av_hwdevice_ctx_create`), created on first use. `Err`
    /// says why there is none (FFmpeg built without CUDA, no driver, no device): the caller
    /// decodes in software.
    pub(crate) fn cuda() -> Result<&'static HwDevice, String> {
        static CUDA: std::sync::OnceLock<Result<HwDevice, String>> = std::sync::OnceLock::new();
        CUDA.get_or_init(|| {
            let mut dev: *mut ff::AVBufferRef = ptr::null_mut();
            // FFmpeg logs its own lines when CUDA is absent ("Cannot load libcuda.so.1"); the
            // caller prints one notice with the reason instead.
            // SAFETY: reads and sets a global integer.
            let level = unsafe { ff::av_log_get_level() };
            // SAFETY: as above.
            unsafe { ff::av_log_set_level(ff::AV_LOG_QUIET) };
            // SAFETY: `dev` receives a new reference or stays NULL on failure.
            let r = unsafe {
                ff::av_hwdevice_ctx_create(
                    &mut dev,
                    ff::AVHWDeviceType::AV_HWDEVICE_TYPE_CUDA,
                    ptr::null(),
                    ptr::null_mut(),
                    0,
                )
            };
            // SAFETY: restores the global integer.
            unsafe { ff::av_log_set_level(level) };
            if r < 0 || dev.is_null() {
                return Err(format!("no CUDA device for FFmpeg ({})", err_text(r)));
            }
            Ok(HwDevice(dev))
        })
        .as_ref()
        .map_err(Clone::clone)
    }
}

impl Drop for HwDevice {
    fn drop(&mut self) {
        // SAFETY: our own reference.
        unsafe { ff::av_buffer_unref(&mut self.0) }
    }
}

/// `get_format` for NVDEC: the CUDA surface format when the decoder offers it, else FFmpeg's
/// default choice (a software format: the decoder then decodes in software).
unsafe extern "C" fn pick_cuda_format(
    ctx: *mut ff::AVCodecContext,
    fmts: *const ff::AVPixelFormat,
) -> ff::AVPixelFormat {
    let mut p = fmts;
    // SAFETY: FFmpeg passes a list terminated by AV_PIX_FMT_NONE.
    unsafe {
        while *p != ff::AVPixelFormat::AV_PIX_FMT_NONE {
            if *p == ff::AVPixelFormat::AV_PIX_FMT_CUDA {
                return *p;
            }
            p = p.add(1);
        }
        ff::avcodec_default_get_format(ctx, fmts)
    }
}

/// Whether `codec` can decode to CUDA surfaces through a device context.
fn codec_has_cuda(codec: *const ff::AVCodec) -> bool {
    let mut i = 0;
    loop {
        // SAFETY: valid codec; the function returns NULL past the last configuration.
        let cfg = unsafe { ff::avcodec_get_hw_config(codec, i) };
        if cfg.is_null() {
            return false;
        }
        // SAFETY: non-NULL configuration owned by the codec.
        let cfg = unsafe { &*cfg };
        if cfg.device_type == ff::AVHWDeviceType::AV_HWDEVICE_TYPE_CUDA
            && cfg.methods & ff::AV_CODEC_HW_CONFIG_METHOD_HW_DEVICE_CTX as c_int != 0
        {
            return true;
        }
        i += 1;
    }
}

/// An opened decoder (`AVCodecContext`).
pub(crate) struct Decoder {
    ctx: *mut ff::AVCodecContext,
    /// Frames decoded on the device are downloaded here first (NVDEC).
    hw_frame: Option<Frame>,
}

// SAFETY: as for Input.
unsafe impl Send for Decoder {}

impl Decoder {
    /// Opens the decoder for stream `stream` of `input` with FFmpeg's own threading
    /// (`threads` = 0: automatic) and a hard per-frame pixel limit. With `cuda`, the decoder
    /// decodes on NVDEC where the codec and the machine allow it; otherwise (and then the second
    /// value says why) in software, exactly as without it.
    pub(crate) fn open(
        input: &Input,
        stream: usize,
        threads: usize,
        max_pixels: u64,
        cuda: bool,
    ) -> Result<(Self, Option<String>), VideoError> {
        let st = input.stream(stream).ok_or(VideoError::NoVideoStream)?;
        // SAFETY: st is a valid stream of an open input; all pointers are checked.
        unsafe {
            let par = (*st).codecpar;
            let id = (*par).codec_id;
            let codec = ff::avcodec_find_decoder(id);
            let name = cstr(ff::avcodec_get_name(id)).unwrap_or_else(|| "unknown".into());
            if codec.is_null() {
                return Err(VideoError::UnsupportedCodec(name));
            }
            let ctx = ff::avcodec_alloc_context3(codec);
            if ctx.is_null() {
                return Err(VideoError::OutOfMemory);
            }
            let mut dec = Decoder { ctx, hw_frame: None };
            let r = ff::avcodec_parameters_to_context(ctx, par);
            if r < 0 {
                return Err(ffmpeg_err("avcodec_parameters_to_context", r));
            }
            (*ctx).pkt_timebase = (*st).time_base;
            (*ctx).thread_type = ff::FF_THREAD_FRAME | ff::FF_THREAD_SLICE;
            (*ctx).thread_count = threads.min(64) as c_int;
            (*ctx).max_pixels = max_pixels.min(i64::MAX as u64) as i64;
            let mut fallback = None;
            if cuda {
                let device = if codec_has_cuda(codec) {
                    HwDevice::cuda()
                } else {
                    Err(format!("FFmpeg's {name} decoder has no CUDA (NVDEC) support"))
                };
                match device {
                    Ok(dev) => {
                        let r = ff::av_buffer_ref(dev.0);
                        if r.is_null() {
                            return Err(VideoError::OutOfMemory);
                        }
                        (*ctx).hw_device_ctx = r;
                        (*ctx).get_format = Some(pick_cuda_format);
                        // NVDEC decodes one frame at a time; frame threads only add latency.
                        (*ctx).thread_count = 1;
                        dec.hw_frame = Some(Frame::new()?);
                    }
                    Err(reason) => fallback = Some(reason),
                }
            }
            let r = ff::avcodec_open2(ctx, codec, ptr::null_mut());
            if r < 0 {
                return Err(VideoError::UnsupportedCodec(format!(
                    "{name} (decoder failed to open: {})",
                    err_text(r)
                )));
            }
            Ok((dec, fallback))
        }
    }

    /// Whether frames are decoded on the device (NVDEC).
    pub(crate) fn on_device(&self) -> bool {
        self.hw_frame.is_some()
    }

    pub(crate) fn flush(&mut self) {
        // SAFETY: valid open codec context.
        unsafe { ff::avcodec_flush_buffers(self.ctx) }
    }

    /// Decode packets that no other frame references only when `full` (the default); with
    /// `full = false` they are skipped (`skip_frame = AVDISCARD_NONREF`). Read per packet at
    /// send time.
    pub(crate) fn set_skip_nonref(&mut self, skip: bool) {
        let d =
            if skip { ff::AVDiscard::AVDISCARD_NONREF } else { ff::AVDiscard::AVDISCARD_DEFAULT };
        // SAFETY: valid open codec context; a plain field.
        unsafe { (*self.ctx).skip_frame = d }
    }

    /// `avcodec_send_packet`; `None` starts draining. FFmpeg's return code.
    pub(crate) fn send_packet(&mut self, pkt: Option<&Packet>) -> c_int {
        let p = pkt.map_or(ptr::null(), |p| p.0 as *const ff::AVPacket);
        // SAFETY: valid open codec context; the packet is valid or NULL.
        unsafe { ff::avcodec_send_packet(self.ctx, p) }
    }

    /// `avcodec_receive_frame` into `frame`. FFmpeg's return code. A frame decoded on the
    /// device is downloaded to system memory (`av_hwframe_transfer_data`) and its semi-planar
    /// layout (NV12 / P010) unpacked to the planar one the software decoder returns
    /// (yuv420p / yuv420p10le), so the RGB conversion that follows is the software path's.
    pub(crate) fn receive_frame(&mut self, frame: &mut Frame) -> c_int {
        // SAFETY: valid open codec context and frame.
        let r = unsafe { ff::avcodec_receive_frame(self.ctx, frame.0) };
        let Some(tmp) = self.hw_frame.as_mut() else { return r };
        // SAFETY: `frame` holds a decoded frame (r >= 0); `tmp` is our scratch frame.
        unsafe {
            if r < 0 || (*frame.0).format != ff::AVPixelFormat::AV_PIX_FMT_CUDA as c_int {
                return r;
            }
            ff::av_frame_unref(tmp.0);
            let t = ff::av_hwframe_transfer_data(tmp.0, frame.0, 0);
            if t < 0 {
                return t;
            }
            let t = ff::av_frame_copy_props(tmp.0, frame.0);
            if t < 0 {
                return t;
            }
            ff::av_frame_unref(frame.0);
            ff::av_frame_move_ref(frame.0, tmp.0);
            unpack_semi_planar(frame, tmp)
        }
    }
}

/// Rewrites an NV12 / P010LE frame as yuv420p / yuv420p10le (lossless: the Y plane is copied, the
/// interleaved chroma split; P010's 10 bits move from the high to the low bits), using `scratch`.
/// Other formats are left as they are. FFmpeg's return code.
fn unpack_semi_planar(frame: &mut Frame, scratch: &mut Frame) -> c_int {
    use ff::AVPixelFormat as P;
    // SAFETY: `frame` is a downloaded software frame with valid planes; `scratch` gets new
    // buffers of the same size; every row access stays inside the planes' linesize × rows.
    unsafe {
        let f = frame.0;
        let (w, h) = ((*f).width as usize, (*f).height as usize);
        let (out_fmt, wide) = match pix_fmt((*f).format) {
            Some(P::AV_PIX_FMT_NV12) => (P::AV_PIX_FMT_YUV420P, false),
            Some(P::AV_PIX_FMT_P010LE) => (P::AV_PIX_FMT_YUV420P10LE, true),
            _ => return 0,
        };
        let o = scratch.0;
        ff::av_frame_unref(o);
        (*o).format = out_fmt as c_int;
        (*o).width = w as c_int;
        (*o).height = h as c_int;
        let r = ff::av_frame_get_buffer(o, 0);
        if r < 0 {
            return r;
        }
        let r = ff::av_frame_copy_props(o, f);
        if r < 0 {
            return r;
        }
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let row = |fr: *mut ff::AVFrame, plane: usize, y: usize| {
            (*fr).data[plane].offset((*fr).linesize[plane] as isize * y as isize)
        };
        if wide {
            for y in 0..h {
                let src = std::slice::from_raw_parts(row(f, 0, y) as *const u16, w);
                let dst = std::slice::from_raw_parts_mut(row(o, 0, y) as *mut u16, w);
                for (d, s) in dst.iter_mut().zip(src) {
                    *d = s >> 6;
                }
            }
            for y in 0..ch {
                let src = std::slice::from_raw_parts(row(f, 1, y) as *const u16, 2 * cw);
                let u = std::slice::from_raw_parts_mut(row(o, 1, y) as *mut u16, cw);
                let v = std::slice::from_raw_parts_mut(row(o, 2, y) as *mut u16, cw);
                for (i, pair) in src.chunks_exact(2).enumerate() {
                    u[i] = pair[0] >> 6;
                    v[i] = pair[1] >> 6;
                }
            }
        } else {
            for y in 0..h {
                ptr::copy_nonoverlapping(row(f, 0, y), row(o, 0, y), w);
            }
            for y in 0..ch {
                let src = std::slice::from_raw_parts(row(f, 1, y), 2 * cw);
                let u = std::slice::from_raw_parts_mut(row(o, 1, y), cw);
                let v = std::slice::from_raw_parts_mut(row(o, 2, y), cw);
                for (i, pair) in src.chunks_exact(2).enumerate() {
                    u[i] = pair[0];
                    v[i] = pair[1];
                }
            }
        }
        ff::av_frame_unref(f);
        ff::av_frame_move_ref(f, o);
        0
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: allocated by avcodec_alloc_context3 (this also drops its device reference).
        unsafe { ff::avcodec_free_context(&mut self.ctx) }
    }
}

/// Pixel-format conversion to RGB24 with swscale, configured exactly like the `scale` filter
/// that the ffmpeg CLI inserts for `-pix_fmt rgb24` (FFmpeg 5.1 `vf_scale.c`): bicubic flags,
/// MPEG-2 vertical chroma siting for yuv420p, and per-frame colour matrix (from the frame's
/// colorspace, BT.601 when unspecified) and input range (limited/full) through
/// `sws_setColorspaceDetails`. Using the same settings makes our frames bit-identical to
/// `ffmpeg -pix_fmt rgb24`.
pub(crate) struct Rgb {
    sws: *mut ff::SwsContext,
    key: (c_int, c_int, c_int),
    /// An aligned RGB24 frame the scaler writes into (as the CLI's filter buffers are aligned).
    out: Frame,
}

// SAFETY: as for Input.
unsafe impl Send for Rgb {}

impl Rgb {
    pub(crate) fn new() -> Result<Self, VideoError> {
        Ok(Rgb { sws: ptr::null_mut(), key: (0, 0, -1), out: Frame::new()? })
    }

    fn configure(&mut self, w: c_int, h: c_int, fmt: c_int) -> Result<(), VideoError> {
        if self.key == (w, h, fmt) && !self.sws.is_null() {
            return Ok(());
        }
        let src_fmt = pix_fmt(fmt).ok_or_else(|| VideoError::Corrupt {
            frame: None,
            detail: format!("decoder produced an unknown pixel format {fmt}"),
        })?;
        // SAFETY: we create/replace our own SwsContext and output frame buffer.
        unsafe {
            if !self.sws.is_null() {
                ff::sws_freeContext(self.sws);
                self.sws = ptr::null_mut();
            }
            let s = ff::sws_alloc_context();
            if s.is_null() {
                return Err(VideoError::OutOfMemory);
            }
            self.sws = s;
            let set = |name: &str, v: i64| -> Result<(), VideoError> {
                let n = CString::new(name).map_err(|_| VideoError::InvalidOption(name.into()))?;
                let r = ff::av_opt_set_int(s as *mut c_void, n.as_ptr(), v, 0);
                if r < 0 {
                    return Err(ffmpeg_err("av_opt_set_int(sws)", r));
                }
                Ok(())
            };
            set("srcw", w as i64)?;
            set("srch", h as i64)?;
            set("src_format", fmt as i64)?;
            set("dstw", w as i64)?;
            set("dsth", h as i64)?;
            set("dst_format", ff::AVPixelFormat::AV_PIX_FMT_RGB24 as i64)?;
            set("sws_flags", ff::SWS_BICUBIC as i64)?;
            if src_fmt == ff::AVPixelFormat::AV_PIX_FMT_YUV420P {
                // vf_scale: "MPEG-2 chroma positions are used by convention"
                set("src_v_chr_pos", 128)?;
            }
            let r = ff::sws_init_context(s, ptr::null_mut(), ptr::null_mut());
            if r < 0 {
                return Err(ffmpeg_err("sws_init_context", r));
            }
            // Output frame buffer (aligned rows, like the CLI's filter buffers).
            ff::av_frame_unref(self.out.0);
            (*self.out.0).format = ff::AVPixelFormat::AV_PIX_FMT_RGB24 as c_int;
            (*self.out.0).width = w;
            (*self.out.0).height = h;
            let r = ff::av_frame_get_buffer(self.out.0, 0);
            if r < 0 {
                return Err(ffmpeg_err("av_frame_get_buffer", r));
            }
        }
        self.key = (w, h, fmt);
        Ok(())
    }

    /// Converts `frame` to RGB24; returns (pointer to first row, row stride in bytes, w, h).
    /// The data stays valid until the next call.
    pub(crate) fn convert(
        &mut self,
        frame: &Frame,
    ) -> Result<(&[u8], usize, usize, usize), VideoError> {
        let frame = frame.0 as *const ff::AVFrame;
        // SAFETY: frame is a decoded video frame; the sws context and output buffer match its size.
        unsafe {
            let (w, h, fmt) = ((*frame).width, (*frame).height, (*frame).format);
            if w <= 0 || h <= 0 {
                return Err(VideoError::Corrupt {
                    frame: None,
                    detail: "decoded frame has no size".into(),
                });
            }
            self.configure(w, h, fmt)?;
            // Per-frame colour details, as vf_scale's scale_frame does.
            let mut inv_table: *mut c_int = ptr::null_mut();
            let mut table: *mut c_int = ptr::null_mut();
            let (mut in_full, mut out_full, mut bri, mut con, mut sat) = (0, 0, 0, 0, 0);
            ff::sws_getColorspaceDetails(
                self.sws,
                &mut inv_table,
                &mut in_full,
                &mut table,
                &mut out_full,
                &mut bri,
                &mut con,
                &mut sat,
            );
            let mut cs = (*frame).colorspace as c_int;
            // parse_yuv_type("auto"): unknown/reserved/RGB/YCgCo -> BT.470BG (= BT.601)
            if !(1..=10).contains(&cs) || cs == 8 {
                cs = ff::AVColorSpace::AVCOL_SPC_BT470BG as c_int;
            }
            let coeffs = ff::sws_getCoefficients(cs);
            match (*frame).color_range {
                ff::AVColorRange::AVCOL_RANGE_JPEG => in_full = 1,
                ff::AVColorRange::AVCOL_RANGE_MPEG => in_full = 0,
                _ => {}
            }
            ff::sws_setColorspaceDetails(
                self.sws, coeffs, in_full, coeffs, out_full, bri, con, sat,
            );
            let r = ff::sws_scale(
                self.sws,
                (*frame).data.as_ptr() as *const *const u8,
                (*frame).linesize.as_ptr(),
                0,
                h,
                (*self.out.0).data.as_ptr(),
                (*self.out.0).linesize.as_ptr(),
            );
            if r <= 0 {
                return Err(ffmpeg_err("sws_scale", r));
            }
            let stride = (*self.out.0).linesize[0] as usize;
            let len = stride * (h as usize - 1) + w as usize * 3;
            let data = std::slice::from_raw_parts((*self.out.0).data[0], len);
            Ok((data, stride, w as usize, h as usize))
        }
    }
}

impl Drop for Rgb {
    fn drop(&mut self) {
        if !self.sws.is_null() {
            // SAFETY: created by sws_alloc_context.
            unsafe { ff::sws_freeContext(self.sws) }
        }
    }
}

/// One-time library setup: FFmpeg's own console logging is limited to errors unless
/// `VIDLM_FFMPEG_LOG=verbose|info|warning|quiet` says otherwise (typed errors carry the details).
pub(crate) fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let level = match std::env::var("VIDLM_FFMPEG_LOG").as_deref() {
            Ok("quiet") => ff::AV_LOG_QUIET,
            Ok("warning") => ff::AV_LOG_WARNING,
            Ok("info") => ff::AV_LOG_INFO,
            Ok("verbose") => ff::AV_LOG_VERBOSE,
            Ok("debug") => ff::AV_LOG_DEBUG,
            _ => ff::AV_LOG_ERROR,
        };
        // SAFETY: sets a global integer.
        unsafe { ff::av_log_set_level(level) }
    });
}

/// Sets FFmpeg's global log level (e.g. `AV_LOG_QUIET` = -8 for command-line tools whose
/// errors must stay one line).
pub fn set_ffmpeg_log_level(level: i32) {
    init();
    // SAFETY: sets a global integer.
    unsafe { ff::av_log_set_level(level) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `w × h` frame of `fmt` with FFmpeg buffers, every plane filled by `fill(plane, x, y)`
    /// over its `row_bytes(plane)` bytes.
    fn frame(fmt: ff::AVPixelFormat, w: usize, h: usize) -> Frame {
        let f = Frame::new().unwrap();
        // SAFETY: a fresh frame gets buffers for its own size and format.
        unsafe {
            (*f.0).format = fmt as c_int;
            (*f.0).width = w as c_int;
            (*f.0).height = h as c_int;
            assert!(ff::av_frame_get_buffer(f.0, 0) >= 0);
        }
        f
    }

    fn plane(f: &Frame, p: usize, rows: usize, bytes: usize) -> Vec<Vec<u8>> {
        // SAFETY: reads `bytes` of `rows` rows of an allocated plane.
        unsafe {
            (0..rows)
                .map(|y| {
                    let row = (*f.0).data[p].offset((*f.0).linesize[p] as isize * y as isize);
                    std::slice::from_raw_parts(row, bytes).to_vec()
                })
                .collect()
        }
    }

    fn fill(f: &Frame, p: usize, rows: usize, bytes: usize, seed: usize) {
        // SAFETY: writes `bytes` of `rows` rows of an allocated plane.
        unsafe {
            for y in 0..rows {
                let row = (*f.0).data[p].offset((*f.0).linesize[p] as isize * y as isize);
                for x in 0..bytes {
                    *row.add(x) = ((x * 7 + y * 13 + seed) % 251) as u8;
                }
            }
        }
    }

    #[test]
    fn nv12_unpacks_to_the_planar_layout_exactly() {
        // Odd sizes: the chroma planes round up, as FFmpeg's 4:2:0 layouts do.
        let (w, h) = (37, 21);
        let (cw, ch) = (19, 11);
        let mut f = frame(ff::AVPixelFormat::AV_PIX_FMT_NV12, w, h);
        fill(&f, 0, h, w, 1);
        fill(&f, 1, ch, 2 * cw, 2);
        let y = plane(&f, 0, h, w);
        let uv = plane(&f, 1, ch, 2 * cw);
        let mut scratch = Frame::new().unwrap();
        assert_eq!(unpack_semi_planar(&mut f, &mut scratch), 0);
        // SAFETY: reading the frame's format.
        assert_eq!(unsafe { (*f.0).format }, ff::AVPixelFormat::AV_PIX_FMT_YUV420P as c_int);
        assert_eq!(plane(&f, 0, h, w), y);
        let u: Vec<Vec<u8>> = uv.iter().map(|r| r.iter().step_by(2).copied().collect()).collect();
        let v: Vec<Vec<u8>> =
            uv.iter().map(|r| r.iter().skip(1).step_by(2).copied().collect()).collect();
        assert_eq!(plane(&f, 1, ch, cw), u);
        assert_eq!(plane(&f, 2, ch, cw), v);
        assert_eq!(f.fields().width, w as c_int);
    }

    #[test]
    fn p010_unpacks_to_ten_bit_planar() {
        let (w, h) = (8, 4);
        let mut f = frame(ff::AVPixelFormat::AV_PIX_FMT_P010LE, w, h);
        // SAFETY: writes 16-bit samples inside the allocated planes.
        unsafe {
            for y in 0..h {
                let row =
                    (*f.0).data[0].offset((*f.0).linesize[0] as isize * y as isize) as *mut u16;
                for x in 0..w {
                    *row.add(x) = (((x + y * w) as u16) & 0x3ff) << 6;
                }
            }
            for y in 0..h / 2 {
                let row =
                    (*f.0).data[1].offset((*f.0).linesize[1] as isize * y as isize) as *mut u16;
                for x in 0..w {
                    *row.add(x) = ((1000 - (x + y) as u16) & 0x3ff) << 6;
                }
            }
        }
        let mut scratch = Frame::new().unwrap();
        assert_eq!(unpack_semi_planar(&mut f, &mut scratch), 0);
        // SAFETY: reads the unpacked 16-bit planes.
        unsafe {
            assert_eq!((*f.0).format, ff::AVPixelFormat::AV_PIX_FMT_YUV420P10LE as c_int);
            let at = |p: usize, x: usize, y: usize| {
                *((*f.0).data[p].offset((*f.0).linesize[p] as isize * y as isize) as *const u16)
                    .add(x)
            };
            assert_eq!(at(0, 3, 2), (3 + 2 * w) as u16);
            assert_eq!(at(1, 1, 1), 1000 - (2 + 1));
            assert_eq!(at(2, 1, 1), 1000 - (3 + 1));
        }
    }

    #[test]
    fn other_formats_are_left_alone() {
        let mut f = frame(ff::AVPixelFormat::AV_PIX_FMT_YUV420P, 4, 4);
        let mut scratch = Frame::new().unwrap();
        assert_eq!(unpack_semi_planar(&mut f, &mut scratch), 0);
        // SAFETY: reading the frame's format.
        assert_eq!(unsafe { (*f.0).format }, ff::AVPixelFormat::AV_PIX_FMT_YUV420P as c_int);
    }
}
