//! The patchified (Qwen2.5-VL / Qwen3-VL) vision runner against Python on the golden scenarios.
//!
//! `python/qwen_vision_refs.py` (run by `cargo xtask fixtures`, after the export) re-makes each Qwen
//! golden scenario's processor pixels (checked against the goldens' `pixel_sha256`) and records, in
//! `$VIDLM_CACHE/fixtures/<family>/vision_ref/<scenario>.safetensors`, the exported
//! `vision_encoder` run from Python ONNX Runtime with the host tables of `vidlm_export/qwen_host.py`
//! (`onnx_*`, fp32 and fp16) and transformers' `get_image_features` / `get_video_features`
//! (`hf_*`: `pooler_output`, `deepstack_features`).
//!
//! The same graph with the same inputs and session options, so the Rust runner must give the Python
//! replay's features and DeepStack levels bit for bit (fp32 and fp16; the references are made with
//! pre-packing off, as vidlm-ort loads fp32/fp16 graphs); against transformers the export's
//! validation bound holds (1e-4 + 1e-4·max|ref|). Covered: an image, videos of several temporal patches, two grids in one
//! prompt, runs split by `max_batch` and resumed `encode_step`s (equal to the whole run), fp16
//! graphs, and the typed errors of bad inputs.

use crate::common;

use std::path::PathBuf;

use common::{fixture_model, Golden};
use vidlm_decoder::SessionOptions;
use vidlm_model::{ErrorKind, PatchGrid, Precision};
use vidlm_vision::{
    EncodeState, FeatureBlock, ImagePixels, VideoPixels, VisionEncoder, VisionError, VisionInput,
    VisionOptions,
};

const FAMILIES: [&str; 2] = ["qwen2_5_vl", "qwen3_vl"];
const SCENARIOS: [&str; 6] =
    ["video_num_frames", "video_fps", "image", "image_video", "multi_video", "batched"];
/// The Rust runner and the Python replay run the same graph on the same inputs (the host tables
/// are bit-identical by construction, the session options are the runtime's): they must agree
/// exactly, fp32 and fp16 (the acceptance bound was 1e-5; they are bit-identical).
const ONNX_ATOL: f32 = 0.0;

fn refs_dir(family: &str) -> PathBuf {
    let model = fixture_model(family);
    let dir = model.parent().expect("fixture dir").join("vision_ref");
    assert!(
        dir.join("image.safetensors").is_file(),
        "{} is missing: run `cargo xtask fixtures` (or python/qwen_vision_refs.py after it)",
        dir.display()
    );
    dir
}

fn encoder(family: &str, max_batch: usize, precision: Precision) -> VisionEncoder {
    let session = SessionOptions { intra_threads: Some(1), ..Default::default() };
    VisionEncoder::from_dir(fixture_model(family), &VisionOptions { session, max_batch, precision })
        .unwrap_or_else(|e| panic!("{family}: {e}"))
}

fn grids(g: &Golden, key: &str) -> Vec<[usize; 3]> {
    g.i(key).1.chunks(3).map(|r| [r[0] as usize, r[1] as usize, r[2] as usize]).collect()
}

/// Each item's pixel rows, by its grid.
fn split<'a>(px: &'a [f32], grids: &[[usize; 3]]) -> Vec<&'a [f32]> {
    let total: usize = grids.iter().map(|g| g[0] * g[1] * g[2]).sum();
    let row = px.len() / total;
    let mut start = 0;
    grids
        .iter()
        .map(|g| {
            let n = g[0] * g[1] * g[2] * row;
            start += n;
            &px[start - n..start]
        })
        .collect()
}

fn images<'a>(g: &'a Golden) -> Vec<ImagePixels<'a>> {
    if !g.has("pixel_values") {
        return Vec::new();
    }
    let gr = grids(g, "image_grid_thw");
    split(&g.f("pixel_values").1, &gr)
        .into_iter()
        .zip(gr)
        .map(|(pixel_values, thw)| ImagePixels {
            pixel_values,
            grid: PatchGrid::patchified((0, 0), (thw[0] as u32, thw[1] as u32, thw[2] as u32)),
            grid_thw: Some(thw),
        })
        .collect()
}

fn videos<'a>(g: &'a Golden) -> Vec<VideoPixels<'a>> {
    if !g.has("pixel_values_videos") {
        return Vec::new();
    }
    let gr = grids(g, "video_grid_thw");
    split(&g.f("pixel_values_videos").1, &gr)
        .into_iter()
        .zip(gr)
        .map(|(pixel_values, thw)| VideoPixels {
            pixel_values,
            frames: thw[0],
            grid_thw: Some(thw),
        })
        .collect()
}

