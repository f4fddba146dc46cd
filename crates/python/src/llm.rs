//! `vidlm.LLM`, `vidlm.SamplingParams` and the outputs (vLLM's names).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use vidlm_decoder::GenerationOptions;
use vidlm_media_source::FrameSampling;
use vidlm_openai::StopTrimmer;
use vidlm_pipeline::{Device, HubOptions, PipelineOptions, Precision, Precisions, SessionOptions};
use vidlm_processor::{Conversation, ProcessOptions};

use crate::engine_api::{Finished, Host, Request, Update, Waiter, POLL};
use crate::errors::{guard, Failure};
use crate::media::{parse_many, process_options, RawConversation};

/// Sampling parameters of a request (vLLM's names).
#[pyclass(module = "vidlm", get_all, set_all)]
#[derive(Debug, Clone)]
pub struct SamplingParams {
    /// Most new tokens (None: the model's limit).
    pub max_tokens: Option<usize>,
    /// 0 is greedy decoding; above 0 samples at this temperature.
    pub temperature: f64,
    /// Nucleus sampling (1.0: off).
    pub top_p: f64,
    /// Top-k sampling (None: off).
    pub top_k: Option<usize>,
    /// Seed of the request's own random generator.
    pub seed: Option<u64>,
    /// Stop strings: the text ends before the first one (it is not included).
    pub stop: Option<Vec<String>>,
    /// Keep generating past EOS (until max_tokens).
    pub ignore_eos: bool,
    /// Repetition penalty (1.0: off, whatever the checkpoint's generation config says).
    pub repetition_penalty: f64,
}

#[pymethods]
impl SamplingParams {
    #[new]
    #[pyo3(signature = (max_tokens=16, temperature=0.0, top_p=1.0, top_k=None, seed=None, stop=None, ignore_eos=false, repetition_penalty=1.0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        max_tokens: Option<usize>,
        temperature: f64,
        top_p: f64,
        top_k: Option<usize>,
        seed: Option<u64>,
        stop: Option<Bound<'_, PyAny>>,
        ignore_eos: bool,
        repetition_penalty: f64,
    ) -> PyResult<Self> {
        let stop = match stop {
            None => None,
            Some(s) => match s.extract::<String>() {
                Ok(one) => Some(vec![one]),
                Err(_) => Some(s.extract::<Vec<String>>().map_err(|_| {
                    PyErr::from(Failure::bad_request("stop must be a string or a list of strings"))
                })?),
            },
        };
        let p = SamplingParams {
            max_tokens,
            temperature,
            top_p,
            top_k,
            seed,
            stop,
            ignore_eos,
            repetition_penalty,
        };
        p.generation()?;
        Ok(p)
    }

    fn __repr__(&self) -> String {
        format!(
            "SamplingParams(max_tokens={:?}, temperature={}, top_p={}, top_k={:?}, seed={:?}, stop={:?}, ignore_eos={}, repetition_penalty={})",
            self.max_tokens, self.temperature, self.top_p, self.top_k, self.seed, self.stop,
            self.ignore_eos, self.repetition_penalty
        )
    }
}

