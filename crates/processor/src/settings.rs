//! Effective image / video processor settings: the config file's values over the class
//! defaults of the family table (`vidlm_model::family::CLASS_DEFAULTS`).

use crate::resize::{Backend, Filter};
use vidlm_model::config::{SizeDict, VisionProcessorConfig};
use vidlm_model::family::{class_defaults, ClassDefaults, PixelBudget, MAX_CONFIG_SIDE};
use vidlm_model::sampling::{FrameBudget, FrameRule};
use vidlm_model::ModelError;

/// Patchified processors' settings (config over class defaults).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PatchSettings {
    /// `patch_size`.
    pub patch_size: usize,
    /// `temporal_patch_size`.
    pub temporal_patch_size: usize,
    /// `merge_size`.
    pub merge_size: usize,
    /// Lower pixel budget (`size.shortest_edge` / `min_pixels`).
    pub min_pixels: u64,
    /// Upper pixel budget (`size.longest_edge` / `max_pixels`).
    pub max_pixels: u64,
    /// Whether the budget bounds each frame or the whole clip.
    #[serde(skip)]
    pub budget: PixelBudget,
    /// Frame-index formula.
    pub frame_rule: FrameRule,
    /// Frame settings.
    pub frames: FrameBudget,
    /// Whether the class takes `min_pixels` / `max_pixels` call arguments.
    pub pixel_kwargs: bool,
}

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
    /// Patchified classes: patch, merge, pixel budget and frame settings.
    pub patch: Option<PatchSettings>,
}

impl VisionSettings {
    /// Merges `cfg` (from `file`) over the class defaults, checking every value the processor
    /// will use.
    pub fn resolve(
        cfg: &VisionProcessorConfig,
        file: &str,
        default_class: &str,
    ) -> Result<VisionSettings, ModelError> {
        let class = cfg
            .image_processor_type
            .as_deref()
            .or(cfg.video_processor_type.as_deref())
            .unwrap_or(default_class)
            .to_string();
        Self::resolve_class(cfg, file, class)
    }

    /// Like [`Self::resolve`] for a video processor: the class is `video_processor_type` or the
    /// family's video class, never the `image_processor_type` of a `preprocessor_config.json`
    /// that stands in for a missing video config (as transformers' `AutoVideoProcessor` does).
    pub fn resolve_video(
        cfg: &VisionProcessorConfig,
        file: &str,
        default_class: &str,
    ) -> Result<VisionSettings, ModelError> {
        let class = cfg.video_processor_type.as_deref().unwrap_or(default_class).to_string();
        Self::resolve_class(cfg, file, class)
    }

