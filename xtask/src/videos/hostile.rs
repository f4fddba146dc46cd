//! Hostile and broken files (issue 11): truncations, garbage, wrong extensions, missing or
//! duplicated index atoms, decompression bombs, lying headers, streams without keyframes,
//! playlists that point elsewhere. Each is a byte-level edit of a generated fixture or a
//! few hand-written bytes; `crates/video-io/tests/corpus.rs` runs every one in a child process
//! and checks its outcome, time and peak RSS.

use super::{a, ffmpeg, make, random_bytes, src, truncate_copy};
use anyhow::{bail, Context, Result};
use std::path::Path;

/// CRC-32 (IEEE, as PNG chunks use it).
fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend((data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend(&body);
    out.extend(crc32(&body).to_be_bytes());
}

/// A PNG whose IHDR declares `w x h` RGB pixels, with a tiny (stored) zlib stream of zeros.
fn png_bomb(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB, no interlace
    png_chunk(&mut out, b"IHDR", &ihdr);
    // zlib: header, one final stored block of 1024 zero bytes, adler32
    let n: u16 = 1024;
    let mut z = vec![0x78, 0x01, 0x01];
    z.extend(n.to_le_bytes());
    z.extend((!n).to_le_bytes());
    z.extend(std::iter::repeat_n(0u8, n as usize));
    let adler = (n as u32) << 16 | 1; // a = 1 + 0s, b = n * 1
    z.extend(adler.to_be_bytes());
    png_chunk(&mut out, b"IDAT", &z);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A 1x1 GIF whose logical screen claims 65535x65535.
fn gif_bomb() -> Vec<u8> {
    let mut g = b"GIF89a".to_vec();
    g.extend([0xff, 0xff, 0xff, 0xff, 0x80, 0, 0]); // screen 65535x65535, 2-colour table
    g.extend([0xff, 0xff, 0xff, 0, 0, 0]);
    g.extend([0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0]); // image at 0,0, 1x1
    g.extend([2, 2, 0x44, 0x01, 0, 0x3b]);
    g
}

fn find(data: &[u8], pat: &[u8], from: usize) -> Option<usize> {
    data.get(from..)?.windows(pat.len()).position(|w| w == pat).map(|p| p + from)
}

/// Sets the height/width of every baseline/progressive JPEG SOF header in `data`.
fn patch_jpeg_sof(data: &mut [u8], w: u16, h: u16) -> Result<usize> {
    let mut n = 0;
    let mut i = 0;
    while i + 9 < data.len() {
        if data[i] == 0xff && (data[i + 1] == 0xc0 || data[i + 1] == 0xc2) && data[i + 4] == 8 {
            data[i + 5..i + 7].copy_from_slice(&h.to_be_bytes());
            data[i + 7..i + 9].copy_from_slice(&w.to_be_bytes());
            n += 1;
            i += 9;
        } else {
            i += 1;
        }
    }
    if n == 0 {
        bail!("no JPEG SOF marker found");
    }
    Ok(n)
}

/// Overwrites the 4 bytes `offset` bytes after the first `box_type` found inside `data`.
fn patch_box(data: &mut [u8], box_type: &[u8; 4], offset: usize, value: u32) -> Result<()> {
    let at = find(data, box_type, 0)
        .with_context(|| format!("no {} box", String::from_utf8_lossy(box_type)))?;
    let p = at + 4 + offset;
    if p + 4 > data.len() {
        bail!("{} box too short", String::from_utf8_lossy(box_type));
    }
    data[p..p + 4].copy_from_slice(&value.to_be_bytes());
    Ok(())
}

/// An H.264 Annex-B stream with every IDR slice (NAL type 5) removed: no keyframe at all.
fn strip_idr(data: &[u8]) -> Vec<u8> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i..i + 3] == [0, 0, 1] {
            starts.push(i);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut out = Vec::new();
    for (k, &s) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(data.len());
        let nal_type = data.get(s + 3).map_or(0, |b| b & 0x1f);
        if nal_type != 5 {
            out.extend_from_slice(&[0, 0, 0, 1]);
            let body_end =
                if end >= 1 && end < data.len() && data[end - 1] == 0 { end - 1 } else { end };
            out.extend_from_slice(&data[s + 3..body_end.max(s + 3)]);
        }
    }
    out
}

fn write(p: &Path, d: impl AsRef<[u8]>) -> Result<()> {
    Ok(std::fs::write(p, d)?)
}

fn edit(
    dir: &Path,
    from: &str,
    p: &Path,
    f: impl FnOnce(&mut Vec<u8>) -> Result<()>,
) -> Result<()> {
    let mut d = std::fs::read(dir.join(from)).with_context(|| format!("reading {from}"))?;
    f(&mut d)?;
    write(p, d)
}

