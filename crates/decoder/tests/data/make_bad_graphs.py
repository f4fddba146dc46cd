"""Regenerates the tiny malformed decoder graphs used by crates/decoder/tests/errors.rs.

    .cache/venv/bin/python crates/decoder/tests/data/make_bad_graphs.py

Both are decoder_model_merged look-alikes (1 layer, 1 KV head, head_dim 4, hidden 16, vocab 8)
made of Identity/Constant nodes: they only need to load, not to compute anything meaningful.
"""
import os

import onnx
from onnx import TensorProto, helper

HERE = os.path.dirname(os.path.abspath(__file__))


def graph(extra_input: bool, name: str):
    inputs = [
        helper.make_tensor_value_info("inputs_embeds", TensorProto.FLOAT, ["batch", "seq", 16]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "total"]),
        helper.make_tensor_value_info("past_key_values.0.key", TensorProto.FLOAT, ["batch", 1, "past", 4]),
        helper.make_tensor_value_info("past_key_values.0.value", TensorProto.FLOAT, ["batch", 1, "past", 4]),
    ]
    if extra_input:
        inputs.append(helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, ["batch", "seq"]))
    outputs = [
        helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", 8]),
        helper.make_tensor_value_info("present.0.key", TensorProto.FLOAT, ["batch", 1, "total", 4]),
        helper.make_tensor_value_info("present.0.value", TensorProto.FLOAT, ["batch", 1, "total", 4]),
    ]
    nodes = [
        helper.make_node("Identity", ["past_key_values.0.key"], ["present.0.key"]),
        helper.make_node("Identity", ["past_key_values.0.value"], ["present.0.value"]),
        helper.make_node("Slice", ["inputs_embeds", "s0", "s1", "s2"], ["logits"]),
    ]
    inits = [
        helper.make_tensor("s0", TensorProto.INT64, [1], [0]),
        helper.make_tensor("s1", TensorProto.INT64, [1], [8]),
        helper.make_tensor("s2", TensorProto.INT64, [1], [2]),
    ]
    g = helper.make_graph(nodes, name, inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, os.path.join(HERE, f"{name}.onnx"))


graph(True, "decoder_unexpected_input")
graph(False, "decoder_minimal")
