//! Parity with transformers 5.23 for the patchified families (Qwen2.5-VL, Qwen3-VL): every case
//! of `qwen_vl_goldens.json` (`python/processor_goldens.py`: video by `num_frames` (even and
//! odd), by `fps` (capped by `max_frames`), the default sampling, images small / odd / large /
//! with a pixel budget, image + video, two videos, a left-padded batch; both image backends) is
//! re-run and compared: prompts, `input_ids` and `attention_mask` exactly, pixels bit for bit
//! (an exact checksum of the float32 bits), `image_grid_thw` / `video_grid_thw` and
//! `second_per_grid_ts` exactly.

mod common;

use common::*;
use ndarray::ArrayD;
use serde_json::Value;
use std::path::Path;
use std::sync::OnceLock;
use vidlm_processor::{Backend, ProcessOptions, ProcessedInputs, Processor, Sampling};

fn qwen_goldens() -> &'static Value {
    static G: OnceLock<Value> = OnceLock::new();
    G.get_or_init(|| {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/goldens/qwen_vl_goldens.json");
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    })
}

/// `vidlm preprocess`'s options from a golden case's `options`.
fn options(o: &Value) -> ProcessOptions {
    let mut opts = ProcessOptions::default();
    if let Some(n) = o.get("num_frames").and_then(Value::as_u64) {
        opts.sampling = Sampling::NumFrames(n as usize);
    } else if let Some(f) = o.get("fps").and_then(Value::as_f64) {
        opts.sampling = Sampling::Fps(f);
    }
    opts.max_frames = o.get("max_frames").and_then(Value::as_u64).map(|v| v as usize);
    opts.min_pixels = o.get("min_pixels").and_then(Value::as_u64);
    opts.max_pixels = o.get("max_pixels").and_then(Value::as_u64);
    opts
}

fn grid(v: Option<&Value>) -> Option<Vec<Vec<i64>>> {
    v.map(|v| serde_json::from_value(v.clone()).unwrap_or_default())
}

fn rows(a: &Option<ndarray::Array2<i64>>) -> Option<Vec<Vec<i64>>> {
    a.as_ref().map(|a| a.rows().into_iter().map(|r| r.to_vec()).collect())
}

fn check_tensor(name: &str, ours: Option<&ArrayD<f32>>, golden: &Value) {
    let Some(ours) = ours else { panic!("{name}: missing") };
    let shape: Vec<usize> = serde_json::from_value(golden["shape"].clone()).unwrap_or_default();
    assert_eq!(ours.shape(), shape.as_slice(), "{name}: shape");
    let data = ours.as_standard_layout();
    let data = data.as_slice().unwrap_or(&[]);
    if wsum64(data) != golden["wsum64"].as_str().unwrap_or("") {
        // Say where it differs before failing.
        let idx = golden["sample_index"].as_array().cloned().unwrap_or_default();
        let val = golden["sample_value"].as_array().cloned().unwrap_or_default();
        let mut max = 0f64;
        for (i, v) in idx.iter().zip(&val) {
            let i = i.as_u64().unwrap_or(0) as usize;
            max = max.max((f64::from(data[i]) - v.as_f64().unwrap_or(f64::NAN)).abs());
        }
        panic!("{name}: pixels are not bit-identical (max sampled |diff| {max})");
    }
}

