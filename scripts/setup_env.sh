#!/usr/bin/env bash
# Create (if missing) the project virtualenv at .venv/ and install dm_ssl into it.
# Idempotent: re-installs only when setup.cfg changed since the last successful install.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv with $($PY --version)"
    "$PY" -m venv .venv
fi
stamp=.venv/.dm_ssl-installed
want=$(cat setup.cfg pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
log=.venv/install.log
echo "[setup] installing torch, semilearn and dm_ssl into .venv (first run: a few minutes; log: $log)"
install() {
    # pip's own output goes to the log; on a failure its end is shown
    if ! .venv/bin/python -m pip install -q "$@" >>"$log" 2>&1; then
        echo "[setup] pip install $* failed; the end of $log:" >&2
        tail -n 30 "$log" >&2
        exit 1
    fi
}
: > "$log"
install --upgrade pip
# The pinned trio first: semilearn imports torchaudio, whose builds must match torch exactly.
install torch==2.9.1 torchvision==0.24.1 torchaudio==2.9.1
install -e ".[dev]"
echo "$want" > "$stamp"
echo "[setup] done"
