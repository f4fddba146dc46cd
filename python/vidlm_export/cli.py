"""`python python/export.py --model <dir|hub id> --out <dir>`: the body of `cargo xtask export`."""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import shutil
import sys
import time
from pathlib import Path

import torch

from . import families
from .graphs import build_specs
from . import quantize
from .onnx_export import (
    QUANTIZED,
    SUFFIX,
    TORCH_DTYPE,
    TOLERANCE,
    export_graph,
    file_name,
    print_table,
    reference_outputs,
    session_io,
    validate,
)

MANIFEST = "vidlm_manifest.json"
NEWLINE_FILE = "image_newline.safetensors"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".onnx_data")
# Files the vidlm runtime reads (besides onnx/); missing ones are reported in the manifest.
RUNTIME_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json",
                 "preprocessor_config.json")
TEMPLATE_FILES = ("chat_template.json", "chat_template.jinja")


# The fallback chain a dtype's graphs follow when the export does not hold them at that dtype (the
# runtime's `Precision::fallback`, crates/model/src/precision.rs): q4 -> q8 -> fp32, int8 -> q8 -> fp32,
# q4f16 -> fp16 -> fp32.
FALLBACK = {"q4": "q8", "int8": "q8", "q8": "fp32", "q4f16": "fp16", "fp16": "fp32"}
VISION_GRAPHS = ("vision_encoder", "video_encoder")


class ExportError(SystemExit):
    pass


def chain(dtype: str) -> list[str]:
    out = [dtype]
    while out[-1] in FALLBACK:
        out.append(FALLBACK[out[-1]])
    return out


def dtype_fallback(written: set[tuple[str, str]]) -> dict:
    """Per dtype some graph was written at: the precision each graph runs at when that dtype is asked for
    (the nearest written one along the chain). The vision towers move together: a dtype serves them only
    where every vision graph of the export exists at it, as the runtime resolves them."""
    graphs = sorted({g for g, _ in written})
    vision = [g for g in graphs if g in VISION_GRAPHS]
    out = {}
    for d in sorted({d for _, d in written}):
        entry = {}
        for g in graphs:
            group = vision if g in VISION_GRAPHS else [g]
            used = next((c for c in chain(d) if all((x, c) in written for x in group)), None)
            if used is not None:
                entry[g] = used
        out[d] = entry
    return out


def fallback_line(fallback: dict) -> str:
    """`q4: vision_encoder q8, video_encoder q8` for each dtype where a graph falls back."""
    parts = []
    for d, m in fallback.items():
        moved = [f"{g} {u}" for g, u in m.items() if u != d]
        if moved:
            parts.append(f"{d}: {', '.join(moved)}")
    return "; ".join(parts)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024


def resolve_model(model: str) -> Path:
    p = Path(model)
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ExportError(f"error: {p} is a directory but has no config.json (not a Hugging Face checkpoint)")
        return p
    if p.exists():
        raise ExportError(f"error: {p} is a file; --model takes a checkpoint directory or a hub id")
    looks_like_path = model.startswith((".", "/", "~")) or model.count("/") > 1
    if looks_like_path:
        raise ExportError(f"error: no such directory: {model}")
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(repo_id=model, allow_patterns=["*.json", "*.jinja", "*.txt", "*.model",
                                                                  "*.safetensors", "*.tiktoken"])
    except Exception as e:  # network errors, 404s, gated repos, offline mode
        raise ExportError(
            f"error: could not fetch {model!r} from the Hugging Face Hub ({type(e).__name__}: {e}).\n"
            f"       vidlm looks in the normal HF cache (HF_HOME / HF_HUB_CACHE) and downloads otherwise.\n"
            f"       Offline? Download the checkpoint elsewhere and pass its local directory: --model /path/to/dir"
        )
    return Path(local)


