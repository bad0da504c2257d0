#!/usr/bin/env bash
# Here, before a GPU session's one device call: what scripts/device_checks.sh needs there.
#
# The lent GPU machine (see the device tool's KINDS.md) has torch, torchvision, timm, pytest
# and tensorboard but not semilearn, and its transformers is 5.x, which semilearn 0.3.2 does
# not import with; nothing can be downloaded there. So: the pure-Python / abi3 wheels of
# semilearn and of transformers 4 with the versions it checks at import time, for that
# machine's Python 3.12, into .device/whl, and stand-ins for aim and wandb (semilearn imports
# both at import time; dm_ssl never calls them) into .device/stubs. About 16 MB, git-ignored.
#
#   bash scripts/device_prep.sh
#   then the device tool's run: command "bash scripts/device_checks.sh", carry [".device"]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
mkdir -p .device/whl .device/stubs/aim .device/stubs/wandb
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .device/whl \
    semilearn==0.3.2 transformers==4.57.6 tokenizers==0.22.2 'huggingface_hub<1.0' \
    progress==1.6.1 ruamel.yaml
for m in aim wandb; do
    echo "\"\"\"Stand-in for $m: semilearn imports it at import time; dm_ssl never calls it.\"\"\"" \
        > ".device/stubs/$m/__init__.py"
done
du -sh .device
