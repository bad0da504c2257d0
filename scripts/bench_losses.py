#!/usr/bin/env python
"""Forward + backward time of DM(CE) against MCE, a soft-target CE and loop formulations.

Prints, for N = 448 and C in {10, 100, 1000}, the median time of forward + backward of each
loss and its ratio to the soft-target CE (timm's ``SoftTargetCrossEntropy`` formula), all
measured in this one run, on CPU and on CUDA when present. Target (issue #2): DM(CE) ≤ 1.5×
soft-target CE at N = 448, C = 100.

    .venv/bin/python scripts/bench_losses.py [--n 448] [--classes 10 100 1000] [--repeats 50]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, Dict

import torch
import torch.nn.functional as F

from dm_ssl.losses import decoupled_mixup_ce, mixup_ce


def soft_target_ce(z, target):
    """timm.loss.SoftTargetCrossEntropy."""
    return torch.sum(-target * F.log_softmax(z, dim=-1), dim=-1).mean()


def mixup_target(y_a, y_b, lam, c):
    """timm.data.mixup.mixup_target without smoothing: what a soft-target CE needs per batch."""
    lam = lam.unsqueeze(1)
    return lam * F.one_hot(y_a, c) + (1 - lam) * F.one_hot(y_b, c)


def dm_ce_loop(z, y_a, y_b, lam, eta):
    """The straightforward form: MCE plus one masked log-softmax per mixed class (a loop)."""
    loss = mixup_ce(z, y_a, y_b, lam, reduction="none")
    for y_i, y_other, share in ((y_a, y_b, lam), (y_b, y_a, 1 - lam)):
        masked = z.masked_fill(F.one_hot(y_other, z.shape[1]).bool(), float("-inf"))
        nll = -F.log_softmax(masked, 1).gather(1, y_i[:, None])[:, 0]
        valid = (y_a != y_b) & (share > 0) & (share < 1)
        loss = loss + eta * torch.where(valid, nll, torch.zeros_like(nll))
    return loss.mean()


def dm_ce_autograd(z, y_a, y_b, lam, eta):
    """The same math as dm_ssl's kernel, composed of autograd ops (masked log-sum-exp)."""
    idx = torch.stack([y_a, y_b], 1)
    zy = z.gather(1, idx)
    lse_r = torch.logsumexp(z.scatter(1, idx, float("-inf")), 1, keepdim=True)
    lse_all = torch.logsumexp(torch.cat([lse_r, zy], 1), 1)
    share = torch.stack([lam, 1 - lam], 1)
    mce = lse_all - (share * zy).sum(1)
    dec = (torch.logaddexp(lse_r, zy) - zy).sum(1)
    return (mce + eta * dec).mean()


def candidates(z, y_a, y_b, lam, target) -> Dict[str, Callable[[], torch.Tensor]]:
    c = z.shape[1]
    return {
        "soft-target CE (timm)": lambda: soft_target_ce(z, target),
        "soft-target CE + target build": lambda: soft_target_ce(z, mixup_target(y_a, y_b, lam, c)),
        "MCE (dm_ssl.mixup_ce)": lambda: mixup_ce(z, y_a, y_b, lam),
        "DM(CE) (dm_ssl)": lambda: decoupled_mixup_ce(z, y_a, y_b, lam, eta=0.1),
        "DM(CE) autograd composition": lambda: dm_ce_autograd(z, y_a, y_b, lam, 0.1),
        "DM(CE) loop over mixed classes": lambda: dm_ce_loop(z, y_a, y_b, lam, 0.1),
    }


def bench(fn: Callable[[], torch.Tensor], z: torch.Tensor, repeats: int, sync) -> float:
    for _ in range(5):
        z.grad = None
        fn().backward()
    times = []
    for _ in range(repeats):
        z.grad = None
        sync()
        t0 = time.perf_counter()
        fn().backward()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(device: torch.device, n: int, classes, repeats: int) -> None:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    threads = f", {torch.get_num_threads()} threads" if device.type == "cpu" else ""
    print(f"\n## {device.type}{threads}: N = {n}, forward + backward, median of {repeats}")
    print(f"{'loss':<34}" + "".join(f"{'C=' + str(c):>20}" for c in classes))
    rows: Dict[str, list] = {}
    for c in classes:
        g = torch.Generator().manual_seed(0)
        z = torch.randn(n, c, generator=g).to(device).requires_grad_()
        y_a = torch.randint(0, c, (n,), generator=g).to(device)
        y_b = torch.randint(0, c, (n,), generator=g).to(device)
        lam = torch.rand(n, generator=g).to(device)
        target = mixup_target(y_a, y_b, lam, c)
        fns = candidates(z, y_a, y_b, lam, target)
        base = None
        for name, fn in fns.items():
            t = bench(fn, z, repeats, sync)
            base = base or t
            rows.setdefault(name, []).append(f"{t * 1e3:8.3f} ms {t / base:5.2f}x")
    for name, cells in rows.items():
        print(f"{name:<34}" + "".join(f"{cell:>20}" for cell in cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=448)
    ap.add_argument("--classes", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args()
    print("ratios are to the soft-target CE of the same column, measured in this run")
    run(torch.device("cpu"), args.n, args.classes, args.repeats)
    if torch.cuda.is_available():
        run(torch.device("cuda"), args.n, args.classes, args.repeats)


if __name__ == "__main__":
    main()
