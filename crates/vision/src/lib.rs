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
//! * What differs between families comes from `vidlm-model`'s table ([`FamilySpec`]: image
//!   layout, video token rule, which graphs exist); the anyres geometry (best resolution,
//!   unpadding, the `anyres_max` budget) is `vidlm_model::anyres`, the same code that counts the
//!   processor's placeholders. Each image's tiling comes from the processor ([`PatchGrid`]);
//!   vision does not recompute it.
//! * The [`qwen`] module computes the grid-only host tables of the Qwen2.5-VL / Qwen3-VL vision
//!   graphs (window index and padded window batch, rotary, position interpolation).
//! * The [`anyres`] module holds the host-side packing (tile stitching, bilinear
//!   interpolation, pooling) and is usable without any model.
//!
//! ```
//! use vidlm_model::anyres::anyres_grid;
//! use vidlm_model::family::OV_PINPOINTS;
//! use vidlm_vision::anyres::pack_image;
//!
//! // OneVision, 899x1024 image: 3x3 tiles of 384 px + base -> 6551 feature rows (spec §3).
//! let pins: Vec<(u32, u32)> = OV_PINPOINTS.iter().map(|p| (p[0], p[1])).collect();
//! let grid = anyres_grid((899, 1024), &pins, 384).unwrap();
//! assert_eq!(grid.tiles, Some((3, 3)));
//! let patches = vec![0.0f32; grid.num_patches() * 27 * 27]; // width-1 features for the demo
//! let packed = pack_image(&patches, 27, 1, &grid, Some(&[1.0]), Some(9)).unwrap();
//! assert_eq!(packed.len(), 6551);
//! ```
#![warn(missing_docs)]

pub mod anyres;
pub mod qwen;

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use half::f16;
use vidlm_model::{
    ErrorKind, FamilySpec, Graph as GraphFile, GraphUse, ImageLayout, ModelError, ModelFiles,
    VideoTokens,
};
pub use vidlm_model::{Family, PatchGrid, Precision};
use vidlm_ort::ort::session::SessionInputValue;
use vidlm_ort::ort::value::{DynValue, TensorRef};
use vidlm_ort::{
    load_session, LoadedSession, OrtError, Provider, SessionOptions, TensorElementType, TensorInfo,
};

/// Errors of the vision runtime.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VisionError {
    /// The model directory is missing a file or one of its configs is malformed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// ONNX Runtime set-up or session loading failed (includes a missing graph).
    #[error(transparent)]
    Ort(#[from] OrtError),
    /// ONNX Runtime failed while running a graph.
    #[error("ONNX Runtime error in {path}")]
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
    /// Shapes disagree: pixels that do not match their patch grid, or graph outputs that do
    /// not match the model's config.
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
    /// The request does not fit the model (e.g. videos without the graph the family needs).
    #[error("{0}")]
    Unsupported(String),
}

impl VisionError {
    /// The category of the error (see [`ErrorKind`]). In the pipeline every input comes from
    /// the processor, so shape errors are [`ErrorKind::Internal`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            VisionError::Model(e) => e.kind(),
            VisionError::Ort(e) => e.kind(),
            VisionError::UnexpectedGraph { .. } | VisionError::File { .. } => {
                ErrorKind::InvalidModel
            }
            VisionError::Unsupported(_) => ErrorKind::Unsupported,
            _ => ErrorKind::Internal,
        }
    }
}

/// The vision geometry of a model: `vision_config` of `config.json`, and the `anyres_max`
/// budget of OneVision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VisionGeometry {
    /// Input side of the vision tower in pixels (`vision_config.image_size`).
    pub image_size: usize,
    /// Patch side in pixels (`vision_config.patch_size`).
    pub patch_size: usize,
    /// N of `vision_aspect_ratio = "anyres_max_N"` (OneVision; 9 when absent).
    pub max_num_patches: u32,
}

