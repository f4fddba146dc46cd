//! The ONNX sessions of the language model (`embed_tokens` and `decoder_model_merged`), their
//! interface read from the session metadata, and one forward step with the KV cache.

use std::path::{Path, PathBuf};

use half::f16;
use vidlm_ort::ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use vidlm_ort::ort::value::{DynTensorValueType, DynValue, Tensor};
use vidlm_ort::{
    find_info, load_session, LoadedSession, Provider, SessionOptions, TensorElementType, TensorInfo,
};

use crate::config::TextConfig;
use crate::embed::Embedder;
use crate::DecoderError;

/// Names of one layer's cache tensors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerIo {
    /// `past_key_values.{i}.key`
    pub past_key: String,
    /// `past_key_values.{i}.value`
    pub past_value: String,
    /// `present.{i}.key`
    pub present_key: String,
    /// `present.{i}.value`
    pub present_value: String,
}

/// The decoder graph's interface, as declared by the session.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderIo {
    /// Element type of `inputs_embeds` (f32 or f16).
    pub embeds_type: TensorElementType,
    /// Whether `position_ids` is an input.
    pub has_position_ids: bool,
    /// Whether `use_cache_branch` is an input.
    pub has_use_cache_branch: bool,
    /// Whether `num_logits_to_keep` is an input.
    pub has_num_logits_to_keep: bool,
    /// Per-layer cache names.
    pub layers: Vec<LayerIo>,
    /// Element type of the cache tensors.
    pub kv_type: TensorElementType,
    /// KV heads.
    pub kv_heads: usize,
    /// Head dimension.
    pub head_dim: usize,
}

pub(crate) fn static_dim(info: &TensorInfo, axis: usize) -> Option<usize> {
    info.shape.get(axis).and_then(|&d| usize::try_from(d).ok()).filter(|&d| d > 0)
}

pub(crate) fn check_float(
    info: &TensorInfo,
    graph: &Path,
) -> Result<TensorElementType, DecoderError> {
    match info.elem_type {
        Some(t @ (TensorElementType::Float32 | TensorElementType::Float16)) => Ok(t),
        other => Err(DecoderError::UnexpectedGraph {
            path: graph.to_path_buf(),
            message: format!(
                "`{}` has element type {other:?}; only float32 and float16 are supported",
                info.name
            ),
        }),
    }
}

