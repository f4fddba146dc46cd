"""Replays a golden with the exported ONNX graphs (ONNX Runtime, CPU) and the documented host-side
steps, in Python. This is the reference for what the Rust runtime does, and the check that the
graph split (what is in a graph, what is on the host) reproduces transformers exactly.

Host side per family (see docs/onnx-graphs.md): anyres patch bookkeeping + pack_image_features
(transformers' own function, fed with the graph's per-patch features and onnx/image_newline.safetensors),
feature merge into the placeholder rows, position ids from the mask, greedy decode with the KV cache.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch


class OnnxModel:
    def __init__(self, model_dir: Path, dtype: str = "fp32", threads: int = 2):
        import onnxruntime as ort

        self.dir = Path(model_dir)
        self.manifest = json.loads((self.dir / "onnx" / "vidlm_manifest.json").read_text())
        suffix = self.manifest["precision_suffixes"][dtype]
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.log_severity_level = 3
        self.sessions = {}
        # A dtype may leave a graph out (a vision graph whose accuracy did not hold): the nearest precision
        # along the fallback chain serves it (q4 -> q8 -> fp32), as the manifest records and the runtime does.
        from .cli import chain, dtype_fallback

        by_key = {(g["name"], g["dtype"]): g for g in self.manifest["graphs"]
                  if (self.dir / "onnx" / g["file"]).is_file()}
        fallback = self.manifest.get("dtype_fallback") or dtype_fallback(set(by_key))
        self.used = fallback.get(dtype, {})
        chosen = {n: by_key[(n, d)] for n, d in self.used.items() if (n, d) in by_key}
        for g in chosen.values():
            self.sessions[g["name"]] = ort.InferenceSession(str(self.dir / "onnx" / g["file"]), so,
                                                            providers=["CPUExecutionProvider"])
        assert "decoder_model_merged" in self.sessions, "no decoder graph"
        self.float_type = np.float16 if dtype == "fp16" else np.float32
        self.newline = None
        if self.manifest.get("image_newline"):
            from safetensors.numpy import load_file

            self.newline = torch.from_numpy(load_file(str(self.dir / "onnx" / self.manifest["image_newline"]))[
                "image_newline"])
        dec = self.sessions["decoder_model_merged"]
        self.past_names = [i.name for i in dec.get_inputs() if i.name.startswith("past_key_values.")]
        self.past_shapes = {i.name: i.shape for i in dec.get_inputs() if i.name.startswith("past_key_values.")}

    def run(self, name, feeds):
        return self.sessions[name].run(None, feeds)


def image_features(om: OnnxModel, model, inputs) -> torch.Tensor | None:
    """All image features of the batch, in prompt order (what transformers' get_image_features yields)."""
    cfg = model.config
    fam = cfg.model_type
    pv = inputs.get("pixel_values_images") if fam == "video_llava" else inputs.get("pixel_values")
    if pv is None:
        return None
    enc = lambda x: torch.from_numpy(om.run("vision_encoder", {"pixel_values": x.numpy().astype(om.float_type)})[0]).float()  # noqa: E731
    if fam in ("llava", "video_llava"):
        f = enc(pv)
        return f.reshape(-1, f.shape[-1])
    image_sizes = inputs["image_sizes"]
    if fam == "llava_onevision":
        from transformers.models.llava_onevision.modeling_llava_onevision import image_size_to_num_patches

        bni = inputs.get("batch_num_images")
        need = [True] * len(image_sizes) if bni is None else [int(n) == 1 for n in bni for _ in range(int(n))]
    else:
        from transformers.models.llava_next_video.modeling_llava_next_video import image_size_to_num_patches

        need = [True] * len(image_sizes)
    nump = [image_size_to_num_patches(image_size=s, grid_pinpoints=cfg.image_grid_pinpoints,
                                      patch_size=cfg.vision_config.image_size) if n else 1
            for s, n in zip(image_sizes, need)]
    flat = torch.cat([p[:n] for p, n in zip(pv, nump)], dim=0) if pv.dim() == 5 else pv
    feats = torch.split(enc(flat), nump, dim=0)
    newline = om.newline.to(torch.float32)
    with torch.no_grad():
        if fam == "llava_onevision":
            packed, _ = model.model.pack_image_features(list(feats), image_sizes, image_newline=newline,
                                                        vision_aspect_ratio=cfg.vision_aspect_ratio)
        else:
            packed, _ = model.model.pack_image_features(list(feats), image_sizes,
                                                        vision_feature_select_strategy=cfg.vision_feature_select_strategy,
                                                        image_newline=newline)
    return torch.cat(packed, dim=0)


def video_features(om: OnnxModel, inputs) -> torch.Tensor | None:
    pv = inputs.get("pixel_values_videos")
    if pv is None:
        return None
    out = om.run("video_encoder", {"pixel_values_videos": pv.numpy().astype(om.float_type)})[0]
    t = torch.from_numpy(out).float()
    return t.reshape(-1, t.shape[-1])


def greedy(om: OnnxModel, model, inputs, max_new_tokens: int):
    """Greedy decode with the ONNX graphs. Returns (new tokens [batch, n], first-step logits [batch, vocab])."""
    cfg = model.config
    ids = inputs["input_ids"]
    mask = inputs["attention_mask"].to(torch.long)
    emb = torch.from_numpy(om.run("embed_tokens", {"input_ids": ids.numpy()})[0]).float()
    d = emb.shape[-1]
    img = image_features(om, model, inputs)
    if img is not None:
        sel = ids == cfg.image_token_id
        if int(sel.sum()) != img.reshape(-1, d).shape[0]:
            raise AssertionError(f"image tokens {int(sel.sum())} != features {img.shape}")
        emb[sel] = img.reshape(-1, d)
    vid = video_features(om, inputs)
    if vid is not None:
        sel = ids == cfg.video_token_id
        if int(sel.sum()) != vid.shape[0]:
            raise AssertionError(f"video tokens {int(sel.sum())} != features {vid.shape}")
        emb[sel] = vid
    b = ids.shape[0]
    past = {}
    for n in om.past_names:
        shp = om.past_shapes[n]
        past[n] = np.zeros((b, shp[1], 0, shp[3]), dtype=om.float_type)
    cur_emb = emb.numpy().astype(om.float_type)
    tokens, first = [], None
    for step in range(max_new_tokens):
        total = mask.shape[1]
        pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
        pos = pos[:, total - cur_emb.shape[1]:]
        feeds = {"inputs_embeds": cur_emb, "attention_mask": mask.numpy(), "position_ids": pos.numpy(), **past}
        outs = om.run("decoder_model_merged", feeds)
        logits = outs[0][:, -1, :].astype(np.float32)
        if first is None:
            first = logits.copy()
        nxt = logits.argmax(-1)
        tokens.append(nxt)
        names = [o.name for o in om.sessions["decoder_model_merged"].get_outputs()]
        for name, val in zip(names[1:], outs[1:]):
            past[name.replace("present.", "past_key_values.")] = val
        cur_emb = om.run("embed_tokens", {"input_ids": nxt[:, None].astype(np.int64)})[0]
        mask = torch.cat([mask, torch.ones(b, 1, dtype=torch.long)], dim=1)
    return np.stack(tokens, axis=1), first
