//! # vidlm-vision — image and video features for LLaVA-family models on ONNX Runtime
//!
//! Runs the vision graphs of vidlm's ONNX layout and does the host-side steps the graphs leave
//! out, so that the result is exactly what transformers' `get_image_features` /
//! `get_video_features` return:
//!
//! | family | images | videos |
//! |---|---|---|
//! | LLaVA-Interleave (`llava`) | `vision_encoder` rows | frames through `vision_encoder`, concatenated |
//! | LLaVA-OneVision (`llava_onevision`) | anyres: `vision_encoder` per patch → stitch, unpad, `anyres_max_9` bilinear downscale, `image_newline` per row, base first; multi-image mode: rows + one newline | `video_encoder` (pooling + newline inside); without it: `vision_encoder` + host bilinear pooling + newline |
//! | Video-LLaVA (`video_llava`) | `vision_encoder` (image tower) | `video_encoder` (video tower) |
//! | LLaVA-NeXT-Video (`llava_next_video`) | anyres like OV without the downscale | `video_encoder` (pooling inside) |
//!
//! * Frames and tiles go through ONNX Runtime in chunks of [`VisionOptions::max_batch`] images,
//!   so memory stays bounded for long videos.
//! * Input names and element types (f32/f16) are read from the sessions; the `image_newline`
//!   vector comes from the export (`onnx/image_newline.safetensors`).
//! * The [`anyres`] module holds the pure math (`select_best_resolution`, `unpad_image`,
//!   bilinear interpolation, tile stitching) and is usable without any model.
//!
//! ```
//! use vidlm_vision::anyres::{anyres_grid_shape, pack_image, PackStyle};
//!
//! // OneVision, 899x1024 image: 3x3 tiles of 384 px + base -> 6551 feature rows (spec §3).
//! let pins: Vec<[usize; 2]> = (1..=6).flat_map(|a| (1..=6).map(move |b| [384 * a, 384 * b])).collect();
//! let (gh, gw) = anyres_grid_shape(899, 1024, &pins, 384).unwrap();
//! assert_eq!((gh, gw), (3, 3));
//! let patches = vec![0.0f32; (1 + gh * gw) * 27 * 27]; // width-1 features for the demo
//! let packed = pack_image(&patches, 10, 27, 1, (899, 1024), &pins, 384, Some(&[1.0]),
//!                         PackStyle::OneVision { max_num_patches: 9 }).unwrap();
//! assert_eq!(packed.len(), 6551);
//! ```

pub mod anyres;

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use half::f16;
use serde::Deserialize;
use vidlm_ort::ort::session::SessionInputValue;
use vidlm_ort::ort::value::{DynValue, TensorRef};
use vidlm_ort::{load_session, LoadedSession, OrtError, Provider, SessionOptions, TensorElementType, TensorInfo};

use anyres::PackStyle;

/// Errors of the vision runtime.
#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    /// ONNX Runtime set-up or session loading failed (includes a missing graph).
    #[error(transparent)]
    Ort(#[from] OrtError),
    /// ONNX Runtime failed while running a graph.
    #[error("ONNX Runtime error in {path}: {source}")]
    Runtime {
        /// The graph.
        path: PathBuf,
        /// ORT's error.
        #[source]
        source: vidlm_ort::ort::Error,
    },
    /// The graph does not have the expected interface.
    #[error("{path}: {message}")]
    UnexpectedGraph {
        /// The graph.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Shapes disagree.
    #[error("shape error: {0}")]
    Shape(String),
    /// A required file is missing or unreadable.
    #[error("cannot read {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The model family is not supported or the request does not fit it.
    #[error("{0}")]
    Unsupported(String),
}

/// The four LLaVA families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// LLaVA-Interleave (`model_type` `llava`).
    Interleave,
    /// LLaVA-OneVision (`llava_onevision`).
    OneVision,
    /// Video-LLaVA (`video_llava`).
    VideoLlava,
    /// LLaVA-NeXT-Video (`llava_next_video`).
    NextVideo,
}

