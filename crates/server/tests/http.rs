//! The HTTP layer over a real engine on the committed demo model, on loopback: routes, auth,
//! error objects, SSE framing, body and queue limits, and cancellation on disconnect.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vidlm_engine::{Engine, EngineConfig};
use vidlm_media_source::MediaPolicy;
use vidlm_pipeline::{PipelineOptions, SessionOptions};
use vidlm_server::{Server, ServerConfig};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("root")
}

fn model() -> String {
    root().join("assets/demo-model").display().to_string()
}

struct Running {
    base: String,
    _rt: tokio::runtime::Runtime,
    server: Server,
}

fn config(f: impl FnOnce(&mut ServerConfig)) -> ServerConfig {
    let mut c = ServerConfig {
        model: model(),
        pipeline: PipelineOptions {
            session: SessionOptions { intra_threads: Some(1), ..Default::default() },
            ..Default::default()
        },
        engine: EngineConfig {
            media: MediaPolicy::default().with_local_path(root().join("assets")).expect("assets"),
            ..EngineConfig::default()
        },
        ..Default::default()
    };
    f(&mut c);
    c
}

fn start(c: ServerConfig, load: bool) -> Running {
    let server = Server::new(&c);
    if load {
        server.set_engine(Engine::load(&c.model, &c.pipeline, c.engine.clone()).expect("engine"));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let router = server.router();
    rt.spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Running { base, _rt: rt, server }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(120)).build()
}

/// (status, headers we care about, body) of any response, errors included.
fn call(req: ureq::Request, body: Option<&str>) -> (u16, Option<String>, Option<String>, String) {
    let r = match body {
        Some(b) => req.set("content-type", "application/json").send_string(b),
        None => req.call(),
    };
    let resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("transport error: {e}"),
    };
    let status = resp.status();
    let rid = resp.header("x-request-id").map(str::to_string);
    let retry = resp.header("retry-after").map(str::to_string);
    (status, rid, retry, resp.into_string().unwrap_or_default())
}

