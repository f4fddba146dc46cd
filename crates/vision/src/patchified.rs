//! The patchified (Qwen2.5-VL / Qwen3-VL) vision runner: one `vision_encoder` run takes a batch of
//! frames of ONE patch grid `[num_frames, h·w, C·T·P·P]` plus the grid-only host tables of
//! [`crate::qwen`] (docs/onnx-graphs.md, "Qwen2.5-VL and Qwen3-VL (issue 20)"). The graph's
//! declared inputs decide which tables are bound (Qwen2.5-VL: window index, padded window batch,
//! rotary; Qwen3-VL: rotary, position interpolation); float tables take the element type the
//! session declares (fp16 graphs: fp16, the masked key bias clamped to fp16's lowest finite value).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use half::f16;
use vidlm_model::{ModelError, ModelFiles};
use vidlm_ort::ort::session::SessionInputValue;
use vidlm_ort::ort::value::TensorRef;
use vidlm_ort::{LoadedSession, TensorElementType};

use crate::qwen::{qwen25_tables, qwen3_tables, QwenVisionGeometry};
use crate::{to_f32, VisionError};

/// Grids whose tables are kept (a prompt rarely has more; the map is cleared beyond it).
const TABLE_CACHE: usize = 16;

/// The patchified geometry of `config.json`'s `vision_config`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PatchGeometry {
    /// What the host tables need.
    pub(crate) tables: QwenVisionGeometry,
    /// Values per patch row: `3 · temporal_patch_size · patch_size²`.
    pub(crate) row: usize,
}

impl PatchGeometry {
    /// Reads it from `config.json` (`vision_config.{spatial_merge_size, hidden_size, num_heads,
    /// patch_size, temporal_patch_size}` are required; `window_size` / `num_position_embeddings`
    /// are checked where the graph needs them; `rope_parameters.rope_theta` defaults to 10000).
    pub(crate) fn from_files(files: &ModelFiles) -> Result<Self, ModelError> {
        let missing = |field: &str| ModelError::MissingField {
            file: "config.json".into(),
            field: field.into(),
        };
        let vc = files.config.vision_config.as_ref().ok_or_else(|| missing("vision_config"))?;
        let positive = |v: Option<usize>, f: &str| v.filter(|&x| x > 0).ok_or_else(|| missing(f));
        let m = positive(vc.spatial_merge_size, "vision_config.spatial_merge_size")?;
        let hidden = positive(vc.hidden_size, "vision_config.hidden_size")?;
        let heads = positive(vc.num_heads, "vision_config.num_heads")?;
        let patch = positive(vc.patch_size, "vision_config.patch_size")?;
        let temporal = positive(vc.temporal_patch_size, "vision_config.temporal_patch_size")?;
        if hidden % heads != 0 {
            return Err(ModelError::InvalidField {
                file: "config.json".into(),
                field: "vision_config.num_heads".into(),
                message: format!("hidden_size {hidden} is not a multiple of num_heads {heads}"),
            });
        }
        let theta = vc.rope_parameters.as_ref().and_then(|r| r.rope_theta).unwrap_or(10000.0);
        Ok(PatchGeometry {
            tables: QwenVisionGeometry {
                spatial_merge_size: m,
                head_dim: hidden / heads,
                rope_theta: theta as f32,
                window_size: vc.window_size.unwrap_or(0),
                patch_size: patch,
                num_position_embeddings: vc.num_position_embeddings.unwrap_or(0),
            },
            row: 3 * temporal * patch * patch,
        })
    }
}

/// A host table the graph may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    WindowIndex,
    ReverseWindowIndex,
    RotaryCos,
    RotarySin,
    WindowGather,
    WindowScatter,
    WindowKeyBias,
    PosInterpIndices,
    PosInterpWeights,
}

impl Table {
    fn from_name(name: &str) -> Option<Table> {
        Some(match name {
            "window_index" => Table::WindowIndex,
            "reverse_window_index" => Table::ReverseWindowIndex,
            "rotary_cos" => Table::RotaryCos,
            "rotary_sin" => Table::RotarySin,
            "window_gather" => Table::WindowGather,
            "window_scatter" => Table::WindowScatter,
            "window_key_bias" => Table::WindowKeyBias,
            "pos_interp_indices" => Table::PosInterpIndices,
            "pos_interp_weights" => Table::PosInterpWeights,
            _ => return None,
        })
    }

