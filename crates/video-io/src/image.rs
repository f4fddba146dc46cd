//! Still images (jpg, png, webp, bmp, gif, tiff, ...), loaded the way transformers'
//! `load_image` loads them: `PIL.Image.open`, `ImageOps.exif_transpose`, `convert("RGB")`.
//!
//! * **JPEG** is decoded with libjpeg-turbo (the TurboJPEG API of the system library), the
//!   library inside PIL, with PIL's settings: pixels are bit-identical to transformers' (FFmpeg's
//!   MJPEG decoder differs at colour edges). CMYK JPEGs are converted as PIL converts them
//!   (Adobe-inverted CMYK, then `cmyk2rgb`). A JPEG that ends before its end-of-image marker
//!   is [`VideoError::Truncated`] (PIL: "image file is truncated").
//! * **Other formats** go through FFmpeg (lossless formats decode identically to PIL).
//! * **EXIF orientation** (JPEG, PNG, WebP, TIFF; XMP `tiff:Orientation` as a fallback) turns
//!   the picture upright exactly as `exif_transpose` does.
//! * Limits: the header's declared size is checked before decoding; only files up to
//!   `min(max_input_bytes, 256 MiB)` are read whole (larger "images" are decoded by FFmpeg as
//!   stored). URLs go through [`VideoReader`] unchanged.
//!
//! [`VideoReader`] itself follows the ffmpeg CLI instead (FFmpeg decoding, no EXIF), for
//! videos and for `vidlm frames photo.jpg` alike.

use crate::error::{LimitKind, VideoError};
use crate::ffi::turbojpeg;
use crate::reader::{check_input_bytes, resolve, Source};
use crate::{Frames, OpenOptions, SampleRequest, VideoReader};
use ndarray::Array4;
use std::path::Path;
use std::sync::Arc;

/// Largest file read whole as an image.
const IMAGE_BYTES: u64 = 256 << 20;

/// Decodes an image file into a one-frame [`Frames`] (`T = 1`, RGB24, upright).
pub fn load_image(path: impl AsRef<Path>) -> Result<Frames, VideoError> {
    load_image_with(path, &OpenOptions::default())
}

/// [`load_image`] with explicit options (limits).
pub fn load_image_with(path: impl AsRef<Path>, opts: &OpenOptions) -> Result<Frames, VideoError> {
    let path = path.as_ref();
    let io = |e: std::io::Error| VideoError::Io { path: path.to_path_buf(), source: e };
    match resolve(path, &opts.protocol_whitelist)? {
        Source::File { .. } => {
            let len = std::fs::metadata(path).map_err(io)?.len();
            if len > opts.limits.max_input_bytes.min(IMAGE_BYTES) {
                return first_frame(VideoReader::open(path, opts)?);
            }
            let data: Arc<[u8]> = std::fs::read(path).map_err(io)?.into();
            decode(data, Some(path), opts)
        }
        _ => first_frame(VideoReader::open(path, opts)?),
    }
}

/// Decodes an image held in memory into a one-frame [`Frames`].
pub fn load_image_bytes(bytes: impl Into<Arc<[u8]>>) -> Result<Frames, VideoError> {
    load_image_bytes_with(bytes, &OpenOptions::default())
}

/// [`load_image_bytes`] with explicit options (limits).
pub fn load_image_bytes_with(
    bytes: impl Into<Arc<[u8]>>,
    opts: &OpenOptions,
) -> Result<Frames, VideoError> {
    let data: Arc<[u8]> = bytes.into();
    check_input_bytes(&data, opts)?;
    decode(data, None, opts)
}

fn first_frame(mut r: VideoReader) -> Result<Frames, VideoError> {
    r.sample(&SampleRequest::indices(vec![0]))
}

/// JPEG through libjpeg-turbo, anything else through FFmpeg (by path when there is one, so
/// that formats recognised by their extension still are), then the EXIF orientation.
fn decode(data: Arc<[u8]>, path: Option<&Path>, opts: &OpenOptions) -> Result<Frames, VideoError> {
    let orientation = crate::exif::orientation(&data);
    let frames = match data.starts_with(&[0xff, 0xd8, 0xff]) {
        true => match jpeg(&data, opts)? {
            Some(f) => f,
            None => ffmpeg(data.clone(), path, opts)?,
        },
        false => ffmpeg(data.clone(), path, opts)?,
    };
    match orientation {
        Some(o) => orient(frames, o),
        None => Ok(frames),
    }
}

