//! The engine on the committed demo model: concurrent requests batched together get the answers
//! they get alone; cancellation frees the slot; a full queue refuses; the vision
//! cache skips decoding and the vision graphs on a repeated video.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;
use vidlm_engine::{
    Completion, Engine, EngineConfig, EngineError, EngineRequest, Event, MediaSpec, TimedOut,
};
use vidlm_media_source::{FrameSampling, MediaError, MediaKind, MediaPolicy, Source};
use vidlm_pipeline::{PipelineOptions, SessionOptions, Stage};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn engine(config: EngineConfig) -> Engine {
    let opts = PipelineOptions {
        session: SessionOptions { intra_threads: Some(1), ..Default::default() },
        ..Default::default()
    };
    Engine::load(root().join("assets/demo-model").to_str().expect("utf-8 path"), &opts, config)
        .expect("engine")
}

fn text_request(q: &str, n: usize) -> EngineRequest {
    let mut r = EngineRequest {
        messages: vec![json!({"role": "user", "content": [{"type": "text", "text": q}]})],
        ..Default::default()
    };
    r.generation.max_new_tokens = Some(n);
    r.generation.eos_token_ids = Some(vec![]);
    r
}

fn video_request(q: &str, frames: usize, n: usize) -> EngineRequest {
    let mut r = text_request(q, n);
    r.messages =
        vec![json!({"role": "user", "content": [{"type": "video"}, {"type": "text", "text": q}]})];
    r.media = vec![MediaSpec::Source {
        kind: MediaKind::Video,
        source: Source::Local(root().join("assets/demo.mp4")),
        param: "video".into(),
    }];
    r.sampling = FrameSampling { num_frames: Some(frames), ..Default::default() };
    r
}

fn requests() -> Vec<EngineRequest> {
    vec![
        text_request("Write a poem about the sea.", 12),
        video_request("What happens in this video?", 4, 9),
        text_request("Hi.", 15),
        video_request("Describe every frame.", 8, 7),
        text_request("Why is the sky blue? Explain it to a child, in detail.", 10),
        video_request("And then?", 2, 11),
    ]
}

#[test]
fn concurrent_requests_are_batched_and_answer_as_they_do_alone() {
    let e = engine(EngineConfig::default());
    let solo: Vec<Completion> = requests()
        .into_iter()
        .map(|r| e.submit(r).expect("submit").wait().expect("solo"))
        .collect();
    let steps_solo = e.metrics().decode_steps.load(Ordering::SeqCst);
    let handles: Vec<_> = requests().into_iter().map(|r| e.submit(r).expect("submit")).collect();
    let together: Vec<Completion> =
        handles.into_iter().map(|h| h.wait().expect("batched")).collect();
    let steps_together = e.metrics().decode_steps.load(Ordering::SeqCst) - steps_solo;
    for (i, (a, b)) in solo.iter().zip(&together).enumerate() {
        assert_eq!(a.token_ids, b.token_ids, "request {i}");
        assert_eq!(a.text, b.text, "request {i}");
        assert_eq!(a.prompt_tokens, b.prompt_tokens, "request {i}");
    }
    assert!(
        steps_together < steps_solo,
        "batched: {steps_together} decode steps, one at a time: {steps_solo}"
    );
    // Per-request timings.
    // (Its video is in the vision cache from the solo run: no encode, so no vision time.)
    let t = &together[1].timings;
    assert_eq!((t.cache_hits, t.vision), (1, Duration::ZERO));
    assert!(solo[1].timings.vision > Duration::ZERO);
    assert!(t.media > Duration::ZERO && t.prefill > Duration::ZERO && t.first_token <= t.total);
    assert_eq!(t.decode_steps.len(), 8, "9 tokens: 8 decoder passes after the prefill's");
    let m = e.metrics();
    assert_eq!(m.running.load(Ordering::SeqCst), 0);
    assert_eq!(m.waiting.load(Ordering::SeqCst), 0);
    assert_eq!(m.finished_length.load(Ordering::SeqCst), 12);
    assert_eq!(m.ttft.count(), 12);
    let text = m.render();
    assert!(text.contains("vidlm_request_success_total{finished_reason=\"length\"} 12"));
}

