//! The M-RoPE decoders (the Qwen2.5-VL and Qwen3-VL fixtures of `cargo xtask fixtures`, every
//! golden family whose decoder takes 3-row `position_ids`): positions from the rope index and
//! DeepStack rows go through every path — one-shot prefill, chunked prefill, a left-padded batch,
//! rows joining a running batch, the preallocated and the packed KV cache — and each gives the
//! tokens of the others. The prompts and grids are the goldens'; the features are synthetic
//! (transformers' tokens with the real vision features are the pipeline's and the engine's
//! golden tests).

use crate::common;

use common::*;
use vidlm_decoder::*;
use vidlm_model::mrope::{rope_index, MropeRule};
use vidlm_model::ModelFiles;

/// Greedy, whatever the fixture's `generation_config.json` says (the Qwen checkpoints sample).
fn greedy(n: usize) -> GenerationOptions {
    GenerationOptions {
        max_new_tokens: Some(n),
        eos_token_ids: Some(vec![]),
        do_sample: Some(false),
        repetition_penalty: Some(1.0),
        ..Default::default()
    }
}

/// The golden families whose model numbers positions with M-RoPE.
fn mrope_families() -> Vec<(String, MropeRule)> {
    golden_families()
        .into_iter()
        .filter_map(|fam| {
            let files = ModelFiles::read(fixture_model(&fam)).ok()?;
            let rule = MropeRule::from_config(files.spec().ok()?, &files.config).ok()??;
            Some((fam, rule))
        })
        .collect()
}

fn load(fam: &str) -> LanguageModel {
    let opts = LmOptions {
        session: SessionOptions { intra_threads: Some(2), ..Default::default() },
        ..Default::default()
    };
    LanguageModel::from_dir(fixture_model(fam), &opts).unwrap_or_else(|e| panic!("{fam}: {e}"))
}

/// Deterministic pseudo-random rows (`rows × dim`), different per `salt`.
fn synthetic(rows: usize, dim: usize, salt: usize) -> Vec<f32> {
    (0..rows * dim).map(|i| (((i * 7919 + salt * 104_729) % 2000) as f32 / 1000.0) - 1.0).collect()
}

fn features(rows: usize, dim: usize, levels: usize, salt: usize) -> Option<Features> {
    if rows == 0 {
        return None;
    }
    let f = Features::new(synthetic(rows, dim, salt), dim).expect("features");
    Some(if levels > 0 {
        f.with_deepstack(levels, synthetic(levels * rows, dim, salt + 1)).expect("deepstack")
    } else {
        f
    })
}

fn grids(g: &Golden, key: &str) -> Vec<[i64; 3]> {
    if !g.has(key) {
        return Vec::new();
    }
    g.i(key).1.chunks(3).map(|c| [c[0], c[1], c[2]]).collect()
}

/// The scenarios' rows as sequences: the goldens' unpadded ids, each row's own grids (consumed in
/// order), positions from the rope index, synthetic features (with DeepStack levels where the
/// decoder takes them).
fn sequences(
    lm: &LanguageModel,
    rule: &MropeRule,
    gdir: &std::path::Path,
    file: &str,
) -> Vec<Sequence> {
    let g = Golden::load(&gdir.join(file));
    let rows = unpadded_rows(g.i("input_ids"), g.i("attention_mask"));
    let (img_grids, vid_grids) = (grids(&g, "image_grid_thw"), grids(&g, "video_grid_thw"));
    let spgt: Vec<f32> =
        if g.has("second_per_grid_ts") { g.f("second_per_grid_ts").1.clone() } else { Vec::new() };
    let m2 = (rule.spatial_merge_size * rule.spatial_merge_size) as i64;
    let tokens = |gr: &[i64; 3]| (gr[0] * gr[1] * gr[2] / m2) as usize;
    let hidden = lm.sessions().hidden();
    let levels = lm.sessions().io().deepstack_levels;
    let (mut gi, mut gv) = (0, 0);
    rows.iter()
        .enumerate()
        .map(|(r, ids)| {
            let count = |t: i64| ids.iter().filter(|&&x| x == t).count();
            let (ni, nv) = (count(rule.image_token_id), count(rule.video_token_id));
            let take = |all: &[[i64; 3]], at: &mut usize, n: usize| {
                let start = *at;
                let mut covered = 0;
                while covered < n {
                    covered += tokens(&all[*at]);
                    *at += 1;
                }
                start..*at
            };
            let ri = take(&img_grids, &mut gi, ni);
            let rv = take(&vid_grids, &mut gv, nv);
            let s = (!spgt.is_empty()).then(|| spgt[rv.clone()].to_vec());
            let mask = vec![1; ids.len()];
            let positions =
                rope_index(rule, ids, &mask, 1, &img_grids[ri], &vid_grids[rv], s.as_deref())
                    .expect("rope index");
            Sequence {
                input_ids: ids.clone(),
                image_features: features(ni, hidden, levels, 2 * r),
                video_features: features(nv, hidden, levels, 2 * r + 1),
                positions: Some(positions),
            }
        })
        .collect()
}

