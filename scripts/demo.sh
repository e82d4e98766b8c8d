#!/usr/bin/env bash
# Set up the core (no torch/tensorflow) and inspect models that ship with the project.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --core
.venv/bin/modelsize inspect fixtures/storage_zoo.onnx --depth 2 "$@"
