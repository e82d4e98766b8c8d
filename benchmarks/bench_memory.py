"""Estimate vs measured memory over several architectures: ONNX Runtime inference, PyTorch training.

For each architecture of ``benchmarks/architectures.py``: export to ONNX (TorchScript exporter,
weights inline; in eval mode for inference, in training mode -- BatchNorm not folded -- for the
training estimate), estimate with ``graph_analysis.memory.estimate_memory``, measure inference in a
fresh onnxruntime child (arena on and off) and one training step (Adam, fp32, steady state of two
steps) in a fresh PyTorch child. Prints estimate/measured ratios; targets: inference within 25%,
training within 30%. Run: ``python benchmarks/bench_memory.py [NAME ...]`` (a few minutes).
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import benchmarks.architectures as archs  # noqa: E402
from converters.torch_train import measure_training_step  # noqa: E402
from graph_analysis.bindings import Bindings, ShapeSpec  # noqa: E402
from graph_analysis.memory import Optimizer, estimate_memory  # noqa: E402
from graph_analysis.runtime.measure import InputSpec, measure_inference  # noqa: E402

MiB = 1 << 20
FLOAT, INT64 = 1, 7
SOURCE = ROOT / "benchmarks" / "architectures.py"

CASES: dict[str, tuple[InputSpec, ...]] = {
    "mlp": (InputSpec("input", FLOAT, (256, 1024)),),
    "cnn": (InputSpec("input", FLOAT, (8, 3, 64, 64)),),
    "hf_resnet": (InputSpec("pixel_values", FLOAT, (8, 3, 64, 64)),),
    "hf_bert": (InputSpec("input_ids", INT64, (8, 128)),),
    "hf_gpt2": (InputSpec("input_ids", INT64, (8, 128)),),
    "hf_vit": (InputSpec("pixel_values", FLOAT, (8, 3, 64, 64)),),
}


def export(
    name: str, inputs: tuple[InputSpec, ...], folder: Path, *, training: bool = False
) -> Path:
    """Export the architecture to ONNX with a dynamic batch dim, returning the first output only.

    ``training``: export in training mode (BatchNorm kept, not folded into Conv), the graph the
    training estimate should read.
    """
    import torch

    model = getattr(archs, name)()
    model.train(training)

    class First(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, *args: torch.Tensor) -> torch.Tensor:
            out = self.inner(*args)
            if isinstance(out, torch.Tensor):
                return out
            return out[0]

    args = tuple(
        torch.ones(i.dims, dtype=torch.int64) if i.elem_type == INT64 else torch.randn(i.dims)
        for i in inputs
    )
    path = folder / f"{name}{'_train' if training else ''}.onnx"
    mode = torch.onnx.TrainingMode.TRAINING if training else torch.onnx.TrainingMode.EVAL
    with torch.no_grad():
        torch.onnx.export(
            First(),
            args,
            str(path),
            dynamo=False,
            input_names=[i.name for i in inputs],
            output_names=["output"],
            dynamic_axes={i.name: {0: "batch"} for i in inputs},
            opset_version=17,
            training=mode,
            do_constant_folding=not training,
        )
    return path


def main(names: list[str]) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names or list(CASES):
            inputs = CASES[name]
            path = export(name, inputs, Path(tmp))
            train_path = export(name, inputs, Path(tmp), training=True)
            bindings = Bindings(shapes=tuple(ShapeSpec(i.name, i.dims) for i in inputs))
            est = estimate_memory(path, bindings)
            train_est = estimate_memory(
                train_path, bindings, train=True, optimizer=Optimizer.ADAM, pytorch_basis=True
            )
            est = replace(est, training=train_est.training)
            on = measure_inference(path, bindings, runs=3, arena=True)
            off = measure_inference(path, bindings, runs=3, arena=False)
            train = measure_training_step(f"{SOURCE}:{name}", inputs, optimizer=Optimizer.ADAM)
            fixed = measure_training_step(
                f"{SOURCE}:{name}", inputs, optimizer=Optimizer.ADAM, malloc_mmap_threshold=1 << 17
            )
            assert est.training is not None
            rows.append((name, est, on, off, train, fixed))
            tr = est.training
            print(
                f"{name:<10} W {est.inference.weights_bytes / MiB:6.1f}  "
                f"A {est.inference.activations_peak_bytes / MiB:6.1f} (sum "
                f"{est.inference.activations_sum_bytes / MiB:6.1f})  "
                f"inf est {est.inference.peak_bytes / MiB:6.1f} meas on {on.peak_bytes / MiB:6.1f} "
                f"off {off.peak_bytes / MiB:6.1f} "
                f"ratio {est.inference.peak_bytes / on.peak_bytes:5.2f}"
                f" | train est {tr.peak_bytes / MiB:6.1f} meas {train.peak_bytes / MiB:6.1f} "
                f"(1st {train.first_step_peak_bytes / MiB:6.1f}) "
                f"ratio {tr.peak_bytes / train.peak_bytes:5.2f}  saved "
                f"{tr.item('saved_activations') / MiB:6.1f} params {tr.trainable_parameters}"
                f"/{train.num_parameters}",
                flush=True,
            )
    print()
    print(
        "| model | weights MiB | act. peak MiB | inference est. MiB | measured (arena on/off) MiB"
        " | ratio | training est. MiB | measured MiB (default / fixed mmap threshold) | ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, est, on, off, train, fixed in rows:
        tr = est.training
        print(
            f"| {name} | {est.inference.weights_bytes / MiB:.1f} | "
            f"{est.inference.activations_peak_bytes / MiB:.1f} | "
            f"{est.inference.peak_bytes / MiB:.1f}"
            f" | {on.peak_bytes / MiB:.1f} / {off.peak_bytes / MiB:.1f} | "
            f"{est.inference.peak_bytes / on.peak_bytes:.2f} | {tr.peak_bytes / MiB:.1f} | "
            f"{train.peak_bytes / MiB:.1f} / {fixed.peak_bytes / MiB:.1f} | "
            f"{tr.peak_bytes / train.peak_bytes:.2f} / {tr.peak_bytes / fixed.peak_bytes:.2f} |"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
