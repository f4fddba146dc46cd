//! Property: for every family, the number of placeholder tokens the processor puts in the
//! prompt for an image equals the number of feature rows vision packs for it — over many image
//! sizes (random, extreme aspect ratios, and around every pinpoint) and every pinpoint grid of
//! the four families, with the released checkpoints' configs. If they ever disagreed, users
//! would get a `FeatureCountMismatch` at run time.
//!
//! Processor side: `pixels::image_plan` (how `process_image` cuts the image) and
//! `FeatureRules::image_tokens` (what `Processor::image_token_count` returns). Vision side:
//! `anyres::pack_image` on the graph's rows (`side²` per patch; width 1) for the anyres
//! layouts, the graph's `side²` rows for plain ones, and the OneVision video pooling.

use std::collections::BTreeSet;

use vidlm_model::anyres::select_best_resolution;
use vidlm_model::config::{ProcessorConfig, VisionProcessorConfig};
use vidlm_model::{Family, FamilySpec, FeatureRules, ImageLayout, VideoTokens};
use vidlm_processor::pixels::image_plan;
use vidlm_processor::settings::VisionSettings;
use vidlm_vision::anyres::{onevision_pool_frames, pack_image};

/// One released checkpoint: its image processor, processor attributes and vision tower.
struct Checkpoint {
    spec: &'static FamilySpec,
    image_processor: &'static str,
    processor: &'static str,
    /// `vision_config.image_size / patch_size`: rows per patch side of the vision graph.
    side: usize,
    /// `vision_aspect_ratio` N (OneVision).
    max_num_patches: u32,
}

impl Checkpoint {
    /// The family's feature rules under this checkpoint's processor attributes.
    fn rules(&self) -> FeatureRules {
        let pc: ProcessorConfig = serde_json::from_str(self.processor).unwrap();
        FeatureRules::resolve(self.spec, &pc).unwrap()
    }
}

fn checkpoints() -> Vec<Checkpoint> {
    let spec =
        |t: &str| Family::from_model_type(t).map(Family::spec).unwrap_or_else(|| panic!("{t}"));
    // (model_type, image processor, processor attributes, side); N is 9 for every checkpoint.
    let rows: [(&str, &'static str, &'static str, usize); 4] = [
        // llava-hf/llava-interleave-qwen-0.5b-hf: SigLIP 384/14.
        (
            "llava",
            r#"{"image_processor_type": "SiglipImageProcessor", "size": {"height": 384, "width": 384}}"#,
            r#"{"patch_size": 14, "vision_feature_select_strategy": "full", "num_additional_image_tokens": 0}"#,
            27,
        ),
        // llava-hf/llava-onevision-qwen2-0.5b-ov-hf: SigLIP 384/14, 36 pinpoints, anyres_max_9.
        (
            "llava_onevision",
            r#"{"image_processor_type": "LlavaOnevisionImageProcessor", "size": {"height": 384, "width": 384}}"#,
            r#"{"num_image_tokens": 729, "vision_feature_select_strategy": "full", "vision_aspect_ratio": "anyres_max_9"}"#,
            27,
        ),
        // LanguageBind/Video-LLaVA-7B-hf: CLIP 224/14, CLS dropped.
        (
            "video_llava",
            r#"{"image_processor_type": "VideoLlavaImageProcessor", "size": {"shortest_edge": 224}, "crop_size": {"height": 224, "width": 224}}"#,
            r#"{"patch_size": 14, "vision_feature_select_strategy": "default", "num_additional_image_tokens": 1}"#,
            16,
        ),
        // llava-hf/LLaVA-NeXT-Video-7B-hf: CLIP 336/14, 5 pinpoints, CLS dropped.
        (
            "llava_next_video",
            r#"{"image_processor_type": "LlavaNextImageProcessor", "size": {"shortest_edge": 336}, "crop_size": {"height": 336, "width": 336}}"#,
            r#"{"patch_size": 14, "vision_feature_select_strategy": "default", "num_additional_image_tokens": 1}"#,
            24,
        ),
    ];
    rows.into_iter()
        .map(|(t, image_processor, processor, side)| Checkpoint {
            spec: spec(t),
            image_processor,
            processor,
            side,
            max_num_patches: 9,
        })
        .collect()
}

/// xorshift64*: deterministic sizes without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Log-uniform in 1..=max.
    fn side(&mut self, max: f64) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        (max.powf(u).round() as usize).max(1)
    }
}

