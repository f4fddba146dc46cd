//! What the engine runs, what it sends back, and how it fails.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use ndarray::Array4;
use serde_json::Value;
use tokio::sync::mpsc::UnboundedReceiver;
use vidlm_decoder::{DecoderError, FinishReason, GenerationOptions, TokenLogprobs};
use vidlm_media_source::{DecodedMedia, FrameSampling, MediaError, MediaKind, Source};
use vidlm_pipeline::{PipelineError, Stage};
use vidlm_processor::ErrorKind;
use vidlm_processor::{
    Conversation, MediaInput, ProcessOptions, ProcessorError, VideoInput, VideoMetadata,
};
use vidlm_vision::VisionError;

/// One media item of a request.
#[derive(Debug, Clone)]
pub enum MediaSpec {
    /// A checked source: the engine loads, decodes and caches it.
    Source {
        /// Image or video.
        kind: MediaKind,
        /// Where it comes from.
        source: Source,
        /// Its place in the request (for errors).
        param: String,
    },
    /// Media the caller decoded itself (not cached).
    Decoded(DecodedMedia),
    /// A video the caller sampled itself by its model's own frame formula (the patchified,
    /// Qwen-VL families: `Processor::load_conversation` returns these), with the metadata
    /// their processors need — the frame indices and the video's rate (not cached).
    SampledVideo(Arc<Array4<u8>>, VideoMetadata),
}

impl MediaSpec {
    /// Image or video.
    pub fn kind(&self) -> MediaKind {
        match self {
            MediaSpec::Source { kind, .. } => *kind,
            MediaSpec::Decoded(m) => m.kind(),
            MediaSpec::SampledVideo(..) => MediaKind::Video,
        }
    }
}

/// A request's processor arguments over the model's processor config, for this request only
/// (vLLM's per-request `mm_processor_kwargs`; transformers' call arguments of the same names):
/// the pixel budgets of the patchified (Qwen-VL) families. A model without them refuses a
/// request that sets any ([`EngineError::ProcessorArgs`], 422).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ProcessorArgs {
    /// `min_pixels`: the lower pixel budget (image processor; Qwen2.5-VL's video processor too).
    pub min_pixels: Option<u64>,
    /// `max_pixels`: the upper pixel budget, like `min_pixels`.
    pub max_pixels: Option<u64>,
    /// `size = {"shortest_edge", "longest_edge"}`: both budgets of the image and the video
    /// processor (Qwen3-VL's video budget is over the whole clip); `min_pixels` /
    /// `max_pixels` override its sides where a processor takes them.
    pub size: Option<(u64, u64)>,
}

impl ProcessorArgs {
    /// Whether no argument is set.
    pub fn is_empty(&self) -> bool {
        *self == ProcessorArgs::default()
    }

    /// Sets them on the processor's options of a call.
    pub fn apply(&self, opts: &mut ProcessOptions) {
        opts.min_pixels = self.min_pixels;
        opts.max_pixels = self.max_pixels;
        opts.size = self.size;
    }
}

/// A request to the engine: chat messages (Hugging Face format, one media part per
/// [`EngineRequest::media`] entry, in order), frame sampling, processor arguments and
/// generation options.
#[derive(Debug, Clone, Default)]
pub struct EngineRequest {
    /// The messages the chat template sees.
    pub messages: Vec<Value>,
    /// The media, in order of appearance.
    pub media: Vec<MediaSpec>,
    /// Frame sampling of every video (by the model's own formula where its video processor has
    /// one, as `vidlm run` samples).
    pub sampling: FrameSampling,
    /// Processor arguments (pixel budgets) for this request.
    pub processor_args: ProcessorArgs,
    /// Generation options over the model's `generation_config.json`.
    pub generation: GenerationOptions,
    /// Report log-probabilities with this many alternatives per token.
    pub logprobs: Option<usize>,
}

