//! # vidlm-ort — the one place vidlm talks to ONNX Runtime's set-up
//!
//! Every vidlm crate that runs a graph (`vidlm-vision`, `vidlm-decoder`) goes through this
//! crate, so that the ONNX Runtime shared library is found and initialised exactly once per
//! process and every session is built the same way.
//!
//! * **Library discovery** ([`find_library`]): `ORT_DYLIB_PATH` if set (an explicit path that
//!   does not exist is an error, never silently ignored); then a path the host set with
//!   [`set_library_path`] (the Python package's `onnxruntime` library); otherwise the library next to the
//!   running executable, then the project-local `.cache/onnxruntime/1.31.1/libonnxruntime.so`
//!   of the workspace (looked up from the executable's and the working directory's ancestors
//!   and from the workspace this crate was built in). A missing library is
//!   [`OrtError::LibraryNotFound`], never a panic.
//! * **Environment** ([`environment`]): `ort::init_from(..)` once; later calls reuse it.
//! * **Sessions** ([`load_session`]): CPU by default. The CUDA execution provider is compiled
//!   in with the `cuda` cargo feature and chosen at run time with [`Device::Cuda`]. Asking for
//!   CUDA where it cannot run is [`OrtError::CudaUnavailable`] unless
//!   [`SessionOptions::allow_cpu_fallback`] is set; the provider that actually runs is logged
//!   through `tracing` and reported in [`LoadedSession::provider`].
//! * **Metadata** ([`TensorInfo`], [`input_infos`], [`output_infos`]): names, element types and
//!   shapes read from the session, never assumed.
//! * **Graph files** ([`onnx_file::OnnxFile`]): the structure of an `.onnx` file and where each
//!   initializer's bytes are, read without ONNX Runtime and without reading the weights.
//!
//! ```
//! use vidlm_ort::{find_library, load_session, Device, OrtError, SessionOptions};
//!
//! // The library location is resolved without loading anything.
//! match find_library() {
//!     Ok(path) => println!("ONNX Runtime at {}", path.display()),
//!     Err(e) => println!("{e}"),
//! }
//! // A missing graph is a typed error, checked before ONNX Runtime is touched.
//! let opts = SessionOptions { device: Device::Cpu, intra_threads: Some(1), ..Default::default() };
//! let err = load_session("/nonexistent/decoder_model_merged.onnx", &opts).unwrap_err();
//! assert!(matches!(err, OrtError::GraphMissing(_)));
//! ```
#![warn(missing_docs)]

pub mod cpu;
pub mod onnx_file;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use vidlm_model::ErrorKind;

pub use ort;
pub use ort::session::Session;
pub use ort::value::TensorElementType;

/// The ONNX Runtime version vidlm is built and tested against.
pub const ORT_VERSION: &str = "1.31.1";

/// File name of the ONNX Runtime shared library on this platform.
#[cfg(target_os = "windows")]
pub const LIBRARY_FILE: &str = "onnxruntime.dll";
/// File name of the ONNX Runtime shared library on this platform.
#[cfg(target_os = "macos")]
pub const LIBRARY_FILE: &str = "libonnxruntime.dylib";
/// File name of the ONNX Runtime shared library on this platform.
#[cfg(not(any(target_os = "windows", target_os = "macos")))]
pub const LIBRARY_FILE: &str = "libonnxruntime.so";

