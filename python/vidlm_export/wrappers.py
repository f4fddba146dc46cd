"""torch modules that become the ONNX graphs. Each is a thin view over the transformers model.

* `VisionEncoder`  (vision_encoder.onnx): pixel_values [n,3,H,W] -> image_features [n, tokens, lm_hidden].
  Written by hand (not `get_image_features`): llava's returns a Python list, which a trace bakes into a
  fixed frame count, and OV/NV's packs anyres tiles, which the host does (see families.py).
* `VideoEncoder`   (video_encoder.onnx): pixel_values_videos [b,T,3,H,W] -> video_features [b, tokens, lm_hidden].
  Calls the model's own `get_video_features` (tensors in, tensors out for the three video families).
* `EmbedTokens`    (embed_tokens.onnx): input_ids -> inputs_embeds.
* `Decoder`        (decoder_model_merged.onnx): one graph for prefill and decode, last-position logits only.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import DynamicCache


def _parts(model):
    """(inner LlavaXModel, lm_head) of a *ForConditionalGeneration."""
    return model.model, model.lm_head


class VisionEncoder(nn.Module):
    def __init__(self, model):
        super().__init__()
        inner, _ = _parts(model)
        cfg = model.config
        self.tower = inner.image_tower if hasattr(inner, "image_tower") else inner.vision_tower
        self.projector = inner.multi_modal_projector
        self.layer = cfg.vision_feature_layer
        self.strategy = cfg.vision_feature_select_strategy

    def forward(self, pixel_values):
        out = self.tower(pixel_values, output_hidden_states=True, return_dict=True)
        if isinstance(self.layer, int):
            h = out.hidden_states[self.layer]
            if self.strategy == "default":
                h = h[:, 1:]
        else:
            hs = [out.hidden_states[i] for i in self.layer]
            if self.strategy == "default":
                hs = [x[:, 1:] for x in hs]
            h = torch.cat(hs, dim=-1)
        return self.projector(h)


class VideoEncoder(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.inner, _ = _parts(model)

    def forward(self, pixel_values_videos):
        return self.inner.get_video_features(pixel_values_videos=pixel_values_videos, return_dict=True).pooler_output


class EmbedTokens(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.embed = model.get_input_embeddings()

    def forward(self, input_ids):
        return self.embed(input_ids)


class Decoder(nn.Module):
    """inputs_embeds, attention_mask, position_ids, past k/v (flat, key then value per layer)
    -> logits [batch, 1, vocab] (last position only), present k/v (flat)."""

    def __init__(self, model):
        super().__init__()
        inner, self.lm_head = _parts(model)
        self.lm = inner.language_model
        self.text_config = model.config.text_config
        self.num_layers = self.text_config.num_hidden_layers

    def forward(self, inputs_embeds, attention_mask, position_ids, *past):
        cache = DynamicCache(
            ddp_cache_data=[(past[2 * i], past[2 * i + 1]) for i in range(self.num_layers)],
            config=self.text_config,
        )
        out = self.lm(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
            return_dict=True,
        )
        logits = self.lm_head(out.last_hidden_state[:, -1:, :])
        presents = []
        for i in range(self.num_layers):
            presents.append(cache.layers[i].keys)
            presents.append(cache.layers[i].values)
        return (logits, *presents)


def kv_shape(text_config):
    heads = text_config.num_attention_heads
    kv = getattr(text_config, "num_key_value_heads", None) or heads
    head_dim = getattr(text_config, "head_dim", None) or text_config.hidden_size // heads
    return kv, head_dim
