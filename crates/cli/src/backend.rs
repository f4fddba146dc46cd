//! Flags shared by `vidlm run`, `vidlm serve` and `vidlm batch`: where and at what precision the
//! model runs (`BackendArgs`), and the generation defaults (`GenerationArgs`). One definition, so
//! the three commands spell, document and interpret them the same way.

use std::path::Path;

use anyhow::{bail, Result};
use vidlm_pipeline::{
    Device, HubOptions, ModelFiles, PipelineOptions, Precision, Precisions, Prepack,
    ResolvedPrecisions, SessionOptions,
};

/// `--device`, `--allow-cpu-fallback`, `--dtype`, `--threads`, `--offline`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct BackendArgs {
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Use the CPU if CUDA cannot run.
    #[arg(long)]
    pub allow_cpu_fallback: bool,
    /// Weight precision: fp32, fp16, q8, q4 or q4f16 for every graph, or per graph
    /// (`vision=q8,decoder=q4,embed=q4`; `q4,vision=fp32` = q4 but the vision graphs fp32). The
    /// files are `onnx/<graph><suffix>.onnx` with the transformers.js suffixes "", _fp16,
    /// _quantized, _q4, _q4f16. Default: fp32 on the CPU; on CUDA fp16 where the export has it.
    #[arg(long)]
    pub dtype: Option<Dtype>,
    /// Integer arithmetic for the graphs that run at q8 (and vision towers at q4): `auto` uses
    /// their `_int8` variant (int8 activations × int8 weights, `DynamicQuantizeMatMul`) where the
    /// export has one and the CPU has AVX-512 VNNI, AVX-VNNI or AMX; `on` / `off` force it.
    #[arg(long, value_enum, default_value_t = Int8Compute::Auto)]
    pub int8_compute: Int8Compute,
    /// ONNX Runtime intra-op threads.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Only use the local Hugging Face cache for hub ids.
    #[arg(long)]
    pub offline: bool,
    /// CUDA graph capture of the decode step (CUDA only): `on` asks for it (refused on the CPU; a
    /// decoder that cannot be captured runs without and the load prints one line saying why —
    /// today every export, whose step shapes change per token), `off` never, `auto` (default)
    /// where the decoder export can be captured: none can yet, so `auto` is off, without a notice.
    #[arg(long, value_enum, default_value_t = CudaGraph::Auto)]
    pub cuda_graph: CudaGraph,
    /// Write an ONNX Runtime profile (Chrome-trace JSON, every node's time) of each session into
    /// this folder.
    #[arg(long, value_name = "DIR")]
    pub profile_dir: Option<std::path::PathBuf>,
    /// Where videos are decoded: `cpu` (FFmpeg's software decoders) or `cuda` (NVDEC through
    /// FFmpeg's CUDA hwaccel, frames equal to the software path's; falls back to software with
    /// one line on stderr where NVDEC is absent).
    #[arg(long, value_enum, default_value_t = DecodeDeviceArg::Cpu)]
    pub decode_device: DecodeDeviceArg,
}

/// `--cuda-graph`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CudaGraph {
    /// Where the decoder export can be captured (none yet: off).
    #[default]
    Auto,
    /// Ask for capture (an error on the CPU).
    On,
    /// Never.
    Off,
}

/// `--decode-device`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DecodeDeviceArg {
    /// Software decoding.
    #[default]
    Cpu,
    /// NVDEC, with a software fallback.
    Cuda,
}

impl DecodeDeviceArg {
    /// The video-io setting.
    pub fn device(self) -> vidlm_video_io::DecodeDevice {
        match self {
            DecodeDeviceArg::Cpu => vidlm_video_io::DecodeDevice::Cpu,
            DecodeDeviceArg::Cuda => vidlm_video_io::DecodeDevice::Cuda,
        }
    }
}

impl BackendArgs {
    /// The pipeline options these flags ask for, for `model` (a directory or a hub id: the default
    /// precision on CUDA depends on what the directory holds).
    pub fn pipeline_options(&self, model: &str) -> Result<PipelineOptions> {
        let device = device(&self.device)?;
        Ok(PipelineOptions {
            session: with_env_overrides(SessionOptions {
                device,
                allow_cpu_fallback: self.allow_cpu_fallback,
                intra_threads: self.threads,
                cuda_graph: match self.cuda_graph {
                    // No decoder export can be captured yet (`vidlm_decoder::cuda_graph_blocker`):
                    // `auto` would only print that notice on every CUDA run.
                    CudaGraph::Auto => false,
                    CudaGraph::On => true,
                    CudaGraph::Off => false,
                },
                profile_dir: self.profile_dir.clone(),
                ..Default::default()
            }),
            precisions: self.dtype.unwrap_or_default().precisions(default_precision(device, model)),
            hub: HubOptions { offline: self.offline, ..Default::default() },
            int8_compute: match self.int8_compute {
                Int8Compute::Auto => None,
                Int8Compute::On => Some(true),
                Int8Compute::Off => Some(false),
            },
            decode_device: self.decode_device.device(),
            ..Default::default()
        })
    }
}

/// `--int8-compute`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Int8Compute {
    /// Where the CPU has VNNI or AMX (and the device is the CPU).
    #[default]
    Auto,
    /// Always (where the export has `_int8` graphs).
    On,
    /// Never.
    Off,
}

