"""Times decoder graphs directly in ONNX Runtime: a prefill of N tokens and decode steps, for comparing
graph variants (exporter vs fused decoder, quantization settings) on the same machine in the same run.

    python python/bench_graphs.py --prefill 1584 --decode 8 --rounds 3 --threads 2 A.onnx B.onnx ...

All sessions are loaded at once (default options, as vidlm loads them) and measured in interleaved rounds
(A, B, C, A, B, C, ...), keeping each graph's best prefill and best median decode step: on a shared
machine, load from other work then hits every variant alike. Random inputs at the scale of real
embeddings; ratios between rows are what matter.

Vision graphs (`vision_encoder*`, `video_encoder*`: an input named `pixel_values[_videos]`) are timed on
`--frames` random frames per run instead (best of the rounds), e.g. fp32 against q8 (MatMulNBits) against
int8 (DynamicQuantizeMatMul) vision.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


class Vision:
    def __init__(self, path: str, threads: int, frames: int):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.log_severity_level = 3
        t0 = time.perf_counter()
        self.s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        self.load_s = time.perf_counter() - t0
        self.path = path
        self.inp = self.s.get_inputs()[0]
        self.frames = frames
        self.best_s = float("inf")

    def round(self, _prefill: int, _decode: int, rng):
        shape = [self.frames if isinstance(d, str) or d is None else d for d in self.inp.shape]
        if self.inp.name == "pixel_values_videos":
            shape[0] = 1
        x = rng.standard_normal(shape).astype(np.float32)
        t0 = time.perf_counter()
        self.s.run(None, {self.inp.name: x})
        self.best_s = min(self.best_s, time.perf_counter() - t0)


class Graph:
    def __init__(self, path: str, threads: int):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.log_severity_level = 3
        t0 = time.perf_counter()
        self.s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        self.load_s = time.perf_counter() - t0
        self.path = path
        ins = {i.name: i for i in self.s.get_inputs()}
        self.ins = ins
        self.hidden = ins["inputs_embeds"].shape[2]
        self.pasts = [n for n in ins if n.startswith("past_key_values.")]
        self.kv, self.hd = ins[self.pasts[0]].shape[1], ins[self.pasts[0]].shape[3]
        self.out_names = [o.name for o in self.s.get_outputs()]
        self.prefill_s = float("inf")
        self.decode_ms = float("inf")

    def feeds(self, emb, total, past):
        f = {"inputs_embeds": emb, "attention_mask": np.ones((1, total), np.int64), **past}
        if "position_ids" in self.ins:
            f["position_ids"] = np.arange(total - emb.shape[1], total, dtype=np.int64)[None]
        return f

    def round(self, prefill: int, decode: int, rng):
        emb = (rng.standard_normal((1, prefill, self.hidden)) * 0.02).astype(np.float32)
        past = {n: np.zeros((1, self.kv, 0, self.hd), np.float32) for n in self.pasts}
        t0 = time.perf_counter()
        outs = self.s.run(None, self.feeds(emb, prefill, past))
        self.prefill_s = min(self.prefill_s, time.perf_counter() - t0)
        steps = []
        for k in range(decode):
            past = {n.replace("present.", "past_key_values."): v for n, v in zip(self.out_names[1:], outs[1:])}
            emb = (rng.standard_normal((1, 1, self.hidden)) * 0.02).astype(np.float32)
            t0 = time.perf_counter()
            outs = self.s.run(None, self.feeds(emb, prefill + k + 1, past))
            steps.append(time.perf_counter() - t0)
        if steps:
            self.decode_ms = min(self.decode_ms, 1e3 * float(np.median(steps)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("graphs", nargs="+")
    ap.add_argument("--prefill", type=int, default=1584)
    ap.add_argument("--decode", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--frames", type=int, default=1, help="frames per vision-graph run")
    a = ap.parse_args()
    graphs = [Vision(p, a.threads, a.frames) if "_encoder" in p else Graph(p, a.threads) for p in a.graphs]
    rng = np.random.default_rng(0)
    for r in range(a.rounds):
        for g in graphs:
            g.round(a.prefill, a.decode, rng)
        print(f"[bench_graphs] round {r + 1}/{a.rounds} done", flush=True)
    if any(isinstance(g, Vision) for g in graphs):
        print(f"| vision graph | load (s) | {a.frames} frame(s), best run (s) |")
        print("|---|---|---|")
        for g in graphs:
            if isinstance(g, Vision):
                print(f"| {g.path} | {g.load_s:.1f} | {g.best_s:.2f} |")
    if any(isinstance(g, Graph) for g in graphs):
        print(f"| graph | load (s) | prefill {a.prefill} tokens (s) | decode step (ms) |")
        print("|---|---|---|---|")
        for g in graphs:
            if isinstance(g, Graph):
                print(f"| {g.path} | {g.load_s:.1f} | {g.prefill_s:.2f} | {g.decode_ms:.1f} |")


if __name__ == "__main__":
    main()