fn chat(base: &str, body: &Value) -> (u16, Value) {
    let (s, _, _, text) =
        call(agent().post(&format!("{base}/v1/chat/completions")), Some(&body.to_string()));
    (s, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn video_body(extra: Value) -> Value {
    let mut b = json!({
        "model": "demo-model",
        "messages": [{"role": "user", "content": [
            {"type": "video_url", "video_url": {"url": format!("file://{}/assets/demo.mp4", root().display())}},
            {"type": "text", "text": "What happens in this video?"}]}],
        "max_tokens": 8, "temperature": 0,
        "media_io_kwargs": {"video": {"num_frames": 4}}
    });
    if let (Some(o), Some(e)) = (b.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    b
}

fn assert_error(v: &Value, code: &str) {
    let e = &v["error"];
    for k in ["message", "type", "param", "code"] {
        assert!(e.as_object().is_some_and(|o| o.contains_key(k)), "no {k} in {v}");
    }
    assert_eq!(e["code"], code, "{v}");
}

/// SSE `data:` payloads of a body.
fn sse_data(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
        .map(|s| s.trim().to_string())
        .collect()
}

#[test]
fn routes_answers_and_streams() {
    let s = start(config(|_| {}), true);
    let b = &s.base;
    // Health, metrics, models, unknown routes.
    let (st, rid, _, body) = call(agent().get(&format!("{b}/health")), None);
    assert_eq!(st, 200, "{body}");
    assert!(rid.is_some_and(|r| r.len() == 32));
    let (st, _, _, models) = call(agent().get(&format!("{b}/v1/models")), None);
    assert_eq!(st, 200);
    let models: Value = serde_json::from_str(&models).expect("json");
    assert_eq!(models["data"][0]["id"], "demo-model");
    assert_eq!(models["object"], "list");
    let (st, _, _, nf) = call(agent().get(&format!("{b}/v2/nothing")), None);
    assert_eq!(st, 404);
    assert_error(&serde_json::from_str(&nf).expect("json"), "not_found");
    // One model's card; any other id is OpenAI's 404 `model_not_found`.
    let (st, _, _, card) = call(agent().get(&format!("{b}/v1/models/demo-model")), None);
    assert_eq!(st, 200, "{card}");
    let card: Value = serde_json::from_str(&card).expect("json");
    assert_eq!((card["id"].as_str(), card["object"].as_str()), (Some("demo-model"), Some("model")));
    for other in ["gpt-4o", "org/demo-model"] {
        let (st, _, _, e) = call(agent().get(&format!("{b}/v1/models/{other}")), None);
        assert_eq!(st, 404, "{other}");
        let e: Value = serde_json::from_str(&e).expect("json");
        assert_error(&e, "model_not_found");
        assert!(e["error"]["message"].as_str().is_some_and(|m| m.contains("does not exist")));
    }
    // `model` omitted or null: the one served model answers.
    for body in [
        json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}),
        json!({"model": null, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}),
    ] {
        let (st, c) = chat(b, &body);
        assert_eq!(st, 200, "{c}");
        assert_eq!(c["model"], "demo-model");
    }
    // A completion, under the listed id and under --model as given.
    let (st, c) = chat(b, &video_body(json!({})));
    assert_eq!(st, 200, "{c}");
    assert_eq!(c["object"], "chat.completion");
    assert_eq!(c["model"], "demo-model");
    assert_eq!(c["choices"][0]["message"]["role"], "assistant");
    assert_eq!(c["choices"][0]["finish_reason"], "length");
    let usage = &c["usage"];
    assert_eq!(usage["completion_tokens"], 8);
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(usage["prompt_tokens"].as_u64().unwrap_or(0) + 8)
    );
    let text = c["choices"][0]["message"]["content"].as_str().expect("content").to_string();
    let (st, c2) = chat(b, &video_body(json!({"model": model()})));
    assert_eq!(st, 200);
    assert_eq!(c2["choices"][0]["message"]["content"], text.as_str());
    // The client's request id is echoed.
    let (_, rid, _, _) = call(
        agent().post(&format!("{b}/v1/chat/completions")).set("x-request-id", "my-id-1"),
        Some(&video_body(json!({})).to_string()),
    );
    assert_eq!(rid.as_deref(), Some("my-id-1"));
    // Streaming: role chunk, content, one finish_reason on the last choice chunk, usage, [DONE].
    let (st, _, _, body) = call(
        agent().post(&format!("{b}/v1/chat/completions")),
        Some(
            &video_body(json!({"stream": true, "stream_options": {"include_usage": true}}))
                .to_string(),
        ),
    );
    assert_eq!(st, 200);
    let data = sse_data(&body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).expect("chunk json"))
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let with_choices: Vec<&Value> =
        chunks.iter().filter(|c| c["choices"].as_array().is_some_and(|a| !a.is_empty())).collect();
    let finishes: Vec<&Value> = with_choices
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finishes, [&json!("length")]);
    assert!(
        !with_choices.last().expect("chunks")["choices"][0]["finish_reason"].is_null(),
        "finish_reason is on the last choice chunk"
    );
    let streamed: String =
        with_choices.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(streamed, text);
    let last = chunks.last().expect("usage chunk");
    assert_eq!(last["choices"].as_array().map(Vec::len), Some(0));
    assert_eq!(last["usage"], *usage);
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk" && c["id"] == chunks[0]["id"]));
    // Stop sequences are cut, streamed or not, and end the answer.
    let stop_at: String = text.chars().skip(3).take(2).collect();
    if !stop_at.trim().is_empty() {
        let (_, c) = chat(b, &video_body(json!({"stop": [stop_at.clone()]})));
        let cut = c["choices"][0]["message"]["content"].as_str().expect("content");
        assert_eq!(cut, &text[..text.find(&stop_at).expect("in text")]);
        assert_eq!(c["choices"][0]["finish_reason"], "stop");
        let (_, _, _, body) = call(
            agent().post(&format!("{b}/v1/chat/completions")),
            Some(&video_body(json!({"stop": [stop_at], "stream": true})).to_string()),
        );
        let d = sse_data(&body);
        let s: String = d[..d.len() - 1]
            .iter()
            .filter_map(|x| serde_json::from_str::<Value>(x).ok())
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_string))
            .collect();
        assert_eq!(s, cut);
    }
    // Log-probabilities.
    let (_, c) = chat(b, &video_body(json!({"logprobs": true, "top_logprobs": 2})));
    let lp = c["choices"][0]["logprobs"]["content"].as_array().expect("logprobs").clone();
    assert_eq!(lp.len(), 8);
    assert!(lp.iter().all(|t| t["logprob"].as_f64().is_some_and(|l| l <= 0.0)
        && t["top_logprobs"].as_array().map(Vec::len) == Some(2)));
    // Metrics.
    let (st, _, _, m) = call(agent().get(&format!("{b}/metrics")), None);
    assert_eq!(st, 200);
    for name in [
        "vidlm_num_requests_running",
        "vidlm_num_requests_waiting",
        "vidlm_time_to_first_token_seconds_bucket",
        "vidlm_inter_token_latency_seconds_bucket",
        "vidlm_e2e_request_latency_seconds_bucket",
        "vidlm_request_queue_time_seconds_bucket",
        "vidlm_prompt_tokens_total",
        "vidlm_generation_tokens_total",
        "vidlm_vision_cache_hits_total",
        "vidlm_vision_cache_misses_total",
    ] {
        assert!(m.contains(name), "{name} missing from /metrics");
    }
    assert!(
        m.lines().any(|l| l.starts_with("vidlm_vision_cache_hits_total ") && !l.ends_with(" 0")),
        "the repeated video hit the cache"
    );
    assert!(s.server.is_ready());
}

