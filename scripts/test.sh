#!/usr/bin/env bash
# Runs every test of the project: what CI runs (.ci/run calls this script).
#
#   1. Python venv with the official KSM SDK (for the conformance suite and interop tests), and
#      the official JavaScript SDK in tests/js/node_modules (npm, from the lockfile)
#   2. formatting, lints and the API docs (rustdoc warnings are errors)
#   3. all Rust tests (unit, integration against a real server over HTTPS, examples built)
#   4. the official Python, JavaScript and Rust SDK conformance suites against a real
#      `coffer server` (the Rust SDK's on 127.0.0.1:443: run as root)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "Python environment (official SDK from PyPI)"
scripts/python-venv.sh

step "JavaScript environment (official SDK from npm, into tests/js)"
command -v node >/dev/null || { echo "Node.js (node, npm) is required for the JavaScript SDK tests" >&2; exit 1; }
npm ci --prefix tests/js --no-audit --no-fund --loglevel=error

step "PostgreSQL (127.0.0.1:5432, database test)"
export COFFER_TEST_POSTGRES_URL="${COFFER_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
pg_up() { psql "$COFFER_TEST_POSTGRES_URL" -qAtc 'select 1' >/dev/null 2>&1; }
if ! pg_up; then
    echo "PostgreSQL is not answering; trying to start the local cluster"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 1 30); do pg_up && break; sleep 1; done
fi
pg_up || { echo "PostgreSQL is required at $COFFER_TEST_POSTGRES_URL (trust auth)" >&2; exit 1; }

step "Formatting"
cargo fmt --all -- --check

step "Build"
cargo build --workspace --all-targets --locked

step "Official Rust SDK driver (its own workspace: crates/coffer-sdk/bench)"
cargo build --manifest-path crates/coffer-sdk/bench/Cargo.toml --locked

step "Lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "API documentation (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "Rust tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
    cargo test --workspace --doc --locked
else
    cargo test --workspace --locked --no-fail-fast
fi

step "Official Python, JavaScript and Rust SDK conformance suites on SQLite"
COFFER_TEST_POSTGRES_URL= COFFER_BIN="$PWD/target/debug/coffer" .venv/bin/python -m pytest tests/conformance -q

step "Official Python, JavaScript and Rust SDK conformance suites on PostgreSQL (and several instances)"
COFFER_BIN="$PWD/target/debug/coffer" .venv/bin/python -m pytest tests/conformance -q

step "Official Python SDK conformance suite on a vault migrated from SQLite to PostgreSQL"
postgres_admin_url="$COFFER_TEST_POSTGRES_URL"
COFFER_TEST_POSTGRES_URL= COFFER_TEST_MIGRATE_URL="$postgres_admin_url" COFFER_BIN="$PWD/target/debug/coffer" \
    .venv/bin/python -m pytest tests/conformance/test_python_sdk.py -q

step "All tests passed"
