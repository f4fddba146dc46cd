//! # vidlm-model — what vidlm knows about its model families, in one place
//!
//! The vocabulary the other vidlm crates share. Every fact about the families
//! (LLaVA-Interleave, LLaVA-OneVision, Video-LLaVA, LLaVA-NeXT-Video, Qwen2.5-VL, Qwen3-VL) and about a model
//! directory lives here once; the processor, vision, the decoder and the pipeline read it.
//!
//! * **Families** — [`Family`] and its row of the table, [`FamilySpec`]: placeholder tokens,
//!   image layout (plain / OneVision anyres / NeXT anyres), video token rule, processor classes
//!   and their defaults, which optional graphs the family needs. Matching on a family happens
//!   only in this crate ([`family`]).
//! * **Configs** — the model directory parsed once ([`ModelFiles::read`]) into serde structs named
//!   after the Hugging Face JSON fields ([`config`]): `config.json`, the image / video processor
//!   and chat-template files in both the hub and the transformers-5 layout,
//!   `tokenizer_config.json`, `generation_config.json`, and `onnx/vidlm_manifest.json`
//!   ([`Manifest`]).
//! * **Precisions** — [`Precision`] (fp32 / fp16 / q8 / q4 / q4f16) names the graph variants by
//!   transformers.js's file suffixes; [`ModelFiles::precisions`] lists what a directory has.
//! * **Geometry** — [`anyres`]: best resolution, tiles, unpadding, OneVision's `anyres_max`
//!   budget, so that the placeholder count ([`FeatureRules`]) and the packed feature rows always
//!   agree. [`PatchGrid`] is how the processor hands each image's tiling to vision.
//! * **Frames** — [`Sampling`] and transformers' frame-index formulas ([`select_frames`]).
//! * **M-RoPE** — [`mrope::rope_index`]: the Qwen2.5-VL / Qwen3-VL position ids (transformers'
//!   `get_rope_index`) and decode positions, computed here once.
//! * **Batches** — [`left_pad`]: the one padding step.
//! * **Errors** — [`ModelError`], and [`ErrorKind`], the categories every vidlm error maps to
//!   (bad request, not found, unsupported media, limit exceeded, …).
//!
//! ```
//! use vidlm_model::anyres::anyres_grid;
//! use vidlm_model::config::ProcessorConfig;
//! use vidlm_model::{Family, FeatureRules, Precision};
//!
//! // LLaVA-OneVision with the released checkpoint's processor attributes.
//! let spec = Family::from_model_type("llava_onevision").unwrap().spec();
//! let pc: ProcessorConfig = serde_json::from_str(r#"{"num_image_tokens": 729, "vision_aspect_ratio": "anyres_max_9"}"#)?;
//! let rules = FeatureRules::resolve(spec, &pc)?;
//!
//! // A 899x1024 image is cut into 3x3 tiles of 384 px plus the base image: 6551 placeholders
//! // (hf-llava-family-spec §3), and vision packs exactly that many feature rows.
//! let pins: Vec<(u32, u32)> = spec_pinpoints();
//! let grid = anyres_grid((899, 1024), &pins, 384).unwrap();
//! assert_eq!(grid.tiles, Some((3, 3)));
//! assert_eq!(rules.image_tokens(&grid, (384, 384)), 6551);
//!
//! // Graph variants by precision.
//! let p: Precision = "q4".parse()?;
//! assert_eq!(p.suffix(), "_q4");
//! # fn spec_pinpoints() -> Vec<(u32, u32)> { vidlm_model::family::OV_PINPOINTS.iter().map(|p| (p[0], p[1])).collect() }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

pub mod anyres;
pub mod batch;
pub mod config;
pub mod error;
pub mod family;
pub mod features;
pub mod files;
pub mod manifest;
pub mod media;
pub mod mrope;
pub mod precision;
pub mod sampling;

pub use anyres::PatchGrid;
pub use batch::left_pad;
pub use config::{GenerationConfig, ModelConfig, OneOrMany, PlaceholderIds, TextConfig};
pub use error::{ErrorKind, ModelError};
pub use family::{
    Backend, Family, FamilySpec, GraphUse, ImageLayout, PixelBudget, Positions, VideoOutputs,
    VideoTokens,
};
pub use features::FeatureRules;
pub use files::ModelFiles;
pub use manifest::Manifest;
pub use media::{DecodedMedia, MediaKind};
pub use precision::{Graph, Precision, Precisions, ResolvedPrecisions, UnknownPrecision};
pub use sampling::{
    family_frames, fps_num_frames, select_frames, uniform_indices, FrameBudget, FrameRule,
    Sampling, SamplingError,
};
