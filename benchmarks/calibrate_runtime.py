"""Derive the onnxruntime CPU memory model used by ``graph_analysis.memory`` from measurements.

Builds synthetic models that isolate one cost each (weights consumed by MatMul, i.e. pre-packed;
weights consumed by Add, i.e. not pre-packed; Conv weights; many small weights; activations with no
weights; external data), measures each in fresh onnxruntime children (arena on and off; the median
of three children with different heap layouts) and prints peak growth against the counted weight
and activation bytes, then the constants of ``OrtCpuModel`` re-derived from them:
``session_fixed_bytes`` (session of a weightless chain; ``session_code_bytes`` its file-backed
part), ``session_node_bytes`` and ``session_initializer_bytes`` (chains of 1, 1000 and 2001 nodes,
with and without a constant each), ``subgraph_session_bytes`` (100 ``If`` nodes with two one-node
branches against a chain of as many nodes), ``run_fixed_bytes`` (its first run beyond
the activations), ``load_factor`` and ``resident_factor`` (creation peak and session of one 32 MiB
weight), ``heap_kept_factor``
(session of 256 small 16 KiB weights read by Add, beyond the fixed cost and one copy, per weight
byte) and ``arena_fragmentation_factor`` (a chain of convolutions whose liveness peak is known:
arena-on growth beyond the liveness peak, per byte of ``min(L, A - L)``; the term
``arena_simulation=False`` uses), with the replayed arena's figure for the same chain beside the
measured one; whether a pre-packed weight's original stays (one MatMul weight of 2 and of 8
MiB, on either side of ``prepack_release_min_bytes``); ``fusion_kept_factor`` (stacks of
convolutions with and without a ``BatchNormalization`` after each, weights below and above
glibc's mmap threshold: the session's growth with the fusion beyond the one without, per byte of
fused weights); ``reorder_copies_factor`` (the stack of eight 2.25 MiB convolutions without the
fusion: its session beyond the fixed cost, the weights and their originals, per byte of the
largest reordered weight).
Run: ``python benchmarks/calibrate_runtime.py``.
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


def node_chain_model(folder: Path, length: int) -> Path:
    """``length`` Sigmoid/Tanh nodes on four floats: the session's cost per node, nothing else."""
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)
    names = ["X"] + [f"T{k}" for k in range(length - 1)] + ["Y"]
    nodes = [
        helper.make_node("Sigmoid" if k % 2 else "Tanh", [names[k]], [names[k + 1]])
        for k in range(length)
    ]
    return _save(helper.make_graph(nodes, "g", [x], [y]), folder / f"nodes_{length}.onnx")


def if_chain_model(folder: Path, count: int) -> Path:
    """``count`` ``If`` nodes on four floats, each with two one-node branches: ``2 x count``
    subgraphs and ``3 x count`` nodes, no weights."""
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 4])
    c = helper.make_tensor_value_info("C", TensorProto.BOOL, [])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)
    names = ["X"] + [f"T{k}" for k in range(count - 1)] + ["Y"]
    nodes = []
    for k in range(count):
        branches = {}
        for side, op in (("then_branch", "Sigmoid"), ("else_branch", "Tanh")):
            out = f"{side}_{k}"
            branches[side] = helper.make_graph(
                [helper.make_node(op, [names[k]], [out])],
                f"{side}_{k}",
                [],
                [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, 4])],
            )
        nodes.append(helper.make_node("If", ["C"], [names[k + 1]], **branches))
    return _save(helper.make_graph(nodes, "g", [x, c], [y]), folder / f"if_{count}.onnx")


