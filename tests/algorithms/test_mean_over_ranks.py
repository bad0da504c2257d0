"""Logged numbers under DDP are the means over the ranks (two CPU gloo processes)."""

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

pytest.importorskip("semilearn")

from dm_ssl.algorithms.driver import mean_over_ranks  # noqa: E402


def _worker(rank: int, init: str, out: dict) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        logs = {"train/sup_loss": 2.0 + rank, "train/mask_ratio": 0.5 * rank,
                "train/only_rank0": 7.0} if rank == 0 else \
               {"train/sup_loss": 2.0 + rank, "train/mask_ratio": 0.5 * rank, "note": "x"}
        out[rank] = mean_over_ranks(logs)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_logged_losses_are_the_mean_of_the_ranks(tmp_path):
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(f"file://{tmp_path / 'pg'}", out), nprocs=2, join=True)
    for rank in (0, 1):
        assert out[rank]["train/sup_loss"] == pytest.approx(2.5)
        assert out[rank]["train/mask_ratio"] == pytest.approx(0.25)
    assert out[0]["train/only_rank0"] == 7.0          # a key one rank lacks keeps its value
    assert out[1]["note"] == "x"


def test_without_a_process_group_the_logs_are_unchanged():
    logs = {"train/sup_loss": 1.25, "flag": True}
    assert mean_over_ranks(logs) is logs
