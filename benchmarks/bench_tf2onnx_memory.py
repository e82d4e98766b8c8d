"""Peak RAM of a tf2onnx conversion, per byte of weights: the figure behind the converter's guard.

For each Keras model below (built with ``weights=None``, saved to a temporary ``.keras`` file), a
fresh Python process runs ``converters.from_tensorflow.convert_tensorflow`` in-process. At the
point where the converter checks memory (the model loaded, its weights read), the process's
resident set is noted and its high-water mark reset (``/proc/self/clear_refs``, value 5); after
the conversion (tracing, grappler, tf2onnx, matching, writing) ``VmHWM`` is read again.
``factor = (peak - resident at the check) / weight bytes`` is what the guard multiplies the weights
by. Run: ``python benchmarks/bench_tf2onnx_memory.py [NAME ...]`` (Linux; a few minutes; the
largest model here needs ~3 GB).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MiB = 1 << 20

MODELS = {
    "mlp": "keras.Sequential([keras.Input((1024,)), keras.layers.Dense(2048), "
    "keras.layers.Dense(1024), keras.layers.Dense(10)])",
    "mobilenet_0.25": "keras.applications.MobileNet(weights=None, alpha=0.25, "
    "input_shape=(128, 128, 3))",
    "mobilenet_v2": "keras.applications.MobileNetV2(weights=None)",
    "efficientnet_b0": "keras.applications.EfficientNetB0(weights=None)",
    "densenet121": "keras.applications.DenseNet121(weights=None)",
}

_CHILD = r"""
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import keras
import converters.from_tensorflow as ft

path, out, build = sys.argv[1:4]
keras.utils.set_random_seed(0)
model = eval(build)
model.save(path)
params = int(model.count_params())
del model
keras.backend.clear_session()

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)

seen = {}

def check(weights, source, notes):
    seen["weights"] = weights
    seen["rss_at_check"] = status("VmRSS")
    seen["hwm_before"] = status("VmHWM")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")

ft._check_memory = check
ft.convert_tensorflow(kind="keras", location=path, source=path, out_path=out,
                      bindings={}, dynamic=[])
seen["peak"] = status("VmHWM")
seen["params"] = params
print("RESULT " + json.dumps(seen))
"""


def measure(name: str, build: str) -> dict[str, int]:
    """One model in a fresh process: weight bytes, resident set at the check, peak after."""
    with tempfile.TemporaryDirectory(prefix="modelsize-bench-") as tmp:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, f"{tmp}/{name}.keras", f"{tmp}/{name}.onnx", build],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=1800,
        )
        for line in done.stdout.splitlines():
            if line.startswith("RESULT "):
                return dict(json.loads(line[7:]))
        raise RuntimeError(f"{name}: {done.stderr.strip().splitlines()[-1:]}")


def main(names: list[str]) -> None:
    print(
        f"{'model':<16} {'params':>11} {'weights MiB':>11} {'RSS at check MiB':>16} "
        f"{'peak MiB':>9} {'factor':>7}"
    )
    for name in names or list(MODELS):
        r = measure(name, MODELS[name])
        factor = (r["peak"] - r["rss_at_check"]) / r["weights"]
        print(
            f"{name:<16} {r['params']:>11,} {r['weights'] / MiB:>11.1f} "
            f"{r['rss_at_check'] / MiB:>16.0f} {r['peak'] / MiB:>9.0f} {factor:>7.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:])
