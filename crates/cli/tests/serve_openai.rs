//! `vidlm serve` with the official OpenAI Python client: parity with `vidlm run`, the security
//! table and the load test (`python/tests/test_serve_openai.py`), run with the project's venv
//! (`cargo xtask setup` installs `openai` from `python/requirements.txt`).

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cache() -> PathBuf {
    std::env::var_os("VIDLM_CACHE").map(PathBuf::from).unwrap_or_else(|| root().join(".cache"))
}

#[test]
fn openai_client_parity_security_and_load() {
    let python = cache().join("venv/bin/python");
    assert!(python.is_file(), "{} is missing: run `cargo xtask setup`", python.display());
    let mut cmd = Command::new(&python);
    cmd.args(["-m", "unittest", "-v"])
        .arg(root().join("python/tests/test_serve_openai.py"))
        .env("VIDLM_BIN", env!("CARGO_BIN_EXE_vidlm"))
        .env("PYTHONUNBUFFERED", "1")
        .current_dir(root());
    if std::env::var_os("VIDLM_FIXTURES").is_none() {
        cmd.env("VIDLM_FIXTURES", cache().join("fixtures"));
    }
    if std::env::var_os("VIDLM_TEST_VIDEOS").is_none() {
        cmd.env("VIDLM_TEST_VIDEOS", cache().join("test-videos"));
    }
    let status = cmd.status().expect("start python");
    assert!(status.success(), "python/tests/test_serve_openai.py failed ({status})");
}
