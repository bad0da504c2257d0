#!/usr/bin/env bash
# The README's main command: set up .venv if needed, then run the main job.
# The main job is the offline SSL demo on scikit-learn's digits (scripts/demo_digits.py,
# ~6-8 minutes on 2 CPU cores); extra arguments go to it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/python scripts/demo_digits.py "$@"
