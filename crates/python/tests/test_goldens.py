"""`LLM.chat` gives transformers' tokens on the committed goldens of all four LLaVA families and
both Qwen-VL families, and `Processor` gives transformers' processor outputs (ids exact, pixels
equal)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

import vidlm
from conftest import FAMILIES, QWEN_FAMILIES, ROOT, absolute_messages, golden, llm_for, model_for, tensors


def scenarios(family: str, batch: int | None = 1):
    g = golden(family)
    return [(n, s) for n, s in g["scenarios"].items() if batch is None or s["batch_size"] == batch]


@pytest.mark.parametrize("family", FAMILIES)
def test_chat_gives_transformers_tokens(family: str) -> None:
    llm = llm_for(family)
    checked = 0
    for name, sc in scenarios(family):
        t = tensors(family, sc)
        want = t["tokens"][0].tolist()
        params = vidlm.SamplingParams(max_tokens=len(want), ignore_eos=True)
        [out] = llm.chat(absolute_messages(sc["messages"]), params)
        assert out.outputs[0].token_ids == want, f"{family}/{name}"
        ids = t["input_ids"][0][t["attention_mask"][0] != 0].tolist()
        assert out.prompt_token_ids == ids, f"{family}/{name}: prompt ids"
        assert out.outputs[0].finish_reason == "length"
        assert out.metrics["prompt_tokens"] == len(ids)
        checked += 1
    assert checked >= 4, f"{family}: only {checked} scenarios"


@pytest.mark.parametrize("family", FAMILIES)
def test_list_of_conversations_equals_one_at_a_time(family: str) -> None:
    llm = llm_for(family)
    convs = [absolute_messages(sc["messages"]) for _, sc in scenarios(family)]
    params = vidlm.SamplingParams(max_tokens=8, ignore_eos=True)
    together = llm.chat(convs, params)
    alone = [llm.chat(c, params)[0] for c in convs]
    assert len(together) == len(convs)
    for a, b in zip(together, alone):
        assert a.outputs[0].token_ids == b.outputs[0].token_ids
        assert a.prompt_token_ids == b.prompt_token_ids
        assert a.outputs[0].text == b.outputs[0].text


@pytest.mark.parametrize("family", FAMILIES)
def test_stream_deltas_join_to_the_text(family: str) -> None:
    llm = llm_for(family)
    name, sc = scenarios(family)[0]
    params = vidlm.SamplingParams(max_tokens=12, ignore_eos=True)
    msgs = absolute_messages(sc["messages"])
    [out] = llm.chat(msgs, params)
    stream = llm.stream(msgs, params)
    deltas = list(stream)
    assert "".join(deltas) == out.outputs[0].text
    assert all(d for d in deltas)
    assert stream.output is not None
    assert stream.output.outputs[0].token_ids == out.outputs[0].token_ids


@pytest.mark.parametrize("family", FAMILIES)
def test_processor_equals_transformers(family: str) -> None:
    proc = vidlm.Processor(str(model_for(family)))
    checked = 0
    for name, sc in scenarios(family, batch=None):
        t = tensors(family, sc)
        got = proc(absolute_messages(sc["messages"]))
        for key in ("input_ids", "attention_mask", "image_sizes", "batch_num_images"):
            if key in t:
                assert key in got, f"{family}/{name}: no {key}"
                np.testing.assert_array_equal(got[key], t[key], err_msg=f"{family}/{name}/{key}")
        for key in ("pixel_values", "pixel_values_images", "pixel_values_videos"):
            if key in t:
                assert key in got, f"{family}/{name}: no {key} (got {sorted(got)})"
                assert got[key].dtype == np.float32 and got[key].shape == t[key].shape
                # torchvision's resize is reproduced bit for bit; allow float rounding only.
                np.testing.assert_allclose(got[key], t[key], rtol=0, atol=1e-5, err_msg=f"{family}/{name}/{key}")
        checked += 1
    assert checked >= 5


# The Qwen-VL goldens' videos are PNG frame lists declared as clips of 4 fps, which transformers'
# video processor sampled by the scenario's `num_frames` or `fps` (each family by its own formula).
# This clip holds the same frames (lossless, 4 fps), so the keyword arguments reproduce it.
QWEN_CLIP = ROOT / "crates" / "cli" / "tests" / "data" / "video_a_4fps.mkv"


def qwen_video_scenarios(family: str):
    g = golden(family)
    assert g["video_metadata"]["fps"] == 4.0
    for name in ("video_num_frames", "video_fps"):
        sc = g["scenarios"][name]
        prompt = sc["messages"][0]["content"][1]["text"]
        messages = [{"role": "user", "content": [{"type": "video", "path": str(QWEN_CLIP)},
                                                 {"type": "text", "text": prompt}]}]
        sampling = sc["video_sampling"]
        kwargs = {"num_frames": sampling["num_frames"]} if "num_frames" in sampling else {"fps": sampling["fps"]}
        yield name, sc, messages, kwargs


@pytest.mark.parametrize("family", QWEN_FAMILIES)
def test_qwen_chat_gives_transformers_tokens(family: str) -> None:
    llm = llm_for(family)
    checked = 0
    runs = [(n, sc, m, kw) for n, sc, m, kw in qwen_video_scenarios(family)]
    image = golden(family)["scenarios"]["image"]
    runs.append(("image", image, absolute_messages(image["messages"]), {}))
    for name, sc, messages, kwargs in runs:
        t = tensors(family, sc)
        want = t["tokens"][0].tolist()
        # Greedy with no repetition penalty, as the goldens' generate() ran (SamplingParams' defaults).
        params = vidlm.SamplingParams(max_tokens=len(want), ignore_eos=True)
        [out] = llm.chat(messages, params, **kwargs)
        assert out.outputs[0].token_ids == want, f"{family}/{name}"
        assert out.prompt_token_ids == t["input_ids"][0].tolist(), f"{family}/{name}: prompt ids"
        checked += 1
    assert checked == 3


@pytest.mark.parametrize("family", QWEN_FAMILIES)
def test_qwen_processor_equals_transformers(family: str) -> None:
    proc = vidlm.Processor(str(model_for(family)))
    for name, sc, messages, kwargs in qwen_video_scenarios(family):
        t = tensors(family, sc)
        got = proc(messages, **kwargs)
        for key in ("input_ids", "attention_mask", "video_grid_thw", "second_per_grid_ts"):
            if key in t:
                assert key in got, f"{family}/{name}: no {key} (got {sorted(got)})"
                np.testing.assert_array_equal(got[key], t[key], err_msg=f"{family}/{name}/{key}")
        # The goldens keep the pixels' sha256 (float32 bytes) only: vidlm's must be bit-identical.
        pixels = np.ascontiguousarray(got["pixel_values_videos"], dtype=np.float32)
        assert list(pixels.shape) == sc["input_shapes"]["pixel_values_videos"], f"{family}/{name}"
        digest = hashlib.sha256(pixels.tobytes()).hexdigest()
        assert digest == sc["pixel_sha256"]["pixel_values_videos"], f"{family}/{name}: pixels differ"
