//! Per-request budgets at the request → processor level, on the tiny Qwen2.5-VL and Qwen3-VL
//! fixtures: a chat completions body with `media_io_kwargs.video` (`num_frames`, `fps`,
//! `max_frames`) and `mm_processor_kwargs` (`min_pixels`, `max_pixels`, Qwen3's `size`) goes
//! through `vidlm-openai` (`ChatRequest::from_body`, the server's and batch's parsing) and the
//! engine's request preparation (`vidlm_engine::preprocess`: the media workers' loading,
//! family-formula frame sampling and processor, without running the model), and every tensor it
//! gives must equal, byte for byte, what `vidlm preprocess` writes with the same
//! `--num-frames` / `--fps` / `--max-frames` / `--min-pixels` / `--max-pixels` (themselves
//! tested against transformers in `preprocess_qwen.rs`). `size` is compared with
//! `vidlm preprocess` on a copy of the model whose processor configs carry that `size`: a
//! request's budget is the model's config for that request only.
//!
//! The number of visual tokens must change with the budget (so a budget is never silently
//! ignored), and a family without pixel budgets (LLaVA-OneVision) refuses them.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use vidlm_engine::EngineRequest;
use vidlm_media_source::{MediaLimits, MediaPolicy};
use vidlm_openai::{ChatRequest, RequestContext};
use vidlm_processor::{ProcessOptions, ProcessedInputs, Processor};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixtures() -> PathBuf {
    std::env::var_os("VIDLM_FIXTURES").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("VIDLM_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| root().join(".cache"))
            .join("fixtures")
    })
}

fn fixture(family: &str) -> PathBuf {
    let m = fixtures().join(family).join("model");
    assert!(
        m.join("config.json").is_file(),
        "{} is missing: run `cargo xtask fixtures`",
        m.display()
    );
    m
}

/// A folder with `demo.mp4` and a 200×120 PNG.
fn media_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vidlm-budgets-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(root().join("assets/demo.mp4"), dir.join("demo.mp4")).unwrap();
    let (w, h) = (200u32, 120u32);
    let mut data = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            data.extend([(x * 7 % 256) as u8, (y * 11 % 256) as u8, ((x + y) * 5 % 256) as u8]);
        }
    }
    let file = std::fs::File::create(dir.join("pic.png")).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header().unwrap().write_image_data(&data).unwrap();
    dir.canonicalize().unwrap()
}

/// Which media a case has, in order.
#[derive(Clone, Copy)]
enum Media {
    Video,
    Image,
    ImageAndVideo,
}

fn parts(media: Media, dir: &Path) -> (Vec<Value>, Vec<Value>) {
    let video = (
        json!({"type": "video_url", "video_url": {"url": format!("file://{}/demo.mp4", dir.display())}}),
        json!({"type": "video", "video": "demo.mp4"}),
    );
    let image = (
        json!({"type": "image_url", "image_url": {"url": format!("file://{}/pic.png", dir.display())}}),
        json!({"type": "image", "image": "pic.png"}),
    );
    let items = match media {
        Media::Video => vec![video],
        Media::Image => vec![image],
        Media::ImageAndVideo => vec![image, video],
    };
    let text = json!({"type": "text", "text": "What is shown?"});
    let (mut wire, mut hf): (Vec<Value>, Vec<Value>) = items.into_iter().unzip();
    wire.push(text.clone());
    hf.push(text);
    (wire, hf)
}

/// What the server and batch make of a body: parsing, then the engine's request preparation.
fn served(model: &Path, dir: &Path, media: Media, extra: Value) -> ProcessedInputs {
    let (content, _) = parts(media, dir);
    let mut body = json!({"messages": [{"role": "user", "content": content}], "max_tokens": 4});
    body.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
    let ctx = RequestContext {
        model_names: vec!["m".into()],
        media: MediaPolicy::default()
            .with_local_path(dir)
            .unwrap()
            .with_limits(MediaLimits { max_frames: 32, ..MediaLimits::default() }),
    };
    let req = ChatRequest::from_body(body.to_string().as_bytes(), &ctx)
        .unwrap_or_else(|e| panic!("{body}: {e}"));
    let processor = Processor::from_dir(model).unwrap();
    vidlm_engine::preprocess(&processor, &ctx.media, &EngineRequest::from(&req))
        .unwrap_or_else(|e| panic!("{body}: {e}"))
}