#[test]
fn a_dropped_handle_leaves_the_batch_within_a_step() {
    let e = engine(EngineConfig::default());
    let keep = e.submit(text_request("Keep talking.", 40)).expect("submit");
    let mut h = e.submit(text_request("Tell me everything.", 400)).expect("submit");
    let mut seen = 0;
    while seen < 3 {
        if let Some(Event::Token(_)) = h.blocking_next() {
            seen += 1;
        }
    }
    let m = e.metrics();
    // Without blocking: nothing is there yet at a zero timeout, or a token is.
    match h.next_timeout(Duration::ZERO) {
        Err(TimedOut) | Ok(Some(Event::Token(_))) => {}
        Ok(other) => panic!("{other:?}"),
    }
    assert!(matches!(h.next_timeout(Duration::from_secs(10)), Ok(Some(Event::Token(_)))));
    drop(h);
    let t0 = Instant::now();
    while m.finished_abort.load(Ordering::SeqCst) == 0 {
        assert!(t0.elapsed() < Duration::from_secs(10), "not cancelled");
        std::thread::sleep(Duration::from_millis(1));
    }
    // That a cancelled row leaves at the next step (and is not decoded again) is the scheduler's
    // unit test (`cancellation_at_each_status`); here: it leaves, and the other row goes on.
    // The other request is unaffected.
    let c = keep.wait().expect("kept");
    assert_eq!(c.token_ids.len(), 40);
    let alone = e.submit(text_request("Keep talking.", 40)).expect("submit").wait().expect("alone");
    assert_eq!(alone.token_ids, c.token_ids);
    assert_eq!(m.running.load(Ordering::SeqCst), 0);
}

#[test]
fn a_full_queue_refuses_before_touching_media() {
    let e = engine(EngineConfig { max_queue: 2, media_workers: 1, ..EngineConfig::default() });
    let a = e.submit(video_request("a", 8, 3)).expect("first");
    let b = e.submit(video_request("b", 8, 3)).expect("second");
    match e.submit(video_request("c", 8, 3)) {
        Err(EngineError::QueueFull { waiting: 2 }) => {}
        other => panic!("expected QueueFull, got {other:?}"),
    }
    assert_eq!(e.metrics().rejected.load(Ordering::SeqCst), 1);
    a.wait().expect("a");
    b.wait().expect("b");
    // Room again.
    e.submit(text_request("d", 2)).expect("after").wait().expect("d");
}

#[test]
fn the_vision_cache_skips_decoding_and_encoding_a_repeated_video() {
    let e = engine(EngineConfig::default());
    let first =
        e.submit(video_request("What happens?", 8, 6)).expect("submit").wait().expect("first");
    let second = e
        .submit(video_request("And what happens next?", 8, 6))
        .expect("submit")
        .wait()
        .expect("second");
    assert_eq!((first.timings.cache_misses, first.timings.cache_hits), (1, 0));
    assert_eq!((second.timings.cache_misses, second.timings.cache_hits), (0, 1));
    assert_eq!(second.timings.vision, Duration::ZERO.max(second.timings.vision));
    // Other sampling settings are another entry.
    let other =
        e.submit(video_request("What happens?", 4, 6)).expect("submit").wait().expect("other");
    assert_eq!(other.timings.cache_hits, 0);
    // Same answers as without a cache.
    let nocache = engine(EngineConfig { vision_cache_bytes: 0, ..EngineConfig::default() });
    let again = nocache
        .submit(video_request("And what happens next?", 8, 6))
        .expect("submit")
        .wait()
        .expect("no cache");
    assert_eq!(again.token_ids, second.token_ids);
    assert_eq!(again.timings.cache_hits, 0);
    assert_eq!(e.metrics().vision_cache_hits.load(Ordering::SeqCst), 1);
    let (entries, bytes) = e.vision_cache_usage();
    assert_eq!(entries, 2);
    assert!(bytes > 0);
}

