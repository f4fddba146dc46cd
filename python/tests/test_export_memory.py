"""The export's memory-lean paths give the same graphs as the plain ones (tiny fixtures; forced on).

    .cache/venv/bin/python -m unittest python/tests/test_export_memory.py -v

- The fused decoder written straight to external data while it is built (real-size graphs) runs
  bit-identically to the one held inline in the protobuf.
- An export that releases the module's weights before validating (`VIDLM_EXPORT_LOW_MEMORY=1`) writes
  the same graphs, validation, fidelity and agreement as one that keeps it.

Needs the fixtures (`cargo xtask fixtures`): VIDLM_FIXTURES or .cache/fixtures.
"""

from __future__ import annotations

import json
import os
import tempfile
import unittest
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("VIDLM_FIXTURES", ROOT / ".cache" / "fixtures"))


def _feeds(sess):
    rng = np.random.default_rng(0)
    dims = {"batch_size": 2, "sequence_length": 5, "total_sequence_length": 5, "past_sequence_length": 0}
    feeds = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) else dims.get(d, 1) for d in i.shape]
        if i.type == "tensor(int64)" and i.name == "attention_mask":
            feeds[i.name] = np.ones(shape, np.int64)
        elif i.type == "tensor(int64)":
            feeds[i.name] = np.broadcast_to(np.arange(shape[-1], dtype=np.int64), shape).copy()
        else:
            feeds[i.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


class LeanDecoder(unittest.TestCase):
    def test_external_data_written_while_building_runs_identically(self):
        import onnx
        import onnxruntime as ort
        import torch

        from vidlm_export import fused, onnx_export
        from vidlm_export.cli import load_model

        for fam in ("qwen3_vl", "qwen2_5_vl", "onevision"):
            with self.subTest(fam=fam), tempfile.TemporaryDirectory() as d:
                d = Path(d)
                model, _ = load_model(FIXTURES / fam / "hf", torch.float32)
                onnx.save_model(fused.build_decoder(model, d / "inline.onnx_data"), d / "inline.onnx")
                self.assertFalse((d / "inline.onnx_data").exists(), "under the threshold: inline")
                old = onnx_export.EXTERNAL_DATA_THRESHOLD
                onnx_export.EXTERNAL_DATA_THRESHOLD = 0
                try:
                    proto = fused.build_decoder(model, d / "lean.onnx_data")
                finally:
                    onnx_export.EXTERNAL_DATA_THRESHOLD = old
                onnx.save_model(proto, d / "lean.onnx")
                self.assertLess((d / "lean.onnx").stat().st_size, 64 * 1024, "weights left in the proto")
                opts = ort.SessionOptions()
                opts.log_severity_level = 3
                a = ort.InferenceSession(str(d / "inline.onnx"), opts, providers=["CPUExecutionProvider"])
                b = ort.InferenceSession(str(d / "lean.onnx"), opts, providers=["CPUExecutionProvider"])
                feeds = _feeds(a)
                for x, y in zip(a.run(None, feeds), b.run(None, feeds)):
                    np.testing.assert_array_equal(x, y)


class LowMemoryExport(unittest.TestCase):
    def test_releasing_the_module_before_validating_changes_nothing(self):
        import torch

        from vidlm_export.cli import run_export

        hf = FIXTURES / "qwen2_5_vl" / "hf"
        manifests = {}
        with tempfile.TemporaryDirectory() as d:
            for mode in ("0", "1"):
                os.environ["VIDLM_EXPORT_LOW_MEMORY"] = mode
                torch.manual_seed(0)  # as export.py does: the same random validation inputs
                try:
                    manifests[mode] = run_export(str(hf), Path(d) / mode, ["fp32", "q8"], skip_validate=False,
                                                 exporter="dynamo", opset=20, quiet=True)
                finally:
                    del os.environ["VIDLM_EXPORT_LOW_MEMORY"]
            for f in sorted((Path(d) / "0" / "onnx").glob("*.onnx*")):
                self.assertEqual(f.read_bytes(), (Path(d) / "1" / "onnx" / f.name).read_bytes(), f.name)
        a, b = manifests["0"], manifests["1"]
        self.assertTrue(a["validation"]["rows"])
        self.assertEqual(a["validation"]["rows"], b["validation"]["rows"])
        self.assertEqual(a["fidelity"], b["fidelity"])
        strip = lambda m: {k: {x: y for x, y in v.items() if x != "seconds"} for k, v in m["agreement"].items()}  # noqa: E731
        self.assertEqual(strip(a), strip(b))
        self.assertIn("q8", strip(a))
        self.assertNotIn("error", strip(a)["q8"], json.dumps(a["agreement"]))


if __name__ == "__main__":
    unittest.main()
