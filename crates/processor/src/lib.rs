//! # vidlm-processor
//!
//! Turns chat messages plus decoded frames and images into exactly what a LLaVA-family
//! video-language model consumes — `input_ids`, `attention_mask`, `pixel_values`,
//! `pixel_values_videos`, `image_sizes` — with the same values as Hugging Face transformers 5.23
//! for four families: LLaVA-Interleave, LLaVA-OneVision, Video-LLaVA and LLaVA-NeXT-Video.
//!
//! Pipeline ([`Processor::process`], in named stages):
//! 1. **Config** — the model directory is read once by `vidlm-model`
//!    ([`vidlm_model::ModelFiles`]: hub layout or transformers-5 `save_pretrained` layout); the
//!    family and everything that differs between families come from its table
//!    ([`vidlm_model::FamilySpec`]); [`settings::VisionSettings`] merges the processor configs
//!    over the class defaults.
//! 2. **Messages** — [`messages::Conversation`] parses the transformers chat format (text, image
//!    and video parts; paths, URLs, or decoded arrays).
//! 3. **Template** — [`template::ChatTemplate`] renders the model's own Jinja template with
//!    minijinja (trim/lstrip blocks, Python methods, `raise_exception`, `{% generation %}`,
//!    fuel- and recursion-limited).
//! 4. **Tokens** — the `tokenizers` crate encodes the prompt; each `<image>` / `<video>` is
//!    expanded to the family's count (729; anyres formulas; 196·T+1; 256 / 257·T; 144·T) by
//!    [`vidlm_model::FeatureRules`]. Mismatched placeholders or a prompt longer than the context
//!    are typed errors.
//! 5. **Pixels** — [`resize`] reproduces Pillow 13 and torchvision's CPU `uint8` antialiased
//!    resize bit for bit; [`pixels`] does crop, fused rescale+normalize, anyres tiling and
//!    batching, frames in parallel with rayon.
//! 6. **Hand-off** — [`ProcessedInputs::conversations`]: per conversation its unpadded ids and,
//!    per image, its [`PatchGrid`] (tiles, multi-image flag), which vision packs the features
//!    by. The transformers tensors (`input_ids`, `attention_mask`, padded) are made on demand.
//!
//! Media given by path are loaded through a [`MediaLoader`] (the `vidlm-video-io` based loader,
//! or your own); the core only sees decoded `ndarray`s.
//!
//! ## Example
//!
//! Preprocess the pixels of an 8-frame video for LLaVA-NeXT-Video, without a model directory:
//!
//! ```
//! use ndarray::Array4;
//! use vidlm_processor::config::VisionProcessorConfig;
//! use vidlm_processor::family::VisionSettings;
//! use vidlm_processor::pixels::process_video;
//! use vidlm_processor::resize::Backend;
//!
//! // The class defaults of `LlavaNextVideoVideoProcessor`, with the checkpoint's 336 size.
//! let cfg: VisionProcessorConfig = serde_json::from_str(
//!     r#"{"video_processor_type": "LlavaNextVideoVideoProcessor",
//!         "size": {"shortest_edge": 336}, "crop_size": {"height": 336, "width": 336}}"#,
//! )?;
//! let settings = VisionSettings::resolve(&cfg, "video_preprocessor_config.json", "LlavaNextVideoVideoProcessor")?;
//! let frames = Array4::<u8>::from_elem((8, 480, 640, 3), 128);
//! let pixels = process_video(frames.view(), &settings, Backend::Torchvision, "video")?;
//! assert_eq!(pixels.shape(), &[8, 3, 336, 336]);
//! // (128 - 0.48145466·255) / (0.26862954·255), as torchvision computes it.
//! assert!((pixels[[0, 0, 0, 0]] - 0.0763).abs() < 1e-4);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! With a model directory (see `examples/preprocess.rs`):
//!
//! ```no_run
//! use vidlm_processor::{Conversation, ProcessOptions, Processor};
//! let processor = Processor::from_dir("models/llava-onevision")?;
//! let messages = serde_json::json!([{"role": "user", "content": [
//!     {"type": "image", "path": "cat.png"}, {"type": "text", "text": "What is this?"}]}]);
//! let conv = Conversation::from_json(&messages, None)?;
//! let inputs = processor.process(&[conv], &ProcessOptions::default())?;
//! println!("{:?}", inputs.input_ids().shape());
//! # Ok::<(), vidlm_processor::ProcessorError>(())
//! ```
#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod family;
#[cfg(feature = "video-io")]
pub mod loader;
pub mod messages;
pub mod patches;
pub mod pixels;
pub mod processor;
pub mod resize;
pub mod settings;
pub mod template;

pub use error::{ProcessorError, Result};
#[cfg(feature = "video-io")]
pub use loader::VideoIoLoader;
pub use messages::{Conversation, ImageInput, MediaInput, Part, VideoInput, VideoMetadata};
pub use processor::{
    ConversationInputs, MediaLoader, NoMediaLoader, ProcessOptions, ProcessedInputs, Processor,
    TokenSettings, VideoGrid,
};
pub use resize::{Backend, Filter};
pub use vidlm_model::{
    DecodedMedia, ErrorKind, Family, FamilySpec, MediaKind, PatchGrid, Sampling,
};
