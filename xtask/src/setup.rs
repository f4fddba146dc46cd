//! `cargo xtask setup`: installs everything the project needs, idempotently.
//!
//! Three independent parts, each skipped when already satisfied:
//! 1. Debian packages (FFmpeg `-dev` libraries, the `ffmpeg` CLI, libclang, pkg-config).
//! 2. The ONNX Runtime shared library, unpacked from a pinned PyPI wheel into
//!    `.cache/onnxruntime/<version>/`.
//! 3. The Python environment for export and parity checks (`.cache/venv`), from
//!    `python/requirements.txt`; a stamp file holding the requirements' hash makes a
//!    second run a no-op.
//!
//! Each step prints one line (`[setup] installing 11 apt packages ... done (48 s)`); the full
//! output of the commands it runs goes to `.cache/setup.log`, whose tail is printed only when a
//! step fails ([`step`], [`run_logged`]).

use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::{cache_dir, project_root};

/// The pinned ONNX Runtime release. `ort` 2.0.0-rc.15 targets the 1.31 C API.
pub const ORT_VERSION: &str = "1.31.1";

/// Debian packages the build and the tests need.
const APT_PACKAGES: &[&str] = &[
    "pkg-config",
    "clang",
    "libclang-dev",
    "ffmpeg",
    "libavcodec-dev",
    "libavformat-dev",
    "libavutil-dev",
    "libswscale-dev",
    "libswresample-dev",
    "libavfilter-dev",
    "libavdevice-dev",
    // libjpeg-turbo's TurboJPEG API: JPEG photos decode as PIL decodes them (vidlm-video-io)
    "libturbojpeg0-dev",
    // a C++ compiler: libfuzzer-sys builds libFuzzer from source (`cargo xtask fuzz`)
    "g++",
    // libpython for the Rust tests of `crates/python` (PyO3 links it outside an extension
    // module), and `python3 -m venv` for the package tests' fresh venv
    "python3-dev",
    "python3-venv",
];

#[derive(Clone, Copy, Debug)]
pub struct Parts {
    pub apt: bool,
    pub ort: bool,
    pub python: bool,
    /// The CUDA build of ONNX Runtime (`onnxruntime-gpu`), beside the CPU one.
    pub cuda: bool,
}

pub fn setup(parts: Parts) -> Result<()> {
    if parts.apt {
        apt()?;
    }
    if parts.ort {
        let lib = onnxruntime()?;
        eprintln!("[setup] onnxruntime: {}", lib.display());
    }
    if parts.cuda {
        let lib = onnxruntime_gpu()?;
        eprintln!("[setup] onnxruntime-gpu: {}", lib.display());
        eprintln!(
            "[setup] CUDA: build with `cargo build --release -p vidlm --features cuda` and run with `--device cuda`; \
             it needs an NVIDIA driver >= 580, CUDA 13.x (cudart, cuBLAS, cuRAND) and cuDNN 9 on the library path \
             (README: \"On an NVIDIA GPU\")"
        );
    }
    if parts.python {
        let py = python_env()?;
        eprintln!("[setup] python env: {}", py.display());
        // maturin for `cargo xtask wheel` and the package tests (`pip install ./crates/python`
        // needs none: pip brings maturin itself).
        let py = crate::python_pkg::build_env()?;
        eprintln!("[setup] wheel build env: {}", py.display());
    }
    Ok(())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn dpkg_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| {
            o.status.success()
                && String::from_utf8_lossy(&o.stdout).contains("install ok installed")
        })
        .unwrap_or(false)
}

/// Installs the missing Debian packages (nothing to do when all are present).
pub fn apt() -> Result<()> {
    if Command::new("dpkg-query").arg("--version").output().is_err() {
        eprintln!(
            "[setup] not a Debian/Ubuntu system: install FFmpeg development libraries, the ffmpeg CLI, \
             libclang and pkg-config yourself ({})",
            APT_PACKAGES.join(" ")
        );
        return Ok(());
    }
    let missing: Vec<&str> = APT_PACKAGES.iter().copied().filter(|p| !dpkg_installed(p)).collect();
    if missing.is_empty() {
        eprintln!("[setup] apt packages: all present");
        return Ok(());
    }
    step(format!("installing {} apt packages ({})", missing.len(), missing.join(" ")), || {
        apt_install(&missing)
    })
}

