"""Export GraphSpecs to ONNX files and validate them against the torch modules with ONNX Runtime."""

from __future__ import annotations

import gc
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from .graphs import GraphSpec

# File-name suffix per precision (onnx-layout.md): none = fp32.
SUFFIX = {"fp32": "", "fp16": "_fp16", "q8": "_quantized", "int8": "_int8", "q4": "_q4"}
# Quantized graphs are made from the fp32 graphs (vidlm_export/quantize.py), not exported from torch.
QUANTIZED = ("q8", "int8", "q4")
TORCH_DTYPE = {"fp32": torch.float32, "fp16": torch.float16, "q8": torch.float32, "int8": torch.float32,
               "q4": torch.float32}
# Validation tolerance: max|delta| <= atol + rtol * max|reference|, per dtype (reference = fp32 torch).
TOLERANCE = {"fp32": (1e-4, 1e-4), "fp16": (2e-2, 2e-2)}
# Graphs whose initializers exceed this total keep them in external data (<name>.onnx_data) instead of
# inside the protobuf (whose hard limit is 2 GiB). External data is what lets ONNX Runtime memory-map the
# weights instead of copying them out of a parsed protobuf, so every real-size graph uses it; tiny test
# graphs stay single files.
EXTERNAL_DATA_THRESHOLD = 32 * 1024 * 1024
# Offsets of large tensors in external data are aligned to this (64 KiB: the mmap allocation granularity
# on Windows, a multiple of the 4 KiB page elsewhere): ONNX Runtime maps aligned initializers from the file
# on CPU instead of reading them into allocated memory.
EXTERNAL_DATA_ALIGNMENT = 65536


def file_name(stem: str, dtype: str) -> str:
    return f"{stem}{SUFFIX[dtype]}.onnx"


def _flat(args) -> list:
    out = []
    for a in args:
        if isinstance(a, (list, tuple)):
            out.extend(a)
        else:
            out.append(a)
    return out


def ort_fusions(model) -> dict:
    """onnxscript's ONNX Runtime fusions on a dynamo graph (the vision towers): MultiHeadAttention,
    SkipLayerNormalization, BiasGelu. Its last attention step (MultiHeadAttention + the q/k/v MatMuls ->
    `com.microsoft.Attention` with one packed weight input) is left out: a weight that is an op input rather
    than a MatMul's is not quantized by MatMulNBits, and the q8/q4 vision graphs are made from this graph."""
    from unittest import mock

    import onnxscript.rewriter.ort_fusions._core as core

    with mock.patch.object(core, "fuse_attention", lambda model, debug=False: 0):
        _, counts = core.optimize_for_ort(model)
    return {k: v for k, v in counts.items() if v}


def save_proto(proto, path: Path, data_name: str) -> None:
    """Saves a built ModelProto the way the dynamo path saves its graphs (external data when big)."""
    import onnx_ir

    model = onnx_ir.serde.deserialize_model(proto)
    big = sum(v.const_value.nbytes for v in model.graph.initializers.values()
              if v.const_value is not None) > EXTERNAL_DATA_THRESHOLD
    if big:
        onnx_ir.save(model, path, external_data=data_name)
    else:
        onnx_ir.save(model, path)