impl DecoderIo {
    /// Reads and validates the decoder's interface. Every input must be one this crate knows how
    /// to feed; `kv_heads`/`head_dim` come from the graph or, if dynamic there, from `text`.
    pub fn from_session(s: &LoadedSession, text: &TextConfig) -> Result<Self, DecoderError> {
        let graph = &s.path;
        let bad = |message: String| DecoderError::UnexpectedGraph { path: graph.clone(), message };
        let embeds = find_info(&s.inputs, "inputs_embeds")
            .ok_or_else(|| bad("no `inputs_embeds` input".into()))?;
        let embeds_type = check_float(embeds, graph)?;
        let mask = find_info(&s.inputs, "attention_mask")
            .ok_or_else(|| bad("no `attention_mask` input".into()))?;
        if mask.elem_type != Some(TensorElementType::Int64) {
            return Err(bad(format!("`attention_mask` is {:?}, expected int64", mask.elem_type)));
        }
        if find_info(&s.outputs, "logits").is_none() {
            return Err(bad("no `logits` output".into()));
        }
        let mut n_layers = 0usize;
        for i in &s.inputs {
            let n = i.name.as_str();
            match n {
                "inputs_embeds" | "attention_mask" | "position_ids" | "use_cache_branch"
                | "num_logits_to_keep" => {}
                _ => {
                    let layer = n
                        .strip_prefix("past_key_values.")
                        .and_then(|r| r.strip_suffix(".key").or_else(|| r.strip_suffix(".value")))
                        .and_then(|l| l.parse::<usize>().ok());
                    match layer {
                        Some(l) => n_layers = n_layers.max(l + 1),
                        None => {
                            return Err(DecoderError::UnexpectedInput {
                                path: graph.clone(),
                                name: n.to_string(),
                            })
                        }
                    }
                }
            }
        }
        if n_layers == 0 {
            return Err(bad(
                "no `past_key_values.*` inputs (a merged decoder with KV cache is required)".into(),
            ));
        }
        let mut layers = Vec::with_capacity(n_layers);
        let mut kv_type = None;
        let mut kv_info = None;
        for l in 0..n_layers {
            let io = LayerIo {
                past_key: format!("past_key_values.{l}.key"),
                past_value: format!("past_key_values.{l}.value"),
                present_key: format!("present.{l}.key"),
                present_value: format!("present.{l}.value"),
            };
            for name in [&io.past_key, &io.past_value] {
                let info = find_info(&s.inputs, name)
                    .ok_or_else(|| bad(format!("missing input `{name}`")))?;
                if info.rank() != 4 {
                    return Err(bad(format!(
                        "`{name}` has rank {}, expected 4 [batch, kv_heads, past, head_dim]",
                        info.rank()
                    )));
                }
                let t = check_float(info, graph)?;
                if *kv_type.get_or_insert(t) != t {
                    return Err(bad("cache tensors have mixed element types".into()));
                }
                kv_info.get_or_insert_with(|| info.clone());
            }
            for name in [&io.present_key, &io.present_value] {
                if find_info(&s.outputs, name).is_none() {
                    return Err(bad(format!("missing output `{name}`")));
                }
            }
            layers.push(io);
        }
        let kv_info = kv_info.ok_or_else(|| bad("no cache inputs".into()))?;
        let kv_heads = static_dim(&kv_info, 1).or(text.kv_heads()).ok_or_else(|| {
            bad("KV head count is dynamic in the graph and missing from config.json".into())
        })?;
        let head_dim = static_dim(&kv_info, 3).or(text.head_dim()).ok_or_else(|| {
            bad("head_dim is dynamic in the graph and missing from config.json".into())
        })?;
        Ok(DecoderIo {
            embeds_type,
            has_position_ids: find_info(&s.inputs, "position_ids").is_some(),
            has_use_cache_branch: find_info(&s.inputs, "use_cache_branch").is_some(),
            has_num_logits_to_keep: find_info(&s.inputs, "num_logits_to_keep").is_some(),
            layers,
            kv_type: kv_type.unwrap_or(TensorElementType::Float32),
            kv_heads,
            head_dim,
        })
    }
}

/// The KV cache between steps, in one of two layouts:
///
/// * **packed**: each tensor is `[batch, kv_heads, past_len, head_dim]`, the previous step's
///   `present.*` fed back unchanged as `past_key_values.*`; a step allocates the next, longer
///   `present.*` and the graph copies the past into it.
/// * **preallocated** ([`KvCache::capacity`] is `Some(cap)`): each tensor is
///   `[batch, kv_heads, cap, head_dim]`, allocated once, and bound as *both* the layer's past input
///   and its present output. ONNX Runtime's `GroupQueryAttention` then appends the new keys and
///   values in place (its shared past/present buffer mode, `seqlens_k` telling the valid length),
///   so a step neither allocates nor copies anything proportional to the context. Columns
///   `past_len..cap` are unused.
///
/// [`LmSessions::step`] chooses the layout per call (see [`LmSessions::shares_kv_buffers`]).
#[derive(Debug, Default)]
pub struct KvCache {
    pub(crate) values: Vec<DynValue>,
    pub(crate) batch: usize,
    pub(crate) past_len: usize,
    pub(crate) capacity: Option<usize>,
}

impl KvCache {
    /// Past sequence length.
    pub fn past_len(&self) -> usize {
        self.past_len
    }

    /// Rows in the cache.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The preallocated length of every cache tensor, when the cache is preallocated (`None`:
    /// packed, each tensor exactly `past_len` long).
    pub fn capacity(&self) -> Option<usize> {
        self.capacity
    }
}

pub(crate) fn ort_err(path: &Path) -> impl Fn(vidlm_ort::ort::Error) -> DecoderError + '_ {
    move |e| DecoderError::Runtime { path: path.to_path_buf(), source: e }
}