fn apt_install(missing: &[&str]) -> Result<()> {
    let sudo: &[&str] = if is_root() { &[] } else { &["sudo"] };
    let mut update = Command::new(sudo.first().copied().unwrap_or("apt-get"));
    if !sudo.is_empty() {
        update.arg("apt-get");
    }
    update.args(["update", "-qq"]);
    run_logged(&mut update)?;
    let mut install = Command::new(sudo.first().copied().unwrap_or("apt-get"));
    if !sudo.is_empty() {
        install.arg("apt-get");
    }
    install
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(missing);
    run_logged(&mut install)?;
    Ok(())
}

/// Directory that holds the unpacked ONNX Runtime library.
pub fn ort_dir() -> PathBuf {
    cache_dir().join("onnxruntime").join(ORT_VERSION)
}

/// Path of the ONNX Runtime shared library (`libonnxruntime.so`) once set up.
pub fn ort_lib() -> PathBuf {
    ort_dir().join("libonnxruntime.so")
}

/// Directory that holds the unpacked CUDA build of ONNX Runtime (`setup --cuda`). `vidlm-ort`
/// built with the `cuda` feature looks here before the CPU build.
pub fn ort_gpu_dir() -> PathBuf {
    cache_dir().join("onnxruntime-gpu").join(ORT_VERSION)
}

/// Path of the CUDA build's `libonnxruntime.so` once set up.
pub fn ort_gpu_lib() -> PathBuf {
    ort_gpu_dir().join("libonnxruntime.so")
}

/// Downloads the pinned `onnxruntime` wheel with pip and unpacks its shared libraries.
pub fn onnxruntime() -> Result<PathBuf> {
    unpack_wheel("onnxruntime", "onnxruntime", &ort_dir())
}

/// Downloads the pinned `onnxruntime-gpu` wheel and unpacks its shared libraries (the runtime
/// and the CUDA/TensorRT provider libraries it loads on demand). ~255 MB download.
pub fn onnxruntime_gpu() -> Result<PathBuf> {
    unpack_wheel("onnxruntime-gpu", "onnxruntime_gpu", &ort_gpu_dir())
}

/// `pip download`s `package==ORT_VERSION` (wheel file names use `file_stem`) and unpacks every
/// shared library of its `onnxruntime/capi/` into `dir`, with `libonnxruntime.so` pointing at the
/// versioned one. Idempotent: nothing happens when `dir/libonnxruntime.so` exists.
fn unpack_wheel(package: &str, file_stem: &str, dir: &std::path::Path) -> Result<PathBuf> {
    let lib = dir.join("libonnxruntime.so");
    if lib.exists() {
        return Ok(lib);
    }
    step(format!("installing {package} {ORT_VERSION} (PyPI wheel)"), || {
        install_wheel(package, file_stem, dir)
    })
}

