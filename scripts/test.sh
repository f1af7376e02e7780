#!/usr/bin/env bash
# The project's test command: sets up .venv if needed, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup_env.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export JALA_REQUIRE_SAFETY_TESTS=1  # a skipped safety test fails the run (tests/conftest.py)
exec .venv/bin/python -m pytest -q "$@"
