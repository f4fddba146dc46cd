//! `insta` snapshots of the preprocessing for every input in `tests/inputs/*.json`: rendered
//! prompts, token counts, shapes and rounded statistics of every tensor.

use crate::common;

use common::*;
use ndarray::ArrayD;
use serde_json::{json, Value};
use vidlm_processor::{Backend, ProcessOptions, Processor};

fn stats(t: &ArrayD<f32>) -> Value {
    let sh = t.shape();
    let plane: usize = sh[sh.len() - 2..].iter().product();
    let mut sum = [0f64; 3];
    let mut sq = [0f64; 3];
    let mut n = [0usize; 3];
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    let data = t.as_standard_layout();
    let data = data.as_slice().unwrap_or(&[]);
    for (i, v) in data.iter().enumerate() {
        let c = (i / plane) % 3;
        sum[c] += f64::from(*v);
        sq[c] += f64::from(*v) * f64::from(*v);
        n[c] += 1;
        lo = lo.min(*v);
        hi = hi.max(*v);
    }
    let r = |x: f64| (x * 1e4).round() / 1e4;
    let mean: Vec<f64> = (0..3).map(|c| r(sum[c] / n[c].max(1) as f64)).collect();
    let std: Vec<f64> = (0..3)
        .map(|c| {
            r((sq[c] / n[c].max(1) as f64 - (sum[c] / n[c].max(1) as f64).powi(2)).max(0.0).sqrt())
        })
        .collect();
    json!({"shape": sh, "mean": mean, "std": std, "min": r(f64::from(lo)), "max": r(f64::from(hi)), "wsum64": wsum64(data)})
}

#[test]
fn preprocessing_snapshots() {
    insta::glob!("inputs/*.json", |path| {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let input: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let family = input["family"].as_str().unwrap_or("");
        let layout = input["layout"].as_str().unwrap_or("hub");
        let p = Processor::from_dir(model_dir(layout, family)).unwrap_or_else(|e| panic!("{e}"));
        let convs: Vec<_> = input["conversations"]
            .as_array()
            .unwrap_or(&Vec::new())
            .iter()
            .map(conversation)
            .collect();
        let opts = ProcessOptions {
            add_generation_prompt: input["add_generation_prompt"].as_bool().unwrap_or(true),
            image_backend: input["backend"]
                .as_str()
                .map(|b| b.parse::<Backend>().unwrap_or(Backend::Torchvision)),
            ..ProcessOptions::default()
        };
        let out = p.process(&convs, &opts).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut tensors = serde_json::Map::new();
        if let Some(t) = &out.pixel_values {
            tensors.insert(out.image_key.into(), stats(t));
        }
        if let Some(t) = &out.pixel_values_videos {
            tensors.insert("pixel_values_videos".into(), stats(t));
        }
        let (input_ids, attention_mask) = out.padded();
        let rows: Vec<Value> = input_ids
            .rows()
            .into_iter()
            .zip(attention_mask.rows())
            .map(|(ids, mask)| {
                let real: Vec<i64> =
                    ids.iter().zip(mask).filter(|(_, m)| **m == 1).map(|(i, _)| *i).collect();
                let image = real
                    .iter()
                    .filter(|&&i| i == i64::from(p.token_settings().image_token_id))
                    .count();
                let video = p
                    .token_settings()
                    .video_token_id
                    .map(|v| real.iter().filter(|&&i| i == i64::from(v)).count());
                // The text tokens (placeholders removed), first 48.
                let text: Vec<i64> = real
                    .iter()
                    .copied()
                    .filter(|&i| {
                        i != i64::from(p.token_settings().image_token_id)
                            && Some(i) != p.token_settings().video_token_id.map(i64::from)
                    })
                    .take(48)
                    .collect();
                json!({"length": ids.len(), "padding": mask.iter().filter(|m| **m == 0).count(),
                       "image_tokens": image, "video_tokens": video, "text_ids": text})
            })
            .collect();
        let snap = json!({
            "family": p.family(),
            "prompts": out.prompts,
            "rows": rows,
            "image_token_counts": out.image_token_counts,
            "video_token_counts": out.video_token_counts,
            "image_sizes": out.image_sizes.as_ref().map(|a| a.rows().into_iter().map(|r| r.to_vec()).collect::<Vec<_>>()),
            "batch_num_images": out.batch_num_images,
            "tensors": tensors,
        });
        insta::assert_yaml_snapshot!(snap);
    });
}
