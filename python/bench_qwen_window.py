"""Qwen2.5-VL window attention, one real-width vision block (C 1280, 16 heads, 64-patch windows):
the padded window batch of the contract vs a dense [patches, patches] mask (masked full attention),
in PyTorch on the CPU (VIDLM_TORCH_THREADS, default 2). Only the attention (qkv, rotary, attention,
proj) is timed; the MLP is the same in both.

    .cache/venv/bin/python python/bench_qwen_window.py --grid 40x72 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from vidlm_export import qwen, qwen_host  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--grid", default="40x72", help="patch grid h x w of one frame")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("VIDLM_TORCH_THREADS", "2")))
    h, w = (int(x) for x in a.grid.split("x"))
    from transformers import Qwen2_5_VLConfig
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLVisionAttention

    vcfg = Qwen2_5_VLConfig(vision_config=dict(hidden_size=1280, num_heads=16, window_size=112, patch_size=14,
                                               spatial_merge_size=2)).vision_config
    vcfg._attn_implementation = "sdpa"
    attn = Qwen2_5_VLVisionAttention(vcfg).eval()
    host = qwen_host.qwen25_vision_inputs(h, w, vcfg)
    t = {k: torch.from_numpy(v) for k, v in host.items()}
    x = torch.randn(1, h * w, 1280)
    _, cu = qwen_host.window_index(h, w, 2, 112, 14)
    seg = np.repeat(np.arange(len(cu) - 1), np.diff(cu))
    dense = torch.from_numpy(np.where(seg[:, None] == seg[None, :], 0.0, np.finfo(np.float32).min).astype(np.float32))

    def run_dense():
        f, p, c = x.shape
        qkv = attn.qkv(x).reshape(f, p, 3, 16, 80)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        cos, sin = t["rotary_cos"][:, None], t["rotary_sin"][:, None]
        q = q * cos + qwen._rotate_half(q) * sin
        k = k * cos + qwen._rotate_half(k) * sin
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=dense[None, None], scale=attn.scaling)
        return attn.proj(o.transpose(1, 2).reshape(f, p, c))

    def run_windows():
        return qwen._attention(attn, x, t["rotary_cos"], t["rotary_sin"],
                               (t["window_gather"], t["window_scatter"], t["window_key_bias"]))

    with torch.no_grad():
        d = float((run_dense() - run_windows()).abs().max())
        best = {}
        for _ in range(a.rounds):
            for name, fn in (("dense mask", run_dense), ("window batch", run_windows)):
                t0 = time.perf_counter()
                fn()
                best[name] = min(best.get(name, 1e9), time.perf_counter() - t0)
    print(f"grid {h}x{w} = {h * w} patches, {len(cu) - 1} windows of <= {int(np.diff(cu).max())} patches, "
          f"dense mask {dense.numel() * 4 / 1e6:.1f} MB; outputs agree to {d:.2e}")
    for name, s in best.items():
        print(f"| {name} | {s * 1000:.1f} ms |")
    print(f"dense / window = {best['dense mask'] / best['window batch']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