impl Family {
    /// From `config.json`'s `model_type`.
    pub fn from_model_type(t: &str) -> Option<Self> {
        match t {
            "llava" => Some(Family::Interleave),
            "llava_onevision" => Some(Family::OneVision),
            "video_llava" => Some(Family::VideoLlava),
            "llava_next_video" => Some(Family::NextVideo),
            _ => None,
        }
    }
}

/// The vision part of `config.json` (field names as in transformers).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VisionModelConfig {
    /// `model_type`.
    pub model_type: String,
    /// `vision_config`.
    pub vision_config: VisionTowerConfig,
    /// `image_grid_pinpoints` ([H, W] pairs) for anyres families.
    #[serde(default)]
    pub image_grid_pinpoints: Option<Vec<[usize; 2]>>,
    /// `vision_aspect_ratio` (OneVision: `anyres_max_9`).
    #[serde(default)]
    pub vision_aspect_ratio: Option<String>,
}

/// `vision_config`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VisionTowerConfig {
    /// Input side in pixels.
    pub image_size: usize,
    /// Patch side in pixels.
    pub patch_size: usize,
}

impl VisionModelConfig {
    /// Reads `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, VisionError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| VisionError::File { path: path.to_path_buf(), message: e.to_string() })?;
        serde_json::from_str(&text).map_err(|e| VisionError::File { path: path.to_path_buf(), message: e.to_string() })
    }

    /// Family of the model.
    pub fn family(&self) -> Result<Family, VisionError> {
        Family::from_model_type(&self.model_type)
            .ok_or_else(|| VisionError::Unsupported(format!("unsupported model_type `{}`", self.model_type)))
    }

    /// Patch grid side (`image_size / patch_size`).
    pub fn grid_side(&self) -> usize {
        self.vision_config.image_size.checked_div(self.vision_config.patch_size).unwrap_or(0)
    }

    fn max_num_patches(&self) -> usize {
        self.vision_aspect_ratio
            .as_deref()
            .and_then(|s| s.strip_prefix("anyres_max_"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(9)
    }
}

/// Reads `image_newline` from a safetensors file (a 1-D f32/f16/bf16 tensor named
/// `image_newline`, or the file's only tensor).
pub fn read_image_newline(path: impl AsRef<Path>) -> Result<Vec<f32>, VisionError> {
    let path = path.as_ref();
    let ferr = |m: String| VisionError::File { path: path.to_path_buf(), message: m };
    let bytes = std::fs::read(path).map_err(|e| ferr(e.to_string()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| ferr(e.to_string()))?;
    let view = match st.tensor("image_newline") {
        Ok(v) => v,
        Err(_) => {
            let all = st.tensors();
            match all.as_slice() {
                [(_, v)] => v.clone(),
                _ => return Err(ferr("no `image_newline` tensor".into())),
            }
        }
    };
    let data = view.data();
    let vals: Vec<f32> = match view.dtype() {
        safetensors::Dtype::F32 => data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        safetensors::Dtype::F16 => data.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        safetensors::Dtype::BF16 => data.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        other => return Err(ferr(format!("image_newline has unsupported dtype {other:?}"))),
    };
    if view.shape().len() != 1 {
        return Err(ferr(format!("image_newline has shape {:?}, expected 1-D", view.shape())));
    }
    Ok(vals)
}

/// How to load a [`VisionEncoder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisionOptions {
    /// Session options (device, threads).
    pub session: SessionOptions,
    /// Most images/frames per ONNX Runtime call (bounds memory on long videos).
    pub max_batch: usize,
    /// Precision suffix of the vision graphs (`""` = fp32, `"_fp16"`, …).
    pub suffix: String,
}

impl Default for VisionOptions {
    fn default() -> Self {
        VisionOptions { session: SessionOptions::default(), max_batch: 8, suffix: String::new() }
    }
}

/// A single-input, single-output float graph.
#[derive(Debug)]
struct Graph {
    s: LoadedSession,
    input: TensorInfo,
    input_type: TensorElementType,
    output: String,
}

impl Graph {
    fn new(s: LoadedSession, rank: usize) -> Result<Self, VisionError> {
        let bad = |m: String| VisionError::UnexpectedGraph { path: s.path.clone(), message: m };
        let [input] = s.inputs.as_slice() else {
            return Err(bad(format!("expected exactly one input, found {:?}", s.inputs.iter().map(|i| &i.name).collect::<Vec<_>>())));
        };
        let input = input.clone();
        let input_type = match input.elem_type {
            Some(t @ (TensorElementType::Float32 | TensorElementType::Float16)) => t,
            other => return Err(bad(format!("input `{}` is {other:?}, expected float32 or float16", input.name))),
        };
        if input.rank() != rank {
            return Err(bad(format!("input `{}` has rank {}, expected {rank}", input.name, input.rank())));
        }
        let output = s.outputs.first().ok_or_else(|| bad("no output".into()))?.name.clone();
        Ok(Graph { s, input, input_type, output })
    }

    /// Runs on `data` of `shape`; returns (output shape, f32 values).
    fn run(&mut self, data: &[f32], shape: &[usize]) -> Result<(Vec<usize>, Vec<f32>), VisionError> {
        let path = self.s.path.clone();
        let err = |e: vidlm_ort::ort::Error| VisionError::Runtime { path: path.clone(), source: e };
        // Static input dims must match (e.g. image size).
        for (i, (&want, &got)) in self.input.shape.iter().zip(shape).enumerate() {
            if want > 0 && want as usize != got {
                return Err(VisionError::Shape(format!(
                    "{}: input `{}` axis {i} must be {want}, got {got}",
                    path.display(),
                    self.input.name
                )));
            }
        }
        let half_buf: Vec<f16>;
        let value: SessionInputValue<'_> = match self.input_type {
            TensorElementType::Float16 => {
                half_buf = data.iter().map(|&x| f16::from_f32(x)).collect();
                TensorRef::from_array_view((shape.to_vec(), &half_buf[..])).map_err(err)?.into()
            }
            _ => TensorRef::from_array_view((shape.to_vec(), data)).map_err(err)?.into(),
        };
        let name = self.input.name.clone();
        let outputs = self.s.session.run(vec![(Cow::Owned(name), value)]).map_err(err)?;
        let v = outputs.get(&self.output).ok_or_else(|| VisionError::Shape(format!("{}: no output `{}`", path.display(), self.output)))?;
        let out_shape: Vec<usize> = v.dtype().tensor_shape().map(|s| s.iter().map(|&d| d.max(0) as usize).collect()).unwrap_or_default();
        let vals = to_f32(v, &path)?;
        Ok((out_shape, vals))
    }
}

