"""transformers' side of the end-to-end benchmark (`cargo xtask bench e2e`).

Runs ``generate`` on PyTorch (CPU by default, or ``--device cuda``; fp32 by default, or
``--dtype fp16``; sdpa) for the same checkpoint, video, prompt and frame count that
``vidlm run --json`` is given, and prints one JSON object with per-stage times:

    python python/bench_generate.py --model .cache/bench-models/onevision-0.5b/hf --video V.mp4 \
        --num-frames 8 --max-new-tokens 32 --prompt "What is happening in this video?" [--threads 2]

``--measure-bandwidth --device cuda`` instead prints the GPU's memory-read bandwidth (the decode
ceiling's numerator on a GPU): the best of several full reads of a 4 GiB tensor.

``--measure-compute [--threads N] [--device D] [--quick]`` instead prints the best fp32 matrix-product
rate PyTorch's BLAS reaches on large square matrices (``matmul_fp32_flops_per_s``; TF32 off on a GPU):
the compute ceiling of vision + prefill, which are made almost entirely of such products.

Stages, all timed inside the ONE ``generate`` call (nothing is run twice, nothing estimated):

* ``vision``: the model's own ``get_video_features`` / ``get_image_features`` (tower, projector,
  pooling, newline), wrapped with a timer for the duration of the call;
* ``prefill``: from the end of the vision features to the first logits (embedding, merge, the
  language model over the prompt, lm_head);
* ``time_to_first_token`` = vision + prefill (the model's time; media decoding and preprocessing are
  reported separately as ``decode`` and ``preprocess``);
* ``decode_tokens_per_s`` over the steps after the first token.

Frames are decoded with PyAV at transformers' own indices (vidlm samples the same frames): where the
model's video processor samples frames itself (the Qwen-VL families, each with its own formula), the
indices are the ones its own ``sample_frames`` picks for ``num_frames`` from the container's frame
count and rate, and the frames go in with that ``video_metadata`` and ``do_sample_frames=False`` (so
it does not sample again, and Qwen2.5-VL's `second_per_grid_ts` and Qwen3-VL's timestamps come from
the real rate); otherwise
``i * total // n``. Where PyAV is not installed (a GPU machine with no package index), OpenCV's FFmpeg
decodes the same indices, and the JSON says which (``frames_decoder``). Greedy decoding with EOS disabled, so every run generates exactly ``max_new_tokens``.
``peak_rss_gb`` is this process's own high-water mark; the benchmark harness measures the same thing
from outside (``wait4``) for both backends.
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import time

import numpy as np


def container_frames(path: str) -> tuple[int, float]:
    """(frame count, frame rate) of the first video stream: the metadata transformers samples from."""
    try:
        import av
    except ImportError:
        import cv2

        cap = cv2.VideoCapture(path)
        out = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), float(cap.get(cv2.CAP_PROP_FPS))
        cap.release()
        return out
    with av.open(path) as c:
        rate = float(c.streams.video[0].average_rate)
        total = sum(1 for _ in c.demux(video=0) if _.size)  # packet count = frames for these files
    return total, rate


def frame_indices(processor, total: int, rate: float, num_frames: int) -> tuple[list[int], object]:
    """The frames transformers would feed the model, and the `video_metadata` to pass with them
    (None for the LLaVA families, whose video processors take frames as given).

    A video processor with its own `sample_frames` (the Qwen-VL families, each with its formula)
    picks them, and the metadata goes with them whether or not it samples by default
    (Qwen2.5-VL's `do_sample_frames` is off, Qwen3-VL's on): without it Qwen2.5-VL's
    `second_per_grid_ts` assumes 24 fps and Qwen3-VL's timestamps do too."""
    from transformers.video_processing_utils import BaseVideoProcessor

    vp = getattr(processor, "video_processor", None)
    if vp is not None and type(vp).sample_frames is not BaseVideoProcessor.sample_frames:
        from transformers.video_utils import VideoMetadata

        picked = vp.sample_frames(VideoMetadata(total_num_frames=total, fps=rate), num_frames=num_frames)
        idx = [int(i) for i in np.asarray(picked)]
        return idx, VideoMetadata(total_num_frames=total, fps=rate, frames_indices=idx)
    return evenly_spaced_indices(total, num_frames), None


