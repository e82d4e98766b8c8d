"""Heap experiments on onnxruntime sessions: many identical children, one thing varied at a time.

Each child creates one CPU session (arena on), runs once on generated inputs and reports its
resident growth (``VmHWM``/``VmRSS`` over the baseline after its imports; ``RssAnon``,
``RssFile``) and glibc's ``mallinfo2`` (``arena``: bytes the main heap spans, ``fordblks``: the
free bytes it keeps, ``hblkhd``: bytes in mapped blocks) after creation and after the first run.

    python benchmarks/heap_probe.py MODEL [--input-shape x=1,3,224,224 ...] [--dim d=...]
        [--children 10] [--vary padding|same|aslr-off|threads|arena-max] [--threads N]

``--vary``: ``padding`` gives each child a padding variable of a different length in its
environment (as ``measure`` does), ``same`` an identical one, ``aslr-off`` the same under
``setarch -R`` (no address randomization), ``threads`` onnxruntime's default intra-op threads
instead of one, ``arena-max`` ``MALLOC_ARENA_MAX=1`` (one glibc arena for every thread).
Prints one line per child and the distinct peaks (MiB). docs/memory.md records what it found.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MiB = 1 << 20


def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(rest.split()[0]) * 1024
    return out


def child(request: dict[str, object]) -> dict[str, object]:
    """One measurement (runs in the child): figures in bytes."""
    import ctypes

    import numpy as np
    import numpy.random  # loaded before the baseline, as in _measure_child
    import onnxruntime as ort

    class Mallinfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in (
                "arena",
                "ordblks",
                "smblks",
                "hblks",
                "hblkhd",
                "usmblks",
                "fsmblks",
                "uordblks",
                "fordblks",
                "keepcost",
            )
        ]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = Mallinfo2

    def heap() -> dict[str, int]:
        info = libc.mallinfo2()
        return {k: int(getattr(info, k)) for k in ("arena", "fordblks", "hblkhd", "hblks")}

    options = ort.SessionOptions()
    threads = int(request["threads"])  # type: ignore[call-overload]
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3
    base = _status()
    with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
        handle.write("5")
    session = ort.InferenceSession(
        str(request["path"]), options, providers=["CPUExecutionProvider"]
    )
    created = _status()
    heap_created = heap()
    rng = np.random.default_rng(0)
    feeds = {}
    for name, dtype, dims in request["inputs"]:  # type: ignore[attr-defined]
        if dtype.startswith("float"):
            feeds[name] = rng.standard_normal(dims).astype(dtype)
        else:
            feeds[name] = np.ones(dims, dtype=dtype)
    session.run(None, feeds)
    ran = _status()
    heap_ran = heap()

    def grow(now: dict[str, int], key: str) -> int:
        return now[key] - base["VmRSS" if key == "VmHWM" else key]

    return {
        "session_peak": grow(created, "VmHWM"),
        "session": grow(created, "VmRSS"),
        "session_anon": grow(created, "RssAnon"),
        "session_file": grow(created, "RssFile"),
        "peak": grow(ran, "VmHWM"),
        "run_anon": ran["RssAnon"] - created["RssAnon"],
        "heap_created": heap_created,
        "heap_ran": heap_ran,
    }


def _inputs(model: Path, shapes: list[str], dims: list[str]) -> list[tuple[str, str, list[int]]]:
    sys.path.insert(0, str(ROOT))
    from graph_analysis.bindings import parse_bindings
    from graph_analysis.runtime._feeds import numpy_type
    from graph_analysis.runtime.measure import model_input_specs

    specs = model_input_specs(model, parse_bindings(tuple(shapes), tuple(dims)))
    out = []
    for spec in specs:
        np_type = numpy_type(spec.elem_type)
        assert np_type is not None, spec
        out.append((spec.name, np_type.__name__, list(spec.dims)))
    return out


def run_children(
    model: Path,
    inputs: list[tuple[str, str, list[int]]],
    *,
    children: int,
    vary: str,
    threads: int = 1,
    step: int = 4099,
) -> list[dict[str, object]]:
    """``children`` fresh measurements of ``model`` with ``vary`` (module docstring)."""
    results = []
    for k in range(children):
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        padding = 1 + step * k if vary == "padding" else 1
        env["MODELSIZE_LAYOUT_PADDING"] = "x" * padding
        command = [sys.executable, __file__, "--child"]
        request = {"path": str(model), "inputs": inputs, "threads": threads}
        if vary == "aslr-off":
            command = ["setarch", os.uname().machine, "-R", *command]
        elif vary == "threads":
            request["threads"] = 0
        elif vary == "arena-max":
            env["MALLOC_ARENA_MAX"] = "1"
        done = subprocess.run(
            command, input=json.dumps(request), capture_output=True, text=True, env=env, check=True
        )
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return results


def _line(r: dict[str, object]) -> str:
    hc, hr = r["heap_created"], r["heap_ran"]
    assert isinstance(hc, dict) and isinstance(hr, dict)

    def m(v: object) -> str:
        return f"{int(v) / MiB:6.1f}"  # type: ignore[call-overload]

    return (
        f"peak {m(r['peak'])} sess.pk {m(r['session_peak'])} sess {m(r['session'])} "
        f"(anon {m(r['session_anon'])} file {m(r['session_file'])}) run anon {m(r['run_anon'])} | "
        f"heap after creation: arena {m(hc['arena'])} free {m(hc['fordblks'])} "
        f"mapped {m(hc['hblkhd'])} ({hc['hblks']}) | after run: arena {m(hr['arena'])} "
        f"free {m(hr['fordblks'])} mapped {m(hr['hblkhd'])} ({hr['hblks']})"
    )


def main(argv: list[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("model", type=Path)
    parser.add_argument("--input-shape", action="append", default=[])
    parser.add_argument("--dim", action="append", default=[])
    parser.add_argument("--children", type=int, default=10)
    parser.add_argument(
        "--vary", default="padding", choices=["padding", "same", "aslr-off", "threads", "arena-max"]
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--step", type=int, default=4099, help="padding step (--vary padding)")
    args = parser.parse_args(argv)
    inputs = _inputs(args.model, args.input_shape, args.dim)
    results = run_children(
        args.model,
        inputs,
        children=args.children,
        vary=args.vary,
        threads=args.threads,
        step=args.step,
    )
    for k, r in enumerate(results):
        print(f"{k:3d} {_line(r)}", flush=True)
    peaks = sorted(round(int(r["peak"]) / MiB, 1) for r in results)  # type: ignore[call-overload]
    print(f"{args.vary}: peaks {peaks}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(child(json.loads(sys.stdin.read()))))
    else:
        main(sys.argv[1:])