/// Errors of the ONNX Runtime set-up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OrtError {
    /// No ONNX Runtime shared library was found.
    #[error("ONNX Runtime library not found (set ORT_DYLIB_PATH or run `cargo xtask setup`); searched: {}", display_paths(.searched))]
    LibraryNotFound {
        /// Every location that was tried, in order.
        searched: Vec<PathBuf>,
    },
    /// The library exists but could not be loaded (wrong file, wrong version, missing deps).
    #[error("failed to load ONNX Runtime from {path}: {source}")]
    LibraryLoad {
        /// The library file.
        path: PathBuf,
        /// ort's loader error.
        #[source]
        source: ort::LoadDynamicError,
    },
    /// Creating the ONNX Runtime environment failed.
    #[error("failed to create the ONNX Runtime environment: {0}")]
    Environment(#[source] ort::Error),
    /// A graph file does not exist.
    #[error("ONNX graph not found: {0}")]
    GraphMissing(PathBuf),
    /// ONNX Runtime failed to configure or load a session.
    #[error("failed to load ONNX graph {path}: {source}")]
    SessionLoad {
        /// The graph file.
        path: PathBuf,
        /// ONNX Runtime's error.
        #[source]
        source: ort::Error,
    },
    /// [`SessionOptions::cuda_graph`] was asked for a CPU session: CUDA graphs are a feature of
    /// the CUDA provider.
    #[error("CUDA graphs need the CUDA execution provider (--device cuda); this session runs on the CPU")]
    CudaGraphNeedsCuda,
    /// The profile folder ([`SessionOptions::profile_dir`]) could not be created.
    #[error("cannot create the profile folder {dir}: {source}")]
    Profile {
        /// The folder.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// CUDA was requested but cannot run, and CPU fallback was not allowed.
    #[error("CUDA execution provider unavailable: {reason}")]
    CudaUnavailable {
        /// Why CUDA cannot be used.
        reason: String,
    },
}

impl OrtError {
    /// The category of the error: a graph that is missing or does not load is
    /// [`ErrorKind::InvalidModel`]; an ONNX Runtime library that cannot be found or loaded, an
    /// environment that cannot be created or an unavailable CUDA device is the deployment's
    /// problem, [`ErrorKind::Internal`]. Never the request's.
    pub fn kind(&self) -> ErrorKind {
        match self {
            OrtError::GraphMissing(_) | OrtError::SessionLoad { .. } => ErrorKind::InvalidModel,
            OrtError::CudaGraphNeedsCuda => ErrorKind::Unsupported,
            _ => ErrorKind::Internal,
        }
    }
}

fn display_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "(nothing)".to_string();
    }
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// Folder of `.cache/` that `cargo xtask setup` unpacks the CPU build of ONNX Runtime into.
pub const CPU_LIBRARY_DIR: &str = "onnxruntime";
/// Folder of `.cache/` that `cargo xtask setup --cuda` unpacks the CUDA build (`onnxruntime-gpu`)
/// into. Builds with the `cuda` feature look there first; the CUDA build runs CPU sessions too.
pub const GPU_LIBRARY_DIR: &str = "onnxruntime-gpu";

/// The `.cache/<dir>/<version>/<library>` paths searched, most preferred first.
fn cache_relatives() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if cfg!(feature = "cuda") {
        dirs.push(GPU_LIBRARY_DIR);
    }
    dirs.push(CPU_LIBRARY_DIR);
    dirs.into_iter().map(|d| [".cache", d, ORT_VERSION, LIBRARY_FILE].iter().collect()).collect()
}

/// Candidate library locations, in search order, when `ORT_DYLIB_PATH` is not set.
pub fn library_candidates() -> Vec<PathBuf> {
    let rels = cache_relatives();
    let mut out: Vec<PathBuf> = Vec::new();
    let mut push = |p: PathBuf| {
        if !out.contains(&p) {
            out.push(p);
        }
    };
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            push(dir.join(LIBRARY_FILE));
            for anc in dir.ancestors() {
                for rel in &rels {
                    push(anc.join(rel));
                }
            }
        }
    }
    if let Ok(cwd) = std::env::current_dir() {
        for anc in cwd.ancestors() {
            for rel in &rels {
                push(anc.join(rel));
            }
        }
    }
    // The workspace this crate was compiled in (crates/ort -> workspace root).
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    if let Some(ws) = manifest.parent().and_then(Path::parent) {
        for rel in &rels {
            push(ws.join(rel));
        }
    }
    out
}

/// Resolves the ONNX Runtime shared library without loading it.
///
/// `ORT_DYLIB_PATH` wins when set and non-empty; if it names a missing file that is an error
/// (a user who sets it means it). Then the path given to [`set_library_path`] (the same rule).
/// Otherwise [`library_candidates`] are tried in order.
pub fn find_library() -> Result<PathBuf, OrtError> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(OrtError::LibraryNotFound { searched: vec![p] })
        };
    }
    if let Some(p) = LIBRARY_OVERRIDE.lock().unwrap_or_else(|p| p.into_inner()).clone() {
        return if p.is_file() {
            Ok(p)
        } else {
            Err(OrtError::LibraryNotFound { searched: vec![p] })
        };
    }
    let searched = library_candidates();
    match searched.iter().find(|p| p.is_file()) {
        Some(p) => Ok(p.clone()),
        None => Err(OrtError::LibraryNotFound { searched }),
    }
}

static LIBRARY_OVERRIDE: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Sets the library [`find_library`] returns when `ORT_DYLIB_PATH` is not set, for hosts that
/// know where their ONNX Runtime is (the `vidlm` Python package passes the library inside the
/// installed `onnxruntime` package). `None` clears it. It takes effect only before the
/// environment is created ([`environment`]); afterwards the loaded library stays.
pub fn set_library_path(path: Option<PathBuf>) {
    *LIBRARY_OVERRIDE.lock().unwrap_or_else(|p| p.into_inner()) = path;
}

