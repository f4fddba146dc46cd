"""transformers' batched `generate` over many requests: the baseline of `cargo xtask bench gpu`
for `bench serve` (N requests, every `--video-every`-th with a video) and `bench batch` (every
request a clip).

All requests are submitted at once (time 0). Requests with a video and text-only requests are
generated in separate left-padded batches of `--batch-size` (one `generate` call per batch, one
after the other); a request's time to first token is the time from 0 to its batch's first token.
Greedy, `max_new_tokens` tokens, no EOS stop (every request generates the same number of tokens,
as in the vidlm benches). Prints one JSON object: aggregate new tokens/s, requests/s, TTFT p50/p99.

Frames are decoded before the clock starts (PyAV, the same indices as `bench_generate.py`), unless
`--time-decode` counts them (the batch bench's videos/s includes decoding for vidlm too).
"""

from __future__ import annotations

import argparse
import json
import math
import time

from bench_generate import evenly_spaced_frames, sync

QUESTIONS = [
    "What happens in this video?",
    "Describe the scene in detail.",
    "Who is there?",
    "What colours do you see?",
    "What happens next?",
    "Summarize it.",
    "Is it indoors?",
    "Count the objects.",
]


def quantile(v: list[float], q: float) -> float:
    """Nearest-rank quantile, as the Rust benches compute it."""
    if not v:
        return 0.0
    s = sorted(v)
    rank = min(max(math.ceil(q * len(s)), 1), len(s))
    return s[rank - 1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--videos", required=True, help="comma-separated clips, used in turn")
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--video-every", type=int, default=2,
                    help="every k-th request (from the first) has a video; 1 = all")
    ap.add_argument("--num-frames", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", default=None, help="one prompt for every request (default: 8 questions in turn)")
    ap.add_argument("--time-decode", action="store_true", help="count video decoding in the timed run")
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor, LogitsProcessor, LogitsProcessorList

    torch.set_num_threads(args.threads)
    processor = AutoProcessor.from_pretrained(args.model)
    processor.tokenizer.padding_side = "left"
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(args.dtype, torch.float32)
    model = AutoModelForImageTextToText.from_pretrained(args.model, dtype=dtype,
                                                        attn_implementation="sdpa").eval().to(args.device)
    clips = args.videos.split(",")
    reqs = []
    for i in range(args.requests):
        q = args.prompt or QUESTIONS[i % len(QUESTIONS)]
        video = clips[(i // max(args.video_every, 1)) % len(clips)] if i % max(args.video_every, 1) == 0 else None
        reqs.append((q, video))

    decoded: dict[str, object] = {}

    def frames(path: str):
        if path not in decoded:
            decoded[path] = evenly_spaced_frames(path, args.num_frames)
        return decoded[path]

    if not args.time_decode:
        for _, v in reqs:
            if v:
                frames(v)

    def run_batch(batch: list[tuple[str, str | None]]) -> tuple[int, float]:
        """generate() on one batch; returns (new tokens, seconds to its first token)."""
        texts, videos = [], []
        for q, v in batch:
            content = ([{"type": "video"}] if v else []) + [{"type": "text", "text": q}]
            texts.append(processor.apply_chat_template([{"role": "user", "content": content}],
                                                       add_generation_prompt=True))
            if v:
                videos.append(frames(v))
        kwargs = {"videos": videos} if videos else {}
        inputs = processor(text=texts, padding=True, return_tensors="pt", **kwargs).to(args.device)
        if args.dtype in ("fp16", "bf16"):
            inputs = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in inputs.items()}
        stamps: list[float] = []

        class Stamp(LogitsProcessor):
            def __call__(self, input_ids, scores):
                if not stamps:
                    sync(args.device)
                    stamps.append(time.perf_counter())
                return scores

        out = model.generate(**inputs, max_new_tokens=args.max_new_tokens, min_new_tokens=args.max_new_tokens,
                             do_sample=False, logits_processor=LogitsProcessorList([Stamp()]))
        sync(args.device)
        new = int(out.shape[0] * (out.shape[1] - inputs["input_ids"].shape[1]))
        return new, stamps[0] if stamps else time.perf_counter()

    groups = [[r for r in reqs if r[1]], [r for r in reqs if not r[1]]]
    # Warm-up: one small generate (CUDA context, kernels' first launch), not timed.
    with torch.inference_mode():
        warm = groups[0][:1] or groups[1][:1]
        if warm:
            run_batch(warm)
        sync(args.device)
        t0 = time.perf_counter()
        tokens, ttft = 0, []
        for g in groups:
            for s in range(0, len(g), args.batch_size):
                b = g[s:s + args.batch_size]
                n, first = run_batch(b)
                tokens += n
                ttft += [first - t0] * len(b)
        wall = time.perf_counter() - t0
    print(json.dumps({
        "backend": f"transformers batched generate (PyTorch {'CUDA' if args.device.startswith('cuda') else 'CPU'}, {args.dtype}, sdpa)",
        "requests": len(reqs),
        "with_video": sum(1 for r in reqs if r[1]),
        "batch_size": args.batch_size,
        "new_tokens": tokens,
        "wall_s": round(wall, 3),
        "tokens_per_s": round(tokens / wall, 2),
        "requests_per_s": round(len(reqs) / wall, 3),
        "ttft_p50_s": round(quantile(ttft, 0.5), 3),
        "ttft_p99_s": round(quantile(ttft, 0.99), 3),
        "decode_timed": args.time_decode,
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
    }, indent=2))


if __name__ == "__main__":
    main()