/// `vidlm preprocess` of the same conversation with these flags: its tensors.
fn preprocessed(
    model: &Path,
    dir: &Path,
    media: Media,
    flags: &[&str],
) -> Vec<(String, Vec<usize>, Vec<u8>)> {
    let (_, hf) = parts(media, dir);
    let messages = dir.join("messages.json");
    std::fs::write(&messages, json!([{"role": "user", "content": hf}]).to_string()).unwrap();
    let out = dir.join("inputs.safetensors");
    let r = Command::new(env!("CARGO_BIN_EXE_vidlm"))
        .arg("preprocess")
        .arg("--model")
        .arg(model)
        .arg("--messages")
        .arg(&messages)
        .args(flags)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        r.status.success(),
        "vidlm preprocess {flags:?}: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    let bytes = std::fs::read(&out).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut v: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(name, t)| (name, t.shape().to_vec(), t.data().to_vec()))
        .collect();
    v.sort();
    v
}

fn tensors(inputs: &ProcessedInputs) -> Vec<(String, Vec<usize>, Vec<u8>)> {
    let mut v: Vec<_> =
        inputs.tensors().into_iter().map(|(name, _, shape, bytes)| (name, shape, bytes)).collect();
    v.sort();
    v
}

fn assert_same(what: &str, ours: &ProcessedInputs, want: &[(String, Vec<usize>, Vec<u8>)]) {
    let ours = tensors(ours);
    let names =
        |v: &[(String, Vec<usize>, Vec<u8>)]| v.iter().map(|t| t.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&ours), names(want), "{what}: tensor names");
    for (a, b) in ours.iter().zip(want) {
        assert_eq!(a.1, b.1, "{what}: {} shape", a.0);
        assert!(a.2 == b.2, "{what}: {} differs", a.0);
    }
}

/// Visual placeholder tokens (image + video) of the prompt.
fn visual_tokens(inputs: &ProcessedInputs) -> usize {
    inputs.image_token_counts.iter().sum::<usize>()
        + inputs.video_token_counts.iter().sum::<usize>()
}