    fn is_int(self) -> bool {
        matches!(
            self,
            Table::WindowIndex
                | Table::ReverseWindowIndex
                | Table::WindowGather
                | Table::WindowScatter
                | Table::PosInterpIndices
        )
    }

    /// Qwen2.5-VL's window tables (the others: rotary, both families; interpolation, Qwen3-VL).
    fn is_window(self) -> bool {
        matches!(
            self,
            Table::WindowIndex
                | Table::ReverseWindowIndex
                | Table::WindowGather
                | Table::WindowScatter
                | Table::WindowKeyBias
        )
    }

    fn is_interp(self) -> bool {
        matches!(self, Table::PosInterpIndices | Table::PosInterpWeights)
    }
}

/// One table's values, in the element type its input declares.
#[derive(Debug)]
enum Values {
    I64(Vec<i64>),
    F32(Vec<f32>),
    F16(Vec<f16>),
}

/// One grid's bound tables, in the graph's input order (after `pixel_values`).
#[derive(Debug)]
pub(crate) struct GridTables {
    values: Vec<(Vec<usize>, Values)>,
}

/// One run's output: row width, features `[frames·rows, D]`, DeepStack levels (each
/// `[frames·rows·D]`).
pub(crate) type RunOutput = (usize, Vec<f32>, Option<Vec<Vec<f32>>>);

/// The loaded patchified `vision_encoder` graph.
#[derive(Debug)]
pub(crate) struct QwenGraph {
    pub(crate) s: LoadedSession,
    pixel_name: String,
    pixel_type: TensorElementType,
    /// Static dims of `pixel_values` (`-1`/`0` when dynamic).
    pixel_shape: Vec<i64>,
    /// The declared tables after `pixel_values`, in input order, with their element types.
    tables: Vec<(String, Table, TensorElementType)>,
    features: String,
    deepstack: Option<String>,
}

impl QwenGraph {
    /// Checks the session's interface: `pixel_values` (float, rank 3), known host tables only, of
    /// the expected element types; `image_features` (+ `deepstack_features`) out.
    pub(crate) fn new(s: LoadedSession, geo: &PatchGeometry) -> Result<Self, VisionError> {
        let bad = |m: String| VisionError::UnexpectedGraph { path: s.path.clone(), message: m };
        let float = |t: Option<TensorElementType>| {
            matches!(t, Some(TensorElementType::Float32 | TensorElementType::Float16))
        };
        let mut pixel = None;
        let mut tables = Vec::new();
        for i in &s.inputs {
            if i.name == "pixel_values" {
                if !float(i.elem_type) || i.rank() != 3 {
                    return Err(bad(format!(
                        "input `pixel_values` is {:?} of rank {}, expected float [frames, patches, C·T·P·P]",
                        i.elem_type,
                        i.rank()
                    )));
                }
                pixel = Some(i.clone());
                continue;
            }
            let Some(t) = Table::from_name(&i.name) else {
                return Err(bad(format!(
                    "unknown input `{}` (the patchified vision graph takes pixel_values and the host tables of docs/onnx-graphs.md)",
                    i.name
                )));
            };
            let ok = if t.is_int() {
                i.elem_type == Some(TensorElementType::Int64)
            } else {
                float(i.elem_type)
            };
            if !ok {
                return Err(bad(format!("input `{}` has element type {:?}", i.name, i.elem_type)));
            }
            if t.is_window() && geo.tables.window_size == 0 {
                return Err(VisionError::Model(ModelError::MissingField {
                    file: "config.json".into(),
                    field: "vision_config.window_size".into(),
                }));
            }
            if t.is_interp() && geo.tables.num_position_embeddings == 0 {
                return Err(VisionError::Model(ModelError::MissingField {
                    file: "config.json".into(),
                    field: "vision_config.num_position_embeddings".into(),
                }));
            }
            tables.push((i.name.clone(), t, i.elem_type.unwrap_or(TensorElementType::Float32)));
        }
        let pixel = pixel.ok_or_else(|| bad("no `pixel_values` input".into()))?;
        if let Some(&d) = pixel.shape.get(2) {
            if d > 0 && d as usize != geo.row {
                return Err(bad(format!(
                    "pixel_values rows have {d} values; config.json's vision_config gives 3·T·P² = {}",
                    geo.row
                )));
            }
        }
        let names: Vec<&str> = s.outputs.iter().map(|o| o.name.as_str()).collect();
        let features = if names.contains(&"image_features") {
            "image_features".to_string()
        } else {
            names.first().ok_or_else(|| bad("no output".into()))?.to_string()
        };
        let deepstack = names.contains(&"deepstack_features").then(|| "deepstack_features".into());
        Ok(QwenGraph {
            pixel_name: pixel.name.clone(),
            pixel_type: pixel.elem_type.unwrap_or(TensorElementType::Float32),
            pixel_shape: pixel.shape.clone(),
            tables,
            features,
            deepstack,
            s,
        })
    }

