//! Everything that differs between the four families, as one table of `const` specs.
//!
//! | | interleave | onevision | video-llava | next-video |
//! |---|---|---|---|---|
//! | `model_type` | `llava` | `llava_onevision` | `video_llava` | `llava_next_video` |
//! | images | plain 384² | anyres (36 pinpoints, max 9) / 2+ per sample: pad-to-square | shortest-edge + crop | anyres (5 pinpoints) |
//! | image tokens | 729 | anyres formula / 730 | 256 | anyres formula |
//! | videos | frames as `<image>`s | 196·T + 1 | 257·T | 144·T |
//! | image output key | `pixel_values` | `pixel_values` | `pixel_values_images` | `pixel_values` |
//! | `video_encoder` graph | unused | optional (host pooling without it) | required | required |
//! | `image_newline` | no | yes | no | yes |
//!
//! Class defaults (used for fields missing from the config files) are the transformers 5.23
//! class attributes of the processor classes, in [`CLASS_DEFAULTS`].
//!
//! This module is the only place that names individual families: every other crate reads the
//! [`FamilySpec`] of the model it runs (`cargo xtask tidy` checks it).

use crate::config::SizeDict;
use crate::error::ModelError;

/// The four supported model families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// `llava-hf/llava-interleave-qwen-0.5b-hf` (`LlavaForConditionalGeneration`).
    Interleave,
    /// `llava-hf/llava-onevision-qwen2-0.5b-ov-hf`.
    Onevision,
    /// `LanguageBind/Video-LLaVA-7B-hf`.
    VideoLlava,
    /// `llava-hf/LLaVA-NeXT-Video-7B-hf`.
    LlavaNextVideo,
}

impl Family {
    /// Every family, in detection order.
    pub const ALL: [Family; 4] =
        [Family::Interleave, Family::Onevision, Family::VideoLlava, Family::LlavaNextVideo];

    /// The family's row of the table.
    pub fn spec(self) -> &'static FamilySpec {
        match self {
            Family::Interleave => &INTERLEAVE,
            Family::Onevision => &ONEVISION,
            Family::VideoLlava => &VIDEO_LLAVA,
            Family::LlavaNextVideo => &LLAVA_NEXT_VIDEO,
        }
    }

    /// Detects the family from `config.json`'s `model_type`, then `architectures`.
    pub fn detect(
        model_type: Option<&str>,
        architectures: &[String],
    ) -> Result<Family, ModelError> {
        if let Some(f) = model_type.and_then(Family::from_model_type) {
            return Ok(f);
        }
        for spec in FAMILIES {
            if architectures.iter().any(|a| spec.architectures.contains(&a.as_str())) {
                return Ok(spec.family);
            }
        }
        Err(ModelError::UnsupportedModel {
            model_type: model_type.map(String::from),
            architectures: architectures.to_vec(),
        })
    }

    /// The family whose `config.json` `model_type` is `model_type`.
    pub fn from_model_type(model_type: &str) -> Option<Family> {
        FAMILIES.iter().find(|s| s.model_types.contains(&model_type)).map(|s| s.family)
    }

    /// Short name (`interleave`, `onevision`, `video_llava`, `llava_next_video`).
    pub fn name(self) -> &'static str {
        self.spec().name
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.spec().display_name)
    }
}

/// Which resampling implementation the preprocessing reproduces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Pillow 13 (`backend="pil"` in transformers 5, the "slow" processors of 4.x).
    Pil,
    /// torchvision on CPU, `uint8` input (transformers 5's default and all video processors).
    Torchvision,
}

impl Backend {
    /// The name transformers uses (`"pil"` / `"torchvision"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Pil => "pil",
            Backend::Torchvision => "torchvision",
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pil" => Ok(Backend::Pil),
            "torchvision" | "tv" => Ok(Backend::Torchvision),
            other => Err(format!(
                "unknown resize backend {other:?} (expected \"pil\" or \"torchvision\")"
            )),
        }
    }
}

/// How images are turned into patches (processor) and their features packed (vision).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageLayout {
    /// One tensor per image: resize (+ crop), normalize. Output `(N, 3, H, W)`; the features
    /// are the vision graph's rows.
    Plain,
    /// LLaVA-OneVision anyres (`anyres_max_N` token budget); samples with 2+ images are padded to
    /// square and resized instead. Output `(N, P_max, 3, p, p)` + `image_sizes`.
    AnyresOnevision,
    /// LLaVA-NeXT anyres. Output `(N, P_max, 3, p, p)` + `image_sizes`.
    AnyresNext,
}

