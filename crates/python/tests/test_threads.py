"""The GIL is released while vidlm works (two Python threads overlap, the main thread keeps
running), and Ctrl-C (KeyboardInterrupt) cancels a request, after which the LLM still works."""

from __future__ import annotations

import _thread
import signal
import threading
import time
from pathlib import Path

import pytest

import vidlm


def ask(video: Path) -> list:
    return [{"role": "user", "content": [{"type": "video", "path": str(video)}, {"type": "text", "text": "Go on."}]}]


# Ctrl-C raises KeyboardInterrupt, as in an interactive Python. A process started in the
# background by a non-interactive shell (as CI runs `cargo xtask test`) inherits SIGINT ignored,
# Python then leaves it ignored, and `_thread.interrupt_main` does nothing; so set the handler an
# interactive Python has (this module is imported in the main thread).
signal.signal(signal.SIGINT, signal.default_int_handler)


def interrupt_when_running(llm) -> threading.Thread:
    """Ctrl-C (as `_thread.interrupt_main` delivers it) once a request is decoding."""

    def go() -> None:
        deadline = time.monotonic() + 60
        while llm.load_counts()[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(0.05)
        _thread.interrupt_main()

    t = threading.Thread(target=go)
    t.start()
    return t


def test_two_threads_overlap_and_the_main_thread_runs(demo_llm, demo_video: Path) -> None:
    params = vidlm.SamplingParams(max_tokens=64, ignore_eos=True)
    spans: dict = {}
    results: dict = {}

    def work(name: str) -> None:
        t0 = time.monotonic()
        results[name] = demo_llm.chat(ask(demo_video), params, num_frames=4)[0].outputs[0].token_ids
        spans[name] = (t0, time.monotonic())

    threads = [threading.Thread(target=work, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    spins = 0
    while any(t.is_alive() for t in threads):
        spins += 1  # pure Python: runs only while the workers do not hold the GIL
    for t in threads:
        t.join()
    (a0, a1), (b0, b1) = spans["a"], spans["b"]
    assert max(a0, b0) < min(a1, b1), f"the calls did not overlap: {spans}"
    assert spins > 1000, spins
    assert results["a"] == results["b"]
    alone = demo_llm.chat(ask(demo_video), params, num_frames=4)[0].outputs[0].token_ids
    assert results["a"] == alone


def test_ctrl_c_cancels_and_the_llm_keeps_working(demo_llm, demo_video: Path) -> None:
    short = vidlm.SamplingParams(max_tokens=8, ignore_eos=True)
    before = demo_llm.chat(ask(demo_video), short, num_frames=4)[0].outputs[0].token_ids
    endless = vidlm.SamplingParams(max_tokens=100_000, ignore_eos=True)
    timer = interrupt_when_running(demo_llm)
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        demo_llm.chat(ask(demo_video), endless, num_frames=4)
    raised = time.monotonic()
    timer.join()
    assert raised - t0 < 30, "Ctrl-C did not stop the call"
    # The cancelled request leaves the engine (no more CPU spent on it).
    deadline = time.monotonic() + 5
    while demo_llm.load_counts() != (0, 0) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert demo_llm.load_counts() == (0, 0)
    after = demo_llm.chat(ask(demo_video), short, num_frames=4)[0].outputs[0].token_ids
    assert after == before


def test_ctrl_c_in_a_stream_and_closing_a_stream(demo_llm, demo_video: Path) -> None:
    endless = vidlm.SamplingParams(max_tokens=100_000, ignore_eos=True)
    stream = demo_llm.stream(ask(demo_video), endless, num_frames=4)
    first = next(stream)
    assert isinstance(first, str)
    stream.close()
    with pytest.raises(StopIteration):
        next(stream)
    deadline = time.monotonic() + 5
    while demo_llm.load_counts() != (0, 0) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert demo_llm.load_counts() == (0, 0)
    # Ctrl-C lands inside `__next__` (the wait) or between two deltas, in the loop: either way the
    # stream, held only by the loop, is dropped with it, and that cancels the request.
    timer = interrupt_when_running(demo_llm)
    with pytest.raises(KeyboardInterrupt):
        for _ in demo_llm.stream(ask(demo_video), endless, num_frames=4):
            pass
    timer.join()
    # A stream used as a context manager is closed on the way out, whatever holds it.
    timer = interrupt_when_running(demo_llm)
    with pytest.raises(KeyboardInterrupt):
        with demo_llm.stream(ask(demo_video), endless, num_frames=4) as held:
            for _ in held:
                pass
    timer.join()
    assert held.output is None
    deadline = time.monotonic() + 5
    while demo_llm.load_counts() != (0, 0) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert demo_llm.load_counts() == (0, 0)


def test_stop_strings_are_cut_like_openai(demo_llm, demo_video: Path) -> None:
    params = vidlm.SamplingParams(max_tokens=24, ignore_eos=True)
    [full] = demo_llm.chat(ask(demo_video), params, num_frames=4)
    text = full.outputs[0].text
    assert len(text) > 4
    stop = text[2:4]
    [cut] = demo_llm.chat(ask(demo_video), vidlm.SamplingParams(max_tokens=24, ignore_eos=True, stop=[stop]), num_frames=4)
    assert cut.outputs[0].text == text[: text.find(stop)]
    assert cut.outputs[0].finish_reason == "stop"
    deltas = list(demo_llm.stream(ask(demo_video), vidlm.SamplingParams(max_tokens=24, ignore_eos=True, stop=stop), num_frames=4))
    assert "".join(deltas) == cut.outputs[0].text


def test_sampling_with_a_seed_is_reproducible(demo_llm, demo_video: Path) -> None:
    p = vidlm.SamplingParams(max_tokens=12, temperature=0.8, top_p=0.9, top_k=50, seed=7, ignore_eos=True)
    a = demo_llm.chat(ask(demo_video), p, num_frames=4)[0].outputs[0].token_ids
    b = demo_llm.chat(ask(demo_video), p, num_frames=4)[0].outputs[0].token_ids
    assert a == b and len(a) == 12