def copy_runtime_files(src: Path, out: Path) -> tuple[list[str], list[str]]:
    copied = []
    for f in sorted(src.iterdir()):
        if not f.is_file() or f.name.endswith(WEIGHT_SUFFIXES) or f.name.endswith(".index.json"):
            continue
        if f.suffix not in (".json", ".jinja", ".txt", ".model", ".tiktoken", ".md"):
            continue
        if f.name == MANIFEST:
            continue
        if f.resolve() != (out / f.name).resolve():
            shutil.copy2(f, out / f.name)
        copied.append(f.name)
    missing = [n for n in RUNTIME_FILES if n not in copied]
    if not any(t in copied for t in TEMPLATE_FILES):
        tc = src / "tokenizer_config.json"
        has_tpl = tc.is_file() and "chat_template" in json.loads(tc.read_text())
        if not has_tpl:
            missing.append("chat_template.json|chat_template.jinja")
    if not (src / "video_preprocessor_config.json").is_file() and not (src / "processor_config.json").is_file():
        pass  # IL has no video processor; nothing to report
    return copied, missing


def versions(exporter: str, opset: int) -> dict:
    import onnx
    import onnxruntime
    import transformers

    v = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "exporter": "torch.onnx.export(dynamo=True)" if exporter == "dynamo" else "torch.onnx.export(dynamo=False) (TorchScript)",
        "opset": opset,
    }
    try:
        import onnxscript

        v["onnxscript"] = onnxscript.__version__
    except Exception:
        pass
    return v


def save_image_newline(model, onnx_dir: Path) -> str | None:
    nl = getattr(model.model, "image_newline", None)
    if nl is None:
        return None
    from safetensors.torch import save_file

    save_file({"image_newline": nl.detach().float().contiguous().clone()}, str(onnx_dir / NEWLINE_FILE))
    return NEWLINE_FILE


