//! Thin RAII wrappers over the FFmpeg C API (through `ffmpeg_next::ffi`).
//!
//! Everything unsafe in the crate lives here or in `decode.rs`; each wrapper owns exactly one
//! FFmpeg object and frees it on drop, so early returns on error never leak.

use crate::error::VideoError;
pub(crate) use ffmpeg_next::ffi as ff;
use std::ffi::{c_int, c_void, CStr, CString};
use std::ptr;

pub(crate) const EAGAIN: c_int = ff::AVERROR(libc_eagain());
pub(crate) const AVERROR_EOF: c_int = ff::AVERROR_EOF;

const fn libc_eagain() -> c_int {
    11 // EAGAIN on Linux/glibc and musl
}

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
    pix_fmt(v).and_then(|f| cstr(unsafe { ff::av_get_pix_fmt_name(f) })).unwrap_or_else(|| "none".into())
}

/// An owned `AVDictionary`.
pub(crate) struct Dict(pub(crate) *mut ff::AVDictionary);

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

/// The in-memory source behind a custom AVIO context.
pub(crate) struct MemSource {
    data: std::sync::Arc<[u8]>,
    pos: usize,
}

unsafe extern "C" fn mem_read(opaque: *mut c_void, buf: *mut u8, buf_size: c_int) -> c_int {
    if opaque.is_null() || buf.is_null() || buf_size <= 0 {
        return ff::AVERROR(22); // EINVAL
    }
    // SAFETY: opaque is the Box<MemSource> owned by the Avio that registered this callback.
    let src = unsafe { &mut *(opaque as *mut MemSource) };
    let remaining = src.data.len().saturating_sub(src.pos);
    if remaining == 0 {
        return AVERROR_EOF;
    }
    let n = remaining.min(buf_size as usize);
    // SAFETY: FFmpeg guarantees buf holds buf_size bytes; n <= buf_size and n <= remaining.
    unsafe { ptr::copy_nonoverlapping(src.data.as_ptr().add(src.pos), buf, n) };
    src.pos += n;
    n as c_int
}

unsafe extern "C" fn mem_seek(opaque: *mut c_void, offset: i64, whence: c_int) -> i64 {
    if opaque.is_null() {
        return ff::AVERROR(22) as i64;
    }
    // SAFETY: see mem_read.
    let src = unsafe { &mut *(opaque as *mut MemSource) };
    let len = src.data.len() as i64;
    if whence & ff::AVSEEK_SIZE != 0 {
        return len;
    }
    let base = match whence & !(ff::AVSEEK_FORCE) {
        0 => 0,                // SEEK_SET
        1 => src.pos as i64,   // SEEK_CUR
        2 => len,              // SEEK_END
        _ => return ff::AVERROR(22) as i64,
    };
    let Some(target) = base.checked_add(offset) else { return ff::AVERROR(22) as i64 };
    if target < 0 || target > len {
        return ff::AVERROR(22) as i64;
    }
    src.pos = target as usize;
    target
}

/// A custom read-only AVIO context over bytes held in memory.
pub(crate) struct Avio {
    ctx: *mut ff::AVIOContext,
    _src: Box<MemSource>,
}

