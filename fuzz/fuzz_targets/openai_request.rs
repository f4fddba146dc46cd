//! The OpenAI chat-completions request parser (`vidlm-openai`): an arbitrary body, validated
//! against a context; when it is valid, its data-URL media are decoded (small limits; the
//! default policy allows nothing but `data:` URLs, so nothing is fetched) and made into a
//! conversation. Every error must map to an API error with a 4xx/5xx status.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vidlm_media_source::{MediaLimits, MediaPolicy};
use vidlm_openai::{ChatRequest, RequestContext};

fuzz_target!(|data: &[u8]| {
    vidlm_fuzz::init();
    let mut media = MediaPolicy::default();
    media.limits = MediaLimits {
        max_bytes: 256 << 10,
        max_items: 4,
        max_frames: 4,
        max_pixels: 1 << 18,
        ..MediaLimits::default()
    };
    let ctx = RequestContext { model_names: vec!["demo-model".into(), "m".into()], media };
    match ChatRequest::from_body(data, &ctx) {
        Ok(req) => match req.load_media(&ctx.media).and_then(|m| req.conversation(m)) {
            Ok(conv) => assert_eq!(conv.media.len(), req.media.len()),
            Err(e) => {
                let api = e.to_api_error();
                assert!((400..600).contains(&api.status), "{}", api.status);
            }
        },
        Err(e) => {
            let api = e.to_api_error();
            assert!((400..600).contains(&api.status), "{}", api.status);
        }
    }
});
