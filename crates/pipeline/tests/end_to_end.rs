//! The whole path on the committed goldens, left-padded batches included: the goldens' chat
//! messages (PNG frames and images under `tests/goldens/media`) go through the loaded parts
//! (processor → `sequences_from_inputs`: vision, features, M-RoPE positions → the decoder's
//! batched `generate`); greedy tokens must equal transformers' `generate`. The Qwen-VL goldens'
//! videos are clips with their frame rate, sampled by the video processor as the scenario says.
//! (One request at a time through the serving engine: `crates/engine/tests/goldens.rs`.)

use crate::common;
use crate::golden_media;

use common::*;
use golden_media::golden_conversation;
use vidlm_decoder::GenerationOptions;
use vidlm_pipeline::*;

fn options() -> PipelineOptions {
    PipelineOptions {
        session: SessionOptions { intra_threads: Some(2), ..Default::default() },
        ..Default::default()
    }
}

#[test]
fn messages_to_tokens_match_transformers_for_every_family() {
    let root = fixture_root();
    let mut failures = Vec::new();
    let mut checked = 0;
    for fam in golden_families() {
        let (gdir, meta) = golden_meta(&fam);
        let model = model_for(&fam);
        let p = Pipeline::from_pretrained(model.to_str().unwrap(), &options())
            .unwrap_or_else(|e| panic!("{fam}: {e}"));
        let (processor, mut vision, mut lm) = p.into_parts();
        for (name, sc) in meta["scenarios"].as_object().unwrap() {
            let g = Golden::load(&gdir.join(sc["tensors"].as_str().unwrap()));
            let (tshape, want) = g.i("tokens");
            let messages = &sc["messages"];
            let convs: Vec<serde_json::Value> = if sc["batch_size"].as_u64() == Some(1) {
                vec![messages.clone()]
            } else {
                messages.as_array().unwrap().clone()
            };
            let base = root.join("tests/goldens");
            let mut process = ProcessOptions::default();
            let convs: Vec<Conversation> = convs
                .iter()
                .map(|m| {
                    let conv = Conversation::from_json(m, Some(&base)).unwrap();
                    let (conv, o) = golden_conversation(&processor, conv, &meta, sc);
                    process = o;
                    conv
                })
                .collect();
            let out = processor.process(&convs, &process).map_err(PipelineError::from).and_then(
                |inputs| {
                    let seqs = sequences_from_inputs(&mut vision, &inputs, lm.mrope_rule())?;
                    let generation = GenerationOptions {
                        max_new_tokens: Some(tshape[1]),
                        eos_token_ids: Some(vec![]),
                        // Greedy, as the goldens (the Qwen checkpoints' generation_config.json samples).
                        do_sample: Some(false),
                        repetition_penalty: Some(1.0),
                        // The batch is left-padded with the processor's pad id.
                        pad_token_id: Some(inputs.pad_token_id),
                        ..Default::default()
                    };
                    Ok(lm.generate(&seqs, &generation)?)
                },
            );
            let out = match out {
                Ok(o) => o,
                Err(e) => {
                    failures.push(format!("{fam}/{name}: {e}"));
                    continue;
                }
            };
            let got: Vec<i64> = out.rows.iter().flat_map(|r| r.token_ids.clone()).collect();
            eprintln!("{fam}/{name}: {} tokens, prefill {:?}", got.len(), out.timings.prefill);
            if &got != want {
                failures.push(format!("{fam}/{name}: tokens {got:?} != {want:?}"));
            }
            checked += 1;
        }
    }
    assert!(checked > 0, "no goldens");
    assert!(failures.is_empty(), "{failures:#?}");
}
