//! Request bodies → validated requests or OpenAI errors.

use std::path::PathBuf;

use serde_json::{json, Value};
use vidlm_openai::types::{ChatCompletionRequest, ContentPart, MessageContent};
use vidlm_openai::{
    ChatRequest, MediaKind, MediaLimits, MediaPolicy, RequestContext, RequestError,
};

fn assets() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets").canonicalize().expect("assets")
}

fn ctx() -> RequestContext {
    RequestContext {
        model_names: vec!["demo-model".into(), "assets/demo-model".into()],
        media: MediaPolicy::default().with_local_path(assets()).expect("assets"),
    }
}

fn video_url() -> String {
    format!("file://{}/demo.mp4", assets().display())
}

fn parse(body: Value) -> Result<ChatRequest, RequestError> {
    ChatRequest::from_body(body.to_string().as_bytes(), &ctx())
}

fn err(body: Value) -> (u16, String, Option<String>) {
    let e = parse(body).expect_err("refused").to_api_error();
    (e.status, e.code.unwrap_or_default(), e.param)
}

fn user(content: Value) -> Value {
    json!({"model": "demo-model", "messages": [{"role": "user", "content": content}]})
}

#[test]
fn multi_turn_with_interleaved_media() {
    let png = png_data_url();
    let body = json!({
        "model": "assets/demo-model",
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "Compare"},
                {"type": "image_url", "image_url": {"url": png, "detail": "high"}},
                {"type": "video_url", "video_url": {"url": video_url()}},
                {"type": "input_video", "input_video": {"url": "demo.mp4"}},
                {"type": "input_video", "video_url": {"url": video_url()}},
                {"type": "input_image", "image_url": png}]},
            {"role": "assistant", "content": "They differ."},
            {"role": "user", "content": "How?", "name": ""}],
        "max_tokens": 5, "max_completion_tokens": 7, "temperature": 0.5, "top_p": 0.9, "top_k": -1,
        "min_p": 0.1, "repetition_penalty": 1.2, "seed": 42, "stop": ["\n", ""],
        "stream": true, "stream_options": {"include_usage": true}, "logprobs": true, "top_logprobs": 3,
        "media_io_kwargs": {"video": {"num_frames": 4}}, "n": 1, "user": "u1", "frequency_penalty": 0,
        "some_future_field": {"ignored": true}
    });
    let r = parse(body).expect("valid");
    assert_eq!(r.model, "demo-model", "responses carry the listed id");
    let kinds: Vec<MediaKind> = r.media.iter().map(|m| m.kind).collect();
    assert_eq!(
        kinds,
        [MediaKind::Image, MediaKind::Video, MediaKind::Video, MediaKind::Video, MediaKind::Image]
    );
    assert_eq!(r.media[1].param, "messages[1].content[2].video_url.url");
    assert_eq!(r.media[2].param, "messages[1].content[3].input_video.url");
    assert_eq!(
        Value::Array(r.messages.clone()),
        json!([
            {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": [{"type": "text", "text": "Compare"}, {"type": "image"}, {"type": "video"},
                                         {"type": "video"}, {"type": "video"}, {"type": "image"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "They differ."}]},
            {"role": "user", "content": [{"type": "text", "text": "How?"}]}])
    );
    let g = &r.generation;
    assert_eq!(g.max_new_tokens, Some(7), "max_completion_tokens wins");
    assert_eq!(
        (g.do_sample, g.temperature, g.top_p, g.top_k, g.min_p, g.repetition_penalty),
        (Some(true), Some(0.5), Some(0.9), Some(0), Some(0.1), Some(1.2))
    );
    assert_eq!(g.seed, Some(42));
    assert_eq!(r.stop, ["\n"]);
    assert_eq!(g.stop_strings.as_deref(), Some(&["\n".to_string()][..]));
    assert!(r.stream && r.include_usage);
    assert_eq!(r.logprobs, Some(3));
    assert_eq!((r.sampling.num_frames, r.sampling.max_frames), (Some(4), Some(32)));
    // Everything decodes: 2 images, 3 videos of 4 frames.
    let media = r.load_media(&ctx().media).expect("decoded");
    let conv = r.conversation(media).expect("conversation");
    assert_eq!(conv.media_counts(), (2, 3));
}

