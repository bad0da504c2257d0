import random

import numpy as np
import pytest
import torch

from .cifar_files import STYLES, write_cifar10, write_cifar100


@pytest.fixture(params=STYLES)
def cifar10(tmp_path, request):
    """A tiny CIFAR-10 in the official layout under ``tmp_path/"data"``, both pickle styles."""
    root = tmp_path / "data"
    return root, write_cifar10(root, style=request.param)


@pytest.fixture(params=STYLES)
def cifar100(tmp_path, request):
    root = tmp_path / "data"
    return root, write_cifar100(root, style=request.param)


@pytest.fixture
def seeded_rngs():
    """Seed (and afterwards restore) the RNGs the transforms draw from."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()

    def seed(s):
        random.seed(s)
        np.random.seed(s)
        torch.manual_seed(s)

    yield seed
    random.setstate(states[0])
    np.random.set_state(states[1])
    torch.set_rng_state(states[2])
