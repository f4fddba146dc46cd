"""The Qwen2.5-VL / Qwen3-VL host formulas (vidlm_export/qwen_host.py, written from docs/onnx-graphs.md)
and the graph wrappers (vidlm_export/qwen.py) against transformers 5.23, on the tiny configs.

    .cache/venv/bin/python -m unittest python/tests/test_qwen_host.py -v
"""

from __future__ import annotations

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from vidlm_export import configs, qwen, qwen_host  # noqa: E402

GRIDS = [(8, 12), (10, 6), (4, 4), (12, 8), (6, 14), (2, 2)]


def _model(mt):
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen3VLForConditionalGeneration

    cfg = configs.BUILDERS[mt](tiny=True, init=0.6)
    torch.manual_seed(0)
    cls = Qwen2_5_VLForConditionalGeneration if mt == "qwen2_5_vl" else Qwen3VLForConditionalGeneration
    return cls(cfg).eval()


def _close(got, want):
    """The export's tolerance: max|Δ| <= 1e-4 + 1e-4 * max|want| (the wrappers reorder float sums: Conv3d
    as a MatMul, one attention per frame instead of per cu_seqlens piece)."""
    d = float((got - want).abs().max())
    tol = 1e-4 + 1e-4 * float(want.abs().max())
    assert d <= tol, f"max|Δ| {d:.3e} > {tol:.3e} (max|ref| {float(want.abs().max()):.3e})"


