#!/usr/bin/env python
"""The DM options against each other on the offline digits demo (README: Differences from the
official code): FixMatch and FixMatch + DM(CE) with each of ``dm_bn``, ``dm_forward``,
``dm_bias_ll``, ``dm_ramp_ll`` and ``dm_w_ll = 0``, the demo's settings, several seeds.

Prints one Markdown table of mean ± std of the final and best test accuracy and both mask
ratios (the last 20 % of the run), and writes ``<out>/dm_options.json``.

    .venv/bin/python scripts/exp_dm_options.py [--seeds 0 1 2] [--iters 300] [--only dm ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_digits import base_config, fmt, run_one  # noqa: E402  (same folder)

DM = {"algorithm": "fixmatch_dm"}
VARIANTS: Dict[str, Dict[str, Any]] = {
    "FixMatch": {"algorithm": "fixmatch"},
    "DM(CE), defaults": DM,
    "DM(CE), dm_bn=freeze": {**DM, "dm_bn": "freeze"},
    "DM(CE), dm_forward=separate": {**DM, "dm_forward": "separate"},
    "DM(CE), freeze + separate": {**DM, "dm_bn": "freeze", "dm_forward": "separate"},
    "DM(CE), dm_bias_ll=true": {**DM, "dm_bias_ll": True},
    "DM(CE), dm_ramp_ll=cosine": {**DM, "dm_ramp_ll": "cosine"},
    "DM(CE), dm_w_ll=0": {**DM, "dm_w_ll": 0.0},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--num-labels", type=int, default=50)
    ap.add_argument("--only", nargs="+", default=None, help="variants whose name contains one")
    ap.add_argument("--out", default=None, help="default: runs/dm-options-<date>-<time>")
    args = ap.parse_args()
    out = Path(args.out or time.strftime("runs/dm-options-%Y%m%d-%H%M%S"))
    if out.exists() and any(out.iterdir()):
        ap.error(f"--out {out} is not empty; choose another folder")
    variants = {k: v for k, v in VARIANTS.items()
                if not args.only or any(s in k for s in args.only)}
    results: Dict[str, List[Dict[str, Any]]] = {}
    t0 = time.time()
    for i, (name, opts) in enumerate(variants.items()):
        for seed in args.seeds:
            cfg = {**base_config(args.iters, args.num_labels), **opts, "seed": seed,
                   "save_dir": str(out), "save_name": f"v{i}_s{seed}"}
            r = run_one(cfg)
            results.setdefault(name, []).append(r)
            print(f"  {name:<30} seed {seed}: final {r['final'] * 100:.2f}  best "
                  f"{r['best'] * 100:.2f}  ({time.time() - t0:.0f} s)", flush=True)
    print(f"\ndigits, {args.num_labels} labels, {args.iters} iterations, seeds {args.seeds}\n")
    print("| variant | final acc (%) | best acc (%) | mask ratio | L_lu mask ratio |")
    print("|---|---|---|---|---|")
    for name, runs in results.items():
        mix = [r["mix_mask"] for r in runs if r["mix_mask"] is not None]
        print(f"| {name} | {fmt([r['final'] for r in runs])} | {fmt([r['best'] for r in runs])}"
              f" | {fmt([r['mask'] for r in runs], 1)} | {fmt(mix, 1) if mix else '–'} |")
    (out / "dm_options.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