static ENVIRONMENT: Mutex<Option<ort::environment::Environment>> = Mutex::new(None);
static LOADED_LIBRARY: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The ONNX Runtime library this process loaded (`None` before [`environment`] succeeded).
pub fn loaded_library() -> Option<PathBuf> {
    LOADED_LIBRARY.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// The process-wide ONNX Runtime environment, created on first use from [`find_library`].
///
/// Thread-safe; a failed attempt is not cached, so a later call can succeed once the library
/// is installed.
pub fn environment() -> Result<ort::environment::Environment, OrtError> {
    let mut guard = ENVIRONMENT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(env) = guard.as_ref() {
        return Ok(env.clone());
    }
    let path = find_library()?;
    let builder = ort::init_from(&path)
        .map_err(|source| OrtError::LibraryLoad { path: path.clone(), source })?;
    let env = builder.with_name("vidlm").build().map_err(OrtError::Environment)?;
    tracing::info!(library = %path.display(), "ONNX Runtime environment initialised");
    *LOADED_LIBRARY.lock().unwrap_or_else(|p| p.into_inner()) = Some(path);
    *guard = Some(env.clone());
    Ok(env)
}

/// Where a session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// ONNX Runtime's default CPU execution provider.
    #[default]
    Cpu,
    /// The CUDA execution provider (needs the `cuda` feature and a CUDA build of ONNX Runtime).
    Cuda {
        /// CUDA device ordinal.
        device_id: i32,
    },
}

/// The execution provider that a session was actually built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// CPU execution provider.
    Cpu,
    /// CUDA execution provider (ONNX Runtime may still place single unsupported nodes on CPU).
    Cuda {
        /// CUDA device ordinal.
        device_id: i32,
    },
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Provider::Cpu => f.write_str("CPUExecutionProvider"),
            Provider::Cuda { device_id } => write!(f, "CUDAExecutionProvider(device {device_id})"),
        }
    }
}

/// Graph optimisation level (maps to ONNX Runtime's levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OptimizationLevel {
    /// No graph rewrites.
    Disable,
    /// Basic, semantics-preserving rewrites.
    Basic,
    /// Basic + extended fusions.
    Extended,
    /// Everything, including layout optimisations (ONNX Runtime's default).
    #[default]
    All,
}

/// How sessions are built.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionOptions {
    /// Execution provider to use.
    pub device: Device,
    /// If CUDA was asked for but cannot run, use the CPU instead of failing.
    pub allow_cpu_fallback: bool,
    /// Threads used inside one operator (`None` = ONNX Runtime's default: one per core).
    pub intra_threads: Option<usize>,
    /// Threads used to run independent operators in parallel (`None` = default).
    pub inter_threads: Option<usize>,
    /// Whether idle intra-op threads spin before they sleep (`session.intra_op.allow_spinning`;
    /// `None` = ONNX Runtime's default, on).
    /// Spinning shortens the hand-off between the many small operators of a decode step, but
    /// spinning threads take cores from other sessions that run at the same time. `vidlm-vision`
    /// turns it off for its sessions; decoder sessions keep the default.
    pub spinning: Option<bool>,
    /// Graph optimisation level.
    pub optimization_level: OptimizationLevel,
    /// How the session uses memory.
    pub memory: MemoryOptions,
    /// Capture the session's runs in CUDA graphs (the CUDA provider's `enable_cuda_graph`), so a
    /// run replays one recorded graph instead of launching each kernel from the host.
    ///
    /// Only for [`Device::Cuda`]: asking for it on [`Device::Cpu`] is
    /// [`OrtError::CudaGraphNeedsCuda`]. ONNX Runtime can only capture a graph with no control
    /// flow (`If`, `Loop`, `Scan`), every node on the CUDA provider, static shapes and every
    /// input and output bound to device memory at a fixed address: a graph file with control
    /// flow, or a CUDA request that fell back to the CPU, loads without capture and says why in
    /// [`LoadedSession::cuda_graph_off`] (one `tracing` warning). The caller must then run it
    /// through an `IoBinding` of fixed device buffers (see `vidlm-decoder`'s `GraphStep`).
    pub cuda_graph: bool,
    /// Write an ONNX Runtime profile (a Chrome-trace JSON of every node's kernel time) of each
    /// session into this folder (`<graph stem>_<timestamp>.json`, written when the session is
    /// dropped or [`LoadedSession::end_profiling`] is called). `None`: no profiling.
    pub profile_dir: Option<PathBuf>,
}