impl VisionGeometry {
    /// Reads it from `config.json` (`vision_config.image_size` and `patch_size` are required).
    pub fn from_files(files: &ModelFiles, spec: &FamilySpec) -> Result<Self, ModelError> {
        let missing = |field: &str| ModelError::MissingField {
            file: "config.json".into(),
            field: field.into(),
        };
        let vc = files.config.vision_config.as_ref().ok_or_else(|| missing("vision_config"))?;
        let image_size = vc.image_size.ok_or_else(|| missing("vision_config.image_size"))?;
        let patch_size =
            vc.patch_size.filter(|&p| p > 0).ok_or_else(|| missing("vision_config.patch_size"))?;
        let ar = files
            .config
            .vision_aspect_ratio
            .as_deref()
            .unwrap_or(spec.processor.vision_aspect_ratio);
        let max_num_patches = vidlm_model::anyres::parse_anyres_max(ar).unwrap_or(9);
        Ok(VisionGeometry { image_size, patch_size, max_num_patches })
    }

    /// Feature grid side per patch (`image_size / patch_size`).
    pub fn grid_side(&self) -> usize {
        self.image_size.checked_div(self.patch_size).unwrap_or(0)
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
        safetensors::Dtype::F32 => {
            data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
        }
        safetensors::Dtype::F16 => {
            data.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
        }
        safetensors::Dtype::BF16 => {
            data.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
        }
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
    /// Precision variant of the vision graphs.
    pub precision: Precision,
}

impl Default for VisionOptions {
    fn default() -> Self {
        VisionOptions {
            session: SessionOptions::default(),
            max_batch: 8,
            precision: Precision::Fp32,
        }
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
            return Err(bad(format!(
                "expected exactly one input, found {:?}",
                s.inputs.iter().map(|i| &i.name).collect::<Vec<_>>()
            )));
        };
        let input = input.clone();
        let input_type = match input.elem_type {
            Some(t @ (TensorElementType::Float32 | TensorElementType::Float16)) => t,
            other => {
                return Err(bad(format!(
                    "input `{}` is {other:?}, expected float32 or float16",
                    input.name
                )))
            }
        };
        if input.rank() != rank {
            return Err(bad(format!(
                "input `{}` has rank {}, expected {rank}",
                input.name,
                input.rank()
            )));
        }
        let output = s.outputs.first().ok_or_else(|| bad("no output".into()))?.name.clone();
        Ok(Graph { s, input, input_type, output })
    }

    /// Runs on `data` of `shape`; returns (output shape, f32 values).
    fn run(
        &mut self,
        data: &[f32],
        shape: &[usize],
    ) -> Result<(Vec<usize>, Vec<f32>), VisionError> {
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
        let v = outputs.get(&self.output).ok_or_else(|| {
            VisionError::Shape(format!("{}: no output `{}`", path.display(), self.output))
        })?;
        let out_shape: Vec<usize> = v
            .dtype()
            .tensor_shape()
            .map(|s| s.iter().map(|&d| d.max(0) as usize).collect())
            .unwrap_or_default();
        let vals = to_f32(v, &path)?;
        Ok((out_shape, vals))
    }
}

fn to_f32(v: &DynValue, path: &Path) -> Result<Vec<f32>, VisionError> {
    let err =
        |e: vidlm_ort::ort::Error| VisionError::Runtime { path: path.to_path_buf(), source: e };
    match v.dtype().tensor_type() {
        Some(TensorElementType::Float32) => {
            Ok(v.try_extract_tensor::<f32>().map_err(err)?.1.to_vec())
        }
        Some(TensorElementType::Float16) => {
            Ok(v.try_extract_tensor::<f16>().map_err(err)?.1.iter().map(|x| x.to_f32()).collect())
        }
        other => Err(VisionError::Shape(format!(
            "{}: output is {other:?}, expected float",
            path.display()
        ))),
    }
}

/// Preprocessed pixels of one image: `grid.num_patches() × 3 × size × size` values (base image
/// first, then the anyres tiles row-major), and how the processor cut the image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImagePixels<'a> {
    /// Normalised pixel values, row-major `[patches, 3, size, size]`.
    pub pixel_values: &'a [f32],
    /// The original size, the anyres tiles, the multi-image flag (from the processor's
    /// hand-off, `ProcessedInputs::conversations`).
    pub grid: PatchGrid,
}