impl ImageLayout {
    /// Whether images are tiled (anyres) and their sizes returned as `image_sizes`.
    pub fn is_anyres(self) -> bool {
        !matches!(self, ImageLayout::Plain)
    }
}

/// How many placeholder tokens a video of `T` frames becomes, and so how its features are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoTokens {
    /// No video processor: a video is passed as its frames, each an `<image>` (vision: frames
    /// through `vision_encoder`, rows concatenated).
    FramesAsImages,
    /// `T · ceil(sqrt(num_image_tokens)/2)² + 1` (bilinear pooling + one newline per video).
    OnevisionPooled,
    /// `T · ((h/p)(w/p) + num_additional_image_tokens)` (CLS kept per frame).
    PerFrame,
    /// `T · (h/p)(w/p) / 4` (2×2 average pooling).
    NextPooled,
}

impl VideoTokens {
    /// Feature rows the `video_encoder` graph appends once per call (OneVision's newline): when
    /// a video is encoded in several chunks, all but the last call's copy are dropped.
    pub fn rows_appended_per_call(self) -> usize {
        usize::from(self == VideoTokens::OnevisionPooled)
    }
}

/// Whether a family uses an optional graph of the export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphUse {
    /// Not exported for the family and never loaded.
    Unused,
    /// Loaded when present; the host does the same work without it.
    Optional,
    /// The model cannot run without it.
    Required,
}

/// Class defaults of an image or video processor class (transformers 5.23 class attributes).
#[derive(Debug, Clone, Copy)]
pub struct ClassDefaults {
    /// Class name as in `image_processor_type` / `video_processor_type`.
    pub class: &'static str,
    /// `size`.
    pub size: SizeDict,
    /// `do_center_crop`.
    pub do_center_crop: bool,
    /// `crop_size`.
    pub crop_size: Option<SizeDict>,
    /// `image_mean`.
    pub mean: [f64; 3],
    /// `image_std`.
    pub std: [f64; 3],
    /// `do_pad`.
    pub do_pad: bool,
    /// `image_grid_pinpoints`.
    pub pinpoints: &'static [[u32; 2]],
    /// Backends the class exists for (`VideoLlavaImageProcessor` is PIL-only; video processors are
    /// torchvision-only).
    pub backends: &'static [Backend],
}

/// OpenAI CLIP mean (`OPENAI_CLIP_MEAN`).
pub const CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
/// OpenAI CLIP std (`OPENAI_CLIP_STD`).
pub const CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];
/// `IMAGENET_STANDARD_MEAN` / SigLIP.
pub const HALF: [f64; 3] = [0.5, 0.5, 0.5];

const BOTH: &[Backend] = &[Backend::Torchvision, Backend::Pil];
const PIL_ONLY: &[Backend] = &[Backend::Pil];
const TV_ONLY: &[Backend] = &[Backend::Torchvision];

/// OneVision's 36 pinpoints: `[384a, 384b]` for a, b in 1..=6 (a outer).
pub const OV_PINPOINTS: [[u32; 2]; 36] = {
    let mut out = [[0u32; 2]; 36];
    let mut i = 0;
    while i < 36 {
        out[i] = [384 * (i as u32 / 6 + 1), 384 * (i as u32 % 6 + 1)];
        i += 1;
    }
    out
};
/// LLaVA-NeXT's 5 pinpoints.
pub const NEXT_PINPOINTS: [[u32; 2]; 5] =
    [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]];

/// `CLIPImageProcessor`'s defaults, which the LLaVA processor classes inherit: shortest edge
/// 224, centre crop 224x224, CLIP mean/std, no padding. Each row of [`CLASS_DEFAULTS`] names only
/// what its class changes.
const CLIP_224: ClassDefaults = ClassDefaults {
    class: "CLIPImageProcessor",
    size: SizeDict::shortest(224),
    do_center_crop: true,
    crop_size: Some(SizeDict::hw(224, 224)),
    mean: CLIP_MEAN,
    std: CLIP_STD,
    do_pad: false,
    pinpoints: &[],
    backends: BOTH,
};

