"""Model configs built from transformers config classes: the real-size architectures of the four
checkpoints (hf-llava-family-spec.md §4-§5) and tiny scaled-down versions with the same structure.

Tiny versions keep, per family: the vision feature layer (relative, e.g. -2 of a 3-layer tower), the
select strategy, the projector, OV's bilinear ceil(g/2) pooling on an ODD grid (7 -> 4), NV's 2x2
average pooling on an EVEN grid (8 -> 4), image_newline, anyres pinpoints scaled to the tiny image
size, Qwen2's qkv bias and tied embeddings, Llama's untied lm_head, NV's linear RoPE scaling x2, and
the GQA head ratio (OV 14:2 -> 7:1). Vocabularies stay full size so that real tokenizers work.
"""

from __future__ import annotations

from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaNextVideoConfig,
    LlavaOnevisionConfig,
    Qwen2Config,
    SiglipVisionConfig,
    VideoLlavaConfig,
)

FAMILY_KEYS = ("interleave", "onevision", "video_llava", "llava_next_video")

QWEN_IDS = dict(bos_token_id=151643, eos_token_id=151645)
LLAMA_IDS = dict(bos_token_id=1, eos_token_id=2)


def _siglip(tiny: bool, init: float):
    if tiny:
        return SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  image_size=28, patch_size=4, vision_use_head=False, layer_norm_eps=1e-6,
                                  hidden_act="gelu_pytorch_tanh")
    return SiglipVisionConfig(hidden_size=1152, intermediate_size=4304, num_hidden_layers=26, num_attention_heads=16,
                              image_size=384, patch_size=14, vision_use_head=False, layer_norm_eps=1e-6,
                              hidden_act="gelu_pytorch_tanh")


def _clip(tiny: bool, image_size: int, init: float):
    if tiny:
        return CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2,
                                image_size=image_size, patch_size=4, hidden_act="quick_gelu", projection_dim=16,
                                layer_norm_eps=1e-5, initializer_range=init)
    return CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                            image_size=image_size, patch_size=14, hidden_act="quick_gelu", projection_dim=768,
                            layer_norm_eps=1e-5)


def interleave(tiny: bool = True, init: float = 0.3):
    v = _siglip(tiny, init)
    if tiny:
        t = Qwen2Config(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=4, vocab_size=152000, tie_word_embeddings=True, rms_norm_eps=1e-6,
                        max_position_embeddings=32768, rope_parameters={"rope_type": "default", "rope_theta": 1e6},
                        initializer_range=init, use_sliding_window=False, **QWEN_IDS)
    else:
        t = Qwen2Config(hidden_size=1024, intermediate_size=2816, num_hidden_layers=24, num_attention_heads=16,
                        num_key_value_heads=16, vocab_size=152000, tie_word_embeddings=True, rms_norm_eps=1e-6,
                        max_position_embeddings=32768, rope_parameters={"rope_type": "default", "rope_theta": 1e6},
                        use_sliding_window=False, **QWEN_IDS)
    grid = v.image_size // v.patch_size
    return LlavaConfig(vision_config=v, text_config=t, image_token_index=151646, image_seq_length=grid * grid,
                       projector_hidden_act="gelu", vision_feature_select_strategy="full", vision_feature_layer=-1,
                       tie_word_embeddings=True, **({"initializer_range": init} if tiny else {}))


def onevision(tiny: bool = True, init: float = 0.3):
    v = _siglip(tiny, init)
    if tiny:
        t = Qwen2Config(hidden_size=28, intermediate_size=56, num_hidden_layers=2, num_attention_heads=7,
                        num_key_value_heads=1, vocab_size=152000, tie_word_embeddings=True, rms_norm_eps=1e-6,
                        max_position_embeddings=32768, rope_parameters={"rope_type": "default", "rope_theta": 1e6},
                        initializer_range=init, use_sliding_window=False, **QWEN_IDS)
    else:
        t = Qwen2Config(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                        num_key_value_heads=2, vocab_size=152000, tie_word_embeddings=True, rms_norm_eps=1e-6,
                        max_position_embeddings=32768, rope_parameters={"rope_type": "default", "rope_theta": 1e6},
                        use_sliding_window=False, **QWEN_IDS)
    s = v.image_size
    pinpoints = [[s * a, s * b] for a in range(1, 7) for b in range(1, 7)]
    return LlavaOnevisionConfig(vision_config=v, text_config=t, image_token_index=151646, video_token_index=151647,
                                projector_hidden_act="gelu", vision_feature_select_strategy="full",
                                vision_feature_layer=-1, image_grid_pinpoints=pinpoints,
                                vision_aspect_ratio="anyres_max_9", tie_word_embeddings=True,
                                **({"initializer_range": init} if tiny else {}))


