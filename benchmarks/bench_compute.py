"""Counted MACs and measured time per model, next to other counters, for architectures from configs.

Builds ResNet-50 (224x224), BERT-base (sequence 128), GPT-2 small (sequence 128) and ViT-base (224x224)
from transformers configs with random weights (no hub download), exports each through modelsize's
converter, then prints per model: modelsize's counted MACs and FLOPs, the MACs of the matrix products
alone (the figure published counts quote), the measured latency (``profile``, 1 thread) and, where the
packages are installed (``pip install thop ptflops``), what thop and ptflops report on the same PyTorch
module. Every disagreement is explained in docs/compute.md.

Usage: python benchmarks/bench_compute.py [--only resnet50,bert] [--runs 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from converters.sources import convert_source, detect_source
from graph_analysis.bindings import Bindings, parse_bindings
from graph_analysis.compute import count_compute
from graph_analysis.runtime.profile import profile_model


def _resnet50() -> tuple[Any, str, Any]:
    import torch
    import transformers

    model = transformers.ResNetForImageClassification(transformers.ResNetConfig())
    return model, "pixel_values=1,3,224,224", (torch.zeros(1, 3, 224, 224),)


def _bert() -> tuple[Any, str, Any]:
    import torch
    import transformers

    model = transformers.BertModel(transformers.BertConfig(), add_pooling_layer=False)
    ids = torch.zeros(1, 128, dtype=torch.long)
    return model, "input_ids=1,128", (ids,)


def _gpt2() -> tuple[Any, str, Any]:
    import torch
    import transformers

    model = transformers.GPT2LMHeadModel(transformers.GPT2Config())
    ids = torch.zeros(1, 128, dtype=torch.long)
    return model, "input_ids=1,128", (ids,)


def _vit() -> tuple[Any, str, Any]:
    import torch
    import transformers

    model = transformers.ViTModel(transformers.ViTConfig(), add_pooling_layer=False)
    return model, "pixel_values=1,3,224,224", (torch.zeros(1, 3, 224, 224),)


MODELS: dict[str, Callable[[], tuple[Any, str, Any]]] = {
    "resnet50": _resnet50,
    "bert-base": _bert,
    "gpt2": _gpt2,
    "vit-base": _vit,
}


def _others(model: Any, example: Any) -> dict[str, float | None]:
    """MACs by thop and ptflops on the PyTorch module, where installed."""
    out: dict[str, float | None] = {"thop": None, "ptflops": None}
    try:
        import thop

        macs, _params = thop.profile(model, inputs=example, verbose=False)
        out["thop"] = float(macs)
    except Exception:
        pass
    try:
        from ptflops import get_model_complexity_info

        shape = tuple(example[0].shape[1:])

        def constructor(_shape: tuple[int, ...]) -> dict[str, Any]:
            return {"input_ids" if example[0].dtype.is_floating_point is False else "pixel_values":
                    example[0]}  # fmt: skip

        macs, _ = get_model_complexity_info(
            model, shape, input_constructor=constructor, as_strings=False,
            print_per_layer_stat=False, verbose=False, backend="aten",
        )  # fmt: skip
        out["ptflops"] = float(macs)
    except Exception:
        pass
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="", help="comma-separated subset of " + ",".join(MODELS))
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(MODELS)
    print("| model | MACs (modelsize) | MatMul/Conv/Gemm MACs | FLOPs | latency (1 thread) | "
          "GFLOP/s | thop MACs | ptflops MACs |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in names:
        model, shape, example = MODELS[name]()
        model.eval()
        with tempfile.TemporaryDirectory(prefix="modelsize-bench-") as tmp:
            folder = Path(tmp) / name
            model.save_pretrained(folder)
            bindings: Bindings = parse_bindings(input_shapes=[shape])
            conversion = convert_source(
                detect_source(str(folder)), Path(tmp) / "m.onnx", bindings=bindings
            )
            compute = count_compute(conversion.onnx_path, bindings)
            core = sum(o.macs for o in compute.by_op if o.op_type in ("MatMul", "Conv", "Gemm"))
            profile = profile_model(conversion.onnx_path, bindings, runs=args.runs, warmup=1)
        others = _others(model, example)

        def g(value: float | None) -> str:
            return f"{value / 1e9:.3f} G" if value is not None else "n/a"

        rate = profile.achieved_gflops_per_s
        print(
            f"| {name} ({shape}) | {g(compute.macs)} | {g(core)} | {g(compute.flops)} | "
            f"{profile.latency_median_s * 1e3:.1f} ms | {rate:.1f} | {g(others['thop'])} | "
            f"{g(others['ptflops'])} |"
            if rate is not None
            else f"| {name} | {g(compute.macs)} | {g(core)} | {g(compute.flops)} | n/a | n/a | "
            f"{g(others['thop'])} | {g(others['ptflops'])} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