fn to_f32(v: &DynValue, path: &Path) -> Result<Vec<f32>, VisionError> {
    let err = |e: vidlm_ort::ort::Error| VisionError::Runtime { path: path.to_path_buf(), source: e };
    match v.dtype().tensor_type() {
        Some(TensorElementType::Float32) => Ok(v.try_extract_tensor::<f32>().map_err(err)?.1.to_vec()),
        Some(TensorElementType::Float16) => Ok(v.try_extract_tensor::<f16>().map_err(err)?.1.iter().map(|x| x.to_f32()).collect()),
        other => Err(VisionError::Shape(format!("{}: output is {other:?}, expected float", path.display()))),
    }
}

/// Preprocessed pixels of one image: `num_patches × 3 × size × size` values (base image first,
/// then the anyres tiles row-major), plus the original size.
#[derive(Debug, Clone, PartialEq)]
pub struct ImagePixels {
    /// Normalised pixel values, row-major `[patches, 3, size, size]`.
    pub pixel_values: Vec<f32>,
    /// Number of patches (1 when not tiled).
    pub num_patches: usize,
    /// Original `(height, width)` (for unpadding).
    pub image_size: (usize, usize),
}

/// Preprocessed frames of one video: `frames × 3 × size × size` values.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoPixels {
    /// Normalised pixel values, row-major `[frames, 3, size, size]`.
    pub pixel_values: Vec<f32>,
    /// Frame count.
    pub frames: usize,
}

