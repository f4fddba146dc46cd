"""Would a per-token int8 decoder hold q8's bound? A rewrite and its measurement, for the record.

    python python/int8_prefill_sweep.py --export .cache/bench-models/onevision-0.5b/export \
        --out /tmp/int8tok [--exclude 4864x896,lm_head]

Every MatMul of `decoder_model_merged.onnx` with a constant [K, N] weight becomes per-row (per-token)
u8 activations (`Abs -> ReduceMax(last axis) -> Div -> Round -> +128 -> Cast`) x per-column s8 weights
through `MatMulInteger` (MLAS' u8s8 GEMM: AVX-512 VNNI / AMX), scaled back in float32; `--exclude` keeps
MatMuls of the named weight shapes (`KxN`, or `lm_head`) in float32. The rewritten graph runs a 1584-token
prefill of random token ids (through the real embed graph) and one decode step on its cache next to the
fp32 graph (and the export's q8 graph where there is one), 2 threads: times, last-position logits cosine,
top-1, and the lowest present K/V cosine. Results: docs/bench/e2e-cpu-2core.md (per-token scales reach
0.993-0.997 on the real-size OneVision-0.5B, under the 0.999 bar, so no such graph is exported).
"""
import time
import numpy as np, onnx, onnxruntime as ort
from onnx import helper, numpy_helper, TensorProto
from pathlib import Path

import argparse

_ap = argparse.ArgumentParser()
_ap.add_argument("--export", required=True, type=Path, help="an export directory (with onnx/)")
_ap.add_argument("--out", required=True, type=Path, help="where the rewritten graph is written")
_ap.add_argument("--exclude", default="", help="weight shapes kept float32: KxN,...,lm_head")
_args = _ap.parse_args()
d = _args.export / "onnx"
out = _args.out
out.mkdir(parents=True, exist_ok=True)
src = d / "decoder_model_merged.onnx"
dst = out / "decoder_int8tok.onnx"
EXCL = set(_args.exclude.split(",")) if _args.exclude else set()

def build():
    m = onnx.load(str(src), load_external_data=True)
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    opset = max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    new_nodes, quantized = [], {}
    const = [numpy_helper.from_array(np.array(1e-8, np.float32), "q_eps"),
             numpy_helper.from_array(np.array(127.0, np.float32), "q_127"),
             numpy_helper.from_array(np.array(128.0, np.float32), "q_128"),
             numpy_helper.from_array(np.array(128, np.uint8), "q_zp")]
    if opset >= 18:
        const.append(numpy_helper.from_array(np.array([-1], np.int64), "q_axes"))
    g.initializer.extend(const)
    n_done, drop = 0, set()
    for n in g.node:
        w = inits.get(n.input[1]) if n.op_type == "MatMul" and len(n.input) == 2 else None
        if w is None or len(w.dims) != 2:
            new_nodes.append(n); continue
        W = numpy_helper.to_array(w).astype(np.float32)
        K, N = W.shape
        kind = "lm_head" if N > 100000 else f"{K}x{N}"
        if kind in EXCL:
            new_nodes.append(n); continue
        x = n.input[0]
        if x not in quantized:
            p = f"{x}_tokq"
            red = (helper.make_node("ReduceMax", [p + "_abs", "q_axes"], [p + "_amax"], keepdims=1) if opset >= 18
                   else helper.make_node("ReduceMax", [p + "_abs"], [p + "_amax"], axes=[-1], keepdims=1))
            new_nodes += [helper.make_node("Abs", [x], [p + "_abs"]), red,
                          helper.make_node("Max", [p + "_amax", "q_eps"], [p + "_amaxe"]),
                          helper.make_node("Div", [p + "_amaxe", "q_127"], [p + "_scale"]),
                          helper.make_node("Div", [x, p + "_scale"], [p + "_xs"]),
                          helper.make_node("Round", [p + "_xs"], [p + "_xr"]),
                          helper.make_node("Add", [p + "_xr", "q_128"], [p + "_xu"]),
                          helper.make_node("Cast", [p + "_xu"], [p + "_q"], to=TensorProto.UINT8)]
            quantized[x] = (p + "_q", p + "_scale")
        q, sa = quantized[x]
        sw = np.maximum(np.abs(W).max(axis=0), 1e-12) / 127.0
        Wq = np.clip(np.round(W / sw), -127, 127).astype(np.int8)
        wn = w.name
        drop.add(wn)
        g.initializer.extend([numpy_helper.from_array(Wq, wn + "_s8"), numpy_helper.from_array(sw.astype(np.float32), wn + "_ws")])
        o = n.output[0]
        new_nodes += [helper.make_node("MatMulInteger", [q, wn + "_s8", "q_zp"], [o + "_i32"]),
                      helper.make_node("Cast", [o + "_i32"], [o + "_f"], to=TensorProto.FLOAT),
                      helper.make_node("Mul", [o + "_f", sa], [o + "_fa"]),
                      helper.make_node("Mul", [o + "_fa", wn + "_ws"], [o])]
        n_done += 1
    del g.node[:]
    g.node.extend(new_nodes)
    keep = [i for i in g.initializer if i.name not in drop]
    del g.initializer[:]
    g.initializer.extend(keep)
    for f in out.glob(dst.name + "*"):
        f.unlink()
    onnx.save(m, str(dst), save_as_external_data=True, location=dst.name + "_data", size_threshold=1024)
    print(f"rewrote {n_done} MatMuls (excluded {sorted(EXCL)})", flush=True)