/// Preprocessed frames of one video: `frames × 3 × size × size` values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoPixels<'a> {
    /// Normalised pixel values, row-major `[frames, 3, size, size]`.
    pub pixel_values: &'a [f32],
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

/// One image or video for the vision graphs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum VisionInput<'a> {
    /// An image (its patches).
    Image(ImagePixels<'a>),
    /// A video (its frames).
    Video(VideoPixels<'a>),
}

impl VisionInput<'_> {
    /// The graph inputs it runs: an image's patches, a video's frames.
    pub fn units(&self) -> usize {
        match self {
            VisionInput::Image(im) => im.grid.num_patches(),
            VisionInput::Video(v) => v.frames,
        }
    }
}

/// An encode in progress ([`VisionEncoder::encode_step`]): the graph outputs so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EncodeState {
    done: usize,
    data: Vec<f32>,
    /// Tokens per unit (image graph) and row width, once known.
    shape: Option<(usize, usize)>,
}

impl EncodeState {
    /// Units (patches or frames) encoded so far.
    pub fn done(&self) -> usize {
        self.done
    }

    /// Records a run's output shape; runs of one encode must agree.
    fn merge_shape(&mut self, tokens: usize, dim: usize) -> Result<(), VisionError> {
        match self.shape {
            Some(s) if s != (tokens, dim) => {
                Err(VisionError::Shape("vision graph output shape changed between chunks".into()))
            }
            _ => {
                self.shape = Some((tokens, dim));
                Ok(())
            }
        }
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
        self.graph
            .as_mut()
            .ok_or_else(|| VisionError::Unsupported("vision graph not loaded".into()))
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
    spec: &'static FamilySpec,
    geometry: VisionGeometry,
    image: Slot,
    video: Option<Slot>,
    video_path: PathBuf,
    newline: Option<Vec<f32>>,
    max_batch: usize,
    session: SessionOptions,
}

impl VisionEncoder {
    /// Loads `onnx/vision_encoder{suffix}.onnx` (required), `onnx/video_encoder{suffix}.onnx`
    /// (if present and the family uses one) and `onnx/image_newline.safetensors` (families with
    /// a newline), with `config.json`, from `model_dir`.
    pub fn from_dir(
        model_dir: impl AsRef<Path>,
        opts: &VisionOptions,
    ) -> Result<Self, VisionError> {
        Self::from_files(&ModelFiles::read(model_dir)?, opts)
    }

    /// Loads the graphs of an already-read model directory.
    pub fn from_files(files: &ModelFiles, opts: &VisionOptions) -> Result<Self, VisionError> {
        let spec = files.spec()?;
        let geometry = VisionGeometry::from_files(files, spec)?;
        let image_path = files.graph_path(GraphFile::VisionEncoder, opts.precision);
        let video_path = files.graph_path(GraphFile::VideoEncoder, opts.precision);
        let newline_path = files.dir.join("onnx/image_newline.safetensors");
        if !image_path.is_file() {
            return Err(VisionError::Ort(OrtError::GraphMissing(image_path)));
        }
        let newline = if spec.image_newline {
            if !newline_path.is_file() {
                return Err(VisionError::File {
                    path: newline_path,
                    message: "missing (image_newline weights of the export)".into(),
                });
            }
            Some(read_image_newline(&newline_path)?)
        } else {
            None
        };
        // The vision graphs are a few large operators, which gain nothing from threads that spin
        // between operators; idle vision threads should not spin while a decoder runs. (Measured
        // on the real-size serving bench, 2 cores: no difference in throughput either way.)
        let mut session = opts.session.clone();
        session.spinning = session.spinning.or(Some(false));
        let image = Slot::load(image_path, 4, &session)?;
        let load_video = spec.video_encoder != GraphUse::Unused && video_path.is_file();
        let video =
            if load_video { Some(Slot::load(video_path.clone(), 5, &session)?) } else { None };
        Ok(VisionEncoder {
            spec,
            geometry,
            image,
            video,
            video_path,
            newline,
            max_batch: opts.max_batch.max(1),
            session,
        })
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
        self.spec.family
    }

