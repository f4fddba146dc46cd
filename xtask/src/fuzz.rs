//! `cargo xtask fuzz [TARGET] [--seconds N] [--debug]`: builds the libFuzzer targets of
//! `fuzz/` and runs each (or one) for N seconds, seeded with the committed fixtures.
//!
//! `fuzz/` is a standard cargo-fuzz project (`cargo fuzz run video_bytes -s none` works where
//! cargo-fuzz is installed). To need nothing beyond the toolchain, this command builds it the
//! way `cargo fuzz build --sanitizer none` does on the stable compiler: `--target <host>` (so
//! build scripts are not instrumented) and SanitizerCoverage through `-Cpasses=sancov-module`
//! and the `-sanitizer-coverage-*` LLVM flags, `--cfg fuzzing`, debug assertions. No
//! sanitizer: the targets are safe Rust over FFmpeg, and the faults sought are panics, hangs,
//! wrong results (asserted) and runaway memory (`-rss_limit_mb`).
//!
//! Runs are niced (`nice -n 19`), write new inputs to `.cache/fuzz/corpus/<target>` and any
//! crash to `fuzz/artifacts/<target>/`, and end with a table of executions per target.

use crate::{cache_dir, project_root, run, videos};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The targets, with the largest input libFuzzer may make for each.
pub const TARGETS: &[(&str, usize)] = &[
    ("video_bytes", 1 << 20),
    ("image_bytes", 256 << 10),
    ("processor_messages", 16 << 10),
    ("chat_template", 16 << 10),
    ("model_config", 16 << 10),
    ("openai_request", 128 << 10),
];

#[derive(clap::Args, Debug)]
pub struct FuzzArgs {
    /// One target (default: all of them, one after the other).
    pub target: Option<String>,
    /// Seconds per target.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Unoptimised build instead of the optimised one (cargo-fuzz's default, which the CI smoke
    /// run uses too): no faster to build here, as the dependencies of the processor targets
    /// must be optimised anyway (unoptimised, the four tokenizers take minutes to load).
    #[arg(long)]
    pub debug: bool,
    /// Only build the targets and the seed corpora.
    #[arg(long)]
    pub build_only: bool,
}

fn host_triple() -> Result<String> {
    let out = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("-vV")
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|s| s.trim().to_string())
        .context("rustc -vV printed no host triple")
}

/// cargo-fuzz 0.13's RUSTFLAGS for `--sanitizer none` on Linux.
fn rustflags() -> String {
    let f = vec![
        "-Cpasses=sancov-module",
        "-Cllvm-args=-sanitizer-coverage-level=4",
        "-Cllvm-args=-sanitizer-coverage-inline-8bit-counters",
        "-Cllvm-args=-sanitizer-coverage-pc-table",
        "-Cllvm-args=-sanitizer-coverage-trace-compares",
        "--cfg fuzzing",
        "-Cllvm-args=-simplifycfg-branch-fold-threshold=0",
        "-Cllvm-args=-sanitizer-coverage-stack-depth",
        "-Cdebug-assertions",
    ];
    f.join(" ")
}

fn build(triple: &str, release: bool) -> Result<PathBuf> {
    let root = project_root();
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(&root)
        .args(["build", "--manifest-path", "fuzz/Cargo.toml", "--bins", "--target", triple])
        .arg("--target-dir")
        .arg(root.join("fuzz/target"))
        .env("RUSTFLAGS", rustflags());
    if release {
        c.args(["--release", "--config", "profile.release.debug=\"line-tables-only\""]);
    }
    eprintln!("[fuzz] building the targets ({})", if release { "release" } else { "debug" });
    run(&mut c)?;
    Ok(root.join("fuzz/target").join(triple).join(if release { "release" } else { "debug" }))
}

/// The weightless model directories the processor target loads (`python/assets.py`).
fn model_dirs() -> Result<PathBuf> {
    let out = cache_dir().join("assets").join("hub");
    let families = ["interleave", "onevision", "video_llava", "llava_next_video"];
    let complete = |f: &str| {
        let d = out.join(f);
        d.join("tokenizer.json").is_file()
            && (d.join("chat_template.json").is_file() || d.join("chat_template.jinja").is_file())
    };
    for f in families {
        if !complete(f) {
            let py = cache_dir().join("venv/bin/python");
            run(Command::new(&py)
                .arg(project_root().join("python/assets.py"))
                .args(["--family", f, "--layout", "hub", "--out"])
                .arg(out.join(f)))
            .with_context(|| {
                format!("building the {f} model directory (needs `cargo xtask setup`)")
            })?;
        }
    }
    Ok(out)
}