def export_graph(spec: GraphSpec, dtype: str, out_dir: Path, exporter: str, opset: int,
                 use_builder: bool = True) -> dict:
    """Exports one graph; returns {file, external_data, seconds, builder}.

    float32 graphs with a `spec.builder` (the fused decoder) are built directly unless `use_builder` is
    off or the builder reports the model as unsupported; everything else goes through torch.onnx.export."""
    from torch.export import Dim

    path = out_dir / file_name(spec.name, dtype)
    data_name = path.name + "_data"
    for stale in (path, out_dir / data_name):
        if stale.exists():
            stale.unlink()
    t0 = time.time()
    if spec.builder is not None and use_builder and dtype == "fp32":
        from . import fused

        try:
            with torch.no_grad():
                proto = spec.builder(out_dir / data_name)
        except fused.Unsupported as e:
            print(f"[export]   fused builder: not for this model ({e}); using the exporter's graph", flush=True)
        else:
            if (out_dir / data_name).exists():
                # The builder wrote the weights to the external data file already; the proto refers to it.
                import onnx

                onnx.save_model(proto, path)
            else:
                save_proto(proto, path, data_name)
            kind = next((p.value for p in proto.metadata_props if p.key == "vidlm.decoder"), "built")
            del proto
            gc.collect()
            return {
                "file": path.name,
                "external_data": data_name if (out_dir / data_name).exists() else None,
                "seconds": round(time.time() - t0, 1),
                "builder": kind,
            }
    args = spec.sample(TORCH_DTYPE[dtype])
    fusions = None
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            dims: dict[str, Dim] = {}

            def dim(name):
                if name not in dims:
                    dims[name] = Dim(name)
                return dims[name]

            def shape_of(n):
                axes = spec.dynamic_axes.get(n, {})
                return {ax: dim(nm) for ax, nm in axes.items()} or None

            names = spec.input_names
            if spec.list_tail_after is not None:
                k = spec.list_tail_after
                ds = tuple(shape_of(n) for n in names[:k]) + (tuple(shape_of(n) for n in names[k:]),)
            else:
                ds = tuple(shape_of(n) for n in names)
            prog = torch.onnx.export(
                spec.module,
                tuple(_flat(args)),
                dynamo=True,
                opset_version=opset,
                input_names=spec.input_names,
                output_names=spec.output_names,
                dynamic_shapes=ds,
                optimize=True,
                verbose=False,
            )
            import onnx_ir

            fusions = None
            if spec.ort_fusions and dtype == "fp32":
                fusions = ort_fusions(prog.model)
            big = sum(v.const_value.nbytes for v in prog.model.graph.initializers.values()
                      if v.const_value is not None) > EXTERNAL_DATA_THRESHOLD
            save_model_ir(prog.model, path, data_name if big else None)
            del prog
        elif exporter == "torchscript":
            import onnx

            tmp = out_dir / f".{path.name}.tmp"
            tmp.mkdir(exist_ok=True)
            tmp_file = tmp / "model.onnx"
            torch.onnx.export(
                spec.module,
                tuple(_flat(args)),
                str(tmp_file),
                dynamo=False,
                opset_version=opset,
                input_names=spec.input_names,
                output_names=spec.output_names,
                dynamic_axes=spec.dynamic_axes,
                do_constant_folding=True,
            )
            import onnx_ir

            m = onnx.load(str(tmp_file))
            big = sum(len(t.raw_data) for t in m.graph.initializer) > EXTERNAL_DATA_THRESHOLD
            ir_model = onnx_ir.serde.deserialize_model(m)
            del m
            save_model_ir(ir_model, path, data_name if big else None)
            del ir_model
            for f in tmp.iterdir():
                f.unlink()
            tmp.rmdir()
        else:
            raise SystemExit(f"error: unknown exporter {exporter!r} (dynamo|torchscript)")
    gc.collect()
    return {
        "file": path.name,
        "external_data": data_name if (out_dir / data_name).exists() else None,
        "seconds": round(time.time() - t0, 1),
        "builder": f"torch.onnx.export ({exporter}, opset {opset})"
                   + (f" + onnxscript optimize_for_ort {fusions}" if exporter == "dynamo" and fusions else ""),
    }


def save_model_ir(model, path: Path, data_name: str | None) -> None:
    """Saves an onnx_ir model; with `data_name`, initializers go to that external data file with
    page-aligned offsets (see EXTERNAL_DATA_ALIGNMENT)."""
    import onnx_ir

    if data_name is None:
        onnx_ir.save(model, path)
    else:
        onnx_ir.save(model, path, external_data=data_name, alignment=EXTERNAL_DATA_ALIGNMENT)


def _session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(os.environ.get("VIDLM_ORT_THREADS", "2"))
    so.log_severity_level = 3
    # No pre-packed weight copies: validation runs each graph a few times only, and real-size graphs
    # would otherwise hold their weights twice.
    so.add_session_config_entry("session.disable_prepacking", "1")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def session_io(path: Path) -> dict:
    """Input/output names, element types and symbolic shapes as ONNX Runtime reports them."""
    s = _session(path)
    return {
        "inputs": [{"name": i.name, "type": i.type, "shape": i.shape} for i in s.get_inputs()],
        "outputs": [{"name": o.name, "type": o.type, "shape": o.shape} for o in s.get_outputs()],
    }