#[test]
fn request_budgets_equal_vidlm_preprocess_flags_on_both_qwen_families() {
    for family in ["qwen2_5_vl", "qwen3_vl"] {
        let model = fixture(family);
        let dir = media_dir(family);
        // (what, media, body fields, `vidlm preprocess` flags)
        let cases: Vec<(&str, Media, Value, Vec<&str>)> = vec![
            (
                "num_frames",
                Media::Video,
                json!({"media_io_kwargs": {"video": {"num_frames": 4}}}),
                vec!["--num-frames", "4"],
            ),
            (
                "odd num_frames",
                Media::Video,
                json!({"media_io_kwargs": {"video": {"num_frames": 5}}}),
                vec!["--num-frames", "5"],
            ),
            (
                "fps + max_frames",
                Media::Video,
                json!({"media_io_kwargs": {"video": {"fps": 3.0, "max_frames": 6}}}),
                vec!["--fps", "3", "--max-frames", "6"],
            ),
            (
                "video budget",
                Media::Video,
                json!({"media_io_kwargs": {"video": {"num_frames": 4}}, "mm_processor_kwargs": {"min_pixels": 3136, "max_pixels": 8000}}),
                vec!["--num-frames", "4", "--min-pixels", "3136", "--max-pixels", "8000"],
            ),
            ("image", Media::Image, json!({}), vec![]),
            (
                "image max_pixels",
                Media::Image,
                json!({"mm_processor_kwargs": {"max_pixels": 20000}}),
                vec!["--max-pixels", "20000"],
            ),
            (
                "image min_pixels",
                Media::Image,
                json!({"mm_processor_kwargs": {"min_pixels": 60000, "max_pixels": 90000}}),
                vec!["--min-pixels", "60000", "--max-pixels", "90000"],
            ),
            (
                "image + video budget",
                Media::ImageAndVideo,
                json!({"media_io_kwargs": {"video": {"num_frames": 4}}, "mm_processor_kwargs": {"max_pixels": 20000}}),
                vec!["--num-frames", "4", "--max-pixels", "20000"],
            ),
        ];
        let mut counts = Vec::new();
        for (what, media, extra, flags) in &cases {
            let what = format!("{family} {what}");
            let ours = served(&model, &dir, *media, extra.clone());
            assert_same(&what, &ours, &preprocessed(&model, &dir, *media, flags));
            counts.push((what, visual_tokens(&ours)));
        }
        // The budgets changed the number of visual tokens.
        let n = |w: &str| counts.iter().find(|c| c.0 == format!("{family} {w}")).unwrap().1;
        assert_ne!(n("image"), n("image max_pixels"), "{family}: {counts:?}");
        assert_ne!(n("image"), n("image min_pixels"), "{family}: {counts:?}");
        if family == "qwen2_5_vl" {
            // Qwen2.5-VL's video processor takes min_pixels / max_pixels (Qwen3-VL's does not).
            assert_ne!(n("num_frames"), n("video budget"), "{family}: {counts:?}");
        } else {
            assert_eq!(n("num_frames"), n("video budget"), "{family}: {counts:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A copy of a model's processor files (no graphs) with `size` set in its image and video
/// processor configs (min_pixels / max_pixels removed: `size` is the whole budget).
fn with_config_size(model: &Path, to: &Path, size: (u64, u64)) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(model).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
    for name in ["preprocessor_config.json", "video_preprocessor_config.json"] {
        let p = to.join(name);
        if !p.is_file() {
            continue;
        }
        let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        let o = cfg.as_object_mut().unwrap();
        o.remove("min_pixels");
        o.remove("max_pixels");
        o.insert("size".into(), json!({"shortest_edge": size.0, "longest_edge": size.1}));
        std::fs::write(&p, cfg.to_string()).unwrap();
    }
}

#[test]
fn size_is_the_models_config_for_one_request() {
    for (family, size) in [("qwen3_vl", (4096u64, 20000u64)), ("qwen2_5_vl", (3136, 9000))] {
        let model = fixture(family);
        let dir = media_dir(&format!("size-{family}"));
        let edited = dir.join("model-with-size");
        with_config_size(&model, &edited, size);
        let extra = json!({
            "media_io_kwargs": {"video": {"num_frames": 4}},
            "mm_processor_kwargs": {"size": {"shortest_edge": size.0, "longest_edge": size.1}},
        });
        let ours = served(&model, &dir, Media::ImageAndVideo, extra);
        let want = preprocessed(&edited, &dir, Media::ImageAndVideo, &["--num-frames", "4"]);
        assert_same(&format!("{family} size"), &ours, &want);
        let plain = served(
            &model,
            &dir,
            Media::ImageAndVideo,
            json!({"media_io_kwargs": {"video": {"num_frames": 4}}}),
        );
        assert_ne!(visual_tokens(&ours), visual_tokens(&plain), "{family}: size changed nothing");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn a_family_without_pixel_budgets_refuses_them() {
    let processor = Processor::from_dir(fixture("onevision")).unwrap();
    for opts in [
        ProcessOptions { max_pixels: Some(20000), ..Default::default() },
        ProcessOptions { size: Some((100, 200)), ..Default::default() },
    ] {
        let e = processor.check_budget(&opts).unwrap_err();
        assert_eq!(e.kind(), vidlm_processor::ErrorKind::Unsupported, "{e}");
    }
    assert!(processor.check_budget(&ProcessOptions::default()).is_ok());
    // A Qwen model takes them (a max_pixels under the config's min_pixels too, as transformers
    // does: smart_resize shrinks to it), but not a value the processor cannot hold.
    let qwen = Processor::from_dir(fixture("qwen2_5_vl")).unwrap();
    assert!(qwen
        .check_budget(&ProcessOptions { max_pixels: Some(5000), ..Default::default() })
        .is_ok());
    assert!(qwen
        .check_budget(&ProcessOptions { max_pixels: Some(20000), ..Default::default() })
        .is_ok());
    let e = qwen
        .check_budget(&ProcessOptions { min_pixels: Some(1 << 33), ..Default::default() })
        .unwrap_err();
    assert_eq!(e.kind(), vidlm_processor::ErrorKind::BadRequest, "{e}");
}