/// How a session uses memory. The defaults are chosen by measurement on the real-size models
/// (see `ARCHITECTURE.md`, vidlm-ort invariants); each switch maps to one ONNX Runtime setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryOptions {
    /// Whether kernels keep pre-packed copies of constant weights (`session.disable_prepacking`
    /// when off). A pre-packed copy is anonymous memory made at load time; without it MatMul
    /// reads the weights where they are (memory-mapped external data).
    pub prepack_weights: Prepack,
    /// ONNX Runtime's CPU memory arena (`EnableCpuMemArena`). An arena keeps the largest
    /// activations it ever held until the session is dropped; without it activations go to the
    /// system allocator and are returned after each run.
    pub cpu_arena: bool,
    /// Plan activation memory per input shape in one block (`enable_mem_pattern`).
    pub memory_pattern: bool,
}

/// When a session pre-packs its constant weights ([`MemoryOptions::prepack_weights`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Prepack {
    /// Pre-pack only graphs that hold `MatMulNBits` (8-/4-bit weights). Measured on the real-size
    /// OneVision-0.5B: fp32/fp16 `MatMul` with one row (every decode step) runs as fast or faster
    /// on the unpacked, memory-mapped weights and loads 10× quicker, while `MatMulNBits` on the
    /// CPU without its packed weights takes a slow path (q4 decode 0.11 tok/s unpacked against
    /// 13.6 packed). A packed quantized weight is about the quantized size.
    #[default]
    Auto,
    /// Always pre-pack.
    On,
    /// Never pre-pack.
    Off,
}

/// The graph-level operator that needs pre-packed weights on the CPU ([`Prepack::Auto`]).
const PREPACK_OP: &str = "MatMulNBits";

impl Prepack {
    /// Whether the graph at `path` is pre-packed. For [`Prepack::Auto`] this reads the graph's
    /// structure (not its weights); an unreadable file is left to the session load to report, and
    /// is not pre-packed.
    pub fn resolve(self, path: &Path) -> bool {
        match self {
            Prepack::On => true,
            Prepack::Off => false,
            Prepack::Auto => onnx_file::OnnxFile::read(path)
                .map(|f| f.nodes.iter().any(|n| n.op_type == PREPACK_OP))
                .unwrap_or(false),
        }
    }
}

impl Default for MemoryOptions {
    /// Pre-packing decided per graph ([`Prepack::Auto`]), ONNX Runtime's arena and memory patterns
    /// as usual.
    fn default() -> Self {
        MemoryOptions { prepack_weights: Prepack::Auto, cpu_arena: true, memory_pattern: true }
    }
}

/// A loaded session plus what it was built with.
#[derive(Debug)]
pub struct LoadedSession {
    /// The ONNX Runtime session.
    pub session: Session,
    /// The execution provider the session uses.
    pub provider: Provider,
    /// The graph file it was loaded from.
    pub path: PathBuf,
    /// Input descriptions read from the session.
    pub inputs: Vec<TensorInfo>,
    /// Output descriptions read from the session.
    pub outputs: Vec<TensorInfo>,
    /// Why CUDA was not used, when it was asked for and the session fell back to the CPU
    /// ([`SessionOptions::allow_cpu_fallback`]).
    pub cuda_fallback: Option<String>,
    /// Whether the CUDA provider captures this session's runs in CUDA graphs
    /// ([`SessionOptions::cuda_graph`] asked for and possible).
    pub cuda_graph: bool,
    /// Why [`SessionOptions::cuda_graph`] was asked for and is off (control flow in the graph,
    /// a fallback to the CPU); `None` when it was not asked for or is on.
    pub cuda_graph_off: Option<String>,
    /// Whether profiling is on ([`SessionOptions::profile_dir`]) and not yet ended.
    profiled: bool,
}

impl LoadedSession {
    /// Ends profiling ([`SessionOptions::profile_dir`]) and returns the profile's file name;
    /// `None` when the session was not profiled. Later runs are not profiled.
    pub fn end_profiling(&mut self) -> Option<Result<PathBuf, ort::Error>> {
        if !self.profiled {
            return None;
        }
        self.profiled = false;
        Some(self.session.end_profiling().map(PathBuf::from))
    }
}

/// Control-flow operators, which a CUDA graph cannot capture.
pub const CONTROL_FLOW_OPS: [&str; 3] = ["If", "Loop", "Scan"];

/// Why the graph at `path` cannot be captured in a CUDA graph, as far as its file tells
/// (control-flow nodes; an unreadable file is left to the session load to report), or `None`.
/// Static shapes and the placement of every node on the CUDA provider are checked by ONNX
/// Runtime itself at the first run.
pub fn cuda_graph_blocker(path: &Path) -> Option<String> {
    let file = onnx_file::OnnxFile::read(path).ok()?;
    let mut found: Vec<&str> = Vec::new();
    for n in &file.nodes {
        if let Some(op) = CONTROL_FLOW_OPS.iter().find(|op| **op == n.op_type) {
            if !found.contains(op) {
                found.push(op);
            }
        }
    }
    let count =
        file.nodes.iter().filter(|n| CONTROL_FLOW_OPS.contains(&n.op_type.as_str())).count();
    (!found.is_empty()).then(|| {
        format!(
            "{} has {count} control-flow node(s) ({}), which a CUDA graph cannot capture",
            path.file_name()
                .map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned()),
            found.join(", ")
        )
    })
}