def needs_low_memory(model) -> bool:
    """Whether the module's weights and an ONNX Runtime session of its largest graph (about the language
    model's weights again) would not fit in the memory available now (Linux's MemAvailable; False where
    it cannot be read). VIDLM_EXPORT_LOW_MEMORY=1 / 0 forces the answer.

    MemAvailable counts the weights safetensors maps from the checkpoint (page cache) as reclaimable,
    and they are: validation runs ONNX Runtime sessions only (the references are computed before), so
    the kernel may drop those pages and read them back if a later step touches the module. A real-size
    Qwen2.5-VL-3B export on 24 GB keeps the module this way (peak 17.5 GB through its fp32 graphs).
    Weights held in anonymous memory (converted at load, e.g. fp16 to fp32) are already excluded."""
    forced = os.environ.get("VIDLM_EXPORT_LOW_MEMORY")
    if forced in ("0", "1"):
        return forced == "1"
    try:
        avail = next(int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                     if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return False
    lm = sum(p.numel() * p.element_size() for p in model.model.language_model.parameters())
    # The session must fit beside the module's resident (non-reclaimable) memory, with a margin.
    return 1.25 * lm > avail


def load_model(src: Path, load_dtype: torch.dtype):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(src)
    fam = families.family_of(config)
    cls = families.model_class(fam)
    model = cls.from_pretrained(src, dtype=load_dtype, attn_implementation="sdpa")
    model.eval()
    return model, fam


def run_export(model_arg: str, out: Path, dtypes: list[str], skip_validate: bool, exporter: str, opset: int,
               graphs_filter: list[str] | None = None, quiet: bool = False, decoder: str = "fused",
               skip_agreement: bool = False) -> dict:
    t_start = time.time()
    src = resolve_model(model_arg)
    out.mkdir(parents=True, exist_ok=True)
    onnx_dir = out / "onnx"
    onnx_dir.mkdir(exist_ok=True)

    # fp16-only exports load the checkpoint in fp16 (halves the RAM: the path for 7B models).
    load_dtype = torch.float16 if dtypes == ["fp16"] else torch.float32
    dtypes = sorted(dtypes, key=lambda d: d != "fp32")  # fp32 first, while the module is still fp32
    print(f"[export] loading {src} ({'fp32' if load_dtype == torch.float32 else 'fp16'})", flush=True)
    model, fam = load_model(src, load_dtype)
    print(f"[export] family: {fam.name} ({fam.model_class})", flush=True)
    specs = build_specs(model, fam)
    if graphs_filter:
        specs = [s for s in specs if s.name in graphs_filter]

    refs = {}
    if not skip_validate and any(d not in QUANTIZED for d in dtypes):
        # References come from the module as loaded (fp32 unless this is an fp16-only export).
        # Quantized graphs are compared with their fp32 graph (fidelity), not with the module.
        for s in specs:
            refs[s.name] = reference_outputs(s, load_dtype)

    copied, missing = copy_runtime_files(src, out)
    newline = save_image_newline(model, onnx_dir)

    manifest_path = onnx_dir / MANIFEST
    old = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    graph_entries = {g["file"]: g for g in old.get("graphs", [])}
    val_rows_all = [r for r in old.get("validation", {}).get("rows", []) if r["graph"] not in
                    {file_name(s.name, d) for s in specs for d in dtypes}]

    failed = []
    fidelity_rows = [r for r in old.get("fidelity", []) if r["graph"] not in
                     {file_name(s.name, d) for s in specs for d in dtypes}]

    def validate_pending(pending: list, dtype: str) -> None:
        """Validates the written graphs against their references and records the rows."""
        nonlocal val_rows_all, failed
        for vs, vfile in pending:
            rows = validate(vs, onnx_dir / vfile, dtype, refs[vs.name])
            val_rows_all = [r for r in val_rows_all if r["graph"] != vfile] + rows
            failed += [r for r in rows if not r["ok"]]
            gc.collect()

    # Where the module and a graph's ONNX Runtime session would not fit in memory together (a real-size
    # Qwen2.5-VL-3B: 15 GB of fp32 weights twice), the graphs are validated after the module's weights
    # are released; the references were computed above, and nothing after validation needs the module
    # (a later float dtype reloads it).
    low_memory = needs_low_memory(model)
    fam_cfg = model.config
    released = False
    for dtype in dtypes:
        if dtype in QUANTIZED:
            fidelity_rows += quantize_graphs(specs, dtype, onnx_dir, graph_entries, refs)
            continue
        if released:
            model, _ = load_model(src, load_dtype)
            specs = [s for s in build_specs(model, fam) if not graphs_filter or s.name in graphs_filter]
            released = False
        tdt = TORCH_DTYPE[dtype]
        if next(model.parameters()).dtype != tdt:
            model.to(tdt)
        pending = []
        for s in specs:
            print(f"[export] {file_name(s.name, dtype)} ...", flush=True)
            info = export_graph(s, dtype, onnx_dir, exporter, opset, use_builder=decoder == "fused")
            io = session_io(onnx_dir / info["file"])
            entry = {
                "name": s.name,
                "dtype": dtype,
                "file": info["file"],
                "external_data": info["external_data"],
                "inputs": io["inputs"],
                "outputs": io["outputs"],
                "description": s.doc,
                "export_seconds": info["seconds"],
                "built_by": info["builder"],
            }
            graph_entries[info["file"]] = entry
            print(f"[export]   done in {info['seconds']} s; peak RSS so far {peak_rss_gb():.2f} GB", flush=True)
            if not skip_validate:
                pending.append((s, info["file"]))
            if not low_memory:
                validate_pending(pending, dtype)
                pending = []
            gc.collect()
        if pending:
            print("[export] low memory: releasing the module's weights before validating "
                  f"(peak RSS so far {peak_rss_gb():.2f} GB)", flush=True)
            model.to("meta")
            released = True
            gc.collect()
            validate_pending(pending, dtype)

    table = None
    if not skip_validate and any(d not in QUANTIZED for d in dtypes):
        print("\n[export] validation: ONNX Runtime (CPU) vs PyTorch "
              f"({'fp32' if load_dtype == torch.float32 else 'fp16'} module), random inputs; "
              "tolerance = atol + rtol*max|ref|, " +
              ", ".join(f"{d}: atol {TOLERANCE[d][0]:g} rtol {TOLERANCE[d][1]:g}" for d in dtypes if d in TOLERANCE),
              flush=True)
        table = print_table([r for r in val_rows_all if any(r["graph"] == file_name(s.name, d)
                                                             for s in specs for d in dtypes)])
    if any(d in QUANTIZED for d in dtypes):
        print("\n[export] fidelity of the quantized graphs: ONNX Runtime, quantized vs fp32 graph, the validation "
              "inputs; cosine = lowest over cases and batch rows", flush=True)
        quantize.print_fidelity([r for r in fidelity_rows if any(r["graph"] == file_name(s.name, d)
                                                                 for s in specs for d in dtypes)])

    written = {(g["name"], g["dtype"]) for g in graph_entries.values() if (onnx_dir / g["file"]).is_file()}
    fallback = dtype_fallback(written)
    line = fallback_line(fallback)
    print(f"[export] dtype fallback (graphs a dtype runs at another precision): {line or 'none'}", flush=True)

    agreement = {k: v for k, v in old.get("agreement", {}).items() if k not in dtypes}
    manifest = {
        "format": "vidlm-onnx/1",
        "family": fam.model_type,
        "family_name": fam.name,
        "model_class": fam.model_class,
        "source": str(model_arg),
        "versions": versions(exporter, opset),
        "precision_suffixes": SUFFIX,
        "token_ids": families.token_ids(fam_cfg),
        "vision": vision_manifest(fam_cfg),
        "logits": "last position only: logits[batch, 1, vocab] for every call (prefill and decode)",
        "graphs": sorted(graph_entries.values(), key=lambda g: (g["dtype"], g["name"])),
        "dtype_fallback": fallback,
        "image_newline": newline,
        "host_side": list(fam.host_side) + [
            "embed_tokens(input_ids) -> inputs_embeds; image/video features overwrite the placeholder rows "
            "(prefill only), then decoder_model_merged.",
            ("position_ids: see the family's lines above (3 rows, M-RoPE)" if fam.mrope
             else "position_ids = cumsum(attention_mask) - 1, set to 1 where attention_mask == 0 (left padding)."),
            "First step: every past_key_values.* has past length 0; afterwards present.* -> past_key_values.*.",
        ],
        "quantization": {d: quantize.mix(d) for d in QUANTIZED},
        "fidelity": fidelity_rows,
        "agreement": agreement,
        "copied_files": copied,
        "missing_runtime_files": missing,
        "validation": {
            "skipped": skip_validate,
            "reference": "torch fp32 module" if load_dtype == torch.float32 else "torch fp16 module",
            "tolerance": {d: {"atol": TOLERANCE[d][0], "rtol": TOLERANCE[d][1]} for d in TOLERANCE},
            "rows": val_rows_all,
        },
        "export": {
            "seconds": round(time.time() - t_start, 1),
            "peak_rss_gb": round(peak_rss_gb(), 2),
            "host": platform.machine(),
        },
    }
    manifest_path.write_text(json.dumps(manifest, indent=2, default=float) + "\n")
    measured = [d for d in dtypes if d != "fp32" and (onnx_dir / file_name("decoder_model_merged", d)).is_file()]
    if measured and not skip_agreement and ("decoder_model_merged", "fp32") in written:
        # llama.cpp's measures beside cosine: teacher-forced top-1 agreement and mean KL vs fp32 over 64
        # positions of real pipeline inputs, each dtype through the graphs it runs at (fallback included).
        from . import agreement as agree

        print("\n[export] agreement with fp32 (teacher-forced, real pipeline inputs):", flush=True)
        try:
            if not released and next(model.parameters()).dtype != torch.float32:
                model.to(torch.float32)
            # A released module is reloaded by `measure` where it needs one (the Qwen replays read the config).
            rows = agree.measure(out, src, measured, model=None if released else model)
            agree.print_rows(rows)
            agreement.update({r["dtype"]: r for r in rows})
        except Exception as e:  # reported, never hidden: the manifest says it was not measured and why
            print(f"[export] warning: agreement not measured ({type(e).__name__}: {e})", flush=True)
            agreement.update({d: {"error": f"{type(e).__name__}: {e}"} for d in measured})
        manifest["agreement"] = agreement
        manifest_path.write_text(json.dumps(manifest, indent=2, default=float) + "\n")

    if missing:
        print(f"[export] warning: the source has no {', '.join(missing)}; the vidlm runtime needs them", flush=True)
    print(f"[export] wrote {out} in {manifest['export']['seconds']} s, peak RSS {manifest['export']['peak_rss_gb']} GB",
          flush=True)
    del model
    gc.collect()
    if failed:
        raise ExportError(
            "error: validation FAILED for "
            + ", ".join(sorted({f"{r['graph']}:{r['output']}" for r in failed}))
            + " (see the table above)"
        )
    return manifest


def vision_manifest(cfg) -> dict:
    v = cfg.vision_config
    if families.uses_mrope(cfg.model_type):
        out = {k: getattr(v, k) for k in ("patch_size", "temporal_patch_size", "spatial_merge_size", "hidden_size",
                                          "num_heads", "window_size", "fullatt_block_indexes", "tokens_per_second",
                                          "num_position_embeddings", "deepstack_visual_indexes") if hasattr(v, k)}
        out["rope_theta"] = float((getattr(v, "rope_parameters", None) or {}).get("rope_theta", 10000.0))
        out["mrope_section"] = cfg.text_config.rope_parameters.get("mrope_section")
        out["mrope_interleaved"] = cfg.model_type == "qwen3_vl"
        out["contract"] = "docs/onnx-graphs.md: Qwen2.5-VL and Qwen3-VL"
        return out
    return {
        "image_size": int(v.image_size),
        "patch_size": int(v.patch_size),
        "vision_feature_layer": cfg.vision_feature_layer,
        "vision_feature_select_strategy": cfg.vision_feature_select_strategy,
    }


def quantize_graphs(specs, dtype: str, onnx_dir: Path, graph_entries: dict, refs: dict | None = None) -> list[dict]:
    """q8/q4 graphs from the fp32 graphs of this directory; returns the fidelity rows (on the validation
    inputs of `refs` where given: they need no module)."""
    rows = []
    for s in specs:
        if s.name in quantize.FLOAT_GRAPHS:
            # Stays float32 at every dtype (quantize.py): no copy is written; `dtype_fallback` sends this
            # dtype to the fp32 graph. A stale quantized copy from an older export is removed.
            for f in (onnx_dir / file_name(s.name, dtype), onnx_dir / (file_name(s.name, dtype) + "_data")):
                if f.exists():
                    f.unlink()
            graph_entries.pop(file_name(s.name, dtype), None)
            continue
        src = onnx_dir / file_name(s.name, "fp32")
        if not src.is_file():
            raise ExportError(f"error: --dtype {dtype} is made from the fp32 graph, and {src} does not exist "
                              f"(export --dtype fp32,{dtype})")
        dst = onnx_dir / file_name(s.name, dtype)
        print(f"[export] {dst.name} (from {src.name}) ...", flush=True)
        if dtype == "int8":
            info = quantize.quantize_int8_file(src, dst)
            info["matmul_nbits"], info["head_bits"] = 0, None
        else:
            info = quantize.quantize_file(src, dst, dtype)
        head = f", lm_head {info['head_bits']} bits" if info["head_bits"] else ""
        fid = quantize.fidelity(s, src, dst, dtype, (refs or {}).get(s.name))
        rows += fid
        held = all(r["ok"] for r in fid)
        # int8 serves only where it holds its bound (graphs that miss it run at q8 instead, through the chain).
        if (s.name in quantize.OPTIONAL_GRAPHS or dtype == "int8") and not held:
            for f in (dst, dst.with_name(dst.name + "_data")):
                if f.exists():
                    f.unlink()
            graph_entries.pop(dst.name, None)
            print(f"[export]   {dst.name}: cosine below {quantize.MIN_COSINE[dtype]}: not written ({dtype} uses the "
                  f"next precision of its chain here: {' -> '.join(chain(dtype)[1:])})", flush=True)
            for r in fid:
                r["written"] = False
            continue
        io = session_io(dst)
        graph_entries[dst.name] = {
            "name": s.name,
            "dtype": dtype,
            "file": dst.name,
            "external_data": dst.name + "_data" if (onnx_dir / (dst.name + "_data")).exists() else None,
            "inputs": io["inputs"],
            "outputs": io["outputs"],
            "description": s.doc,
            "export_seconds": info["seconds"],
            "built_by": "onnxruntime quantize_dynamic (int8 weights per channel, int8 activations per call) from "
                        + src.name if dtype == "int8" else
                        f"onnxruntime MatMulNBitsQuantizer ({quantize.BITS[dtype]} bits{head}, block "
                        f"{quantize.BLOCK_SIZE}, {'symmetric' if quantize.SYMMETRIC else 'asymmetric'}, "
                        f"{quantize.ALGORITHM[dtype]}, accuracy_level {quantize.ACCURACY_LEVEL[dtype]}) from {src.name}",
            "quantized_ops": {k: v for k, v in info.items() if k != "seconds"},
        }
        ops = (f"{info['matmul_integer']} MatMulInteger" if dtype == "int8"
               else f"{info['matmul_nbits']} MatMulNBits{head}")
        print(f"[export]   done in {info['seconds']} s ({ops}); "
              f"peak RSS so far {peak_rss_gb():.2f} GB", flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="cargo xtask export", description=__doc__)
    ap.add_argument("--model", required=True, help="local checkpoint directory or Hugging Face hub id")
    ap.add_argument("--out", required=True, type=Path, help="output model directory")
    ap.add_argument("--dtype", default="fp32", help="comma-separated: fp32,fp16,q8,int8,q4 (default fp32; q8/int8/q4 "
                                                      "are made from the fp32 graphs)")
    ap.add_argument("--skip-validate", action="store_true", help="skip the ONNX Runtime vs PyTorch check")
    ap.add_argument("--exporter", default="dynamo", choices=["dynamo", "torchscript"])
    ap.add_argument("--decoder", default="fused", choices=["fused", "exporter"],
                    help="fp32 decoder graph: fused (built from the weights, GroupQueryAttention; default) or the "
                         "exporter's graph")
    ap.add_argument("--opset", type=int, default=None, help="ONNX opset (default 20)")
    ap.add_argument("--graphs", default=None, help="comma-separated subset of graph names")
    ap.add_argument("--skip-agreement", action="store_true",
                    help="skip the teacher-forced top-1 / KL measure of each non-fp32 dtype against fp32")
    a = ap.parse_args(argv)
    dtypes = [d.strip() for d in a.dtype.split(",") if d.strip()]
    for d in dtypes:
        if d not in SUFFIX:
            raise ExportError(f"error: unknown --dtype {d!r}; supported: {', '.join(SUFFIX)}")
    opset = a.opset or 20
    torch.manual_seed(0)
    torch.set_num_threads(int(os.environ.get("VIDLM_TORCH_THREADS", "2")))
    run_export(a.model, a.out, dtypes, a.skip_validate, a.exporter, opset,
               [g.strip() for g in a.graphs.split(",")] if a.graphs else None, decoder=a.decoder,
               skip_agreement=a.skip_agreement)
    return 0


if __name__ == "__main__":
    sys.exit(main())