#[test]
fn failures_are_typed_and_the_engine_keeps_serving() {
    let e = engine(EngineConfig { media: MediaPolicy::default(), ..EngineConfig::default() });
    let mut missing = video_request("x", 4, 2);
    missing.media = vec![MediaSpec::Source {
        kind: MediaKind::Video,
        source: Source::Local(root().join("nope.mp4")),
        param: "messages[0].content[0]".into(),
    }];
    match e.submit(missing).expect("submit").wait() {
        Err(EngineError::Media { param, source: MediaError::Io { .. } }) => {
            assert_eq!(param, "messages[0].content[0]")
        }
        other => panic!("{other:?}"),
    }
    let mut corrupt = video_request("x", 4, 2);
    corrupt.media = vec![MediaSpec::Source {
        kind: MediaKind::Video,
        source: Source::Data { mime: "video/mp4".into(), base64: "AAAAAAAAAAAA".into() },
        param: "v".into(),
    }];
    let err = e.submit(corrupt).expect("submit").wait().expect_err("corrupt");
    assert!(matches!(err, EngineError::Media { source: MediaError::Decode { .. }, .. }), "{err:?}");
    assert_eq!(err.kind(), vidlm_processor::ErrorKind::UnsupportedMedia, "{err:?}");
    assert_eq!(err.kind().http_status(), 415);
    // Placeholders and media disagree: the processor's error.
    let mut mismatch = text_request("x", 2);
    let v = video_request("x", 4, 2);
    mismatch.media = v.media;
    mismatch.sampling = v.sampling;
    let err = e.submit(mismatch).expect("submit").wait().expect_err("mismatch");
    assert!(matches!(err, EngineError::Processor(_)), "{err:?}");
    assert_eq!(err.kind(), vidlm_processor::ErrorKind::BadRequest, "{err:?}");
    // Invalid options are refused at submit.
    let mut bad = text_request("x", 2);
    bad.generation.top_p = Some(0.0);
    assert!(matches!(e.submit(bad), Err(EngineError::Decoder(_))));
    // Still serving.
    assert_eq!(
        e.submit(text_request("ok?", 3)).expect("submit").wait().expect("ok").token_ids.len(),
        3
    );
    assert_eq!(e.metrics().failed.load(Ordering::SeqCst), 3);
}

/// What the pipeline's `generate` / `stream` tests checked, on the engine: the slow stages are
/// announced in order, streamed pieces concatenate to the answer, per-stage timings, and frame
/// sampling by rate.
#[test]
fn stages_stream_and_timings_of_a_video_request() {
    let e = engine(EngineConfig::default());
    let mut h = e.submit(video_request("What is happening?", 8, 12)).expect("submit");
    let mut stages = Vec::new();
    let mut pieces = Vec::new();
    let done = loop {
        match h.blocking_next().expect("an event") {
            Event::Stage(s) => stages.push(s),
            Event::Token(t) => pieces.push(t.text),
            Event::Done(c) => break c,
            Event::Failed(e) => panic!("{e}"),
        }
    };
    assert_eq!(
        stages,
        vec![
            Stage::Preprocess { conversations: 1 },
            Stage::Vision { images: 0, videos: 1 },
            Stage::Prefill { prompt_tokens: done.prompt_tokens },
        ]
    );
    assert_eq!(pieces.len(), 12);
    assert_eq!(pieces.concat(), done.text);
    let t = &done.timings;
    assert!(t.media > Duration::ZERO && t.vision > Duration::ZERO && t.prefill > Duration::ZERO);
    assert_eq!(t.decode_steps.len(), 11);
    assert!(t.tokens_per_second() > 0.0);
    // Sampling by rate (demo.mp4 is long enough for 1 fps).
    let mut by_fps = video_request("What is happening?", 8, 2);
    by_fps.sampling = FrameSampling { fps: Some(1.0), ..Default::default() };
    let c = e.submit(by_fps).expect("submit").wait().expect("fps");
    assert_eq!(c.token_ids.len(), 2);
}
