"""Quantized graphs (`--dtype q8`, `--dtype q4`) from the exported float32 graphs, and their fidelity.

Weights only: every MatMul with a constant weight becomes `com.microsoft.MatMulNBits` (8 or 4 bits,
block 32, asymmetric), and the token-embedding Gather becomes `GatherBlockQuantized`; activations, the
KV cache and the graph interface stay float32, so the runtime feeds a quantized graph exactly like the
fp32 one. ONNX Runtime's own quantizer (`onnxruntime.quantization.MatMulNBitsQuantizer`) writes them.

File names follow transformers.js: `<graph>_quantized.onnx` (8-bit) and `<graph>_q4.onnx` (4-bit).

`accuracy_level` (how MatMulNBits computes: 0 = unset / 1 = fp32 after dequantisation, 4 = int8
activations through the AVX2/VNNI integer kernels) was chosen by measurement on the real-size OneVision
decoder (see docs/onnx-graphs.md, "Quantized graphs").

Fidelity: each quantized graph runs the export's validation inputs next to its fp32 graph in ONNX
Runtime; the report gives, per output, max |Δ| and the cosine similarity (flattened, the lowest over the
cases). A vision graph whose features fall below the dtype's cosine bound is not written (the runtime
then uses the fp32 vision graph for that dtype); the decoder is always written and its numbers reported.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path

import numpy as np

# dtype -> (bits, accuracy_level)
BITS = {"q8": 8, "q4": 4}
ACCURACY_LEVEL = {"q8": 4, "q4": 4}
BLOCK_SIZE = 32
# Asymmetric (a zero point per block): on the real-size OneVision decoder it lifts the q8 logits' cosine from
# 0.99880 to 0.99910 and q4's from 0.855 to 0.872 (symmetric vs asymmetric, same inputs).
SYMMETRIC = False
# Lowest acceptable cosine (logits / features vs fp32) per dtype: the fidelity targets.
MIN_COSINE = {"q8": 0.999, "q4": 0.99}
# Graphs that are only written when their fidelity holds (others are always written).
OPTIONAL_GRAPHS = ("vision_encoder", "video_encoder")


def quantize_file(src: Path, dst: Path, dtype: str, quantize_gather: bool) -> dict:
    """Quantizes the graph in `src` into `dst`. Returns {seconds, matmuls, gathers}."""
    import logging

    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)

    from .onnx_export import save_proto

    t0 = time.time()
    model = onnx.load(str(src), load_external_data=True)
    ops = ("MatMul", "Gather") if quantize_gather else ("MatMul",)
    q = MatMulNBitsQuantizer(model, bits=BITS[dtype], block_size=BLOCK_SIZE, is_symmetric=SYMMETRIC,
                             accuracy_level=ACCURACY_LEVEL[dtype], op_types_to_quantize=ops,
                             quant_axes=(("MatMul", 0), ("Gather", 1)))
    q.process()
    out = q.model.model
    del model, q
    gc.collect()
    counts = {"MatMulNBits": 0, "GatherBlockQuantized": 0, "MatMul": 0}
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
            "gather_block_quantized": counts["GatherBlockQuantized"], "float_matmuls_left": counts["MatMul"]}


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64).ravel()
    b = b.astype(np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0.0 or nb == 0.0:
        return 1.0 if na == nb else 0.0
    return float(a @ b / (na * nb))


def fidelity(spec, fp32_path: Path, q_path: Path, dtype: str) -> list[dict]:
    """Runs the spec's validation cases through both graphs; one row per output group."""
    from .onnx_export import _flat, _np, _session, _valid_mask

    ref_s = _session(fp32_path)
    q_s = _session(q_path)
    in_types = {i.name: i.type for i in q_s.get_inputs()}
    groups: dict[str, dict] = {}
    for label, build in spec.cases:
        import torch

        args, meta = build(torch.float32)
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