impl SamplingParams {
    /// The engine's generation options (checked here; the engine checks them again).
    fn generation(&self) -> Result<GenerationOptions, Failure> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(Failure::bad_request(format!(
                "temperature must be >= 0, got {}",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Failure::bad_request(format!(
                "top_p must be in (0, 1], got {}",
                self.top_p
            )));
        }
        if self.top_k == Some(0) {
            return Err(Failure::bad_request("top_k must be at least 1 (None: off)"));
        }
        if self.max_tokens == Some(0) {
            return Err(Failure::bad_request("max_tokens must be at least 1"));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return Err(Failure::bad_request(format!(
                "repetition_penalty must be > 0, got {}",
                self.repetition_penalty
            )));
        }
        let sample = self.temperature > 0.0;
        let mut g = GenerationOptions {
            max_new_tokens: self.max_tokens,
            do_sample: Some(sample),
            seed: self.seed,
            ..Default::default()
        };
        if sample {
            g.temperature = Some(self.temperature as f32);
            g.top_p = Some(self.top_p as f32);
            g.top_k = self.top_k;
        } else if self.top_p != 1.0 || self.top_k.is_some() {
            return Err(Failure::bad_request(
                "top_p and top_k need sampling (temperature > 0); greedy decoding ignores them",
            ));
        }
        // Always the given value, as every other field: 1.0 is off, even where the checkpoint's
        // generation config sets a penalty (Qwen2.5-VL's 1.05), as vLLM's explicit SamplingParams.
        g.repetition_penalty = Some(self.repetition_penalty as f32);
        if self.ignore_eos {
            g.eos_token_ids = Some(Vec::new());
        }
        if let Some(s) = &self.stop {
            if !s.is_empty() {
                g.stop_strings = Some(s.clone());
            }
        }
        Ok(g)
    }
}

/// One generated answer.
#[pyclass(module = "vidlm", get_all, frozen)]
#[derive(Debug, Clone)]
pub struct CompletionOutput {
    /// Always 0 (one answer per request).
    pub index: usize,
    /// The answer (up to, not including, a stop string).
    pub text: String,
    /// The generated token ids.
    pub token_ids: Vec<i64>,
    /// `"stop"` (EOS or a stop string) or `"length"` (max_tokens or the context).
    pub finish_reason: String,
}

#[pymethods]
impl CompletionOutput {
    fn __repr__(&self) -> String {
        format!(
            "CompletionOutput(index={}, text={:?}, token_ids=[{} ids], finish_reason={:?})",
            self.index,
            self.text,
            self.token_ids.len(),
            self.finish_reason
        )
    }
}

/// The result of one conversation.
#[pyclass(module = "vidlm", frozen)]
#[derive(Debug)]
pub struct RequestOutput {
    /// The conversation's index in the call.
    #[pyo3(get)]
    pub request_id: String,
    /// The expanded prompt ids (placeholders expanded: transformers' `input_ids`).
    #[pyo3(get)]
    pub prompt_token_ids: Vec<i64>,
    /// The rendered prompt (before placeholder expansion).
    #[pyo3(get)]
    pub prompt: String,
    /// The answers (one).
    #[pyo3(get)]
    pub outputs: Vec<CompletionOutput>,
    /// Whether the request finished.
    #[pyo3(get)]
    pub finished: bool,
    timings: Vec<(&'static str, f64)>,
}

#[pymethods]
impl RequestOutput {
    /// Per-stage times in seconds (`decode` = media decoding in the calling thread, `queue`,
    /// `media`, `preprocess`, `vision`, `embed`, `prefill`, `first_token`, `decode_step`,
    /// `total`), `decode_tokens_per_s` and `prompt_tokens`.
    #[getter]
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, v) in &self.timings {
            d.set_item(*k, *v)?;
        }
        d.set_item("prompt_tokens", self.prompt_token_ids.len())?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        format!(
            "RequestOutput(request_id={:?}, prompt_token_ids=[{} ids], outputs={:?}, finished={})",
            self.request_id,
            self.prompt_token_ids.len(),
            self.outputs.iter().map(|o| o.__repr__()).collect::<Vec<_>>(),
            self.finished
        )
    }
}

/// One conversation ready for the engine.
struct Prepared {
    conv: Conversation,
    prompt: String,
    decode_s: f64,
}

fn prepare(host: &Host, raw: &RawConversation, opts: &ProcessOptions) -> Result<Prepared, Failure> {
    let t0 = std::time::Instant::now();
    let conv = raw.decode(host.processor(), opts)?;
    let decode_s = t0.elapsed().as_secs_f64();
    let prompt = host.processor().render(&conv, true)?;
    Ok(Prepared { conv, prompt, decode_s })
}

