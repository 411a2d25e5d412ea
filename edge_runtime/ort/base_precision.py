"""Lower the frozen base of an exported fp32 graph to int8 or fp16, leaving the LoRA path in fp32.

Only MatMuls whose weight is a constant of the graph are touched, so every product with a LoRA
input (a graph input, not a constant) keeps fp32, like the PyTorch backend's fp32 adapters over a
low-precision base: ZO perturbations of mu ~ 1e-2 never meet an fp16 rounding step of the adapter.

- int8: onnxruntime's dynamic quantization (int8 weights per tensor, activations quantized on the
  fly) with MatMulConstBOnly, the scheme the DESIGN measured at fp32 speed for MiniLM.
- fp16: the weight is stored in fp16 and the MatMul runs in fp16 between two Casts (ORT has fp16
  MatMul kernels on CPU); a weight also read by another op (a tied embedding's Gather) stays fp32.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def lower_base_precision(source: Path, target: Path, precision: str) -> None:
    if precision == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # It logs advice to run its shape-inference pre-processing first, which lets it find ops whose
        # shapes it cannot infer; every constant MatMul here is found without it (tests count them).
        logging.disable(logging.WARNING)
        try:
            quantize_dynamic(
                source,
                target,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["MatMul"],
                extra_options={"MatMulConstBOnly": True},
            )
        finally:
            logging.disable(logging.NOTSET)
    elif precision == "fp16":
        model = onnx.load(str(source))
        _half_constant_matmuls(model.graph)
        onnx.save(model, str(target))
    else:
        raise ValueError(f"no lowering to {precision}")


def _half_constant_matmuls(graph: onnx.GraphProto) -> None:
    initializers = {t.name: t for t in graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    lowered = {
        name
        for name, nodes in consumers.items()
        if name in initializers
        and initializers[name].data_type == TensorProto.FLOAT
        and all(n.op_type == "MatMul" and list(n.input).index(name) == 1 for n in nodes)
    }
    for name in lowered:
        half = numpy_helper.from_array(numpy_helper.to_array(initializers[name]).astype(np.float16), name)
        initializers[name].CopyFrom(half)
    nodes = []
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in lowered:
            nodes.append(node)
            continue
        activation, output = node.input[0], node.output[0]
        half_in, half_out = f"{node.name}.fp16_in", f"{node.name}.fp16_out"
        nodes += [
            helper.make_node("Cast", [activation], [half_in], to=TensorProto.FLOAT16, name=f"{node.name}.cast_in"),
            helper.make_node("MatMul", [half_in, node.input[1]], [half_out], name=node.name),
            helper.make_node("Cast", [half_out], [output], to=TensorProto.FLOAT, name=f"{node.name}.cast_out"),
        ]
    del graph.node[:]
    graph.node.extend(nodes)
