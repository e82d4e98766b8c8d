"""Write the JSON Schemas of the commands whose output has no hand-written schema yet.

Each schema is inferred from the real ``--format json`` outputs of the command on several shipped
models (types merged across samples; a key is required when every sample has it; lists describe
their items; a mapping keyed by names is an object of any keys), then written to
``docs/schema/<command>.json``. The hand-written schemas (profile, fit, check, scan-row) are not
touched. Re-run after changing an output: ``python scripts/make_schemas.py``; the tests validate
real outputs against the files.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from typer.testing import CliRunner  # noqa: E402

from cli.app import app  # noqa: E402
from fixtures.builders import seed_complex, storage_zoo, write  # noqa: E402

#: Objects whose keys are names (dtypes, op types, inputs), not a fixed set of fields.
MAPPINGS = {
    "by_dtype", "opsets", "by_role", "quantized_ops", "weight_bytes_by_dtype", "dim_values",
    "inputs", "metadata", "by_op", "assumptions", "initializers",
}  # fmt: skip


#: Keys documented as nullable (absent figure, no classifier-like output, ...), whatever the samples.
NULLABLE = {
    "argmax_agreement", "drift", "estimated_inference_bytes", "fallback_reason", "onnx_path",
    "frozen", "trainable", "duplicate_of", "duplicate_kind", "reason", "verified_reason",
    "converted_from", "framework", "exporter", "arithmetic_intensity", "peak_bytes_measured",
    "latency_p90_s", "dtype", "external", "first_step", "loss_reason", "training",
}  # fmt: skip


#: Keys that are a string or null whatever the samples show (a reason, null when there is none).
STRING_OR_NULL = {"executed_graph_not_used"}


def _type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def infer(samples: list[Any], key: str = "") -> dict[str, Any]:
    """A schema every sample satisfies."""
    types = sorted({_type(s) for s in samples})
    if "integer" in types and "number" in types:
        types.remove("integer")
    if key in NULLABLE and "null" not in types:
        types.append("null")
    if key in STRING_OR_NULL:
        types = sorted(set(types) | {"string", "null"})
    schema: dict[str, Any] = {"type": types[0] if len(types) == 1 else types}
    objects = [s for s in samples if isinstance(s, dict)]
    if objects:
        if key in MAPPINGS:
            values = [v for o in objects for v in o.values()]
            if values:
                schema["additionalProperties"] = infer(values)
        else:
            keys = sorted({k for o in objects for k in o})
            schema["properties"] = {k: infer([o[k] for o in objects if k in o], k) for k in keys}
            schema["required"] = [k for k in keys if all(k in o for o in objects)]
    arrays = [s for s in samples if isinstance(s, list)]
    items = [item for a in arrays for item in a]
    if items:
        schema["items"] = infer(items, key)
    return schema


def _json(args: list[str]) -> Any:
    result = CliRunner().invoke(app, args)
    if result.exit_code != 0:
        raise SystemExit(f"{args}: exit {result.exit_code}: {result.stderr}")
    return json.loads(result.stdout)


def samples(tmp: Path) -> dict[str, list[Any]]:
    cnn = str(write(seed_complex(), tmp / "cnn.onnx"))
    zoo = str(write(storage_zoo(), tmp / "zoo.onnx"))
    source = f"{ROOT / 'fixtures' / 'seed_models.py'}:ComplexModel"
    out: dict[str, list[Any]] = {
        "inspect": [
            _json(["inspect", cnn, "-f", "json"]),
            _json(["inspect", zoo, "-f", "json", "--deep"]),
            _json(["inspect", cnn, "-f", "json", "--input-shape", "x=2,3,32,32"]),
            _json(["inspect", source, "-f", "json", "--input-shape", "1,3,32,32"]),
            _json(["inspect", source, "-f", "json", "--framework-only"]),
        ],
        "memory": [
            _json(["memory", cnn, "-f", "json"]),
            _json(["memory", cnn, "-f", "json", "--train"]),
            _json(["memory", zoo, "-f", "json"]),
        ],
        "measure": [_json(["measure", cnn, "-f", "json", "--runs", "2", "--repeats", "1"])],
        "convert": [
            _json(
                [
                    "convert",
                    source,
                    "-o",
                    str(tmp / "c.onnx"),
                    "-f",
                    "json",
                    "--input-shape",
                    "1,3,32,32",
                ]
            ),
        ],
        "quantize": [
            _json(["quantize", cnn, "-o", str(tmp / "q.onnx"), "-f", "json"]),
            _json(["quantize", cnn, "-o", str(tmp / "h.onnx"), "-f", "json", "--method", "fp16"]),
        ],
        "compare": [_json(["compare", cnn, str(tmp / "q.onnx"), "-f", "json", "--runs", "2"])],
    }
    return out


def main() -> None:
    target = ROOT / "docs" / "schema"
    with tempfile.TemporaryDirectory() as tmp:
        for command, outputs in samples(Path(tmp)).items():
            schema = {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "$id": f"modelsize/{command}.json",
                "title": f"modelsize {command} --format json",
                "description": "Inferred from real outputs by scripts/make_schemas.py; the keys "
                "are documented in the docs page of the command.",
                **infer(outputs),
            }
            (target / f"{command}.json").write_text(json.dumps(schema, indent=1) + "\n")
            print(f"wrote docs/schema/{command}.json from {len(outputs)} output(s)")


if __name__ == "__main__":
    main()