    /// The host tables of grid `(h, w)` for this graph's declared inputs.
    pub(crate) fn grid_tables(&self, h: usize, w: usize, geo: &PatchGeometry) -> GridTables {
        let g = &geo.tables;
        let need_window = self.tables.iter().any(|(_, t, _)| t.is_window());
        let need_interp = self.tables.iter().any(|(_, t, _)| t.is_interp());
        let q25 = need_window.then(|| qwen25_tables(h, w, g));
        let q3 = (need_interp || !need_window).then(|| qwen3_tables(h, w, g));
        let hd = g.head_dim;
        let patches = h * w;
        let mut values = Vec::with_capacity(self.tables.len());
        for (_, t, ty) in &self.tables {
            // The rotary tables in the order the graph uses: window order with the window tables
            // (Qwen2.5-VL), block-major otherwise (Qwen3-VL).
            let rot = |cos: bool| -> &[f32] {
                match (&q25, &q3) {
                    (Some(a), _) => {
                        if cos {
                            &a.rotary_cos
                        } else {
                            &a.rotary_sin
                        }
                    }
                    (None, Some(b)) => {
                        if cos {
                            &b.rotary_cos
                        } else {
                            &b.rotary_sin
                        }
                    }
                    (None, None) => &[],
                }
            };
            let win = q25.as_ref();
            let interp = q3.as_ref();
            let (shape, v): (Vec<usize>, Values) = match t {
                Table::WindowIndex => {
                    let v = win.map(|a| a.window_index.clone()).unwrap_or_default();
                    (vec![v.len()], Values::I64(v))
                }
                Table::ReverseWindowIndex => {
                    let v = win.map(|a| a.reverse_window_index.clone()).unwrap_or_default();
                    (vec![v.len()], Values::I64(v))
                }
                Table::WindowGather => {
                    let (n, l) = win.map_or((0, 0), |a| (a.windows.windows, a.windows.width));
                    let v = win.map(|a| a.windows.gather.clone()).unwrap_or_default();
                    (vec![n, l], Values::I64(v))
                }
                Table::WindowScatter => {
                    let v = win.map(|a| a.windows.scatter.clone()).unwrap_or_default();
                    (vec![v.len()], Values::I64(v))
                }
                Table::PosInterpIndices => {
                    let v = interp.map(|b| b.pos_interp_indices.clone()).unwrap_or_default();
                    (vec![patches, 4], Values::I64(v))
                }
                Table::WindowKeyBias => {
                    let (n, l) = win.map_or((0, 0), |a| (a.windows.windows, a.windows.width));
                    let v = win.map(|a| a.windows.key_bias.as_slice()).unwrap_or(&[]);
                    (vec![n, l], floats(v, *ty))
                }
                Table::RotaryCos => (vec![patches, hd], floats(rot(true), *ty)),
                Table::RotarySin => (vec![patches, hd], floats(rot(false), *ty)),
                Table::PosInterpWeights => {
                    let v = interp.map(|b| b.pos_interp_weights.as_slice()).unwrap_or(&[]);
                    (vec![patches, 4], floats(v, *ty))
                }
            };
            values.push((shape, v));
        }
        GridTables { values }
    }

