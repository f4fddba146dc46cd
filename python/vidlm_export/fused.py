"""The fused decoder graph: `decoder_model_merged.onnx` built directly from the checkpoint's weights
with ONNX Runtime's fused CPU kernels, keeping the graph contract of docs/onnx-graphs.md.

Why not the exporter's graph: the opset-20 dynamo graph has unfused attention. It repeats every KV head
(14:2 in OneVision, so 7 copies of the whole cache on every decode step), builds full score matrices and
runs RMSNorm and rotary as a dozen elementwise ops each. Here every layer is:

    SkipSimplifiedLayerNormalization (residual add + RMSNorm, one op; layer 0: SimplifiedLayerNormalization)
    MatMul (q, k and v packed into one weight [hidden, (heads + 2 kv_heads) * head_dim]) (+ Add: Qwen2's qkv bias)
    com.microsoft.GroupQueryAttention: rotary (do_rotary, cos/sin caches, explicit position_ids), causal
        attention over the past + new keys WITHOUT repeating KV heads, present = concat(past, new)
    MatMul (o_proj)
    SkipSimplifiedLayerNormalization
    MatMul (gate and up packed into one weight [hidden, 2 * intermediate]) -> SiLU(gate) * up -> MatMul (down)

and the last position only goes through the final norm and lm_head (`logits` [batch, 1, vocab]).

Which attention runs is decided per call inside the graph (an `If` per layer): GroupQueryAttention
reads `seqlens_k` as "the valid keys are 0..seqlens_k" (right padding), ignores `position_ids` on a first
prompt (it rotates by the index), and on CPU takes new tokens on top of a past only for batch 1. So:
unpadded calls that GQA accepts run GQA with its own rotary and no bias; a left-padded first prompt runs
RotaryEmbedding with the real position ids + GQA with an additive `attention_bias` (+~70 % attention
time, which is why unpadded calls never carry it); everything else (padded decode and chunks) runs the
plain-op grouped attention below. `seqlens_k = total - 1` for every row, `total_sequence_length` and the
biases are computed inside the graph from `attention_mask`, so the inputs and outputs are exactly those
of the exporter's graph.

GroupQueryAttention on CPU needs head_dim % 16 == 0 with rotary (64 and 128 in the real models). Other
head sizes (the tiny test models' 4) use the plain-op attention for every call:
still grouped (queries reshaped to [batch, kv_heads, group * seq, head_dim], no KV repeat), rotary from
the same caches, the mask applied as one additive bias.

Rotary caches come from the model's own rotary module (`rotary_emb`), so RoPE scaling ("linear" in
NeXT-Video) and `attention_scaling` are exactly transformers'. Families/configs the builder does not
cover (other rope types, sliding windows, MLP biases) raise `Unsupported`, and the caller falls back to
the exporter's graph.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from . import families

F32_MIN = float(np.finfo(np.float32).min)
OPSET = 20


# The language models the builder expresses: Qwen2 and Llama, and the Qwen-VL families' text models
# (3-row M-RoPE position_ids where `families.uses_mrope` says so; docs/onnx-graphs.md).
TEXT_TYPES = ("qwen2", "llama", "qwen2_5_vl_text", "qwen3_vl_text")


def mrope_row_map(text_config, half: int) -> np.ndarray:
    """For each of the head_dim/2 frequencies, which position row (0 t, 1 h, 2 w) rotates it: Qwen2.5-VL's
    consecutive mrope_section chunks (chunk i from row i % 3), Qwen3-VL's interleaved layout (row 1 at
    1, 4, 7, ... < 3*section[1], row 2 at 2, 5, 8, ... < 3*section[2], row 0 elsewhere)."""
    rp = getattr(text_config, "rope_parameters", None) or {}
    sec = list(rp.get("mrope_section") or ([24, 20, 20] if text_config.model_type == "qwen3_vl_text" else [16, 24, 24]))
    rows = np.zeros(half, np.int64)
    if text_config.model_type == "qwen3_vl_text":
        for r in (1, 2):
            rows[r:sec[r] * 3:3] = r
    else:
        j = 0
        for i, n in enumerate(sec):
            rows[j:j + n] = i % 3
            j += n
    return rows


class Unsupported(Exception):
    """The checkpoint uses something this builder does not express (the caller falls back)."""


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).cpu().numpy()


class _Graph:
    """A minimal node/initializer accumulator with unique names.

    With `data` (an open binary file), every initializer of 1 KiB or more is written to it as it is made
    (offsets aligned for ONNX Runtime's memory mapping) and only its external-data reference is kept: a
    real-size graph is then never held as a second copy of the weights in protobuf form. The file must sit
    beside the .onnx file the proto is saved as (references are relative to it)."""

    EXTERNAL_MIN_BYTES = 1024

    def __init__(self, data=None, alignment: int = 65536):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0
        self._data = data
        self._alignment = alignment

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def init(self, name: str, arr: np.ndarray) -> str:
        arr = np.ascontiguousarray(arr)
        if self._data is None or arr.nbytes < self.EXTERNAL_MIN_BYTES:
            self.inits.append(numpy_helper.from_array(arr, name))
            return name
        offset = self._data.tell()
        pad = -offset % self._alignment
        if pad:
            self._data.write(b"\0" * pad)
            offset += pad
        self._data.write(memoryview(arr.reshape(-1)).cast("B"))
        t = TensorProto()
        t.name = name
        t.data_type = helper.np_dtype_to_tensor_dtype(arr.dtype)
        t.dims.extend(arr.shape)
        for key, value in (("location", Path(self._data.name).name), ("offset", str(offset)),
                           ("length", str(arr.nbytes))):
            entry = t.external_data.add()
            entry.key, entry.value = key, value
        t.data_location = TensorProto.EXTERNAL
        self.inits.append(t)
        return name

    def const(self, arr, hint: str = "c") -> str:
        return self.init(self.name(hint), np.asarray(arr))

    def op(self, op_type: str, inputs: list[str], outputs: int | list[str] = 1, domain: str = "", hint=None,
           **attrs) -> list[str] | str:
        outs = [self.name(hint or op_type) for _ in range(outputs)] if isinstance(outputs, int) else outputs
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=self.name("n_" + op_type), domain=domain,
                                           **attrs))
        return outs[0] if len(outs) == 1 else outs


def supported(text_config) -> str | None:
    """None when the builder can express this language model, else why not."""
    mt = getattr(text_config, "model_type", None)
    if mt not in TEXT_TYPES:
        return f"language model type {mt!r}"
    rp = getattr(text_config, "rope_parameters", None) or getattr(text_config, "rope_scaling", None) or {}
    rtype = rp.get("rope_type", rp.get("type", "default")) if isinstance(rp, dict) else "default"
    if rtype not in ("default", "linear"):
        return f"rope_type {rtype!r}"
    if getattr(text_config, "use_sliding_window", False):
        return "sliding-window attention"
    if getattr(text_config, "mlp_bias", False):
        return "MLP biases"
    if getattr(text_config, "hidden_act", "silu") != "silu":
        return f"hidden_act {text_config.hidden_act!r}"
    if mt == "llama" and getattr(text_config, "attention_bias", False):
        return "attention biases"
    return None


def uses_gqa_kernel(head_dim: int) -> bool:
    """ONNX Runtime's CPU GroupQueryAttention with rotary needs head_dim % 16 == 0."""
    return head_dim % 16 == 0


def _rotary_caches(lm, text_config, head_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin [max_positions, head_dim/2] from the model's own rotary module (scaling included)."""
    max_pos = int(getattr(text_config, "max_position_embeddings", 4096))
    rot = lm.rotary_emb
    x = torch.zeros(1, 1, head_dim, dtype=torch.float32)
    pos = torch.arange(max_pos, dtype=torch.long)[None]
    with torch.no_grad():
        cos, sin = rot(x, pos)
    half = head_dim // 2
    cos, sin = _np(cos[0]), _np(sin[0])
    # transformers concatenates the frequencies twice (rotate_half convention): both halves are equal
    if not (np.array_equal(cos[:, :half], cos[:, half:]) and np.array_equal(sin[:, :half], sin[:, half:])):
        raise Unsupported("rotary cos/sin halves differ (not the rotate_half convention)")
    return np.ascontiguousarray(cos[:, :half]), np.ascontiguousarray(sin[:, :half])


def build_decoder(model, data_path: Path | None = None) -> onnx.ModelProto:
    """The fused `decoder_model_merged` graph (float32) of a *ForConditionalGeneration model.

    `data_path`: where the weights go as external data when they exceed the export's external-data
    threshold (written while the graph is built; the proto then holds references only and is saved beside
    that file with `onnx.save_model`). Below the threshold, or without it, the proto holds them inline."""
    tcfg = model.config.text_config
    why = supported(tcfg)
    if why:
        raise Unsupported(why)
    lm = model.model.language_model
    lm_head = model.lm_head

    from .onnx_export import EXTERNAL_DATA_ALIGNMENT, EXTERNAL_DATA_THRESHOLD

    # The graph's weights: the layers, the final norm and lm_head (embed_tokens is a graph of its own).
    weight_bytes = 4 * (sum(p.numel() for p in lm.layers.parameters()) + lm_head.weight.numel())
    data = open(data_path, "wb") if data_path is not None and weight_bytes > EXTERNAL_DATA_THRESHOLD else None
    built = False
    try:
        proto = _build(model, lm, lm_head, tcfg, _Graph(data, EXTERNAL_DATA_ALIGNMENT))
        built = True
        return proto
    finally:
        if data is not None:
            data.close()
            if not built:  # no half-written weights file beside a graph that was never saved
                Path(data.name).unlink(missing_ok=True)


def _build(model, lm, lm_head, tcfg, g: "_Graph") -> onnx.ModelProto:
    H = int(tcfg.num_attention_heads)
    Hkv = int(getattr(tcfg, "num_key_value_heads", None) or H)
    D = int(tcfg.hidden_size)
    Dh = int(getattr(tcfg, "head_dim", None) or D // H)
    L = int(tcfg.num_hidden_layers)
    eps = float(tcfg.rms_norm_eps)
    V = int(lm_head.weight.shape[0])
    G = H // Hkv
    fused_attention = uses_gqa_kernel(Dh)
    mrope = families.uses_mrope(model.config.model_type)
    qk_norm = tcfg.model_type == "qwen3_vl_text"
    levels = len(model.config.vision_config.deepstack_visual_indexes) if qk_norm else 0

    f = TensorProto.FLOAT
    inputs = [
        helper.make_tensor_value_info("inputs_embeds", f, ["batch_size", "sequence_length", D]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch_size", "total_sequence_length"]),
        helper.make_tensor_value_info("position_ids", TensorProto.INT64,
                                      [3, "batch_size", "sequence_length"] if mrope else ["batch_size", "sequence_length"]),
    ]
    if levels:
        inputs.append(helper.make_tensor_value_info("deepstack_visual_embeds", f,
                                                    [levels, "batch_size", "sequence_length", D]))
    outputs = [helper.make_tensor_value_info("logits", f, ["batch_size", 1, V])]
    for i in range(L):
        for kind in ("key", "value"):
            inputs.append(helper.make_tensor_value_info(f"past_key_values.{i}.{kind}", f,
                                                        ["batch_size", Hkv, "past_sequence_length", Dh]))
            outputs.append(helper.make_tensor_value_info(f"present.{i}.{kind}", f,
                                                         ["batch_size", Hkv, "total_sequence_length", Dh]))

    cos, sin = _rotary_caches(lm, tcfg, Dh)
    g.init("rotary_cos_cache", cos)
    g.init("rotary_sin_cache", sin)
    i64 = lambda v: g.const(np.array(v, dtype=np.int64), "i64")  # noqa: E731

    # ---- values every layer shares, computed once from the inputs ----
    mask_shape = g.op("Shape", ["attention_mask"], hint="mask_shape")
    total_1d = g.op("Slice", [mask_shape, i64([1]), i64([2])], hint="total_1d")  # [T]
    batch_1d = g.op("Slice", [mask_shape, i64([0]), i64([1])], hint="batch_1d")  # [B]
    emb_shape = g.op("Shape", ["inputs_embeds"], hint="emb_shape")
    seq_1d = g.op("Slice", [emb_shape, i64([1]), i64([2])], hint="seq_1d")  # [S]
    # rows with a zero anywhere in the mask -> the attention needs the padding bias
    mask_min = g.op("ReduceMin", ["attention_mask"], keepdims=0, hint="mask_min")
    has_pad = g.op("Equal", [mask_min, i64(0)], hint="has_pad")
    mask_f = g.op("Cast", ["attention_mask"], to=f, hint="mask_f")  # [B, T]

    # plain-op attention's inputs: one additive bias [B, 1, 1, S, T] = causal AND padding, and the rotary
    # cos/sin of every position. (With the GQA kernel these only feed the fallback branch.)
    total = g.op("Squeeze", [total_1d, i64([0])], hint="T")
    seq = g.op("Squeeze", [seq_1d, i64([0])], hint="S")
    past = g.op("Sub", [total, seq], hint="P")
    t_range = g.op("Range", [i64(0), total, i64(1)], hint="t_range")
    q_range = g.op("Range", [past, total, i64(1)], hint="q_range")
    causal = g.op("LessOrEqual", [g.op("Unsqueeze", [t_range, i64([0])]), g.op("Unsqueeze", [q_range, i64([1])])],
                  hint="causal")  # [S, T]
    keep = g.op("Cast", ["attention_mask"], to=TensorProto.BOOL, hint="keep")  # [B, T]
    allowed = g.op("And", [g.op("Unsqueeze", [causal, i64([0, 1, 2])]), g.op("Unsqueeze", [keep, i64([1, 2, 3])])],
                   hint="allowed")  # [B, 1, 1, S, T]
    attn_bias5 = g.op("Where", [allowed, g.const(np.array(0.0, np.float32)), g.const(np.array(F32_MIN, np.float32))],
                      hint="attention_bias5")
    if mrope:
        # per token and frequency, the cos/sin of the position row that frequency belongs to: gather all three
        # rows' tables and keep one per frequency (a 0/1 mask summed over the rows: exact)
        onehot = (mrope_row_map(tcfg, Dh // 2)[None, :] == np.arange(3)[:, None]).astype(np.float32)
        sel = g.const(onehot.reshape(3, 1, 1, Dh // 2), "mrope_rows")

        def per_token(cache, hint):
            rows3 = g.op("Gather", [cache, "position_ids"], hint=hint + "3")  # [3, B, S, Dh/2]
            return g.op("ReduceSum", [g.op("Mul", [rows3, sel]), i64([0])], keepdims=0, hint=hint)  # [B, S, Dh/2]

        cos_g = g.op("Unsqueeze", [per_token("rotary_cos_cache", "cos_tok"), i64([2])], hint="cos")
        sin_g = g.op("Unsqueeze", [per_token("rotary_sin_cache", "sin_tok"), i64([2])], hint="sin")
    else:
        cos_g = g.op("Unsqueeze", [g.op("Gather", ["rotary_cos_cache", "position_ids"]), i64([2])], hint="cos")  # [B,S,1,Dh/2]
        sin_g = g.op("Unsqueeze", [g.op("Gather", ["rotary_sin_cache", "position_ids"]), i64([2])], hint="sin")
    scale = g.const(np.array(Dh ** -0.5, np.float32), "scale")

    if fused_attention:
        total_i32 = g.op("Cast", [total], to=TensorProto.INT32, hint="total_seq_len")
        seqlens = g.op("Expand", [g.op("Sub", [total_i32, g.const(np.array(1, np.int32))]), batch_1d],
                       hint="seqlens_k")  # int32 [B]: every row uses keys 0..total-1 (pads masked by the bias)
        # attention_bias [B, 1, S, T]: 0 for real keys, float32 min for pad keys
        pad_bias = g.op("Mul", [g.op("Sub", [g.const(np.array(1.0, np.float32)), mask_f]),
                                g.const(np.array(F32_MIN, np.float32))], hint="pad_bias")
        pad_bias4 = g.op("Unsqueeze", [pad_bias, i64([1, 2])], hint="pad_bias4")
        bias_shape = g.op("Concat", [batch_1d, i64([1]), seq_1d, total_1d], axis=0, hint="bias_shape")
        attn_bias = g.op("Expand", [pad_bias4, bias_shape], hint="attention_bias")
        split_sizes = i64([H * Dh, Hkv * Dh, Hkv * Dh])
        # Which kernel a call can use (GQA on CPU: batch 1 whenever new tokens meet a past):
        one = i64(1)
        batch = g.op("Squeeze", [batch_1d, i64([0])], hint="B")
        gqa_shape_ok = g.op("Or", [g.op("Or", [g.op("Equal", [batch, one]), g.op("Equal", [seq, one])]),
                                   g.op("Equal", [past, i64(0)])], hint="gqa_shape_ok")
        use_gqa = g.op("And", [g.op("Not", [has_pad]), gqa_shape_ok], hint="use_gqa")
        use_gqa_bias = g.op("Equal", [past, i64(0)], hint="use_gqa_bias")  # (in the else branch: padded)

    def rotate(x_bshd: str) -> str:
        """Plain-op rotary on [B, S, heads, Dh] (rotate_half convention)."""
        x1 = g.op("Slice", [x_bshd, i64([0]), i64([Dh // 2]), i64([3])])
        x2 = g.op("Slice", [x_bshd, i64([Dh // 2]), i64([Dh]), i64([3])])
        a = g.op("Sub", [g.op("Mul", [x1, cos_g]), g.op("Mul", [x2, sin_g])])
        b = g.op("Add", [g.op("Mul", [x2, cos_g]), g.op("Mul", [x1, sin_g])])
        return g.op("Concat", [a, b], axis=3)

    def plain_attention(i: int, qkv: str, outs: list[str]) -> None:
        """Grouped attention in plain ops: any head size, any padding, any batch/past combination."""
        pk, pv = f"past_key_values.{i}.key", f"past_key_values.{i}.value"
        attn_out, ok, ov = outs
        if isinstance(qkv, tuple):  # M-RoPE: q, k already normed and rotated, in [B, S, heads*Dh]
            q, k, v = qkv
            q4 = g.op("Reshape", [q, i64([0, 0, H, Dh])])
            k4 = g.op("Reshape", [k, i64([0, 0, Hkv, Dh])])
        else:
            q, k, v = g.op("Split", [qkv, i64([H * Dh, Hkv * Dh, Hkv * Dh])], outputs=3, axis=2)
            q4 = rotate(g.op("Reshape", [q, i64([0, 0, H, Dh])]))  # [B,S,H,Dh]
            k4 = rotate(g.op("Reshape", [k, i64([0, 0, Hkv, Dh])]))
        v4 = g.op("Reshape", [v, i64([0, 0, Hkv, Dh])])
        kt = g.op("Concat", [pk, g.op("Transpose", [k4], perm=[0, 2, 1, 3])], axis=2, outputs=[ok])
        vt = g.op("Concat", [pv, g.op("Transpose", [v4], perm=[0, 2, 1, 3])], axis=2, outputs=[ov])
        # queries grouped by their KV head: [B, Hkv, G*S, Dh] (head h uses kv head h // G)
        qg = g.op("Reshape", [g.op("Transpose", [q4], perm=[0, 2, 1, 3]), i64([0, Hkv, -1, Dh])])
        scores = g.op("Mul", [g.op("MatMul", [qg, g.op("Transpose", [kt], perm=[0, 1, 3, 2])]), scale])
        scores5 = g.op("Reshape", [scores, g.op("Concat", [i64([0, Hkv, G]), seq_1d, total_1d], axis=0)])
        probs = g.op("Softmax", [g.op("Add", [scores5, attn_bias5])], axis=-1)
        ctx = g.op("MatMul", [g.op("Reshape", [probs, g.op("Concat", [i64([0, Hkv, -1]), total_1d], axis=0)]), vt])
        ctx = g.op("Reshape", [ctx, i64([0, H, -1, Dh])])  # [B, H, S, Dh]
        g.op("Reshape", [g.op("Transpose", [ctx], perm=[0, 2, 1, 3]), i64([0, 0, H * Dh])], outputs=[attn_out])

    def branch_graph(name: str, outs: list[str], build) -> onnx.GraphProto:
        """A subgraph whose nodes are what `build()` adds (constants stay in the outer graph)."""
        saved, g.nodes = g.nodes, []
        build()
        nodes, g.nodes = g.nodes, saved
        return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(o, f, None) for o in outs])

    def attention(i: int, qkv: str) -> str:
        pk, pv = f"past_key_values.{i}.key", f"past_key_values.{i}.value"
        ok, ov = f"present.{i}.key", f"present.{i}.value"
        attn = g.name(f"l{i}_attn")
        if not fused_attention:
            plain_attention(i, qkv, [attn, ok, ov])
            return attn

        def names(tag):
            return [f"l{i}_{tag}_attn", f"l{i}_{tag}_k", f"l{i}_{tag}_v"]

        def gqa_nopad():
            if mrope:  # rotated outside: GQA without rotary
                q, k, v = qkv
                g.nodes.append(helper.make_node(
                    "GroupQueryAttention", [q, k, v, pk, pv, seqlens, total_i32], names("gqa"), name=f"l{i}_gqa",
                    domain="com.microsoft", num_heads=H, kv_num_heads=Hkv, do_rotary=0, scale=Dh ** -0.5))
                return
            # no padding: position_ids = past + 0..seq-1, which is what GQA's own rotary uses
            g.nodes.append(helper.make_node(
                "GroupQueryAttention", [qkv, "", "", pk, pv, seqlens, total_i32, "rotary_cos_cache", "rotary_sin_cache"],
                names("gqa"), name=f"l{i}_gqa", domain="com.microsoft",
                num_heads=H, kv_num_heads=Hkv, do_rotary=1, scale=Dh ** -0.5))

        def gqa_padded_prompt():
            if mrope:
                q, k, v = qkv
                g.nodes.append(helper.make_node(
                    "GroupQueryAttention", [q, k, v, pk, pv, seqlens, total_i32, "", "", "", attn_bias],
                    names("gqab"), name=f"l{i}_gqab", domain="com.microsoft", num_heads=H, kv_num_heads=Hkv,
                    do_rotary=0, scale=Dh ** -0.5))
                return
            # a left-padded first prompt: GQA's rotary ignores position_ids there (it rotates by the index),
            # so rotary runs as its own op with the real position ids; pad keys are masked by the bias
            q, k, v, qr, kr = (f"l{i}_gqab_{n}_in" for n in ("q", "k", "v", "qr", "kr"))
            g.nodes += [
                helper.make_node("Split", [qkv, split_sizes], [q, k, v], name=f"l{i}_gqab_split", axis=2),
                helper.make_node("RotaryEmbedding", [q, "position_ids", "rotary_cos_cache", "rotary_sin_cache"],
                                 [qr], name=f"l{i}_gqab_rope_q", domain="com.microsoft", num_heads=H),
                helper.make_node("RotaryEmbedding", [k, "position_ids", "rotary_cos_cache", "rotary_sin_cache"],
                                 [kr], name=f"l{i}_gqab_rope_k", domain="com.microsoft", num_heads=Hkv),
                helper.make_node("GroupQueryAttention", [qr, kr, v, pk, pv, seqlens, total_i32, "", "", "", attn_bias],
                                 names("gqab"), name=f"l{i}_gqab", domain="com.microsoft",
                                 num_heads=H, kv_num_heads=Hkv, do_rotary=0, scale=Dh ** -0.5),
            ]

        def fallback():
            # padded: a padded first prompt goes to GQA with the bias, everything else (padded decode and
            # chunks, unpadded chunks of a batch) to the plain-op attention
            g.nodes.append(helper.make_node(
                "If", [use_gqa_bias], names("fb"), name=f"l{i}_attention_fallback",
                then_branch=branch_graph(f"l{i}_gqab", names("gqab"), gqa_padded_prompt),
                else_branch=branch_graph(f"l{i}_plain", names("plain"), lambda: plain_attention(i, qkv, names("plain")))))

        g.nodes.append(helper.make_node("If", [use_gqa], [attn, ok, ov], name=f"l{i}_attention",
                                        then_branch=branch_graph(f"l{i}_gqa", names("gqa"), gqa_nopad),
                                        else_branch=branch_graph(f"l{i}_fb", names("fb"), fallback)))
        return attn

    x_prev = None  # output of the previous sub-block, added to the residual by the next norm
    resid = "inputs_embeds"
    for i, layer in enumerate(lm.layers):
        at, mlp = layer.self_attn, layer.mlp
        w_in = g.init(f"layers.{i}.input_layernorm.weight", _np(layer.input_layernorm.weight))
        if x_prev is None:
            h = g.op("SimplifiedLayerNormalization", [resid, w_in], axis=-1, epsilon=eps, stash_type=1, hint=f"l{i}_ln1")
        else:
            h, resid_new = g.name(f"l{i}_ln1"), g.name(f"l{i}_resid1")
            g.op("SkipSimplifiedLayerNormalization", [x_prev, resid, w_in], outputs=[h, "", "", resid_new],
                 domain="com.microsoft", epsilon=eps)
            resid = resid_new
        wq, wk, wv = (_np(p.weight).T for p in (at.q_proj, at.k_proj, at.v_proj))
        wqkv = g.init(f"layers.{i}.attn.qkv_proj.weight", np.concatenate([wq, wk, wv], axis=1))
        qkv = g.op("MatMul", [h, wqkv], hint=f"l{i}_qkv")
        biases = [p.bias for p in (at.q_proj, at.k_proj, at.v_proj)]
        if any(b is not None for b in biases):
            if not all(b is not None for b in biases):
                raise Unsupported("bias on some of q/k/v only")
            bqkv = g.init(f"layers.{i}.attn.qkv_proj.bias", np.concatenate([_np(b) for b in biases]))
            qkv = g.op("Add", [qkv, bqkv], hint=f"l{i}_qkv_b")
        if at.o_proj.bias is not None:
            raise Unsupported("o_proj bias")
        if mrope:
            q, k, v = g.op("Split", [qkv, i64([H * Dh, Hkv * Dh, Hkv * Dh])], outputs=3, axis=2, hint=f"l{i}_qkv_split")
            q4 = g.op("Reshape", [q, i64([0, 0, H, Dh])])
            k4 = g.op("Reshape", [k, i64([0, 0, Hkv, Dh])])
            if qk_norm:  # Qwen3: RMSNorm over head_dim on q and k, before the rotary
                q4 = g.op("SimplifiedLayerNormalization", [q4, g.init(f"layers.{i}.attn.q_norm.weight",
                                                                      _np(at.q_norm.weight))],
                          axis=-1, epsilon=float(at.q_norm.variance_epsilon), stash_type=1)
                k4 = g.op("SimplifiedLayerNormalization", [k4, g.init(f"layers.{i}.attn.k_norm.weight",
                                                                      _np(at.k_norm.weight))],
                          axis=-1, epsilon=float(at.k_norm.variance_epsilon), stash_type=1)
            qr = g.op("Reshape", [rotate(q4), i64([0, 0, H * Dh])], hint=f"l{i}_q_rot")
            kr = g.op("Reshape", [rotate(k4), i64([0, 0, Hkv * Dh])], hint=f"l{i}_k_rot")
            qkv = (qr, kr, v)
        elif getattr(at, "q_norm", None) is not None:
            raise Unsupported("q/k norm")
        attn = attention(i, qkv)
        o = g.op("MatMul", [attn, g.init(f"layers.{i}.attn.o_proj.weight", _np(at.o_proj.weight).T)], hint=f"l{i}_o")
        w_post = g.init(f"layers.{i}.post_attention_layernorm.weight", _np(layer.post_attention_layernorm.weight))
        h2, resid_new = g.name(f"l{i}_ln2"), g.name(f"l{i}_resid2")
        g.op("SkipSimplifiedLayerNormalization", [o, resid, w_post], outputs=[h2, "", "", resid_new], domain="com.microsoft",
             epsilon=eps)
        resid = resid_new
        I = int(mlp.gate_proj.weight.shape[0])
        wgu = g.init(f"layers.{i}.mlp.gate_up_proj.weight",
                     np.concatenate([_np(mlp.gate_proj.weight).T, _np(mlp.up_proj.weight).T], axis=1))
        gu = g.op("MatMul", [h2, wgu], hint=f"l{i}_gate_up")
        gate, up = g.op("Split", [gu, i64([I, I])], outputs=2, axis=2, hint=f"l{i}_split")
        act = g.op("Mul", [g.op("Mul", [gate, g.op("Sigmoid", [gate])]), up], hint=f"l{i}_swiglu")
        x_prev = g.op("MatMul", [act, g.init(f"layers.{i}.mlp.down_proj.weight", _np(mlp.down_proj.weight).T)],
                      hint=f"l{i}_down")
        if i < levels:
            # Qwen3-VL DeepStack: hidden = (residual + mlp) + deepstack_visual_embeds[i], in transformers' order
            full = g.op("Add", [resid, x_prev], hint=f"l{i}_out")
            level = g.op("Squeeze", [g.op("Gather", ["deepstack_visual_embeds", i64([i])], axis=0), i64([0])])
            resid = g.op("Add", [full, level], hint=f"l{i}_deep")
            x_prev = None

    # last position only: final norm + lm_head on [B, 1, D]
    last = lambda t: g.op("Slice", [t, i64([-1]), i64([np.iinfo(np.int64).max]), i64([1])])  # noqa: E731
    if x_prev is None:  # the last layer added DeepStack features (tiny test models)
        y = g.op("SimplifiedLayerNormalization", [last(resid), g.init("norm.weight", _np(lm.norm.weight))], axis=-1,
                 epsilon=eps, stash_type=1, hint="final_norm")
    else:
        y = g.op("SkipSimplifiedLayerNormalization", [last(x_prev), last(resid), g.init("norm.weight", _np(lm.norm.weight))],
                 outputs=1, domain="com.microsoft", epsilon=eps, hint="final_norm")
    g.op("MatMul", [y, g.init("lm_head.weight", _np(lm_head.weight).T)], outputs=["logits"])

    graph = helper.make_graph(g.nodes, "decoder_model_merged", inputs, outputs, g.inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)],
                          producer_name="vidlm_export.fused")
    m.ir_version = 10
    kind = "fused-gqa" if fused_attention else "fused-plain-attention"
    if mrope:
        # Not "fused-gqa": the runtime's in-place KV cache (past_present_share_buffer) is enabled by that value and
        # has not been tested with these graphs yet.
        kind += "-mrope"
    helper.set_model_props(m, {"vidlm.decoder": kind})
    return m
