//! `vidlm preprocess`: messages.json (paths relative to it) → safetensors under transformers' keys.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn preprocess_writes_transformers_keys() {
    let dir = std::env::temp_dir().join(format!("vidlm-cli-preprocess-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(root().join("assets/demo.mp4"), dir.join("clip.mp4")).unwrap();
    std::fs::write(
        dir.join("messages.json"),
        r#"[{"role": "user", "content": [{"type": "video", "video": "clip.mp4"}, {"type": "text", "text": "What happens?"}]}]"#,
    )
    .unwrap();
    let out = dir.join("inputs.safetensors");
    let status = Command::new(env!("CARGO_BIN_EXE_vidlm"))
        .arg("preprocess")
        .arg("--model")
        .arg(root().join("assets/demo-model"))
        .arg("--messages")
        .arg(dir.join("messages.json"))
        .args(["--num-frames", "4", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let bytes = std::fs::read(&out).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names = st.names();
    names.sort();
    assert_eq!(names, ["attention_mask", "input_ids", "pixel_values_videos"]);
    let ids = st.tensor("input_ids").unwrap();
    assert_eq!(ids.dtype(), safetensors::Dtype::I64);
    let v = st.tensor("pixel_values_videos").unwrap();
    assert_eq!(v.dtype(), safetensors::Dtype::F32);
    assert_eq!(v.shape()[..2], [1, 4]);

    // Bad input: one line on stderr, non-zero exit.
    let bad = Command::new(env!("CARGO_BIN_EXE_vidlm"))
        .arg("preprocess")
        .arg("--model")
        .arg(dir.join("no-such-model"))
        .arg("--messages")
        .arg(dir.join("messages.json"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