def _np(t: torch.Tensor, want: str | None = None):
    a = t.detach().cpu()
    if want == "tensor(float16)":
        a = a.to(torch.float16)
    elif want == "tensor(float)":
        a = a.to(torch.float32)
    return a.numpy()


def reference_outputs(spec: GraphSpec, dtype: torch.dtype) -> list:
    """Torch outputs for every validation case, with the module in its current dtype; inputs in `dtype`."""
    refs = []
    for label, build in spec.cases:
        args, meta = build(dtype)
        with torch.no_grad():
            out = spec.module(*_flat(args)) if spec.list_tail_after is None else spec.module(
                *args[: spec.list_tail_after], *args[spec.list_tail_after]
            )
        if isinstance(out, torch.Tensor):
            out = (out,)
        refs.append((label, args, meta, [o.detach().float().clone() for o in out]))
    return refs


def _valid_mask(name: str, arr: np.ndarray, meta: dict):
    """Left-padded positions of present.* hold values nobody reads; leave them out of the comparison."""
    pad = meta.get("pad")
    if not pad or not name.startswith("present."):
        return None
    m = np.ones(arr.shape, dtype=bool)
    for row, npad in pad.items():
        m[row, :, :npad, :] = False
    return m


def validate(spec: GraphSpec, path: Path, dtype: str, refs: list) -> list[dict]:
    """Runs every case through ONNX Runtime and compares with `refs`. Returns one row per output group."""
    sess = _session(path)
    in_types = {i.name: i.type for i in sess.get_inputs()}
    atol, rtol = TOLERANCE[dtype]
    rows = []
    for label, args, meta, ref in refs:
        flat = _flat(args)
        feeds = {n: _np(t, in_types.get(n)) for n, t in zip(spec.input_names, flat)}
        outs = sess.run(spec.output_names, feeds)
        groups: dict[str, dict] = {}
        for name, got, want in zip(spec.output_names, outs, ref):
            w = want.numpy()
            g = got.astype(np.float32)
            if g.shape != w.shape:
                raise SystemExit(f"error: {path.name} [{label}] output {name}: shape {g.shape} != torch {w.shape}")
            d = np.abs(g - w)
            m = _valid_mask(name, d, meta)
            if m is not None:
                d = d[m]
                w = w[m]
            delta = float(np.nanmax(d)) if d.size else 0.0
            if np.isnan(d).any():
                delta = float("nan")
            scale = float(np.max(np.abs(w))) if w.size else 0.0
            key = name
            if name.startswith("present."):
                key = "present.*." + name.rsplit(".", 1)[1]
            grp = groups.setdefault(key, {"max_abs_diff": 0.0, "ref_max_abs": 0.0, "count": 0})
            grp["max_abs_diff"] = max(grp["max_abs_diff"], delta) if not np.isnan(delta) else float("nan")
            grp["ref_max_abs"] = max(grp["ref_max_abs"], scale)
            grp["count"] += 1
        for key, grp in groups.items():
            tol = atol + rtol * grp["ref_max_abs"]
            ok = bool(grp["max_abs_diff"] <= tol)  # NaN fails
            rows.append({
                "graph": path.name,
                "case": label,
                "output": key if grp["count"] == 1 else f"{key} ({grp['count']} tensors)",
                "max_abs_diff": grp["max_abs_diff"],
                "ref_max_abs": grp["ref_max_abs"],
                "tolerance": tol,
                "ok": ok,
            })
    del sess
    return rows


def print_table(rows: list[dict]) -> str:
    head = f"| {'graph':<34} | {'case':<28} | {'output':<28} | {'max abs Δ':>10} | {'max abs ref':>11} | {'tolerance':>10} | ok |"
    sep = "|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|"
    lines = [head, sep]
    for r in rows:
        lines.append(
            f"| {r['graph']:<34} | {r['case']:<28} | {r['output']:<28} | {r['max_abs_diff']:>10.3e} | "
            f"{r['ref_max_abs']:>11.3e} | {r['tolerance']:>10.3e} | {'ok' if r['ok'] else 'FAIL'} |"
        )
    text = "\n".join(lines)
    print(text, flush=True)
    return text