fn output(tag: usize, p: &Prepared, f: Finished, stops: &[String]) -> RequestOutput {
    let mut timings = vec![("decode", p.decode_s)];
    timings.extend(f.timings);
    // OpenAI / vLLM semantics: the text ends before the first stop string.
    let mut trimmer = StopTrimmer::new(stops);
    let mut text = trimmer.push(&f.text);
    text.push_str(&trimmer.finish());
    RequestOutput {
        request_id: tag.to_string(),
        prompt_token_ids: f.prompt_token_ids,
        prompt: p.prompt.clone(),
        outputs: vec![CompletionOutput {
            index: 0,
            text,
            token_ids: f.token_ids,
            finish_reason: f.finish_reason.to_string(),
        }],
        finished: true,
        timings,
    }
}

/// Python's pending signals (Ctrl-C raises `KeyboardInterrupt` here, in the main thread).
fn check_signals() -> PyResult<()> {
    Python::with_gil(|py| py.check_signals())
}

/// Parses the backend arguments the way `vidlm run` does.
fn pipeline_options(
    model: &str,
    dtype: Option<&str>,
    device: &str,
    threads: Option<usize>,
) -> Result<PipelineOptions, Failure> {
    let device = match device {
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda { device_id: 0 },
        other => match other.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
            Some(device_id) => Device::Cuda { device_id },
            None => {
                return Err(Failure::bad_request(format!(
                    "unknown device {other:?} (cpu, cuda, cuda:N)"
                )))
            }
        },
    };
    let precision = match dtype {
        Some(d) => d.parse::<Precision>().map_err(|e| Failure::bad_request(e.to_string()))?,
        // The CLI's default: fp32 on the CPU, fp16 on CUDA where the export has it.
        None => match device {
            Device::Cpu => Precision::Fp32,
            Device::Cuda { .. } => {
                let dir = std::path::Path::new(model);
                let fp16 =
                    dir.join(format!("onnx/decoder_model_merged{}.onnx", Precision::Fp16.suffix()));
                if !dir.is_dir() || fp16.is_file() {
                    Precision::Fp16
                } else {
                    Precision::Fp32
                }
            }
        },
    };
    if threads == Some(0) {
        return Err(Failure::bad_request("threads must be at least 1 (None: all cores)"));
    }
    Ok(PipelineOptions {
        session: SessionOptions { device, intra_threads: threads, ..Default::default() },
        precisions: Precisions { vision: precision, embed: precision, decoder: precision },
        hub: HubOptions::default(),
        ..Default::default()
    })
}

/// A loaded model: `chat` and `stream` answer conversations about videos and images.
#[pyclass(module = "vidlm", frozen)]
pub struct LLM {
    host: Arc<Host>,
    model: String,
}

#[pymethods]
impl LLM {
    #[new]
    #[pyo3(signature = (model, dtype=None, device="cpu", threads=None, max_batch=16))]
    fn new(
        py: Python<'_>,
        model: String,
        dtype: Option<String>,
        device: &str,
        threads: Option<usize>,
        max_batch: usize,
    ) -> PyResult<Self> {
        let opts = pipeline_options(&model, dtype.as_deref(), device, threads)?;
        let m = model.clone();
        let host = py.allow_threads(move || guard(|| Ok(Host::load(&m, &opts, max_batch)?)))?;
        Ok(LLM { host: Arc::new(host), model })
    }

    /// The model this LLM loaded.
    #[getter]
    fn model(&self) -> String {
        self.model.clone()
    }

    /// `(running, waiting)` requests in the engine.
    fn load_counts(&self) -> (u64, u64) {
        self.host.load_counts()
    }

