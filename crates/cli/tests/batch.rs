//! `vidlm batch` end to end on the committed demo model and the fixture models: one run, a run
//! killed with SIGKILL part-way and resumed, and a 3-shard run merged give the same lines; every
//! successful answer equals `vidlm run` on the same request; JSONL, CSV and Parquet manifests
//! agree; duplicate ids stop the run before any work.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cache() -> PathBuf {
    std::env::var_os("VIDLM_CACHE").map(PathBuf::from).unwrap_or_else(|| root().join(".cache"))
}

fn test_videos() -> PathBuf {
    let dir = std::env::var_os("VIDLM_TEST_VIDEOS")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache().join("test-videos"));
    assert!(
        dir.join(".generation").is_file(),
        "test videos not found in {}: run `cargo xtask videos`",
        dir.display()
    );
    std::fs::canonicalize(&dir).unwrap()
}

fn fixture_model(family: &str) -> PathBuf {
    let dir = std::env::var_os("VIDLM_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache().join("fixtures"))
        .join(family)
        .join("model");
    assert!(
        dir.join("config.json").is_file(),
        "fixture model {} missing: run `cargo xtask fixtures`",
        dir.display()
    );
    dir
}

fn demo_model() -> PathBuf {
    root().join("assets/demo-model")
}

fn vidlm() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vidlm"));
    for k in [
        "JOB_COMPLETION_INDEX",
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_MIN",
        "SLURM_ARRAY_TASK_COUNT",
    ] {
        c.env_remove(k);
    }
    c
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vidlm-batch-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn ok(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "vidlm failed: {err}");
    err
}

fn lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(text.is_empty() || text.ends_with('\n'), "{} ends with a torn line", path.display());
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l}: {e}")))
        .collect()
}

/// A line without its timestamp (the only field that differs between runs), as a string.
fn normalized(v: &Value) -> String {
    let mut v = v.clone();
    if let Some(body) = v.pointer_mut("/response/body").and_then(Value::as_object_mut) {
        body.remove("created");
    }
    v.to_string()
}

/// custom_id -> normalized line; asserts one line per id.
fn by_id(lines: &[Value]) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for l in lines {
        let id = l["custom_id"].as_str().unwrap().to_string();
        assert!(m.insert(id.clone(), normalized(l)).is_none(), "custom_id {id} has two lines");
    }
    m
}

/// The 210-request OpenAI Batch manifest: good videos with two prompts and two token budgets,
/// broken, missing and refused media, bad bodies.
fn openai_manifest(dir: &Path, model: &str, videos: &Path) -> (PathBuf, usize) {
    let good = [
        "h264_bframes.mp4",
        "vp9.webm",
        "mpeg4.avi",
        "rotated_90.mp4",
        "odd_853x479.webm",
        "h264_10bit.mp4",
    ];
    let prompts = ["What happens in this video?", "Describe the colors."];
    let chat = |video: &str, prompt: &str| {
        json!({"model": model, "messages": [{"role": "user", "content": [
            {"type": "video_url", "video_url": {"url": video}}, {"type": "text", "text": prompt}]}]})
    };
    let v = |name: &str| videos.join(name).to_string_lossy().into_owned();
    let mut kinds: Vec<(String, Value)> = Vec::new();
    for (i, g) in good.iter().enumerate() {
        for (j, p) in prompts.iter().enumerate() {
            let mut b = chat(&v(g), p);
            if (i + j) % 3 == 0 {
                b["max_tokens"] = json!(5);
            }
            kinds.push(("/v1/chat/completions".into(), b));
        }
    }
    // A file:// URL and an input_video part.
    kinds.push((
        "/v1/chat/completions".into(),
        chat(&format!("file://{}", v("h264_bframes.mp4")), prompts[0]),
    ));
    let mut iv = chat(&v("vp9.webm"), prompts[1]);
    iv["messages"][0]["content"][0] =
        json!({"type": "input_video", "input_video": {"url": v("vp9.webm")}});
    kinds.push(("/v1/chat/completions".into(), iv));
    // Failures: broken and missing videos, too few frames, outside the allowed folder, unknown
    // model, wrong endpoint, a body that is not a chat request.
    for bad in [
        "broken_random.mp4",
        "broken_empty.mp4",
        "broken_truncated_faststart.mp4",
        "missing-video.mp4",
        "one_frame.mp4",
    ] {
        kinds.push(("/v1/chat/completions".into(), chat(&v(bad), prompts[0])));
    }
    kinds.push(("/v1/chat/completions".into(), chat("/etc/hostname", prompts[0])));
    let mut other_model = chat(&v("vp9.webm"), prompts[0]);
    other_model["model"] = json!("gpt-4o");
    kinds.push(("/v1/chat/completions".into(), other_model));
    kinds.push(("/v1/embeddings".into(), chat(&v("vp9.webm"), prompts[0])));
    kinds.push(("/v1/chat/completions".into(), json!({"model": model, "messages": "hello"})));
    let n = 210;
    let path = dir.join("requests.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    for i in 0..n {
        let (url, body) = &kinds[(i * 7) % kinds.len()];
        let line =
            json!({"custom_id": format!("req-{i:03}"), "method": "POST", "url": url, "body": body});
        writeln!(f, "{line}").unwrap();
    }
    (path, n)
}

