//! CUDA graph capture of the decode step (`SessionOptions::cuda_graph`) where it cannot happen:
//! refused on the CPU, and — with CUDA asked for — never enabled on vidlm's decoder graphs, whose
//! step shapes change per token; the load says why instead (never silently ignored). On a machine
//! without CUDA the CUDA request falls back to the CPU (`allow_cpu_fallback`), which also turns
//! capture off with its reason.

use crate::common;

use common::*;
use vidlm_decoder::*;

fn opts(session: SessionOptions) -> LmOptions {
    LmOptions { session, ..Default::default() }
}

#[test]
fn cuda_graphs_are_refused_on_the_cpu_and_reported_elsewhere() {
    let cpu = SessionOptions { intra_threads: Some(1), cuda_graph: true, ..Default::default() };
    let Err(err) = LanguageModel::from_dir(demo_model(), &opts(cpu)) else {
        panic!("CUDA graphs on the CPU must be refused")
    };
    assert!(matches!(err, DecoderError::Ort(OrtError::CudaGraphNeedsCuda)), "{err}");
    assert!(err.to_string().contains("CUDA graphs need the CUDA execution provider"), "{err}");

    // Asked for with CUDA: the decoder loads uncaptured (here on the CPU fallback) and says why.
    let cuda = SessionOptions {
        device: Device::Cuda { device_id: 0 },
        allow_cpu_fallback: true,
        intra_threads: Some(1),
        cuda_graph: true,
        ..Default::default()
    };
    let lm = LanguageModel::from_dir(demo_model(), &opts(cuda)).expect("loads without capture");
    let s = lm.sessions();
    assert!(!s.cuda_graph());
    let why = s.cuda_graph_off().expect("the reason is kept for the notice");
    assert!(why.starts_with("CUDA graph capture off: "), "{why}");
    assert!(why.contains("static-shape decode export"), "{why}");

    // Not asked for: nothing to report.
    let plain = SessionOptions { intra_threads: Some(1), ..Default::default() };
    let lm = LanguageModel::from_dir(demo_model(), &opts(plain)).unwrap();
    assert_eq!(lm.sessions().cuda_graph_off(), None);
}