/// Copies the selected batch rows of a `[batch, ...]` tensor into a new tensor on the same
/// device (a device tensor goes through host memory: rows leave a batch rarely).
fn select_rows(v: &DynValue, rows: &[usize], path: &Path) -> Result<DynValue, DecoderError> {
    let t = v.view().downcast::<DynTensorValueType>().map_err(ort_err(path))?;
    let info = t.memory_info();
    if info.is_cpu_accessible() {
        return select_rows_host(v, rows, path);
    }
    let (device, id) = (info.allocation_device(), info.device_id());
    let host = t.to(AllocationDevice::CPU, 0).map_err(ort_err(path))?.into_dyn();
    let picked = select_rows_host(&host, rows, path)?;
    let picked = picked
        .view()
        .downcast::<DynTensorValueType>()
        .map_err(ort_err(path))?
        .to(device, id)
        .map_err(ort_err(path))?;
    Ok(picked.into_dyn())
}

fn select_rows_host(v: &DynValue, rows: &[usize], path: &Path) -> Result<DynValue, DecoderError> {
    fn gather<
        T: vidlm_ort::ort::value::PrimitiveTensorElementType + Copy + std::fmt::Debug + 'static,
    >(
        v: &DynValue,
        rows: &[usize],
        path: &Path,
    ) -> Result<DynValue, DecoderError> {
        let (shape, data) = v.try_extract_tensor::<T>().map_err(ort_err(path))?;
        let dims: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
        let batch = dims.first().copied().unwrap_or(0);
        let per_row = data.len().checked_div(batch).unwrap_or(0);
        let mut out = Vec::with_capacity(per_row * rows.len());
        for &r in rows {
            let src = data.get(r * per_row..(r + 1) * per_row).ok_or_else(|| {
                DecoderError::Shape(format!("row {r} outside a batch of {batch}"))
            })?;
            out.extend_from_slice(src);
        }
        let mut new_dims = dims;
        if let Some(b) = new_dims.first_mut() {
            *b = rows.len();
        }
        Ok(Tensor::from_array((new_dims, out)).map_err(ort_err(path))?.into_dyn())
    }
    match v.dtype().tensor_type() {
        Some(TensorElementType::Float32) => gather::<f32>(v, rows, path),
        Some(TensorElementType::Float16) => gather::<f16>(v, rows, path),
        other => Err(DecoderError::Shape(format!("cannot slice a cache tensor of type {other:?}"))),
    }
}

impl KvCache {
    /// Keeps only `rows` (indices into the current batch, in the new order).
    pub fn retain_rows(&mut self, rows: &[usize], path: &Path) -> Result<(), DecoderError> {
        if rows.len() == self.batch && rows.iter().enumerate().all(|(i, &r)| i == r) {
            return Ok(());
        }
        self.compact(path)?;
        let mut out = Vec::with_capacity(self.values.len());
        for v in &self.values {
            out.push(select_rows(v, rows, path)?);
        }
        self.values = out;
        self.batch = rows.len();
        Ok(())
    }
}

/// Output of one decoder step.
#[derive(Debug)]
pub struct StepOutput {
    /// Last-position logits, `batch × vocab`, as f32.
    pub logits: Vec<f32>,
    /// Vocabulary size.
    pub vocab: usize,
}

/// Files of a language model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanguageModelFiles {
    /// `onnx/embed_tokens{suffix}.onnx`
    pub embed_tokens: PathBuf,
    /// `onnx/decoder_model_merged{suffix}.onnx`
    pub decoder: PathBuf,
}

impl LanguageModelFiles {
    /// The standard layout under `model_dir/onnx/` with precision suffixes (`""` = fp32,
    /// `"_fp16"`, `"_q4"`, …) chosen per graph.
    pub fn in_dir(model_dir: impl AsRef<Path>, embed_suffix: &str, decoder_suffix: &str) -> Self {
        let onnx = model_dir.as_ref().join("onnx");
        LanguageModelFiles {
            embed_tokens: onnx.join(format!("embed_tokens{embed_suffix}.onnx")),
            decoder: onnx.join(format!("decoder_model_merged{decoder_suffix}.onnx")),
        }
    }
}

