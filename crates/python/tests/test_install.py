"""The package under test is the installed wheel (not the source tree), typed, and finds the
ONNX Runtime library of its `onnxruntime` dependency by itself."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import vidlm


def test_imported_from_the_installed_wheel() -> None:
    pkg = Path(vidlm.__file__).resolve().parent
    assert str(pkg).startswith(str(Path(sys.prefix).resolve())), pkg
    assert (pkg / "py.typed").is_file()
    assert (pkg / "_vidlm.pyi").is_file()
    assert vidlm.__version__


def test_the_wheel_is_abi3() -> None:
    from importlib.metadata import distribution

    wheel = distribution("vidlm").read_text("WHEEL") or ""
    tags = [line.split(":", 1)[1].strip() for line in wheel.splitlines() if line.startswith("Tag:")]
    assert tags and all("-abi3-" in t for t in tags), tags


def test_onnxruntime_comes_from_the_onnxruntime_package() -> None:
    assert "ORT_DYLIB_PATH" not in os.environ, "the test must run without ORT_DYLIB_PATH"
    found = vidlm.find_onnxruntime_library()
    assert found is not None and "onnxruntime" in found and "capi" in found, found
    lib = vidlm.onnxruntime_library()
    assert Path(lib).resolve() == Path(found).resolve()


def test_every_public_name_has_a_docstring() -> None:
    for name in vidlm.__all__:
        obj = getattr(vidlm, name)
        assert (obj.__doc__ or "").strip(), name
    for cls in (vidlm.LLM, vidlm.SamplingParams, vidlm.Processor, vidlm.TextStream, vidlm.RequestOutput):
        for attr, member in vars(cls).items():
            if attr.startswith("_") or not callable(member) and not isinstance(member, property):
                continue
            assert (getattr(member, "__doc__", None) or "").strip(), f"{cls.__name__}.{attr}"
