//! The model-directory config parsers of `vidlm-model`: `config.json`, the (video) processor
//! configs, the tokenizer and generation configs, the chat-template file and
//! `vidlm_manifest.json`, each from arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vidlm_model::config::{
    self, GenerationConfig, ModelConfig, ProcessorConfig, TokenizerConfig, VisionProcessorConfig,
};
use vidlm_model::Manifest;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(c) = config::parse_json::<ModelConfig>(text, "config.json") {
        let _ = c.text().kv_heads();
        let _ = c.text().head_dim();
        let _ = c.placeholder_ids();
    }
    let _ = config::parse_json::<VisionProcessorConfig>(text, "preprocessor_config.json");
    let _ = config::parse_json::<ProcessorConfig>(text, "processor_config.json");
    let _ = config::parse_json::<TokenizerConfig>(text, "tokenizer_config.json");
    let _ = config::parse_json::<GenerationConfig>(text, "generation_config.json");
    let _ = Manifest::parse(text);
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
        let _ = config::template_from_value(&v, "chat_template.json");
    }
});