/// Standard base64 (for data-URL seeds).
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            out.push(if k <= c.len() { A[(n >> (18 - 6 * k) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

fn copy_into(dir: &Path, name: &str, data: &[u8]) -> Result<()> {
    std::fs::write(dir.join(name), data).with_context(|| format!("writing seed {name}"))
}

/// The seed corpus of one target, made from the committed fixtures (and the generated test
/// videos), in `.cache/fuzz/seeds/<target>`.
fn seeds(target: &str, models: &Path) -> Result<PathBuf> {
    let dir = cache_dir().join("fuzz").join("seeds").join(target);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let root = project_root();
    let files_in = |d: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(d)
            .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        v.sort();
        v.into_iter().filter(|p| p.is_file()).collect()
    };
    let messages: Vec<PathBuf> = files_in(&root.join("crates/processor/tests/inputs"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    match target {
        "video_bytes" | "image_bytes" => {
            let max = if target == "video_bytes" { 512 << 10 } else { 256 << 10 };
            let vids = videos::videos()?;
            let images = ["jpg", "jpeg", "png", "webp", "bmp", "gif", "tiff"];
            let mut sources = files_in(&vids);
            sources.push(root.join("assets/demo.mp4"));
            sources.extend(files_in(&root.join("crates/video-io/tests/fuzz-regressions")));
            for p in sources {
                let name =
                    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let ext =
                    p.extension().map(|e| e.to_string_lossy().to_lowercase()).unwrap_or_default();
                let is_image = images.contains(&ext.as_str());
                let wanted = if target == "image_bytes" {
                    is_image
                } else {
                    !is_image || name.starts_with("anim")
                };
                let size = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(u64::MAX);
                if wanted
                    && size > 0
                    && size <= max
                    && !name.starts_with('.')
                    && !name.starts_with("tmp-")
                {
                    copy_into(&dir, &name, &std::fs::read(&p)?)?;
                }
            }
        }
        "processor_messages" => {
            for (k, m) in messages.iter().enumerate() {
                let json = std::fs::read(m)?;
                for fam in 0..4u8 {
                    let mut d = vec![fam | ((k as u8 & 3) << 2)];
                    d.extend(&json);
                    copy_into(
                        &dir,
                        &format!("{fam}-{}", m.file_name().unwrap_or_default().to_string_lossy()),
                        &d,
                    )?;
                }
            }
        }
        "chat_template" => {
            for fam in ["interleave", "onevision", "video_llava", "llava_next_video"] {
                let d = models.join(fam);
                let tpl = match std::fs::read_to_string(d.join("chat_template.jinja")) {
                    Ok(t) => t,
                    Err(_) => {
                        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
                            d.join("chat_template.json"),
                        )?)?;
                        v["chat_template"].as_str().unwrap_or_default().to_string()
                    }
                };
                for m in &messages {
                    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(m)?)?;
                    // the first conversation of a batch, or the conversation itself
                    let conv =
                        if v.get(0).and_then(|c| c.get(0)).is_some() { v[0].clone() } else { v };
                    let mut data = tpl.clone().into_bytes();
                    data.push(0);
                    data.extend(serde_json::to_vec(&conv)?);
                    copy_into(
                        &dir,
                        &format!("{fam}-{}", m.file_name().unwrap_or_default().to_string_lossy()),
                        &data,
                    )?;
                }
            }
        }
        "model_config" => {
            let mut dirs: Vec<(String, PathBuf)> =
                ["interleave", "onevision", "video_llava", "llava_next_video"]
                    .iter()
                    .map(|f| (f.to_string(), models.join(f)))
                    .collect();
            dirs.push(("demo".into(), root.join("assets/demo-model")));
            for (tag, d) in dirs {
                for p in files_in(&d) {
                    let name = p.file_name().unwrap_or_default().to_string_lossy().into_owned();
                    if name.ends_with(".json") && name != "tokenizer.json" {
                        copy_into(&dir, &format!("{tag}-{name}"), &std::fs::read(&p)?)?;
                    }
                }
            }
        }
        "openai_request" => {
            let vids = videos::videos()?;
            let data_url = |name: &str, mime: &str| -> Result<String> {
                Ok(format!("data:{mime};base64,{}", base64(&std::fs::read(vids.join(name))?)))
            };
            let bodies = [
                serde_json::json!({"model": "demo-model", "messages": [{"role": "user", "content": "What is this?"}]}),
                serde_json::json!({"model": "m", "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": [{"type": "text", "text": "Describe"}, {"type": "image_url", "image_url": {"url": data_url("image.png", "image/png")?}}]},
                    {"role": "assistant", "content": "A test card."},
                    {"role": "user", "content": [{"type": "video_url", "video_url": {"url": data_url("one_frame.mp4", "video/mp4")?}}, {"type": "text", "text": "And this?"}]}],
                    "max_tokens": 16, "temperature": 0.7, "top_p": 0.9, "top_k": 20, "seed": 3, "stop": ["\n"], "stream": true,
                    "stream_options": {"include_usage": true}, "media_io_kwargs": {"video": {"num_frames": 2}}}),
                serde_json::json!({"model": "demo-model", "messages": [{"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": data_url("image.jpg", "image/jpeg")?}},
                    {"type": "input_video", "input_video": {"url": "http://127.0.0.1:9/x.mp4"}}]}],
                    "max_completion_tokens": 4, "logprobs": true, "top_logprobs": 2, "repetition_penalty": 1.1, "min_p": 0.05}),
            ];
            for (k, b) in bodies.iter().enumerate() {
                copy_into(&dir, &format!("body-{k}.json"), &serde_json::to_vec(b)?)?;
            }
        }
        other => bail!("unknown fuzz target {other:?}"),
    }
    Ok(dir)
}

