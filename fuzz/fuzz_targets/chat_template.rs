//! Chat-template rendering: an arbitrary template and arbitrary messages (split at the first
//! NUL byte). Rendering must end (fuel and recursion limits) with text or a typed error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vidlm_processor::template::ChatTemplate;

fuzz_target!(|data: &[u8]| {
    let (tpl, rest) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(src) = std::str::from_utf8(tpl) else { return };
    let Ok(t) = ChatTemplate::new(src) else { return };
    let messages: serde_json::Value = serde_json::from_slice(rest).unwrap_or_else(|_| {
        serde_json::json!([{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image"}]}])
    });
    let _ = t.render(&messages, true, &serde_json::json!({}));
});