/// Feature rows for one image or video (`rows × dim`).
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureBlock {
    /// Row-major values.
    pub data: Vec<f32>,
    /// Row width (the language model's hidden size).
    pub dim: usize,
}

impl FeatureBlock {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }
}

/// A vision graph that can be released and loaded again when next needed.
#[derive(Debug)]
struct Slot {
    path: PathBuf,
    rank: usize,
    graph: Option<Graph>,
    /// Provider of the last session loaded.
    provider: Provider,
}

impl Slot {
    fn load(path: PathBuf, rank: usize, opts: &SessionOptions) -> Result<Self, VisionError> {
        let g = Graph::new(load_session(&path, opts)?, rank)?;
        Ok(Slot { path, rank, provider: g.s.provider, graph: Some(g) })
    }

    fn get(&mut self, opts: &SessionOptions) -> Result<&mut Graph, VisionError> {
        if self.graph.is_none() {
            tracing::debug!(graph = %self.path.display(), "loading a released vision graph again");
            let g = Graph::new(load_session(&self.path, opts)?, self.rank)?;
            self.provider = g.s.provider;
            self.graph = Some(g);
        }
        self.graph.as_mut().ok_or_else(|| VisionError::Unsupported("vision graph not loaded".into()))
    }
}

/// The vision graphs of one model plus the host-side steps of its family.
///
/// [`VisionEncoder::release`] drops the ONNX Runtime sessions (their weights and activation
/// memory) when the caller knows it will not encode for a while — `vidlm-pipeline` does it after
/// the vision stage of a call, so the vision weights are not resident while the language model
/// runs; the next call loads them again.
#[derive(Debug)]
pub struct VisionEncoder {
    config: VisionModelConfig,
    family: Family,
    image: Slot,
    video: Option<Slot>,
    newline: Option<Vec<f32>>,
    max_batch: usize,
    session: SessionOptions,
}

impl VisionEncoder {
    /// Loads `onnx/vision_encoder{suffix}.onnx` (required), `onnx/video_encoder{suffix}.onnx`
    /// (if present) and `onnx/image_newline.safetensors` (required for OneVision/NeXT images),
    /// with `config.json` from `model_dir`.
    pub fn from_dir(model_dir: impl AsRef<Path>, opts: &VisionOptions) -> Result<Self, VisionError> {
        let dir = model_dir.as_ref();
        let config = VisionModelConfig::from_file(dir.join("config.json"))?;
        let onnx = dir.join("onnx");
        let image_path = onnx.join(format!("vision_encoder{}.onnx", opts.suffix));
        let video_path = onnx.join(format!("video_encoder{}.onnx", opts.suffix));
        let newline_path = onnx.join("image_newline.safetensors");
        let family = config.family()?;
        if !image_path.is_file() {
            return Err(VisionError::Ort(OrtError::GraphMissing(image_path)));
        }
        if family == Family::VideoLlava && !video_path.is_file() {
            // Video-LLaVA's video tower has its own weights: there is no host-side substitute.
            return Err(VisionError::Ort(OrtError::GraphMissing(video_path)));
        }
        let newline = if matches!(family, Family::OneVision | Family::NextVideo) {
            if !newline_path.is_file() {
                return Err(VisionError::File { path: newline_path, message: "missing (image_newline weights of the export)".into() });
            }
            Some(read_image_newline(&newline_path)?)
        } else {
            None
        };
        let image = Slot::load(image_path, 4, &opts.session)?;
        let video = if video_path.is_file() { Some(Slot::load(video_path, 5, &opts.session)?) } else { None };
        Ok(VisionEncoder { config, family, image, video, newline, max_batch: opts.max_batch.max(1), session: opts.session.clone() })
    }