/// The language model's graphs: `embed_tokens` (an [`Embedder`]) and the decoder session.
#[derive(Debug)]
pub struct LmSessions {
    pub(crate) embed: Embedder,
    pub(crate) decoder: LoadedSession,
    pub(crate) io: DecoderIo,
    pub(crate) hidden: usize,
    /// Where the KV cache lives: the decoder's device (CUDA memory with the CUDA provider).
    kv_memory: MemoryInfo<'static>,
    /// Host memory, for the logits.
    host_memory: MemoryInfo<'static>,
    /// Whether one-row unpadded steps use a preallocated cache bound as past and present
    /// ([`LmSessions::shares_kv_buffers`]).
    share_kv: bool,
    /// Positions a preallocated cache holds beyond what the step that (re)allocates it needs.
    kv_headroom: usize,
}

/// The `vidlm.decoder` metadata of graphs whose one-row unpadded calls run
/// `GroupQueryAttention` (see `docs/onnx-graphs.md`): only those may share past and present.
const SHARED_KV_GRAPH: &str = "fused-gqa";

/// Default [`LmSessions::set_kv_headroom`]: positions reserved beyond a step's needs when a
/// preallocated cache is (re)allocated.
pub const DEFAULT_KV_HEADROOM: usize = 256;

fn device_memory(provider: Provider) -> Result<MemoryInfo<'static>, vidlm_ort::ort::Error> {
    match provider {
        Provider::Cpu => {
            MemoryInfo::new(AllocationDevice::CPU, 0, AllocatorType::Device, MemoryType::Default)
        }
        Provider::Cuda { device_id } => MemoryInfo::new(
            AllocationDevice::CUDA,
            device_id,
            AllocatorType::Device,
            MemoryType::Default,
        ),
    }
}

impl LmSessions {
    /// Loads both graphs (each checked to exist first) and validates their interfaces.
    /// `embed_tokens` is served from its file when it is a plain `Gather` and `table_embeddings`
    /// is set (see [`Embedder`]).
    pub fn load(
        files: &LanguageModelFiles,
        text: &TextConfig,
        opts: &SessionOptions,
    ) -> Result<Self, DecoderError> {
        Self::load_with(files, text, opts, true)
    }

    /// [`LmSessions::load`] choosing whether `embed_tokens` may be served from its file.
    pub fn load_with(
        files: &LanguageModelFiles,
        text: &TextConfig,
        opts: &SessionOptions,
        table_embeddings: bool,
    ) -> Result<Self, DecoderError> {
        for p in [&files.embed_tokens, &files.decoder] {
            if !p.is_file() {
                return Err(DecoderError::Ort(vidlm_ort::OrtError::GraphMissing(p.clone())));
            }
        }
        let embed = Embedder::load(&files.embed_tokens, opts, table_embeddings)?;
        let decoder = load_session(&files.decoder, opts)?;
        let io = DecoderIo::from_session(&decoder, text)?;
        let dec_embeds = find_info(&decoder.inputs, "inputs_embeds");
        let hidden = embed
            .hidden()
            .or_else(|| dec_embeds.and_then(|i| static_dim(i, 2)))
            .or(text.hidden_size)
            .ok_or_else(|| DecoderError::UnexpectedGraph {
                path: files.embed_tokens.clone(),
                message: "hidden size is dynamic in both graphs and missing from config.json"
                    .into(),
            })?;
        if let Some(d) = dec_embeds.and_then(|i| static_dim(i, 2)) {
            if d != hidden {
                return Err(DecoderError::UnexpectedGraph {
                    path: files.decoder.clone(),
                    message: format!("`inputs_embeds` has width {d}, embed_tokens gives {hidden}"),
                });
            }
        }
        tracing::debug!(
            layers = io.layers.len(),
            kv_heads = io.kv_heads,
            head_dim = io.head_dim,
            hidden,
            "decoder interface"
        );
        let kv_memory = device_memory(decoder.provider).map_err(ort_err(&files.decoder))?;
        let host_memory = device_memory(Provider::Cpu).map_err(ort_err(&files.decoder))?;
        let builder = decoder.session.metadata().ok().and_then(|m| m.custom("vidlm.decoder"));
        // CPU only: the preallocated buffers are host memory (ONNX Runtime's default allocator).
        // With CUDA the cache already stays on the device, packed.
        let share_kv = builder.as_deref() == Some(SHARED_KV_GRAPH)
            && decoder.provider == Provider::Cpu
            && !matches!(
                std::env::var("VIDLM_KV_PREALLOCATE").ok().as_deref().map(str::trim),
                Some("0") | Some("false")
            );
        tracing::debug!(?builder, share_kv, "decoder KV layout");
        Ok(LmSessions {
            embed,
            decoder,
            io,
            hidden,
            kv_memory,
            host_memory,
            share_kv,
            kv_headroom: DEFAULT_KV_HEADROOM,
        })
    }

