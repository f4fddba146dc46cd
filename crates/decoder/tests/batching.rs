//! The engine-facing decoder API on the committed tiny LLaVA-NeXT-Video: chunked prefill gives
//! the logits of a one-shot prefill; rows that join a running batch at any step, or leave it,
//! get exactly the tokens they get alone; log-probabilities.

use crate::common;

use common::*;
use vidlm_decoder::*;

fn load() -> LanguageModel {
    LanguageModel::from_dir(
        demo_model(),
        &LmOptions {
            session: SessionOptions { intra_threads: Some(2), ..Default::default() },
            ..Default::default()
        },
    )
    .expect("demo model loads")
}

fn prompt(lm: &LanguageModel, text: &str) -> Vec<i64> {
    let tok = lm.tokenizer().expect("tokenizer");
    tok.encode(text, true).expect("encode").get_ids().iter().map(|&i| i as i64).collect()
}

fn greedy(n: usize) -> GenerationOptions {
    GenerationOptions { max_new_tokens: Some(n), eos_token_ids: Some(vec![]), ..Default::default() }
}

/// A prompt with `frames` video placeholders and deterministic pseudo-random features.
fn video_seq(lm: &LanguageModel, text: &str, frames: usize) -> Sequence {
    let hidden = lm.sessions().hidden();
    let video = lm.placeholders().video_token_id.expect("video token");
    let mut ids = prompt(lm, "USER:");
    ids.extend(std::iter::repeat_n(video, frames));
    ids.extend(prompt(lm, text).into_iter().skip(1));
    let data: Vec<f32> =
        (0..frames * hidden).map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0).collect();
    Sequence {
        input_ids: ids,
        video_features: Some(Features::new(data, hidden).expect("features")),
        ..Default::default()
    }
}

#[test]
fn chunked_prefill_gives_the_one_shot_logits() {
    let mut lm = load();
    let seq = video_seq(&lm, " What happens in this video? ASSISTANT:", 24);
    let one_shot = lm.first_step_logits(std::slice::from_ref(&seq)).expect("one shot");
    let whole = chunked(&mut lm, &seq, usize::MAX);
    assert_eq!(whole.logits(), &one_shot[..], "a single chunk is the one-shot pass");
    let scale = one_shot.iter().fold(0f32, |m, v| m.max(v.abs()));
    for chunk in [1, 3, 7, 16] {
        let p = chunked(&mut lm, &seq, chunk);
        let d = max_abs_diff(p.logits(), &one_shot);
        assert!(d <= 1e-4 + 1e-5 * scale, "chunk {chunk}: max |Δ| {d}");
        assert_eq!(argmax(p.logits()), argmax(&one_shot), "chunk {chunk}");
    }
    // The greedy answer after a chunked prefill is the one-call answer.
    let want = lm.generate(std::slice::from_ref(&seq), &greedy(12)).expect("generate").rows[0]
        .token_ids
        .clone();
    let got = decode_alone(&mut lm, &seq, 5, &greedy(12));
    assert_eq!(got, want);
}

#[test]
fn rows_joining_and_leaving_a_running_batch_get_their_solo_tokens() {
    let mut lm = load();
    let seqs = [
        Sequence::text(prompt(&lm, "USER: Write a poem about the sea. ASSISTANT:")),
        video_seq(&lm, " Describe the video in detail, please, with every object. ASSISTANT:", 30),
        Sequence::text(prompt(&lm, "USER: Hi. ASSISTANT:")),
        video_seq(&lm, " Why? ASSISTANT:", 8),
    ];
    let n = [14usize, 9, 12, 6];
    let solo: Vec<Vec<i64>> = seqs
        .iter()
        .zip(n)
        .map(|(s, n)| {
            lm.generate(std::slice::from_ref(s), &greedy(n)).expect("solo").rows[0]
                .token_ids
                .clone()
        })
        .collect();
    // Row i joins after `join[i]` steps; row 2 is cancelled after 4 of its tokens.
    let join = [0usize, 2, 3, 7];
    let mut batch: RunningBatch<usize> = RunningBatch::new(lm.sessions()).expect("batch");
    let mut got: Vec<Vec<i64>> = vec![Vec::new(); 4];
    let mut cancelled = None;
    let mut step = 0;
    loop {
        for i in 0..4 {
            if join[i] == step {
                let p = chunked(&mut lm, &seqs[i], 4 + i);
                let st = lm
                    .request_state(seqs[i].input_ids.clone(), &greedy(n[i]), None)
                    .expect("state");
                batch.admit(i, st, p, lm.sessions()).expect("admit");
            }
        }
        if got[2].len() == 4 && cancelled.is_none() {
            let removed = batch.remove(&[2], lm.sessions()).expect("remove");
            assert_eq!(removed.len(), 1);
            assert_eq!(removed[0].1.finish_reason(), Some(FinishReason::Cancelled));
            cancelled = Some(removed[0].1.generated().to_vec());
        }
        if batch.is_empty() && step > *join.iter().max().unwrap_or(&0) {
            break;
        }
        let (s, t) = lm.parts_mut();
        for (k, ev) in batch.step(s, t).expect("step") {
            got[k].push(ev.token_id);
        }
        step += 1;
        assert!(step < 100, "runaway");
    }
    for i in [0, 1, 3] {
        assert_eq!(got[i], solo[i], "row {i} joined at step {}", join[i]);
    }
    assert_eq!(got[2], solo[2][..4].to_vec(), "the cancelled row's tokens up to the cancel");
    assert_eq!(cancelled.as_deref(), Some(&solo[2][..4]));
    let finished: Vec<usize> = batch.take_finished().into_iter().map(|(k, _)| k).collect();
    assert!(finished.contains(&0) && finished.contains(&1) && finished.contains(&3));
    // Everything left the batch: its cache is empty again.
    assert_eq!(batch.width(), 0);
}

#[test]
fn logprobs_of_greedy_tokens() {
    let mut lm = load();
    let seq = Sequence::text(prompt(&lm, "USER: Count to five. ASSISTANT:"));
    let p = chunked(&mut lm, &seq, usize::MAX);
    let raw = p.logits().to_vec();
    let st = lm.request_state(seq.input_ids.clone(), &greedy(4), Some(3)).expect("state");
    let mut batch = RunningBatch::new(lm.sessions()).expect("batch");
    batch.admit((), st, p, lm.sessions()).expect("admit");
    let (s, t) = lm.parts_mut();
    let ev = batch.step(s, t).expect("step").pop().expect("event").1;
    let lp = ev.logprobs.expect("logprobs asked for");
    assert_eq!(lp.top.len(), 3);
    assert_eq!(lp.top[0].0, ev.token_id, "greedy picks the most likely token");
    assert!((lp.top[0].1 - lp.logprob).abs() < 1e-6);
    assert!(lp.top.windows(2).all(|w| w[0].1 >= w[1].1));
    // log_softmax of the raw logits.
    let max = raw.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let lse = max + raw.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
    let want = raw[ev.token_id as usize] as f64 - lse;
    assert!((lp.logprob as f64 - want).abs() < 1e-5, "{} vs {want}", lp.logprob);
    assert!(lp.logprob <= 0.0);
}