fn install_wheel(package: &str, file_stem: &str, dir: &std::path::Path) -> Result<PathBuf> {
    let lib = dir.join("libonnxruntime.so");
    std::fs::create_dir_all(dir)?;
    let dl = cache_dir().join("downloads");
    std::fs::create_dir_all(&dl)?;
    run_logged(
        Command::new(python3())
            .args(["-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "-d"])
            .arg(&dl)
            .arg(format!("{package}=={ORT_VERSION}")),
    )?;
    let prefix = format!("{file_stem}-{ORT_VERSION}-");
    let wheel = std::fs::read_dir(&dl)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .map(|n| n.starts_with(&prefix) && n.ends_with(".whl"))
                .unwrap_or(false)
        })
        .with_context(|| format!("pip download produced no {package} wheel"))?;
    // Unpack every shared library of onnxruntime/capi/ and point libonnxruntime.so at the versioned one.
    let script = r#"
import sys, zipfile, os, shutil
whl, out = sys.argv[1], sys.argv[2]
z = zipfile.ZipFile(whl)
found = None
for n in z.namelist():
    base = os.path.basename(n)
    if n.startswith("onnxruntime/capi/") and ".so" in base and "pybind" not in base:
        with z.open(n) as src, open(os.path.join(out, base), "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.chmod(os.path.join(out, base), 0o755)
        if base.startswith("libonnxruntime.so"):
            found = base
if not found:
    sys.exit("wheel has no libonnxruntime.so")
link = os.path.join(out, "libonnxruntime.so")
if found != "libonnxruntime.so":
    if os.path.lexists(link): os.remove(link)
    os.symlink(found, link)
print(found)
"#;
    run_logged(Command::new(python3()).args(["-c", script]).arg(&wheel).arg(dir))?;
    if !lib.exists() {
        bail!("unpacking {} did not produce {}", wheel.display(), lib.display());
    }
    Ok(lib)
}

fn python3() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// The venv's interpreter.
pub fn venv_python() -> PathBuf {
    cache_dir().join("venv").join("bin").join("python")
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Creates or refreshes `.cache/venv` from `python/requirements.txt`, and installs `python/`
/// (the `vidlm-tools` package of `python/pyproject.toml`) into it, editable.
pub fn python_env() -> Result<PathBuf> {
    let req = project_root().join("python").join("requirements.txt");
    let text = std::fs::read(&req).with_context(|| format!("reading {}", req.display()))?;
    let stamp_val = format!("{:016x}", fnv1a(&text));
    let venv = cache_dir().join("venv");
    let stamp = venv.join(".vidlm-requirements");
    let py = venv_python();
    if py.exists()
        && std::fs::read_to_string(&stamp).map(|s| s.trim() == stamp_val).unwrap_or(false)
    {
        python_tools(&py)?;
        return Ok(py);
    }
    if !py.exists() {
        step(format!("creating the Python venv {}", venv.display()), || {
            run_logged(Command::new(python3()).args(["-m", "venv"]).arg(&venv))
        })?;
    }
    step("installing python/requirements.txt into the venv (torch, transformers, onnx, onnxruntime; ~2-3 min)", || {
        run_logged(Command::new(&py).args(["-m", "pip", "install", "--disable-pip-version-check", "-r"]).arg(&req))
    })?;
    std::fs::write(&stamp, &stamp_val)?;
    python_tools(&py)?;
    Ok(py)
}

/// `pip install --no-deps -e python` (the dependencies are requirements.txt's), redone when
/// `python/pyproject.toml` or the checkout's path changes.
fn python_tools(py: &Path) -> Result<()> {
    let dir = project_root().join("python");
    let manifest = dir.join("pyproject.toml");
    let mut key =
        std::fs::read(&manifest).with_context(|| format!("reading {}", manifest.display()))?;
    key.extend_from_slice(dir.as_os_str().as_encoded_bytes());
    let stamp_val = format!("{:016x}", fnv1a(&key));
    let stamp = cache_dir().join("venv").join(".vidlm-tools");
    if std::fs::read_to_string(&stamp).map(|s| s.trim() == stamp_val).unwrap_or(false) {
        return Ok(());
    }
    step("installing python/ (vidlm-tools) into the venv, editable", || {
        run_logged(
            Command::new(py)
                .args(["-m", "pip", "install", "--disable-pip-version-check", "--no-deps"])
                .args(["--no-build-isolation", "-e"])
                .arg(&dir),
        )
    })?;
    std::fs::write(&stamp, &stamp_val)?;
    Ok(())
}

/// Environment every cargo invocation of ours gets: where ONNX Runtime is.
pub fn ort_env(cmd: &mut Command) -> &mut Command {
    if std::env::var_os("ORT_DYLIB_PATH").is_none() {
        cmd.env("ORT_DYLIB_PATH", ort_lib());
    }
    cmd
}

/// The file that keeps the full output of every set-up command.
pub fn log_path() -> PathBuf {
    cache_dir().join("setup.log")
}

/// Runs one set-up step as one line on stderr: `[setup] {label} ... done (12 s)`. The commands it
/// runs through [`run_logged`] write to [`log_path`]; when the step fails, the log's tail is printed.
pub fn step<T>(label: impl AsRef<str>, f: impl FnOnce() -> Result<T>) -> Result<T> {
    eprint!("[setup] {} ... ", label.as_ref());
    let _ = std::io::stderr().flush();
    let t = Instant::now();
    match f() {
        Ok(v) => {
            eprintln!("done ({:.0} s)", t.elapsed().as_secs_f64());
            Ok(v)
        }
        Err(e) => {
            eprintln!("failed after {:.0} s", t.elapsed().as_secs_f64());
            let log = std::fs::read_to_string(log_path()).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!("[setup] the last {} lines of {}:", tail.len(), log_path().display());
            for l in tail {
                eprintln!("    {l}");
            }
            Err(e)
        }
    }
}

/// Runs a command with its stdout and stderr appended to [`log_path`], failing with its command
/// line when it does not succeed.
pub fn run_logged(cmd: &mut Command) -> Result<()> {
    let path = log_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(log, "\n$ {cmd:?}")?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("command failed ({status}): {cmd:?} (full output in {})", path.display());
    }
    Ok(())
}
