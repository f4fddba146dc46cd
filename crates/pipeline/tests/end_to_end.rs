//! The whole path on the committed goldens: the goldens' chat messages (PNG frames and images
//! under `tests/goldens/media`) go through `Pipeline` (processor → vision → decoder); greedy
//! tokens must equal transformers' `generate`. The Qwen-VL goldens' videos are clips with their
//! frame rate, sampled by the video processor as the scenario says.

use crate::common;
use crate::golden_media;

use common::*;
use golden_media::golden_conversation;
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
        let mut p = Pipeline::from_pretrained(model.to_str().unwrap(), &options())
            .unwrap_or_else(|e| panic!("{fam}: {e}"));
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
                    let (conv, o) = golden_conversation(p.processor(), conv, &meta, sc);
                    process = o;
                    conv
                })
                .collect();
            let mut opts = GenerateOptions { process, ..Default::default() };
            opts.generation.max_new_tokens = Some(tshape[1]);
            opts.generation.eos_token_ids = Some(vec![]);
            // Greedy, as the goldens (the Qwen checkpoints' generation_config.json samples).
            opts.generation.do_sample = Some(false);
            opts.generation.repetition_penalty = Some(1.0);
            let out = match p.generate_batch(&convs, &opts) {
                Ok(o) => o,
                Err(e) => {
                    failures.push(format!("{fam}/{name}: {e}"));
                    continue;
                }
            };
            let got: Vec<i64> = out.rows.iter().flat_map(|r| r.token_ids.clone()).collect();
            eprintln!(
                "{fam}/{name}: {} tokens, vision {:?}, prefill {:?}",
                got.len(),
                out.timings.vision,
                out.timings.prefill
            );
            if &got != want {
                failures.push(format!("{fam}/{name}: tokens {got:?} != {want:?}"));
            }
            checked += 1;
        }
    }
    assert!(checked > 0, "no goldens");
    assert!(failures.is_empty(), "{failures:#?}");
}
