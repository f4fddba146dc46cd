//! Preprocess a conversation for a model directory and print what the model would receive.
//!
//! ```sh
//! cargo run -p vidlm-processor --example preprocess -- MODEL_DIR [messages.json] [--num-frames N]
//! ```
//!
//! Without `messages.json`, the bundled `assets/demo.mp4` is asked about. Media paths in
//! messages.json are relative to the file.

use std::path::PathBuf;
use vidlm_processor::{Conversation, ProcessOptions, Processor, Sampling};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut num_frames = Some(8);
    if let Some(i) = args.iter().position(|a| a == "--num-frames") {
        num_frames = args.get(i + 1).and_then(|v| v.parse().ok());
        args.drain(i..(i + 2).min(args.len()));
    }
    let Some(model) = args.first().map(PathBuf::from) else {
        eprintln!("usage: preprocess MODEL_DIR [messages.json] [--num-frames N]");
        std::process::exit(2);
    };
    let processor = Processor::from_dir(&model)?;
    let conversations = match args.get(1) {
        Some(path) => {
            let path = PathBuf::from(path);
            let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
            Conversation::batch_from_json(&json, path.parent())?
        }
        None => {
            let demo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets/demo.mp4");
            let json = serde_json::json!([{"role": "user", "content": [
                {"type": "video", "video": demo.to_string_lossy()},
                {"type": "text", "text": "What happens in this video?"}]}]);
            vec![Conversation::from_json(&json, None)?]
        }
    };
    let sampling = num_frames.map_or(Sampling::All, Sampling::NumFrames);
    let opts = ProcessOptions { sampling, ..ProcessOptions::default() };
    let inputs = processor.process(&conversations, &opts)?;
    println!("family: {}", processor.family().name());
    for (i, p) in inputs.prompts.iter().enumerate() {
        println!("prompt {i}: {p:?}");
    }
    println!("image tokens per image: {:?}", inputs.image_token_counts);
    println!("video tokens per video: {:?}", inputs.video_token_counts);
    for (name, dtype, shape, _) in inputs.tensors() {
        println!("{name}: {dtype:?} {shape:?}");
    }
    Ok(())
}
