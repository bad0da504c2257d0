"""Pseudo Group Contrast (Self-Tuning, ICML 2021), vectorised (spec §6.2). Pure torch.

Per-class queues ``Q ∈ R^{d×(C·K)}`` (class c owns columns ``c·K .. c·K+K−1``). For a query
``q`` and key ``k`` (both L2-normalised) of a sample with (pseudo-)label c:

    logits = [q·k, q·Q_c (K), q·Q_{c'≠c} (K(C−1), in class order)] / τ
    target = uniform over the first K + 1 entries

    ℓ_PGC = −Σ_j t_j log softmax(logits)_j
          = logsumexp([q·k, q·Q]/τ) − mean([q·k, q·Q_c]/τ)

The second line is what :func:`pgc_loss` computes (no per-sample gather of negatives: the
negatives are all queue entries but the own class, and a softmax does not care about order);
:func:`pgc_logits` builds the explicit logits/targets of the first line, for tests and
inspection. Keys are enqueued per class as ring buffers after the step (:func:`enqueue`).
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def _sims(q: Tensor, queue: Tensor, num_classes: int) -> Tensor:
    n, k = q.shape[0], queue.shape[1] // num_classes
    return (q @ queue).view(n, num_classes, k)


def pgc_logits(q: Tensor, k: Tensor, queue: Tensor, labels: Tensor, num_classes: int,
               tau: float = 0.07) -> Tuple[Tensor, Tensor]:
    """The explicit PGC logits (N, 1 + C·K) and their targets, in the official order."""
    sims = _sims(q, queue, num_classes)
    own = F.one_hot(labels, num_classes).bool()
    pos = sims[own]                                     # (N, K): the own class's queue
    neg = sims[~own].view(q.shape[0], -1)               # (N, (C−1)K), classes in order
    logits = torch.cat([(q * k).sum(1, keepdim=True), pos, neg], 1) / tau
    kk = pos.shape[1]
    targets = torch.zeros_like(logits)
    targets[:, : kk + 1] = 1.0 / (kk + 1)
    return logits, targets


def pgc_loss(q: Tensor, k: Tensor, queue: Tensor, labels: Tensor, num_classes: int,
             tau: float = 0.07) -> Tensor:
    """Per-sample ℓ_PGC (N,), equal to the soft-target CE of :func:`pgc_logits`."""
    sims = _sims(q, queue, num_classes) / tau
    l_pos = (q * k).sum(1, keepdim=True) / tau
    own = sims.gather(1, labels.view(-1, 1, 1).expand(-1, 1, sims.shape[2])).squeeze(1)
    lse = torch.logsumexp(torch.cat([l_pos, sims.flatten(1)], 1), 1)
    return lse - torch.cat([l_pos, own], 1).mean(1)


@torch.no_grad()
def enqueue(queue: Tensor, ptr: Tensor, keys: Tensor, labels: Tensor) -> None:
    """Write ``keys`` (N, d) into their classes' ring buffers, in batch order, in place.

    Same result as the official per-sample loop: sample r of class c (r-th in the batch)
    goes to slot ``(ptr[c] + r) mod K``; when a class has more than K samples the last K
    win; then ``ptr[c] += count_c (mod K)``.
    """
    num_classes = ptr.numel()
    kk = queue.shape[1] // num_classes
    order = torch.argsort(labels, stable=True)
    lab, keys = labels[order], keys[order]
    counts = torch.bincount(lab, minlength=num_classes)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(lab.numel(), device=lab.device) - starts[lab]
    keep = rank >= counts[lab] - kk
    cols = lab * kk + (ptr[lab] + rank) % kk
    queue[:, cols[keep]] = keys[keep].t().to(queue.dtype)
    ptr.copy_((ptr + counts) % kk)