/// Rows and DeepStack levels of all blocks, concatenated (level-major) like the references.
fn concat(blocks: &[FeatureBlock]) -> (Vec<f32>, Option<Vec<f32>>) {
    let rows: Vec<f32> = blocks.iter().flat_map(|b| b.data.iter().copied()).collect();
    let deep =
        vidlm_vision::DeepstackBlock::concat(blocks.iter().filter_map(|b| b.deepstack.as_ref()))
            .expect("deepstack concat")
            .map(|d| d.data);
    (rows, deep)
}

fn max_diff(a: &[f32], b: &[f32], what: &str) -> f32 {
    assert_eq!(a.len(), b.len(), "{what}: length");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn max_abs(a: &[f32]) -> f32 {
    a.iter().fold(0.0f32, |m, x| m.max(x.abs()))
}

/// Compares blocks of one kind with the reference tensors under `prefix`.
fn compare(
    blocks: &[FeatureBlock],
    g: &Golden,
    prefix: &str,
    kind: &str,
    deepstack: bool,
    tol: impl Fn(&[f32]) -> f32,
    what: &str,
) -> Vec<String> {
    let mut failures = Vec::new();
    let (rows, deep) = concat(blocks);
    let want = &g.f(&format!("{prefix}_{kind}_features")).1;
    let d = max_diff(&rows, want, what);
    if d > tol(want) {
        failures.push(format!("{what} {prefix} features: max |diff| {d:e} > {:e}", tol(want)));
    }
    let key = format!("{prefix}_{kind}_deepstack");
    match (deepstack, deep) {
        (true, Some(deep)) => {
            let want = &g.f(&key).1;
            let d = max_diff(&deep, want, what);
            if d > tol(want) {
                failures.push(format!("{what} {prefix} deepstack: max |diff| {d:e}"));
            }
        }
        (false, None) => assert!(!g.has(&key), "{what}: the reference has DeepStack levels"),
        (want, got) => failures
            .push(format!("{what}: DeepStack expected {want}, runner gave {}", got.is_some())),
    }
    failures
}

#[test]
fn fp32_features_match_the_python_onnx_replay_and_transformers() {
    let mut failures = Vec::new();
    for family in FAMILIES {
        let dir = refs_dir(family);
        let mut v = encoder(family, 8, Precision::Fp32);
        let deepstack = family == "qwen3_vl";
        let (mut saw_image, mut saw_multi_t, mut saw_two_grids) = (false, false, false);
        for sc in SCENARIOS {
            let g = Golden::load(&dir.join(format!("{sc}.safetensors")));
            let what = format!("{family}/{sc}");
            let ims = images(&g);
            if !ims.is_empty() {
                saw_image = true;
                let blocks = v.image_features(&ims).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(blocks.len(), ims.len());
                failures.extend(compare(
                    &blocks,
                    &g,
                    "onnx",
                    "image",
                    deepstack,
                    |_| ONNX_ATOL,
                    &what,
                ));
                failures.extend(compare(
                    &blocks,
                    &g,
                    "hf",
                    "image",
                    deepstack,
                    |r| 1e-4 + 1e-4 * max_abs(r),
                    &what,
                ));
            }
            let vids = videos(&g);
            if !vids.is_empty() {
                saw_multi_t |= vids.iter().any(|x| x.frames > 1);
                let mut gr: Vec<_> =
                    vids.iter().filter_map(|x| x.grid_thw).map(|g| (g[1], g[2])).collect();
                gr.dedup();
                saw_two_grids |= gr.len() > 1;
                let blocks = v.video_features(&vids).unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(blocks.len(), vids.len());
                for (b, x) in blocks.iter().zip(&vids) {
                    let [t, h, w] = x.grid_thw.expect("grid");
                    assert_eq!(b.rows(), t * h * w / 4, "{what}: rows of grid {t}x{h}x{w}");
                }
                failures.extend(compare(
                    &blocks,
                    &g,
                    "onnx",
                    "video",
                    deepstack,
                    |_| ONNX_ATOL,
                    &what,
                ));
                failures.extend(compare(
                    &blocks,
                    &g,
                    "hf",
                    "video",
                    deepstack,
                    |r| 1e-4 + 1e-4 * max_abs(r),
                    &what,
                ));
            }
        }
        assert!(saw_image && saw_multi_t && saw_two_grids, "{family}: scenarios lost coverage");
        // The grids' tables were computed once each and kept.
        assert!(v.cached_grids() >= 2, "{family}: {} grids cached", v.cached_grids());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A run split by `max_batch`, and an encode resumed one frame at a time, equal the whole run
/// (bit for bit).
#[test]
fn split_runs_and_resumed_steps_equal_the_whole_run() {
    for family in FAMILIES {
        let dir = refs_dir(family);
        let g = Golden::load(&dir.join("multi_video.safetensors"));
        let vids = videos(&g);
        assert!(vids.iter().all(|x| x.frames >= 2), "{family}: videos of several frames");
        let whole = encoder(family, 64, Precision::Fp32).video_features(&vids).expect("whole");
        let mut one = encoder(family, 1, Precision::Fp32);
        let split = one.video_features(&vids).expect("split");
        let mut two = encoder(family, 2, Precision::Fp32);
        let mut stepped = Vec::new();
        for x in &vids {
            let input = VisionInput::Video(*x);
            let mut state = EncodeState::default();
            let mut steps = 0;
            let block = loop {
                steps += 1;
                if let Some(b) = two.encode_step(&input, &mut state, 1).expect("step") {
                    break b;
                }
                assert_eq!(state.done(), steps);
            };
            assert_eq!(steps, x.frames, "{family}: one frame per step");
            stepped.push(block);
        }
        for (name, other) in [("max_batch 1", &split), ("steps of 1", &stepped)] {
            for (a, b) in whole.iter().zip(other.iter()) {
                assert_eq!(a.dim, b.dim);
                let d = max_diff(&a.data, &b.data, name);
                assert!(d == 0.0, "{family}: {name}: features differ by {d:e}");
                match (&a.deepstack, &b.deepstack) {
                    (Some(x), Some(y)) => {
                        assert_eq!(x.levels, y.levels);
                        let d = max_diff(&x.data, &y.data, name);
                        assert!(d == 0.0, "{family}: {name}: deepstack differs by {d:e}");
                    }
                    (None, None) => {}
                    _ => panic!("{family}: {name}: deepstack presence differs"),
                }
            }
        }
    }
}

/// fp16 graphs take fp16 pixels and tables (the masked key bias at fp16's lowest finite value):
/// the same graph and inputs as the Python fp16 replay.
#[test]
fn fp16_graphs_match_the_python_fp16_replay() {
    for family in FAMILIES {
        let dir = refs_dir(family);
        if !fixture_model(family).join("onnx/vision_encoder_fp16.onnx").is_file() {
            panic!(
                "{family}: the fixtures export fp16 graphs; vision_encoder_fp16.onnx is missing"
            );
        }
        let mut v = encoder(family, 8, Precision::Fp16);
        let deepstack = family == "qwen3_vl";
        let mut failures = Vec::new();
        for sc in ["image_video", "multi_video"] {
            let g = Golden::load(&dir.join(format!("{sc}.safetensors")));
            let what = format!("{family}/{sc} fp16");
            let ims = images(&g);
            if !ims.is_empty() {
                let blocks = v.image_features(&ims).expect("fp16 images");
                failures.extend(compare(
                    &blocks,
                    &g,
                    "onnx_fp16",
                    "image",
                    deepstack,
                    |_| ONNX_ATOL,
                    &what,
                ));
            }
            let blocks = v.video_features(&videos(&g)).expect("fp16 videos");
            failures.extend(compare(
                &blocks,
                &g,
                "onnx_fp16",
                "video",
                deepstack,
                |_| ONNX_ATOL,
                &what,
            ));
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}

#[test]
fn bad_patchified_inputs_are_typed_errors() {
    for family in FAMILIES {
        let dir = refs_dir(family);
        let g = Golden::load(&dir.join("image.safetensors"));
        let mut v = encoder(family, 8, Precision::Fp32);
        let im = images(&g)[0];
        let [t, h, w] = im.grid_thw.expect("grid");
        let shape_err = |e: VisionError| {
            assert!(matches!(e, VisionError::Shape(_)), "{family}: {e:?}");
            assert_eq!(e.kind(), ErrorKind::Internal);
        };
        // One value short.
        let short = &im.pixel_values[..im.pixel_values.len() - 1];
        shape_err(v.image_features(&[ImagePixels { pixel_values: short, ..im }]).unwrap_err());
        // A grid that is not a multiple of the merge size, with matching pixel count.
        let row = im.pixel_values.len() / (t * h * w);
        let odd = vec![0.0f32; (h - 1) * w * row];
        shape_err(
            v.image_features(&[ImagePixels {
                pixel_values: &odd,
                grid_thw: Some([1, h - 1, w]),
                ..im
            }])
            .unwrap_err(),
        );
        // No grid.
        shape_err(v.image_features(&[ImagePixels { grid_thw: None, ..im }]).unwrap_err());
        // An empty grid.
        shape_err(
            v.image_features(&[ImagePixels { pixel_values: &[], grid_thw: Some([0, h, w]), ..im }])
                .unwrap_err(),
        );
        // A video whose frame count is not its t.
        let video =
            VideoPixels { pixel_values: im.pixel_values, frames: 2, grid_thw: Some([1, h, w]) };
        shape_err(v.video_features(&[video]).unwrap_err());
        // Huge grids overflow nothing.
        shape_err(
            v.image_features(&[ImagePixels {
                grid_thw: Some([usize::MAX, usize::MAX / 2 * 2, 2]),
                ..im
            }])
            .unwrap_err(),
        );
        // The good input still works afterwards.
        assert_eq!(v.image_features(&[im]).expect("good image")[0].rows(), t * h * w / 4);
    }
}
