//! Generation behaviour on the committed tiny LLaVA-NeXT-Video model (`assets/demo-model`,
//! random weights, real Llama tokenizer): sampling reproducibility, streaming, cancellation,
//! stop conditions, batching with finished rows leaving the batch, and typed errors.

use crate::common;

use std::ops::ControlFlow;
use std::path::PathBuf;

use common::*;
use vidlm_decoder::*;

fn session() -> SessionOptions {
    SessionOptions { intra_threads: Some(2), ..Default::default() }
}

fn load() -> LanguageModel {
    LanguageModel::from_dir(demo_model(), &LmOptions { session: session(), ..Default::default() })
        .expect("demo model loads")
}

fn prompt(lm: &LanguageModel, text: &str) -> Vec<i64> {
    let tok = lm.tokenizer().expect("demo model has tokenizer.json");
    tok.encode(text, true).expect("encode").get_ids().iter().map(|&i| i as i64).collect()
}

fn greedy(n: usize) -> GenerationOptions {
    GenerationOptions { max_new_tokens: Some(n), eos_token_ids: Some(vec![]), ..Default::default() }
}

#[test]
fn seeded_sampling_is_reproducible() {
    let mut lm = load();
    let seq = Sequence::text(prompt(&lm, "USER: Tell me a story. ASSISTANT:"));
    let opts = |seed| GenerationOptions {
        max_new_tokens: Some(16),
        do_sample: Some(true),
        temperature: Some(1.3),
        top_k: Some(200),
        top_p: Some(0.95),
        min_p: Some(0.01),
        repetition_penalty: Some(1.1),
        seed: Some(seed),
        eos_token_ids: Some(vec![]),
        ..Default::default()
    };
    let a = lm.generate(std::slice::from_ref(&seq), &opts(42)).unwrap();
    let b = lm.generate(std::slice::from_ref(&seq), &opts(42)).unwrap();
    let c = lm.generate(std::slice::from_ref(&seq), &opts(7)).unwrap();
    assert_eq!(a.rows[0].token_ids.len(), 16);
    assert_eq!(a.rows[0].token_ids, b.rows[0].token_ids);
    assert_ne!(
        a.rows[0].token_ids, c.rows[0].token_ids,
        "different seeds should sample differently"
    );
    // Sampling is not greedy here.
    let g = lm.generate(std::slice::from_ref(&seq), &greedy(16)).unwrap();
    assert_ne!(a.rows[0].token_ids, g.rows[0].token_ids);
}

