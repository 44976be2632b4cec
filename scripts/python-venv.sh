#!/usr/bin/env bash
# Create (or refresh) the Python virtual environment used by the conformance tests.
# Idempotent: an existing .venv is reused and pip only installs what is missing or changed.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo_root/.venv"
requirements="$repo_root/tests/conformance/requirements.txt"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi

"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
