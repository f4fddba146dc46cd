//! The arithmetic of time to first token, counted from a checkpoint's `config.json`.
//!
//! Vision and prefill are almost entirely matrix products, so `flops / (the machine's best fp32
//! matrix-product rate)` is a floor on their time that no fp32 runtime can go under: the compute
//! counterpart of the decode ceiling that `bandwidth.rs` gives. The count is the useful work only:
//! the vision layers up to `vision_feature_layer`, the projector on the selected tokens, the causal
//! half of the prompt's attention scores and the lm_head on the last position. Norms, softmax,
//! activations and the pooling are left out (a few per cent); so the floor is, if anything, low.

use serde_json::Value;

/// Floating-point operations of one request's time to first token (a multiply-add counts 2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TtftFlops {
    /// Vision tower (patch embedding, the layers up to the feature layer) and projector, all frames.
    pub vision: f64,
    /// The language model over the prompt, and the lm_head on its last position.
    pub prefill: f64,
}

impl TtftFlops {
    pub fn total(&self) -> f64 {
        self.vision + self.prefill
    }
}

/// Counts the work of `frames` video frames and a prompt of `prompt_tokens` tokens for the model
/// described by `config` (a LLaVA-family `config.json`). `None` where a needed field is missing.
pub fn ttft_flops(config: &Value, frames: u64, prompt_tokens: u64) -> Option<TtftFlops> {
    let v = config.get("vision_config")?;
    let t = config.get("text_config")?;
    let u = |o: &Value, k: &str| o.get(k).and_then(Value::as_u64);
    let f = |x: u64| x as f64;

    // Vision: every frame is one image at the tower's size.
    let hv = f(u(v, "hidden_size")?);
    let iv = f(u(v, "intermediate_size")?);
    let layers = u(v, "num_hidden_layers")? as i64;
    let (image, patch) = (u(v, "image_size")?, u(v, "patch_size")?);
    let clip = v.get("model_type").and_then(Value::as_str).is_some_and(|m| m.contains("clip"));
    let patches = (image / patch).pow(2);
    let tokens = f(patches + u64::from(clip)); // CLIP prepends a class token
                                               // hidden_states[k] is the output of layer k (k = 0: the embeddings); negative k counts back.
    let fl = config.get("vision_feature_layer").and_then(Value::as_i64).unwrap_or(-1);
    let used = if fl < 0 { layers + 1 + fl } else { fl }.clamp(0, layers) as f64;
    let per_layer =
        2.0 * tokens * (4.0 * hv * hv + 2.0 * hv * iv) + 2.0 * 2.0 * tokens * tokens * hv;
    let embed = 2.0 * f(patches) * f(3 * patch * patch) * hv;
    // "default" drops the class token before the projector; "full" keeps every token.
    let full = config.get("vision_feature_select_strategy").and_then(Value::as_str) == Some("full");
    let selected = if clip && !full { f(patches) } else { tokens };
    let ht = f(u(t, "hidden_size")?);
    let projector = 2.0 * selected * (hv * ht + ht * ht);
    let vision = f(frames) * (used * per_layer + embed + projector);

    // Prefill: the decoder layers over the prompt, lm_head on the last position.
    let it = f(u(t, "intermediate_size")?);
    let heads = u(t, "num_attention_heads")?;
    let kv = u(t, "num_key_value_heads").unwrap_or(heads);
    let hd =
        t.get("head_dim").and_then(Value::as_u64).unwrap_or(u(t, "hidden_size")? / heads.max(1));
    let (q, k) = (f(heads * hd), f(kv * hd));
    let p = f(prompt_tokens);
    let linear = 2.0 * p * (ht * q + 2.0 * ht * k + q * ht + 3.0 * ht * it);
    let attention = 2.0 * 2.0 * f(hd) * f(heads) * p * (p + 1.0) / 2.0;
    let lm_head = 2.0 * ht * f(u(t, "vocab_size")?);
    let prefill = f(u(t, "num_hidden_layers")?) * (linear + attention) + lm_head;
    Some(TtftFlops { vision, prefill })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// LLaVA-OneVision-0.5B's shapes: SigLIP-so400m (26 layers of 27, 729 patches) and Qwen2-0.5B.
    #[test]
    fn onevision_half_billion_is_counted_from_its_shapes() {
        let c = json!({
            "vision_feature_layer": -1, "vision_feature_select_strategy": "full",
            "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 1152, "intermediate_size": 4304,
                              "num_hidden_layers": 26, "image_size": 384, "patch_size": 14},
            "text_config": {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
                            "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936}
        });
        let x = ttft_flops(&c, 8, 1584).unwrap();
        // 8 frames x 26 layers x 729 tokens x 2 x 15.2 M weights = 4.6 TFLOP, + 0.5 TFLOP attention.
        assert!((x.vision / 1e12 - 5.17).abs() < 0.05, "{}", x.vision / 1e12);
        // 24 layers x 1584 tokens x 2 x 14.9 M weights = 1.13 TFLOP, + causal attention, + lm_head.
        assert!((x.prefill / 1e12 - 1.24).abs() < 0.02, "{}", x.prefill / 1e12);
    }

    /// CLIP with `vision_feature_layer: -2` runs one layer fewer and projects the patches only.
    #[test]
    fn clip_counts_the_class_token_and_stops_at_the_feature_layer() {
        let mut c = json!({
            "vision_feature_layer": -1, "vision_feature_select_strategy": "default",
            "vision_config": {"model_type": "clip_vision_model", "hidden_size": 2, "intermediate_size": 4,
                              "num_hidden_layers": 3, "image_size": 4, "patch_size": 2},
            "text_config": {"hidden_size": 2, "intermediate_size": 2, "num_hidden_layers": 1,
                            "num_attention_heads": 1, "vocab_size": 10}
        });
        let a = ttft_flops(&c, 1, 1).unwrap().vision;
        c["vision_feature_layer"] = json!(-2);
        let b = ttft_flops(&c, 1, 1).unwrap().vision;
        // one layer: 5 tokens (4 patches + class) x 2 x (16 + 16) + 4 x 25 x 2 = 320 + 200
        assert_eq!(a - b, 520.0);
        assert!(ttft_flops(&json!({}), 1, 1).is_none());
    }
}
