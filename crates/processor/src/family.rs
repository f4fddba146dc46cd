//! Everything that differs between the four families, as one table of `const` specs.
//!
//! | | interleave | onevision | video-llava | next-video |
//! |---|---|---|---|---|
//! | `model_type` | `llava` | `llava_onevision` | `video_llava` | `llava_next_video` |
//! | images | plain 384² | anyres (36 pinpoints, max 9) / 2+ per sample: pad-to-square | shortest-edge + crop | anyres (5 pinpoints) |
//! | image tokens | 729 | anyres formula / 730 | 256 | anyres formula |
//! | videos | frames as `<image>`s | 196·T + 1 | 257·T | 144·T |
//! | image output key | `pixel_values` | `pixel_values` | `pixel_values_images` | `pixel_values` |
//!
//! Class defaults (used for fields missing from the config files) are the transformers 5.23
//! class attributes of the processor classes, in [`CLASS_DEFAULTS`].

use crate::config::{SizeDict, VisionProcessorConfig};
use crate::error::{ProcessorError, Result};
use crate::resize::{Backend, Filter};

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
    /// The family's spec.
    pub fn spec(self) -> &'static FamilySpec {
        match self {
            Family::Interleave => &INTERLEAVE,
            Family::Onevision => &ONEVISION,
            Family::VideoLlava => &VIDEO_LLAVA,
            Family::LlavaNextVideo => &LLAVA_NEXT_VIDEO,
        }
    }

    /// Detects the family from `config.json`'s `model_type`, then `architectures`.
    pub fn detect(model_type: Option<&str>, architectures: &[String]) -> Result<Family> {
        for spec in FAMILIES {
            if model_type.is_some_and(|m| spec.model_types.contains(&m)) {
                return Ok(spec.family);
            }
        }
        for spec in FAMILIES {
            if architectures.iter().any(|a| spec.architectures.contains(&a.as_str())) {
                return Ok(spec.family);
            }
        }
        Err(ProcessorError::UnsupportedModel {
            model_type: model_type.map(String::from),
            architectures: architectures.to_vec(),
        })
    }

    /// Short name (`interleave`, `onevision`, `video_llava`, `llava_next_video`).
    pub fn name(self) -> &'static str {
        self.spec().name
    }
}

/// How images are turned into patches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageLayout {
    /// One tensor per image: resize (+ crop), normalize. Output `(N, 3, H, W)`.
    Plain,
    /// LLaVA-OneVision anyres (`anyres_max_N` token budget); samples with 2+ images are padded to
    /// square and resized instead. Output `(N, P_max, 3, p, p)` + `image_sizes`.
    AnyresOnevision,
    /// LLaVA-NeXT anyres. Output `(N, P_max, 3, p, p)` + `image_sizes`.
    AnyresNext,
}

/// How many placeholder tokens a video of `T` frames becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoTokens {
    /// No video processor: a video is passed as its frames, each an `<image>`.
    FramesAsImages,
    /// `T · ceil(sqrt(num_image_tokens)/2)² + 1` (bilinear pooling + one newline per video).
    OnevisionPooled,
    /// `T · ((h/p)(w/p) + num_additional_image_tokens)` (CLS kept per frame).
    PerFrame,
    /// `T · (h/p)(w/p) / 4` (2×2 average pooling).
    NextPooled,
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
pub const NEXT_PINPOINTS: [[u32; 2]; 5] = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]];

