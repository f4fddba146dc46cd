"""Which weights can be 4-bit? A fast sweep of weight-quantization mixes in PyTorch, on real pipeline inputs.

    python python/quant_sweep.py --model /work/models/onevision-0.5b/hf --video V.mp4 --num-frames 2 \
        --new-tokens 16 [--configs all4,all4+lm8,...]

The checkpoint runs once through transformers (video frames through the processor, the vision tower and
the projector, greedy decoding in fp32) to get the decoder's real `inputs_embeds` for the prompt and its
greedy continuation. Then, for each mix, the language model's Linear weights are fake-quantized the way
`MatMulNBits` stores them (blocks of 32 along the input dimension; RTN asymmetric with 0 in the range, as
ONNX Runtime's `quantize_matmul_{4,8}bits`, or HQQ as its `HQQWeightOnlyQuantizer`), optionally with
`accuracy_level` 4's int8 activations (symmetric per block of 32 along K), and the logits of the last
prompt position and every continuation position (teacher-forced: what a decode loop sees, each path with
its own cache) are compared with fp32: the lowest and mean cosine over positions, and top-1 agreement.

It simulates; the chosen mix is then written with ONNX Runtime's quantizer and measured on the real
graph (`quantize.py` fidelity, `bench_graphs.py` speed). Needs ~7 GB for OneVision-0.5B (run under
`heavy`).
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import numpy as np
import torch

CATEGORIES = {
    "qkv": re.compile(r"self_attn\.(q|k|v)_proj$"),
    "o": re.compile(r"self_attn\.o_proj$"),
    "gate_up": re.compile(r"mlp\.(gate|up)_proj$"),
    "down": re.compile(r"mlp\.down_proj$"),
}


def rtn(w: torch.Tensor, bits: int, block: int) -> torch.Tensor:
    """Asymmetric round-to-nearest per block of `block` along the input dim (w: [out, in]), range holding 0."""
    out_f, in_f = w.shape
    pad = (-in_f) % block
    x = torch.nn.functional.pad(w, (0, pad)).reshape(out_f, -1, block)
    qmax = (1 << bits) - 1
    lo = torch.clamp(x.amin(-1, keepdim=True), max=0.0)
    hi = torch.clamp(x.amax(-1, keepdim=True), min=0.0)
    scale = (hi - lo) / qmax
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    zp = torch.clamp(torch.round(-lo / scale), 0, qmax)
    q = torch.clamp(torch.round(x / scale) + zp, 0, qmax)
    return ((q - zp) * scale).reshape(out_f, -1)[:, :in_f]


def hqq(w: torch.Tensor, bits: int, block: int) -> torch.Tensor:
    from onnxruntime.quantization.matmul_nbits_quantizer import HQQWeightOnlyQuantConfig, HQQWeightOnlyQuantizer

    qz = HQQWeightOnlyQuantizer(HQQWeightOnlyQuantConfig(block_size=block, bits=bits))
    q, scale, zero = qz.quantize_internal(w, bits=bits, group_size=block, axis=1)
    out_f, in_f = w.shape
    deq = (q.float().reshape(out_f, -1, block) - zero.reshape(out_f, -1, 1)) * scale.reshape(out_f, -1, 1)
    return deq.reshape(out_f, -1)[:, :in_f]


def act8(x: torch.Tensor, block: int = 32) -> torch.Tensor:
    """accuracy_level 4: int8 symmetric activations per block of `block` along K."""
    k = x.shape[-1]
    pad = (-k) % block
    y = torch.nn.functional.pad(x, (0, pad)).reshape(*x.shape[:-1], -1, block)
    s = y.abs().amax(-1, keepdim=True) / 127.0
    s = torch.where(s == 0, torch.ones_like(s), s)
    y = torch.round(y / s).clamp(-127, 127) * s
    return y.reshape(*x.shape[:-1], -1)[..., :k]


def parse_config(name: str, n_layers: int):
    """`all4`, `all8`, `fp32`, with `+lm8`, `+down8`, `+qkv8`, `+o8`, `+gate_up8`, `+first2_8`, `+last2_8`,
    `+ends8` (first and last layer), `+hqq`, `+act8`, `+only:<cat>4` (that category 4-bit, the rest fp32),
    `+layers:<a>-<b>:4` (those layers 4-bit, the rest fp32)."""
    parts = name.split("+")
    base = {"all4": 4, "all8": 8, "fp32": 32}[parts[0]]
    cfg = {"bits": {}, "method": "rtn", "act8": False}
    for i in range(n_layers):
        for c in CATEGORIES:
            cfg["bits"][(i, c)] = base
    cfg["bits"]["lm_head"] = base
    for p in parts[1:]:
        if p == "hqq":
            cfg["method"] = "hqq"
        elif p == "act8":
            cfg["act8"] = True
        elif p == "lm8":
            cfg["bits"]["lm_head"] = 8
        elif p == "lm4":
            cfg["bits"]["lm_head"] = 4
        elif p in ("down8", "qkv8", "o8", "gate_up8"):
            for i in range(n_layers):
                cfg["bits"][(i, p[:-1])] = 8
        elif re.fullmatch(r"(first|last)\d+_8", p):
            k = int(re.findall(r"\d+", p)[0])
            layers = range(k) if p.startswith("first") else range(n_layers - k, n_layers)
            for i in layers:
                for c in CATEGORIES:
                    cfg["bits"][(i, c)] = 8
        elif p.startswith("only:"):
            cat = p[5:-1]
            for k in cfg["bits"]:
                cfg["bits"][k] = 32
            for i in range(n_layers):
                cfg["bits"][(i, cat)] = int(p[-1])
            if cat == "lm_head":
                cfg["bits"]["lm_head"] = int(p[-1])
        elif p.startswith("layers:"):
            _, rng, b = p.split(":")
            a, z = map(int, rng.split("-"))
            for k in cfg["bits"]:
                cfg["bits"][k] = 32
            for i in range(a, z + 1):
                for c in CATEGORIES:
                    cfg["bits"][(i, c)] = int(b)
        else:
            raise SystemExit(f"unknown config part {p!r}")
    return cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--video", required=True)
    ap.add_argument("--num-frames", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--prompt", default="What is happening in this video?")
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--configs", default="all8,all8+act8,all4,all4+act8,all4+hqq,all4+lm8,all4+lm8+down8,"
                                         "all4+lm8+down8+qkv8,all4+lm8+first2_8+last2_8")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from bench_generate import evenly_spaced_frames

    t0 = time.time()
    processor = AutoProcessor.from_pretrained(a.model)
    model = AutoModelForImageTextToText.from_pretrained(a.model, dtype=torch.float32, attn_implementation="sdpa").eval()
    video = evenly_spaced_frames(a.video, a.num_frames)
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": a.prompt}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(text=text, videos=[video], return_tensors="pt")
    with torch.no_grad():
        gen = model.generate(**inputs, max_new_tokens=a.new_tokens, do_sample=False, eos_token_id=None)
    full = gen[:, :-1]  # the last generated token's logits are not needed
    lm = model.model.language_model
    captured = {}

    def grab(_mod, args, kwargs):
        captured["e"] = kwargs["inputs_embeds"].detach().clone()

    h = lm.register_forward_pre_hook(grab, with_kwargs=True)
    feed = dict(inputs)
    feed["input_ids"] = full
    feed["attention_mask"] = torch.ones_like(full)
    with torch.no_grad():
        model(**feed)
    h.remove()
    emb = captured["e"]
    n_pos = a.new_tokens  # last prompt position + new_tokens - 1 continuation positions
    print(f"[sweep] {emb.shape[1]} positions ({inputs['input_ids'].shape[1]} prompt), compared: last {n_pos}; "
          f"setup {time.time() - t0:.0f} s", flush=True)

    linears = {}
    n_layers = len(lm.layers)
    for i, layer in enumerate(lm.layers):
        for name, mod in layer.named_modules():
            for c, rx in CATEGORIES.items():
                if rx.search(name):
                    linears.setdefault((i, c), []).append(mod)
    head = model.lm_head
    originals = {id(m): m.weight.detach().clone() for ms in linears.values() for m in ms}
    head_w = head.weight.detach().clone()

    def logits():
        with torch.no_grad():
            hs = lm(inputs_embeds=emb).last_hidden_state[:, -n_pos:]
            return head(hs)[0].double()

    ref = logits()
    ref_top = ref.argmax(-1)
    hooks = []
    print("| config | min cosine | mean cosine | top-1 agree | seconds |\n|---|---|---|---|---|", flush=True)
    for name in a.configs.split(","):
        t1 = time.time()
        cfg = parse_config(name, n_layers)
        q = rtn if cfg["method"] == "rtn" else hqq
        with torch.no_grad():
            for key, mods in linears.items():
                for m in mods:
                    b = cfg["bits"][key]
                    w = originals[id(m)]
                    m.weight.copy_(w if b == 32 else q(w, b, a.block))
            b = cfg["bits"]["lm_head"]
            # lm_head may be tied to the embedding: emb was captured already, so this is safe.
            head.weight.copy_(head_w if b == 32 else q(head_w, b, a.block))
        for h in hooks:
            h.remove()
        hooks = []
        if cfg["act8"]:
            quantized = [m for k, ms in linears.items() if cfg["bits"][k] != 32 for m in ms]
            if cfg["bits"]["lm_head"] != 32:
                quantized.append(head)
            for m in quantized:
                hooks.append(m.register_forward_pre_hook(lambda _m, args: (act8(args[0], a.block),)))
        got = logits()
        cos = torch.nn.functional.cosine_similarity(ref, got, dim=-1).numpy()
        agree = int((got.argmax(-1) == ref_top).sum())
        print(f"| {name} | {cos.min():.5f} | {cos.mean():.5f} | {agree}/{n_pos} | {time.time() - t1:.0f} |", flush=True)
    for h in hooks:
        h.remove()


if __name__ == "__main__":
    np.set_printoptions(precision=5)
    main()
