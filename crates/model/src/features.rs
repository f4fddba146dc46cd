//! How many placeholder tokens an image or a video becomes — which is how many feature rows
//! vision packs for it (`_get_number_of_features`, `_get_unpadded_features`,
//! `replace_image_token`, `replace_video_token` of the transformers processors).

use crate::anyres::{packed_grid, parse_anyres_max, PatchGrid};
use crate::config::ProcessorConfig;
use crate::error::ModelError;
use crate::family::{FamilySpec, ImageLayout, VideoTokens};

/// The rules that turn a [`PatchGrid`] or a video into a placeholder count: the family's
/// layout and the processor attributes (`processor_config.json` over the class defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FeatureRules {
    /// How images are patched.
    #[serde(skip)]
    pub layout: ImageLayout,
    /// How videos are counted.
    #[serde(skip)]
    pub video_tokens: VideoTokens,
    /// Vision patch size (`patch_size`).
    pub patch_size: Option<u32>,
    /// Extra tokens per image (`num_additional_image_tokens`, the CLS token).
    pub num_additional_image_tokens: u32,
    /// `vision_feature_select_strategy == "default"` (the CLS token is dropped again).
    pub strategy_default: bool,
    /// OneVision: tokens of the base image (`num_image_tokens`, 729).
    pub num_image_tokens: Option<u32>,
    /// OneVision: N of `vision_aspect_ratio = "anyres_max_N"`.
    pub max_num_patches: Option<u32>,
    /// Patchified layouts: the image processor's `merge_size` (placeholders are
    /// `t·h·w / merge²`; the processor sets the config's value over the class default).
    pub merge_size: Option<u32>,
}

const PROCESSOR_CONFIG: &str = "processor_config.json";

impl FeatureRules {
    /// Resolves the rules of `spec` from `processor_config.json` (absent fields take the family's
    /// defaults; a field the family needs and has no default for is [`ModelError::MissingField`]).
    pub fn resolve(spec: &FamilySpec, pc: &ProcessorConfig) -> Result<FeatureRules, ModelError> {
        let d = &spec.processor;
        let patch_size = pc.patch_size.or(d.patch_size);
        let merge_size = crate::family::class_defaults(spec.image_class)
            .and_then(|c| c.patch)
            .map(|p| p.merge_size);
        if matches!(spec.image_layout, ImageLayout::Plain | ImageLayout::AnyresNext)
            && patch_size.is_none()
        {
            return Err(ModelError::MissingField {
                file: PROCESSOR_CONFIG.into(),
                field: "patch_size".into(),
            });
        }
        if patch_size == Some(0) {
            return Err(ModelError::InvalidField {
                file: PROCESSOR_CONFIG.into(),
                field: "patch_size".into(),
                message: "must be positive".into(),
            });
        }
        let num_image_tokens = pc.num_image_tokens.or(d.num_image_tokens);
        let mut max_num_patches = None;
        if spec.image_layout == ImageLayout::AnyresOnevision {
            if num_image_tokens.is_none() {
                return Err(ModelError::MissingField {
                    file: PROCESSOR_CONFIG.into(),
                    field: "num_image_tokens".into(),
                });
            }
            let ar =
                pc.vision_aspect_ratio.clone().unwrap_or_else(|| d.vision_aspect_ratio.to_string());
            max_num_patches =
                Some(parse_anyres_max(&ar).ok_or_else(|| ModelError::InvalidField {
                    file: PROCESSOR_CONFIG.into(),
                    field: "vision_aspect_ratio".into(),
                    message: format!("expected \"anyres_max_N\", got {ar:?}"),
                })?);
        }
        let strategy = pc.vision_feature_select_strategy.as_deref().or(d.strategy);
        Ok(FeatureRules {
            layout: spec.image_layout,
            video_tokens: spec.video_tokens,
            patch_size,
            num_additional_image_tokens: pc
                .num_additional_image_tokens
                .unwrap_or(d.num_additional_image_tokens),
            strategy_default: strategy == Some("default"),
            num_image_tokens,
            max_num_patches,
            merge_size,
        })
    }

    /// Placeholders of a patchified `(t, h, w)` grid: `t·h·w / merge²`.
    pub fn grid_tokens(&self, thw: (u32, u32, u32)) -> usize {
        let m = self.merge_size.unwrap_or(1).max(1) as usize;
        thw.0 as usize * thw.1 as usize * thw.2 as usize / (m * m)
    }

    /// Placeholder tokens of one image cut as `grid`, with patches of `patch_px` `(h, w)` pixels.
    pub fn image_tokens(&self, grid: &PatchGrid, patch_px: (u32, u32)) -> usize {
        let (ph, pw) = patch_px;
        let adj = usize::from(self.strategy_default);
        let p = self.patch_size.unwrap_or(1).max(1);
        let anyres = |side: (u32, u32), max: Option<u32>| -> usize {
            match grid.tiles {
                Some(tiles) => {
                    let (rows, cols) = packed_grid(
                        grid.image_size,
                        tiles,
                        (side.0 as usize, side.1 as usize),
                        max,
                    );
                    rows * cols + rows
                }
                None => 0,
            }
        };
        let count = match self.layout {
            ImageLayout::Plain => ((ph / p) * (pw / p) + self.num_additional_image_tokens) as usize,
            ImageLayout::AnyresOnevision => {
                let nit = self.num_image_tokens.unwrap_or(0);
                if grid.multi_image {
                    nit as usize + 1
                } else {
                    let side = f64::from(nit).sqrt() as u32;
                    anyres((side, side), self.max_num_patches) + nit as usize
                }
            }
            ImageLayout::AnyresNext => {
                let (gh, gw) = (ph / p, pw / p);
                anyres((gh, gw), None) + (gh * gw + self.num_additional_image_tokens) as usize
            }
            ImageLayout::Patchified => grid.thw.map_or(0, |thw| self.grid_tokens(thw)),
        };
        count.saturating_sub(adj)
    }

