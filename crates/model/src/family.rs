//! Everything that differs between the six families, as one table of `const` specs.
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
//! | | Qwen2.5-VL | Qwen3-VL |
//! |---|---|---|
//! | `model_type` | `qwen2_5_vl` | `qwen3_vl` |
//! | images, videos | patchified: `smart_resize` to multiples of `patch·merge`, rows `[patches, C·T·P·P]`, `*_grid_thw` | same |
//! | image tokens | `t·h·w / merge²` | same |
//! | video tokens | `t·h·w / merge²` in one `<|video_pad|>` run, `second_per_grid_ts` | per temporal patch: `<t seconds><|vision_start|>` + `h·w/merge²` + `<|vision_end|>` |
//! | video pixel budget | per frame | over `t·h·w` |
//! | frame indices | float32 `arange` ([`FrameRule::TemporalPatchArange`]) | `linspace().round()` ([`FrameRule::Linspace`]) |
//! | positions | M-RoPE (3 rows), sections | M-RoPE interleaved, DeepStack |
//! | graphs | `vision_encoder` (images and videos) | same |
//!
//! Class defaults (used for fields missing from the config files) are the transformers 5.23
//! class attributes of the processor classes, in [`CLASS_DEFAULTS`].
//!
//! This module is the only place that names individual families: every other crate reads the
//! [`FamilySpec`] of the model it runs (`cargo xtask tidy` checks it).

use crate::config::SizeDict;
use crate::error::ModelError;
use crate::sampling::FrameRule;

/// The supported model families.
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
    /// `Qwen/Qwen2.5-VL-3B-Instruct` and its siblings (`Qwen2_5_VLForConditionalGeneration`).
    #[serde(rename = "qwen2_5_vl")]
    Qwen25Vl,
    /// `Qwen/Qwen3-VL-2B-Instruct` and its siblings (`Qwen3VLForConditionalGeneration`).
    #[serde(rename = "qwen3_vl")]
    Qwen3Vl,
}

impl Family {
    /// Every family, in detection order.
    pub const ALL: [Family; 6] = [
        Family::Interleave,
        Family::Onevision,
        Family::VideoLlava,
        Family::LlavaNextVideo,
        Family::Qwen25Vl,
        Family::Qwen3Vl,
    ];

    /// The family's row of the table.
    pub fn spec(self) -> &'static FamilySpec {
        match self {
            Family::Interleave => &INTERLEAVE,
            Family::Onevision => &ONEVISION,
            Family::VideoLlava => &VIDEO_LLAVA,
            Family::LlavaNextVideo => &LLAVA_NEXT_VIDEO,
            Family::Qwen25Vl => &QWEN2_5_VL,
            Family::Qwen3Vl => &QWEN3_VL,
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

    /// Short name (`interleave`, `onevision`, `video_llava`, `llava_next_video`, `qwen2_5_vl`,
    /// `qwen3_vl`).
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
    /// Qwen-VL: `smart_resize` to multiples of `patch_size · merge_size` within the pixel budget,
    /// each image one temporal patch (the frame repeated), rows `[patches, C·T·P·P]` concatenated
    /// over the batch + `image_grid_thw`. Videos are patchified the same way (`video_grid_thw`).
    Patchified,
}

impl ImageLayout {
    /// Whether images are tiled (anyres) and their sizes returned as `image_sizes`.
    pub fn is_anyres(self) -> bool {
        matches!(self, ImageLayout::AnyresOnevision | ImageLayout::AnyresNext)
    }

