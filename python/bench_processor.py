"""Baseline for `cargo xtask bench processor`: transformers 5.23's processors on frames decoded
by PyAV, timed in the same run as the Rust benchmark.

For each family and frame count, decodes the frames `i * N // T` of VIDEO with PyAV (not timed),
then times the family's video processor (`pixel_values_videos`; LLaVA-Interleave has none, so its
image processor on the T frames) — median of REPEAT runs after one warm-up — and prints one JSON
object: {"<family>/<T>": {"seconds": s, "shape": [...], "checksum": float}}.

Usage: python bench_processor.py VIDEO MODELS_DIR --frames 8 32 --repeat 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import av
import numpy as np
import torch
from transformers import AutoProcessor


def decode(path: str, t: int) -> np.ndarray:
    with av.open(path) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    n = len(frames)
    return np.stack([frames[i * n // t] for i in range(t)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("video")
    ap.add_argument("models")
    ap.add_argument("--frames", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--families", nargs="+", default=["interleave", "onevision", "video_llava", "llava_next_video"])
    a = ap.parse_args()
    out = {}
    decoded = {t: decode(a.video, t) for t in a.frames}
    for fam in a.families:
        proc = AutoProcessor.from_pretrained(f"{a.models}/{fam}")
        for t in a.frames:
            vid = decoded[t]
            if fam == "interleave":
                run = lambda: proc.image_processor(images=list(vid), return_tensors="pt")["pixel_values"]  # noqa: E731
            else:
                run = lambda: proc.video_processor(videos=[vid], return_tensors="pt")["pixel_values_videos"]  # noqa: E731
            res = run()
            times = []
            for _ in range(a.repeat):
                t0 = time.perf_counter()
                res = run()
                times.append(time.perf_counter() - t0)
            out[f"{fam}/{t}"] = {
                "seconds": statistics.median(times),
                "shape": list(res.shape),
                "checksum": float(res.double().sum()),
                "threads": torch.get_num_threads(),
            }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
