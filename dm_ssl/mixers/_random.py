"""Generator-aware random draws: every random number of a mixer comes from here (spec §5).

Each helper draws on the generator's own device (torch requires it) and then moves the
result to ``device``; with ``generator=None`` it uses torch's global CPU generator, so
``torch.manual_seed`` alone makes a run reproducible.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

Size = Union[int, Sequence[int]]


def generator_device(generator: Optional[torch.Generator]) -> torch.device:
    """Device the draws must happen on: the generator's, or the CPU for the global RNG."""
    return generator.device if generator is not None else torch.device("cpu")


def _size(size: Size) -> tuple[int, ...]:
    return (size,) if isinstance(size, int) else tuple(size)


def rand(size: Size, *, generator: Optional[torch.Generator] = None,
         device: Optional[torch.device] = None, dtype: torch.dtype = torch.float64) -> Tensor:
    """U[0, 1) draws."""
    out = torch.rand(_size(size), generator=generator, device=generator_device(generator),
                     dtype=dtype)
    return out.to(device) if device is not None else out


def randn(size: Size, *, generator: Optional[torch.Generator] = None,
          device: Optional[torch.device] = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Standard normal draws."""
    out = torch.randn(_size(size), generator=generator, device=generator_device(generator),
                      dtype=dtype)
    return out.to(device) if device is not None else out


def randint(high: int, size: Size, *, generator: Optional[torch.Generator] = None,
            device: Optional[torch.device] = None) -> Tensor:
    """Integers uniform in [0, high), int64."""
    out = torch.randint(high, _size(size), generator=generator, device=generator_device(generator))
    return out.to(device) if device is not None else out


def randperm(n: int, *, generator: Optional[torch.Generator] = None,
             device: Optional[torch.device] = None) -> Tensor:
    """A uniformly random permutation of 0..n-1, int64."""
    out = torch.randperm(n, generator=generator, device=generator_device(generator))
    return out.to(device) if device is not None else out


def beta(alpha: float, size: int, *, generator: Optional[torch.Generator] = None,
         device: Optional[torch.device] = None) -> Tensor:
    """``size`` draws of Beta(alpha, alpha), float64.

    ``torch.distributions.Beta`` takes no generator, so one 62-bit seed is drawn from the
    generator and handed to numpy's ``default_rng``: same generator state, same draws.
    """
    seed = int(randint(2**62, 1, generator=generator).item())
    draws = np.random.default_rng(seed).beta(alpha, alpha, size)
    return torch.from_numpy(draws).to(device if device is not None else "cpu")
