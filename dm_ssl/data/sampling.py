"""Training-stream sampling that a run can resume exactly, mid-epoch included.

semilearn 0.3.2 draws each epoch's order with ``torch.Generator().manual_seed(epoch)`` (the
same order for every seed) and augments with whatever state each data-loader worker's RNGs
happen to have, so a resumed run can neither find its place in the epoch nor give the samples
after it the augmentations they would have had. Here both are functions of the position:

- :class:`ResumableSampler` yields ``(index, sample_seed)`` pairs. The order of epoch ``e`` of
  stream ``s`` is drawn from ``(seed, s, e)`` with semilearn's semantics (``num_samples`` per
  epoch over all processes: whole permutations of the set, then part of one; process ``r`` of
  ``R`` takes positions ``r, r + R, ...``), and every position gets its own 63-bit seed. After
  :meth:`ResumableSampler.set_epoch` with ``skip=k`` the next pass starts at position ``k``.
- :class:`SeededDataset` reseeds python's ``random``, numpy and torch with the sample seed
  before it calls the wrapped dataset, so each sample's augmentation depends on nothing but
  its position: the same with any ``num_workers``, in any process, before or after a resume.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Iterator, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

#: the order of one epoch as a function of the epoch's generator (positions of all processes)
OrderFn = Callable[[torch.Generator], torch.Tensor]


def derive_seed(*keys: int) -> int:
    """A 63-bit seed from integer keys (numpy's ``SeedSequence``: well mixed, stable)."""
    state = np.random.SeedSequence([int(k) & (2**63 - 1) for k in keys]).generate_state(2)
    return int((int(state[0]) << 32 | int(state[1])) & (2**63 - 1))


def seed_everything(seed: int, *, cuda: bool = True) -> None:
    """Seed python's ``random``, numpy's global state and torch (CPU, and with ``cuda``
    every CUDA device: ``torch.manual_seed``, ~80 us; the CPU generator alone, ~1 us, is
    what a sample's augmentation in a data-loader worker draws from)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if cuda:
        torch.manual_seed(seed)
    else:
        torch.default_generator.manual_seed(seed)


def permutation_order(n: int, total: int) -> OrderFn:
    """semilearn's ``DistributedSampler`` order: ``total // n`` permutations of ``range(n)``
    and the first ``total % n`` entries of one more."""
    def order(g: torch.Generator) -> torch.Tensor:
        parts = [torch.randperm(n, generator=g) for _ in range(total // n)]
        parts.append(torch.randperm(n, generator=g)[:total % n])
        return torch.cat(parts)
    return order


class ResumableSampler(Sampler[Tuple[int, int]]):
    """``(index, sample_seed)`` for ``num_samples`` positions per epoch, over all processes.

    Args:
        order: the epoch's order from its generator (default: :func:`permutation_order`):
            all processes' positions (``num_samples``; this process takes every
            ``num_replicas``-th) or this process's own (``num_samples // num_replicas``, for
            samplers that place samples on processes themselves, like repeated augmentation).
            It must draw from the generator alike on every process.
        n: the dataset's length (for the default order).
        num_samples: positions per epoch over all processes (semilearn: steps per epoch x
            batch x processes); must divide by ``num_replicas``.
        seed, stream: the run's seed and a stream id (labeled 0, unlabeled 1), so two streams
            of one run, and two runs of different seeds, never share an order.
    """

    def __init__(self, n: int, num_samples: int, seed: int, stream: int, *,
                 num_replicas: int = 1, rank: int = 0,
                 order: Optional[OrderFn] = None) -> None:
        if n <= 0:
            raise ValueError("ResumableSampler: the dataset is empty")
        if num_samples <= 0 or num_samples % num_replicas:
            raise ValueError(f"ResumableSampler: num_samples ({num_samples}) must be a positive "
                             f"multiple of the number of processes ({num_replicas})")
        self.n, self.total, self.seed, self.stream = int(n), int(num_samples), int(seed), stream
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.order = order or permutation_order(self.n, self.total)
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """The epoch the next pass draws, starting ``skip`` positions (of this process) in."""
        if not 0 <= skip <= len(self):
            raise ValueError(f"ResumableSampler: skip {skip} outside 0..{len(self)}")
        self.epoch, self.skip = int(epoch), int(skip)

    def positions(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """This process's indices and sample seeds for the whole current epoch."""
        g = torch.Generator().manual_seed(derive_seed(self.seed, self.stream, self.epoch))
        indices = torch.as_tensor(self.order(g), dtype=torch.int64)
        # every process draws all seeds and takes its own: no two processes share one
        seeds = torch.randint(0, 2**63 - 1, (self.total,), generator=g, dtype=torch.int64)
        mine = slice(self.rank, self.total, self.num_replicas)
        if indices.numel() == self.total:
            indices = indices[mine]
        elif indices.numel() != len(self):
            raise ValueError(f"ResumableSampler: the order gave {indices.numel()} positions, "
                             f"expected {self.total} (all processes) or {len(self)} (this one)")
        return indices, seeds[mine]

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        indices, seeds = self.positions()
        start, self.skip = self.skip, 0  # a skip applies to one pass (the resumed epoch)
        return iter(zip(indices[start:].tolist(), seeds[start:].tolist()))

    def __len__(self) -> int:
        # the full epoch: DataLoader's len() must not change with a pending skip, or a resumed
        # run's zip of streams would be judged by a shorter length than it yields
        return self.total // self.num_replicas


class SeededDataset(Dataset):
    """``dataset[index]`` with every RNG seeded from the sample's seed first.

    Keys are the ``(index, seed)`` pairs of :class:`ResumableSampler`; a plain integer key is
    passed through unseeded. Attributes of the wrapped dataset (``targets``, ...) show through.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, (tuple, list)):
            index, seed = key
            seed_everything(int(seed), cuda=False)
            return self.dataset[int(index)]
        return self.dataset[key]

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)
