//! Decoder benchmark: ratios against baselines measured in the same run.
//!
//! `cargo bench -p vidlm-decoder --bench generation` (model: `VIDLM_BENCH_MODEL`, default the
//! committed tiny `assets/demo-model`; point it at a full-size export for real shapes).
//!
//! 1. KV-cache decoding (vidlm) vs. the no-cache baseline that re-runs the whole sequence for
//!    every new token.
//! 2. One batched generation of N conversations vs. N sequential generations.
//! 3. Decode steps at a long context (`VIDLM_BENCH_CONTEXT`, default 2048 tokens): the
//!    preallocated cache that GroupQueryAttention appends to in place vs. the packed cache whose
//!    `present.*` is allocated and the past copied into it on every step (`VIDLM_KV_PREALLOCATE=0`
//!    in the binaries). Only where the graph supports it (`vidlm.decoder = fused-gqa`, CPU).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use vidlm_decoder::{GenerationOptions, LanguageModel, LmOptions, Sequence, SessionOptions};

fn model_dir() -> PathBuf {
    std::env::var_os("VIDLM_BENCH_MODEL").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets/demo-model")
    })
}

fn best_of<F: FnMut() -> usize>(reps: usize, mut f: F) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut n = 0;
    for _ in 0..reps {
        let t = Instant::now();
        n = f();
        best = best.min(t.elapsed());
    }
    (best, n)
}

fn main() {
    let dir = model_dir();
    let threads =
        std::env::var("VIDLM_BENCH_THREADS").ok().and_then(|s| s.parse().ok()).unwrap_or(2);
    let opts = LmOptions {
        session: SessionOptions { intra_threads: Some(threads), ..Default::default() },
        ..Default::default()
    };
    let mut lm = match LanguageModel::from_dir(&dir, &opts) {
        Ok(lm) => lm,
        Err(e) => {
            eprintln!("cannot load {}: {e}", dir.display());
            std::process::exit(1);
        }
    };
    let new_tokens = 32;
    let prompt: Vec<i64> = (0..200).map(|i| 100 + (i * 37) % 20000).collect();
    let gen = GenerationOptions {
        max_new_tokens: Some(new_tokens),
        eos_token_ids: Some(vec![]),
        ..Default::default()
    };
    println!(
        "model: {} ({} threads), prompt 200 tokens, {new_tokens} new tokens, best of 3\n",
        dir.display(),
        threads
    );

    // `VIDLM_BENCH_ONLY=kv`: only part 3 (parts 1 and 2 take minutes on a full-size model).
    let only_kv = std::env::var("VIDLM_BENCH_ONLY").is_ok_and(|v| v == "kv");
    if !only_kv {
        compare_cache_and_batching(&mut lm, &prompt, &gen);
    }
    long_context_kv(&mut lm, &gen);
}

fn compare_cache_and_batching(lm: &mut LanguageModel, prompt: &[i64], gen: &GenerationOptions) {
    let new_tokens = gen.max_new_tokens.unwrap_or(32);
    // 1. KV cache vs. recompute.
    let seq = Sequence::text(prompt.to_vec());
    let (t_cache, _) = best_of(3, || {
        lm.generate(std::slice::from_ref(&seq), gen).map(|r| r.generated_tokens).unwrap_or(0)
    });
    let one = GenerationOptions { max_new_tokens: Some(1), ..gen.clone() };
    let (t_nocache, _) = best_of(3, || {
        let mut ids = prompt.to_vec();
        for _ in 0..new_tokens {
            let r = lm.generate(&[Sequence::text(ids.clone())], &one).expect("generate");
            ids.push(r.rows[0].token_ids[0]);
        }
        new_tokens
    });
    println!("| decoding ({new_tokens} tokens) | time | tokens/s | speed-up |");
    println!("|---|---|---|---|");
    println!(
        "| baseline: no KV cache (full recompute per token) | {:.1} ms | {:.1} | 1.00x |",
        ms(t_nocache),
        tps(new_tokens, t_nocache)
    );
    println!(
        "| vidlm: KV cache, present->past without copies | {:.1} ms | {:.1} | {:.2}x |\n",
        ms(t_cache),
        tps(new_tokens, t_cache),
        ratio(t_nocache, t_cache)
    );

    // 2. Batched vs. sequential.
    let n = 4;
    let seqs: Vec<Sequence> =
        (0..n).map(|k| Sequence::text(prompt[..150 + 10 * k].to_vec())).collect();
    let (t_seq, _) = best_of(3, || {
        seqs.iter()
            .map(|s| {
                lm.generate(std::slice::from_ref(s), gen).map(|r| r.generated_tokens).unwrap_or(0)
            })
            .sum()
    });
    let (t_batch, _) =
        best_of(3, || lm.generate(&seqs, gen).map(|r| r.generated_tokens).unwrap_or(0));
    println!("| {n} conversations x {new_tokens} tokens | time | tokens/s | speed-up |");
    println!("|---|---|---|---|");
    println!(
        "| baseline: sequential | {:.1} ms | {:.1} | 1.00x |",
        ms(t_seq),
        tps(n * new_tokens, t_seq)
    );
    println!(
        "| vidlm: one left-padded batch | {:.1} ms | {:.1} | {:.2}x |\n",
        ms(t_batch),
        tps(n * new_tokens, t_batch),
        ratio(t_seq, t_batch)
    );
}

fn long_context_kv(lm: &mut LanguageModel, gen: &GenerationOptions) {
    // 3. Decode steps at a long context: preallocated (in place) vs packed (a copy per step).
    if !lm.sessions().shares_kv_buffers() {
        println!("(KV preallocation: not supported by this graph/provider; skipped)");
        return;
    }
    let context: usize =
        std::env::var("VIDLM_BENCH_CONTEXT").ok().and_then(|s| s.parse().ok()).unwrap_or(2048);
    let long = Sequence::text((0..context).map(|i| 100 + ((i * 37) % 20000) as i64).collect());
    let mut steps = 0;
    let mut decode = |share: bool| -> (Duration, Vec<i64>) {
        lm.parts_mut().0.set_shares_kv_buffers(share);
        let mut best = Duration::MAX;
        let mut toks = Vec::new();
        for _ in 0..3 {
            let r = lm.generate(std::slice::from_ref(&long), gen).expect("generate");
            best = best.min(r.timings.decode_total());
            toks = r.rows[0].token_ids.clone();
            steps = r.timings.decode_steps.len();
        }
        (best, toks)
    };
    // interleaved: packed, preallocated, packed, preallocated
    let (p1, tp) = decode(false);
    let (a1, ta) = decode(true);
    let (p2, _) = decode(false);
    let (a2, _) = decode(true);
    let (packed, prealloc) = (p1.min(p2), a1.min(a2));
    let steps = steps.max(1);
    println!("| decode steps at a {context}-token context ({steps} steps) | per step | tokens/s | speed-up |");
    println!("|---|---|---|---|");
    println!("| baseline: packed cache (present allocated, past copied each step) | {:.2} ms | {:.1} | 1.00x |", ms(packed) / steps as f64, tps(steps, packed));
    println!(
        "| vidlm: preallocated cache, appended in place | {:.2} ms | {:.1} | {:.2}x |",
        ms(prealloc) / steps as f64,
        tps(steps, prealloc),
        ratio(packed, prealloc)
    );
    println!("\ntokens identical in both layouts: {}", if tp == ta { "yes" } else { "NO" });
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
fn tps(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}
fn ratio(base: Duration, new: Duration) -> f64 {
    base.as_secs_f64() / new.as_secs_f64()
}