type Builder = ort::session::builder::SessionBuilder;

fn base_builder(path: &Path, opts: &SessionOptions) -> Result<Builder, OrtError> {
    let env = environment()?;
    let load_err = |e: ort::Error| OrtError::SessionLoad { path: path.to_path_buf(), source: e };
    let mut b = Session::builder(&env).map_err(load_err)?;
    use ort::session::builder::GraphOptimizationLevel as G;
    let level = match opts.optimization_level {
        OptimizationLevel::Disable => G::Disable,
        OptimizationLevel::Basic => G::Level1,
        OptimizationLevel::Extended => G::Level2,
        OptimizationLevel::All => G::All,
    };
    b = b.with_optimization_level(level).map_err(|e| load_err(e.into()))?;
    if let Some(n) = opts.intra_threads {
        b = b.with_intra_threads(n).map_err(|e| load_err(e.into()))?;
    }
    if let Some(n) = opts.inter_threads {
        b = b.with_inter_threads(n).map_err(|e| load_err(e.into()))?;
    }
    if let Some(spin) = opts.spinning {
        b = b.with_intra_op_spinning(spin).map_err(|e| load_err(e.into()))?;
    }
    let m = opts.memory;
    let prepack = m.prepack_weights.resolve(path);
    tracing::debug!(graph = %path.display(), prepack, "weight pre-packing");
    b = b.with_prepacking(prepack).map_err(|e| load_err(e.into()))?;
    b = b.with_memory_pattern(m.memory_pattern).map_err(|e| load_err(e.into()))?;
    if let Some(dir) = &opts.profile_dir {
        std::fs::create_dir_all(dir)
            .map_err(|e| OrtError::Profile { dir: dir.clone(), source: e })?;
        let stem = path.file_stem().map_or_else(|| "graph".into(), |s| s.to_string_lossy());
        b = b.with_profiling(dir.join(stem.as_ref())).map_err(|e| load_err(e.into()))?;
    }
    Ok(b)
}

/// The CPU provider with the arena setting of `opts` (registering it only sets the arena: the CPU
/// provider is always present, and ranks after any other provider).
fn cpu_ep(opts: &SessionOptions) -> ort::ep::ExecutionProviderDispatch {
    ort::ep::CPU::default().with_arena_allocator(opts.memory.cpu_arena).build().error_on_failure()
}

fn cpu_builder(path: &Path, opts: &SessionOptions) -> Result<Builder, OrtError> {
    base_builder(path, opts)?
        .with_execution_providers([cpu_ep(opts)])
        .map_err(|e| OrtError::SessionLoad { path: path.to_path_buf(), source: e.into() })
}

fn commit(
    mut b: Builder,
    path: &Path,
    provider: Provider,
    opts: &SessionOptions,
) -> Result<LoadedSession, OrtError> {
    let session = b
        .commit_from_file(path)
        .map_err(|e| OrtError::SessionLoad { path: path.to_path_buf(), source: e })?;
    let inputs = input_infos(&session);
    let outputs = output_infos(&session);
    tracing::info!(graph = %path.display(), provider = %provider, "ONNX session loaded");
    Ok(LoadedSession {
        session,
        provider,
        path: path.to_path_buf(),
        inputs,
        outputs,
        cuda_fallback: None,
        cuda_graph: false,
        cuda_graph_off: None,
        profiled: opts.profile_dir.is_some(),
    })
}

/// Why CUDA cannot be used in this build, or `None` if it may be tried.
fn cuda_blocker() -> Option<String> {
    #[cfg(not(feature = "cuda"))]
    {
        Some("this build has no CUDA support: it was compiled without the `cuda` feature (build with `--features cuda`)".to_string())
    }
    #[cfg(feature = "cuda")]
    {
        use ort::ep::ExecutionProvider;
        let lib =
            loaded_library().map(|p| p.display().to_string()).unwrap_or_else(|| "(unknown)".into());
        match ort::ep::CUDA::is_available() {
            Ok(true) => None,
            Ok(false) => Some(format!(
                "the ONNX Runtime library {lib} is the CPU build: it has no CUDA execution provider \
                 (install the CUDA build with `cargo xtask setup --cuda`, or set ORT_DYLIB_PATH to the \
                 libonnxruntime.so of onnxruntime-gpu {ORT_VERSION})"
            )),
            Err(e) => Some(format!("could not ask the ONNX Runtime library {lib} for CUDA support: {e}")),
        }
    }
}

