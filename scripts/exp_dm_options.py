#!/usr/bin/env python
"""The DM options against each other (README: Differences from the official code): FixMatch
and FixMatch + DM(CE) with the defaults, each of ``dm_bn`` × ``dm_pseudo``, ``dm_forward``,
L_ll at ``dm_w_ll = 1`` (from the first step, or ramped) and every official value at once,
several seeds.

Two data sets, both offline: the digits demo (its settings; the default), or ``--colour DIR``:
the colour digits of ``make_colour_digits.py`` (``plain`` style, written to DIR when missing)
read through the CIFAR-10 reader at 32×32 RGB with the demo's optimiser, 3 input channels and
``--img-size`` (32). Prints one Markdown table of mean ± std of the final and best test
accuracy and both mask ratios (the last 20 % of the run), and writes ``<out>/dm_options.json``
(the settings and every run's numbers; the docs' DM-options tables are rendered from copies of it
under ``docs/records/`` by ``scripts/docs_tables.py``, with :func:`markdown_table`).

    .venv/bin/python scripts/exp_dm_options.py [--seeds 0 1 2] [--iters 300] [--only dm ...]
    .venv/bin/python scripts/exp_dm_options.py --colour data/colour_digits --num-labels 250 \
        --iters 500
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import sys
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_digits import (  # noqa: E402  (same folder)
    add_set_option,
    base_config,
    machine,
    mean_std,
    run_one,
    set_overrides,
)

from dm_ssl.experiments.grids import DM_KEYS  # noqa: E402

DM = {"algorithm": "fixmatch_dm"}
#: every DM key at the official DMixMatch's value: what the shipped SSL DM configs set
OFFICIAL = dict(DM_KEYS)
VARIANTS: Dict[str, Dict[str, Any]] = {
    "FixMatch": {"algorithm": "fixmatch"},
    "DM(CE), defaults (bn=update, pseudo=host)": DM,
    "DM(CE), bn=freeze, pseudo=host": {**DM, "dm_bn": "freeze", "dm_pseudo": "host"},
    "DM(CE), bn=update, pseudo=ema": {**DM, "dm_bn": "update", "dm_pseudo": "ema"},
    "DM(CE), bn=freeze, pseudo=ema": {**DM, "dm_bn": "freeze", "dm_pseudo": "ema"},
    "DM(CE), dm_forward=separate": {**DM, "dm_forward": "separate"},
    "DM(CE), dm_w_ll=1": {**DM, "dm_w_ll": 1.0},
    "DM(CE), dm_w_ll=1, dm_ramp_ll=cosine": {**DM, "dm_w_ll": 1.0, "dm_ramp_ll": "cosine"},
    "DM(CE), all official values": {**DM, **OFFICIAL},
    # issue #27: should the shipped paper configs ramp L_ll?
    "DM(CE), all official values, dm_ramp_ll=cosine": {**DM, **OFFICIAL, "dm_ramp_ll": "cosine"},
}


def colour_config(cfg: Dict[str, Any], root: Path, img_size: int) -> Dict[str, Any]:
    """The demo's config on the colour digits (CIFAR-10 layout under ``root``)."""
    return {**cfg, "dataset": "cifar10", "data_dir": str(root), "in_channels": 3,
            "img_size": img_size, "eval_batch_size": 500}


def ensure_colour_digits(root: Path) -> Path:
    """Write the plain-style colour digits to ``root`` unless they are there already."""
    from make_colour_digits import FOLDER, make_colour_digits, write_cifar10_layout

    if not (root / FOLDER / "test_batch").exists():
        write_cifar10_layout(root, *make_colour_digits(style="plain"))
    return root


