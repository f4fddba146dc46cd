//! Effective image / video processor settings: the config file's values over the class
//! defaults of the family table (`vidlm_model::family::CLASS_DEFAULTS`).

use crate::resize::{Backend, Filter};
use vidlm_model::config::{SizeDict, VisionProcessorConfig};
use vidlm_model::family::{class_defaults, ClassDefaults, MAX_CONFIG_SIDE};
use vidlm_model::ModelError;

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
    /// Merges `cfg` (from `file`) over the class defaults, checking every value the processor
    /// will use.
    pub fn resolve(
        cfg: &VisionProcessorConfig,
        file: &str,
        default_class: &str,
    ) -> Result<VisionSettings, ModelError> {
        let (class, d) = processor_class(cfg, file, default_class)?;
        let filter = resample_filter(cfg, file)?;
        let (mean, std) = normalization(cfg, file, d)?;
        let size = cfg.size.unwrap_or(d.size);
        check_size(size, file)?;
        let do_center_crop = cfg.do_center_crop.unwrap_or(d.do_center_crop);
        let crop_size = cfg.crop_size.or(d.crop_size);
        check_crop_size(do_center_crop, crop_size, file)?;
        let pinpoints = grid_pinpoints(cfg, file, d)?;
        check_sides(size, crop_size, &pinpoints, file)?;
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

/// The processor class (`image_processor_type`, else `video_processor_type`, else the family's
/// default) and its defaults from the family table.
fn processor_class(
    cfg: &VisionProcessorConfig,
    file: &str,
    default_class: &str,
) -> Result<(String, &'static ClassDefaults), ModelError> {
    let class = cfg
        .image_processor_type
        .as_deref()
        .or(cfg.video_processor_type.as_deref())
        .unwrap_or(default_class)
        .to_string();
    let field = if cfg.video_processor_type.is_some() {
        "video_processor_type"
    } else {
        "image_processor_type"
    };
    let defaults = class_defaults(&class)
        .ok_or_else(|| invalid(file, field, format!("unsupported processor class {class:?}")))?;
    Ok((class, defaults))
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

/// `size` needs positive `height` and `width`, or a positive `shortest_edge`.
fn check_size(size: SizeDict, file: &str) -> Result<(), ModelError> {
    let size_ok = matches!((size.height, size.width), (Some(h), Some(w)) if h > 0 && w > 0)
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
    size: SizeDict,
    crop_size: Option<SizeDict>,
    pinpoints: &[(u32, u32)],
    file: &str,
) -> Result<(), ModelError> {
    let too_big = |v: Option<u32>| v.is_some_and(|v| v > MAX_CONFIG_SIDE);
    let message = format!("sides above {MAX_CONFIG_SIDE} are not supported");
    for (field, sd) in [("size", Some(size)), ("crop_size", crop_size)] {
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
