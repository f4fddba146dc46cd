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
        .args(["--num-frames", "4", "--max-new-tokens", "3", "--threads", "1", "--json", "--prompt", "What happens?"])
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
    for stage in ["loading", "decoding media", "encoding 0 image(s) and 1 video(s)", "prefill over"] {
        assert!(err.contains(stage), "no {stage:?} progress line in {err}");
    }
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), v["text"].as_str().unwrap().trim_end());
}

#[test]
fn run_reports_bad_input_in_one_line() {
    let model = root().join("assets/demo-model");
    let bad = std::env::temp_dir().join(format!("vidlm-cli-bad-{}.mp4", std::process::id()));
    std::fs::write(&bad, b"not a video").unwrap();
    let out = vidlm().args(["run", "--model"]).arg(&model).arg("--video").arg(&bad).args(["--prompt", "x"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    // Progress lines ("[vidlm] ...") may come first; the error itself is exactly one line, the last.
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert!(last.starts_with("error:"), "{err}");
    assert_eq!(err.lines().filter(|l| !l.starts_with("[vidlm]")).count(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let out = vidlm().args(["run", "--model", "/nonexistent/model", "--prompt", "x"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing"));
    let _ = std::fs::remove_file(&bad);
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
            .args(["--messages", file, "--num-frames", "2", "--max-new-tokens", "2", "--threads", "1", "--json"])
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
        .args(["--messages", "../q/messages.json", "--num-frames", "2", "--out", "inputs.safetensors"])
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