    /// One run over `frames` frames of grid `(h, w)` (`pixels`: `frames·h·w` rows); returns the
    /// features `[frames·h·w/m², D]` (frame-major), `D`, and the DeepStack levels
    /// `[levels][frames·h·w/m² · D]` when the graph has them.
    pub(crate) fn run(
        &mut self,
        pixels: &[f32],
        frames: usize,
        patches: usize,
        row: usize,
        tables: &GridTables,
    ) -> Result<RunOutput, VisionError> {
        let path = self.s.path.clone();
        let err = |e: vidlm_ort::ort::Error| VisionError::Runtime { path: path.clone(), source: e };
        let shape = [frames, patches, row];
        for (i, (&want, &got)) in self.pixel_shape.iter().zip(&shape).enumerate() {
            if want > 0 && want as usize != got {
                return Err(VisionError::Shape(format!(
                    "{}: input `pixel_values` axis {i} must be {want}, got {got}",
                    path.display()
                )));
            }
        }
        let half_buf: Vec<f16>;
        let mut feeds: Vec<(Cow<'_, str>, SessionInputValue<'_>)> =
            Vec::with_capacity(1 + tables.values.len());
        let pv: SessionInputValue<'_> = match self.pixel_type {
            TensorElementType::Float16 => {
                half_buf = pixels.iter().map(|&x| f16::from_f32(x)).collect();
                TensorRef::from_array_view((shape.to_vec(), &half_buf[..])).map_err(err)?.into()
            }
            _ => TensorRef::from_array_view((shape.to_vec(), pixels)).map_err(err)?.into(),
        };
        feeds.push((Cow::Owned(self.pixel_name.clone()), pv));
        for ((name, _, _), (shape, v)) in self.tables.iter().zip(&tables.values) {
            let value: SessionInputValue<'_> = match v {
                Values::I64(x) => {
                    TensorRef::from_array_view((shape.clone(), &x[..])).map_err(err)?.into()
                }
                Values::F32(x) => {
                    TensorRef::from_array_view((shape.clone(), &x[..])).map_err(err)?.into()
                }
                Values::F16(x) => {
                    TensorRef::from_array_view((shape.clone(), &x[..])).map_err(err)?.into()
                }
            };
            feeds.push((Cow::Owned(name.clone()), value));
        }
        let outputs = self.s.session.run(feeds).map_err(err)?;
        let out_shape = |name: &str| -> Result<(Vec<usize>, Vec<f32>), VisionError> {
            let v = outputs.get(name).ok_or_else(|| {
                VisionError::Shape(format!("{}: no output `{name}`", path.display()))
            })?;
            let s: Vec<usize> = v
                .dtype()
                .tensor_shape()
                .map(|s| s.iter().map(|&d| d.max(0) as usize).collect())
                .unwrap_or_default();
            Ok((s, to_f32(v, &path)?))
        };
        let (fs, feats) = out_shape(&self.features)?;
        let merged = match fs.as_slice() {
            [f, r, d] if *f == frames && r * d * f == feats.len() && *d > 0 => (*r, *d),
            _ => {
                return Err(VisionError::Shape(format!(
                    "{}: `{}` has shape {fs:?} for {frames} frames, expected [frames, merged patches, dim]",
                    path.display(),
                    self.features
                )))
            }
        };
        let deep = match &self.deepstack {
            None => None,
            Some(name) => {
                let (ds, vals) = out_shape(name)?;
                let [levels, f, r, d] = ds.as_slice() else {
                    return Err(VisionError::Shape(format!(
                        "{}: `{name}` has shape {ds:?}, expected [levels, frames, merged patches, dim]",
                        path.display()
                    )));
                };
                if (*f, *r, *d) != (frames, merged.0, merged.1) || vals.len() != levels * f * r * d
                {
                    return Err(VisionError::Shape(format!(
                        "{}: `{name}` has shape {ds:?}, the features {fs:?}",
                        path.display()
                    )));
                }
                let per = f * r * d;
                Some(vals.chunks(per.max(1)).map(<[f32]>::to_vec).collect())
            }
        };
        Ok((merged.1, feats, deep))
    }
}

/// Float values in the element type of their input; fp16 clamps to fp16's finite range (the
/// masked key bias is the lowest finite value of the graph's float type, not -inf).
fn floats(v: &[f32], ty: TensorElementType) -> Values {
    match ty {
        TensorElementType::Float16 => {
            let lo = f16::MIN.to_f32();
            let hi = f16::MAX.to_f32();
            Values::F16(v.iter().map(|&x| f16::from_f32(x.clamp(lo, hi))).collect())
        }
        _ => Values::F32(v.to_vec()),
    }
}

/// Host tables per grid `(h, w)`, computed once (a 32-frame video, or several images of one size,
/// share them).
#[derive(Debug, Default)]
pub(crate) struct TableCache {
    map: HashMap<(usize, usize), Arc<GridTables>>,
}

impl TableCache {
    pub(crate) fn get(
        &mut self,
        graph: &QwenGraph,
        h: usize,
        w: usize,
        geo: &PatchGeometry,
    ) -> Arc<GridTables> {
        if let Some(t) = self.map.get(&(h, w)) {
            return t.clone();
        }
        if self.map.len() >= TABLE_CACHE {
            self.map.clear();
        }
        let t = Arc::new(graph.grid_tables(h, w, geo));
        self.map.insert((h, w), t.clone());
        t
    }

    /// Grids held.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}