    /// The family's row of the table.
    pub fn spec(&self) -> &'static FamilySpec {
        self.spec
    }

    /// The vision geometry (`vision_config`).
    pub fn geometry(&self) -> &VisionGeometry {
        &self.geometry
    }

    /// Images (or frames) per graph run from now on ([`VisionOptions::max_batch`]; at least 1).
    pub fn set_max_batch(&mut self, n: usize) {
        self.max_batch = n.max(1);
    }

    /// Input side of the vision graphs in pixels.
    pub fn image_size(&self) -> usize {
        self.geometry.image_size
    }

    /// Execution provider of the image graph (of its last session, while it is released).
    pub fn provider(&self) -> Provider {
        self.image.provider
    }

    /// The `image_newline` vector, if the family has one.
    pub fn image_newline(&self) -> Option<&[f32]> {
        self.newline.as_deref()
    }

    /// Runs `vision_encoder` over `n` images in chunks; returns `(tokens per image, dim, values)`.
    pub fn encode_patches(
        &mut self,
        pixels: &[f32],
        n: usize,
    ) -> Result<(usize, usize, Vec<f32>), VisionError> {
        let s = self.image_size();
        let per = 3 * s * s;
        if n == 0 || pixels.len() != n * per {
            return Err(VisionError::Shape(format!(
                "expected {n} images of 3x{s}x{s} ({} values), got {}",
                n * per,
                pixels.len()
            )));
        }
        let mut state = EncodeState::default();
        for start in (0..n).step_by(self.max_batch) {
            let m = self.max_batch.min(n - start);
            let (t, d, vals) = self.run_images(&pixels[start * per..(start + m) * per], m)?;
            state.merge_shape(t, d)?;
            state.data.extend(vals);
        }
        let (t, d) = state.shape.unwrap_or((0, 0));
        Ok((t, d, state.data))
    }