def _llama(tiny: bool, init: float, rope_scaling: bool):
    rope = {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0} if rope_scaling else {
        "rope_type": "default", "rope_theta": 10000.0}
    if tiny:
        return LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=4, vocab_size=32064, tie_word_embeddings=False, rms_norm_eps=1e-5,
                           max_position_embeddings=4096, rope_parameters=rope, initializer_range=init,
                           pad_token_id=0 if rope_scaling else 32002, **LLAMA_IDS)
    return LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=32, vocab_size=32064, tie_word_embeddings=False, rms_norm_eps=1e-5,
                       max_position_embeddings=4096, rope_parameters=rope,
                       pad_token_id=0 if rope_scaling else 32002, **LLAMA_IDS)


def video_llava(tiny: bool = True, init: float = 0.3):
    v = _clip(tiny, 28 if tiny else 224, init)
    t = _llama(tiny, init, rope_scaling=False)
    grid = v.image_size // v.patch_size
    return VideoLlavaConfig(vision_config=v, text_config=t, image_token_index=32000, video_token_index=32001,
                            projector_hidden_act="gelu", vision_feature_select_strategy="default",
                            vision_feature_layer=-2, image_seq_length=grid * grid,
                            video_seq_length=8 * (grid * grid + 1), tie_word_embeddings=False,
                            pad_token_id=32002, **({"initializer_range": init} if tiny else {}))


