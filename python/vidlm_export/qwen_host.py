"""Host-side computations of the Qwen2.5-VL / Qwen3-VL contract (docs/onnx-graphs.md, "Qwen2.5-VL and
Qwen3-VL"), written from the pseudo-code there in plain numpy (float32 where transformers computes in
float32), independently of transformers' own helpers. The Rust runtime reproduces these functions;
`python/tests/test_qwen_host.py` checks them against transformers 5.23's helpers and the Python replay
(vidlm_export/replay.py) proves them end to end against `generate`.
"""

from __future__ import annotations

import itertools

import numpy as np

F32 = np.float32
BIAS_MASKED = np.finfo(np.float32).min  # additive bias of a masked key (float32 lowest, not -inf)


def block_major_hw(h: int, w: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """(hpos, wpos) of the h*w patches of one frame in spatial-merge-block order (get_vision_position_ids)."""
    hh, ww = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    hpos = hh.reshape(h // m, m, w // m, m).transpose(0, 2, 1, 3).reshape(-1)
    wpos = ww.reshape(h // m, m, w // m, m).transpose(0, 2, 1, 3).reshape(-1)
    return hpos.astype(np.int64), wpos.astype(np.int64)


def vision_inv_freq(head_dim: int, theta: float) -> np.ndarray:
    spatial = head_dim // 2
    exps = np.arange(0, spatial, 2, dtype=F32) / F32(spatial)
    return (F32(1.0) / np.power(F32(theta), exps, dtype=F32)).astype(F32)


def vision_rotary(h: int, w: int, m: int, head_dim: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin [h*w, head_dim] float32 in block-major order (Qwen*VLVisionRotaryEmbedding)."""
    hpos, wpos = block_major_hw(h, w, m)
    inv = vision_inv_freq(head_dim, theta)
    fh = hpos.astype(F32)[:, None] * inv[None, :]
    fw = wpos.astype(F32)[:, None] * inv[None, :]
    cos = np.concatenate([np.cos(fh), np.cos(fw), np.cos(fh), np.cos(fw)], axis=-1).astype(F32)
    sin = np.concatenate([np.sin(fh), np.sin(fw), np.sin(fh), np.sin(fw)], axis=-1).astype(F32)
    return cos, sin


def window_index(h: int, w: int, m: int, window_size: int, patch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(window_index [h*w/m^2] int64, cu_window_seqlens [n+1] int64 in patches) for one frame."""
    vws = window_size // m // patch_size
    gh, gw = h // m, w // m
    index = np.arange(gh * gw).reshape(gh, gw)
    pad_h = vws - gh % vws
    pad_w = vws - gw % vws
    nwh, nww = (gh + pad_h) // vws, (gw + pad_w) // vws
    padded = np.full((gh + pad_h, gw + pad_w), -100, dtype=np.int64)
    padded[:gh, :gw] = index
    padded = padded.reshape(nwh, vws, nww, vws).transpose(0, 2, 1, 3).reshape(nwh * nww, vws, vws)
    seqlens = (padded != -100).sum(axis=(1, 2))
    flat = padded.reshape(-1)
    widx = flat[flat != -100]
    cu = [0] + list(np.cumsum(seqlens) * m * m)
    cu_unique = [cu[0]] + [c for p, c in zip(cu, cu[1:]) if c != p]
    return widx.astype(np.int64), np.array(cu_unique, dtype=np.int64)


def window_batches(cu: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The windows of one frame (window order, boundaries `cu` in patches) as a padded batch:
    window_gather [windows, L] int64 (patch index in window order; pad slots repeat the window's first
    patch), window_scatter [patches] int64 (flat index i*L + j of every patch), window_key_bias
    [windows, L] float32 (0 real key, float32 lowest for a pad slot). L = the longest window."""
    lens = np.diff(cu)
    n, width = len(lens), int(lens.max())
    gather = np.empty((n, width), np.int64)
    bias = np.full((n, width), BIAS_MASKED, F32)
    scatter = np.empty(int(cu[-1]), np.int64)
    for i in range(n):
        a, ln = int(cu[i]), int(lens[i])
        gather[i, :ln] = np.arange(a, a + ln)
        gather[i, ln:] = a
        bias[i, :ln] = 0.0
        scatter[a:a + ln] = i * width + np.arange(ln)
    return gather, scatter, bias


def qwen25_vision_inputs(h: int, w: int, vcfg) -> dict:
    """The grid-only inputs of the Qwen2.5-VL vision_encoder for one frame grid (h, w) (patch units)."""
    m = int(vcfg.spatial_merge_size)
    hd = int(vcfg.hidden_size) // int(vcfg.num_heads)
    theta = float((getattr(vcfg, "rope_parameters", None) or {}).get("rope_theta", 10000.0))
    widx, cu = window_index(h, w, m, int(vcfg.window_size), int(vcfg.patch_size))
    cos, sin = vision_rotary(h, w, m, hd, theta)
    mu = m * m
    cos = cos.reshape(-1, mu, hd)[widx].reshape(-1, hd)
    sin = sin.reshape(-1, mu, hd)[widx].reshape(-1, hd)
    out = {
        "window_index": widx,
        "reverse_window_index": np.argsort(widx, kind="stable").astype(np.int64),
        "rotary_cos": cos,
        "rotary_sin": sin,
    }
    out["window_gather"], out["window_scatter"], out["window_key_bias"] = window_batches(cu)
    return out


def _axis_taps(idx: np.ndarray, size: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear, align_corners=True taps/weights on one axis (vision_utils._interpolation_axis_taps_weights)."""
    src = idx.astype(F32) * F32(side - 1) / F32(max(size - 1, 1))
    fl = np.floor(src)
    offs = np.array([0, 1], dtype=np.int64)
    raw = fl.astype(np.int64)[:, None] + offs[None, :]
    taps = np.clip(raw, 0, side - 1)
    dist = np.abs(src[:, None] - fl[:, None] - offs[None, :].astype(F32))
    wts = np.maximum(F32(1.0) - dist, F32(0.0)).astype(F32)
    return taps, wts


def qwen3_vision_inputs(h: int, w: int, vcfg) -> dict:
    """The grid-only inputs of the Qwen3-VL vision_encoder for one frame grid (h, w)."""
    m = int(vcfg.spatial_merge_size)
    hd = int(vcfg.hidden_size) // int(vcfg.num_heads)
    theta = float((getattr(vcfg, "rope_parameters", None) or {}).get("rope_theta", 10000.0))
    side = int(int(vcfg.num_position_embeddings) ** 0.5)
    i = np.arange(h * w, dtype=np.int64)
    in_col = i % m
    in_row = (i // m) % m
    block_col = (i // (m * m)) % (w // m)
    block_row = i // (m * m * (w // m))
    row = block_row * m + in_row
    col = block_col * m + in_col
    ht, hw_ = _axis_taps(row, h, side)
    wt, ww = _axis_taps(col, w, side)
    idx = (ht[:, :, None] * side + wt[:, None, :]).reshape(-1, 4)
    wts = (hw_[:, :, None] * ww[:, None, :]).reshape(-1, 4).astype(F32)
    cos, sin = vision_rotary(h, w, m, hd, theta)
    return {"rotary_cos": cos, "rotary_sin": sin, "pos_interp_indices": idx.astype(np.int64),
            "pos_interp_weights": wts}


def vision_inputs(model_type: str, h: int, w: int, vcfg) -> dict:
    return (qwen25_vision_inputs if model_type == "qwen2_5_vl" else qwen3_vision_inputs)(h, w, vcfg)


def rope_index(model_type: str, cfg, input_ids: np.ndarray, attention_mask: np.ndarray,
               image_grid_thw=None, video_grid_thw=None, second_per_grid_ts=None) -> np.ndarray:
    """position_ids int64 [3, batch, seq] of a prompt (get_rope_index of transformers 5.23)."""
    m = int(cfg.vision_config.spatial_merge_size)
    img_id, vid_id = int(cfg.image_token_id), int(cfg.video_token_id)
    images = [tuple(int(x) for x in g) for g in (image_grid_thw if image_grid_thw is not None else [])]
    videos = [tuple(int(x) for x in g) for g in (video_grid_thw if video_grid_thw is not None else [])]
    spgt = None
    if model_type == "qwen3_vl":
        videos = [(1, h, w) for (t, h, w) in videos for _ in range(t)]
    else:
        tps = cfg.vision_config.tokens_per_second
        spgt = [F32(x) for x in second_per_grid_ts] if second_per_grid_ts is not None else None
    it_img, it_vid = iter(images), iter(videos)
    it_spgt = iter(spgt) if spgt is not None else None
    b, s = input_ids.shape
    pos = np.zeros((3, b, s), dtype=np.int64)
    for r in range(b):
        valid = np.nonzero(attention_mask[r] == 1)[0]
        ids = input_ids[r, valid]
        types = np.where(ids == img_id, 1, np.where(ids == vid_id, 2, 0))
        cols, cur = [], 0
        for key, grp in itertools.groupby(types.tolist()):
            n = len(list(grp))
            if key == 0:
                a = np.arange(n, dtype=np.int64) + cur
                cols.append(np.stack([a, a, a]))
                cur += n
                continue
            t, h, w = next(it_img if key == 1 else it_vid)
            gt, gh, gw = t, h // m, w // m
            tt, hh, ww = np.meshgrid(np.arange(gt), np.arange(gh), np.arange(gw), indexing="ij")
            if model_type == "qwen2_5_vl" and key == 2:
                interval = F32(tps) * (next(it_spgt) if it_spgt is not None else F32(1))
                tpos = np.trunc(tt.reshape(-1).astype(F32) * F32(interval)).astype(np.int64)
            else:
                tpos = tt.reshape(-1).astype(np.int64)
            block = np.stack([tpos + cur, hh.reshape(-1) + cur, ww.reshape(-1) + cur])
            if block.shape[1] != n:
                raise ValueError(f"{n} placeholder tokens for a grid of {block.shape[1]} positions")
            cols.append(block)
            cur += max(h, w) // m
        pos[:, r, valid] = np.concatenate(cols, axis=1)
    return pos


def decode_positions(prefill_pos: np.ndarray, step: int) -> np.ndarray:
    """[3, batch, 1] positions of decode step `step` (0-based): each row's last prompt position + 1 + step,
    as generate's _update_model_kwargs_for_generation appends them."""
    return prefill_pos[:, :, -1:] + 1 + step