impl EngineRequest {
    /// A request of a conversation whose media are all decoded (as
    /// `Processor::load_conversation` returns them): its messages, and each media item as
    /// [`MediaSpec::Decoded`] (a video with its metadata as [`MediaSpec::SampledVideo`]), in
    /// order. `vidlm run` submits local files this way.
    pub fn from_decoded(conv: Conversation) -> Result<Self, EngineError> {
        let media = conv
            .media
            .iter()
            .enumerate()
            .map(|(i, m)| {
                if let MediaInput::Video(VideoInput::WithMetadata(frames, meta)) = m {
                    return Ok(MediaSpec::SampledVideo(frames.clone(), meta.clone()));
                }
                m.decoded().cloned().map(MediaSpec::Decoded).ok_or_else(|| {
                    EngineError::Pipeline(PipelineError::Internal(format!(
                        "media {i} is not decoded"
                    )))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(EngineRequest { messages: conv.messages, media, ..Default::default() })
    }
}

/// Wall-clock times of one request, from its arrival: the pipeline's one timings type.
pub use vidlm_pipeline::Timings as RequestTimings;

/// A finished request.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The decoded text of all generated tokens (special tokens skipped).
    pub text: String,
    /// Generated ids (an EOS id included when it ended the answer).
    pub token_ids: Vec<i64>,
    /// Why it stopped.
    pub finish_reason: FinishReason,
    /// Prompt tokens (placeholders expanded).
    pub prompt_tokens: usize,
    /// The prompt's ids, placeholders expanded (transformers' `input_ids` of the request;
    /// `prompt_token_ids.len() == prompt_tokens`).
    pub prompt_token_ids: Vec<i64>,
    /// Times.
    pub timings: RequestTimings,
}

/// A generated token.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenOut {
    /// Its id.
    pub token_id: i64,
    /// The text that became final with it (pieces concatenate to [`Completion::text`]).
    pub text: String,
    /// Log-probabilities, if asked for.
    pub logprobs: Option<TokenLogprobs>,
}

/// What a request's handle receives, in order: stages, then tokens, then one `Done` or
/// `Failed`.
#[derive(Debug)]
pub enum Event {
    /// A slow stage starts.
    Stage(Stage),
    /// A token.
    Token(TokenOut),
    /// The end.
    Done(Completion),
    /// The request failed (nothing more follows).
    Failed(EngineError),
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// More requests are waiting than the queue allows (retry later).
    #[error("the queue is full ({waiting} requests waiting)")]
    QueueFull {
        /// Requests waiting.
        waiting: usize,
    },
    /// The engine has stopped.
    #[error("the engine has stopped")]
    Stopped,
    /// A media item could not be loaded or decoded.
    #[error("{param}: {source}")]
    Media {
        /// Where it is in the request.
        param: String,
        /// Why.
        #[source]
        source: MediaError,
    },
    /// The processor refused the conversation (template, placeholders, prompt too long, ...).
    #[error(transparent)]
    Processor(#[from] ProcessorError),
    /// The vision graphs failed.
    #[error(transparent)]
    Vision(#[from] VisionError),
    /// The request's processor arguments do not fit this model: pixel budgets for a model
    /// whose processors have none ([`ErrorKind::Unsupported`], 422), or values its processors
    /// refuse (out of range: [`ErrorKind::BadRequest`], 400). Checked at submission, before any
    /// media is loaded.
    #[error("processor arguments: {source}")]
    ProcessorArgs {
        /// The processor's refusal.
        #[source]
        source: ProcessorError,
    },
    /// The language model failed or refused the options.
    #[error(transparent)]
    Decoder(#[from] DecoderError),
    /// Loading or wiring the model failed.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// A decoder pass of the running batch failed (inside ONNX Runtime, or the cache
    /// bookkeeping around it). Every row of that pass fails with this same cause, so it is
    /// shared. It is the server's failure ([`ErrorKind::Internal`], or the cause's own
    /// server-side kind), whatever the request asked.
    #[error("decode step failed: {source}")]
    DecodeStep {
        /// The decoder's error.
        #[source]
        source: Arc<DecoderError>,
    },
}

impl EngineError {
    /// The category of the failure (see [`ErrorKind`]), which decides its status for
    /// `vidlm serve` and `vidlm batch`: a full queue or a stopping engine is
    /// [`ErrorKind::Unavailable`] (503); media, processor, vision, decoder and pipeline errors
    /// keep their own category; a failed decode step is never the request's fault.
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::QueueFull { .. } | EngineError::Stopped => ErrorKind::Unavailable,
            EngineError::Media { source, .. } => source.kind(),
            EngineError::Processor(e) => e.kind(),
            EngineError::ProcessorArgs { source } => source.kind(),
            EngineError::Vision(e) => e.kind(),
            EngineError::Decoder(e) => e.kind(),
            EngineError::Pipeline(e) => e.kind(),
            EngineError::DecodeStep { source } => match source.kind() {
                k if k.http_status() < 500 => ErrorKind::Internal,
                k => k,
            },
        }
    }

    /// The request parameter at fault, if any: the media item's place, `messages` for a
    /// prompt over the context, the processor argument (`mm_processor_kwargs.min_pixels`, by
    /// vLLM's name for them).
    pub fn param(&self) -> Option<String> {
        match self {
            EngineError::Media { param, .. } => Some(param.clone()),
            EngineError::ProcessorArgs { source } => Some(match source {
                ProcessorError::InvalidOption { option, .. } => {
                    let key = option.split('.').next().unwrap_or(option);
                    format!("mm_processor_kwargs.{key}")
                }
                _ => "mm_processor_kwargs".into(),
            }),
            e if e.is_context_length() => Some("messages".into()),
            _ => None,
        }
    }

    /// The machine-readable code of the error object, where it is more precise than the
    /// kind's default (`vidlm_openai::default_code`): `server_overloaded`,
    /// `server_unavailable`, the media codes ([`MediaError::code`]),
    /// `context_length_exceeded`.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            EngineError::QueueFull { .. } => Some("server_overloaded"),
            EngineError::Stopped => Some("server_unavailable"),
            EngineError::Media { source, .. } => Some(source.code()),
            EngineError::ProcessorArgs { source } if source.kind() == ErrorKind::BadRequest => {
                Some("invalid_parameter")
            }
            e if e.is_context_length() => Some("context_length_exceeded"),
            _ => None,
        }
    }

    /// A failed decode step of the running batch, for each of its rows.
    pub fn decode_step(source: Arc<DecoderError>) -> EngineError {
        EngineError::DecodeStep { source }
    }

    /// Whether the prompt is longer than the model's context.
    pub fn is_context_length(&self) -> bool {
        matches!(
            self,
            EngineError::Processor(ProcessorError::PromptTooLong { .. })
                | EngineError::Decoder(DecoderError::PromptTooLong { .. })
        )
    }
}

/// The caller's end of a request: events arrive on it; dropping it cancels the request (the
/// engine frees its batch slot within one decode step).
#[derive(Debug)]
pub struct RequestHandle {
    pub(crate) id: u64,
    pub(crate) rx: UnboundedReceiver<Event>,
    pub(crate) cancel: Arc<AtomicBool>,
}

impl RequestHandle {
    /// The engine's id of the request.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The next event (`None` after `Done`/`Failed`).
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event, blocking the thread (not for async code).
    pub fn blocking_next(&mut self) -> Option<Event> {
        self.rx.blocking_recv()
    }

