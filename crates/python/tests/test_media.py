"""Media in every form gives the same tokens as the file; `read_frames` and `probe` equal
`vidlm frames` and `vidlm probe`."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vidlm
from conftest import GOLDENS

PARAMS = dict(max_tokens=6, ignore_eos=True)


def ask(part: dict) -> list:
    return [{"role": "user", "content": [part, {"type": "text", "text": "What happens?"}]}]


def tokens(llm, messages, **kw):
    [out] = llm.chat(messages, vidlm.SamplingParams(**PARAMS), **kw)
    return out.prompt_token_ids, out.outputs[0].token_ids


def test_ndarray_video_equals_path(demo_llm, demo_video: Path) -> None:
    frames, info = vidlm.read_frames(demo_video)
    assert frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[3] == 3
    for kw in (dict(num_frames=4), dict(num_frames=6, max_frames=3)):
        by_path = tokens(demo_llm, ask({"type": "video", "path": str(demo_video)}), **kw)
        by_array = tokens(demo_llm, ask({"type": "video", "video": frames}), **kw)
        assert by_array == by_path, kw
    # fps sampling: the clip's rate in the part.
    by_path = tokens(demo_llm, ask({"type": "video", "video": str(demo_video)}), fps=2.0)
    by_array = tokens(demo_llm, ask({"type": "video", "video": frames, "fps": info["fps"]}), fps=2.0)
    assert by_array == by_path


def test_video_url_parts_equal_path(demo_llm, demo_video: Path) -> None:
    by_path = tokens(demo_llm, ask({"type": "video", "path": str(demo_video)}), num_frames=4)
    file_url = tokens(demo_llm, ask({"type": "video_url", "video_url": {"url": f"file://{demo_video}"}}), num_frames=4)
    data = base64.b64encode(demo_video.read_bytes()).decode()
    data_url = tokens(
        demo_llm, ask({"type": "video_url", "video_url": {"url": f"data:video/mp4;base64,{data}"}}), num_frames=4
    )
    assert file_url == by_path
    assert data_url == by_path


def test_relative_paths_resolve_against_the_cwd(demo_llm, demo_video: Path, monkeypatch) -> None:
    by_path = tokens(demo_llm, ask({"type": "video", "path": str(demo_video)}), num_frames=4)
    monkeypatch.chdir(demo_video.parent)
    assert tokens(demo_llm, ask({"type": "video", "path": demo_video.name}), num_frames=4) == by_path


def test_images_in_memory_equal_the_file(demo_llm) -> None:
    path = GOLDENS / "media" / "image_a" / "00.png"
    by_path = tokens(demo_llm, ask({"type": "image", "path": str(path)}))
    pil = Image.open(path)
    arr = np.asarray(pil.convert("RGB"))
    assert tokens(demo_llm, ask({"type": "image", "image": pil})) == by_path
    assert tokens(demo_llm, ask({"type": "image", "image": arr})) == by_path
    data = base64.b64encode(path.read_bytes()).decode()
    assert tokens(demo_llm, ask({"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}})) == by_path
    assert tokens(demo_llm, ask({"type": "image_url", "image_url": {"url": f"file://{path}"}})) == by_path


def test_processor_takes_arrays_like_files(demo_video: Path) -> None:
    from conftest import ROOT

    proc = vidlm.Processor(ROOT / "assets" / "demo-model")
    frames, _ = vidlm.read_frames(demo_video)
    a = proc(ask({"type": "video", "path": str(demo_video)}), num_frames=4)
    b = proc(ask({"type": "video", "video": frames}), num_frames=4)
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_processor_equals_vidlm_preprocess(vidlm_bin: Path, demo_video: Path, tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    from conftest import ROOT

    model = ROOT / "assets" / "demo-model"
    msgs = ask({"type": "video", "path": str(demo_video)})
    (tmp_path / "m.json").write_text(json.dumps(msgs))
    out = tmp_path / "inputs.safetensors"
    subprocess.run(
        [str(vidlm_bin), "preprocess", "--model", str(model), "--messages", str(tmp_path / "m.json"),
         "--num-frames", "4", "--out", str(out)],
        check=True,
        capture_output=True,
    )
    want = load_file(str(out))
    got = vidlm.Processor(model)(msgs, num_frames=4)
    assert sorted(got) == sorted(want)
    for k in want:
        assert got[k].dtype == want[k].dtype, k
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


@pytest.mark.parametrize(
    "name,args",
    [
        ("h264_bframes.mp4", ["--num-frames", "8"]),
        ("rotated_90.mp4", ["--num-frames", "5"]),
        ("vfr.mkv", ["--fps", "2"]),
        ("hevc.mp4", ["--indices", "0,3,7"]),
        ("h264_bframes.mp4", ["--fps", "4", "--max-frames", "5"]),
    ],
)
def test_read_frames_equals_vidlm_frames(vidlm_bin: Path, videos: Path, tmp_path: Path, name: str, args: list) -> None:
    path = videos / name
    subprocess.run([str(vidlm_bin), "frames", str(path), *args, "--out", str(tmp_path)], check=True, capture_output=True)
    want = json.loads((tmp_path / "frames.json").read_text())
    kw: dict = {}
    it = iter(args)
    for flag in it:
        val = next(it)
        if flag == "--num-frames":
            kw["num_frames"] = int(val)
        elif flag == "--fps":
            kw["fps"] = float(val)
        elif flag == "--max-frames":
            kw["max_frames"] = int(val)
        elif flag == "--indices":
            kw["indices"] = [int(v) for v in val.split(",")]
    frames, info = vidlm.read_frames(str(path), **kw)
    assert info["indices"] == [f["index"] for f in want["frames"]]
    assert info["pts"] == [f["pts"] for f in want["frames"]]
    assert frames.shape == (len(want["frames"]), want["height"], want["width"], 3)
    for t, f in enumerate(want["frames"]):
        png = np.asarray(Image.open(tmp_path / f["file"]).convert("RGB"))
        np.testing.assert_array_equal(frames[t], png, err_msg=f"{name} frame {f['index']}")


def test_read_frames_arrays_are_writable(videos: Path) -> None:
    frames, _ = vidlm.read_frames(videos / "h264_bframes.mp4", num_frames=2)
    frames[0, 0, 0, 0] = 7
    assert frames[0, 0, 0, 0] == 7


@pytest.mark.parametrize("name", ["h264_bframes.mp4", "rotated_90.mp4", "image.jpg"])
def test_probe_equals_vidlm_probe(vidlm_bin: Path, videos: Path, name: str) -> None:
    out = subprocess.run([str(vidlm_bin), "probe", str(videos / name)], check=True, capture_output=True, text=True)
    assert vidlm.probe(videos / name) == json.loads(out.stdout)