fn check_outputs(name: &str, out: &ProcessedInputs, case: &Value) {
    let empty = Vec::new();
    let ids = case["input_ids"].as_array().unwrap_or(&empty);
    assert_eq!(out.input_ids().nrows(), ids.len(), "{name}: batch");
    for (r, want) in ids.iter().enumerate() {
        let want = un_rle(want);
        let got = out.input_ids().row(r).to_vec();
        if got != want {
            let first = got.iter().zip(&want).position(|(a, b)| a != b);
            panic!(
                "{name}: input_ids row {r} differ (len {} vs {}), first difference at {first:?}",
                got.len(),
                want.len()
            );
        }
        if let Some(mask) = case["attention_mask"].as_array().and_then(|m| m.get(r)) {
            assert_eq!(out.attention_mask().row(r).to_vec(), un_rle(mask), "{name}: mask {r}");
        }
    }
    let tensors = case["tensors"].as_object().cloned().unwrap_or_default();
    assert_eq!(out.pixel_values.is_some(), tensors.contains_key("pixel_values"), "{name}");
    assert_eq!(
        out.pixel_values_videos.is_some(),
        tensors.contains_key("pixel_values_videos"),
        "{name}"
    );
    for (key, g) in &tensors {
        let t = if key == "pixel_values" {
            out.pixel_values.as_ref()
        } else {
            out.pixel_values_videos.as_ref()
        };
        check_tensor(&format!("{name}/{key}"), t, g);
    }
    assert_eq!(rows(&out.image_grid_thw), grid(case.get("image_grid_thw")), "{name}: image grid");
    assert_eq!(rows(&out.video_grid_thw), grid(case.get("video_grid_thw")), "{name}: video grid");
    let want_ts: Option<Vec<f32>> = case
        .get("second_per_grid_ts")
        .map(|v| serde_json::from_value::<Vec<f64>>(v.clone()).unwrap_or_default())
        .map(|v| v.into_iter().map(|x| x as f32).collect());
    assert_eq!(out.second_per_grid_ts, want_ts, "{name}: second_per_grid_ts");
    // The safetensors hand-off carries the grids under transformers' names.
    let names: Vec<String> = out.tensors().into_iter().map(|t| t.0).collect();
    for key in ["image_grid_thw", "video_grid_thw", "second_per_grid_ts"] {
        assert_eq!(names.iter().any(|n| n == key), case.get(key).is_some(), "{name}: {key}");
    }
}

#[test]
fn patchified_families_match_transformers() {
    let g = qwen_goldens();
    let cases = g["cases"].as_array().cloned().unwrap_or_default();
    assert_eq!(cases.len(), 38);
    let mut checked = 0;
    for fam in QWEN_FAMILIES {
        let p = Processor::from_dir(model_dir("hub", fam)).unwrap_or_else(|e| panic!("{fam}: {e}"));
        for case in cases.iter().filter(|c| c["family"] == fam) {
            let name = format!(
                "{fam}/{}/{}",
                case["backend"].as_str().unwrap_or(""),
                case["case"].as_str().unwrap_or("")
            );
            let convs: Vec<_> = case["conversations"]
                .as_array()
                .unwrap_or(&Vec::new())
                .iter()
                .map(conversation)
                .collect();
            let mut opts = options(&case["options"]);
            opts.image_backend = Some(
                case["backend"]
                    .as_str()
                    .unwrap_or("")
                    .parse::<Backend>()
                    .unwrap_or(Backend::Torchvision),
            );
            let out = p.process(&convs, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
            let no_prompts = Vec::new();
            let prompts: Vec<&str> = case["prompts"]
                .as_array()
                .unwrap_or(&no_prompts)
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert_eq!(
                out.prompts.iter().map(String::as_str).collect::<Vec<_>>(),
                prompts,
                "{name}"
            );
            check_outputs(&name, &out, case);
            // The hand-off: each conversation's video grids are the batch's, in order.
            let grids: Vec<(u32, u32, u32)> = out
                .conversations
                .iter()
                .flat_map(|c| c.video_grids.iter().map(|g| g.thw))
                .collect();
            let want: Vec<(u32, u32, u32)> = grid(case.get("video_grid_thw"))
                .unwrap_or_default()
                .into_iter()
                .map(|r| (r[0] as u32, r[1] as u32, r[2] as u32))
                .collect();
            assert_eq!(grids, want, "{name}: conversation video grids");
            checked += 1;
        }
    }
    assert_eq!(checked, cases.len());
}

#[test]
fn timestamps_are_in_the_prompt_ids() {
    // Qwen3-VL: `<t seconds>` before every temporal patch, as text tokens between the markers.
    let p = Processor::from_dir(model_dir("hub", "qwen3_vl")).unwrap_or_else(|e| panic!("{e}"));
    let case = qwen_goldens()["cases"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["family"] == "qwen3_vl" && c["case"] == "video_fps"))
        .cloned()
        .unwrap_or(Value::Null);
    let convs: Vec<_> =
        case["conversations"].as_array().unwrap_or(&Vec::new()).iter().map(conversation).collect();
    let out = p.process(&convs, &options(&case["options"])).unwrap_or_else(|e| panic!("{e}"));
    let text = p
        .tokenizer()
        .decode(&out.input_ids().row(0).iter().map(|&i| i as u32).collect::<Vec<_>>(), false)
        .unwrap_or_default();
    // 30 frames at 10 fps, 2 fps -> 6 frames: indices 0,6,12,17,23,29 -> pairs (0,6) (12,17) (23,29).
    for t in ["<0.3 seconds>", "<1.4 seconds>", "<2.6 seconds>"] {
        assert!(text.contains(t), "{t} missing from {text}");
    }
}