#[test]
fn defaults_leave_the_model_config_in_charge() {
    let r = parse(user(json!("hi"))).expect("valid");
    assert_eq!(
        r.generation,
        vidlm_decoder::GenerationOptions { until_context_limit: true, ..Default::default() },
        "no max_tokens: until a stop or the context, never transformers' max_length 20"
    );
    assert!(!r.stream && !r.include_usage && r.logprobs.is_none() && r.media.is_empty());
    assert_eq!(r.sampling.max_frames, Some(32), "the server cap");
    assert_eq!(r.sampling.num_frames, None);
    let r = parse(json!({"model": "demo-model", "messages": [{"role": "user", "content": "hi"}], "temperature": 0})).expect("valid");
    assert_eq!(r.generation.do_sample, Some(false));
    let r = parse(json!({"model": "demo-model", "messages": [{"role": "user", "content": "x"}],
        "media_io_kwargs": {"video": {"fps": 2.0, "max_frames": 8}}}))
    .expect("valid");
    assert_eq!((r.sampling.fps, r.sampling.max_frames), (Some(2.0), Some(8)));
    let r = parse(json!({"model": "demo-model", "messages": [{"role": "user", "content": "x"}],
        "media_io_kwargs": {"video": {"fps": 2.0, "max_frames": 800}}}))
    .expect("valid");
    assert_eq!(r.sampling.max_frames, Some(32), "a request cannot raise the cap");
}

