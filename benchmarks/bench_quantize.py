"""Original vs dynamic int8 vs static int8 vs fp16 (vs int4) for architectures buildable offline.

Builds each architecture from a transformers config (random weights) or onnx.helper, exports it,
makes every variant with ``converters.quantize.quantize_model`` and measures them side by side with
``graph_analysis.runtime.compare.compare_models`` (fresh child process per model). Prints a Markdown table
of measured ratios against the original.

    python benchmarks/bench_quantize.py --runs 20 --threads 2 [--arch resnet bert lstm]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from converters.quantize import QuantMethod, quantize_model
from graph_analysis.bindings import Bindings
from graph_analysis.runtime.compare import Comparison, compare_models

_MIB = 1024 * 1024


def _export(module, args: tuple[Any, ...], names: list[str], path: Path) -> None:  # type: ignore[no-untyped-def]
    import torch

    torch.onnx.export(
        module.eval(),
        args,
        str(path),
        input_names=names,
        output_names=["out"],
        dynamo=False,
        opset_version=17,
    )


def build_resnet(folder: Path) -> Path:
    """ResNet-18 layout (basic blocks, 64-512 channels), 224x224 input: 11.7M parameters."""
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.ResNetConfig(  # type: ignore[call-arg]
        embedding_size=64,
        hidden_sizes=[64, 128, 256, 512],
        depths=[2, 2, 2, 2],
        layer_type="basic",
        num_labels=1000,
    )
    net = transformers.ResNetForImageClassification(config)

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x):  # type: ignore[no-untyped-def]
            return self.net(pixel_values=x).logits

    path = folder / "resnet18.onnx"
    _export(Logits(), (torch.randn(1, 3, 224, 224),), ["pixel_values"], path)
    return path


def build_bert(folder: Path) -> Path:
    """BERT with 4 layers of 256 (BERT-mini shape), vocab 30522, sequence 128: 11.2M parameters."""
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.BertConfig(  # type: ignore[call-arg]
        vocab_size=30522,
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=1024,
        num_labels=2,
    )
    net = transformers.BertForSequenceClassification(config)

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, ids, mask):  # type: ignore[no-untyped-def]
            return self.net(input_ids=ids, attention_mask=mask).logits

    ids = torch.randint(0, 30522, (1, 128))
    path = folder / "bert_mini.onnx"
    _export(Logits(), (ids, torch.ones_like(ids)), ["input_ids", "attention_mask"], path)
    return path


def build_lstm(folder: Path) -> Path:
    """A 2-layer LSTM language-model head (hidden 512, vocab 8000), sequence 32: 8.3M parameters."""
    import torch

    torch.manual_seed(0)

    class LM(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(8000, 256)
            self.lstm = torch.nn.LSTM(256, 512, num_layers=2, batch_first=True)
            self.head = torch.nn.Linear(512, 8000)

        def forward(self, ids):  # type: ignore[no-untyped-def]
            return self.head(self.lstm(self.embed(ids))[0])

    path = folder / "lstm_lm.onnx"
    _export(LM(), (torch.randint(0, 8000, (1, 32)),), ["input_ids"], path)
    return path


ARCHS: dict[str, Callable[[Path], Path]] = {
    "resnet": build_resnet,
    "bert": build_bert,
    "lstm": build_lstm,
}
METHODS = (QuantMethod.DYNAMIC, QuantMethod.STATIC, QuantMethod.FP16, QuantMethod.INT4)


def _row(arch: str, label: str, model, first) -> str:  # type: ignore[no-untyped-def]
    on, off = model.measured[0], model.measured[-1]
    ref_on, ref_off = first.measured[0], first.measured[-1]
    drift = model.drift
    cells = [
        arch,
        label,
        f"{model.on_disk_bytes / _MIB:.1f} ({model.on_disk_bytes / first.on_disk_bytes:.2f}x)",
        f"{on.peak_bytes / _MIB:.1f} ({on.peak_bytes / ref_on.peak_bytes:.2f}x)",
        f"{off.peak_bytes / _MIB:.1f} ({off.peak_bytes / ref_off.peak_bytes:.2f}x)",
        f"{on.latency.median_ms:.2f} ({on.latency.median_ms / ref_on.latency.median_ms:.2f}x)",
        "-" if drift is None else f"{drift.cosine_similarity:.5f}",
        "-" if drift is None else f"{drift.max_abs:.3g}",
        "-" if drift is None or drift.argmax_agreement is None else f"{drift.argmax_agreement:.0%}",
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="*", default=list(ARCHS), choices=list(ARCHS))
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calibration-samples", type=int, default=8)
    args = parser.parse_args()
    print(
        "| model | variant | file MiB | peak MiB, arena on | peak MiB, arena off | latency ms (median) "
        "| cosine | max abs | argmax agree |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="bench-quantize-") as tmp:
        for arch in args.arch:
            folder = Path(tmp) / arch
            folder.mkdir()
            start = time.perf_counter()
            src = ARCHS[arch](folder)
            variants, labels = [src], ["fp32 (original)"]
            notes = []
            for method in METHODS:
                result = quantize_model(
                    src,
                    folder / f"{src.stem}.{method.value}.onnx",
                    method=method,
                    calibration_samples=args.calibration_samples,
                )
                variants.append(result.output)
                labels.append(method.value)
                notes += [f"{method.value}: {w}" for w in result.warnings]
            comparison: Comparison = compare_models(
                variants, Bindings(), runs=args.runs, threads=args.threads
            )
            for label, model in zip(labels, comparison.models, strict=True):
                print(_row(arch, label, model, comparison.models[0]))
            elapsed = time.perf_counter() - start
            print(
                f"<!-- {arch}: {comparison.models[0].parameters:,} parameters; {elapsed:.0f} s; "
                f"inputs {[(s.name, s.dims) for s in comparison.inputs]}; "
                f"notes: {' / '.join(n[:120] for n in notes) or 'none'} -->",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