/// Image sizes: random (log-uniform up to 4000 px), extreme aspect ratios, and for every
/// pinpoint its exact size, its neighbours and scaled versions (so every pinpoint is chosen).
fn sizes(pinpoints: &[(u32, u32)], rng: &mut Rng) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> =
        (0..400).map(|_| (rng.side(4000.0), rng.side(4000.0))).collect();
    out.extend([
        (1, 1),
        (1, 4000),
        (4000, 1),
        (2, 3000),
        (3000, 2),
        (899, 1024),
        (480, 640),
        (1080, 1920),
        (100, 1000),
        (503, 316),
    ]);
    for &(ph, pw) in pinpoints {
        let (ph, pw) = (ph as usize, pw as usize);
        for (h, w) in [
            (ph, pw),
            (ph - 1, pw),
            (ph, pw - 1),
            (ph + 1, pw + 1),
            (ph / 2, pw / 2),
            (ph / 3 + 7, pw / 3 + 5),
            (ph * 3 / 2, pw * 3 / 2),
        ] {
            out.push((h.max(1), w.max(1)));
        }
        for _ in 0..8 {
            // Same aspect ratio, random scale, a few pixels of jitter.
            let scale = 0.2 + (rng.next() % 1000) as f64 / 400.0;
            let jitter = |v: f64, r: u64| ((v * scale) as i64 + (r % 9) as i64 - 4).max(1) as usize;
            out.push((jitter(ph as f64, rng.next()), jitter(pw as f64, rng.next())));
        }
    }
    out
}

#[test]
fn placeholder_count_equals_packed_feature_rows() {
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let mut checked = 0usize;
    for ck in checkpoints() {
        let spec = ck.spec;
        let cfg: VisionProcessorConfig = serde_json::from_str(ck.image_processor).unwrap();
        let settings =
            VisionSettings::resolve(&cfg, "preprocessor_config.json", spec.image_class).unwrap();
        let rules = ck.rules();
        let per = ck.side * ck.side;
        // Width-1 features: the graph's rows for every patch, a one-value newline.
        let newline = spec.image_newline.then_some(&[1.0f32][..]);
        let budget =
            (spec.image_layout == ImageLayout::AnyresOnevision).then_some(ck.max_num_patches);
        let mut chosen = BTreeSet::new();
        let multi_modes: &[bool] = if spec.image_layout == ImageLayout::AnyresOnevision {
            &[false, true]
        } else {
            &[false]
        };
        for (h, w) in sizes(&settings.pinpoints, &mut rng) {
            for &multi in multi_modes {
                let what = format!("{} {h}x{w} multi={multi}", spec.name);
                let plan = image_plan(h, w, spec.image_layout, &settings, multi, &what)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                let patch_px = (plan.patch_out.0 as u32, plan.patch_out.1 as u32);
                let tokens = rules.image_tokens(&plan.grid, patch_px);
                let rows = match spec.image_layout {
                    // The graph's rows (after the feature-select strategy), one patch.
                    ImageLayout::Plain => per,
                    ImageLayout::AnyresOnevision | ImageLayout::AnyresNext => {
                        let patches = vec![0.0f32; plan.grid.num_patches() * per];
                        pack_image(&patches, ck.side, 1, &plan.grid, newline, budget)
                            .unwrap_or_else(|e| panic!("{what}: {e}"))
                            .len()
                    }
                    ImageLayout::Patchified => unreachable!("no patchified checkpoint here"),
                };
                assert_eq!(
                    tokens, rows,
                    "{what}: processor {tokens} placeholders, vision {rows} rows ({:?})",
                    plan.grid
                );
                if let Some(t) = plan.tiling {
                    chosen.insert(t.best);
                    assert_eq!(
                        select_best_resolution(h as u32, w as u32, &settings.pinpoints),
                        Some(t.best)
                    );
                }
                checked += 1;
            }
        }
        // Every pinpoint grid of the family was exercised.
        let all: BTreeSet<(u32, u32)> = settings.pinpoints.iter().copied().collect();
        assert_eq!(
            chosen.len(),
            all.len(),
            "{}: pinpoints never chosen: {:?}",
            spec.name,
            all.difference(&chosen).collect::<Vec<_>>()
        );
    }
    assert!(checked > 2000, "{checked}");
}

#[test]
fn video_placeholders_equal_pooled_rows() {
    for ck in checkpoints() {
        let spec = ck.spec;
        let rules = ck.rules();
        let px = ck.side * 14;
        for frames in [1usize, 2, 7, 8, 32] {
            let tokens = rules.video_tokens(frames, px, px);
            let rows = match spec.video_tokens {
                // Frames are images: the prompt has no video placeholders.
                VideoTokens::FramesAsImages => 0,
                // Host pooling (no video_encoder) + one newline per video.
                VideoTokens::OnevisionPooled => {
                    onevision_pool_frames(
                        &vec![0.0; frames * ck.side * ck.side],
                        frames,
                        ck.side,
                        1,
                    )
                    .unwrap()
                    .len()
                        + 1
                }
                // Inside video_encoder: the tower's rows with CLS per frame / 2x2 average pooling.
                VideoTokens::PerFrame => frames * (ck.side * ck.side + 1),
                VideoTokens::NextPooled => frames * (ck.side / 2) * (ck.side / 2),
                VideoTokens::GridMerged | VideoTokens::GridMergedTimestamped => {
                    unreachable!("no patchified checkpoint here")
                }
            };
            assert_eq!(tokens, rows, "{} video of {frames} frames", spec.name);
        }
    }
}