    /// Drops the ONNX Runtime sessions (weights, pre-packed copies, activation arenas). The
    /// graphs are loaded again, from the same files, by the next call that needs them.
    pub fn release(&mut self) {
        self.image.graph = None;
        if let Some(v) = self.video.as_mut() {
            v.graph = None;
        }
    }

    /// Whether any vision session is loaded.
    pub fn is_loaded(&self) -> bool {
        self.image.graph.is_some() || self.video.as_ref().is_some_and(|v| v.graph.is_some())
    }

    /// The model family.
    pub fn family(&self) -> Family {
        self.family
    }

    /// The vision config.
    pub fn config(&self) -> &VisionModelConfig {
        &self.config
    }

    /// Execution provider of the image graph (of its last session, while it is released).
    pub fn provider(&self) -> Provider {
        self.image.provider
    }

    /// The `image_newline` vector, if the family has one.
    pub fn image_newline(&self) -> Option<&[f32]> {
        self.newline.as_deref()
    }

    fn size(&self) -> usize {
        self.config.vision_config.image_size
    }

    /// Runs `vision_encoder` over `n` images in chunks; returns `(tokens per image, dim, values)`.
    pub fn encode_patches(&mut self, pixels: &[f32], n: usize) -> Result<(usize, usize, Vec<f32>), VisionError> {
        let s = self.size();
        let per = 3 * s * s;
        if n == 0 || pixels.len() != n * per {
            return Err(VisionError::Shape(format!("expected {n} images of 3x{s}x{s} ({} values), got {}", n * per, pixels.len())));
        }
        let mut out = Vec::new();
        let mut dims = None;
        for start in (0..n).step_by(self.max_batch) {
            let m = self.max_batch.min(n - start);
            let (shape, vals) = self.image.get(&self.session)?.run(&pixels[start * per..(start + m) * per], &[m, 3, s, s])?;
            let [b, t, d] = shape.as_slice() else {
                return Err(VisionError::Shape(format!("vision_encoder output has shape {shape:?}, expected [n, tokens, dim]")));
            };
            if *b != m {
                return Err(VisionError::Shape(format!("vision_encoder returned {b} rows for {m} images")));
            }
            if let Some((t0, d0)) = dims {
                if (t0, d0) != (*t, *d) {
                    return Err(VisionError::Shape("vision_encoder output shape changed between chunks".into()));
                }
            }
            dims = Some((*t, *d));
            out.extend(vals);
        }
        let (t, d) = dims.unwrap_or((0, 0));
        Ok((t, d, out))
    }

    /// Features of each image, laid out exactly as transformers' `get_image_features`
    /// (`pack_image_features` for the anyres families). `multi_image` is OneVision's
    /// multi-image mode (two or more images in a conversation): one patch per image.
    pub fn image_features(&mut self, images: &[ImagePixels]) -> Result<Vec<FeatureBlock>, VisionError> {
        let s = self.size();
        let per = 3 * s * s;
        for (i, im) in images.iter().enumerate() {
            if im.num_patches == 0 || im.pixel_values.len() != im.num_patches * per {
                return Err(VisionError::Shape(format!(
                    "image {i}: {} values for {} patches of 3x{s}x{s}",
                    im.pixel_values.len(),
                    im.num_patches
                )));
            }
        }
        let mut out = Vec::with_capacity(images.len());
        for im in images {
            let (tokens, dim, feats) = self.encode_patches(&im.pixel_values, im.num_patches)?;
            let data = match self.family {
                Family::OneVision | Family::NextVideo => {
                    let side = self.config.grid_side();
                    if side * side != tokens {
                        return Err(VisionError::Shape(format!("vision_encoder gives {tokens} tokens per patch, grid is {side}x{side}")));
                    }
                    let pins = self.config.image_grid_pinpoints.clone().unwrap_or_default();
                    let style = if self.family == Family::OneVision {
                        PackStyle::OneVision { max_num_patches: self.config.max_num_patches() }
                    } else {
                        PackStyle::Next
                    };
                    anyres::pack_image(&feats, im.num_patches, side, dim, im.image_size, &pins, s, self.newline.as_deref(), style)?
                }
                Family::Interleave | Family::VideoLlava => {
                    if im.num_patches != 1 {
                        return Err(VisionError::Unsupported(format!("{:?} images are single patches, got {}", self.family, im.num_patches)));
                    }
                    feats
                }
            };
            out.push(FeatureBlock { data, dim });
        }
        Ok(out)
    }

