"""Type stubs of the extension module ``vidlm._vidlm`` (re-exported by ``vidlm``)."""

from __future__ import annotations

import os
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

Message = Dict[str, Any]
Conversation = List[Message]
PathLike = Union[str, "os.PathLike[str]"]

__version__: str

def set_onnxruntime_library(path: Optional[str]) -> None:
    """Use this ONNX Runtime shared library (before the first model loads); None clears it."""

def onnxruntime_library() -> str:
    """The ONNX Runtime library vidlm loads (or would load now)."""

def probe(path: PathLike) -> Dict[str, Any]:
    """What ``vidlm probe PATH`` prints: container, codec, sizes, rotation, fps, frame_count, ..."""

def read_frames(
    path: PathLike,
    num_frames: Optional[int] = None,
    fps: Optional[float] = None,
    max_frames: Optional[int] = None,
    indices: Optional[Sequence[int]] = None,
) -> Tuple[npt.NDArray[np.uint8], Dict[str, Any]]:
    """The frames ``vidlm frames`` writes, in memory: a ``uint8 [T, H, W, 3]`` RGB array and
    ``info`` with ``indices`` (frame numbers), ``pts`` (seconds), ``width``, ``height``, ``fps``,
    ``missing`` and ``truncated``. At most one of ``num_frames`` (transformers' ``i * N // n``),
    ``fps`` (transformers' rate sampling) and ``indices``; none: every frame. ``max_frames`` caps
    the count (evenly spaced)."""

class SamplingParams:
    """Generation settings of a request (vLLM's names). ``temperature=0`` is greedy."""

    max_tokens: Optional[int]
    """Most new tokens (None: the model's limit)."""
    temperature: float
    """0: greedy; above 0: sampling at this temperature."""
    top_p: float
    """Nucleus sampling (1.0: off; needs temperature > 0)."""
    top_k: Optional[int]
    """Top-k sampling (None: off; needs temperature > 0)."""
    seed: Optional[int]
    """Seed of the request's own random generator."""
    stop: Optional[List[str]]
    """Stop strings: the text ends before the first one."""
    ignore_eos: bool
    """Keep generating past EOS, until max_tokens."""
    repetition_penalty: float
    """Repetition penalty (1.0: off, whatever the checkpoint's generation config says)."""

    def __init__(
        self,
        max_tokens: Optional[int] = 16,
        temperature: float = 0.0,
        top_p: float = 1.0,
        top_k: Optional[int] = None,
        seed: Optional[int] = None,
        stop: Optional[Union[str, List[str]]] = None,
        ignore_eos: bool = False,
        repetition_penalty: float = 1.0,
    ) -> None:
        """Checks the values (a bad one is a ``BadRequestError``, a ``ValueError``)."""

class CompletionOutput:
    """One generated answer."""

    index: int
    """Always 0."""
    text: str
    """The answer (up to, not including, a stop string)."""
    token_ids: List[int]
    """The generated token ids."""
    finish_reason: str
    """``"stop"`` (EOS or a stop string) or ``"length"`` (max_tokens or the context)."""

class RequestOutput:
    """The result of one conversation."""

    request_id: str
    """The conversation's index in the call."""
    prompt_token_ids: List[int]
    """The prompt ids with every placeholder expanded (transformers' ``input_ids``)."""
    prompt: str
    """The rendered prompt, before placeholder expansion."""
    outputs: List[CompletionOutput]
    """The answer (one)."""
    finished: bool
    """True."""
    @property
    def metrics(self) -> Dict[str, float]:
        """Seconds per stage (``decode`` (media, in the calling thread), ``queue``, ``media``,
        ``preprocess``, ``vision``, ``embed``, ``prefill``, ``first_token``, ``decode_step``,
        ``total``), ``decode_tokens_per_s`` and ``prompt_tokens``."""

class TextStream(Iterator[str]):
    """Text deltas of one answer as they are generated; they join to the answer's text."""

    def __iter__(self) -> TextStream:
        """The stream itself."""
    def __next__(self) -> str:
        """The next delta (blocks, GIL released; Ctrl-C cancels the request)."""
    @property
    def output(self) -> Optional[RequestOutput]:
        """The ``RequestOutput`` once the stream is exhausted."""
    def close(self) -> None:
        """Cancels the request (dropping the stream does too)."""
    def __enter__(self) -> TextStream:
        """``with llm.stream(...) as s:`` closes the stream on the way out."""
    def __exit__(self, *exc: object) -> bool:
        """Closes the stream (cancelling the request); exceptions go on."""

class LLM:
    """A loaded model (an export directory or a hub id, what ``vidlm run --model`` takes) on
    vidlm's engine: ``chat`` runs conversations with continuous batching."""

    def __init__(
        self,
        model: str,
        dtype: Optional[str] = None,
        device: str = "cpu",
        threads: Optional[int] = None,
        max_batch: int = 16,
    ) -> None:
        """Loads the model. ``dtype``: fp32, fp16, q8, q4, q4f16 (None: fp32 on the CPU, fp16 on
        CUDA where the export has it); ``device``: cpu, cuda, cuda:N; ``threads``: ONNX Runtime
        intra-op threads (None: all cores); ``max_batch``: rows decoded together."""
    @property
    def model(self) -> str:
        """The model this LLM loaded."""
    def load_counts(self) -> Tuple[int, int]:
        """``(running, waiting)`` requests in the engine."""
    def chat(
        self,
        messages: Union[Conversation, List[Conversation]],
        sampling_params: Optional[SamplingParams] = None,
        *,
        num_frames: Optional[int] = None,
        fps: Optional[float] = None,
        max_frames: Optional[int] = None,
    ) -> List[RequestOutput]:
        """Answers one conversation or a list of them (one ``RequestOutput`` each, in order).

        Messages are the Hugging Face chat format: media parts as paths
        (``{"type": "video", "path": "a.mp4"}``), OpenAI ``image_url`` / ``video_url`` parts
        (``file://`` or ``data:`` URLs), or in memory (``{"type": "video", "video": uint8
        [T, H, W, 3]}``, ``"fps"`` for rate sampling; ``{"type": "image", "image": PIL image or
        uint8 [H, W, 3]}``). Every video is sampled by ``num_frames`` or ``fps``, capped by
        ``max_frames``. The GIL is released while vidlm works; Ctrl-C cancels."""
    def stream(
        self,
        messages: Conversation,
        sampling_params: Optional[SamplingParams] = None,
        *,
        num_frames: Optional[int] = None,
        fps: Optional[float] = None,
        max_frames: Optional[int] = None,
    ) -> TextStream:
        """Like ``chat`` for one conversation, yielding text deltas as they are generated."""

class Processor:
    """The model's processor (what ``vidlm preprocess --model`` takes)."""

    def __init__(self, model: PathLike) -> None:
        """Reads the model directory's processor, tokenizer and template files."""
    @property
    def family(self) -> str:
        """The model family."""
    def __call__(
        self,
        messages: Union[Conversation, List[Conversation]],
        *,
        num_frames: Optional[int] = None,
        fps: Optional[float] = None,
        max_frames: Optional[int] = None,
        add_generation_prompt: bool = True,
    ) -> Dict[str, npt.NDArray[Any]]:
        """The model inputs as ``vidlm preprocess`` writes them, under transformers' names and
        dtypes: ``input_ids``, ``attention_mask`` (int64), ``pixel_values`` (or
        ``pixel_values_images``), ``image_sizes``, ``pixel_values_videos`` (float32), ..."""