    fn resolve_class(
        cfg: &VisionProcessorConfig,
        file: &str,
        class: String,
    ) -> Result<VisionSettings, ModelError> {
        let d = processor_class(cfg, file, &class)?;
        let filter = resample_filter(cfg, file)?;
        let (mean, std) = normalization(cfg, file, d)?;
        let mut size = cfg.size.unwrap_or(d.size);
        let patch = patch_settings(cfg, file, d, &mut size)?;
        check_size(size, patch.is_some(), file)?;
        let do_center_crop = cfg.do_center_crop.unwrap_or(d.do_center_crop);
        let crop_size = cfg.crop_size.or(d.crop_size);
        check_crop_size(do_center_crop, crop_size, file)?;
        let pinpoints = grid_pinpoints(cfg, file, d)?;
        // Patchified classes' `size` is a pixel budget, not sides.
        check_sides(patch.is_none().then_some(size), crop_size, &pinpoints, file)?;
        let rescale_factor = rescale_factor(cfg, file)?;
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
            patch,
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

fn invalid(file: &str, field: &str, message: impl Into<String>) -> ModelError {
    ModelError::InvalidField { file: file.into(), field: field.into(), message: message.into() }
}

/// The defaults of processor `class` from the family table.
fn processor_class(
    cfg: &VisionProcessorConfig,
    file: &str,
    class: &str,
) -> Result<&'static ClassDefaults, ModelError> {
    let field = if cfg.video_processor_type.is_some() {
        "video_processor_type"
    } else {
        "image_processor_type"
    };
    class_defaults(class)
        .ok_or_else(|| invalid(file, field, format!("unsupported processor class {class:?}")))
}

/// `resample` (PIL's code, bicubic by default) as a resize filter.
fn resample_filter(cfg: &VisionProcessorConfig, file: &str) -> Result<Filter, ModelError> {
    let resample = cfg.resample.unwrap_or(3);
    Filter::from_pil_code(resample).ok_or_else(|| {
        invalid(
            file,
            "resample",
            format!("resample {resample} is not supported (2 = bilinear, 3 = bicubic)"),
        )
    })
}

/// `image_mean` and `image_std` (three channels each; the std finite and non-zero).
fn normalization(
    cfg: &VisionProcessorConfig,
    file: &str,
    d: &ClassDefaults,
) -> Result<([f64; 3], [f64; 3]), ModelError> {
    let mean = match &cfg.image_mean {
        Some(m) => m.channels(file, "image_mean")?,
        None => d.mean,
    };
    let std = match &cfg.image_std {
        Some(m) => m.channels(file, "image_std")?,
        None => d.std,
    };
    if std.iter().any(|&s| s == 0.0 || !s.is_finite()) {
        return Err(invalid(file, "image_std", "must be finite and non-zero"));
    }
    Ok((mean, std))
}

/// A patchified class's settings (Qwen-VL): `min_pixels` / `max_pixels` override `size`'s
/// budget (as the class's `__init__` does), then patch, merge and frame settings; `None` for
/// the other classes.
fn patch_settings(
    cfg: &VisionProcessorConfig,
    file: &str,
    d: &ClassDefaults,
    size: &mut SizeDict,
) -> Result<Option<PatchSettings>, ModelError> {
    let invalid = |field: &str, message: String| invalid(file, field, message);
    let patch = match d.patch {
        None => None,
        Some(pd) => {
            // `__init__`: min_pixels / max_pixels override size's budget.
            let pixels = |v: Option<u64>, field: &str| -> Result<Option<u32>, ModelError> {
                v.map(|v| {
                    u32::try_from(v)
                        .ok()
                        .filter(|v| *v > 0)
                        .ok_or_else(|| invalid(field, format!("{v} is not in 1..=2^32-1")))
                })
                .transpose()
            };
            if pd.pixel_kwargs {
                if let Some(v) = pixels(cfg.min_pixels, "min_pixels")? {
                    size.shortest_edge = Some(v);
                }
                if let Some(v) = pixels(cfg.max_pixels, "max_pixels")? {
                    size.longest_edge = Some(v);
                }
            }
            let (Some(min), Some(max)) = (size.shortest_edge, size.longest_edge) else {
                return Err(invalid(
                    "size",
                    "needs `shortest_edge` and `longest_edge` (the pixel budget)".into(),
                ));
            };
            let positive = |v: Option<u32>, dv: u32, field: &str| -> Result<usize, ModelError> {
                match v.unwrap_or(dv) {
                    0 => Err(invalid(field, "must be positive".into())),
                    v if v > 1024 => Err(invalid(field, format!("{v} is too large"))),
                    v => Ok(v as usize),
                }
            };
            let patch_size = positive(cfg.patch_size, pd.patch_size, "patch_size")?;
            let temporal_patch_size =
                positive(cfg.temporal_patch_size, pd.temporal_patch_size, "temporal_patch_size")?;
            let merge_size = positive(cfg.merge_size, pd.merge_size, "merge_size")?;
            let min_frames = cfg.min_frames.unwrap_or(pd.min_frames) as usize;
            let max_frames = cfg.max_frames.unwrap_or(pd.max_frames) as usize;
            if max_frames == 0 {
                return Err(invalid("max_frames", "must be positive".into()));
            }
            if let Some(f) = cfg.fps.filter(|f| !(f.is_finite() && *f > 0.0)) {
                return Err(invalid("fps", format!("{f} is not a positive number")));
            }
            Some(PatchSettings {
                patch_size,
                temporal_patch_size,
                merge_size,
                min_pixels: u64::from(min),
                max_pixels: u64::from(max),
                budget: pd.budget,
                frame_rule: pd.frame_rule,
                frames: FrameBudget {
                    temporal_patch_size,
                    min_frames,
                    max_frames,
                    do_sample_frames: cfg.do_sample_frames.unwrap_or(pd.do_sample_frames),
                    fps: cfg.fps.or(pd.fps),
                    num_frames: cfg.num_frames.map(|n| n as usize),
                },
                pixel_kwargs: pd.pixel_kwargs,
            })
        }
    };
    Ok(patch)
}

/// `size` needs positive `height` and `width`, or a positive `shortest_edge` (a patchified
/// class's `size` is its pixel budget, checked by [`patch_settings`]).
fn check_size(size: SizeDict, patchified: bool, file: &str) -> Result<(), ModelError> {
    let size_ok = patchified
        || matches!((size.height, size.width), (Some(h), Some(w)) if h > 0 && w > 0)
        || size.shortest_edge.is_some_and(|s| s > 0);
    if !size_ok {
        return Err(invalid(
            file,
            "size",
            "needs positive `height` and `width`, or `shortest_edge`",
        ));
    }
    Ok(())
}

/// A center crop needs a `crop_size` with positive height and width.
fn check_crop_size(
    do_center_crop: bool,
    crop_size: Option<SizeDict>,
    file: &str,
) -> Result<(), ModelError> {
    let positive = matches!(
        crop_size,
        Some(SizeDict { height: Some(h), width: Some(w), .. }) if h > 0 && w > 0
    );
    if do_center_crop && !positive {
        return Err(invalid(
            file,
            "crop_size",
            "do_center_crop needs a crop_size with positive height and width",
        ));
    }
    Ok(())
}

/// `image_grid_pinpoints` as `(height, width)` pairs, each side positive.
fn grid_pinpoints(
    cfg: &VisionProcessorConfig,
    file: &str,
    d: &ClassDefaults,
) -> Result<Vec<(u32, u32)>, ModelError> {
    match &cfg.image_grid_pinpoints {
        Some(p) => p
            .iter()
            .map(|hw| match hw.as_slice() {
                [h, w] if *h > 0 && *w > 0 => Ok((*h, *w)),
                _ => Err(invalid(
                    file,
                    "image_grid_pinpoints",
                    format!("each entry must be [height, width] > 0, got {hw:?}"),
                )),
            })
            .collect(),
        None => Ok(d.pinpoints.iter().map(|p| (p[0], p[1])).collect()),
    }
}

/// No side of `size`, `crop_size` or a pinpoint above [`MAX_CONFIG_SIDE`].
fn check_sides(
    size: Option<SizeDict>,
    crop_size: Option<SizeDict>,
    pinpoints: &[(u32, u32)],
    file: &str,
) -> Result<(), ModelError> {
    let too_big = |v: Option<u32>| v.is_some_and(|v| v > MAX_CONFIG_SIDE);
    let message = format!("sides above {MAX_CONFIG_SIDE} are not supported");
    for (field, sd) in [("size", size), ("crop_size", crop_size)] {
        if let Some(sd) = sd {
            if too_big(sd.height)
                || too_big(sd.width)
                || too_big(sd.shortest_edge)
                || too_big(sd.longest_edge)
            {
                return Err(invalid(file, field, message));
            }
        }
    }
    if pinpoints.iter().any(|&(h, w)| h > MAX_CONFIG_SIDE || w > MAX_CONFIG_SIDE) {
        return Err(invalid(file, "image_grid_pinpoints", message));
    }
    Ok(())
}

/// `rescale_factor` (1/255 by default), finite and non-zero.
fn rescale_factor(cfg: &VisionProcessorConfig, file: &str) -> Result<f64, ModelError> {
    let rescale_factor = cfg.rescale_factor.unwrap_or(1.0 / 255.0);
    if !(rescale_factor.is_finite() && rescale_factor != 0.0) {
        return Err(invalid(file, "rescale_factor", "must be finite and non-zero"));
    }
    Ok(rescale_factor)
}