def small_weights_model(folder: Path, count: int = 256, elements: int = 4096) -> Path:
    """``count`` Adds each with its own ``elements``-float weight (16 KiB): glibc's heap keeps them."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal(elements, dtype=np.float32), f"W{k}")
        for k in range(count)
    ]
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, elements])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)
    nodes = []
    prev = "X"
    for k in range(count):
        out = "Y" if k == count - 1 else f"T{k}"
        nodes.append(helper.make_node("Add", [prev, f"W{k}"], [out]))
        prev = out
    name = f"small_weights_{count}x{elements}.onnx"
    return _save(helper.make_graph(nodes, "g", [x], [y], inits), folder / name)


def conv_chain_model(folder: Path, channels: int = 32, size: int = 128, length: int = 6) -> Path:
    """A chain of 3x3 convolutions (tiny weights) on ``channels x size x size`` maps."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(
            rng.standard_normal((channels, channels, 3, 3), dtype=np.float32) * 0.01, f"W{k}"
        )
        for k in range(length)
    ]
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, channels, size, size])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)
    nodes = []
    prev = "X"
    for k in range(length):
        out = "Y" if k == length - 1 else f"T{k}"
        nodes.append(helper.make_node("Conv", [prev, f"W{k}"], [out], pads=[1, 1, 1, 1]))
        prev = out
    return _save(helper.make_graph(nodes, "g", [x], [y], inits), folder / "conv_chain.onnx")


def conv_bn_stack_model(
    folder: Path, count: int, channels: int, kernel: int, *, bn: bool, size: int = 8
) -> Path:
    """``count`` convolutions of ``channels`` (kernel ``kernel``), each followed by a
    ``BatchNormalization`` (``bn``) that onnxruntime folds into it, then a Relu, on tiny maps:
    the session holds the weights and the copies their rewriting leaves in glibc's heap."""
    rng = np.random.default_rng(0)
    inits = []
    nodes = []
    prev = "X"
    pad = kernel // 2
    for k in range(count):
        w = rng.standard_normal((channels, channels, kernel, kernel), dtype=np.float32)
        inits.append(numpy_helper.from_array(w, f"W{k}"))
        out = f"C{k}"
        nodes.append(helper.make_node("Conv", [prev, f"W{k}"], [out], pads=[pad] * 4))
        if bn:
            names = [f"{p}{k}" for p in ("s", "b", "m", "v")]
            for name in names:
                values = rng.random(channels, dtype=np.float32) + 0.5
                inits.append(numpy_helper.from_array(values, name))
            nodes.append(helper.make_node("BatchNormalization", [out, *names], [f"N{k}"]))
            out = f"N{k}"
        last = "Y" if k == count - 1 else f"R{k}"
        nodes.append(helper.make_node("Relu", [out], [last]))
        prev = last
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, channels, size, size])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)
    name = f"conv{count}x{channels}k{kernel}{'_bn' if bn else ''}.onnx"
    return _save(helper.make_graph(nodes, "g", [x], [y], inits), folder / name)


#: The conv stacks of the fusion experiment: (count, channels, kernel): 48 x 16 KiB, 32 x 144
#: KiB (under glibc's initial 128 KiB mmap threshold and just over it), 8 x 2.25 MiB.
FUSION_STACKS = ((48, 64, 1), (32, 64, 3), (8, 256, 3))