    /// Polls for the next event without blocking: `Ready(Some(event))`, `Ready(None)` after
    /// `Done`/`Failed`, or `Pending` — then `cx`'s waker is woken when an event arrives. One
    /// waker may serve many handles (a caller waiting on several requests with one thread).
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }

    /// The next event if one arrives within `timeout` (`Duration::ZERO`: only one already
    /// there): `Ok(Some(event))`, `Ok(None)` after `Done`/`Failed`, `Err(TimedOut)` when none
    /// came. For a synchronous caller that must look at something else between waits (a
    /// Python caller checks for Ctrl-C with the GIL released around each wait).
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Event>, TimedOut> {
        let deadline = Instant::now() + timeout;
        let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(e) = self.poll_next(&mut cx) {
                return Ok(e);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(TimedOut);
            }
            // Woken by the event's arrival (or spuriously: polled again).
            std::thread::park_timeout(left);
        }
    }

    /// Cancels the request.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    /// Blocks until the end; returns the completion (stages and tokens are skipped).
    pub fn wait(mut self) -> Result<Completion, EngineError> {
        while let Some(e) = self.blocking_next() {
            match e {
                Event::Done(c) => return Ok(c),
                Event::Failed(e) => return Err(e),
                _ => {}
            }
        }
        Err(EngineError::Stopped)
    }
}

/// [`RequestHandle::next_timeout`] found no event within its timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

/// Wakes a parked thread (the waker of [`RequestHandle::next_timeout`]).
pub struct ThreadWaker(pub std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

impl Drop for RequestHandle {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::SeqCst);
    }
}
