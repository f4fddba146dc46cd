//! The rope index against transformers 5.23's own `get_rope_index` (tests/goldens/qwen_host/
//! rope_index.json, written by python/qwen_host_goldens.py from the tiny Qwen models).

use vidlm_model::mrope::{rope_index, MropeError, MropeRule, TemporalRule};

fn goldens() -> serde_json::Value {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/goldens/qwen_host/rope_index.json");
    serde_json::from_str(&std::fs::read_to_string(p).expect("rope_index.json")).expect("json")
}

fn ints(v: &serde_json::Value) -> Vec<i64> {
    v.as_array().expect("array").iter().map(|x| x.as_i64().expect("int")).collect()
}

fn grids(v: &serde_json::Value) -> Vec<[i64; 3]> {
    v.as_array().expect("array").iter().map(|g| ints(g).try_into().expect("t,h,w")).collect()
}

fn rule(fam: &str, g: &serde_json::Value) -> MropeRule {
    MropeRule {
        spatial_merge_size: g["spatial_merge_size"].as_u64().expect("merge") as usize,
        image_token_id: g["image_token_id"].as_i64().expect("image id"),
        video_token_id: g["video_token_id"].as_i64().expect("video id"),
        temporal: if fam == "qwen3_vl" {
            TemporalRule::OneFrameGrids
        } else {
            TemporalRule::SecondsPerGrid {
                tokens_per_second: g["tokens_per_second"].as_f64().expect("tps") as f32,
            }
        },
    }
}

#[test]
fn rope_index_matches_transformers() {
    let all = goldens();
    for fam in ["qwen2_5_vl", "qwen3_vl"] {
        let g = &all[fam];
        let rule = rule(fam, g);
        let cases = g["cases"].as_array().expect("cases");
        assert!(cases.len() >= 5);
        for c in cases {
            let name = c["name"].as_str().expect("name");
            let spgt: Option<Vec<f32>> = c["second_per_grid_ts"]
                .as_array()
                .map(|a| a.iter().map(|x| x.as_f64().expect("f") as f32).collect());
            let pos = rope_index(
                &rule,
                &ints(&c["input_ids"]),
                &ints(&c["attention_mask"]),
                c["batch"].as_u64().expect("batch") as usize,
                &grids(&c["image_grid_thw"]),
                &grids(&c["video_grid_thw"]),
                spgt.as_deref(),
            )
            .unwrap_or_else(|e| panic!("{fam}/{name}: {e}"));
            assert_eq!(pos.ids, ints(&c["position_ids"]), "{fam}/{name}");
        }
    }
}

/// The decode-position trap: generate continues at the last prompt position + 1 (+ step), which
/// differs from rope_deltas + length when a video's temporal positions run past the text after it.
#[test]
fn decode_positions_follow_the_last_prompt_position() {
    let all = goldens();
    let g = &all["qwen2_5_vl"];
    let c = &g["cases"][0];
    let b = c["batch"].as_u64().expect("batch") as usize;
    let spgt: Vec<f32> = c["second_per_grid_ts"]
        .as_array()
        .expect("spgt")
        .iter()
        .map(|x| x.as_f64().expect("f") as f32)
        .collect();
    let mask = ints(&c["attention_mask"]);
    let pos = rope_index(
        &rule("qwen2_5_vl", g),
        &ints(&c["input_ids"]),
        &mask,
        b,
        &grids(&c["image_grid_thw"]),
        &grids(&c["video_grid_thw"]),
        Some(&spgt),
    )
    .expect("rope index");
    let seq = mask.len() / b;
    let mut differs = false;
    for r in 0..b {
        let last = pos.last(r);
        assert_eq!(pos.decode(r, 0), last.map(|p| p + 1));
        assert_eq!(pos.decode(r, 3), last.map(|p| p + 4));
        let max = (0..3).flat_map(|a| pos.row(a, r).iter().copied()).max().expect("max");
        let len = mask[r * seq..(r + 1) * seq].iter().sum::<i64>();
        let by_delta = len + (max + 1 - len);
        differs |= by_delta != pos.decode(r, 0)[0];
    }
    assert!(differs, "the golden should exercise the rope_deltas trap");
}

#[test]
fn mismatched_placeholders_are_bad_requests() {
    let rule = MropeRule {
        spatial_merge_size: 2,
        image_token_id: 7,
        video_token_id: 8,
        temporal: TemporalRule::OneFrameGrids,
    };
    let ids = [1, 7, 7, 7, 2];
    let e = rope_index(&rule, &ids, &[1; 5], 1, &[[1, 4, 4]], &[], None).unwrap_err();
    assert!(matches!(e, MropeError::CountMismatch { tokens: 3, expected: 4, .. }), "{e}");
    assert_eq!(e.kind().http_status(), 400);
    let e = rope_index(&rule, &ids, &[1; 5], 1, &[], &[], None).unwrap_err();
    assert_eq!(e, MropeError::MissingGrid { kind: "image" });
    let e = rope_index(&rule, &[1, 2], &[1, 1], 1, &[[1, 4, 4]], &[], None).unwrap_err();
    assert!(matches!(e, MropeError::UnusedGrids { .. }));
    let e = rope_index(&rule, &[1, 2, 3], &[1, 1], 1, &[], &[], None).unwrap_err();
    assert!(matches!(e, MropeError::Shape { .. }));
    // Qwen3-VL: a 2-frame video is two one-frame runs.
    let ids = [1, 8, 8, 8, 8, 2, 8, 8, 8, 8, 3];
    let pos = rope_index(&rule, &ids, &[1; 11], 1, &[], &[[2, 4, 4]], None).expect("ok");
    assert_eq!(pos.row(0, 0), &[0, 1, 1, 1, 1, 3, 4, 4, 4, 4, 6]);
}
