// Shared helpers for reading golden safetensors (included by tests with `mod`).
#![allow(dead_code)]
use std::collections::HashMap;
use std::path::Path;

pub struct Golden {
    pub f32s: HashMap<String, (Vec<usize>, Vec<f32>)>,
    pub i64s: HashMap<String, (Vec<usize>, Vec<i64>)>,
}

impl Golden {
    pub fn load(path: &Path) -> Golden {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read golden {}: {e}", path.display()));
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("golden safetensors");
        let mut f32s = HashMap::new();
        let mut i64s = HashMap::new();
        for (name, view) in st.tensors() {
            let shape = view.shape().to_vec();
            match view.dtype() {
                safetensors::Dtype::F32 => {
                    let v = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
                    f32s.insert(name, (shape, v));
                }
                safetensors::Dtype::I64 => {
                    let v = view.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
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
