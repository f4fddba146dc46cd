"""Reference features for the Rust Qwen-VL vision runner (crates/vision/tests/qwen_runner.rs).

For each Qwen golden scenario (tests/goldens/qwen2_5_vl, tests/goldens/qwen3_vl) this re-makes the
processor's pixel tensors from the fixtures' media exactly as python/qwen_fixtures.py made them (checked
against the goldens' `pixel_sha256`), then records, per scenario, into
`$VIDLM_CACHE/fixtures/<family>/vision_ref/<scenario>.safetensors`:

* the inputs: `pixel_values` / `image_grid_thw`, `pixel_values_videos` / `video_grid_thw`;
* `onnx_<kind>_features` (`[rows, D]`) and, Qwen3-VL, `onnx_<kind>_deepstack` (`[levels, rows, D]`): the
  exported `vision_encoder.onnx` run from Python ONNX Runtime with every host input computed by
  `vidlm_export/qwen_host.py` (`qwen_replay._features`: one run per image/video, frames batched) — the
  same graph and the same inputs the Rust runner must give, so fp32 must agree to 1e-5;
  `onnx_fp16_<kind>_...` the same with `vision_encoder_fp16.onnx`;
* `hf_<kind>_features` / `hf_<kind>_deepstack`: transformers 5.23's `get_image_features` /
  `get_video_features` (`pooler_output`, `deepstack_features`) of the checkpoint the export came from
  (agreement bounded by the export's validation, 1e-4 + 1e-4·max|ref|).

Run after `cargo xtask fixtures` (the checkpoints and exports must exist):
`python python/qwen_vision_refs.py [--check]`; `--check` compares instead of writing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fixtures as fx  # noqa: E402
import qwen_fixtures as qf  # noqa: E402

FAMILIES = ("qwen2_5_vl", "qwen3_vl")
KINDS = (("image", "pixel_values", "image_grid_thw"), ("video", "pixel_values_videos", "video_grid_thw"))


class _Om:
    """The bits of replay.OnnxModel that qwen_replay._features reads, for the vision graph alone."""

    def __init__(self, model_dir: Path, dtype: str):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.log_severity_level = 3
        # As vidlm-ort loads fp32/fp16 graphs (MemoryOptions' Prepack::Auto): no pre-packed weight copies.
        # MLAS's packed and unpacked GEMMs round differently (~1e-4 here), so the reference uses the runtime's.
        so.add_session_config_entry("session.disable_prepacking", "1")
        suffix = "" if dtype == "fp32" else "_fp16"
        path = model_dir / "onnx" / f"vision_encoder{suffix}.onnx"
        self.sessions = {"vision_encoder": ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])}
        self.float_type = np.float16 if dtype == "fp16" else np.float32


def scenario_refs(family: str, model, proc, media, model_dir: Path, oms: dict) -> dict[str, dict]:
    from vidlm_export.qwen_replay import _features

    gmeta = json.loads((fx.GOLDENS / family / "golden.json").read_text())
    out = {}
    for name, (batch, sampling) in qf.scenarios().items():
        _, inputs = qf.processor_inputs(proc, batch, sampling, media)
        want_sha = gmeta["scenarios"][name].get("pixel_sha256", {})
        tensors = {}
        for kind, pv_key, grid_key in KINDS:
            if pv_key not in inputs:
                continue
            pv = inputs[pv_key]
            sha = hashlib.sha256(pv.numpy().tobytes()).hexdigest()
            if want_sha.get(pv_key) != sha:
                raise SystemExit(f"{family}/{name}: {pv_key} differs from the golden's pixel_sha256")
            grids = inputs[grid_key]
            tensors[pv_key] = pv.numpy().astype(np.float32)
            tensors[grid_key] = grids.numpy().astype(np.int64)
            for dtype, om in oms.items():
                feats, deep = _features(om, model.config, pv.numpy(), grids.numpy())
                prefix = "onnx" if dtype == "fp32" else "onnx_fp16"
                tensors[f"{prefix}_{kind}_features"] = feats.astype(np.float32)
                if deep is not None:
                    tensors[f"{prefix}_{kind}_deepstack"] = deep.astype(np.float32)
            with torch.no_grad():
                fn = model.model.get_image_features if kind == "image" else model.model.get_video_features
                o = fn(pv, grids, return_dict=True)
            tensors[f"hf_{kind}_features"] = torch.cat(list(o.pooler_output), 0).float().numpy()
            ds = getattr(o, "deepstack_features", None)
            if ds is not None:
                tensors[f"hf_{kind}_deepstack"] = torch.stack(
                    [torch.cat(list(level), 0) for level in ds], 0).float().numpy()
        out[name] = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    return out


def write_refs(family: str, model, proc, media, model_dir: Path, check: bool = False) -> list[str]:
    """Writes (or, `check`, compares) `<model_dir>/../vision_ref/<scenario>.safetensors`; returns errors."""
    from safetensors.numpy import load_file, save_file

    oms = {"fp32": _Om(model_dir, "fp32")}
    if (model_dir / "onnx" / "vision_encoder_fp16.onnx").is_file():
        oms["fp16"] = _Om(model_dir, "fp16")
    refs = scenario_refs(family, model, proc, media, model_dir, oms)
    dest = model_dir.parent / "vision_ref"
    dest.mkdir(parents=True, exist_ok=True)
    errors = []
    for name, tensors in refs.items():
        path = dest / f"{name}.safetensors"
        if check:
            old = load_file(str(path)) if path.is_file() else {}
            errors += [f"{path}: {k} differs" for k, v in tensors.items()
                       if k not in old or not np.array_equal(old[k], v)]
        else:
            save_file(tensors, str(path))
        print(f"[qwen_vision_refs] {family}/{name}: " + ", ".join(
            f"{k} {list(v.shape)}" for k, v in tensors.items() if not k.startswith("onnx_fp16")), flush=True)
    return errors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the files instead of writing them")
    ap.add_argument("--families", default=",".join(FAMILIES))
    args = ap.parse_args()

    torch.manual_seed(0)
    media = fx.write_media(None)
    errors = []
    for family in args.families.split(","):
        base = fx.CACHE / "fixtures" / family
        model, proc = qf.load(base / "hf")
        errors += write_refs(family, model, proc, media, base / "model", check=args.check)
    if errors:
        raise SystemExit("\n".join(errors))


if __name__ == "__main__":
    main()
