"""``dm-ssl train`` with probes on what each process drew and logged; run under torchrun by
``tests/test_distributed.py``. Writes ``$PROBE_DIR/rank<r>.json``."""

import json
import os
import sys

import dm_ssl.algorithms.driver as driver
from dm_ssl import cli
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

if __name__ == "__main__":
    code = cli.main(["train", *sys.argv[1:]])
    with open(os.path.join(os.environ["PROBE_DIR"], f"rank{os.environ['RANK']}.json"), "w") as fh:
        json.dump(seen, fh)
    sys.exit(code)
