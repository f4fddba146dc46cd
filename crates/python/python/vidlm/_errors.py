"""vidlm's exceptions: one base, one class per kind of failure (vidlm_model::ErrorKind)."""

from __future__ import annotations

__all__ = [
    "VidlmError",
    "BadRequestError",
    "NotFoundError",
    "UnsupportedMediaError",
    "LimitExceededError",
    "UnsupportedError",
    "InvalidModelError",
    "InternalError",
]


class VidlmError(Exception):
    """Base class of every error vidlm raises. The message is the Rust error's one-line text."""


class BadRequestError(VidlmError, ValueError):
    """The request is malformed or inconsistent (bad messages, options, sampling)."""


class NotFoundError(VidlmError, FileNotFoundError):
    """A file the request names (media or model) does not exist."""

    def __init__(self, message: str) -> None:
        # FileNotFoundError(msg) keeps `str(e) == msg` (no errno/filename pair).
        super().__init__(message)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnsupportedMediaError(VidlmError):
    """A media file cannot be decoded (corrupt, unknown codec, no video stream)."""


class LimitExceededError(VidlmError):
    """Over a limit: a prompt longer than the context, too many frames, pixels or bytes."""


class UnsupportedError(VidlmError):
    """A valid request for something vidlm or this model does not do (e.g. remote URLs)."""


class InvalidModelError(VidlmError):
    """The model directory is broken (a missing or malformed file, an unexpected graph)."""


class InternalError(VidlmError):
    """A failure inside vidlm or ONNX Runtime (a Rust panic too)."""
