//! Shared test helpers: the fixture generator (mirrors `python/processor_goldens.py::pattern`),
//! model directories (built with `python/assets.py` when missing), golden loading.
#![allow(dead_code)]

use ndarray::{Array3, Array4};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use vidlm_processor::{Conversation, DecodedMedia, Part, VideoInput, VideoMetadata};

pub const FAMILIES: [&str; 4] = ["interleave", "onevision", "video_llava", "llava_next_video"];
pub const QWEN_FAMILIES: [&str; 2] = ["qwen2_5_vl", "qwen3_vl"];

/// Deterministic RGB image: gradients + hashed noise.
pub fn pattern(h: usize, w: usize, t: u64, seed: u64) -> Array3<u8> {
    Array3::from_shape_fn((h, w, 3), |(y, x, c)| {
        let (x, y, c) = (x as u64, y as u64, c as u64);
        let mut hs = (x * 73856093) ^ (y * 19349663) ^ ((c + 1) * 83492791);
        hs ^= t.wrapping_mul(2654435761) ^ (seed * 97531);
        hs = hs.wrapping_mul(2246822519) & 0xFFFF_FFFF;
        hs ^= hs >> 15;
        let noise = hs & 0xFF;
        let smooth = match c {
            0 => x * 255 / (w as u64 - 1).max(1),
            1 => y * 255 / (h as u64 - 1).max(1),
            _ => (x + y + t * 8) % 256,
        };
        ((smooth * 3 + noise) / 4) as u8
    })
}

pub fn video(t: usize, h: usize, w: usize, seed: u64) -> Array4<u8> {
    let mut out = Array4::<u8>::zeros((t, h, w, 3));
    for i in 0..t {
        out.index_axis_mut(ndarray::Axis(0), i).assign(&pattern(h, w, i as u64, seed));
    }
    out
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn cache_dir() -> PathBuf {
    std::env::var_os("VIDLM_CACHE").map(PathBuf::from).unwrap_or_else(|| repo_root().join(".cache"))
}

static BUILD: Mutex<()> = Mutex::new(());

/// `<cache>/assets/<layout>/<family>`, built with `python/assets.py` (the project's venv) if absent.
pub fn model_dir(layout: &str, family: &str) -> PathBuf {
    let dir = cache_dir().join("assets").join(layout).join(family);
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    // assets.py writes the chat template last: its presence means a complete directory.
    let complete = dir.join("tokenizer.json").is_file()
        && (dir.join("chat_template.json").is_file() || dir.join("chat_template.jinja").is_file());
    if !complete {
        let py = cache_dir().join("venv/bin/python");
        let status = Command::new(&py)
            .arg(repo_root().join("python/assets.py"))
            .args(["--family", family, "--layout", layout, "--out"])
            .arg(&dir)
            .status()
            .unwrap_or_else(|e| {
                panic!("cannot run {} (run `cargo xtask setup` first): {e}", py.display())
            });
        assert!(status.success(), "python/assets.py failed for {family} ({layout})");
    }
    dir
}

pub fn goldens() -> &'static Value {
    static G: OnceLock<Value> = OnceLock::new();
    G.get_or_init(|| {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/goldens/processor_goldens.json");
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    })
}

fn usize_at(v: &Value, i: usize) -> usize {
    v[i].as_u64().unwrap_or_else(|| panic!("bad generator spec {v}")) as usize
}

/// Builds a conversation from a golden case's JSON (media given as `{"gen": [...]}`).
pub fn conversation(conv: &Value) -> Conversation {
    let mut c = Conversation::new();
    for m in conv.as_array().unwrap_or(&Vec::new()) {
        let role = m["role"].as_str().unwrap_or("user");
        let parts =
            m["content"]
                .as_array()
                .unwrap_or(&Vec::new())
                .iter()
                .map(|p| match (p["type"].as_str(), p.get("gen")) {
                    (Some("image"), Some(g)) => Part::Decoded(DecodedMedia::Image(Arc::new(
                        pattern(usize_at(g, 0), usize_at(g, 1), 0, usize_at(g, 2) as u64),
                    ))),
                    (Some("video"), Some(g)) => {
                        let frames = Arc::new(video(
                            usize_at(g, 0),
                            usize_at(g, 1),
                            usize_at(g, 2),
                            usize_at(g, 3) as u64,
                        ));
                        // `"fps"`: the whole video with its metadata (transformers'
                        // `video_metadata`), sampled by the processor.
                        match p.get("fps").and_then(Value::as_f64) {
                            Some(fps) => Part::Video(VideoInput::WithMetadata(
                                frames,
                                VideoMetadata {
                                    total_num_frames: usize_at(g, 0),
                                    fps: Some(fps),
                                    frames_indices: None,
                                },
                            )),
                            None => Part::Decoded(DecodedMedia::Video(frames)),
                        }
                    }
                    _ => Part::Text(p["text"].as_str().unwrap_or("").to_string()),
                })
                .collect();
        c.push(role, parts);
    }
    c
}

pub fn un_rle(v: &Value) -> Vec<i64> {
    let mut out = Vec::new();
    for run in v.as_array().unwrap_or(&Vec::new()) {
        let id = run[0].as_i64().unwrap_or(-1);
        let n = run[1].as_u64().unwrap_or(0) as usize;
        out.extend(std::iter::repeat_n(id, n));
    }
    out
}

/// Order-independent exact checksum of f32 bits (`wsum64` in the golden script).
pub fn wsum64(data: &[f32]) -> String {
    let mut h: u64 = 0;
    for (i, v) in data.iter().enumerate() {
        let w = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        h = h.wrapping_add(u64::from(v.to_bits()).wrapping_mul(w));
    }
    format!("{h:016x}")
}