/// Why [`Device::Cuda`] cannot work with this build and the loaded library, or `None` when a
/// CUDA session may be tried (it can still fail: no device, missing CUDA runtime libraries).
/// Initialises the environment (loads the library) if needed.
pub fn cuda_unavailable_reason() -> Result<Option<String>, OrtError> {
    environment()?;
    Ok(cuda_blocker())
}

/// The shared object a loader error names as missing (`libX.so.N: cannot open shared object file`).
fn missing_shared_object(msg: &str) -> Option<&str> {
    let at = msg.find(": cannot open shared object file")?;
    let head = &msg[..at];
    let start =
        head.rfind(|c: char| c.is_whitespace() || c == '\'' || c == '"').map_or(0, |i| i + 1);
    Some(&head[start..]).filter(|s| !s.is_empty())
}

/// Turns ONNX Runtime's message about a CUDA provider that could not start into one that says
/// what is missing: the provider library, the NVIDIA driver, the CUDA runtime, cuDNN or a device.
pub fn explain_cuda_failure(msg: &str) -> String {
    let what = match missing_shared_object(msg) {
        Some(lib) if lib.starts_with("libonnxruntime_providers") => format!(
            "the CUDA provider library {lib} was not found next to the ONNX Runtime library (install the CUDA build with `cargo xtask setup --cuda`)"
        ),
        Some(lib) if lib.starts_with("libcuda.so") => {
            format!("the NVIDIA driver library {lib} was not found (is an NVIDIA driver installed?)")
        }
        Some(lib) if lib.starts_with("libcudnn") => {
            format!("cuDNN ({lib}) was not found: ONNX Runtime {ORT_VERSION} needs cuDNN 9 for CUDA 13")
        }
        Some(lib) => format!(
            "the CUDA runtime library {lib} was not found: ONNX Runtime {ORT_VERSION} needs CUDA 13.x (cudart, cuBLAS, cuRAND) and cuDNN 9 on the library path"
        ),
        None if msg.contains("no CUDA-capable device") || msg.contains("cudaErrorNoDevice") => {
            "no CUDA-capable device was found".to_string()
        }
        None if msg.contains("driver version is insufficient") || msg.contains("cudaErrorInsufficientDriver") => {
            format!("the NVIDIA driver is too old for the CUDA 13 runtime of ONNX Runtime {ORT_VERSION}")
        }
        None => "the CUDA execution provider failed to start".to_string(),
    };
    format!("{what} (ONNX Runtime: {})", msg.trim())
}

#[cfg(feature = "cuda")]
fn looks_like_cuda_failure(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("cuda") || m.contains("cudnn") || m.contains("cublas") || m.contains("shared object")
}

#[cfg(feature = "cuda")]
fn try_cuda(
    path: &Path,
    opts: &SessionOptions,
    device_id: i32,
    cuda_graph: bool,
) -> Result<LoadedSession, OrtError> {
    let b = base_builder(path, opts)?;
    let ep = ort::ep::CUDA::default()
        .with_device_id(device_id)
        .with_cuda_graph(cuda_graph)
        .build()
        .error_on_failure();
    let b = b
        .with_execution_providers([ep, cpu_ep(opts)])
        .map_err(|e| OrtError::CudaUnavailable { reason: explain_cuda_failure(&e.to_string()) })?;
    match commit(b, path, Provider::Cuda { device_id }, opts) {
        // A session that fails to start on the device (no GPU, driver too old) is CUDA being
        // unavailable, not a broken graph.
        Err(OrtError::SessionLoad { source, .. })
            if looks_like_cuda_failure(&source.to_string()) =>
        {
            Err(OrtError::CudaUnavailable { reason: explain_cuda_failure(&source.to_string()) })
        }
        other => other,
    }
}

