//! The committed demo model (`assets/demo-model`, a tiny LLaVA-NeXT-Video export) read with
//! `ModelFiles`: every config, the manifest, the graph precisions.

use std::path::PathBuf;
use vidlm_model::{Family, Graph, GraphUse, ImageLayout, ModelFiles, Precision};

fn demo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets/demo-model")
}

#[test]
fn reads_every_file_of_the_demo_model() {
    let m = ModelFiles::read(demo()).unwrap();
    let spec = m.spec().unwrap();
    assert_eq!(spec.family, Family::from_model_type("llava_next_video").unwrap());
    assert_eq!(spec.image_layout, ImageLayout::AnyresNext);
    assert_eq!(spec.video_encoder, GraphUse::Required);
    // config.json: placeholders, the text and vision towers.
    let ids = m.config.placeholder_ids();
    assert_eq!((ids.image_token_id, ids.video_token_id), (Some(32001), Some(32000)));
    assert_eq!(m.config.text().hidden_size, Some(16));
    assert_eq!(m.config.text().max_position_embeddings, Some(4096));
    assert_eq!(m.config.vision_config.as_ref().and_then(|v| v.image_size), Some(32));
    assert_eq!(m.config.image_grid_pinpoints.as_ref().map(Vec::len), Some(5));
    // The processor files (hub layout), tokenizer, template, generation config.
    assert_eq!(m.image_processor.as_ref().map(|p| p.1.as_str()), Some("preprocessor_config.json"));
    assert_eq!(
        m.video_processor.as_ref().map(|p| p.1.as_str()),
        Some("video_preprocessor_config.json")
    );
    assert!(m.tokenizer_json.is_some());
    assert_eq!(m.chat_template.as_ref().map(|t| t.1.as_str()), Some("chat_template.json"));
    assert_eq!(m.generation.eos_token_id.as_ref().map(|e| e.to_vec()), Some(vec![2]));
    // The manifest and the files agree on the precisions (the demo ships fp32 only).
    let manifest = m.manifest.as_ref().expect("demo model has a manifest");
    for g in
        [Graph::VisionEncoder, Graph::VideoEncoder, Graph::EmbedTokens, Graph::DecoderModelMerged]
    {
        assert_eq!(m.precisions(g), vec![Precision::Fp32], "{g}");
        assert_eq!(manifest.precisions(g), vec![Precision::Fp32], "{g}");
    }
    assert_eq!(manifest.image_newline.as_deref(), Some("image_newline.safetensors"));
}