#[test]
fn bad_bodies_get_openai_errors() {
    let cases: Vec<(Value, u16, &str, Option<&str>)> = vec![
        (
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}),
            404,
            "model_not_found",
            Some("model"),
        ),
        (
            json!({"model": 5, "messages": [{"role": "user", "content": "x"}]}),
            400,
            "invalid_request",
            Some("model"),
        ),
        // Content parts are typed strictly: a bare URL string is refused, naming the field.
        (
            user(json!([{"type": "video_url", "video_url": "file:///x.mp4"}])),
            400,
            "invalid_parameter",
            Some("messages[0].content[0].video_url"),
        ),
        (
            user(
                json!([{"type": "text", "text": "a"}, {"type": "image_url", "image_url": "x.png"}]),
            ),
            400,
            "invalid_parameter",
            Some("messages[0].content[1].image_url"),
        ),
        (
            user(json!([{"type": "input_video", "input_video": "x.mp4"}])),
            400,
            "invalid_parameter",
            Some("messages[0].content[0].input_video"),
        ),
        (
            user(json!([{"type": "image_url", "image_url": {"url": "x.png", "detail": "low"}}])),
            400,
            "unsupported_parameter",
            Some("messages[0].content[0].image_url.detail"),
        ),
        (
            json!({"model": "demo-model", "messages": [{"role": "user", "content": "x", "name": "bob"}]}),
            400,
            "unsupported_parameter",
            Some("messages[0].name"),
        ),
        (
            json!({"model": "demo-model", "messages": [{"role": "assistant", "content": null, "tool_calls": [{"id": "1"}]}]}),
            400,
            "unsupported_parameter",
            Some("messages[0].tool_calls"),
        ),
        // logit_bias: keys are token ids, values numbers in [-100, 100].
        (
            json!({"model": "demo-model", "messages": [{"role": "user", "content": "x"}], "logit_bias": {"abc": 1}}),
            400,
            "invalid_parameter",
            Some("logit_bias"),
        ),
        (
            json!({"model": "demo-model", "messages": [{"role": "user", "content": "x"}], "logit_bias": {"5": "x"}}),
            400,
            "invalid_parameter",
            Some("logit_bias"),
        ),
        (
            json!({"model": "demo-model", "messages": [{"role": "user", "content": "x"}], "logit_bias": {"5": -100.5}}),
            400,
            "invalid_parameter",
            Some("logit_bias"),
        ),
        (
            json!({"model": "demo-model", "messages": [{"role": "user", "content": "x"}], "logit_bias": [1, 2]}),
            400,
            "invalid_parameter",
            Some("logit_bias"),
        ),
        // Fields vidlm does not implement: refused unless they are no-ops.
        (
            json!({"model": "demo-model", "messages": [{"role": "user", "content": "x"}], "min_tokens": 3}),
            400,
            "unsupported_parameter",
            Some("min_tokens"),
        ),
        (
            json!({"model": "demo-model", "messages": [{"role": "user", "content": "x"}], "tool_choice": "required"}),
            400,
            "unsupported_parameter",
            Some("tool_choice"),
        ),
        (
            json!({"model": "demo-model", "messages": [{"role": "user", "content": "x"}], "guided_json": {"type": "object"}}),
            400,
            "unsupported_parameter",
            Some("guided_json"),
        ),
        (
            json!({"model": "demo-model", "messages": [{"role": "user", "content": "x"}], "media_io_kwargs": {"image": {"size": 1}}}),
            400,
            "unsupported_parameter",
            Some("media_io_kwargs.image"),
        ),
        (
            json!({"model": "demo-model", "messages": [{"role": "user", "content": "x"}], "stream": true, "stream_options": {"continuous_usage_stats": true}}),
            400,
            "unsupported_parameter",
            Some("stream_options.continuous_usage_stats"),
        ),
        (
            json!({"model": "demo-model", "messages": [{"role": "user", "content": 5}]}),
            400,
            "invalid_request",
            Some("messages[0].content"),
        ),
        (
            user(json!([{"type": "audio_url", "audio_url": {"url": "x"}}])),
            400,
            "invalid_request",
            Some("messages[0].content[0].type"),
        ),
        (
            user(json!([{"type": "video_url", "video_url": {"nourl": 1}}])),
            400,
            "invalid_request",
            Some("messages[0].content[0]"),
        ),
        (
            json!({"model": "demo-model", "messages": []}),
            400,
            "invalid_parameter",
            Some("messages"),
        ),
        (
            json!({"model": "demo-model", "messages": [{"role": "tool", "content": "x"}]}),
            400,
            "unsupported_parameter",
            Some("messages[0].role"),
        ),
        (
            json!({"model": "demo-model", "messages": [{"role": "user"}]}),
            400,
            "invalid_parameter",
            Some("messages[0].content"),
        ),
        (
            json!({"model": "demo-model", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}),
            400,
            "invalid_parameter",
            Some("max_tokens"),
        ),
        (
            json!({"model": "demo-model", "messages": [{"role": "user", "content": "x"}], "temperature": -1}),
            400,
            "invalid_parameter",
            Some("temperature"),
        ),
        (
            json!({"model": "demo-model", "messages": [{"role": "user", "content": "x"}], "top_p": 0}),
            400,
            "invalid_parameter",
            Some("top_p"),
        ),
        (
            json!({"model": "demo-model", "messages": [{"role": "user", "content": "x"}], "top_k": -5}),
            400,
            "invalid_parameter",
            Some("top_k"),
        ),
        (
            json!({"model": "demo-model", "messages": [{"role": "user", "content": "x"}], "min_p": 2}),
            400,
            "invalid_parameter",
            Some("min_p"),
        ),
        (
            json!({"model": "demo-model", "messages": [{"role": "user", "content": "x"}], "repetition_penalty": 0}),
            400,
            "invalid_parameter",
            Some("repetition_penalty"),
        ),
        (
            json!({"model": "demo-model", "messages": [{"role": "user", "content": "x"}], "presence_penalty": 1}),
            400,
            "unsupported_parameter",
            Some("presence_penalty"),
        ),
        (
            json!({"model": "demo-model", "messages": [{"role": "user", "content": "x"}], "n": 2}),
            400,
            "unsupported_parameter",
            Some("n"),
        ),
        (
            json!({"model": "demo-model", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}),
            400,
            "unsupported_parameter",
            Some("tools"),
        ),
        (
            json!({"model": "demo-model", "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}}),
            400,
            "unsupported_parameter",
            Some("response_format"),
        ),
        (
            json!({"model": "demo-model", "messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": true}}),
            400,
            "invalid_parameter",
            Some("stream_options"),
        ),
        (
            json!({"model": "demo-model", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}),
            400,
            "invalid_parameter",
            Some("top_logprobs"),
        ),
        (
            json!({"model": "demo-model", "messages": [{"role": "user", "content": "x"}], "logprobs": true, "top_logprobs": 21}),
            400,
            "invalid_parameter",
            Some("top_logprobs"),
        ),
        (
            json!({"model": "demo-model", "messages": [{"role": "user", "content": "x"}], "media_io_kwargs": {"video": {"num_frames": 10000}}}),
            413,
            "media_limit_exceeded",
            Some("media_io_kwargs.video.num_frames"),
        ),
        (
            json!({"model": "demo-model", "messages": [{"role": "user", "content": "x"}], "media_io_kwargs": {"video": {"num_frames": 2, "fps": 1}}}),
            400,
            "invalid_parameter",
            Some("media_io_kwargs.video"),
        ),
        (
            json!({"model": "demo-model", "messages": [{"role": "user", "content": "x"}], "media_io_kwargs": {"video": {"fps": -1}}}),
            400,
            "invalid_parameter",
            Some("media_io_kwargs.video.fps"),
        ),
        (
            json!({"model": "demo-model", "messages": [{"role": "user", "content": "x"}], "media_io_kwargs": {"video": {"frames": 3}}}),
            400,
            "invalid_request",
            Some("media_io_kwargs.video.frames"),
        ),
        (
            user(json!([{"type": "video_url", "video_url": {"url": "file:///etc/passwd"}}])),
            400,
            "media_not_allowed",
            Some("messages[0].content[0].video_url.url"),
        ),
        (
            user(json!([{"type": "video_url", "video_url": {"url": "../Cargo.toml"}}])),
            400,
            "media_not_allowed",
            Some("messages[0].content[0].video_url.url"),
        ),
        (
            user(json!([{"type": "image_url", "image_url": {"url": "http://127.0.0.1/x.png"}}])),
            400,
            "media_not_allowed",
            Some("messages[0].content[0].image_url.url"),
        ),
        (
            user(json!([{"type": "image_url", "image_url": {"url": "gopher://x/y"}}])),
            400,
            "invalid_media",
            Some("messages[0].content[0].image_url.url"),
        ),
        (
            user(json!([{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}])),
            400,
            "invalid_media",
            Some("messages[0].content[0].image_url.url"),
        ),
        (
            user(json!([{"type": "video_url", "video_url": {"url": "nope.mp4"}}])),
            404,
            "invalid_media",
            Some("messages[0].content[0].video_url.url"),
        ),
        (
            json!({"model": "demo-model", "messages": [{"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}),
            400,
            "unsupported_parameter",
            Some("messages[0].content[0]"),
        ),
    ];
    let mut wrong = Vec::new();
    for (body, status, code, param) in cases {
        let got = err(body.clone());
        if got != (status, code.to_string(), param.map(str::to_string)) {
            wrong.push(format!("{body}: got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Not JSON at all.
    let e = ChatRequest::from_body(b"{not json", &ctx()).expect_err("bad").to_api_error();
    assert_eq!((e.status, e.kind.as_str()), (400, "invalid_request_error"));
    let wire: Value = serde_json::from_str(&e.to_json()).expect("json");
    for k in ["message", "type", "param", "code"] {
        assert!(wire["error"].as_object().is_some_and(|o| o.contains_key(k)), "{k} in {wire}");
    }
}

#[test]
fn model_may_be_omitted_and_extensions_are_honoured() {
    for body in [
        json!({"messages": [{"role": "user", "content": "x"}]}),
        json!({"model": null, "messages": [{"role": "user", "content": "x"}]}),
    ] {
        let r = parse(body).expect("one model is served");
        assert_eq!(r.model, "demo-model");
    }
    let r = parse(json!({"model": "demo-model", "messages": [{"role": "user", "content": "x"}],
        "logit_bias": {"5": -100, " 17": 2.5, "0": 100}, "ignore_eos": true, "skip_special_tokens": false,
        "user": "u1",
        // No-op values of unimplemented fields, labels and unknown keys pass.
        "min_tokens": 0, "tool_choice": "none", "parallel_tool_calls": true, "store": false,
        "modalities": ["text"], "metadata": {"a": "b"}, "echo": false, "best_of": 1,
        "some_future_field": 3}))
    .expect("valid");
    let mut bias = r.generation.logit_bias.clone().expect("logit_bias");
    bias.sort_by_key(|b| b.0);
    assert_eq!(bias, vec![(0, 100.0), (5, -100.0), (17, 2.5)]);
    assert_eq!(r.generation.eos_token_ids, Some(vec![]), "ignore_eos");
    assert_eq!(r.generation.skip_special_tokens, Some(false));
    assert_eq!(r.user.as_deref(), Some("u1"));
    let r = parse(json!({"model": "demo-model", "messages": [{"role": "user", "content": "x"}], "logit_bias": null}))
        .expect("valid");
    assert_eq!(r.generation.logit_bias, None);
}

#[test]
fn too_many_media_items_are_refused_before_any_is_checked() {
    // 17 items that would each be refused for another reason: the count comes first.
    let parts: Vec<Value> = (0..17)
        .map(|_| json!({"type": "video_url", "video_url": {"url": "http://127.0.0.1/x"}}))
        .collect();
    assert_eq!(
        err(user(Value::Array(parts))),
        (413, "media_limit_exceeded".into(), Some("messages".into()))
    );
    let small = RequestContext {
        media: ctx().media.with_limits(MediaLimits { max_items: 1, ..Default::default() }),
        ..ctx()
    };
    let two = user(
        json!([{"type": "video_url", "video_url": {"url": "demo.mp4"}}, {"type": "video_url", "video_url": {"url": "demo.mp4"}}]),
    );
    let e =
        ChatRequest::from_body(two.to_string().as_bytes(), &small).expect_err("two").to_api_error();
    assert_eq!(e.code.as_deref(), Some("media_limit_exceeded"));
}

#[test]
fn the_conversation_renders_like_the_hf_messages_of_vidlm_run() {
    let processor =
        vidlm_processor::Processor::from_dir(assets().join("demo-model")).expect("processor");
    let r = parse(json!({"model": "demo-model", "messages": [
        {"role": "user", "content": [{"type": "video_url", "video_url": {"url": video_url()}}, {"type": "text", "text": "What happens?"}]},
        {"role": "assistant", "content": "A ball."},
        {"role": "user", "content": [{"type": "text", "text": "And then?"}]}],
        "media_io_kwargs": {"video": {"num_frames": 4}}}))
    .expect("valid");
    let ours = r.conversation(r.load_media(&ctx().media).expect("media")).expect("conv");
    let hf = json!([
        {"role": "user", "content": [{"type": "video", "video": "demo.mp4"}, {"type": "text", "text": "What happens?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A ball."}]},
        {"role": "user", "content": [{"type": "text", "text": "And then?"}]}]);
    let theirs = vidlm_processor::Conversation::from_json(&hf, Some(&assets())).expect("hf");
    assert_eq!(
        processor.render(&ours, true).expect("render"),
        processor.render(&theirs, true).expect("render")
    );
}

#[test]
fn wire_types_round_trip() {
    let body = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "a"}, {"type": "input_video", "video_url": {"url": "v.mp4"}}]}]});
    let r: ChatCompletionRequest = serde_json::from_value(body).expect("parse");
    let Some(MessageContent::Parts(p)) = &r.messages[0].content else { panic!("parts") };
    assert!(matches!(&p[1], ContentPart::InputVideo { input_video } if input_video.url == "v.mp4"));
    let again: ChatCompletionRequest =
        serde_json::from_value(serde_json::to_value(&r).expect("ser")).expect("de");
    assert_eq!(again, r);
}

fn png_data_url() -> String {
    let mut buf = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut buf, 8, 6);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().expect("png");
        let px: Vec<u8> = (0..8 * 6 * 3).map(|i| (i * 7 % 256) as u8).collect();
        w.write_image_data(&px).expect("png");
    }
    format!("data:image/png;base64,{}", b64(&buf))
}

fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            s.push(if i <= c.len() { A[((n >> (18 - 6 * i)) & 63) as usize] as char } else { '=' });
        }
    }
    s
}
