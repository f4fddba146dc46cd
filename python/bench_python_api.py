"""The `--python` column of `cargo xtask bench e2e`: the same request as `vidlm run --json`, made
through the Python package (`vidlm.LLM(...).stream(...)`), with the same timing keys, plus what
the Python caller sees.

Engine timings (`vision`, `embed`, `prefill`, `decode_tokens_per_s`, `preprocess`) come from the
request's `metrics`; `decode` is the media decoding in the calling thread, as in `vidlm run`.
Caller-side: `caller_first_token` = from the call to the first text delta, `caller_total` = from
the call to the end of the stream, `caller_tokens_per_s` = (tokens - 1) / (end - first delta).
`vidlm run --json` reports `decode + first_token` for the same span, so the two compare directly.

Prints one JSON object on stdout (like `vidlm run --json`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--video", required=True)
    ap.add_argument("--num-frames", type=int, required=True)
    ap.add_argument("--max-new-tokens", type=int, required=True)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()

    import vidlm

    t0 = time.perf_counter()
    llm = vidlm.LLM(a.model, dtype=a.dtype, device=a.device, threads=a.threads)
    print(f"[bench python] loaded in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    messages = [
        {
            "role": "user",
            "content": [{"type": "video", "path": a.video}, {"type": "text", "text": a.prompt}],
        }
    ]
    # Greedy, exactly max_new_tokens (as `vidlm run --max-new-tokens` on a random-weight model), with
    # the checkpoint's repetition penalty, which transformers' greedy `generate` applies too (Qwen2.5-VL's
    # generation config sets 1.05; SamplingParams' default is vLLM's 1.0).
    gen = Path(a.model) / "generation_config.json"
    penalty = json.loads(gen.read_text()).get("repetition_penalty", 1.0) if gen.is_file() else 1.0
    params = vidlm.SamplingParams(max_tokens=a.max_new_tokens, ignore_eos=True,
                                  repetition_penalty=float(penalty or 1.0))
    start = time.perf_counter()
    first = None
    stream = llm.stream(messages, params, num_frames=a.num_frames)
    for delta in stream:
        if first is None and delta:
            first = time.perf_counter()
    end = time.perf_counter()
    out = stream.output
    if out is None:
        print("the stream ended without its output", file=sys.stderr)
        return 1
    m = out.metrics
    tokens = out.outputs[0].token_ids
    first = first if first is not None else end
    caller_tps = (len(tokens) - 1) / (end - first) if len(tokens) > 1 and end > first else None
    print(
        json.dumps(
            {
                "text": out.outputs[0].text,
                "token_ids": tokens,
                "prompt_tokens": len(out.prompt_token_ids),
                "timings": {
                    "decode": m["decode"],
                    "preprocess": m["preprocess"],
                    "vision": m["vision"],
                    "embed": m["embed"],
                    "prefill": m["prefill"],
                    "first_token": m["first_token"],
                    "decode_tokens_per_s": m["decode_tokens_per_s"],
                    "caller_first_token": first - start,
                    "caller_total": end - start,
                    "caller_tokens_per_s": caller_tps,
                },
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
