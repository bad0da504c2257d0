#!/usr/bin/env python
"""Weak and strong augmentation of a FixMatch batch: USB's PIL path against the batched one.

One batch of ``--batch`` 32×32 RGB images (USB's unlabeled batch: 7 × 64 = 448), augmented
to normalised float tensors by

- USB's transforms (``dm_ssl.data.transforms``: RandomCrop(pad 4, reflect) + flip, and
  RandAugment(3, 5) + Cutout for the strong view) one PIL image at a time, in this process
  (one core) and through a DataLoader with one worker per core;
- :class:`dm_ssl.data.batch_augment.BatchAugment` on the uint8 batch, on the CPU with one
  thread and with all cores, and on CUDA when present.

It counts the kernels one batch launches on an accelerator (the sync-free path's ATen ops,
read on the CPU with :class:`dm_ssl.data.op_log.OpLog`) and the host syncs among them (0).
On CUDA it also times a WRN-28-2 FixMatch step (64 labeled + 448 weak + 448 strong views,
forward, loss, backward, SGD) ``--steps`` times in a row, once on ready-made views and once
augmenting its three batches first, as a training loop does: the difference is the data time
the augmentation adds to a step, printed as its share. Prints images/s (median of
``--repeats``) and the ratios.

    .venv/bin/python scripts/bench_augment.py [--batch 448] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
from typing import Callable, Dict

import numpy as np
import torch
from bench_mixers import median_ms  # scripts/ is on sys.path when run as a script
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from dm_ssl.data.batch_augment import BatchAugment
from dm_ssl.data.op_log import OpLog
from dm_ssl.data.transforms import MEAN, STD, strong_transform, weak_transform

MEAN10, STD10 = MEAN["cifar10"], STD["cifar10"]


def images(n: int) -> np.ndarray:
    """CIFAR-like content: smooth random ramps (not noise: equalize / autocontrast depend on
    the histogram), (n, 32, 32, 3) uint8."""
    rng = np.random.default_rng(0)
    steps = rng.integers(-6, 7, (n, 32, 32, 3))
    return ((np.cumsum(steps, axis=1) + np.cumsum(steps, axis=2)) % 256).astype(np.uint8)


class PILSet(Dataset):
    def __init__(self, data: np.ndarray, transform: Callable) -> None:
        self.data, self.transform = data, transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(Image.fromarray(self.data[i]))


def timed(fn: Callable[[], object], repeats: int, sync: Callable[[], None] = lambda: None
          ) -> float:
    """Median seconds of ``repeats`` calls after a warm-up (bench_mixers' timer)."""
    return median_ms(fn, repeats, sync) / 1e3


def pil_one_process(data: np.ndarray, transform: Callable) -> Callable[[], object]:
    return lambda: torch.stack([transform(Image.fromarray(im)) for im in data])


def pil_loader(data: np.ndarray, transform: Callable, workers: int) -> Callable[[], object]:
    loader = DataLoader(PILSet(data, transform), batch_size=len(data), num_workers=workers,
                        persistent_workers=workers > 0)
    return lambda: next(iter(loader))


def fixmatch_step(device: torch.device) -> Callable[..., None]:
    """forward + loss + backward + SGD of a WRN-28-2 FixMatch step on given views."""
    import torch.nn.functional as F
    from semilearn.nets import wrn_28_2

    net = wrn_28_2(num_classes=10).to(device).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.03, momentum=0.9, nesterov=True)

    def step(x_lb: torch.Tensor, y_lb: torch.Tensor, x_w: torch.Tensor,
             x_s: torch.Tensor) -> None:
        logits = net(torch.cat([x_lb, x_w, x_s]))["logits"]
        lb, w, s = logits.split([len(x_lb), len(x_w), len(x_s)])
        prob = torch.softmax(w.detach(), -1)
        conf, pseudo = prob.max(-1)
        loss = F.cross_entropy(lb, y_lb) + (F.cross_entropy(s, pseudo, reduction="none")
                                            * (conf >= 0.95).float()).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def data_share(data: np.ndarray, device: torch.device, steps: int, repeats: int
               ) -> Dict[str, float]:
    """ms per FixMatch step on ready views and with its augmentation first (one CUDA
    generator, as ``augment_on: device``), and the difference as a share of the latter."""
    x = torch.from_numpy(data).permute(0, 3, 1, 2).contiguous().to(device)
    x_lb = x[:64]
    y_lb = torch.randint(0, 10, (len(x_lb),), device=device)
    weak = BatchAugment(strong=False, pad=4, mean=MEAN10, std=STD10)
    strong = BatchAugment(strong=True, pad=4, mean=MEAN10, std=STD10)
    g = torch.Generator(device=device).manual_seed(0)
    ready = (weak(x_lb, g), y_lb, weak(x, g), strong(x, g))
    step = fixmatch_step(device)

    def steps_ready() -> None:
        for _ in range(steps):
            step(*ready)

    def steps_augmenting() -> None:
        for _ in range(steps):
            step(weak(x_lb, g), y_lb, weak(x, g), strong(x, g))
    sync = torch.cuda.synchronize
    t_ready = timed(steps_ready, repeats, sync) / steps
    t_aug = timed(steps_augmenting, repeats, sync) / steps
    alone = timed(lambda: (weak(x_lb, g), weak(x, g), strong(x, g)), repeats, sync)
    return {"step": t_ready, "step_with_data": t_aug, "alone": alone,
            "share": max(t_aug - t_ready, 0.0) / t_aug}