/// Class defaults of every processor class these families use.
pub const CLASS_DEFAULTS: &[ClassDefaults] = &[
    ClassDefaults {
        class: "SiglipImageProcessor",
        size: SizeDict::hw(224, 224),
        do_center_crop: false,
        crop_size: None,
        mean: HALF,
        std: HALF,
        do_pad: false,
        pinpoints: &[],
        backends: BOTH,
    },
    ClassDefaults {
        class: "LlavaImageProcessor",
        size: SizeDict::shortest(224),
        do_center_crop: true,
        crop_size: Some(SizeDict::hw(224, 224)),
        mean: CLIP_MEAN,
        std: CLIP_STD,
        do_pad: false,
        pinpoints: &[],
        backends: BOTH,
    },
    ClassDefaults {
        class: "LlavaOnevisionImageProcessor",
        size: SizeDict::hw(384, 384),
        do_center_crop: false,
        crop_size: None,
        mean: CLIP_MEAN,
        std: CLIP_STD,
        do_pad: true,
        pinpoints: &OV_PINPOINTS,
        backends: BOTH,
    },
    ClassDefaults {
        class: "VideoLlavaImageProcessor",
        size: SizeDict::shortest(224),
        do_center_crop: true,
        crop_size: Some(SizeDict::hw(224, 224)),
        mean: CLIP_MEAN,
        std: CLIP_STD,
        do_pad: false,
        pinpoints: &[],
        backends: PIL_ONLY,
    },
    ClassDefaults {
        class: "LlavaNextImageProcessor",
        size: SizeDict::shortest(224),
        do_center_crop: true,
        crop_size: Some(SizeDict::hw(224, 224)),
        mean: CLIP_MEAN,
        std: CLIP_STD,
        do_pad: true,
        pinpoints: &NEXT_PINPOINTS,
        backends: BOTH,
    },
    ClassDefaults {
        class: "LlavaOnevisionVideoProcessor",
        size: SizeDict::hw(384, 384),
        do_center_crop: false,
        crop_size: None,
        mean: CLIP_MEAN,
        std: CLIP_STD,
        do_pad: false,
        pinpoints: &[],
        backends: TV_ONLY,
    },
    ClassDefaults {
        class: "VideoLlavaVideoProcessor",
        size: SizeDict::shortest(224),
        do_center_crop: true,
        crop_size: Some(SizeDict::hw(224, 224)),
        mean: CLIP_MEAN,
        std: CLIP_STD,
        do_pad: false,
        pinpoints: &[],
        backends: TV_ONLY,
    },
    ClassDefaults {
        class: "LlavaNextVideoVideoProcessor",
        size: SizeDict::shortest(224),
        do_center_crop: true,
        crop_size: Some(SizeDict::hw(224, 224)),
        mean: CLIP_MEAN,
        std: CLIP_STD,
        do_pad: false,
        pinpoints: &[],
        backends: TV_ONLY,
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
}

/// One family's row of the table.
#[derive(Debug)]
pub struct FamilySpec {
    /// The family.
    pub family: Family,
    /// Short name.
    pub name: &'static str,
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
    /// How images are patched.
    pub image_layout: ImageLayout,
    /// How many tokens a video becomes.
    pub video_tokens: VideoTokens,
    /// Output key of image pixels.
    pub image_key: &'static str,
    /// Processor defaults.
    pub processor: ProcessorDefaults,
}

/// LLaVA-Interleave.
pub const INTERLEAVE: FamilySpec = FamilySpec {
    family: Family::Interleave,
    name: "interleave",
    model_types: &["llava"],
    architectures: &["LlavaForConditionalGeneration"],
    processor_class: "LlavaProcessor",
    image_class: "SiglipImageProcessor",
    video_class: None,
    image_layout: ImageLayout::Plain,
    video_tokens: VideoTokens::FramesAsImages,
    image_key: "pixel_values",
    processor: ProcessorDefaults {
        image_token: "<image>",
        video_token: None,
        patch_size: None,
        num_additional_image_tokens: 0,
        strategy: None,
        num_image_tokens: None,
        vision_aspect_ratio: "",
    },
};

/// LLaVA-OneVision.
pub const ONEVISION: FamilySpec = FamilySpec {
    family: Family::Onevision,
    name: "onevision",
    model_types: &["llava_onevision"],
    architectures: &["LlavaOnevisionForConditionalGeneration"],
    processor_class: "LlavaOnevisionProcessor",
    image_class: "LlavaOnevisionImageProcessor",
    video_class: Some("LlavaOnevisionVideoProcessor"),
    image_layout: ImageLayout::AnyresOnevision,
    video_tokens: VideoTokens::OnevisionPooled,
    image_key: "pixel_values",
    processor: ProcessorDefaults {
        image_token: "<image>",
        video_token: Some("<video>"),
        patch_size: None,
        num_additional_image_tokens: 0,
        strategy: None,
        num_image_tokens: None,
        vision_aspect_ratio: "anyres_max_9",
    },
};

/// Video-LLaVA.
pub const VIDEO_LLAVA: FamilySpec = FamilySpec {
    family: Family::VideoLlava,
    name: "video_llava",
    model_types: &["video_llava"],
    architectures: &["VideoLlavaForConditionalGeneration"],
    processor_class: "VideoLlavaProcessor",
    image_class: "VideoLlavaImageProcessor",
    video_class: Some("VideoLlavaVideoProcessor"),
    image_layout: ImageLayout::Plain,
    video_tokens: VideoTokens::PerFrame,
    image_key: "pixel_values_images",
    processor: ProcessorDefaults {
        image_token: "<image>",
        video_token: Some("<video>"),
        patch_size: Some(14),
        num_additional_image_tokens: 1,
        strategy: Some("default"),
        num_image_tokens: None,
        vision_aspect_ratio: "",
    },
};

/// LLaVA-NeXT-Video.
pub const LLAVA_NEXT_VIDEO: FamilySpec = FamilySpec {
    family: Family::LlavaNextVideo,
    name: "llava_next_video",
    model_types: &["llava_next_video"],
    architectures: &["LlavaNextVideoForConditionalGeneration"],
    processor_class: "LlavaNextVideoProcessor",
    image_class: "LlavaNextImageProcessor",
    video_class: Some("LlavaNextVideoVideoProcessor"),
    image_layout: ImageLayout::AnyresNext,
    video_tokens: VideoTokens::NextPooled,
    image_key: "pixel_values",
    processor: ProcessorDefaults {
        image_token: "<image>",
        video_token: Some("<video>"),
        patch_size: None,
        num_additional_image_tokens: 0,
        strategy: None,
        num_image_tokens: None,
        vision_aspect_ratio: "",
    },
};

/// All families, in detection order.
pub const FAMILIES: [&FamilySpec; 4] = [&INTERLEAVE, &ONEVISION, &VIDEO_LLAVA, &LLAVA_NEXT_VIDEO];

/// Largest `size` / `crop_size` / pinpoint side accepted from a config file (transformers' own
/// checkpoints use at most 2304).
pub const MAX_CONFIG_SIDE: u32 = 8192;

/// Effective image/video processor settings (config values over class defaults).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VisionSettings {
    /// The processor class.
    pub class: String,
    /// `do_resize`.
    pub do_resize: bool,
    /// `size`.
    pub size: SizeDict,
    /// `resample`.
    pub filter: Filter,
    /// `do_center_crop`.
    pub do_center_crop: bool,
    /// `crop_size`.
    pub crop_size: Option<SizeDict>,
    /// `do_rescale`.
    pub do_rescale: bool,
    /// `rescale_factor`.
    pub rescale_factor: f64,
    /// `do_normalize`.
    pub do_normalize: bool,
    /// `image_mean`.
    pub mean: [f64; 3],
    /// `image_std`.
    pub std: [f64; 3],
    /// `do_pad`.
    pub do_pad: bool,
    /// `image_grid_pinpoints` as `(height, width)`.
    pub pinpoints: Vec<(u32, u32)>,
    /// Backends the class supports.
    #[serde(skip)]
    pub backends: &'static [Backend],
}