@contextlib.contextmanager
def runner(jobs: int, threads: Optional[int]):
    """``submit(cfg) -> future`` of :func:`run_one`: in this process one at a time, or
    ``jobs`` at a time in spawned processes (a fresh interpreter each: the same numbers as
    in-process runs with the same thread count)."""
    if jobs <= 1:
        if threads:
            torch.set_num_threads(threads)

        def now(cfg: Dict[str, Any]) -> Future:  # in the main thread (signal handlers), in order
            future: Future = Future()
            future.set_result(run_one(cfg))
            return future

        yield now
        return
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=torch.set_num_threads, initargs=(threads or 1,)) as pool:
        yield lambda cfg: pool.submit(run_one, cfg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--num-labels", type=int, default=50)
    ap.add_argument("--only", nargs="+", default=None, help="variants whose name contains one")
    ap.add_argument("--colour", type=Path, default=None,
                    help="run on the colour digits in this folder (written when missing)")
    ap.add_argument("--img-size", type=int, default=32, help="with --colour: the input side")
    add_set_option(ap)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads per run (default: torch's); the float reductions, so "
                         "the numbers, depend on it")
    ap.add_argument("--jobs", type=int, default=1,
                    help="runs at a time, each in a spawned process (as tests/test_dm_guard.py)")
    ap.add_argument("--out", default=None, help="default: runs/dm-options-<date>-<time>")
    args = ap.parse_args()
    out = Path(args.out or time.strftime("runs/dm-options-%Y%m%d-%H%M%S"))
    if out.exists() and any(out.iterdir()):
        ap.error(f"--out {out} is not empty; choose another folder")
    overrides = set_overrides(ap, args)
    variants = {k: v for k, v in VARIANTS.items()
                if not args.only or any(s in k for s in args.only)}
    configs = {}
    for i, (name, opts) in enumerate(variants.items()):
        for seed in args.seeds:
            cfg = base_config(args.iters, args.num_labels)
            if args.colour is not None:
                cfg = colour_config(cfg, ensure_colour_digits(args.colour), args.img_size)
            configs[name, seed] = {**cfg, **opts, **overrides, "seed": seed,
                                   "save_dir": str(out), "save_name": f"v{i}_s{seed}"}
    t0 = time.time()
    with runner(args.jobs, args.threads) as submit:
        futures = {key: submit(cfg) for key, cfg in configs.items()}
        results: Dict[str, List[Dict[str, Any]]] = {}
        for (name, seed), future in futures.items():
            r = future.result()
            results.setdefault(name, []).append(r)
            print(f"  {name:<30} seed {seed}: final {r['final'] * 100:.2f}  best "
                  f"{r['best'] * 100:.2f}  ({time.time() - t0:.0f} s)", flush=True)
    data = "digits" if args.colour is None else f"colour digits at {args.img_size} px"
    meta = {"command": "scripts/exp_dm_options.py " + " ".join(sys.argv[1:]), "data": data,
            "seeds": args.seeds, "iters": args.iters, "num_labels": args.num_labels,
            "set": overrides,
            "seconds": round(time.time() - t0), "date": time.strftime("%Y-%m-%d"), **machine(),
            "jobs": args.jobs}
    if args.threads or args.jobs > 1:  # what the runs used, not this process
        meta["torch_threads"] = args.threads or 1
    record = {"meta": meta, "results": results}
    print(f"\n{data}, {args.num_labels} labels, {args.iters} iterations, seeds {args.seeds}\n")
    print(markdown_table(record))
    (out / "dm_options.json").write_text(json.dumps(record, indent=1))


def markdown_table(record: Dict[str, Any]) -> str:
    """``dm_options.json``'s table: per variant, mean ± std over seeds of the final and best
    test accuracy (%) and of both mask ratios."""
    out = ["| variant | final acc (%) | best acc (%) | mask ratio | L_lu mask ratio |",
           "|---|---|---|---|---|"]
    for name, runs in record["results"].items():
        mix = [r["mix_mask"] for r in runs if r["mix_mask"] is not None]
        cells = [mean_std([r["final"] for r in runs]), mean_std([r["best"] for r in runs]),
                 mean_std([r["mask"] for r in runs], 1), mean_std(mix, 1) if mix else "–"]
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"

if __name__ == "__main__":
    main()
