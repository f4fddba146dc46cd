//! # vidlm-ort — the one place vidlm talks to ONNX Runtime's set-up
//!
//! Every vidlm crate that runs a graph (`vidlm-vision`, `vidlm-decoder`) goes through this
//! crate, so that the ONNX Runtime shared library is found and initialised exactly once per
//! process and every session is built the same way.
//!
//! * **Library discovery** ([`find_library`]): `ORT_DYLIB_PATH` if set (an explicit path that
//!   does not exist is an error, never silently ignored); otherwise the library next to the
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

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
    /// CUDA was requested but cannot run, and CPU fallback was not allowed.
    #[error("CUDA execution provider unavailable: {reason}")]
    CudaUnavailable {
        /// Why CUDA cannot be used.
        reason: String,
    },
}

fn display_paths(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "(nothing)".to_string();
    }
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// Candidate library locations, in search order, when `ORT_DYLIB_PATH` is not set.
pub fn library_candidates() -> Vec<PathBuf> {
    let rel: PathBuf = [".cache", "onnxruntime", ORT_VERSION, LIBRARY_FILE].iter().collect();
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
                push(anc.join(&rel));
            }
        }
    }
    if let Ok(cwd) = std::env::current_dir() {
        for anc in cwd.ancestors() {
            push(anc.join(&rel));
        }
    }
    // The workspace this crate was compiled in (crates/ort -> workspace root).
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    if let Some(ws) = manifest.parent().and_then(Path::parent) {
        push(ws.join(&rel));
    }
    out
}

/// Resolves the ONNX Runtime shared library without loading it.
///
/// `ORT_DYLIB_PATH` wins when set and non-empty; if it names a missing file that is an error
/// (a user who sets it means it). Otherwise [`library_candidates`] are tried in order.
pub fn find_library() -> Result<PathBuf, OrtError> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() { Ok(p) } else { Err(OrtError::LibraryNotFound { searched: vec![p] }) };
    }
    let searched = library_candidates();
    match searched.iter().find(|p| p.is_file()) {
        Some(p) => Ok(p.clone()),
        None => Err(OrtError::LibraryNotFound { searched }),
    }
}

static ENVIRONMENT: Mutex<Option<ort::environment::Environment>> = Mutex::new(None);

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
    let builder = ort::init_from(&path).map_err(|source| OrtError::LibraryLoad { path: path.clone(), source })?;
    let env = builder.with_name("vidlm").build().map_err(OrtError::Environment)?;
    tracing::info!(library = %path.display(), "ONNX Runtime environment initialised");
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
    /// Graph optimisation level.
    pub optimization_level: OptimizationLevel,
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
    Ok(b)
}

fn commit(mut b: Builder, path: &Path, provider: Provider) -> Result<LoadedSession, OrtError> {
    let session = b
        .commit_from_file(path)
        .map_err(|e| OrtError::SessionLoad { path: path.to_path_buf(), source: e })?;
    let inputs = input_infos(&session);
    let outputs = output_infos(&session);
    tracing::info!(graph = %path.display(), provider = %provider, "ONNX session loaded");
    Ok(LoadedSession { session, provider, path: path.to_path_buf(), inputs, outputs })
}

/// Why CUDA cannot be used in this build, or `None` if it may be tried.
fn cuda_blocker() -> Option<String> {
    #[cfg(not(feature = "cuda"))]
    {
        Some("vidlm-ort was compiled without the `cuda` feature".to_string())
    }
    #[cfg(feature = "cuda")]
    {
        use ort::ep::ExecutionProvider;
        match ort::ep::CUDA::is_available() {
            Ok(true) => None,
            Ok(false) => Some("the loaded ONNX Runtime library was built without CUDA support".to_string()),
            Err(e) => Some(format!("could not query ONNX Runtime for CUDA support: {e}")),
        }
    }
}

#[cfg(feature = "cuda")]
fn try_cuda(path: &Path, opts: &SessionOptions, device_id: i32) -> Result<LoadedSession, OrtError> {
    let b = base_builder(path, opts)?;
    let ep = ort::ep::CUDA::default().with_device_id(device_id).build().error_on_failure();
    let b = b
        .with_execution_providers([ep])
        .map_err(|e| OrtError::CudaUnavailable { reason: e.to_string() })?;
    commit(b, path, Provider::Cuda { device_id })
}

/// Builds a session for the graph at `path` with `opts`.
///
/// Checks the file exists first ([`OrtError::GraphMissing`]). For [`Device::Cuda`], a CUDA
/// provider that cannot be registered is [`OrtError::CudaUnavailable`], or — with
/// `allow_cpu_fallback` — a warning and a CPU session.
pub fn load_session(path: impl AsRef<Path>, opts: &SessionOptions) -> Result<LoadedSession, OrtError> {
    let path = path.as_ref();
    if !path.is_file() {
        return Err(OrtError::GraphMissing(path.to_path_buf()));
    }
    match opts.device {
        Device::Cpu => commit(base_builder(path, opts)?, path, Provider::Cpu),
        Device::Cuda { device_id } => {
            let attempt = match cuda_blocker() {
                Some(reason) => Err(OrtError::CudaUnavailable { reason }),
                None => {
                    #[cfg(feature = "cuda")]
                    {
                        try_cuda(path, opts, device_id)
                    }
                    #[cfg(not(feature = "cuda"))]
                    {
                        Err(OrtError::CudaUnavailable { reason: format!("device {device_id}: not compiled in") })
                    }
                }
            };
            match attempt {
                Ok(s) => Ok(s),
                Err(OrtError::CudaUnavailable { reason }) if opts.allow_cpu_fallback => {
                    tracing::warn!(graph = %path.display(), %reason, "CUDA unavailable, falling back to CPUExecutionProvider");
                    commit(base_builder(path, opts)?, path, Provider::Cpu)
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
        let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/onnxruntime").join(ORT_VERSION);
        let ws = ws.join(LIBRARY_FILE);
        let ws_norm: PathBuf = ws.components().collect();
        assert!(c.iter().any(|p| p.ends_with(Path::new(".cache/onnxruntime/1.31.1").join(LIBRARY_FILE))));
        assert!(!c.is_empty());
        let _ = ws_norm;
    }

    #[test]
    fn missing_graph_is_typed() {
        let err = load_session("/definitely/not/here.onnx", &SessionOptions::default()).unwrap_err();
        assert!(matches!(err, OrtError::GraphMissing(p) if p == Path::new("/definitely/not/here.onnx")));
    }

    #[test]
    fn error_lists_search_paths() {
        let e = OrtError::LibraryNotFound { searched: vec![PathBuf::from("/a/x.so"), PathBuf::from("/b/y.so")] };
        let s = e.to_string();
        assert!(s.contains("/a/x.so, /b/y.so"), "{s}");
        assert!(s.contains("ORT_DYLIB_PATH"));
    }

    #[test]
    fn provider_display() {
        assert_eq!(Provider::Cpu.to_string(), "CPUExecutionProvider");
        assert_eq!(Provider::Cuda { device_id: 1 }.to_string(), "CUDAExecutionProvider(device 1)");
    }
}
