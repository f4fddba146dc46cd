//! The Qwen vision host tables against python-produced values (tests/goldens/qwen_host/
//! vision_tables.json, written by python/qwen_host_goldens.py): the window index,
//! cu_window_seqlens and interpolation indices/weights from transformers 5.23's vision_utils, the
//! padded window batch and the rotary tables from vidlm_export/qwen_host.py (which
//! python/tests/test_qwen_host.py checks against transformers).
//!
//! Integer tables and the interpolation weights must be identical. The rotary tables are
//! float32 `cos`/`sin` of identical float32 arguments; libm and numpy's vectorised kernels may
//! round the last bit differently, so they are compared to 1e-6 (the bound test_qwen_host uses
//! against transformers' own tables).

use vidlm_vision::qwen::{qwen25_tables, qwen3_tables, window_index, QwenVisionGeometry};

fn goldens() -> serde_json::Value {
    let p =
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/goldens/qwen_host/vision_tables.json");
    serde_json::from_str(&std::fs::read_to_string(p).expect("vision_tables.json")).expect("json")
}

fn ints(v: &serde_json::Value) -> Vec<i64> {
    v.as_array().expect("array").iter().map(|x| x.as_i64().expect("int")).collect()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("float") as f32).collect()
}

fn usize_of(v: &serde_json::Value) -> usize {
    v.as_u64().expect("uint") as usize
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst <= 1e-6, "{what}: max |diff| {worst:e}");
}

#[test]
fn qwen2_5_vl_tables_match_python() {
    let all = goldens();
    let g = &all["qwen2_5_vl"];
    let geo = QwenVisionGeometry {
        spatial_merge_size: usize_of(&g["spatial_merge_size"]),
        head_dim: usize_of(&g["head_dim"]),
        rope_theta: g["rope_theta"].as_f64().expect("theta") as f32,
        window_size: usize_of(&g["window_size"]),
        patch_size: usize_of(&g["patch_size"]),
        num_position_embeddings: 0,
    };
    let grids = g["grids"].as_array().expect("grids");
    assert!(grids.len() >= 6);
    for c in grids {
        let (h, w) = (usize_of(&c["h"]), usize_of(&c["w"]));
        let what = format!("qwen2_5_vl {h}x{w}");
        let (widx, cu) =
            window_index(h, w, geo.spatial_merge_size, geo.window_size, geo.patch_size);
        assert_eq!(widx, ints(&c["window_index"]), "{what} window_index");
        assert_eq!(cu, ints(&c["cu_window_seqlens"]), "{what} cu_window_seqlens");
        let t = qwen25_tables(h, w, &geo);
        assert_eq!(t.window_index, ints(&c["window_index"]), "{what}");
        assert_eq!(t.reverse_window_index, ints(&c["reverse_window_index"]), "{what} reverse");
        let shape = ints(&c["window_gather_shape"]);
        assert_eq!([t.windows.windows as i64, t.windows.width as i64], [shape[0], shape[1]]);
        assert_eq!(t.windows.gather, ints(&c["window_gather"]), "{what} gather");
        assert_eq!(t.windows.scatter, ints(&c["window_scatter"]), "{what} scatter");
        assert_eq!(t.windows.key_bias, floats(&c["window_key_bias"]), "{what} key bias");
        assert_close(&t.rotary_cos, &floats(&c["rotary_cos"]), &format!("{what} cos"));
        assert_close(&t.rotary_sin, &floats(&c["rotary_sin"]), &format!("{what} sin"));
    }
}

#[test]
fn qwen3_vl_tables_match_python() {
    let all = goldens();
    let g = &all["qwen3_vl"];
    let geo = QwenVisionGeometry {
        spatial_merge_size: usize_of(&g["spatial_merge_size"]),
        head_dim: usize_of(&g["head_dim"]),
        rope_theta: g["rope_theta"].as_f64().expect("theta") as f32,
        window_size: 0,
        patch_size: 0,
        num_position_embeddings: usize_of(&g["num_position_embeddings"]),
    };
    for c in g["grids"].as_array().expect("grids") {
        let (h, w) = (usize_of(&c["h"]), usize_of(&c["w"]));
        let what = format!("qwen3_vl {h}x{w}");
        let t = qwen3_tables(h, w, &geo);
        assert_eq!(t.pos_interp_indices, ints(&c["pos_interp_indices"]), "{what} indices");
        assert_eq!(t.pos_interp_weights, floats(&c["pos_interp_weights"]), "{what} weights");
        assert_close(&t.rotary_cos, &floats(&c["rotary_cos"]), &format!("{what} cos"));
        assert_close(&t.rotary_sin, &floats(&c["rotary_sin"]), &format!("{what} sin"));
    }
}
