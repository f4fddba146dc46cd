"""Each error class on a bad input: one base (`vidlm.VidlmError`), a bad request is also a
`ValueError`, a missing file or model also a `FileNotFoundError`, the message is one line, and
a Rust panic arrives as `vidlm.InternalError`, never as pyo3's `PanicException`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import vidlm
from conftest import ROOT

DEMO = ROOT / "assets" / "demo-model"


def one_line(e: BaseException) -> str:
    msg = str(e)
    assert msg and "\n" not in msg, repr(msg)
    return msg


def ask(part: dict) -> list:
    return [{"role": "user", "content": [part, {"type": "text", "text": "Why?"}]}]


def test_hierarchy() -> None:
    for name in ["BadRequestError", "NotFoundError", "UnsupportedMediaError", "LimitExceededError",
                 "UnsupportedError", "InvalidModelError", "InternalError"]:
        assert issubclass(getattr(vidlm, name), vidlm.VidlmError), name
    assert issubclass(vidlm.BadRequestError, ValueError)
    assert issubclass(vidlm.NotFoundError, FileNotFoundError)


def test_missing_video_is_not_found(demo_llm) -> None:
    with pytest.raises(vidlm.NotFoundError) as e:
        demo_llm.chat(ask({"type": "video", "path": "/no/such/clip.mp4"}), num_frames=4)
    assert isinstance(e.value, FileNotFoundError)
    assert "/no/such/clip.mp4" in one_line(e.value)
    with pytest.raises(FileNotFoundError):
        vidlm.read_frames("/no/such/clip.mp4", num_frames=2)
    with pytest.raises(vidlm.NotFoundError):
        vidlm.probe("/no/such/clip.mp4")


def test_missing_model_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(vidlm.NotFoundError) as e:
        vidlm.Processor(tmp_path / "no-model")
    one_line(e.value)
    with pytest.raises(FileNotFoundError) as e:
        vidlm.LLM(str(tmp_path / "no-model"))
    assert isinstance(e.value, vidlm.NotFoundError)
    one_line(e.value)
    # A folder that is not a model (no config.json) is an invalid model, not a missing one.
    empty = tmp_path / "empty-model"
    empty.mkdir()
    with pytest.raises(vidlm.InvalidModelError) as e:
        vidlm.LLM(str(empty))
    one_line(e.value)


def test_missing_precision_is_not_found() -> None:
    with pytest.raises(vidlm.NotFoundError) as e:
        vidlm.LLM(str(DEMO), dtype="q4")
    assert "q4" in one_line(e.value)


def test_bad_requests_are_value_errors(demo_llm, demo_video: Path) -> None:
    cases = [
        lambda: demo_llm.chat(ask({"type": "video", "path": str(demo_video)}), num_frames=4, fps=1.0),
        lambda: demo_llm.chat([{"content": "no role"}]),
        lambda: demo_llm.chat("not a conversation"),
        lambda: demo_llm.chat(ask({"type": "video"})),
        lambda: demo_llm.chat(ask({"type": "video", "video": 42})),
        lambda: vidlm.SamplingParams(temperature=-1.0),
        lambda: vidlm.SamplingParams(top_p=0.5),  # greedy: top_p would be ignored, so refused
        lambda: vidlm.LLM(str(DEMO), dtype="fp7"),
        lambda: vidlm.LLM(str(DEMO), device="tpu"),
        lambda: vidlm.read_frames(demo_video, num_frames=2, fps=1.0),
        lambda: vidlm.read_frames(demo_video, num_frames=0),
    ]
    import numpy as np

    cases.append(lambda: demo_llm.chat(ask({"type": "video", "video": np.zeros((2, 4, 4, 3), np.float32)})))
    cases.append(lambda: demo_llm.chat(ask({"type": "video", "video": np.zeros((4, 4, 3), np.uint8)})))
    # fps sampling of an in-memory clip without its rate
    cases.append(lambda: demo_llm.chat(ask({"type": "video", "video": np.zeros((4, 8, 8, 3), np.uint8)}), fps=1.0))
    for i, f in enumerate(cases):
        with pytest.raises(vidlm.BadRequestError) as e:
            f()
        assert isinstance(e.value, ValueError), i
        one_line(e.value)


def test_undecodable_media(demo_llm, videos: Path) -> None:
    with pytest.raises(vidlm.UnsupportedMediaError) as e:
        vidlm.read_frames(videos / "broken_random.mp4", num_frames=2)
    one_line(e.value)
    with pytest.raises(vidlm.UnsupportedMediaError):
        demo_llm.chat(ask({"type": "video", "path": str(videos / "broken_random.mp4")}), num_frames=2)


def test_limits(videos: Path) -> None:
    with pytest.raises(vidlm.LimitExceededError) as e:
        vidlm.probe(videos / "hostile_16384x16384.mp4")
    one_line(e.value)


def test_remote_media_is_unsupported(demo_llm) -> None:
    with pytest.raises(vidlm.UnsupportedError) as e:
        demo_llm.chat(ask({"type": "video_url", "video_url": {"url": "https://example.com/a.mp4"}}))
    one_line(e.value)


def test_broken_model_is_invalid(tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(DEMO, model, ignore=shutil.ignore_patterns("onnx"))
    (model / "config.json").write_text("{ not json")
    with pytest.raises(vidlm.InvalidModelError) as e:
        vidlm.Processor(model)
    one_line(e.value)


def test_a_panic_is_an_internal_error() -> None:
    from vidlm import _vidlm

    with pytest.raises(vidlm.InternalError) as e:
        _vidlm._panic_for_tests()
    assert "panic" in one_line(e.value)
    assert type(e.value).__name__ != "PanicException"