/// Builds a session for the graph at `path` with `opts`.
///
/// Checks the file exists first ([`OrtError::GraphMissing`]). For [`Device::Cuda`], a CUDA
/// provider that cannot be registered is [`OrtError::CudaUnavailable`], or — with
/// `allow_cpu_fallback` — a warning and a CPU session.
pub fn load_session(
    path: impl AsRef<Path>,
    opts: &SessionOptions,
) -> Result<LoadedSession, OrtError> {
    let path = path.as_ref();
    if !path.is_file() {
        return Err(OrtError::GraphMissing(path.to_path_buf()));
    }
    match opts.device {
        Device::Cpu if opts.cuda_graph => Err(OrtError::CudaGraphNeedsCuda),
        Device::Cpu => commit(cpu_builder(path, opts)?, path, Provider::Cpu, opts),
        Device::Cuda { device_id } => {
            let graph_off = if opts.cuda_graph { cuda_graph_blocker(path) } else { None };
            let capture = opts.cuda_graph && graph_off.is_none();
            if let Some(reason) = &graph_off {
                tracing::warn!(graph = %path.display(), %reason, "CUDA graph capture off");
            }
            // The library is loaded first, so that the reason names it (as `cuda_unavailable_reason`).
            let attempt: Result<LoadedSession, OrtError> = match cuda_unavailable_reason()? {
                Some(reason) => Err(OrtError::CudaUnavailable { reason }),
                None => {
                    #[cfg(feature = "cuda")]
                    {
                        try_cuda(path, opts, device_id, capture)
                    }
                    #[cfg(not(feature = "cuda"))]
                    {
                        let _ = capture;
                        Err(OrtError::CudaUnavailable {
                            reason: format!("device {device_id}: not compiled in"),
                        })
                    }
                }
            };
            match attempt {
                Ok(mut s) => {
                    s.cuda_graph = capture;
                    s.cuda_graph_off = graph_off;
                    Ok(s)
                }
                Err(OrtError::CudaUnavailable { reason }) if opts.allow_cpu_fallback => {
                    tracing::warn!(graph = %path.display(), %reason, "CUDA unavailable, falling back to CPUExecutionProvider");
                    let mut s = commit(cpu_builder(path, opts)?, path, Provider::Cpu, opts)?;
                    if opts.cuda_graph {
                        s.cuda_graph_off =
                            Some(format!("the session fell back to the CPU: {reason}"));
                    }
                    s.cuda_fallback = Some(reason);
                    Ok(s)
                }
                Err(e) => Err(e),
            }
        }
    }
}

/// Description of one graph input or output, read from the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Name in the graph.
    pub name: String,
    /// Element type, or `None` for non-tensor values (sequences, maps).
    pub elem_type: Option<TensorElementType>,
    /// Shape; dynamic dimensions are `-1`.
    pub shape: Vec<i64>,
    /// Symbolic names of the dimensions (empty strings where none).
    pub dim_names: Vec<String>,
}

impl TensorInfo {
    fn from_outlet(o: &ort::value::Outlet) -> Self {
        let dtype = o.dtype();
        let (shape, dim_names) = match dtype {
            ort::value::ValueType::Tensor { shape, dimension_symbols, .. } => (
                shape.iter().copied().collect::<Vec<i64>>(),
                dimension_symbols.iter().map(|s| s.to_string()).collect::<Vec<String>>(),
            ),
            _ => (Vec::new(), Vec::new()),
        };
        TensorInfo { name: o.name().to_string(), elem_type: dtype.tensor_type(), shape, dim_names }
    }

    /// Rank of the tensor (0 for a scalar or a non-tensor).
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
}

/// Inputs of a session, in graph order.
pub fn input_infos(session: &Session) -> Vec<TensorInfo> {
    session.inputs().iter().map(TensorInfo::from_outlet).collect()
}

/// Outputs of a session, in graph order.
pub fn output_infos(session: &Session) -> Vec<TensorInfo> {
    session.outputs().iter().map(TensorInfo::from_outlet).collect()
}