fn ffmpeg(data: Arc<[u8]>, path: Option<&Path>, opts: &OpenOptions) -> Result<Frames, VideoError> {
    first_frame(match path {
        Some(p) => VideoReader::open(p, opts)?,
        None => VideoReader::from_bytes(data, opts)?,
    })
}

fn pixel_limit(w: usize, h: usize, opts: &OpenOptions) -> Result<(), VideoError> {
    let px = (w as u64).saturating_mul(h as u64);
    if px > opts.limits.max_pixels {
        return Err(VideoError::LimitExceeded {
            kind: LimitKind::Pixels,
            actual: px,
            limit: opts.limits.max_pixels,
        });
    }
    let bytes = px.saturating_mul(3);
    if bytes > opts.limits.max_output_bytes {
        return Err(VideoError::LimitExceeded {
            kind: LimitKind::OutputBytes,
            actual: bytes,
            limit: opts.limits.max_output_bytes,
        });
    }
    Ok(())
}

/// A JPEG decoded by libjpeg-turbo; `None` when libjpeg-turbo cannot read its header (e.g.
/// lossless or 12-bit JPEG), which FFmpeg then gets to try.
fn jpeg(data: &[u8], opts: &OpenOptions) -> Result<Option<Frames>, VideoError> {
    if let Some((w, h)) = crate::still::declared_size(data) {
        pixel_limit(w as usize, h as usize, opts)?;
    }
    if !crate::jpeg::is_complete(data) {
        return Err(VideoError::Truncated {
            frame: 0,
            detail: "the JPEG data ends before its end-of-image marker".into(),
        });
    }
    let Ok((w, h, cmyk)) = turbojpeg::header(data) else { return Ok(None) };
    pixel_limit(w, h, opts)?;
    let raw = turbojpeg::decode(data, w, h, cmyk)
        .map_err(|e| VideoError::Corrupt { frame: Some(0), detail: e })?;
    let rgb = if cmyk { cmyk_to_rgb(&raw) } else { raw };
    let data = Array4::from_shape_vec((1, h, w, 3), rgb)
        .map_err(|e| VideoError::Internal(e.to_string()))?;
    Ok(Some(Frames {
        data,
        indices: vec![0],
        pts: vec![0.0],
        missing: Vec::new(),
        truncated: false,
    }))
}

/// PIL's CMYK JPEG path: the stored values are read as Adobe-inverted CMYK (`CMYK;I`), then
/// `convert("RGB")` (Pillow's `cmyk2rgb`).
fn cmyk_to_rgb(raw: &[u8]) -> Vec<u8> {
    let muldiv255 = |a: i32, b: i32| {
        let t = a * b + 128;
        ((t >> 8) + t) >> 8
    };
    let mut out = Vec::with_capacity(raw.len() / 4 * 3);
    for px in raw.chunks_exact(4) {
        let [c, m, y, k] = [px[0], px[1], px[2], px[3]].map(|v| 255 - v as i32);
        let nk = 255 - k;
        for v in [c, m, y] {
            out.push((nk - muldiv255(v, nk)).clamp(0, 255) as u8);
        }
    }
    out
}

/// The picture in the given EXIF orientation (Pillow's `exif_transpose`).
fn orient(f: Frames, orientation: u8) -> Result<Frames, VideoError> {
    let (t, h, w) = (f.data.shape()[0], f.data.shape()[1], f.data.shape()[2]);
    let (oh, ow) = if crate::rotate::swaps_axes(orientation) { (w, h) } else { (h, w) };
    let src = f.data.as_standard_layout();
    let src = src.as_slice().unwrap_or_default();
    let mut out = vec![0u8; t * h * w * 3];
    for k in 0..t {
        let n = h * w * 3;
        if let (Some(s), Some(d)) = (src.get(k * n..(k + 1) * n), out.get_mut(k * n..(k + 1) * n)) {
            crate::rotate::orient_into(s, w * 3, w, h, orientation, d);
        }
    }
    let data = Array4::from_shape_vec((t, oh, ow, 3), out)
        .map_err(|e| VideoError::Internal(e.to_string()))?;
    Ok(Frames { data, ..f })
}

#[cfg(test)]
mod tests {
    use super::cmyk_to_rgb;

    #[test]
    fn cmyk_like_pil() {
        // stored (inverted) values: 255 = no ink
        assert_eq!(cmyk_to_rgb(&[255, 255, 255, 255]), vec![255, 255, 255]); // white
        assert_eq!(cmyk_to_rgb(&[255, 255, 255, 0]), vec![0, 0, 0]); // full black
        assert_eq!(cmyk_to_rgb(&[0, 255, 255, 255]), vec![0, 255, 255]); // full cyan
    }
}
