//! A failure inside vidlm is the server's, never the request's: a real ONNX Runtime failure in
//! the middle of a generation (no mocks: `python/failing_decoder.py` rewrites the demo model's
//! decoder so that a step fails inside ONNX Runtime once the attention mask is longer than N
//! positions) is
//! - `EngineError::DecodeStep` of kind `Internal` from the engine, the runtime's error kept as
//!   its source, after the tokens of the steps that ran;
//! - a line with status 500 and an error of type `server_error` from `vidlm batch`, whose
//!   summary counts it as a server error and whose exit status is a failure;
//! - a 500 with an OpenAI error object of type `server_error` from `vidlm serve` (the official
//!   `openai` client, `python/tests/test_internal_failure.py`), and for a streamed request that
//!   already received tokens, an error event at the end of the stream, not a silent stop.
//!
//! It also checks that `vidlm serve` and `vidlm batch` write the same `model` in their answers
//! for the same model directory (one served-model-name rule).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use vidlm_engine::{Engine, EngineConfig, EngineError, EngineRequest, Event};
use vidlm_pipeline::{PipelineOptions, SessionOptions};

/// Decode steps that run before the failing one.
const GOOD_STEPS: usize = 6;
const PROMPT: &str = "Tell me a long story about the sea.";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cache() -> PathBuf {
    std::env::var_os("VIDLM_CACHE").map(PathBuf::from).unwrap_or_else(|| root().join(".cache"))
}

fn python() -> PathBuf {
    let p = cache().join("venv/bin/python");
    assert!(p.is_file(), "{} is missing: run `cargo xtask setup`", p.display());
    p
}

fn engine(model: &Path) -> Engine {
    let opts = PipelineOptions {
        session: SessionOptions { intra_threads: Some(1), ..Default::default() },
        ..Default::default()
    };
    Engine::load(model.to_str().expect("utf-8 path"), &opts, EngineConfig::default())
        .expect("engine")
}

fn request(max_tokens: usize) -> EngineRequest {
    let mut r = EngineRequest {
        messages: vec![json!({"role": "user", "content": [{"type": "text", "text": PROMPT}]})],
        ..Default::default()
    };
    r.generation.max_new_tokens = Some(max_tokens);
    // No end-of-sequence token: the generation runs into the failing step.
    r.generation.eos_token_ids = Some(vec![]);
    r
}

/// The demo model with a decoder that fails once the attention mask is longer than `max_total`.
fn failing_model(dir: &Path, max_total: usize) -> PathBuf {
    let model = dir.join("failing-model");
    let out = Command::new(python())
        .arg(root().join("python/failing_decoder.py"))
        .arg(root().join("assets/demo-model"))
        .arg(&model)
        .args(["--max-total", &max_total.to_string()])
        .output()
        .expect("start python");
    assert!(out.status.success(), "failing_decoder.py: {}", String::from_utf8_lossy(&out.stderr));
    model
}

