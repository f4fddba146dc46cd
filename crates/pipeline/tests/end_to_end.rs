//! The whole path on the committed goldens: the goldens' chat messages (PNG frames and images
//! under `tests/goldens/media`) go through `Pipeline` (processor → vision → decoder); greedy
//! tokens must equal transformers' `generate`.

use crate::common;

use common::*;
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
            let convs: Vec<Conversation> =
                convs.iter().map(|m| Conversation::from_json(m, Some(&base)).unwrap()).collect();
            let mut opts = GenerateOptions::default();
            opts.generation.max_new_tokens = Some(tshape[1]);
            opts.generation.eos_token_ids = Some(vec![]);
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