/// Class defaults of every processor class these families use.
pub const CLASS_DEFAULTS: &[ClassDefaults] = &[
    ClassDefaults {
        class: "SiglipImageProcessor",
        size: SizeDict::hw(224, 224),
        do_center_crop: false,
        crop_size: None,
        mean: HALF,
        std: HALF,
        ..CLIP_224
    },
    ClassDefaults { class: "LlavaImageProcessor", ..CLIP_224 },
    ClassDefaults {
        class: "LlavaOnevisionImageProcessor",
        size: SizeDict::hw(384, 384),
        do_center_crop: false,
        crop_size: None,
        do_pad: true,
        pinpoints: &OV_PINPOINTS,
        ..CLIP_224
    },
    ClassDefaults { class: "VideoLlavaImageProcessor", backends: PIL_ONLY, ..CLIP_224 },
    ClassDefaults {
        class: "LlavaNextImageProcessor",
        do_pad: true,
        pinpoints: &NEXT_PINPOINTS,
        ..CLIP_224
    },
    ClassDefaults {
        class: "LlavaOnevisionVideoProcessor",
        size: SizeDict::hw(384, 384),
        do_center_crop: false,
        crop_size: None,
        backends: TV_ONLY,
        ..CLIP_224
    },
    ClassDefaults { class: "VideoLlavaVideoProcessor", backends: TV_ONLY, ..CLIP_224 },
    ClassDefaults { class: "LlavaNextVideoVideoProcessor", backends: TV_ONLY, ..CLIP_224 },
];

/// Looks up a class's defaults by name (a trailing `Fast`/`Pil` is ignored).
pub fn class_defaults(class: &str) -> Option<&'static ClassDefaults> {
    let base = class.strip_suffix("Fast").or_else(|| class.strip_suffix("Pil")).unwrap_or(class);
    CLASS_DEFAULTS.iter().find(|c| c.class == base)
}

/// Processor-level defaults (`processor_config.json` fields).
#[derive(Debug, Clone, Copy)]
pub struct ProcessorDefaults {
    /// `image_token`.
    pub image_token: &'static str,
    /// `video_token`.
    pub video_token: Option<&'static str>,
    /// `patch_size` (None: the class has no default, the config must give it).
    pub patch_size: Option<u32>,
    /// `num_additional_image_tokens`.
    pub num_additional_image_tokens: u32,
    /// `vision_feature_select_strategy` (None: unset, no CLS adjustment).
    pub strategy: Option<&'static str>,
    /// `num_image_tokens` (OneVision; None: the config must give it).
    pub num_image_tokens: Option<u32>,
    /// `vision_aspect_ratio` (OneVision).
    pub vision_aspect_ratio: &'static str,
}

/// One family's row of the table.
#[derive(Debug)]
pub struct FamilySpec {
    /// The family.
    pub family: Family,
    /// Short name.
    pub name: &'static str,
    /// Human-readable name.
    pub display_name: &'static str,
    /// `config.json` `model_type` values.
    pub model_types: &'static [&'static str],
    /// `config.json` `architectures` values.
    pub architectures: &'static [&'static str],
    /// Processor class name.
    pub processor_class: &'static str,
    /// Image processor class used when the config names none.
    pub image_class: &'static str,
    /// Video processor class (None: the family has no video processor).
    pub video_class: Option<&'static str>,
    /// How images are patched and packed.
    pub image_layout: ImageLayout,
    /// How many tokens a video becomes.
    pub video_tokens: VideoTokens,
    /// Output key of image pixels.
    pub image_key: &'static str,
    /// Processor defaults.
    pub processor: ProcessorDefaults,
    /// `onnx/video_encoder*.onnx`.
    pub video_encoder: GraphUse,
    /// Whether image features need `onnx/image_newline.safetensors`.
    pub image_newline: bool,
}

/// The processor attributes' class defaults (`LlavaProcessor`): an `<image>` token, no video
/// token, nothing else set. Each family row names only what its class changes.
const IMAGE_ONLY: ProcessorDefaults = ProcessorDefaults {
    image_token: "<image>",
    video_token: None,
    patch_size: None,
    num_additional_image_tokens: 0,
    strategy: None,
    num_image_tokens: None,
    vision_aspect_ratio: "",
};

/// [`IMAGE_ONLY`] with a `<video>` token (the video families' processors).
const WITH_VIDEO: ProcessorDefaults =
    ProcessorDefaults { video_token: Some("<video>"), ..IMAGE_ONLY };

/// LLaVA-Interleave.
pub const INTERLEAVE: FamilySpec = FamilySpec {
    family: Family::Interleave,
    name: "interleave",
    display_name: "LLaVA-Interleave",
    model_types: &["llava"],
    architectures: &["LlavaForConditionalGeneration"],
    processor_class: "LlavaProcessor",
    image_class: "SiglipImageProcessor",
    video_class: None,
    image_layout: ImageLayout::Plain,
    video_tokens: VideoTokens::FramesAsImages,
    image_key: "pixel_values",
    processor: IMAGE_ONLY,
    video_encoder: GraphUse::Unused,
    image_newline: false,
};

