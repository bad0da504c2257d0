"""``dm-ssl train`` runs under one torchrun launch, with probes on what each process drew and
logged; run by ``tests/test_distributed.py`` (one launch for all its runs: each launch costs
every process an interpreter and dm_ssl's imports).

    torchrun --nproc_per_node=2 tests/ddp_probe.py PLAN.json

PLAN.json: ``[{"name": ..., "argv": [...]}, ...]``, each entry ``dm-ssl ARGV`` in turn in
every process. Per entry and rank ``r``, next to PLAN.json: ``<name>.rank<r>.json`` (the exit
code and the probes' records) and ``<name>.rank<r>.out`` / ``.err`` (what it printed).
The entries run through tests/cli_batch.py's :func:`run_plan` (its folder is this script's).
"""

import os
import sys
from pathlib import Path

from cli_batch import run_plan

import dm_ssl.algorithms.driver as driver
from dm_ssl.algorithms import mixing
from dm_ssl.data import sampling

seen = {"lam": [], "sample_seeds": [], "step_seeds": [], "logs": []}

_mean, _mix, _get, _seed = (driver.mean_over_ranks, mixing.MixingModule.mix,
                            sampling.SeededDataset.__getitem__, driver.seed_everything)


def mean_over_ranks(logs):
    out = _mean(logs)
    seen["logs"].append({"local": {k: v for k, v in logs.items() if isinstance(v, float)},
                         "logged": {k: v for k, v in out.items() if isinstance(v, float)}})
    return out


def mix(self, *args, **kwargs):
    res = _mix(self, *args, **kwargs)
    seen["lam"].append(res.lam.tolist())
    return res


def getitem(self, key):
    if isinstance(key, (tuple, list)):
        seen["sample_seeds"].append(int(key[1]))
    return _get(self, key)


def step_seed(seed, **kwargs):
    seen["step_seeds"].append(int(seed))
    return _seed(seed, **kwargs)


driver.mean_over_ranks, mixing.MixingModule.mix = mean_over_ranks, mix
sampling.SeededDataset.__getitem__, driver.seed_everything = getitem, step_seed


def clear() -> None:
    for values in seen.values():
        values.clear()


def main(plan_file: Path) -> int:
    run_plan(plan_file, tag=f".rank{os.environ['RANK']}", before=clear, extra=lambda: seen)
    return 0


if __name__ == "__main__":
    from dm_ssl.cli import exit_now

    exit_now(main(Path(sys.argv[1])))  # as the dm-ssl command ends