    /// Features of each image, laid out exactly as transformers' `get_image_features`
    /// (`pack_image_features` for the anyres families), packed by each image's [`PatchGrid`].
    pub fn image_features(
        &mut self,
        images: &[ImagePixels<'_>],
    ) -> Result<Vec<FeatureBlock>, VisionError> {
        for (i, im) in images.iter().enumerate() {
            self.check(&VisionInput::Image(*im)).map_err(|e| match e {
                VisionError::Shape(m) => VisionError::Shape(format!("image {i}: {m}")),
                e => e,
            })?;
        }
        images.iter().map(|im| self.encode(&VisionInput::Image(*im))).collect()
    }

    /// Features of each video, laid out exactly as transformers' `get_video_features`
    /// (frames-as-images families: the frames' image features concatenated). Frames are encoded
    /// in chunks of `max_batch`.
    pub fn video_features(
        &mut self,
        videos: &[VideoPixels<'_>],
    ) -> Result<Vec<FeatureBlock>, VisionError> {
        for (i, v) in videos.iter().enumerate() {
            self.check(&VisionInput::Video(*v)).map_err(|e| match e {
                VisionError::Shape(m) => VisionError::Shape(format!("video {i}: {m}")),
                e => e,
            })?;
        }
        videos.iter().map(|v| self.encode(&VisionInput::Video(*v))).collect()
    }

    /// One image's or video's features, in one go.
    pub fn encode(&mut self, input: &VisionInput<'_>) -> Result<FeatureBlock, VisionError> {
        let mut state = EncodeState::default();
        loop {
            if let Some(block) = self.encode_step(input, &mut state, usize::MAX)? {
                return Ok(block);
            }
        }
    }

    /// Runs at most `max_units` more units (patches or frames, at least one; in graph runs of at
    /// most `max_batch`) of an encode; returns its features once every unit has run. The same
    /// input must come with the same state each time. A caller that interleaves other work
    /// between the steps of a long video gets the same features as [`VisionEncoder::encode`].
    pub fn encode_step(
        &mut self,
        input: &VisionInput<'_>,
        state: &mut EncodeState,
        max_units: usize,
    ) -> Result<Option<FeatureBlock>, VisionError> {
        if state.done == 0 {
            self.check(input)?;
        }
        let total = input.units();
        let s = self.image_size();
        let per = 3 * s * s;
        let mut ran = 0;
        while state.done < total && ran < max_units.max(1) {
            let m = self.max_batch.min(max_units.max(1) - ran).min(total - state.done);
            let range = state.done * per..(state.done + m) * per;
            match input {
                VisionInput::Image(im) => {
                    let (t, d, vals) = self.run_images(&im.pixel_values[range], m)?;
                    state.merge_shape(t, d)?;
                    state.data.extend(vals);
                }
                VisionInput::Video(v) if self.video.is_some() => {
                    let last = state.done + m == total;
                    let (d, rows) = self.run_video_chunk(&v.pixel_values[range], m, last)?;
                    state.merge_shape(0, d)?;
                    state.data.extend(rows);
                }
                VisionInput::Video(v) => {
                    let (t, d, vals) = self.run_images(&v.pixel_values[range], m)?;
                    state.merge_shape(t, d)?;
                    state.data.extend(vals);
                }
            }
            state.done += m;
            ran += m;
        }
        if state.done < total {
            return Ok(None);
        }
        let data = std::mem::take(&mut state.data);
        let (tokens, dim) = state.shape.unwrap_or((0, 0));
        match input {
            VisionInput::Image(im) => self.pack(im, tokens, dim, data).map(Some),
            VisionInput::Video(_) if self.video.is_some() => Ok(Some(FeatureBlock { data, dim })),
            VisionInput::Video(v) => self.video_host(v.frames, tokens, dim, data).map(Some),
        }
    }

    /// An input's size against the graphs (and, for a video without `video_encoder`, whether the
    /// host can do the graph's work).
    fn check(&self, input: &VisionInput<'_>) -> Result<(), VisionError> {
        let s = self.image_size();
        let per = 3 * s * s;
        match input {
            VisionInput::Image(im) => {
                if im.pixel_values.len() != im.grid.num_patches() * per {
                    return Err(VisionError::Shape(format!(
                        "{} values for {} patches of 3x{s}x{s} ({:?})",
                        im.pixel_values.len(),
                        im.grid.num_patches(),
                        im.grid
                    )));
                }
            }
            VisionInput::Video(v) => {
                if v.frames == 0 || v.pixel_values.len() != v.frames * per {
                    return Err(VisionError::Shape(format!(
                        "{} values for {} frames of 3x{s}x{s}",
                        v.pixel_values.len(),
                        v.frames
                    )));
                }
                if self.video.is_none()
                    && matches!(
                        self.spec.video_tokens,
                        VideoTokens::PerFrame | VideoTokens::NextPooled
                    )
                {
                    return Err(VisionError::Unsupported(format!(
                        "{} videos need {} (pooling / the video tower is inside the graph)",
                        self.spec.family,
                        self.video_path.display()
                    )));
                }
            }
        }
        Ok(())
    }

    /// One `vision_encoder` run over `m` images; returns `(tokens per image, dim, values)`.
    fn run_images(
        &mut self,
        pixels: &[f32],
        m: usize,
    ) -> Result<(usize, usize, Vec<f32>), VisionError> {
        let s = self.image_size();
        let (shape, vals) = self.image.get(&self.session)?.run(pixels, &[m, 3, s, s])?;
        let [b, t, d] = shape.as_slice() else {
            return Err(VisionError::Shape(format!(
                "vision_encoder output has shape {shape:?}, expected [n, tokens, dim]"
            )));
        };
        if *b != m {
            return Err(VisionError::Shape(format!(
                "vision_encoder returned {b} rows for {m} images"
            )));
        }
        Ok((*t, *d, vals))
    }

    /// One `video_encoder` run over `m` frames; returns `(dim, rows)`, without the rows the graph
    /// appends once per call (OneVision's newline) unless this is the video's last run.
    fn run_video_chunk(
        &mut self,
        pixels: &[f32],
        m: usize,
        last: bool,
    ) -> Result<(usize, Vec<f32>), VisionError> {
        let s = self.image_size();
        let trailing = self.spec.video_tokens.rows_appended_per_call();
        let Some(slot) = self.video.as_mut() else {
            return Err(VisionError::Unsupported("no video_encoder graph loaded".into()));
        };
        let (shape, mut vals) = slot.get(&self.session)?.run(pixels, &[1, m, 3, s, s])?;
        // [1, tokens, dim] (frames concatenated) or [frames, tokens, dim] (Video-LLaVA's
        // per-frame output): both are the video's rows in order.
        let (rows, dim) = match shape.as_slice() {
            [1, rows, d] => (*rows, *d),
            [f, rows, d] if *f == m => (f * rows, *d),
            _ => {
                return Err(VisionError::Shape(format!(
                    "video_encoder output has shape {shape:?} for {m} frames, expected [1, tokens, dim] or [{m}, tokens, dim]"
                )))
            }
        };
        if vals.len() != rows * dim {
            return Err(VisionError::Shape(format!(
                "video_encoder returned {} values for shape {shape:?}",
                vals.len()
            )));
        }
        let keep = if last { rows } else { rows.saturating_sub(trailing) };
        vals.truncate(keep * dim);
        Ok((dim, vals))
    }

    /// An image's patch features, packed as its family lays them out.
    fn pack(
        &self,
        im: &ImagePixels<'_>,
        tokens: usize,
        dim: usize,
        feats: Vec<f32>,
    ) -> Result<FeatureBlock, VisionError> {
        let data = match self.spec.image_layout {
            ImageLayout::Plain => {
                if im.grid.num_patches() != 1 {
                    return Err(VisionError::Shape(format!(
                        "{} images are single patches, got {:?}",
                        self.spec.family, im.grid
                    )));
                }
                feats
            }
            ImageLayout::AnyresOnevision | ImageLayout::AnyresNext => {
                let side = self.geometry.grid_side();
                if side * side != tokens {
                    return Err(VisionError::Shape(format!(
                        "vision_encoder gives {tokens} tokens per patch, grid is {side}x{side}"
                    )));
                }
                let budget = (self.spec.image_layout == ImageLayout::AnyresOnevision)
                    .then_some(self.geometry.max_num_patches);
                anyres::pack_image(&feats, side, dim, &im.grid, self.newline.as_deref(), budget)?
            }
            // The patchified (Qwen-VL) vision runner is not part of this crate yet.
            ImageLayout::Patchified => {
                return Err(VisionError::Unsupported(format!(
                    "{} images need the patchified vision runner, which is not implemented yet",
                    self.spec.family
                )))
            }
        };
        Ok(FeatureBlock { data, dim })
    }

    /// A video without `video_encoder`: its frames' `vision_encoder` features, then what the
    /// family's video graph would do (where the host can).
    fn video_host(
        &self,
        frames: usize,
        tokens: usize,
        dim: usize,
        feats: Vec<f32>,
    ) -> Result<FeatureBlock, VisionError> {
        match self.spec.video_tokens {
            VideoTokens::FramesAsImages => Ok(FeatureBlock { data: feats, dim }),
            VideoTokens::OnevisionPooled => {
                let side = self.geometry.grid_side();
                if side * side != tokens {
                    return Err(VisionError::Shape(format!(
                        "vision_encoder gives {tokens} tokens per frame, grid is {side}x{side}"
                    )));
                }
                let mut data = anyres::onevision_pool_frames(&feats, frames, side, dim)?;
                let nl = self.newline.as_deref().ok_or_else(|| {
                    VisionError::Unsupported("OneVision video needs image_newline".into())
                })?;
                data.extend_from_slice(nl);
                Ok(FeatureBlock { data, dim })
            }
            VideoTokens::GridMerged | VideoTokens::GridMergedTimestamped => {
                Err(VisionError::Unsupported(format!(
                    "{} videos need the patchified vision runner, which is not implemented yet",
                    self.spec.family
                )))
            }
            VideoTokens::PerFrame | VideoTokens::NextPooled => {
                Err(VisionError::Unsupported(format!(
                    "{} videos need {} (pooling / the video tower is inside the graph)",
                    self.spec.family,
                    self.video_path.display()
                )))
            }
        }
    }
}
