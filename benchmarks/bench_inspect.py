"""Benchmark: `modelsize inspect` against a bare `onnx.load` on two large generated models.

(a) A Llama-7B-shaped graph (32 layers, hidden 4096, FFN 11008, vocab 32000: 6,738,415,616 parameters)
    whose 27 GB of FLOAT weights live in one *sparse* external data file (no real disk used).
(b) A ~1.7 GB model with its weights embedded in the .onnx file.

Each command runs in a fresh child process; wall time and peak RSS (ru_maxrss from wait4) are printed
side by side, with the ratios. Run: `.venv/bin/python benchmarks/bench_inspect.py [--out DIR]`.
Targets (issue 2): (a) under 3 s and 600 MB; (b) at most 0.2x the time and memory of onnx.load.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parent.parent
LLAMA = {"layers": 32, "hidden": 4096, "ffn": 11008, "vocab": 32000}
LLAMA_PARAMETERS = 6_738_415_616


def _external(name: str, dims: list[int], location: str, offset: int) -> TensorProto:
    tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=dims)
    tensor.data_location = TensorProto.EXTERNAL
    length = 4 * int(np.prod(dims))
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def build_llama(folder: Path) -> Path:
    """The Llama-7B-shaped graph with a sparse external data file; returns the .onnx path."""
    path = folder / "llama7b_shaped.onnx"
    if path.exists():
        return path
    h, f, v = LLAMA["hidden"], LLAMA["ffn"], LLAMA["vocab"]
    location = "llama7b_shaped.onnx.data"
    inits: list[TensorProto] = []
    nodes: list[onnx.NodeProto] = []
    offset = 0

    def add(name: str, dims: list[int]) -> str:
        nonlocal offset
        inits.append(_external(name, dims, location, offset))
        offset += 4 * int(np.prod(dims))
        return name

    nodes.append(
        helper.make_node(
            "Gather",
            [add("model.embed_tokens.weight", [v, h]), "input_ids"],
            ["x0"],
            name="/model/embed_tokens/Gather",
        )
    )
    x = "x0"
    for i in range(LLAMA["layers"]):
        p = f"model.layers.{i}"
        s = f"/model/layers.{i}"
        nodes.append(
            helper.make_node(
                "Mul",
                [x, add(f"{p}.input_layernorm.weight", [h])],
                [f"{s}/n1"],
                name=f"{s}/input_layernorm/Mul",
            )
        )
        for proj in ("q_proj", "k_proj", "v_proj"):
            nodes.append(
                helper.make_node(
                    "MatMul",
                    [f"{s}/n1", add(f"{p}.self_attn.{proj}.weight", [h, h])],
                    [f"{s}/{proj}"],
                    name=f"{s}/self_attn/{proj}/MatMul",
                )
            )
        nodes.append(
            helper.make_node(
                "Add", [f"{s}/q_proj", f"{s}/v_proj"], [f"{s}/attn"], name=f"{s}/attn/Add"
            )
        )
        nodes.append(
            helper.make_node(
                "MatMul",
                [f"{s}/attn", add(f"{p}.self_attn.o_proj.weight", [h, h])],
                [f"{s}/o"],
                name=f"{s}/self_attn/o_proj/MatMul",
            )
        )
        nodes.append(
            helper.make_node(
                "Mul",
                [f"{s}/o", add(f"{p}.post_attention_layernorm.weight", [h])],
                [f"{s}/n2"],
                name=f"{s}/post_attention_layernorm/Mul",
            )
        )
        for proj in ("gate_proj", "up_proj"):
            nodes.append(
                helper.make_node(
                    "MatMul",
                    [f"{s}/n2", add(f"{p}.mlp.{proj}.weight", [h, f])],
                    [f"{s}/{proj}"],
                    name=f"{s}/mlp/{proj}/MatMul",
                )
            )
        nodes.append(
            helper.make_node(
                "Mul", [f"{s}/gate_proj", f"{s}/up_proj"], [f"{s}/act"], name=f"{s}/mlp/Mul"
            )
        )
        nodes.append(
            helper.make_node(
                "MatMul",
                [f"{s}/act", add(f"{p}.mlp.down_proj.weight", [f, h])],
                [f"{s}/out"],
                name=f"{s}/mlp/down_proj/MatMul",
            )
        )
        x = f"{s}/out"
    nodes.append(
        helper.make_node("Mul", [x, add("model.norm.weight", [h])], ["xn"], name="/model/norm/Mul")
    )
    nodes.append(
        helper.make_node(
            "MatMul", ["xn", add("lm_head.weight", [h, v])], ["logits"], name="/lm_head/MatMul"
        )
    )
    graph = helper.make_graph(
        nodes,
        "llama7b_shaped",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", v])],
        inits,
    )
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / location).open("wb") as handle:
        handle.truncate(offset)  # sparse: the 27 GB take no disk blocks
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def build_embedded(folder: Path, target_bytes: int = 1_700_000_000) -> Path:
    """A model of ~1.7 GB with FLOAT weights embedded (24 MatMul layers of 4096x4352)."""
    path = folder / "embedded_1p7gb.onnx"
    if path.exists():
        return path
    rows, cols = 4096, 4352
    layers = max(1, target_bytes // (rows * cols * 4))
    rng = np.random.default_rng(0)
    block = rng.standard_normal((rows, cols)).astype(np.float32).tobytes()
    inits, nodes, x = [], [], "x"
    for i in range(layers):
        t = TensorProto(name=f"layers.{i}.weight", data_type=TensorProto.FLOAT, dims=[rows, cols])
        t.raw_data = block
        inits.append(t)
        nodes.append(helper.make_node("MatMul", [x, t.name], [f"h{i}"], name=f"/layers.{i}/MatMul"))
        nodes.append(
            helper.make_node(
                "Slice", [f"h{i}", "start", "end", "axis"], [f"s{i}"], name=f"/layers.{i}/Slice"
            )
        )
        x = f"s{i}"
    consts = [
        helper.make_tensor(n, TensorProto.INT64, [1], [v])
        for n, v in (("start", 0), ("end", rows), ("axis", 1))
    ]
    graph = helper.make_graph(
        nodes,
        "embedded",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", rows])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", rows])],
        inits + consts,
    )
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def measure(argv: list[str]) -> tuple[float, int, str]:
    """Wall time and peak RSS of ``argv`` measured in a dedicated wrapper process."""
    wrapper = (
        "import json, resource, subprocess, sys, time;"
        "t = time.perf_counter(); p = subprocess.run(sys.argv[1:], capture_output=True);"
        "w = time.perf_counter() - t;"
        "print(json.dumps({'rc': p.returncode, 'wall': w,"
        " 'rss': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,"
        " 'out': p.stdout.decode()[-200000:], 'err': p.stderr.decode()[-2000:]}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", wrapper, *argv], capture_output=True, text=True, check=True
    )
    data = json.loads(result.stdout)
    if data["rc"]:
        raise SystemExit(f"{argv} failed: {data['err']}")
    return data["wall"], data["rss"], data["out"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per command; the median is shown"
    )
    args = parser.parse_args()
    py = sys.executable
    cases = [
        (
            "(a) Llama-7B-shaped, 27 GB sparse external data",
            build_llama(args.out),
            "import onnx, sys; onnx.load(sys.argv[1], load_external_data=False)",
            "onnx.load(load_external_data=False)",
        ),
        (
            "(b) ~1.7 GB embedded weights",
            build_embedded(args.out),
            "import onnx, sys; onnx.load(sys.argv[1])",
            "onnx.load",
        ),
    ]
    print(f"{'case':<50} {'command':<38} {'wall s':>8} {'peak RSS MiB':>13}")
    for title, path, baseline_code, baseline_name in cases:
        ours = [
            measure([py, "-m", "cli", "inspect", str(path), "--format", "json"])
            for _ in range(args.repeat)
        ]
        base = [measure([py, "-c", baseline_code, str(path)]) for _ in range(args.repeat)]
        report = json.loads(ours[0][2])
        ow, orss = sorted(r[0] for r in ours)[len(ours) // 2], max(r[1] for r in ours)
        bw, brss = sorted(r[0] for r in base)[len(base) // 2], max(r[1] for r in base)
        print(f"{title:<50} {'modelsize inspect':<38} {ow:8.2f} {orss / 2**20:13.1f}")
        print(f"{'':<50} {baseline_name:<38} {bw:8.2f} {brss / 2**20:13.1f}")
        print(f"{'':<50} {'ratio inspect / baseline':<38} {ow / bw:8.3f} {orss / brss:13.3f}")
        print(
            f"{'':<50} parameters counted: {report['parameters']['total']:,}; "
            f"on disk (apparent): {report['size']['on_disk_bytes']:,} B"
        )
        if "Llama" in title:
            assert report["parameters"]["total"] == LLAMA_PARAMETERS, report["parameters"]["total"]


if __name__ == "__main__":
    main()