#[test]
fn auth_limits_and_errors() {
    let s = start(
        config(|c| {
            c.api_key = Some("sekrit".into());
            c.max_body_bytes = 1 << 20;
        }),
        true,
    );
    let b = &s.base;
    let post = |auth: Option<&str>, body: &str| {
        let mut r = agent().post(&format!("{b}/v1/chat/completions"));
        if let Some(a) = auth {
            r = r.set("authorization", a);
        }
        call(r, Some(body))
    };
    let body = video_body(json!({})).to_string();
    for auth in [None, Some("Bearer nope"), Some("sekrit"), Some("Basic c2Vrcml0")] {
        let (st, _, _, e) = post(auth, &body);
        assert_eq!(st, 401, "{auth:?}");
        assert_error(&serde_json::from_str(&e).expect("json"), "invalid_api_key");
    }
    assert_eq!(call(agent().get(&format!("{b}/v1/models")), None).0, 401);
    assert_eq!(call(agent().get(&format!("{b}/health")), None).0, 200, "health stays open");
    assert_eq!(post(Some("Bearer sekrit"), &body).0, 200);
    // Oversized body: 413 with an error object, answered from the declared length before the body
    // is read. (A client that keeps writing a body the server has already refused can see its
    // connection closed mid-write — "broken pipe" — so the request head goes alone, on a raw socket.)
    let addr = b.trim_start_matches("http://");
    let mut sock = TcpStream::connect(addr).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer sekrit\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        2 << 20
    );
    sock.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&raw).contains("request_too_large") {
        match sock.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    let raw = String::from_utf8_lossy(&raw).into_owned();
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    let e = raw.split_once("\r\n\r\n").map(|x| x.1).unwrap_or_default();
    let e = e.find('{').map(|i| &e[i..]).unwrap_or(e);
    let e = e.rfind('}').map(|i| &e[..=i]).unwrap_or(e);
    assert_error(&serde_json::from_str(e).expect("json"), "request_too_large");
    // CORS: a preflight is answered before auth (no key needed), Authorization allowed.
    let pre = agent()
        .request("OPTIONS", &format!("{b}/v1/chat/completions"))
        .set("origin", "https://app.example.com")
        .set("access-control-request-method", "POST")
        .set("access-control-request-headers", "authorization,content-type")
        .call()
        .expect("preflight");
    assert_eq!(pre.status(), 200);
    assert_eq!(pre.header("access-control-allow-origin"), Some("*"));
    let allowed = pre.header("access-control-allow-headers").unwrap_or("").to_ascii_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"), "{allowed}");
    assert!(pre.header("access-control-allow-methods").is_some_and(|m| m.contains("POST")));
    assert!(pre.header("x-request-id").is_some());
    // A body that is not JSON: 415 with the error object (before it is parsed).
    let r = agent()
        .post(&format!("{b}/v1/chat/completions"))
        .set("authorization", "Bearer sekrit")
        .set("content-type", "application/x-www-form-urlencoded")
        .send_string("model=demo-model&messages=hi");
    let Err(ureq::Error::Status(415, r)) = r else { panic!("a form body must be a 415") };
    assert_error(
        &serde_json::from_str(&r.into_string().unwrap_or_default()).expect("json"),
        "unsupported_media_type",
    );
    // Wrong model, bad JSON, bad parameter, forbidden media.
    let (st, _, _, e) =
        post(Some("Bearer sekrit"), &video_body(json!({"model": "gpt-4o"})).to_string());
    assert_eq!(st, 404);
    assert_error(&serde_json::from_str(&e).expect("json"), "model_not_found");
    let (st, _, _, e) = post(Some("Bearer sekrit"), "{\"model\": ");
    assert_eq!(st, 400);
    assert_error(&serde_json::from_str(&e).expect("json"), "invalid_request");
    let (st, _, _, e) = post(Some("Bearer sekrit"), &video_body(json!({"top_p": 7})).to_string());
    assert_eq!(st, 400);
    assert_error(&serde_json::from_str(&e).expect("json"), "invalid_parameter");
    let forbidden = json!({"model": "demo-model", "messages": [{"role": "user", "content": [
        {"type": "video_url", "video_url": {"url": "file:///etc/passwd"}}, {"type": "text", "text": "x"}]}]});
    let (st, _, _, e) = post(Some("Bearer sekrit"), &forbidden.to_string());
    assert_eq!(st, 400, "a forbidden source is the request's fault");
    assert_error(&serde_json::from_str(&e).expect("json"), "media_not_allowed");
    // A corrupt video: 415 (unsupported media) from the engine, after admission.
    let corrupt = json!({"model": "demo-model", "messages": [{"role": "user", "content": [
        {"type": "video_url", "video_url": {"url": "data:video/mp4;base64,AAAAIGZ0eXBpc29tAAACAGlzb21pc28y"}}, {"type": "text", "text": "x"}]}]});
    let (st, _, _, e) = post(Some("Bearer sekrit"), &corrupt.to_string());
    assert_eq!(st, 415, "{e}");
    assert_error(&serde_json::from_str(&e).expect("json"), "invalid_media");
    // Still serving.
    assert_eq!(post(Some("Bearer sekrit"), &body).0, 200);
}