    /// Answers one conversation or a list of them (one RequestOutput each, in order; the list
    /// runs batched on one engine). Media: paths, OpenAI image_url/video_url parts (file:// or
    /// data: URLs), or in memory (uint8 [T, H, W, 3] videos with an optional "fps", PIL images
    /// or uint8 [H, W, 3] arrays). Every video is sampled by num_frames or fps, capped by
    /// max_frames. The GIL is released while vidlm works; Ctrl-C cancels.
    #[pyo3(signature = (messages, sampling_params=None, *, num_frames=None, fps=None, max_frames=None))]
    fn chat(
        &self,
        py: Python<'_>,
        messages: &Bound<'_, PyAny>,
        sampling_params: Option<SamplingParams>,
        num_frames: Option<usize>,
        fps: Option<f64>,
        max_frames: Option<usize>,
    ) -> PyResult<Py<PyList>> {
        guard(|| {
            let params = sampling_params.unwrap_or_else(default_params);
            let generation = params.generation()?;
            let stops = params.stop.clone().unwrap_or_default();
            let opts = process_options(&FrameSampling { num_frames, fps, max_frames })?;
            let raws = parse_many(messages)?;
            let host = self.host.clone();
            let outs =
                py.allow_threads(move || run_all(&host, &raws, &opts, &generation, &stops))?;
            let list = PyList::empty(py);
            for o in outs {
                list.append(Py::new(py, o)?)?;
            }
            Ok(list.unbind())
        })
    }

    /// Like chat for one conversation: a TextStream of text deltas as they are generated.
    #[pyo3(signature = (messages, sampling_params=None, *, num_frames=None, fps=None, max_frames=None))]
    fn stream(
        &self,
        py: Python<'_>,
        messages: &Bound<'_, PyAny>,
        sampling_params: Option<SamplingParams>,
        num_frames: Option<usize>,
        fps: Option<f64>,
        max_frames: Option<usize>,
    ) -> PyResult<TextStream> {
        guard(|| {
            let params = sampling_params.unwrap_or_else(default_params);
            let generation = params.generation()?;
            let stops = params.stop.clone().unwrap_or_default();
            let opts = process_options(&FrameSampling { num_frames, fps, max_frames })?;
            let mut raws = parse_many(messages)?;
            if raws.len() != 1 {
                return Err(Failure::bad_request("stream takes one conversation").into());
            }
            let raw = raws.remove(0);
            let host = self.host.clone();
            let (req, prepared) = py.allow_threads(move || -> Result<_, Failure> {
                let mut p = prepare(&host, &raw, &opts)?;
                let req = host.submit(std::mem::take(&mut p.conv), generation)?;
                Ok((req, p))
            })?;
            Ok(TextStream {
                state: Mutex::new(StreamState {
                    req: Some(req),
                    trimmer: StopTrimmer::new(&stops),
                    stops,
                    prepared: Some(prepared),
                    pending: VecDeque::new(),
                    output: None,
                }),
                closed: AtomicBool::new(false),
            })
        })
    }

    fn __repr__(&self) -> String {
        format!("LLM(model={:?})", self.model)
    }
}

fn default_params() -> SamplingParams {
    SamplingParams {
        max_tokens: Some(16),
        temperature: 0.0,
        top_p: 1.0,
        top_k: None,
        seed: None,
        stop: None,
        ignore_eos: false,
        repetition_penalty: 1.0,
    }
}

/// Runs every conversation through the engine, at most a window of them in it at once (media
/// of the next decoded while the engine works); waits (this thread, GIL released) with Python's
/// signals checked at least every [`POLL`].
fn run_all(
    host: &Host,
    raws: &[RawConversation],
    opts: &ProcessOptions,
    generation: &GenerationOptions,
    stops: &[String],
) -> PyResult<Vec<RequestOutput>> {
    let window = 20usize;
    let waiter = Waiter::default();
    let mut in_flight: Vec<(usize, Prepared, Request)> = Vec::new();
    let mut outs: Vec<Option<RequestOutput>> = (0..raws.len()).map(|_| None).collect();
    let mut next = 0usize;
    let mut done = 0usize;
    let mut checked = Instant::now();
    while done < raws.len() {
        while next < raws.len() && in_flight.len() < window {
            let mut p = prepare(host, &raws[next], opts)?;
            let req = host.submit(std::mem::take(&mut p.conv), generation.clone())?;
            in_flight.push((next, p, req));
            next += 1;
            check_signals()?;
            checked = Instant::now();
        }
        let mut cx = waiter.context();
        let mut news = false;
        let mut i = 0;
        while i < in_flight.len() {
            match in_flight[i].2.poll(&mut cx) {
                None => i += 1,
                Some(Update::Token { .. }) => news = true,
                Some(Update::Done(f)) => {
                    let (tag, p, _) = in_flight.swap_remove(i);
                    outs[tag] = Some(output(tag, &p, f, stops));
                    done += 1;
                    news = true;
                }
                // Dropping `in_flight` cancels the others.
                Some(Update::Failed(f)) => return Err(f.into()),
            }
        }
        if !news {
            waiter.park(POLL);
        }
        if checked.elapsed() >= POLL {
            // Ctrl-C: the `KeyboardInterrupt` returns, and dropping `in_flight` cancels.
            check_signals()?;
            checked = Instant::now();
        }
    }
    Ok(outs.into_iter().flatten().collect())
}