/// Generates the hostile set (in addition to the older `broken_*`/`hostile_*` files).
pub(super) fn generate(dir: &Path) -> Result<()> {
    // sources
    make(dir, "_mkv_tall_src.mkv", |p| {
        let mut args = src("320x260", 25, 2.0);
        args.extend(a(&[
            "-c:v",
            "libvpx-vp9",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-pix_fmt",
            "yuv420p",
        ]));
        ffmpeg(&args, p)
    })?;
    make(dir, "_tiny_100.mkv", |p| {
        let mut args = src("16x16", 1000, 0.1);
        args.extend(a(&[
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "100",
            "-pix_fmt",
            "yuv420p",
        ]));
        ffmpeg(&args, p)
    })?;

    // garbage and other formats under a video's name
    make(dir, "hostile_zeros.mp4", |p| write(p, vec![0u8; 64 * 1024]))?;
    make(dir, "hostile_text.mp4", |p| write(p, "This is not a video.\n".repeat(200)))?;
    make(dir, "hostile_html.mp4", |p| {
        write(p, "<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1></body></html>\n")
    })?;
    make(dir, "hostile_zip.mp4", |p| {
        let mut d = b"PK\x03\x04\x14\x00\x00\x00\x08\x00".to_vec();
        d.extend(random_bytes(4000, 11));
        write(p, d)
    })?;
    make(dir, "hostile_pdf.jpg", |p| {
        let mut d =
            b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n".to_vec();
        d.extend(random_bytes(2000, 12));
        write(p, d)
    })?;
    make(dir, "hostile_ts_garbage.ts", |p| {
        // 188-byte packets with the sync byte and random payloads
        let mut d = random_bytes(188 * 400, 13);
        for k in 0..400 {
            d[k * 188] = 0x47;
        }
        write(p, d)
    })?;

    // truncations: in the index (moov), at the header, in the middle
    make(dir, "broken_cut_in_moov.mp4", |p| {
        edit(dir, "_faststart_src.mp4", p, |d| {
            let moov = find(d, b"moov", 0).context("no moov")?;
            let size =
                u32::from_be_bytes([d[moov - 4], d[moov - 3], d[moov - 2], d[moov - 1]]) as usize;
            d.truncate(moov - 4 + size / 2);
            Ok(())
        })
    })?;
    make(dir, "broken_cut_header.webm", |p| truncate_copy(&dir.join("_webm_src.webm"), p, 0.002))?;
    make(dir, "broken_truncated.ts", |p| truncate_copy(&dir.join("h264.ts"), p, 0.5))?;
    make(dir, "broken_truncated.gif", |p| truncate_copy(&dir.join("anim.gif"), p, 0.4))?;
    make(dir, "broken_truncated.jpg", |p| truncate_copy(&dir.join("image.jpg"), p, 0.5))?;
    make(dir, "broken_truncated.y4m", |p| {
        let mut args = src("320x240", 25, 0.2);
        args.extend(a(&["-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe"]));
        let full = dir.join("_y4m_src.y4m");
        ffmpeg(&args, &full)?;
        let r = truncate_copy(&full, p, 0.5);
        let _ = std::fs::remove_file(&full);
        r
    })?;

    // missing, duplicated and lying index atoms (mp4 with the moov first)
    make(dir, "broken_no_moov.mp4", |p| {
        edit(dir, "_faststart_src.mp4", p, |d| {
            // a 'free' box of zeros where the moov was (FFmpeg finds a moov hidden in 'free')
            let m = find(d, b"moov", 0).context("no moov")?;
            let size = u32::from_be_bytes([d[m - 4], d[m - 3], d[m - 2], d[m - 1]]) as usize;
            d[m..m + 4].copy_from_slice(b"free");
            d[m + 4..m - 4 + size].fill(0);
            Ok(())
        })
    })?;
    make(dir, "broken_two_moov.mp4", |p| {
        edit(dir, "_faststart_src.mp4", p, |d| {
            let m = find(d, b"moov", 0).context("no moov")?;
            let size = u32::from_be_bytes([d[m - 4], d[m - 3], d[m - 2], d[m - 1]]) as usize;
            let copy = d[m - 4..m - 4 + size].to_vec();
            d.extend(copy); // a second moov after the mdat: offsets stay valid
            Ok(())
        })
    })?;
    make(dir, "broken_no_stco.mp4", |p| {
        edit(dir, "_faststart_src.mp4", p, |d| {
            let s = find(d, b"stco", 0).context("no stco")?;
            d[s..s + 4].copy_from_slice(b"xxxx");
            Ok(())
        })
    })?;
    // stsz: version/flags, sample_size (uniform), count -> every sample claims ~2 GiB
    make(dir, "lying_sample_size.mp4", |p| {
        edit(dir, "_faststart_src.mp4", p, |d| patch_box(d, b"stsz", 4, 0x7fff_fff0))
    })?;
    // stts: version/flags, entry count, first (count, delta) -> 2^31 - 1 samples
    make(dir, "lying_frame_count.mp4", |p| {
        edit(dir, "_faststart_src.mp4", p, |d| patch_box(d, b"stts", 8, 0x7fff_ffff))
    })?;
    // mdhd v0: version/flags, ctime, mtime, timescale, duration -> ~ 34 hours at 12800/s
    make(dir, "lying_duration.mp4", |p| {
        edit(dir, "_faststart_src.mp4", p, |d| patch_box(d, b"mdhd", 16, 0x7fff_fff0))
    })?;
    // Matroska PixelWidth/PixelHeight (2-byte values for 320x260) -> 30000x30000
    make(dir, "lying_size.mkv", |p| {
        edit(dir, "_mkv_tall_src.mkv", p, |d| {
            let w = find(d, &[0xb0, 0x82, 0x01, 0x40], 0).context("no PixelWidth 320")?;
            d[w + 2..w + 4].copy_from_slice(&30000u16.to_be_bytes());
            let h = find(d, &[0xba, 0x82, 0x01, 0x04], 0).context("no PixelHeight 260")?;
            d[h + 2..h + 4].copy_from_slice(&30000u16.to_be_bytes());
            Ok(())
        })
    })?;
    make(dir, "broken_avi_bad_index.avi", |p| {
        edit(dir, "mpeg4.avi", p, |d| {
            let i = find(d, b"idx1", 0).context("no idx1")?;
            // entries: ckid(4) flags(4) offset(4) size(4); scramble offsets and sizes
            let mut k = i + 8;
            let mut s = 0x1234_5678u32;
            while k + 16 <= d.len() {
                s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
                d[k + 8..k + 12].copy_from_slice(&s.to_le_bytes());
                d[k + 12..k + 16].copy_from_slice(&(s >> 3).to_le_bytes());
                k += 16;
            }
            Ok(())
        })
    })?;

    // decompression bombs: tiny files that declare huge pictures
    make(dir, "bomb_100000x100000.png", |p| write(p, png_bomb(100_000, 100_000)))?;
    make(dir, "bomb_7000x7000.png", |p| write(p, png_bomb(7000, 7000)))?;
    make(dir, "bomb_65535x65535.gif", |p| write(p, gif_bomb()))?;
    make(dir, "bomb_65500x65500.jpg", |p| {
        edit(dir, "image.jpg", p, |d| patch_jpeg_sof(d, 65500, 65500).map(|_| ()))
    })?;
    make(dir, "bomb_16383x16383.webp", |p| {
        edit(dir, "image.webp", p, |d| {
            let at = find(d, b"VP8L", 0).context("no VP8L chunk")?;
            let b = at + 8; // fourcc, chunk size
            if d.get(b) != Some(&0x2f) {
                bail!("no VP8L signature");
            }
            let bits: u32 = 16383 | (16383 << 14) | (u32::from(d[b + 4] >> 4 & 1) << 28);
            d[b + 1..b + 5].copy_from_slice(&bits.to_le_bytes());
            Ok(())
        })
    })?;
    make(dir, "bomb_50000x50000.bmp", |p| {
        edit(dir, "image.bmp", p, |d| {
            d[18..22].copy_from_slice(&50_000i32.to_le_bytes());
            d[22..26].copy_from_slice(&50_000i32.to_le_bytes());
            Ok(())
        })
    })?;
    // the container says 320x240, every JPEG frame inside says 16000x16000
    make(dir, "bomb_mjpeg_frames.avi", |p| {
        edit(dir, "mjpeg_camera.avi", p, |d| patch_jpeg_sof(d, 16000, 16000).map(|_| ()))
    })?;
    // a frame-count bomb: 200k tiny frames (packets copied, not encoded)
    make(dir, "bomb_200k_frames.mkv", |p| {
        let tiny = dir.join("_tiny_100.mkv");
        ffmpeg(&a(&["-stream_loop", "1999", "-i", &tiny.to_string_lossy(), "-c", "copy"]), p)
    })?;

    // streams without a keyframe
    make(dir, "no_keyframe.h264", |p| {
        edit(dir, "raw.h264", p, |d| {
            *d = strip_idr(d);
            Ok(())
        })
    })?;
    // an mp4 whose sync-sample table (stss) names no existing sample: no keyframe in the index
    make(dir, "no_keyframe_index.mp4", |p| {
        edit(dir, "_faststart_src.mp4", p, |d| {
            patch_box(d, b"stss", 4, 1)?;
            patch_box(d, b"stss", 8, 0x7fff_ffff)
        })
    })?;

    // files that point elsewhere: they must not reach the network or other files
    make(dir, "hostile_playlist.m3u8", |p| {
        write(p, "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nhttp://127.0.0.1:9/segment.ts\n#EXT-X-ENDLIST\n")
    })?;
    make(dir, "hostile_local_playlist.m3u8", |p| {
        write(
            p,
            "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n",
        )
    })?;
    make(dir, "hostile_concat.ffconcat", |p| {
        write(p, "ffconcat version 1.0\nfile '/etc/passwd'\nfile 'http://127.0.0.1:9/x.mp4'\n")
    })?;
    make(dir, "hostile_rtp.sdp", |p| {
        write(p, "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\nm=video 9 RTP/AVP 96\na=rtpmap:96 H264/90000\n")
    })?;
    // a format FFmpeg 5.1 cannot decode: animated WebP
    make(dir, "anim.webp", |p| {
        let mut args = src("320x240", 25, 1.0);
        args.extend(a(&["-c:v", "libwebp_anim", "-loop", "0"]));
        ffmpeg(&args, p)
    })?;
    Ok(())
}