    /// Whether one-row, unpadded steps keep a preallocated cache that is bound as both the past
    /// input and the present output, so that `GroupQueryAttention` appends in place
    /// ([`KvCache`]). True for graphs built by vidlm's fused builder with `GroupQueryAttention`
    /// (`vidlm.decoder = fused-gqa`) on the CPU; `VIDLM_KV_PREALLOCATE=0` turns it off (for
    /// benchmarks). Padded batches always use the packed layout: their calls take the plain-op
    /// attention, which concatenates.
    pub fn shares_kv_buffers(&self) -> bool {
        self.share_kv
    }

    /// Turns the preallocated cache off (or back on, where the graph allows it).
    pub fn set_shares_kv_buffers(&mut self, on: bool) {
        let builder = self.decoder.session.metadata().ok().and_then(|m| m.custom("vidlm.decoder"));
        self.share_kv = on
            && builder.as_deref() == Some(SHARED_KV_GRAPH)
            && self.decoder.provider == Provider::Cpu;
    }

    /// Positions a preallocated cache reserves beyond the step that (re)allocates it (default
    /// [`DEFAULT_KV_HEADROOM`]). When a step needs more, the cache grows to the larger of its
    /// need plus this headroom and twice its size (one copy, amortised over the steps it covers).
    pub fn set_kv_headroom(&mut self, positions: usize) {
        self.kv_headroom = positions;
    }

    /// Hidden size of the language model.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// The decoder graph's interface.
    pub fn io(&self) -> &DecoderIo {
        &self.io
    }

    /// Execution provider of the decoder session.
    pub fn provider(&self) -> Provider {
        self.decoder.provider
    }

    /// Why CUDA was not used although it was asked for (the session fell back to the CPU).
    pub fn cuda_fallback(&self) -> Option<&str> {
        self.decoder.cuda_fallback.as_deref()
    }

    /// How `embed_tokens` runs.
    pub fn embedder(&self) -> &Embedder {
        &self.embed
    }

    /// `embed_tokens(ids)` for `batch × seq` ids; returns `batch × seq × hidden` f32 values.
    pub fn embed(
        &mut self,
        ids: &[i64],
        batch: usize,
        seq: usize,
    ) -> Result<Vec<f32>, DecoderError> {
        self.embed.embed(ids, batch, seq, self.hidden)
    }

    /// An empty cache (past length 0) for `batch` rows.
    pub fn empty_cache(&self, batch: usize) -> Result<KvCache, DecoderError> {
        let path = &self.decoder.path;
        let shape = [batch, self.io.kv_heads, 0, self.io.head_dim];
        let mut values = Vec::with_capacity(self.io.layers.len() * 2);
        for _ in 0..self.io.layers.len() * 2 {
            let v = match self.io.kv_type {
                TensorElementType::Float16 => Tensor::<f16>::from_array((shape, Vec::<f16>::new()))
                    .map_err(ort_err(path))?
                    .into_dyn(),
                _ => Tensor::<f32>::from_array((shape, Vec::<f32>::new()))
                    .map_err(ort_err(path))?
                    .into_dyn(),
            };
            values.push(v);
        }
        Ok(KvCache { values, batch, past_len: 0, capacity: None })
    }

