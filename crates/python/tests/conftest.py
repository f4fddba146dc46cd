"""Shared fixtures of the `vidlm` package tests (run by `cargo xtask test` in a fresh venv).

Environment (set by xtask): VIDLM_FIXTURES (tiny exported models), VIDLM_TEST_VIDEOS,
VIDLM_BIN (the `vidlm` binary, for the CLI comparisons), VIDLM_RAY_PYTHON (an interpreter with
ray, the `cargo xtask setup` venv). Nothing here skips: a missing input is a failure.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
GOLDENS = ROOT / "tests" / "goldens"
FAMILIES = ["interleave", "llava_next_video", "onevision", "video_llava"]
QWEN_FAMILIES = ["qwen2_5_vl", "qwen3_vl"]

# Fewer collected tests than this fails the session (pytest's exit code 5, "no tests", can never
# pass as success; a test file that stops being collected is caught too).
MIN_TESTS = 30


def pytest_collection_finish(session: pytest.Session) -> None:
    selected = [a for a in session.config.args if "::" in a or a.endswith(".py")]
    if not selected and len(session.items) < MIN_TESTS:
        raise pytest.UsageError(
            f"only {len(session.items)} tests collected from crates/python/tests (expected >= {MIN_TESTS})"
        )


def cache_dir() -> Path:
    return Path(os.environ.get("VIDLM_CACHE", ROOT / ".cache"))


def fixtures_dir() -> Path:
    return Path(os.environ.get("VIDLM_FIXTURES", cache_dir() / "fixtures"))


def videos_dir() -> Path:
    return Path(os.environ.get("VIDLM_TEST_VIDEOS", cache_dir() / "test-videos"))


def model_for(family: str) -> Path:
    """The model the family's goldens were made with (as crates/decoder/tests/common)."""
    if family == "llava_next_video":
        return ROOT / "assets" / "demo-model"
    return fixtures_dir() / family / "model"


def golden(family: str) -> dict:
    return json.loads((GOLDENS / family / "golden.json").read_text())


def absolute_messages(messages):
    """Golden messages with their media paths made absolute (they are relative to tests/goldens)."""
    out = copy.deepcopy(messages)
    if out and isinstance(out[0], list):  # a batch: a list of conversations
        return [absolute_messages(c) for c in out]
    for m in out:
        content = m.get("content")
        if not isinstance(content, list):
            continue
        for p in content:
            for key in ("video", "image", "path", "url"):
                v = p.get(key)
                if isinstance(v, str):
                    p[key] = str(GOLDENS / v)
                elif isinstance(v, list):
                    p[key] = [str(GOLDENS / f) for f in v]
    return out


def tensors(family: str, scenario: dict) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(GOLDENS / family / scenario["tensors"]))


@pytest.fixture(scope="session")
def vidlm_bin() -> Path:
    p = Path(os.environ.get("VIDLM_BIN", ROOT / "target" / "debug" / "vidlm"))
    assert p.is_file(), f"{p} missing: build it (cargo build -p vidlm) or set VIDLM_BIN"
    return p


@pytest.fixture(scope="session")
def videos() -> Path:
    d = videos_dir()
    assert (d / "h264_bframes.mp4").is_file(), f"{d}: run `cargo xtask videos`"
    return d


@pytest.fixture(scope="session")
def demo_llm():
    import vidlm

    return vidlm.LLM(str(ROOT / "assets" / "demo-model"), threads=2)


@pytest.fixture(scope="session")
def demo_video() -> Path:
    return ROOT / "assets" / "demo.mp4"


_llms: dict = {}


def llm_for(family: str):
    import vidlm

    if family not in _llms:
        m = model_for(family)
        assert (m / "config.json").is_file(), f"{m} missing: run `cargo xtask fixtures`"
        _llms[family] = vidlm.LLM(str(m), threads=2)
    return _llms[family]