#[test]
fn loading_and_full_queue_answer_503() {
    let s = start(config(|c| c.engine.max_queue = 0), false);
    let (st, _, retry, e) = call(agent().get(&format!("{}/health", s.base)), None);
    assert_eq!(st, 503);
    assert!(retry.is_some());
    assert_error(&serde_json::from_str(&e).expect("json"), "model_loading");
    let c = config(|c| c.engine.max_queue = 0);
    s.server.set_engine(Engine::load(&c.model, &c.pipeline, c.engine.clone()).expect("engine"));
    assert_eq!(call(agent().get(&format!("{}/health", s.base)), None).0, 200);
    let (st, _, retry, e) = call(
        agent().post(&format!("{}/v1/chat/completions", s.base)),
        Some(&video_body(json!({})).to_string()),
    );
    assert_eq!(st, 503);
    assert_eq!(retry.as_deref(), Some("1"));
    assert_error(&serde_json::from_str(&e).expect("json"), "server_overloaded");
}

fn metric(base: &str, name: &str) -> f64 {
    let (_, _, _, m) = call(agent().get(&format!("{base}/metrics")), None);
    m.lines()
        .find_map(|l| {
            l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')).and_then(|v| v.parse().ok())
        })
        .unwrap_or(-1.0)
}

fn raw_request(base: &str, body: &str) -> TcpStream {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(s, "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).expect("write");
    s
}

fn wait_for(what: &str, f: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(30), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_client_that_disconnects_cancels_its_request() {
    let s = start(config(|_| {}), true);
    let b = &s.base;
    let long = |stream: bool| video_body(json!({"max_tokens": 3000, "stream": stream})).to_string();
    // Streaming: read a few events, then hang up.
    let mut conn = raw_request(b, &long(true));
    let mut buf = [0u8; 4096];
    let mut got = 0;
    while got < 600 {
        got += conn.read(&mut buf).expect("read");
    }
    assert_eq!(metric(b, "vidlm_num_requests_running"), 1.0);
    drop(conn);
    wait_for("the streamed request to be cancelled", || {
        metric(b, "vidlm_num_requests_running") == 0.0
    });
    assert_eq!(metric(b, "vidlm_request_success_total{finished_reason=\"abort\"}"), 1.0);
    // Non-streaming: hang up while it generates.
    let conn = raw_request(b, &long(false));
    wait_for("the request to run", || metric(b, "vidlm_num_requests_running") == 1.0);
    drop(conn);
    wait_for("the non-streamed request to be cancelled", || {
        metric(b, "vidlm_num_requests_running") == 0.0
    });
    assert_eq!(metric(b, "vidlm_request_success_total{finished_reason=\"abort\"}"), 2.0);
    // Far fewer tokens than asked for were generated.
    assert!(metric(b, "vidlm_generation_tokens_total") < 3000.0);
}
