//! The CUDA path on a machine without CUDA (CI's): `Device::Cuda` fails with an error naming
//! what is missing, and `allow_cpu_fallback` gives a CPU session that records why.
//!
//! Built only with the `cuda` feature (`cargo test -p vidlm-ort --features cuda`, which
//! `cargo xtask test` runs after `cargo xtask setup --cuda`). Two ONNX Runtime libraries are tried,
//! each in its own process (a process loads one library):
//! * the CPU build (`.cache/onnxruntime/`): it has no CUDA provider — the error says so;
//! * the CUDA build (`.cache/onnxruntime-gpu/`): its CUDA provider needs the CUDA 13 runtime —
//!   the error names the library that could not be loaded (or, on a machine that has CUDA and a
//!   GPU, the session runs on CUDA).
#![cfg(feature = "cuda")]

use std::path::{Path, PathBuf};
use std::process::Command;

use vidlm_ort::*;

const CASE_ENV: &str = "VIDLM_ORT_CUDA_CASE";

fn cache() -> PathBuf {
    std::env::var_os("VIDLM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache"))
}

fn library(dir: &str) -> PathBuf {
    cache().join(dir).join(ORT_VERSION).join(LIBRARY_FILE)
}

#[test]
fn cuda_errors_name_what_is_missing() {
    for (case, dir) in [("cpu-build", CPU_LIBRARY_DIR), ("gpu-build", GPU_LIBRARY_DIR)] {
        let lib = library(dir);
        assert!(lib.is_file(), "{} is missing: run `cargo xtask setup --cuda`", lib.display());
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "one_library_in_this_process", "--nocapture", "--test-threads", "1"])
            .env(CASE_ENV, case)
            .env("ORT_DYLIB_PATH", &lib)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{case}: {text}");
        assert!(
            text.contains(&format!("case {case} checked")),
            "{case}: the child did not run: {text}"
        );
    }
}

/// Runs one case in a child process started by [`cuda_errors_name_what_is_missing`]; does nothing
/// when run directly.
#[test]
fn one_library_in_this_process() {
    let Ok(case) = std::env::var(CASE_ENV) else { return };
    let graph = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/minimal.onnx");
    let cuda = SessionOptions {
        device: Device::Cuda { device_id: 0 },
        intra_threads: Some(1),
        ..Default::default()
    };
    let reason = match load_session(&graph, &cuda) {
        Err(OrtError::CudaUnavailable { reason }) => reason,
        Err(other) => panic!("{case}: expected CudaUnavailable, got {other}"),
        Ok(s) => {
            // A machine with a GPU and the CUDA runtime: the CUDA build runs on it.
            assert_eq!(case, "gpu-build", "the CPU build cannot run CUDA sessions");
            assert!(matches!(s.provider, Provider::Cuda { device_id: 0 }));
            println!(
                "case {case} checked: CUDA is available here, the session runs on {}",
                s.provider
            );
            return;
        }
    };
    println!("{case}: {reason}");
    match case.as_str() {
        "cpu-build" => {
            assert!(
                reason.contains("is the CPU build") && reason.contains("cargo xtask setup --cuda"),
                "{reason}"
            );
            assert_eq!(cuda_unavailable_reason().unwrap().as_deref(), Some(reason.as_str()));
        }
        "gpu-build" => {
            assert_eq!(cuda_unavailable_reason().unwrap(), None, "the CUDA build has the provider");
            // No GPU software here: the provider library loads, the CUDA runtime (or driver, or a
            // device) does not — the reason names it.
            let named = [
                "libcudart",
                "libcublas",
                "libcurand",
                "libcudnn",
                "libcuda.so",
                "no CUDA-capable device",
                "NVIDIA driver",
            ]
            .iter()
            .any(|n| reason.contains(n));
            assert!(named, "{reason}");
        }
        other => panic!("unknown case {other}"),
    }
    let fb =
        load_session(&graph, &SessionOptions { allow_cpu_fallback: true, ..cuda.clone() }).unwrap();
    assert_eq!(fb.provider, Provider::Cpu);
    assert_eq!(fb.cuda_fallback.as_deref(), Some(reason.as_str()));
    // CUDA graphs asked for with that fallback: off, and the reason names the fallback's.
    let fb = load_session(
        &graph,
        &SessionOptions { allow_cpu_fallback: true, cuda_graph: true, ..cuda },
    )
    .unwrap();
    assert!(!fb.cuda_graph);
    let off = fb.cuda_graph_off.unwrap_or_default();
    assert!(off.starts_with("the session fell back to the CPU") && off.contains(&reason), "{off}");
    println!("case {case} checked");
}