def evenly_spaced_indices(total: int, num_frames: int) -> list[int]:
    """The LLaVA families' frame indices ``i * total // n``."""
    return [i * total // num_frames for i in range(num_frames)]


def evenly_spaced_frames(path: str, num_frames: int) -> np.ndarray:
    """`num_frames` frames at `evenly_spaced_indices` (the tools that feed frames without a
    family's own sampling: the batched benchmark, the export's agreement inputs)."""
    total, _ = container_frames(path)
    return decode_frames(path, evenly_spaced_indices(total, num_frames))[0]


def decode_frames(path: str, idx: list[int]) -> tuple[np.ndarray, str]:
    try:
        import av
    except ImportError:
        return decode_frames_cv2(path, idx), "opencv"

    want = set(idx)
    got = {}
    with av.open(path) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i in want:
                got[i] = f.to_ndarray(format="rgb24")
            if i >= max(idx):
                break
    if len(got) != len(want):
        raise SystemExit(f"{path}: decoded {len(got)} of {len(want)} frames")
    return np.stack([got[i] for i in idx]), "pyav"


def decode_frames_cv2(path: str, idx: list[int]) -> np.ndarray:
    import cv2

    cap = cv2.VideoCapture(path)
    want = set(idx)
    got = {}
    i = 0
    while i <= max(idx):
        ok, f = cap.read()
        if not ok:
            break
        if i in want:
            got[i] = cv2.cvtColor(f, cv2.COLOR_BGR2RGB)
        i += 1
    cap.release()
    if len(got) != len(want):
        raise SystemExit(f"{path}: decoded {len(got)} of {len(want)} frames")
    return np.stack([got[i] for i in idx])


def sync(device: str) -> None:
    """Waits for the GPU's queued work, so a wall-clock stamp means that work is done."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def measure_bandwidth(device: str) -> None:
    import torch

    x = torch.ones(1 << 30, dtype=torch.float32, device=device)  # 4 GiB
    x.sum()
    sync(device)
    best = float("inf")
    for _ in range(10):
        t0 = time.perf_counter()
        x.sum()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    print(json.dumps({"device": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
                      "read_bandwidth_bytes_per_s": x.numel() * 4 / best, "bytes_per_pass": x.numel() * 4}))


def measure_compute(device: str, threads: int, quick: bool) -> None:
    import torch

    torch.set_num_threads(threads)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False
    sizes = (512, 1024) if quick else (1024, 2048, 4096)
    budget = 0.3 if quick else 3.0
    best, best_n = 0.0, 0
    for n in sizes:
        a = torch.randn(n, n, device=device)
        b = torch.randn(n, n, device=device)
        for _ in range(2):
            a @ b
        sync(device)
        t0, k = time.perf_counter(), 0
        while time.perf_counter() - t0 < budget:
            a @ b
            k += 1
        sync(device)
        rate = 2 * n**3 * k / (time.perf_counter() - t0)
        if rate > best:
            best, best_n = rate, n
    print(json.dumps({"device": device, "threads": threads, "matmul_fp32_flops_per_s": best,
                      "matmul_size": best_n}))


class StageTimer:
    """Wraps the model's vision-feature methods so their time inside `generate` is measured."""

    def __init__(self, inner, device: str):
        self.device = device
        self.vision_s = 0.0
        self.vision_end = None
        self.depth = 0  # Qwen3-VL's get_video_features calls get_image_features: time the outer call only
        for name in ("get_video_features", "get_image_features"):
            orig = getattr(inner, name, None)
            if orig is not None:
                setattr(inner, name, self._wrap(orig))

    def _wrap(self, fn):
        # functools.wraps keeps the signature: generate() inspects it to pre-encode the media
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            if self.depth:
                return fn(*args, **kwargs)
            t0 = time.perf_counter()
            self.depth += 1
            try:
                out = fn(*args, **kwargs)
            finally:
                self.depth -= 1
            sync(self.device)
            self.vision_end = time.perf_counter()
            self.vision_s += self.vision_end - t0
            return out

        return timed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--video")
    ap.add_argument("--prompt", default="What is happening in this video?")
    ap.add_argument("--num-frames", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"),
                    help="bf16: what a user with an AMX-BF16 CPU would try (torch_dtype=torch.bfloat16)")
    ap.add_argument("--measure-bandwidth", action="store_true")
    ap.add_argument("--measure-compute", action="store_true")
    ap.add_argument("--quick", action="store_true", help="with --measure-compute: small matrices, short runs")
    args = ap.parse_args()
    if args.measure_bandwidth:
        measure_bandwidth(args.device)
        return
    if args.measure_compute:
        measure_compute(args.device, args.threads, args.quick)
        return
    if not args.model or not args.video:
        ap.error("--model and --video are required (except with --measure-bandwidth / --measure-compute)")

    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor, LogitsProcessor, LogitsProcessorList

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    processor = AutoProcessor.from_pretrained(args.model)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(args.dtype, torch.float32)
    model = AutoModelForImageTextToText.from_pretrained(args.model, dtype=dtype,
                                                        attn_implementation="sdpa").eval().to(args.device)
    sync(args.device)
    load_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    total, rate = container_frames(args.video)
    indices, metadata = frame_indices(processor, total, rate, args.num_frames)
    video, frames_decoder = decode_frames(args.video, indices)
    decode_s = time.perf_counter() - t0

    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": args.prompt}]}]
    t0 = time.perf_counter()
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    extra = {} if metadata is None else {"video_metadata": [metadata], "do_sample_frames": False}
    inputs = processor(text=text, videos=[video], return_tensors="pt", **extra).to(args.device)
    if args.dtype in ("fp16", "bf16"):
        inputs = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in inputs.items()}
    sync(args.device)
    preprocess_s = time.perf_counter() - t0

    timer = StageTimer(model.model, args.device)
    stamps: list[float] = []

    class Stamp(LogitsProcessor):
        def __call__(self, input_ids, scores):
            sync(args.device)
            stamps.append(time.perf_counter())
            return scores

    with torch.inference_mode():
        t0 = time.perf_counter()
        out = model.generate(**inputs, max_new_tokens=args.max_new_tokens, do_sample=False,
                             eos_token_id=None, logits_processor=LogitsProcessorList([Stamp()]))
        total_s = time.perf_counter() - t0
    new = out[0, inputs["input_ids"].shape[1]:].tolist()
    gpu_peak = torch.cuda.max_memory_allocated() if args.device.startswith("cuda") else None
    first = stamps[0] - t0  # vision + prefill inside generate
    prefill = stamps[0] - timer.vision_end if timer.vision_end is not None else first
    steps = [b - a for a, b in zip(stamps, stamps[1:])]
    print(json.dumps({
        "backend": f"transformers (PyTorch {'CUDA' if args.device.startswith('cuda') else 'CPU'}, {args.dtype}, sdpa)",
        "device": args.device,
        "dtype": args.dtype,
        "frames_decoder": frames_decoder,
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
        "torch_threads": args.threads,
        "frame_indices": indices,
        "prompt_tokens": int(inputs["input_ids"].shape[1]),
        "new_tokens": len(new),
        "token_ids": new,
        "timings": {
            "load": round(load_s, 3),
            "decode": round(decode_s, 3),
            "preprocess": round(preprocess_s, 3),
            "vision": round(timer.vision_s, 3),
            "prefill": round(prefill, 3),
            "time_to_first_token": round(first, 3),
            "decode_step_mean": round(float(np.mean(steps)), 4) if steps else None,
            "decode_tokens_per_s": round(len(steps) / sum(steps), 2) if steps else None,
            "generate_total": round(total_s, 3),
        },
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
        "peak_cuda_allocated_gb": round(gpu_peak / 1e9, 2) if gpu_peak is not None else None,
    }, indent=2))


if __name__ == "__main__":
    main()
