//! The preallocated KV cache (past and present bound to one buffer, `GroupQueryAttention`
//! appending in place) gives transformers' tokens, exactly as the packed cache does, through
//! every change of layout: one-shot and chunked prefill, growth past the reserved length, a
//! left-padded batch (packed) and a row left alone after it (preallocated again).
//!
//! The models are the tiny head_dim-16 Qwen2 (OneVision: GQA 7:1, qkv bias) and Llama
//! (NeXT-Video: linear RoPE ×2) language models that `cargo xtask fixtures` exports with the
//! fused builder's GroupQueryAttention path (`.cache/fixtures/gqa/<family>`), with transformers'
//! greedy tokens for a left-padded batch of two.

use crate::common;

use std::path::PathBuf;

use vidlm_decoder::*;

struct Case {
    lm: LmSessions,
    ids: Vec<Vec<i64>>,
    mask: Vec<Vec<i64>>,
    want: Vec<Vec<i64>>,
}

fn gqa_dir(family: &str) -> PathBuf {
    let cache = std::env::var_os("VIDLM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::fixture_root().join(".cache"));
    cache.join("fixtures/gqa").join(family)
}

fn load(family: &str) -> Case {
    let dir = gqa_dir(family);
    let read = |f: &str| -> serde_json::Value {
        let p = dir.join(f);
        let text = std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask fixtures`)", p.display()));
        serde_json::from_str(&text).expect("json")
    };
    let cfg = read("config.json");
    let text: TextConfig = serde_json::from_value(cfg["text_config"].clone()).expect("text_config");
    let exp = read("expected.json");
    let rows = |k: &str| -> Vec<Vec<i64>> { serde_json::from_value(exp[k].clone()).expect(k) };
    let files = LanguageModelFiles::in_dir(&dir, "", "");
    let opts = SessionOptions { intra_threads: Some(1), ..Default::default() };
    let lm = LmSessions::load(&files, &text, &opts).expect("language model loads");
    Case { lm, ids: rows("input_ids"), mask: rows("attention_mask"), want: rows("tokens") }
}

fn argmax(v: &[f32]) -> i64 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as i64
}

/// Greedy decoding of `rows` (each `(ids, mask)`, the same width), prefilled in chunks of
/// `chunk` (one row only: chunks on a past are batch-1 calls). Returns the tokens and, per step,
/// the cache's capacity after it.
fn greedy(
    lm: &mut LmSessions,
    rows: &[(Vec<i64>, Vec<i64>)],
    chunk: usize,
    steps: usize,
) -> (Vec<Vec<i64>>, Vec<Option<usize>>) {
    let batch = rows.len();
    let width = rows[0].0.len();
    let mut mask: Vec<i64> = rows.iter().flat_map(|(_, m)| m.iter().copied()).collect();
    let ids: Vec<i64> = rows.iter().flat_map(|(i, _)| i.iter().copied()).collect();
    let mut cache = lm.empty_cache(batch).expect("cache");
    let mut layouts = Vec::new();
    let mut done = 0;
    let mut logits = Vec::new();
    while done < width {
        let n = chunk.min(width - done);
        let cols: Vec<i64> = (0..batch)
            .flat_map(|b| ids[b * width + done..b * width + done + n].iter().copied())
            .collect();
        let m: Vec<i64> = (0..batch)
            .flat_map(|b| mask[b * width..b * width + done + n].iter().copied())
            .collect();
        let pos = position_ids(&m, done + n, n);
        let emb = lm.embed(&cols, batch, n).expect("embed");
        let out = lm.step(&emb, batch, n, &m, &pos, &mut cache).expect("prefill step");
        logits = out.logits;
        layouts.push(cache.capacity());
        done += n;
    }
    let vocab = logits.len() / batch;
    let mut toks = vec![Vec::new(); batch];
    let mut w = width;
    for step in 0..steps {
        let next: Vec<i64> =
            (0..batch).map(|b| argmax(&logits[b * vocab..(b + 1) * vocab])).collect();
        for (b, t) in next.iter().enumerate() {
            toks[b].push(*t);
        }
        if step + 1 == steps {
            break;
        }
        let mut m = Vec::with_capacity(batch * (w + 1));
        for r in mask.chunks(w) {
            m.extend_from_slice(r);
            m.push(1);
        }
        mask = m;
        w += 1;
        let pos = position_ids(&mask, w, 1);
        let emb = lm.embed(&next, batch, 1).expect("embed");
        logits = lm.step(&emb, batch, 1, &mask, &pos, &mut cache).expect("decode step").logits;
        layouts.push(cache.capacity());
        assert_eq!(cache.past_len(), w);
    }
    (toks, layouts)
}

/// Row `r` alone, its left padding dropped.
fn alone(c: &Case, r: usize) -> (Vec<i64>, Vec<i64>) {
    let pad = c.mask[r].iter().take_while(|&&m| m == 0).count();
    (c.ids[r][pad..].to_vec(), c.mask[r][pad..].to_vec())
}

fn check_family(family: &str) {
    let mut c = load(family);
    let steps = c.want[0].len();
    assert!(
        c.lm.shares_kv_buffers(),
        "{family}: a fused-gqa graph on the CPU preallocates its cache"
    );
    for r in 0..c.ids.len() {
        let row = alone(&c, r);
        let len = row.0.len();
        // One-shot prefill: the cache is preallocated from the first call and never reallocated
        // (prompt + 16 tokens fit the default headroom).
        let (toks, layouts) = greedy(&mut c.lm, std::slice::from_ref(&row), usize::MAX, steps);
        assert_eq!(toks[0], c.want[r], "{family} row {r}: preallocated cache, one-shot prefill");
        let cap = len + DEFAULT_KV_HEADROOM;
        assert!(
            layouts.iter().all(|l| *l == Some(cap)),
            "{family} row {r}: layouts {layouts:?}, want all Some({cap})"
        );
        // Chunks of 2 and no headroom: the cache grows (a copy) whenever a step outgrows it.
        c.lm.set_kv_headroom(0);
        let (toks, layouts) = greedy(&mut c.lm, std::slice::from_ref(&row), 2, steps);
        c.lm.set_kv_headroom(DEFAULT_KV_HEADROOM);
        assert_eq!(toks[0], c.want[r], "{family} row {r}: preallocated cache grown from chunks");
        let caps: Vec<usize> = layouts.iter().map(|l| l.expect("preallocated")).collect();
        assert!(
            caps.windows(2).all(|w| w[1] >= w[0]) && caps.first() < caps.last(),
            "{family}: capacities {caps:?}"
        );
        // The packed cache gives the same tokens.
        c.lm.set_shares_kv_buffers(false);
        let (toks, layouts) = greedy(&mut c.lm, std::slice::from_ref(&row), usize::MAX, steps);
        c.lm.set_shares_kv_buffers(true);
        assert_eq!(toks[0], c.want[r], "{family} row {r}: packed cache");
        assert!(layouts.iter().all(Option::is_none));
    }
    // A left-padded batch runs packed (its calls take the plain-op attention) and gives
    // transformers' batched tokens.
    let rows: Vec<(Vec<i64>, Vec<i64>)> =
        (0..c.ids.len()).map(|r| (c.ids[r].clone(), c.mask[r].clone())).collect();
    let (toks, layouts) = greedy(&mut c.lm, &rows, usize::MAX, steps);
    assert_eq!(toks, c.want, "{family}: left-padded batch");
    assert!(
        layouts.iter().all(Option::is_none),
        "{family}: a padded batch stays packed: {layouts:?}"
    );
}

#[test]
fn preallocated_cache_onevision_qwen2() {
    check_family("onevision");
}

#[test]
fn preallocated_cache_next_video_llama() {
    check_family("llava_next_video");
}

/// A cache goes from packed (a batch of two) to preallocated (the unpadded row left alone) and
/// continues with the tokens the row gets by itself.
#[test]
fn a_row_left_alone_after_a_batch_goes_back_to_the_preallocated_cache() {
    let mut c = load("onevision");
    let steps = c.want[0].len();
    // Row 0 has no padding; batch it with a copy of itself, then keep only row 0.
    let row = (c.ids[0].clone(), c.mask[0].clone());
    let width = row.0.len();
    let mut cache = c.lm.empty_cache(2).expect("cache");
    let ids: Vec<i64> = row.0.iter().chain(row.0.iter()).copied().collect();
    let mask: Vec<i64> = row.1.iter().chain(row.1.iter()).copied().collect();
    let pos = position_ids(&mask, width, width);
    let emb = c.lm.embed(&ids, 2, width).expect("embed");
    let out = c.lm.step(&emb, 2, width, &mask, &pos, &mut cache).expect("batched prefill");
    assert_eq!(cache.capacity(), None, "two rows: packed");
    let vocab = out.logits.len() / 2;
    let path = std::path::Path::new("decoder");
    cache.retain_rows(&[1], path).expect("retain");
    let mut next = argmax(&out.logits[vocab..]);
    let mut toks = vec![next];
    let mut m = row.1.clone();
    for _ in 1..steps {
        m.push(1);
        let w = m.len();
        let pos = position_ids(&m, w, 1);
        let emb = c.lm.embed(&[next], 1, 1).expect("embed");
        let out = c.lm.step(&emb, 1, 1, &m, &pos, &mut cache).expect("step");
        assert!(cache.capacity().is_some(), "one unpadded row: preallocated again");
        next = argmax(&out.logits);
        toks.push(next);
    }
    assert_eq!(toks, c.want[0]);
}

/// The serving path: a row decoding alone in a `RunningBatch` (preallocated), a second row
/// joining it (both caches made packed, the shorter left-padded), the first leaving (the one left
/// is trimmed and preallocated again). Each row gets transformers' tokens.
#[test]
fn a_running_batch_changes_layout_as_rows_join_and_leave() {
    let mut c = load("onevision");
    let steps = c.want[0].len();
    let gen_cfg = GenerationConfig::default();
    let state = |prompt: &[i64], n: usize| {
        let o = GenerationOptions {
            max_new_tokens: Some(n),
            eos_token_ids: Some(vec![]),
            ..Default::default()
        };
        RequestState::new(
            prompt.to_vec(),
            ResolvedGeneration::resolve(&gen_cfg, &o).expect("resolve"),
            prompt.len(),
            None,
        )
    };
    let prefill = |lm: &mut LmSessions, ids: &[i64]| {
        let mut p =
            Prefill::new(lm, &Sequence::text(ids.to_vec()), PlaceholderIds::default(), None)
                .expect("prefill");
        while !p.step(lm, 4).expect("chunk") {}
        p.finish().expect("prefilled")
    };
    let (row0, _) = alone(&c, 0);
    let (row1, _) = alone(&c, 1);
    let mut batch = RunningBatch::new(&c.lm).expect("batch");
    // row 1 decodes alone for 3 steps, then row 0 (the longer prompt) joins; row 1 stops after
    // `steps` tokens, row 0 runs `steps` tokens and finishes alone.
    let p1 = prefill(&mut c.lm, &row1);
    batch.admit(1u32, state(&row1, steps), p1, &c.lm).expect("admit 1");
    for _ in 0..3 {
        batch.step(&mut c.lm, None).expect("step");
    }
    let p0 = prefill(&mut c.lm, &row0);
    batch.admit(0u32, state(&row0, steps), p0, &c.lm).expect("admit 0");
    let mut finished = Vec::new();
    while !batch.is_empty() {
        batch.step(&mut c.lm, None).expect("step");
        finished.extend(batch.take_finished());
    }
    finished.extend(batch.take_finished());
    assert_eq!(finished.len(), 2);
    for (key, st) in finished {
        assert_eq!(st.generated(), &c.want[key as usize][..], "row {key}");
    }
}
