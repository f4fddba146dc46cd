"""`llava-hf/LLaVA-Video-7B-Qwen2-hf` loads through the LLaVA-OneVision path (issue 20).

    .cache/venv/bin/python -m unittest python/tests/test_llava_video.py -v

That checkpoint is a `LlavaOnevisionForConditionalGeneration` (`model_type` `llava_onevision`, the
OneVision processor, chat template and video pooling) whose language model is Qwen2-7B. What sets
it apart from every fixture is the decoder: an **untied** `lm_head` on a Qwen2 decoder (qkv bias).
The OneVision and Interleave fixtures tie it; the untied fixtures are Llama (no qkv bias). Its other
differences are sizes the graphs do not bake in: GQA 28:4 (7:1, as the OneVision fixture's 7:1) and
a vocabulary of 152064 rows, wider than the tokenizer.

The test builds a tiny checkpoint of exactly that structure (the OneVision fixture's config with
`tie_word_embeddings` false and 152064 rows), exports it fp32 with the default (fused) decoder and
checks that the export holds a separate `lm_head`, then replays every OneVision fixture scenario
(video by frames, image, image + video, two videos, left-padded batch) with ONNX Runtime:
token-exact with transformers' `generate`, first logits within the fixtures' bound.

Needs the fixtures' media (`cargo xtask fixtures` writes them; nothing else from there).
"""

from __future__ import annotations

import json
import tempfile
import unittest
from pathlib import Path

import numpy as np

LLAVA_VIDEO_VOCAB = 152064  # Qwen2-7B's embedding rows


def tiny_llava_video_config():
    import fixtures
    from vidlm_export import configs

    config = configs.onevision(tiny=True, init=fixtures.INIT_RANGE)
    config.tie_word_embeddings = False
    config.text_config.tie_word_embeddings = False
    config.text_config.vocab_size = LLAVA_VIDEO_VOCAB
    return config


class LlavaVideoQwen2(unittest.TestCase):
    def test_untied_qwen2_onevision_checkpoint_exports_and_replays_token_exact(self):
        import torch

        import assets
        import fixtures
        import random_checkpoint
        from vidlm_export import configs

        torch.set_num_threads(2)
        media = fixtures.write_media(None)
        config = tiny_llava_video_config()
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            ckpt = d / "hf"
            ckpt.mkdir()
            assets.build("onevision", ckpt, layout="hub",
                         processor_overrides=random_checkpoint.tiny_processor_overrides("onevision", config),
                         config=config)
            configs.build_random_model(config, fixtures.SEEDS["onevision"], ckpt,
                                       logit_gain=random_checkpoint.TINY_LOGIT_GAIN)
            saved = json.loads((ckpt / "config.json").read_text())
            self.assertEqual(saved["model_type"], "llava_onevision")
            self.assertFalse(saved["text_config"]["tie_word_embeddings"])

            model, proc = fixtures.load_hf(ckpt)
            lm_head = model.lm_head.weight.detach()
            embed = model.get_input_embeddings().weight.detach()
            self.assertEqual(tuple(lm_head.shape), (LLAVA_VIDEO_VOCAB, config.text_config.hidden_size))
            self.assertFalse(torch.equal(lm_head, embed), "the checkpoint's lm_head is tied")

            out = d / "model"
            manifest = fixtures.export(ckpt, out, "fp32")
            self.assertEqual(manifest["family"], "llava_onevision")
            self.assertTrue(any(g["name"] == "decoder_model_merged" for g in manifest["graphs"]))
            self.assert_lm_head_is_its_own(out, lm_head.numpy(), embed.numpy())

            results = fixtures.run_transformers("onevision", model, proc, media)
            margin = min(r["min_margin"] for r in results.values())
            rows = fixtures.replay_check("llava_video", model, results, out, "fp32")
            self.assertEqual(len(rows), len(results))
            for r in rows:
                with self.subTest(scenario=r["scenario"]):
                    self.assertTrue(r["tokens_equal"], f"{r} (min transformers margin {margin:.2e})")
                    self.assertLessEqual(r["first_logits_max_abs_diff"], r["first_logits_tolerance"], r)

    def assert_lm_head_is_its_own(self, out: Path, lm_head: np.ndarray, embed: np.ndarray):
        """The fused decoder's vocabulary projection is the checkpoint's lm_head, not the embedding."""
        import onnx
        from onnx import numpy_helper

        graph = onnx.load(str(out / "onnx" / "decoder_model_merged.onnx")).graph
        vocab = lm_head.shape[0]
        found = []
        for init in graph.initializer:
            if vocab in init.dims and lm_head.shape[1] in init.dims and len(init.dims) == 2:
                w = numpy_helper.to_array(init)
                w = w if w.shape == lm_head.shape else w.T
                found.append(w)
        self.assertTrue(found, "no [vocab, hidden] weight in the decoder graph")
        self.assertTrue(any(np.array_equal(w, lm_head) for w in found), "the decoder's lm_head is not the checkpoint's")
        self.assertFalse(any(np.array_equal(w, embed) for w in found), "the decoder projects with the embedding")


if __name__ == "__main__":
    unittest.main()
