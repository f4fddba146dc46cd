//! Typed errors for bad input: placeholder/media mismatch, prompt over context, missing files and
//! fields, malformed JSON, failing templates, unsupported models, bad media.

use crate::common;

use common::*;
use ndarray::{Array3, Array4};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use vidlm_model::{ModelError, Sampling, SamplingError};
use vidlm_processor::{
    Conversation, DecodedMedia, Part, ProcessOptions, Processor, ProcessorError,
};

/// A scratch copy of a model directory (tokenizer.json symlinked), with `edit` applied.
fn scratch(family: &str, name: &str, edit: impl FnOnce(&Path)) -> PathBuf {
    let src = model_dir("hub", family);
    let dir = std::env::temp_dir().join(format!("vidlm-processor-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    for entry in std::fs::read_dir(&src).unwrap_or_else(|e| panic!("{e}")).flatten() {
        let to = dir.join(entry.file_name());
        if entry.file_name() == "tokenizer.json" {
            #[cfg(unix)]
            std::os::unix::fs::symlink(entry.path(), &to).unwrap_or_else(|e| panic!("{e}"));
            #[cfg(not(unix))]
            std::fs::copy(entry.path(), &to).map(|_| ()).unwrap_or_else(|e| panic!("{e}"));
        } else {
            std::fs::copy(entry.path(), &to).unwrap_or_else(|e| panic!("{e}"));
        }
    }
    edit(&dir);
    dir
}

fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_default())
            .unwrap_or_default();
    f(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}"));
}

fn image(h: usize, w: usize) -> Part {
    Part::Decoded(DecodedMedia::Image(Arc::new(pattern(h, w, 0, 1))))
}

#[test]
fn placeholder_count_must_match_media() {
    let p =
        Processor::from_dir(model_dir("hub", "llava_next_video")).unwrap_or_else(|e| panic!("{e}"));
    // The user wrote an extra literal <image> in the text.
    let mut c = Conversation::new();
    c.push("user", vec![image(40, 40), Part::Text("<image> what is this?".into())]);
    match p.process(&[c], &ProcessOptions::default()) {
        Err(ProcessorError::PlaceholderMismatch {
            kind: "image",
            placeholders: 2,
            media: 1,
            ..
        }) => {}
        other => panic!("expected PlaceholderMismatch, got {other:?}"),
    }
    // An image part without a source renders a placeholder but brings no image.
    let c = Conversation::from_json(
        &json!([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}]),
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        p.process(&[c], &ProcessOptions::default()),
        Err(ProcessorError::PlaceholderMismatch { media: 0, .. })
    ));
    // process_prompts: two <video> placeholders, one video.
    let v = Array4::<u8>::zeros((2, 8, 8, 3));
    let err = p.process_prompts(
        &["USER: <video><video> hi".into()],
        &[vec![]],
        &[vec![v.view()]],
        &ProcessOptions::default(),
    );
    assert!(
        matches!(
            err,
            Err(ProcessorError::PlaceholderMismatch {
                kind: "video",
                placeholders: 2,
                media: 1,
                ..
            })
        ),
        "{err:?}"
    );
}

#[test]
fn prompt_longer_than_context_is_an_error() {
    // Video-LLaVA: 257 tokens per frame, context 4096 → 16 frames do not fit.
    let p = Processor::from_dir(model_dir("hub", "video_llava")).unwrap_or_else(|e| panic!("{e}"));
    let mut c = Conversation::new();
    c.push(
        "user",
        vec![
            Part::Decoded(DecodedMedia::Video(Arc::new(Array4::<u8>::zeros((16, 8, 8, 3))))),
            Part::Text("hi".into()),
        ],
    );
    match p.process(&[c], &ProcessOptions::default()) {
        Err(ProcessorError::PromptTooLong { tokens, max: 4096, .. }) => assert!(tokens > 4096),
        other => panic!("expected PromptTooLong, got {other:?}"),
    }
}

