//! End-to-end parity with transformers on the committed goldens (`tests/goldens/<family>/`,
//! written by `python/fixtures.py`): the goldens' saved model inputs (ids, mask, pixel values)
//! go through vidlm-vision + vidlm-decoder; greedy tokens must be identical to transformers'
//! `generate`; fp32 first-step logits within 1e-4 absolute (the acceptance bound; the tiny models'
//! logits are scaled to max |logit| ~8, see `python/random_checkpoint.py::TINY_LOGIT_GAIN`).

use crate::common;

use common::*;
use vidlm_decoder::{
    Features, GenerationOptions, LanguageModel, LmOptions, Sequence, SessionOptions,
};
use vidlm_model::anyres::anyres_grid;
use vidlm_model::{ModelFiles, PatchGrid, Precision};
use vidlm_vision::{ImagePixels, VideoPixels, VisionEncoder, VisionOptions};

fn session() -> SessionOptions {
    SessionOptions { intra_threads: Some(2), ..Default::default() }
}

/// Splits `feats` (all rows of the batch, in order) by each row's placeholder count.
fn split_by_rows(
    rows: &[Vec<i64>],
    token: Option<i64>,
    feats: Option<Features>,
) -> Vec<Option<Features>> {
    let Some(f) = feats else { return vec![None; rows.len()] };
    let Some(t) = token else { return vec![None; rows.len()] };
    let dim = f.dim();
    let mut start = 0usize;
    rows.iter()
        .map(|r| {
            let n = r.iter().filter(|&&x| x == t).count();
            let part = f.data()[start * dim..(start + n) * dim].to_vec();
            start += n;
            Some(Features::new(part, dim).expect("feature rows"))
        })
        .collect()
}

const FP32_ATOL: f32 = 1e-4;
const FP16_ATOL: f32 = 0.05;
const FP16_RTOL: f32 = 0.02;

struct Report {
    failures: Vec<String>,
    checked: Vec<String>,
}

fn check_family(family_dir: &str, max_batch: usize, report: &mut Report) {
    check_family_variant(family_dir, max_batch, Precision::Fp32, report)
}