#[test]
fn every_path_gives_the_same_tokens_with_mrope_positions_and_deepstack() {
    let fams = mrope_families();
    assert!(fams.len() >= 2, "M-RoPE fixtures missing (run `cargo xtask fixtures`): {fams:?}");
    for (fam, rule) in fams {
        let mut lm = load(&fam);
        assert_eq!(lm.sessions().io().position_rows, 3, "{fam}");
        assert_eq!(lm.mrope_rule(), Some(&rule), "{fam}: the model's own rule");
        assert!(
            lm.sessions().shares_kv_buffers(),
            "{fam}: fused-gqa-mrope preallocates on the CPU"
        );
        let (gdir, meta) = golden_meta(&fam);
        let n = 8;
        for (name, sc) in meta["scenarios"].as_object().expect("scenarios") {
            let seqs = sequences(&lm, &rule, &gdir, sc["tensors"].as_str().expect("tensors"));
            let mut solo = Vec::new();
            for (r, seq) in seqs.iter().enumerate() {
                let one_shot = lm.first_step_logits(std::slice::from_ref(seq)).expect("one shot");
                let want =
                    lm.generate(std::slice::from_ref(seq), &greedy(n)).expect("generate").rows[0]
                        .token_ids
                        .clone();
                let scale = one_shot.iter().fold(0f32, |m, v| m.max(v.abs()));
                for chunk in [3, 7, usize::MAX] {
                    let p = chunked(&mut lm, seq, chunk);
                    let d = max_abs_diff(p.logits(), &one_shot);
                    assert!(
                        d <= 1e-4 + 1e-5 * scale,
                        "{fam}/{name} row {r} chunk {chunk}: |Δ| {d}"
                    );
                    assert_eq!(
                        decode_alone(&mut lm, seq, chunk, &greedy(n)),
                        want,
                        "{fam}/{name} row {r}: chunked prefill {chunk} + running batch"
                    );
                }
                // The packed cache gives the preallocated cache's tokens.
                lm.parts_mut().0.set_shares_kv_buffers(false);
                assert_eq!(
                    decode_alone(&mut lm, seq, 5, &greedy(n)),
                    want,
                    "{fam}/{name} row {r}: packed"
                );
                lm.parts_mut().0.set_shares_kv_buffers(true);
                solo.push(want);
            }
            if seqs.len() > 1 {
                // A left-padded batch prefilled together: every row gets its solo tokens.
                let both = lm.generate(&seqs, &greedy(n)).expect("batch");
                let got: Vec<Vec<i64>> = both.rows.iter().map(|r| r.token_ids.clone()).collect();
                assert_eq!(got, solo, "{fam}/{name}: left-padded batch");
                // Row 1 joins a running batch two steps after row 0.
                let mut batch: RunningBatch<usize> = RunningBatch::new(lm.sessions()).expect("b");
                let mut got = vec![Vec::new(); seqs.len()];
                for step in 0..n + 2 {
                    if step < seqs.len() * 2 && step % 2 == 0 {
                        let i = step / 2;
                        let p = chunked(&mut lm, &seqs[i], 6);
                        let st = lm.request_state(seqs[i].input_ids.clone(), &greedy(n), None);
                        batch.admit(i, st.expect("state"), p, lm.sessions()).expect("admit");
                    }
                    let (s, t) = lm.parts_mut();
                    for (k, ev) in batch.step(s, t).expect("step") {
                        got[k].push(ev.token_id);
                    }
                }
                assert_eq!(got, solo, "{fam}/{name}: rows joining a running batch");
            }
        }
    }
}

#[test]
fn missing_positions_or_deepstack_levels_are_typed_errors() {
    for (fam, rule) in mrope_families() {
        let mut lm = load(&fam);
        let (gdir, meta) = golden_meta(&fam);
        let sc = &meta["scenarios"]["image"];
        let seq = sequences(&lm, &rule, &gdir, sc["tensors"].as_str().expect("tensors")).remove(0);
        // Vision features without the rope index's positions.
        let no_pos = Sequence { positions: None, ..seq.clone() };
        let e = lm.generate(std::slice::from_ref(&no_pos), &greedy(2)).unwrap_err();
        assert!(matches!(e, DecoderError::Shape(_)), "{fam}: {e}");
        assert!(matches!(lm.prefill(&no_pos).unwrap_err(), DecoderError::Shape(_)), "{fam}");
        // Positions of another prompt length.
        let mut short = seq.clone();
        if let Some(p) = short.positions.as_mut() {
            p.seq -= 1;
            p.ids.truncate(3 * p.seq);
        }
        assert!(matches!(lm.prefill(&short).unwrap_err(), DecoderError::Shape(_)), "{fam}");
        // Features without DeepStack levels for a decoder that takes them (and the reverse).
        let hidden = lm.sessions().hidden();
        let rows = seq.image_features.as_ref().map_or(0, Features::rows);
        let plain = Features::new(synthetic(rows, hidden, 9), hidden).expect("features");
        let other = match lm.sessions().io().deepstack_levels {
            0 => plain.with_deepstack(2, synthetic(2 * rows, hidden, 3)).expect("levels"),
            _ => plain,
        };
        let bad = Sequence { image_features: Some(other), ..seq.clone() };
        assert!(matches!(lm.prefill(&bad).unwrap_err(), DecoderError::Shape(_)), "{fam}");
        // A text-only prompt needs no positions: its three rows are 0..len.
        let text: Vec<i64> =
            seq.input_ids.iter().copied().filter(|&t| t != rule.image_token_id).collect();
        let with = Sequence {
            positions: Some(
                rope_index(&rule, &text, &vec![1; text.len()], 1, &[], &[], None).expect("rope"),
            ),
            ..Sequence::text(text.clone())
        };
        assert_eq!(
            lm.generate(&[Sequence::text(text)], &greedy(4)).expect("text").rows[0].token_ids,
            lm.generate(&[with], &greedy(4)).expect("text").rows[0].token_ids,
            "{fam}"
        );
    }
}
