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
writes ``<out>/demo_accuracy.png`` (test accuracy against iterations) and ``<out>/demo.json``
(the settings and every run's numbers: the docs' demo table is rendered from a copy of it,
``docs/records/demo.json``, by ``scripts/docs_tables.py``).

    .venv/bin/python scripts/demo_digits.py [--seeds 0 1 2] [--iters 300] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

# one source with the ``digits_demo`` table of ``dm-ssl sweep``
from dm_ssl.experiments.tables import DIGITS_METHODS as METHODS
from dm_ssl.experiments.tables import digits_config


def base_config(iters: int, num_labels: int = 50) -> Dict[str, Any]:
    """The demo's config on the CPU (also the base of the other ``exp_*`` digits scripts)."""
    return {**digits_config(iters, num_labels), "device": "cpu"}


def recorder():
    from semilearn.core.hooks import Hook

    class Recorder(Hook):
        """Per-step mask ratios and every evaluation's accuracy and loss."""

        def before_run(self, algorithm):
            algorithm.demo_record = {"util": [], "mix_mask": [], "curve": [], "eval_loss": []}

        def after_train_step(self, algorithm):
            rec, logs = algorithm.demo_record, algorithm.log_dict
            rec["util"].append(logs.get("train/util_ratio", float("nan")))
            if "train/mix_mask_ratio" in logs:
                rec["mix_mask"].append(logs["train/mix_mask_ratio"])
            if "eval/top-1-acc" in logs:
                rec["curve"].append((algorithm.it + 1, logs["eval/top-1-acc"]))
                # the loss moves with every weight from the first step, while the accuracy
                # stays at chance for a while: what makes a short rerun sensitive
                rec["eval_loss"].append((algorithm.it + 1, logs["eval/loss"]))

    return Recorder()


def method_config(name: str, seed: int, iters: int, num_labels: int, out: Path,
                  verbose: bool = False) -> Dict[str, Any]:
    """One demo run's config: method ``name`` of :data:`METHODS` at ``seed``, under ``out``."""
    slug = name.lower().replace(" ", "_").replace("+", "").replace("(", "").replace(")", "")
    return {**base_config(iters, num_labels), **METHODS[name], "seed": seed,
            "save_dir": str(out), "save_name": f"{slug}_s{seed}", "verbose": verbose}


