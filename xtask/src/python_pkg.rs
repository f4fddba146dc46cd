//! The Python package (`crates/python`): `cargo xtask wheel` and the package step of
//! `cargo xtask test`.
//!
//! * The build venv `.cache/wheel-venv` holds maturin (`crates/python/requirements-build.txt`),
//!   made by `cargo xtask setup` (a stamp of the requirements' hash makes it a no-op after).
//!   `pip install ./crates/python` needs none of it: pip fetches maturin into its own isolated
//!   build environment (PEP 517).
//! * `wheel(profile)` runs `maturin build` into `target/wheels/` (an abi3 wheel, Python ≥ 3.9,
//!   tagged `linux_x86_64`: it links Debian's FFmpeg libraries dynamically).
//! * `test_package` installs that wheel into a FRESH venv (deleted and made again every run, so a
//!   missing install step cannot hide behind an old one), with `requirements-test.txt`, and runs
//!   `pytest crates/python/tests` there with `ORT_DYLIB_PATH` unset (the package must find the
//!   ONNX Runtime of its `onnxruntime` dependency itself).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::setup::{run_logged, step};
use crate::{cache_dir, project_root};

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

fn python3() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string())
}

fn crate_dir() -> PathBuf {
    project_root().join("crates").join("python")
}

/// `.cache/wheel-venv` with maturin; returns its interpreter.
pub fn build_env() -> Result<PathBuf> {
    let req = crate_dir().join("requirements-build.txt");
    let text = std::fs::read(&req).with_context(|| format!("reading {}", req.display()))?;
    let stamp_val = format!("{:016x}", fnv1a(&text));
    let venv = cache_dir().join("wheel-venv");
    let stamp = venv.join(".vidlm-requirements");
    let py = venv.join("bin").join("python");
    if py.exists()
        && std::fs::read_to_string(&stamp).map(|s| s.trim() == stamp_val).unwrap_or(false)
    {
        return Ok(py);
    }
    if !py.exists() {
        step(format!("creating the wheel build venv {}", venv.display()), || {
            run_logged(Command::new(python3()).args(["-m", "venv"]).arg(&venv))
        })?;
    }
    step("installing maturin into the wheel build venv", || {
        run_logged(
            Command::new(&py)
                .args(["-m", "pip", "install", "--disable-pip-version-check", "-r"])
                .arg(&req),
        )
    })?;
    std::fs::write(&stamp, &stamp_val)?;
    Ok(py)
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_root().join("target"))
}

/// Builds the abi3 wheel with `profile` (`release` for `cargo xtask wheel`, `dev` for the tests:
/// see [`test_package`]) into `target/wheels/`, with the `cuda` feature when asked; returns its
/// path.
pub fn wheel(profile: &str, cuda: bool) -> Result<PathBuf> {
    let py = build_env()?;
    let out = target_dir().join("wheels");
    std::fs::create_dir_all(&out)?;
    // One wheel in the folder: the one just built.
    for e in std::fs::read_dir(&out)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "whl") {
            std::fs::remove_file(&p)?;
        }
    }
    let mut c = Command::new(&py);
    c.args(["-m", "maturin", "build", "--profile", profile, "--manifest-path"])
        .arg(crate_dir().join("Cargo.toml"))
        .arg("--out")
        .arg(&out)
        .current_dir(project_root());
    if cuda {
        c.args(["--features", "cuda"]);
    }
    eprintln!(
        "[wheel] maturin build --profile {profile}{}",
        if cuda { " --features cuda" } else { "" }
    );
    crate::run(&mut c)?;
    let mut wheels: Vec<PathBuf> = std::fs::read_dir(&out)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "whl"))
        .collect();
    wheels.sort();
    match wheels.pop() {
        Some(w) => {
            eprintln!("[wheel] {}", w.display());
            Ok(w)
        }
        None => bail!("maturin wrote no wheel into {}", out.display()),
    }
}

/// The wheel built with `profile`, its files installed (no dependencies: numpy and onnxruntime
/// come from the interpreter's venv) into `dir`, emptied first; returns `dir`, for `PYTHONPATH`.
/// The benchmarks use it so that the project's venv is left as it is.
pub fn unpacked_wheel(profile: &str, cuda: bool, dir: &Path) -> Result<PathBuf> {
    let w = wheel(profile, cuda)?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    run_logged(
        Command::new(crate::setup::venv_python())
            .args(["-m", "pip", "install", "--disable-pip-version-check", "--no-deps", "--target"])
            .arg(dir)
            .arg(&w),
    )?;
    Ok(dir.to_path_buf())
}

