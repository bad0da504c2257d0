"""ResumableSampler / SeededDataset: seeded orders, skips, per-process shards, per-sample seeds."""

import random

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from dm_ssl.data.sampling import ResumableSampler, SeededDataset, derive_seed


def _epoch(sampler, epoch, skip=0):
    sampler.set_epoch(epoch, skip)
    return list(sampler)


def test_order_has_semilearns_shape_and_depends_on_seed_stream_and_epoch():
    s = ResumableSampler(10, 25, seed=0, stream=0)
    pairs = _epoch(s, 0)
    idx = [i for i, _ in pairs]
    assert len(pairs) == len(s) == 25
    assert sorted(idx[:10]) == list(range(10)) and sorted(idx[10:20]) == list(range(10))
    assert len(set(idx[20:])) == 5                         # part of one more permutation
    assert len({seed for _, seed in pairs}) == 25           # a seed per position
    assert _epoch(s, 0) == pairs                            # reproducible
    assert _epoch(s, 1) != pairs
    assert _epoch(ResumableSampler(10, 25, seed=1, stream=0), 0) != pairs
    assert _epoch(ResumableSampler(10, 25, seed=0, stream=1), 0) != pairs


def test_skip_resumes_the_same_epoch_at_its_position_once():
    s = ResumableSampler(7, 21, seed=3, stream=1)
    full = _epoch(s, 2)
    assert _epoch(s, 2, skip=8) == full[8:]
    assert list(s) == full                                  # the skip applied to one pass
    with pytest.raises(ValueError, match="skip"):
        s.set_epoch(0, 22)


def test_processes_share_the_order_and_never_a_seed():
    one = _epoch(ResumableSampler(9, 12, seed=0, stream=0), 0)
    shards = [_epoch(ResumableSampler(9, 12, seed=0, stream=0, num_replicas=3, rank=r), 0)
              for r in range(3)]
    assert [p for i in range(4) for s in shards for p in [s[i]]] == one
    with pytest.raises(ValueError, match="multiple"):
        ResumableSampler(9, 10, seed=0, stream=0, num_replicas=3)


def test_a_local_order_keeps_its_positions_and_gets_own_seeds():
    order = lambda g: torch.arange(4)  # noqa: E731  (each process's own positions)
    shards = [_epoch(ResumableSampler(4, 8, 0, 0, num_replicas=2, rank=r, order=order), 0)
              for r in range(2)]
    assert [i for i, _ in shards[0]] == [i for i, _ in shards[1]] == [0, 1, 2, 3]
    assert not {s for _, s in shards[0]} & {s for _, s in shards[1]}


class _Draws(Dataset):
    targets = [0, 1, 2]

    def __len__(self):
        return 3

    def __getitem__(self, i):
        return torch.tensor([i, random.random(), np.random.rand(), torch.rand(()).item()])


def test_seeded_items_do_not_depend_on_workers_or_what_ran_before():
    sampler = ResumableSampler(3, 6, seed=0, stream=0)
    ds = SeededDataset(_Draws())
    assert ds.targets == [0, 1, 2] and len(ds) == 3
    runs = []
    for workers in (0, 2):
        torch.manual_seed(workers)
        random.seed(workers)
        sampler.set_epoch(0)
        runs.append(torch.cat(list(DataLoader(ds, batch_size=2, sampler=sampler,
                                              num_workers=workers))))
    assert torch.equal(runs[0], runs[1])
    assert len(set(runs[0][:, 1].tolist())) == 6            # each position its own draws
    assert ds[1][0] == 1                                    # plain keys pass through


def test_derive_seed_is_stable_and_spread():
    assert derive_seed(1, 2) == derive_seed(1, 2) != derive_seed(2, 1)
    assert 0 <= derive_seed(-1, 2**70) < 2**63
