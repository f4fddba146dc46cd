//! `vidlm run` on the committed demo model and video.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    match std::env::var_os("VIDLM_FIXTURE_ROOT") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.."),
    }
}

fn vidlm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vidlm"))
}

#[test]
fn run_answers_about_a_video_as_json_and_streams() {
    let model = root().join("assets/demo-model");
    let video = root().join("assets/demo.mp4");
    let out = vidlm()
        .args(["run", "--model"])
        .arg(&model)
        .arg("--video")
        .arg(&video)
        .args([
            "--num-frames",
            "4",
            "--max-new-tokens",
            "3",
            "--threads",
            "1",
            "--json",
            "--prompt",
            "What happens?",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["token_ids"].as_array().unwrap().len(), 3);
    assert!(v["timings"]["vision"].as_f64().unwrap() > 0.0);
    assert!(v["timings"]["prefill"].as_f64().unwrap() > 0.0);
    assert!(v["timings"]["decode_tokens_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(v["finish_reason"], "max_new_tokens");
    // NeXT-Video: 144 tokens per frame at real size; the tiny demo model's grid gives fewer, but the
    // prompt holds the 4 frames' video tokens plus the template text.
    assert!(v["prompt_tokens"].as_u64().unwrap() > 4);
    // Streaming mode: text on stdout, timings on stderr.
    let out = vidlm()
        .args(["run", "--model"])
        .arg(&model)
        .arg("--video")
        .arg(&video)
        .args(["--num-frames", "4", "--max-new-tokens", "3", "--prompt", "What happens?"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tokens/s"));
    // Progress on stderr for loading, decoding/preprocessing, vision and prefill.
    for stage in ["loading", "decoding media", "encoding 0 image(s) and 1 video(s)", "prefill over"]
    {
        assert!(err.contains(stage), "no {stage:?} progress line in {err}");
    }
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        v["text"].as_str().unwrap().trim_end()
    );
}

/// `vidlm run` keeps transformers' semantics (no length anywhere: `max_length` 20, prompt
/// included), but says so in one stderr line naming the flag when that default cuts the answer.
#[test]
fn run_names_the_flag_when_transformers_default_length_cuts_the_answer() {
    let model = root().join("assets/demo-model");
    let run = |extra: &[&str]| {
        let out = vidlm()
            .args(["run", "--model"])
            .arg(&model)
            .args(["--threads", "1", "--json", "--prompt", "Hello there, how are you?"])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (v, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // The demo model's generation_config.json sets no length.
    let (v, err) = run(&[]);
    let prompt = v["prompt_tokens"].as_u64().unwrap();
    let n = v["token_ids"].as_array().unwrap().len() as u64;
    assert_eq!(v["finish_reason"], "max_new_tokens");
    assert_eq!(n, 20u64.saturating_sub(prompt).max(1), "transformers' max_length 20");
    let notes: Vec<&str> = err.lines().filter(|l| l.contains("--max-new-tokens")).collect();
    assert_eq!(notes.len(), 1, "{err}");
    assert!(notes[0].contains("max_length of 20"), "{err}");
    // With the flag, or when the answer is not cut by that default, nothing is said.
    let (v, err) = run(&["--max-new-tokens", "2"]);
    assert_eq!(v["finish_reason"], "max_new_tokens");
    assert!(!err.contains("max_length"), "{err}");
}

#[test]
fn run_reports_bad_input_in_one_line() {
    let model = root().join("assets/demo-model");
    let bad = std::env::temp_dir().join(format!("vidlm-cli-bad-{}.mp4", std::process::id()));
    std::fs::write(&bad, b"not a video").unwrap();
    let out = vidlm()
        .args(["run", "--model"])
        .arg(&model)
        .arg("--video")
        .arg(&bad)
        .args(["--prompt", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    // Progress lines ("[vidlm] ...") may come first; the error itself is exactly one line, the last.
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert!(last.starts_with("error:"), "{err}");
    assert_eq!(err.lines().filter(|l| !l.starts_with("[vidlm]")).count(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let out =
        vidlm().args(["run", "--model", "/nonexistent/model", "--prompt", "x"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing"));
    let _ = std::fs::remove_file(&bad);
}

#[test]
fn cuda_where_it_cannot_run_names_what_is_missing_and_can_fall_back() {
    let model = root().join("assets/demo-model");
    let video = root().join("assets/demo.mp4");
    let run = |extra: &[&str]| {
        vidlm()
            .args(["run", "--model"])
            .arg(&model)
            .arg("--video")
            .arg(&video)
            .args([
                "--num-frames",
                "2",
                "--max-new-tokens",
                "2",
                "--threads",
                "1",
                "--json",
                "--device",
                "cuda",
                "--prompt",
                "Hi",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "--device cuda ran on a machine without CUDA: {err}");
    let line = err.lines().last().unwrap_or_default();
    assert!(line.starts_with("error: CUDA execution provider unavailable: "), "{err}");
    if cfg!(feature = "cuda") {
        // The binary has the provider; what is missing is the CUDA build of ONNX Runtime or the
        // CUDA runtime itself.
        assert!(
            line.contains("CPU build")
                || line.contains("CUDA runtime")
                || line.contains("driver")
                || line.contains("device"),
            "{line}"
        );
    } else {
        assert!(
            line.contains("compiled without the `cuda` feature")
                && line.contains("--features cuda"),
            "{line}"
        );
    }
    assert!(out.stdout.is_empty());
    // With --allow-cpu-fallback it runs on the CPU and says so.
    let out = run(&["--allow-cpu-fallback"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("CUDA unavailable, running on the CPU"), "{err}");
    assert!(err.contains("(CPUExecutionProvider)"), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["token_ids"].as_array().unwrap().len(), 2);
}

/// Issue 12: `--messages q/messages.json` naming `clip.mp4` means `q/clip.mp4`, whatever the
/// working directory (and `vidlm preprocess` reads the same file the same way).
#[test]
fn run_resolves_media_in_a_messages_file_against_its_folder() {
    let model = root().join("assets/demo-model").canonicalize().unwrap();
    let work = std::env::temp_dir().join(format!("vidlm-cli-messages-{}", std::process::id()));
    let q = work.join("q");
    let elsewhere = work.join("elsewhere");
    std::fs::create_dir_all(&q).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::copy(root().join("assets/demo.mp4"), q.join("clip.mp4")).unwrap();
    let messages = serde_json::json!([{"role": "user", "content": [
        {"type": "video", "video": "clip.mp4"},
        {"type": "text", "text": "What happens?"}]}]);
    std::fs::write(q.join("messages.json"), messages.to_string()).unwrap();
    // Run from a sibling folder, naming the messages file by a relative path.
    let run = |cwd: &std::path::Path, file: &str| {
        vidlm()
            .current_dir(cwd)
            .args(["run", "--model"])
            .arg(&model)
            .args([
                "--messages",
                file,
                "--num-frames",
                "2",
                "--max-new-tokens",
                "2",
                "--threads",
                "1",
                "--json",
            ])
            .output()
            .unwrap()
    };
    let from_elsewhere = run(&elsewhere, "../q/messages.json");
    assert!(from_elsewhere.status.success(), "{}", String::from_utf8_lossy(&from_elsewhere.stderr));
    let from_q = run(&q, "messages.json");
    assert!(from_q.status.success(), "{}", String::from_utf8_lossy(&from_q.stderr));
    let a: serde_json::Value = serde_json::from_slice(&from_elsewhere.stdout).unwrap();
    let b: serde_json::Value = serde_json::from_slice(&from_q.stdout).unwrap();
    assert_eq!(a["token_ids"], b["token_ids"]);
    assert_eq!(a["prompt_tokens"], b["prompt_tokens"]);
    // preprocess follows the same rule.
    let out = vidlm()
        .current_dir(&elsewhere)
        .args(["preprocess", "--model"])
        .arg(&model)
        .args([
            "--messages",
            "../q/messages.json",
            "--num-frames",
            "2",
            "--out",
            "inputs.safetensors",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A media path that does not exist next to the messages file is still an error, one line.
    std::fs::remove_file(q.join("clip.mp4")).unwrap();
    let missing = run(&elsewhere, "../q/messages.json");
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("clip.mp4"), "{err}");
    let _ = std::fs::remove_dir_all(&work);
}

/// A dtype the export holds for some graphs runs the others at the nearest precision it holds
/// (q4 -> q8 -> fp32), and says so in one stderr line: the layout of `--dtype fp32,q8,q4` exports
/// whose vision towers missed the 4-bit bound (no `vision_encoder_q4.onnx`).
#[test]
fn dtype_falls_back_along_the_chain_and_says_so() {
    let demo = root().join("assets/demo-model");
    let work = std::env::temp_dir().join(format!("vidlm-cli-fallback-{}", std::process::id()));
    let model = work.join("m");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(model.join("onnx")).unwrap();
    for e in std::fs::read_dir(&demo).unwrap().flatten() {
        if e.path().is_file() {
            std::fs::copy(e.path(), model.join(e.file_name())).unwrap();
        }
    }
    // The demo's fp32 graphs under q8 names (vision towers and LM) and q4 names (LM only); no
    // fp32 vision graph, so the vision towers can only come from the q8 files.
    for e in std::fs::read_dir(demo.join("onnx")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(stem) = name.strip_suffix(".onnx") else {
            std::fs::copy(e.path(), model.join("onnx").join(&name)).unwrap();
            continue;
        };
        std::fs::copy(e.path(), model.join("onnx").join(format!("{stem}_quantized.onnx"))).unwrap();
        if !stem.ends_with("_encoder") {
            std::fs::copy(e.path(), model.join("onnx").join(format!("{stem}_q4.onnx"))).unwrap();
        }
    }
    let video = root().join("assets/demo.mp4");
    let run = |m: &std::path::Path, extra: &[&str]| {
        vidlm()
            .args(["run", "--model"])
            .arg(m)
            .arg("--video")
            .arg(&video)
            .args(["--num-frames", "2", "--max-new-tokens", "3", "--threads", "1", "--json"])
            .args(["--prompt", "Hi"])
            .args(extra)
            .output()
            .unwrap()
    };
    let reference = run(&demo, &[]);
    assert!(reference.status.success(), "{}", String::from_utf8_lossy(&reference.stderr));
    let q4 = run(&model, &["--dtype", "q4"]);
    let err = String::from_utf8_lossy(&q4.stderr);
    assert!(q4.status.success(), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("(no q4 graph)")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("model (q4: vision q8 (no q4 graph), embed q4, decoder q4)"),
        "{err}"
    );
    let a: serde_json::Value = serde_json::from_slice(&reference.stdout).unwrap();
    let b: serde_json::Value = serde_json::from_slice(&q4.stdout).unwrap();
    assert_eq!(a["token_ids"], b["token_ids"], "the same graphs under other names, same tokens");
    // Asked per graph, the same chain: the decoder at q4 is there, the vision towers fall back.
    let out = run(&model, &["--dtype", "q8,vision=q4"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.contains("vision q8 (no q4 graph), embed q8"), "{err}");
    // The export's record (`dtype_fallback` in the manifest) is what a load follows.
    let manifest = model.join("onnx/vidlm_manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    m["dtype_fallback"] = serde_json::json!({"q4": {
        "vision_encoder": "q8", "video_encoder": "q8",
        "embed_tokens": "q8", "decoder_model_merged": "q4"}});
    std::fs::write(&manifest, m.to_string()).unwrap();
    let out = run(&model, &["--dtype", "q4"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success()
            && err.contains("(q4: vision q8 (no q4 graph), embed q8 (no q4 graph), decoder q4)"),
        "{err}"
    );
    // A dtype no graph has is still an error naming the file (nothing to fall back from).
    let out = run(&model, &["--dtype", "fp16"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing onnx/vision_encoder_fp16.onnx"));
    let _ = std::fs::remove_dir_all(&work);
}

/// `--dtype q8` picks the graphs with the transformers.js suffix (`_quantized`); a precision the
/// model lacks is one line naming the missing file and the precisions the model has.
#[test]
fn dtype_selects_suffixed_graphs_and_names_missing_ones() {
    let demo = root().join("assets/demo-model");
    let work = std::env::temp_dir().join(format!("vidlm-cli-dtype-{}", std::process::id()));
    let model = work.join("m");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(model.join("onnx")).unwrap();
    for e in std::fs::read_dir(&demo).unwrap().flatten() {
        if e.path().is_file() {
            std::fs::copy(e.path(), model.join(e.file_name())).unwrap();
        }
    }
    // The demo model's fp32 graphs, renamed as an export that only has the q8 variant.
    for e in std::fs::read_dir(demo.join("onnx")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let to = match name.strip_suffix(".onnx") {
            Some(stem) => format!("{stem}_quantized.onnx"),
            None => name,
        };
        std::fs::copy(e.path(), model.join("onnx").join(to)).unwrap();
    }
    let video = root().join("assets/demo.mp4");
    let run = |m: &std::path::Path, extra: &[&str]| {
        vidlm()
            .args(["run", "--model"])
            .arg(m)
            .arg("--video")
            .arg(&video)
            .args([
                "--num-frames",
                "2",
                "--max-new-tokens",
                "3",
                "--threads",
                "1",
                "--json",
                "--prompt",
                "Hi",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let reference = run(&demo, &[]);
    assert!(reference.status.success(), "{}", String::from_utf8_lossy(&reference.stderr));
    let q8 = run(&model, &["--dtype", "q8"]);
    assert!(q8.status.success(), "{}", String::from_utf8_lossy(&q8.stderr));
    assert!(
        String::from_utf8_lossy(&q8.stderr).contains("model (q8)"),
        "{}",
        String::from_utf8_lossy(&q8.stderr)
    );
    let a: serde_json::Value = serde_json::from_slice(&reference.stdout).unwrap();
    let b: serde_json::Value = serde_json::from_slice(&q8.stdout).unwrap();
    assert_eq!(
        a["token_ids"], b["token_ids"],
        "the same graphs under the q8 name give the same tokens"
    );
    // The default (fp32) is absent from this model: one line, the file, what the model has.
    let out = run(&model, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().last().unwrap_or_default();
    assert!(
        line.starts_with(
            "error: no graph for the chosen --dtype (this model has: vision_encoder q8, "
        ),
        "{err}"
    );
    assert!(
        line.contains("decoder_model_merged q8)")
            && line.contains("missing onnx/vision_encoder.onnx"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    let out = run(&demo, &["--dtype", "q4"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("(this model has: vision_encoder fp32, ")
            && err.contains("missing onnx/vision_encoder_q4.onnx"),
        "{err}"
    );
    // Per graph: only the decoder at q4 names the decoder's file.
    let out = run(&demo, &["--dtype", "decoder=q4"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("missing onnx/decoder_model_merged_q4.onnx"),
        "{err}"
    );
    // Mixed: q8 everywhere but the vision graphs, which the model has only at q8 here too.
    let out = run(&model, &["--dtype", "fp32,vision=q8"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("missing onnx/embed_tokens.onnx"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&model, &["--dtype", "q8,vision=q8,embed=quantized"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&demo, &["--dtype", "q4,audio=q8"]);
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("unknown graph \"audio\"")
    );
    // An unknown name is refused by the argument parser, naming the choices.
    let out = run(&demo, &["--dtype", "int3"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("fp32, fp16, q8, int8, q4 or q4f16"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&work);
}
