#!/usr/bin/env python
"""Time per training step of fixmatch_dm vs fixmatch, and FixMatch's images/s (issue #3).

Both algorithms go through dm_ssl's driver in this one process, on the same random batch
(WRN-28-2, 32×32, ``batch_size`` labeled + ``uratio × batch_size`` unlabeled, weak and strong
views); a step is forward + loss + backward + SGD step, as semilearn's ParamUpdateHook does.
Prints the median of ``--repeats`` interleaved steps after a warm-up, the ratio
fixmatch_dm / fixmatch (target ≤ 1.15: DM adds 2·N_l of 15·N_l images), and FixMatch's
training images/s with and without the channels_last memory format.

    .venv/bin/python scripts/bench_step.py [--batch-size 64] [--uratio 7] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch
from torchvision import transforms


def datasets(alg: str, n: int, num_classes: int = 10):
    from semilearn import BasicDataset

    rng = np.random.RandomState(0)
    data = rng.randint(0, 255, (n, 32, 32, 3), dtype=np.uint8)
    targets = np.arange(n) % num_classes
    t = transforms.ToTensor()
    return dict(train_lb=BasicDataset(alg, data, targets, num_classes, t),
                train_ulb=BasicDataset(alg, data, targets, num_classes, t, True, t),
                eval=BasicDataset(alg, data[:8], targets[:8], num_classes, t))


def build(alg_name: str, args, channels_last: bool, out_dir: str):
    import dm_ssl.algorithms as A

    torch.manual_seed(0)
    cfg = dict(algorithm=alg_name, net="wrn_28_2", num_classes=10, batch_size=args.batch_size,
               uratio=args.uratio, num_train_iter=1000, epoch=1, num_workers=0, device="cpu",
               save_dir=out_dir, save_name=alg_name, seed=0, channels_last=channels_last)
    alg = A.build_algorithm(cfg, datasets(alg_name, args.batch_size * args.uratio))
    alg.model.train()
    return alg


def step(alg, inputs) -> tuple:
    """One training step as semilearn's ParamUpdateHook runs it: (seconds, loss)."""
    t0 = time.perf_counter()
    out, _ = alg.train_step(**inputs)
    out["loss"].backward()
    alg.optimizer.step()
    alg.optimizer.zero_grad(set_to_none=True)
    alg.it += 1
    return time.perf_counter() - t0, out["loss"].item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--uratio", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    n_l, n_u = args.batch_size, args.batch_size * args.uratio
    g = torch.Generator().manual_seed(0)
    batch = {"x_lb": torch.rand(n_l, 3, 32, 32, generator=g),
             "y_lb": torch.randint(0, 10, (n_l,), generator=g),
             "idx_ulb": torch.arange(n_u),
             "x_ulb_w": torch.rand(n_u, 3, 32, 32, generator=g),
             "x_ulb_s": torch.rand(n_u, 3, 32, 32, generator=g)}
    images = n_l + 2 * n_u
    print(f"WRN-28-2, {n_l} labeled + {args.uratio} x {n_l} unlabeled (weak + strong) = "
          f"{images} images per FixMatch step, {torch.get_num_threads()} threads, "
          f"median of {args.repeats} interleaved steps after one warm-up")
    with tempfile.TemporaryDirectory() as out_dir:
        algs = {(name, cl): build(name, args, cl, out_dir)
                for cl in (False, True) for name in ("fixmatch", "fixmatch_dm")}
        inputs = {}
        for key, alg in algs.items():
            x = alg.process_batch(**batch)
            if key[1]:
                x = {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v
                     for k, v in x.items()}
            inputs[key] = x
        first_loss = {key: step(alg, inputs[key])[1] for key, alg in algs.items()}  # warm-up
        times = {key: [] for key in algs}
        for _ in range(args.repeats):  # interleaved: drifts of the machine hit all alike
            for key, alg in algs.items():
                times[key].append(step(alg, inputs[key])[0])
    med = {key: statistics.median(v) for key, v in times.items()}
    for cl in (False, True):
        fm, dm = med[("fixmatch", cl)], med[("fixmatch_dm", cl)]
        fmt = "channels_last" if cl else "contiguous   "
        print(f"{fmt}: fixmatch {fm:.3f} s/step ({images / fm:6.1f} img/s), fixmatch_dm "
              f"{dm:.3f} s/step, ratio fixmatch_dm/fixmatch {dm / fm:.3f}")
    print(f"channels_last speed-up of fixmatch: "
          f"{med[('fixmatch', False)] / med[('fixmatch', True)]:.2f}x; first-step loss "
          f"contiguous {first_loss[('fixmatch', False)]:.6f} vs channels_last "
          f"{first_loss[('fixmatch', True)]:.6f} (same init, same batch)")


if __name__ == "__main__":
    main()
