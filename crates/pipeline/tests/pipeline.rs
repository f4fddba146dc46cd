//! Loading on the committed demo model: hub ids through a local Hugging Face cache, files checked
//! before work; the loaded processor's real video decoding and typed errors. (Generation,
//! streaming, stages and timings are the engine's: `crates/engine/tests/engine.rs`.)

use crate::common;

use std::path::{Path, PathBuf};

use common::*;
use vidlm_pipeline::*;

fn options() -> PipelineOptions {
    PipelineOptions {
        session: SessionOptions { intra_threads: Some(2), ..Default::default() },
        ..Default::default()
    }
}

fn copy_dir(src: &Path, dst: &Path, skip: &[&str]) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        let rel = e
            .path()
            .strip_prefix(demo_model())
            .map(|p| p.to_string_lossy().to_string())
            .unwrap_or(name.clone());
        if skip.contains(&rel.as_str()) {
            continue;
        }
        if e.path().is_dir() {
            copy_dir(&e.path(), &dst.join(&name), skip);
        } else {
            std::fs::copy(e.path(), dst.join(&name)).unwrap();
        }
    }
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vidlm-pipeline-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn video_question(video: &Path) -> Conversation {
    let messages = serde_json::json!([{"role": "user", "content": [
        {"type": "video", "video": video.to_str().unwrap()},
        {"type": "text", "text": "What is happening?"}]}]);
    Conversation::from_json(&messages, None).unwrap()
}

fn demo_video() -> PathBuf {
    fixture_root().join("assets/demo.mp4")
}

#[test]
fn hub_id_from_local_cache_and_missing_files() {
    // The Hugging Face cache layout: models--{owner}--{name}/refs/main + snapshots/{commit}/...
    let cache = tmp("hub");
    let repo = cache.join("models--vidlm--tiny-next-video");
    copy_dir(&demo_model(), &repo.join("snapshots/0123456789abcdef"), &[]);
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123456789abcdef").unwrap();
    let opts = PipelineOptions {
        hub: HubOptions { offline: true, cache_dir: Some(cache.clone()), revision: None },
        ..options()
    };
    let p = Pipeline::from_pretrained("vidlm/tiny-next-video", &opts).unwrap();
    assert!(p.dir().ends_with("snapshots/0123456789abcdef"));
    assert_eq!(p.family(), Family::LlavaNextVideo);
    drop(p);
    // A required file missing from the cache: the error names it (offline, nothing fetched).
    std::fs::remove_file(repo.join("snapshots/0123456789abcdef/onnx/video_encoder.onnx")).unwrap();
    let err = Pipeline::from_pretrained("vidlm/tiny-next-video", &opts).unwrap_err();
    assert!(
        matches!(&err, PipelineError::MissingFile { file, .. } if file.contains("onnx/video_encoder.onnx")),
        "{err}"
    );
    // An id that is not cached at all.
    let err = Pipeline::from_pretrained("vidlm/not-there", &opts).unwrap_err();
    assert!(
        matches!(&err, PipelineError::MissingFile { model, file } if model == "vidlm/not-there" && file.contains("config.json")),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&cache);
}

#[test]
fn local_directory_files_checked_before_loading() {
    let d = tmp("missing");
    copy_dir(&demo_model(), &d, &["onnx/decoder_model_merged.onnx"]);
    let err = Pipeline::from_pretrained(d.to_str().unwrap(), &options()).unwrap_err();
    assert!(
        matches!(&err, PipelineError::MissingFile { file, .. } if file == "onnx/decoder_model_merged.onnx"),
        "{err}"
    );
    let err = Pipeline::from_pretrained("/nonexistent/model-dir", &options()).unwrap_err();
    assert!(matches!(err, PipelineError::MissingFile { .. }));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn corrupt_video_and_bad_messages_are_typed_errors() {
    let p = Pipeline::from_pretrained(demo_model().to_str().unwrap(), &options()).unwrap();
    let process = |conv: &Conversation, opts: &ProcessOptions| {
        p.processor().process(std::slice::from_ref(conv), opts).map_err(PipelineError::from)
    };
    // A real video decodes, by frame count and by rate (demo.mp4 is long enough for 1 fps).
    let mut opts = ProcessOptions { sampling: Sampling::NumFrames(8), ..Default::default() };
    let by_count = process(&video_question(&demo_video()), &opts).unwrap();
    assert_eq!(by_count.video_token_counts.len(), 1);
    opts.sampling = Sampling::Fps(1.0);
    assert!(process(&video_question(&demo_video()), &opts).is_ok());
    let bad = tmp("corrupt.mp4");
    std::fs::write(&bad, b"\x00\x00\x00\x18ftypmp42 this is not really a video").unwrap();
    opts.sampling = Sampling::NumFrames(4);
    let err = process(&video_question(&bad), &opts).unwrap_err();
    assert!(matches!(&err, PipelineError::Processor(ProcessorError::MediaLoad { .. })), "{err}");
    assert_eq!(err.kind(), ErrorKind::UnsupportedMedia, "{err:?}");
    // The FFmpeg error stays the typed source of the media error.
    let mut chain = std::iter::successors(std::error::Error::source(&err), |e| e.source());
    assert!(chain.any(|e| e.is::<vidlm_video_io::VideoError>()), "{err:?}");
    let missing = process(&video_question(Path::new("/nonexistent/video.mp4")), &opts).unwrap_err();
    assert!(matches!(missing, PipelineError::Processor(_)));
    assert_eq!(missing.kind(), ErrorKind::NotFound, "{missing:?}");
    // Too many frames for the video: a bad request, not a server error.
    opts.sampling = Sampling::NumFrames(100_000);
    let too_many = process(&video_question(&demo_video()), &opts).unwrap_err();
    assert_eq!(too_many.kind(), ErrorKind::BadRequest, "{too_many:?}");
    let not_messages = serde_json::json!({"role": "user"});
    assert!(matches!(
        Conversation::from_json(&not_messages, None),
        Err(ProcessorError::Messages(_))
    ));
    let _ = std::fs::remove_file(&bad);
}