def next_video(tiny: bool = True, init: float = 0.3):
    v = _clip(tiny, 32 if tiny else 336, init)
    t = _llama(tiny, init, rope_scaling=True)
    s = v.image_size
    grid = s // v.patch_size
    pinpoints = [[s, 2 * s], [2 * s, s], [2 * s, 2 * s], [3 * s, s], [s, 3 * s]]
    return LlavaNextVideoConfig(vision_config=v, text_config=t, image_token_index=32001, video_token_index=32000,
                                projector_hidden_act="gelu", vision_feature_select_strategy="default",
                                vision_feature_layer=-2, image_grid_pinpoints=pinpoints, spatial_pool_mode="average",
                                spatial_pool_stride=2, image_seq_length=grid * grid,
                                video_seq_length=(grid // 2) ** 2 * 8, tie_word_embeddings=False,
                                **({"initializer_range": init} if tiny else {}))


BUILDERS = {"interleave": interleave, "onevision": onevision, "video_llava": video_llava, "llava_next_video": next_video}


def build_random_model(config, seed: int, out_dir, dtype=None, logit_gain: float = 1.0):
    """Instantiates `config` with random weights (fixed seed) and saves it with save_pretrained.

    `logit_gain` multiplies the language model's final RMSNorm weight: the tiny test models use it to set
    the absolute logit scale (random_checkpoint.TINY_LOGIT_GAIN)."""
    import torch
    from transformers import AutoModelForImageTextToText  # noqa: F401
    from . import families

    fam = families.family_of(config)
    cls = families.model_class(fam)
    torch.manual_seed(seed)
    model = cls(config)
    if logit_gain != 1.0:
        with torch.no_grad():
            model.model.language_model.norm.weight.mul_(logit_gain)
    if dtype is not None:
        model = model.to(dtype)
    model.eval()
    model.save_pretrained(out_dir)
    return model


# ----------------------------------------------------------------------------------------------
# Qwen2.5-VL and Qwen3-VL (issue 20). Tiny: the real structure at toy widths — Qwen2.5-VL: 3 vision
# blocks, block 1 full attention, blocks 0 and 2 windowed (window_size 56 = 2x2 merge units of 14-px
# patches, so the fixtures' frames have several windows, some partial); Qwen3-VL: 3 vision blocks, all
# three DeepStack levels (after vision blocks 0, 1, 2 -> added after decoder layers 0, 1, 2), a 6x6
# learned position grid interpolated to every frame grid. Text: head_dim 16 with M-RoPE sections summing
# to 8 (Qwen2.5-VL [2, 3, 3] consecutive; Qwen3-VL [4, 2, 2] interleaved), GQA 2:1, tied embeddings.
# Real: Qwen2.5-VL-3B-Instruct and Qwen3-VL-2B-Instruct's config.json values.
QWEN_VL_IDS = dict(image_token_id=151655, video_token_id=151656, vision_start_token_id=151652,
                   vision_end_token_id=151653)


def qwen2_5_vl(tiny: bool = True, init: float = 0.3):
    from transformers import Qwen2_5_VLConfig

    if tiny:
        vision = dict(depth=3, hidden_size=16, intermediate_size=32, num_heads=2, in_channels=3, patch_size=14,
                      spatial_merge_size=2, temporal_patch_size=2, tokens_per_second=2, window_size=56,
                      out_hidden_size=32, fullatt_block_indexes=[1], hidden_act="silu", initializer_range=init)
        text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                    num_key_value_heads=1, vocab_size=151936, rms_norm_eps=1e-6, max_position_embeddings=32768,
                    rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
                    tie_word_embeddings=True, use_sliding_window=False, initializer_range=init,
                    bos_token_id=151643, eos_token_id=151645)
    else:
        vision = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, in_channels=3, patch_size=14,
                      spatial_merge_size=2, temporal_patch_size=2, tokens_per_second=2, window_size=112,
                      out_hidden_size=2048, fullatt_block_indexes=[7, 15, 23, 31], hidden_act="silu")
        text = dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
                    num_key_value_heads=2, vocab_size=151936, rms_norm_eps=1e-6, max_position_embeddings=128000,
                    rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]},
                    tie_word_embeddings=True, use_sliding_window=False, bos_token_id=151643, eos_token_id=151645)
    return Qwen2_5_VLConfig(vision_config=vision, text_config=text, tie_word_embeddings=True, **QWEN_VL_IDS,
                            **({"initializer_range": init} if tiny else {}))


def qwen3_vl(tiny: bool = True, init: float = 0.3):
    from transformers import Qwen3VLConfig

    if tiny:
        vision = dict(depth=3, hidden_size=16, intermediate_size=32, num_heads=2, in_channels=3, patch_size=16,
                      spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=32, num_position_embeddings=36,
                      deepstack_visual_indexes=[0, 1, 2], hidden_act="gelu_pytorch_tanh", initializer_range=init)
        text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                    num_key_value_heads=1, head_dim=16, vocab_size=151936, rms_norm_eps=1e-6,
                    max_position_embeddings=32768, tie_word_embeddings=True, initializer_range=init,
                    rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_section": [4, 2, 2],
                                     "mrope_interleaved": True},
                    bos_token_id=151643, eos_token_id=151645)
    else:
        vision = dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, in_channels=3, patch_size=16,
                      spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=2048, num_position_embeddings=2304,
                      deepstack_visual_indexes=[5, 11, 17], hidden_act="gelu_pytorch_tanh")
        text = dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                    num_key_value_heads=8, head_dim=128, vocab_size=151936, rms_norm_eps=1e-6,
                    max_position_embeddings=262144, tie_word_embeddings=True,
                    rope_parameters={"rope_type": "default", "rope_theta": 5e6, "mrope_section": [24, 20, 20],
                                     "mrope_interleaved": True},
                    bos_token_id=151643, eos_token_id=151645)
    return Qwen3VLConfig(vision_config=vision, text_config=text, tie_word_embeddings=True, **QWEN_VL_IDS,
                         **({"initializer_range": init} if tiny else {}))


BUILDERS.update({"qwen2_5_vl": qwen2_5_vl, "qwen3_vl": qwen3_vl})