    /// Whether pixels are patchified rows with a `(t, h, w)` grid per image / video.
    pub fn is_patchified(self) -> bool {
        self == ImageLayout::Patchified
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
    /// `t·h·w / merge²` for a `(t, h, w)` patch grid, all in one placeholder run
    /// (`Qwen2_5_VLProcessor.replace_video_token`).
    GridMerged,
    /// Per temporal patch `i`: the text `<{ts_i:.1f} seconds>`, then `<|vision_start|>`,
    /// `h·w / merge²` placeholders and `<|vision_end|>` (`Qwen3VLProcessor.replace_video_token`);
    /// `ts_i` is the mean of the patch's first and last frame index over the video fps.
    GridMergedTimestamped,
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

/// How a patchified video processor bounds the pixels of a video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelBudget {
    /// `smart_resize(h, w)`: `size` bounds each frame (`Qwen2VLImageProcessor`,
    /// `Qwen2VLVideoProcessor`).
    PerFrame,
    /// `smart_resize(t, h, w)`: `size` bounds `t_bar · h · w` over the clip, and frames smaller
    /// than the factor are scaled up first (`Qwen3VLVideoProcessor`).
    PerClip,
}

/// Patchified processors' class defaults (`patch_size`, `temporal_patch_size`, `merge_size`,
/// the frame settings and the pixel budget rule).
#[derive(Debug, Clone, Copy)]
pub struct PatchDefaults {
    /// `patch_size`.
    pub patch_size: u32,
    /// `temporal_patch_size`.
    pub temporal_patch_size: u32,
    /// `merge_size`.
    pub merge_size: u32,
    /// How `size` bounds a video's pixels.
    pub budget: PixelBudget,
    /// The frame-index formula (video classes).
    pub frame_rule: FrameRule,
    /// `min_frames`.
    pub min_frames: u32,
    /// `max_frames`.
    pub max_frames: u32,
    /// `do_sample_frames`.
    pub do_sample_frames: bool,
    /// `fps`.
    pub fps: Option<f64>,
    /// Whether the class takes `min_pixels` / `max_pixels` (as call arguments and config keys).
    pub pixel_kwargs: bool,
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
    /// Patchified classes (`size` is a pixel budget `shortest_edge..=longest_edge`).
    pub patch: Option<PatchDefaults>,
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
    patch: None,
};

/// `Qwen2VLImageProcessor`'s patch defaults.
const QWEN2_PATCH: PatchDefaults = PatchDefaults {
    patch_size: 14,
    temporal_patch_size: 2,
    merge_size: 2,
    budget: PixelBudget::PerFrame,
    frame_rule: FrameRule::TemporalPatchArange,
    min_frames: 4,
    max_frames: 768,
    do_sample_frames: false,
    fps: None,
    pixel_kwargs: true,
};

/// `SizeDict { shortest_edge, longest_edge }` (pixel budgets).
const fn budget(min: u32, max: u32) -> SizeDict {
    SizeDict { height: None, width: None, shortest_edge: Some(min), longest_edge: Some(max) }
}

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
    ClassDefaults {
        class: "Qwen2VLImageProcessor",
        size: budget(56 * 56, 28 * 28 * 1280),
        do_center_crop: false,
        crop_size: None,
        patch: Some(QWEN2_PATCH),
        ..CLIP_224
    },
    ClassDefaults {
        class: "Qwen2VLVideoProcessor",
        size: budget(128 * 28 * 28, 28 * 28 * 768),
        do_center_crop: false,
        crop_size: None,
        backends: TV_ONLY,
        patch: Some(QWEN2_PATCH),
        ..CLIP_224
    },
    ClassDefaults {
        class: "Qwen3VLVideoProcessor",
        size: budget(128 * 32 * 32, 32 * 32 * 768),
        do_center_crop: false,
        crop_size: None,
        mean: HALF,
        std: HALF,
        backends: TV_ONLY,
        patch: Some(PatchDefaults {
            patch_size: 16,
            budget: PixelBudget::PerClip,
            frame_rule: FrameRule::Linspace,
            do_sample_frames: true,
            fps: Some(2.0),
            pixel_kwargs: false,
            ..QWEN2_PATCH
        }),
        ..CLIP_224
    },
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
    /// `vision_start_token` / `vision_end_token` (Qwen-VL: the timestamped video prompt wraps
    /// each temporal patch in them).
    pub vision_markers: Option<(&'static str, &'static str)>,
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
    /// Output key of the video grid (`video_grid_thw`) and whether `second_per_grid_ts` is
    /// returned (patchified families).
    pub video_outputs: VideoOutputs,
    /// How the decoder numbers positions.
    pub positions: Positions,
}

/// Extra per-video outputs of the processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoOutputs {
    /// `image_grid_thw` / `video_grid_thw` (patchified layouts).
    pub grid_thw: bool,
    /// `second_per_grid_ts` (`temporal_patch_size / sampled_fps` per video, Qwen2.5-VL).
    pub second_per_grid_ts: bool,
}

/// No extra outputs (the LLaVA families).
const NO_VIDEO_OUTPUTS: VideoOutputs = VideoOutputs { grid_thw: false, second_per_grid_ts: false };