def sess(p):
    so = ort.SessionOptions(); so.intra_op_num_threads = 2; so.inter_op_num_threads = 1
    return ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])

def cos(a, b):
    a = a.astype(np.float64).ravel(); b = b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

if __name__ == "__main__":
    t = time.time(); build(); print(f"built in {time.time()-t:.0f} s", flush=True)
    T = 1584
    ids = np.random.default_rng(0).integers(0, 151000, size=(1, T), dtype=np.int64)
    emb = sess(d / "embed_tokens.onnx").run(None, {"input_ids": ids})[0]
    feeds = {"inputs_embeds": emb, "attention_mask": np.ones((1, T), np.int64), "position_ids": np.arange(T, dtype=np.int64)[None]}
    for i in range(24):
        for kv in ("key", "value"):
            feeds[f"past_key_values.{i}.{kv}"] = np.zeros((1, 2, 0, 64), np.float32)
    ref = None
    print("| decoder | prefill s (1584 tokens) | decode step ms | logits cosine (last) | top-1 same | logits cosine (all) | min present K/V cosine |")
    print("|---|---:|---:|---:|---|---:|---:|")
    files = {"fp32": src, "int8 per-token": dst}
    q8 = d / "decoder_model_merged_quantized.onnx"
    if q8.exists():
        files["q8 (MatMulNBits)"] = q8
    for name, p in files.items():
        s = sess(p); names = [o.name for o in s.get_outputs()]
        best = 1e9
        for _ in range(2):
            t = time.perf_counter(); o = s.run(None, feeds); best = min(best, time.perf_counter() - t)
        o = dict(zip(names, o))
        # one decode step on the prefill's cache
        f2 = {"inputs_embeds": emb[:, -1:], "attention_mask": np.ones((1, T + 1), np.int64), "position_ids": np.array([[T]], np.int64)}
        for i in range(24):
            for kv in ("key", "value"):
                f2[f"past_key_values.{i}.{kv}"] = o[f"present.{i}.{kv}"]
        steps = []
        for _ in range(5):
            t = time.perf_counter(); s.run(None, f2); steps.append(time.perf_counter() - t)
        if ref is None:
            ref = o
        last = lambda x: x["logits"].reshape(-1, x["logits"].shape[-1])[-1]
        lc = cos(last(ref), last(o)); la = cos(ref["logits"], o["logits"])
        top = int(last(ref).argmax() == last(o).argmax())
        kv = min(cos(ref[k], o[k]) for k in names if k.startswith("present."))
        print(f"| {name} | {best:.2f} | {min(steps)*1e3:.0f} | {lc:.5f} | {'yes' if top else 'no'} | {la:.5f} | {kv:.5f} |", flush=True)
        del s