impl VisionSettings {
    /// Merges `cfg` (from `file`) over the class defaults.
    pub fn resolve(cfg: &VisionProcessorConfig, file: &str, default_class: &str) -> Result<VisionSettings> {
        let class = cfg
            .image_processor_type
            .as_deref()
            .or(cfg.video_processor_type.as_deref())
            .unwrap_or(default_class)
            .to_string();
        let d = class_defaults(&class).ok_or_else(|| ProcessorError::InvalidField {
            file: file.into(),
            field: if cfg.video_processor_type.is_some() { "video_processor_type" } else { "image_processor_type" }.into(),
            message: format!("unsupported processor class {class:?}"),
        })?;
        let resample = cfg.resample.unwrap_or(3);
        let filter = Filter::from_pil_code(resample).ok_or_else(|| ProcessorError::InvalidField {
            file: file.into(),
            field: "resample".into(),
            message: format!("resample {resample} is not supported (2 = bilinear, 3 = bicubic)"),
        })?;
        let mean = match &cfg.image_mean {
            Some(m) => m.channels(file, "image_mean")?,
            None => d.mean,
        };
        let std = match &cfg.image_std {
            Some(m) => m.channels(file, "image_std")?,
            None => d.std,
        };
        if std.iter().any(|&s| s == 0.0 || !s.is_finite()) {
            return Err(ProcessorError::InvalidField {
                file: file.into(),
                field: "image_std".into(),
                message: "must be finite and non-zero".into(),
            });
        }
        let size = cfg.size.unwrap_or(d.size);
        let size_ok = matches!((size.height, size.width), (Some(h), Some(w)) if h > 0 && w > 0)
            || size.shortest_edge.is_some_and(|s| s > 0);
        if !size_ok {
            return Err(ProcessorError::InvalidField {
                file: file.into(),
                field: "size".into(),
                message: "needs positive `height` and `width`, or `shortest_edge`".into(),
            });
        }
        let do_center_crop = cfg.do_center_crop.unwrap_or(d.do_center_crop);
        let crop_size = cfg.crop_size.or(d.crop_size);
        if do_center_crop && !matches!(crop_size, Some(SizeDict { height: Some(h), width: Some(w), .. }) if h > 0 && w > 0)
        {
            return Err(ProcessorError::InvalidField {
                file: file.into(),
                field: "crop_size".into(),
                message: "do_center_crop needs a crop_size with positive height and width".into(),
            });
        }
        let pinpoints = match &cfg.image_grid_pinpoints {
            Some(p) => p
                .iter()
                .map(|hw| match hw.as_slice() {
                    [h, w] if *h > 0 && *w > 0 => Ok((*h, *w)),
                    _ => Err(ProcessorError::InvalidField {
                        file: file.into(),
                        field: "image_grid_pinpoints".into(),
                        message: format!("each entry must be [height, width] > 0, got {hw:?}"),
                    }),
                })
                .collect::<Result<Vec<_>>>()?,
            None => d.pinpoints.iter().map(|p| (p[0], p[1])).collect(),
        };
        let too_big = |v: Option<u32>| v.is_some_and(|v| v > MAX_CONFIG_SIDE);
        for (field, sd) in [("size", Some(size)), ("crop_size", crop_size)] {
            if let Some(sd) = sd {
                if too_big(sd.height) || too_big(sd.width) || too_big(sd.shortest_edge) || too_big(sd.longest_edge) {
                    return Err(ProcessorError::InvalidField {
                        file: file.into(),
                        field: field.into(),
                        message: format!("sides above {MAX_CONFIG_SIDE} are not supported"),
                    });
                }
            }
        }
        if pinpoints.iter().any(|&(h, w)| h > MAX_CONFIG_SIDE || w > MAX_CONFIG_SIDE) {
            return Err(ProcessorError::InvalidField {
                file: file.into(),
                field: "image_grid_pinpoints".into(),
                message: format!("sides above {MAX_CONFIG_SIDE} are not supported"),
            });
        }
        let rescale_factor = cfg.rescale_factor.unwrap_or(1.0 / 255.0);
        if !(rescale_factor.is_finite() && rescale_factor != 0.0) {
            return Err(ProcessorError::InvalidField {
                file: file.into(),
                field: "rescale_factor".into(),
                message: "must be finite and non-zero".into(),
            });
        }
        Ok(VisionSettings {
            class,
            do_resize: cfg.do_resize.unwrap_or(true),
            size,
            filter,
            do_center_crop,
            crop_size: if do_center_crop { crop_size } else { crop_size.filter(|_| false) },
            do_rescale: cfg.do_rescale.unwrap_or(true),
            rescale_factor,
            do_normalize: cfg.do_normalize.unwrap_or(true),
            mean,
            std,
            do_pad: cfg.do_pad.unwrap_or(d.do_pad),
            pinpoints,
            backends: d.backends,
        })
    }

    /// The backend transformers 5 picks for this class when none is requested: torchvision
    /// where the class has a torchvision implementation, else PIL.
    pub fn default_backend(&self) -> Backend {
        if self.backends.contains(&Backend::Torchvision) {
            Backend::Torchvision
        } else {
            Backend::Pil
        }
    }
}

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
        assert!(matches!(Family::detect(Some("bert"), &[]), Err(ProcessorError::UnsupportedModel { .. })));
    }
}
