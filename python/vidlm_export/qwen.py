"""Qwen2.5-VL and Qwen3-VL: the torch modules that become the ONNX graphs, and their GraphSpecs.

The contract (inputs, outputs, what the host computes) is docs/onnx-graphs.md, "Qwen2.5-VL and
Qwen3-VL"; the host side is vidlm_export/qwen_host.py.

* `Qwen25VisionEncoder` / `Qwen3VisionEncoder` (vision_encoder.onnx): a batch of frames of ONE grid,
  `[frames, h*w, C*T*P*P]`, plus the grid-only tables computed on the host. Written over the model's own
  submodules (patch_embed weights, blocks' norms/qkv/proj/mlp, mergers), with the attention over one
  frame as scaled_dot_product_attention (transformers splits at cu_seqlens, which a trace cannot keep).
* `QwenDecoder` (decoder_model_merged.onnx): 3-row M-RoPE position_ids in; Qwen3-VL also takes the
  DeepStack features as a dense [levels, batch, seq, hidden] input added after decoder layers 0..levels-1.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache

from . import fused, qwen_host
from .wrappers import EmbedTokens, kv_shape

def _rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def _attention(attn, x, cos, sin, window=None):
    """Qwen*VLVisionAttention over each frame of x [F, P, C] (cos/sin [P, hd]). `window` = (gather
    [W, L], scatter [P], key_bias [W, L]): attention inside each window instead, as a padded batch of
    windows (the same keys in the same order as transformers' per-window split)."""
    f, p, c = x.shape
    heads = attn.num_heads
    hd = c // heads
    qkv = attn.qkv(x).reshape(f, p, 3, heads, hd)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # [F, P, H, hd]
    cos = cos[:, None, :]
    sin = sin[:, None, :]
    q = q * cos + _rotate_half(q) * sin
    k = k * cos + _rotate_half(k) * sin
    if window is None:
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [F, H, P, hd]
        o = F.scaled_dot_product_attention(q, k, v, scale=attn.scaling)
        o = o.transpose(1, 2).reshape(f, p, c)
    else:
        gather, scatter, key_bias = window
        nw, width = gather.shape
        flat = gather.reshape(-1)
        q, k, v = (t[:, flat].reshape(f * nw, width, heads, hd).transpose(1, 2) for t in (q, k, v))
        mask = key_bias[None, :, None, None, :].expand(f, nw, 1, 1, width).reshape(f * nw, 1, 1, width)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=attn.scaling)  # [F*W, H, L, hd]
        o = o.transpose(1, 2).reshape(f, nw * width, c)[:, scatter]
    return attn.proj(o)


def _patch_embed(pe, pixel_values):
    f, p, k = pixel_values.shape
    w = pe.proj.weight.reshape(pe.proj.weight.shape[0], -1)
    b = pe.proj.bias
    return F.linear(pixel_values, w, b)


