//! `vidlm preprocess` for the patchified families (Qwen2.5-VL, Qwen3-VL) on files: `assets/demo.mp4`
//! and a PNG, with `--num-frames` / `--fps` / `--max-frames` / `--max-pixels`, against
//! transformers 5.23 (`python/processor_goldens.py`, the `cli` cases of `qwen_vl_goldens.json`):
//! ids exact, pixels bit-identical, grids and `second_per_grid_ts` exact.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cache_dir() -> PathBuf {
    std::env::var_os("VIDLM_CACHE").map(PathBuf::from).unwrap_or_else(|| root().join(".cache"))
}

static BUILD: Mutex<()> = Mutex::new(());

/// `<cache>/assets/hub/<family>`, built with `python/assets.py` if absent.
fn model_dir(family: &str) -> PathBuf {
    let dir = cache_dir().join("assets/hub").join(family);
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    if !(dir.join("tokenizer.json").is_file() && dir.join("chat_template.json").is_file()) {
        let py = cache_dir().join("venv/bin/python");
        let status = Command::new(&py)
            .arg(root().join("python/assets.py"))
            .args(["--family", family, "--out"])
            .arg(&dir)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {} (cargo xtask setup): {e}", py.display()));
        assert!(status.success(), "python/assets.py failed for {family}");
    }
    dir
}

fn un_rle(v: &Value) -> Vec<i64> {
    let mut out = Vec::new();
    for run in v.as_array().unwrap_or(&Vec::new()) {
        out.extend(std::iter::repeat_n(
            run[0].as_i64().unwrap_or(-1),
            run[1].as_u64().unwrap_or(0) as usize,
        ));
    }
    out
}

fn wsum64(data: &[f32]) -> String {
    let mut h: u64 = 0;
    for (i, v) in data.iter().enumerate() {
        let w = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        h = h.wrapping_add(u64::from(v.to_bits()).wrapping_mul(w));
    }
    format!("{h:016x}")
}

fn i64s(b: &[u8]) -> Vec<i64> {
    b.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect()
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap_or([0; 4]))).collect()
}

#[test]
fn preprocess_matches_transformers_on_files() {
    let goldens = root().join("crates/processor/tests/goldens");
    let g: Value = serde_json::from_str(
        &std::fs::read_to_string(goldens.join("qwen_vl_goldens.json")).unwrap(),
    )
    .unwrap();
    let cases = g["cli"].as_array().cloned().unwrap_or_default();
    assert_eq!(cases.len(), 4);
    let dir =
        std::env::temp_dir().join(format!("vidlm-cli-preprocess-qwen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(root().join("assets/demo.mp4"), dir.join("demo.mp4")).unwrap();
    std::fs::copy(goldens.join("qwen_cli_image.png"), dir.join("qwen_cli_image.png")).unwrap();
    for case in &cases {
        let name = case["case"].as_str().unwrap_or("");
        let fam = case["family"].as_str().unwrap_or("");
        let messages = dir.join(format!("{name}.json"));
        std::fs::write(&messages, case["messages"].to_string()).unwrap();
        let out = dir.join(format!("{name}.safetensors"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vidlm"));
        cmd.arg("preprocess").arg("--model").arg(model_dir(fam)).arg("--messages").arg(&messages);
        let o = &case["options"];
        for (key, flag) in [
            ("num_frames", "--num-frames"),
            ("fps", "--fps"),
            ("max_frames", "--max-frames"),
            ("min_pixels", "--min-pixels"),
            ("max_pixels", "--max-pixels"),
        ] {
            if let Some(v) = o.get(key) {
                cmd.arg(flag).arg(v.to_string());
            }
        }
        let r = cmd.arg("--out").arg(&out).output().unwrap();
        assert!(r.status.success(), "{name}: {}", String::from_utf8_lossy(&r.stderr));
        let bytes = std::fs::read(&out).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let ids = st.tensor("input_ids").unwrap();
        assert_eq!(ids.dtype(), safetensors::Dtype::I64);
        let got = i64s(ids.data());
        let want = un_rle(&case["input_ids"]);
        assert_eq!(ids.shape(), [1, want.len()], "{name}: input_ids shape");
        assert!(got == want, "{name}: input_ids differ");
        let mask = st.tensor("attention_mask").unwrap();
        assert!(i64s(mask.data()).iter().all(|&m| m == 1), "{name}: attention_mask");
        let mut expect: Vec<&str> = vec!["attention_mask", "input_ids"];
        for (key, t) in case["tensors"].as_object().cloned().unwrap_or_default() {
            let v = st.tensor(&key).unwrap_or_else(|e| panic!("{name}: {key}: {e}"));
            assert_eq!(v.dtype(), safetensors::Dtype::F32);
            let shape: Vec<usize> = serde_json::from_value(t["shape"].clone()).unwrap();
            assert_eq!(v.shape(), shape.as_slice(), "{name}: {key} shape");
            assert_eq!(
                wsum64(&f32s(v.data())),
                t["wsum64"].as_str().unwrap_or(""),
                "{name}: {key}"
            );
            expect.push(if key == "pixel_values" { "pixel_values" } else { "pixel_values_videos" });
        }
        for key in ["image_grid_thw", "video_grid_thw"] {
            if let Some(want) = case.get(key) {
                let t = st.tensor(key).unwrap_or_else(|e| panic!("{name}: {key}: {e}"));
                assert_eq!(t.dtype(), safetensors::Dtype::I64);
                let want: Vec<Vec<i64>> = serde_json::from_value(want.clone()).unwrap();
                assert_eq!(i64s(t.data()), want.concat(), "{name}: {key}");
                expect.push(key);
            }
        }
        if let Some(want) = case.get("second_per_grid_ts") {
            let t = st.tensor("second_per_grid_ts").unwrap();
            assert_eq!(t.dtype(), safetensors::Dtype::F32);
            let want: Vec<f64> = serde_json::from_value(want.clone()).unwrap();
            let want: Vec<f32> = want.into_iter().map(|x| x as f32).collect();
            assert_eq!(f32s(t.data()), want, "{name}: second_per_grid_ts");
            expect.push("second_per_grid_ts");
        }
        let mut names = st.names();
        names.sort();
        expect.sort();
        assert_eq!(names, expect, "{name}: keys");
    }

    // --min-pixels on a family with fixed-size processors is refused, not ignored.
    let r = Command::new(env!("CARGO_BIN_EXE_vidlm"))
        .arg("preprocess")
        .arg("--model")
        .arg(root().join("assets/demo-model"))
        .arg("--messages")
        .arg(dir.join("q3_video_fps.json"))
        .args(["--max-pixels", "20000", "--out"])
        .arg(dir.join("refused.safetensors"))
        .output()
        .unwrap();
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("max_pixels"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