def kernels(batch: int) -> Dict[str, int]:
    """ATen ops (kernels on a GPU) and host syncs of one batch on the accelerator path."""
    x = torch.from_numpy(images(batch)).permute(0, 3, 1, 2).contiguous()
    out = {}
    for kind, strong in (("weak", False), ("strong", True)):
        aug = BatchAugment(strong=strong, pad=4, mean=MEAN10, std=STD10, sync_free=True)
        aug(x, torch.Generator().manual_seed(0))
        with OpLog() as log:
            aug(x, torch.Generator().manual_seed(0))
        out[kind], out[f"{kind}_syncs"] = log.kernels, len(log.host_syncs)
    return out


def measure(data: np.ndarray, transform: Callable, batched: BatchAugment, workers: int,
            repeats: int) -> Dict[str, float]:
    """images/s of each path for one view."""
    n = len(data)
    x = torch.from_numpy(data).permute(0, 3, 1, 2).contiguous()
    g = torch.Generator().manual_seed(0)
    row = {"PIL, 1 process": n / timed(pil_one_process(data, transform), repeats),
           f"PIL, DataLoader {workers} workers": n / timed(pil_loader(data, transform, workers),
                                                          repeats)}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    row["batched CPU, 1 thread"] = n / timed(lambda: batched(x, g), repeats)
    if batched.strong:
        free = BatchAugment(strong=True, pad=batched.pad, mean=batched.mean, std=batched.std,
                            sync_free=True)
        row["batched CPU, 1 thread, sync-free"] = n / timed(lambda: free(x, g), repeats)
    torch.set_num_threads(threads)
    row[f"batched CPU, {threads} threads"] = n / timed(lambda: batched(x, g), repeats)
    if torch.cuda.is_available():
        xg, gg = x.cuda(), torch.Generator(device="cuda").manual_seed(0)
        row["batched CUDA"] = n / timed(lambda: batched(xg, gg), repeats, torch.cuda.synchronize)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=448)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="DataLoader workers of the PIL path (default: one per core)")
    p.add_argument("--steps", type=int, default=10,
                   help="FixMatch steps per timing of the CUDA data share")
    args = p.parse_args()
    from dm_ssl.cli import quiet_third_party_warnings

    quiet_third_party_warnings()
    data = images(args.batch)
    cores = os.cpu_count() or 1
    n = args.batch
    rates: Dict[str, Dict[str, float]] = {}
    for kind, tf, strong in (("weak", weak_transform, False), ("strong", strong_transform, True)):
        rates[kind] = measure(data, tf(32, MEAN10, STD10),
                              BatchAugment(strong=strong, pad=4, mean=MEAN10, std=STD10),
                              args.workers, args.repeats)
    print(f"augmentation of a batch of {n} 32x32 RGB images to normalised tensors "
          f"(images/s, median of {args.repeats}; {cores} cores, torch {torch.__version__})")
    for kind, row in rates.items():
        base = row["PIL, 1 process"]
        for name, rate in row.items():
            print(f"  {kind:6s} {name:32s} {rate:10.0f} img/s   "
                  f"x{rate / base:6.2f} vs PIL 1 process")
    count = kernels(n)
    print(f"  kernels per batch on an accelerator (sync-free path, ATen ops): weak "
          f"{count['weak']}, strong {count['strong']}; host syncs {count['weak_syncs']} / "
          f"{count['strong_syncs']}")
    if torch.cuda.is_available():
        share = data_share(data, torch.device("cuda"), args.steps, args.repeats)
        print(f"  CUDA ({torch.cuda.get_device_name()}): WRN-28-2 FixMatch step "
              f"{share['step'] * 1e3:.1f} ms on ready views, {share['step_with_data'] * 1e3:.1f}"
              f" ms augmenting its {64 + 2 * n} views first: data time "
              f"{100 * share['share']:.1f} % of the step (augmentation alone, synced: "
              f"{share['alone'] * 1e3:.2f} ms)")


if __name__ == "__main__":
    main()
