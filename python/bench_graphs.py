"""Times decoder graphs directly in ONNX Runtime: one prefill of N tokens and M decode steps, for
comparing graph variants on the same machine in the same run (exporter vs fused decoder, quantization
settings). Random inputs; the numbers are per graph, ratios between rows are what matter.

    python python/bench_graphs.py --prefill 1584 --decode 16 --threads 2 A/decoder_model_merged.onnx B/...

Each graph runs in its own session (default options, as vidlm loads it), one after another.
"""

from __future__ import annotations

import argparse
import gc
import time

import numpy as np


def bench(path: str, prefill: int, decode: int, threads: int) -> dict:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    t0 = time.perf_counter()
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    load = time.perf_counter() - t0
    ins = {i.name: i for i in s.get_inputs()}
    hidden = ins["inputs_embeds"].shape[2]
    pasts = [n for n in ins if n.startswith("past_key_values.")]
    kv, hd = ins[pasts[0]].shape[1], ins[pasts[0]].shape[3]
    rng = np.random.default_rng(0)
    feeds = {"inputs_embeds": (rng.standard_normal((1, prefill, hidden)) * 0.02).astype(np.float32),
             "attention_mask": np.ones((1, prefill), np.int64),
             **{n: np.zeros((1, kv, 0, hd), np.float32) for n in pasts}}
    if "position_ids" in ins:
        feeds["position_ids"] = np.arange(prefill, dtype=np.int64)[None]
    outs_names = [o.name for o in s.get_outputs()]
    t0 = time.perf_counter()
    outs = s.run(None, feeds)
    pre = time.perf_counter() - t0
    steps = []
    for k in range(decode):
        total = prefill + k + 1
        feeds = {"inputs_embeds": (rng.standard_normal((1, 1, hidden)) * 0.02).astype(np.float32),
                 "attention_mask": np.ones((1, total), np.int64)}
        if "position_ids" in ins:
            feeds["position_ids"] = np.array([[total - 1]], np.int64)
        for name, val in zip(outs_names[1:], outs[1:]):
            feeds[name.replace("present.", "past_key_values.")] = val
        t0 = time.perf_counter()
        outs = s.run(None, feeds)
        steps.append(time.perf_counter() - t0)
    del s
    gc.collect()
    return {"graph": path, "load_s": load, "prefill_s": pre, "decode_ms": 1e3 * float(np.median(steps)) if steps else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("graphs", nargs="+")
    ap.add_argument("--prefill", type=int, default=1584)
    ap.add_argument("--decode", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    rows = [bench(g, a.prefill, a.decode, a.threads) for g in a.graphs]
    print(f"| graph | load (s) | prefill {a.prefill} tokens (s) | decode step (ms, median of {a.decode}) |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['graph']} | {r['load_s']:.1f} | {r['prefill_s']:.2f} | {r['decode_ms']:.1f} |")


if __name__ == "__main__":
    main()
