"""A model whose decoder fails inside ONNX Runtime part-way through a generation.

    python python/failing_decoder.py SRC_MODEL_DIR DST_MODEL_DIR --max-total N

Copies a model directory (a vidlm export, e.g. `assets/demo-model`) and rewrites its
`onnx/decoder_model_merged.onnx` so that the graph loads, has the same interface and gives
the same logits, but a run whose `attention_mask` is longer than N positions (past + new
tokens) fails inside ONNX Runtime with a Reshape error:

    pool   = zeros[N]                      (a constant)
    total  = Shape(attention_mask)[1:2]
    part   = Slice(pool, [0], total)       (min(total, N) elements)
    check  = Reshape(part, total)          (fails when total > N)
    logits = logits + 0 * ReduceSum(check)

So a prompt of P <= N tokens prefills, the decode steps up to N total positions run (the first
N - P tokens are produced and sent), and the next step fails: a real ONNX Runtime failure in
the middle of a request, for the tests of how vidlm reports internal failures
(`crates/cli/tests/internal_failure.rs`). Nothing is mocked: the runtime runs the rewritten
graph.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import onnx
from onnx import TensorProto, helper, numpy_helper
import numpy as np


def break_decoder(path: Path, max_total: int) -> None:
    model = onnx.load(str(path))
    g = model.graph
    producers = [n for n in g.node if "logits" in n.output]
    if len(producers) != 1:
        raise SystemExit(f"{path}: expected one node producing `logits`, found {len(producers)}")
    node = producers[0]
    node.output[list(node.output).index("logits")] = "vidlm_test_logits_raw"
    g.initializer.extend(
        [
            numpy_helper.from_array(np.zeros([max_total], np.float32), "vidlm_test_pool"),
            numpy_helper.from_array(np.array([0], np.int64), "vidlm_test_zero"),
            numpy_helper.from_array(np.array([1], np.int64), "vidlm_test_one"),
            numpy_helper.from_array(np.array([2], np.int64), "vidlm_test_two"),
            numpy_helper.from_array(np.array(0.0, np.float32), "vidlm_test_nought"),
        ]
    )
    g.node.extend(
        [
            helper.make_node("Shape", ["attention_mask"], ["vidlm_test_mask_shape"]),
            helper.make_node(
                "Slice",
                ["vidlm_test_mask_shape", "vidlm_test_one", "vidlm_test_two"],
                ["vidlm_test_total"],
            ),
            helper.make_node(
                "Slice", ["vidlm_test_pool", "vidlm_test_zero", "vidlm_test_total"], ["vidlm_test_part"]
            ),
            helper.make_node("Reshape", ["vidlm_test_part", "vidlm_test_total"], ["vidlm_test_check"]),
            helper.make_node("ReduceSum", ["vidlm_test_check"], ["vidlm_test_sum"], keepdims=0),
            helper.make_node("Mul", ["vidlm_test_sum", "vidlm_test_nought"], ["vidlm_test_zeroed"]),
            helper.make_node("Add", ["vidlm_test_logits_raw", "vidlm_test_zeroed"], ["logits"]),
        ]
    )

    onnx.save(model, str(path))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--max-total", type=int, required=True, help="longest attention mask that runs")
    a = ap.parse_args()
    if a.dst.exists():
        shutil.rmtree(a.dst)
    shutil.copytree(a.src, a.dst)
    decoder = a.dst / "onnx" / "decoder_model_merged.onnx"
    if not decoder.is_file():
        raise SystemExit(f"{decoder} is missing")
    if any(p.name.startswith("decoder_model_merged") and p != decoder for p in decoder.parent.iterdir()):
        # Only the fp32 graph is rewritten: drop the other precisions so none runs unbroken.
        for p in decoder.parent.iterdir():
            if p.name.startswith("decoder_model_merged") and p != decoder:
                p.unlink()
    break_decoder(decoder, a.max_total)
    print(f"{a.dst}: decoder fails once the attention mask is longer than {a.max_total}")


if __name__ == "__main__":
    main()
