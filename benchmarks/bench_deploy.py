"""Deployment benchmarks: ``scan`` of a folder of generated models with 1 vs N workers, and
``fit --verify`` on a small real architecture (measured peak at the chosen batch vs the budget).

Usage: python benchmarks/bench_deploy.py [--models 200] [--workers 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from converters.fit_source import fit_source
from fixtures.builders import seed_complex, write
from graph_analysis.deploy import FitPrecision, parse_size, scan_folder


def _generate(folder: Path, count: int) -> None:
    rng = np.random.default_rng(0)
    for index in range(count):
        width = int(rng.integers(8, 128))
        layers = int(rng.integers(1, 6))
        nodes, inits, previous = [], [], "x"
        for layer in range(layers):
            inits.append(numpy_helper.from_array(np.ones((width, width), np.float32), f"w{layer}"))
            nodes.append(helper.make_node("MatMul", [previous, f"w{layer}"], [f"h{layer}"]))
            previous = f"h{layer}"
        graph = helper.make_graph(
            nodes,
            f"m{index}",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
            [helper.make_tensor_value_info(previous, TensorProto.FLOAT, ["batch", width])],
            inits,
        )
        write(
            helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
            folder / f"m{index:04d}.onnx",
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="modelsize-bench-") as tmp:
        folder = Path(tmp) / "models"
        _generate(folder, args.models)
        times = {}
        for workers in (1, args.workers):
            t0 = time.perf_counter()
            rows = list(scan_folder(folder, workers=workers))
            times[workers] = time.perf_counter() - t0
            assert all(r.ok for r in rows) and len(rows) == args.models
        print(f"scan of {args.models} generated models: 1 worker {times[1]:.1f} s, "
              f"{args.workers} workers {times[args.workers]:.1f} s "
              f"(speed-up {times[1] / times[args.workers]:.2f}x)")  # fmt: skip
        model = write(seed_complex(), Path(tmp) / "cnn.onnx")
        for budget in ("48MiB", "96MiB"):
            result = fit_source(
                str(model), parse_size(budget), precisions=(FitPrecision.FP32,), verify=True
            )
            (c,) = result.candidates
            print(f"fit --verify ComplexModel within {budget}: batch {c.value}, estimated "
                  f"{c.estimated_peak_bytes / 2**20:.1f} MiB, measured "
                  f"{(c.measured_peak_bytes or 0) / 2**20:.1f} MiB, fits={c.fits}; {'; '.join(c.notes)}")  # fmt: skip


if __name__ == "__main__":
    main()
