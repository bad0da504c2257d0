#!/usr/bin/env python
"""Offline SSL demo on real data: supervised-only vs FixMatch vs FixMatch + mixup vs + DM(CE).

scikit-learn's handwritten digits (1,797 real 8×8 images shipped inside scikit-learn, nothing
to download), few labels, a small CNN, CPU. Every method is the same ``dm-ssl`` pipeline
(semilearn's FixMatch through dm_ssl's driver), differing only in its config:

* supervised only: ``fixmatch`` with ``ulb_loss_ratio = 0`` (labeled loss only);
* FixMatch: ``fixmatch``;
* FixMatch + mixup: ``fixmatch_dm`` with ``dm_loss = mce`` (η = 0, the ablation that isolates
  the decoupled term);
* FixMatch + DM(CE): ``fixmatch_dm`` with the official DM defaults (spec §6.1).

The same four runs are the ``digits_demo`` table of ``dm-ssl sweep`` (same configs, from
``dm_ssl.experiments.tables``); this script adds the mask ratios and the accuracy plot.

Prints mean ± std over seeds of the final and best test accuracy and of the mask ratios, and
writes ``<out>/demo_accuracy.png`` (test accuracy against iterations) and ``<out>/demo.json``.

    .venv/bin/python scripts/demo_digits.py [--seeds 0 1 2] [--iters 300] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any, Dict, List

# one source with the ``digits_demo`` table of ``dm-ssl sweep``
from dm_ssl.experiments.tables import DIGITS_METHODS as METHODS
from dm_ssl.experiments.tables import digits_config


def base_config(iters: int, num_labels: int = 50) -> Dict[str, Any]:
    """The demo's config on the CPU (also the base of the other ``exp_*`` digits scripts)."""
    return {**digits_config(iters, num_labels), "device": "cpu"}


def recorder():
    from semilearn.core.hooks import Hook

    class Recorder(Hook):
        """Per-step mask ratios and every evaluation's accuracy."""

        def before_run(self, algorithm):
            algorithm.demo_record = {"util": [], "mix_mask": [], "curve": []}

        def after_train_step(self, algorithm):
            rec, logs = algorithm.demo_record, algorithm.log_dict
            rec["util"].append(logs.get("train/util_ratio", float("nan")))
            if "train/mix_mask_ratio" in logs:
                rec["mix_mask"].append(logs["train/mix_mask_ratio"])
            if "eval/top-1-acc" in logs:
                rec["curve"].append((algorithm.it + 1, logs["eval/top-1-acc"]))

    return Recorder()


def run_one(cfg: Dict[str, Any]) -> Dict[str, Any]:
    from dm_ssl.config import validate
    from dm_ssl.run import prepare_run, set_seed

    cfg = validate(cfg)
    set_seed(cfg["seed"])
    alg, _, run_dir = prepare_run(cfg)
    alg.register_hook(recorder(), "DemoRecorder", "LOWEST")
    alg.train()
    final = alg.evaluate("eval")["eval/top-1-acc"]
    rec = alg.demo_record
    tail = max(len(rec["util"]) // 5, 1)  # mask ratios over the last 20 % of the run
    return {"final": final, "best": float(alg.best_eval_acc), "curve": rec["curve"],
            "mask": statistics.fmean(rec["util"][-tail:]),
            "mix_mask": statistics.fmean(rec["mix_mask"][-tail:]) if rec["mix_mask"] else None}


def fmt(values: List[float], scale: float = 100.0) -> str:
    values = [v * scale for v in values]
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):6.2f} ± {std:5.2f}"


def plot(results: Dict[str, List[Dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, runs in results.items():
        its = [it for it, _ in runs[0]["curve"]]
        accs = np.array([[acc for _, acc in r["curve"]] for r in runs]) * 100
        mean, std = accs.mean(0), accs.std(0)
        ax.plot(its, mean, label=name)
        ax.fill_between(its, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("iteration")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"digits, {len(next(iter(results.values())))} seeds (mean ± std)")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--num-labels", type=int, default=50)
    ap.add_argument("--out", default=None,
                    help="output folder (default: runs/demo-<date>-<time>, never reused)")
    ap.add_argument("--verbose", action="store_true",
                    help="semilearn's log lines on the terminal too (always in each log.txt)")
    args = ap.parse_args()
    from dm_ssl.cli import quiet_third_party_warnings

    quiet_third_party_warnings()
    out = Path(args.out or time.strftime("runs/demo-%Y%m%d-%H%M%S"))
    if out.exists() and any(out.iterdir()):  # never overwrite earlier results
        ap.error(f"--out {out} is not empty; choose another folder")
    t0 = time.time()
    results: Dict[str, List[Dict[str, Any]]] = {}
    for name, method in METHODS.items():
        for seed in args.seeds:
            slug = name.lower().replace(" ", "_").replace("+", "").replace("(", "")
            cfg = {**base_config(args.iters, args.num_labels), **method, "seed": seed,
                   "save_dir": str(out), "save_name": f"{slug.replace(')', '')}_s{seed}",
                   "verbose": args.verbose}
            results.setdefault(name, []).append(run_one(cfg))
            r = results[name][-1]
            print(f"  {name:<24} seed {seed}: final {r['final'] * 100:.2f}  "
                  f"best {r['best'] * 100:.2f}  ({time.time() - t0:.0f} s)", flush=True)
    print(f"\ndigits, {args.num_labels} labels, {args.iters} iterations, seeds {args.seeds} "
          f"({time.time() - t0:.0f} s on this machine)")
    print(f"{'method':<24} {'final acc (%)':>16} {'best acc (%)':>16} {'mask ratio':>16} "
          f"{'L_lu mask ratio':>16}")
    for name, runs in results.items():
        mix = [r["mix_mask"] for r in runs if r["mix_mask"] is not None]
        print(f"{name:<24} {fmt([r['final'] for r in runs]):>16} "
              f"{fmt([r['best'] for r in runs]):>16} {fmt([r['mask'] for r in runs], 1):>16} "
              f"{fmt(mix, 1) if mix else '-':>16}")
    plot(results, out / "demo_accuracy.png")
    (out / "demo.json").write_text(json.dumps(results, indent=1))
    print(f"\nplot: {out / 'demo_accuracy.png'}; per-run numbers: {out / 'demo.json'}")


if __name__ == "__main__":
    main()