/// Finds a tensor description by name.
pub fn find_info<'a>(infos: &'a [TensorInfo], name: &str) -> Option<&'a TensorInfo> {
    infos.iter().find(|i| i.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_include_workspace_cache() {
        let c = library_candidates();
        let ws = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../.cache/onnxruntime")
            .join(ORT_VERSION);
        let ws = ws.join(LIBRARY_FILE);
        let ws_norm: PathBuf = ws.components().collect();
        assert!(c
            .iter()
            .any(|p| p.ends_with(Path::new(".cache/onnxruntime/1.31.1").join(LIBRARY_FILE))));
        assert!(!c.is_empty());
        let _ = ws_norm;
    }

    /// A one-node graph of `op` (ModelProto.graph = 7, GraphProto.node = 1, NodeProto.op_type = 4).
    fn one_node_graph(op: &str) -> PathBuf {
        use onnx_file::encode::field;
        let mut node = Vec::new();
        field(4, op.as_bytes(), &mut node);
        let mut graph = Vec::new();
        field(1, &node, &mut graph);
        let mut model = Vec::new();
        field(7, &graph, &mut model);
        let dir =
            std::env::temp_dir().join(format!("vidlm-ort-prepack-{}-{op}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("g.onnx");
        std::fs::write(&p, model).unwrap();
        p
    }

    #[test]
    fn control_flow_blocks_cuda_graphs() {
        let branchy = one_node_graph("If");
        let plain = one_node_graph("MatMul");
        let reason = cuda_graph_blocker(&branchy).expect("an If node blocks capture");
        assert!(reason.contains("1 control-flow node(s) (If)"), "{reason}");
        assert_eq!(cuda_graph_blocker(&plain), None);
        assert_eq!(cuda_graph_blocker(Path::new("/definitely/not/here.onnx")), None);
    }

    #[test]
    fn cuda_graphs_are_refused_on_the_cpu() {
        let plain = one_node_graph("MatMul");
        let opts = SessionOptions { cuda_graph: true, ..Default::default() };
        let err = load_session(&plain, &opts).unwrap_err();
        assert!(matches!(err, OrtError::CudaGraphNeedsCuda), "{err}");
        assert_eq!(err.kind(), ErrorKind::Unsupported);
    }

    #[test]
    fn prepacking_follows_the_graph() {
        let quantized = one_node_graph("MatMulNBits");
        let plain = one_node_graph("MatMul");
        assert!(Prepack::Auto.resolve(&quantized));
        assert!(!Prepack::Auto.resolve(&plain));
        assert!(!Prepack::Auto.resolve(Path::new("/definitely/not/here.onnx")));
        assert!(Prepack::On.resolve(&plain));
        assert!(!Prepack::Off.resolve(&quantized));
        assert_eq!(MemoryOptions::default().prepack_weights, Prepack::Auto);
    }

    #[test]
    fn missing_graph_is_typed() {
        let err =
            load_session("/definitely/not/here.onnx", &SessionOptions::default()).unwrap_err();
        assert!(
            matches!(err, OrtError::GraphMissing(p) if p == Path::new("/definitely/not/here.onnx"))
        );
    }

    #[test]
    fn error_lists_search_paths() {
        let e = OrtError::LibraryNotFound {
            searched: vec![PathBuf::from("/a/x.so"), PathBuf::from("/b/y.so")],
        };
        let s = e.to_string();
        assert!(s.contains("/a/x.so, /b/y.so"), "{s}");
        assert!(s.contains("ORT_DYLIB_PATH"));
    }

    #[test]
    fn cuda_failures_name_what_is_missing() {
        let m = "Failed to load library libonnxruntime_providers_cuda.so with error: libcublasLt.so.13: cannot open shared object file: No such file or directory";
        let e = explain_cuda_failure(m);
        assert!(e.starts_with("the CUDA runtime library libcublasLt.so.13 was not found"), "{e}");
        assert!(e.contains("CUDA 13") && e.contains(m), "{e}");
        let e = explain_cuda_failure(
            "libcuda.so.1: cannot open shared object file: No such file or directory",
        );
        assert!(e.starts_with("the NVIDIA driver library libcuda.so.1"), "{e}");
        let e = explain_cuda_failure("Failed to load library libonnxruntime_providers_cuda.so with error: libonnxruntime_providers_cuda.so: cannot open shared object file: No such file or directory");
        assert!(e.starts_with("the CUDA provider library libonnxruntime_providers_cuda.so"), "{e}");
        let e = explain_cuda_failure(
            "Could not load library libcudnn_graph.so.9: cannot open shared object file",
        );
        assert!(e.starts_with("cuDNN (libcudnn_graph.so.9)"), "{e}");
        let e =
            explain_cuda_failure("CUDA failure 100: no CUDA-capable device is detected ; GPU=0");
        assert!(e.starts_with("no CUDA-capable device"), "{e}");
        let e = explain_cuda_failure("something else");
        assert!(e.starts_with("the CUDA execution provider failed to start"), "{e}");
    }

    #[test]
    fn cuda_builds_prefer_the_gpu_library() {
        let c = library_candidates();
        let pos = |d: &str| {
            c.iter().position(|p| {
                p.ends_with(Path::new(".cache").join(d).join(ORT_VERSION).join(LIBRARY_FILE))
            })
        };
        let cpu = pos(CPU_LIBRARY_DIR).expect("cpu dir searched");
        let gpu = pos(GPU_LIBRARY_DIR);
        assert_eq!(
            gpu.is_some(),
            cfg!(feature = "cuda"),
            "only (and every) cuda build searches {GPU_LIBRARY_DIR}"
        );
        if let Some(gpu) = gpu {
            assert!(gpu < cpu);
        }
    }

    #[test]
    fn provider_display() {
        assert_eq!(Provider::Cpu.to_string(), "CPUExecutionProvider");
        assert_eq!(Provider::Cuda { device_id: 1 }.to_string(), "CUDAExecutionProvider(device 1)");
    }
}