fn batch_args(model: &Path, input: &Path, videos: &Path) -> Vec<String> {
    [
        "batch",
        "--model",
        model.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--allowed-local-media-path",
        videos.to_str().unwrap(),
        "--num-frames",
        "4",
        "--max-new-tokens",
        "8",
        "--threads",
        "1",
        "--batch-size",
        "4",
        "--progress",
        "lines",
        "--progress-every",
        "50",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn count_lines(p: &Path) -> usize {
    std::fs::read(p).map(|b| b.iter().filter(|&&c| c == b'\n').count()).unwrap_or(0)
}

/// Starts a run and SIGKILLs it once its output has `after` lines (0: as soon as it started).
fn run_and_kill(args: &[String], output: &Path, after: usize) {
    let mut child = vidlm()
        .args(args)
        .arg("--output")
        .arg(output)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while count_lines(output) < after && t0.elapsed() < Duration::from_secs(300) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if after == 0 {
        std::thread::sleep(Duration::from_millis(150));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// One run, a killed-and-resumed run and a 3-shard run merged: the same lines, one per request.
fn resume_and_shards(name: &str, model: &Path) -> BTreeMap<String, String> {
    let dir = tmp(name);
    let videos = test_videos();
    let (input, n) = openai_manifest(&dir, model.to_str().unwrap(), &videos);
    let args = batch_args(model, &input, &videos);
    let t = Instant::now();
    let lap = |what: &str| eprintln!("[{name}] {what}: {:.1}s", t.elapsed().as_secs_f64());

    // 1. One run.
    let single = dir.join("single.jsonl");
    let err = ok(&vidlm().args(&args).arg("--output").arg(&single).output().unwrap());
    let one = by_id(&lines(&single));
    assert_eq!(one.len(), n);
    assert!(err.contains(&format!("{n} requests")) && err.contains("failed in this run"), "{err}");
    assert!(err.contains("[batch] 50/210 done"), "no progress lines in {err}");
    let good = one.values().filter(|l| l.contains("\"status_code\":200")).count();
    assert!(good > n / 2 && good < n, "{good} of {n} succeeded");

    lap("one run");
    // 2. Killed (at start-up, then part-way twice), a torn line left behind, then resumed.
    let resumed = dir.join("resumed.jsonl");
    run_and_kill(&args, &resumed, 0);
    run_and_kill(&args, &resumed, n / 4);
    run_and_kill(&args, &resumed, n / 2);
    let before = count_lines(&resumed);
    assert!(before >= n / 2 && before < n, "{before} lines before the resume");
    let mut f = std::fs::OpenOptions::new().append(true).open(&resumed).unwrap();
    f.write_all(br#"{"id": "batch_req_torn", "custom_id": "req-"#).unwrap();
    drop(f);
    lap("killed runs");
    let err = ok(&vidlm().args(&args).arg("--output").arg(&resumed).output().unwrap());
    assert!(err.contains("already done"), "{err}");
    lap("resume");
    assert_eq!(by_id(&lines(&resumed)), one, "killed + resumed run differs from one run");
    // A rerun of a finished output does nothing (and needs no model work).
    let err = ok(&vidlm().args(&args).arg("--output").arg(&resumed).output().unwrap());
    assert!(err.contains(&format!("0 succeeded, 0 failed in this run; {n} already done")), "{err}");

    // 3. Three shards, their index from the flag, Kubernetes' and Slurm's variables; then merged.
    let template = dir.join("shard-{shard}.jsonl").to_string_lossy().into_owned();
    ok(&vidlm().args(&args).args(["--shard", "0/3", "--output", &template]).output().unwrap());
    ok(&vidlm()
        .args(&args)
        .args(["--num-shards", "3", "--output", &template])
        .env("JOB_COMPLETION_INDEX", "1")
        .output()
        .unwrap());
    ok(&vidlm()
        .args(&args)
        .args(["--output", &template])
        .env("SLURM_ARRAY_TASK_ID", "3")
        .env("SLURM_ARRAY_TASK_MIN", "1")
        .env("SLURM_ARRAY_TASK_COUNT", "3")
        .output()
        .unwrap());
    for i in 0..3 {
        let shard = lines(&dir.join(format!("shard-{i}.jsonl")));
        assert_eq!(shard.len(), n / 3);
        for l in &shard {
            let k: usize = l["custom_id"].as_str().unwrap()[4..].parse().unwrap();
            assert_eq!(k % 3, i, "request {k} in shard {i}");
        }
    }
    lap("shards");
    let merged = dir.join("merged.jsonl");
    let err = ok(&vidlm()
        .args([
            "batch",
            "merge",
            "--input",
            input.to_str().unwrap(),
            "--output",
            merged.to_str().unwrap(),
            "--num-shards",
            "3",
            &template,
        ])
        .output()
        .unwrap());
    assert!(err.contains(&format!("{n} lines")), "{err}");
    let merged_lines = lines(&merged);
    let order: Vec<String> =
        merged_lines.iter().map(|l| l["custom_id"].as_str().unwrap().to_string()).collect();
    let expected: Vec<String> = (0..n).map(|i| format!("req-{i:03}")).collect();
    assert_eq!(order, expected, "merge is in manifest order");
    assert_eq!(by_id(&merged_lines), one, "3 shards merged differ from one run");

    // Merge refuses a missing or doubled line, and writes nothing then.
    let shard1 = dir.join("shard-1.jsonl");
    let text = std::fs::read_to_string(&shard1).unwrap();
    let mut ls: Vec<&str> = text.lines().collect();
    let dropped = ls.remove(5).to_string();
    std::fs::write(&shard1, ls.join("\n") + "\n").unwrap();
    let bad = dir.join("bad-merge.jsonl");
    let merge = |out: &Path| {
        vidlm()
            .args([
                "batch",
                "merge",
                "--input",
                input.to_str().unwrap(),
                "--output",
                out.to_str().unwrap(),
                "--num-shards",
                "3",
                &template,
            ])
            .output()
            .unwrap()
    };
    let o = merge(&bad);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("1 record(s)")
            && err.contains("have no line")
            && err.contains("rerun shard(s) 1/3"),
        "{err}"
    );
    assert!(!bad.exists());
    std::fs::write(&shard1, text.clone() + &dropped + "\n").unwrap();
    let o = merge(&bad);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("has two lines"));
    std::fs::write(&shard1, text).unwrap();

    // The error lines are the server's errors.
    let errors: BTreeSet<(u64, String)> = lines(&single)
        .iter()
        .filter(|l| l["response"]["status_code"] != 200)
        .map(|l| {
            (
                l["response"]["status_code"].as_u64().unwrap(),
                l["error"]["code"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    for (status, code) in [(404, "model_not_found"), (400, "media_not_allowed")] {
        assert!(errors.contains(&(status, code.to_string())), "no {status} {code} in {errors:?}");
    }
    assert!(errors.iter().filter(|(s, _)| *s == 400).count() >= 2, "{errors:?}");
    lap("merges");
    let _ = std::fs::remove_dir_all(&dir);
    one
}

/// Every successful answer equals `vidlm run` on the same request (text and token counts).
fn same_as_vidlm_run(model: &Path, batch: &BTreeMap<String, String>, input: &Path) {
    let requests: BTreeMap<String, Value> = std::fs::read_to_string(input)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| (v["custom_id"].as_str().unwrap().to_string(), v))
        .collect();
    let t = Instant::now();
    let mut checked: BTreeMap<String, Value> = BTreeMap::new();
    for (id, line) in batch {
        let line: Value = serde_json::from_str(line).unwrap();
        if line["response"]["status_code"] != 200 {
            continue;
        }
        let req = &requests[id]["body"];
        let content = &req["messages"][0]["content"];
        let part = &content[0];
        let url = part["video_url"]["url"]
            .as_str()
            .or_else(|| part["input_video"]["url"].as_str())
            .unwrap();
        let video = url.strip_prefix("file://").unwrap_or(url);
        let prompt = content[1]["text"].as_str().unwrap();
        let max_tokens = req["max_tokens"].as_u64().unwrap_or(8);
        let key = format!("{video}|{prompt}|{max_tokens}");
        let expected = checked.entry(key).or_insert_with(|| {
            let out = vidlm()
                .args([
                    "run",
                    "--model",
                    model.to_str().unwrap(),
                    "--video",
                    video,
                    "--prompt",
                    prompt,
                    "--num-frames",
                    "4",
                ])
                .args(["--max-new-tokens", &max_tokens.to_string(), "--threads", "1", "--json"])
                .output()
                .unwrap();
            ok(&out);
            serde_json::from_slice(&out.stdout).unwrap()
        });
        let body = &line["response"]["body"];
        assert_eq!(
            body["choices"][0]["message"]["content"], expected["text"],
            "{id}: batch answer differs from vidlm run"
        );
        assert_eq!(
            body["usage"]["completion_tokens"],
            json!(expected["token_ids"].as_array().unwrap().len()),
            "{id}"
        );
        assert_eq!(body["usage"]["prompt_tokens"], expected["prompt_tokens"], "{id}");
        let finish = if expected["finish_reason"] == "max_new_tokens" { "length" } else { "stop" };
        assert_eq!(body["choices"][0]["finish_reason"], finish, "{id}");
    }
    assert!(checked.len() >= 10, "only {} distinct successful requests compared", checked.len());
    eprintln!("[vidlm run] {} runs: {:.1}s", checked.len(), t.elapsed().as_secs_f64());
}

#[test]
fn demo_model_one_run_resumed_run_and_shards_agree_and_match_vidlm_run() {
    let model = demo_model();
    let one = resume_and_shards("demo", &model);
    let dir = tmp("demo-run");
    let (input, _) = openai_manifest(&dir, model.to_str().unwrap(), &test_videos());
    same_as_vidlm_run(&model, &one, &input);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fixture_model_one_run_resumed_run_and_shards_agree_and_match_vidlm_run() {
    // LLaVA-OneVision: images and videos through another family's processor and graphs.
    let model = fixture_model("onevision");
    let one = resume_and_shards("onevision", &model);
    let dir = tmp("ov-run");
    let (input, _) = openai_manifest(&dir, model.to_str().unwrap(), &test_videos());
    same_as_vidlm_run(&model, &one, &input);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same plain manifest as JSONL, CSV and Parquet: identical lines. Relative paths resolve
/// against the manifest's folder, which is also the default allowed folder.
#[test]
fn jsonl_csv_and_parquet_manifests_agree() {
    use arrow_array::{ArrayRef, RecordBatch, StringArray};
    use std::sync::Arc;
    let dir = tmp("formats");
    let videos = test_videos();
    std::fs::create_dir_all(dir.join("clips")).unwrap();
    for v in ["vp9.webm", "mpeg4.avi", "broken_random.mp4"] {
        std::fs::copy(videos.join(v), dir.join("clips").join(v)).unwrap();
    }
    let rows: Vec<(String, String, Option<&str>)> = (0..12)
        .map(|i| {
            let video = [
                "clips/vp9.webm",
                "clips/mpeg4.avi",
                "clips/broken_random.mp4",
                "clips/missing.mp4",
            ][i % 4];
            let prompt = [None, Some("Describe the colors.")][i % 2];
            (format!("clip-{i}"), video.to_string(), prompt)
        })
        .collect();
    let jsonl = dir.join("m.jsonl");
    let mut f = std::fs::File::create(&jsonl).unwrap();
    for (id, v, p) in &rows {
        writeln!(f, "{}", json!({"id": id, "video": v, "question": p})).unwrap();
    }
    let csv = dir.join("m.csv");
    let mut f = std::fs::File::create(&csv).unwrap();
    writeln!(f, "id,video,question").unwrap();
    for (id, v, p) in &rows {
        writeln!(f, "{id},{v},\"{}\"", p.unwrap_or("")).unwrap();
    }
    let parquet = dir.join("m.parquet");
    let cols: Vec<(&str, ArrayRef)> = vec![
        ("id", Arc::new(StringArray::from(rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>()))),
        (
            "video",
            Arc::new(StringArray::from(rows.iter().map(|r| r.1.as_str()).collect::<Vec<_>>())),
        ),
        ("question", Arc::new(StringArray::from(rows.iter().map(|r| r.2).collect::<Vec<_>>()))),
    ];
    let rb = RecordBatch::try_from_iter(cols).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&parquet).unwrap(),
        rb.schema(),
        None,
    )
    .unwrap();
    w.write(&rb).unwrap();
    w.close().unwrap();
    let model = demo_model();
    let mut results = Vec::new();
    for input in [&jsonl, &csv, &parquet] {
        let out = dir.join(format!("{}.out.jsonl", input.extension().unwrap().to_str().unwrap()));
        ok(&vidlm()
            .args(["batch", "--model", model.to_str().unwrap(), "--input", input.to_str().unwrap()])
            .args([
                "--video-column",
                "video",
                "--id-column",
                "id",
                "--prompt-column",
                "question",
                "--prompt",
                "What happens?",
            ])
            .args([
                "--num-frames",
                "4",
                "--max-new-tokens",
                "6",
                "--threads",
                "1",
                "--output",
                out.to_str().unwrap(),
            ])
            .output()
            .unwrap());
        results.push(by_id(&lines(&out)));
    }
    assert_eq!(results[0].len(), 12);
    let good = results[0].values().filter(|l| l.contains("\"status_code\":200")).count();
    assert_eq!(good, 6);
    assert_eq!(results[0], results[1], "JSONL and CSV differ");
    assert_eq!(results[0], results[2], "JSONL and Parquet differ");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn logprobs_come_back_as_the_server_gives_them_and_stream_is_refused() {
    let dir = tmp("logprobs");
    let videos = test_videos();
    let model = demo_model();
    let video = videos.join("vp9.webm").to_string_lossy().into_owned();
    let body = |extra: Value| {
        let mut b = json!({"model": model.to_str().unwrap(), "max_tokens": 4, "messages": [{"role": "user", "content": [
            {"type": "video_url", "video_url": {"url": video}}, {"type": "text", "text": "What happens?"}]}]});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let input = dir.join("in.jsonl");
    let mut f = std::fs::File::create(&input).unwrap();
    for (id, extra) in [
        ("top3", json!({"logprobs": true, "top_logprobs": 3})),
        ("plain", json!({})),
        ("streamed", json!({"stream": true})),
        ("top-without-logprobs", json!({"top_logprobs": 2})),
    ] {
        writeln!(f, "{}", json!({"custom_id": id, "method": "POST", "url": "/v1/chat/completions", "body": body(extra)})).unwrap();
    }
    drop(f);
    let output = dir.join("out.jsonl");
    let mut args = batch_args(&model, &input, &videos);
    args.extend(["--output".to_string(), output.to_string_lossy().into_owned()]);
    ok(&vidlm().args(&args).output().unwrap());
    let lines: BTreeMap<String, Value> = lines(&output)
        .into_iter()
        .map(|l| (l["custom_id"].as_str().unwrap().to_string(), l))
        .collect();
    let choice = &lines["top3"]["response"]["body"]["choices"][0];
    let content = choice["logprobs"]["content"].as_array().unwrap();
    let completion_tokens =
        lines["top3"]["response"]["body"]["usage"]["completion_tokens"].as_u64().unwrap();
    assert_eq!(content.len() as u64, completion_tokens, "{choice}");
    for t in content {
        let top = t["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3, "{t}");
        // Greedy: the chosen token is the most likely one.
        assert!(
            (t["logprob"].as_f64().unwrap() - top[0]["logprob"].as_f64().unwrap()).abs() < 1e-6,
            "{t}"
        );
        assert_eq!(t["token"], top[0]["token"], "{t}");
    }
    // The same answer as without logprobs, which has none.
    let plain = &lines["plain"]["response"]["body"]["choices"][0];
    assert_eq!(plain["message"]["content"], choice["message"]["content"]);
    assert!(plain["logprobs"].is_null(), "{plain}");
    for (id, param) in [("streamed", "stream"), ("top-without-logprobs", "top_logprobs")] {
        let e = &lines[id]["response"]["body"]["error"];
        assert_eq!(lines[id]["response"]["status_code"], 400, "{}", lines[id]);
        assert_eq!(e["param"], param, "{}", lines[id]);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_manifests_stop_before_any_work() {
    let dir = tmp("bad");
    let model = demo_model();
    let run = |input: &Path, extra: &[&str]| {
        let out = dir.join("out.jsonl");
        let o = vidlm()
            .args([
                "batch",
                "--model",
                model.to_str().unwrap(),
                "--input",
                input.to_str().unwrap(),
                "--output",
                out.to_str().unwrap(),
            ])
            .args(extra)
            .output()
            .unwrap();
        assert!(!o.status.success());
        assert!(!out.exists() || count_lines(&out) == 0, "work was done");
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1, "{err}");
        assert!(!err.contains("panicked"), "{err}");
        err
    };
    let dup = dir.join("dup.jsonl");
    let line = |id: &str| {
        json!({"custom_id": id, "method": "POST", "url": "/v1/chat/completions", "body": {}})
            .to_string()
    };
    std::fs::write(&dup, [line("a"), line("b"), line("a")].join("\n")).unwrap();
    let err = run(&dup, &[]);
    assert!(err.contains("duplicate custom_id \"a\" at line 1 and line 3"), "{err}");
    let notjson = dir.join("notjson.jsonl");
    std::fs::write(&notjson, line("a") + "\n{oops\n").unwrap();
    assert!(run(&notjson, &[]).contains("line 2: not JSON"));
    let csv = dir.join("m.csv");
    std::fs::write(&csv, "video\na.mp4\n").unwrap();
    assert!(run(&csv, &["--video-column", "clip", "--prompt", "x"])
        .contains("column \"clip\": no such column"));
    assert!(run(&csv, &["--video-column", "video", "--prompt", "x", "--shard", "1/1"])
        .contains("shard"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--shard I/N --output PATH` with a literal path (a job array's `out-$TASK.jsonl`) is accepted;
/// the output is `flock`ed for the run, so a second writer of the same file exits at once with a
/// one-line error, and the first run is untouched. The literal-path shards merge into the
/// one-run answers.
#[test]
fn literal_shard_outputs_and_a_second_writer_is_refused_at_once() {
    let dir = tmp("literal");
    for i in 0..6 {
        std::fs::copy(root().join("assets/demo.mp4"), dir.join(format!("clip{i}.mp4"))).unwrap();
    }
    let csv = dir.join("m.csv");
    let rows: String = (0..6).map(|i| format!("clip{i}.mp4\n")).collect();
    std::fs::write(&csv, format!("video\n{rows}")).unwrap();
    let model = demo_model();
    let args = |shard: &str, out: &Path| -> Vec<String> {
        [
            "batch",
            "--model",
            model.to_str().unwrap(),
            "--input",
            csv.to_str().unwrap(),
            "--video-column",
            "video",
            "--prompt",
            "What happens?",
            "--num-frames",
            "4",
            "--max-new-tokens",
            "48",
            "--batch-size",
            "1",
            "--prefetch",
            "0",
            "--threads",
            "1",
            "--shard",
            shard,
            "--output",
            out.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let a = dir.join("out-task-0.jsonl");
    let b = dir.join("out-task-1.jsonl");
    let mut first = vidlm().args(args("0/2", &a)).stderr(Stdio::piped()).spawn().unwrap();
    // The lock is taken when the output is opened (before the model loads).
    let t0 = Instant::now();
    while !a.exists() {
        assert!(t0.elapsed() < Duration::from_secs(60), "the first run never opened its output");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    let t1 = Instant::now();
    let second = vidlm().args(args("1/2", &a)).output().unwrap();
    let took = t1.elapsed();
    assert!(first.try_wait().unwrap().is_none(), "the first run was still running");
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr).into_owned();
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line: {err}");
    assert!(errors[0].contains("in use by another vidlm batch process"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(took < Duration::from_secs(20), "the second writer waited {took:?}");
    let out = first.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(lines(&a).len(), 3, "shard 0 of 2 owns records 0, 2, 4");
    ok(&vidlm().args(args("1/2", &b)).output().unwrap());
    assert_eq!(lines(&b).len(), 3);
    // Merged, the literal-path shards are the one-run answers.
    let whole = dir.join("whole.jsonl");
    ok(&vidlm().args(args("0/1", &whole)).output().unwrap());
    let merged = dir.join("merged.jsonl");
    ok(&vidlm()
        .args(["batch", "merge", "--input", csv.to_str().unwrap(), "--video-column", "video"])
        .args(["--prompt", "What happens?"])
        .args(["--output", merged.to_str().unwrap(), a.to_str().unwrap(), b.to_str().unwrap()])
        .output()
        .unwrap());
    assert_eq!(by_id(&lines(&merged)), by_id(&lines(&whole)));
    let _ = std::fs::remove_dir_all(&dir);
}

/// With no `--max-new-tokens` and no `max_tokens`, on a model whose generation config sets no
/// length (the demo model), both manifest kinds generate until a stop or the context limit, as
/// `vidlm serve` does — never transformers' default `max_length` of 20 (one token, "length").
#[test]
fn without_a_token_limit_answers_run_to_a_stop_or_the_context() {
    let dir = tmp("deflen");
    std::fs::copy(root().join("assets/demo.mp4"), dir.join("clip.mp4")).unwrap();
    let csv = dir.join("m.csv");
    std::fs::write(&csv, "video\nclip.mp4\n").unwrap();
    let jsonl = dir.join("requests.jsonl");
    let body = |max: Option<usize>| {
        let mut b = json!({"model": "demo-model", "messages": [{"role": "user", "content": [
            {"type": "video_url", "video_url": {"url": dir.join("clip.mp4").to_string_lossy()}},
            {"type": "text", "text": "What happens?"}]}]});
        if let Some(m) = max {
            b["max_tokens"] = json!(m);
        }
        json!({"custom_id": format!("r-{max:?}"), "method": "POST", "url": "/v1/chat/completions", "body": b})
    };
    std::fs::write(&jsonl, format!("{}\n{}\n", body(None), body(Some(32)))).unwrap();
    let model = demo_model();
    let run = |input: &Path, extra: &[&str], out: &Path| {
        ok(&vidlm()
            .args(["batch", "--model", model.to_str().unwrap(), "--input", input.to_str().unwrap()])
            .args(extra)
            .args(["--num-frames", "4", "--threads", "1", "--output", out.to_str().unwrap()])
            .output()
            .unwrap());
        lines(out)
    };
    let answer = |l: &Value| {
        let b = &l["response"]["body"];
        assert_eq!(l["response"]["status_code"], 200, "{l}");
        (
            b["choices"][0]["message"]["content"].as_str().unwrap_or("").to_string(),
            b["choices"][0]["finish_reason"].as_str().unwrap_or("").to_string(),
            b["usage"]["completion_tokens"].as_u64().unwrap_or(0),
            b["usage"]["total_tokens"].as_u64().unwrap_or(0),
        )
    };
    let out = run(&jsonl, &[], &dir.join("openai.out.jsonl"));
    let by: BTreeMap<String, Value> =
        out.iter().map(|l| (l["custom_id"].as_str().unwrap().to_string(), l.clone())).collect();
    let (short, short_finish, short_n, _) = answer(&by["r-Some(32)"]);
    let (full, finish, n, total) = answer(&by["r-None"]);
    let csv_out = run(
        &csv,
        &["--video-column", "video", "--prompt", "What happens?"],
        &dir.join("csv.out.jsonl"),
    );
    assert_eq!(
        answer(&csv_out[0]),
        (full.clone(), finish.clone(), n, total),
        "CSV and OpenAI Batch agree"
    );
    if short_finish == "length" {
        assert_eq!(short_n, 32);
        assert!(n > 32 && full.starts_with(&short), "{n} tokens: {full:?} vs {short:?}");
    } else {
        assert_eq!(full, short);
    }
    if finish == "length" {
        assert_eq!(total, 4096, "the context limit (max_position_embeddings) ended it");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `examples/ray/run_shards.py` on a local Ray: 2 shards as Ray tasks, each first attempt killed
/// with SIGKILL part-way (Ray retries it, it resumes), then merged: the same lines as one run.
#[test]
fn ray_example_runs_shards_retries_a_killed_one_and_merges() {
    let python = cache().join("venv/bin/python");
    assert!(
        python.is_file(),
        "{} missing: `cargo xtask setup` installs the Python env (with ray)",
        python.display()
    );
    let dir = tmp("ray");
    let videos = test_videos();
    std::fs::create_dir_all(dir.join("clips")).unwrap();
    for v in ["vp9.webm", "mpeg4.avi", "broken_random.mp4"] {
        std::fs::copy(videos.join(v), dir.join("clips").join(v)).unwrap();
    }
    let csv = dir.join("clips.csv");
    let mut text = String::from("clip_id,path\n");
    for i in 0..16 {
        text.push_str(&format!(
            "c{i:02},clips/{}\n",
            ["vp9.webm", "mpeg4.avi", "broken_random.mp4", "nothere.mp4"][i % 4]
        ));
    }
    std::fs::write(&csv, text).unwrap();
    let model = demo_model();
    let batch: Vec<String> = [
        "--model",
        model.to_str().unwrap(),
        "--input",
        csv.to_str().unwrap(),
        "--video-column",
        "path",
        "--id-column",
        "clip_id",
        "--prompt",
        "What happens in this clip?",
        "--num-frames",
        "4",
        "--max-new-tokens",
        "6",
        "--threads",
        "1",
        "--batch-size",
        "2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let single = dir.join("single.jsonl");
    ok(&vidlm().arg("batch").args(&batch).arg("--output").arg(&single).output().unwrap());
    let merged = dir.join("merged.jsonl");
    let out = Command::new(&python)
        .arg(root().join("examples/ray/run_shards.py"))
        .args([
            "--vidlm",
            env!("CARGO_BIN_EXE_vidlm"),
            "--num-shards",
            "2",
            "--inject-kill-after",
            "2",
        ])
        .arg("--output")
        .arg(dir.join("out-{shard}.jsonl"))
        .arg("--merged")
        .arg(&merged)
        .arg("--")
        .args(&batch)
        .env("RAY_USAGE_STATS_ENABLED", "0")
        .env_remove("RAY_ADDRESS")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ray example failed: {err}");
    for i in 0..2 {
        assert!(
            dir.join(format!("out-{i}.jsonl.injected-kill")).is_file(),
            "shard {i}'s first attempt was not killed: {err}"
        );
    }
    assert_eq!(
        by_id(&lines(&merged)),
        by_id(&lines(&single)),
        "Ray shards merged differ from one run"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--dtype` is the flag of `vidlm run` (one shared definition): `vidlm batch --dtype q4` loads
/// the `_q4` graphs and answers exactly as `vidlm run --dtype q4` does; an unknown precision is
/// refused before any work.
#[test]
fn dtype_picks_the_same_graphs_as_vidlm_run() {
    let model = fixture_model("onevision");
    let videos = test_videos();
    let dir = tmp("dtype");
    let input = dir.join("requests.jsonl");
    let cases = [
        ("h264_bframes.mp4", "What happens in this video?"),
        ("vp9.webm", "Describe the colors."),
        ("mpeg4.avi", "Who is there?"),
    ];
    let mut f = std::fs::File::create(&input).unwrap();
    for (i, (v, p)) in cases.iter().enumerate() {
        let body = json!({"model": model.to_str().unwrap(), "messages": [{"role": "user", "content": [
            {"type": "video_url", "video_url": {"url": videos.join(v).to_str().unwrap()}}, {"type": "text", "text": p}]}]});
        writeln!(f, "{}", json!({"custom_id": format!("q4-{i}"), "method": "POST", "url": "/v1/chat/completions", "body": body})).unwrap();
    }
    drop(f);
    let output = dir.join("out.jsonl");
    let mut args = batch_args(&model, &input, &videos);
    args.extend([
        "--output".to_string(),
        output.to_string_lossy().into_owned(),
        "--dtype".into(),
        "q4".into(),
    ]);
    ok(&vidlm().args(&args).output().unwrap());
    let got = lines(&output);
    assert_eq!(got.len(), cases.len());
    for l in got {
        let i: usize = l["custom_id"].as_str().unwrap().trim_start_matches("q4-").parse().unwrap();
        let (v, p) = cases[i];
        let out = vidlm()
            .args([
                "run",
                "--model",
                model.to_str().unwrap(),
                "--video",
                videos.join(v).to_str().unwrap(),
                "--prompt",
                p,
                "--num-frames",
                "4",
            ])
            .args(["--max-new-tokens", "8", "--threads", "1", "--json", "--dtype", "q4"])
            .output()
            .unwrap();
        let run_err = ok(&out);
        // The load line names the dtype and what each graph runs at (the fallback chain: the
        // embeddings stay fp32 at every dtype).
        assert!(run_err.contains("model (q4") && run_err.contains("decoder q4"), "{run_err}");
        let expected: Value = serde_json::from_slice(&out.stdout).unwrap();
        let body = &l["response"]["body"];
        assert_eq!(l["response"]["status_code"], 200, "{l}");
        assert_eq!(body["choices"][0]["message"]["content"], expected["text"], "{l}");
        assert_eq!(
            body["usage"]["completion_tokens"],
            json!(expected["token_ids"].as_array().unwrap().len())
        );
    }
    // An unknown precision: the argument parser refuses it, and no output is written.
    let refused = dir.join("refused.jsonl");
    let mut args = batch_args(&model, &input, &videos);
    args.extend([
        "--output".to_string(),
        refused.to_string_lossy().into_owned(),
        "--dtype".into(),
        "int3".into(),
    ]);
    let out = vidlm().args(&args).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--dtype"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!refused.exists());
    let _ = std::fs::remove_dir_all(&dir);
}