class HostTables(unittest.TestCase):
    def test_window_index_and_rotary(self):
        from transformers import vision_utils as vu

        cfg = configs.qwen2_5_vl(tiny=True)
        v = cfg.vision_config
        for wsize, patch in ((56, 14), (112, 14)):
            for h, w in GRIDS + [(16, 24), (22, 14)]:
                grid = torch.tensor([[1, h, w]])
                widx, cu = vu.get_vision_window_index(grid, 2, wsize, patch)
                mine, mcu = qwen_host.window_index(h, w, 2, wsize, patch)
                np.testing.assert_array_equal(mine, widx.numpy())
                np.testing.assert_array_equal(mcu, cu.numpy())
        for h, w in GRIDS:
            pos = vu.get_vision_position_ids(torch.tensor([[1, h, w]]), 2)
            hp, wp = qwen_host.block_major_hw(h, w, 2)
            np.testing.assert_array_equal(hp, pos[:, 0].numpy())
            np.testing.assert_array_equal(wp, pos[:, 1].numpy())
        model = _model("qwen2_5_vl")
        rot = model.model.visual.rotary_pos_emb
        for h, w in GRIDS:
            pos = vu.get_vision_position_ids(torch.tensor([[1, h, w]]), 2)
            cos, sin = rot(torch.zeros(1), pos)
            mc, ms = qwen_host.vision_rotary(h, w, 2, v.hidden_size // v.num_heads, 10000.0)
            np.testing.assert_allclose(mc, cos.numpy(), atol=1e-6)
            np.testing.assert_allclose(ms, sin.numpy(), atol=1e-6)

    def test_interpolation(self):
        from transformers import vision_utils as vu

        v = configs.qwen3_vl(tiny=True).vision_config
        for side in (6, 48):
            for h, w in GRIDS + [(36, 64)]:
                idx, wts = vu.get_vision_interpolation_indices_and_weights(
                    torch.tensor([[1, h, w]]), side, mode="bilinear", align_corners=True, spatial_merge_size=2)
                v.num_position_embeddings = side * side
                mine = qwen_host.qwen3_vision_inputs(h, w, v)
                np.testing.assert_array_equal(mine["pos_interp_indices"], idx.numpy())
                np.testing.assert_array_equal(mine["pos_interp_weights"], wts.numpy())


class Wrappers(unittest.TestCase):
    def _vision(self, mt):
        model = _model(mt)
        vcfg = model.config.vision_config
        pd = 3 * 2 * vcfg.patch_size ** 2
        wrapper = (qwen.Qwen25VisionEncoder if mt == "qwen2_5_vl" else qwen.Qwen3VisionEncoder)(model).eval()
        g = torch.Generator().manual_seed(0)
        for t, h, w in ((3, 8, 12), (1, 10, 6), (2, 4, 4)):
            pv = torch.randn(t * h * w, pd, generator=g)
            grid = torch.tensor([[t, h, w]])
            with torch.no_grad():
                ref = model.model.visual(pv, grid_thw=grid, return_dict=True)
                host = {k: torch.from_numpy(x) for k, x in qwen_host.vision_inputs(mt, h, w, vcfg).items()}
                names = list(host)
                if mt == "qwen2_5_vl":
                    order = ["window_index", "reverse_window_index", "rotary_cos", "rotary_sin",
                             "window_gather", "window_scatter", "window_key_bias"]
                else:
                    order = ["rotary_cos", "rotary_sin", "pos_interp_indices", "pos_interp_weights"]
                assert sorted(order) == sorted(names)
                out = wrapper(pv.reshape(t, h * w, pd), *[host[n] for n in order])
            feats = out if mt == "qwen2_5_vl" else out[0]
            _close(feats.reshape(-1, feats.shape[-1]), ref.pooler_output)
            if mt == "qwen3_vl":
                for lvl, f in enumerate(ref.deepstack_features):
                    _close(out[1][lvl].reshape(-1, f.shape[-1]), f)

    def test_vision_qwen2_5_vl(self):
        self._vision("qwen2_5_vl")

    def test_vision_qwen3_vl(self):
        self._vision("qwen3_vl")


class RopeIndex(unittest.TestCase):
    """qwen_host.rope_index == transformers' get_rope_index on synthetic prompts: images, videos (Qwen3-VL:
    split into one-frame grids, each group its own run of video tokens), left padding, float32
    second_per_grid_ts."""

    def _prompt(self, cfg, items, pad):
        ids = [1, 2, 3]
        for kind, (t, h, w) in items:
            n = t * h * w // 4
            tok = cfg.image_token_id if kind == "image" else cfg.video_token_id
            if kind == "video" and cfg.model_type == "qwen3_vl":
                for _ in range(t):  # <t seconds><|vision_start|> frame <|vision_end|>
                    ids += [9, 10, cfg.vision_start_token_id] + [tok] * (h * w // 4) + [cfg.vision_end_token_id]
            else:
                ids += [cfg.vision_start_token_id] + [tok] * n + [cfg.vision_end_token_id]
            ids += [4, 5]
        ids = [0] * pad + ids + [6, 7, 8]
        return ids

    def test_against_transformers(self):
        for mt in ("qwen2_5_vl", "qwen3_vl"):
            model = _model(mt)
            cfg = model.config
            rows = [[("image", (1, 8, 12)), ("video", (3, 8, 10)), ("video", (2, 6, 4))],
                    [("video", (4, 10, 6)), ("image", (1, 4, 4))]]
            seqs = [self._prompt(cfg, r, 0) for r in rows]
            width = max(len(x) for x in seqs)
            ids = np.array([[0] * (width - len(x)) + x for x in seqs], dtype=np.int64)
            mask = np.array([[0] * (width - len(x)) + [1] * len(x) for x in seqs], dtype=np.int64)
            images = [g for r in rows for k, g in r if k == "image"]
            videos = [g for r in rows for k, g in r if k == "video"]
            spgt = np.array([2 / 3, 1.0, 3.0], dtype=np.float32)
            ttype = np.where(ids == cfg.image_token_id, 1, np.where(ids == cfg.video_token_id, 2, 0))
            kw = {"second_per_grid_ts": torch.from_numpy(spgt)} if mt == "qwen2_5_vl" else {}
            want, deltas = model.model.get_rope_index(
                torch.from_numpy(ids), mm_token_type_ids=torch.from_numpy(ttype),
                image_grid_thw=torch.tensor(images), video_grid_thw=torch.tensor(videos),
                attention_mask=torch.from_numpy(mask), **kw)
            got = qwen_host.rope_index(mt, cfg, ids, mask, np.array(images), np.array(videos),
                                       spgt if mt == "qwen2_5_vl" else None)
            np.testing.assert_array_equal(got, want.numpy(), err_msg=mt)
            if mt == "qwen2_5_vl":
                # The trap: generate continues at last position + 1, not at rope_deltas + n (they differ when
                # a video's temporal positions run past the text after it: here 3.0 s per grid).
                nxt = qwen_host.decode_positions(got, 0)[0, :, 0]
                by_delta = mask.sum(1) + deltas.numpy()[:, 0]
                self.assertTrue((nxt != by_delta).any(), (nxt, by_delta))


if __name__ == "__main__":
    unittest.main()