/// How the decoder numbers positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Positions {
    /// One row `0..L` (1-D RoPE).
    Linear,
    /// M-RoPE: three rows (t, h, w) from `get_rope_index` over the vision grids; `interleaved`
    /// rotates the sections interleaved (Qwen3-VL) rather than in blocks (Qwen2.5-VL);
    /// `deepstack`: vision features of early vision layers are added after the first decoder
    /// layers (Qwen3-VL).
    MRope {
        /// `mrope_interleaved`.
        interleaved: bool,
        /// Time positions of a video advance by `tokens_per_second · second_per_grid_t` per
        /// temporal patch (Qwen2.5-VL) instead of splitting the video into one-frame grids
        /// (Qwen3-VL).
        seconds_per_grid: bool,
        /// DeepStack features (Qwen3-VL).
        deepstack: bool,
    },
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
    vision_markers: None,
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
    video_outputs: NO_VIDEO_OUTPUTS,
    positions: Positions::Linear,
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
    video_outputs: NO_VIDEO_OUTPUTS,
    positions: Positions::Linear,
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
    video_outputs: NO_VIDEO_OUTPUTS,
    positions: Positions::Linear,
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
    video_outputs: NO_VIDEO_OUTPUTS,
    positions: Positions::Linear,
};

/// The Qwen-VL processors' attributes: `<|image_pad|>` / `<|video_pad|>` placeholders wrapped
/// by the template in `<|vision_start|>` … `<|vision_end|>`; `merge_size` comes from the image /
/// video processor.
const QWEN_VL_TOKENS: ProcessorDefaults = ProcessorDefaults {
    image_token: "<|image_pad|>",
    video_token: Some("<|video_pad|>"),
    patch_size: None,
    num_additional_image_tokens: 0,
    strategy: None,
    num_image_tokens: None,
    vision_aspect_ratio: "",
    vision_markers: Some(("<|vision_start|>", "<|vision_end|>")),
};

/// Qwen2.5-VL.
pub const QWEN2_5_VL: FamilySpec = FamilySpec {
    family: Family::Qwen25Vl,
    name: "qwen2_5_vl",
    display_name: "Qwen2.5-VL",
    model_types: &["qwen2_5_vl"],
    architectures: &["Qwen2_5_VLForConditionalGeneration"],
    processor_class: "Qwen2_5_VLProcessor",
    image_class: "Qwen2VLImageProcessor",
    // The hub checkpoints have no video_preprocessor_config.json: transformers builds this class
    // from preprocessor_config.json.
    video_class: Some("Qwen2VLVideoProcessor"),
    image_layout: ImageLayout::Patchified,
    video_tokens: VideoTokens::GridMerged,
    image_key: "pixel_values",
    processor: QWEN_VL_TOKENS,
    // One vision graph encodes images and videos.
    video_encoder: GraphUse::Unused,
    image_newline: false,
    video_outputs: VideoOutputs { grid_thw: true, second_per_grid_ts: true },
    positions: Positions::MRope { interleaved: false, seconds_per_grid: true, deepstack: false },
};

/// Qwen3-VL.
pub const QWEN3_VL: FamilySpec = FamilySpec {
    family: Family::Qwen3Vl,
    name: "qwen3_vl",
    display_name: "Qwen3-VL",
    model_types: &["qwen3_vl"],
    architectures: &["Qwen3VLForConditionalGeneration"],
    processor_class: "Qwen3VLProcessor",
    image_class: "Qwen2VLImageProcessor",
    video_class: Some("Qwen3VLVideoProcessor"),
    image_layout: ImageLayout::Patchified,
    video_tokens: VideoTokens::GridMergedTimestamped,
    image_key: "pixel_values",
    processor: QWEN_VL_TOKENS,
    video_encoder: GraphUse::Unused,
    image_newline: false,
    video_outputs: VideoOutputs { grid_thw: true, second_per_grid_ts: false },
    positions: Positions::MRope { interleaved: true, seconds_per_grid: false, deepstack: true },
};

/// All families, in detection order.
pub const FAMILIES: [&FamilySpec; 6] =
    [&INTERLEAVE, &ONEVISION, &VIDEO_LLAVA, &LLAVA_NEXT_VIDEO, &QWEN2_5_VL, &QWEN3_VL];

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
        assert_eq!(Family::detect(Some("qwen2_5_vl"), &[]).ok(), Some(Family::Qwen25Vl));
        assert_eq!(
            Family::detect(None, &["Qwen3VLForConditionalGeneration".into()]).ok(),
            Some(Family::Qwen3Vl)
        );
        assert_eq!(
            class_defaults("Qwen2VLImageProcessorFast").map(|c| c.class),
            Some("Qwen2VLImageProcessor")
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
            // Patchified families have grids, and patch defaults on their classes.
            assert_eq!(spec.video_outputs.grid_thw, spec.image_layout.is_patchified());
            if spec.image_layout.is_patchified() {
                assert!(class_defaults(spec.image_class).and_then(|c| c.patch).is_some());
                let v = spec.video_class.and_then(class_defaults).and_then(|c| c.patch);
                assert!(v.is_some(), "{}", spec.name);
            }
        }
    }
}
