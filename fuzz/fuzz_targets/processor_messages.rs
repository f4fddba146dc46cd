//! The processor: arbitrary chat-messages JSON against each family's configuration (the
//! weightless model directories of `python/assets.py`), with media stubbed (every image is
//! a small fixed picture, every video a few frames). The first byte picks the family and the
//! options.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ndarray::{Array3, Array4};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use vidlm_processor::processor::MediaLoader;
use vidlm_processor::{Conversation, ProcessOptions, Processor, Result, Sampling};

/// Media stub: images are 37x53, videos 1..=4 frames of 29x41 (odd sizes on purpose).
struct Stub;

impl MediaLoader for Stub {
    fn load_image(&self, _: &Path) -> Result<Array3<u8>> {
        Ok(Array3::from_shape_fn((37, 53, 3), |(y, x, c)| (y * 7 + x * 3 + c * 50) as u8))
    }
    fn load_video(&self, _: &Path, s: &Sampling, max_frames: Option<usize>) -> Result<Array4<u8>> {
        let t = match s {
            Sampling::NumFrames(n) => *n,
            _ => 4,
        };
        let t = t.min(max_frames.unwrap_or(4)).clamp(1, 4);
        Ok(Array4::from_shape_fn((t, 29, 41, 3), |(f, y, x, c)| {
            (f * 40 + y * 5 + x + c * 60) as u8
        }))
    }
}

fn processors() -> &'static Vec<Processor> {
    static P: OnceLock<Vec<Processor>> = OnceLock::new();
    P.get_or_init(|| {
        let dir = vidlm_fuzz::models_dir();
        vidlm_fuzz::FAMILIES
            .iter()
            .map(|f| {
                Processor::from_dir(dir.join(f))
                    .unwrap_or_else(|e| {
                        panic!(
                            "model dir {} ({e}): run `cargo xtask fuzz`, which makes them",
                            dir.join(f).display()
                        )
                    })
                    .with_loader(Arc::new(Stub))
            })
            .collect()
    })
}

fuzz_target!(
    // the four tokenizers take seconds to load (longer than a unit may run): before fuzzing
    init: {
        processors();
    },
    |data: &[u8]| {
        let Some((&sel, json)) = data.split_first() else { return };
        let procs = processors();
        let p = &procs[sel as usize % procs.len()];
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(json) else { return };
        let Ok(convs) = Conversation::batch_from_json(&v, None) else { return };
        let opts = ProcessOptions {
            sampling: Sampling::NumFrames(1 + (sel as usize >> 2) % 4),
            add_generation_prompt: sel & 0x40 == 0,
            ..ProcessOptions::default()
        };
        if let Ok(out) = p.process(&convs, &opts) {
            let (b, l) = out.input_ids().dim();
            assert_eq!(b, convs.len());
            assert_eq!(out.attention_mask().dim(), (b, l));
        }
    }
);