/// `precision` selects the variant of every graph (fp32, fp16). fp32 must match exactly; fp16
/// is checked against the same goldens with fp16 tolerances (see callers).
fn check_family_variant(
    family_dir: &str,
    max_batch: usize,
    precision: Precision,
    report: &mut Report,
) {
    let suffix = precision.suffix();
    let root = fixture_root();
    let gdir = root.join("tests/goldens").join(family_dir);
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(gdir.join("golden.json")).expect("golden.json"),
    )
    .expect("golden json");
    let model = if suffix.is_empty() { model_for(family_dir) } else { fixture_model(family_dir) };
    assert!(
        model.join(format!("onnx/decoder_model_merged{suffix}.onnx")).is_file(),
        "goldens for {family_dir} are committed but its model {} is missing: run `cargo xtask fixtures`",
        model.display()
    );
    let mut vision = VisionEncoder::from_dir(
        &model,
        &VisionOptions { session: session(), max_batch, precision },
    )
    .unwrap_or_else(|e| panic!("{family_dir}: vision: {e}"));
    let mut lm = LanguageModel::from_dir(
        &model,
        &LmOptions {
            session: session(),
            embed_precision: precision,
            decoder_precision: precision,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{family_dir}: lm: {e}"));
    let ph = lm.placeholders();
    let size = vision.image_size();
    // The goldens hold transformers' processor outputs: the patch grids are recomputed here from
    // `image_sizes` and the model's pinpoints (the runtime gets them from the processor).
    let files = ModelFiles::read(&model).unwrap_or_else(|e| panic!("{family_dir}: {e}"));
    let pins: Vec<(u32, u32)> = files
        .config
        .image_grid_pinpoints
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|p| (p[0], p[1]))
        .collect();
    let anyres = vision.spec().image_layout.is_anyres();
    let scenarios = meta["scenarios"].as_object().expect("scenarios");
    for (name, sc) in scenarios {
        let g = Golden::load(&gdir.join(sc["tensors"].as_str().expect("tensors")));
        let rows = unpadded_rows(g.i("input_ids"), g.i("attention_mask"));
        // Images: [n_images, max_patches, 3, s, s] (padded) or [n, 3, s, s].
        let img_key =
            if g.has("pixel_values_images") { "pixel_values_images" } else { "pixel_values" };
        let image_feats = if g.has(img_key) {
            let (shape, px) = g.f(img_key);
            let per = 3 * size * size;
            let (n, max_p) = if shape.len() == 5 { (shape[0], shape[1]) } else { (shape[0], 1) };
            let sizes = g.has("image_sizes").then(|| g.i("image_sizes").1.clone());
            // OneVision's multi-image mode: a conversation with several images (one per batch row here).
            let multi_image = vision.spec().image_layout
                == vidlm_model::ImageLayout::AnyresOnevision
                && n > 1
                && rows.len() == 1;
            let mut images = Vec::new();
            for i in 0..n {
                let (h, w) = match &sizes {
                    Some(s) => (s[2 * i] as u32, s[2 * i + 1] as u32),
                    None => (size as u32, size as u32),
                };
                let grid = if anyres && !multi_image {
                    anyres_grid((h, w), &pins, size as u32).expect("grid")
                } else {
                    PatchGrid::single((h, w), multi_image)
                };
                let start = i * max_p * per;
                images.push(ImagePixels {
                    pixel_values: &px[start..start + grid.num_patches() * per],
                    grid,
                    grid_thw: None,
                });
            }
            let blocks = vision
                .image_features(&images)
                .unwrap_or_else(|e| panic!("{family_dir}/{name}: {e}"));
            let dim = blocks[0].dim;
            Some(
                Features::new(blocks.into_iter().flat_map(|b| b.data).collect(), dim)
                    .expect("features"),
            )
        } else {
            None
        };
        let video_feats = if g.has("pixel_values_videos") {
            let (shape, px) = g.f("pixel_values_videos");
            let (n, t) = (shape[0], shape[1]);
            let per = t * 3 * size * size;
            let vids: Vec<VideoPixels> = (0..n)
                .map(|i| VideoPixels {
                    pixel_values: &px[i * per..(i + 1) * per],
                    frames: t,
                    grid_thw: None,
                })
                .collect();
            let blocks =
                vision.video_features(&vids).unwrap_or_else(|e| panic!("{family_dir}/{name}: {e}"));
            let dim = blocks[0].dim;
            Some(
                Features::new(blocks.into_iter().flat_map(|b| b.data).collect(), dim)
                    .expect("features"),
            )
        } else {
            None
        };
        let imgs = split_by_rows(&rows, ph.image_token_id, image_feats);
        let vids = split_by_rows(&rows, ph.video_token_id, video_feats);
        let seqs: Vec<Sequence> = rows
            .iter()
            .zip(imgs)
            .zip(vids)
            .map(|((r, i), v)| Sequence {
                input_ids: r.clone(),
                image_features: i,
                video_features: v,
                positions: None,
            })
            .collect();
        // First-step logits at the stored columns.
        let logits =
            lm.first_step_logits(&seqs).unwrap_or_else(|e| panic!("{family_dir}/{name}: {e}"));
        let vocab = logits.len() / seqs.len();
        let ids = &g.i("first_logits_ids").1;
        let want = &g.f("first_logits").1;
        let mut got = Vec::new();
        for r in 0..seqs.len() {
            for &c in ids {
                got.push(logits[r * vocab + c as usize]);
            }
        }
        let d = max_abs_diff(&got, want);
        // Greedy tokens.
        let (tshape, want_tokens) = g.i("tokens");
        let opts = GenerationOptions {
            max_new_tokens: Some(tshape[1]),
            eos_token_ids: Some(vec![]),
            ..Default::default()
        };
        let res = lm.generate(&seqs, &opts).unwrap_or_else(|e| panic!("{family_dir}/{name}: {e}"));
        let got_tokens: Vec<i64> = res.rows.iter().flat_map(|r| r.token_ids.clone()).collect();
        let max_ref = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let label = format!(
            "{family_dir}/{name}{suffix} (batch {}, max_batch {max_batch}): logits max|Δ| {d:.2e} (max|ref| {max_ref:.1})",
            seqs.len()
        );
        eprintln!("{label}");
        if suffix.is_empty() {
            // fp32: max |Δ| <= 1e-4 absolute (python/fixtures.py's ONNX replay checks the same bound;
            // measured worst case 4.3e-5, OneVision batched).
            if d > FP32_ATOL {
                report.failures.push(format!("{label} > {FP32_ATOL:e}"));
            }
            if &got_tokens != want_tokens {
                report.failures.push(format!("{label}: tokens {got_tokens:?} != {want_tokens:?}"));
            }
        } else {
            // fp16 graphs: logits within FP16_ATOL + FP16_RTOL * max|ref| of the fp32 transformers
            // run, and the same first token in every row (later tokens may legitimately diverge).
            let tol = FP16_ATOL + FP16_RTOL * max_ref;
            if d > tol {
                report.failures.push(format!("{label} > {tol:.3}"));
            }
            let n = tshape[1];
            for r in 0..seqs.len() {
                if got_tokens.get(r * n) != want_tokens.get(r * n) {
                    report.failures.push(format!("{label}: first token of row {r} differs"));
                }
            }
        }
        report.checked.push(label);
    }
}

