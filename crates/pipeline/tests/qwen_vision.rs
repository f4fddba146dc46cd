//! Qwen2.5-VL / Qwen3-VL from media to features in Rust: the golden scenario `image_video` (an
//! image and a 4-frame sample of an 8-frame, 4 fps clip) through vidlm-processor, the pipeline's
//! `vision_inputs` (patch rows split by `image_grid_thw` / `video_grid_thw`, `grid_thw` filled) and
//! the patchified vision runner, against the references `python/qwen_vision_refs.py` wrote from
//! transformers' processor and the same graph run from Python ONNX Runtime
//! (`$VIDLM_CACHE/fixtures/<family>/vision_ref/image_video.safetensors`): pixels and features bit
//! for bit.

use crate::common;

use std::sync::Arc;

use common::{fixture_model, fixture_root, Golden};
use ndarray::{Array4, Axis};
use vidlm_pipeline::{vision_inputs, Conversation, ProcessOptions, Processor, Sampling};
use vidlm_processor::{DecodedMedia, MediaInput, VideoInput, VideoMetadata};
use vidlm_vision::{DeepstackBlock, FeatureBlock, VisionEncoder, VisionOptions};

fn frame(path: &str) -> ndarray::Array3<u8> {
    let p = fixture_root().join("tests/goldens").join(path);
    let f = vidlm_video_io::load_image(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    f.data.index_axis(Axis(0), 0).to_owned()
}

fn concat(blocks: &[FeatureBlock]) -> (Vec<f32>, Option<Vec<f32>>) {
    let rows = blocks.iter().flat_map(|b| b.data.iter().copied()).collect();
    let deep = DeepstackBlock::concat(blocks.iter().filter_map(|b| b.deepstack.as_ref()))
        .expect("levels")
        .map(|d| d.data);
    (rows, deep)
}

#[test]
fn image_and_video_from_media_to_features() {
    for family in ["qwen2_5_vl", "qwen3_vl"] {
        let model = fixture_model(family);
        let refs = model.parent().expect("fixture dir").join("vision_ref/image_video.safetensors");
        assert!(
            refs.is_file(),
            "{} is missing: run `cargo xtask fixtures` (or python/qwen_vision_refs.py)",
            refs.display()
        );
        let r = Golden::load(&refs);
        let image = frame("media/image_b/00.png");
        let frames: Vec<_> = (0..8).map(|i| frame(&format!("media/video_b/{i:02}.png"))).collect();
        let (h, w) = (frames[0].shape()[0], frames[0].shape()[1]);
        let mut video = Array4::<u8>::zeros((8, h, w, 3));
        for (i, f) in frames.iter().enumerate() {
            video.index_axis_mut(Axis(0), i).assign(f);
        }
        let messages = serde_json::json!([{"role": "user", "content": [
            {"type": "image"}, {"type": "video"},
            {"type": "text", "text": "Does the picture appear in the video?"}]}]);
        let conv = Conversation {
            messages: messages.as_array().expect("messages").clone(),
            media: vec![
                MediaInput::Decoded(DecodedMedia::Image(Arc::new(image))),
                MediaInput::Video(VideoInput::WithMetadata(
                    Arc::new(video),
                    VideoMetadata { total_num_frames: 8, fps: Some(4.0), frames_indices: None },
                )),
            ],
        };
        let proc = Processor::from_dir(&model).unwrap_or_else(|e| panic!("{family}: {e}"));
        let opts = ProcessOptions { sampling: Sampling::NumFrames(4), ..Default::default() };
        let inputs = proc.process(&[conv], &opts).unwrap_or_else(|e| panic!("{family}: {e}"));
        // The processor's pixels are transformers' (the references were checked against the
        // goldens' sha256).
        for (key, got) in [
            ("pixel_values", inputs.pixel_values.as_ref()),
            ("pixel_values_videos", inputs.pixel_values_videos.as_ref()),
        ] {
            let got = got.unwrap_or_else(|| panic!("{family}: no {key}"));
            assert_eq!(
                got.as_slice().expect("contiguous"),
                r.f(key).1.as_slice(),
                "{family} {key}"
            );
        }
        let mut vision = VisionEncoder::from_dir(
            &model,
            &VisionOptions {
                session: vidlm_pipeline::SessionOptions {
                    intra_threads: Some(1),
                    ..Default::default()
                },
                max_batch: 1,
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("{family}: {e}"));
        let (images, videos) = vision_inputs(&vision, &inputs).expect("vision inputs");
        let thw = |k: &str| -> Vec<[usize; 3]> {
            r.i(k).1.chunks(3).map(|g| [g[0] as usize, g[1] as usize, g[2] as usize]).collect()
        };
        assert_eq!(
            images.iter().map(|i| i.grid_thw.expect("grid")).collect::<Vec<_>>(),
            thw("image_grid_thw")
        );
        assert_eq!(
            videos.iter().map(|v| v.grid_thw.expect("grid")).collect::<Vec<_>>(),
            thw("video_grid_thw")
        );
        assert!(videos[0].frames > 1, "{family}: a video of several temporal patches");
        let deep = family == "qwen3_vl";
        for (kind, blocks) in [
            ("image", vision.image_features(&images).expect("images")),
            ("video", vision.video_features(&videos).expect("videos")),
        ] {
            let (rows, levels) = concat(&blocks);
            assert_eq!(rows, r.f(&format!("onnx_{kind}_features")).1, "{family} {kind} features");
            assert_eq!(levels.is_some(), deep, "{family} {kind}: DeepStack levels");
            if let Some(levels) = levels {
                assert_eq!(
                    levels,
                    r.f(&format!("onnx_{kind}_deepstack")).1,
                    "{family} {kind} deepstack"
                );
            }
        }
        // The prompt's placeholders take exactly these rows.
        let ids = &inputs.conversations[0].input_ids;
        let files = vidlm_pipeline::ModelFiles::read(&model).expect("files");
        let count = |id: Option<i64>| ids.iter().filter(|&&x| Some(x) == id).count();
        assert_eq!(count(files.config.image_token_id), r.f("onnx_image_features").0[0]);
        assert_eq!(count(files.config.video_token_id), r.f("onnx_video_features").0[0]);
    }
}
