"""The examples each command's ``--help`` shows, kept runnable (tests/test_help_examples.py runs them).

``MODEL`` stands for an ``.onnx`` file, ``OTHER`` for a second one, ``SOURCE`` for a PyTorch code
source, ``DIR`` for a folder and ``OUT`` for a file to write.
"""

from __future__ import annotations

__all__ = ["EXAMPLES", "epilog"]

EXAMPLES: dict[str, tuple[str, ...]] = {
    "inspect": (
        "modelsize inspect MODEL --by op --top 5",
        "modelsize inspect MODEL --input-shape x=8,3,32,32 --format json",
    ),
    "convert": ("modelsize convert SOURCE -o OUT.onnx --input-shape 1,3,32,32",),
    "quantize": ("modelsize quantize MODEL -o OUT.onnx --method dynamic",),
    "compare": ("modelsize compare MODEL OTHER --runs 2",),
    "memory": (
        "modelsize memory MODEL --input-shape x=8,3,32,32",
        "modelsize memory MODEL --batch 4 --train --optimizer adam",
    ),
    "measure": ("modelsize measure MODEL --batch 2 --runs 2 --repeats 1",),
    "profile": ("modelsize profile MODEL --input-shape x=1,3,32,32 --runs 3",),
    "fit": ("modelsize fit MODEL --memory 256MiB",),
    "check": ("modelsize check MODEL --max-params 1M --max-memory 1GiB",),
    "scan": ("modelsize scan DIR --recursive --format jsonl",),
}


def epilog(command: str) -> str:
    """The ``--help`` epilog of ``command``: its examples, one per line."""
    lines = EXAMPLES.get(command, ())
    return "Examples:\n\n" + "\n\n".join(f"  {line}" for line in lines) if lines else ""
