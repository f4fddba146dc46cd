//! Parity with transformers 5.23: every golden case of `python/processor_goldens.py`
//! (4 families × {torchvision, PIL} × 10 cases) is re-run here and compared:
//! prompts and `input_ids` / `attention_mask` / `image_sizes` exactly; pixel tensors by shape,
//! an exact checksum of the float32 bits, per-channel sums, sampled values, and (two small
//! cases) full u8 reconstructions.

use crate::common;

use common::*;
use ndarray::ArrayD;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use vidlm_processor::family::VisionSettings;
use vidlm_processor::pixels::Normalizer;
use vidlm_processor::{Backend, ProcessOptions, ProcessedInputs, Processor};

fn backend(s: &str) -> Backend {
    s.parse().unwrap_or_else(|e| panic!("{e}"))
}

/// Max |ours - theirs| · std (i.e. after unnormalizing to [0, 1]) over the sampled values.
fn sample_diff(ours: &[f32], golden: &Value, std: &[f64; 3], shape: &[usize]) -> f64 {
    let idx = golden["sample_index"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let val = golden["sample_value"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let plane: usize = shape[shape.len() - 2..].iter().product();
    let mut max = 0f64;
    for (i, v) in idx.iter().zip(val) {
        let i = i.as_u64().unwrap_or(0) as usize;
        let c = (i / plane) % 3;
        let d = (f64::from(ours[i]) - v.as_f64().unwrap_or(f64::NAN)).abs() * std[c];
        max = max.max(d);
    }
    max
}

struct Outcome {
    exact: bool,
    max_diff: f64,
}

fn compare_tensor(
    name: &str,
    ours: &ArrayD<f32>,
    golden: &Value,
    settings: &VisionSettings,
) -> Outcome {
    let shape: Vec<usize> = golden["shape"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|v| v.as_u64().unwrap_or(0) as usize)
        .collect();
    assert_eq!(ours.shape(), shape.as_slice(), "{name}: shape");
    let data = ours.as_standard_layout();
    let data = data.as_slice().unwrap_or(&[]);
    let exact = wsum64(data) == golden["wsum64"].as_str().unwrap_or("");
    let max_diff = sample_diff(data, golden, &settings.std, &shape);
    // Per-channel sums.
    let plane: usize = shape[shape.len() - 2..].iter().product();
    let mut sums = [0f64; 3];
    for (i, v) in data.iter().enumerate() {
        sums[(i / plane) % 3] += f64::from(*v);
    }
    for c in 0..3 {
        let g = golden["channel_sum"][c].as_f64().unwrap_or(f64::NAN);
        let tol = 1e-3 * (data.len() as f64 / 3.0).max(1.0) / 255.0 + 1e-6 * g.abs();
        assert!((sums[c] - g).abs() <= tol, "{name}: channel {c} sum {} vs {g}", sums[c]);
    }
    Outcome { exact, max_diff }
}

fn check_case(
    p: &Processor,
    case: &Value,
    report: &mut BTreeMap<String, (usize, usize, f64)>,
    layout: &str,
) {
    let name = format!(
        "{}/{}/{}/{layout}",
        case["family"].as_str().unwrap_or(""),
        case["backend"].as_str().unwrap_or(""),
        case["case"].as_str().unwrap_or("")
    );
    let convs: Vec<_> =
        case["conversations"].as_array().unwrap_or(&Vec::new()).iter().map(conversation).collect();
    let be = backend(case["backend"].as_str().unwrap_or("torchvision"));
    let opts = ProcessOptions { image_backend: Some(be), ..ProcessOptions::default() };
    let out: ProcessedInputs = p.process(&convs, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));

    let empty = Vec::new();
    let prompts: Vec<&str> =
        case["prompts"].as_array().unwrap_or(&empty).iter().filter_map(Value::as_str).collect();
    assert_eq!(
        out.prompts.iter().map(String::as_str).collect::<Vec<_>>(),
        prompts,
        "{name}: prompts"
    );
    for (r, (ids, mask)) in case["input_ids"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .zip(case["attention_mask"].as_array().unwrap_or(&Vec::new()))
        .enumerate()
    {
        let want_ids = un_rle(ids);
        let got: Vec<i64> = out.input_ids().row(r).to_vec();
        if got != want_ids {
            let first = got.iter().zip(&want_ids).position(|(a, b)| a != b);
            panic!(
                "{name}: input_ids row {r} differ (len {} vs {}), first difference at {first:?}",
                got.len(),
                want_ids.len()
            );
        }
        assert_eq!(
            out.attention_mask().row(r).to_vec(),
            un_rle(mask),
            "{name}: attention_mask row {r}"
        );
    }
    assert_eq!(
        out.input_ids().nrows(),
        case["input_ids"].as_array().map(Vec::len).unwrap_or(0),
        "{name}: batch"
    );
    if let Some(sizes) = case.get("image_sizes") {
        let want: Vec<Vec<i64>> = serde_json::from_value(sizes.clone()).unwrap_or_default();
        let got: Vec<Vec<i64>> = out
            .image_sizes
            .as_ref()
            .map(|a| a.rows().into_iter().map(|r| r.to_vec()).collect())
            .unwrap_or_default();
        assert_eq!(got, want, "{name}: image_sizes");
    } else {
        assert!(out.image_sizes.is_none(), "{name}: unexpected image_sizes");
    }
    if let Some(b) = case.get("batch_num_images") {
        let want: Vec<i64> = serde_json::from_value(b.clone()).unwrap_or_default();
        assert_eq!(
            out.batch_num_images.clone().unwrap_or_default(),
            want,
            "{name}: batch_num_images"
        );
    }
    let tensors = case["tensors"].as_object().cloned().unwrap_or_default();
    let mut keys: Vec<&str> = Vec::new();
    if out.pixel_values.is_some() {
        keys.push(out.image_key);
    }
    if out.pixel_values_videos.is_some() {
        keys.push("pixel_values_videos");
    }
    let mut want_keys: Vec<&str> = tensors.keys().map(String::as_str).collect();
    want_keys.sort_unstable();
    keys.sort_unstable();
    assert_eq!(keys, want_keys, "{name}: tensor keys");
    for (key, g) in &tensors {
        let (t, s, kind) = if key == "pixel_values_videos" {
            (out.pixel_values_videos.as_ref(), p.video_settings(), "video")
        } else {
            (out.pixel_values.as_ref(), p.image_settings(), "image")
        };
        let (Some(t), Some(s)) = (t, s) else { panic!("{name}: missing {key}") };
        let o = compare_tensor(&format!("{name}/{key}"), t, g, s);
        let tensor_backend = if kind == "video" {
            "torchvision"
        } else {
            case["image_backend"].as_str().unwrap_or("")
        };
        // Torchvision: within 1/255 after unnormalizing; PIL: bit-identical.
        if tensor_backend == "pil" {
            assert!(
                o.exact,
                "{name}/{key}: PIL-backend pixels are not bit-identical (max sampled diff {})",
                o.max_diff
            );
        } else {
            assert!(
                o.max_diff <= 1.0 / 255.0 + 1e-6,
                "{name}/{key}: max diff {} > 1/255",
                o.max_diff
            );
        }
        let k = format!("{}/{tensor_backend}/{kind}", case["family"].as_str().unwrap_or(""));
        let e = report.entry(k).or_insert((0, 0, 0.0));
        e.0 += 1;
        e.1 += usize::from(o.exact);
        e.2 = e.2.max(o.max_diff);
    }
}

#[test]
fn hub_layout_matches_transformers() {
    let g = goldens();
    let mut procs = BTreeMap::new();
    for f in FAMILIES {
        procs.insert(
            f,
            Processor::from_dir(model_dir("hub", f)).unwrap_or_else(|e| panic!("{f}: {e}")),
        );
    }
    let mut report = BTreeMap::new();
    let cases = g["cases"].as_array().cloned().unwrap_or_default();
    assert_eq!(cases.len(), 80);
    for case in &cases {
        let p = &procs[case["family"].as_str().unwrap_or("")];
        check_case(p, case, &mut report, "hub");
    }
    let mut table = String::from(
        "| family/backend/kind | tensors | bit-identical | max diff (×255) |\n|---|---|---|---|\n",
    );
    for (k, (n, exact, d)) in &report {
        let _ = writeln!(table, "| {k} | {n} | {exact} | {:.3} |", d * 255.0);
    }
    eprintln!("{table}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/processor-parity.md");
    let _ = std::fs::write(out, table);
    // Every tensor is in fact bit-identical, torchvision included; keep it that way.
    for (k, (n, exact, _)) in &report {
        assert_eq!(n, exact, "{k}: not every tensor is bit-identical");
    }
}

use std::path::Path;

#[test]
fn v5_layout_matches_transformers() {
    let g = goldens();
    let mut report = BTreeMap::new();
    for f in FAMILIES {
        let p = Processor::from_dir(model_dir("v5", f)).unwrap_or_else(|e| panic!("{f} v5: {e}"));
        for case in g["cases"].as_array().unwrap_or(&Vec::new()) {
            let name = case["case"].as_str().unwrap_or("");
            if case["family"] == f
                && case["backend"] == "torchvision"
                && ["video_tiny", "image_odd", "multi_turn_mixed", "batch_left_pad"].contains(&name)
            {
                check_case(&p, case, &mut report, "v5");
            }
        }
    }
    assert!(!report.is_empty());
}

#[test]
fn normalization_tables_are_exact() {
    let g = goldens();
    let luts = g["luts"].as_object().cloned().unwrap_or_default();
    assert!(luts.len() >= 14);
    for (key, v) in &luts {
        let parts: Vec<&str> = key.split('/').collect();
        let p = Processor::from_dir(model_dir("hub", parts[0])).unwrap_or_else(|e| panic!("{e}"));
        let s = if parts[2] == "video" { p.video_settings() } else { p.image_settings() };
        let s = s.unwrap_or_else(|| panic!("{key}: no settings"));
        let n = Normalizer::new(s, backend(v["backend"].as_str().unwrap_or("")));
        for c in 0..3 {
            for lv in 0..=255u8 {
                let want = v["lut"][c][usize::from(lv)].as_f64().unwrap_or(f64::NAN) as f32;
                assert_eq!(
                    n.value(c, lv).to_bits(),
                    want.to_bits(),
                    "{key}: channel {c} level {lv}: {} vs {want}",
                    n.value(c, lv)
                );
            }
        }
    }
}

#[test]
fn small_cases_in_full() {
    let g = goldens();
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/goldens/processor_small.safetensors");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{e}"));
    let names = st.names();
    assert_eq!(names.len(), 2);
    for name in names {
        let parts: Vec<&str> = name.split('/').collect();
        let (case_name, fam, be, key) = (parts[0], parts[1], parts[2], parts[3]);
        let case = g["cases"]
            .as_array()
            .and_then(|c| {
                c.iter()
                    .find(|c| c["case"] == case_name && c["family"] == fam && c["backend"] == be)
            })
            .unwrap_or_else(|| panic!("{name}: no case"));
        let p = Processor::from_dir(model_dir("hub", fam)).unwrap_or_else(|e| panic!("{e}"));
        let convs: Vec<_> = case["conversations"]
            .as_array()
            .unwrap_or(&Vec::new())
            .iter()
            .map(conversation)
            .collect();
        let out = p
            .process(
                &convs,
                &ProcessOptions { image_backend: Some(backend(be)), ..ProcessOptions::default() },
            )
            .unwrap_or_else(|e| panic!("{e}"));
        let (t, s) = if key == "pixel_values_videos" {
            (out.pixel_values_videos, p.video_settings())
        } else {
            (out.pixel_values, p.image_settings())
        };
        let (t, s) = (
            t.unwrap_or_else(|| panic!("{name}: no tensor")),
            s.unwrap_or_else(|| panic!("no settings")),
        );
        let view = st.tensor(name).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(view.shape(), t.shape(), "{name}");
        let plane: usize = t.shape()[t.ndim() - 2..].iter().product();
        let mut max = 0i32;
        for (i, (x, want)) in t.iter().zip(view.data()).enumerate() {
            let c = (i / plane) % 3;
            let u =
                ((f64::from(*x) * s.std[c] + s.mean[c]) * 255.0).round().clamp(0.0, 255.0) as i32;
            max = max.max((u - i32::from(*want)).abs());
        }
        assert_eq!(max, 0, "{name}: max level difference {max}");
    }
}

#[test]
fn resize_kernels_match_pillow_and_torchvision() {
    use vidlm_processor::resize::{resize, Filter};
    let g = goldens();
    let cases = g["resize"].as_array().cloned().unwrap_or_default();
    assert_eq!(cases.len(), 48);
    for c in &cases {
        let u = |v: &Value, i: usize| v[i].as_u64().unwrap_or(0) as usize;
        let (sh, sw, seed) = (u(&c["src"], 0), u(&c["src"], 1), u(&c["src"], 2) as u64);
        let (oh, ow) = (u(&c["out"], 0), u(&c["out"], 1));
        let filter = if c["filter"] == "bilinear" { Filter::Bilinear } else { Filter::Bicubic };
        let be = backend(c["backend"].as_str().unwrap_or(""));
        let src = pattern(sh, sw, 0, seed);
        let out = resize(src.as_slice().unwrap_or(&[]), sh, sw, oh, ow, filter, be);
        let as_f32: Vec<f32> = out.iter().map(|&v| f32::from(v)).collect();
        assert_eq!(
            wsum64(&as_f32),
            c["bytes_sum"].as_str().unwrap_or(""),
            "{sh}x{sw} -> {oh}x{ow} {filter:?} {be:?}"
        );
    }
}
