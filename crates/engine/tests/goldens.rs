//! `vidlm run`'s path on the committed goldens: each one-conversation scenario's media decoded by
//! `Processor::load_conversation`, submitted to an engine of one row (vision released after use,
//! as `vidlm run` does), must give exactly transformers' greedy tokens. The padded-batch
//! scenarios are the pipeline's (`crates/pipeline/tests/end_to_end.rs`); the engine's concurrent
//! rows are checked against the same requests alone (`tests/engine.rs`).

use crate::common;
use crate::golden_media;

use common::*;
use golden_media::golden_conversation;
use vidlm_engine::{Engine, EngineConfig, EngineRequest};
use vidlm_pipeline::{Conversation, Pipeline, PipelineOptions, SessionOptions};

#[test]
fn one_request_on_the_engine_gives_transformers_tokens_for_every_family() {
    let root = fixture_root();
    let opts = PipelineOptions {
        session: SessionOptions { intra_threads: Some(2), ..Default::default() },
        ..Default::default()
    };
    let mut failures = Vec::new();
    let mut checked = 0;
    for fam in golden_families() {
        let (gdir, meta) = golden_meta(&fam);
        let model = model_for(&fam);
        let p = Pipeline::from_pretrained(model.to_str().unwrap(), &opts)
            .unwrap_or_else(|e| panic!("{fam}: {e}"));
        let (processor, vision, lm) = p.into_parts();
        let config = EngineConfig {
            max_batch: 1,
            max_queue: 1,
            media_workers: 1,
            vision_cache_bytes: 0,
            release_vision_after_use: true,
            ..EngineConfig::default()
        };
        let engine = Engine::start(processor, vision, lm, config).unwrap();
        for (name, sc) in meta["scenarios"].as_object().unwrap() {
            if sc["batch_size"].as_u64() != Some(1) {
                continue;
            }
            let g = Golden::load(&gdir.join(sc["tensors"].as_str().unwrap()));
            let (tshape, want) = g.i("tokens");
            let conv = Conversation::from_json(&sc["messages"], Some(&root.join("tests/goldens")))
                .unwrap();
            // Decoded and sampled as `vidlm run` does (the Qwen-VL goldens' clips with their
            // frame rate, by the scenario's sampling).
            let (conv, process) = golden_conversation(engine.processor(), conv, &meta, sc);
            let loaded = engine
                .processor()
                .load_conversation(&conv, &process)
                .unwrap_or_else(|e| panic!("{fam}/{name}: {e}"));
            let mut req = EngineRequest::from_decoded(loaded).unwrap();
            req.generation.max_new_tokens = Some(tshape[1]);
            req.generation.eos_token_ids = Some(vec![]);
            req.generation.do_sample = Some(false);
            req.generation.repetition_penalty = Some(1.0);
            match engine.submit(req).and_then(|h| h.wait()) {
                Ok(c) if sc["input_ids"][0] != serde_json::json!(c.prompt_token_ids) => failures
                    .push(format!(
                        "{fam}/{name}: prompt_token_ids differ from transformers' input_ids"
                    )),
                Ok(c) if &c.token_ids == want => {}
                Ok(c) => {
                    failures.push(format!("{fam}/{name}: tokens {:?} != {want:?}", c.token_ids))
                }
                Err(e) => failures.push(format!("{fam}/{name}: {e}")),
            }
            checked += 1;
        }
        engine.shutdown();
    }
    assert!(checked >= 20, "only {checked} one-conversation goldens");
    assert!(failures.is_empty(), "{failures:#?}");
}
