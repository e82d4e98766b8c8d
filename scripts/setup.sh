#!/usr/bin/env bash
# Create .venv with the pinned stack. Usage: scripts/setup.sh [--core]
#   --core   only what `modelsize inspect` on ONNX files needs (no torch, no tensorflow)
# Idempotent: re-running checks the same pins and installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
PIP_VERSION=26.3
TORCH_VERSION=2.13.0

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
pip install "pip==${PIP_VERSION}"
# The HTML report tests drive Debian's Chromium (Playwright's own browser download cannot work offline).
install_chromium() {
  if [ -x /usr/bin/chromium ]; then return; fi
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "setup: /usr/bin/chromium is missing and cannot be installed here (needs root and apt-get);" \
      "the browser tests will fail: install Debian's chromium or set MODELSIZE_SKIP_BROWSER=1" >&2
  fi
}

if [ "${1:-}" = "--core" ]; then
  pip install -c constraints.txt -e . --group dev
else
  # torch first and pinned: an unpinned torch (or a range admitting a newer one) pulls a multi-GB CUDA build.
  pip install "torch==${TORCH_VERSION}"
  pip install -c constraints.txt -e ".[torch,tensorflow]" --group dev
  install_chromium
fi
.venv/bin/python -c "import graph_analysis, cli.app" >/dev/null
echo "setup: .venv ready ($(.venv/bin/python --version), $(.venv/bin/modelsize --help >/dev/null && echo 'modelsize installed'))"
