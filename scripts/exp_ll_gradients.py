#!/usr/bin/env python
"""Why L_ll at full weight slows learning (issue #11): its gradient on the backbone against the
supervised loss's, during a FixMatch + DM(CE) run with ``dm_w_ll = 1`` on the colour digits.

Every ``--every`` steps, on that step's batch and before the step: the norm of the gradient of
the labeled cross-entropy and of ``w_ll · L_ll`` with respect to the backbone's parameters (the
heads excluded), and their cosine. The extra forwards are diagnostic only (they run in train
mode, so they also count in the BN running statistics of this run). Writes
``<out>/ll_gradients.json`` (the settings, every measured step, the final accuracy); the docs'
table is rendered from a copy of it under ``docs/records/`` with :func:`markdown_table`.

    .venv/bin/python scripts/exp_ll_gradients.py --colour data/colour_digits [--seed 0]
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_digits import machine  # noqa: E402
from exp_dm_options import base_config, colour_config, ensure_colour_digits  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--colour", type=Path, required=True, help="colour digits folder")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--num-labels", type=int, default=250)
    ap.add_argument("--img-size", type=int, default=16)
    ap.add_argument("--every", type=int, default=20)
    ap.add_argument("--out", default=None, help="default: runs/ll-gradients-<date>-<time>")
    ap.add_argument("--show-every", type=int, default=40,
                    help="the Markdown table's column spacing (steps)")
    args = ap.parse_args()
    out = Path(args.out or time.strftime("runs/ll-gradients-%Y%m%d-%H%M%S"))
    if out.exists() and any(out.iterdir()):
        ap.error(f"--out {out} is not empty; choose another folder")
    t0 = time.time()
    from dm_ssl.config import validate
    from dm_ssl.run import prepare_run, set_seed

    cfg = colour_config(base_config(args.iters, args.num_labels),
                        ensure_colour_digits(args.colour), args.img_size)
    cfg.update(algorithm="fixmatch_dm", dm_w_ll=1.0, seed=args.seed, num_eval_iter=args.iters,
               save_dir=str(out), save_name=f"s{args.seed}")
    cfg = validate(cfg)
    set_seed(cfg["seed"])
    alg, _, _ = prepare_run(cfg)
    real_step = alg.train_step
    print("step  sup_loss  w_ll*L_ll  |grad sup|  |grad L_ll|  cosine")
    steps = []

    def step(**batch):
        if alg.it % args.every == 0:
            net = alg.model.backbone
            params = [p for n, p in net.named_parameters() if "classifier" not in n]
            sup = torch.nn.functional.cross_entropy(net(batch["x_lb"])["logits"], batch["y_lb"])
            g_sup = torch.cat([g.flatten() for g in torch.autograd.grad(sup, params)])
            w_lu, state = alg.dm.cfg.w_lu, alg.dm.generator.get_state()
            alg.dm.cfg.w_lu = 0.0  # L_ll alone; the draws are replayed by the real step
            try:
                with torch.no_grad():
                    probs = torch.softmax(net(batch["x_ulb_w"])["logits"], -1)
                ll, _ = alg.dm(alg.mixing, net, batch["x_lb"], batch["y_lb"],
                               batch["x_ulb_w"], probs, None, p_cutoff=0.95,
                               use_host_mask=False, it=alg.it, total_it=alg.num_train_iter)
            finally:
                alg.dm.cfg.w_lu = w_lu
                alg.dm.generator.set_state(state)
            g_ll = torch.cat([g.flatten() for g in torch.autograd.grad(ll, params)])
            cos = torch.nn.functional.cosine_similarity(g_sup, g_ll, 0).item()
            steps.append({"step": alg.it, "sup": sup.item(), "ll": ll.item(),
                          "grad_sup": g_sup.norm().item(), "grad_ll": g_ll.norm().item(),
                          "cosine": cos})
            print(f"{alg.it:4d}  {sup.item():8.3f}  {ll.item():9.3f}  {g_sup.norm().item():10.3f}"
                  f"  {g_ll.norm().item():11.3f}  {cos:6.3f}", flush=True)
        return real_step(**batch)

    step.__signature__ = inspect.signature(real_step)
    alg.train_step = step
    alg.train()
    final = alg.evaluate("eval")["eval/top-1-acc"]
    print(f"final test accuracy {final * 100:.2f} %")
    meta = {"command": "scripts/exp_ll_gradients.py " + " ".join(sys.argv[1:]),
            "seed": args.seed, "iters": args.iters, "num_labels": args.num_labels,
            "img_size": args.img_size, "every": args.every, "show_every": args.show_every,
            "seconds": round(time.time() - t0), "date": time.strftime("%Y-%m-%d"), **machine()}
    record = {"meta": meta, "steps": steps, "final": final}
    (out / "ll_gradients.json").write_text(json.dumps(record, indent=1))
    print(markdown_table(record))


def markdown_table(record: Dict[str, Any]) -> str:
    """``ll_gradients.json``'s table: every ``show_every`` steps the labeled CE, ``w_ll · L_ll``,
    the ratio of their backbone-gradient norms and the gradients' cosine; then the ratio's range
    and mean over every measured step and the run's final accuracy."""
    steps = record["steps"]
    shown = [s for s in steps if s["step"] % record["meta"]["show_every"] == 0]
    ratios = [s["grad_ll"] / s["grad_sup"] for s in steps]

    def row(label: str, values) -> str:
        return f"| {label} | " + " | ".join(values) + " |"

    out = [row("step", [str(s["step"]) for s in shown]), "|---|" + "---|" * len(shown),
           row("labeled CE", [f"{s['sup']:.2f}" for s in shown]),
           row("`w_ll · L_ll`", [f"{s['ll']:.2f}" for s in shown]),
           row("‖∇ L_ll‖ / ‖∇ CE‖ (backbone)", [f"{s['grad_ll'] / s['grad_sup']:.2f}"
                                               for s in shown]),
           row("cosine of the two gradients", [f"{s['cosine']:.2f}".replace("-", "−")
                                              for s in shown]),
           "", f"(every {record['meta']['every']} steps: ratio {min(ratios):.2f}–"
           f"{max(ratios):.2f}, mean {statistics.fmean(ratios):.2f}; the run's final accuracy "
           f"{record['final'] * 100:.1f} %)"]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
