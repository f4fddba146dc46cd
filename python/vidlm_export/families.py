"""What differs between the families (the four LLaVA ones, Qwen2.5-VL, Qwen3-VL), as far as export is concerned.

Everything here is read from the checkpoint's `config.json` (never assumed): the family is
`config.model_type`, token ids come from the config, and the host-side responsibilities the
manifest records follow from the family.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import transformers


@dataclass(frozen=True)
class Family:
    """Static facts about one family."""

    model_type: str
    name: str
    model_class: str
    # Graphs this family exports, besides embed_tokens and decoder_model_merged.
    has_video_graph: bool
    # Video graph input is [batch, frames, 3, H, W]; description of what it does.
    video_graph_doc: str
    image_graph_doc: str
    has_image_newline: bool
    host_side: tuple[str, ...] = field(default_factory=tuple)
    # The Qwen-VL line: one patchified vision graph for images and video (host tables per grid) and a
    # language model with 3-row M-RoPE position ids (docs/onnx-graphs.md, "Qwen2.5-VL and Qwen3-VL").
    mrope: bool = False


FAMILIES: dict[str, Family] = {
    "llava": Family(
        model_type="llava",
        name="LLaVA-Interleave",
        model_class="LlavaForConditionalGeneration",
        has_video_graph=False,
        image_graph_doc=(
            "vision_tower(output_hidden_states).hidden_states[vision_feature_layer]; drop CLS if "
            "vision_feature_select_strategy == 'default'; multi_modal_projector. One row of features per "
            "input image (n = number of images or video frames)."
        ),
        video_graph_doc="(none: a video is a list of frames, each sent as an <image> and encoded by vision_encoder)",
        has_image_newline=False,
        host_side=(
            "Video = T frames, each an <image> placeholder; every frame goes through vision_encoder.",
            "Merge: the k-th position with input_id == image_token_id gets the k-th feature row "
            "(features of all images concatenated in prompt order).",
        ),
    ),
    "llava_onevision": Family(
        model_type="llava_onevision",
        name="LLaVA-OneVision",
        model_class="LlavaOnevisionForConditionalGeneration",
        has_video_graph=True,
        image_graph_doc=(
            "Per patch (anyres tile or base image): vision tower layer selection, CLS strategy, projector; "
            "NOT pooled, no newline (transformers.js-compatible). Output [n_patches, tokens, hidden]."
        ),
        video_graph_doc=(
            "transformers' get_video_features: frames -> tower -> layer selection -> CLS strategy -> projector "
            "-> bilinear interpolate grid g -> ceil(g/2) (align_corners=False) -> frames concatenated -> one "
            "image_newline appended per video. Output [batch, frames*ceil(g/2)^2 + 1, hidden]."
        ),
        has_image_newline=True,
        host_side=(
            "Images: anyres tiling in the processor (select_best_resolution, resize, pad, tiles + base image); "
            "all patches of an image go through vision_encoder; then pack_image_features on the host: tiles "
            "stitched to (27*gh, 27*gw), unpad_image with the original size, anyres_max_9 bilinear downscale when "
            "ratio > 1.1, image_newline (onnx/image_newline.safetensors) appended per row, base features first.",
            "Multi-image mode (>1 image in a conversation): one patch per image, features = vision_encoder rows "
            "+ one image_newline.",
            "Videos: video_encoder does everything including the trailing image_newline.",
            "Merge: image features into image_token_id positions, video features into video_token_id positions.",
        ),
    ),
    "video_llava": Family(
        model_type="video_llava",
        name="Video-LLaVA",
        model_class="VideoLlavaForConditionalGeneration",
        has_video_graph=True,
        image_graph_doc=(
            "image_tower -> hidden_states[vision_feature_layer] -> drop CLS ('default') -> projector. "
            "Output [n, 256-ish tokens, hidden]."
        ),
        video_graph_doc=(
            "transformers' get_video_features: video_tower (its own weights) -> hidden_states[vision_feature_layer] "
            "-> projector, CLS KEPT (grid^2 + 1 tokens per frame), frames concatenated. "
            "Output [batch, frames*(grid^2+1), hidden]."
        ),
        has_image_newline=False,
        host_side=(
            "Merge: image features into image_token_id positions, video features into video_token_id positions.",
        ),
    ),
    "llava_next_video": Family(
        model_type="llava_next_video",
        name="LLaVA-NeXT-Video",
        model_class="LlavaNextVideoForConditionalGeneration",
        has_video_graph=True,
        image_graph_doc=(
            "Per patch (anyres tile or base image): tower layer selection, drop CLS ('default'), projector; "
            "NOT pooled, no newline. Output [n_patches, grid^2, hidden]."
        ),
        video_graph_doc=(
            "transformers' get_video_features: tower -> layer selection -> drop CLS -> 2x2 AvgPool2d (BEFORE the "
            "projector) -> projector -> frames concatenated. No newline. Output [batch, frames*(grid/2)^2, hidden]."
        ),
        has_image_newline=True,
        host_side=(
            "Images: LLaVA-NeXT anyres in the processor; all patches through vision_encoder; pack_image_features "
            "on the host (stitch tiles, unpad to original size, no anyres_max downscale, image_newline from "
            "onnx/image_newline.safetensors appended per row, base features first).",
            "Videos: video_encoder does everything (no newline for video).",
            "Merge: image features into image_token_id positions, video features into video_token_id positions.",
        ),
    ),
}

FAMILIES.update({
    "qwen2_5_vl": Family(
        model_type="qwen2_5_vl",
        name="Qwen2.5-VL",
        model_class="Qwen2_5_VLForConditionalGeneration",
        has_video_graph=False,
        image_graph_doc=(
            "Qwen2.5-VL vision tower (windowed + full-attention blocks, 2D rotary, patch merger) over a batch of "
            "frames of one grid: pixel_values [frames, h*w, C*T*P*P] + host tables (window_index, "
            "reverse_window_index, rotary_cos/sin, window_gather/scatter/key_bias) -> image_features [frames, h*w/4, hidden]. "
            "Images and videos alike."
        ),
        video_graph_doc="(none: videos go through vision_encoder, one run per video grid)",
        has_image_newline=False,
        mrope=True,
        host_side=(
            "docs/onnx-graphs.md, 'Qwen2.5-VL and Qwen3-VL': per grid (h, w) the host computes window_index, "
            "reverse_window_index, rotary_cos/sin and window_gather/window_scatter/window_key_bias (vidlm_export/qwen_host.py).",
            "Merge: image features into image_token_id positions, video features into video_token_id positions.",
            "position_ids [3, batch, seq] from get_rope_index (host, once per prompt); decode steps: last prompt "
            "position + 1 + step in all three rows.",
        ),
    ),
    "qwen3_vl": Family(
        model_type="qwen3_vl",
        name="Qwen3-VL",
        model_class="Qwen3VLForConditionalGeneration",
        has_video_graph=False,
        image_graph_doc=(
            "Qwen3-VL vision tower (interpolated learned position embeddings, 2D rotary, DeepStack mergers) over a "
            "batch of frames of one grid: pixel_values [frames, h*w, C*T*P*P] + host tables (rotary_cos/sin, "
            "pos_interp_indices/weights) -> image_features [frames, h*w/4, hidden], deepstack_features "
            "[levels, frames, h*w/4, hidden]. Images and videos alike."
        ),
        video_graph_doc="(none: videos go through vision_encoder, one run per video grid)",
        has_image_newline=False,
        mrope=True,
        host_side=(
            "docs/onnx-graphs.md, 'Qwen2.5-VL and Qwen3-VL': per grid (h, w) the host computes rotary_cos/sin and "
            "pos_interp_indices/weights (vidlm_export/qwen_host.py).",
            "Merge: features into the placeholder positions; deepstack levels into a dense "
            "deepstack_visual_embeds [levels, batch, seq, hidden] at the same positions, zeros elsewhere and on "
            "decode steps.",
            "position_ids [3, batch, seq] from get_rope_index with every video split into one-frame grids (host); "
            "decode steps: last prompt position + 1 + step in all three rows.",
        ),
    ),
})


def family_of(config) -> Family:
    mt = getattr(config, "model_type", None)
    if mt not in FAMILIES:
        raise SystemExit(
            f"error: unsupported model_type {mt!r}; vidlm exports {', '.join(sorted(FAMILIES))}"
        )
    return FAMILIES[mt]


def uses_mrope(model_type: str | None) -> bool:
    """Whether `model_type` is one of the Qwen-VL families (the table's `mrope` field)."""
    fam = FAMILIES.get(model_type or "")
    return fam is not None and fam.mrope


def model_class(fam: Family):
    return getattr(transformers, fam.model_class)


def token_ids(config) -> dict:
    """Placeholder token ids, from the config only."""
    out = {}
    for key in ("image_token_id", "image_token_index", "video_token_id", "video_token_index"):
        v = getattr(config, key, None)
        if v is not None:
            out[key.replace("_index", "_id")] = int(v)
    return out
