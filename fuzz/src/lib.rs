//! Shared set-up of the vidlm fuzz targets (`fuzz_targets/*.rs`).
//!
//! Every target checks more than "no panic": the invariants of a successful result (shapes,
//! counts) are asserted too, so a silent wrong answer is a crash as well.

use std::path::PathBuf;
use std::sync::Once;
use vidlm_video_io::{Limits, OpenOptions};

/// Quiet FFmpeg (its console log would dominate the run) once per process.
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| vidlm_video_io::set_ffmpeg_log_level(-8));
}

/// Small limits: every input is refused or decoded within a few milliseconds and megabytes.
pub fn small_limits() -> OpenOptions {
    OpenOptions {
        limits: Limits {
            max_pixels: 1 << 20,
            max_frames: 4,
            max_input_bytes: 4 << 20,
            max_output_bytes: 16 << 20,
            max_packets: 20_000,
        },
        threads: 1,
        ..OpenOptions::default()
    }
}

/// The model directories (`<dir>/<family>`) the processor target loads: `VIDLM_FUZZ_MODELS`,
/// else `<repo>/.cache/assets/hub` (made by `python/assets.py`; `cargo xtask fuzz` makes them).
pub fn models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("VIDLM_FUZZ_MODELS") {
        return PathBuf::from(d);
    }
    let cache = std::env::var_os("VIDLM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache"));
    cache.join("assets").join("hub")
}

/// The four families' directory names under [`models_dir`].
pub const FAMILIES: [&str; 4] = ["interleave", "onevision", "video_llava", "llava_next_video"];
