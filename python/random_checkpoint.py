"""Builds a complete random-weight checkpoint directory for one family: python/assets.py's files
(real tokenizer, chat template, processor and generation configs) + a model saved with
`save_pretrained` from a fixed seed.

    python python/random_checkpoint.py --family onevision --size real --out .cache/models/real-onevision
    python python/random_checkpoint.py --family llava_next_video --size tiny --out DIR

`--size real` uses the real architecture (assets.real_config); `--size tiny` the scaled-down
configs of vidlm_export/configs.py with processor sizes shrunk to match (the fixtures' models).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import assets
from vidlm_export import configs


# Tiny models: final-norm gain that sets the absolute logit scale (see configs.py). Scaling the final
# RMSNorm weight scales logits, top-1/top-2 margins and the fp32 ONNX-vs-PyTorch noise alike (the
# argmax never changes), so the margin/noise ratio does not depend on it. 0.5 keeps max |logit| near 8,
# the scale at which the fp32 graphs reproduce transformers' logits within the 1e-4 acceptance bound
# (measured at gain 8: max |Δ| 6.9e-4 on logits up to 127, i.e. ~4e-5 at gain 0.5).
TINY_LOGIT_GAIN = 0.5


def tiny_processor_overrides(family: str, config) -> dict:
    """Processor settings scaled to the tiny vision tower (same structure as the real ones)."""
    v = config.vision_config
    s, p = int(getattr(v, "image_size", 0)), int(v.patch_size)
    if family == "interleave":
        return {"image_processor": {"size": {"height": s, "width": s}}, "processor": {"patch_size": p}}
    if family == "onevision":
        return {
            "image_processor": {"size": {"height": s, "width": s},
                                "image_grid_pinpoints": config.image_grid_pinpoints},
            "video_processor": {"size": {"height": s, "width": s}},
            "processor": {"num_image_tokens": (s // p) ** 2},
        }
    if family in ("video_llava", "llava_next_video"):
        out = {
            "image_processor": {"size": {"shortest_edge": s}, "crop_size": {"height": s, "width": s}},
            "video_processor": {"size": {"shortest_edge": s}, "crop_size": {"height": s, "width": s}},
            "processor": {"patch_size": p},
        }
        if family == "llava_next_video":
            out["image_processor"]["image_grid_pinpoints"] = config.image_grid_pinpoints
        return out
    if family == "qwen2_5_vl":
        # Pixel budgets that upscale the fixtures' small frames to grids of several 2x2-merge-unit windows
        # (e.g. 44x70 -> 112x168 px = 8x12 patches), partial edge windows included.
        return {"image_processor": {"min_pixels": 12544, "max_pixels": 25088}}
    if family == "qwen3_vl":
        # Qwen3's video budget is over t*h*w (8 frames here).
        return {"image_processor": {"size": {"shortest_edge": 16384, "longest_edge": 32768}},
                "video_processor": {"size": {"shortest_edge": 131072, "longest_edge": 262144}}}
    raise ValueError(family)


def build(family: str, size: str, out: Path, seed: int = 0, init: float = 0.3, dtype: str = "fp32",
          text_layers: int | None = None) -> Path:
    import torch

    if size == "tiny":
        config = configs.BUILDERS[family](tiny=True, init=init)
        overrides = tiny_processor_overrides(family, config)
    else:
        config = assets.real_config(family)
        overrides = None
    if text_layers is not None:
        # Real width, reduced depth: checks a 7B architecture's shapes where its full depth does not fit in RAM.
        config.text_config.num_hidden_layers = text_layers
        if getattr(config.text_config, "layer_types", None):
            config.text_config.layer_types = config.text_config.layer_types[:text_layers]
    out.mkdir(parents=True, exist_ok=True)
    assets.build(family, out, layout="hub", processor_overrides=overrides, config=config)
    configs.build_random_model(config, seed, out, dtype=torch.float16 if dtype == "fp16" else None,
                               logit_gain=TINY_LOGIT_GAIN if size == "tiny" else 1.0)
    # save_pretrained rewrites config.json and generation_config.json; keep assets' generation config
    # (it carries the checkpoint's pad/eos ids).
    assets_gen = assets.SPEC[family]["generation"]
    import json

    gpath = out / "generation_config.json"
    gen = json.loads(gpath.read_text()) if gpath.exists() else {}
    gen.update(assets_gen)
    gpath.write_text(json.dumps(gen, indent=2) + "\n")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", required=True, choices=assets.ALL_FAMILIES)
    ap.add_argument("--size", choices=("tiny", "real"), default="tiny")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=("fp32", "fp16"), default="fp32")
    ap.add_argument("--text-layers", type=int, default=None, help="override the LM depth (real width, fewer layers)")
    a = ap.parse_args(argv)
    build(a.family, a.size, a.out, seed=a.seed, dtype=a.dtype, text_layers=a.text_layers)
    print(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