def external_model(folder: Path) -> Path:
    """16 MiB of external weights read by MatMul (pre-packed) and Add (mapped, read at run)."""
    rng = np.random.default_rng(1)
    inits = [
        numpy_helper.from_array(rng.standard_normal((1024, 2048), dtype=np.float32), name)
        for name in ("W", "B")
    ]
    nodes = [
        helper.make_node("MatMul", ["X", "W"], ["H"]),
        helper.make_node("Add", ["H", "B"], ["Y"]),
    ]
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [1024, 1024])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)
    model = helper.make_model(
        helper.make_graph(nodes, "g", [x], [y], inits), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    path = folder / "ext_matmul_add.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="ext_matmul_add.data")
    return path


def derive_constants(folder: Path) -> None:
    """Print the runtime model's constants as measured now, next to the defaults."""
    from graph_analysis.memory import OrtCpuModel

    default = OrtCpuModel()
    # The session's state per node and per initializer: chains of 1 and 2001 nodes, and 1000
    # nodes with and without a 16-byte constant each.
    one, many = (
        measure_inference(node_chain_model(folder, n), Bindings(), runs=1).session_bytes
        for n in (1, 2001)
    )
    node = (many - one) / 2000
    plain, constants = (
        measure_inference(path, Bindings(), runs=1).session_bytes
        for path in (node_chain_model(folder, 1000), small_weights_model(folder, 1000, 4))
    )
    initializer = (constants - plain) / 1000 - 16

    def graph_state(nodes: int, initializers: int) -> float:
        return node * nodes + initializer * initializers

    chain = measure_inference(chain_model(folder, 8), Bindings(), runs=1)
    chain_est = estimate_memory(folder / "chain_8.onnx", Bindings()).inference
    fixed = chain.session_bytes - graph_state(6, 0)
    code = chain.session_file_bytes  # the file-backed share of it: onnxruntime's code pages
    # Each subgraph's own session state: 100 If nodes with two one-node branches against a chain
    # of the same 300 nodes.
    branched = measure_inference(if_chain_model(folder, 100), Bindings(), runs=1).session_bytes
    same_nodes = measure_inference(node_chain_model(folder, 300), Bindings(), runs=1).session_bytes
    subgraph = (branched - same_nodes) / 200
    run_fixed = chain.peak_bytes - chain.session_bytes - chain_est.activations_peak_bytes
    single = measure_inference(matmul_model(folder, 32), Bindings(), runs=1)
    load = (single.session_peak_bytes - fixed) / (32 * MiB)
    resident = (single.session_bytes - fixed - graph_state(1, 1)) / (32 * MiB)
    small_path = small_weights_model(folder)
    small = measure_inference(small_path, Bindings(), runs=1)
    small_w = estimate_memory(small_path, Bindings()).inference.weights_bytes
    kept = (small.session_bytes - fixed - graph_state(256, 256) - small_w) / small_w
    conv_path = conv_chain_model(folder)
    conv = measure_inference(conv_path, Bindings(), runs=1)
    conv_est = estimate_memory(conv_path, Bindings()).inference
    a, big = conv_est.activations_peak_bytes, conv_est.largest_activation_bytes
    base = conv.session_bytes + a + run_fixed
    fragmentation = (conv.peak_bytes - base) / max(1, min(big, a - big))
    # Pre-packed originals: under prepack_release_min_bytes kept in the heap (2 x W), over it
    # unmapped when freed (1 x W).
    for mib in (2, 8):
        packed = measure_inference(matmul_model(folder, mib), Bindings(), runs=1)
        beyond = (packed.session_bytes - fixed) / (mib * MiB)
        print(f"one {mib} MiB MatMul weight: session holds {beyond:.2f} x W")
    # BatchNormalization fusion: the session with a folded BatchNormalization after each conv,
    # beyond the same stack without, per byte of the fused weights (the BN parameters are
    # counted as weights on both sides: taken off with the estimate's weight figure).
    fused_extra, fused_bytes = 0.0, 0
    reorder = 0.0
    for count, channels, kernel in FUSION_STACKS:
        sessions = []
        for bn in (False, True):
            path = conv_bn_stack_model(folder, count, channels, kernel, bn=bn)
            m = measure_inference(path, Bindings(), runs=1)
            w = estimate_memory(path, Bindings()).inference.weights_bytes
            sessions.append((m.session_bytes, w))
        weights = count * channels * channels * kernel * kernel * 4
        extra = (sessions[1][0] - sessions[1][1]) - (sessions[0][0] - sessions[0][1])
        largest = channels * channels * kernel * kernel * 4
        if largest > MiB:  # NCHWc-reordered, under heap_tensor_max_bytes: W + originals + copies
            reorder = (sessions[0][0] - fixed - 2 * sessions[0][1]) / largest
            print(
                f"reorder {count} x {channels}x{channels}x{kernel}x{kernel}: session beyond "
                f"the weights and their originals {reorder:.2f} x the largest weight"
            )
        print(
            f"fusion {count} x {channels}x{channels}x{kernel}x{kernel}: session without / with "
            f"BatchNormalization {sessions[0][0] / MiB:.1f} / {sessions[1][0] / MiB:.1f} MiB, "
            f"{extra / weights:.2f} x the fused weights"
        )
        fused_extra += extra
        fused_bytes += weights
    print()
    print(f"{'constant':<30}{'measured':>12}{'default':>12}")
    for name, measured, value in (
        ("session_fixed_bytes (MiB)", fixed / MiB, default.session_fixed_bytes / MiB),
        (
            "session_code_bytes (MiB)",
            float("nan") if code is None else code / MiB,
            default.session_code_bytes / MiB,
        ),
        ("session_node_bytes (KiB)", node / 1024, default.session_node_bytes / 1024),
        (
            "session_initializer_bytes (KiB)",
            initializer / 1024,
            default.session_initializer_bytes / 1024,
        ),
        ("run_fixed_bytes (MiB)", run_fixed / MiB, default.run_fixed_bytes / MiB),
        # One-node branches: the state of a subgraph as such. The default is the real VAD
        # models' fit, which also carries the heap their optimizer's churn leaves (docs/memory.md).
        ("subgraph_session_bytes (KiB)*", subgraph / 1024, default.subgraph_session_bytes / 1024),
        ("load_factor", load, default.load_factor),
        ("resident_factor", resident, default.resident_factor),
        ("heap_kept_factor", kept, default.heap_kept_factor),
        ("fusion_kept_factor", fused_extra / fused_bytes, default.fusion_kept_factor),
        ("reorder_copies_factor", reorder, default.reorder_copies_factor),
        ("arena_fragmentation_factor", fragmentation, default.arena_fragmentation_factor),
    ):
        print(f"{name:<30}{measured:>12.2f}{value:>12.2f}")
    print("* one-node If branches; the default is fitted on real models with subgraphs")
    # The replayed arena (arena_simulation, the default) against the same measurement; the factor
    # above is what the arena_simulation=False term would need.
    print(
        f"{'conv_chain arena beyond peak':<30}{(conv.peak_bytes - base) / MiB:>12.2f}"
        f"{conv_est.arena_fragmentation_bytes / MiB:>12.2f}   (MiB: measured, replayed arena)"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cases = [chain_model(folder, 1)]
        cases += [matmul_model(folder, m) for m in (8, 32)]
        cases += [matmul_model(folder, m, "Add") for m in (8, 32)]
        cases += [conv_model(folder, m) for m in (8, 32)]
        cases += [chain_model(folder, m) for m in (8, 32)]
        cases += [fan_model(folder, m) for m in (8, 32)]
        cases += [small_weights_model(folder), conv_chain_model(folder), external_model(folder)]
        header = f"{'model':<16}{'arena':>6}{'weights':>9}{'act.pk':>9}{'sess.pk':>9}{'sess':>9}"
        header += f"{'peak':>9}{'estim.':>9}{'ratio':>7}"
        print(header + "   (MiB)")
        for path in cases:
            estimate = estimate_memory(path, Bindings())
            for arena in (True, False):
                m = measure_inference(path, Bindings(), runs=2, arena=arena, repeats=3)
                est = estimate.inference
                print(
                    f"{path.stem:<16}{'on' if arena else 'off':>6}"
                    f"{est.weights_bytes / MiB:>9.1f}{est.activations_peak_bytes / MiB:>9.1f}"
                    f"{m.session_peak_bytes / MiB:>9.1f}{m.session_bytes / MiB:>9.1f}"
                    f"{m.peak_bytes / MiB:>9.1f}{est.peak_bytes / MiB:>9.1f}"
                    f"{est.peak_bytes / max(m.peak_bytes, 1):>7.2f}"
                    f"   spread {m.peak_min_bytes / MiB:.1f}-{m.peak_max_bytes / MiB:.1f}"
                )
        derive_constants(folder)


if __name__ == "__main__":
    main()