/// `cargo xtask bench video --python`: `vidlm.read_frames` (release wheel) against PyAV
/// (the project's venv), torchcodec and decord (installed from PyPI, without dependencies, into
/// `.cache/bench-python/readers`: torch comes from the venv) on 8 and 32 frames of the 60 s
/// 1080p clip, same frames checked equal (`python/bench_read_frames.py`).
pub fn bench_video(videos: &Path, quick: bool) -> Result<()> {
    let py = crate::setup::python_env()?;
    let base = cache_dir().join("bench-python");
    let readers = base.join("readers");
    let req = project_root().join("python").join("requirements-bench-video.txt");
    let stamp = readers.join(".vidlm-requirements");
    let want = format!("{:016x}", fnv1a(&std::fs::read(&req)?));
    if std::fs::read_to_string(&stamp).map(|s| s.trim() != want).unwrap_or(true) {
        step("installing torchcodec and decord (bench readers) from PyPI", || {
            if readers.exists() {
                std::fs::remove_dir_all(&readers)?;
            }
            run_logged(
                Command::new(&py)
                    .args(["-m", "pip", "install", "--disable-pip-version-check", "--no-deps"])
                    .arg("--target")
                    .arg(&readers)
                    .arg("-r")
                    .arg(&req),
            )?;
            std::fs::write(&stamp, &want)?;
            Ok(())
        })?;
    }
    let site = unpacked_wheel(if quick { "dev" } else { "release" }, false, &base.join("vidlm"))?;
    let path = std::env::join_paths([site, readers])?;
    let out = project_root().join("target").join("bench-video-python.md");
    let mut c = Command::new(&py);
    c.arg(project_root().join("python").join("bench_read_frames.py"))
        .arg("--video")
        .arg(videos.join("h264_1080p30_60s.mp4"))
        .args(["--repeats", if quick { "1" } else { "5" }])
        .arg("--out")
        .arg(&out)
        .env("PYTHONPATH", path)
        .env_remove("ORT_DYLIB_PATH")
        .current_dir(project_root());
    crate::run(&mut c)?;
    eprintln!("[bench video --python] table written to {}", out.display());
    Ok(())
}

/// A fresh venv with `wheel` and the test requirements installed; returns its interpreter.
pub fn fresh_venv(wheel: &Path, venv: &Path) -> Result<PathBuf> {
    if venv.exists() {
        std::fs::remove_dir_all(venv).with_context(|| format!("removing {}", venv.display()))?;
    }
    run_logged(Command::new(python3()).args(["-m", "venv"]).arg(venv))?;
    let py = venv.join("bin").join("python");
    run_logged(
        Command::new(&py)
            .args(["-m", "pip", "install", "--disable-pip-version-check"])
            .arg(wheel)
            .arg("-r")
            .arg(crate_dir().join("requirements-test.txt")),
    )?;
    Ok(py)
}

/// The package step of `cargo xtask test`: dev wheel → fresh venv → pytest.
pub fn test_package(videos: &Path, fixtures: &Path) -> Result<()> {
    let wheel = wheel("dev", false)?;
    let venv = target_dir().join("py-test-venv");
    let py = step(format!("installing {} into a fresh venv", wheel.display()), || {
        fresh_venv(&wheel, &venv)
    })?;
    let mut t = Command::new(&py);
    // Run from the tests' folder's parent with `-p no:cacheprovider` (nothing written in the
    // tree); conftest.py fails the session when fewer tests than expected were collected, so
    // pytest's "no tests collected" (exit code 5) cannot pass or happen silently.
    t.args(["-m", "pytest", "-p", "no:cacheprovider", "-v", "-x"])
        .arg(crate_dir().join("tests"))
        .current_dir(project_root())
        .env_remove("ORT_DYLIB_PATH")
        .env("VIDLM_TEST_VIDEOS", videos)
        .env("VIDLM_FIXTURES", fixtures)
        // The `vidlm` binary of the CLI comparisons: the test build's, unless VIDLM_BIN names one.
        .env(
            "VIDLM_BIN",
            std::env::var_os("VIDLM_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| target_dir().join("debug").join("vidlm")),
        )
        .env("VIDLM_RAY_PYTHON", crate::setup::venv_python());
    let status = t.status().with_context(|| format!("could not start {t:?}"))?;
    match status.code() {
        Some(0) => Ok(()),
        Some(5) => bail!("pytest collected no tests (exit code 5): {t:?}"),
        _ => bail!("pytest failed ({status}): {t:?}"),
    }
}