#[test]
fn streaming_concatenates_to_the_decoded_text_and_can_be_cancelled() {
    let mut lm = load();
    let seq = Sequence::text(prompt(&lm, "USER: Describe the weather. ASSISTANT:"));
    let mut pieces = String::new();
    let mut n = 0;
    let stream = lm.stream(std::slice::from_ref(&seq), &greedy(20)).unwrap();
    let mut last = None;
    for ev in stream {
        let ev = ev.unwrap();
        pieces.push_str(&ev.text);
        n += 1;
        last = ev.finished;
    }
    assert_eq!(n, 20);
    assert_eq!(last, Some(FinishReason::MaxNewTokens));
    let full = lm.generate(std::slice::from_ref(&seq), &greedy(20)).unwrap();
    assert_eq!(Some(pieces.clone()), full.rows[0].text);
    assert!(!pieces.contains('\u{FFFD}'));

    // Cancel from the callback after 5 tokens.
    let mut seen = 0;
    let res = lm
        .generate_with(std::slice::from_ref(&seq), &greedy(20), |_| {
            seen += 1;
            if seen == 5 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert_eq!(res.rows[0].token_ids.len(), 5);
    assert_eq!(res.rows[0].finish_reason, FinishReason::Cancelled);
    assert_eq!(res.rows[0].token_ids, full.rows[0].token_ids[..5].to_vec());

    // Dropping the iterator early is also a cancel; the model stays usable.
    let mut it = lm.stream(std::slice::from_ref(&seq), &greedy(20)).unwrap();
    let first = it.next().unwrap().unwrap();
    assert_eq!(first.token_id, full.rows[0].token_ids[0]);
    drop(it);
    assert_eq!(
        lm.generate(std::slice::from_ref(&seq), &greedy(3)).unwrap().rows[0].token_ids,
        full.rows[0].token_ids[..3].to_vec()
    );
}

#[test]
fn eos_from_config_or_options_and_stop_strings() {
    let mut lm = load();
    let seq = Sequence::text(prompt(&lm, "USER: Count to ten. ASSISTANT:"));
    let full = lm.generate(std::slice::from_ref(&seq), &greedy(12)).unwrap();
    let toks = full.rows[0].token_ids.clone();
    // EOS = the 4th token: stops there, EOS included.
    let eos = toks[3];
    let first = toks.iter().position(|&t| t == eos).unwrap();
    let r = lm
        .generate(
            std::slice::from_ref(&seq),
            &GenerationOptions {
                max_new_tokens: Some(12),
                eos_token_ids: Some(vec![999_999, eos]),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(r.rows[0].finish_reason, FinishReason::Eos);
    assert_eq!(r.rows[0].token_ids, toks[..=first].to_vec());
    // EOS from generation_config.json (eos_token_id 2) when not overridden: a config with eos = that token.
    let mut cfg = lm.generation_config().clone();
    cfg.eos_token_id = Some(OneOrMany::Many(vec![eos]));
    lm.set_generation_config(cfg);
    let r = lm
        .generate(
            std::slice::from_ref(&seq),
            &GenerationOptions { max_new_tokens: Some(12), ..Default::default() },
        )
        .unwrap();
    assert_eq!(r.rows[0].token_ids, toks[..=first].to_vec());
    // Stop string: a piece of the text produced by the 3rd token onwards.
    let tok = lm.tokenizer().unwrap().clone();
    let text3 = tok.decode(&toks[..3].iter().map(|&t| t as u32).collect::<Vec<_>>(), true).unwrap();
    let text2 = tok.decode(&toks[..2].iter().map(|&t| t as u32).collect::<Vec<_>>(), true).unwrap();
    assert!(text3.len() > text2.len());
    let stop = text3[text2.len()..].trim().to_string();
    assert!(
        !stop.is_empty() && !text2.contains(&stop),
        "pick a stop string that first appears with token 3: {stop:?}"
    );
    let r = lm
        .generate(
            std::slice::from_ref(&seq),
            &GenerationOptions {
                max_new_tokens: Some(12),
                eos_token_ids: Some(vec![]),
                stop_strings: Some(vec![stop.clone()]),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(r.rows[0].finish_reason, FinishReason::StopString);
    assert_eq!(r.rows[0].token_ids, toks[..3].to_vec());
    assert!(r.rows[0].text.as_deref().unwrap().contains(&stop));
}

#[test]
fn batch_left_padding_and_finished_rows_leave_the_batch() {
    let mut lm = load();
    let a = Sequence::text(prompt(&lm, "USER: Hi. ASSISTANT:"));
    let b = Sequence::text(prompt(
        &lm,
        "USER: Please write a long and detailed poem about the sea and its moods. ASSISTANT:",
    ));
    let ra = lm.generate(std::slice::from_ref(&a), &greedy(10)).unwrap().rows[0].token_ids.clone();
    let rb = lm.generate(std::slice::from_ref(&b), &greedy(10)).unwrap().rows[0].token_ids.clone();
    // Batched greedy equals the single runs (left padding + position ids are right).
    let both = lm.generate(&[a.clone(), b.clone()], &greedy(10)).unwrap();
    assert_eq!(both.rows[0].token_ids, ra);
    assert_eq!(both.rows[1].token_ids, rb);
    assert_eq!(both.generated_tokens, 20);
    // Row a stops early on an EOS that row b never produces; b continues alone (its KV rows are
    // kept, a's dropped) and still matches its single run.
    let eos =
        *ra.iter().skip(1).find(|t| !rb.contains(t)).expect("a token of a that b never emits");
    let stop_at = ra.iter().position(|&t| t == eos).unwrap();
    let opts = GenerationOptions {
        max_new_tokens: Some(10),
        eos_token_ids: Some(vec![eos]),
        ..Default::default()
    };
    let mixed = lm.generate(&[a, b], &opts).unwrap();
    assert_eq!(mixed.rows[0].finish_reason, FinishReason::Eos);
    assert_eq!(mixed.rows[0].token_ids, ra[..=stop_at].to_vec());
    assert_eq!(mixed.rows[1].token_ids, rb);
    assert_eq!(mixed.rows[1].finish_reason, FinishReason::MaxNewTokens);
    // One decode step per generated position of the longest row after prefill.
    assert_eq!(mixed.timings.decode_steps.len(), 9);
}

#[test]
fn placeholder_feature_mismatch_is_typed() {
    let mut lm = load();
    let ph = lm.placeholders();
    let video = ph.video_token_id.unwrap();
    let hidden = lm.sessions().hidden();
    let mut ids = prompt(&lm, "USER:");
    ids.extend(std::iter::repeat_n(video, 6));
    ids.extend(prompt(&lm, "What? ASSISTANT:"));
    let seq = Sequence {
        input_ids: ids.clone(),
        video_features: Some(Features::new(vec![0.1; 5 * hidden], hidden).unwrap()),
        ..Default::default()
    };
    let err = lm.generate(&[seq], &greedy(2)).unwrap_err();
    assert!(
        matches!(err, DecoderError::FeatureCountMismatch { kind: "video", tokens: 6, features: 5 }),
        "{err}"
    );
    // Image features but no image placeholder.
    let seq = Sequence {
        input_ids: prompt(&lm, "USER: hi ASSISTANT:"),
        image_features: Some(Features::new(vec![0.0; hidden], hidden).unwrap()),
        ..Default::default()
    };
    assert!(matches!(
        lm.generate(&[seq], &greedy(2)).unwrap_err(),
        DecoderError::FeatureCountMismatch { kind: "image", tokens: 0, features: 1 }
    ));
    // Placeholders without features.
    let seq = Sequence::text(ids);
    assert!(matches!(
        lm.generate(&[seq], &greedy(2)).unwrap_err(),
        DecoderError::FeatureCountMismatch { kind: "video", tokens: 6, features: 0 }
    ));
}

#[test]
fn context_length_is_enforced() {
    let mut lm = load();
    let max = lm.text_config().max_position_embeddings.expect("config has max_position_embeddings");
    let seq = Sequence::text(vec![1; max + 1]);
    let err = lm.generate(&[seq], &greedy(2)).unwrap_err();
    assert!(
        matches!(err, DecoderError::PromptTooLong { tokens, max: m, .. } if tokens == max + 1 && m == max),
        "{err}"
    );
    // Generation stops at the context end.
    let mut text = lm.text_config().clone();
    let ids = prompt(&lm, "USER: Hello there. ASSISTANT:");
    text.max_position_embeddings = Some(ids.len() + 3);
    let files = LanguageModelFiles::in_dir(demo_model(), "", "");
    let sessions = LmSessions::load(&files, &text, &session()).unwrap();
    let mut small = LanguageModel::new(
        sessions,
        text,
        GenerationConfig::default(),
        None,
        PlaceholderIds::default(),
    );
    let r = small.generate(&[Sequence::text(ids)], &greedy(50)).unwrap();
    assert_eq!(r.rows[0].finish_reason, FinishReason::ContextLength);
    assert_eq!(r.rows[0].token_ids.len(), 3);
}

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

#[test]
fn missing_and_malformed_graphs_are_typed_errors() {
    // Missing decoder graph: a directory with the configs but no onnx/.
    let dir = std::env::temp_dir().join(format!("vidlm-decoder-missing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(demo_model().join("config.json"), dir.join("config.json")).unwrap();
    let err = LanguageModel::from_dir(&dir, &LmOptions::default()).unwrap_err();
    assert!(
        matches!(&err, DecoderError::Ort(OrtError::GraphMissing(p)) if p.ends_with("onnx/embed_tokens.onnx")),
        "{err}"
    );
    // Missing config.json.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let err = LanguageModel::from_dir(&empty, &LmOptions::default()).unwrap_err();
    assert!(
        matches!(&err, DecoderError::Model(vidlm_model::ModelError::MissingFile { file, .. }) if file == "config.json"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);

    // A decoder graph with an input this runtime does not know.
    let text = TextConfig::default();
    let files = LanguageModelFiles {
        embed_tokens: demo_model().join("onnx/embed_tokens.onnx"),
        decoder: data("decoder_unexpected_input.onnx"),
    };
    let err = LmSessions::load(&files, &text, &session()).unwrap_err();
    assert!(
        matches!(&err, DecoderError::UnexpectedInput { name, .. } if name == "token_type_ids"),
        "{err}"
    );
    // The embed graph used as a decoder: no inputs_embeds.
    let files = LanguageModelFiles {
        embed_tokens: demo_model().join("onnx/embed_tokens.onnx"),
        decoder: demo_model().join("onnx/embed_tokens.onnx"),
    };
    assert!(matches!(
        LmSessions::load(&files, &text, &session()).unwrap_err(),
        DecoderError::UnexpectedGraph { .. }
    ));
}

#[test]
fn optional_inputs_are_fed_only_when_declared() {
    // decoder_minimal.onnx declares neither position_ids, use_cache_branch nor
    // num_logits_to_keep, returns full-sequence logits [batch, seq, 8] (= the first 8 embedding
    // values) and echoes the cache. It must load and generate.
    let files = LanguageModelFiles {
        embed_tokens: demo_model().join("onnx/embed_tokens.onnx"),
        decoder: data("decoder_minimal.onnx"),
    };
    let mut s = LmSessions::load(&files, &TextConfig::default(), &session()).unwrap();
    assert!(
        !s.io().has_position_ids && !s.io().has_use_cache_branch && !s.io().has_num_logits_to_keep
    );
    assert_eq!((s.io().kv_heads, s.io().head_dim, s.io().layers.len()), (1, 4, 1));
    let ids = [1i64, 450, 4996];
    let emb = s.embed(&ids, 1, 3).unwrap();
    let mut cache = s.empty_cache(1).unwrap();
    let out = s.step(&emb, 1, 3, &[1, 1, 1], &[0, 1, 2], &mut cache).unwrap();
    // Last position's logits = first 8 values of the last token's embedding.
    assert_eq!(out.vocab, 8);
    assert_eq!(out.logits, emb[2 * 16..2 * 16 + 8].to_vec());
    let mut lm = LanguageModel::new(
        s,
        TextConfig::default(),
        GenerationConfig::default(),
        None,
        PlaceholderIds::default(),
    );
    let r = lm.generate(&[Sequence::text(ids.to_vec())], &greedy(3)).unwrap();
    assert_eq!(r.rows[0].token_ids.len(), 3);
    assert!(r.rows[0].token_ids.iter().all(|&t| (0..8).contains(&t)));
}

#[test]
fn invalid_requests_are_typed_errors() {
    let mut lm = load();
    assert!(matches!(lm.generate(&[], &greedy(2)).unwrap_err(), DecoderError::InvalidOption(_)));
    assert!(matches!(
        lm.generate(&[Sequence::text(vec![])], &greedy(2)).unwrap_err(),
        DecoderError::InvalidOption(_)
    ));
    let bad =
        GenerationOptions { do_sample: Some(true), temperature: Some(-1.0), ..Default::default() };
    assert!(matches!(
        lm.generate(&[Sequence::text(vec![1, 2])], &bad).unwrap_err(),
        DecoderError::InvalidOption(_)
    ));
}
