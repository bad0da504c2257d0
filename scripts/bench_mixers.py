#!/usr/bin/env python
"""Cost of each mixer per batch, against one training step of the network it feeds.

For every registered mixer, the median wall time of one call (mixing a batch with a random
permutation of itself; PuzzleMix includes its saliency forward/backward, graph solver and
transport; its solver + transport alone are also timed per grid size n) and, for reference,
of one forward + backward of the network on the unmixed batch, all measured in this one run, on
CPU (and CUDA when present). Default: CIFAR-sized batch of 100 3×32×32 images,
``cifar_resnet18``, 100 classes.

Then one *training step* (mixing, forward, loss, backward, SGD step; for AutoMix / SAMix also
the momentum update and the Mix Block's own forward and loss) with Mixup, AutoMix and SAMix,
each in its own process so that its memory is its own: median time, the step's working memory
(CPU: the rise of resident memory during the first step, sampled every millisecond from
``/proc/self/statm``; later steps reuse what the allocator keeps; CUDA: peak allocated
memory) and the ratios to Mixup (OpenMixup reports about 2x the time and 2-2.6x the memory).

    .venv/bin/python scripts/bench_mixers.py [--batch 100] [--size 32] [--net cifar_resnet18]
                                             [--repeats 5] [--threads 2] [--skip-calls]
                                             [--steps mixup automix samix]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import threading
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
    ap.add_argument("--skip-calls", action="store_true", help="only the training steps")
    ap.add_argument("--steps", nargs="+", default=["mixup", "automix", "samix"],
                    metavar="MIXER", help="the mixers whose training step is timed (mixup, "
                    "the reference of the ratios, always)")
    ap.add_argument("--one-step", nargs=2, metavar=("MIXER", "DEVICE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.one_step:
        print(json.dumps(train_step(*args.one_step, args)))
        return
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        if not args.skip_calls:
            bench(device, args)
        bench_steps(device, args)


def train_step(mixer_name: str, device: str, args: argparse.Namespace) -> dict:
    """Time and peak memory of one training step with ``mixer_name`` (run in a child)."""
    from dm_ssl.algorithms.mixing import MixingModule, MixSpec
    from dm_ssl.nets import get_net_builder

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=g).to(device)
    y = torch.randint(args.classes, (args.batch,), generator=g).to(device)
    net = get_net_builder(args.net)(num_classes=args.classes).to(device).train()
    mixing = MixingModule(MixSpec.for_setting("mix", mixer=mixer_name, loss="dm_ce", eta=1.0),
                          args.classes)
    mixing.setup(net, (3, args.size, args.size))
    mixing.to(device).train()
    params = [p for p in list(net.parameters()) + list(mixing.parameters()) if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(1)
    it = [0]

    def step() -> None:
        mixing.schedule(it[0], 1000, net)
        res = mixing.mix(net, x, y, generator=gen)
        loss = mixing.loss(mixing.logits(net, res), res)
        if res.aux_loss is not None:
            loss = loss + res.aux_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        it[0] += 1

    if device == "cuda":
        step()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        ms = median_ms(step, args.repeats, sync)
        return {"ms": ms, "peak_mb": torch.cuda.max_memory_allocated() / 2 ** 20}
    # the first step's rise of resident memory (later steps reuse what the allocator keeps)
    before = _rss_bytes()
    stop, peak = threading.Event(), [before]

    def sample() -> None:  # the step's resident-memory high-water mark, sampled every ms
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    step()
    stop.set()
    sampler.join()
    ms = median_ms(step, args.repeats, sync)
    return {"ms": ms, "peak_mb": (peak[0] - before) / 2 ** 20}


def _rss_bytes() -> int:
    """Resident memory of this process now (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def bench_steps(device: str, args: argparse.Namespace) -> None:
    kind = "peak allocated" if device == "cuda" else "step's peak RSS"
    print(f"\n{device}: one training step (mix, fwd, DM(CE), bwd, SGD), batch {args.batch}×3×"
          f"{args.size}², {args.net}, median of {args.repeats}, one process per mixer")
    print(f"{'':<10} {'ms / step':>10} {'× mixup':>8} {kind + ' MB':>18} {'× mixup':>8}")
    rows = {}
    for name in dict.fromkeys(["mixup", *args.steps]):
        cmd = [sys.executable, __file__, "--one-step", name, device, "--batch", str(args.batch),
               "--size", str(args.size), "--classes", str(args.classes), "--net", args.net,
               "--repeats", str(args.repeats), "--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows[name] = json.loads(out.stdout.strip().splitlines()[-1])
        r, base = rows[name], rows["mixup"]
        print(f"{name:<10} {r['ms']:10.1f} {r['ms'] / base['ms']:8.2f} {r['peak_mb']:18.0f} "
              f"{r['peak_mb'] / base['peak_mb']:8.2f}")


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
        mixer = build_mixer(name, alpha=1.0).to(device)
        if mixer.learned:
            mixer.setup(net, (3, args.size, args.size))
        call = partial(mixer, x, y, generator=torch.Generator().manual_seed(1), model=net)
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