/// What one run did, from libFuzzer's final statistics.
struct Outcome {
    target: String,
    execs: u64,
    seconds: f64,
    crashed: bool,
    corpus: usize,
}

fn fuzz_one(
    bin_dir: &Path,
    target: &str,
    max_len: usize,
    seconds: u64,
    seeds: &Path,
) -> Result<Outcome> {
    let corpus = cache_dir().join("fuzz").join("corpus").join(target);
    let artifacts = project_root().join("fuzz").join("artifacts").join(target);
    std::fs::create_dir_all(&corpus)?;
    std::fs::create_dir_all(&artifacts)?;
    eprintln!("[fuzz] {target}: {seconds} s");
    let t0 = Instant::now();
    let out = Command::new("nice")
        .args(["-n", "19"])
        .arg(bin_dir.join(target))
        .arg(&corpus)
        .arg(seeds)
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-max_len={max_len}"))
        .args(["-timeout=20", "-rss_limit_mb=3072", "-print_final_stats=1", "-close_fd_mask=1"])
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .env("VIDLM_FUZZ_MODELS", cache_dir().join("assets").join("hub"))
        .output()
        .with_context(|| format!("running {target}"))?;
    let log = String::from_utf8_lossy(&out.stderr);
    let stat = |key: &str| -> u64 {
        log.lines()
            .rev()
            .filter_map(|l| l.strip_prefix(key))
            .find_map(|v| v.trim().trim_start_matches(':').trim().parse().ok())
            .unwrap_or(0)
    };
    let crashed = !out.status.success();
    if crashed {
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        eprintln!("{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    }
    Ok(Outcome {
        target: target.to_string(),
        execs: stat("stat::number_of_executed_units"),
        seconds: t0.elapsed().as_secs_f64(),
        crashed,
        corpus: std::fs::read_dir(&corpus).map(|r| r.count()).unwrap_or(0),
    })
}

pub fn fuzz(a: &FuzzArgs) -> Result<()> {
    let targets: Vec<(&str, usize)> = match &a.target {
        Some(t) => vec![*TARGETS.iter().find(|(n, _)| n == t).with_context(|| {
            format!(
                "unknown fuzz target {t:?} (known: {})",
                TARGETS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            )
        })?],
        None => TARGETS.to_vec(),
    };
    let triple = host_triple()?;
    let bins = build(&triple, !a.debug)?;
    let models = model_dirs()?;
    let mut outcomes = Vec::new();
    for (t, max_len) in &targets {
        let s = seeds(t, &models)?;
        if a.build_only {
            continue;
        }
        outcomes.push(fuzz_one(&bins, t, *max_len, a.seconds, &s)?);
    }
    if a.build_only {
        return Ok(());
    }
    println!("| target | executions | seconds | execs/s | corpus | result |");
    println!("|---|---|---|---|---|---|");
    for o in &outcomes {
        println!(
            "| {} | {} | {:.0} | {:.0} | {} | {} |",
            o.target,
            o.execs,
            o.seconds,
            o.execs as f64 / o.seconds.max(1e-9),
            o.corpus,
            if o.crashed { "CRASH (see fuzz/artifacts)" } else { "ok" }
        );
    }
    println!("total executions: {}", outcomes.iter().map(|o| o.execs).sum::<u64>());
    let crashed: Vec<&str> =
        outcomes.iter().filter(|o| o.crashed).map(|o| o.target.as_str()).collect();
    if !crashed.is_empty() {
        bail!(
            "fuzzing found crashes in {}: inputs are in fuzz/artifacts/<target>/",
            crashed.join(", ")
        );
    }
    Ok(())
}
