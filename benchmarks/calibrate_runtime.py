"""Derive the onnxruntime CPU memory model used by ``graph_analysis.memory`` from measurements.

Builds synthetic models that isolate one cost each (weights consumed by MatMul, i.e. pre-packed;
weights consumed by Add, i.e. not pre-packed; Conv weights; activations with no weights), measures
each in a fresh onnxruntime child (arena on and off) and prints peak growth against the counted
weight and activation bytes. Run: ``python benchmarks/calibrate_runtime.py``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from graph_analysis.bindings import Bindings
from graph_analysis.memory import estimate_memory
from graph_analysis.runtime.measure import measure_inference

MiB = 1 << 20


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def matmul_model(folder: Path, weight_mib: int, op: str = "MatMul") -> Path:
    """X[1, n] -> op with an n x n weight: weights ``weight_mib`` MiB, activations tiny."""
    n = int((weight_mib * MiB / 4) ** 0.5)
    w = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((n, n), dtype=np.float32), "W"
    )
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, n])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)
    node = helper.make_node(op, ["X", "W"], ["Y"])
    return _save(helper.make_graph([node], "g", [x], [y], [w]), folder / f"{op}_{weight_mib}.onnx")


def conv_model(folder: Path, weight_mib: int) -> Path:
    """A 3x3 conv with c x c channels on a 8x8 image: weights ``weight_mib`` MiB."""
    c = int((weight_mib * MiB / 4 / 9) ** 0.5)
    w = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((c, c, 3, 3), dtype=np.float32), "W"
    )
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, c, 8, 8])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)
    node = helper.make_node("Conv", ["X", "W"], ["Y"], pads=[1, 1, 1, 1])
    return _save(helper.make_graph([node], "g", [x], [y], [w]), folder / f"conv_{weight_mib}.onnx")


def chain_model(folder: Path, act_mib: int, length: int = 6) -> Path:
    """A chain of Sigmoid/Tanh on an input of ``act_mib`` MiB: no weights, activations only."""
    n = act_mib * MiB // 4
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, n])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)
    nodes = []
    prev = "X"
    for k in range(length):
        out = "Y" if k == length - 1 else f"T{k}"
        nodes.append(helper.make_node("Sigmoid" if k % 2 else "Tanh", [prev], [out]))
        prev = out
    return _save(helper.make_graph(nodes, "g", [x], [y]), folder / f"chain_{act_mib}.onnx")


def fan_model(folder: Path, act_mib: int, width: int = 4) -> Path:
    """``width`` tensors of ``act_mib`` MiB live at once, then summed: peak = (width + 2) x size."""
    n = act_mib * MiB // 4
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, n])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)
    nodes = [
        helper.make_node("Sigmoid" if k % 2 else "Tanh", ["X"], [f"B{k}"]) for k in range(width)
    ]
    nodes.append(helper.make_node("Sum", [f"B{k}" for k in range(width)], ["Y"]))
    return _save(helper.make_graph(nodes, "g", [x], [y]), folder / f"fan_{act_mib}.onnx")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cases = [chain_model(folder, 1)]
        cases += [matmul_model(folder, m) for m in (8, 32)]
        cases += [matmul_model(folder, m, "Add") for m in (8, 32)]
        cases += [conv_model(folder, m) for m in (8, 32)]
        cases += [chain_model(folder, m) for m in (8, 32)]
        cases += [fan_model(folder, m) for m in (8, 32)]
        header = f"{'model':<16}{'arena':>6}{'weights':>9}{'act.pk':>9}{'sess.pk':>9}{'sess':>9}"
        header += f"{'peak':>9}{'estim.':>9}{'ratio':>7}"
        print(header + "   (MiB)")
        for path in cases:
            estimate = estimate_memory(path, Bindings())
            for arena in (True, False):
                m = measure_inference(path, Bindings(), runs=2, arena=arena)
                est = estimate.inference
                print(
                    f"{path.stem:<16}{'on' if arena else 'off':>6}"
                    f"{est.weights_bytes / MiB:>9.1f}{est.activations_peak_bytes / MiB:>9.1f}"
                    f"{m.session_peak_bytes / MiB:>9.1f}{m.session_bytes / MiB:>9.1f}"
                    f"{m.peak_bytes / MiB:>9.1f}{est.peak_bytes / MiB:>9.1f}"
                    f"{est.peak_bytes / max(m.peak_bytes, 1):>7.2f}"
                )


if __name__ == "__main__":
    main()