#[test]
fn next_video_demo_model_matches_transformers() {
    let mut report = Report { failures: vec![], checked: vec![] };
    // max_batch 3 splits the 8-frame videos and 5-patch images into several ORT calls.
    check_family("llava_next_video", 3, &mut report);
    assert!(
        report.checked.len() >= 6,
        "expected the 6 NeXT-Video scenarios, got {:?}",
        report.checked
    );
    assert!(report.failures.is_empty(), "{:#?}", report.failures);
}

/// The golden families whose vision graphs take whole images or frames (the LLaVA layouts): this
/// file feeds the goldens' pixels straight to the graphs and the first decoder step with 1-row
/// positions. The patchified (Qwen-VL) families are checked against the same goldens by
/// `tests/qwen_runner.rs` (features and DeepStack levels, fp32 and fp16, against the Python replay
/// and transformers' `pooler_output`) and end to end by the pipeline's and the engine's golden
/// tests (tokens, with their 3-row positions).
fn llava_layout_families() -> Vec<String> {
    golden_families()
        .into_iter()
        .filter(|fam| {
            let files = ModelFiles::read(fixture_model(fam)).expect("fixture model");
            !files.spec().expect("family").image_layout.is_patchified()
        })
        .collect()
}

#[test]
fn every_family_with_goldens_matches_transformers() {
    let mut report = Report { failures: vec![], checked: vec![] };
    for fam in llava_layout_families() {
        check_family(&fam, 8, &mut report);
    }
    assert!(!report.checked.is_empty(), "no goldens found under tests/goldens");
    assert!(report.failures.is_empty(), "{:#?}", report.failures);
}

#[test]
fn fp16_graphs_stay_close_to_transformers() {
    let mut report = Report { failures: vec![], checked: vec![] };
    for fam in llava_layout_families() {
        let model = fixture_model(&fam);
        assert!(
            model.join("onnx/decoder_model_merged_fp16.onnx").is_file(),
            "{fam}: no fp16 export at {} (run `cargo xtask fixtures`)",
            model.display()
        );
        check_family_variant(&fam, 4, Precision::Fp16, &mut report);
    }
    assert!(!report.checked.is_empty(), "no goldens found under tests/goldens");
    assert!(report.failures.is_empty(), "{:#?}", report.failures);
}
