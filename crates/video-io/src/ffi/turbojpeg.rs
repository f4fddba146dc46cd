//! JPEG decoding with libjpeg-turbo's TurboJPEG API (the system's `libturbojpeg`, 2.x), the
//! library PIL decodes JPEG with: accurate integer IDCT and "fancy" (triangle) chroma
//! upsampling, so photos come out bit-identical to `PIL.Image.open(..).convert("RGB")`
//! (FFmpeg's MJPEG decoder and swscale differ by up to ~70 levels at colour edges of 4:2:0
//! photos). The API reports errors through return codes (its own setjmp handler), so no
//! libjpeg error longjmp ever crosses into Rust.

use std::ffi::{c_char, c_int, c_uchar, c_ulong, c_void, CStr};

type TjHandle = *mut c_void;

#[link(name = "turbojpeg")]
extern "C" {
    fn tjInitDecompress() -> TjHandle;
    fn tjDecompressHeader3(
        handle: TjHandle,
        jpeg_buf: *const c_uchar,
        jpeg_size: c_ulong,
        width: *mut c_int,
        height: *mut c_int,
        jpeg_subsamp: *mut c_int,
        jpeg_colorspace: *mut c_int,
    ) -> c_int;
    fn tjDecompress2(
        handle: TjHandle,
        jpeg_buf: *const c_uchar,
        jpeg_size: c_ulong,
        dst_buf: *mut c_uchar,
        width: c_int,
        pitch: c_int,
        height: c_int,
        pixel_format: c_int,
        flags: c_int,
    ) -> c_int;
    fn tjGetErrorStr2(handle: TjHandle) -> *mut c_char;
    fn tjGetErrorCode(handle: TjHandle) -> c_int;
    fn tjDestroy(handle: TjHandle) -> c_int;
}

const TJPF_RGB: c_int = 0;
const TJPF_CMYK: c_int = 11;
const TJCS_CMYK: c_int = 3;
const TJCS_YCCK: c_int = 4;
const TJERR_FATAL: c_int = 1;
/// Accurate integer IDCT (libjpeg's default, what PIL uses).
const TJFLAG_ACCURATEDCT: c_int = 4096;
/// At most 500 progressive scans: a hostile progressive JPEG cannot keep the decoder busy
/// for minutes.
const TJFLAG_LIMITSCANS: c_int = 32768;

/// A TurboJPEG decompressor.
struct Handle(TjHandle);

impl Handle {
    fn new() -> Result<Self, String> {
        // SAFETY: plain constructor; NULL on failure.
        let h = unsafe { tjInitDecompress() };
        if h.is_null() {
            return Err("cannot create a TurboJPEG decompressor".into());
        }
        Ok(Handle(h))
    }

    fn error(&self) -> String {
        // SAFETY: valid handle; the string is owned by the handle, copied here.
        unsafe {
            let p = tjGetErrorStr2(self.0);
            if p.is_null() {
                return "unknown TurboJPEG error".into();
            }
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }

    /// A failed call is an error unless TurboJPEG calls it a warning (libjpeg warnings, such as
    /// extraneous bytes, do not stop PIL either).
    fn check(&self, r: c_int) -> Result<(), String> {
        // SAFETY: valid handle.
        if r != 0 && unsafe { tjGetErrorCode(self.0) } == TJERR_FATAL {
            return Err(self.error());
        }
        Ok(())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: created by tjInitDecompress, destroyed once.
        unsafe { tjDestroy(self.0) };
    }
}

/// The header of a JPEG: `(width, height, cmyk)`.
pub(crate) fn header(data: &[u8]) -> Result<(usize, usize, bool), String> {
    let h = Handle::new()?;
    let (mut w, mut ht, mut sub, mut cs) = (0, 0, 0, 0);
    // SAFETY: valid handle; data is a readable buffer of the given length; outputs are locals.
    let r = unsafe {
        tjDecompressHeader3(
            h.0,
            data.as_ptr(),
            data.len() as c_ulong,
            &mut w,
            &mut ht,
            &mut sub,
            &mut cs,
        )
    };
    if r != 0 {
        return Err(h.error());
    }
    if w <= 0 || ht <= 0 {
        return Err("the JPEG header has no picture size".into());
    }
    Ok((w as usize, ht as usize, cs == TJCS_CMYK || cs == TJCS_YCCK))
}

/// Decodes a JPEG of `width x height` (from [`header`]) into packed RGB24 rows, or CMYK
/// (4 bytes per pixel, as stored) when `cmyk`.
pub(crate) fn decode(
    data: &[u8],
    width: usize,
    height: usize,
    cmyk: bool,
) -> Result<Vec<u8>, String> {
    let h = Handle::new()?;
    let bpp = if cmyk { 4 } else { 3 };
    let pitch = width.checked_mul(bpp).ok_or("picture too wide")?;
    let len = pitch.checked_mul(height).ok_or("picture too large")?;
    let (Ok(w), Ok(ht), Ok(p)) =
        (c_int::try_from(width), c_int::try_from(height), c_int::try_from(pitch))
    else {
        return Err("picture too large".into());
    };
    let mut out = vec![0u8; len];
    let fmt = if cmyk { TJPF_CMYK } else { TJPF_RGB };
    // SAFETY: valid handle; out holds pitch * height bytes, the size TurboJPEG writes for
    // these width/pitch/height/pixel format values.
    let r = unsafe {
        tjDecompress2(
            h.0,
            data.as_ptr(),
            data.len() as c_ulong,
            out.as_mut_ptr(),
            w,
            p,
            ht,
            fmt,
            TJFLAG_ACCURATEDCT | TJFLAG_LIMITSCANS,
        )
    };
    h.check(r)?;
    Ok(out)
}