impl Avio {
    pub(crate) fn new(data: std::sync::Arc<[u8]>) -> Result<Self, VideoError> {
        const BUF: usize = 64 * 1024;
        let mut src = Box::new(MemSource { data, pos: 0 });
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
                &mut *src as *mut MemSource as *mut c_void,
                Some(mem_read),
                None,
                Some(mem_seek),
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

/// An opened demuxer (`AVFormatContext`), optionally reading through a custom AVIO context.
///
/// Field order matters: the format context is closed before the AVIO context is freed.
pub(crate) struct Input {
    pub(crate) ctx: *mut ff::AVFormatContext,
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

    pub(crate) fn stream(&self, i: usize) -> *mut ff::AVStream {
        // SAFETY: callers only pass indices < nb_streams.
        unsafe { *(*self.ctx).streams.add(i) }
    }

    pub(crate) fn nb_streams(&self) -> usize {
        // SAFETY: ctx is a valid open format context.
        unsafe { (*self.ctx).nb_streams as usize }
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
}

impl Drop for Input {
    fn drop(&mut self) {
        // SAFETY: ctx came from avformat_open_input; close_input frees it and nulls the pointer.
        unsafe { ff::avformat_close_input(&mut self.ctx) }
    }
}

/// An owned `AVPacket`.
pub(crate) struct Packet(pub(crate) *mut ff::AVPacket);

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
}

impl Drop for Packet {
    fn drop(&mut self) {
        // SAFETY: av_packet_free accepts the pointer we allocated.
        unsafe { ff::av_packet_free(&mut self.0) }
    }
}

/// An owned `AVFrame`.
pub(crate) struct Frame(pub(crate) *mut ff::AVFrame);

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
}

impl Drop for Frame {
    fn drop(&mut self) {
        // SAFETY: av_frame_free accepts the pointer we allocated.
        unsafe { ff::av_frame_free(&mut self.0) }
    }
}

/// An opened decoder (`AVCodecContext`).
pub(crate) struct Decoder(pub(crate) *mut ff::AVCodecContext);

// SAFETY: as for Input.
unsafe impl Send for Decoder {}

impl Decoder {
    /// Opens the decoder for `st` with FFmpeg's own threading (`threads` = 0: automatic) and a
    /// hard per-frame pixel limit.
    pub(crate) fn open(st: *mut ff::AVStream, threads: usize, max_pixels: u64) -> Result<Self, VideoError> {
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
            let dec = Decoder(ctx);
            let r = ff::avcodec_parameters_to_context(ctx, par);
            if r < 0 {
                return Err(ffmpeg_err("avcodec_parameters_to_context", r));
            }
            (*ctx).pkt_timebase = (*st).time_base;
            (*ctx).thread_count = threads.min(64) as c_int;
            (*ctx).thread_type = ff::FF_THREAD_FRAME | ff::FF_THREAD_SLICE;
            (*ctx).max_pixels = max_pixels.min(i64::MAX as u64) as i64;
            let r = ff::avcodec_open2(ctx, codec, ptr::null_mut());
            if r < 0 {
                return Err(VideoError::UnsupportedCodec(format!("{name} (decoder failed to open: {})", err_text(r))));
            }
            Ok(dec)
        }
    }

    pub(crate) fn flush(&mut self) {
        // SAFETY: valid open codec context.
        unsafe { ff::avcodec_flush_buffers(self.0) }
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: allocated by avcodec_alloc_context3.
        unsafe { ff::avcodec_free_context(&mut self.0) }
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
    pub(crate) fn convert(&mut self, frame: *const ff::AVFrame) -> Result<(&[u8], usize, usize, usize), VideoError> {
        // SAFETY: frame is a decoded video frame; the sws context and output buffer match its size.
        unsafe {
            let (w, h, fmt) = ((*frame).width, (*frame).height, (*frame).format);
            if w <= 0 || h <= 0 {
                return Err(VideoError::Corrupt { frame: None, detail: "decoded frame has no size".into() });
            }
            self.configure(w, h, fmt)?;
            // Per-frame colour details, as vf_scale's scale_frame does.
            let mut inv_table: *mut c_int = ptr::null_mut();
            let mut table: *mut c_int = ptr::null_mut();
            let (mut in_full, mut out_full, mut bri, mut con, mut sat) = (0, 0, 0, 0, 0);
            ff::sws_getColorspaceDetails(
                self.sws, &mut inv_table, &mut in_full, &mut table, &mut out_full, &mut bri, &mut con, &mut sat,
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
            ff::sws_setColorspaceDetails(self.sws, coeffs, in_full, coeffs, out_full, bri, con, sat);
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