#[test]
fn missing_files_are_named() {
    for (file, family) in [
        ("tokenizer.json", "onevision"),
        ("config.json", "interleave"),
        // (A missing `video_preprocessor_config.json` is not an error: like transformers'
        // `AutoVideoProcessor`, the video processor then reads `preprocessor_config.json`.)
        ("preprocessor_config.json", "video_llava"),
        ("preprocessor_config.json", "llava_next_video"),
    ] {
        let dir = scratch(family, &format!("missing-{file}"), |d| {
            let _ = std::fs::remove_file(d.join(file));
        });
        match Processor::from_dir(&dir) {
            Err(ProcessorError::Model(ModelError::MissingFile { file: f, .. })) => {
                assert!(f.contains(file), "{f} should name {file}")
            }
            other => panic!("{file}: expected MissingFile, got {other:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn missing_required_field_is_named() {
    // LlavaNextVideoProcessor has no default patch_size.
    let dir = scratch("llava_next_video", "missing-patch-size", |d| {
        edit_json(&d.join("processor_config.json"), |v| {
            v.as_object_mut().map(|o| o.remove("patch_size"));
        })
    });
    match Processor::from_dir(&dir) {
        Err(ProcessorError::Model(ModelError::MissingField { file, field })) => {
            assert_eq!(file, "processor_config.json");
            assert_eq!(field, "patch_size");
        }
        other => panic!("expected MissingField, got {other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
    // OneVision needs num_image_tokens.
    let dir = scratch("onevision", "missing-num-image-tokens", |d| {
        edit_json(&d.join("processor_config.json"), |v| {
            v.as_object_mut().map(|o| o.remove("num_image_tokens"));
        })
    });
    assert!(
        matches!(Processor::from_dir(&dir), Err(ProcessorError::Model(ModelError::MissingField { ref field, .. })) if field == "num_image_tokens")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn optional_fields_take_class_defaults() {
    // Without image_mean/std, LlavaOnevisionImageProcessor's class defaults are CLIP's.
    let dir = scratch("onevision", "class-defaults", |d| {
        edit_json(&d.join("preprocessor_config.json"), |v| {
            if let Some(o) = v.as_object_mut() {
                o.remove("image_mean");
                o.remove("image_std");
                o.remove("image_grid_pinpoints");
            }
        })
    });
    let p = Processor::from_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
    let s = p.image_settings().unwrap_or_else(|| panic!("no settings"));
    assert_eq!(s.mean, vidlm_processor::family::CLIP_MEAN);
    assert_eq!(s.pinpoints.len(), 36);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn malformed_json_names_the_file() {
    let dir = scratch("interleave", "bad-json", |d| {
        std::fs::write(d.join("preprocessor_config.json"), "{\"size\": ")
            .unwrap_or_else(|e| panic!("{e}"));
    });
    assert!(
        matches!(Processor::from_dir(&dir), Err(ProcessorError::Model(ModelError::Json { ref file, .. })) if file == "preprocessor_config.json")
    );
    let _ = std::fs::remove_dir_all(&dir);
    let dir = scratch("interleave", "bad-field", |d| {
        edit_json(&d.join("preprocessor_config.json"), |v| v["image_mean"] = json!([0.5, 0.5]));
    });
    assert!(
        matches!(Processor::from_dir(&dir), Err(ProcessorError::Model(ModelError::InvalidField { ref field, .. })) if field == "image_mean")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn failing_template_shows_its_message() {
    let dir = scratch("onevision", "raise", |d| {
        let t = "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% endfor %}";
        std::fs::write(d.join("chat_template.json"), json!({"chat_template": t}).to_string())
            .unwrap_or_else(|e| panic!("{e}"));
    });
    let p = Processor::from_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
    let mut c = Conversation::new();
    c.push_text("system", "x");
    match p.process(&[c], &ProcessOptions::default()) {
        Err(ProcessorError::Template { message }) => {
            assert!(message.contains("System role not supported"), "{message}")
        }
        other => panic!("expected Template error, got {other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
    // A syntax error is reported when the directory is read.
    let dir = scratch("onevision", "syntax", |d| {
        std::fs::write(
            d.join("chat_template.json"),
            json!({"chat_template": "{% for m in messages %}"}).to_string(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    });
    assert!(matches!(Processor::from_dir(&dir), Err(ProcessorError::Template { .. })));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unsupported_model_type() {
    let dir = scratch("interleave", "bert", |d| {
        edit_json(&d.join("config.json"), |v| {
            v["model_type"] = json!("bert");
            v["architectures"] = json!(["BertModel"]);
        })
    });
    assert!(matches!(
        Processor::from_dir(&dir),
        Err(ProcessorError::Model(ModelError::UnsupportedModel { .. }))
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_media_is_rejected() {
    let p = Processor::from_dir(model_dir("hub", "interleave")).unwrap_or_else(|e| panic!("{e}"));
    for bad in [
        Array3::<u8>::zeros((0, 10, 3)),
        Array3::<u8>::zeros((10, 10, 4)),
        Array3::<u8>::zeros((10, 0, 3)),
    ] {
        let mut c = Conversation::new();
        c.push(
            "user",
            vec![Part::Decoded(DecodedMedia::Image(Arc::new(bad))), Part::Text("x".into())],
        );
        assert!(matches!(
            p.process(&[c], &ProcessOptions::default()),
            Err(ProcessorError::InvalidMedia { .. })
        ));
    }
    // Paths need a loader; URLs are not fetched.
    let c = Conversation::from_json(
        &json!([{"role": "user", "content": [{"type": "video", "video": "/nonexistent.mp4"}]}]),
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        p.process(&[c], &ProcessOptions::default()),
        Err(ProcessorError::MediaLoad { .. })
    ));
    let c = Conversation::from_json(&json!([{"role": "user", "content": [{"type": "image", "url": "https://example.com/a.png"}]}]), None)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        p.process(&[c], &ProcessOptions::default()),
        Err(ProcessorError::Unsupported(_))
    ));
    // More frames requested than the video has.
    let mut c = Conversation::new();
    c.push(
        "user",
        vec![Part::Decoded(DecodedMedia::Video(Arc::new(Array4::<u8>::zeros((3, 8, 8, 3)))))],
    );
    let opts = ProcessOptions { sampling: Sampling::NumFrames(8), ..ProcessOptions::default() };
    let err = p.process(&[c], &opts);
    assert!(
        matches!(
            err,
            Err(ProcessorError::Sampling {
                source: SamplingError::TooManyFrames { requested: 8, available: 3 },
                ..
            })
        ),
        "{err:?}"
    );
}

#[test]
fn decoded_video_sampling_selects_frames() {
    // 20 frames, num_frames=8 → indices [0,2,5,7,10,12,15,17]; OneVision tokens 196*8+1.
    let p = Processor::from_dir(model_dir("hub", "onevision")).unwrap_or_else(|e| panic!("{e}"));
    let mut c = Conversation::new();
    c.push(
        "user",
        vec![
            Part::Decoded(DecodedMedia::Video(Arc::new(video(20, 16, 16, 3)))),
            Part::Text("x".into()),
        ],
    );
    let opts = ProcessOptions { sampling: Sampling::NumFrames(8), ..ProcessOptions::default() };
    let out = p.process(&[c], &opts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.video_token_counts, vec![1569]);
    let v = out.pixel_values_videos.unwrap_or_else(|| panic!("no video"));
    assert_eq!(v.shape(), &[1, 8, 3, 384, 384]);
}

#[test]
fn errors_sort_into_the_kinds_a_server_answers_with() {
    use vidlm_model::ErrorKind;
    let p = Processor::from_dir(model_dir("hub", "video_llava")).unwrap_or_else(|e| panic!("{e}"));
    let kind = |c: Conversation, opts: &ProcessOptions| {
        p.process(&[c], opts).map(|_| ()).unwrap_err().kind()
    };
    // Placeholders that do not match the media: the client's mistake.
    let mut c = Conversation::new();
    c.push("user", vec![image(40, 40), Part::Text("<image> two?".into())]);
    assert_eq!(kind(c, &ProcessOptions::default()), ErrorKind::BadRequest);
    // Over the context: a bad request (400 `context_length_exceeded`, as OpenAI and vLLM answer).
    let mut c = Conversation::new();
    c.push(
        "user",
        vec![
            Part::Decoded(DecodedMedia::Video(Arc::new(Array4::<u8>::zeros((16, 8, 8, 3))))),
            Part::Text("hi".into()),
        ],
    );
    assert_eq!(kind(c, &ProcessOptions::default()), ErrorKind::BadRequest);
    // A media file that does not exist (video-io's NotFound, kept as the typed source).
    let c = Conversation::from_json(
        &json!([{"role": "user", "content": [{"type": "video", "video": "/nonexistent.mp4"}]}]),
        None,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let err = p.process(&[c], &ProcessOptions::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err:?}");
    assert!(
        std::error::Error::source(&err).is_some_and(|s| s.is::<vidlm_video_io::VideoError>()),
        "{err:?}"
    );
    // Media by URL: valid, not supported.
    let c = Conversation::from_json(&json!([{"role": "user", "content": [{"type": "image", "url": "https://example.com/a.png"}]}]), None)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(kind(c, &ProcessOptions::default()), ErrorKind::Unsupported);
    // A sampling request the video cannot satisfy.
    let mut c = Conversation::new();
    c.push(
        "user",
        vec![Part::Decoded(DecodedMedia::Video(Arc::new(Array4::<u8>::zeros((3, 8, 8, 3)))))],
    );
    assert_eq!(
        kind(c, &ProcessOptions { sampling: Sampling::NumFrames(8), ..ProcessOptions::default() }),
        ErrorKind::BadRequest
    );
    // A broken model directory: not the client's fault.
    let dir = scratch("interleave", "kind-bad-json", |d| {
        std::fs::write(d.join("preprocessor_config.json"), "{").unwrap_or_else(|e| panic!("{e}"));
    });
    assert_eq!(Processor::from_dir(&dir).unwrap_err().kind(), ErrorKind::InvalidModel);
    let _ = std::fs::remove_dir_all(&dir);
}
