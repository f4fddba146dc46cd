//! Library discovery, environment init, session building and metadata against the real ONNX
//! Runtime library. One test function: `ORT_DYLIB_PATH` is process-global state.
//! (`minimal.onnx` is `crates/decoder/tests/data/decoder_minimal.onnx`, see its generator there.)

use std::path::Path;

use vidlm_ort::*;

#[test]
fn discovery_init_sessions_and_metadata() {
    let graph = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/minimal.onnx");
    let saved = std::env::var_os("ORT_DYLIB_PATH");

    // An explicit ORT_DYLIB_PATH that does not exist is an error, not a silent fallback.
    std::env::set_var("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so");
    let err = find_library().unwrap_err();
    assert!(
        matches!(&err, OrtError::LibraryNotFound { searched } if searched == &vec![std::path::PathBuf::from("/nonexistent/libonnxruntime.so")])
    );
    let err = load_session(&graph, &SessionOptions::default()).unwrap_err();
    assert!(matches!(err, OrtError::LibraryNotFound { .. }), "{err}");

    // Without it, the project-local library is found (cargo xtask setup installs it).
    std::env::remove_var("ORT_DYLIB_PATH");
    let lib =
        find_library().expect("libonnxruntime from .cache/onnxruntime (run `cargo xtask setup`)");
    assert!(lib.ends_with(LIBRARY_FILE));
    if let Some(p) = saved {
        std::env::set_var("ORT_DYLIB_PATH", p);
    }

    let opts = SessionOptions {
        intra_threads: Some(1),
        inter_threads: Some(1),
        optimization_level: OptimizationLevel::Basic,
        ..Default::default()
    };
    let s = load_session(&graph, &opts).unwrap();
    assert_eq!(s.provider, Provider::Cpu);
    let names: Vec<&str> = s.inputs.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        ["inputs_embeds", "attention_mask", "past_key_values.0.key", "past_key_values.0.value"]
    );
    let emb = find_info(&s.inputs, "inputs_embeds").unwrap();
    assert_eq!(emb.elem_type, Some(TensorElementType::Float32));
    assert_eq!(emb.shape, vec![-1, -1, 16]);
    assert_eq!(emb.dim_names, vec!["batch", "seq", ""]);
    assert_eq!(
        find_info(&s.inputs, "attention_mask").unwrap().elem_type,
        Some(TensorElementType::Int64)
    );
    let outs: Vec<&str> = s.outputs.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(outs, ["logits", "present.0.key", "present.0.value"]);
    // The environment is shared: a second session reuses it.
    let env1 = environment().unwrap();
    let env2 = environment().unwrap();
    drop((env1, env2));
    load_session(&graph, &SessionOptions::default()).unwrap();

    // CUDA where it cannot run: a typed error, or CPU when fallback is allowed.
    let cuda = SessionOptions { device: Device::Cuda { device_id: 0 }, ..Default::default() };
    #[cfg(not(feature = "cuda"))]
    {
        let err = load_session(&graph, &cuda).unwrap_err();
        assert!(
            matches!(&err, OrtError::CudaUnavailable { reason } if reason.contains("`cuda` feature")),
            "{err}"
        );
    }
    let fb =
        load_session(&graph, &SessionOptions { allow_cpu_fallback: true, ..cuda.clone() }).unwrap();
    #[cfg(not(feature = "cuda"))]
    assert_eq!(fb.provider, Provider::Cpu);
    let _ = fb;

    // CUDA graphs: refused for a CPU session; asked for with CUDA where CUDA cannot run, the CPU
    // fallback loads without them and says why (never silently).
    let err =
        load_session(&graph, &SessionOptions { cuda_graph: true, ..opts.clone() }).unwrap_err();
    assert!(matches!(err, OrtError::CudaGraphNeedsCuda), "{err}");
    let fb = load_session(
        &graph,
        &SessionOptions { allow_cpu_fallback: true, cuda_graph: true, ..cuda.clone() },
    )
    .unwrap();
    if fb.provider == Provider::Cpu {
        assert!(!fb.cuda_graph);
        let off = fb.cuda_graph_off.as_deref().unwrap_or_default();
        assert!(off.starts_with("the session fell back to the CPU"), "{off}");
    }

    // Profiling: a profile per session in the folder asked for.
    let dir = std::env::temp_dir().join(format!("vidlm-ort-profile-{}", std::process::id()));
    let mut s =
        load_session(&graph, &SessionOptions { profile_dir: Some(dir.clone()), ..opts.clone() })
            .unwrap();
    let file = s.end_profiling().expect("profiling is on").unwrap();
    let file = if file.is_absolute() { file } else { std::env::current_dir().unwrap().join(file) };
    assert!(file.starts_with(&dir) && file.is_file(), "{}", file.display());
    assert!(s.end_profiling().is_none(), "ended once");
    let _ = std::fs::remove_dir_all(&dir);

    // Missing and corrupt graphs.
    assert!(matches!(
        load_session("/nonexistent.onnx", &opts).unwrap_err(),
        OrtError::GraphMissing(_)
    ));
    let bad = std::env::temp_dir().join(format!("vidlm-ort-corrupt-{}.onnx", std::process::id()));
    std::fs::write(&bad, b"this is not an onnx graph").unwrap();
    assert!(matches!(load_session(&bad, &opts).unwrap_err(), OrtError::SessionLoad { .. }));
    let _ = std::fs::remove_file(&bad);
}
