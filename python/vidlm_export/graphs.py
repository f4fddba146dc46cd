"""Graph specifications: wrapper module, input/output names, sample inputs, dynamic axes, validation cases."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from . import fused
from .families import Family
from .wrappers import Decoder, EmbedTokens, VideoEncoder, VisionEncoder, kv_shape


@dataclass
class GraphSpec:
    name: str  # file stem without precision suffix, e.g. "decoder_model_merged"
    module: torch.nn.Module
    input_names: list[str]
    output_names: list[str]
    # dynamic axes per input/output name: {axis: dim name}
    dynamic_axes: dict[str, dict[int, str]]
    # builds the export sample inputs for a float dtype
    sample: Callable[[torch.dtype], tuple]
    # validation cases: list of (label, builder(dtype) -> (args tuple, compare-mask dict))
    cases: list[tuple[str, Callable]] = field(default_factory=list)
    doc: str = ""
    # If the wrapper takes a flat list as its last argument (decoder's past), how many leading tensor args.
    list_tail_after: int | None = None
    # Builds the float32 graph directly (an onnx.ModelProto) instead of tracing `module` with the exporter;
    # raises fused.Unsupported when it cannot, and the exporter's graph is used. Called with the path of the
    # graph's external data file, which it may write the weights to (then the proto only refers to them).
    builder: Callable | None = None
    # Apply onnxscript's ONNX Runtime fusions to the exporter's float32 graph (the vision towers).
    ort_fusions: bool = False


def _gen(seed: int) -> torch.Generator:
    g = torch.Generator().manual_seed(seed)
    return g


def vision_size(vision_config) -> int:
    return int(vision_config.image_size)


def build_specs(model, fam: Family) -> list[GraphSpec]:
    cfg = model.config
    if fam.mrope:
        from . import qwen

        return qwen.build_specs(model, fam)
    vcfg = cfg.vision_config
    tcfg = cfg.text_config
    size = vision_size(vcfg)
    specs: list[GraphSpec] = []

    def pix(n, dtype, seed):
        return (torch.randn(n, 3, size, size, generator=_gen(seed)) * 1.0).to(dtype)

    specs.append(
        GraphSpec(
            name="vision_encoder",
            module=VisionEncoder(model).eval(),
            input_names=["pixel_values"],
            output_names=["image_features"],
            dynamic_axes={"pixel_values": {0: "num_images"}, "image_features": {0: "num_images"}},
            sample=lambda dt: (pix(2, dt, 1),),
            cases=[("3 images", lambda dt: ((pix(3, dt, 2),), {}))],
            doc=fam.image_graph_doc,
            ort_fusions=True,
        )
    )

    if fam.has_video_graph:

        def vid(b, t, dtype, seed):
            return torch.randn(b, t, 3, size, size, generator=_gen(seed)).to(dtype)

        specs.append(
            GraphSpec(
                name="video_encoder",
                module=VideoEncoder(model).eval(),
                input_names=["pixel_values_videos"],
                output_names=["video_features"],
                dynamic_axes={
                    "pixel_values_videos": {0: "num_videos", 1: "num_frames"},
                    "video_features": {0: "num_videos", 1: "video_tokens"},
                },
                sample=lambda dt: (vid(2, 2, dt, 3),),
                cases=[
                    ("1 video x 3 frames", lambda dt: ((vid(1, 3, dt, 4),), {})),
                    ("2 videos x 1 frame", lambda dt: ((vid(2, 1, dt, 5),), {})),
                ],
                doc=fam.video_graph_doc,
                ort_fusions=True,
            )
        )

    vocab = tcfg.vocab_size

    def ids(b, s, seed):
        return torch.randint(0, vocab, (b, s), generator=_gen(seed), dtype=torch.long)

    specs.append(
        GraphSpec(
            name="embed_tokens",
            module=EmbedTokens(model).eval(),
            input_names=["input_ids"],
            output_names=["inputs_embeds"],
            dynamic_axes={"input_ids": {0: "batch_size", 1: "sequence_length"},
                          "inputs_embeds": {0: "batch_size", 1: "sequence_length"}},
            sample=lambda dt: (ids(2, 4, 6),),
            cases=[("batch 3 x seq 5", lambda dt: ((ids(3, 5, 7),), {}))],
            doc="input_ids -> inputs_embeds (the token embedding table).",
        )
    )

    n_layers = tcfg.num_hidden_layers
    kv_heads, head_dim = kv_shape(tcfg)
    embed = model.get_input_embeddings()
    past_names, present_names = [], []
    for i in range(n_layers):
        past_names += [f"past_key_values.{i}.key", f"past_key_values.{i}.value"]
        present_names += [f"present.{i}.key", f"present.{i}.value"]

    def embeds(b, s, seed, dtype):
        with torch.no_grad():
            return embed(ids(b, s, seed)).to(dtype)

    def mask_and_pos(b, past, seq, pad_rows):
        total = past + seq
        mask = torch.ones(b, total, dtype=torch.long)
        for row, npad in pad_rows.items():
            mask[row, :npad] = 0
        pos = mask.cumsum(-1) - 1
        pos = pos.masked_fill(mask == 0, 1)
        return mask, pos[:, past:]

    def pasts(b, past, seed, dtype):
        g = _gen(seed)
        return [torch.randn(b, kv_heads, past, head_dim, generator=g).to(dtype) for _ in range(2 * n_layers)]

    def decoder_sample(dt):
        b, s, p = 2, 4, 3
        mask, pos = mask_and_pos(b, p, s, {})
        return (embeds(b, s, 8, dt), mask, pos, pasts(b, p, 9, dt))

    def case_prefill(dt):
        b, s = 2, 7
        mask, pos = mask_and_pos(b, 0, s, {1: 2})
        return (embeds(b, s, 10, dt), mask, pos, pasts(b, 0, 11, dt)), {"pad": {1: 2}}

    def case_decode(dt):
        b, s, p = 2, 1, 6
        mask, pos = mask_and_pos(b, p, s, {1: 2})
        return (embeds(b, s, 12, dt), mask, pos, pasts(b, p, 13, dt)), {"pad": {1: 2}}

    # Without padding (every batch of one): graphs may take a different path when the mask has no zero.
    def case_prefill_nopad(dt):
        b, s = 1, 6
        mask, pos = mask_and_pos(b, 0, s, {})
        return (embeds(b, s, 14, dt), mask, pos, pasts(b, 0, 15, dt)), {}

    def case_decode_nopad(dt):
        b, s, p = 1, 1, 5
        mask, pos = mask_and_pos(b, p, s, {})
        return (embeds(b, s, 16, dt), mask, pos, pasts(b, p, 17, dt)), {}

    # Several new tokens on top of a cache (chunked prefill, a follow-up turn).
    def case_chunk(dt):
        b, s, p = 2, 3, 4
        mask, pos = mask_and_pos(b, p, s, {1: 1})
        return (embeds(b, s, 18, dt), mask, pos, pasts(b, p, 19, dt)), {"pad": {1: 1}}

    def case_chunk_nopad(dt):
        b, s, p = 1, 3, 4
        mask, pos = mask_and_pos(b, p, s, {})
        return (embeds(b, s, 20, dt), mask, pos, pasts(b, p, 21, dt)), {}

    dyn = {
        "inputs_embeds": {0: "batch_size", 1: "sequence_length"},
        "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
        "position_ids": {0: "batch_size", 1: "sequence_length"},
        "logits": {0: "batch_size"},
    }
    for n in past_names:
        dyn[n] = {0: "batch_size", 2: "past_sequence_length"}
    for n in present_names:
        dyn[n] = {0: "batch_size", 2: "total_sequence_length"}

    specs.append(
        GraphSpec(
            name="decoder_model_merged",
            module=Decoder(model).eval(),
            input_names=["inputs_embeds", "attention_mask", "position_ids", *past_names],
            output_names=["logits", *present_names],
            dynamic_axes=dyn,
            sample=decoder_sample,
            cases=[("prefill b2 s7 past0 leftpad", case_prefill), ("decode b2 s1 past6 leftpad", case_decode),
                   ("prefill b1 s6 past0", case_prefill_nopad), ("decode b1 s1 past5", case_decode_nopad),
                   ("chunk b2 s3 past4 leftpad", case_chunk), ("chunk b1 s3 past4", case_chunk_nopad)],
            doc=(
                "One graph for prefill (past length 0) and decode. logits are for the LAST position only: "
                "[batch, 1, vocab]. present.{i}.* = concat(past, new) along axis 2."
            ),
            list_tail_after=3,
            builder=lambda data_path=None: fused.build_decoder(model, data_path),
        )
    )
    return specs
