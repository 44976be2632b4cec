#!/usr/bin/env bash
# Runs every test of the project: what CI runs (.ci/run calls this script).
#
#   1. Python venv with the official KSM SDK (for the conformance suite and interop tests)
#   2. formatting and lints
#   3. all Rust tests (unit, integration against a real server over HTTPS, examples built)
#   4. the official Python SDK conformance suite against a real `coffer server`
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "Python environment (official SDK from PyPI)"
scripts/python-venv.sh

step "Formatting"
cargo fmt --all -- --check

step "Build"
cargo build --workspace --all-targets --locked

step "Lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "Rust tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
    cargo test --workspace --doc --locked
else
    cargo test --workspace --locked --no-fail-fast
fi

step "Official Python SDK conformance suite"
COFFER_BIN="$PWD/target/debug/coffer" .venv/bin/python -m pytest tests/conformance -q

step "All tests passed"
