"""Replays a Qwen2.5-VL / Qwen3-VL golden with the exported ONNX graphs (ONNX Runtime, CPU), computing
every host-side input exactly as docs/onnx-graphs.md ("Qwen2.5-VL and Qwen3-VL") says, with
vidlm_export/qwen_host.py only (no transformers helper): per-grid vision tables, one vision run per
image/video (frames batched), feature + DeepStack merge, the rope index, decode positions = last prompt
position + 1 + step. This is the proof of the contract before the Rust side exists.

`chunk` > 0 runs the prefill in chunks of that many tokens (positions and DeepStack rows sliced with the
chunk, the KV cache carried), as the engine's chunked prefill does.
"""

from __future__ import annotations

import numpy as np

from . import qwen_host
from .replay import OnnxModel


def _features(om: OnnxModel, cfg, pixel_values, grids):
    """Features (and DeepStack levels) of every image/video in order: one vision run per item."""
    mt = cfg.model_type
    vcfg = cfg.vision_config
    m2 = int(vcfg.spatial_merge_size) ** 2
    feats, deeps, row = [], [], 0
    sess = om.sessions["vision_encoder"]
    names = [i.name for i in sess.get_inputs()]
    for t, h, w in (tuple(int(x) for x in g) for g in grids):
        n = t * h * w
        pv = pixel_values[row:row + n].reshape(t, h * w, -1)
        row += n
        host = qwen_host.vision_inputs(mt, h, w, vcfg)
        feeds = {"pixel_values": pv.astype(om.float_type)}
        for k in names[1:]:
            v = host[k]
            if v.dtype == np.float32 and om.float_type != np.float32:
                # The masked bias is the graph float type's lowest finite value (docs/onnx-graphs.md).
                v = np.maximum(v, np.finfo(om.float_type).min)
            feeds[k] = v.astype(om.float_type) if v.dtype == np.float32 else v
        outs = sess.run(None, feeds)
        feats.append(outs[0].astype(np.float32).reshape(t * h * w // m2, -1))
        if mt == "qwen3_vl":
            lv = outs[1].astype(np.float32)
            deeps.append(lv.reshape(lv.shape[0], t * h * w // m2, -1))
    if row != pixel_values.shape[0]:
        raise AssertionError(f"grids cover {row} patches, pixel values have {pixel_values.shape[0]}")
    return np.concatenate(feats, 0), (np.concatenate(deeps, 1) if deeps else None)


def greedy(om: OnnxModel, model, inputs, max_new_tokens: int, chunk: int = 0):
    """Greedy decode with the ONNX graphs. Returns (new tokens [batch, n], first-step logits [batch, vocab],
    prompt position_ids [3, batch, seq])."""
    tokens, logits, pos = decode(om, model.config, inputs, max_new_tokens, chunk=chunk)
    return tokens, logits[0], pos


def forced_logits(om: OnnxModel, cfg, inputs, positions: int, tokens: np.ndarray):
    """agreement.forced_logits for these families: the logits of `positions` next-token distributions of
    one row (the last prompt position, then after feeding each of `tokens`, teacher-forced; None: its own
    argmax), with the
    3-row positions and DeepStack features of the contract. Returns (logits [positions, vocab], tokens fed)."""
    forced = None if tokens is None else np.asarray(tokens, np.int64)
    fed, logits, _ = decode(om, cfg, inputs, positions, forced=forced)
    return np.stack([lg[0] for lg in logits]), fed[0, : positions - 1]


def decode(om: OnnxModel, cfg, inputs, steps: int, chunk: int = 0, forced: np.ndarray | None = None):
    """`steps` decoding steps with the ONNX graphs: greedy, or feeding `forced[k]` after step k where given.
    Returns (tokens [batch, steps]: chosen or fed, logits of every step [steps][batch, vocab], prompt
    position_ids [3, batch, seq])."""
    mt = cfg.model_type
    np_in = {k: v.numpy() for k, v in inputs.items() if hasattr(v, "numpy")}
    ids = np_in["input_ids"].astype(np.int64)
    mask = np_in["attention_mask"].astype(np.int64)
    b, s = ids.shape
    emb = om.run("embed_tokens", {"input_ids": ids})[0].astype(np.float32)
    d = emb.shape[-1]
    levels = len(cfg.vision_config.deepstack_visual_indexes) if mt == "qwen3_vl" else 0
    deep = np.zeros((levels, b, s, d), np.float32) if levels else None
    for kind, tok, pv_key, grid_key in (("image", cfg.image_token_id, "pixel_values", "image_grid_thw"),
                                        ("video", cfg.video_token_id, "pixel_values_videos", "video_grid_thw")):
        if pv_key not in np_in:
            continue
        f, dz = _features(om, cfg, np_in[pv_key], np_in[grid_key])
        sel = ids == tok
        if int(sel.sum()) != f.shape[0]:
            raise AssertionError(f"{kind} tokens {int(sel.sum())} != features {f.shape[0]}")
        emb[sel] = f
        if deep is not None:
            for lv in range(levels):
                deep[lv][sel] = dz[lv]
    pos = qwen_host.rope_index(mt, cfg, ids, mask, np_in.get("image_grid_thw"), np_in.get("video_grid_thw"),
                               np_in.get("second_per_grid_ts"))
    dec = om.sessions["decoder_model_merged"]
    out_names = [o.name for o in dec.get_outputs()]
    past = {n: np.zeros((b, om.past_shapes[n][1], 0, om.past_shapes[n][3]), om.float_type) for n in om.past_names}

    def step(e, m, p, dp):
        nonlocal past
        feeds = {"inputs_embeds": e.astype(om.float_type), "attention_mask": m, "position_ids": p, **past}
        if levels:
            feeds["deepstack_visual_embeds"] = dp.astype(om.float_type)
        outs = dec.run(None, feeds)
        for name, val in zip(out_names[1:], outs[1:]):
            past[name.replace("present.", "past_key_values.")] = val
        return outs[0][:, -1, :].astype(np.float32)

    bounds = list(range(0, s, chunk)) + [s] if chunk else [0, s]
    for a, z in zip(bounds, bounds[1:]):
        logits = step(emb[:, a:z], mask[:, :z], pos[:, :, a:z], deep[:, :, a:z] if levels else None)
    all_logits = [logits.copy()]
    tokens = []
    for k in range(steps):
        nxt = logits.argmax(-1)
        if forced is not None and k < len(forced):
            nxt = np.full_like(nxt, forced[k])
        tokens.append(nxt)
        if k == steps - 1:
            break
        e = om.run("embed_tokens", {"input_ids": nxt[:, None].astype(np.int64)})[0]
        mask = np.concatenate([mask, np.ones((b, 1), np.int64)], 1)
        p = qwen_host.decode_positions(pos, k)
        logits = step(e, mask, p, np.zeros((levels, b, 1, d), np.float32) if levels else None)
        all_logits.append(logits.copy())
    return np.stack(tokens, 1), all_logits, pos