    /// One decoder forward pass over `seq` new positions per row.
    ///
    /// `embeds` is `batch × seq × hidden`; `mask` is `batch × (past + seq)`; `positions` is
    /// `batch × seq`. The cache is advanced in place (its `present.*` become the new past).
    pub fn step(
        &mut self,
        embeds: &[f32],
        batch: usize,
        seq: usize,
        mask: &[i64],
        positions: &[i64],
        cache: &mut KvCache,
    ) -> Result<StepOutput, DecoderError> {
        let path = self.decoder.path.clone();
        let total = cache.past_len + seq;
        if cache.batch != batch
            || mask.len() != batch * total
            || positions.len() != batch * seq
            || embeds.len() != batch * seq * self.hidden
        {
            return Err(DecoderError::Shape(format!(
                "decoder step: batch {batch}, seq {seq}, past {} (cache rows {}), mask {} values, positions {}, embeds {}",
                cache.past_len,
                cache.batch,
                mask.len(),
                positions.len(),
                embeds.len()
            )));
        }
        let err = ort_err(&path);
        // The cache layout of this call: preallocated (past and present are one buffer) for one
        // unpadded row on a graph that runs GroupQueryAttention there, packed otherwise.
        let shared = self.share_kv && batch == 1 && mask.iter().all(|&m| m == 1);
        if shared {
            let need = total;
            match cache.capacity {
                Some(cap) if cap >= need => {}
                cap => {
                    let grown = (need + self.kv_headroom).max(cap.map_or(0, |c| 2 * c));
                    cache.preallocate(grown, &path)?;
                }
            }
        } else {
            cache.compact(&path)?;
        }
        // Everything goes through an IoBinding: the inputs are owned tensors (bound without a
        // copy), the past values are the previous step's outputs, bound where they are (on the
        // device with CUDA), and the present values are allocated where the cache lives; only
        // the logits are bound to host memory.
        let mut binding = self.decoder.session.create_binding().map_err(&err)?;
        let shape3 = [batch, seq, self.hidden];
        let embeds_v: DynValue = match self.io.embeds_type {
            TensorElementType::Float16 => {
                let h: Vec<f16> = embeds.iter().map(|&x| f16::from_f32(x)).collect();
                Tensor::from_array((shape3, h)).map_err(&err)?.into_dyn()
            }
            _ => Tensor::from_array((shape3, embeds.to_vec())).map_err(&err)?.into_dyn(),
        };
        binding.bind_input("inputs_embeds", &embeds_v).map_err(&err)?;
        let mask_v = Tensor::from_array(([batch, total], mask.to_vec())).map_err(&err)?;
        binding.bind_input("attention_mask", &mask_v).map_err(&err)?;
        if self.io.has_position_ids {
            let pos_v = Tensor::from_array(([batch, seq], positions.to_vec())).map_err(&err)?;
            binding.bind_input("position_ids", &pos_v).map_err(&err)?;
        }
        if self.io.has_use_cache_branch {
            let v = Tensor::from_array(([1usize], vec![cache.past_len > 0])).map_err(&err)?;
            binding.bind_input("use_cache_branch", &v).map_err(&err)?;
        }
        if self.io.has_num_logits_to_keep {
            let v = Tensor::from_array(((), vec![1i64])).map_err(&err)?;
            binding.bind_input("num_logits_to_keep", &v).map_err(&err)?;
        }
        for (l, io) in self.io.layers.iter().enumerate() {
            let (k, v) = match (cache.values.get(2 * l), cache.values.get(2 * l + 1)) {
                (Some(k), Some(v)) => (k, v),
                _ => {
                    return Err(DecoderError::Shape(
                        "KV cache has fewer tensors than the graph has layers".into(),
                    ))
                }
            };
            binding.bind_input(io.past_key.as_str(), k).map_err(&err)?;
            binding.bind_input(io.past_value.as_str(), v).map_err(&err)?;
        }
        binding.bind_output_to_device("logits", &self.host_memory).map_err(&err)?;
        if shared {
            // present.* is bound to the very tensor bound as past_key_values.*: GroupQueryAttention
            // sees one buffer and writes the new columns at past_len.. in place.
            for (l, io) in self.io.layers.iter().enumerate() {
                // A slice pattern rather than `get_disjoint_mut` (Rust 1.86; the MSRV is 1.85).
                let Some([k, v]) = cache.values.get_mut(2 * l..2 * l + 2) else {
                    return Err(DecoderError::Shape(
                        "KV cache has fewer tensors than the graph has layers".into(),
                    ));
                };
                binding.bind_output(io.present_key.as_str(), k).map_err(&err)?;
                binding.bind_output(io.present_value.as_str(), v).map_err(&err)?;
            }
        } else {
            for io in &self.io.layers {
                binding
                    .bind_output_to_device(io.present_key.as_str(), &self.kv_memory)
                    .map_err(&err)?;
                binding
                    .bind_output_to_device(io.present_value.as_str(), &self.kv_memory)
                    .map_err(&err)?;
            }
        }
        let mut outputs = self.decoder.session.run_binding(&binding).map_err(&err)?;
        let logits_v = outputs
            .get("logits")
            .ok_or_else(|| DecoderError::Shape("decoder produced no logits".into()))?;
        let lshape: Vec<i64> = logits_v
            .dtype()
            .tensor_shape()
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        let (rows, positions_out, vocab) = match lshape.as_slice() {
            [b, s, v] => (*b as usize, *s as usize, *v as usize),
            [b, v] => (*b as usize, 1, *v as usize),
            other => return Err(DecoderError::Shape(format!("logits have shape {other:?}"))),
        };
        if rows != batch || positions_out == 0 {
            return Err(DecoderError::Shape(format!("logits shape {lshape:?} for batch {batch}")));
        }
        // Only the last position of every row is copied out (graphs without last-token logits
        // return [batch, seq, vocab], which can be gigabytes on a long prefill).
        let logits = last_positions(logits_v, batch, positions_out, vocab, &path)?;
        if shared {
            drop(outputs);
            drop(binding);
            cache.past_len = total;
            return Ok(StepOutput { logits, vocab });
        }
        let mut values = Vec::with_capacity(self.io.layers.len() * 2);
        for io in &self.io.layers {
            for name in [&io.present_key, &io.present_value] {
                let v = outputs
                    .remove(name.as_str())
                    .ok_or_else(|| DecoderError::Shape(format!("decoder produced no `{name}`")))?;
                values.push(v);
            }
        }
        drop(outputs);
        cache.values = values;
        cache.past_len = total;
        Ok(StepOutput { logits, vocab })
    }
}

