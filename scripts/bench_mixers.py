#!/usr/bin/env python
"""Cost of each mixer per batch, against one training step of the network it feeds.

For every registered mixer, the median wall time of one call (mixing a batch with a random
permutation of itself; PuzzleMix includes its saliency forward/backward, graph solver and
transport; its solver + transport alone are also timed per grid size n) and, for reference,
of one forward + backward of the network on the unmixed batch, all measured in this one run, on
CPU (and CUDA when present). Default: CIFAR-sized batch of 100 3×32×32 images,
``cifar_resnet18``, 100 classes.

    .venv/bin/python scripts/bench_mixers.py [--batch 100] [--size 32] [--net cifar_resnet18]
                                             [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F


def median_ms(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    fn()  # warm-up (allocations, lazy initialisation)
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--net", default="cifar_resnet18")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        bench(device, args)


def bench(device: str, args: argparse.Namespace) -> None:
    from dm_ssl.mixers import MIXERS, build_mixer, puzzlemix_images
    from dm_ssl.nets import get_net_builder

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=g).to(device)
    y = torch.randint(args.classes, (args.batch,), generator=g).to(device)
    net = get_net_builder(args.net)(num_classes=args.classes).to(device).train()

    def step() -> None:
        net.zero_grad(set_to_none=True)
        F.cross_entropy(net(x)["logits"], y).backward()

    ref = median_ms(step, args.repeats, sync)
    print(f"\n{device}: batch {args.batch}×3×{args.size}², {args.net}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"{'':<14} {'ms / batch':>12} {'× fwd+bwd':>10}")
    print(f"{'fwd+bwd':<14} {ref:12.1f} {1.0:10.3f}")
    for name in sorted(MIXERS):
        call = partial(build_mixer(name, alpha=1.0), x, y,
                       generator=torch.Generator().manual_seed(1), model=net)
        ms = median_ms(call, args.repeats, sync)
        print(f"{name:<14} {ms:12.1f} {ms / ref:10.3f}")
    # PuzzleMix without its saliency pass: mask solver + transport per grid size
    sal = torch.rand(args.batch, args.size, args.size, generator=g).to(device)
    perm = torch.randperm(args.batch, generator=g).to(device)
    lam = torch.rand(args.batch, generator=g, dtype=torch.float64).to(device)
    for n in (2, 4, 8, 16):
        if args.size % n == 0:
            ms = median_ms(partial(puzzlemix_images, x, x[perm], sal, sal[perm], lam,
                                   block_num=n), args.repeats, sync)
            print(f"{'  solver n=' + str(n):<14} {ms:12.1f} {ms / ref:10.3f}")


if __name__ == "__main__":
    main()
