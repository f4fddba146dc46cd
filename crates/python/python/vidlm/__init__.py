"""vidlm: video-language models (LLaVA family) through ONNX Runtime, token-exact with
Hugging Face transformers, in-process.

    import vidlm
    llm = vidlm.LLM("models/onevision-0.5b")
    params = vidlm.SamplingParams(max_tokens=64)
    out = llm.chat([{"role": "user", "content": [
        {"type": "video", "path": "cats.mp4"},
        {"type": "text", "text": "What are the cats doing?"}]}], params, num_frames=8)
    print(out[0].outputs[0].text)

    frames, info = vidlm.read_frames("cats.mp4", num_frames=8)   # uint8 [T, H, W, 3]

The ONNX Runtime library is the one inside the installed ``onnxruntime`` (or
``onnxruntime-gpu``) package; ``ORT_DYLIB_PATH`` or :func:`set_onnxruntime_library` override it.
"""

from __future__ import annotations

import glob
import importlib.util
import os
from typing import Optional

from . import _errors, _vidlm
from ._errors import (
    BadRequestError,
    InternalError,
    InvalidModelError,
    LimitExceededError,
    NotFoundError,
    UnsupportedError,
    UnsupportedMediaError,
    VidlmError,
)
from ._vidlm import (
    LLM,
    CompletionOutput,
    Processor,
    RequestOutput,
    SamplingParams,
    TextStream,
    onnxruntime_library,
    probe,
    read_frames,
)

__version__: str = _vidlm.__version__

__all__ = [
    "LLM",
    "SamplingParams",
    "RequestOutput",
    "CompletionOutput",
    "TextStream",
    "Processor",
    "probe",
    "read_frames",
    "set_onnxruntime_library",
    "onnxruntime_library",
    "find_onnxruntime_library",
    *_errors.__all__,
]


def find_onnxruntime_library() -> Optional[str]:
    """The ``libonnxruntime`` shared library inside the installed ``onnxruntime`` package
    (``onnxruntime/capi/``; the ``onnxruntime-gpu`` package installs the same module), found
    without importing the package. None when it is not installed."""
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        capi = os.path.join(base, "capi")
        for pattern in ("libonnxruntime.so.*", "libonnxruntime.so", "libonnxruntime.*.dylib",
                        "libonnxruntime.dylib", "onnxruntime.dll"):
            hits = sorted(p for p in glob.glob(os.path.join(capi, pattern))
                          if "providers" not in os.path.basename(p))
            if hits:
                return hits[-1]
    return None


def set_onnxruntime_library(path: Optional[str]) -> None:
    """Use this ONNX Runtime shared library (call before the first ``LLM`` is created; None
    goes back to the search). ``ORT_DYLIB_PATH``, when set, still wins."""
    _vidlm.set_onnxruntime_library(os.fspath(path) if path is not None else None)


_found = find_onnxruntime_library()
if _found is not None:
    _vidlm.set_onnxruntime_library(_found)
del _found
