#!/usr/bin/env bash
# The README's main command: set up .venv if needed, then run the main job.
# Until the SSL demo lands, the main job is the loss benchmark (scripts/bench_losses.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/python scripts/bench_losses.py "$@"
