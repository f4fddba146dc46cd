// Shared test helpers: goldens (safetensors written by python/fixtures.py) and fixture paths.
#![allow(dead_code)]
use std::collections::HashMap;
use std::path::Path;

pub struct Golden {
    pub f32s: HashMap<String, (Vec<usize>, Vec<f32>)>,
    pub i64s: HashMap<String, (Vec<usize>, Vec<i64>)>,
}

impl Golden {
    pub fn load(path: &Path) -> Golden {
        let bytes = std::fs::read(path)
            .unwrap_or_else(|e| panic!("cannot read golden {}: {e}", path.display()));
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("golden safetensors");
        let mut f32s = HashMap::new();
        let mut i64s = HashMap::new();
        for (name, view) in st.tensors() {
            let shape = view.shape().to_vec();
            match view.dtype() {
                safetensors::Dtype::F32 => {
                    let v = view
                        .data()
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect();
                    f32s.insert(name, (shape, v));
                }
                safetensors::Dtype::I64 => {
                    let v = view
                        .data()
                        .chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                        .collect();
                    i64s.insert(name, (shape, v));
                }
                _ => {}
            }
        }
        Golden { f32s, i64s }
    }
    pub fn f(&self, k: &str) -> &(Vec<usize>, Vec<f32>) {
        self.f32s.get(k).unwrap_or_else(|| panic!("golden has no f32 tensor {k}"))
    }
    pub fn i(&self, k: &str) -> &(Vec<usize>, Vec<i64>) {
        self.i64s.get(k).unwrap_or_else(|| panic!("golden has no i64 tensor {k}"))
    }
    pub fn has(&self, k: &str) -> bool {
        self.f32s.contains_key(k) || self.i64s.contains_key(k)
    }
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The workspace root (or `VIDLM_FIXTURE_ROOT`, to read fixtures from another checkout).
pub fn fixture_root() -> std::path::PathBuf {
    match std::env::var_os("VIDLM_FIXTURE_ROOT") {
        Some(p) => std::path::PathBuf::from(p),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
    }
}

/// The committed demo model (tiny LLaVA-NeXT-Video, fp32) that the NeXT-Video goldens were made with.
pub fn demo_model() -> std::path::PathBuf {
    fixture_root().join("assets/demo-model")
}

/// Model directory for a family's goldens: the committed demo model for LLaVA-NeXT-Video, else
/// the fixture export of `cargo xtask fixtures` under `.cache/fixtures/<family>/model`.
pub fn model_for(family: &str) -> std::path::PathBuf {
    if family == "llava_next_video" {
        demo_model()
    } else {
        fixture_model(family)
    }
}

/// The export written by `cargo xtask fixtures`: `$VIDLM_CACHE/fixtures/<family>/model` (default
/// `.cache/`; fp32 + fp16).
pub fn fixture_model(family: &str) -> std::path::PathBuf {
    let key = match family {
        "llava" => "interleave",
        "llava_onevision" => "onevision",
        other => other,
    };
    let cache = std::env::var_os("VIDLM_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| fixture_root().join(".cache"));
    cache.join("fixtures").join(key).join("model")
}

/// A family's goldens folder (`tests/goldens/<family>`) and its `golden.json`.
pub fn golden_meta(family: &str) -> (std::path::PathBuf, serde_json::Value) {
    let dir = fixture_root().join("tests/goldens").join(family);
    let text = std::fs::read_to_string(dir.join("golden.json"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let meta = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    (dir, meta)
}

/// Families with committed goldens (`tests/goldens/<family>/golden.json`): every family.
pub fn golden_families() -> Vec<String> {
    let dir = fixture_root().join("tests/goldens");
    let mut v: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().join("golden.json").is_file())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Unpadded rows of a `[batch, width]` id tensor, using its attention mask.
pub fn unpadded_rows(ids: &(Vec<usize>, Vec<i64>), mask: &(Vec<usize>, Vec<i64>)) -> Vec<Vec<i64>> {
    let (b, w) = (ids.0[0], ids.0[1]);
    (0..b)
        .map(|r| (0..w).filter(|&c| mask.1[r * w + c] != 0).map(|c| ids.1[r * w + c]).collect())
        .collect()
}

/// Prefills `seq` in chunks of `chunk` tokens.
pub fn chunked(
    lm: &mut vidlm_decoder::LanguageModel,
    seq: &vidlm_decoder::Sequence,
    chunk: usize,
) -> vidlm_decoder::Prefilled {
    let mut p = lm.prefill(seq).expect("prefill");
    let (s, _) = lm.parts_mut();
    while !p.step(s, chunk).expect("chunk") {}
    p.finish().expect("finished")
}

/// Decodes one sequence in a RunningBatch of its own, prefilled in chunks of `chunk`.
pub fn decode_alone(
    lm: &mut vidlm_decoder::LanguageModel,
    seq: &vidlm_decoder::Sequence,
    chunk: usize,
    opts: &vidlm_decoder::GenerationOptions,
) -> Vec<i64> {
    let p = chunked(lm, seq, chunk);
    let state = lm.request_state(seq.input_ids.clone(), opts, None).expect("state");
    let mut batch = vidlm_decoder::RunningBatch::new(lm.sessions()).expect("batch");
    batch.admit(0u32, state, p, lm.sessions()).expect("admit");
    while !batch.is_empty() {
        let (s, t) = lm.parts_mut();
        batch.step(s, t).expect("step");
    }
    let (_, state) = batch.take_finished().pop().expect("finished row");
    state.generated().to_vec()
}
