#!/usr/bin/env python
"""Figure A1 at small scale: mixed-sample top-1 / top-2 accuracy of MCE vs DM(CE) training.

The paper's Figure A1 shows that a model trained with DM(CE) recognises *both* classes of a
mixed sample more often than one trained with MCE (top-2 accuracy: the two top predictions are
exactly {y_a, y_b}). This script measures that claim offline on scikit-learn's 8×8 digits
(1,198 training / 599 test images, 10 classes), with ``supervised_mixup`` and ``small_cnn``
through the same ``dm-ssl`` pipeline as every other run:

* no mixing (``mix_prob = 0``), for reference;
* for Mixup and CutMix (α = 1): MCE, DM(CE) with η = 0.1 (the paper's static-mixer value) and
  DM(CE) with η = 1.

Each trained model (its EMA weights, as USB evaluates) is scored on the clean test set and on
the test set mixed at λ = 0.5 by Mixup and by CutMix (``dm_ssl.evaluation.mixed_accuracy``,
the same function as ``dm-ssl eval --mixed``). Prints mean ± std over seeds and writes
``<out>/mixed_accuracy.json``. The settings below were fixed before any result was seen.

``--set learned`` (issue #9; Figure A1 left: learned mixers make mixed samples much easier):
Mixup, AutoMix and SAMix, each with MCE and DM(CE) η = 1, all at α = 2 (OpenMixup's value for
the learned mixers), otherwise the same runs; each model is also scored on test samples mixed
at λ = 0.5 by *its own* mixer ("own": for AutoMix / SAMix the trained Mix Block's masks).

    .venv/bin/python scripts/exp_mixed_accuracy.py [--seeds 0 1 2] [--iters 1000] [--out DIR]
                                                   [--set static|learned]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any, Dict, List

from dm_ssl.experiments.tables import A1_EVAL_MIXERS as EVAL_MIXERS
from dm_ssl.experiments.tables import A1_LEARNED as LEARNED
from dm_ssl.experiments.tables import A1_STATIC as METHODS
from dm_ssl.experiments.tables import a1_config

# the runs are the A1_digits / A1_digits_learned tables' (dm-ssl sweep A1_digits runs the same)
SETS = {"static": METHODS, "learned": LEARNED}


def base_config(iters: int) -> Dict[str, Any]:
    return {**a1_config(iters), "device": "cpu"}


def run_one(cfg: Dict[str, Any], own: bool = False) -> Dict[str, Any]:
    from dm_ssl.config import validate
    from dm_ssl.evaluation.run_metrics import robustness
    from dm_ssl.run import prepare_run, set_seed

    cfg = validate(cfg)
    set_seed(cfg["seed"])
    alg, info, _ = prepare_run(cfg)
    alg.train()
    # the EMA weights, as USB evaluates (evaluate() and robustness() both apply them)
    out = {"clean": alg.evaluate("eval")["eval/top-1-acc"] * 100}

    def percent(name: str) -> dict:  # robustness() gives fractions, the tables percent
        scores = robustness(alg, info, None, False, name)[f"mixed_{name}"]
        return {k: 100 * v for k, v in scores.items()}

    for mixer in EVAL_MIXERS:
        out[mixer] = percent(mixer)
    if own:  # the samples of the model's own mixer (a learned one: its trained Mix Block)
        out["own"] = percent(cfg["mix_mixers"])
    return out


def fmt(values: List[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):6.2f} ± {std:4.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--iters", type=int, default=1000)
    ap.add_argument("--set", choices=sorted(SETS), default="static",
                    help="static: no mixing, Mixup, CutMix x MCE / DM(CE); learned: Mixup, "
                         "AutoMix, SAMix x MCE / DM(CE)")
    ap.add_argument("--out", default=None,
                    help="output folder (default: runs/mixed-<date>-<time>, never reused)")
    args = ap.parse_args()
    out = Path(args.out or time.strftime("runs/mixed-%Y%m%d-%H%M%S"))
    if out.exists() and any(out.iterdir()):  # never overwrite earlier results
        ap.error(f"--out {out} is not empty; choose another folder")
    t0 = time.time()
    results: Dict[str, List[Dict[str, Any]]] = {}
    evals = EVAL_MIXERS + (("own",) if args.set == "learned" else ())
    for name, method in SETS[args.set].items():
        for seed in args.seeds:
            slug = "".join(ch if ch.isalnum() else "_" for ch in name.lower())
            cfg = {**base_config(args.iters), **method, "seed": seed, "save_dir": str(out),
                   "save_name": f"{slug}_s{seed}"}
            r = run_one(cfg, own=args.set == "learned")
            results.setdefault(name, []).append(r)
            print(f"  {name:<20} seed {seed}: clean {r['clean']:.2f}  mixup top-2 "
                  f"{r['mixup']['top2']:.2f}  cutmix top-2 {r['cutmix']['top2']:.2f}  "
                  f"({time.time() - t0:.0f} s)", flush=True)
    print(f"\ndigits, supervised, {args.iters} iterations, seeds {args.seeds} "
          f"({time.time() - t0:.0f} s on this machine); accuracy % on the 599 test images, "
          "mixed at λ = 0.5")
    head = ["method", "clean top-1"] + [f"{m} {k}" for m in evals for k in ("top-1", "top-2")]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, runs in results.items():
        cells = [fmt([r["clean"] for r in runs])]
        cells += [fmt([r[m][k] for r in runs]) for m in evals for k in ("top1", "top2")]
        print(f"| {name} | " + " | ".join(cells) + " |")
    (out / "mixed_accuracy.json").write_text(json.dumps(results, indent=1))
    print(f"\nper-run numbers: {out / 'mixed_accuracy.json'}")


if __name__ == "__main__":
    main()