/// LLaVA-OneVision.
pub const ONEVISION: FamilySpec = FamilySpec {
    family: Family::Onevision,
    name: "onevision",
    display_name: "LLaVA-OneVision",
    model_types: &["llava_onevision"],
    architectures: &["LlavaOnevisionForConditionalGeneration"],
    processor_class: "LlavaOnevisionProcessor",
    image_class: "LlavaOnevisionImageProcessor",
    video_class: Some("LlavaOnevisionVideoProcessor"),
    image_layout: ImageLayout::AnyresOnevision,
    video_tokens: VideoTokens::OnevisionPooled,
    image_key: "pixel_values",
    processor: ProcessorDefaults { vision_aspect_ratio: "anyres_max_9", ..WITH_VIDEO },
    video_encoder: GraphUse::Optional,
    image_newline: true,
};

/// Video-LLaVA.
pub const VIDEO_LLAVA: FamilySpec = FamilySpec {
    family: Family::VideoLlava,
    name: "video_llava",
    display_name: "Video-LLaVA",
    model_types: &["video_llava"],
    architectures: &["VideoLlavaForConditionalGeneration"],
    processor_class: "VideoLlavaProcessor",
    image_class: "VideoLlavaImageProcessor",
    video_class: Some("VideoLlavaVideoProcessor"),
    image_layout: ImageLayout::Plain,
    video_tokens: VideoTokens::PerFrame,
    image_key: "pixel_values_images",
    processor: ProcessorDefaults {
        patch_size: Some(14),
        num_additional_image_tokens: 1,
        strategy: Some("default"),
        ..WITH_VIDEO
    },
    // Video-LLaVA's video tower has its own weights: there is no host-side substitute.
    video_encoder: GraphUse::Required,
    image_newline: false,
};

/// LLaVA-NeXT-Video.
pub const LLAVA_NEXT_VIDEO: FamilySpec = FamilySpec {
    family: Family::LlavaNextVideo,
    name: "llava_next_video",
    display_name: "LLaVA-NeXT-Video",
    model_types: &["llava_next_video"],
    architectures: &["LlavaNextVideoForConditionalGeneration"],
    processor_class: "LlavaNextVideoProcessor",
    image_class: "LlavaNextImageProcessor",
    video_class: Some("LlavaNextVideoVideoProcessor"),
    image_layout: ImageLayout::AnyresNext,
    video_tokens: VideoTokens::NextPooled,
    image_key: "pixel_values",
    processor: WITH_VIDEO,
    video_encoder: GraphUse::Required,
    image_newline: true,
};

/// All families, in detection order.
pub const FAMILIES: [&FamilySpec; 4] = [&INTERLEAVE, &ONEVISION, &VIDEO_LLAVA, &LLAVA_NEXT_VIDEO];

/// Largest `size` / `crop_size` / pinpoint side accepted from a config file (transformers' own
/// checkpoints use at most 2304).
pub const MAX_CONFIG_SIDE: u32 = 8192;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ov_pinpoints_match_transformers_order() {
        assert_eq!(OV_PINPOINTS[0], [384, 384]);
        assert_eq!(OV_PINPOINTS[1], [384, 768]);
        assert_eq!(OV_PINPOINTS[6], [768, 384]);
        assert_eq!(OV_PINPOINTS[35], [2304, 2304]);
    }

    #[test]
    fn detect() {
        assert_eq!(Family::detect(Some("llava_onevision"), &[]).ok(), Some(Family::Onevision));
        assert_eq!(
            Family::detect(None, &["LlavaNextVideoForConditionalGeneration".into()]).ok(),
            Some(Family::LlavaNextVideo)
        );
        assert!(matches!(
            Family::detect(Some("bert"), &[]),
            Err(ModelError::UnsupportedModel { .. })
        ));
    }

    #[test]
    fn table_is_consistent() {
        for (f, spec) in Family::ALL.iter().zip(FAMILIES) {
            assert_eq!(*f, spec.family);
            assert_eq!(f.spec().name, spec.name);
            assert_eq!(
                serde_json::to_value(f).ok(),
                Some(serde_json::Value::String(spec.name.into()))
            );
            assert!(class_defaults(spec.image_class).is_some(), "{}", spec.name);
            assert_eq!(
                spec.video_class.is_some(),
                spec.video_tokens != VideoTokens::FramesAsImages
            );
            // Anyres families pack with image_newline; plain ones do not.
            assert_eq!(spec.image_newline, spec.image_layout.is_anyres());
        }
    }
}
