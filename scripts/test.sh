#!/usr/bin/env bash
# Set up .venv if needed, then lint and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/ruff check dm_ssl tests scripts
# -n 2: two worker processes (pytest-xdist); pass -n 0 to run serially. worksteal: a worker
# that runs out of tests takes some of the other's queue (the slow tests are not spread evenly).
.venv/bin/python -m pytest -q -n 2 --dist worksteal "$@"
