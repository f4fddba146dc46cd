"""Goldens of the Qwen host-side formulas for the Rust unit tests (crates/model/tests/mrope.rs,
crates/vision/tests/qwen_tables.rs), written to tests/goldens/qwen_host/:

* rope_index.json — position ids [3, batch, seq] from transformers 5.23's own `get_rope_index`
  (tiny Qwen2.5-VL / Qwen3-VL models), for batched, left-padded prompts with images and videos,
  float32 second_per_grid_ts and without it;
* vision_tables.json — per-grid vision inputs: the window index and cu_window_seqlens and the
  interpolation indices/weights from transformers' vision_utils, and the padded window batches and
  rotary tables of vidlm_export/qwen_host.py (checked against transformers by
  python/tests/test_qwen_host.py).

    .cache/venv/bin/python python/qwen_host_goldens.py
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from vidlm_export import configs, qwen_host  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "goldens", "qwen_host")


def _model(mt):
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen3VLForConditionalGeneration

    cfg = configs.BUILDERS[mt](tiny=True)
    torch.manual_seed(0)
    cls = Qwen2_5_VLForConditionalGeneration if mt == "qwen2_5_vl" else Qwen3VLForConditionalGeneration
    return cls(cfg).eval()


def _prompt(cfg, items):
    ids = [1, 2, 3]
    for kind, (t, h, w) in items:
        tok = cfg.image_token_id if kind == "image" else cfg.video_token_id
        if kind == "video" and cfg.model_type == "qwen3_vl":
            for _ in range(t):
                ids += [9, 10, cfg.vision_start_token_id] + [tok] * (h * w // 4) + [cfg.vision_end_token_id]
        else:
            ids += [cfg.vision_start_token_id] + [tok] * (t * h * w // 4) + [cfg.vision_end_token_id]
        ids += [4, 5]
    return ids + [6, 7, 8]


CASES = [
    ("two_rows_left_padded", [[("image", (1, 8, 12)), ("video", (3, 8, 10)), ("video", (2, 6, 4))],
                              [("video", (4, 10, 6)), ("image", (1, 4, 4))]], [2 / 3, 1.0, 3.0]),
    ("video_fractional_spgt", [[("video", (5, 4, 6)), ("image", (1, 6, 6))]], [1.3333334]),
    ("video_no_spgt", [[("video", (3, 4, 4))]], None),
    ("text_only", [[]], None),
    ("tall_image", [[("image", (1, 14, 4)), ("image", (1, 4, 10))]], None),
]


def rope_cases():
    out = {}
    for mt in ("qwen2_5_vl", "qwen3_vl"):
        model = _model(mt)
        cfg = model.config
        fam = {"spatial_merge_size": cfg.vision_config.spatial_merge_size,
               "image_token_id": cfg.image_token_id, "video_token_id": cfg.video_token_id,
               "tokens_per_second": getattr(cfg.vision_config, "tokens_per_second", None), "cases": []}
        for name, rows, spgt in CASES:
            seqs = [_prompt(cfg, r) for r in rows]
            width = max(len(x) for x in seqs)
            ids = np.array([[0] * (width - len(x)) + x for x in seqs], dtype=np.int64)
            mask = np.array([[0] * (width - len(x)) + [1] * len(x) for x in seqs], dtype=np.int64)
            images = [list(g) for r in rows for k, g in r if k == "image"]
            videos = [list(g) for r in rows for k, g in r if k == "video"]
            ttype = np.where(ids == cfg.image_token_id, 1, np.where(ids == cfg.video_token_id, 2, 0))
            kw = {}
            if mt == "qwen2_5_vl" and spgt is not None:
                kw["second_per_grid_ts"] = torch.tensor(spgt, dtype=torch.float32)
            want, _ = model.model.get_rope_index(
                torch.from_numpy(ids), mm_token_type_ids=torch.from_numpy(ttype),
                image_grid_thw=torch.tensor(images, dtype=torch.int64).reshape(-1, 3) if images else None,
                video_grid_thw=torch.tensor(videos, dtype=torch.int64).reshape(-1, 3) if videos else None,
                attention_mask=torch.from_numpy(mask), **kw)
            fam["cases"].append({
                "name": name, "batch": int(ids.shape[0]), "input_ids": ids.reshape(-1).tolist(),
                "attention_mask": mask.reshape(-1).tolist(), "image_grid_thw": images,
                "video_grid_thw": videos,
                "second_per_grid_ts": ([float(np.float32(x)) for x in spgt]
                                       if mt == "qwen2_5_vl" and spgt is not None else None),
                "position_ids": want.reshape(-1).tolist()})
        out[mt] = fam
    return out


GRIDS = [(8, 12), (10, 6), (4, 4), (2, 2), (6, 14), (16, 24)]


def vision_cases():
    from transformers import vision_utils as vu

    out = {}
    v = configs.qwen2_5_vl(tiny=True).vision_config
    hd = v.hidden_size // v.num_heads
    q25 = {"spatial_merge_size": v.spatial_merge_size, "window_size": v.window_size,
           "patch_size": v.patch_size, "head_dim": hd, "rope_theta": 10000.0, "grids": []}
    for h, w in GRIDS:
        widx, cu = vu.get_vision_window_index(torch.tensor([[1, h, w]]), v.spatial_merge_size,
                                              v.window_size, v.patch_size)
        host = qwen_host.qwen25_vision_inputs(h, w, v)
        assert (host["window_index"] == widx.numpy()).all()
        q25["grids"].append({
            "h": h, "w": w, "cu_window_seqlens": cu.tolist(),
            **{k: x.reshape(-1).tolist() for k, x in host.items()},
            "window_gather_shape": list(host["window_gather"].shape)})
    out["qwen2_5_vl"] = q25
    v3 = configs.qwen3_vl(tiny=True).vision_config
    hd3 = v3.hidden_size // v3.num_heads
    side = int(v3.num_position_embeddings ** 0.5)
    q3 = {"spatial_merge_size": v3.spatial_merge_size, "num_position_embeddings": v3.num_position_embeddings,
          "head_dim": hd3, "rope_theta": 10000.0, "grids": []}
    for h, w in GRIDS:
        idx, wts = vu.get_vision_interpolation_indices_and_weights(
            torch.tensor([[1, h, w]]), side, mode="bilinear", align_corners=True,
            spatial_merge_size=v3.spatial_merge_size)
        host = qwen_host.qwen3_vision_inputs(h, w, v3)
        q3["grids"].append({"h": h, "w": w, "pos_interp_indices": idx.reshape(-1).tolist(),
                            "pos_interp_weights": wts.reshape(-1).tolist(),
                            "rotary_cos": host["rotary_cos"].reshape(-1).tolist(),
                            "rotary_sin": host["rotary_sin"].reshape(-1).tolist()})
    out["qwen3_vl"] = q3
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "rope_index.json"), "w") as f:
        json.dump(rope_cases(), f, separators=(",", ":"))
    with open(os.path.join(OUT, "vision_tables.json"), "w") as f:
        json.dump(vision_cases(), f, separators=(",", ":"))


if __name__ == "__main__":
    main()