    /// Features of each video, laid out exactly as transformers' `get_video_features`
    /// (Interleave: the frames' image features concatenated). Frames are encoded in chunks of
    /// `max_batch`.
    pub fn video_features(&mut self, videos: &[VideoPixels]) -> Result<Vec<FeatureBlock>, VisionError> {
        let s = self.size();
        let per = 3 * s * s;
        for (i, v) in videos.iter().enumerate() {
            if v.frames == 0 || v.pixel_values.len() != v.frames * per {
                return Err(VisionError::Shape(format!("video {i}: {} values for {} frames of 3x{s}x{s}", v.pixel_values.len(), v.frames)));
            }
        }
        let mut out = Vec::with_capacity(videos.len());
        for v in videos {
            let block = if let Some(slot) = self.video.as_mut() {
                let g = slot.get(&self.session)?;
                // Trailing rows the graph appends once per call (OneVision's newline).
                let trailing = usize::from(self.family == Family::OneVision);
                let mut data = Vec::new();
                let mut dim = 0;
                let chunks: Vec<usize> = (0..v.frames).step_by(self.max_batch).collect();
                for (ci, &start) in chunks.iter().enumerate() {
                    let m = self.max_batch.min(v.frames - start);
                    let (shape, vals) = g.run(&v.pixel_values[start * per..(start + m) * per], &[1, m, 3, s, s])?;
                    // [1, tokens, dim] (frames concatenated) or [frames, tokens, dim] (Video-LLaVA's
                    // per-frame output): both are the video's rows in order.
                    let rows = match shape.as_slice() {
                        [1, rows, d] => {
                            dim = *d;
                            *rows
                        }
                        [f, rows, d] if *f == m => {
                            dim = *d;
                            f * rows
                        }
                        _ => {
                            return Err(VisionError::Shape(format!(
                                "video_encoder output has shape {shape:?} for {m} frames, expected [1, tokens, dim] or [{m}, tokens, dim]"
                            )))
                        }
                    };
                    if vals.len() != rows * dim {
                        return Err(VisionError::Shape(format!("video_encoder returned {} values for shape {shape:?}", vals.len())));
                    }
                    let keep = if ci + 1 < chunks.len() { rows.saturating_sub(trailing) } else { rows };
                    data.extend_from_slice(&vals[..keep * dim]);
                }
                FeatureBlock { data, dim }
            } else {
                let (tokens, dim, feats) = self.encode_patches(&v.pixel_values, v.frames)?;
                match self.family {
                    Family::Interleave => FeatureBlock { data: feats, dim },
                    Family::OneVision => {
                        let side = self.config.grid_side();
                        if side * side != tokens {
                            return Err(VisionError::Shape(format!("vision_encoder gives {tokens} tokens per frame, grid is {side}x{side}")));
                        }
                        let mut data = anyres::onevision_pool_frames(&feats, v.frames, side, dim)?;
                        let nl = self.newline.as_deref().ok_or_else(|| VisionError::Unsupported("OneVision video needs image_newline".into()))?;
                        data.extend_from_slice(nl);
                        FeatureBlock { data, dim }
                    }
                    Family::NextVideo | Family::VideoLlava => {
                        return Err(VisionError::Unsupported(format!(
                            "{:?} videos need onnx/video_encoder.onnx (pooling/tower is inside the graph)",
                            self.family
                        )))
                    }
                }
            };
            out.push(block);
        }
        Ok(out)
    }
}