class Qwen25VisionEncoder(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.v = model.model.visual
        self.mu = self.v.spatial_merge_unit
        self.full = set(self.v.fullatt_block_indexes)

    def forward(self, pixel_values, window_index, reverse_window_index, rotary_cos, rotary_sin, window_gather,
                window_scatter, window_key_bias):
        f, p, _ = pixel_values.shape
        x = _patch_embed(self.v.patch_embed, pixel_values)
        c = x.shape[-1]
        x = x.reshape(f, p // self.mu, self.mu, c)[:, window_index].reshape(f, p, c)
        window = (window_gather, window_scatter, window_key_bias)
        for i, blk in enumerate(self.v.blocks):
            x = x + _attention(blk.attn, blk.norm1(x), rotary_cos, rotary_sin, None if i in self.full else window)
            x = x + blk.mlp(blk.norm2(x))
        y = self.v.merger(x)  # [F * P / mu, D]
        y = y.reshape(f, p // self.mu, -1)[:, reverse_window_index]
        return y


class Qwen3VisionEncoder(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.v = model.model.visual
        self.mu = self.v.spatial_merge_unit
        self.levels = list(self.v.deepstack_visual_indexes)

    def forward(self, pixel_values, rotary_cos, rotary_sin, pos_interp_indices, pos_interp_weights):
        f, p, _ = pixel_values.shape
        x = _patch_embed(self.v.patch_embed, pixel_values)
        pos = (self.v.pos_embed(pos_interp_indices) * pos_interp_weights[:, :, None]).sum(1)
        x = x + pos[None]
        deep = []
        for i, blk in enumerate(self.v.blocks):
            x = x + _attention(blk.attn, blk.norm1(x), rotary_cos, rotary_sin)
            x = x + blk.mlp(blk.norm2(x))
            if i in self.levels:
                merger = self.v.deepstack_merger_list[self.levels.index(i)]
                deep.append(merger(x).reshape(f, p // self.mu, -1))
        y = self.v.merger(x).reshape(f, p // self.mu, -1)
        return y, torch.stack(deep, dim=0)


class QwenDecoder(nn.Module):
    """inputs_embeds, attention_mask, position_ids [3,b,s], (deepstack [L,b,s,D]), past k/v
    -> logits [b, 1, vocab], present k/v."""

    def __init__(self, model):
        super().__init__()
        self.lm = model.model.language_model
        self.lm_head = model.lm_head
        self.text_config = model.config.text_config
        self.num_layers = self.text_config.num_hidden_layers
        self.deepstack = model.config.model_type == "qwen3_vl"
        if self.deepstack:
            # Dense deepstack rows (zeros off the visual positions): a plain add replaces the masked add.
            self.lm._deepstack_process = lambda hidden, mask, embeds: hidden + embeds
            self.levels = len(model.config.vision_config.deepstack_visual_indexes)

    def forward(self, inputs_embeds, attention_mask, position_ids, *past):
        return self._run(inputs_embeds, attention_mask, position_ids, None, past)

    def _run(self, inputs_embeds, attention_mask, position_ids, deep, past):
        cache = DynamicCache(
            ddp_cache_data=[(past[2 * i], past[2 * i + 1]) for i in range(self.num_layers)],
            config=self.text_config,
        )
        kw = {}
        if deep is not None:
            kw = {"visual_pos_masks": None, "deepstack_visual_embeds": [deep[i] for i in range(self.levels)]}
        out = self.lm(inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids,
                      past_key_values=cache, use_cache=True, return_dict=True, **kw)
        logits = self.lm_head(out.last_hidden_state[:, -1:, :])
        presents = []
        for i in range(self.num_layers):
            presents.append(cache.layers[i].keys)
            presents.append(cache.layers[i].values)
        return (logits, *presents)


class QwenDeepstackDecoder(QwenDecoder):
    """Qwen3-VL: deepstack_visual_embeds [levels, batch, seq, hidden] after position_ids."""

    def forward(self, inputs_embeds, attention_mask, position_ids, deepstack_visual_embeds, *past):
        return self._run(inputs_embeds, attention_mask, position_ids, deepstack_visual_embeds, past)


def build_specs(model, fam):
    from .graphs import GraphSpec, _gen

    cfg = model.config
    mt = cfg.model_type
    vcfg = cfg.vision_config
    tcfg = cfg.text_config
    m = int(vcfg.spatial_merge_size)
    patch_dim = int(vcfg.in_channels) * int(vcfg.temporal_patch_size) * int(vcfg.patch_size) ** 2
    specs = []

    def vis_inputs(frames, h, w, dtype, seed):
        pv = torch.randn(frames, h * w, patch_dim, generator=_gen(seed)).to(dtype)
        host = qwen_host.vision_inputs(mt, h, w, vcfg)
        t = {k: torch.from_numpy(v) for k, v in host.items()}
        for k in t:
            if t[k].is_floating_point():
                t[k] = t[k].clamp(min=torch.finfo(dtype).min).to(dtype)
        return t, pv

    if mt == "qwen2_5_vl":
        names = ["pixel_values", "window_index", "reverse_window_index", "rotary_cos", "rotary_sin",
                 "window_gather", "window_scatter", "window_key_bias"]
        outs = ["image_features"]
        module = Qwen25VisionEncoder(model).eval()
        dyn = {"pixel_values": {0: "num_frames", 1: "patches"}, "window_index": {0: "merged_patches"},
               "reverse_window_index": {0: "merged_patches"}, "rotary_cos": {0: "patches"},
               "rotary_sin": {0: "patches"}, "window_gather": {0: "windows", 1: "window_len"},
               "window_scatter": {0: "patches"}, "window_key_bias": {0: "windows", 1: "window_len"},
               "image_features": {0: "num_frames", 1: "merged_patches"}}
    else:
        names = ["pixel_values", "rotary_cos", "rotary_sin", "pos_interp_indices", "pos_interp_weights"]
        outs = ["image_features", "deepstack_features"]
        module = Qwen3VisionEncoder(model).eval()
        dyn = {"pixel_values": {0: "num_frames", 1: "patches"}, "rotary_cos": {0: "patches"},
               "rotary_sin": {0: "patches"}, "pos_interp_indices": {0: "patches"},
               "pos_interp_weights": {0: "patches"}, "image_features": {0: "num_frames", 1: "merged_patches"},
               "deepstack_features": {1: "num_frames", 2: "merged_patches"}}

    def vis_args(frames, h, w, dtype, seed):
        t, pv = vis_inputs(frames, h, w, dtype, seed)
        return (pv, *[t[n] for n in names[1:]])

    # Grids (patch units): the export sample and validation cases cover several windows, a partial edge
    # window, a grid of one window, and 1..3 frames.
    specs.append(GraphSpec(
        name="vision_encoder", module=module, input_names=names, output_names=outs, dynamic_axes=dyn,
        sample=lambda dt: vis_args(2, 6 * m, 4 * m, dt, 1),
        cases=[("3 frames, grid 8x12", lambda dt: (vis_args(3, 8, 12, dt, 2), {})),
               ("1 frame, grid 10x6", lambda dt: (vis_args(1, 10, 6, dt, 3), {})),
               ("2 frames, grid 4x4", lambda dt: (vis_args(2, 4, 4, dt, 4), {}))],
        doc=("Qwen vision tower over a batch of frames of one grid; grid-only tables from the host "
             "(docs/onnx-graphs.md, Qwen2.5-VL and Qwen3-VL)."),
        ort_fusions=True,
    ))

    vocab = tcfg.vocab_size

    def ids(b, s, seed):
        return torch.randint(0, vocab, (b, s), generator=_gen(seed), dtype=torch.long)

    specs.append(GraphSpec(
        name="embed_tokens", module=EmbedTokens(model).eval(), input_names=["input_ids"],
        output_names=["inputs_embeds"],
        dynamic_axes={"input_ids": {0: "batch_size", 1: "sequence_length"},
                      "inputs_embeds": {0: "batch_size", 1: "sequence_length"}},
        sample=lambda dt: (ids(2, 4, 6),), cases=[("batch 3 x seq 5", lambda dt: ((ids(3, 5, 7),), {}))],
        doc="input_ids -> inputs_embeds (the token embedding table).",
    ))

    n_layers = tcfg.num_hidden_layers
    kv_heads, head_dim = kv_shape(tcfg)
    embed = model.get_input_embeddings()
    deep = mt == "qwen3_vl"
    levels = len(vcfg.deepstack_visual_indexes) if deep else 0
    d_model = tcfg.hidden_size
    past_names, present_names = [], []
    for i in range(n_layers):
        past_names += [f"past_key_values.{i}.key", f"past_key_values.{i}.value"]
        present_names += [f"present.{i}.key", f"present.{i}.value"]

    def embeds(b, s, seed, dtype):
        with torch.no_grad():
            return embed(ids(b, s, seed)).to(dtype)

    def mask_pos(b, past, seq, pad_rows, seed):
        """Mask and 3-row positions: rows differ (a vision-like block) so that the sections matter."""
        total = past + seq
        mask = torch.ones(b, total, dtype=torch.long)
        for row, npad in pad_rows.items():
            mask[row, :npad] = 0
        base = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
        g = _gen(seed)
        pos = torch.stack([base + torch.randint(0, 3, base.shape, generator=g) * r for r in range(3)])
        pos = pos.masked_fill(mask[None] == 0, 0)
        return mask, pos[:, :, past:]

    def pasts(b, past, seed, dtype):
        g = _gen(seed)
        return [torch.randn(b, kv_heads, past, head_dim, generator=g).to(dtype) for _ in range(2 * n_layers)]

    def deep_in(b, s, seed, dtype, zero=False):
        if zero:
            return torch.zeros(levels, b, s, d_model, dtype=dtype)
        g = _gen(seed)
        x = torch.randn(levels, b, s, d_model, generator=g) * (torch.rand(1, b, s, 1, generator=g) < 0.5)
        return x.to(dtype)

    def dec(b, s, p, pad, seed, dtype, zero_deep=False):
        mask, pos = mask_pos(b, p, s, pad, seed)
        head = [embeds(b, s, seed, dtype), mask, pos]
        if deep:
            head.append(deep_in(b, s, seed + 1, dtype, zero_deep))
        return (*head, pasts(b, p, seed + 2, dtype))

    def case(b, s, p, pad, seed, zero_deep=False):
        return lambda dt: (dec(b, s, p, pad, seed, dt, zero_deep), {"pad": pad} if pad else {})

    in_names = ["inputs_embeds", "attention_mask", "position_ids"] + (["deepstack_visual_embeds"] if deep else [])
    dyn = {"inputs_embeds": {0: "batch_size", 1: "sequence_length"},
           "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
           "position_ids": {1: "batch_size", 2: "sequence_length"}, "logits": {0: "batch_size"}}
    if deep:
        dyn["deepstack_visual_embeds"] = {1: "batch_size", 2: "sequence_length"}
    for n in past_names:
        dyn[n] = {0: "batch_size", 2: "past_sequence_length"}
    for n in present_names:
        dyn[n] = {0: "batch_size", 2: "total_sequence_length"}
    specs.append(GraphSpec(
        name="decoder_model_merged",
        module=(QwenDeepstackDecoder if deep else QwenDecoder)(model).eval(), input_names=in_names + past_names,
        output_names=["logits", *present_names], dynamic_axes=dyn,
        sample=lambda dt: dec(2, 4, 3, {}, 8, dt),
        cases=[("prefill b2 s7 past0 leftpad", case(2, 7, 0, {1: 2}, 10)),
               ("decode b2 s1 past6 leftpad", case(2, 1, 6, {1: 2}, 12, True)),
               ("prefill b1 s6 past0", case(1, 6, 0, {}, 14)),
               ("decode b1 s1 past5", case(1, 1, 5, {}, 16, True)),
               ("chunk b2 s3 past4 leftpad", case(2, 3, 4, {1: 1}, 18)),
               ("chunk b1 s3 past4", case(1, 3, 4, {}, 20))],
        doc=("One graph for prefill and decode; position_ids [3, batch, seq] (M-RoPE rows t, h, w)"
             + ("; deepstack_visual_embeds [levels, batch, seq, hidden] added after layers 0..levels-1 "
                "(zeros off the visual positions and on decode steps)" if deep else "")
             + ". logits for the LAST position only."),
        list_tail_after=len(in_names),
        builder=lambda data_path=None: fused.build_decoder(model, data_path),
    ))
    return specs