/// The session options with the measurement overrides from the environment applied:
/// `VIDLM_ORT_PREPACK`, `VIDLM_ORT_ARENA`, `VIDLM_ORT_MEM_PATTERN` and `VIDLM_ORT_SPINNING`
/// (`1`/`true` or `0`/`false`). They exist so that `cargo xtask bench` and ad-hoc measurements can
/// compare ONNX Runtime settings with the same binary; an unset or unparsable variable leaves the
/// option as it is. (`vidlm-ort` itself reads no environment: this is the one place.)
pub fn with_env_overrides(mut s: SessionOptions) -> SessionOptions {
    let flag = |k: &str| match std::env::var(k).ok().as_deref().map(str::trim) {
        Some("1") | Some("true") => Some(true),
        Some("0") | Some("false") => Some(false),
        _ => None,
    };
    if let Some(v) = flag("VIDLM_ORT_PREPACK") {
        s.memory.prepack_weights = if v { Prepack::On } else { Prepack::Off };
    }
    if let Some(v) = flag("VIDLM_ORT_ARENA") {
        s.memory.cpu_arena = v;
    }
    if let Some(v) = flag("VIDLM_ORT_MEM_PATTERN") {
        s.memory.memory_pattern = v;
    }
    if let Some(v) = flag("VIDLM_ORT_SPINNING") {
        s.spinning = Some(v);
    }
    s
}

/// The generation flags: defaults for every request (`vidlm batch`: for requests that set none).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct GenerationArgs {
    /// Most new tokens.
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Sample instead of greedy decoding (temperature 1 unless --temperature is given).
    #[arg(long)]
    pub do_sample: bool,
    /// Sampling temperature (0 = greedy).
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Top-k.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Top-p.
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Min-p.
    #[arg(long)]
    pub min_p: Option<f32>,
    /// Repetition penalty.
    #[arg(long)]
    pub repetition_penalty: Option<f32>,
    /// Seed for reproducible sampling.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop string (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
}

/// `--dtype`: one precision for every graph, and/or one per graph (`vision`, `embed`, `decoder`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dtype {
    all: Option<Precision>,
    vision: Option<Precision>,
    embed: Option<Precision>,
    decoder: Option<Precision>,
}

impl std::str::FromStr for Dtype {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut d = Dtype::default();
        for part in s.split(',').map(str::trim) {
            let (slot, name) = match part.split_once('=') {
                None => (&mut d.all, part),
                Some((graph, name)) => match graph.trim() {
                    "vision" => (&mut d.vision, name),
                    "embed" => (&mut d.embed, name),
                    "decoder" => (&mut d.decoder, name),
                    other => {
                        return Err(format!("unknown graph {other:?} (vision, embed, decoder)"))
                    }
                },
            };
            if slot.is_some() {
                return Err(format!("{part:?}: the precision is given twice"));
            }
            *slot = Some(name.trim().parse::<Precision>().map_err(|e| e.to_string())?);
        }
        Ok(d)
    }
}

impl Dtype {
    /// The precision of each graph, `default` where `--dtype` does not say.
    pub fn precisions(self, default: Precision) -> Precisions {
        let all = self.all.unwrap_or(default);
        Precisions {
            vision: self.vision.unwrap_or(all),
            embed: self.embed.unwrap_or(all),
            decoder: self.decoder.unwrap_or(all),
        }
    }
}

/// The default precision: fp32 on the CPU, fp16 on CUDA where the model has an fp16 decoder (a
/// local directory is looked at; a hub id is taken to be a transformers.js-style export, which
/// has one).
pub fn default_precision(device: Device, model: &str) -> Precision {
    match device {
        Device::Cpu => Precision::Fp32,
        Device::Cuda { .. } => {
            let dir = Path::new(model);
            let fp16 =
                dir.join(format!("onnx/decoder_model_merged{}.onnx", Precision::Fp16.suffix()));
            if !dir.is_dir() || fp16.is_file() {
                Precision::Fp16
            } else {
                Precision::Fp32
            }
        }
    }
}

/// The one-line precision summary for a load of `model` (`q4: vision q8 (no q4 graph), embed q4,
/// decoder q4`): what `vidlm_pipeline::Pipeline::precisions` will say, for commands that load
/// through the engine. A hub id (or an unreadable directory) gets the precisions as asked.
pub fn precision_summary(model: &str, opts: &PipelineOptions) -> String {
    let precisions = &opts.precisions;
    match ModelFiles::read(model) {
        Ok(files) => {
            let r = files.resolve_precisions(precisions);
            if opts.uses_int8_compute() { files.prefer_int8(r) } else { r }.to_string()
        }
        Err(_) => ResolvedPrecisions { requested: *precisions, used: *precisions }.to_string(),
    }
}

/// `--device`: cpu, cuda or cuda:N.
pub fn device(s: &str) -> Result<Device> {
    match s {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::Cuda { device_id: 0 }),
        other => match other.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
            Some(device_id) => Ok(Device::Cuda { device_id }),
            None => bail!("unknown --device {other:?} (cpu, cuda, cuda:N)"),
        },
    }
}