struct StreamState {
    req: Option<Request>,
    trimmer: StopTrimmer,
    stops: Vec<String>,
    prepared: Option<Prepared>,
    pending: VecDeque<String>,
    output: Option<Py<RequestOutput>>,
}

/// The text deltas of one answer, as they are generated. Iterating to the end sets `output`
/// (the `RequestOutput`); dropping it early (or Ctrl-C while waiting) cancels the request.
#[pyclass(module = "vidlm")]
pub struct TextStream {
    state: Mutex<StreamState>,
    closed: AtomicBool,
}

#[pymethods]
impl TextStream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<String> {
        guard(|| {
            // One reader at a time: a second thread would wait for the lock holding the GIL
            // while the first needs the GIL back.
            let mut st = match self.state.try_lock() {
                Ok(st) => st,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {
                    return Err(
                        Failure::bad_request("this stream is being read by another thread").into()
                    )
                }
            };
            if self.closed.load(Ordering::SeqCst) {
                st.req = None;
                return Err(PyStopIteration::new_err(()));
            }
            loop {
                if let Some(s) = st.pending.pop_front() {
                    return Ok(s);
                }
                let Some(mut req) = st.req.take() else {
                    return Err(PyStopIteration::new_err(()));
                };
                let closed = &self.closed;
                // Dropping `req` (closed, Ctrl-C) cancels the request.
                let got: PyResult<(Request, Update)> = py.allow_threads(move || loop {
                    if let Some(u) = req.next_timeout(POLL) {
                        return Ok((req, u));
                    }
                    if closed.load(Ordering::SeqCst) {
                        return Err(PyStopIteration::new_err(()));
                    }
                    check_signals()?;
                });
                let (req, u) = got?;
                match u {
                    Update::Token { text, .. } => {
                        st.req = Some(req);
                        let out = st.trimmer.push(&text);
                        if !out.is_empty() {
                            st.pending.push_back(out);
                        }
                    }
                    Update::Done(f) => {
                        let rest = st.trimmer.finish();
                        if !rest.is_empty() {
                            st.pending.push_back(rest);
                        }
                        if let Some(p) = st.prepared.take() {
                            let o = output(0, &p, f, &st.stops);
                            st.output = Some(Py::new(py, o)?);
                        }
                    }
                    Update::Failed(f) => return Err(f.into()),
                }
            }
        })
    }

    /// The `RequestOutput` once the stream is exhausted (None before).
    #[getter]
    fn output(&self, py: Python<'_>) -> Option<Py<RequestOutput>> {
        let st = self.state.try_lock().ok()?;
        st.output.as_ref().map(|o| o.clone_ref(py))
    }

    /// `with llm.stream(...) as s:` closes the stream (cancelling the request) on the way out.
    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// Closes the stream; the exception, if any, goes on.
    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, PyTuple>) -> bool {
        self.close();
        false
    }

    /// Cancels the request (what dropping the stream does).
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if let Ok(mut st) = self.state.try_lock() {
            st.req = None;
            st.pending.clear();
        }
    }
}