def machine() -> Dict[str, Any]:
    """What a run's float reductions depend on: torch, its thread count, the CPU and the
    instruction set its kernels use."""
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:  # Linux: the model name is what tells two x86 machines apart
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    # the vector instruction set torch's CPU kernels dispatch on (AVX2, AVX512, ...)
    return {"torch": torch.__version__, "torch_threads": torch.get_num_threads(), "cpu": cpu,
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def same_machine(meta: Dict[str, Any], threads: int) -> bool:
    """Whether runs here with ``threads`` torch threads reduce floats as the ones recorded with
    ``meta`` (a record's meta: :func:`machine` when it ran) did, so repeat its numbers bit for
    bit."""
    here = {**machine(), "torch_threads": threads}
    return all(meta.get(k) == v for k, v in here.items())


def add_set_option(ap: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE`` (repeatable): a config key for every run of an experiment script."""
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="a config key for every run, as dm-ssl train --set "
                         "(e.g. augment_on=device); repeatable")


def set_overrides(ap: argparse.ArgumentParser, args: argparse.Namespace) -> Dict[str, Any]:
    """The ``--set`` pairs as typed values (``dm-ssl train --set``'s parser); a malformed
    pair is the parser's one-line error."""
    from dm_ssl.config import ConfigError, apply_overrides

    try:
        return apply_overrides({}, args.overrides)
    except ConfigError as err:
        ap.error(str(err))


class _StopAt(Exception):
    """Ends a run after a given iteration (its schedule unchanged)."""


def stop_at(iteration: int):
    """A semilearn hook that ends the run after step ``iteration`` (raises :class:`_StopAt`
    after the hooks before it, its evaluation included, have run)."""
    from semilearn.core.hooks import Hook

    class StopAt(Hook):
        def after_train_step(self, algorithm):
            if algorithm.it + 1 >= iteration:
                raise _StopAt(iteration)

    return StopAt()


def run_one(cfg: Dict[str, Any], until: Optional[int] = None) -> Dict[str, Any]:
    """One run of ``cfg``: its final and best test accuracy, its evaluation curve and its
    mask ratios. ``until``: end it after that iteration, the schedule still the whole run's,
    so the curves are the first part of the full run's bit for bit; only ``curve`` and
    ``eval_loss`` (the evaluations' loss, ``(iteration, loss)``) are returned."""
    from dm_ssl.config import validate
    from dm_ssl.run import prepare_run, set_seed

    cfg = validate(cfg)
    set_seed(cfg["seed"])
    alg, _, run_dir = prepare_run(cfg)
    alg.register_hook(recorder(), "DemoRecorder", "LOWEST")
    if until is not None:  # after the recorder: the step's evaluation is on the curve
        alg.register_hook(stop_at(until), "DemoStopAt", "LOWEST")
        try:
            alg.train()
        except _StopAt:
            return {key: alg.demo_record[key] for key in ("curve", "eval_loss")}
        raise RuntimeError(f"the run ended before iteration {until}")
    alg.train()
    final = alg.evaluate("eval")["eval/top-1-acc"]
    rec = alg.demo_record
    tail = max(len(rec["util"]) // 5, 1)  # mask ratios over the last 20 % of the run
    return {"final": final, "best": float(alg.best_eval_acc), "curve": rec["curve"],
            "eval_loss": rec["eval_loss"],
            "mask": statistics.fmean(rec["util"][-tail:]),
            "mix_mask": statistics.fmean(rec["mix_mask"][-tail:]) if rec["mix_mask"] else None}


def curve_until(curve: List[Any], until: int) -> List[tuple]:
    """The ``(iteration, value)`` points of an evaluation curve (a run's or a record's, whose
    JSON has lists; accuracy or loss) up to iteration ``until``: what ``run_one(cfg, until)``
    repeats."""
    return [tuple(point) for point in curve if point[0] <= until]


def fmt(values: List[float], scale: float = 100.0) -> str:
    values = [v * scale for v in values]
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):6.2f} ± {std:5.2f}"


def mean_std(values: List[float], scale: float = 100.0) -> str:
    """``mean ± std`` (sample std; 0 for one value) of ``values × scale``, 2 decimals."""
    values = [v * scale for v in values]
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} ± {std:.2f}"


def markdown_table(results: Dict[str, List[Dict[str, Any]]]) -> str:
    """The docs' demo table from ``demo.json``'s results (scripts/docs_tables.py renders the
    README's and docs/results.md's copy with it): mean ± std over seeds, the best mean of each
    accuracy column in bold."""
    def mean(values: List[float]) -> float:
        return round(statistics.fmean(values) * 100, 2)

    top = {k: max(mean([r[k] for r in runs]) for runs in results.values())
           for k in ("final", "best")}
    out = ["| method | final acc (%) | best acc (%) | mask ratio | L_lu mask ratio |",
           "|---|---|---|---|---|"]
    for name, runs in results.items():
        accs = []
        for k in ("final", "best"):
            text = mean_std([r[k] for r in runs])
            accs.append(f"**{text}**" if mean([r[k] for r in runs]) == top[k] else text)
        mix = [r["mix_mask"] for r in runs if r["mix_mask"] is not None]
        out.append(f"| {name} | {accs[0]} | {accs[1]} | {mean_std([r['mask'] for r in runs], 1)}"
                   f" | {mean_std(mix, 1) if mix else '–'} |")
    return "\n".join(out) + "\n"


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
    add_set_option(ap)
    ap.add_argument("--verbose", action="store_true",
                    help="semilearn's log lines on the terminal too (always in each log.txt)")
    args = ap.parse_args()
    from dm_ssl.cli import quiet_third_party_warnings

    quiet_third_party_warnings()
    overrides = set_overrides(ap, args)
    out = Path(args.out or time.strftime("runs/demo-%Y%m%d-%H%M%S"))
    if out.exists() and any(out.iterdir()):  # never overwrite earlier results
        ap.error(f"--out {out} is not empty; choose another folder")
    t0 = time.time()
    results: Dict[str, List[Dict[str, Any]]] = {}
    for name in METHODS:
        for seed in args.seeds:
            cfg = method_config(name, seed, args.iters, args.num_labels, out, args.verbose)
            start = time.time()
            results.setdefault(name, []).append({**run_one({**cfg, **overrides}),
                                                 "seconds": round(time.time() - start, 1)})
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
    meta = {"command": "bash scripts/run.sh " + " ".join(sys.argv[1:]), "seeds": args.seeds,
            "iters": args.iters, "num_labels": args.num_labels, "set": overrides,
            "seconds": round(time.time() - t0), "date": time.strftime("%Y-%m-%d"), **machine()}
    # the run record the docs' demo table is rendered from (scripts/docs_tables.py)
    (out / "demo.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print(f"\nplot: {out / 'demo_accuracy.png'}; per-run numbers: {out / 'demo.json'}")


if __name__ == "__main__":
    main()