/// The last position's row of each batch row of a `[batch, positions, vocab]` float tensor.
fn last_positions(
    v: &DynValue,
    batch: usize,
    positions: usize,
    vocab: usize,
    path: &Path,
) -> Result<Vec<f32>, DecoderError> {
    let want = batch * positions * vocab;
    let mut out = Vec::with_capacity(batch * vocab);
    let bad = |n: usize| DecoderError::Shape(format!("logits hold {n} values, expected {want}"));
    match v.dtype().tensor_type() {
        Some(TensorElementType::Float32) => {
            let data = v.try_extract_tensor::<f32>().map_err(ort_err(path))?.1;
            if data.len() != want {
                return Err(bad(data.len()));
            }
            for r in 0..batch {
                let start = (r * positions + positions - 1) * vocab;
                out.extend_from_slice(&data[start..start + vocab]);
            }
        }
        Some(TensorElementType::Float16) => {
            let data = v.try_extract_tensor::<f16>().map_err(ort_err(path))?.1;
            if data.len() != want {
                return Err(bad(data.len()));
            }
            for r in 0..batch {
                let start = (r * positions + positions - 1) * vocab;
                out.extend(data[start..start + vocab].iter().map(|x| x.to_f32()));
            }
        }
        other => return Err(DecoderError::Shape(format!("logits are {other:?}, expected float"))),
    }
    Ok(out)
}

/// Reads a float tensor (f32 or f16) as f32.
pub(crate) fn to_f32(v: &DynValue, path: &Path) -> Result<Vec<f32>, DecoderError> {
    match v.dtype().tensor_type() {
        Some(TensorElementType::Float32) => {
            Ok(v.try_extract_tensor::<f32>().map_err(ort_err(path))?.1.to_vec())
        }
        Some(TensorElementType::Float16) => Ok(v
            .try_extract_tensor::<f16>()
            .map_err(ort_err(path))?
            .1
            .iter()
            .map(|x| x.to_f32())
            .collect()),
        other => Err(DecoderError::Shape(format!("expected a float tensor, got {other:?}"))),
    }
}
