"""Where an ONNX graph's time goes: ONNX Runtime's profiler, kernel time summed by op type.

    python python/profile_graph.py EXPORT/onnx/video_encoder_int8.onnx --frames 8 [--threads 2]

Vision graphs only (an input named `pixel_values` or `pixel_values_videos`): random frames of the
graph's size, `--frames` per call (one video of that many frames for `video_encoder*`). Prints the
best of two timed calls after a warm-up, then the kernel time per op type of one profiled call
(ORT's `enable_profiling`, `*_kernel_time` events), largest first. Results: docs/bench/e2e-cpu-2core.md.
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import time

import numpy as np


def main() -> int:
    import onnxruntime as ort

    ap = argparse.ArgumentParser()
    ap.add_argument("graph")
    ap.add_argument("--frames", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top", type=int, default=15)
    a = ap.parse_args()

    def session(profile: str | None = None):
        so = ort.SessionOptions()
        so.intra_op_num_threads = a.threads
        so.log_severity_level = 3
        if profile:
            so.enable_profiling = True
            so.profile_file_prefix = profile
        return ort.InferenceSession(a.graph, so, providers=["CPUExecutionProvider"])

    s = session()
    inp = s.get_inputs()[0]
    if inp.name not in ("pixel_values", "pixel_values_videos"):
        raise SystemExit(f"{a.graph}: not a vision graph (first input {inp.name!r})")
    shape = [a.frames if isinstance(d, str) or d is None else d for d in inp.shape]
    if inp.name == "pixel_values_videos":
        shape[0] = 1
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    s.run(None, {inp.name: x})
    best = float("inf")
    for _ in range(2):
        t = time.perf_counter()
        s.run(None, {inp.name: x})
        best = min(best, time.perf_counter() - t)
    print(f"{a.graph}: best {best:.3f} s, input {shape}, {a.threads} threads")
    with tempfile.TemporaryDirectory() as tmp:
        p = session(f"{tmp}/prof")
        p.run(None, {inp.name: x})
        events = json.load(open(p.end_profiling()))
    by: collections.Counter = collections.Counter()
    nodes: collections.Counter = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e["args"].get("op_name", "?")
            by[op] += e["dur"]
            nodes[op] += 1
    total = sum(by.values())
    print(f"kernel time {total / 1e6:.3f} s")
    print("| op | seconds | share | nodes |")
    print("|---|---:|---:|---:|")
    for op, d in by.most_common(a.top):
        print(f"| {op} | {d / 1e6:.3f} | {100 * d / total:.1f} % | {nodes[op]} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