#[test]
fn a_failed_decoder_step_is_a_server_error_in_the_engine_batch_and_serve() {
    let dir = std::env::temp_dir().join(format!("vidlm-internal-failure-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    // The prompt's length on the intact model; the failing model runs GOOD_STEPS decode steps
    // after its prefill.
    let prompt_tokens = engine(&root().join("assets/demo-model"))
        .submit(request(1))
        .expect("submit")
        .wait()
        .expect("intact model")
        .prompt_tokens;
    let model = failing_model(&dir, prompt_tokens + GOOD_STEPS);

    // The engine: the tokens of the steps that ran, then DecodeStep, kind Internal, the ONNX
    // Runtime error as its source; the short request still succeeds (prefill and the steps
    // below the limit run).
    let e = engine(&model);
    let short = e.submit(request(2)).expect("submit").wait().expect("short request");
    assert_eq!(short.token_ids.len(), 2);
    let mut handle = e.submit(request(64)).expect("submit");
    let mut tokens = 0;
    let err = loop {
        match handle.blocking_next().expect("an event") {
            Event::Token(_) => tokens += 1,
            Event::Failed(err) => break err,
            Event::Done(c) => panic!("the failing step did not fail: {c:?}"),
            Event::Stage(_) => {}
        }
    };
    assert_eq!(tokens, GOOD_STEPS, "tokens of the steps that ran arrive before the failure");
    assert!(matches!(err, EngineError::DecodeStep { .. }), "{err:?}");
    assert_eq!(err.kind(), vidlm_openai::ErrorKind::Internal);
    let mut chain = vec![err.to_string()];
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        chain.push(s.to_string());
        source = s.source();
    }
    assert!(chain.iter().any(|s| s.contains("Reshape")), "the ORT error is the source: {chain:?}");
    let api = vidlm_openai::ApiError::from(&err);
    assert_eq!(
        (api.status, api.kind.as_str(), api.code.as_deref()),
        (500, "server_error", Some("internal_error")),
        "{api:?}"
    );
    // The engine goes on: the next request runs.
    e.submit(request(2)).expect("submit").wait().expect("after the failure");
    e.shutdown();

    // `vidlm batch`: the failing request's line is a server error, the other one succeeds;
    // the summary counts the server error and the run's exit status is a failure.
    let input = dir.join("requests.jsonl");
    let body = |max_tokens: usize| {
        json!({
            "model": model,
            "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": max_tokens,
        })
    };
    let manifest = [("short", body(2)), ("long", body(64))]
        .iter()
        .map(|(id, b)| {
            json!({"custom_id": id, "method": "POST", "url": "/v1/chat/completions", "body": b})
                .to_string()
                + "\n"
        })
        .collect::<String>();
    std::fs::write(&input, manifest).unwrap();
    let output = dir.join("out.jsonl");
    let summary = dir.join("summary.json");
    let out = Command::new(env!("CARGO_BIN_EXE_vidlm"))
        .args(["batch", "--model", model.to_str().unwrap(), "--input", input.to_str().unwrap()])
        .args(["--output", output.to_str().unwrap(), "--batch-size", "1", "--prefetch", "0"])
        .args(["--progress", "off", "--threads", "1", "--no-fsync"])
        .arg("--summary-json")
        .arg(&summary)
        .output()
        .expect("run vidlm batch");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a server error fails the run: {stderr}");
    assert!(stderr.contains("server errors"), "{stderr}");
    let lines: Vec<Value> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let line = |id: &str| lines.iter().find(|l| l["custom_id"] == id).expect(id).clone();
    let long = line("long");
    assert_eq!(long["response"]["status_code"], 500, "{long}");
    let error = &long["response"]["body"]["error"];
    assert_eq!(error["type"], "server_error", "{long}");
    assert_eq!(error["code"], "internal_error", "{long}");
    assert!(error["message"].as_str().unwrap().contains("decode step failed"), "{long}");
    let short = line("short");
    assert_eq!(short["response"]["status_code"], 200, "{short}");
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!((s["succeeded"].as_u64(), s["failed"].as_u64()), (Some(1), Some(1)), "{s}");
    assert_eq!(s["server_errors"], 1, "{s}");
    let batch_model = short["response"]["body"]["model"].as_str().unwrap().to_string();
    assert_eq!(batch_model, "failing-model", "the directory's name, as `vidlm serve` lists it");

    // `vidlm serve` with the official client: 500 server_error, the stream ends with an error
    // event, and the `model` of an answer is the batch's.
    let status = Command::new(python())
        .args(["-m", "unittest", "-v"])
        .arg(root().join("python/tests/test_internal_failure.py"))
        .env("VIDLM_BIN", env!("CARGO_BIN_EXE_vidlm"))
        .env("VIDLM_FAILING_MODEL", &model)
        .env("VIDLM_EXPECTED_MODEL", &batch_model)
        .env("VIDLM_PROMPT", PROMPT)
        .env("VIDLM_GOOD_STEPS", GOOD_STEPS.to_string())
        .env("PYTHONUNBUFFERED", "1")
        .current_dir(root())
        .status()
        .expect("start python");
    assert!(status.success(), "python/tests/test_internal_failure.py failed ({status})");
    let _ = std::fs::remove_dir_all(&dir);
}