    /// Placeholder tokens of a video of `frames` processed frames of `h × w` pixels.
    pub fn video_tokens(&self, frames: usize, h: usize, w: usize) -> usize {
        let p = self.patch_size.unwrap_or(1).max(1) as usize;
        match self.video_tokens {
            VideoTokens::FramesAsImages => 0,
            VideoTokens::OnevisionPooled => {
                let side = f64::from(self.num_image_tokens.unwrap_or(0)).sqrt() as usize;
                let pooled = side.div_ceil(2);
                frames * pooled * pooled + 1
            }
            VideoTokens::PerFrame => {
                ((h / p) * (w / p) + self.num_additional_image_tokens as usize) * frames
            }
            VideoTokens::NextPooled => (h / p) * (w / p) / 4 * frames,
            // Patchified videos are counted from their grid (`grid_tokens`); here `frames` is
            // the grid's t and `h`, `w` its patch rows and columns.
            VideoTokens::GridMerged | VideoTokens::GridMergedTimestamped => {
                self.grid_tokens((frames as u32, h as u32, w as u32))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anyres::anyres_grid;
    use crate::family::{LLAVA_NEXT_VIDEO, NEXT_PINPOINTS, ONEVISION, OV_PINPOINTS};

    fn pins(p: &[[u32; 2]]) -> Vec<(u32, u32)> {
        p.iter().map(|p| (p[0], p[1])).collect()
    }

    fn ov() -> FeatureRules {
        let pc: ProcessorConfig = serde_json::from_str(
            r#"{"num_image_tokens": 729, "vision_feature_select_strategy": "full"}"#,
        )
        .unwrap();
        FeatureRules::resolve(&ONEVISION, &pc).unwrap()
    }

    fn nv() -> FeatureRules {
        let pc: ProcessorConfig = serde_json::from_str(r#"{"patch_size": 14, "vision_feature_select_strategy": "default", "num_additional_image_tokens": 1}"#).unwrap();
        FeatureRules::resolve(&LLAVA_NEXT_VIDEO, &pc).unwrap()
    }

    fn ov_count(h: u32, w: u32) -> usize {
        let g = anyres_grid((h, w), &pins(&OV_PINPOINTS), 384).unwrap();
        ov().image_tokens(&g, (384, 384))
    }

    fn nv_count(h: u32, w: u32) -> usize {
        let g = anyres_grid((h, w), &pins(&NEXT_PINPOINTS), 336).unwrap();
        nv().image_tokens(&g, (336, 336))
    }

    /// hf-llava-family-spec §3.
    #[test]
    fn onevision_examples_from_spec() {
        assert_eq!(ov_count(899, 1024), 6551);
        assert_eq!(ov_count(480, 640), 2929);
        assert_eq!(ov_count(640, 480), 2943);
        assert_eq!(ov_count(384, 384), 1485);
        assert_eq!(ov_count(224, 224), 1485);
        assert_eq!(ov_count(1080, 1920), 7269);
        assert_eq!(ov_count(100, 1000), 1467);
        assert_eq!(ov().image_tokens(&PatchGrid::single((480, 640), true), (384, 384)), 730);
        assert_eq!(ov().video_tokens(8, 384, 384), 196 * 8 + 1);
    }

    #[test]
    fn next_examples_from_spec() {
        assert_eq!(nv_count(899, 1024), 2634);
        assert_eq!(nv_count(480, 640), 2340);
        assert_eq!(nv_count(336, 336), 1176);
        assert_eq!(nv_count(503, 316), 1526);
        assert_eq!(nv().video_tokens(8, 336, 336), 144 * 8);
    }

    #[test]
    fn missing_and_invalid_fields_are_named() {
        let e = FeatureRules::resolve(&LLAVA_NEXT_VIDEO, &ProcessorConfig::default()).unwrap_err();
        assert!(
            matches!(e, ModelError::MissingField { ref field, .. } if field == "patch_size"),
            "{e}"
        );
        let e = FeatureRules::resolve(&ONEVISION, &ProcessorConfig::default()).unwrap_err();
        assert!(
            matches!(e, ModelError::MissingField { ref field, .. } if field == "num_image_tokens"),
            "{e}"
        );
        let pc: ProcessorConfig =
            serde_json::from_str(r#"{"num_image_tokens": 729, "vision_aspect_ratio": "square"}"#)
                .unwrap();
        assert!(matches!(
            FeatureRules::resolve(&ONEVISION, &pc),
            Err(ModelError::InvalidField { .. })
        ));
    }
}
