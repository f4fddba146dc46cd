"""Quantized graphs (`--dtype q8`, `--dtype q4`) from the exported float32 graphs, and their fidelity.

Weights only: every MatMul with a constant weight becomes `com.microsoft.MatMulNBits` (block 32,
asymmetric); activations, the KV cache and the graph interface stay float32, so the runtime feeds a
quantized graph exactly like the fp32 one. ONNX Runtime's own quantizer
(`onnxruntime.quantization.MatMulNBitsQuantizer`) writes them.

The mix per dtype (`MIX`): q8 = every MatMul at 8 bits. q4 = every MatMul at 4 bits except the output
head (`lm_head`, the MatMul that writes `logits`), which stays at 8 bits — as published 4-bit formats keep
their output tensor at higher precision (llama.cpp's Q4_0 keeps it at Q6_K, ORT-GenAI's builder offers
`matmul_mixed_precision=last_matmul:int8`). The token embeddings stay float32 at every dtype: ONNX Runtime's
quantizer turns a Gather into a 4-bit `GatherBlockQuantized` only, and a plain float32 Gather is what the
runtime serves from the file without a session (`EmbeddingTable`: exact, and nothing resident), so no
`embed_tokens_quantized/_q4` graph is written and those dtypes use `embed_tokens.onnx` through the
fallback chain (the manifest's `dtype_fallback`).

File names follow transformers.js: `<graph>_quantized.onnx` (8-bit) and `<graph>_q4.onnx` (4-bit).

`accuracy_level` (how MatMulNBits computes: 0 = unset / 1 = fp32 after dequantisation, 4 = int8
activations through the AVX2/VNNI integer kernels) was chosen by measurement on the real-size OneVision
decoder (see docs/onnx-graphs.md, "Quantized graphs").

Fidelity: each quantized graph runs the export's validation inputs next to its fp32 graph in ONNX
Runtime; the report gives, per output, max |Δ| and the cosine similarity (flattened, the lowest over the
cases). A vision graph whose features fall below the dtype's cosine bound is not written (the runtime
then uses the next precision of the chain for that dtype: q4 → q8 → fp32); the decoder is always written
and its numbers reported. The end-to-end measure (teacher-forced top-1 agreement and KL divergence with
fp32 over 64 positions of real pipeline inputs) is `agreement.py`.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path

import numpy as np

# dtype -> (bits, accuracy_level)
BITS = {"q8": 8, "int8": 8, "q4": 4}
ACCURACY_LEVEL = {"q8": 4, "int8": 0, "q4": 4}
BLOCK_SIZE = 32
# Asymmetric (a zero point per block): on the real-size OneVision decoder it lifts the q8 logits' cosine from
# 0.99880 to 0.99910 and q4's from 0.855 to 0.872 (symmetric vs asymmetric, same inputs).
SYMMETRIC = False
# Bits of the output head (`lm_head`, the MatMul writing `logits`) per dtype; the other MatMuls get BITS.
HEAD_BITS = {"q8": 8, "int8": 8, "q4": 8}
# How the 4-bit blocks are found: "rtn" (round to nearest, ONNX Runtime's default quantizer) or "k_quant"
# (its k-quant search of scales); chosen by measurement (docs/onnx-graphs.md, "Quantized graphs").
ALGORITHM = {"q8": "rtn", "int8": "dynamic", "q4": "rtn"}
# Lowest acceptable cosine (logits / features vs fp32) per dtype: the fidelity targets.
MIN_COSINE = {"q8": 0.999, "int8": 0.999, "q4": 0.99}
# Graphs that are only written when their fidelity holds (others are always written).
OPTIONAL_GRAPHS = ("vision_encoder", "video_encoder")
# Graphs never quantized: the float32 gather is served from its file (see above).
FLOAT_GRAPHS = ("embed_tokens",)


def mix(dtype: str) -> dict:
    """The manifest's description of a dtype's quantization."""
    if dtype == "int8":
        return {"bits": 8, "activations": "int8, quantized per call (u8, one scale)", "weights":
                "MatMul -> DynamicQuantizeLinear + MatMulInteger (s8, per output channel; fused by ONNX Runtime into "
                "DynamicQuantizeMatMul); embed_tokens stays float32", "min_cosine": MIN_COSINE[dtype]}
    return {"bits": BITS[dtype], "lm_head_bits": HEAD_BITS[dtype], "block_size": BLOCK_SIZE,
            "symmetric": SYMMETRIC, "accuracy_level": ACCURACY_LEVEL[dtype], "algorithm": ALGORITHM[dtype],
            "min_cosine": MIN_COSINE[dtype],
            "weights": f"MatMul -> MatMulNBits ({BITS[dtype]} bits; lm_head {HEAD_BITS[dtype]} bits); "
                       "embed_tokens stays float32 (embed_tokens.onnx, through dtype_fallback)"}


def _head_nodes(model) -> list[str]:
    """The MatMul(s) that write the graph output `logits` (the output head)."""
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and "logits" in n.output]


def _quantizer(model, bits: int, block: int, algorithm: str, accuracy_level: int, exclude=(), include=None):
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        KQuantWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    kw = dict(bits=bits, block_size=block, is_symmetric=SYMMETRIC, accuracy_level=accuracy_level,
              nodes_to_exclude=list(exclude), nodes_to_include=include, op_types_to_quantize=("MatMul",),
              quant_axes=(("MatMul", 0),))
    if algorithm == "k_quant":
        kw["algo_config"] = KQuantWeightOnlyQuantConfig(op_types_to_quantize=("MatMul",))
    elif algorithm != "rtn":
        raise ValueError(f"unknown quantization algorithm {algorithm!r} (rtn, k_quant)")
    return MatMulNBitsQuantizer(model, **kw)


def quantize_file(src: Path, dst: Path, dtype: str, bits: int | None = None, head_bits: int | None = None,
                  block: int | None = None, algorithm: str | None = None,
                  accuracy_level: int | None = None) -> dict:
    """Quantizes the graph in `src` into `dst` with `dtype`'s mix (arguments override it, for sweeps).
    Returns {seconds, matmul_nbits, float_matmuls_left, head_bits}."""
    import logging

    import onnx

    for name in ("onnxruntime.quantization.matmul_nbits_quantizer", "onnxruntime.quantization.neural_compressor"):
        logging.getLogger(name).setLevel(logging.WARNING)

    from .onnx_export import save_proto

    bits = bits or BITS[dtype]
    head_bits = head_bits or HEAD_BITS[dtype]
    block = block or BLOCK_SIZE
    algorithm = algorithm or ALGORITHM[dtype]
    level = ACCURACY_LEVEL[dtype] if accuracy_level is None else accuracy_level
    t0 = time.time()
    model = onnx.load(str(src), load_external_data=True)
    head = _head_nodes(model) if head_bits != bits else []
    q = _quantizer(model, bits, block, algorithm, level, exclude=head)
    q.process()
    out = q.model.model
    del model, q
    gc.collect()
    if head:
        # The output head in a second pass at its own width (the only constant-weight MatMul left).
        q = _quantizer(out, head_bits, block, "rtn", level, include=head)
        q.process()
        out = q.model.model
        del q
        gc.collect()
    counts = {"MatMulNBits": 0, "MatMul": 0}
    for n in out.graph.node:
        if n.op_type in counts:
            counts[n.op_type] += 1
    for stale in (dst, dst.with_name(dst.name + "_data")):
        if stale.exists():
            stale.unlink()
    save_proto(out, dst, dst.name + "_data")
    del out
    gc.collect()
    return {"seconds": round(time.time() - t0, 1), "matmul_nbits": counts["MatMulNBits"],
            "float_matmuls_left": counts["MatMul"], "head_bits": head_bits if head else None,
            "bits": bits, "block_size": block, "algorithm": algorithm}


def quantize_int8_file(src: Path, dst: Path) -> dict:
    """`int8` (`_int8`, transformers.js' name): int8 weights and int8 activations quantized at run time.
    ONNX Runtime's dynamic quantizer turns every MatMul with a constant weight into DynamicQuantizeLinear +
    MatMulInteger (+ scale), which ONNX Runtime fuses at load into `DynamicQuantizeMatMul`: u8 activations
    (one scale per call) × s8 weights (one scale per output channel) through MLAS' integer GEMM, the
    AVX-512 VNNI / AMX kernels where the CPU has them. Unlike MatMulNBits (which dequantizes its weights
    to float32 for many rows), the arithmetic itself is int8, so vision and prefill run on the integer units.
    Without VNNI, u8×s8 products can saturate the AVX2 kernels' 16-bit sums: the runtime picks this dtype
    only where the CPU has VNNI or AMX (`vidlm_ort::cpu`)."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    import onnx

    logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)
    t0 = time.time()
    for stale in (dst, dst.with_name(dst.name + "_data")):
        if stale.exists():
            stale.unlink()
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["MatMul"], use_external_data_format=True,
                     # the fused decoder's com.microsoft ops have no ONNX shape inference: their outputs are float
                     extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT})
    m = onnx.load(str(dst), load_external_data=False)
    counts = {"MatMulInteger": 0, "MatMul": 0}
    for n in m.graph.node:
        if n.op_type in counts:
            counts[n.op_type] += 1
    # quantize_dynamic writes its external data under a name of its own; keep the layout's name.
    from .onnx_export import save_proto

    m = onnx.load(str(dst), load_external_data=True)
    for f in dst.parent.iterdir():
        if f.name.startswith(dst.stem) and f.name != dst.name and not f.name.endswith(".onnx"):
            f.unlink()
    dst.unlink()
    save_proto(m, dst, dst.name + "_data")
    return {"seconds": round(time.time() - t0, 1), "matmul_integer": counts["MatMulInteger"],
            "float_matmuls_left": counts["MatMul"]}


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64).ravel()
    b = b.astype(np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0.0 or nb == 0.0:
        return 1.0 if na == nb else 0.0
    return float(a @ b / (na * nb))


def fidelity(spec, fp32_path: Path, q_path: Path, dtype: str, refs: list | None = None) -> list[dict]:
    """Runs the spec's validation cases through both graphs; one row per output group. `refs`: the
    cases' inputs as `reference_outputs` made them (float32), used instead of building them again."""
    import torch

    from .onnx_export import _flat, _np, _session, _valid_mask

    ref_s = _session(fp32_path)
    q_s = _session(q_path)
    in_types = {i.name: i.type for i in q_s.get_inputs()}
    groups: dict[str, dict] = {}
    cases = ([(label, args, meta) for label, args, meta, _ in refs] if refs is not None
             else [(label, *build(torch.float32)) for label, build in spec.cases])
    for label, args, meta in cases:
        feeds = {n: _np(t, in_types.get(n)) for n, t in zip(spec.input_names, _flat(args))}
        want = ref_s.run(spec.output_names, feeds)
        got = q_s.run(spec.output_names, feeds)
        for name, w, g in zip(spec.output_names, want, got):
            key = "present.*." + name.rsplit(".", 1)[1] if name.startswith("present.") else name
            m = _valid_mask(name, w, meta)
            w = w.astype(np.float32)
            g = g.astype(np.float32)
            if m is not None:
                w, g = w[m], g[m]
            grp = groups.setdefault(key, {"max_abs_diff": 0.0, "cosine": 1.0, "ref_max_abs": 0.0})
            if w.size:
                grp["max_abs_diff"] = max(grp["max_abs_diff"], float(np.abs(g - w).max()))
                grp["ref_max_abs"] = max(grp["ref_max_abs"], float(np.abs(w).max()))
                if key.startswith("present."):
                    grp["cosine"] = min(grp["cosine"], _cosine(w, g))
                else:
                    # per row: a batch's rows are separate requests
                    for r in range(w.shape[0]):
                        grp["cosine"] = min(grp["cosine"], _cosine(w[r], g[r]))
    del ref_s, q_s
    rows = []
    for key, grp in groups.items():
        rows.append({"graph": q_path.name, "dtype": dtype, "reference": fp32_path.name, "output": key,
                     "cases": len(spec.cases), **grp, "min_cosine": MIN_COSINE[dtype],
                     "ok": bool(grp["cosine"] >= MIN_COSINE[dtype])})
    return rows


def print_fidelity(rows: list[dict]) -> str:
    head = (f"| {'graph':<36} | {'vs':<26} | {'output':<18} | {'max abs Δ':>10} | {'max abs ref':>11} | "
            f"{'cosine (min)':>12} | bound |")
    lines = [head, "|" + "|".join("-" * len(c) for c in head.split("|")[1:-1]) + "|"]
    for r in rows:
        lines.append(f"| {r['graph']:<36} | {r['reference']:<26} | {r['output']:<18} | {r['max_abs_diff']:>10.3e} | "
                     f"{r['ref_max_abs']:>11.3e} | {r['cosine']:>12.6f} | {'ok' if r['ok'] else 'BELOW'} {r['min_cosine']} |")
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def main(argv=None) -> int:
    """`python -m vidlm_export.quantize --src onnx/decoder_model_merged.onnx --dst onnx/x.onnx --dtype q4
    [--head-bits 4] [--block 16] [--algorithm k_quant]`: one graph with a variant of a dtype's mix, for
    sweeps (measure it with `python -m vidlm_export.agreement --decoder LABEL=x.onnx`)."""
    import argparse
    import json

    ap = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    ap.add_argument("--src", required=True, type=Path)
    ap.add_argument("--dst", required=True, type=Path)
    ap.add_argument("--dtype", default="q4", choices=sorted(BITS))
    ap.add_argument("--bits", type=int)
    ap.add_argument("--head-bits", type=int)
    ap.add_argument("--block", type=int)
    ap.add_argument("--algorithm", choices=("rtn", "k_quant"))
    ap.add_argument("--accuracy-level", type=int)
    a = ap.parse_args(argv)
    if a.dtype == "int8":
        info = quantize_int8_file(a.src, a.dst)
    else:
        info = quantize_file(a.src, a.dst, a.dtype, bits=a.bits, head_bits=a.head_bits, block=a.block,
                             algorithm=a.algorithm, accuracy_level=a.accuracy_level)
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
